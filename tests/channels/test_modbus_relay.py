"""Relay infusion on Modbus volumetric pumps: a bag change is a handover as a syringe's is.

Two peristaltic drives (the example map, ``config/pumps/modbus_peristaltic.toml``) at unit
ids 1 and 2 behind one Modbus TCP emulator, each with a 1000 mL bag, driven by the real
Modbus driver behind the safety core on virtual clocks. Norepinephrine 4 mg/1000 mL in
D5W (4 mcg/mL, the label's standard dilution) at 8 mcg/min is 120 mL/h; A's bag holds
40 mL (20 min). B is primed through the map's prime (volume register, then coil), its
line off the patient, then armed: A nears empty and the safety process hands over.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from drivers.pumps.modbus import ModbusDriver
from firmware_bridge.faults import WireFaults
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.syringes import BAGS
from safety.host.core import Channel, SafetyCore
from safety.kernel.model import CommandIssued, HandoverEnded, HandoverStarted, PrimePump
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench, booted
from tests.kernel.support import TracingPump, norepi_standard

pytestmark = pytest.mark.timeout(60)

NAMES = ("A", "B")
BAG = BAGS["bag-1000ml"]
PER_ML = Fraction(4)  # mcg per mL of 4 mg/1000 mL


class ModbusBench(ChannelBench):
    """A ``ChannelBench`` whose channels are Modbus peristaltic drives, unit ids 1 and 2."""

    def __init__(self, root: Path, library: DrugLibrary, **options: Any) -> None:
        self.emulator: BackgroundEmulator | None = None
        self.modbus: dict[str, ModbusDriver] = {}
        super().__init__(root, library, NAMES, **options)

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        if self.emulator is None:
            self.pumps = {
                "A": TracingPump(self.clinical, BAG, loaded_volume_ml=40.0),
                "B": TracingPump(self.clinical, BAG),
            }
            self.pump = self.pumps["A"]
            units = {1: self.pumps["A"], 2: self.pumps["B"]}
            self.emulator = BackgroundEmulator(
                units, WireFaults(), map_path="peristaltic", tcp=("127.0.0.1", 0)
            )
            self.emulator.start()
            host, port = self.emulator.host_port
            for unit, name in enumerate(NAMES, start=1):
                self.modbus[name] = ModbusDriver(
                    map_path="peristaltic", host=host, port=port, device_id=unit, timeout_s=0.5
                )
        channels = [
            Channel("A", self.modbus["A"], BAG, 40.0, "modbus"),
            Channel("B", self.modbus["B"], BAG, None, "modbus"),
        ]
        return self._core_of(channels, library)

    def shut(self) -> None:
        super().shut()
        if self.emulator is not None:
            self.emulator.stop()


@pytest.fixture
def bench(library: DrugLibrary, tmp_path: Path) -> Iterator[ModbusBench]:
    with booted(ModbusBench(tmp_path / "bench", library)) as bench:
        yield bench


def test_a_modbus_bag_is_primed_armed_and_relieved(
    bench: ModbusBench, library: DrugLibrary
) -> None:
    spec = norepi_standard(library, concentration="4 mg/1000 mL")
    assert bench.load_on("A", spec).verdict.accepted and bench.load_on("B", spec).verdict.accepted
    started = bench.start_on("A", 8)
    assert started.execution == "applied", started.verdict.message
    assert bench.pumps["A"].snapshot().set_rate_ml_h == 120.0

    unprimed = bench.arm("B", "A")
    assert not unprimed.verdict.accepted and "has not been primed" in unprimed.verdict.message
    bench.pumps["B"].connect_line(False)  # the new set's line to waste, as the prime asks
    primed = bench.prime("B", "5")
    assert primed.verdict.accepted and primed.execution == "applied", primed.verdict.message
    prime_commands = [
        e.action
        for e in bench.events()
        if isinstance(e, CommandIssued) and isinstance(e.action, PrimePump)
    ]
    assert prime_commands == [PrimePump(Decimal("5"), "B")]
    assert bench.pumps["B"].snapshot().priming
    bench.advance(60, poll_every_s=5)  # 5 mL at 999 mL/h: 18 s
    assert bench.core.state.channel("B").container.primed
    bench.pumps["B"].connect_line(True)
    armed = bench.arm("B", "A")
    assert armed.verdict.accepted, armed.verdict.message

    bench.advance(20 * 60, poll_every_s=20)
    handovers = [e for e in bench.relay_events() if isinstance(e, HandoverStarted)]
    assert len(handovers) == 1
    assert [e.outcome for e in bench.relay_events() if isinstance(e, HandoverEnded)] == ["done"]
    a, b = bench.pumps["A"].snapshot(), bench.pumps["B"].snapshot()
    assert not a.running and b.running and b.set_rate_ml_h == 120.0
    # the patient's drug rate held at 8 mcg/min (480 mcg/h) across the bag change
    for t in range(120, 20 * 60, 10):
        assert bench.truth_total_rate(PER_ML, float(t)) == Fraction(480)
