"""Byte-exact codec for the New Era NE-1000 family (NE-500/1000/1600/4000, RS-232).

Pure functions and small value types, used by both ends of the wire: the host driver
(``drivers/pumps/ne1000.py``) and the pump side of the emulator
(``firmware_bridge.ne1000.emulator``).
Nothing here does I/O or reads a clock.

Facts (NE-1000 / NE-500 user manuals, section "RS-232 protocol"; collected with their
sources in docs/protocols.md):

- Basic mode command: ``[address]<command>[argument] CR``. The pump strips every space and
  control character and upper-cases the text before reading it, so ``rat 5 mh`` and
  ``RAT5MH`` are the same command. Address 0-99; a command without an address is taken
  here as address 0 (the pump answers only commands carrying its own address, and 0 is the
  factory default).
- Reply (both modes): ``<address: 2 digits><status>[data | ?error]``; in basic mode framed
  ``STX reply ETX``.
- Status characters: I infusing, W withdrawing, S stopped, P paused, T pause phase,
  U waiting for a trigger, X purging. Alarm replies ``A?`` + R reset (power interrupted),
  S motor stalled, T safe-mode comms timeout, E program error, O phase out of range.
  Error replies ``?`` (unknown command), ``?NA`` (not applicable now), ``?OOR`` (out of
  range), ``?COM`` (invalid packet), ``?IGN`` (ignored).
- Safe mode packet: ``STX <length> <data> <CRC hi> <CRC lo> ETX``; ``length`` counts every
  byte after STX including itself; CRC-16/XMODEM (CCITT polynomial 0x1021, init 0) over the
  data bytes only. Manual check value: data ``SAF0`` -> ``02 08 53 41 46 30 55 43 03``.
- Numbers: at most 4 digits and one decimal point, at most 3 digits after the point.
  Rate units: UM (uL/min), MM (mL/min), UH (uL/h), MH (mL/h). Volume units UL, ML.
- Dispensed volume reply data: ``I<float>W<float><UL|ML>``.

Our choices, documented because a host depends on them:

- Every value this codec puts in a number field is rounded DOWN to the 4-digit form, so a
  rate sent to the pump is never above the rate the host asked for.
- The rate unit: the first of MH, UM, MM, UH whose rounded-down figure is within 0.1 % of
  the requested rate (the 4-digit field's own resolution), else the closest one. mL/h comes
  first because it is the unit clinicians read and, with 0.001-9999 mL/h, the widest
  useful range; this matters because units cannot change while the pump runs, so the unit
  chosen at start bounds every titration until the next stop. uL/min (up to 599.9 mL/h)
  serves rates below 1 mL/h that mL/h would cut by more than 0.1 %; uL/h (up to
  9.999 mL/h) only the tiniest rates.
"""

from __future__ import annotations

import binascii
import enum
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

STX = 0x02
ETX = 0x03
CR = 0x0D

MAX_DIGITS = 4
MAX_DECIMALS = 3
#: the largest number the 4-digit field holds
MAX_NUMBER = Decimal("9999")
#: the largest data field a safe-mode length byte can frame (255 - STX/len/CRC/ETX overhead)
MAX_SAFE_DATA = 255 - 4


class Ne1000CodecError(ValueError):
    """Bytes or values that are not valid NE-1000 protocol; the only error this codec raises."""


class Ne1000FramingError(Ne1000CodecError):
    """A frame or packet is malformed (missing STX/ETX, bad length, non-ASCII data)."""


class Ne1000ChecksumError(Ne1000CodecError):
    """A safe-mode packet arrived whole but its CRC-16 does not match its data."""


class Ne1000Status(enum.StrEnum):
    INFUSING = "I"
    WITHDRAWING = "W"
    STOPPED = "S"
    PAUSED = "P"
    PAUSE_PHASE = "T"
    USER_WAIT = "U"
    PURGING = "X"


class Ne1000Alarm(enum.StrEnum):
    RESET = "R"
    STALL = "S"
    COMMS_TIMEOUT = "T"
    PROGRAM_ERROR = "E"
    PHASE_OUT_OF_RANGE = "O"


