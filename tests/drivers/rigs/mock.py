"""The in-process mock as a rig: the pump and a fault switchboard, with no wire between.

Built with a ``WireFaults`` so the wire cases of the back-to-back suite (lost ack, lost
request) run on the mock too, with the same meaning as on a pty or socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from drivers.pumps.mock import MockPumpDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import WireFaults
from firmware_bridge.pump_model import SimulatedPump
from tests.drivers.rig import Rig


@contextlib.contextmanager
def make_rig(tmp_path: Path) -> Iterator[Rig]:
    del tmp_path  # nothing to put on disk
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    driver = MockPumpDriver(pump=pump, wire=wire)
    driver.connect()
    try:
        yield Rig(name="mock", driver=driver, pump=pump, clock=clock, wire=wire)
    finally:
        driver.close()
