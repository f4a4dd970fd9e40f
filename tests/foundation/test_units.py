"""Clinical dose units: the closed set, the aliases people type, the refusals, and exact
conversion, including the five figures issue 2 says must hold.

Every refusal is a ``UnitError`` whose ``field`` names what was wrong and whose message
says what to do; nothing else may escape a parser (a traceback at the bedside is a
failure of the software, not of the user).
"""

from __future__ import annotations

import math
import textwrap
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from safety.pump_rounding import PumpResolution
from safety.units import (
    DOSE_RATE_UNITS,
    AmountUnit,
    BodyWeight,
    Concentration,
    Dimension,
    DoseRate,
    DoseRateUnit,
    FlowRate,
    TimeUnit,
    UnitError,
    WeightBasedDoseRate,
    absolute_dose,
    absolute_unit_for,
    dose_to_flow,
    dose_value_at_flow,
    flow_to_dose,
    flow_to_weight_dose,
    make_dose,
    parse_concentration,
    parse_dose,
    parse_dose_unit,
    parse_flow,
    weight_unit_for,
)

REPO = Path(__file__).resolve().parents[2]


def unit(text: str) -> DoseRateUnit:
    return DOSE_RATE_UNITS[text]


# ----------------------------------------------------------------------------- closed set


ISSUE_DOSE_UNITS = [
    "mcg/min",
    "mcg/kg/min",
    "mcg/kg/h",
    "mg/min",
    "mg/h",
    "mg/kg/h",
    "units/min",
    "units/h",
    "units/kg/h",
]


def test_closed_set_is_exactly_the_issues_list() -> None:
    assert sorted(DOSE_RATE_UNITS) == sorted(ISSUE_DOSE_UNITS)
    # ... and mL/h, the tenth, is the pump's flow unit, parsed as a flow, never a dose.
    assert parse_flow("1 mL/h") == FlowRate(Decimal(1))


@pytest.mark.parametrize("text", ISSUE_DOSE_UNITS)
def test_every_unit_in_the_closed_set_parses_to_itself(text: str) -> None:
    parsed = parse_dose_unit(text)
    assert str(parsed) == text
    assert parsed == DOSE_RATE_UNITS[text]
    dose = parse_dose(f"1.5 {text}")
    assert dose.value == Decimal("1.5")
    assert dose.unit == parsed
    expected_type = WeightBasedDoseRate if "/kg/" in text else DoseRate
    assert type(dose) is expected_type


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("ug/min", "mcg/min"),
        ("µg/min", "mcg/min"),  # U+00B5 micro sign
        ("μg/min", "mcg/min"),  # U+03BC Greek small mu
        ("\u00b5g/kg/min", "mcg/kg/min"),
        ("\u03bcg/kg/h", "mcg/kg/h"),
        ("mcg/min", "mcg/min"),
        ("microgram/min", "mcg/min"),
        ("micrograms/kg/min", "mcg/kg/min"),
        ("mg/h", "mg/h"),
        ("mg/hr", "mg/h"),
        ("mg/hour", "mg/h"),
        ("mg/hours", "mg/h"),
        ("mcg/kg/hr", "mcg/kg/h"),
        ("mcg/kg/minute", "mcg/kg/min"),
        ("mcg/mins", "mcg/min"),
        ("milligrams/min", "mg/min"),
        ("units/hr", "units/h"),
        ("unit/min", "units/min"),
        ("units/kg/hour", "units/kg/h"),
        ("mcg / kg / min", "mcg/kg/min"),
        ("  mcg/min  ", "mcg/min"),
        ("MCG/KG/MIN", "mcg/kg/min"),
        ("Mg/H", "mg/h"),
        ("UG/Kg/Hr", "mcg/kg/h"),
        ("Units/Min", "units/min"),
    ],
)
def test_aliases_people_type(typed: str, canonical: str) -> None:
    assert str(parse_dose_unit(typed)) == canonical
    assert str(parse_dose(f"2 {typed}").unit) == canonical


