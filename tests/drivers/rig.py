"""A driver under test together with the simulated pump behind it.

The back-to-back suite (``test_back_to_back.py``) runs the same cases on every rig, so a
behaviour proven on the mock is proven on the NE-1000, Harvard and Modbus emulators too.
Each rig module in ``rigs/`` exposes ``make_rig(tmp_path)``, a context manager yielding a Rig.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.pumps.base import PumpDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import WireFaults
from firmware_bridge.pump_model import SimulatedPump


@dataclass
class Rig:
    name: str
    driver: PumpDriver  # already connected
    pump: SimulatedPump  # the physics behind it, for fault injection and ground truth
    clock: VirtualClock  # the clinical clock the pump runs on
    wire: WireFaults | None  # None for the in-process mock without a wire