class Ne1000Error(enum.StrEnum):
    UNKNOWN_COMMAND = ""
    NOT_APPLICABLE = "NA"
    OUT_OF_RANGE = "OOR"
    INVALID_PACKET = "COM"
    IGNORED = "IGN"


class RateUnit(enum.StrEnum):
    UL_PER_MIN = "UM"
    ML_PER_MIN = "MM"
    UL_PER_H = "UH"
    ML_PER_H = "MH"


class VolumeUnit(enum.StrEnum):
    UL = "UL"
    ML = "ML"


#: mL/h represented by one of each rate unit
ML_H_PER_RATE_UNIT: dict[RateUnit, Decimal] = {
    RateUnit.ML_PER_H: Decimal(1),
    RateUnit.ML_PER_MIN: Decimal(60),
    RateUnit.UL_PER_H: Decimal("0.001"),
    RateUnit.UL_PER_MIN: Decimal("0.06"),
}
#: the order in which units are tried for a rate (see module docstring)
RATE_UNIT_PREFERENCE: tuple[RateUnit, ...] = (
    RateUnit.ML_PER_H,
    RateUnit.UL_PER_MIN,
    RateUnit.ML_PER_MIN,
    RateUnit.UL_PER_H,
)
#: a unit whose rounded-down figure loses at most this fraction of the rate is good enough
RATE_TOLERANCE = Decimal("0.001")
ML_PER_VOLUME_UNIT: dict[VolumeUnit, Decimal] = {
    VolumeUnit.ML: Decimal(1),
    VolumeUnit.UL: Decimal("0.001"),
}

#: commands the parser splits off a run of letters (the pump's 3- and 2-letter command set)
KNOWN_COMMANDS_3 = frozenset(
    {
        "DIA", "PHN", "FUN", "RAT", "VOL", "DIR", "RUN", "STP", "PUR", "DIS", "CLD",
        "SAF", "VER", "TRG", "DIN", "ROM", "LOC", "OUT", "BUZ", "ADR", "TIM",
    }
)  # fmt: skip
KNOWN_COMMANDS_2 = frozenset({"AL", "BP", "LN", "PF", "IN"})


# --------------------------------------------------------------------------- numbers
def to_decimal(value: Decimal | float | int | str) -> Decimal:
    """An exact decimal for a host value; floats go through their shortest repr so that
    0.1 stays 0.1 rather than 0.1000000000000000055..."""
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, bool):
            raise Ne1000CodecError(f"not a number: {value!r}")
        elif isinstance(value, float):
            result = Decimal(repr(value))
        else:
            result = Decimal(value)
    except (InvalidOperation, ValueError):
        raise Ne1000CodecError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise Ne1000CodecError(f"not a finite number: {value!r}")
    return result


def decimals_for(value: Decimal) -> int:
    """How many decimals the 4-digit field leaves for a value of this size."""
    if value < 10:
        return 3
    if value < 100:
        return 2
    if value < 1000:
        return 1
    return 0


def floor_to_field(value: Decimal | float | int) -> Decimal:
    """The largest number the 4-digit field can hold that is <= ``value``.

    Raises for negative values and for values at or above 10000 (they do not fit at all;
    the caller decides whether 9999 is an acceptable stand-in).
    """
    v = to_decimal(value)
    if v < 0:
        raise Ne1000CodecError(f"number {v} is negative; the pump's fields hold 0-9999")
    if v > MAX_NUMBER:
        raise Ne1000CodecError(f"number {v} does not fit the pump's 4-digit field (max 9999)")
    places = decimals_for(v)
    return v.quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR)


def format_number(value: Decimal | float | int) -> str:
    """The pump's text for a number, rounded down: ``5`` -> ``5.000``, ``123.45`` -> ``123.4``."""
    v = floor_to_field(value)
    return f"{v:.{decimals_for(v)}f}"


def display_number(value: Decimal | float | int) -> str:
    """A number as the pump shows it in a reply: like ``format_number``, and always with
    its decimal point (``6000.``), as public clients written against real pumps parse it
    (digits, a point, digits)."""
    text = format_number(value)
    return text if "." in text else text + "."


