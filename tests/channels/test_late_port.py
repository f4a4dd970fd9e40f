"""A channel whose serial port is missing when the safety process starts (a USB-serial
adapter plugged in late, or unplugged across a reboot) is reached by the next poll once
the port appears, exactly as a pump first heard after start: its name is checked first
(another pump than the journal's record is refused as after a reconnect), then it is
read, its rate range is learned and its comms alarm clears. While the port is missing,
the channel's comms alarm stays as it is and nothing reaches any pump for it.

Channels A and B on NE-1000 drivers made afresh by every safety process: each on a port
of its own (``ttyUSB0``, ``ttyUSB1`` under the bench's root), or both at addresses 0 and
1 on one line (``line.tty``); the ports in ``missing`` are not there at the first boot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.lines import LineSpec, open_line
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.bus import BusMember, PumpBus
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.codec import decode_safe_packet, parse_command
from firmware_bridge.ne1000.emulator import FIRMWARE, Ne1000Framer, Ne1000PumpSide
from firmware_bridge.syringes import syringe_by_name
from safety.alarms import Alarm
from safety.host.core import Channel, SafetyCore
from safety.kernel.model import CommsFailed, PumpNamed, ReadbackReceived
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench, booted
from tests.kernel.support import TracingPump, norepi_standard

pytestmark = pytest.mark.timeout(60)

REPLY_TIMEOUT_S = 1.0  # nothing here waits it out but a loaded machine
B_FIRMWARE = "NE500V2.100"
SPARE_FIRMWARE = "NE1000V3.930"  # a pump that is not A's
PORTS = {"A": "ttyUSB0", "B": "ttyUSB1"}
LINE = "line.tty"


class LateBench(ChannelBench):
    """Channels A and B on NE-1000s, on ports of their own or on one line (``one_line``);
    the ports named in ``missing`` (``ttyUSB0``, ``line.tty``...) are not there when the
    first safety process starts: ``plug`` makes one appear with a pump behind it."""

    def __init__(
        self, root: Path, library: DrugLibrary, *, missing: tuple[str, ...], one_line: bool
    ) -> None:
        self.missing = missing
        self.one_line = one_line
        self.sides: dict[str, Ne1000PumpSide] = {}
        #: each pump's frame log (what reached it, wherever it was plugged)
        self.heard: dict[str, list[str]] = {}
        self.plugged: dict[str, BackgroundLine] = {}
        self.ne1000: dict[str, Ne1000Driver] = {}
        super().__init__(root, library, ("A", "B"))

    def add(self, pump: str, firmware: str, address: int = 0) -> TracingPump:
        """A pump named ``firmware`` (its ``VER`` answer), not plugged anywhere yet."""
        tracing = TracingPump(self.clinical, self.syringe)
        self.pumps[pump] = tracing
        self.sides[pump] = Ne1000PumpSide(tracing, address=address, firmware=firmware)
        self.heard[pump] = []
        return tracing

    def plug(self, port: str, *pumps: str) -> None:
        """Whatever was behind ``port`` goes (unplugged); ``pumps`` answer there (one on
        a port of its own, several on the line)."""
        self.unplug(port)
        handler: BusMember | PumpBus = self.sides[pumps[0]]
        if port == LINE:
            handler = PumpBus([self.sides[p] for p in pumps], Ne1000Framer())
        line = BackgroundLine(
            handler,
            WireFaults(),
            endpoint=PtyEndpoint(link=str(self.root / port)),
            log=self.heard[pumps[0]].append,  # on the line: both pumps' frames, A's log
        )
        line.start()
        self.plugged[port] = line

    def unplug(self, port: str) -> None:
        old = self.plugged.pop(port, None)
        if old is not None:
            old.stop()
        assert not (self.root / port).exists()

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        if not self.sides:
            self.root.mkdir(parents=True, exist_ok=True)
            self.pump = self.add("A", FIRMWARE, 0)
            self.add("B", B_FIRMWARE, 1 if self.one_line else 0)
            wiring = {LINE: ("A", "B")} if self.one_line else {p: (c,) for c, p in PORTS.items()}
            for port, pumps in wiring.items():
                if port not in self.missing:
                    self.plug(port, *pumps)
        for old in self.ne1000.values():  # the old process's ports, closed as at its death
            old.close()
        line = (
            open_line(LineSpec(kind="serial", port=str(self.root / LINE), baud=19200))
            if self.one_line
            else None
        )
        channels = []
        for address, name in enumerate(("A", "B")):
            if line is not None:
                driver = Ne1000Driver(line=line, address=address, reply_timeout_s=REPLY_TIMEOUT_S)
            else:
                port = str(self.root / PORTS[name])
                driver = Ne1000Driver(port=port, address=0, reply_timeout_s=REPLY_TIMEOUT_S)
            self.ne1000[name] = driver
            container = syringe_by_name(self.syringe.name)
            channels.append(Channel(name, driver, container, None, "ne1000"))
        return self._core_of(channels, library)

    def shut(self) -> None:
        super().shut()
        for line in self.plugged.values():
            line.stop()

    def sent_to(self, pump: str, address: int = 0) -> list[str]:
        """The commands for ``address`` that reached ``pump``'s port (its emulator's frame
        log: ``... rx 30 56 45 52 0d |...|``), in order, with their argument (``""``: the
        bare status probe; ``"RAT"`` asks the rate, ``"RAT 30.00"`` sets it)."""
        sent: list[str] = []
        for line in self.heard[pump]:
            _, rx, rendered = line.partition(" rx ")
            if rx:
                frame = bytes.fromhex(rendered.split("|", 1)[0])
                if frame[:1] == b"\x02":
                    frame = decode_safe_packet(frame)
                command = parse_command(frame.rstrip(b"\r"))
                if command.address == address:
                    sent.append(f"{command.name} {command.argument}".rstrip())
        return sent

    def pump_names(self) -> list[tuple[str, str]]:
        """Every ``PumpNamed`` of the journal, as (channel, name), in order."""
        return [(e.channel, e.name) for e in self.events() if isinstance(e, PumpNamed)]

    def comms_alarm(self, channel: str) -> Alarm | None:
        return self.core.state.alarms.get("pump_comms", channel)


def _late(tmp_path: Path, library: DrugLibrary, *, one_line: bool) -> LateBench:
    missing = (LINE,) if one_line else (PORTS["A"],)
    return LateBench(tmp_path / "bench", library, missing=missing, one_line=one_line)


@pytest.fixture(params=["own-port", "one-line"])
def late(
    request: pytest.FixtureRequest, library: DrugLibrary, tmp_path: Path
) -> Iterator[LateBench]:
    """A's port (or the line of A and B) missing at the first start."""
    with booted(_late(tmp_path, library, one_line=request.param == "one-line")) as bench:
        yield bench


