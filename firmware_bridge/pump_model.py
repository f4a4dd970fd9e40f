"""The one simulated pump: physics of a syringe driver on the clinical clock.

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
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge.clock import Clock
from firmware_bridge.mechanics import DeliveryLine, Mechanics
from firmware_bridge.syringes import DEFAULT_SYRINGE, Syringe, syringe_by_name

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


class Direction(enum.StrEnum):
    INFUSE = "infuse"
    WITHDRAW = "withdraw"


class PumpModelError(Exception):
    """Base of the errors the model raises; emulators map them to protocol errors."""


class RateOutOfRange(PumpModelError):
    """The rate is outside what this syringe and mechanism can run (NE-1000 ``?OOR``)."""


class NotApplicable(PumpModelError):
    """The command cannot be applied in the current state (NE-1000 ``?NA``)."""


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
    syringe: Syringe


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


TruthEvent = TruthSegment | TruthBolus


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
    """A syringe pump: plunger, line pressure, alarms and the flow that reached the patient.

    Thread-safe: an emulator's serial thread and its fault-control thread may both call in.
    All times are read from the clinical ``clock``.
    """

    def __init__(
        self,
        clock: Clock,
        syringe: Syringe | str = DEFAULT_SYRINGE,
        *,
        loaded_volume_ml: float | None = None,
        occlusion_alarm_mmhg: float = DEFAULT_OCCLUSION_ALARM_MMHG,
        line_compliance_ml_per_mmhg: float = DEFAULT_LINE_COMPLIANCE_ML_PER_MMHG,
        near_empty_ml: float | None = None,
        ignore_first_command_after_power_up: bool = False,
        truth_sink: Callable[[TruthEvent], None] | None = None,
        mechanics: Mechanics | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._syringe = syringe_by_name(syringe) if isinstance(syringe, str) else syringe
        volume = self._syringe.volume_ml if loaded_volume_ml is None else loaded_volume_ml
        if not (0.0 <= volume <= self._syringe.volume_ml):
            raise ValueError(
                f"loaded volume {volume} mL outside 0-{self._syringe.volume_ml} mL "
                f"for syringe {self._syringe.name}"
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
        self.truth = GroundTruth(sink=truth_sink)
        self._mechanics = mechanics
        self._line: DeliveryLine | None = None
        if mechanics is not None and not mechanics.ideal:
            self._line = DeliveryLine(
                mechanics,
                self._syringe,
                self._t,
                lambda t, rate: self.truth.record(TruthSegment(t, rate)),
                lambda t, volume: self.truth.record(TruthBolus(t, volume)),
            )
            self._line.advance(self._t)
        self.truth.record(TruthSegment(self._t, 0.0))

    # ----------------------------------------------------------------- reading
    @property
    def syringe(self) -> Syringe:
        return self._syringe

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def mechanics(self) -> Mechanics | None:
        """The mechanism's imperfections (None or ideal: what is displaced is delivered)."""
        return self._mechanics

    def delivered_ml(self) -> float:
        """Volume that really reached the line since power-up, up to the clock's now: exact,
        including a part of a start-up transient not yet written to the truth."""
        with self._lock:
            now = self._clock.now()
            self._advance(now)
            if self._line is not None:
                return self._line.delivered_ml(now)
            return self.truth.delivered_ml(now)

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
                syringe=self._syringe,
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
                    f"for syringe {s.name}"
                )
            self._set_rate = float(rate_ml_h)
            self._record_flow()

    def set_syringe(self, syringe: Syringe) -> None:
        with self._lock:
            self._advance(self._clock.now())
            if self._running:
                raise NotApplicable("cannot change the syringe while pumping")
            self._syringe = syringe
            self._remaining = min(self._remaining, syringe.volume_ml)
            if self._line is not None:
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
            self._alarms -= {PumpAlarm.RESET, PumpAlarm.COMMS_TIMEOUT, PumpAlarm.STALL}
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
                        self.truth.record(TruthBolus(self._t, stored))
            self._record_flow()

    def set_stall(self, stalled: bool) -> None:
        with self._lock:
            self._advance(self._clock.now())
            self._stalled = stalled
            if stalled and self._running:
                self._alarms.add(PumpAlarm.STALL)
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
            self.truth.record(TruthSegment(self._t, self._delivered_rate()))

    def _halt(self) -> None:
        self._running = False
        self._record_flow()

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
                self._halt()
            elif event == "occlusion":
                self._pressure = self._occlusion_alarm
                self._alarms.add(PumpAlarm.OCCLUSION)
                self._halt()
