"""Property tests for the dose-unit codec.

The issue's property: dose -> rate -> dose round-trips within the stated rounding, and
the rounded rate the pump runs never delivers more than the unrounded dose. Stated
rounding: the pump's step at that rate (``PumpResolution.step_at``), converted to dose
through the same concentration (and weight). Also: text round-trips, and no text at all
makes a parser raise anything but ``UnitError``.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safety.dosing import check_program, order_from_dose
from safety.pump_rounding import PumpResolution
from safety.units import (
    AMOUNT_MAX,
    DOSE_RATE_UNITS,
    DOSE_VALUE_MAX,
    VOLUME_MAX_ML,
    WEIGHT_MAX_KG,
    WEIGHT_MIN_KG,
    AmountUnit,
    BodyWeight,
    Concentration,
    Dimension,
    DoseRate,
    DoseRateUnit,
    FlowRate,
    UnitError,
    WeightBasedDoseRate,
    absolute_dose,
    dose_to_flow,
    dose_value_at_flow,
    fraction_to_decimal,
    make_dose,
    parse_concentration,
    parse_dose,
    parse_dose_unit,
    parse_flow,
)
from tests.conftest import shipped_library

RESOLUTION = PumpResolution()
UNITS = list(DOSE_RATE_UNITS.values())


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=Decimal(low), max_value=Decimal(high), places=places, allow_nan=False
    )


@st.composite
def concentrations(draw: st.DrawFn, dimension: Dimension) -> Concentration:
    if dimension is Dimension.UNITS:
        amount_unit = AmountUnit.UNITS
    else:
        amount_unit = draw(st.sampled_from([AmountUnit.MCG, AmountUnit.MG]))
    amount = draw(decimals("0.01", "5000", 3).filter(lambda d: d > 0))
    volume = draw(decimals("0.5", "1000", 1).filter(lambda d: d > 0))
    return Concentration(amount, amount_unit, volume)


@st.composite
def orders(
    draw: st.DrawFn,
) -> tuple[DoseRateUnit, Decimal, Concentration, BodyWeight | None]:
    unit = draw(st.sampled_from(UNITS))
    value = draw(decimals("0.0001", "300", 4))  # x 250 kg stays within DOSE_VALUE_MAX
    conc = draw(concentrations(unit.dimension))
    weight = BodyWeight(draw(decimals("0.5", "250", 2))) if unit.per_kg else None
    return unit, value, conc, weight


# ----------------------------------------------------------------------------- round trip


@given(orders())
def test_dose_to_rate_to_dose_round_trips_within_the_stated_rounding(
    order: tuple[DoseRateUnit, Decimal, Concentration, BodyWeight | None],
) -> None:
    unit, value, conc, weight = order
    dose = make_dose(value, unit)
    exact_rate = dose_to_flow(absolute_dose(dose, weight), conc)
    # exact both ways: no rounding before the pump's
    assert dose_value_at_flow(exact_rate, conc, unit, weight) == Fraction(value)

    pump_rate = Fraction(RESOLUTION.round_down(exact_rate))
    step = RESOLUTION.step_at(exact_rate)
    assert pump_rate <= exact_rate
    assert exact_rate - pump_rate < step

    delivered = dose_value_at_flow(pump_rate, conc, unit, weight)
    step_as_dose = dose_value_at_flow(step, conc, unit, weight)
    # never above the order: rounding is toward less drug
    assert delivered <= Fraction(value)
    # and short of it by less than one pump step, in dose terms
    assert Fraction(value) - delivered < step_as_dose


@given(
    unit=st.sampled_from(["mcg/min", "mcg/kg/min"]),
    value=decimals("0", "47", 3),
    strength=st.sampled_from(["4 mg/250 mL", "4 mg/1000 mL", "16 mcg/mL"]),
    kg=decimals("30", "250", 1),
)
def test_calc_path_never_delivers_above_the_order(
    unit: str, value: Decimal, strength: str, kg: Decimal
) -> None:
    """The same property through the library path ``pumpctl calc`` and the kernel use."""
    library = shipped_library()
    per_kg = (value / 70).quantize(Decimal("0.00001"))
    dose = make_dose(per_kg if unit == "mcg/kg/min" else value, DOSE_RATE_UNITS[unit])
    selection = library.select("norepinephrine", dose_unit=dose.unit)
    weight = BodyWeight(kg)
    program = check_program(selection, parse_concentration(strength), None, weight)
    order = order_from_dose(program, dose, RESOLUTION)
    assert order.dose == Fraction(dose.value)
    assert order.dose_at_pump_rate <= order.dose
    assert Fraction(order.pump_rate_ml_h) <= order.exact_rate_ml_h
    step_as_dose = dose_value_at_flow(
        RESOLUTION.step_at(order.exact_rate_ml_h), program.concentration, order.unit, weight
    )
    assert order.dose - order.dose_at_pump_rate < step_as_dose or order.dose == 0


@given(st.fractions(min_value=0, max_value=10**7))
def test_round_down_is_never_above_and_within_one_step(exact: Fraction) -> None:
    rounded = Fraction(RESOLUTION.round_down(exact))
    assert 0 <= rounded <= exact
    assert exact - rounded < RESOLUTION.step_at(exact)
    # idempotent: what the pump can run, it runs unchanged
    assert Fraction(RESOLUTION.round_down(rounded)) == rounded


# ----------------------------------------------------------------------------- text round trip


@given(unit=st.sampled_from(UNITS), value=decimals("0", str(DOSE_VALUE_MAX), 6))
def test_dose_text_round_trips(unit: DoseRateUnit, value: Decimal) -> None:
    dose = make_dose(value, unit)
    again = parse_dose(str(dose))
    assert again == dose
    assert type(again) is type(dose)
    assert isinstance(again, WeightBasedDoseRate if unit.per_kg else DoseRate)


@given(
    amount=decimals("0.000001", str(AMOUNT_MAX), 6).filter(lambda d: d > 0),
    amount_unit=st.sampled_from(list(AmountUnit)),
    volume=decimals("0.001", str(VOLUME_MAX_ML), 3).filter(lambda d: d > 0),
)
def test_concentration_text_round_trips(
    amount: Decimal, amount_unit: AmountUnit, volume: Decimal
) -> None:
    conc = Concentration(amount, amount_unit, volume)
    again = parse_concentration(str(conc))
    assert again == conc
    assert again.base_per_ml() == conc.base_per_ml()


@given(decimals("0.001", "10000", 3).filter(lambda d: d > 0))
def test_flow_text_round_trips(value: Decimal) -> None:
    flow = FlowRate(value)
    assert parse_flow(str(flow)) == flow


@given(decimals(str(WEIGHT_MIN_KG), str(WEIGHT_MAX_KG), 3))
def test_weight_text_round_trips(kg: Decimal) -> None:
    weight = BodyWeight(kg)
    assert BodyWeight.parse(str(weight)) == weight


# ----------------------------------------------------------------------------- any text


_TOKENS = st.sampled_from(
    [
        "0",
        "1",
        "9",
        ".",
        ",",
        "-",
        "+",
        "e",
        "E",
        "5",
        "0.1",
        "1e9",
        "1e-99",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        " ",
        "/",
        "//",
        "mcg",
        "µg",
        "μg",
        "ug",
        "mg",
        "g",
        "units",
        "U",
        "IU",
        "kg",
        "KG",
        "min",
        "h",
        "hr",
        "hour",
        "day",
        "mL",
        "ml",
        "L",
        "cc",
        "in",
        "per",
        "\u212a",
        "\u017f",
        "１",
        "٣",
        "\x00",
        "\t",
        "\n",
        "%",
        "_",
    ]
)
_TOKEN_TEXT = st.lists(_TOKENS, max_size=12).map("".join)
_ANY_TEXT = st.one_of(st.text(max_size=40), _TOKEN_TEXT)


@given(_ANY_TEXT)
def test_any_text_into_parse_dose_raises_only_unit_error(text: str) -> None:
    try:
        dose = parse_dose(text)
    except UnitError as exc:
        assert exc.field and exc.detail
    else:
        assert isinstance(dose, DoseRate | WeightBasedDoseRate)
        assert dose.value >= 0


@given(_ANY_TEXT)
def test_any_text_into_parse_dose_unit_raises_only_unit_error(text: str) -> None:
    try:
        unit = parse_dose_unit(text)
    except UnitError as exc:
        assert exc.field and exc.detail
    else:
        assert str(unit) in DOSE_RATE_UNITS


@given(_ANY_TEXT)
def test_any_text_into_parse_concentration_raises_only_unit_error(text: str) -> None:
    try:
        conc = parse_concentration(text)
    except UnitError as exc:
        assert exc.field and exc.detail
    else:
        assert conc.base_per_ml() > 0


@given(_ANY_TEXT)
def test_any_text_into_parse_flow_raises_only_unit_error(text: str) -> None:
    try:
        flow = parse_flow(text)
    except UnitError as exc:
        assert exc.field and exc.detail
    else:
        assert flow.ml_per_h > 0


@given(_ANY_TEXT)
def test_any_text_into_weight_raises_only_unit_error(text: str) -> None:
    try:
        weight = BodyWeight.parse(text)
    except UnitError as exc:
        assert exc.field == "weight"
    else:
        assert WEIGHT_MIN_KG <= weight.kg <= WEIGHT_MAX_KG


@given(st.one_of(st.floats(), st.integers(), st.decimals(), st.none(), st.booleans()))
def test_any_number_into_weight_raises_only_unit_error(value: object) -> None:
    try:
        weight = BodyWeight.parse(value)
    except UnitError as exc:
        assert exc.field == "weight"
    else:
        assert WEIGHT_MIN_KG <= weight.kg <= WEIGHT_MAX_KG


# --------------------------------------------------------------------------- Fraction -> Decimal
@given(
    st.fractions(max_denominator=10**15).filter(lambda f: abs(f) < 10**30),
    st.integers(min_value=0, max_value=15),
)
def test_fraction_to_decimal_rounds_half_to_even_in_plain_form(
    value: Fraction, places: int
) -> None:
    result = fraction_to_decimal(value, places)
    assert Fraction(result) == Fraction(round(value * 10**places), 10**places)  # half-even
    _sign, digits, exponent = result.as_tuple()
    assert isinstance(exponent, int) and -places <= exponent <= 0  # never 1E+3
    assert exponent == 0 or digits[-1] != 0  # no trailing zeros after the point


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        (Fraction(1, 2), 0, "0"),  # exactly half: to the even neighbour
        (Fraction(3, 2), 0, "2"),
        (Fraction(-5, 2), 0, "-2"),
        (Fraction(25, 1000), 2, "0.02"),
        (Fraction(35, 1000), 2, "0.04"),
        (Fraction(1200), 3, "1200"),
        (Fraction(-1, 10**13), 12, "0"),
        (Fraction(1, 3), 12, "0.333333333333"),
        (Fraction(10**20, 3), 1, "33333333333333333333.3"),  # past a Decimal context's 28
    ],
)
def test_fraction_to_decimal_at_the_half_and_past_28_digits(
    value: Fraction, places: int, text: str
) -> None:
    assert str(fraction_to_decimal(value, places)) == text
