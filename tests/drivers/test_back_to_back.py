"""The same driver cases for every pump: mock, NE-1000, Harvard, Modbus TCP and RTU.

A behaviour proven here on the mock is proven on every emulator too, over its real pty or
socket. Every case gets a fresh rig (function scope), so cases are independent; the pump
runs on the rig's ``VirtualClock``, so "an hour of infusion" is one ``advance`` call.

Alarm vocabulary: a pump without an occlusion or end-of-travel sensor reports the force
limit as a motor stall (NE-1000 class pumps have only ``A?S``), so those two cases accept
STALL besides the specific alarm; what they never accept is silence, or a pump still
reported running.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.errors import DeviceTimeout, DriverError
from drivers.pumps.base import PumpAlarmKind, PumpIdentity, PumpRejected, RateRange
from tests.drivers.rig import Rig

#: the pump reports volumes on a display of about 4 significant digits
VOLUME_REL_TOL = 2e-3
VOLUME_ABS_TOL = 2e-3


def ready(rig: Rig) -> RateRange:
    """Configure the syringe the simulated pump holds; every case starts from here."""
    return rig.driver.configure_syringe(rig.pump.syringe)


def set_and_start(rig: Rig, rate_ml_h: float) -> float:
    ready(rig)
    q = rig.driver.quantize_rate(rate_ml_h)
    assert rig.driver.set_rate(q) == pytest.approx(q, rel=1e-9)
    rig.driver.start()
    return q


def same_rate(a: float, b: float) -> bool:
    """Equal up to float noise from a unit conversion on the wire (uL/min <-> mL/h)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# --------------------------------------------------------------------- identity, range
def test_connect_and_identify(rig: Rig) -> None:
    identity = rig.driver.identify()
    assert isinstance(identity, PumpIdentity)
    assert identity.model.strip()
    assert isinstance(identity.firmware, str)


def test_configure_syringe_returns_a_sane_range(rig: Rig) -> None:
    syringe = rig.pump.syringe
    rng = ready(rig)
    assert isinstance(rng, RateRange)
    assert 0.0 < rng.min_ml_h < rng.max_ml_h
    # never wider than what the pump accepts (S7); narrower is allowed, but not useless
    assert rng.min_ml_h >= syringe.min_rate_ml_h * (1 - 1e-3)
    assert rng.max_ml_h <= syringe.max_rate_ml_h * (1 + 1e-3)
    assert rng.min_ml_h <= 10.0 <= rng.max_ml_h


# --------------------------------------------------------------------- rates
def test_set_rate_reads_back_the_quantized_request(rig: Rig) -> None:
    ready(rig)
    q = rig.driver.quantize_rate(12.3456789)
    assert q <= 12.3456789
    reported = rig.driver.set_rate(q)
    assert same_rate(reported, q)
    assert same_rate(rig.driver.read_status().set_rate_ml_h, q)
    assert same_rate(rig.pump.snapshot().set_rate_ml_h, q)  # the pump really has it


def test_an_unquantized_rate_is_refused_not_rounded(rig: Rig) -> None:
    ready(rig)
    q = rig.driver.set_rate(rig.driver.quantize_rate(10.0))
    candidates = [12.3456789, 1.234567891, 123.456789]
    unrepresentable = [x for x in candidates if rig.driver.quantize_rate(x) != x]
    if not unrepresentable:
        pytest.skip("this pump represents every candidate rate exactly")
    with pytest.raises((ValueError, DriverError)):
        rig.driver.set_rate(unrepresentable[0])
    assert same_rate(rig.driver.read_status().set_rate_ml_h, q)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rate=st.floats(min_value=0.01, max_value=5000.0))
def test_quantize_never_exceeds_the_request(rig: Rig, rate: float) -> None:
    q = rig.driver.quantize_rate(rate)  # pure: no I/O
    assert q <= rate
    assert rig.driver.quantize_rate(q) == q  # a quantized rate is one the pump runs
    if rate >= 1.0:
        assert q >= rate * 0.99  # close enough to be useful


def test_out_of_range_rate_is_rejected_and_rate_unchanged(rig: Rig) -> None:
    syringe = rig.pump.syringe
    ready(rig)
    q = rig.driver.set_rate(rig.driver.quantize_rate(10.0))
    too_fast = rig.driver.quantize_rate(float(math.ceil(syringe.max_rate_ml_h * 1.5)))
    too_slow = rig.driver.quantize_rate(syringe.min_rate_ml_h / 2.0)
    for bad in (too_fast, too_slow):
        with pytest.raises(PumpRejected) as info:
            rig.driver.set_rate(bad)
        assert info.value.reason.strip()
        assert same_rate(rig.driver.read_status().set_rate_ml_h, q)  # never clamped
        assert same_rate(rig.pump.snapshot().set_rate_ml_h, q)


