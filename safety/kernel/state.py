"""The safety kernel's state: an immutable value rebuilt by folding journal events.

Three levels, because limits protect a patient, not a program (S16):

- the **patient** (``Patient``): profile and weight, from an operator's confirmed "new
  patient" (or the first program of a journal that has none);
- per patient and **drug** (``DrugRecord``): the verified history every window and cap
  reads, and the limits of earlier programs that still apply. A drug switch, a
  re-program, a new concentration or syringe never touches them; only a new patient
  starts fresh ones;
- the **channel** (the pump and its program): what it was told, what it was verified to
  do, and whether a command's outcome is uncertain.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

from safety.alarms import AlarmBook
from safety.dosing import ProgramCheck, check_program
from safety.kernel.history import RateHistory
from safety.kernel.model import (
    FluidLimits,
    PatientSpec,
    ProgramLimits,
    ProgramSpec,
    PumpAction,
)
from safety.library import CumulativeCap, DrugLibrary, LookupProblem, Therapy, parse_diluent
from safety.rules import dose_for_rate, rate_for_dose
from safety.units import BodyWeight, Concentration, parse_concentration


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
    unit = limits.therapy.unit
    per_h = unit.factor_to_base_per_hour()
    if unit.per_kg:
        assert limits.weight_kg is not None, "a weight-based program always has a weight"
        per_h *= Fraction(limits.weight_kg)
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
        return dose_for_rate(Fraction(1), self.therapy.unit, self.concentration, self.weight)

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


_NO_HISTORY = RateHistory()


@dataclass(frozen=True)
class KernelState:
    patient: Patient | None = None
    drugs: dict[str, DrugRecord] = field(default_factory=dict)  # never mutated: replaced
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
    interlock_enabled: bool = True
    # controller link (S8, S11)
    session: str | None = None
    last_seq: int = 0
    attached: bool = False
    hold: bool = False
    # S12, S10, S9
    estopped: bool = False
    pending: Pending | None = None
    under_retries: int = 0
    # pump comms and accuracy (S13)
    comms_ok: bool = True
    last_reading_at: float | None = None
    last_infused_ml: float | None = None
    #: a restart could not read the pump: what it gave while the process was down is
    #: counted at the first reading after it (``observe.count_unseen_delivery``)
    unseen_pending: bool = False
    deviation_since: float | None = None
    alarms: AlarmBook = field(default_factory=AlarmBook)

    @property
    def mode(self) -> Mode:
        if self.estopped:
            return Mode.EMERGENCY_STOPPED
        if self.hold:
            return Mode.HOLD
        if self.pending is not None:
            return Mode.UNCERTAIN
        if self.running:
            return Mode.INFUSING
        return Mode.PROGRAMMED if self.program is not None else Mode.IDLE

    @property
    def drug_program(self) -> ActiveProgram | None:
        """The loaded program when it is a drug's (None for none or a test fluid)."""
        program = self.program
        return program if isinstance(program, ActiveProgram) else None

    @property
    def record(self) -> DrugRecord:
        """The loaded drug's record (an empty one for none or a test fluid)."""
        program = self.drug_program
        if program is None:
            return _NO_RECORD
        return self.drugs.get(program.drug, _NO_RECORD)

    @property
    def history(self) -> RateHistory:
        """The verified history of the loaded program's drug, for this patient."""
        return self.record.history

    def priors_at(self, t: float) -> tuple[PriorLimits, ...]:
        return self.record.priors_at(t)

    def with_history(self, history: RateHistory) -> KernelState:
        """The same state with the loaded program's drug's history replaced (a planner
        simulating forward)."""
        program = self.drug_program
        assert program is not None, "a history belongs to a drug: load a drug program"
        record = self.drugs.get(program.drug, DrugRecord(limits=program.limits))
        drugs = {**self.drugs, program.drug: replace(record, history=history)}
        return replace(self, drugs=drugs)

    def current_dose(self) -> Fraction:
        if self.program is None or not self.running:
            return Fraction(0)
        return self.program.dose(self.set_rate)

    def current_amount_rate(self) -> Fraction:
        """Drug amount per hour the pump is verified to run (0 when stopped)."""
        if self.program is None or not self.running:
            return Fraction(0)
        return Fraction(self.set_rate) * self.program.amount_per_ml


_NO_RECORD = DrugRecord(_NO_HISTORY)
