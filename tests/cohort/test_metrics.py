"""Varvel's performance errors and the clinical shares of time (pure, property-tested)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verification.cohort.metrics import Performance, cohort_medians, performance, slope_per_hour

maps = st.lists(st.floats(20.0, 200.0), min_size=1, max_size=200)


def perf(values: list[float], target: float = 80.0, band: float = 5.0) -> Performance:
    return performance([2.0 * i for i in range(len(values))], values, target, band, 85.0)


def test_on_target_all_errors_are_zero() -> None:
    p = perf([80.0] * 50)
    assert (p.mdpe, p.mdape, p.wobble, p.divergence) == (0.0, 0.0, 0.0, 0.0)
    assert p.in_band == 100.0 and p.below_65 == 0.0 and p.below_90pct_baseline == 0.0


def test_known_values() -> None:
    # PE: -10, 0, +10, +20 (%) around 80 mmHg
    p = perf([72.0, 80.0, 88.0, 96.0])
    assert p.mdpe == pytest.approx(5.0)
    assert p.mdape == pytest.approx(10.0)
    assert p.wobble == pytest.approx(10.0)  # |PE - 5| = 15, 5, 5, 15
    assert p.below_band == 25.0 and p.above_band == 50.0 and p.in_band == 25.0


@pytest.mark.parametrize(("value", "inside"), [(85.0, True), (85.0 + 1e-9, False), (75.0, True)])
def test_band_edge_is_inside_and_a_hair_past_it_is_not(value: float, inside: bool) -> None:
    assert (perf([value]).in_band == 100.0) is inside


@pytest.mark.parametrize(("value", "below"), [(65.0, False), (64.999, True)])
def test_hypotension_threshold(value: float, below: bool) -> None:
    assert (perf([value]).below_65 == 100.0) is below


@given(maps)
def test_shares_add_up_and_errors_are_consistent(values: list[float]) -> None:
    p = perf(values)
    assert p.in_band + p.below_band + p.above_band == pytest.approx(100.0)
    assert p.mdape >= abs(p.mdpe) - 1e-9
    assert p.wobble >= 0 and p.mdape >= 0
    figures = p.to_json()
    assert all(math.isfinite(x) for x in figures.values())
    assert figures["n"] == len(values) and isinstance(figures["n"], int)


@given(maps, st.floats(-30.0, 30.0))
def test_a_shift_moves_the_bias_not_the_wobble(values: list[float], shift: float) -> None:
    a, b = perf(values), perf([v + shift for v in values])
    assert b.mdpe == pytest.approx(a.mdpe + 100.0 * shift / 80.0, abs=1e-6)
    assert b.wobble == pytest.approx(a.wobble, abs=1e-6)


@given(st.floats(-50.0, 50.0), st.floats(-100.0, 100.0), st.integers(2, 100))
def test_divergence_is_the_slope_per_hour(slope: float, offset: float, n: int) -> None:
    times = [60.0 * i for i in range(n)]  # one a minute
    values = [offset + slope * t / 3600.0 for t in times]
    assert slope_per_hour(times, values) == pytest.approx(slope, abs=1e-6)


def test_divergence_of_a_converging_run_is_negative() -> None:
    values = [80.0 - 20.0 * math.exp(-i / 300.0) for i in range(1800)]
    assert perf(values).divergence < 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="as many times"):
        performance([0.0], [], 80.0, 5.0, 90.0)
    with pytest.raises(ValueError, match="target"):
        performance([0.0], [80.0], 0.0, 5.0, 90.0)


def test_cohort_figures_are_medians_across_runs() -> None:
    runs = [perf([80.0] * 10), perf([88.0] * 10), perf([72.0] * 5 + [80.0] * 5)]
    medians = cohort_medians(runs)
    assert medians["in_band"] == 50.0  # 100, 0, 50
    assert medians["mdape"] == pytest.approx(5.0)  # 0, 10, 5
    assert cohort_medians([]) == {}