def test_number_and_unit_need_no_space() -> None:
    dose = parse_dose("0.1mcg/kg/min")
    assert isinstance(dose, WeightBasedDoseRate)
    assert dose.value == Decimal("0.1")


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mg/kg", ["'mg/kg'", "no time base", "/min or /h", "mg/kg/h"]),
        ("mcg/kg", ["'mcg/kg'", "no time base", "mcg/kg/min"]),
        ("units/kg", ["no time base", "units/kg/h"]),
        ("mcg", ["not a rate", "time base"]),
        ("U/min", ["'U'", "error-prone", "units"]),
        ("u/h", ["error-prone", "units"]),
        ("IU/min", ["'IU'", "error-prone", "units"]),
        ("IU", ["'IU'", "error-prone", "units"]),
        ("mcg/h", ["mcg/h", "not a supported dose unit", "mcg/min", "mcg/kg/h"]),
        ("mg/kg/min", ["mg/kg/min", "not a supported dose unit"]),
        ("units/kg/min", ["not a supported dose unit"]),
        ("mcg/min/kg", ["weight before the time", "mcg/kg/min"]),
        ("mg/h/kg", ["weight before the time"]),
        ("mL/h", ["flow rate, not a dose"]),
        ("ml/hr", ["flow rate, not a dose"]),
        ("L/h", ["flow rate, not a dose"]),
        ("mcg/day", ["unknown time unit", "'day'", "min or h"]),
        ("mcg/kg/d", ["unknown time unit", "min or h"]),
        ("g/min", ["unknown amount unit", "'g'", "mcg, mg or units"]),
        ("kg/min", ["unknown amount unit"]),
        ("mEq/h", ["unknown amount unit"]),
        ("cc/h", ["error-prone", "mL"]),
        ("mcg//min", ["empty part"]),
        ("/min", ["empty part"]),
        ("mcg/kg/min/min", ["not a dose-rate unit", "amount[/kg]/time"]),
        ("", ["is empty"]),
        ("   ", ["is empty"]),
    ],
)
def test_unit_refusals_say_what_is_wrong(text: str, says: list[str]) -> None:
    with pytest.raises(UnitError) as caught:
        parse_dose_unit(text, field="dose unit")
    assert caught.value.field == "dose unit"
    for fragment in says:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("0.1 mg/kg", "dose unit", "no time base"),
        ("0.1 mcg/kg", "dose unit", "no time base"),
        ("1 U/min", "dose unit", "error-prone"),
        ("40 IU", "dose unit", "error-prone"),
        ("1 mcg/h", "dose unit", "not a supported dose unit"),
        ("1 mcg/min/kg", "dose unit", "weight before the time"),
        ("26.25 mL/h", "dose unit", "flow rate, not a dose"),
        ("0.1", "dose", "has no unit"),
        ("mcg/min", "dose", "does not start with a number"),
        ("mg/kg", "dose", "does not start with a number"),
        ("-1 mcg/min", "dose", "negative"),
        ("NaN mcg/min", "dose", "does not start with a number"),
        ("nan mcg/min", "dose", "does not start with a number"),
        ("inf mcg/min", "dose", "does not start with a number"),
        ("Infinity mcg/kg/min", "dose", "does not start with a number"),
        ("1e9 mcg/min", "dose", "allowed range [0, 100000]"),
        ("1e400 mcg/min", "dose", "allowed range"),
        ("1e-30 mcg/min", "dose", "absurdly small"),
        ("1e-99999999 mcg/min", "dose", "absurdly small"),
        ("1.2.3 mcg/min", "dose", "not a number"),
        ("0,1 mcg/kg/min", "dose", "comma is ambiguous"),
        ("1,000 mcg/min", "dose", "comma is ambiguous"),
        ("12345678901234567890123 mcg/min", "dose", "significant digits"),
        ("", "dose", "is empty"),
        ("   ", "dose", "is empty"),
        ("garbage", "dose", "does not start with a number"),
        ("ten mcg/min", "dose", "does not start with a number"),
    ],
)
def test_dose_refusals(text: str, field: str, says: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_dose(text)
    assert caught.value.field == field
    assert says in str(caught.value)


def test_comma_is_never_a_silent_10x() -> None:
    """'0,1' (a decimal comma) once became 1 when the comma was dropped as a thousands
    separator: a tenfold dose. Any comma is refused in every quantity."""
    for parse, text in [
        (parse_dose, "0,1 mcg/kg/min"),
        (parse_flow, "2,5 mL/h"),
        (parse_concentration, "0,4 mg/100 mL"),
        (BodyWeight.parse, "7,5"),
    ]:
        with pytest.raises(UnitError, match="comma is ambiguous"):
            parse(text)


def test_zero_dose_is_meaningful_and_accepted() -> None:
    """0 mcg/min is a dose (stopped); zero is refused only where it has no meaning."""
    dose = parse_dose("0 mcg/min")
    assert isinstance(dose, DoseRate)
    assert dose.value == 0
    assert dose_to_flow(dose, parse_concentration("16 mcg/mL")) == 0


def test_weight_based_dose_without_weight_names_weight() -> None:
    dose = parse_dose("0.1 mcg/kg/min")
    conc = parse_concentration("4 mg/250 mL")
    with pytest.raises(UnitError) as caught:
        absolute_dose(dose, None)
    assert caught.value.field == "weight"
    assert "weight" in caught.value.detail and "mcg/kg/min" in caught.value.detail
    with pytest.raises(UnitError) as caught:
        dose_value_at_flow(Fraction(1), conc, unit("mcg/kg/min"), None)
    assert caught.value.field == "weight"


# ----------------------------------------------------------------------------- concentrations


@pytest.mark.parametrize(
    ("text", "amount", "amount_unit", "volume_ml", "per_ml"),
    [
        ("4 mg/250 mL", "4", AmountUnit.MG, "250", Fraction(16)),
        ("4 mg in 250 mL", "4", AmountUnit.MG, "250", Fraction(16)),
        ("4 mg per 250 mL", "4", AmountUnit.MG, "250", Fraction(16)),
        ("4mg/250mL", "4", AmountUnit.MG, "250", Fraction(16)),
        ("4 mg/1000 mL", "4", AmountUnit.MG, "1000", Fraction(4)),
        ("16 mcg/mL", "16", AmountUnit.MCG, "1", Fraction(16)),
        ("16 ug/ml", "16", AmountUnit.MCG, "1", Fraction(16)),
        ("16 µg/mL", "16", AmountUnit.MCG, "1", Fraction(16)),
        ("20 units/100 mL", "20", AmountUnit.UNITS, "100", Fraction(1, 5)),
        ("4 mg/1 L", "4", AmountUnit.MG, "1000", Fraction(4)),
        ("4 mg/L", "4", AmountUnit.MG, "1000", Fraction(4)),
        ("4 mg in 0.25 L", "4", AmountUnit.MG, "250", Fraction(16)),
        ("6 mg/100 mL", "6", AmountUnit.MG, "100", Fraction(60)),
        ("4 MG/250 ML", "4", AmountUnit.MG, "250", Fraction(16)),
    ],
)
def test_concentrations_as_labels_say_them(
    text: str, amount: str, amount_unit: AmountUnit, volume_ml: str, per_ml: Fraction
) -> None:
    conc = parse_concentration(text)
    assert conc == Concentration(Decimal(amount), amount_unit, Decimal(volume_ml))
    assert conc.base_per_ml() == per_ml
    expected_dim = Dimension.UNITS if amount_unit is AmountUnit.UNITS else Dimension.MASS
    assert conc.dimension is expected_dim


def test_same_strength_across_spellings() -> None:
    assert parse_concentration("4 mg/250 mL").same_strength(parse_concentration("16 mcg/mL"))
    assert not parse_concentration("4 mg/250 mL").same_strength(parse_concentration("4 mcg/250 mL"))
    assert not parse_concentration("16 units/mL").same_strength(parse_concentration("16 mcg/mL"))


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("", "concentration", "is empty"),
        ("   ", "concentration", "is empty"),
        ("garbage", "concentration", "not a concentration"),
        ("4 mg", "concentration", "not a concentration"),
        ("4 mcg/kg/min", "concentration", "not a concentration"),
        ("nan mg/250 mL", "concentration", "not a concentration"),
        ("4 mg/nan mL", "concentration", "not a concentration"),
        ("inf mg/250 mL", "concentration", "not a concentration"),
        ("-4 mg/250 mL", "concentration", "not a concentration"),
        ("0 mg/250 mL", "concentration amount", "outside the allowed range"),
        ("4 mg/0 mL", "concentration volume", "outside the allowed range"),
        ("1e9 mg/250 mL", "concentration", "not a concentration"),
        ("1000000000 mg/250 mL", "concentration amount", "outside the allowed range"),
        ("4 mg/20 L", "concentration volume", "outside the allowed range"),
        ("4 g/250 mL", "concentration amount unit", "unknown amount unit"),
        ("20 U/100 mL", "concentration amount unit", "error-prone"),
        ("40 IU/100 mL", "concentration amount unit", "error-prone"),
        ("4 mg/250 cc", "concentration", "error-prone"),
        ("4 mg/250 dL", "concentration", "unknown volume unit"),
        ("4 mg/. mL", "concentration volume", "not a number"),
        ("4,000 mcg/250 mL", "concentration amount", "comma is ambiguous"),
    ],
)
def test_concentration_refusals(text: str, field: str, says: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_concentration(text)
    assert caught.value.field == field
    assert says in str(caught.value)


# ----------------------------------------------------------------------------- rates, weights


@pytest.mark.parametrize(
    ("text", "expected"),
    [("26.25 mL/h", "26.25"), ("26.25 ml/hr", "26.25"), ("1 mL/hour", "1"), ("9mL/h", "9")],
)
def test_flow_parses(text: str, expected: str) -> None:
    assert parse_flow(text).ml_per_h == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("  ", "is empty"),
        ("26.25", "mL/h"),
        ("26.25 mL/min", "mL/h"),
        ("26.25 mcg/min", "mL/h"),
        ("0 mL/h", "outside the allowed range"),
        ("-1 mL/h", "outside the allowed range"),
        ("1e9 mL/h", "outside the allowed range"),
        ("nan mL/h", "does not start with a number"),
        ("inf mL/h", "does not start with a number"),
        ("1e-30 mL/h", "absurdly small"),
        ("fast", "does not start with a number"),
    ],
)
def test_flow_refusals(text: str, says: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_flow(text)
    assert caught.value.field == "rate"
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("given", "kg"),
    [("70", "70"), ("70 kg", "70"), ("70KG", "70"), (" 3.5 kg ", "3.5"), (70, "70"), (2.5, "2.5")],
)
def test_weight_parses(given: object, kg: str) -> None:
    assert BodyWeight.parse(given).kg == Decimal(kg)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("0", "outside the allowed range [0.2, 500]"),
        ("-1", "outside the allowed range"),
        ("0.1", "outside the allowed range"),
        ("1e9", "outside the allowed range"),
        ("501", "outside the allowed range"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("-inf", "finite"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        ("70 lb", "not a number"),
        ("heavy", "not a number"),
        ("7,5", "comma is ambiguous"),
        (True, "expected a number"),
        (None, "expected a number"),
        ([70], "expected a number"),
    ],
)
def test_weight_refusals(given: object, says: str) -> None:
    with pytest.raises(UnitError) as caught:
        BodyWeight.parse(given)
    assert caught.value.field == "weight"
    assert says in str(caught.value)


