"""Physics of the one simulated pump, on a virtual clock.

The central property: the pump's infused counter equals the volume that really reached
the patient (ground truth segments and boluses) plus what is stored, compressed, in an
occluded line, within 0.1 %, whatever sequence of commands and faults came before. A
second oracle, computed here from the commands alone, checks the integral of the rate
actually run where nothing stops the pump on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import VirtualClock
from firmware_bridge.pump_model import (
    BASELINE_PRESSURE_MMHG,
    DEFAULT_LINE_COMPLIANCE_ML_PER_MMHG,
    DEFAULT_OCCLUSION_ALARM_MMHG,
    Direction,
    NotApplicable,
    PumpAlarm,
    PumpModelError,
    RateOutOfRange,
    SimulatedPump,
    TruthBolus,
    TruthEvent,
    TruthSegment,
    delivered_volume,
)
from firmware_bridge.syringes import SYRINGES, syringe_by_name

REL = 1e-3  # the 0.1 %


def make(
    loaded_ml: float | None = None, syringe: str = "bd-plastipak-50ml", **kw: object
) -> tuple[SimulatedPump, VirtualClock]:
    clock = VirtualClock()
    pump = SimulatedPump(clock, syringe, loaded_volume_ml=loaded_ml, **kw)  # type: ignore[arg-type]
    return pump, clock


def stored_in_line(pump: SimulatedPump) -> float:
    snap = pump.snapshot()
    return (snap.pressure_mmhg - BASELINE_PRESSURE_MMHG) * DEFAULT_LINE_COMPLIANCE_ML_PER_MMHG


def net_pumped(pump: SimulatedPump) -> float:
    snap = pump.snapshot()
    return snap.infused_ml - snap.withdrawn_ml


def truth(pump: SimulatedPump) -> float:
    return pump.truth.delivered_ml(pump.clock.now())


def assert_volume_balance(pump: SimulatedPump) -> None:
    pumped = net_pumped(pump)
    accounted = truth(pump) + stored_in_line(pump)
    assert math.isclose(pumped, accounted, rel_tol=REL, abs_tol=1e-9), (pumped, accounted)


# --------------------------------------------------------------------- property tests
@dataclass(frozen=True)
class Op:
    kind: str
    value: float | bool | Direction | None = None


SYRINGE = syringe_by_name("bd-plastipak-50ml")

ops = st.one_of(
    st.builds(Op, st.just("set_rate"), st.floats(SYRINGE.min_rate_ml_h, SYRINGE.max_rate_ml_h)),
    st.builds(Op, st.just("set_rate"), st.floats(-10.0, 5000.0)),  # often refused
    st.builds(Op, st.just("start")),
    st.builds(Op, st.just("stop")),
    st.builds(Op, st.just("advance"), st.floats(0.0, 900.0)),
    st.builds(Op, st.just("advance"), st.floats(0.0, 1e-3)),  # instants near events
    st.builds(Op, st.just("occlusion"), st.booleans()),
    st.builds(Op, st.just("direction"), st.sampled_from(list(Direction))),
    st.builds(Op, st.just("stall"), st.booleans()),
    st.builds(Op, st.just("power_cycle")),
    st.builds(Op, st.just("clear_alarms")),
)


def apply(pump: SimulatedPump, clock: VirtualClock, op: Op) -> None:
    try:
        if op.kind == "set_rate":
            assert isinstance(op.value, float)
            pump.set_rate(op.value)
        elif op.kind == "start":
            pump.start()
        elif op.kind == "stop":
            pump.stop()
        elif op.kind == "advance":
            assert isinstance(op.value, float)
            clock.advance(op.value)
        elif op.kind == "occlusion":
            pump.set_occlusion(bool(op.value))
        elif op.kind == "direction":
            assert isinstance(op.value, Direction)
            pump.set_direction(op.value)
        elif op.kind == "stall":
            pump.set_stall(bool(op.value))
        elif op.kind == "power_cycle":
            pump.power_cycle()
        elif op.kind == "clear_alarms":
            pump.clear_alarms()
    except PumpModelError:
        pass  # a refusal is part of the physics; the balance must hold anyway


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40), st.floats(0.0, 50.0))
def test_infused_equals_delivered_plus_stored_after_any_sequence(
    sequence: list[Op], loaded: float
) -> None:
    pump, clock = make(loaded_ml=loaded)
    for op in sequence:
        apply(pump, clock, op)
        assert_volume_balance(pump)
        snap = pump.snapshot()
        assert 0.0 <= snap.remaining_ml <= SYRINGE.volume_ml
        assert snap.pressure_mmhg <= DEFAULT_OCCLUSION_ALARM_MMHG + 1e-6
        assert snap.time == clock.now()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(Op, st.just("set_rate"), st.floats(1.0, 40.0)),
            st.builds(Op, st.just("start")),
            st.builds(Op, st.just("stop")),
            st.builds(Op, st.just("advance"), st.floats(0.0, 120.0)),
        ),
        max_size=30,
    )
)
def test_infused_equals_integral_of_commanded_rate(sequence: list[Op]) -> None:
    """An oracle from the commands alone. Nothing here can empty the syringe (at most
    30 x 120 s at 40 mL/h = 40 mL of a 50 mL load) or block it, so the pump ran exactly
    as commanded."""
    pump, clock = make()
    expected = 0.0
    running = False
    rate = 0.0
    for op in sequence:
        if op.kind == "set_rate":
            assert isinstance(op.value, float)
            pump.set_rate(op.value)
            rate = op.value
        elif op.kind == "start":
            if rate > 0:
                pump.start()
                running = True
            else:
                with pytest.raises(NotApplicable):
                    pump.start()
        elif op.kind == "stop":
            pump.stop()
            running = False
        elif op.kind == "advance":
            assert isinstance(op.value, float)
            if running:
                expected += rate * op.value / 3600.0
            clock.advance(op.value)
    assert math.isclose(pump.snapshot().infused_ml, expected, rel_tol=REL, abs_tol=1e-9)
    assert math.isclose(truth(pump), expected, rel_tol=REL, abs_tol=1e-9)


# --------------------------------------------------------------------- rate changes
def test_rate_changes_while_running_integrate_piecewise() -> None:
    pump, clock = make()
    pump.set_rate(10.0)
    pump.start()
    clock.advance(360.0)  # 1 mL
    pump.set_rate(36.0)
    clock.advance(100.0)  # 1 mL
    pump.stop()
    clock.advance(1000.0)  # nothing
    pump.set_rate(7.2)
    pump.start()
    clock.advance(500.0)  # 1 mL
    snap = pump.snapshot()
    assert snap.infused_ml == pytest.approx(3.0, rel=1e-12)
    assert truth(pump) == pytest.approx(3.0, rel=1e-12)
    rates = [s.rate_ml_h for s in pump.truth.segments()]
    assert rates == [0.0, 10.0, 36.0, 0.0, 7.2]


def test_truth_sink_sees_every_event() -> None:
    seen: list[TruthEvent] = []
    clock = VirtualClock()
    pump = SimulatedPump(clock, truth_sink=seen.append)
    pump.set_rate(10.0)
    pump.start()
    clock.advance(10.0)
    pump.stop()
    assert seen == pump.truth.events
    assert seen[-1] == TruthSegment(10.0, 0.0)


def test_delivered_volume_window() -> None:
    events: list[TruthEvent] = [
        TruthSegment(0.0, 36.0),
        TruthBolus(50.0, 0.25),
        TruthSegment(100.0, 0.0),
    ]
    assert delivered_volume(events, until=200.0) == pytest.approx(1.0 + 0.25)
    assert delivered_volume(events, until=200.0, since=50.0) == pytest.approx(0.5 + 0.25)
    assert delivered_volume(events, until=40.0) == pytest.approx(0.4)


# --------------------------------------------------------------------- empty
def test_near_empty_flag_at_threshold() -> None:
    pump, clock = make(loaded_ml=6.0)  # near-empty default: 10 % of 50 mL = 5 mL
    pump.set_rate(60.0)
    pump.start()
    clock.advance(59.0)
    assert not pump.snapshot().near_empty
    clock.advance(1.0)
    snap = pump.snapshot()
    assert snap.near_empty
    assert snap.running
    assert snap.alarms == frozenset()


def test_empty_stops_exactly_at_empty_with_alarm() -> None:
    pump, clock = make(loaded_ml=1.0)
    pump.set_rate(60.0)  # 1 mL/min: empty at t = 60 s
    pump.start()
    clock.advance(500.0)
    snap = pump.snapshot()
    assert not snap.running
    assert snap.remaining_ml == 0.0
    assert snap.infused_ml == pytest.approx(1.0, abs=1e-12)
    assert PumpAlarm.EMPTY in snap.alarms
    last = pump.truth.last_segment()
    assert last is not None
    assert last.rate_ml_h == 0.0
    assert last.start == pytest.approx(60.0, abs=1e-9)
    assert truth(pump) == pytest.approx(1.0, abs=1e-12)


def test_start_on_empty_is_refused_and_reload_clears() -> None:
    pump, _ = make(loaded_ml=0.0)
    pump.set_rate(10.0)
    with pytest.raises(NotApplicable, match="empty"):
        pump.start()
    assert PumpAlarm.EMPTY in pump.snapshot().alarms
    pump.reload()
    assert pump.snapshot().remaining_ml == 50.0
    assert PumpAlarm.EMPTY not in pump.snapshot().alarms
    pump.start()
    assert pump.snapshot().running


def test_empty_syringe_fault_halts_a_running_pump() -> None:
    pump, clock = make()
    pump.set_rate(10.0)
    pump.start()
    clock.advance(10.0)
    pump.empty_syringe()
    snap = pump.snapshot()
    assert not snap.running
    assert PumpAlarm.EMPTY in snap.alarms


# --------------------------------------------------------------------- occlusion
def occlusion_time_s(rate_ml_h: float, threshold: float = DEFAULT_OCCLUSION_ALARM_MMHG) -> float:
    volume = (threshold - BASELINE_PRESSURE_MMHG) * DEFAULT_LINE_COMPLIANCE_ML_PER_MMHG
    return volume / (rate_ml_h / 3600.0)


def test_occlusion_builds_pressure_then_alarms_and_stops() -> None:
    pump, clock = make()
    pump.set_rate(10.0)
    pump.start()
    clock.advance(60.0)
    delivered_before = truth(pump)
    pump.set_occlusion(True)
    t_alarm = occlusion_time_s(10.0)  # about 78.6 s
    clock.advance(t_alarm / 2)
    half = pump.snapshot()
    assert half.running
    assert half.delivered_rate_ml_h == 0.0
    expected_p = (
        BASELINE_PRESSURE_MMHG + (DEFAULT_OCCLUSION_ALARM_MMHG - BASELINE_PRESSURE_MMHG) / 2
    )
    assert half.pressure_mmhg == pytest.approx(expected_p, rel=1e-9)
    assert PumpAlarm.OCCLUSION not in half.alarms
    clock.advance(t_alarm)  # well past the alarm instant
    snap = pump.snapshot()
    assert not snap.running
    assert PumpAlarm.OCCLUSION in snap.alarms
    assert snap.pressure_mmhg == DEFAULT_OCCLUSION_ALARM_MMHG
    # the plunger moved until the alarm, none of it reached the patient
    assert snap.infused_ml == pytest.approx(10.0 * (60.0 + t_alarm) / 3600.0, rel=1e-9)
    assert truth(pump) == pytest.approx(delivered_before, rel=1e-12)
    # the stop instant was solved for, not sampled
    last = pump.truth.last_segment()
    assert last is not None
    assert last.start == pytest.approx(60.0, abs=1e-9)  # flow stopped at the occlusion
    with pytest.raises(NotApplicable, match="occluded"):
        pump.start()


@pytest.mark.parametrize("threshold", [DEFAULT_OCCLUSION_ALARM_MMHG, 1034.0])
def test_bolus_on_release_is_at_most_half_a_millilitre(threshold: float) -> None:
    pump, clock = make(occlusion_alarm_mmhg=threshold)
    pump.set_rate(100.0)
    pump.start()
    pump.set_occlusion(True)
    clock.advance(3600.0)
    assert PumpAlarm.OCCLUSION in pump.snapshot().alarms
    stored = stored_in_line(pump)
    pump.set_occlusion(False)
    boluses = pump.truth.boluses()
    assert len(boluses) == 1
    assert boluses[0].volume_ml == pytest.approx(stored, rel=1e-12)
    assert 0.0 < boluses[0].volume_ml <= 0.5
    assert pump.snapshot().pressure_mmhg == BASELINE_PRESSURE_MMHG
    assert_volume_balance(pump)
    # the alarm stays latched until the operator restarts
    assert PumpAlarm.OCCLUSION in pump.snapshot().alarms
    pump.start()
    assert PumpAlarm.OCCLUSION not in pump.snapshot().alarms


def test_occlusion_cleared_before_alarm_releases_bolus_and_flow_resumes() -> None:
    pump, clock = make()
    pump.set_rate(36.0)
    pump.start()
    pump.set_occlusion(True)
    clock.advance(10.0)  # 0.1 mL pushed into the line
    pump.set_occlusion(False)
    assert pump.truth.boluses()[0].volume_ml == pytest.approx(0.1, rel=1e-9)
    clock.advance(100.0)
    snap = pump.snapshot()
    assert snap.running
    assert snap.delivered_rate_ml_h == 36.0
    assert truth(pump) == pytest.approx(1.1, rel=1e-9)


# --------------------------------------------------------------------- stall, power
def test_stall_stops_and_blocks_start_until_cleared() -> None:
    pump, clock = make()
    pump.set_rate(10.0)
    pump.start()
    clock.advance(5.0)
    pump.set_stall(True)
    snap = pump.snapshot()
    assert not snap.running
    assert PumpAlarm.STALL in snap.alarms
    with pytest.raises(NotApplicable, match="stalled"):
        pump.start()
    pump.set_stall(False)
    assert PumpAlarm.STALL in pump.snapshot().alarms  # latched
    pump.start()
    snap = pump.snapshot()
    assert snap.running
    assert PumpAlarm.STALL not in snap.alarms


def test_power_cycle_stops_keeps_settings_raises_reset() -> None:
    pump, clock = make(syringe="bd-plastipak-20ml")
    pump.set_rate(12.5)
    pump.set_direction(Direction.INFUSE)
    pump.start()
    clock.advance(36.0)
    pump.power_cycle()
    snap = pump.snapshot()
    assert not snap.running
    assert PumpAlarm.RESET in snap.alarms
    assert snap.set_rate_ml_h == 12.5
    assert snap.syringe.name == "bd-plastipak-20ml"
    assert snap.infused_ml == pytest.approx(0.125, rel=1e-12)
    assert not pump.consume_ignored_command()  # not configured to ignore
    pump.start()  # starting acknowledges the reset
    assert PumpAlarm.RESET not in pump.snapshot().alarms


def test_ignore_first_command_after_power_up_when_configured() -> None:
    pump, _ = make(ignore_first_command_after_power_up=True)
    assert pump.consume_ignored_command()  # construction is a power-up
    assert not pump.consume_ignored_command()
    pump.power_cycle()
    assert pump.consume_ignored_command()
    assert not pump.consume_ignored_command()


def test_clear_alarms_keeps_conditions_still_present() -> None:
    pump, clock = make()
    pump.set_rate(100.0)
    pump.start()
    pump.set_occlusion(True)
    clock.advance(3600.0)
    pump.power_cycle()
    pump.clear_alarms()
    assert pump.snapshot().alarms == frozenset({PumpAlarm.OCCLUSION})
    pump.set_occlusion(False)
    pump.clear_alarms()
    assert pump.snapshot().alarms == frozenset()


def test_comms_timeout_stops_the_pump() -> None:
    pump, clock = make()
    pump.set_rate(10.0)
    pump.start()
    clock.advance(1.0)
    pump.raise_comms_timeout()
    snap = pump.snapshot()
    assert not snap.running
    assert PumpAlarm.COMMS_TIMEOUT in snap.alarms


# --------------------------------------------------------------------- ranges
@pytest.mark.parametrize("name", sorted(SYRINGES))
def test_rate_range_per_syringe_is_enforced_never_clamped(name: str) -> None:
    s = SYRINGES[name]
    pump, _ = make(syringe=name)
    pump.set_rate(s.min_rate_ml_h)
    pump.set_rate(s.max_rate_ml_h)
    for bad in (
        s.min_rate_ml_h * 0.999,
        s.max_rate_ml_h * 1.001,
        0.0,
        -1.0,
        math.nan,
        math.inf,
    ):
        with pytest.raises(RateOutOfRange, match=name):
            pump.set_rate(bad)
        assert pump.snapshot().set_rate_ml_h == s.max_rate_ml_h  # unchanged


def test_changing_syringe_drops_a_rate_it_cannot_run() -> None:
    pump, _ = make()
    pump.set_rate(1500.0)
    pump.set_syringe(syringe_by_name("bd-plastipak-5ml"))
    snap = pump.snapshot()
    assert snap.set_rate_ml_h == 0.0
    assert snap.remaining_ml == 5.0


def test_syringe_cannot_change_while_running() -> None:
    pump, _ = make()
    pump.set_rate(10.0)
    pump.start()
    with pytest.raises(NotApplicable):
        pump.set_syringe(syringe_by_name("bd-plastipak-10ml"))


def test_bad_construction_is_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match="loaded volume 60"):
        make(loaded_ml=60.0)
    with pytest.raises(ValueError, match="threshold"):
        make(occlusion_alarm_mmhg=10.0)
    with pytest.raises(ValueError, match="unknown syringe"):
        make(syringe="nope")


# --------------------------------------------------------------------- withdraw, target
def test_withdraw_fills_the_syringe_and_stops_when_full() -> None:
    pump, clock = make(loaded_ml=40.0)
    pump.set_direction(Direction.WITHDRAW)
    pump.set_rate(60.0)
    pump.start()
    clock.advance(300.0)  # 5 mL back
    mid = pump.snapshot()
    assert mid.running
    assert mid.delivered_rate_ml_h == -60.0
    assert mid.withdrawn_ml == pytest.approx(5.0, rel=1e-12)
    clock.advance(3600.0)  # full after 10 mL
    snap = pump.snapshot()
    assert not snap.running
    assert snap.remaining_ml == 50.0
    assert snap.withdrawn_ml == pytest.approx(10.0, rel=1e-12)
    assert snap.infused_ml == 0.0
    assert snap.alarms == frozenset()
    assert truth(pump) == pytest.approx(-10.0, rel=1e-12)


def test_reversing_while_running_turns_the_flow_at_once() -> None:
    pump, clock = make(loaded_ml=25.0)
    pump.set_rate(36.0)
    pump.start()
    clock.advance(100.0)  # +1 mL
    pump.set_direction(Direction.WITHDRAW)
    clock.advance(50.0)  # -0.5 mL
    snap = pump.snapshot()
    assert snap.running
    assert snap.remaining_ml == pytest.approx(24.5, rel=1e-12)
    assert truth(pump) == pytest.approx(0.5, rel=1e-12)
    assert_volume_balance(pump)


def test_target_volume_stops_exactly() -> None:
    pump, clock = make()
    pump.set_rate(60.0)
    pump.set_target_volume(0.5)
    pump.start()
    clock.advance(120.0)
    snap = pump.snapshot()
    assert not snap.running
    assert snap.target_reached
    assert snap.infused_ml == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(RateOutOfRange):
        pump.set_target_volume(-1.0)
