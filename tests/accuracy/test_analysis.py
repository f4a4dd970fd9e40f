"""The accuracy analysis against weight series whose figures are known in closed form.

- constant flow r(1 + a): a flat trumpet at A = 100 a, no start-up delay;
- flow r(1 + b sin(2 pi t / T)): Ep(max/min)(P) = A +- 100 b T/(pi P) |sin(pi P / T)|, hit
  exactly when T = 4 min (every optimal window starts on the 30 s grid);
- a step of the flow: the trumpet spans from before to after;
- slack + first-order lag: the start-up delay is t_contact + tau;
plus properties any series must keep (invariance, ordering) and the explicit treatment of
irregular and missing readings.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.accuracy.analysis import AnalysisError, Settings, analyse

S = 0.5  # min
D = 0.9982


def series(
    flow_volume: object, minutes: float = 120.0, step: float = S
) -> tuple[list[float], list[float]]:
    """Readings every ``step`` min of a volume function V(t) (mL, t in min)."""
    n = round(minutes / step)
    times = [i * step * 60.0 for i in range(n + 1)]
    masses = [D * flow_volume(i * step) for i in range(n + 1)]  # type: ignore[operator]
    return times, masses


def test_constant_flow_gives_a_flat_trumpet_at_a() -> None:
    r, a = 5.0, 0.013
    times, masses = series(lambda t: r * (1 + a) * t / 60.0)
    result = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D))
    assert result.main.mean_error_pct == pytest.approx(1.3, abs=1e-9)
    for tr in result.main.trumpet:
        assert tr.max_pct == pytest.approx(1.3, abs=1e-9)
        assert tr.min_pct == pytest.approx(1.3, abs=1e-9)
        assert tr.windows == round((60 - tr.window_min) / S) + 1  # m = (T2 - P)/S + 1
    assert result.startup_delay_min == pytest.approx(0.0, abs=1e-9)
    assert result.steady_flow_min == 0.0
    # 1 uL at 5.065 mL/h
    assert result.first_delivery_min == pytest.approx(0.001 / (r * (1 + a)) * 60, rel=1e-9)
    assert len(result.flows_ml_h) == 240 and result.flows_ml_h[0] == pytest.approx(5.065)


@pytest.mark.parametrize("b", [0.02, 0.1])
def test_sinusoidal_flow_gives_the_closed_form_trumpet(b: float) -> None:
    r, period = 2.0, 4.0
    w = 2 * math.pi / period

    def volume(t: float) -> float:
        return r / 60.0 * (t - b / w * (math.cos(w * t) - 1.0))

    times, masses = series(volume)
    result = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D))
    assert result.main.mean_error_pct == pytest.approx(0.0, abs=1e-9)  # whole periods
    for tr in result.main.trumpet:
        p = tr.window_min
        amplitude = 100 * b * period / (math.pi * p) * abs(math.sin(math.pi * p / period))
        assert tr.max_pct == pytest.approx(amplitude, abs=1e-9)
        assert tr.min_pct == pytest.approx(-amplitude, abs=1e-9)


def test_a_step_spans_the_trumpet() -> None:
    r, a, t_step = 1.0, 0.05, 90.0

    def volume(t: float) -> float:
        return r / 60.0 * (t + a * max(0.0, t - t_step))

    times, masses = series(volume)
    result = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D))
    assert result.main.mean_error_pct == pytest.approx(100 * a * 0.5, abs=1e-9)
    for tr in result.main.trumpet:
        p = tr.window_min  # the latest window has min(P, 30) min after the step
        assert tr.max_pct == pytest.approx(100 * a * min(1.0, 30 / p), abs=1e-9)
        assert tr.min_pct == pytest.approx(100 * a * max(0.0, (p - 30) / p), abs=1e-9)


@pytest.mark.parametrize(("contact", "tau"), [(8.3, 0.5), (0.8, 0.5), (20.0, 2.0)])
def test_startup_delay_is_contact_plus_tau(contact: float, tau: float) -> None:
    r = 1.0

    def volume(t: float) -> float:
        s = t - contact
        return 0.0 if s <= 0 else r / 60.0 * (s - tau * (1 - math.exp(-s / tau)))

    times, masses = series(volume)
    result = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D))
    assert result.startup_delay_min == pytest.approx(contact + tau, abs=1e-6)
    assert result.first_delivery_min is not None
    assert contact < result.first_delivery_min < contact + 3 * tau + 1
    assert result.steady_flow_min is not None
    assert contact <= result.steady_flow_min <= contact + 3 * tau


def test_evaporation_is_corrected() -> None:
    r, e = 1.0, 0.5  # mg/min lost
    times, masses = series(lambda t: r * t / 60.0)
    masses = [m - e * 1e-3 * (t / 60.0) for m, t in zip(masses, times, strict=True)]
    raw = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D))
    fixed = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D, evaporation_mg_min=e))
    assert raw.main.mean_error_pct == pytest.approx(-100 * e * 1e-3 * 60 / D / r, rel=1e-6)
    assert fixed.main.mean_error_pct == pytest.approx(0.0, abs=1e-9)


def test_later_hours_for_long_runs() -> None:
    times, masses = series(lambda t: 3.0 / 60.0 * (t + 0.01 * max(0.0, t - 1380)), minutes=1440)
    result = analyse(
        times,
        masses,
        Settings(rate_ml_h=3.0, density_g_ml=D, periods_min=((60, 120), (1380, 1440))),
    )
    assert result.periods[0].mean_error_pct == pytest.approx(0.0, abs=1e-9)
    assert result.periods[1].mean_error_pct == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------- properties
NOISY = st.lists(st.floats(-1e-4, 1e-4), min_size=241, max_size=241)


@settings(max_examples=60, deadline=None)
@given(NOISY, st.floats(0.1, 100.0), st.floats(-5.0, 5.0), st.floats(0, 1e5), st.floats(0, 100))
def test_properties(
    noise: list[float], r: float, offset_g: float, t_shift: float, w0: float
) -> None:
    times, masses = series(lambda t: r * t / 60.0)
    masses = [m + n for m, n in zip(masses, noise, strict=True)]
    base = analyse(times, masses, Settings(rate_ml_h=r, density_g_ml=D))
    shifted = analyse(
        [x + t_shift for x in times],
        [m + w0 for m in masses],
        Settings(rate_ml_h=r, density_g_ml=D),
    )
    assert shifted.main.mean_error_pct == pytest.approx(base.main.mean_error_pct, abs=1e-6)
    for tr in base.main.trumpet:
        assert tr.min_pct <= tr.max_pct
        if 60 % tr.window_min == 0:  # T2 tiles into whole windows: A lies between
            assert tr.min_pct - 1e-9 <= base.main.mean_error_pct <= tr.max_pct + 1e-9
    # wider windows average more: the 31 min trumpet is never wider than the 2 min one
    two, thirty_one = base.main.trumpet[0], base.main.trumpet[-1]
    assert thirty_one.max_pct - thirty_one.min_pct <= two.max_pct - two.min_pct + 1e-9
    _ = offset_g


# --------------------------------------------------------------------- irregular data
def test_jitter_is_accepted_and_gaps_are_refused_naming_the_reading() -> None:
    times, masses = series(lambda t: t / 60.0)
    jittered = [t + (3.0 if i % 2 else 0.0) for i, t in enumerate(times)]
    assert analyse(
        jittered, masses, Settings(rate_ml_h=1.0, density_g_ml=D)
    ).main.mean_error_pct == (pytest.approx(0.0, abs=1e-9))
    gap_t = times[:150] + times[152:]  # two readings lost at 75 min, in the second hour
    gap_m = masses[:150] + masses[152:]
    with pytest.raises(AnalysisError, match="readings missing") as info:
        analyse(gap_t, gap_m, Settings(rate_ml_h=1.0, density_g_ml=D))
    assert info.value.index == 150
    result = analyse(gap_t, gap_m, Settings(rate_ml_h=1.0, density_g_ml=D, allow_gaps=True))
    assert result.main.skipped_windows > 0 and result.notes
    # exactly 1.5 x the sampling interval is still jitter; a hair more is a gap
    edge = times[:10] + [times[10] + 15.0] + [t + 15.0 for t in times[11:]]
    analyse(edge, masses, Settings(rate_ml_h=1.0, density_g_ml=D))
    over = times[:10] + [times[10] + 15.01] + [t + 15.01 for t in times[11:]]
    with pytest.raises(AnalysisError, match="readings missing"):
        analyse(over, masses, Settings(rate_ml_h=1.0, density_g_ml=D))


@pytest.mark.parametrize(
    ("times", "masses", "words"),
    [
        ([0.0, 30.0, 30.0], [0.0, 1.0, 2.0], "does not come after"),
        ([0.0, 30.0], [0.0, 1.0], "at least 3"),
        ([0.0, 30.0, math.nan], [0.0, 1.0, 2.0], "not a finite"),
        ([0.0, 30.0, 60.0], [0.0, 1.0, 2.0], "needs 120 min"),
    ],
)
def test_bad_series(times: list[float], masses: list[float], words: str) -> None:
    with pytest.raises(AnalysisError, match=words):
        analyse(times, masses, Settings(rate_ml_h=1.0))


def test_settings_are_checked_at_their_limits() -> None:
    Settings(rate_ml_h=10_000, density_g_ml=2.5, evaporation_mg_min=100)
    for bad in (
        {"rate_ml_h": 0.0},
        {"rate_ml_h": 10_000.01},
        {"rate_ml_h": 1.0, "density_g_ml": 0.49},
        {"rate_ml_h": 1.0, "evaporation_mg_min": 100.1},
        {"rate_ml_h": 1.0, "periods_min": ((60.0, 60.0),)},
    ):
        with pytest.raises(AnalysisError):
            Settings(**bad)
