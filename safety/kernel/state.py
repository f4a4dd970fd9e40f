"""The safety kernel's state: an immutable value rebuilt by folding journal events.

Three levels, because limits protect a patient, not a program or a pump (S16):

- the **patient** (``Patient``): profile and weight, from an operator's confirmed "new
  patient" (or the first program of a journal that has none);
- per patient and **drug** (``DrugRecord``): the verified history every window and cap
  reads (the patient's total of the drug, summed over every channel giving it), and the
  limits of earlier programs that still apply. A drug switch, a re-program, a new
  concentration, syringe or pump never touches them; only a new patient starts fresh
  ones;
- the **channel** (``ChannelState``: one pump with its container and program): what it
  was told, what it was verified to do, whether a command's outcome is uncertain, what
  its container holds, and its part in a relay (standby, handover).

The bench-wide parts (the controller link, the emergency stop, the alarms) sit beside
the channels in ``KernelState``.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import TypeVar

from safety.alarms import AlarmBook
from safety.dosing import ProgramCheck, check_program
from safety.kernel.history import FlowLog, RateHistory
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    FluidLimits,
    PatientSpec,
    ProgramLimits,
    ProgramSpec,
    PumpAction,
    RelayStrategy,
)
from safety.library import CumulativeCap, DrugLibrary, LookupProblem, Therapy, parse_diluent
from safety.rules import dose_for_rate, rate_for_dose
from safety.units import BodyWeight, Concentration, DoseRateUnit, parse_concentration


def program_check(library: DrugLibrary, spec: ProgramSpec) -> ProgramCheck:
    """S6 for a program spec; raises RuleRefusal, UnitError, DiluentError, LookupProblem."""
    if spec.test_fluid:
        raise LookupProblem("program", f"{spec.drug!r} is a test-fluid program, not a drug")
    selection = library.select(spec.drug, profile=spec.profile, therapy=spec.therapy)
    weight = BodyWeight.parse(spec.weight_kg) if spec.weight_kg is not None else None
    return check_program(
        selection, parse_concentration(spec.concentration), parse_diluent(spec.diluent), weight
    )


def limits_of(check: ProgramCheck, library_hash: str) -> ProgramLimits:
    """The figures a checked program is held to, in the form they are journaled."""
    selection = check.selection
    return ProgramLimits(
        drug=selection.drug_id,
        profile=selection.profile_id,
        what=check.what,
        therapy=selection.therapy,
        cap=selection.drug.cumulative_cap,
        weight_kg=check.weight.kg if check.weight is not None else None,
        library_hash=library_hash,
    )


def fluid_limits(library: DrugLibrary, spec: ProgramSpec) -> FluidLimits:
    """The test fluid a test-fluid program names; raises LookupProblem. A drug's fields
    filled in are refused: a test fluid carries no drug, concentration or patient."""
    if not spec.test_fluid:
        raise LookupProblem("program", f"{spec.drug!r} is a drug program, not a test fluid")
    filled = [
        name
        for name, value in (
            ("profile", spec.profile),
            ("therapy", spec.therapy),
            ("concentration", spec.concentration),
            ("diluent", spec.diluent),
            ("weight_kg", spec.weight_kg),
        )
        if value
    ]
    if filled:
        raise LookupProblem(
            "program", f"a test fluid carries no drug: {', '.join(filled)} must be empty"
        )
    fid, fluid = library.test_fluid(spec.drug)
    what = f"test fluid {fid} ({fluid.display_name})"
    return FluidLimits(fid, what, fluid, library.content_hash)


def load_program(library: DrugLibrary, spec: ProgramSpec, t: float) -> ActiveProgram:
    """A drug program as the kernel holds it (for readers and tests that start from a
    spec); raises as ``program_check`` does."""
    return ActiveProgram(spec, limits_of(program_check(library, spec), library.content_hash), t)


def program_of(
    spec: ProgramSpec, limits: ProgramLimits | FluidLimits, t: float, baseline_ml: float = 0.0
) -> Program:
    """The program a journaled ``ProgramLoaded`` makes active (no library needed)."""
    if isinstance(limits, FluidLimits):
        return FluidProgram(spec, limits, t, baseline_ml)
    return ActiveProgram(spec, limits, t, baseline_ml)


def dose_per_amount_h(limits: ProgramLimits) -> Fraction:
    """Dose (in the therapy's unit) per base amount (mcg or units) per hour: what turns a
    drug rate into a figure of these limits, whatever the concentration it came from."""
    return _dose_per_amount_h(limits.therapy.unit, limits.weight_kg)


@functools.lru_cache(maxsize=256)
def _dose_per_ml_h(
    unit: DoseRateUnit, concentration: Concentration, weight: BodyWeight | None
) -> Fraction:
    """``ActiveProgram.dose_per_ml_h``, remembered by value (all three are frozen; a
    refusal is raised again, not remembered). A program's conversions are cached on the
    program object, but a planner rebuilds that object from every snapshot: a closed
    loop's every decision would work them out again, exactly as before."""
    return dose_for_rate(Fraction(1), unit, concentration, weight)


@functools.lru_cache(maxsize=256)
def _dose_per_amount_h(unit: DoseRateUnit, weight_kg: Decimal | None) -> Fraction:
    """``dose_per_amount_h`` of limits with this unit and weight (all it reads of them),
    remembered by value for the same reason as ``_dose_per_ml_h`` (limits themselves
    hold the library's therapy, which cannot be a key)."""
    per_h = unit.factor_to_base_per_hour()
    if unit.per_kg:
        assert weight_kg is not None, "a weight-based program always has a weight"
        per_h *= Fraction(weight_kg)
    return 1 / per_h


def window_horizon_s(limits: ProgramLimits) -> float:
    """How long a program's limits keep mattering after it ends: its longest window."""
    therapy = limits.therapy
    windows = [float(therapy.titration.window_min.value) * 60]
    if therapy.wean.window_min is not None:
        windows.append(float(therapy.wean.window_min.value) * 60)
    if limits.cap is not None:
        windows.append(float(limits.cap.window_s))
    return max(windows)


#: history kept beyond the longest window, so a window's start is never at the cut
KEEP_MARGIN_S = 2 * 3600.0


def history_keep_for(library: DrugLibrary) -> float:
    """Clinical seconds of history every drug keeps under this library: its longest
    window (titration, wean or cap, any profile) and a margin. A drug given under a
    profile without a cap keeps enough for the profile with one that may follow."""
    windows = [0.0]
    for profile in library.model.profiles.values():
        for drug in profile.drugs.values():
            if drug.cumulative_cap is not None:
                windows.append(float(drug.cumulative_cap.window_s))
            for therapy in drug.therapies.values():
                windows.append(float(therapy.titration.window_min.value) * 60)
                if therapy.wean.window_min is not None:
                    windows.append(float(therapy.wean.window_min.value) * 60)
    return max(windows) + KEEP_MARGIN_S


@dataclass(frozen=True)
class ActiveProgram:
    """A program the library allowed (S6) when it was loaded, with the conversions it
    fixes. Built from the journaled event alone: no library needed."""

    spec: ProgramSpec
    limits: ProgramLimits
    loaded_at: float
    infused_baseline_ml: float = 0.0

    @property
    def drug(self) -> str:
        return self.limits.drug

    @property
    def therapy(self) -> Therapy:
        return self.limits.therapy

    @property
    def unit(self) -> str:
        return self.therapy.dose_unit

    @property
    def what(self) -> str:
        return self.limits.what

    @property
    def cap(self) -> CumulativeCap | None:
        return self.limits.cap

    @property
    def amount_unit(self) -> str:
        """The base amount this drug is counted in: mcg, or units."""
        return "units" if self.therapy.unit.amount.value == "units" else "mcg"

    @cached_property
    def concentration(self) -> Concentration:
        return parse_concentration(self.spec.concentration)

    @cached_property
    def weight(self) -> BodyWeight | None:
        kg = self.limits.weight_kg
        return BodyWeight(kg) if kg is not None else None

    @cached_property
    def dose_per_ml_h(self) -> Fraction:
        """Dose (therapy unit) delivered by 1 mL/h of this program."""
        return _dose_per_ml_h(self.therapy.unit, self.concentration, self.weight)

    @cached_property
    def amount_per_ml(self) -> Fraction:
        """Base amount (mcg or units) per mL."""
        return self.concentration.base_per_ml()

    def dose(self, rate_ml_h: Decimal | Fraction) -> Fraction:
        return Fraction(rate_ml_h) * self.dose_per_ml_h

    @cached_property
    def dose_per_amount_h(self) -> Fraction:
        """Dose (therapy unit) per base amount per hour: independent of concentration."""
        return dose_per_amount_h(self.limits)

    def dose_of_amount_rate(self, amount_per_h: Fraction) -> Fraction:
        return amount_per_h * self.dose_per_amount_h

    def exact_rate(self, dose: Fraction) -> Fraction:
        return rate_for_dose(dose, self.therapy.unit, self.concentration, self.weight)

    def same_solution(self, other: ProgramSpec) -> bool:
        """Same drug, strength and diluent: a re-program of what is already running."""
        return (
            other.drug == self.spec.drug
            and parse_diluent(other.diluent) == parse_diluent(self.spec.diluent)
            and parse_concentration(other.concentration).same_strength(
                self.concentration, Fraction(0)
            )
        )


@dataclass(frozen=True)
class FluidProgram:
    """A test-fluid program (water for an accuracy test): its "dose" is its flow in mL/h,
    it carries no drug (so no drug's history, window or cap sees it) and no patient, and
    only its rate limits apply."""

    spec: ProgramSpec
    limits: FluidLimits
    loaded_at: float
    infused_baseline_ml: float = 0.0

    drug: None = None
    unit: str = "mL/h"
    cap: None = None
    amount_unit: None = None

    @property
    def what(self) -> str:
        return self.limits.what

    @property
    def min_rate(self) -> Fraction:
        return Fraction(self.limits.bench_fluid.min_rate_ml_h.value)

    @property
    def max_rate(self) -> Fraction:
        return Fraction(self.limits.bench_fluid.max_rate_ml_h.value)

    @property
    def amount_per_ml(self) -> Fraction:
        return Fraction(0)

    def dose(self, rate_ml_h: Decimal | Fraction) -> Fraction:
        return Fraction(rate_ml_h)

    def exact_rate(self, dose: Fraction) -> Fraction:
        return dose


Program = ActiveProgram | FluidProgram


@dataclass(frozen=True)
class Patient:
    id: str
    spec: PatientSpec
    since: float  # clinical time the patient's histories start
    how: str  # "admitted" | "first program"

    @property
    def profile(self) -> str:
        return self.spec.profile

    @property
    def weight_kg(self) -> Decimal | None:
        return self.spec.weight_kg


@dataclass(frozen=True)
class PriorLimits:
    """Limits of an earlier program of the drug (another profile, weight, therapy or
    library) that still apply beside the current ones until ``until``: a switch can never
    be used to step around a limit whose window has not passed."""

    limits: ProgramLimits
    until: float  # clinical time
    why: str

    @cached_property
    def per_amount_h(self) -> Fraction:
        return dose_per_amount_h(self.limits)


@dataclass(frozen=True)
class DrugRecord:
    """One drug for one patient: its verified history and the limits that bind it."""

    history: RateHistory = field(default_factory=RateHistory)
    limits: ProgramLimits | None = None  # the drug's latest program's
    priors: tuple[PriorLimits, ...] = ()

    def priors_at(self, t: float) -> tuple[PriorLimits, ...]:
        return tuple(p for p in self.priors if p.until > t)

    def keep_s(self, floor: float) -> float:
        """How much history this drug needs: the longest window of any limits it has."""
        return max(floor, self._horizon)

    @cached_property
    def _horizon(self) -> float:
        windows = [window_horizon_s(p.limits) for p in self.priors]
        if self.limits is not None:
            windows.append(window_horizon_s(self.limits))
        return max(windows, default=0.0)


class Mode(enum.StrEnum):
    """A summary for people; the kernel decides on the flags, not on this."""

    IDLE = "idle"
    PROGRAMMED = "programmed"
    INFUSING = "infusing"
    HOLD = "hold"
    UNCERTAIN = "uncertain"
    EMERGENCY_STOPPED = "emergency_stopped"


@dataclass(frozen=True)
class Pending:
    """S10: a command whose acknowledgement was lost; nothing new until a readback says
    whether it took effect."""

    action: PumpAction
    previous_rate: Decimal
    previous_running: bool
    since: float
    #: a command was issued to the channel after this one (``reconcile`` leaves that
    #: one's expectation alone)
    superseded: bool = False


@dataclass(frozen=True)
class ContainerState:
    """The syringe or bag a channel holds, as far as the safety process can know it:
    what it held when loaded and what the pump's volume counter has displaced since.
    A pump does not report how full its syringe is, so the operator says it when a
    container is changed (``ContainerChanged``)."""

    name: str = ""
    kind: str = "syringe"  # "syringe" or "bag"
    volume_ml: float = 0.0  # what it held when loaded (0: not known)
    capacity_ml: float = 0.0  # what it holds when full (0: not known)
    used_ml: float = 0.0  # displaced since, by the pump's own counter
    counter_ml: float | None = None  # the pump's counter at its last reading...
    read_at: float | None = None  # ... taken then (clinical s)
    primed: bool = False  # a prime took up the pump's slack since it was loaded
    loaded_at: float | None = None

    @property
    def remaining_ml(self) -> float | None:
        if self.volume_ml <= 0:
            return None
        return max(0.0, self.volume_ml - self.used_ml)


@dataclass(frozen=True)
class Standby:
    """This channel is armed as the relief of ``for_channel`` (S15)."""

    for_channel: str
    strategy: RelayStrategy
    armed_at: float


@dataclass(frozen=True)
class Priming:
    """A prime in progress: the pump runs to waste until ``volume_ml`` is displaced."""

    volume_ml: float
    since: float
    counter_at_start: float | None


@dataclass(frozen=True)
class ContainerPause:
    """A container change in progress: stopped at ``since`` from ``rate_ml_h``, for at
    most ``max_s``; ``changed`` once the new container is in."""

    since: float
    rate_ml_h: Decimal
    max_s: float
    concentration: str = ""  # the program's at the pause ("": none or a test fluid)
    changed: bool = False
    #: the patient's total of the drug (amount per hour, every channel) when it paused
    #: (None: a test fluid): a resume restores at most this without being a titration
    #: (S4); above it, as when another channel of the drug started meanwhile, it is a rise
    total_before: Fraction | None = None

    @property
    def until(self) -> float:
        return self.since + self.max_s


@dataclass(frozen=True)
class Handover:
    """A relay handover in progress (the safety process's own, S15)."""

    from_channel: str
    to_channel: str
    strategy: RelayStrategy
    started_at: float
    steps: int  # 1 for quick
    rate_ml_h: Decimal = Decimal(0)  # the outgoing channel's rate when it began
    step: int = 0  # steps done
    step_at: float | None = None
    counter_at_step: float | None = None  # the incoming channel's counter at the step


@dataclass(frozen=True)
class ChannelState:
    """One pump with its container and program: the per-channel half of the kernel."""

    program: Program | None = None
    #: why the loaded program may not be changed until it is loaded again (None: it may)
    program_stale: str | None = None
    # what the pump was last verified (read back) to do
    running: bool = False
    set_rate: Decimal = Decimal(0)
    # what we last told it to do, since when, and why
    expected_running: bool = False
    expected_rate: Decimal = Decimal(0)
    expected_cause: str = "command"
    expected_since: float | None = None
    #: a command was sent since the last read-back (it has not been verified yet)
    unread_command: bool = False
    interlock_enabled: bool = True
    # S10, S9
    pending: Pending | None = None
    under_retries: int = 0
    # pump comms and accuracy (S13)
    comms_ok: bool = True
    #: a restart has configured the channel and not resumed it yet: its pump's link is
    #: unknown until then, whatever ``comms_ok`` said before the restart
    connecting: bool = False
    last_reading_at: float | None = None
    last_infused_ml: float | None = None
    #: a restart could not read the pump: what it gave while the process was down is
    #: counted at the first reading after it (``observe.count_unseen_delivery``)
    unseen_pending: bool = False
    deviation_since: float | None = None
    #: this channel's verified pump rates since its last reading (S13 accuracy)
    flow: FlowLog = field(default_factory=FlowLog)
    # the container, and the channel's part in a relay
    container: ContainerState = field(default_factory=ContainerState)
    standby: Standby | None = None
    priming: Priming | None = None
    pause: ContainerPause | None = None
    #: the channel that took this one's infusion over in the last handover (until this
    #: one gets a new container or program, or runs again)
    relieved_by: str | None = None
    #: when the pump was seen stopped by itself while it was told to run (the
    #: ``pump_stopped`` alarm); None again once anything else happens to the channel (a
    #: command to it, a program, a reading that shows it running). Only such a stop calls
    #: an armed standby in at once (S15): a stop the safety process or a person caused, a
    #: prime's end, or a stop from before the standby was armed never does
    stopped_itself_at: float | None = None
    #: the pump driver's registry name, from the bench's config (for people)
    driver: str = ""
    #: the serial device the channel's pump is reached through, from the bench's config
    #: (``ChannelConfigured.serial_port``; "": none or not known)
    serial_port: str = ""
    #: what the channel's pump calls itself, as its driver first heard it (``PumpNamed``;
    #: "": not known, or a replacement accepted): preset on the driver at a restart
    pump_name: str = ""
    #: the channel's pump was asked and gives no name (``PumpNamed.nameless``)
    pump_nameless: bool = False
    #: the name of another pump answering on the channel's port since its last reading
    #: (``CommsFailed.other_pump``; "": none)
    other_pump: str = ""

    @property
    def drug_program(self) -> ActiveProgram | None:
        """The loaded program when it is a drug's (None for none or a test fluid)."""
        program = self.program
        return program if isinstance(program, ActiveProgram) else None

    @property
    def drug(self) -> str | None:
        program = self.drug_program
        return program.drug if program is not None else None

    @property
    def busy(self) -> bool:
        """Running, or told to run: what 'already infusing' means for this channel."""
        return self.running or self.expected_running

    def current_dose(self) -> Fraction:
        if self.program is None or not self.running:
            return Fraction(0)
        return self.program.dose(self.set_rate)

    def current_amount_rate(self) -> Fraction:
        """Drug amount per hour the pump is verified to run (0 when stopped)."""
        if self.program is None or not self.running:
            return Fraction(0)
        return Fraction(self.set_rate) * self.program.amount_per_ml

    def licensed_amount_rate(self) -> Fraction:
        """What this channel gives the patient as far as the kernel licenses it: its
        verified rate, except that a command that lowered (or stopped) it since its last
        reading counts at once. A relay's 'start B, stop A' is two commands and two
        read-backs: the drug's total must not show both pumps at once between them (a
        spike no pump delivered would raise every window's highest dose). Delivery the
        pump does beyond a command is caught by its own read-back (S9), which then
        counts it."""
        if self.priming is not None:
            return Fraction(0)  # a prime goes to waste, never to the patient
        verified = self.current_amount_rate()
        if self.program is None or not self.unread_command:
            return verified
        expected = (
            Fraction(self.expected_rate) * self.program.amount_per_ml
            if self.expected_running
            else Fraction(0)
        )
        return min(verified, expected)

    @property
    def remaining_ml(self) -> float | None:
        return self.container.remaining_ml

    def seconds_to_empty(self) -> float | None:
        """At the verified rate, from its last reading (None: not running or unknown)."""
        remaining = self.remaining_ml
        if remaining is None or not self.running or self.set_rate <= 0 or self.priming:
            return None
        return remaining / float(self.set_rate) * 3600.0

    def empty_at(self) -> float | None:
        """Clinical time the container empties at the verified rate."""
        left = self.seconds_to_empty()
        read_at = self.container.read_at
        if left is None or read_at is None:
            return None
        return read_at + left


_NO_HISTORY = RateHistory()
_NO_CHANNEL = ChannelState()


class ChannelError(LookupError):
    """A request named no channel on a bench of several, or one the bench does not have."""


@dataclass(frozen=True)
class KernelState:
    patient: Patient | None = None
    drugs: dict[str, DrugRecord] = field(default_factory=dict)  # never mutated: replaced
    #: the bench's channels, in the order configured (never mutated: replaced)
    channels: dict[str, ChannelState] = field(default_factory=dict)
    #: one pump-enable relay for the bench, or one per channel
    interlock_scope: str = "bench"
    # controller link (S8, S11)
    session: str | None = None
    last_seq: int = 0
    attached: bool = False
    hold: bool = False
    # S12: bench-wide, an emergency stop stops every channel
    estopped: bool = False
    #: a relay handover in progress (S15)
    handover: Handover | None = None
    #: S4: the clinical time a reboot of unknown length resumed the timeline at. The
    #: timeline credits a lower bound of such a gap, which keeps history in every window
    #: longer (the safe side for caps, rises and weans) but would also keep a dose that
    #: ran before it "recent": rates before this instant license no start above the max
    #: start (the real gap may be past the titration window)
    licence_since: float | None = None
    alarms: AlarmBook = field(default_factory=AlarmBook)

    # ------------------------------------------------------------------ channels
    def channel(self, name: str) -> ChannelState:
        """The named channel (an empty one if the bench has none of that name)."""
        return self.channels.get(name, _NO_CHANNEL)

    def resolve(self, name: str | None) -> str:
        """The channel a request addresses: the named one, or the bench's only one.
        Raises ``ChannelError`` with a sentence for people."""
        names = list(self.channels)
        if name is None:
            if len(names) == 1:
                return names[0]
            if not names:
                raise ChannelError("the bench has no pump channel configured")
            raise ChannelError(
                f"the bench has {len(names)} channels ({', '.join(names)}): name the channel"
            )
        if name not in self.channels:
            known = ", ".join(names) or "none"
            raise ChannelError(f"there is no channel {name!r} (channels: {known})")
        return name

    def with_channel(self, name: str, **changes: object) -> KernelState:
        """The same state with channel ``name`` changed (created when new); the state
        itself when the channel already holds every value given (the same objects)."""
        current = self.channels.get(name)
        if current is not None and all(
            key in _CHANNEL_FIELDS and getattr(current, key) is value
            for key, value in changes.items()
        ):
            return self
        base = current if current is not None else _NO_CHANNEL
        channel = _copy_with(base, changes)
        return _copy_with(self, {"channels": {**self.channels, name: channel}})

    def drug_channels(self, drug: str) -> list[tuple[str, ChannelState]]:
        """The channels whose loaded program gives ``drug``."""
        return list(self._channels_by_drug.get(drug, ()))

    @cached_property
    def _channels_by_drug(self) -> dict[str, tuple[tuple[str, ChannelState], ...]]:
        """Every drug's channels, in the bench's order: the limits ask for them a few dozen
        times per request and read-back, and a state never changes (a new one is built)."""
        out: dict[str, list[tuple[str, ChannelState]]] = {}
        for name, c in self.channels.items():
            drug = c.drug
            if drug is not None:
                out.setdefault(drug, []).append((name, c))
        return {drug: tuple(found) for drug, found in out.items()}

    def others_amount_rate(self, drug: str, but: str) -> Fraction:
        """What every channel of ``drug`` except ``but`` gives the patient now."""
        return sum(
            (c.licensed_amount_rate() for n, c in self.drug_channels(drug) if n != but),
            Fraction(0),
        )

    def total_amount_rate(self, drug: str) -> Fraction:
        """The patient's total of ``drug`` per hour, summed over its channels."""
        return sum((c.licensed_amount_rate() for _, c in self.drug_channels(drug)), Fraction(0))

    def any_busy(self) -> bool:
        return any(c.busy for c in self.channels.values())

    def any_running(self) -> bool:
        return any(c.running for c in self.channels.values())

    # ------------------------------------------------------------------ drugs
    def record_of(self, drug: str | None) -> DrugRecord:
        if drug is None:
            return _NO_RECORD
        return self.drugs.get(drug, _NO_RECORD)

    def history_of(self, drug: str | None) -> RateHistory:
        return self.record_of(drug).history

    @property
    def mode(self) -> Mode:
        if self.estopped:
            return Mode.EMERGENCY_STOPPED
        if self.hold:
            return Mode.HOLD
        channels = self.channels.values()
        if any(c.pending is not None for c in channels):
            return Mode.UNCERTAIN
        if any(c.running for c in channels):
            return Mode.INFUSING
        return Mode.PROGRAMMED if any(c.program is not None for c in channels) else Mode.IDLE

    # ------------------------------------------------------------------ one channel
    # For readers of a one-pump bench (tests, tools, the controller's planner): the
    # bench's only channel. The kernel itself always names the channel it means.
    @property
    def only(self) -> ChannelState:
        """The bench's only channel; raises ``ChannelError`` on a bench of several."""
        if len(self.channels) > 1:
            raise ChannelError(
                f"the bench has {len(self.channels)} channels ({', '.join(self.channels)})"
            )
        return next(iter(self.channels.values()), _NO_CHANNEL)

    @property
    def program(self) -> Program | None:
        return self.only.program

    @property
    def program_stale(self) -> str | None:
        return self.only.program_stale

    @property
    def running(self) -> bool:
        return self.only.running

    @property
    def set_rate(self) -> Decimal:
        return self.only.set_rate

    @property
    def expected_running(self) -> bool:
        return self.only.expected_running

    @property
    def expected_rate(self) -> Decimal:
        return self.only.expected_rate

    @property
    def expected_cause(self) -> str:
        return self.only.expected_cause

    @property
    def expected_since(self) -> float | None:
        return self.only.expected_since

    @property
    def interlock_enabled(self) -> bool:
        return self.only.interlock_enabled

    @property
    def under_retries(self) -> int:
        return self.only.under_retries

    @property
    def last_reading_at(self) -> float | None:
        return self.only.last_reading_at

    @property
    def last_infused_ml(self) -> float | None:
        return self.only.last_infused_ml

    @property
    def deviation_since(self) -> float | None:
        return self.only.deviation_since

    @property
    def pending(self) -> Pending | None:
        return self.only.pending

    @property
    def comms_ok(self) -> bool:
        return self.only.comms_ok

    @property
    def drug_program(self) -> ActiveProgram | None:
        return self.only.drug_program

    @property
    def record(self) -> DrugRecord:
        """The only channel's drug's record (an empty one for none or a test fluid)."""
        return self.record_of(self.only.drug)

    @property
    def history(self) -> RateHistory:
        """The verified history of the only channel's drug, for this patient."""
        return self.record.history

    def priors_at(self, t: float) -> tuple[PriorLimits, ...]:
        return self.record.priors_at(t)

    def with_history(self, history: RateHistory, drug: str | None = None) -> KernelState:
        """The same state with a drug's history replaced (a planner simulating forward);
        ``drug`` None: the only channel's drug."""
        if drug is None:
            program = self.only.drug_program
            assert program is not None, "a history belongs to a drug: load a drug program"
            drug = program.drug
            limits: ProgramLimits | None = program.limits
        else:
            limits = None
        record = self.drugs.get(drug, DrugRecord(limits=limits))
        drugs = {**self.drugs, drug: replace(record, history=history)}
        return replace(self, drugs=drugs)

    def current_dose(self) -> Fraction:
        return self.only.current_dose()

    def current_amount_rate(self) -> Fraction:
        return self.only.current_amount_rate()


_NO_RECORD = DrugRecord(_NO_HISTORY)


_CHANNEL_FIELDS = frozenset(ChannelState.__dataclass_fields__)
_CHANNEL_FIELD_NAMES = tuple(ChannelState.__dataclass_fields__)
_STATE_FIELD_NAMES = tuple(KernelState.__dataclass_fields__)
_STATE_FIELDS = frozenset(_STATE_FIELD_NAMES)
_Record = TypeVar("_Record", ChannelState, KernelState)


def _copy_with(record: _Record, changes: dict[str, object]) -> _Record:
    """``dataclasses.replace(record, **changes)`` for the two records ``with_channel``
    evolves several times per read-back, at a sixth of its cost: no field introspection,
    no ``__init__`` (neither record has a ``__post_init__`` or an ``init=False`` field;
    ``tests/kernel/test_state_copy.py`` checks both). Only the dataclass fields are
    carried over, so a cached property of the old record is never read on the new one."""
    if isinstance(record, ChannelState):
        names, known = _CHANNEL_FIELD_NAMES, _CHANNEL_FIELDS
    else:
        names, known = _STATE_FIELD_NAMES, _STATE_FIELDS
    for key in changes:
        if key not in known:
            raise TypeError(f"{type(record).__name__} has no field {key!r}")
    old = record.__dict__
    new = object.__new__(type(record))
    new.__dict__.update({n: changes[n] if n in changes else old[n] for n in names})
    return new


def evolve(state: KernelState, **fields: object) -> KernelState:
    """``dataclasses.replace`` for a state of one channel (for planners and tests that
    build one): fields of ``ChannelState`` go to its only channel (``A`` when it has
    none yet), the others to the bench."""
    channel = {k: v for k, v in fields.items() if k in _CHANNEL_FIELDS}
    bench = {k: v for k, v in fields.items() if k not in _CHANNEL_FIELDS}
    state = replace(state, **bench)  # type: ignore[arg-type]
    if not channel:
        return state
    name = next(iter(state.channels), DEFAULT_CHANNEL)
    if len(state.channels) > 1:
        raise ChannelError(f"the state has {len(state.channels)} channels: name one")
    return state.with_channel(name, **channel)


def single_channel(**fields: object) -> KernelState:
    """A state with one channel, ``A``: ``fields`` as for ``evolve``."""
    return evolve(KernelState(channels={DEFAULT_CHANNEL: ChannelState()}), **fields)