_NUMBER_RE = re.compile(r"^([0-9]*)(?:\.([0-9]*))?$")


def parse_number(text: str) -> Decimal:
    """A number field as the pump reads it: <= 4 digits, one optional point, <= 3 decimals."""
    m = _NUMBER_RE.match(text)
    if m is None:
        raise Ne1000CodecError(f"not a pump number: {text!r} (digits and one '.')")
    whole, frac = m.group(1), m.group(2) or ""
    if not whole and not frac:
        raise Ne1000CodecError(f"not a pump number: {text!r} (no digits)")
    if len(whole) + len(frac) > MAX_DIGITS:
        raise Ne1000CodecError(f"number {text!r} has more than {MAX_DIGITS} digits")
    if len(frac) > MAX_DECIMALS:
        raise Ne1000CodecError(f"number {text!r} has more than {MAX_DECIMALS} decimals")
    return Decimal(f"{whole or '0'}.{frac or '0'}")


# --------------------------------------------------------------------------- rates
@dataclass(frozen=True)
class RateChoice:
    """A rate as the pump will run it: the figure in the field, its unit, and mL/h."""

    value: Decimal
    unit: RateUnit

    @property
    def ml_h(self) -> Decimal:
        return self.value * ML_H_PER_RATE_UNIT[self.unit]

    @property
    def text(self) -> str:
        """The ``RAT`` argument, e.g. ``5.000MH``."""
        return f"{format_number(self.value)}{self.unit.value}"


def rate_in_unit(rate_ml_h: Decimal | float, unit: RateUnit) -> RateChoice:
    """The largest rate expressible in ``unit`` that is <= ``rate_ml_h`` (zero if none)."""
    r = to_decimal(rate_ml_h)
    if r < 0:
        raise Ne1000CodecError(f"rate {r} mL/h is negative")
    v = r / ML_H_PER_RATE_UNIT[unit]
    field = MAX_NUMBER if v > MAX_NUMBER else floor_to_field(v)
    return RateChoice(field, unit)


def choose_rate(
    rate_ml_h: Decimal | float,
    units: tuple[RateUnit, ...] = RATE_UNIT_PREFERENCE,
    tolerance: Decimal = RATE_TOLERANCE,
) -> RateChoice:
    """The rate the pump will run for ``rate_ml_h``, and the unit to send it in.

    The first of ``units`` whose rounded-down figure is within ``tolerance`` (a fraction)
    of the rate; if none is, the closest (ties to the earlier unit). The rule is applied
    again to its own result until that stops changing, so a chosen rate chooses itself
    (hosts may treat "choose_rate(r) == r" as "r is a rate the pump runs as sent"). Never
    above ``rate_ml_h``. Below everything expressible the result has value 0: refuse it.
    """
    if not units:
        raise Ne1000CodecError("choose_rate needs at least one unit")
    choice = _choose_once(to_decimal(rate_ml_h), units, tolerance)
    for _ in range(16):
        if choice.ml_h == 0:
            return choice
        again = _choose_once(choice.ml_h, units, tolerance)
        if again.ml_h == choice.ml_h:
            return again
        choice = again
    raise AssertionError("choose_rate did not settle")  # pragma: no cover - values only fall


def _choose_once(r: Decimal, units: tuple[RateUnit, ...], tolerance: Decimal) -> RateChoice:
    choices = [rate_in_unit(r, unit) for unit in units]
    for choice in choices:
        if choice.ml_h > 0 and r - choice.ml_h <= r * tolerance:
            return choice
    best = choices[0]
    for choice in choices[1:]:
        if choice.ml_h > best.ml_h:
            best = choice
    return best


_RATE_RE = re.compile(r"^([0-9.]+)(UM|MM|UH|MH)$")


def parse_rate(text: str) -> RateChoice:
    """``RAT`` query data, e.g. ``5.000MH``."""
    m = _RATE_RE.match(text)
    if m is None:
        raise Ne1000CodecError(f"not a rate reply: {text!r} (expected <number><UM|MM|UH|MH>)")
    return RateChoice(parse_number(m.group(1)), RateUnit(m.group(2)))


