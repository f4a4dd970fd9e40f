"""After a reconnect, another pump answers on the channel's port: the safety process says
so, and sends it nothing.

A port's name can reach another adapter after an unplug (docs/protocols.md). Here one
NE-1000 driver in safe mode behind the real safety core reaches its pump through a stable
pty link; the link vanishes, and what comes back under the same name is an emulated NE-500
(another pump, its own physics). The driver compares the pump's name (``VER``) with the one
at connection and refuses it (``AnotherPumpAnswers``); the core journals that cause as a
comms failure of its own, so the high alarm names it instead of the lost line. Nothing but
the probe and the name query reaches the other pump: no safe-mode setting, no rate, no
start. When the channel's own pump is back under the name, supervision resumes on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.codec import decode_safe_packet, parse_command
from firmware_bridge.ne1000.emulator import Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import syringe_by_name
from safety.host.core import Channel, SafetyCore
from safety.kernel.model import CommsFailed, ReadbackReceived
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench, booted
from tests.kernel.support import TracingPump, norepi_standard

pytestmark = pytest.mark.timeout(60)

REPLY_TIMEOUT_S = 1.0  # nothing here waits it out but a loaded machine
OTHER_FIRMWARE = "NE500V2.100"


class SwapBench(ChannelBench):
    """One NE-1000 channel on a pty reached through a stable link, and a way to put
    another pump behind that link (``serve``)."""

    def __init__(self, root: Path, library: DrugLibrary, **options: Any) -> None:
        self.line: BackgroundLine | None = None
        self.own_side: Ne1000PumpSide | None = None
        self.ne1000: Ne1000Driver | None = None
        super().__init__(root, library, ("A",), **options)

    @property
    def link(self) -> Path:
        return self.root / "pump.tty"

    def serve(self, side: Ne1000PumpSide) -> None:
        """Whatever was behind the link goes (the adapter unplugged), ``side`` answers
        under the same name."""
        if self.line is not None:
            self.line.stop()
        self.line = BackgroundLine(side, WireFaults(), endpoint=PtyEndpoint(link=str(self.link)))
        self.line.start()

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        if self.ne1000 is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self.pump = TracingPump(self.clinical, self.syringe)
            self.pumps["A"] = self.pump
            self.own_side = Ne1000PumpSide(self.pump, address=0)
            self.serve(self.own_side)
            self.ne1000 = Ne1000Driver(
                port=str(self.link),
                address=0,
                safe_mode_timeout_s=60,
                reply_timeout_s=REPLY_TIMEOUT_S,
            )
        channel = Channel("A", self.ne1000, syringe_by_name(self.syringe.name), None, "ne1000")
        return self._core_of([channel], library)

    def shut(self) -> None:
        super().shut()
        if self.line is not None:
            self.line.stop()


@pytest.fixture
def swap_bench(library: DrugLibrary, tmp_path: Path) -> Iterator[SwapBench]:
    with booted(SwapBench(tmp_path / "bench", library)) as bench:
        yield bench


def test_another_pump_behind_the_port_is_named_in_the_alarm_and_sent_nothing(
    swap_bench: SwapBench,
) -> None:
    bench = swap_bench
    assert bench.load(norepi_standard(bench.library)).verdict.accepted
    started = bench.start("8")
    assert started.execution == "applied", started
    rate = bench.pump.snapshot().set_rate_ml_h
    assert rate > 0

    other = SimulatedPump(bench.clinical)
    other_side = Ne1000PumpSide(other, address=0, firmware=OTHER_FIRMWARE)
    bench.serve(other_side)  # the channel's pump unplugged; another one under the name
    first = len(bench.events())
    bench.core.poll()  # the port vanished under the driver: a comms failure
    bench.core.poll()  # reopened by name: the pump there names itself otherwise
    bench.core.poll()  # asked again: still another pump, nothing new to journal
    failures = [e for e in bench.events()[first:] if isinstance(e, CommsFailed)]
    assert len(failures) == 2, failures
    assert "AnotherPumpAnswers" not in failures[0].detail
    assert "AnotherPumpAnswers" in failures[1].detail
    assert f"names itself '{OTHER_FIRMWARE}', not 'NE1000V3.928'" in failures[1].detail
    alarm = bench.core.state.alarms.get("pump_comms", "A")
    assert alarm is not None and alarm.active and alarm.priority.name == "HIGH"
    assert "another pump answers there" in alarm.message
    # the other pump got the probe and the name query, nothing else (every poll asked
    # again): no safe-mode setting, no rate, no start; and nothing it said was taken
    assert bench.line is not None
    assert set(_requests(bench.line.lines)) == {"", "VER"}, bench.line.lines
    snap = other.snapshot()
    assert not snap.running and snap.set_rate_ml_h == 0.0
    assert other_side.describe()["mode"] == "basic"  # no SAF reached it
    assert not any(isinstance(e, ReadbackReceived) for e in bench.events()[first:])
    # the channel's own pump ran on untouched
    assert bench.pump.snapshot().running and bench.pump.snapshot().set_rate_ml_h == rate

    assert bench.own_side is not None
    bench.serve(bench.own_side)  # the channel's own pump back under the name
    bench.core.poll()  # the port vanished again
    bench.core.poll()  # reopened: our pump, read back
    assert any(isinstance(e, ReadbackReceived) for e in bench.events()[first:])
    assert bench.core.state.channel("A").comms_ok
    assert bench.change("9").execution == "applied"
    assert bench.pump.snapshot().set_rate_ml_h > rate


def _requests(frame_log: list[str]) -> list[str]:
    """The command names (``""``: the bare status probe) of the safe-mode packets the
    emulator received, from its frame log (``... rx 02 08 30 ... |...|``)."""
    names: list[str] = []
    for line in frame_log:
        _, rx, rendered = line.partition(" rx ")
        if rx:
            packet = bytes.fromhex(rendered.split("|", 1)[0])
            names.append(parse_command(decode_safe_packet(packet).rstrip(b"\r")).name)
    return names
