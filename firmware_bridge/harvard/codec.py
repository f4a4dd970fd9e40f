"""Byte-exact codec for the Harvard Apparatus PHD ULTRA / Pump 11 Elite line protocol
(also spoken by KD Scientific Legato pumps).

Pure functions and value types used by both the host driver (``drivers/pumps/harvard.py``) and
the emulated pump (``firmware_bridge.harvard.emulator``). No I/O, no clock.

Facts, with their sources (collected for people in docs/protocols.md):

- PHD ULTRA user's guide, "Pump chain commands": addresses 00-99; a nonzero address
  precedes the command, separated by a colon (``12:irat 3.2 ul/min``); KDS Legato 200
  manual: the address may also be written without separator (``12irat 3.2 u/m``), and a
  one-digit address needs no leading 0. Commands may be abbreviated to their first four
  letters; a space separates command and arguments.
- Prompts after each command: ``:`` idle, ``>`` infusing, ``<`` withdrawing, ``*`` stalled,
  ``T*`` target reached (PHD ULTRA user's guide).
- Reply layout (KDS Legato / Allegro manuals): each text line is ``<LF>[NN:]text<CR>`` and
  the reply ends with ``<LF>[NN]<prompt>``; "every line of the response from a pump with a
  nonzero address is prefixed by the two digit pump address followed by a colon; no colon
  separates the address from the prompt". On the wire every text line therefore ends
  CR LF and the prompt is the last thing sent, with no line end after it.
- Argument errors: ``Argument error: <argument>`` then a second line with the reason
  (Allegro manual); error words seen in public drivers: ``Command error``,
  ``Unknown command``, ``Argument error``, ``Out of range``.
- ``status`` (PHD ULTRA user's guide, internal commands): three integers and one flag
  field separated by spaces: rate in fL/s, infuse time in seconds (the Legato manual says
  milliseconds), infused volume in fL, all for the current direction; flags: direction
  (``i``/``w``; Legato: upper case while the motor runs), limit switch (``I``/``W``/``.``),
  stall (``S``/``.``), trigger input (``T``/``.``), direction port (``I``/``W``) and, on the
  Legato, target reached (``T``/``.``).
- ``irate lim`` answers ``<min> <unit> to <max> <unit>`` (seen in code: the lower limit
  often in nl/min). ``tvolume`` with no target set answers ``Target volume not set`` (seen
  in code). Rate units combine ml/ul/nl/pl with hr/min/s; short forms such as ``m/m`` and
  ``u/m`` are accepted (seen in code and in the Legato manual).

Our choices: the host sends ``NN:`` for a nonzero address and nothing for address 0, and
ends each command with CR alone; rates and volumes travel as plain decimals without
exponent; the canonical unit spellings are ``ml/hr``, ``ul/min``, ``ml``, ``ul``...
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

CR = 0x0D
LF = 0x0A


class HarvardCodecError(ValueError):
    """Bytes or values that are not valid Harvard protocol; the only error this codec raises."""


class Prompt(enum.StrEnum):
    IDLE = ":"
    INFUSING = ">"
    WITHDRAWING = "<"
    STALLED = "*"
    TARGET_REACHED = "T*"


#: every command the emulator knows, full names (abbreviations resolve to these)
COMMANDS: tuple[str, ...] = (
    "address", "baud", "civolume", "crate", "ctvolume", "cvolume", "cwvolume", "diameter",
    "force", "irate", "irun", "ivolume", "nvram", "poll", "rrun", "run", "status", "stp",
    "svolume", "tvolume", "ver", "version", "wrate", "wrun", "wvolume",
)  # fmt: skip


def resolve_command(word: str, known: tuple[str, ...] = COMMANDS) -> str | None:
    """The full command a word names: itself, or a known command it abbreviates (4 letters
    or more, and a prefix of exactly one command)."""
    word = word.lower()
    if word in known:
        return word
    if len(word) < 4:
        return None
    matches = [c for c in known if c.startswith(word)]
    return matches[0] if len(matches) == 1 else None


# --------------------------------------------------------------------------- numbers, units
def to_decimal(value: Decimal | float | int | str) -> Decimal:
    try:
        if isinstance(value, bool):
            raise HarvardCodecError(f"not a number: {value!r}")
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise HarvardCodecError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise HarvardCodecError(f"not a finite number: {value!r}")
    return result


def format_decimal(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: ``1.500`` -> ``1.5``."""
    if not value.is_finite():
        raise HarvardCodecError(f"not a finite number: {value}")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