def test_a_port_plugged_in_after_start_is_opened_by_the_next_poll(late: LateBench) -> None:
    """A's port is missing at start: the high comms alarm, nothing journaled as A's pump.
    It stays so, unchanged and not journaled again, while the port is missing. Plugged in,
    the next poll opens it: the pump names itself first, its name is journaled, it is read
    and given the channel's syringe after that reading (its range learned), the alarm
    clears; a program then runs on it."""
    late_channels = ("A", "B") if late.one_line else ("A",)
    for channel in late_channels:
        assert not late.ch(channel).comms_ok
        alarm = late.comms_alarm(channel)
        assert alarm is not None and alarm.active and alarm.priority.name == "HIGH"
        assert "not reachable at start" in alarm.message
        assert not late.core.channels[channel].known
    assert ("A", FIRMWARE) not in late.pump_names()

    first = len(late.events())
    late.core.poll()  # still missing: the alarm stands, nothing new to journal
    late.core.poll()
    missing = [
        e
        for e in late.events()[first:]
        if isinstance(e, CommsFailed | ReadbackReceived) and e.channel in late_channels
    ]
    assert not missing
    for channel in late_channels:
        alarm = late.comms_alarm(channel)
        assert alarm is not None and alarm.active and "not reachable at start" in alarm.message

    if late.one_line:
        late.plug(LINE, "A", "B")
    else:
        late.plug(PORTS["A"], "A")
    first = len(late.events())
    late.core.poll()
    after = late.events()[first:]
    for channel, name in (("A", FIRMWARE), ("B", B_FIRMWARE)):
        assert late.ch(channel).comms_ok
        alarm = late.comms_alarm(channel)
        assert alarm is None or not alarm.active
        assert late.core.channels[channel].known  # the rate range is learned
        assert late.ch(channel).pump_name == name
    named = [(e.channel, e.name) for e in after if isinstance(e, PumpNamed)]
    assert named == [("A", FIRMWARE), ("B", B_FIRMWARE)][: len(late_channels)]
    assert {e.channel for e in after if isinstance(e, ReadbackReceived)} == {"A", "B"}
    sent = late.sent_to("A")
    # the probe and the name question first; the syringe only after the pump was read
    assert sent[:2] == ["", "VER"]
    dia = next(i for i, c in enumerate(sent) if c.startswith("DIA "))
    assert "DIS" in sent[:dia]

    assert late.load_on("A", norepi_standard(late.library)).verdict.accepted
    assert late.start_on("A", "8").execution == "applied"
    assert late.pumps["A"].snapshot().running


