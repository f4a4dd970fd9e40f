"""A bench of real NE-1000 drivers on emulated pumps behind pty ports, for what only real
ports show: a port that another pump answers on after a reboot, a port missing at start,
pumps that name themselves alike, two pumps at two addresses on one line.

Channels A and B, each on a port of its own (``ttyUSB0``, ``ttyUSB1`` under the bench's
root) or both at addresses 0 and 1 on one line (``ttyUSB2``). Every safety process the
bench starts (boot, reboot) builds fresh drivers, as a new process does, which have never
heard a pump; the pumps run on through a reboot, as pumps do on their own power. A port
is a pty link that ``plug`` and ``unplug`` make appear and vanish, so any pump can be put
behind any port, as an operator recabling the adapters would. What reached each pump is
read from its own frame log, whichever port it was plugged behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from drivers.lines import LineSpec, open_line
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.bus import BusMember, PumpBus
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.codec import Ne1000Command, decode_safe_packet, parse_command
from firmware_bridge.ne1000.emulator import FIRMWARE, Ne1000Framer, Ne1000PumpSide
from firmware_bridge.syringes import syringe_by_name
from safety.host.core import Channel, SafetyCore
from safety.kernel.model import PumpNamed
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench
from tests.kernel.support import TracingPump

REPLY_TIMEOUT_S = 1.0  # nothing here waits it out but a loaded machine
PORTS = {"A": "ttyUSB0", "B": "ttyUSB1"}
LINE = "ttyUSB2"  # a line on a USB adapter, named in plug-in order as most are


class PortBench(ChannelBench):
    """Channels A and B on NE-1000 drivers made afresh by every safety process; pumps
    ``A`` and ``B`` (and any ``add``-ed) named as ``firmware`` says (the emulator's own
    name by default), plugged where ``plug`` says, on ports of their own or on one line
    (``one_line``). The ports in ``missing`` (``ttyUSB0``, ``ttyUSB2``...) are not there
    when the first safety process starts. A channel given a name in ``named`` (a
    ``/dev/serial/by-id/`` or ``by-path`` link, which no test can create) has its pty
    stand in for the adapter behind that link: the config names the port so."""

    def __init__(
        self,
        root: Path,
        library: DrugLibrary,
        *,
        firmware: dict[str, str] | None = None,
        one_line: bool = False,
        missing: tuple[str, ...] = (),
        named: dict[str, str] | None = None,
    ) -> None:
        self.firmware = {"A": FIRMWARE, "B": FIRMWARE, **(firmware or {})}
        self.one_line = one_line
        self.missing = missing
        #: the port name the config gives a channel where it is not its pty's path
        self.named = dict(named or {})
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
        logs = [self.heard[p] for p in pumps]

        def log(frame: str) -> None:  # a line's frames reach every pump on it
            for heard in logs:
                heard.append(frame)

        endpoint = PtyEndpoint(link=str(self.root / port))
        line = BackgroundLine(handler, WireFaults(), endpoint=endpoint, log=log)
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
            for address, channel in enumerate(("A", "B")):
                self.add(channel, self.firmware[channel], address if self.one_line else 0)
            self.pump = self.pumps["A"]
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
            if name in self.named:  # the pty stands in for the adapter behind that link
                driver.serial_port = self.named[name]
            self.ne1000[name] = driver
            container = syringe_by_name(self.syringe.name)
            channels.append(Channel(name, driver, container, None, "ne1000"))
        return self._core_of(channels, library)

    def shut(self) -> None:
        super().shut()
        for line in self.plugged.values():
            line.stop()

    def requests(self, pump: str, since: int = 0) -> set[str]:
        """The command names (``""``: the bare status probe) that reached ``pump``."""
        return {c.name for c in self._heard_by(pump, since)}

    def sent_to(self, pump: str, since: int = 0) -> list[str]:
        """The commands that reached ``pump``, in order, with their argument (``""``: the
        bare status probe; ``"RAT"`` asks the rate, ``"RAT 30.00"`` sets it)."""
        return [f"{c.name} {c.argument}".rstrip() for c in self._heard_by(pump, since)]

    def _heard_by(self, pump: str, since: int) -> list[Ne1000Command]:
        """Only those at the pump's address: on a line, its log holds its neighbours'."""
        address = self.sides[pump].address
        return [c for c in commands_heard(self.heard[pump][since:]) if c.address == address]

    def pump_names(self) -> list[tuple[str, str]]:
        """Every ``PumpNamed`` of the journal, as (channel, name), in order."""
        return [(e.channel, e.name) for e in self.events() if isinstance(e, PumpNamed)]


def commands_heard(frame_log: Iterable[str]) -> list[Ne1000Command]:
    """The requests an emulator received, read back from its frame log
    (``... rx 30 56 45 52 0d |...|``) as the pump read them, in either framing (a
    safe-mode packet is unwrapped first)."""
    commands: list[Ne1000Command] = []
    for line in frame_log:
        _, rx, rendered = line.partition(" rx ")
        if rx:
            frame = bytes.fromhex(rendered.split("|", 1)[0])
            if frame[:1] == b"\x02":
                frame = decode_safe_packet(frame)
            commands.append(parse_command(frame.rstrip(b"\r")))
    return commands