_NUMBER_RE = re.compile(r"^[0-9]*\.?[0-9]+$|^[0-9]+\.$")


def parse_decimal(text: str) -> Decimal:
    """A non-negative decimal as the pump accepts it (digits and one point, no sign)."""
    if not _NUMBER_RE.match(text):
        raise HarvardCodecError(f"not a number: {text!r}")
    return Decimal(text)


def round_significant(value: Decimal, digits: int, *, up: bool = False) -> Decimal:
    """``value`` rounded down (or up) to ``digits`` significant digits."""
    if value == 0:
        return Decimal(0)
    exponent = value.adjusted() - digits + 1
    return value.quantize(
        Decimal(1).scaleb(exponent), rounding=ROUND_CEILING if up else ROUND_FLOOR
    )


ML_PER_VOLUME_PREFIX: dict[str, Decimal] = {
    "m": Decimal(1),
    "u": Decimal("0.001"),
    "n": Decimal("0.000001"),
    "p": Decimal("0.000000001"),
}
SECONDS_PER_TIME: dict[str, Decimal] = {"hr": Decimal(3600), "min": Decimal(60), "s": Decimal(1)}
_TIME_ALIASES = {"hr": "hr", "h": "hr", "min": "min", "m": "min", "s": "s", "sec": "s"}
_PREFIX_ALIASES = {"m": "m", "u": "u", "µ": "u", "n": "n", "p": "p"}


@dataclass(frozen=True)
class RateUnit:
    """A volume prefix (m, u, n, p) per time (hr, min, s)."""

    prefix: str
    time: str

    def __post_init__(self) -> None:
        if self.prefix not in ML_PER_VOLUME_PREFIX or self.time not in SECONDS_PER_TIME:
            raise HarvardCodecError(f"not a rate unit: {self.prefix}l/{self.time}")

    @property
    def text(self) -> str:
        return f"{self.prefix}l/{self.time}"

    @property
    def ml_h_per_unit(self) -> Decimal:
        return ML_PER_VOLUME_PREFIX[self.prefix] * Decimal(3600) / SECONDS_PER_TIME[self.time]


ML_PER_HR = RateUnit("m", "hr")
UL_PER_HR = RateUnit("u", "hr")
NL_PER_HR = RateUnit("n", "hr")
PL_PER_HR = RateUnit("p", "hr")
_RATE_UNIT_RE = re.compile(r"^([muµnp])l?/(hr|h|min|m|sec|s)$")


def parse_rate_unit(text: str) -> RateUnit:
    m = _RATE_UNIT_RE.match(text.lower())
    if m is None:
        raise HarvardCodecError(
            f"not a rate unit: {text!r} (expected ml|ul|nl|pl / hr|min|s, e.g. ml/hr or u/m)"
        )
    return RateUnit(_PREFIX_ALIASES[m.group(1)], _TIME_ALIASES[m.group(2)])


@dataclass(frozen=True)
class Rate:
    value: Decimal
    unit: RateUnit

    @property
    def ml_h(self) -> Decimal:
        return self.value * self.unit.ml_h_per_unit

    @property
    def text(self) -> str:
        return f"{format_decimal(self.value)} {self.unit.text}"


