"""Pure limit rules shared by ``pumpctl calc``, the safety kernel and the planner.

One implementation of each rule, so the controller's pre-check, the operator's
explanation and the safety process's verdict can never diverge. Every function here is
pure: no clock, no I/O, no state. Findings carry a reason code, a severity and a sentence
an operator understands.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from safety.library import ConcentrationEntry, Profile, Therapy
from safety.library.diluents import Diluent
from safety.reasons import Reason
from safety.units import (
    AnyDoseRate,
    BodyWeight,
    Concentration,
    DoseRateUnit,
    UnitError,
    WeightBasedDoseRate,
    dose_value_at_flow,
    format_decimal,
    fraction_to_decimal,
)


class Severity(enum.StrEnum):
    REFUSE = "refuse"  # hard: the entry must be changed
    CONFIRM = "confirm"  # soft: needs an explicit confirmation, which is logged
    WARN = "warn"  # advisory only


@dataclass(frozen=True)
class Finding:
    code: Reason
    severity: Severity
    message: str
    field: str | None = None


class RuleRefusal(Exception):
    """A rule that stops the calculation itself (e.g. a dose-unit mismatch)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def num(value: Fraction | Decimal | int, digits: int = 6) -> str:
    """A figure for an operator: up to ``digits`` significant digits, no exponent."""
    if isinstance(value, Decimal):
        return _decimal_figure(value, digits)
    # Remembered by exact value: every verdict words its figures, accepted ones too,
    # and a run asks for the same few doses and rates again and again. A Decimal is not
    # (``Decimal("1.0") == Decimal("1.00")``, whose words may differ).
    return _fraction_figure(Fraction(value), digits)


@functools.lru_cache(maxsize=512)  # small: the safety process keeps its memory low
def _fraction_figure(value: Fraction, digits: int) -> str:
    return _decimal_figure(fraction_to_decimal(value, 12), digits)


def _decimal_figure(d: Decimal, digits: int) -> str:
    if d == 0:
        return "0"
    rounded = round(d, max(0, digits - d.adjusted() - 1))
    return format_decimal(Decimal(rounded))


# --------------------------------------------------------------------------- doses


def dose_in_unit(dose: AnyDoseRate, unit: DoseRateUnit, what: str) -> Fraction:
    """The dose expressed in the therapy's unit; weight-based and absolute never mix."""
    if dose.unit.dimension is not unit.dimension:
        raise RuleRefusal(
            Finding(
                Reason.DOSE_UNIT_MISMATCH,
                Severity.REFUSE,
                f"refused: {dose} is in {dose.unit.amount} but {what} is dosed in {unit}",
                "dose",
            )
        )
    if isinstance(dose, WeightBasedDoseRate) != unit.per_kg:
        kind = "weight-based" if isinstance(dose, WeightBasedDoseRate) else "not weight-based"
        raise RuleRefusal(
            Finding(
                Reason.DOSE_UNIT_MISMATCH,
                Severity.REFUSE,
                f"refused: {dose} is {kind} but {what} is dosed in {unit}; re-enter the "
                f"dose in {unit} or choose a therapy dosed in {dose.unit}",
                "dose",
            )
        )
    factor = dose.unit.factor_to_base_per_hour() / unit.factor_to_base_per_hour()
    return Fraction(dose.value) * factor


def rate_for_dose(
    value: Fraction, unit: DoseRateUnit, concentration: Concentration, weight: BodyWeight | None
) -> Fraction:
    """Exact mL/h that delivers a dose ``value`` in ``unit``."""
    _check_dimension(unit, concentration)
    per_h = value * unit.factor_to_base_per_hour()
    if unit.per_kg:
        if weight is None:
            raise UnitError("weight", f"a dose in {unit} needs the patient's weight (kg)")
        per_h *= Fraction(weight.kg)
    return per_h / concentration.base_per_ml()


def dose_for_rate(
    ml_per_h: Fraction,
    unit: DoseRateUnit,
    concentration: Concentration,
    weight: BodyWeight | None,
) -> Fraction:
    """Exact dose value in ``unit`` delivered at ``ml_per_h``."""
    _check_dimension(unit, concentration)
    return dose_value_at_flow(ml_per_h, concentration, unit, weight)


def _check_dimension(unit: DoseRateUnit, concentration: Concentration) -> None:
    if unit.dimension is not concentration.dimension:
        raise RuleRefusal(
            Finding(
                Reason.CONCENTRATION_NOT_ALLOWED,
                Severity.REFUSE,
                f"refused: a dose in {unit} cannot come from a concentration in "
                f"{concentration.amount_unit}",
                "concentration",
            )
        )


# --------------------------------------------------------------------------- S1, S2


