"""The Harvard driver against the PHD ULTRA / Pump 11 Elite emulator over a real pty.

A nonzero address by default, so that every case also exercises the ``NN:`` prefixes and
the prompt ambiguity they bring. The pty is reached through a symlink in ``tmp_path`` so
that a simulated unplug can come back under the same name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from drivers.pumps.harvard import HarvardDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.harvard.emulator import HarvardPumpSide
from firmware_bridge.pump_model import SimulatedPump
from tests.drivers.rig import Rig

REPLY_TIMEOUT_S = 0.3


@contextlib.contextmanager
def make_rig(tmp_path: Path, *, address: int = 7) -> Iterator[Rig]:
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    handler = HarvardPumpSide(pump, address=address)
    endpoint = PtyEndpoint(link=str(tmp_path / "harvard.tty"))
    with BackgroundLine(handler, wire, endpoint=endpoint) as emulator:
        driver = HarvardDriver(
            port=emulator.where, address=address, reply_timeout_s=REPLY_TIMEOUT_S
        )
        driver.connect()
        try:
            yield Rig(name="harvard", driver=driver, pump=pump, clock=clock, wire=wire)
        finally:
            driver.close()
