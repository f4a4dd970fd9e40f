"""The pump mechanism's start-up behaviour, on a virtual clock, against closed forms.

Slack delays the first delivery by ``slack / rate``; the compliance lag makes the delivered
volume ``Q [(t - tc) - tau (1 - exp(-(t - tc)/tau))]``; a stop lets ``Q tau`` flow on; the
ripple averages out over a screw turn; a bore error scales the mean flow by ``(1 + e)^2``.
The truth log (segments) must agree with the exact delivered volume, and an ideal
mechanism must leave the ground truth exactly as it was without one.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import VirtualClock
from firmware_bridge.mechanics import (
    IDEAL,
    TYPICAL,
    Mechanics,
    MechanicsSpecError,
    format_mechanics,
    parse_mechanics,
)
from firmware_bridge.pump_model import Direction, SimulatedPump, TruthSegment
from firmware_bridge.syringes import syringe_by_name

BD50 = syringe_by_name("bd-plastipak-50ml")


def pump_with(m: Mechanics | None, syringe: str = "bd-plastipak-50ml") -> SimulatedPump:
    return SimulatedPump(VirtualClock(), syringe, mechanics=m)


def advance(pump: SimulatedPump, seconds: float) -> None:
    clock = pump.clock
    assert isinstance(clock, VirtualClock)
    clock.advance(seconds)


def start(pump: SimulatedPump, rate: float) -> None:
    pump.set_rate(rate)
    pump.start()


def test_slack_delays_the_first_delivery_by_slack_over_rate() -> None:
    m = Mechanics(slack_mm=0.25)
    pump = pump_with(m)
    start(pump, 1.0)
    t_contact = m.slack_ml(BD50) / 1.0 * 3600.0
    assert t_contact == pytest.approx(0.25 * BD50.ml_per_mm * 3600.0)
    advance(pump, t_contact - 1.0)
    assert pump.delivered_ml() == 0.0
    assert pump.snapshot().infused_ml == pytest.approx((t_contact - 1.0) / 3600.0)
    advance(pump, 3601.0)
    assert pump.delivered_ml() == pytest.approx(1.0, rel=1e-9)
    first = next(e for e in pump.truth.segments() if e.rate_ml_h > 0)
    assert first.start == pytest.approx(t_contact)


def test_compliance_lag_follows_the_closed_form() -> None:
    m = Mechanics(slack_mm=0.25, compliance_tau_s=30.0)
    pump = pump_with(m)
    q = 5.0
    start(pump, q)
    tc = m.slack_ml(BD50) / q * 3600.0
    for t in (tc + 1.0, tc + 10.0, tc + 30.0, tc + 90.0, tc + 600.0):
        advance(pump, t - pump.clock.now())
        s = t - tc
        expected = q / 3600.0 * (s - 30.0 * (1.0 - math.exp(-s / 30.0)))
        assert pump.delivered_ml() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert m.startup_delay_s(BD50, q) == pytest.approx(tc + 30.0)


def test_the_truth_log_integrates_to_the_exact_volume() -> None:
    pump = pump_with(TYPICAL)
    start(pump, 3.0)
    for step in (7.0, 100.0, 1234.5, 3600.0):
        advance(pump, step)
        exact = pump.delivered_ml()
        logged = pump.truth.delivered_ml(pump.clock.now())
        # the truth lags by at most one grid step (a 24th of a screw turn at 3 mL/h)
        turn_s = TYPICAL.turn_ml(BD50) / 3.0 * 3600.0
        assert abs(exact - logged) <= 3.0 / 3600.0 * turn_s / 24 * 1.1
    pump.stop()  # closes the open segment: now the two agree to the last nL
    assert pump.truth.delivered_ml(pump.clock.now()) == pytest.approx(pump.delivered_ml(), abs=1e-9)
    rates = [s.rate_ml_h for s in pump.truth.segments()]
    assert max(rates) < 3.0 * 1.03  # the ripple shows, within its 2 % amplitude (+ lag)


def test_a_stop_lets_q_tau_flow_on() -> None:
    """Rooke & Bowdle: about 0.05 mL after stopping at 6 mL/h (tau = 30 s)."""
    pump = pump_with(Mechanics(compliance_tau_s=30.0, primed=True))
    start(pump, 6.0)
    advance(pump, 3600.0)
    at_stop = pump.delivered_ml()
    pump.stop()
    advance(pump, 600.0)
    assert pump.delivered_ml() - at_stop == pytest.approx(6.0 / 3600.0 * 30.0, rel=1e-6)
    assert pump.snapshot().infused_ml == pytest.approx(6.0)  # the drive counts 6 mL


def test_ripple_averages_out_over_a_screw_turn() -> None:
    m = Mechanics(ripple_fraction=0.02, screw_pitch_mm=1.0)
    pump = pump_with(m)
    q = 10.0
    start(pump, q)
    turn_s = m.turn_ml(BD50) / q * 3600.0
    advance(pump, 3 * turn_s)
    assert pump.delivered_ml() == pytest.approx(3 * m.turn_ml(BD50), rel=1e-9)
    pump.stop()
    rates = [s.rate_ml_h for s in pump.truth.segments() if s.rate_ml_h > 0]
    # a 24th of a turn averages the sine's peak down by sinc(pi/24) = 0.997
    assert max(rates) == pytest.approx(q * 1.02, rel=1e-3)
    assert min(rates) == pytest.approx(q * 0.98, rel=1e-3)


def test_bore_error_scales_the_mean_flow() -> None:
    m = Mechanics(bore_error_fraction=0.0075)
    pump = pump_with(m)
    start(pump, 2.0)
    advance(pump, 7200.0)
    assert pump.delivered_ml() == pytest.approx(4.0 * 1.0075**2, rel=1e-12)
    assert m.mean_flow_error() == pytest.approx(1.0075**2 - 1)


def test_a_purge_takes_up_the_slack() -> None:
    m = Mechanics(slack_mm=0.25)
    pump = pump_with(m)
    start(pump, BD50.max_rate_ml_h)
    advance(pump, 1.0)  # 0.7 mL at the top rate: far more than the 0.14 mL of slack
    pump.stop()
    before = pump.delivered_ml()
    start(pump, 1.0)
    advance(pump, 36.0)
    assert pump.delivered_ml() - before == pytest.approx(0.01, rel=1e-9)


def test_a_withdrawal_opens_the_slack_again() -> None:
    m = Mechanics(slack_mm=0.25, primed=True)
    pump = pump_with(m)
    start(pump, 10.0)
    advance(pump, 360.0)
    pump.stop()
    pump.set_direction(Direction.WITHDRAW)
    start(pump, 10.0)
    advance(pump, 360.0)  # 1 mL back: the first 0.14 mL of travel only opened the gap
    pump.stop()
    assert pump.delivered_ml() == pytest.approx(m.slack_ml(BD50), rel=1e-9)
    pump.set_direction(Direction.INFUSE)
    before = pump.delivered_ml()
    start(pump, 1.0)
    advance(pump, m.slack_ml(BD50) * 3600.0 - 1.0)
    assert pump.delivered_ml() == pytest.approx(before, abs=1e-12)


def test_a_reload_opens_the_slack_again() -> None:
    m = Mechanics(slack_mm=0.25, primed=True)
    pump = pump_with(m)
    start(pump, 1.0)
    advance(pump, 60.0)
    assert pump.delivered_ml() > 0
    pump.stop()
    pump.reload()
    before = pump.delivered_ml()
    start(pump, 1.0)
    advance(pump, 60.0)
    assert pump.delivered_ml() == before


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["rate", "start", "stop", "occlude", "clear", "reverse", "wait"]),
        st.floats(0.5, 120.0),
    ),
    max_size=25,
)


def _play(pump: SimulatedPump, actions: list[tuple[str, float]]) -> None:
    for action, value in actions:
        try:
            if action == "rate":
                pump.set_rate(value)
            elif action == "start":
                pump.start()
            elif action == "stop":
                pump.stop()
            elif action == "occlude":
                pump.set_occlusion(True)
            elif action == "clear":
                pump.set_occlusion(False)
            elif action == "reverse":
                d = pump.snapshot().direction
                pump.set_direction(
                    Direction.WITHDRAW if d is Direction.INFUSE else Direction.INFUSE
                )
        except Exception:
            pass
        advance(pump, value * 10)


@settings(max_examples=40, deadline=None)
@given(ACTIONS)
def test_an_ideal_mechanism_leaves_the_truth_as_it_was(actions: list[tuple[str, float]]) -> None:
    plain = SimulatedPump(VirtualClock(), loaded_volume_ml=5.0)
    ideal = SimulatedPump(VirtualClock(), loaded_volume_ml=5.0, mechanics=IDEAL)
    _play(plain, actions)
    _play(ideal, actions)
    assert ideal.truth.events == plain.truth.events


@settings(max_examples=30, deadline=None)
@given(ACTIONS)
def test_typical_mechanics_never_invent_fluid(actions: list[tuple[str, float]]) -> None:
    """Whatever happens, the truth and the exact volume agree once the line is closed, and
    no more leaves the line than the drive displaced (plus the slack never exceeded)."""
    pump = SimulatedPump(VirtualClock(), loaded_volume_ml=5.0, mechanics=TYPICAL)
    _play(pump, actions)
    pump.stop()
    advance(pump, 3600.0)  # every lag drained
    snap = pump.snapshot()
    exact = pump.delivered_ml()
    assert pump.truth.delivered_ml(pump.clock.now()) == pytest.approx(exact, abs=1e-6)
    assert exact <= snap.infused_ml - snap.withdrawn_ml + 0.3  # bolus from a cleared line
    assert all(isinstance(e, TruthSegment) or e.volume_ml > 0 for e in pump.truth.events)


def test_spec_parsing() -> None:
    assert parse_mechanics("typical") == TYPICAL
    assert parse_mechanics("ideal") == IDEAL
    m = parse_mechanics("typical, bore_error=0.0075, primed")
    assert m.bore_error_fraction == 0.0075 and m.primed and m.slack_mm == TYPICAL.slack_mm
    assert parse_mechanics(format_mechanics(m)) == m
    assert parse_mechanics("slack_mm=0.3,tau_s=20").compliance_tau_s == 20.0
    for bad, words in [
        ("fancy", "unknown mechanics 'fancy'"),
        ("slack_mm=lots", "expected a number"),
        ("wobble=1", "unknown mechanics parameter 'wobble'"),
        ("slack_mm=9", "slack_mm must be 0-5 mm"),
        ("ripple=0.51", "ripple_fraction must be 0-0.5"),
    ]:
        with pytest.raises(MechanicsSpecError, match=words):
            parse_mechanics(bad)
    # exactly at the limits is allowed
    assert parse_mechanics("slack_mm=5,ripple=0.5,bore_error=-0.2").slack_mm == 5.0