def parse_rate(text: str) -> Rate:
    """``1.5 ml/hr`` (one space or more between number and unit)."""
    parts = text.split()
    if len(parts) != 2:
        raise HarvardCodecError(f"not a rate: {text!r} (expected '<number> <unit>')")
    return Rate(parse_decimal(parts[0]), parse_rate_unit(parts[1]))


def parse_rate_limits(text: str) -> tuple[Rate, Rate]:
    """``irate lim`` answer: ``<min> <unit> to <max> <unit>``."""
    low, sep, high = text.partition(" to ")
    if not sep:
        raise HarvardCodecError(f"not a rate range: {text!r} (expected '<min> to <max>')")
    return parse_rate(low.strip()), parse_rate(high.strip())


def display_rate(ml_h: Decimal | float, *, up: bool = False, digits: int = 4) -> Rate:
    """A rate as a pump shows it: per minute, in the largest volume unit that keeps the
    figure >= 1, rounded down (or up) to ``digits`` significant digits."""
    r = to_decimal(ml_h)
    if r == 0:
        return Rate(Decimal(0), RateUnit("m", "min"))
    for prefix in ("m", "u", "n", "p"):
        unit = RateUnit(prefix, "min")
        value = r / unit.ml_h_per_unit
        if value >= 1 or prefix == "p":
            return Rate(round_significant(value, digits, up=up), unit)
    raise AssertionError("unreachable")


_VOLUME_UNIT_RE = re.compile(r"^([muµnp])l?$")


@dataclass(frozen=True)
class Volume:
    value: Decimal
    prefix: str

    @property
    def ml(self) -> Decimal:
        return self.value * ML_PER_VOLUME_PREFIX[self.prefix]

    @property
    def text(self) -> str:
        return f"{format_decimal(self.value)} {self.prefix}l"


def parse_volume(text: str) -> Volume:
    """``1.5 ml``, ``20 ul``, ``3 m``."""
    parts = text.split()
    if len(parts) != 2:
        raise HarvardCodecError(f"not a volume: {text!r} (expected '<number> <unit>')")
    m = _VOLUME_UNIT_RE.match(parts[1].lower())
    if m is None:
        raise HarvardCodecError(f"not a volume unit: {parts[1]!r} (expected ml, ul, nl or pl)")
    return Volume(parse_decimal(parts[0]), _PREFIX_ALIASES[m.group(1)])


def display_volume(ml: Decimal | float, digits: int = 6) -> Volume:
    """A volume as the pump shows it: ml, or ul/nl/pl below 1, rounded down."""
    v = to_decimal(ml)
    if v == 0:
        return Volume(Decimal(0), "m")
    for prefix in ("m", "u", "n", "p"):
        value = v / ML_PER_VOLUME_PREFIX[prefix]
        if value >= 1 or prefix == "p":
            return Volume(round_significant(value, digits), prefix)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class HarvardCommand:
    """One command line. ``address`` None (or 0, the same thing): none on the wire, and the
    pump at the other end of a point-to-point link answers. ``name`` "" asks for the prompt
    only. ``name`` is lower case as the pump reads it; it may be an abbreviation."""

    address: int | None
    name: str = ""
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.address is not None and not (0 <= self.address <= 99):
            raise HarvardCodecError(f"address {self.address} outside 0-99")
        if self.address == 0:
            # address 0 is never written on the wire: 0 and "none" are the same command
            object.__setattr__(self, "address", None)
        object.__setattr__(self, "name", self.name.lower())
        for part in (self.name, *self.args):
            if not part.isascii() or any(c.isspace() or not c.isprintable() for c in part):
                raise HarvardCodecError(f"command word {part!r} must be printable ASCII")
        if any(not a for a in self.args):
            raise HarvardCodecError("empty command argument")
        if self.name and (self.name[0] in "0123456789:@"):
            raise HarvardCodecError(
                f"command name {self.name!r} cannot start with {self.name[0]!r}"
            )
        if not self.name and self.args:
            raise HarvardCodecError("arguments without a command")

    @property
    def text(self) -> str:
        head = "" if not self.address else f"{self.address}:"
        return head + " ".join((self.name, *self.args)) if self.name else head


