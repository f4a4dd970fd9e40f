"""The Modbus driver against the Modbus TCP emulator, over a real socket (port 0)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from drivers.pumps.modbus import ModbusDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import WireFaults
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.pump_model import SimulatedPump
from tests.drivers.rig import Rig

#: short enough for fault cases to be quick, long enough for a loaded CI machine
TIMEOUT_S = 0.4


@contextlib.contextmanager
def make_rig(tmp_path: Path, map_path: str | None = None) -> Iterator[Rig]:
    del tmp_path  # the emulator keeps nothing on disk
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    with BackgroundEmulator(pump, wire, map_path=map_path, tcp=("127.0.0.1", 0)) as emu:
        host, port = emu.host_port
        driver = ModbusDriver(
            map_path=map_path, host=host, port=port, device_id=1, timeout_s=TIMEOUT_S
        )
        driver.connect()
        try:
            yield Rig(name="modbus_tcp", driver=driver, pump=pump, clock=clock, wire=wire)
        finally:
            driver.close()