_DIS_RE = re.compile(r"^I([0-9.]+)W([0-9.]+)(UL|ML)$")


@dataclass(frozen=True)
class Dispensed:
    infused: Decimal
    withdrawn: Decimal
    unit: VolumeUnit

    @property
    def infused_ml(self) -> Decimal:
        return self.infused * ML_PER_VOLUME_UNIT[self.unit]

    @property
    def withdrawn_ml(self) -> Decimal:
        return self.withdrawn * ML_PER_VOLUME_UNIT[self.unit]

    @property
    def text(self) -> str:
        return f"I{format_number(self.infused)}W{format_number(self.withdrawn)}{self.unit.value}"


def parse_dispensed(text: str) -> Dispensed:
    """``DIS`` query data, e.g. ``I1.234W0.000ML``."""
    m = _DIS_RE.match(text)
    if m is None:
        raise Ne1000CodecError(f"not a DIS reply: {text!r} (expected I<n>W<n><UL|ML>)")
    return Dispensed(parse_number(m.group(1)), parse_number(m.group(2)), VolumeUnit(m.group(3)))


# --------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Ne1000Command:
    """One command as the pump reads it (after stripping spaces and upper-casing).

    ``name`` is "" for a status query; ``address`` None means no address on the wire.
    """

    address: int | None
    name: str = ""
    argument: str = ""

    def __post_init__(self) -> None:
        if self.address is not None and not (0 <= self.address <= 99):
            raise Ne1000CodecError(f"address {self.address} outside 0-99")
        if self.name and not (self.name.isascii() and self.name.isalpha() and self.name.isupper()):
            raise Ne1000CodecError(f"command name {self.name!r} must be upper-case letters")
        if _strip(self.argument) != self.argument:
            raise Ne1000CodecError(
                f"argument {self.argument!r} must be upper-case without spaces or control "
                "characters (the pump strips them)"
            )

    @property
    def text(self) -> str:
        address = "" if self.address is None else str(self.address)
        return f"{address}{self.name}{self.argument}"

    @property
    def effective_address(self) -> int:
        return 0 if self.address is None else self.address


def _strip(text: str) -> str:
    """What the pump keeps of a command: no spaces or control characters, ASCII letters
    upper-cased (bytes above 0x7F are kept as they are: the pump is an 8-bit device)."""
    return "".join(
        c.upper() if "a" <= c <= "z" else c for c in text if ord(c) > 0x20 and ord(c) != 0x7F
    )


def encode_command(command: Ne1000Command) -> bytes:
    """The command data (no CR, no framing): shared by basic and safe mode."""
    return command.text.encode("latin-1")


def encode_basic_command(command: Ne1000Command) -> bytes:
    return encode_command(command) + bytes([CR])


def parse_command(data: bytes) -> Ne1000Command:
    """Read command data the way the pump does. Never raises: an unreadable command comes
    back with a name the pump does not know (the emulator answers ``?``)."""
    text = _strip(data.decode("latin-1"))
    i = 0
    while i < len(text) and i < 2 and "0" <= text[i] <= "9":
        i += 1
    address = int(text[:i]) if i else None
    rest = text[i:]
    j = 0
    while j < len(rest) and "A" <= rest[j] <= "Z":
        j += 1
    letters = rest[:j]
    if letters[:3] in KNOWN_COMMANDS_3:
        name = letters[:3]
    elif letters[:2] in KNOWN_COMMANDS_2:
        name = letters[:2]
    else:
        name = letters
    return Ne1000Command(address, name, rest[len(name) :])


