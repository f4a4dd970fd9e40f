"""A dose order turned into a pump rate (and back), with every library rule applied.

This is what ``pumpctl calc`` prints and what the safety kernel starts from when a
program is loaded: the same code, so the calculator can never promise a rate the safety
process would refuse. The rate reported is the one the pump will really run, rounded
DOWN to its resolution; the exact figure is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from safety.library import ConcentrationEntry, Selection
from safety.library.diluents import Diluent
from safety.pump_rounding import RateRounding
from safety.rules import (
    Finding,
    RuleRefusal,
    Severity,
    concentration_entry,
    diluent_findings,
    dose_for_rate,
    dose_in_unit,
    limit_findings,
    rate_for_dose,
    require_weight,
    weight_findings,
)
from safety.units import (
    AnyDoseRate,
    BodyWeight,
    Concentration,
    DoseRateUnit,
    FlowRate,
)


@dataclass(frozen=True)
class ProgramCheck:
    """A drug, concentration, diluent and weight that the library allows together (S6)."""

    selection: Selection
    concentration: Concentration
    entry: ConcentrationEntry
    diluent: Diluent | None
    weight: BodyWeight | None
    findings: tuple[Finding, ...]

    @property
    def unit(self) -> DoseRateUnit:
        return self.selection.therapy.unit

    @property
    def what(self) -> str:
        return describe(self.selection)

    def refusals(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.REFUSE]


@dataclass(frozen=True)
class DoseOrder:
    program: ProgramCheck
    dose: Fraction  # asked for, in the therapy's unit
    exact_rate_ml_h: Fraction
    pump_rate_ml_h: Decimal  # what the pump will run: rounded down
    dose_at_pump_rate: Fraction  # what that rate delivers, in the therapy's unit
    findings: tuple[Finding, ...]

    @property
    def unit(self) -> DoseRateUnit:
        return self.program.unit

    def refusals(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.REFUSE]

    def confirmations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.CONFIRM]

    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARN]


def describe(selection: Selection) -> str:
    return (
        f"{selection.drug_id} ({selection.profile.display_name}, {selection.therapy.display_name})"
    )


def check_program(
    selection: Selection,
    concentration: Concentration,
    diluent: Diluent | None,
    weight: BodyWeight | None,
) -> ProgramCheck:
    """Refuses (``RuleRefusal``) a concentration, diluent or weight the library does not
    allow; missing information that is only advisory comes back as warnings."""
    what = describe(selection)
    therapy = selection.therapy
    require_weight(therapy, weight)
    findings = weight_findings(selection.profile, weight, what)
    for finding in findings:
        raise RuleRefusal(finding)
    entry = concentration_entry(therapy, concentration, weight, what)
    for finding in diluent_findings(entry, diluent, what):
        if finding.severity is Severity.REFUSE:
            raise RuleRefusal(finding)
        findings.append(finding)
    return ProgramCheck(selection, concentration, entry, diluent, weight, tuple(findings))


def order_from_dose(
    program: ProgramCheck,
    dose: AnyDoseRate,
    resolution: RateRounding,
    *,
    soft_confirmed: bool = False,
) -> DoseOrder:
    value = dose_in_unit(dose, program.unit, program.what)
    exact = rate_for_dose(value, program.unit, program.concentration, program.weight)
    return _order(program, value, exact, resolution, soft_confirmed)


def order_from_rate(
    program: ProgramCheck,
    flow: FlowRate,
    resolution: RateRounding,
    *,
    soft_confirmed: bool = False,
) -> DoseOrder:
    exact = flow.exact
    pump = resolution.round_down(exact)
    value = dose_for_rate(Fraction(pump), program.unit, program.concentration, program.weight)
    return _order(program, value, exact, resolution, soft_confirmed)


def _order(
    program: ProgramCheck,
    value: Fraction,
    exact: Fraction,
    resolution: RateRounding,
    soft_confirmed: bool,
) -> DoseOrder:
    pump = resolution.round_down(exact)
    delivered = dose_for_rate(Fraction(pump), program.unit, program.concentration, program.weight)
    # Rounding is downward, so what the pump delivers is never above the order: checking
    # the order checks both (S1); both figures are reported.
    assert delivered <= value or value == 0
    findings = list(program.findings)
    findings += limit_findings(
        program.selection.therapy, value, program.what, soft_confirmed=soft_confirmed
    )
    return DoseOrder(program, value, exact, pump, delivered, tuple(findings))
