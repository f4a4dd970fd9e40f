"""The pumpctl monitor line protocol, version 1: MAP numerics over a pty or TCP.

A patient monitor's data export, kept as simple as a line protocol can be while still
refusing a corrupted number: every frame is one line of printable ASCII with an
NMEA-style checksum, ``<body>*<CK>\\r\\n``, where ``CK`` is the XOR of every byte of
``<body>`` as two upper-case hex digits. The host asks, the monitor answers one frame per
request; nothing is sent unasked. Specification (with examples): docs/closed-loop.md.

Host to monitor:

- ``HELLO``: who are you? -> ``MONITOR <version> <model>`` (version ``1``);
- ``GET``: the newest numeric -> a numeric, or ``NONE`` before the first;
- ``GET <seq>``: the first numeric after ``seq`` the monitor still holds (it keeps the
  last ``HISTORY`` numerics) -> a numeric, or ``NONE`` when there is none newer yet; a
  host that polls slower than the monitor updates reads every numeric this way.

Numerics:

- ``MAP <seq> <t> <map> <sys> <dia> <hr>``: numeric ``seq`` made at the monitor's time
  ``t`` (seconds, 3 decimals), pressures in mmHg (1 decimal), heart rate per minute;
- ``NOSIG <seq> <t>``: numeric ``seq`` had no arterial signal.

Errors: ``ERR CHECKSUM`` (the request's checksum is wrong), ``ERR SYNTAX`` (not a known
request shape), ``ERR TOOLONG`` (a request over ``MAX_FRAME`` bytes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

VERSION = 1
#: bytes of one frame at most, CR LF included
MAX_FRAME = 128
#: numerics the monitor keeps for ``GET <seq>``
HISTORY = 64
#: largest sequence number (it never wraps in a run: 2^32 numerics at 1 s is 136 years)
MAX_SEQ = 2**32 - 1

_BODY = re.compile(rb"^[\x20-\x29\x2b-\x7e]+$")  # printable, no '*'
_INT = re.compile(r"^(0|[1-9][0-9]{0,9})$")
_TIME = re.compile(r"^-?[0-9]{1,12}\.[0-9]{3}$")
_PRESSURE = re.compile(r"^[0-9]{1,4}\.[0-9]$")
_MODEL = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


class MonitorCodecError(ValueError):
    """A frame that is not a valid protocol frame; the message says why."""


# --------------------------------------------------------------------------- framing


def checksum(body: bytes) -> int:
    value = 0
    for byte in body:
        value ^= byte
    return value


def encode_frame(body: str) -> bytes:
    raw = body.encode("ascii")
    if not _BODY.match(raw):
        raise MonitorCodecError(f"frame body must be printable ASCII without '*': {body!r}")
    frame = raw + b"*%02X\r\n" % checksum(raw)
    if len(frame) > MAX_FRAME:
        raise MonitorCodecError(f"frame of {len(frame)} bytes is over {MAX_FRAME}")
    return frame


def decode_frame(frame: bytes) -> str:
    """The body of one frame (CR LF or LF at its end); raises on a bad checksum."""
    line = frame.removesuffix(b"\n").removesuffix(b"\r")
    body, star, ck = line.rpartition(b"*")
    if not star or len(ck) != 2 or not _BODY.match(body or b"\x00"):
        raise MonitorCodecError(f"not a frame: {frame!r}")
    try:
        given = int(ck, 16)
    except ValueError:
        raise MonitorCodecError(f"checksum is not hex: {ck!r}") from None
    if ck != ck.upper() or given != checksum(body):
        raise MonitorCodecError(
            f"checksum mismatch: frame says {ck.decode('ascii', 'replace')}, "
            f"body gives {checksum(body):02X}"
        )
    return body.decode("ascii")


def frame_end(buffer: bytes) -> int | None:
    """How many bytes of ``buffer`` make its first complete frame (up to LF), or None."""
    end = buffer.find(b"\n")
    return None if end < 0 else end + 1


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Hello:
    pass


@dataclass(frozen=True)
class Get:
    after: int | None = None  # None: the newest numeric

    def __post_init__(self) -> None:
        if self.after is not None and not (0 <= self.after <= MAX_SEQ):
            raise MonitorCodecError(f"sequence must be 0-{MAX_SEQ}, got {self.after}")


Request = Hello | Get


def encode_request(request: Request) -> bytes:
    if isinstance(request, Hello):
        return encode_frame("HELLO")
    return encode_frame("GET" if request.after is None else f"GET {request.after}")


def parse_request(body: str) -> Request:
    words = body.split(" ")
    if words == ["HELLO"]:
        return Hello()
    if words[0] == "GET" and len(words) == 1:
        return Get()
    if words[0] == "GET" and len(words) == 2 and _INT.match(words[1]):
        return Get(_int(words[1]))
    raise MonitorCodecError(f"not a request: {body!r}")


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Identity:
    version: int
    model: str


@dataclass(frozen=True)
class Numeric:
    """A MAP numeric: pressures in mmHg, rounded to 0.1 on the wire."""

    seq: int
    time: float
    map_mmhg: float
    sys_mmhg: float
    dia_mmhg: float
    hr_bpm: int


@dataclass(frozen=True)
class NoSignal:
    seq: int
    time: float


@dataclass(frozen=True)
class NoData:
    pass


@dataclass(frozen=True)
class ErrorReply:
    code: str  # CHECKSUM | SYNTAX | TOOLONG


Reply = Identity | Numeric | NoSignal | NoData | ErrorReply

ERROR_CODES = ("CHECKSUM", "SYNTAX", "TOOLONG")


def encode_reply(reply: Reply) -> bytes:
    if isinstance(reply, Identity):
        if not _MODEL.match(reply.model):
            raise MonitorCodecError(f"model must be 1-32 of [A-Za-z0-9._-], got {reply.model!r}")
        return encode_frame(f"MONITOR {reply.version} {reply.model}")
    if isinstance(reply, Numeric):
        _seq_ok(reply.seq)
        hr = reply.hr_bpm
        if not (0 <= hr <= 999):
            raise MonitorCodecError(f"heart rate must be 0-999, got {hr}")
        return encode_frame(
            f"MAP {reply.seq} {_time(reply.time)} {_pressure(reply.map_mmhg)} "
            f"{_pressure(reply.sys_mmhg)} {_pressure(reply.dia_mmhg)} {hr}"
        )
    if isinstance(reply, NoSignal):
        _seq_ok(reply.seq)
        return encode_frame(f"NOSIG {reply.seq} {_time(reply.time)}")
    if isinstance(reply, NoData):
        return encode_frame("NONE")
    if reply.code not in ERROR_CODES:
        raise MonitorCodecError(f"error code must be one of {ERROR_CODES}, got {reply.code!r}")
    return encode_frame(f"ERR {reply.code}")


def parse_reply(body: str) -> Reply:
    words = body.split(" ")
    head = words[0]
    if head == "MONITOR" and len(words) == 3 and _INT.match(words[1]) and _MODEL.match(words[2]):
        return Identity(_int(words[1]), words[2])
    if head == "MAP" and len(words) == 7:
        seq, t, m, s, d, hr = words[1:]
        numbers_ok = _INT.match(seq) and _TIME.match(t) and _INT.match(hr) and int(hr) <= 999
        if numbers_ok and all(_PRESSURE.match(x) for x in (m, s, d)):
            return Numeric(_int(seq), float(t), float(m), float(s), float(d), int(hr))
    if head == "NOSIG" and len(words) == 3 and _INT.match(words[1]) and _TIME.match(words[2]):
        return NoSignal(_int(words[1]), float(words[2]))
    if words == ["NONE"]:
        return NoData()
    if head == "ERR" and len(words) == 2 and words[1] in ERROR_CODES:
        return ErrorReply(words[1])
    raise MonitorCodecError(f"not a reply: {body!r}")


def _int(text: str) -> int:
    value = int(text)
    if value > MAX_SEQ:
        raise MonitorCodecError(f"{text} is above {MAX_SEQ}")
    return value


def _seq_ok(seq: int) -> None:
    if not (0 <= seq <= MAX_SEQ):
        raise MonitorCodecError(f"sequence must be 0-{MAX_SEQ}, got {seq}")


def _time(t: float) -> str:
    if not (math.isfinite(t) and abs(t) < 1e12):
        raise MonitorCodecError(f"time must be finite and below 1e12 s, got {t!r}")
    return f"{t:.3f}"


def _pressure(p: float) -> str:
    if not (math.isfinite(p) and 0 <= p <= 999.9):
        raise MonitorCodecError(f"pressure must be 0-999.9 mmHg, got {p!r}")
    return f"{p:.1f}"
