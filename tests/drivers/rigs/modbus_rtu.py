"""The Modbus driver against the Modbus RTU emulator, over a real pty."""

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

TIMEOUT_S = 0.4


@contextlib.contextmanager
def make_rig(tmp_path: Path, map_path: str | None = None) -> Iterator[Rig]:
    del tmp_path  # the pty lives in the emulator's own temporary folder
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    with BackgroundEmulator(pump, wire, map_path=map_path, use_pty=True) as emu:
        driver = ModbusDriver(
            map_path=map_path, serial_port=emu.where, device_id=1, timeout_s=TIMEOUT_S
        )
        driver.connect()
        try:
            yield Rig(name="modbus_rtu", driver=driver, pump=pump, clock=clock, wire=wire)
        finally:
            driver.close()
