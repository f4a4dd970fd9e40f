"""MT-SICS (Mettler Toledo Standard Interface Command Set), levels 0 and 1: pure codec.

Facts this module relies on (MT-SICS reference manuals for Mettler Toledo laboratory
balances; written out in our own words in docs/protocols-balance.md):

- A command is upper-case ASCII, parameters separated by single spaces, ended by CR LF.
  Every response line ends with CR LF as well.
- A response starts with the command's identifier, then a status: ``A`` done, ``B`` more
  lines follow (multi-line answers such as ``I0``), ``S`` stable, ``D`` dynamic (not yet
  stable), ``I`` understood but not executable now (busy, or no stability in time),
  ``L`` understood but a parameter is wrong, ``+`` overload (above the range), ``-``
  underload (below it). The weight commands ``S``, ``SI`` and ``SIR`` all answer with the
  identifier ``S``; ``@`` answers like ``I4`` (the serial number).
- A weight travels as a number right-aligned in a 10-character field (sign next to the
  first digit, as many decimals as the balance's readability) and its unit:
  ``S S     100.00 g``.
- Text fields (identity, versions, command names) are in double quotes.
- Three general errors stand alone on a line: ``ES`` syntax error (not a command the
  balance knows), ``ET`` transmission error (a faulty byte, e.g. parity, or an overrun
  line), ``EL`` logical error (a command it knows but cannot carry out).

The codec neither reads a clock nor holds state; ``emulator.py`` (the balance's end) and
``drivers/balances/mtsics.py`` (the host's end) share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

CR = 0x0D
LF = 0x0A
CRLF = b"\r\n"
#: longest line either end accepts; a longer one is a transmission error
MAX_LINE = 256
#: the width of a weight field
WEIGHT_FIELD = 10

GENERAL_ERRORS = ("ES", "ET", "EL")

#: level 0 and level 1 commands this project implements (balance side) and uses (host)
LEVEL0 = ("@", "I0", "I1", "I2", "I3", "I4", "S", "SI", "SIR", "Z", "ZI")
LEVEL1 = ("T", "TA", "TAC", "TI")
IMPLEMENTED = LEVEL0 + LEVEL1
#: commands of the standard set a balance may know without this emulator carrying them
#: out (answered EL, not ES): display text, adjustment, other weight streams, keys...
KNOWN_NOT_IMPLEMENTED = (
    "D",
    "DW",
    "SR",
    "SNR",
    "SIU",
    "SIRU",
    "SU",
    "C0",
    "C1",
    "C2",
    "C3",
    "K",
    "PWR",
    "I5",
    "I10",
    "I11",
    "M21",
)

_NAME = re.compile(r"^(@|[A-Z][A-Z0-9]{0,5})$")
_QUOTED = re.compile(r'"([^"]*)"|(\S+)')


class MtSicsCodecError(ValueError):
    """Bytes that are not an MT-SICS line; ``code`` is the general error they deserve."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Command:
    """One command line: its identifier and its parameters (quotes removed)."""

    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reply:
    """One response line. ``status`` is None for a general error (``ES``, ``ET``, ``EL``);
    ``fields`` are the tokens after the status, quoted text unquoted."""

    id: str
    status: str | None
    fields: tuple[str, ...] = ()

    @property
    def is_general_error(self) -> bool:
        return self.id in GENERAL_ERRORS and self.status is None

    def weight(self) -> tuple[Decimal, str]:
        """The value and unit of a weight-bearing reply (``S S 1.2345 g``, ``TA A ...``)."""
        if len(self.fields) != 2:
            raise MtSicsCodecError("ES", f"{self.id} {self.status}: expected 'value unit'")
        return parse_value(self.fields[0]), self.fields[1]


# --------------------------------------------------------------------------- framing


def line_end(buffer: bytes) -> int | None:
    """Bytes of ``buffer`` that make its first complete line (CR LF included), or None."""
    at = buffer.find(CRLF)
    return None if at < 0 else at + 2


def _text(line: bytes) -> str:
    body = line[:-2] if line.endswith(CRLF) else line
    if len(body) > MAX_LINE:
        raise MtSicsCodecError("ET", f"line of {len(body)} bytes; at most {MAX_LINE}")
    if any(b < 0x20 or b > 0x7E for b in body):
        raise MtSicsCodecError("ET", f"non-printable or non-ASCII byte in {body!r}")
    return body.decode("ascii")


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(q if q or u == "" else u for q, u in _QUOTED.findall(text))


# --------------------------------------------------------------------------- commands


