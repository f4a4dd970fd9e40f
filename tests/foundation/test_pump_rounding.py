"""``pumpctl calc --pump``: each family's rounding is its driver's, and always downward."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.main import main
from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.mock import MockPumpDriver
from drivers.pumps.ne1000 import Ne1000Driver
from drivers.testing import ScriptedTransport
from firmware_bridge.clock import VirtualClock
from safety.pump_rounding import ROUNDINGS, rounding_for

rates = st.fractions(min_value=Fraction(1, 100), max_value=Fraction(2000)).filter(
    lambda f: f.denominator < 10**9
)


@given(rate=rates, family=st.sampled_from(sorted(ROUNDINGS)))
def test_never_above_the_exact_rate(rate: Fraction, family: str) -> None:
    rounded = rounding_for(family).round_down(rate)
    assert Fraction(rounded) <= rate
    assert rounded > 0
    # a rounded rate rounds to itself: the pump runs it as sent
    assert rounding_for(family).round_down(Fraction(rounded)) == rounded


@given(rate=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(2000), places=6))
def test_each_family_rounds_as_its_driver(rate: Decimal) -> None:
    exact = Fraction(rate)
    ne1000 = Ne1000Driver(port="unused", transport=ScriptedTransport([]))
    harvard = HarvardDriver(port="unused", transport=ScriptedTransport([]))
    mock = MockPumpDriver(clock=VirtualClock())
    for family, driver in (("ne1000", ne1000), ("harvard", harvard), ("mock", mock)):
        ours = rounding_for(family).round_down(exact)
        assert float(ours) == driver.quantize_rate(float(rate)), family


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: generic"):
        rounding_for("baxter")


def test_calc_reports_the_family_and_its_rounding(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "calc",
        "norepinephrine",
        "--profile",
        "pediatric_icu",
        "--dose",
        "0.1 mcg/kg/min",
        "--concentration",
        "4 mg/250 mL",
        "--weight",
        "3.3",
        "--pump",
        "ne1000",
        "--json",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '"pump": "ne1000"' in out and '"rate_ml_per_h": 1.237' in out
    assert (
        main(
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
                "--pump",
                "baxter",
            ]
        )
        == 2
    )
