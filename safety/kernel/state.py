"""The safety kernel's state: an immutable value rebuilt by folding journal events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

from safety.alarms import AlarmBook
from safety.dosing import ProgramCheck, check_program
from safety.kernel.history import RateHistory
from safety.kernel.model import ProgramSpec, PumpAction
from safety.library import (
    BenchFluid,
    CumulativeCap,
    DrugLibrary,
    LookupProblem,
    Therapy,
    parse_diluent,
)
from safety.rules import dose_for_rate, rate_for_dose
from safety.units import BodyWeight, parse_concentration


def program_check(library: DrugLibrary, spec: ProgramSpec) -> ProgramCheck:
    """S6 for a program spec; raises RuleRefusal, UnitError, DiluentError, LookupProblem."""
    if spec.test_fluid:
        raise LookupProblem("program", f"{spec.drug!r} is a test-fluid program, not a drug")
    selection = library.select(spec.drug, profile=spec.profile, therapy=spec.therapy)
    weight = BodyWeight.parse(spec.weight_kg) if spec.weight_kg is not None else None
    return check_program(
        selection, parse_concentration(spec.concentration), parse_diluent(spec.diluent), weight
    )


def fluid_check(library: DrugLibrary, spec: ProgramSpec) -> tuple[str, BenchFluid]:
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
        )
        if value
    ]
    if filled or spec.weight_kg is not None:
        names = ", ".join([*filled, *(["weight_kg"] if spec.weight_kg is not None else [])])
        raise LookupProblem("program", f"a test fluid carries no drug: {names} must be empty")
    return library.test_fluid(spec.drug)


@dataclass(frozen=True)
class FluidProgram:
    """A test-fluid program: its dose is its flow (mL/h), it carries no drug (amount 0
    per mL, so every drug window and cap sees nothing), and only its rate limits apply."""

    spec: ProgramSpec
    fluid_id: str
    fluid: BenchFluid
    loaded_at: float
    infused_baseline_ml: float
    unit: str = "mL/h"
    cap: None = None
    amount_unit: None = None

    @property
    def key(self) -> str:
        return f"test_fluid:{self.fluid_id}"

    @property
    def what(self) -> str:
        return f"test fluid {self.fluid_id} ({self.fluid.display_name})"

    @property
    def min_rate(self) -> Fraction:
        return Fraction(self.fluid.min_rate_ml_h.value)

    @property
    def max_rate(self) -> Fraction:
        return Fraction(self.fluid.max_rate_ml_h.value)

    def hard_max_dose(self) -> Fraction:
        return self.max_rate

    @property
    def amount_per_ml(self) -> Fraction:
        return Fraction(0)

    @property
    def dose_per_ml_h(self) -> Fraction:
        return Fraction(1)

    def dose(self, rate_ml_h: Decimal | Fraction) -> Fraction:
        return Fraction(rate_ml_h)

    def exact_rate(self, dose: Fraction) -> Fraction:
        return dose

    def dose_of_amount_rate(self, amount_per_h: Fraction) -> Fraction:
        return Fraction(0)


def load_program(
    library: DrugLibrary, spec: ProgramSpec, t: float, infused_baseline_ml: float
) -> ActiveProgram | FluidProgram:
    """The program a ``ProgramLoaded`` event makes active (drug or test fluid)."""
    if spec.test_fluid:
        fid, fluid = fluid_check(library, spec)
        return FluidProgram(spec, fid, fluid, t, infused_baseline_ml)
    return ActiveProgram(spec, program_check(library, spec), t, infused_baseline_ml)


@dataclass(frozen=True)
class ActiveProgram:
    """A program the library allows (S6), with the conversions it fixes."""

    spec: ProgramSpec
    check: ProgramCheck
    loaded_at: float
    infused_baseline_ml: float

    @property
    def therapy(self) -> Therapy:
        return self.check.selection.therapy

    @property
    def unit(self) -> str:
        return self.therapy.dose_unit

    @property
    def what(self) -> str:
        return self.check.what

    @property
    def key(self) -> str:
        """What history windows are kept apart by: the drug."""
        return self.check.selection.drug_id

    @property
    def amount_unit(self) -> str:
        return "units" if self.therapy.unit.amount.value == "units" else "mcg"

    def hard_max_dose(self) -> Fraction:
        return Fraction(self.therapy.hard_max.value)

    @property
    def cap(self) -> CumulativeCap | None:
        return self.check.selection.drug.cumulative_cap

    @cached_property
    def dose_per_ml_h(self) -> Fraction:
        """Dose (therapy unit) delivered by 1 mL/h of this program."""
        return dose_for_rate(
            Fraction(1), self.therapy.unit, self.check.concentration, self.check.weight
        )

    @cached_property
    def amount_per_ml(self) -> Fraction:
        """Base amount (mcg or units) per mL."""
        return self.check.concentration.base_per_ml()

    def dose(self, rate_ml_h: Decimal | Fraction) -> Fraction:
        return Fraction(rate_ml_h) * self.dose_per_ml_h

    @cached_property
    def dose_per_amount_h(self) -> Fraction:
        """Dose (therapy unit) per base amount per hour: independent of concentration."""
        return self.dose_per_ml_h / self.amount_per_ml

    def dose_of_amount_rate(self, amount_per_h: Fraction) -> Fraction:
        return amount_per_h * self.dose_per_amount_h

    def exact_rate(self, dose: Fraction) -> Fraction:
        return rate_for_dose(dose, self.therapy.unit, self.check.concentration, self.check.weight)


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


@dataclass(frozen=True)
class KernelState:
    program: ActiveProgram | FluidProgram | None = None
    history: RateHistory = field(default_factory=RateHistory)
    # what the pump was last verified (read back) to do
    running: bool = False
    set_rate: Decimal = Decimal(0)
    # what we last told it to do
    expected_running: bool = False
    expected_rate: Decimal = Decimal(0)
    expected_cause: str = "command"
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

    def current_dose(self) -> Fraction:
        if self.program is None or not self.running:
            return Fraction(0)
        return self.program.dose(self.set_rate)
