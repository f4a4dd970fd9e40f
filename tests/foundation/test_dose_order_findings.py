"""A dose order's findings sorted by what they ask of the operator (refuse, confirm,
warn), each naming the field it is about, and the refusals that stop a calculation
itself (a dose in another dimension or the other kind of unit), word for word.

Norepinephrine adult ICU standard: soft 2-35, hard 47 mcg/min; 4 mg/250 mL is 16 mcg/mL.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from safety.dosing import ProgramCheck, check_program, order_from_dose, order_from_rate
from safety.library import DrugLibrary, parse_diluent
from safety.pump_rounding import PumpResolution
from safety.reasons import Reason
from safety.rules import RuleRefusal, Severity, concentration_entry, dose_in_unit
from safety.units import (
    DOSE_RATE_UNITS,
    BodyWeight,
    DoseRate,
    FlowRate,
    WeightBasedDoseRate,
    parse_concentration,
)

ROUNDING = PumpResolution()
WHAT = "norepinephrine (Adult ICU, Standard (mcg/min))"


@pytest.fixture
def standard(library: DrugLibrary) -> ProgramCheck:
    selection = library.select("norepinephrine", profile="adult_icu", therapy="standard")
    return check_program(selection, parse_concentration("4 mg/250 mL"), parse_diluent("D5W"), None)


def _mcg_min(value: str) -> DoseRate:
    return DoseRate(Decimal(value), DOSE_RATE_UNITS["mcg/min"])


def test_a_soft_limit_unconfirmed_asks_for_confirmation_and_confirmed_warns(
    standard: ProgramCheck,
) -> None:
    asked = order_from_dose(standard, _mcg_min("36"), ROUNDING)
    assert [f.code for f in asked.confirmations()] == [Reason.SOFT_MAX]
    assert asked.refusals() == []
    assert Reason.SOFT_MAX not in [f.code for f in asked.warnings()]
    finding = asked.confirmations()[0]
    assert finding.field == "dose"
    assert finding.message == (
        f"needs confirmation: 36 mcg/min is above the soft maximum of 35 mcg/min for {WHAT}"
    )
    confirmed = order_from_dose(standard, _mcg_min("36"), ROUNDING, soft_confirmed=True)
    assert confirmed.confirmations() == []
    warned = [f for f in confirmed.warnings() if f.code is Reason.SOFT_MAX]
    assert len(warned) == 1 and warned[0].field == "dose"
    assert warned[0].message.startswith("soft limit overridden (confirmed): 36 mcg/min")


def test_the_hard_max_is_a_refusal_only(standard: ProgramCheck) -> None:
    order = order_from_dose(standard, _mcg_min("48"), ROUNDING)
    assert [f.code for f in order.refusals()] == [Reason.HARD_MAX]
    assert order.confirmations() == [] and order.warnings() == []
    assert order.refusals()[0].severity is Severity.REFUSE


def test_an_order_from_a_rate_is_unconfirmed_unless_said(standard: ProgramCheck) -> None:
    """135 mL/h at 16 mcg/mL is 36 mcg/min: above the soft maximum."""
    flow = FlowRate(Decimal(135))
    asked = order_from_rate(standard, flow, ROUNDING)
    assert asked.dose == 36 and asked.pump_rate_ml_h == 135
    assert [f.code for f in asked.confirmations()] == [Reason.SOFT_MAX]
    confirmed = order_from_rate(standard, flow, ROUNDING, soft_confirmed=True)
    assert confirmed.confirmations() == []


def test_a_checked_program_sorts_its_refusals(library: DrugLibrary) -> None:
    selection = library.select("norepinephrine", profile="adult_icu", therapy="standard")
    program = check_program(selection, parse_concentration("4 mg/250 mL"), None, None)
    assert program.refusals() == []
    assert [f.field for f in program.findings] == ["diluent"]


def test_a_dose_in_another_unit_of_the_same_kind_is_converted(standard: ProgramCheck) -> None:
    """0.48 mg/h is 8 mcg/min: converted exactly, never guessed."""
    dose = DoseRate(Decimal("0.48"), DOSE_RATE_UNITS["mg/h"])
    assert dose_in_unit(dose, DOSE_RATE_UNITS["mcg/min"], WHAT) == 8
    order = order_from_dose(standard, dose, ROUNDING)
    assert order.dose == 8 and order.pump_rate_ml_h == 30


def test_a_dose_in_another_dimension_is_refused_naming_both(standard: ProgramCheck) -> None:
    dose = DoseRate(Decimal("0.04"), DOSE_RATE_UNITS["units/min"])
    with pytest.raises(RuleRefusal) as caught:
        order_from_dose(standard, dose, ROUNDING)
    finding = caught.value.finding
    assert (finding.code, finding.severity, finding.field) == (
        Reason.DOSE_UNIT_MISMATCH,
        Severity.REFUSE,
        "dose",
    )
    assert finding.message == (
        f"refused: 0.04 units/min is in units but {WHAT} is dosed in mcg/min"
    )
    assert str(caught.value) == finding.message


def test_a_weight_based_dose_for_an_absolute_therapy_is_refused_saying_so(
    standard: ProgramCheck,
) -> None:
    dose = WeightBasedDoseRate(Decimal("0.1"), DOSE_RATE_UNITS["mcg/kg/min"])
    with pytest.raises(RuleRefusal) as caught:
        dose_in_unit(dose, DOSE_RATE_UNITS["mcg/min"], WHAT)
    finding = caught.value.finding
    assert (finding.code, finding.severity, finding.field) == (
        Reason.DOSE_UNIT_MISMATCH,
        Severity.REFUSE,
        "dose",
    )
    assert finding.message == (
        f"refused: 0.1 mcg/kg/min is weight-based but {WHAT} is dosed in mcg/min; re-enter "
        "the dose in mcg/min or choose a therapy dosed in mcg/kg/min"
    )
    absolute = _mcg_min("7")
    with pytest.raises(RuleRefusal) as caught:
        dose_in_unit(absolute, DOSE_RATE_UNITS["mcg/kg/min"], "x")
    assert caught.value.finding.message.startswith("refused: 7 mcg/min is not weight-based")


def test_a_refused_concentration_lists_each_allowed_one_as_the_library_gives_it(
    library: DrugLibrary,
) -> None:
    """Fixed strengths with their mcg/mL; a weight rule with what it makes for this
    weight, or its label alone (and a hint) without a weight."""
    adult = library.select("norepinephrine", profile="adult_icu", therapy="standard")
    with pytest.raises(RuleRefusal) as caught:
        concentration_entry(adult.therapy, parse_concentration("4 mg/500 mL"), None, WHAT)
    message = caught.value.finding.message
    assert "allowed: 4 mg/1000 mL (4 mcg/mL); 4 mg/250 mL (16 mcg/mL); 8 mg/250 mL" in message
    assert "weight rule" not in message
    child = library.select("norepinephrine", profile="pediatric_icu", therapy="weight_based")
    with pytest.raises(RuleRefusal) as caught:
        concentration_entry(child.therapy, parse_concentration("4 mg/500 mL"), None, "child")
    message = caught.value.finding.message
    assert message.endswith("(a weight rule needs the patient's weight)")
    weight = BodyWeight(Decimal(10))
    with pytest.raises(RuleRefusal) as caught:
        concentration_entry(child.therapy, parse_concentration("4 mg/500 mL"), weight, "child")
    message = caught.value.finding.message
    assert " = 6 mg/100 mL at 10 kg" in message
    assert not message.endswith("(a weight rule needs the patient's weight)")


def test_an_exact_rate_is_kept_exact(standard: ProgramCheck) -> None:
    order = order_from_dose(standard, _mcg_min("8"), ROUNDING)
    assert order.exact_rate_ml_h == Fraction(30)
    assert order.dose_at_pump_rate == 8


def test_limit_findings_ask_for_confirmation_unless_told_otherwise(library: DrugLibrary) -> None:
    from safety.rules import limit_findings

    therapy = library.select("norepinephrine", profile="adult_icu", therapy="standard").therapy
    findings = limit_findings(therapy, Fraction(36), WHAT)
    assert [f.severity for f in findings if f.code is Reason.SOFT_MAX] == [Severity.CONFIRM]


def test_a_soft_minimum_below_one_is_a_soft_minimum(library: DrugLibrary) -> None:
    """Weight-based norepinephrine's soft minimum is 0.02 mcg/kg/min: 0.019 asks for
    confirmation, 0.02 does not."""
    from safety.rules import limit_findings

    therapy = library.select("norepinephrine", profile="adult_icu", therapy="weight_based").therapy
    below = limit_findings(therapy, Fraction(19, 1000), "x")
    assert [f.code for f in below] == [Reason.SOFT_MIN]
    assert limit_findings(therapy, Fraction(2, 100), "x") == []


def test_the_advisory_starts_above_its_threshold_not_at_it(library: DrugLibrary) -> None:
    """Standard norepinephrine warns above 10 mcg/min: 10 itself is quiet."""
    from safety.rules import limit_findings

    therapy = library.select("norepinephrine", profile="adult_icu", therapy="standard").therapy
    assert limit_findings(therapy, Fraction(10), WHAT) == []
    assert [f.code for f in limit_findings(therapy, Fraction(1001, 100), WHAT)] == [Reason.ADVISORY]
