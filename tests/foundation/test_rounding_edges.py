"""Pump rounding at its edges: a rate exactly representable stays as it is, anything
less goes one step down, nothing at or below zero becomes a rate, and a decimal form that
rounding pushed onto the next representable value is stepped back below the exact rate.

The step at a rate comes from its decimal exponent, exactly (a float log10 is off just
below a power of ten), so the exponent is pinned on both sides of every power of ten.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safety.pump_rounding import ROUNDINGS, PumpResolution, _decimal_exponent, rounding_for


@given(
    value=st.fractions(min_value=Fraction(1, 10**12), max_value=Fraction(10**12)).filter(
        lambda f: f > 0
    )
)
def test_decimal_exponent_brackets_the_value(value: Fraction) -> None:
    e = _decimal_exponent(value)
    assert Fraction(10) ** e <= value < Fraction(10) ** (e + 1)


@pytest.mark.parametrize("power", [-6, -3, -1, 0, 1, 2, 3, 15])
def test_decimal_exponent_at_and_next_to_each_power_of_ten(power: int) -> None:
    at = Fraction(10) ** power
    assert _decimal_exponent(at) == power
    assert _decimal_exponent(at * Fraction(10**16 - 1, 10**16)) == power - 1
    assert _decimal_exponent(at * Fraction(10**16 + 1, 10**16)) == power


@pytest.mark.parametrize("family", sorted(ROUNDINGS))
@pytest.mark.parametrize("rate", [Fraction(0), Fraction(-1), Fraction(-1, 10**9)])
def test_nothing_at_or_below_zero_becomes_a_rate(family: str, rate: Fraction) -> None:
    assert rounding_for(family).round_down(rate) == 0


@pytest.mark.parametrize(
    ("family", "below_one"),
    [("ne1000", "0.999"), ("harvard", "0.9999"), ("mock", "0.9999"), ("generic", "0.999")],
)
def test_a_value_just_below_a_representable_rate_goes_one_step_down(
    family: str, below_one: str
) -> None:
    """0.9999999999999999 is 1.000 at 15 decimal places: the pump must run the step below
    1 (0.999 mL/h where the family's format stops at 3 decimals)."""
    rounding = rounding_for(family)
    assert rounding.round_down(Fraction(1)) == 1
    assert rounding.round_down(Fraction(10**16 - 1, 10**16)) == Decimal(below_one)
    assert rounding.round_down(Fraction(180)) == 180
    assert rounding.round_down(Fraction(180) - Fraction(1, 10**20)) == Decimal("179.9")


def test_the_generic_resolution_has_a_smallest_step() -> None:
    """4 significant digits, but never finer than 0.001 mL/h."""
    generic = PumpResolution()
    assert generic.round_down(Fraction(1234567, 10**9)) == Decimal("0.001")
    assert generic.round_down(Fraction(9, 10**4)) == 0
    assert generic.step_at(Fraction(0)) == Fraction(1, 1000)
    assert generic.step_at(Fraction(5, 10**4)) == Fraction(1, 1000)
    assert generic.step_at(Fraction(1234)) == 1
    assert generic.step_at(Fraction(1000)) == 1
    assert generic.step_at(Fraction(999)) == Fraction(1, 10)


def test_each_rounding_says_how_it_rounds() -> None:
    assert PumpResolution().describe() == (
        "down to 4 significant digits, steps of at least 0.001 mL/h"
    )
    assert rounding_for("mock").describe() == "down to 4 significant digits"
    assert rounding_for("harvard").describe() == (
        "down to 4 significant digits (Harvard / KD Scientific)"
    )


@pytest.mark.parametrize(
    ("value", "exponent"),
    [
        # just above 10, where the float estimate says 0: the second loop must climb
        (Fraction(68205788225988518114272131, 6820578822598851811427213), 1),
        # the same just above 10^-2 (the climb must end at -2, not at any fixed exponent)
        (Fraction(8104658089900001, 810465808990000000), -2),
        # just below 10, where the float estimate says 1: the first loop must come down
        (Fraction(17714972178192810483506639, 1771497217819281048350664), 0),
    ],
)
def test_decimal_exponent_where_the_float_estimate_is_off_by_one(
    value: Fraction, exponent: int
) -> None:
    assert _decimal_exponent(value) == exponent
