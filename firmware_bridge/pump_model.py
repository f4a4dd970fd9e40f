"""The one simulated pump: physics of a syringe driver, or of a volumetric pump, on the
clinical clock.

Every emulator (NE-1000, Harvard, Modbus) and the in-process ``mock`` driver serve this
same model, so a fault behaves alike whatever protocol reaches it. Integration is exact:
between two state changes the plunger moves at a constant rate, and the instants at which
something happens inside an interval (syringe empty, occlusion pressure reaching the alarm
threshold, target volume reached) are solved for, not sampled. The model also keeps the
*ground truth*: the flow that really reached the patient over time, which the
hardware-in-the-loop suite checks the safety invariants against.

By default the mechanism is ideal: what the drive displaces reaches the line at once.
Given a ``Mechanics`` (``firmware_bridge.mechanics``: slack, compliance lag, lead-screw
ripple, bore error), the ground truth is what that mechanism really delivers, so a late
start-up at a low rate shows in the truth log exactly as it would on a balance; the pump's
own counters (``infused_ml``) still count what the drive displaced, as a real pump's do.

Two kinds of pump, by what they hold (``firmware_bridge.syringes.Container``):

- a syringe pump (``Syringe``): a plunger, optionally a real mechanism (slack, lag...);
- a volumetric pump (``Bag``): a container drained by a peristaltic mechanism, with the
  sensors such pumps carry: air in the line, upstream occlusion (between bag and pump),
  downstream occlusion (as a syringe pump's) and the door. Each of them stops the pump
  with its alarm; an open door stops flow and never lets it run free (free-flow
  protection), and the ground truth says so (no flow while the door is open).

A container change (a new syringe or a new bag) is ``set_container`` and/or ``reload``.

Priming and where fluid goes. The pump's line is connected to the patient or not
(``connect_line``; connected by default, so every earlier use of the model is unchanged).
While it is not, whatever leaves the line goes to waste: the patient's ground truth shows
no flow and a ``TruthWaste`` event records the volume (when a prime ends and when the line
is connected again). ``prime(volume)`` runs the pump at its top rate until that volume is
displaced (an NE-1000 ``PUR``, a Harvard ``irun`` with a target volume), which also takes
up a real mechanism's slack, so a primed syringe starts delivering promptly; the
compliance after-flow of a prime keeps draining for a few lag time constants afterwards
(connect after it: what leaves the line while it is connected reaches the patient).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge.clock import Clock
from firmware_bridge.mechanics import DeliveryLine, Mechanics
from firmware_bridge.syringes import DEFAULT_SYRINGE, Bag, Container, Syringe, container_by_name

#: pressure in the line while fluid flows freely (venous back-pressure), mmHg
BASELINE_PRESSURE_MMHG = 15.0
#: default occlusion alarm threshold, mmHg (project figure; GIP/ECRI limit is <= 1034)
DEFAULT_OCCLUSION_ALARM_MMHG = 500.0
#: line compliance, mL per mmHg: with the 1034 mmHg limit the stored bolus stays <= 0.5 mL
DEFAULT_LINE_COMPLIANCE_ML_PER_MMHG = 0.00045


class PumpAlarm(enum.StrEnum):
    """Conditions that stop the pump (or record that it stopped) and latch until cleared."""

    OCCLUSION = "occlusion"
    EMPTY = "empty"
    STALL = "stall"
    RESET = "reset"  # power was interrupted
    COMMS_TIMEOUT = "comms_timeout"  # NE-1000 safe mode: no valid packet in time
    # volumetric pumps' sensors
    AIR_IN_LINE = "air_in_line"
    UPSTREAM_OCCLUSION = "upstream_occlusion"
    DOOR_OPEN = "door_open"


class Direction(enum.StrEnum):
    INFUSE = "infuse"
    WITHDRAW = "withdraw"


class PumpModelError(Exception):
    """Base of the errors the model raises; emulators map them to protocol errors."""


class RateOutOfRange(PumpModelError):
    """The rate is outside what this syringe and mechanism can run (NE-1000 ``?OOR``)."""


class NotApplicable(PumpModelError):
    """The command cannot be applied in the current state (NE-1000 ``?NA``)."""


#: the kinds of pump, by what they hold
SYRINGE_PUMP = "syringe"
VOLUMETRIC_PUMP = "volumetric"
#: a waste record smaller than this (mL) is float dust, not fluid
WASTE_EPS_ML = 1e-9


@dataclass(frozen=True)
class PumpSnapshot:
    """What the pump knows about itself at one instant."""

    time: float
    running: bool
    direction: Direction
    set_rate_ml_h: float
    plunger_rate_ml_h: float
    delivered_rate_ml_h: float
    infused_ml: float
    withdrawn_ml: float
    remaining_ml: float
    pressure_mmhg: float
    alarms: frozenset[PumpAlarm]
    near_empty: bool
    target_reached: bool
    container: Container
    priming: bool = False
    line_connected: bool = True
    wasted_ml: float = 0.0
    door_open: bool = False

    @property
    def kind(self) -> str:
        return VOLUMETRIC_PUMP if isinstance(self.container, Bag) else SYRINGE_PUMP

    @property
    def syringe(self) -> Syringe:
        """The syringe of a syringe pump (a volumetric pump has none: ``container``)."""
        if isinstance(self.container, Syringe):
            return self.container
        raise NotApplicable(f"a volumetric pump holds a bag ({self.container.name}), no syringe")


@dataclass(frozen=True)
class TruthSegment:
    """From ``start`` on, fluid reached the patient at ``rate_ml_h`` (negative: withdrawn)."""

    start: float
    rate_ml_h: float


@dataclass(frozen=True)
class TruthBolus:
    """``volume_ml`` reached the patient at once at ``time`` (released occlusion)."""

    time: float
    volume_ml: float


@dataclass(frozen=True)
class TruthWaste:
    """``volume_ml`` left the line while it was not connected to the patient (a prime and
    its after-flow), up to ``time``: it never reached the patient."""

    time: float
    volume_ml: float


TruthEvent = TruthSegment | TruthBolus | TruthWaste


@dataclass
class GroundTruth:
    """The flow that really reached the patient, as segments and boluses."""

    events: list[TruthEvent] = field(default_factory=list)
    sink: Callable[[TruthEvent], None] | None = None

    def record(self, event: TruthEvent) -> None:
        if isinstance(event, TruthSegment) and self.events:
            last = self.last_segment()
            if last is not None and last.rate_ml_h == event.rate_ml_h:
                return
        self.events.append(event)
        if self.sink is not None:
            self.sink(event)

    def last_segment(self) -> TruthSegment | None:
        for event in reversed(self.events):
            if isinstance(event, TruthSegment):
                return event
        return None

    def delivered_ml(self, until: float) -> float:
        """Volume delivered from the first record up to ``until``."""
        return delivered_volume(self.events, until)

    def segments(self) -> list[TruthSegment]:
        return [e for e in self.events if isinstance(e, TruthSegment)]

    def boluses(self) -> list[TruthBolus]:
        return [e for e in self.events if isinstance(e, TruthBolus)]

    def wasted_ml(self) -> float:
        """Volume recorded as gone to waste (never counted as delivered)."""
        return sum(e.volume_ml for e in self.events if isinstance(e, TruthWaste))


def delivered_volume(events: list[TruthEvent], until: float, since: float | None = None) -> float:
    """Integral of the true flow (plus boluses) over [since, until]."""
    total = 0.0
    segments = [e for e in events if isinstance(e, TruthSegment)]
    for i, seg in enumerate(segments):
        end = segments[i + 1].start if i + 1 < len(segments) else until
        lo = seg.start if since is None else max(seg.start, since)
        hi = min(end, until)
        if hi > lo:
            total += seg.rate_ml_h * (hi - lo) / 3600.0
    for e in events:
        if isinstance(e, TruthBolus) and e.time <= until and (since is None or e.time >= since):
            total += e.volume_ml
    return total


class SimulatedPump:
    """A syringe or volumetric pump: drive, line pressure, alarms and the flow that reached
    the patient (see the module docstring).

    Thread-safe: an emulator's serial thread and its fault-control thread may both call in.
    All times are read from the clinical ``clock``.
    """

    def __init__(
        self,
        clock: Clock,
        syringe: Container | str = DEFAULT_SYRINGE,
        *,
        loaded_volume_ml: float | None = None,
        occlusion_alarm_mmhg: float = DEFAULT_OCCLUSION_ALARM_MMHG,
        line_compliance_ml_per_mmhg: float = DEFAULT_LINE_COMPLIANCE_ML_PER_MMHG,
        near_empty_ml: float | None = None,
        ignore_first_command_after_power_up: bool = False,
        truth_sink: Callable[[TruthEvent], None] | None = None,
        mechanics: Mechanics | None = None,
        line_connected: bool = True,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._syringe: Container = (
            container_by_name(syringe) if isinstance(syringe, str) else syringe
        )
        volume = self._syringe.volume_ml if loaded_volume_ml is None else loaded_volume_ml
        if not (0.0 <= volume <= self._syringe.volume_ml):
            raise ValueError(
                f"loaded volume {volume} mL outside 0-{self._syringe.volume_ml} mL "
                f"for {self._syringe.name}"
            )
        if isinstance(self._syringe, Bag) and mechanics is not None and not mechanics.ideal:
            raise ValueError(
                "mechanics (slack, lag, ripple, bore error) describe a syringe driver; "
                f"a volumetric pump with {self._syringe.name} takes none"
            )
        if occlusion_alarm_mmhg <= BASELINE_PRESSURE_MMHG:
            raise ValueError("occlusion alarm threshold must be above the baseline pressure")
        self._remaining = volume
        self._occlusion_alarm = occlusion_alarm_mmhg
        self._compliance = line_compliance_ml_per_mmhg
        self._near_empty_ml = (
            near_empty_ml if near_empty_ml is not None else 0.1 * self._syringe.volume_ml
        )
        self.ignore_first_command_after_power_up = ignore_first_command_after_power_up
        # Building the model is switching the pump on: the first command counts too.
        self._ignore_next_command = ignore_first_command_after_power_up

        self._t = clock.now()
        self._running = False
        self._direction = Direction.INFUSE
        self._set_rate = 0.0
        self._infused = 0.0
        self._withdrawn = 0.0
        self._pressure = BASELINE_PRESSURE_MMHG
        self._alarms: set[PumpAlarm] = set()
        self._target_ml: float | None = None
        self._dispensed_since_start = 0.0
        self._target_reached = False
        # injected physical faults
        self._occluded = False
        self._stalled = False
        self._air = False
        self._upstream = False
        self._door_open = False
        # priming, and where the line's output goes
        self._priming = False
        self._prime_restore: tuple[float, float | None] = (0.0, None)
        self._connected = line_connected
        self._wasted = 0.0  # recorded as waste so far
        self._waste_mark = 0.0  # line output when the waste was last recorded
        self.truth = GroundTruth(sink=truth_sink)
        self._flow = GroundTruth()  # what left the line, wherever it went (ideal mechanism)
        self._mechanics = mechanics
        self._line: DeliveryLine | None = None
        if mechanics is not None and not mechanics.ideal:
            assert isinstance(self._syringe, Syringe)
            self._line = DeliveryLine(
                mechanics,
                self._syringe,
                self._t,
                self._route_segment,
                self._route_bolus,
            )
            self._line.advance(self._t)
        self._route_segment(self._t, 0.0)

    # ----------------------------------------------------------------- reading
    @property
    def syringe(self) -> Syringe:
        """The syringe of a syringe pump; a volumetric pump has none (``container``)."""
        if isinstance(self._syringe, Syringe):
            return self._syringe
        raise NotApplicable(f"a volumetric pump holds a bag ({self._syringe.name}), no syringe")

    @property
    def container(self) -> Container:
        """The syringe or the bag the pump holds."""
        return self._syringe

    @property
    def kind(self) -> str:
        """``"syringe"`` or ``"volumetric"``."""
        return VOLUMETRIC_PUMP if isinstance(self._syringe, Bag) else SYRINGE_PUMP

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def mechanics(self) -> Mechanics | None:
        """The mechanism's imperfections (None or ideal: what is displaced is delivered)."""
        return self._mechanics

    def delivered_ml(self) -> float:
        """Volume that really reached the patient since power-up, up to the clock's now:
        exact, including a part of a start-up transient not yet written to the truth, and
        never what went to waste."""
        with self._lock:
            now = self._clock.now()
            self._advance(now)
            return self._line_out_ml(now) - self._wasted_now(now)

    def wasted_ml(self) -> float:
        """Volume that left the line while it was not connected to the patient."""
        with self._lock:
            now = self._clock.now()
            self._advance(now)
            return self._wasted_now(now)

    @property
    def line_connected(self) -> bool:
        return self._connected

    def snapshot(self) -> PumpSnapshot:
        with self._lock:
            self._advance(self._clock.now())
            plunger = self._plunger_rate()
            delivered = 0.0 if self._occluded else plunger
            if self._direction is Direction.WITHDRAW:
                delivered = -plunger
            return PumpSnapshot(
                time=self._t,
                running=self._running,
                direction=self._direction,
                set_rate_ml_h=self._set_rate,
                plunger_rate_ml_h=plunger,
                delivered_rate_ml_h=delivered,
                infused_ml=self._infused,
                withdrawn_ml=self._withdrawn,
                remaining_ml=self._remaining,
                pressure_mmhg=self._pressure,
                alarms=frozenset(self._alarms),
                near_empty=self._remaining <= self._near_empty_ml,
                target_reached=self._target_reached,
                container=self._syringe,
                priming=self._priming,
                line_connected=self._connected,
                wasted_ml=self._wasted_now(self._t),
                door_open=self._door_open,
            )

    # ----------------------------------------------------------------- commands
    def set_rate(self, rate_ml_h: float) -> None:
        """Set the rate; allowed while running (the new rate takes effect at once)."""
        with self._lock:
            self._advance(self._clock.now())
            s = self._syringe
            if not (s.min_rate_ml_h <= rate_ml_h <= s.max_rate_ml_h):
                raise RateOutOfRange(
                    f"rate {rate_ml_h} mL/h outside {s.min_rate_ml_h}-{s.max_rate_ml_h} mL/h "
                    f"for {s.name}"
                )
            self._set_rate = float(rate_ml_h)
            self._record_flow()

    def set_syringe(self, syringe: Container) -> None:
        """The pump is told of another syringe (or bag): see ``set_container``."""
        self.set_container(syringe)

    def set_container(self, syringe: Container) -> None:
        """Another syringe or bag of the same kind of pump (a bag on a syringe pump, or the
        reverse, is refused); the volume left stays, up to the new container's size."""
        with self._lock:
            self._advance(self._clock.now())
            if self._running:
                raise NotApplicable("cannot change the syringe while pumping")
            if isinstance(syringe, Bag) != isinstance(self._syringe, Bag):
                raise NotApplicable(
                    f"a {self.kind} pump cannot hold {syringe.name} "
                    f"({'a bag' if isinstance(syringe, Bag) else 'a syringe'})"
                )
            self._syringe = syringe
            self._remaining = min(self._remaining, syringe.volume_ml)
            if self._line is not None and isinstance(syringe, Syringe):
                self._line.reload(syringe)
            if self._set_rate and not (
                syringe.min_rate_ml_h <= self._set_rate <= syringe.max_rate_ml_h
            ):
                self._set_rate = 0.0

    def set_direction(self, direction: Direction) -> None:
        with self._lock:
            self._advance(self._clock.now())
            if self._running and direction is not self._direction:
                # NE-1000 accepts a reversal while running; the flow turns around at once.
                self._direction = direction
                self._record_flow()
            self._direction = direction

    def set_target_volume(self, volume_ml: float | None) -> None:
        """Stop after dispensing ``volume_ml`` from the next start; None or 0: continuous."""
        with self._lock:
            if volume_ml is not None and volume_ml < 0:
                raise RateOutOfRange(f"target volume {volume_ml} mL is negative")
            self._target_ml = volume_ml or None

    def start(self) -> None:
        with self._lock:
            self._advance(self._clock.now())
            self._check_can_run()
            self._start()

    def _check_can_run(self) -> None:
        """Refuse a start the pump's sensors would refuse (raising their alarm)."""
        for present, alarm, why in (
            (self._door_open, PumpAlarm.DOOR_OPEN, "door open"),
            (self._air, PumpAlarm.AIR_IN_LINE, "air in the line"),
            (self._upstream, PumpAlarm.UPSTREAM_OCCLUSION, "upstream occlusion"),
        ):
            if present:
                self._alarms.add(alarm)
                raise NotApplicable(why)

    def _start(self) -> None:
        if self._stalled:
            self._alarms.add(PumpAlarm.STALL)
            raise NotApplicable("motor stalled")
        if self._direction is Direction.INFUSE and self._remaining <= 0.0:
            self._alarms.add(PumpAlarm.EMPTY)
            raise NotApplicable("syringe empty")
        if self._occluded and self._pressure >= self._occlusion_alarm:
            raise NotApplicable("line occluded")
        if self._set_rate <= 0.0:
            raise NotApplicable("no rate set")
        # Starting is the operator's acknowledgement of conditions that are gone.
        self._alarms -= {
            PumpAlarm.RESET,
            PumpAlarm.COMMS_TIMEOUT,
            PumpAlarm.STALL,
            PumpAlarm.AIR_IN_LINE,
            PumpAlarm.UPSTREAM_OCCLUSION,
            PumpAlarm.DOOR_OPEN,
        }
        if not self._occluded:
            self._alarms.discard(PumpAlarm.OCCLUSION)
        self._running = True
        self._dispensed_since_start = 0.0
        self._target_reached = False
        self._record_flow()

    def stop(self) -> None:
        with self._lock:
            self._advance(self._clock.now())
            self._halt()

    def prime(self, volume_ml: float, rate_ml_h: float | None = None) -> None:
        """Run at ``rate_ml_h`` (default: the container's top rate) until ``volume_ml`` is
        displaced, then stop and give back the rate and target volume set before. Where
        the fluid goes is the line's business (``connect_line``): to waste while it is not
        connected to the patient."""
        with self._lock:
            self._advance(self._clock.now())
            if self._running:
                raise NotApplicable("cannot prime while pumping")
            rate = self._syringe.max_rate_ml_h if rate_ml_h is None else rate_ml_h
            if not (self._syringe.min_rate_ml_h <= rate <= self._syringe.max_rate_ml_h):
                raise RateOutOfRange(
                    f"prime rate {rate} mL/h outside the {self._syringe.name} range"
                )
            if not (0.0 < volume_ml <= self._syringe.volume_ml):
                raise RateOutOfRange(
                    f"prime volume {volume_ml} mL outside 0-{self._syringe.volume_ml} mL"
                )
            self._check_can_run()
            restore = (self._set_rate, self._target_ml)
            self._set_rate = rate
            self._target_ml = volume_ml
            try:
                self._start()
            except NotApplicable:
                self._set_rate, self._target_ml = restore
                raise
            self._priming = True
            self._prime_restore = restore

    def connect_line(self, connected: bool) -> None:
        """The line is connected to the patient (True) or not (False: fluid to waste)."""
        with self._lock:
            now = self._clock.now()
            self._advance(now)
            if connected == self._connected:
                return
            if self._line is not None:
                # close the line's open segment here, so that what came out before this
                # instant goes where the line led then
                self._line.set_input(self._t, self._delivered_rate())
                self._line.advance(self._t)
            if connected:
                self._record_waste(self._t)
                self._connected = True
            else:
                self._waste_mark = self._line_out_ml(self._t)
                self._connected = False
            if self._line is None:
                self._route_segment(self._t, self._delivered_rate())

    def clear_volumes(self) -> None:
        with self._lock:
            self._advance(self._clock.now())
            self._infused = 0.0
            self._withdrawn = 0.0

    def clear_alarms(self) -> None:
        """Clear latched alarms whose condition is gone (a key press on the pump)."""
        with self._lock:
            self._advance(self._clock.now())
            keep = set()
            for present, alarm in (
                (self._air, PumpAlarm.AIR_IN_LINE),
                (self._upstream, PumpAlarm.UPSTREAM_OCCLUSION),
                (self._door_open, PumpAlarm.DOOR_OPEN),
            ):
                if present:
                    keep.add(alarm)
            if self._occluded:
                keep.add(PumpAlarm.OCCLUSION)
            if self._remaining <= 0.0 and PumpAlarm.EMPTY in self._alarms:
                keep.add(PumpAlarm.EMPTY)
            if self._stalled:
                keep.add(PumpAlarm.STALL)
            self._alarms &= keep

    def raise_comms_timeout(self) -> None:
        """The protocol layer's safe-mode watchdog fired: the pump stops itself."""
        with self._lock:
            self._advance(self._clock.now())
            self._alarms.add(PumpAlarm.COMMS_TIMEOUT)
            self._halt()

    def consume_ignored_command(self) -> bool:
        """True once after a power-up when the pump is set to ignore its first command."""
        with self._lock:
            if self._ignore_next_command:
                self._ignore_next_command = False
                return True
            return False

    # ----------------------------------------------------------------- faults
    def set_occlusion(self, occluded: bool) -> None:
        """Block (or clear) the downstream line. Clearing releases the stored bolus."""
        with self._lock:
            self._advance(self._clock.now())
            if occluded == self._occluded:
                return
            self._occluded = occluded
            if not occluded:
                stored = max(0.0, self._pressure - BASELINE_PRESSURE_MMHG) * self._compliance
                self._pressure = BASELINE_PRESSURE_MMHG
                if stored > 0:
                    if self._line is not None:
                        self._line.bolus(self._t, stored)
                    else:
                        self._route_bolus(self._t, stored)
            self._record_flow()

    def set_stall(self, stalled: bool) -> None:
        with self._lock:
            self._advance(self._clock.now())
            self._stalled = stalled
            if stalled and self._running:
                self._alarms.add(PumpAlarm.STALL)
                self._halt()

    def set_air_in_line(self, present: bool) -> None:
        """Air at the volumetric pump's sensor: it stops with its alarm; a start is refused
        while the air is there."""
        self._sensor_fault("air in the line", "_air", PumpAlarm.AIR_IN_LINE, present)

    def set_upstream_occlusion(self, present: bool) -> None:
        """The line between bag and pump is blocked: the pump stops with its alarm."""
        self._sensor_fault(
            "an upstream occlusion", "_upstream", PumpAlarm.UPSTREAM_OCCLUSION, present
        )

    def set_door_open(self, present: bool) -> None:
        """The pump's door is opened: flow stops at once (free-flow protection: the set's
        clamp closes, nothing runs by gravity) and the pump alarms; it will not start with
        the door open."""
        self._sensor_fault("a door", "_door_open", PumpAlarm.DOOR_OPEN, present)

    def _sensor_fault(self, what: str, attr: str, alarm: PumpAlarm, present: bool) -> None:
        with self._lock:
            if self.kind != VOLUMETRIC_PUMP:
                raise NotApplicable(f"a syringe pump has no sensor for {what}")
            self._advance(self._clock.now())
            setattr(self, attr, present)
            if present and self._running:
                self._alarms.add(alarm)
                self._halt()

    def empty_syringe(self, remaining_ml: float = 0.0) -> None:
        """Make the syringe (nearly) empty at once, e.g. to test the empty alarm."""
        with self._lock:
            self._advance(self._clock.now())
            self._remaining = max(0.0, min(remaining_ml, self._syringe.volume_ml))
            if self._remaining <= 0.0:
                self._alarms.add(PumpAlarm.EMPTY)
                self._halt()

    def reload(self, volume_ml: float | None = None) -> None:
        with self._lock:
            self._advance(self._clock.now())
            if self._running:
                raise NotApplicable("cannot reload while pumping")
            self._remaining = self._syringe.volume_ml if volume_ml is None else volume_ml
            self._alarms.discard(PumpAlarm.EMPTY)
            if self._line is not None:
                self._line.reload()

    def power_cycle(self) -> None:
        """Power lost and back: motion stops, settings survive, a reset alarm is raised."""
        with self._lock:
            self._advance(self._clock.now())
            self._halt()
            self._alarms.add(PumpAlarm.RESET)
            self._ignore_next_command = self.ignore_first_command_after_power_up

    # ----------------------------------------------------------------- internals
    def _plunger_rate(self) -> float:
        return self._set_rate if self._running else 0.0

    def _delivered_rate(self) -> float:
        if not self._running:
            return 0.0
        if self._direction is Direction.WITHDRAW:
            return -self._set_rate
        return 0.0 if self._occluded else self._set_rate

    def _record_flow(self) -> None:
        if self._line is not None:
            self._line.set_input(self._t, self._delivered_rate())
        else:
            self._route_segment(self._t, self._delivered_rate())

    def _route_segment(self, t: float, rate: float) -> None:
        """What leaves the line from ``t``: to the patient, or to waste (patient sees 0)."""
        if self._line is None:
            self._flow.record(TruthSegment(t, rate))
        if self._connected:
            self.truth.record(TruthSegment(t, rate))
        else:
            self.truth.record(TruthSegment(t, 0.0))

    def _route_bolus(self, t: float, volume: float) -> None:
        if self._line is None:
            self._flow.record(TruthBolus(t, volume))
        if self._connected:
            self.truth.record(TruthBolus(t, volume))

    def _line_out_ml(self, now: float) -> float:
        """Everything that left the line since power-up (patient and waste alike)."""
        if self._line is not None:
            return self._line.delivered_ml(now)
        return self._flow.delivered_ml(now)

    def _wasted_now(self, now: float) -> float:
        if self._connected:
            return self._wasted
        return self._wasted + max(0.0, self._line_out_ml(now) - self._waste_mark)

    def _record_waste(self, t: float) -> None:
        """Write what went to waste since the last record as one truth event."""
        if self._connected:
            return
        out = self._line_out_ml(t)
        volume = out - self._waste_mark
        self._waste_mark = out
        if volume > WASTE_EPS_ML:
            self._wasted += volume
            self.truth.record(TruthWaste(t, volume))

    def _end_prime(self) -> None:
        self._priming = False
        self._set_rate, self._target_ml = self._prime_restore
        self._target_reached = False
        self._record_waste(self._t)

    def _halt(self) -> None:
        self._running = False
        self._record_flow()
        if self._priming:
            self._end_prime()

    def _advance(self, now: float) -> None:
        """Integrate from the last instant to ``now``, stopping at events on the way; the
        delivery line (if any) follows, writing the segments that ended meanwhile."""
        self._advance_drive(now)
        if self._line is not None:
            self._line.advance(self._t)

    def _advance_drive(self, now: float) -> None:
        while now > self._t:
            if not self._running or self._set_rate <= 0.0:
                self._t = now
                return
            rate_ml_s = self._set_rate / 3600.0
            dt = now - self._t
            event: str | None = None
            if self._direction is Direction.WITHDRAW:
                room = self._syringe.volume_ml - self._remaining
                if room <= dt * rate_ml_s:
                    dt, event = room / rate_ml_s, "full"
                self._t += dt
                self._withdrawn += dt * rate_ml_s
                self._remaining = min(self._syringe.volume_ml, self._remaining + dt * rate_ml_s)
                if event == "full":
                    self._halt()
                continue
            if self._remaining <= dt * rate_ml_s:
                dt, event = self._remaining / rate_ml_s, "empty"
            if self._target_ml is not None:
                left = self._target_ml - self._dispensed_since_start
                if left <= dt * rate_ml_s:
                    dt, event = max(0.0, left) / rate_ml_s, "target"
            if self._occluded:
                to_alarm = (self._occlusion_alarm - self._pressure) * self._compliance
                if to_alarm <= dt * rate_ml_s:
                    dt, event = max(0.0, to_alarm) / rate_ml_s, "occlusion"
            moved = dt * rate_ml_s
            self._t += dt
            self._infused += moved
            self._dispensed_since_start += moved
            self._remaining = max(0.0, self._remaining - moved)
            if self._occluded:
                self._pressure += moved / self._compliance
            if event == "empty":
                self._remaining = 0.0
                self._alarms.add(PumpAlarm.EMPTY)
                self._halt()
            elif event == "target":
                self._target_reached = True
                self._halt()  # ends a prime too (``_end_prime``)
            elif event == "occlusion":
                self._pressure = self._occlusion_alarm
                self._alarms.add(PumpAlarm.OCCLUSION)
                self._halt()
