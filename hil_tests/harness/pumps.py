"""The four emulated pumps of the suite: how to start each, how the safety process reaches
it, and how to read its frame log.

Each kind is the same simulated pump (``firmware_bridge.pump_model``) behind a different
wire: NE-1000 (RS-232, safe mode) on a pty, Harvard PHD ULTRA on a pty, and the example
Modbus syringe pump over TCP (port 0) and over RTU on a pty. What differs, and what a
case must know, is listed here once:

- ``emulator_args``: the ``python -m firmware_bridge.emulators`` command line;
- ``driver_options``: the safety config's ``[pump.options]`` for the announced address;
- ``set_rates_executed``: how many rate sets the pump received and executed, from the
  emulator's frame log (to count what reached the pump, S10: never repeated blindly);
- ``reports``: which alarm the pump reports for a physical fault. The NE-1000 and the
  Harvard pumps sense motor force only, so an occlusion and an empty syringe reach the
  host as a stall (NE-1000 manual ``A?S``; Harvard prompt ``*``), and a Harvard pump has
  no power-fail alarm (the driver infers a reset from an unexplained idle pump);
- ``reconnects_by_link``: whether a disconnect brings the line back under the same name
  (a pty link, or a TCP listener that stays).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.modbus.register_map import Role, load_register_map, resolve_map_path
from firmware_bridge.ne1000.codec import Ne1000CodecError, decode_safe_packet, parse_command

#: the Modbus register map the syringe Modbus kinds serve and drive (the example map)
MODBUS_MAP = "syringe"

_HEX_FRAME = re.compile(r"\brx ((?:[0-9a-f]{2} )*[0-9a-f]{2})")


def _rx_bytes(line: str) -> bytes | None:
    """The bytes of a received frame in an emulator log line (``... rx 02 08 30 ...``)."""
    if " rx " not in f" {line}" or ("[fault:" in line and "not executed" in line):
        return None
    match = _HEX_FRAME.search(line)
    if match is None:
        return None
    return bytes.fromhex(match.group(1))


def _ne1000_set_rate(line: str) -> bool:
    data = _rx_bytes(line)
    if data is None:
        return False
    if data.startswith(b"\x02"):
        try:
            data = decode_safe_packet(data)
        except Ne1000CodecError:
            return False
    command = parse_command(data.rstrip(b"\r"))
    return command.name == "RAT" and bool(command.argument) and command.argument[0].isdigit()


def _harvard_set_rate(line: str) -> bool:
    data = _rx_bytes(line)
    if data is None:
        return False
    text = data.decode("latin-1").strip()
    text = re.sub(r"^\d{1,2}:?", "", text)
    words = text.split()
    return len(words) > 1 and words[0] == "irate" and words[1] != "lim"


@functools.cache
def _modbus_rate_address(map_name: str) -> int:
    point = load_register_map(resolve_map_path(map_name)).require(Role.RATE_SETPOINT)
    return point.address


def _modbus_set_rate_on(map_name: str) -> Callable[[str], bool]:
    def is_set_rate(line: str) -> bool:
        # the Modbus emulator logs each decoded request: "rx <hex>  dev=1 fc=0x10 ... address=0"
        if not line.startswith("rx ") or "ignored" in line:
            return False
        match = re.search(r"fc=0x(06|10) Write\w+Request address=(\d+)", line)
        return match is not None and int(match.group(2)) == _modbus_rate_address(map_name)

    return is_set_rate


#: a Modbus log line after a request saying it was not executed
_MODBUS_NOT_EXECUTED = re.compile(r"^fault (drop|silent|garbage|disconnect)\b|^ignored: ")


def _count(is_set: Callable[[str], bool], lines: Sequence[str], *, modbus: bool) -> int:
    count = 0
    for i, line in enumerate(lines):
        if not is_set(line):
            continue
        if modbus and i + 1 < len(lines) and _MODBUS_NOT_EXECUTED.match(lines[i + 1]):
            continue  # the Modbus emulator says on the next line that it did not execute it
        count += 1
    return count


@dataclass(frozen=True)
class PumpKind:
    """One emulated pump on one kind of wire."""

    name: str
    protocol: str  # the emulator's protocol word
    transport: str  # "pty" or "tcp"
    #: whether one frame-log line is a received rate set
    is_set_rate_frame: Callable[[str], bool]
    #: pump fault -> the pump alarm the driver reports for it
    reports: dict[str, str] = field(default_factory=dict)
    #: the pump stops itself when no valid packet arrives for its safe-mode timeout
    has_comms_watchdog: bool = False
    #: the register map a Modbus kind serves and drives
    modbus_map: str = MODBUS_MAP
    #: a volumetric pump: the bag it holds (a syringe pump holds the bench's syringe)
    bag: str | None = None

    def __str__(self) -> str:
        return self.name

    def emulator_args(self, *, link: str) -> list[str]:
        """Arguments after ``python -m firmware_bridge.emulators``; ``link``: the stable
        pty name to ask for (serial pty kinds that support ``--link``)."""
        if self.protocol == "modbus":
            where = ["--tcp", "127.0.0.1:0"] if self.transport == "tcp" else ["--pty"]
            return ["modbus", *where, "--map", self.modbus_map]
        return [self.protocol, "--pty", "--link", link]

    def container(self, syringe: str) -> str:
        """What the pump holds (a catalogue name): the kind's bag, else the bench's
        syringe."""
        return self.bag if self.bag is not None else syringe

    def container_args(self, syringe: str) -> list[str]:
        """The emulator's option for what the pump holds (a bag is a volumetric pump's)."""
        return ["--container" if self.bag is not None else "--syringe", self.container(syringe)]

    def driver_options(
        self, where: str, *, reply_timeout_s: float, safe_mode_timeout_s: int
    ) -> dict[str, Any]:
        """``[pump.options]`` for the driver, given where the emulator said it serves."""
        if self.protocol == "ne1000":
            return {
                "port": where,
                "address": 0,
                "baud": 19200,
                "safe_mode_timeout_s": safe_mode_timeout_s,
                "reply_timeout_s": reply_timeout_s,
            }
        if self.protocol == "harvard":
            return {"port": where, "address": 0, "baud": 115200, "reply_timeout_s": reply_timeout_s}
        options: dict[str, Any] = {"map_path": self.modbus_map, "timeout_s": reply_timeout_s}
        if self.transport == "tcp":
            host, _, port = where.rpartition(":")
            options.update(host=host, port=int(port))
        else:
            # parity "N" on a pty: a pty carries no parity bits (the emulator does not apply
            # the map's "E" there either), and Linux refuses a second open that re-applies
            # PARENB to a pty with EINVAL, so a restarted safety process could not reopen it
            options.update(serial_port=where, parity="N")
        return options

    def set_rates_executed(self, frame_log: Sequence[str]) -> int:
        """Rate sets the pump received and executed, in the emulator's frame log."""
        return _count(self.is_set_rate_frame, frame_log, modbus=self.protocol == "modbus")

    def alarm_for(self, fault: str) -> str:
        """The pump alarm kind (``pump:<kind>`` in the safety process) for a pump fault."""
        return self.reports.get(fault, fault)