def encode_command(name: str, *args: str) -> bytes:
    """``encode_command("TA", "10.0000", "g")`` -> ``b"TA 10.0000 g\\r\\n"``."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not an MT-SICS command identifier")
    for arg in args:
        if not arg or any(c < " " or c > "~" for c in arg) or " " in arg:
            raise ValueError(f"MT-SICS parameter {arg!r} must be printable ASCII without spaces")
    return " ".join((name, *args)).encode("ascii") + CRLF


def parse_command(line: bytes) -> Command:
    """A command line (with or without its CR LF). Raises ``MtSicsCodecError``: ``ET``
    for bytes a balance could not have received correctly, ``ES`` for what is not a
    command (lower case, empty, a malformed identifier)."""
    text = _text(line)
    if not text.strip():
        raise MtSicsCodecError("ES", "empty command")
    if text != text.strip() or "  " in text:
        raise MtSicsCodecError("ES", f"{text!r}: parameters are separated by single spaces")
    name, *args = text.split(" ")
    if not _NAME.match(name):
        raise MtSicsCodecError("ES", f"{name!r} is not a command (commands are upper case)")
    return Command(name, tuple(args))


# --------------------------------------------------------------------------- numbers


def decimals_of(resolution: Decimal) -> int:
    """Decimals a balance of this readability prints: 0.0001 g -> 4."""
    exponent = resolution.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def quantize(value: Decimal | float, resolution: Decimal) -> Decimal:
    """The reading a balance of readability ``resolution`` shows for ``value``: rounded to
    the nearest digit (half to even), never a digit finer."""
    d = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    steps = (d / resolution).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return (steps * resolution).quantize(Decimal(1).scaleb(-decimals_of(resolution)))


def format_value(value: Decimal | float, resolution: Decimal) -> str:
    """A weight in its 10-character field: ``format_value(1.23456, Decimal("0.0001"))``
    -> ``"    1.2346"``. A wider number is not cut."""
    q = quantize(value, resolution)
    if q == 0:
        q = abs(q)  # never "-0.0000"
    return f"{q:f}".rjust(WEIGHT_FIELD)


def parse_value(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MtSicsCodecError("ES", f"{text!r} is not a number") from None
    if not value.is_finite():
        raise MtSicsCodecError("ES", f"{text!r} is not a finite number")
    return value


# --------------------------------------------------------------------------- replies


def weight_reply(ident: str, status: str, value: Decimal | float, unit: str, res: Decimal) -> bytes:
    """``S S     1.2346 g``: a weight-bearing response line."""
    return f"{ident} {status} {format_value(value, res)} {unit}".encode("ascii") + CRLF


def status_reply(ident: str, status: str) -> bytes:
    """``Z A``, ``S I``, ``S +``: a response without data."""
    return f"{ident} {status}".encode("ascii") + CRLF


def text_reply(ident: str, status: str, *texts: str) -> bytes:
    """``I4 A "0123456789"``: a response with quoted text fields."""
    for t in texts:
        if '"' in t or any(c < " " or c > "~" for c in t):
            raise ValueError(f"text field {t!r} must be printable ASCII without quotes")
    quoted = " ".join(f'"{t}"' for t in texts)
    return f"{ident} {status} {quoted}".rstrip().encode("ascii") + CRLF


def list_reply(ident: str, status: str, level: int, text: str) -> bytes:
    """One line of a command list: ``I0 B 0 "S"``."""
    return f'{ident} {status} {level} "{text}"'.encode("ascii") + CRLF


def error_reply(code: str) -> bytes:
    if code not in GENERAL_ERRORS:
        raise ValueError(f"{code!r} is not a general MT-SICS error")
    return code.encode("ascii") + CRLF


def decode_reply(line: bytes) -> Reply:
    """One response line -> ``Reply``. Raises ``MtSicsCodecError`` for garbage."""
    text = _text(line)
    tokens = _tokens(text)
    if not tokens:
        raise MtSicsCodecError("ES", "empty response line")
    ident = tokens[0]
    if ident in GENERAL_ERRORS and len(tokens) == 1:
        return Reply(ident, None)
    if not _NAME.match(ident) or len(tokens) < 2:
        raise MtSicsCodecError("ES", f"{text!r} is not an MT-SICS response")
    return Reply(ident, tokens[1], tokens[2:])


def reply_id(command: str) -> str:
    """The identifier a response to ``command`` starts with."""
    return {"SI": "S", "SIR": "S", "@": "I4"}.get(command, command)


__all__ = [
    "CRLF",
    "GENERAL_ERRORS",
    "IMPLEMENTED",
    "KNOWN_NOT_IMPLEMENTED",
    "LEVEL0",
    "LEVEL1",
    "MAX_LINE",
    "Command",
    "MtSicsCodecError",
    "Reply",
    "decimals_of",
    "decode_reply",
    "encode_command",
    "error_reply",
    "format_value",
    "line_end",
    "list_reply",
    "parse_command",
    "parse_value",
    "quantize",
    "reply_id",
    "status_reply",
    "text_reply",
    "weight_reply",
]