def limit_findings(
    therapy: Therapy, value: Fraction, what: str, *, soft_confirmed: bool = False
) -> list[Finding]:
    """Hard max (S1), soft limits (S2) and the advisory threshold for a dose value."""
    unit = therapy.dose_unit
    findings: list[Finding] = []
    hard = therapy.hard_max
    if value > Fraction(hard.value):
        findings.append(
            Finding(
                Reason.HARD_MAX,
                Severity.REFUSE,
                f"refused: {num(value)} {unit} is above the hard maximum of "
                f"{num(hard.value)} {unit} for {what} (source: {hard.source})",
                "dose",
            )
        )
        return findings
    soft_max, soft_min = therapy.soft_max, therapy.soft_min
    if value > Fraction(soft_max.value):
        findings.append(
            _soft(
                Reason.SOFT_MAX,
                soft_confirmed,
                f"{num(value)} {unit} is above the soft maximum of {num(soft_max.value)} {unit} "
                f"for {what}",
            )
        )
    elif 0 < value < Fraction(soft_min.value):
        findings.append(
            _soft(
                Reason.SOFT_MIN,
                soft_confirmed,
                f"{num(value)} {unit} is below the soft minimum of {num(soft_min.value)} {unit} "
                f"for {what}",
            )
        )
    warn = therapy.warn_above
    if warn is not None and value > Fraction(warn.value):
        note = f": {warn.note}" if warn.note else ""
        findings.append(
            Finding(
                Reason.ADVISORY,
                Severity.WARN,
                f"advisory: {num(value)} {unit} is above {num(warn.value)} {unit}{note}",
                "dose",
            )
        )
    return findings


def _soft(code: Reason, confirmed: bool, sentence: str) -> Finding:
    if confirmed:
        return Finding(
            code, Severity.WARN, f"soft limit overridden (confirmed): {sentence}", "dose"
        )
    return Finding(code, Severity.CONFIRM, f"needs confirmation: {sentence}", "dose")


# --------------------------------------------------------------------------- S6


def concentration_entry(
    therapy: Therapy,
    concentration: Concentration,
    weight: BodyWeight | None,
    what: str,
) -> ConcentrationEntry:
    """The library entry for this concentration, or a refusal listing what is allowed."""
    entry = therapy.allowed_concentration(concentration, weight)
    if entry is None:
        allowed = "; ".join(_describe_entry(e, weight) for e in therapy.concentrations)
        needs_weight = any(e.rule is not None for e in therapy.concentrations) and weight is None
        hint = " (a weight rule needs the patient's weight)" if needs_weight else ""
        raise RuleRefusal(
            Finding(
                Reason.CONCENTRATION_NOT_ALLOWED,
                Severity.REFUSE,
                f"refused: {concentration} ({concentration.per_ml_text()}) is not an allowed "
                f"concentration for {what}; allowed: {allowed}{hint}",
                "concentration",
            )
        )
    return entry


def _describe_entry(entry: ConcentrationEntry, weight: BodyWeight | None) -> str:
    conc = entry.concentration(weight)
    if conc is None:
        return entry.label
    if entry.rule is not None:
        return f"{entry.label} = {conc} at {weight}"
    return f"{entry.label} ({conc.per_ml_text()})"


def diluent_findings(
    entry: ConcentrationEntry, diluent: Diluent | None, what: str
) -> list[Finding]:
    allowed = ", ".join(f"{d.value} ({d.description})" for d in entry.diluents)
    if diluent is None:
        return [
            Finding(
                Reason.DILUENT_NOT_ALLOWED,
                Severity.WARN,
                f"diluent not given: {entry.label} for {what} must be made in {allowed}",
                "diluent",
            )
        ]
    if diluent not in entry.diluents:
        reason = ""
        if not diluent.contains_dextrose and all(d.contains_dextrose for d in entry.diluents):
            reason = " (a dextrose-containing diluent is required)"
        return [
            Finding(
                Reason.DILUENT_NOT_ALLOWED,
                Severity.REFUSE,
                f"refused: {diluent.value} ({diluent.description}) is not an allowed diluent "
                f"for {what} at {entry.label}{reason}; allowed: {allowed}",
                "diluent",
            )
        ]
    return []


def weight_findings(profile: Profile, weight: BodyWeight | None, what: str) -> list[Finding]:
    if weight is None:
        return []
    rng = profile.weight_kg
    if not (rng.min <= weight.kg <= rng.max):
        return [
            Finding(
                Reason.WEIGHT_OUT_OF_RANGE,
                Severity.REFUSE,
                f"refused: {weight} is outside the {profile.display_name} weight range "
                f"{num(rng.min)}-{num(rng.max)} kg for {what}",
                "weight",
            )
        ]
    return []


def require_weight(therapy: Therapy, weight: BodyWeight | None) -> None:
    if therapy.weight_based and weight is None:
        raise UnitError(
            "weight", f"{therapy.dose_unit} is weight-based: give the patient's weight in kg"
        )
