"""The in-process mock driver: wire faults without a wire, model errors, resolution."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.pumps.base import PumpAlarmKind, PumpChecksumError, PumpRejected
from drivers.pumps.mock import MockPumpDriver
from firmware_bridge.clock import ScaledClock, VirtualClock
from firmware_bridge.faults import ReplyAction, WireFaults
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import syringe_by_name


class ScriptedWire(WireFaults):
    """A wire whose next actions are given in order, then normal."""

    def __init__(self, *actions: ReplyAction) -> None:
        super().__init__()
        self.script = list(actions)

    def next_action(self) -> ReplyAction:
        return self.script.pop(0) if self.script else super().next_action()


def rig(
    wire: WireFaults | None = None, **pump_options: object
) -> tuple[MockPumpDriver, SimulatedPump, VirtualClock]:
    clock = VirtualClock()
    pump = SimulatedPump(clock, **pump_options)  # type: ignore[arg-type]
    driver = MockPumpDriver(pump=pump, wire=wire)
    driver.connect()
    driver.set_rate(10.0)
    return driver, pump, clock


# --------------------------------------------------------------------- wire faults
def test_dropped_request_is_a_timeout_and_not_executed() -> None:
    driver, pump, _ = rig()
    driver.wire.drop_next()
    with pytest.raises(DeviceTimeout, match="not executed"):
        driver.set_rate(20.0)
    assert pump.snapshot().set_rate_ml_h == 10.0


def test_lost_ack_executes_then_times_out() -> None:
    driver, pump, _ = rig()
    driver.wire.lose_ack_next()
    with pytest.raises(DeviceTimeout, match="may have taken effect"):
        driver.set_rate(20.0)
    assert pump.snapshot().set_rate_ml_h == 20.0
    assert driver.read_status().set_rate_ml_h == 20.0


def test_corrupt_reply_executes_then_fails_its_check() -> None:
    driver, pump, _ = rig()
    driver.wire.corrupt_next()
    with pytest.raises(PumpChecksumError, match="may have taken effect"):
        driver.start()
    assert pump.snapshot().running


def test_garbage_is_a_checksum_error_and_not_executed() -> None:
    driver, pump, _ = rig()
    driver.wire.set_garbage(True)
    with pytest.raises(PumpChecksumError, match="garbage"):
        driver.start()
    assert not pump.snapshot().running
    driver.wire.set_garbage(False)
    driver.start()
    assert pump.snapshot().running


def test_silent_pump_times_out_every_call() -> None:
    driver, pump, _ = rig()
    driver.wire.set_silent(True)
    for _ in range(3):
        with pytest.raises(DeviceTimeout, match="silent"):
            driver.read_status()
    with pytest.raises(DeviceTimeout):
        driver.start()
    assert not pump.snapshot().running


def test_delay_beyond_the_deadline_is_a_late_reply_after_execution() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    driver = MockPumpDriver(pump=pump, reply_timeout_s=0.5)
    driver.connect()
    driver.wire.set_delay(0.2)
    assert driver.set_rate(10.0) == 10.0  # within the deadline: normal, nothing sleeps
    driver.wire.set_delay(0.5)
    with pytest.raises(DeviceTimeout, match="later than the deadline"):
        driver.set_rate(20.0)
    assert pump.snapshot().set_rate_ml_h == 20.0


def test_fault_on_the_readback_still_reports_uncertainty() -> None:
    wire = ScriptedWire(ReplyAction.NORMAL, ReplyAction.NORMAL)  # connect, first set
    driver, pump, _ = rig(wire)
    wire.script = [ReplyAction.NORMAL, ReplyAction.DROP_REQUEST]  # the set, its read-back
    with pytest.raises(DeviceTimeout):
        driver.set_rate(20.0)
    assert pump.snapshot().set_rate_ml_h == 20.0


def test_disconnect_then_one_reconnect_on_the_next_call() -> None:
    driver, pump, _ = rig()
    driver.wire.request_disconnect()
    with pytest.raises(DeviceDisconnected, match="not executed"):
        driver.start()
    assert not driver.connected
    assert not pump.snapshot().running
    driver.start()  # reconnects (one hello), then starts
    assert driver.connected
    assert pump.snapshot().running


def test_reconnect_is_bounded_to_one_attempt_per_call() -> None:
    driver, _, _ = rig()
    driver.wire.request_disconnect()
    with pytest.raises(DeviceDisconnected):
        driver.read_status()
    driver.wire.set_silent(True)
    with pytest.raises(DeviceTimeout):  # the one reconnect attempt fails; no loop
        driver.read_status()
    assert not driver.connected
    driver.wire.set_silent(False)
    assert driver.read_status().set_rate_ml_h == 10.0


def test_without_auto_reconnect_only_connect_brings_the_link_back() -> None:
    clock = VirtualClock()
    driver = MockPumpDriver(clock=clock, auto_reconnect=False)
    driver.connect()
    driver.wire.request_disconnect()
    with pytest.raises(DeviceDisconnected):
        driver.read_status()
    with pytest.raises(DeviceDisconnected, match=r"call connect\(\)"):
        driver.read_status()
    driver.connect()
    assert not driver.read_status().running


def test_calls_before_connect_and_after_close_are_refused() -> None:
    driver = MockPumpDriver(clock=VirtualClock())
    with pytest.raises(DeviceDisconnected, match="not connected"):
        driver.identify()
    with driver:
        assert driver.identify().model == "pumpctl-mock"
    with pytest.raises(DeviceDisconnected, match="not connected"):
        driver.read_status()


# --------------------------------------------------------------------- model errors
def test_out_of_range_maps_to_rejected_out_of_range() -> None:
    driver, pump, _ = rig()
    with pytest.raises(PumpRejected) as info:
        driver.set_rate(5000.0)
    assert info.value.reason == "out of range"
    assert "5000.0 mL/h outside" in str(info.value)
    assert pump.snapshot().set_rate_ml_h == 10.0


def test_not_applicable_maps_to_rejected_with_the_cause() -> None:
    driver = MockPumpDriver(clock=VirtualClock())
    driver.connect()
    with pytest.raises(PumpRejected) as info:
        driver.start()
    assert info.value.reason == "not applicable: no rate set"


def test_syringe_change_while_running_is_rejected() -> None:
    driver, _, _ = rig()
    driver.start()
    with pytest.raises(PumpRejected, match="while pumping") as info:
        driver.configure_syringe(syringe_by_name("bd-plastipak-10ml"))
    assert info.value.reason.startswith("not applicable")


def test_lost_ack_hides_a_rejection_too() -> None:
    driver, pump, _ = rig()
    driver.wire.lose_ack_next()
    with pytest.raises(DeviceTimeout):
        driver.set_rate(5000.0)
    assert pump.snapshot().set_rate_ml_h == 10.0


def test_ignored_first_command_after_power_up() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, ignore_first_command_after_power_up=True)
    driver = MockPumpDriver(pump=pump)
    driver.connect()  # the hello absorbs the command ignored at power-up
    assert driver.set_rate(10.0) == 10.0
    pump.power_cycle()
    with pytest.raises(PumpRejected) as info:
        driver.set_rate(20.0)  # a command is reported ignored, never repeated
    assert info.value.reason == "ignored"
    assert pump.snapshot().set_rate_ml_h == 10.0
    pump.power_cycle()
    status = driver.read_status()  # a query is safely asked again
    assert PumpAlarmKind.RESET in status.alarms


# --------------------------------------------------------------------- status, alarms
def test_status_maps_alarms_and_near_empty() -> None:
    driver, pump, clock = rig(loaded_volume_ml=6.0)
    driver.set_rate(60.0)
    driver.start()
    clock.advance(60.0)
    status = driver.read_status()
    assert status.alarms == frozenset({PumpAlarmKind.NEAR_EMPTY})
    assert status.infused_ml == pytest.approx(1.0, rel=1e-12)
    assert status.pressure_mmhg == 15.0
    clock.advance(600.0)
    status = driver.read_status()
    assert status.alarms == frozenset({PumpAlarmKind.NEAR_EMPTY, PumpAlarmKind.EMPTY})
    assert not status.running
    pump.raise_comms_timeout()
    assert PumpAlarmKind.COMMS_TIMEOUT in driver.read_status().alarms


def test_occlusion_status_carries_pressure() -> None:
    driver, pump, clock = rig()
    driver.start()
    pump.set_occlusion(True)
    clock.advance(3600.0)
    status = driver.read_status()
    assert status.alarms == frozenset({PumpAlarmKind.OCCLUSION})
    assert status.pressure_mmhg == 500.0
    assert not status.running
    assert "alarms=occlusion" in status.raw


def test_configure_syringe_range_is_settable() -> None:
    driver, _, _ = rig()
    syringe = syringe_by_name("bd-plastipak-5ml")
    rng = driver.configure_syringe(syringe)
    assert rng.min_ml_h == syringe.min_rate_ml_h
    assert rng.max_ml_h <= syringe.max_rate_ml_h
    assert driver.quantize_rate(rng.max_ml_h) == rng.max_ml_h
    assert driver.set_rate(rng.max_ml_h) == rng.max_ml_h
    assert driver.set_rate(rng.min_ml_h) == rng.min_ml_h


def test_same_inputs_same_outputs() -> None:
    def run() -> list[str]:
        driver, pump, clock = rig()
        driver.start()
        out = []
        for rate in (12.34, 56.78, 0.0):
            if rate:
                driver.set_rate(rate)
            clock.advance(123.4)
            pump.set_occlusion(rate == 56.78)
            out.append(driver.read_status().raw)
        return out

    assert run() == run()


# --------------------------------------------------------------------- quantize
@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (12.34567, 12.34),
        (0.3, 0.3),
        (1999.99, 1999.0),
        (0.0012345, 0.001234),
        (1.0, 1.0),
        (0.0, 0.0),
        (10, 10.0),
        (99999.0, 99990.0),
    ],
)
def test_quantize_examples(rate: float, expected: float) -> None:
    assert MockPumpDriver(clock=VirtualClock()).quantize_rate(rate) == expected


@given(st.floats(min_value=1e-9, max_value=1e6))
def test_quantize_rounds_down_to_four_significant_digits(rate: float) -> None:
    driver = MockPumpDriver(clock=VirtualClock())
    q = driver.quantize_rate(rate)
    assert q <= rate
    assert driver.quantize_rate(q) == q
    exact, got = Decimal(repr(rate)), Decimal(repr(q))
    assert len(got.normalize().as_tuple().digits) <= 4
    assert exact - got < Decimal(1).scaleb(exact.adjusted() - 3)  # less than one step down


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_quantize_refuses_non_rates(bad: float) -> None:
    with pytest.raises(ValueError, match="rate_ml_h must be a finite rate >= 0"):
        MockPumpDriver(clock=VirtualClock()).quantize_rate(bad)


def test_quantize_refuses_a_bool() -> None:
    with pytest.raises(TypeError, match="rate_ml_h must be a number"):
        MockPumpDriver(clock=VirtualClock()).quantize_rate(True)


def test_set_rate_refuses_an_unquantized_rate_before_any_io() -> None:
    driver, pump, _ = rig()
    driver.wire.lose_ack_next()
    with pytest.raises(ValueError, match=r"quantize_rate gives 12\.34"):
        driver.set_rate(12.345)
    assert driver.wire.state().lose_ack_next == 1  # nothing went on the wire
    assert pump.snapshot().set_rate_ml_h == 10.0


# --------------------------------------------------------------------- construction
def test_builds_its_own_pump_from_options() -> None:
    clock = VirtualClock()
    driver = MockPumpDriver(clock=clock, syringe="bd-plastipak-20ml", loaded_volume_ml=5.0)
    assert driver.pump.syringe.name == "bd-plastipak-20ml"
    assert driver.pump.snapshot().remaining_ml == 5.0
    assert driver.pump.clock is clock


def test_clock_spec_string() -> None:
    driver = MockPumpDriver(clock="scaled:60:0")
    assert isinstance(driver.pump.clock, ScaledClock)
    assert driver.pump.clock.scale == 60.0


def test_pump_and_pump_options_conflict() -> None:
    pump = SimulatedPump(VirtualClock())
    with pytest.raises(ValueError, match=r"syringe, loaded_volume_ml .* cannot be combined"):
        MockPumpDriver(pump=pump, syringe="bd-plastipak-20ml", loaded_volume_ml=1.0)


def test_faults_option_and_inject() -> None:
    driver = MockPumpDriver(clock=VirtualClock(), faults="drop")
    with pytest.raises(DeviceTimeout):
        driver.connect()
    driver.connect()
    driver.inject_faults("lose_ack")
    assert driver.wire.state().lose_ack_next == 1


@pytest.mark.parametrize("bad", [0.0, -1.0, 61.0])
def test_reply_timeout_is_checked(bad: float) -> None:
    with pytest.raises(ValueError, match="reply_timeout_s must be > 0 and <= 60 s"):
        MockPumpDriver(clock=VirtualClock(), reply_timeout_s=bad)
