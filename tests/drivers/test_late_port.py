"""A pump whose port is not there when its driver connects (a USB-serial adapter plugged
in late, unplugged across a reboot, a TCP gateway switched on later) is reached by the
driver's next call once the port appears, exactly as after a lost port: the port is opened
with the same settings, the pump is asked its name before anything else, and the call goes
on. Before that each call reports the port missing (``DeviceDisconnected``), never that
the driver was not connected. Every family, on a port of its own and on a shared line.

Ports here are opened without the pacing pause (``prompt_reopening``): what is tested is
that a port appearing is taken up, not when (``test_opening.py``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.errors import DeviceDisconnected
from drivers.lines import LineSpec, SharedLine, open_line
from drivers.pumps.base import AnotherPumpAnswers, PumpDriver
from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.modbus import ModbusDriver
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.bus import BusMember, Framer, PumpBus
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.emulators.handler import WireHandler
from firmware_bridge.faults import WireFaults
from firmware_bridge.harvard.emulator import VERSION as HARVARD_VERSION
from firmware_bridge.harvard.emulator import HarvardFramer, HarvardPumpSide
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.ne1000.emulator import FIRMWARE as NE1000_FIRMWARE
from firmware_bridge.ne1000.emulator import Ne1000Framer, Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("prompt_reopening")]

REPLY_TIMEOUT_S = 0.5  # nothing here waits it out: the pumps answer
#: ne1000 / harvard on a port of their own or on one line (two pumps); Modbus behind one
#: TCP gateway (on a port of its own, a Modbus driver already came back: its own test)
LAYOUTS = ("ne1000", "ne1000 line", "harvard", "harvard line", "modbus line")


@dataclass
class LateRig:
    """Drivers made for a port that is not there; ``plug`` makes it appear."""

    drivers: list[PumpDriver]
    pumps: list[SimulatedPump]
    plug: Callable[[], None]
    #: the name each pump gives (None: whatever the emulator's map says)
    names: list[str | None]
    #: the line the drivers share (None: a port of its own)
    line: SharedLine | None = None

    def openings(self) -> int:
        """How many times the shared line's port (or Modbus link) was opened."""
        assert self.line is not None
        if self.line.protocol == "modbus":
            return self.line.modbus_link(REPLY_TIMEOUT_S).opens
        return self.line.generation