def test_a_late_pump_that_is_not_the_channels_is_refused_as_after_a_reconnect(
    library: DrugLibrary, tmp_path: Path
) -> None:
    """A's pump was named at the first boot (journaled). Its adapter is unplugged across
    a reboot, and another pump is plugged in on A's port after the start: at the next
    poll it is asked its name and refused as after a reconnect (probe and name question,
    nothing else; the comms alarm says another pump answers there, with what to do); A's
    own pump plugged back is taken up again."""
    bench = LateBench(tmp_path / "bench", library, missing=(), one_line=False)
    with booted(bench):
        assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]
        bench.unplug(PORTS["A"])
        bench.reboot(30)
        alarm = bench.comms_alarm("A")
        assert alarm is not None and alarm.active and "not reachable at start" in alarm.message

        spare = bench.add("spare", SPARE_FIRMWARE)
        bench.plug(PORTS["A"], "spare")
        first = len(bench.events())
        bench.core.poll()
        bench.core.poll()  # asked again: still the other pump, nothing new to journal
        after = bench.events()[first:]
        assert not [e for e in after if isinstance(e, ReadbackReceived) and e.channel == "A"]
        failures = [e for e in after if isinstance(e, CommsFailed)]
        assert [(e.channel, e.other_pump) for e in failures] == [("A", SPARE_FIRMWARE)]
        assert f"names itself {SPARE_FIRMWARE!r}, not {FIRMWARE!r}" in failures[0].detail
        assert not bench.ch("A").comms_ok
        alarm = bench.comms_alarm("A")
        assert alarm is not None and alarm.active
        assert "before the safety process restarted: another pump answers there" in alarm.message
        assert "newpump A" in alarm.message
        assert set(bench.sent_to("spare")) == {"", "VER"}
        assert not spare.snapshot().running and spare.snapshot().set_rate_ml_h == 0.0
        assert bench.pump_names() == [("A", FIRMWARE), ("B", B_FIRMWARE)]  # nothing taken

        bench.plug(PORTS["A"], "A")  # A's own pump back on its port
        bench.core.poll()  # the port vanished under the driver
        bench.core.poll()  # reopened: the channel's own pump
        assert bench.ch("A").comms_ok
        alarm = bench.comms_alarm("A")
        assert alarm is None or not alarm.active
