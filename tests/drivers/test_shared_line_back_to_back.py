"""Four pumps on one line, end to end: four drivers on one ``SharedLine`` against one
emulator serving four pumps on one pty (or one TCP server), per protocol.

Every pump is configured, set to its own rate, started and polled; after an hour of
clinical time each driver must report its own pump's rate and volume, and each simulated
pump must hold exactly the rate its own driver set: no cross-talk. A pump that answers in
another's place is caught by the drivers' address checks and read-backs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.errors import DeviceDisconnected
from drivers.lines import LineSpec, SharedLine, open_line
from drivers.pumps.base import PumpChecksumError, PumpDriver
from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.modbus import ModbusDriver
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.bus import PumpBus
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.harvard.emulator import HarvardFramer, HarvardPumpSide
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.ne1000.emulator import Ne1000Framer, Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump

pytestmark = pytest.mark.timeout(60)

RATES = (1.5, 3.0, 4.5, 6.0)
REPLY_TIMEOUT_S = 0.3


def pumps_on(clock: VirtualClock, addresses: tuple[int, ...]) -> dict[int, SimulatedPump]:
    return {a: SimulatedPump(clock) for a in addresses}


@contextlib.contextmanager
def ne1000_line(
    tmp_path: Path, addresses: tuple[int, ...]
) -> Iterator[tuple[VirtualClock, dict[int, SimulatedPump], SharedLine]]:
    clock = VirtualClock()
    pumps = pumps_on(clock, addresses)
    bus = PumpBus([Ne1000PumpSide(p, address=a) for a, p in pumps.items()], Ne1000Framer())
    endpoint = PtyEndpoint(link=str(tmp_path / "ne1000-bus.tty"))
    with BackgroundLine(bus, WireFaults(), endpoint=endpoint) as emulator:
        yield clock, pumps, open_line(LineSpec(kind="serial", port=emulator.where, baud=19200))


@contextlib.contextmanager
def harvard_line(
    tmp_path: Path, addresses: tuple[int, ...]
) -> Iterator[tuple[VirtualClock, dict[int, SimulatedPump], SharedLine]]:
    clock = VirtualClock()
    pumps = pumps_on(clock, addresses)
    bus = PumpBus([HarvardPumpSide(p, address=a) for a, p in pumps.items()], HarvardFramer())
    endpoint = PtyEndpoint(link=str(tmp_path / "harvard-bus.tty"))
    with BackgroundLine(bus, WireFaults(), endpoint=endpoint) as emulator:
        yield clock, pumps, open_line(LineSpec(kind="serial", port=emulator.where, baud=115200))


def exercise(
    clock: VirtualClock, pumps: dict[int, SimulatedPump], drivers: list[PumpDriver]
) -> None:
    """Configure, set, start and poll every pump; check each reading is its own."""
    for driver in drivers:
        driver.connect()
    try:
        for driver, rate, pump in zip(drivers, RATES, pumps.values(), strict=True):
            driver.configure_syringe(pump.syringe)
            assert driver.set_rate(driver.quantize_rate(rate)) == pytest.approx(rate)
            driver.start()
        clock.advance(3600.0)
        for _ in range(3):  # every pump polled, again and again, in turn
            for driver, rate in zip(drivers, RATES, strict=True):
                status = driver.read_status()
                assert status.running
                assert status.set_rate_ml_h == pytest.approx(rate)
                assert status.infused_ml == pytest.approx(rate, rel=2e-3)  # one hour
        for pump, rate in zip(pumps.values(), RATES, strict=True):
            snap = pump.snapshot()
            assert snap.running and snap.set_rate_ml_h == pytest.approx(rate)
        drivers[1].stop()
        assert not list(pumps.values())[1].snapshot().running
        assert all(p.snapshot().running for i, p in enumerate(pumps.values()) if i != 1)
    finally:
        for driver in drivers:
            driver.close()


def test_four_ne1000_on_one_rs232_line_in_safe_mode(tmp_path: Path) -> None:
    addresses = (0, 1, 2, 3)
    with ne1000_line(tmp_path, addresses) as (clock, pumps, line):
        drivers: list[PumpDriver] = [
            Ne1000Driver(
                line=line, address=a, safe_mode_timeout_s=60, reply_timeout_s=REPLY_TIMEOUT_S
            )
            for a in addresses
        ]
        exercise(clock, pumps, drivers)


def test_an_alarm_on_one_ne1000_reaches_its_own_driver_only(tmp_path: Path) -> None:
    addresses = (4, 7)
    with ne1000_line(tmp_path, addresses) as (clock, pumps, line):
        four, seven = (
            Ne1000Driver(line=line, address=a, safe_mode_timeout_s=60, reply_timeout_s=0.3)
            for a in addresses
        )
        four.connect()
        seven.connect()
        try:
            for driver, pump in ((four, pumps[4]), (seven, pumps[7])):
                driver.configure_syringe(pump.syringe)
                driver.set_rate(2.0)
                driver.start()
            pumps[7].set_stall(True)  # pump 7 sends an auto-alarm packet unasked
            clock.advance(60.0)
            assert four.read_status().alarms == frozenset()
            assert four.read_status().running
            status = seven.read_status()
            assert {a.value for a in status.alarms} == {"stall"} and not status.running
        finally:
            four.close()
            seven.close()


def test_four_harvard_pumps_on_one_chain(tmp_path: Path) -> None:
    addresses = (0, 1, 2, 12)
    with harvard_line(tmp_path, addresses) as (clock, pumps, line):
        drivers: list[PumpDriver] = [
            HarvardDriver(line=line, address=a, reply_timeout_s=REPLY_TIMEOUT_S) for a in addresses
        ]
        exercise(clock, pumps, drivers)


def test_four_modbus_devices_on_one_rtu_line() -> None:
    clock = VirtualClock()
    pumps = pumps_on(clock, (1, 2, 3, 4))
    with BackgroundEmulator(pumps, WireFaults(), use_pty=True) as emu:
        line = open_line(LineSpec(kind="serial", port=emu.where, baud=19200, parity="E"))
        drivers: list[PumpDriver] = [
            ModbusDriver(line=line, device_id=a, timeout_s=0.4) for a in pumps
        ]
        exercise(clock, pumps, drivers)


def test_four_modbus_units_behind_one_tcp_server() -> None:
    clock = VirtualClock()
    pumps = pumps_on(clock, (10, 11, 12, 13))
    with BackgroundEmulator(pumps, WireFaults(), tcp=("127.0.0.1", 0)) as emu:
        host, port = emu.host_port
        line = open_line(LineSpec(kind="tcp", port=f"{host}:{port}"))
        drivers: list[PumpDriver] = [
            ModbusDriver(line=line, device_id=a, timeout_s=0.4) for a in pumps
        ]
        exercise(clock, pumps, drivers)


class _Impostor:
    """Pump 2's protocol end, answering requests meant for pump 1 as itself (a pump whose
    address was set wrongly, or a chain that garbles addresses)."""

    protocol = "ne1000"

    def __init__(self, side: Ne1000PumpSide) -> None:
        self._side = side
        self.address = 1
        self.alone_on_line = False

    def feed(self, data: bytes, now: float) -> None: ...

    def next_request(self) -> bytes | None:
        return None

    def handle(self, request: bytes, now: float) -> bytes | None:
        if not request.startswith(b"1"):
            return None
        return self._side.handle(b"2" + request[1:], now)

    def poll(self, now: float) -> bytes | None:
        return None

    def reset_link(self) -> None: ...

    def describe(self) -> dict[str, object]:
        return {"impostor": True}


def test_a_pump_answering_in_anothers_place_is_caught(tmp_path: Path) -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    bus = PumpBus([_Impostor(Ne1000PumpSide(pump, address=2))], Ne1000Framer())
    endpoint = PtyEndpoint(link=str(tmp_path / "impostor.tty"))
    with BackgroundLine(bus, WireFaults(), endpoint=endpoint) as emulator:
        line = open_line(LineSpec(kind="serial", port=emulator.where, baud=19200))
        driver = Ne1000Driver(line=line, address=1, reply_timeout_s=0.2)
        with pytest.raises(PumpChecksumError, match="address 2, expected 1"):
            driver.connect()
        driver.close()
    assert pump.snapshot().set_rate_ml_h == 0.0


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
def test_a_closed_modbus_driver_sends_nothing_while_another_keeps_the_line(
    transport: str,
) -> None:
    """Two devices on one line; one driver is closed (its channel let go of its pump)
    while the other keeps the line open. The closed one refuses every call as not
    connected, as a driver never connected does, and sends nothing: before, it found the
    line open and went on writing to its device (a stop from a closed driver is not the
    channel's to give)."""
    clock = VirtualClock()
    pumps = pumps_on(clock, (1, 2))
    options: dict[str, object] = (
        {"use_pty": True} if transport == "rtu" else {"tcp": ("127.0.0.1", 0)}
    )
    with BackgroundEmulator(pumps, WireFaults(), **options) as emu:  # type: ignore[arg-type]
        if transport == "rtu":
            spec = LineSpec(kind="serial", port=emu.where, baud=19200, parity="E")
        else:
            host, port = emu.host_port
            spec = LineSpec(kind="tcp", port=f"{host}:{port}")
        line = open_line(spec)
        first, second = (ModbusDriver(line=line, device_id=a, timeout_s=0.4) for a in pumps)
        first.connect()
        second.connect()
        try:
            first.configure_syringe(pumps[1].syringe)
            first.set_rate(first.quantize_rate(2.0))
            first.start()
            first.close()
            for call in (first.read_status, first.stop, first.keep_alive):
                with pytest.raises(DeviceDisconnected, match="not connected"):
                    call()
            assert pumps[1].snapshot().running  # the closed driver's stop never went out
            assert second.read_status().running is False  # the line still serves the other
        finally:
            first.close()
            second.close()
