"""``PumpDriver.prime`` byte for byte and back to back, and the volumetric pump through the
mock and the Modbus peristaltic map."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from drivers.pumps.base import PumpAlarmKind, PumpRejected
from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.mock import MockPumpDriver
from drivers.pumps.modbus import ModbusDriver
from drivers.pumps.ne1000 import Ne1000Driver
from drivers.testing import ScriptedTransport, expected_protocol
from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import WireFaults, apply_fault
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import BAGS
from safety.kernel.observe import PUMP_ALARMS
from tests.drivers.rig import Rig

PRIME_ML = 1.0


def b(text: str) -> bytes:
    return b"\x02" + text.encode() + b"\x03"


# --------------------------------------------------------------------- byte for byte
def test_ne1000_prime_is_vol_then_pur_and_vol_0_before_the_next_run() -> None:
    steps = [
        (b"0\r", b("00S")),
        (b"0VER\r", b("00SNE1000V3.928")),
        (b"0RAT\r", b("00S5.000MH")),
        (b"0VOLML\r", b("00S")),
        (b"0VOL1.500\r", b("00S")),
        (b"0VOL\r", b("00S1.500ML")),
        (b"0PUR\r", b("00X")),
        (b"0RAT\r", b("00X2000.MH")),
        (b"0DIS\r", b("00XI0.500W0.000ML")),
        (b"0RAT\r", b("00S5.000MH")),
        (b"0DIS\r", b("00SI1.500W0.000ML")),
        (b"0VOL0\r", b("00S")),
        (b"0VOL\r", b("00S0.000ML")),
        (b"0RUN\r", b("00I")),
    ]
    make = lambda t: Ne1000Driver(port="scripted", transport=t, reply_timeout_s=0.2)  # noqa: E731
    with expected_protocol(make, steps, connect=True) as driver:
        assert driver.prime(1.5) == 1.5
        during = driver.read_status()
        assert during.priming and during.running
        after = driver.read_status()
        assert not after.priming and not after.running
        driver.start()


def test_harvard_prime_is_a_target_volume_at_the_top_rate_undone_before_the_next_start() -> None:
    idle_status = b"\n0 0 0 i...I.\r\n:"
    steps = [
        (b"ver\r", b"\n11 ELITE I/W Single 3.0.4\r\n:"),
        (b"status\r", idle_status),
        (b"irate\r", b"\n5 ml/hr\r\n:"),
        (b"irate max\r", b"\n:"),
        (b"tvolume 2 ml\r", b"\n:"),
        (b"tvolume\r", b"\n2 ml\r\n:"),
        (b"irun\r", b"\n>"),
        (b"ctvolume\r", b"\nT*"),
        (b"tvolume\r", b"\nTarget volume not set\r\n:"),
        (b"irate 5 ml/hr\r", b"\n:"),
        (b"irate\r", b"\n5 ml/hr\r\n:"),
        (b"irun\r", b"\n>"),
    ]
    make = lambda t: HarvardDriver(port="scripted", transport=t, reply_timeout_s=0.2)  # noqa: E731
    with expected_protocol(make, steps, connect=True) as driver:
        assert driver.prime(2.0) == 2.0
        driver.start()


def test_a_prime_volume_must_be_positive_and_no_bytes_go_out() -> None:
    for make in (
        lambda t: Ne1000Driver(port="scripted", transport=t),
        lambda t: HarvardDriver(port="scripted", transport=t),
    ):
        transport = ScriptedTransport([])
        driver = make(transport)
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="volume_ml"):
                driver.prime(bad)
        transport.assert_finished()


def test_a_syringe_pump_driver_refuses_a_bag_before_sending_anything() -> None:
    transport = ScriptedTransport([])
    driver = Ne1000Driver(port="scripted", transport=transport)
    with pytest.raises(PumpRejected, match="cannot hold bag-500ml"):
        driver.configure_syringe(BAGS["bag-500ml"])
    transport.assert_finished()


# --------------------------------------------------------------------- back to back
def test_prime_to_waste_on_every_pump(rig: Rig) -> None:
    """Every driver that can prime does it on its emulator: the volume leaves the line
    while it is not connected, so the patient's ground truth counts none of it."""
    pump = rig.pump
    pump.connect_line(False)
    rig.driver.configure_syringe(pump.syringe)
    if rig.name.startswith("modbus"):
        with pytest.raises(PumpRejected, match="has no prime"):
            rig.driver.prime(PRIME_ML)
        return
    assert rig.driver.prime(PRIME_ML) == PRIME_ML
    status = rig.driver.read_status()
    assert status.running and status.priming
    rig.clock.advance(60.0)  # 1 mL at a 50 mL syringe's top rate: under 2 s
    status = rig.driver.read_status()
    assert not status.running and not status.priming
    assert not (status.alarms - {PumpAlarmKind.NEAR_EMPTY})
    assert pump.wasted_ml() == pytest.approx(PRIME_ML)
    pump.connect_line(True)
    assert pump.truth.wasted_ml() == pytest.approx(PRIME_ML)
    rig.driver.set_rate(rig.driver.quantize_rate(6.0))
    rig.driver.start()
    rig.clock.advance(600.0)
    assert rig.driver.read_status().set_rate_ml_h == pytest.approx(6.0)
    assert pump.delivered_ml() == pytest.approx(1.0, rel=1e-3)  # 6 mL/h for 10 min, no prime