def encode_command(command: HarvardCommand, terminator: bytes = b"\r") -> bytes:
    return command.text.encode("ascii") + terminator


_ADDRESS_RE = re.compile(r"^([0-9]{1,2}):?")


def parse_command(line: bytes) -> HarvardCommand:
    """A command line as the pump reads it (terminator optional)."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise HarvardCodecError(f"command line is not ASCII: {line!r}") from None
    text = text.strip("\r\n").strip()
    address: int | None = None
    m = _ADDRESS_RE.match(text)
    if m is not None:
        address = int(m.group(1))
        text = text[m.end() :]
    text = text.lstrip("@").strip()  # '@' asks a Legato not to redraw its screen
    words = text.split()
    if not words:
        return HarvardCommand(address)
    return HarvardCommand(address, words[0].lower(), tuple(words[1:]))


# --------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class HarvardReply:
    """Text lines and the closing prompt of one reply, from the pump at ``address``."""

    address: int
    lines: tuple[str, ...]
    prompt: Prompt

    def __post_init__(self) -> None:
        if not (0 <= self.address <= 99):
            raise HarvardCodecError(f"reply address {self.address} outside 0-99")
        for line in self.lines:
            if not all(0x20 <= ord(c) < 0x7F for c in line):
                raise HarvardCodecError(f"reply line {line!r} must be printable ASCII")

    @property
    def error(self) -> str | None:
        """The pump's own words when the reply reports an error, else None."""
        if any(word in line for line in self.lines for word in ERROR_WORDS):
            return " / ".join(line.strip() for line in self.lines)
        return None


ERROR_WORDS = ("Command error", "Unknown command", "Argument error", "Out of range")


def encode_reply(reply: HarvardReply) -> bytes:
    line_prefix = f"{reply.address:02d}:" if reply.address else ""
    prompt_prefix = f"{reply.address:02d}" if reply.address else ""
    text = "".join(f"\n{line_prefix}{line}\r" for line in reply.lines)
    return (text + f"\n{prompt_prefix}{reply.prompt.value}").encode("ascii")


_PROMPT_AT_END = re.compile(rb"\n(\d\d)?(T\*|[:<>*])$")
_PROMPT_LINE = re.compile(r"^([0-9][0-9])?(T\*|[:<>*])$")


def reply_end(buffer: bytes) -> int | None:
    """``len(buffer)`` once the buffer ends with a prompt, else None.

    With a nonzero address ``<LF>NN:`` is both the idle prompt and the start of a text
    line, so a host must also wait a short quiet time after this says "complete" (the
    driver does); the pump sends each reply in one burst.
    """
    return len(buffer) if _PROMPT_AT_END.search(buffer) else None


#: first lines of a two-line error reply: a reason line always follows them
ERROR_HEADS = ("Command error", "Argument error")


def reply_may_grow(frame: bytes, expected_lines: int) -> bool:
    """Whether a frame that ``reply_end`` calls complete could still be the start of a
    longer reply, for a command that answers ``expected_lines`` text lines when it succeeds
    (0 for a set, 1 for a query).

    Only the idle prompt of a nonzero address (``<LF>NN:``) is ambiguous: it is also how
    every text line of that pump begins. It ends the reply when the lines before it are
    a whole answer: at least ``expected_lines`` of them, the last not an error head (an
    error is two lines: ``Argument error: x`` then the reason). Any other prompt (``>``,
    ``<``, ``*``, ``T*``, or any prompt of address 0, whose lines carry no prefix and
    never begin with a prompt character) ends the reply at once. A frame that does not
    decode may grow too (the caller waits).
    """
    m = _PROMPT_AT_END.search(frame)
    if m is None:
        return True
    if not (m.group(1) and m.group(2) == b":"):
        return False
    try:
        lines = decode_reply(frame).lines
    except HarvardCodecError:
        return True
    if lines and lines[-1].startswith(ERROR_HEADS):
        return True
    return len(lines) < expected_lines


