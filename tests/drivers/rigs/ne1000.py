"""The NE-1000 driver against the NE-1000 emulator over a real pty, in safe mode.

Safe mode (CRC-checked packets) is the mode a bench should run, and the one where a
corrupted byte is caught rather than read as a plausible wrong value; the 60 s pump-side
watchdog runs on the real clock and no case lasts that long. The pty is reached through a
symlink in ``tmp_path`` so that a simulated unplug can come back under the same name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.emulator import Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump
from tests.drivers.rig import Rig

#: short enough for fault cases to be quick, long enough for a loaded CI machine
REPLY_TIMEOUT_S = 0.3
SAFE_MODE_TIMEOUT_S = 60


@contextlib.contextmanager
def make_rig(tmp_path: Path, *, address: int = 0, safe_mode: bool = True) -> Iterator[Rig]:
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    handler = Ne1000PumpSide(pump, address=address)
    endpoint = PtyEndpoint(link=str(tmp_path / "ne1000.tty"))
    with BackgroundLine(handler, wire, endpoint=endpoint) as emulator:
        driver = Ne1000Driver(
            port=emulator.where,
            address=address,
            safe_mode_timeout_s=SAFE_MODE_TIMEOUT_S if safe_mode else None,
            reply_timeout_s=REPLY_TIMEOUT_S,
        )
        driver.connect()
        try:
            yield Rig(name="ne1000", driver=driver, pump=pump, clock=clock, wire=wire)
        finally:
            driver.close()