def test_the_mock_is_a_volumetric_pump_with_a_bag() -> None:
    driver = MockPumpDriver(clock=VirtualClock(), syringe="bag-500ml")
    driver.connect()
    limits = driver.configure_syringe(BAGS["bag-500ml"])
    assert (limits.min_ml_h, limits.max_ml_h) == (0.1, 999.0)
    driver.set_rate(150.0)
    driver.start()
    for fault, kind in (
        ("door_open", PumpAlarmKind.DOOR_OPEN),
        ("air_in_line", PumpAlarmKind.AIR_IN_LINE),
        ("upstream_occlusion", PumpAlarmKind.UPSTREAM_OCCLUSION),
    ):
        driver.inject_faults(fault)
        status = driver.read_status()
        assert kind in status.alarms and not status.running
        driver.inject_faults(f"{fault}=off")
        driver.start()
        assert driver.read_status().running


@contextlib.contextmanager
def modbus_driven(map_name: str, pump: SimulatedPump, device_id: int = 1) -> Iterator[ModbusDriver]:
    """The Modbus driver connected over TCP to the emulator serving ``pump`` through the
    example map ``map_name``; closed after."""
    with BackgroundEmulator(
        pump, WireFaults(), map_path=map_name, tcp=("127.0.0.1", 0), device_id=device_id
    ) as emu:
        host, port = emu.host_port
        driver = ModbusDriver(
            map_path=map_name, host=host, port=port, device_id=device_id, timeout_s=0.5
        )
        driver.connect()
        try:
            yield driver
        finally:
            driver.close()


def test_the_modbus_peristaltic_map_reports_the_volumetric_alarms() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, BAGS["bag-1000ml"])
    with modbus_driven("peristaltic", pump, device_id=20) as driver:
        limits = driver.configure_syringe(BAGS["bag-1000ml"])
        assert limits.min_ml_h == pytest.approx(0.1) and limits.max_ml_h == 999.0
        driver.set_rate(120.0)
        driver.start()
        clock.advance(3600.0)
        assert driver.read_status().infused_ml == pytest.approx(120.0)
        for fault, kind in (
            ("air_in_line", PumpAlarmKind.AIR_IN_LINE),
            ("upstream_occlusion", PumpAlarmKind.UPSTREAM_OCCLUSION),
            ("door_open", PumpAlarmKind.DOOR_OPEN),
        ):
            apply_fault(fault, pump, None)
            status = driver.read_status()
            assert kind in status.alarms and not status.running
            apply_fault(f"{fault}=off", pump, None)
            driver.start()
        with pytest.raises(PumpRejected, match="cannot prime while pumping"):
            driver.prime(5.0)


def test_a_modbus_prime_is_a_volume_then_its_trigger_and_leaves_the_rate_alone() -> None:
    """The peristaltic map's prime: ``prime_volume`` (float32 mL, rounded down: never more
    than asked) and the ``prime`` coil; the drive runs at its top rate with its
    ``priming`` bit set, stops by itself when the volume is out and gives the
    infusion's rate back."""
    clock = VirtualClock()
    pump = SimulatedPump(clock, BAGS["bag-1000ml"])
    with modbus_driven("peristaltic", pump, device_id=20) as driver:
        driver.set_rate(120.0)
        assert driver.prime(5.0) == 5.0
        during = driver.read_status()
        assert during.priming and during.running and not during.alarms
        # it reads the rate it primes at (the top rate), as an NE-1000's RAT does
        assert during.set_rate_ml_h == BAGS["bag-1000ml"].max_rate_ml_h
        with pytest.raises(PumpRejected, match="cannot prime while pumping"):
            driver.prime(1.0)
        clock.advance(3600.0 * 5.0 / BAGS["bag-1000ml"].max_rate_ml_h + 1.0)
        after = driver.read_status()
        assert not after.priming and not after.running
        assert after.set_rate_ml_h == 120.0
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="volume_ml must be a finite number"):
                driver.prime(bad)
        with pytest.raises(ValueError, match="below what register prime_volume holds"):
            driver.prime(1e-50)
        driver.start()  # an infusion after a prime runs at its own rate
        assert driver.read_status().set_rate_ml_h == 120.0 and pump.snapshot().running


def test_a_modbus_map_without_a_prime_refuses_one() -> None:
    with (
        modbus_driven("syringe", SimulatedPump(VirtualClock())) as driver,
        pytest.raises(PumpRejected, match="has no prime"),
    ):
        driver.prime(1.0)


def test_the_kernel_knows_every_pump_alarm_and_a_stopping_sensor_is_high() -> None:
    assert {kind.value for kind in PumpAlarmKind} <= set(PUMP_ALARMS)
    for kind in ("air_in_line", "upstream_occlusion", "door_open", "occlusion"):
        priority, _text = PUMP_ALARMS[kind]
        assert priority.name == "HIGH"