def decode_reply(data: bytes) -> HarvardReply:
    """A whole reply. Before its first LF only a stray prompt (public drivers note that a
    prompt can leak there) or a CR is tolerated; anything else is a damaged reply."""
    if not all(b in (CR, LF) or 0x20 <= b < 0x7F for b in data):
        raise HarvardCodecError(f"reply holds non-ASCII or control bytes: {data!r}")
    text = data.decode("ascii")
    first = text.find("\n")
    if first < 0:
        raise HarvardCodecError(f"reply without a line feed: {text!r}")
    lead = text[:first].strip("\r")
    if lead and not _PROMPT_LINE.match(lead):
        raise HarvardCodecError(f"reply starts with {lead!r} before its first line feed")
    parts = text[first + 1 :].split("\n")
    m = _PROMPT_LINE.match(parts[-1])
    if m is None:
        raise HarvardCodecError(f"reply does not end with a prompt: {text!r}")
    address = int(m.group(1)) if m.group(1) else 0
    prefix = f"{address:02d}:" if address else ""
    lines = []
    for part in parts[:-1]:
        if not part.endswith("\r") or "\r" in part[:-1]:
            raise HarvardCodecError(f"reply line {part!r} is not terminated by CR LF")
        line = part[:-1]
        if prefix:
            if not line.startswith(prefix):
                raise HarvardCodecError(
                    f"reply line {line!r} lacks the address prefix {prefix!r} of its prompt"
                )
            line = line[len(prefix) :]
        lines.append(line)
    return HarvardReply(address, tuple(lines), Prompt(m.group(2)))


# --------------------------------------------------------------------------- status
_FLAG_SETS = ("iIwW", ".iIwW", ".S", ".T", "iIwW", ".T")


@dataclass(frozen=True)
class HarvardStatus:
    """The ``status`` line: rate fL/s, time s, infused fL (current direction), flags."""

    rate_fl_s: int
    time_s: int
    volume_fl: int
    flags: str

    def __post_init__(self) -> None:
        if min(self.rate_fl_s, self.time_s, self.volume_fl) < 0:
            raise HarvardCodecError("status numbers are never negative")
        if len(self.flags) not in (5, 6) or any(
            f not in allowed for f, allowed in zip(self.flags, _FLAG_SETS, strict=False)
        ):
            raise HarvardCodecError(f"status flags {self.flags!r} are not valid")

    @property
    def text(self) -> str:
        return f"{self.rate_fl_s} {self.time_s} {self.volume_fl} {self.flags}"

    @property
    def infusing_direction(self) -> bool:
        return self.flags[0] in "iI"

    @property
    def motor_running(self) -> bool:
        """Legato convention: an upper-case direction flag means the motor runs."""
        return self.flags[0].isupper()

    @property
    def stalled(self) -> bool:
        return self.flags[2] == "S"

    @property
    def target_reached(self) -> bool:
        return len(self.flags) == 6 and self.flags[5] == "T"

    @property
    def rate_ml_h(self) -> Decimal:
        return Decimal(self.rate_fl_s) * Decimal(3600) / Decimal(10**12)

    @property
    def volume_ml(self) -> Decimal:
        return Decimal(self.volume_fl) / Decimal(10**12)


def parse_status(line: str) -> HarvardStatus:
    parts = line.split()
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts[:3]):
        raise HarvardCodecError(f"not a status line: {line!r} (expected 3 integers and flags)")
    return HarvardStatus(int(parts[0]), int(parts[1]), int(parts[2]), parts[3])


FL_PER_ML = 10**12