_FORCE_SENSING = {"occlusion": "stall", "empty": "stall", "stall": "stall"}

NE1000 = PumpKind(
    "ne1000",
    "ne1000",
    "pty",
    _ne1000_set_rate,
    reports={**_FORCE_SENSING, "power_cycle": "reset"},
    has_comms_watchdog=True,
)
HARVARD = PumpKind(
    "harvard",
    "harvard",
    "pty",
    _harvard_set_rate,
    reports={**_FORCE_SENSING, "power_cycle": "reset"},
)
MODBUS_TCP = PumpKind(
    "modbus_tcp", "modbus", "tcp", _modbus_set_rate_on(MODBUS_MAP), reports={"power_cycle": "reset"}
)
MODBUS_RTU = PumpKind(
    "modbus_rtu", "modbus", "pty", _modbus_set_rate_on(MODBUS_MAP), reports={"power_cycle": "reset"}
)
#: a volumetric pump: the example peristaltic drive over Modbus TCP, a 500 mL bag (the
#: label's standard dilution runs on one). Not in ``ALL_KINDS``: the fault cases are the
#: syringe kinds'; the cases that run a volumetric pump name it
MODBUS_VOLUMETRIC = PumpKind(
    "modbus_volumetric",
    "modbus",
    "tcp",
    _modbus_set_rate_on("peristaltic"),
    reports={"power_cycle": "reset"},
    modbus_map="peristaltic",
    bag="bag-500ml",
)

ALL_KINDS = (NE1000, HARVARD, MODBUS_TCP, MODBUS_RTU)
KINDS_BY_NAME = {k.name: k for k in (*ALL_KINDS, MODBUS_VOLUMETRIC)}