@contextlib.contextmanager
def late_rig(tmp_path: Path, layout: str) -> Iterator[LateRig]:
    family, _, on = layout.partition(" ")
    shared = on == "line"
    clock = VirtualClock()
    with contextlib.ExitStack() as stack:
        if family == "modbus":
            host, port = "127.0.0.1", _free_tcp_port()
            pumps = {1: SimulatedPump(clock), 2: SimulatedPump(clock)}
            line = open_line(LineSpec(kind="tcp", port=f"{host}:{port}"))
            drivers: list[PumpDriver] = [
                ModbusDriver(line=line, device_id=d, timeout_s=REPLY_TIMEOUT_S) for d in pumps
            ]

            def plug_modbus() -> None:
                stack.enter_context(BackgroundEmulator(pumps, WireFaults(), tcp=(host, port)))

            rig = LateRig(drivers, list(pumps.values()), plug_modbus, [None, None], line)
        else:
            path = str(tmp_path / "ttyUSB0")
            addresses = (0, 1) if shared else (0,)
            pumps = {a: SimulatedPump(clock) for a in addresses}
            sides: list[BusMember]
            framer: Framer
            if family == "ne1000":
                sides = [Ne1000PumpSide(p, address=a) for a, p in pumps.items()]
                framer, name, baud = Ne1000Framer(), NE1000_FIRMWARE, 19200
            else:
                sides = [HarvardPumpSide(p, address=a) for a, p in pumps.items()]
                framer, name, baud = HarvardFramer(), HARVARD_VERSION, 115200
            kind = Ne1000Driver if family == "ne1000" else HarvardDriver
            handler: WireHandler
            shared_line: SharedLine | None = None
            if shared:
                line = shared_line = open_line(LineSpec(kind="serial", port=path, baud=baud))
                drivers = [
                    kind(line=line, address=a, reply_timeout_s=REPLY_TIMEOUT_S) for a in addresses
                ]
                handler = PumpBus(sides, framer)
            else:
                drivers = [kind(port=path, reply_timeout_s=REPLY_TIMEOUT_S)]
                handler = sides[0]

            def plug_serial() -> None:
                emulator = BackgroundLine(handler, WireFaults(), endpoint=PtyEndpoint(link=path))
                emulator.start()
                stack.callback(emulator.stop)

            rig = LateRig(
                drivers, list(pumps.values()), plug_serial, [name] * len(drivers), shared_line
            )
        try:
            yield rig
        finally:
            for driver in rig.drivers:
                with contextlib.suppress(Exception):
                    driver.close()


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_port_missing_at_connect_is_opened_by_the_next_call(tmp_path: Path, layout: str) -> None:
    """Connect fails (the port is missing), and so does every call while it stays
    missing, as a lost port's; once it is there the next call opens it, names the pump
    (the name check runs first) and reads it; the pump can be set up and driven."""
    with late_rig(tmp_path, layout) as rig:
        for driver in rig.drivers:
            with pytest.raises(DeviceDisconnected):
                driver.connect()
        for driver in rig.drivers:
            with pytest.raises(DeviceDisconnected) as missing:
                driver.read_status()
            assert "call connect() first" not in str(missing.value)
        rig.plug()
        for driver, pump, name in zip(rig.drivers, rig.pumps, rig.names, strict=True):
            status = driver.read_status()
            assert not status.running and status.set_rate_ml_h == 0.0
            assert driver.pump_name is not None and driver.pump_name.foreign is None
            if name is not None:
                assert driver.pump_name.first == name
            driver.configure_syringe(pump.syringe)
            rate = driver.quantize_rate(2.0)
            assert driver.set_rate(rate) == pytest.approx(rate)
            assert pump.snapshot().set_rate_ml_h == pytest.approx(rate)


@pytest.mark.parametrize("layout", ("ne1000", "ne1000 line"))
def test_a_late_pump_naming_itself_otherwise_is_refused(tmp_path: Path, layout: str) -> None:
    """The name the owner expects (the safety process's record) is checked on the late
    port as after a reconnect: another pump is refused and nothing is set on it."""
    with late_rig(tmp_path, layout) as rig:
        for driver in rig.drivers:
            assert driver.pump_name is not None
            driver.pump_name.expect("NE500V2.100")
            with pytest.raises(DeviceDisconnected):
                driver.connect()
        rig.plug()
        for driver in rig.drivers:
            with pytest.raises(AnotherPumpAnswers, match="names itself"):
                driver.read_status()
        assert all(p.snapshot().set_rate_ml_h == 0.0 for p in rig.pumps)


def test_a_driver_closed_on_a_line_is_not_attached_again_behind_its_back(
    tmp_path: Path,
) -> None:
    """A connect that failed leaves the driver wanting its line; a close ends that."""
    with late_rig(tmp_path, "ne1000 line") as rig:
        one = rig.drivers[0]
        with pytest.raises(DeviceDisconnected):
            one.connect()
        one.close()
        rig.plug()
        with pytest.raises(DeviceDisconnected, match="call connect"):
            one.read_status()


@pytest.mark.parametrize("layout", ("ne1000 line", "modbus line"))
def test_a_driver_whose_connect_failed_keeps_the_line_open_for_itself(
    tmp_path: Path, layout: str
) -> None:
    """A connect that failed still counts the driver on its line: when the line's other
    driver closes, the port stays open for the first (not closed under it, to be opened
    again at its next call)."""
    with late_rig(tmp_path, layout) as rig:
        first, second = rig.drivers
        with pytest.raises(DeviceDisconnected):
            first.connect()
        rig.plug()
        second.connect()
        opened = rig.openings()
        second.close()
        first.read_status()
        assert rig.openings() == opened == 1