# --------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class Ne1000Reply:
    """``<address><status>[data|?error]`` or ``<address>A?<alarm>[data]``."""

    address: int
    status: Ne1000Status | None = None
    alarm: Ne1000Alarm | None = None
    error: Ne1000Error | None = None
    data: str = ""

    def __post_init__(self) -> None:
        if not (0 <= self.address <= 99):
            raise Ne1000CodecError(f"reply address {self.address} outside 0-99")
        if (self.status is None) == (self.alarm is None):
            raise Ne1000CodecError("a reply carries either a status or an alarm")
        if self.error is not None and (self.data or self.alarm is not None):
            raise Ne1000CodecError("an error reply carries no data and no alarm")
        if not all(0x20 <= ord(c) < 0x7F for c in self.data):
            raise Ne1000CodecError(f"reply data {self.data!r} must be printable ASCII")
        if self.data.startswith("?"):
            raise Ne1000CodecError(f"reply data {self.data!r} would read as an error reply")

    @property
    def text(self) -> str:
        head = f"{self.address:02d}"
        if self.alarm is not None:
            head += "A?" + self.alarm.value
        else:
            assert self.status is not None
            head += self.status.value
        if self.error is not None:
            return head + "?" + self.error.value
        return head + self.data


def encode_reply(reply: Ne1000Reply) -> bytes:
    """Reply data (no framing), as it goes in a basic frame or a safe packet."""
    return reply.text.encode("ascii")


def parse_reply(data: bytes) -> Ne1000Reply:
    """Reply data back into a reply; any defect raises ``Ne1000FramingError``."""
    if not all(0x20 <= b < 0x7F for b in data):
        raise Ne1000FramingError(f"reply {data!r} holds bytes outside printable ASCII")
    text = data.decode("ascii")
    if len(text) < 3 or not (text[:2].isascii() and text[:2].isdigit()):
        raise Ne1000FramingError(f"reply {text!r} does not start with a 2-digit address")
    address = int(text[:2])
    if text[2:4] == "A?":
        if len(text) < 5 or text[4] not in {a.value for a in Ne1000Alarm}:
            raise Ne1000FramingError(f"reply {text!r}: unknown alarm type")
        return _reply(address, alarm=Ne1000Alarm(text[4]), data=text[5:])
    if text[2] not in {s.value for s in Ne1000Status}:
        raise Ne1000FramingError(f"reply {text!r}: unknown status character {text[2]!r}")
    status = Ne1000Status(text[2])
    rest = text[3:]
    if rest.startswith("?"):
        code = rest[1:]
        if code not in {e.value for e in Ne1000Error}:
            raise Ne1000FramingError(f"reply {text!r}: unknown error code {code!r}")
        return _reply(address, status=status, error=Ne1000Error(code))
    return _reply(address, status=status, data=rest)


def _reply(address: int, **fields: object) -> Ne1000Reply:
    try:
        return Ne1000Reply(address, **fields)  # type: ignore[arg-type]
    except Ne1000CodecError as exc:
        raise Ne1000FramingError(str(exc)) from None


# --------------------------------------------------------------------------- basic frames
def encode_basic_reply(reply: Ne1000Reply) -> bytes:
    return bytes([STX]) + encode_reply(reply) + bytes([ETX])


def basic_reply_end(buffer: bytes) -> int | None:
    """Bytes to take from ``buffer`` for the first whole basic reply (noise before STX
    included), or None while it is incomplete."""
    start = buffer.find(STX)
    if start < 0:
        return None
    end = buffer.find(ETX, start + 1)
    return None if end < 0 else end + 1


def decode_basic_reply(frame: bytes) -> Ne1000Reply:
    """A basic-mode reply frame; bytes before the STX are line noise and ignored."""
    start = frame.find(STX)
    if start < 0 or not frame.endswith(bytes([ETX])) or len(frame) - start < 2:
        raise Ne1000FramingError(f"not an STX...ETX frame: {frame.hex(' ')}")
    body = frame[start + 1 : -1]
    if STX in body or ETX in body:
        raise Ne1000FramingError(f"stray STX/ETX inside a reply frame: {frame.hex(' ')}")
    return parse_reply(body)


# --------------------------------------------------------------------------- safe packets
def crc16(data: bytes) -> int:
    """CRC-16/XMODEM as the NE-1000 safe mode uses it (check: b"SAF0" -> 0x5543)."""
    return binascii.crc_hqx(data, 0)