def test_make_dose_refuses_bad_numbers_with_the_field() -> None:
    for bad in [math.nan, math.inf, -math.inf, -1, Decimal("NaN"), Decimal("-0.5"), "x", 1e9]:
        with pytest.raises(UnitError) as caught:
            make_dose(bad, unit("mcg/min"), field="dose")
        assert caught.value.field == "dose"


# ----------------------------------------------------------------------------- the two types


def test_weight_based_and_absolute_are_different_types() -> None:
    assert not issubclass(WeightBasedDoseRate, DoseRate)
    assert not issubclass(DoseRate, WeightBasedDoseRate)
    assert isinstance(make_dose("0.5", unit("mcg/kg/min")), WeightBasedDoseRate)
    assert isinstance(make_dose("0.5", unit("mcg/min")), DoseRate)
    # Same number, different units: never equal (the 70x swap).
    assert make_dose("0.5", unit("mcg/kg/min")) != make_dose("0.5", unit("mcg/min"))


def test_construction_with_the_wrong_kind_of_unit_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="weight-based: use WeightBasedDoseRate"):
        DoseRate(Decimal("0.5"), unit("mcg/kg/min"))
    with pytest.raises(TypeError, match="not weight-based: use DoseRate"):
        WeightBasedDoseRate(Decimal("0.5"), unit("mcg/min"))