# --------------------------------------------------------------------- running
def test_start_runs(rig: Rig) -> None:
    set_and_start(rig, 10.0)
    assert rig.driver.read_status().running
    assert rig.pump.snapshot().running


def test_infused_volume_grows_by_rate_times_time(rig: Rig) -> None:
    q = set_and_start(rig, 60.0)
    before = rig.driver.read_status().infused_ml
    rig.clock.advance(600.0)
    after = rig.driver.read_status().infused_ml
    expected = q * 600.0 / 3600.0
    assert math.isclose(after - before, expected, rel_tol=VOLUME_REL_TOL, abs_tol=VOLUME_ABS_TOL)
    truth = rig.pump.snapshot().infused_ml
    assert math.isclose(after, truth, rel_tol=VOLUME_REL_TOL, abs_tol=VOLUME_ABS_TOL)


def test_stop_stops_the_volume(rig: Rig) -> None:
    set_and_start(rig, 60.0)
    rig.clock.advance(60.0)
    rig.driver.stop()
    status = rig.driver.read_status()
    assert not status.running
    assert not rig.pump.snapshot().running
    rig.clock.advance(600.0)
    later = rig.driver.read_status()
    assert not later.running
    assert math.isclose(later.infused_ml, status.infused_ml, rel_tol=1e-9, abs_tol=1e-12)


def test_rate_change_while_running_takes_effect(rig: Rig) -> None:
    set_and_start(rig, 10.0)
    q2 = rig.driver.quantize_rate(20.0)
    assert same_rate(rig.driver.set_rate(q2), q2)
    status = rig.driver.read_status()
    assert status.running
    assert same_rate(status.set_rate_ml_h, q2)


# --------------------------------------------------------------------- pump alarms
def test_occlusion_is_reported_and_the_pump_stops(rig: Rig) -> None:
    set_and_start(rig, 60.0)
    rig.pump.set_occlusion(True)
    rig.clock.advance(120.0)  # the alarm pressure is reached after about 13 s
    status = rig.driver.read_status()
    assert not status.running
    assert status.alarms & {PumpAlarmKind.OCCLUSION, PumpAlarmKind.STALL}


def test_empty_syringe_is_reported(rig: Rig) -> None:
    ready(rig)
    rig.pump.empty_syringe(0.05)  # 3 s left at 60 mL/h
    q = rig.driver.quantize_rate(60.0)
    rig.driver.set_rate(q)
    rig.driver.start()
    rig.clock.advance(60.0)
    status = rig.driver.read_status()
    assert not status.running
    assert status.alarms & {PumpAlarmKind.EMPTY, PumpAlarmKind.STALL}


def test_stall_is_reported(rig: Rig) -> None:
    set_and_start(rig, 10.0)
    rig.clock.advance(10.0)
    rig.pump.set_stall(True)
    status = rig.driver.read_status()
    assert not status.running
    assert PumpAlarmKind.STALL in status.alarms


def test_power_cycle_reports_reset(rig: Rig) -> None:
    q = set_and_start(rig, 10.0)
    rig.clock.advance(10.0)
    rig.pump.power_cycle()
    status = rig.driver.read_status()
    assert not status.running
    assert PumpAlarmKind.RESET in status.alarms
    assert same_rate(status.set_rate_ml_h, q)  # settings survive a power cycle


# --------------------------------------------------------------------- wire faults
def test_lost_ack_on_set_is_uncertain_and_reconciled_by_readback(rig: Rig) -> None:
    if rig.wire is None:
        pytest.skip("rig has no wire to fault")
    ready(rig)
    rig.driver.set_rate(rig.driver.quantize_rate(10.0))
    q2 = rig.driver.quantize_rate(20.0)
    rig.wire.lose_ack_next()
    with pytest.raises(DeviceTimeout):
        rig.driver.set_rate(q2)
    # the pump executed it: only a read tells (S10), and the read must tell the truth
    assert same_rate(rig.driver.read_status().set_rate_ml_h, q2)
    assert same_rate(rig.pump.snapshot().set_rate_ml_h, q2)


def test_dropped_request_times_out_and_changes_nothing(rig: Rig) -> None:
    if rig.wire is None:
        pytest.skip("rig has no wire to fault")
    ready(rig)
    q1 = rig.driver.set_rate(rig.driver.quantize_rate(10.0))
    rig.wire.drop_next()
    with pytest.raises(DeviceTimeout):
        rig.driver.set_rate(rig.driver.quantize_rate(20.0))
    assert same_rate(rig.driver.read_status().set_rate_ml_h, q1)
    assert same_rate(rig.pump.snapshot().set_rate_ml_h, q1)
