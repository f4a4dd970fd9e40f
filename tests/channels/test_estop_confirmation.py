"""S12 on a shared line: the emergency stop confirms each pump's stop from the stop's own
reply, stops every pump before it reads any back, and is no weaker where a reply does
not confirm.

Four NE-1000 drivers on one ``SharedLine`` against the NE-1000 emulator serving four
pumps on one pty (``PumpBus``), behind the real safety core on virtual clocks. The reply
to ``STP`` carries the pump's status character: ``S`` is the pump's own word that it
stopped (``StopConfirmation``), journaled as ``StopConfirmed`` with the next command, so
the four stops go out back to back, then the interlock relay, and the read-backs of rate
and volumes come with the next poll. A stop whose reply shows the pump still running,
or that is not answered, is a ``CommandFailed`` as before: the channel is read back in
the emergency stop itself (after every stop and the relay), and a pump seen running is
stopped again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.four_pumps import CHANNEL_DRUGS
from drivers.lines import LineSpec, SharedLine, open_line
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.bus import PumpBus
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.emulator import Ne1000Framer, Ne1000PumpSide
from firmware_bridge.syringes import syringe_by_name
from safety.host.core import Channel, SafetyCore
from safety.journal_text import ProgramTracker, describe
from safety.kernel.model import (
    CommandFailed,
    CommandIssued,
    EmergencyStop,
    Event,
    LoadProgram,
    ReadbackReceived,
    RequestDecided,
    SetInterlock,
    StartInfusion,
    StopConfirmed,
)
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench, booted
from tests.kernel.support import TracingPump

pytestmark = pytest.mark.timeout(60)

NAMES = ("A", "B", "C", "D")
REPLY_TIMEOUT_S = 0.3


class StubbornPump(TracingPump):
    """A pump that answers its next ``ignore_stops`` stops without stopping (a jammed
    stop, firmware that lost the command after acknowledging it)."""

    ignore_stops = 0

    def stop(self) -> None:
        if self.ignore_stops > 0:
            self.ignore_stops -= 1
            return
        super().stop()


class LineBench(ChannelBench):
    """A ``ChannelBench`` whose channels are NE-1000 drivers at addresses 0-3 on one
    line, each before its own emulated pump on one pty."""

    def __init__(self, root: Path, library: DrugLibrary, **options: Any) -> None:
        self.emulator: BackgroundLine | None = None
        self.line: SharedLine | None = None
        self.line_wire = WireFaults()
        self.ne1000: dict[str, Ne1000Driver] = {}
        super().__init__(root, library, NAMES, gpio=True, **options)

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        if self.emulator is None:
            self.root.mkdir(parents=True, exist_ok=True)
            for name in NAMES:
                self.pumps[name] = StubbornPump(self.clinical, self.syringe)
            self.pump = self.pumps[NAMES[0]]
            members = [
                Ne1000PumpSide(self.pumps[name], address=address)
                for address, name in enumerate(NAMES)
            ]
            endpoint = PtyEndpoint(link=str(self.root / "line.tty"))
            self.emulator = BackgroundLine(
                PumpBus(members, Ne1000Framer()), self.line_wire, endpoint=endpoint
            )
            self.emulator.start()
            self.line = open_line(LineSpec(kind="serial", port=self.emulator.where, baud=19200))
            for address, name in enumerate(NAMES):
                self.ne1000[name] = Ne1000Driver(
                    line=self.line, address=address, reply_timeout_s=REPLY_TIMEOUT_S
                )
        channels = [
            Channel(name, self.ne1000[name], syringe_by_name(self.syringe.name), None, "ne1000")
            for name in NAMES
        ]
        return self._core_of(channels, library)

    def shut(self) -> None:
        super().shut()
        if self.emulator is not None:
            self.emulator.stop()

    def start_all(self) -> None:
        for name in NAMES:
            drug = CHANNEL_DRUGS[name]
            loaded = self.send(LoadProgram(drug.spec(self.library), channel=name))
            assert loaded.verdict.accepted, loaded.verdict.message
            started = self.send(StartInfusion(drug.start, confirm_soft_limits=True, channel=name))
            assert started.execution == "applied", (name, started.execution)
        assert all(p.snapshot().running for p in self.pumps.values())

    def estop_events(self, first: int) -> list[Event]:
        """The journal from the emergency stop's request on (``first``: the journal's
        last id before it)."""
        events = self.events()[first:]
        i = next(
            n
            for n, e in enumerate(events)
            if isinstance(e, RequestDecided) and isinstance(e.body, EmergencyStop)
        )
        return events[i:]


@pytest.fixture
def line_bench(library: DrugLibrary, tmp_path: Path) -> Iterator[LineBench]:
    with booted(LineBench(tmp_path / "bench", library)) as bench:
        bench.start_all()
        yield bench


def _shape(events: list[Event]) -> list[tuple[str, ...]]:
    """Each event as (kind, channel[, detail]) for comparing orders."""
    shape: list[tuple[str, ...]] = []
    for e in events:
        if isinstance(e, CommandIssued):
            what = "interlock" if isinstance(e.action, SetInterlock) else e.action.kind
            shape.append(("issued", what, e.action.channel, e.cause))
        elif isinstance(e, StopConfirmed):
            shape.append(("confirmed", e.channel, e.reply))
        elif isinstance(e, CommandFailed):
            shape.append(("failed", e.action.channel, e.failure, e.detail))
        elif isinstance(e, ReadbackReceived):
            shape.append(("readback", e.channel, "running" if e.reading.running else "stopped"))
        else:
            shape.append((e.kind,))
    return shape


def test_every_stop_goes_out_back_to_back_confirmed_by_its_own_reply(
    line_bench: LineBench,
) -> None:
    bench = line_bench
    first = len(bench.events())
    outcome = bench.estop()
    assert outcome.verdict.accepted and outcome.execution == "applied"
    assert not any(p.snapshot().running for p in bench.pumps.values())
    assert bench.gpio is not None and not bench.gpio.pump_enabled
    # the reply's snapshot: every channel stopped, on the pumps' own word
    assert [v.running for v in outcome.snapshot.channels] == [False] * 4
    assert _shape(bench.estop_events(first)) == [
        ("request_decided",),
        ("emergency_stop_raised",),
        ("issued", "stop_pump", "A", "estop"),
        ("confirmed", "A", "00S"),
        ("issued", "stop_pump", "B", "estop"),
        ("confirmed", "B", "01S"),
        ("issued", "stop_pump", "C", "estop"),
        ("confirmed", "C", "02S"),
        ("issued", "stop_pump", "D", "estop"),
        ("confirmed", "D", "03S"),
        ("issued", "interlock", "A", "estop"),
    ]  # no read-back in the stop itself
    lines = [describe(e, ProgramTracker()) for e in bench.estop_events(first)]
    assert lines[3].endswith("stop confirmed by the pump's reply (00S)")
    state = bench.core.state
    assert state.estopped and state.alarms.get("estop") is not None
    assert all(c.unread_command for c in state.channels.values())  # not yet verified
    assert bench.replayed() == state

    # the next poll reads every pump back, as it always does, and verifies
    bench.service(bench.core.timing.poll_period_s)
    after = _shape(bench.estop_events(first))[11:]
    assert after == [("readback", n, "stopped") for n in NAMES]
    state = bench.core.state
    assert not any(c.unread_command or c.running for c in state.channels.values())
    assert state.estopped and bench.start_on("A", CHANNEL_DRUGS["A"].start).verdict.reason == (
        outcome.verdict.reason  # a restart still needs the alarm acknowledged
    )
    assert bench.replayed() == bench.core.state


def test_a_stop_whose_reply_shows_the_pump_still_running_is_not_confirmed(
    line_bench: LineBench,
) -> None:
    """B answers ``STP`` with status ``I``: a ``CommandFailed`` (rejected), never a
    confirmation. C and D are still stopped at once and the relay opened; then B is read
    back in the emergency stop itself, seen running, and stopped again."""
    bench = line_bench
    pump_b = bench.pumps["B"]
    assert isinstance(pump_b, StubbornPump)
    pump_b.ignore_stops = 1
    first = len(bench.events())
    outcome = bench.estop()
    assert outcome.verdict.accepted
    assert outcome.execution == "rejected by pump: still running (status I)"
    assert not any(p.snapshot().running for p in bench.pumps.values())
    assert bench.gpio is not None and not bench.gpio.pump_enabled
    assert _shape(bench.estop_events(first)) == [
        ("request_decided",),
        ("emergency_stop_raised",),
        ("issued", "stop_pump", "A", "estop"),
        ("confirmed", "A", "00S"),
        ("issued", "stop_pump", "B", "estop"),
        ("failed", "B", "rejected", "still running (status I)"),
        ("issued", "stop_pump", "C", "estop"),
        ("confirmed", "C", "02S"),
        ("issued", "stop_pump", "D", "estop"),
        ("confirmed", "D", "03S"),
        ("issued", "interlock", "A", "estop"),
        ("readback", "B", "running"),  # after every stop and the relay
        ("issued", "stop_pump", "B", "safety"),  # seen running under the stop: again
        ("readback", "B", "stopped"),
    ]
    assert [v.running for v in outcome.snapshot.channels] == [False] * 4
    assert bench.replayed() == bench.core.state


def test_a_stop_lost_on_the_wire_is_reconciled_by_a_read_back_in_the_stop_itself(
    line_bench: LineBench,
) -> None:
    """No reply to A's stop (the request lost on the line: not executed): uncertain, so
    A is read back after the other stops and the relay, seen running and stopped again;
    nothing is repeated blindly."""
    bench = line_bench
    bench.line_wire.drop_next(1)
    first = len(bench.events())
    outcome = bench.estop()
    assert outcome.verdict.accepted
    assert outcome.execution == "uncertain (DeviceTimeout), reconciled by read-back"
    shape = _shape(bench.estop_events(first))
    assert shape[2:4] == [("issued", "stop_pump", "A", "estop"), shape[3]]
    assert shape[3][:3] == ("failed", "A", "timeout")
    assert shape[4:11] == [
        ("issued", "stop_pump", "B", "estop"),
        ("confirmed", "B", "01S"),
        ("issued", "stop_pump", "C", "estop"),
        ("confirmed", "C", "02S"),
        ("issued", "stop_pump", "D", "estop"),
        ("confirmed", "D", "03S"),
        ("issued", "interlock", "A", "estop"),
    ]
    assert shape[11:] == [
        ("readback", "A", "running"),
        ("issued", "stop_pump", "A", "safety"),
        ("readback", "A", "stopped"),
    ]
    assert not any(p.snapshot().running for p in bench.pumps.values())
    assert bench.core.state.channel("A").pending is None  # reconciled by the read-back
    assert bench.replayed() == bench.core.state


def test_a_mock_pump_is_read_back_in_the_stop_as_before(
    make_channels: Callable[..., ChannelBench], library: DrugLibrary
) -> None:
    """A driver whose stop reply confirms nothing (the mock, Modbus) is read back in the
    emergency stop itself, after every stop and the relay, as before."""
    bench = make_channels(names=("A", "B"))
    bench.boot()
    for name in ("A", "B"):
        drug = CHANNEL_DRUGS[name]
        assert bench.load_on(name, drug.spec(library)).verdict.accepted
        assert bench.start_on(name, drug.start, confirm=True).execution == "applied"
    first = len(bench.events())
    assert bench.estop().execution == "applied"
    assert _shape(bench.events()[first:]) == [
        ("request_decided",),
        ("emergency_stop_raised",),
        ("issued", "stop_pump", "A", "estop"),
        ("issued", "stop_pump", "B", "estop"),
        ("issued", "interlock", "A", "estop"),
        ("readback", "A", "stopped"),
        ("readback", "B", "stopped"),
    ]
    assert not bench.ch("A").running and not bench.ch("B").running