def test_weight_based_dose_reaches_a_flow_only_through_for_weight() -> None:
    dose = parse_dose("0.1 mcg/kg/min")
    assert isinstance(dose, WeightBasedDoseRate)
    conc = parse_concentration("4 mg/250 mL")
    # At run time too (data from IPC is not type-checked): refused, not misread.
    with pytest.raises(TypeError, match="for_weight"):
        dose_to_flow(dose, conc)  # type: ignore[arg-type]
    absolute = dose.for_weight(BodyWeight(Decimal(70)))
    assert absolute == DoseRate(Decimal(7), unit("mcg/min"))
    assert dose_to_flow(absolute, conc) == Fraction(105, 4)


def test_type_checker_refuses_a_weight_based_dose_where_an_absolute_one_is_due(
    tmp_path: Path,
) -> None:
    """The 70x error is a type error: mypy (strict) refuses the call without for_weight."""
    api = pytest.importorskip("mypy.api")
    code = textwrap.dedent(
        """
        from decimal import Decimal
        from safety.units import (
            BodyWeight, WeightBasedDoseRate, dose_to_flow, parse_concentration, DOSE_RATE_UNITS,
        )

        dose = WeightBasedDoseRate(Decimal("0.1"), DOSE_RATE_UNITS["mcg/kg/min"])
        conc = parse_concentration("4 mg/250 mL")
        good = dose_to_flow(dose.for_weight(BodyWeight(Decimal(70))), conc)
        bad = dose_to_flow(dose, conc)
        """
    )
    snippet = tmp_path / "snippet.py"
    snippet.write_text(code)
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {REPO}\n")
    out, err, status = api.run(
        ["--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    assert status == 1, out + err
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out
    assert "snippet.py:10:" in errors[0]
    assert '"WeightBasedDoseRate"' in errors[0] and '"DoseRate"' in errors[0]


def test_flow_to_dose_functions_refuse_the_other_kind() -> None:
    conc = parse_concentration("16 mcg/mL")
    with pytest.raises(TypeError):
        flow_to_dose(Fraction(1), conc, unit("mcg/kg/min"))
    with pytest.raises(TypeError):
        flow_to_weight_dose(Fraction(1), conc, unit("mcg/min"), BodyWeight(Decimal(70)))


def test_mass_and_units_never_convert() -> None:
    with pytest.raises(UnitError) as caught:
        dose_to_flow(parse_dose("0.03 units/min"), parse_concentration("4 mg/250 mL"))  # type: ignore[arg-type]
    assert caught.value.field == "concentration"
    dose = parse_dose("1 units/min")
    assert isinstance(dose, DoseRate)
    with pytest.raises(UnitError, match="cannot convert"):
        dose.to(unit("mcg/min"))
    wdose = parse_dose("1 mcg/kg/min")
    assert isinstance(wdose, WeightBasedDoseRate)
    with pytest.raises(UnitError, match="without a weight"):
        wdose._converted(unit("mcg/min"))


# ----------------------------------------------------------------------------- exact conversion


@pytest.mark.parametrize(
    ("dose", "target", "expected"),
    [
        ("0.06 mg/h", "mcg/min", "1"),
        ("1 mg/min", "mcg/min", "1000"),
        ("1 mcg/min", "mg/h", "0.06"),
        ("1 mg/h", "mcg/min", "16.666666666667"),  # display form: 12 places, half-even
        ("0.5 units/min", "units/h", "30"),
        ("0.1 mcg/kg/min", "mcg/kg/h", "6"),
        ("0.6 mcg/kg/h", "mcg/kg/min", "0.01"),
        ("1 mg/kg/h", "mcg/kg/min", "16.666666666667"),
    ],
)
def test_exact_unit_conversion(dose: str, target: str, expected: str) -> None:
    parsed = parse_dose(dose)
    converted = parsed.to(unit(target))
    assert converted.value == Decimal(expected)
    assert str(converted.unit) == target


@pytest.mark.parametrize(
    "weighted",
    ["1 mcg/kg/h", "0.0001 mcg/kg/h", "0.7 mg/kg/h", "0.33 units/kg/h", "0.07 mcg/kg/min"],
)
@pytest.mark.parametrize("kg", ["0.5", "3", "70.3"])
def test_for_weight_is_exact(weighted: str, kg: str) -> None:
    """The bridge between the two types never rounds, so a rate computed through it is
    the exact rate (a rounded-up bridge could push the pump one step above the order)."""
    dose = parse_dose(weighted)
    assert isinstance(dose, WeightBasedDoseRate)
    weight = BodyWeight.parse(kg)
    absolute = dose.for_weight(weight)
    assert absolute.base_per_hour() == (
        Fraction(dose.value) * dose.unit.factor_to_base_per_hour() * Fraction(weight.kg)
    )


def test_decimal_arithmetic_is_exact_where_floats_are_not() -> None:
    # 0.1 * 3 in binary floating point is 0.30000000000000004; in the units it is 0.3.
    dose = parse_dose("0.1 mcg/kg/min")
    assert isinstance(dose, WeightBasedDoseRate)
    assert dose.for_weight(BodyWeight(Decimal(3))).value == Decimal("0.3")


def test_for_weight_and_per_weight_are_inverse() -> None:
    weight = BodyWeight(Decimal(70))
    dose = parse_dose("0.1 mcg/kg/min")
    assert isinstance(dose, WeightBasedDoseRate)
    absolute = dose.for_weight(weight)
    assert absolute.value == Decimal(7)
    assert absolute.per_weight(weight, unit("mcg/kg/min")) == dose
    # mcg/kg/h has no mcg/h in the closed set: the absolute form is mg/h, which keeps the
    # value exact (mcg/min would divide by 60 and round, possibly up).
    hourly = parse_dose("1 mcg/kg/h")
    assert isinstance(hourly, WeightBasedDoseRate)
    assert hourly.for_weight(BodyWeight(Decimal(60))) == DoseRate(Decimal("0.06"), unit("mg/h"))
    assert absolute_unit_for(unit("mcg/kg/h")) == unit("mg/h")
    assert absolute_unit_for(unit("mcg/kg/min")) == unit("mcg/min")
    assert absolute_unit_for(unit("units/kg/h")) == unit("units/h")
    assert absolute_unit_for(unit("mg/h")) == unit("mg/h")
    assert weight_unit_for(unit("mg/h")) == unit("mg/kg/h")
    assert weight_unit_for(unit("mcg/min")) == unit("mcg/kg/min")
    assert weight_unit_for(unit("units/min")) == unit("units/kg/h")


# ----------------------------------------------------------------------------- issue figures


def test_figure_norepinephrine_weight_based_adult() -> None:
    """0.1 mcg/kg/min, 70 kg, 4 mg/250 mL -> 26.25 mL/h."""
    dose = parse_dose("0.1 mcg/kg/min")
    weight = BodyWeight.parse("70")
    conc = parse_concentration("4 mg/250 mL")
    exact = dose_to_flow(absolute_dose(dose, weight), conc)
    assert exact == Fraction("26.25")
    assert PumpResolution().round_down(exact) == Decimal("26.25")
    assert flow_to_weight_dose(exact, conc, unit("mcg/kg/min"), weight) == Fraction(1, 10)


def test_figure_norepinephrine_label_strength() -> None:
    """8 mcg/min at 4 mg/1000 mL -> 120 mL/h."""
    dose = parse_dose("8 mcg/min")
    assert isinstance(dose, DoseRate)
    exact = dose_to_flow(dose, parse_concentration("4 mg/1000 mL"))
    assert exact == 120
    assert PumpResolution().round_down(exact) == Decimal(120)


def test_figure_hepatorenal() -> None:
    """0.5 mg/h at 16 mcg/mL -> 31.25 mL/h."""
    dose = parse_dose("0.5 mg/h")
    assert isinstance(dose, DoseRate)
    conc = parse_concentration("16 mcg/mL")
    exact = dose_to_flow(dose, conc)
    assert exact == Fraction("31.25")
    assert PumpResolution().round_down(exact) == Decimal("31.25")
    assert flow_to_dose(exact, conc, unit("mg/h")) == Fraction(1, 2)


def test_figure_vasopressin() -> None:
    """0.03 units/min at 20 units/100 mL -> 9 mL/h."""
    dose = parse_dose("0.03 units/min")
    assert isinstance(dose, DoseRate)
    conc = parse_concentration("20 units/100 mL")
    exact = dose_to_flow(dose, conc)
    assert exact == 9
    assert flow_to_dose(exact, conc, unit("units/min")) == Fraction(3, 100)


def test_figure_rule_of_six() -> None:
    """Rule of 6 at 10 kg: 0.6 x 10 = 6 mg in 100 mL; 1 mL/h -> 0.1 mcg/kg/min."""
    weight = BodyWeight.parse("10 kg")
    conc = parse_concentration("6 mg/100 mL")
    value = flow_to_weight_dose(Fraction(1), conc, unit("mcg/kg/min"), weight)
    assert value == Fraction(1, 10)
    assert dose_value_at_flow(Fraction(1), conc, unit("mcg/kg/min"), weight) == Fraction(1, 10)
    # ... and back: 0.1 mcg/kg/min at 10 kg runs at exactly 1 mL/h.
    dose = parse_dose("0.1 mcg/kg/min")
    assert isinstance(dose, WeightBasedDoseRate)
    assert dose_to_flow(dose.for_weight(weight), conc) == 1


@pytest.mark.parametrize("kg", ["3", "7.5", "10", "23", "41.2"])
def test_rule_of_six_holds_at_any_weight(kg: str) -> None:
    weight = BodyWeight.parse(kg)
    conc = Concentration(Decimal("0.6") * weight.kg, AmountUnit.MG, Decimal(100))
    assert flow_to_weight_dose(Fraction(1), conc, unit("mcg/kg/min"), weight) == Fraction(1, 10)


# ----------------------------------------------------------------------------- pump rounding


@pytest.mark.parametrize(
    ("exact", "pump"),
    [
        (Fraction("26.25"), "26.25"),
        (Fraction(120), "120"),
        (Fraction("123.456"), "123.4"),
        (Fraction("1.23456"), "1.234"),
        (Fraction("0.123456"), "0.123"),  # the 0.001 mL/h smallest step wins here
        (Fraction("9999.99"), "9999"),
        (Fraction(1, 3), "0.333"),
        (Fraction(2, 3), "0.666"),  # down, never to nearest
        (Fraction(200, 3), "66.66"),
        (Fraction("0.001"), "0.001"),
        (Fraction("0.0009"), "0"),
        (Fraction(0), "0"),
        (Fraction(-5), "0"),
    ],
)
def test_round_down_known_values(exact: Fraction, pump: str) -> None:
    assert PumpResolution().round_down(exact) == Decimal(pump)


@pytest.mark.parametrize("power", range(-3, 8))
def test_round_down_at_and_around_powers_of_ten(power: int) -> None:
    res = PumpResolution()
    p = Fraction(10) ** power
    assert res.round_down(p) == Decimal(p.numerator) / Decimal(p.denominator)
    below = p - Fraction(1, 10**9)
    rounded = Fraction(res.round_down(below))
    assert rounded < p
    assert below - rounded < res.step_at(below)
    # the step just below a power of ten is the finer one (exact log, not float)
    if power >= 1:
        assert res.step_at(below) == max(Fraction(10) ** (power - 4), Fraction(1, 1000))


@pytest.mark.parametrize(
    "exact",
    [
        Fraction(1, 10**30),
        Fraction(1, 7 * 10**6),
        Fraction(10**16),
        Fraction(10**20) + Fraction(1, 3),
        Fraction(123456789123456789123, 7),
    ],
)
def test_round_down_tiny_and_huge_values(exact: Fraction) -> None:
    res = PumpResolution()
    rounded = res.round_down(exact)
    assert Fraction(rounded) <= exact
    assert exact - Fraction(rounded) < res.step_at(exact)
    assert len(rounded.normalize().as_tuple().digits) <= res.significant_digits or rounded == 0


def test_round_down_with_another_resolution() -> None:
    res = PumpResolution(significant_digits=3, smallest_step_ml_h=Decimal("0.01"))
    assert res.round_down(Fraction("26.25")) == Decimal("26.2")
    assert res.round_down(Fraction("0.0567")) == Decimal("0.05")
    assert res.round_down(Fraction("1234")) == Decimal("1230")


def test_time_and_amount_factors() -> None:
    assert TimeUnit.MIN.per_hour == 60
    assert TimeUnit.H.per_hour == 1
    assert AmountUnit.MG.base_factor == 1000
    assert AmountUnit.MCG.base_factor == 1
    assert AmountUnit.UNITS.dimension is Dimension.UNITS


def test_parsed_units_and_labels_are_values_and_refusals_are_raised_every_time() -> None:
    # remembered by value: the same text gives an equal (frozen) result, and a refusal
    # is never remembered as an answer, nor a field name taken from an earlier call
    assert parse_dose_unit("mcg/kg/min") == parse_dose_unit("ug/kg/min")
    assert parse_concentration("4 mg/250 mL") == parse_concentration("4 mg in 250 mL")
    for field in ("dose_unit", "dose unit", "dose_unit"):
        with pytest.raises(UnitError) as caught:
            parse_dose_unit("mg/kg", field)
        assert caught.value.field == field
    for field in ("label", "concentration", "label"):
        with pytest.raises(UnitError) as caught:
            parse_concentration("4 mg", field)
        assert caught.value.field == field