def encode_safe_packet(data: bytes) -> bytes:
    if len(data) > MAX_SAFE_DATA:
        raise Ne1000CodecError(f"safe-mode data of {len(data)} bytes exceeds {MAX_SAFE_DATA}")
    crc = crc16(data)
    return bytes([STX, len(data) + 4]) + data + bytes([crc >> 8, crc & 0xFF, ETX])


def safe_packet_end(buffer: bytes) -> int | None:
    """Bytes to take from ``buffer`` for the first whole safe packet (noise before STX
    included), or None while it is incomplete. A length byte below 4 ends the packet at
    once so that the decoder can reject it."""
    start = buffer.find(STX)
    if start < 0 or len(buffer) < start + 2:
        return None
    end = _declared_end(buffer, start)
    return end if len(buffer) >= end else None


def reply_bytes_to_come(buffer: bytes) -> int:
    """How many bytes the first reply in ``buffer`` still needs at least: a safe packet's
    length byte says it; 0 when nothing tells (no STX yet, a basic reply, which ends at
    its ETX, or a length byte too short to be a packet's, which ends it at once)."""
    start = buffer.find(STX)
    if start < 0 or len(buffer) < start + 2 or _looks_basic(buffer[start + 1]):
        return 0
    return max(0, _declared_end(buffer, start) - len(buffer))


def _declared_end(buffer: bytes, start: int) -> int:
    """Where the safe packet at ``start`` ends by its length byte (right after that byte
    when it is below 4: too short to be a packet, handed to the decoder to reject)."""
    length = buffer[start + 1]
    return start + 2 if length < 4 else start + 1 + length


def any_reply_end(buffer: bytes) -> int | None:
    """Like ``basic_reply_end`` / ``safe_packet_end``, for a host that does not know which
    framing the next reply comes in (the reply to ``SAF``, see ``reply_is_safe``)."""
    start = buffer.find(STX)
    if start < 0 or len(buffer) < start + 2:
        return None
    if _looks_basic(buffer[start + 1]):
        return basic_reply_end(buffer)
    return safe_packet_end(buffer)


def reply_is_safe(frame: bytes) -> bool:
    """Which framing a reply frame is in: after STX a basic reply carries its address (an
    ASCII digit), a safe packet its length byte. A reply short enough to be the answer to
    a command (under 44 data bytes) has a length byte below ``'0'``, so the two never
    meet; a longer safe packet would be misread as basic and then fail to decode, never
    taken for valid data."""
    start = frame.find(STX)
    return start >= 0 and len(frame) > start + 1 and not _looks_basic(frame[start + 1])


def _looks_basic(second: int) -> bool:
    return 0x30 <= second <= 0x39


def decode_any_reply(frame: bytes) -> tuple[Ne1000Reply, bool]:
    """A reply in either framing, and whether it came as a safe packet."""
    if reply_is_safe(frame):
        return parse_reply(decode_safe_packet(frame)), True
    return decode_basic_reply(frame), False


def decode_safe_packet(packet: bytes) -> bytes:
    """The data of a safe packet; framing defects and CRC mismatches raise."""
    start = packet.find(STX)
    if start < 0 or len(packet) < start + 2:
        raise Ne1000FramingError(f"no STX/length at the start of a packet: {packet.hex(' ')}")
    length = packet[start + 1]
    if length < 4:
        raise Ne1000FramingError(f"safe packet length byte {length} is below 4")
    body = packet[start + 1 :]
    if len(body) != length:
        raise Ne1000FramingError(
            f"safe packet length byte says {length}, {len(body)} bytes follow: {packet.hex(' ')}"
        )
    if body[-1] != ETX:
        raise Ne1000FramingError(f"safe packet does not end with ETX: {packet.hex(' ')}")
    data = body[1:-3]
    crc = (body[-3] << 8) | body[-2]
    if crc16(data) != crc:
        raise Ne1000ChecksumError(
            f"safe packet CRC {crc:04X} != computed {crc16(data):04X}: {packet.hex(' ')}"
        )
    return data
