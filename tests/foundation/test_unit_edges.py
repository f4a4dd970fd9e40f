"""Dose and flow values at the ends of their ranges, and conversions that must refuse,
each naming the field: 0 is a dose and a flow (a stop), a negative never is; a dose
converts only within its dimension and kind; a unit spelt with spaces is still the unit.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.units import (
    DOSE_RATE_UNITS,
    DOSE_VALUE_MAX,
    FLOW_MAX_ML_H,
    AmountUnit,
    BodyWeight,
    DoseRate,
    FlowRate,
    TimeUnit,
    UnitError,
    WeightBasedDoseRate,
    _u,
    flow_to_weight_dose,
    parse_concentration,
    parse_flow,
)

MCG_MIN = DOSE_RATE_UNITS["mcg/min"]
MCG_KG_MIN = DOSE_RATE_UNITS["mcg/kg/min"]


def test_the_unit_table_is_built_from_its_parts() -> None:
    assert _u(AmountUnit.MCG, True, TimeUnit.MIN) == MCG_KG_MIN
    assert str(_u(AmountUnit.UNITS, False, TimeUnit.H)) == "units/h"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (FlowRate, "rate"),
        (lambda v: DoseRate(v, MCG_MIN), "dose"),
        (lambda v: WeightBasedDoseRate(v, MCG_KG_MIN), "dose"),
    ],
    ids=["flow", "dose", "weight-based dose"],
)
def test_zero_is_a_value_and_anything_below_is_refused_naming_the_field(
    make: Callable[[Decimal], object], field: str
) -> None:
    assert make(Decimal(0)) is not None
    with pytest.raises(UnitError) as caught:
        make(Decimal("-0.001"))
    assert caught.value.field == field


def test_the_largest_values_are_allowed_and_one_more_is_not() -> None:
    assert FlowRate(FLOW_MAX_ML_H).ml_per_h == FLOW_MAX_ML_H
    with pytest.raises(UnitError) as caught:
        FlowRate(FLOW_MAX_ML_H + 1)
    assert caught.value.field == "rate"
    assert DoseRate(DOSE_VALUE_MAX, MCG_MIN).value == DOSE_VALUE_MAX
    with pytest.raises(UnitError) as caught:
        DoseRate(DOSE_VALUE_MAX + 1, MCG_MIN)
    assert caught.value.field == "dose"


def test_a_conversion_across_dimension_or_kind_names_the_dose_unit() -> None:
    dose = DoseRate(Decimal(8), MCG_MIN)
    with pytest.raises(UnitError) as caught:
        dose.to(DOSE_RATE_UNITS["units/min"])
    assert caught.value.field == "dose unit"
    assert "cannot convert 8 mcg/min" not in str(caught.value)  # it names the unit
    assert "mcg/min" in str(caught.value) and "units/min" in str(caught.value)
    weight = WeightBasedDoseRate(Decimal("0.1"), MCG_KG_MIN)
    with pytest.raises(UnitError) as caught:
        weight.to(MCG_MIN)
    assert caught.value.field == "dose unit"
    assert str(caught.value).endswith("cannot convert mcg/kg/min to mcg/min without a weight")


def test_a_dose_per_weight_needs_a_weight_based_unit_of_its_own_dimension() -> None:
    dose = DoseRate(Decimal(7), MCG_MIN)
    weight = BodyWeight(Decimal(70))
    assert dose.per_weight(weight, MCG_KG_MIN) == WeightBasedDoseRate(Decimal("0.1"), MCG_KG_MIN)
    for unit in ("mg/h", "units/kg/h"):
        with pytest.raises(UnitError) as caught:
            dose.per_weight(weight, DOSE_RATE_UNITS[unit])
        assert caught.value.field == "dose unit"
        assert f"{unit} is not a weight-based unit of mcg/min" in str(caught.value)


def test_flow_to_a_weight_dose_refuses_an_absolute_unit() -> None:
    conc = parse_concentration("4 mg/250 mL")
    with pytest.raises(TypeError, match=r"^flow_to_weight_dose needs a weight-based unit$"):
        flow_to_weight_dose(Fraction(30), conc, MCG_MIN, BodyWeight(Decimal(70)))
    weight_dose = flow_to_weight_dose(Fraction(30), conc, MCG_KG_MIN, BodyWeight(Decimal(80)))
    assert weight_dose == Fraction(1, 10)  # 30 mL/h x 16 mcg/mL = 8 mcg/min = 0.1 x 80 kg


@pytest.mark.parametrize("text", ["26.25 mL/h", "26.25 ml / h", "26.25 mL / hr", "26.25 mL/hour"])
def test_a_flow_is_read_with_or_without_spaces_in_its_unit(text: str) -> None:
    assert parse_flow(text) == FlowRate(Decimal("26.25"))


def test_a_concentration_says_its_strength_per_ml_in_its_base_amount() -> None:
    assert parse_concentration("4 mg/250 mL").per_ml_text() == "16 mcg/mL"
    assert parse_concentration("20 units/100 mL").per_ml_text() == "0.2 units/mL"
