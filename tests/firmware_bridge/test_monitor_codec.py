"""The pumpctl monitor line protocol, version 1: byte-exact frames, checksums, round trips,
and the monitor's side of the wire (docs/closed-loop.md has the same examples)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.monitor.codec import (
    MAX_FRAME,
    MAX_SEQ,
    ErrorReply,
    Get,
    Hello,
    Identity,
    MonitorCodecError,
    NoData,
    NoSignal,
    Numeric,
    checksum,
    decode_frame,
    encode_frame,
    encode_reply,
    encode_request,
    frame_end,
    parse_reply,
    parse_request,
)
from firmware_bridge.monitor.emulator import MonitorSide
from firmware_bridge.patient.arterial import Reading, Status

# --------------------------------------------------------------------------- byte-exact


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (Hello(), b"HELLO*42\r\n"),
        (Get(), b"GET*56\r\n"),
        (Get(41), b"GET 41*73\r\n"),
    ],
)
def test_requests_byte_exact(message: Hello | Get, wire: bytes) -> None:
    assert encode_request(message) == wire
    assert parse_request(decode_frame(wire)) == message


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Identity(1, "pumpctl-sim"), b"MONITOR 1 pumpctl-sim*44\r\n"),
        (Numeric(42, 84.0, 78.2, 108.3, 63.3, 95), b"MAP 42 84.000 78.2 108.3 63.3 95*6B\r\n"),
        (NoSignal(7, 12.5), b"NOSIG 7 12.500*73\r\n"),
        (NoData(), b"NONE*0A\r\n"),
        (ErrorReply("SYNTAX"), b"ERR SYNTAX*6C\r\n"),
    ],
)
def test_replies_byte_exact(reply: object, wire: bytes) -> None:
    assert encode_reply(reply) == wire  # type: ignore[arg-type]
    assert parse_reply(decode_frame(wire)) == reply


def test_checksum_is_the_xor_of_the_body() -> None:
    assert checksum(b"GET") == ord("G") ^ ord("E") ^ ord("T") == 0x56


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"GET*57\r\n", "checksum mismatch"),
        (b"GET*56", None),  # no line end: still a frame body for decode (framing is apart)
        (b"GET*5g\r\n", "not hex"),
        (b"GET*56\r\n".lower(), "checksum mismatch"),
        (b"GET 41*73\r\n".replace(b"41", b"42"), "checksum mismatch"),
        (b"GET\r\n", "not a frame"),
        (b"*00\r\n", "not a frame"),
        (b"G\x01T*56\r\n", "not a frame"),
    ],
)
def test_a_damaged_frame_is_refused(frame: bytes, why: str | None) -> None:
    if why is None:
        assert decode_frame(frame) == "GET"
        return
    with pytest.raises(MonitorCodecError, match=why):
        decode_frame(frame)


def test_lower_case_checksum_digits_are_refused() -> None:
    with pytest.raises(MonitorCodecError, match="checksum"):
        decode_frame(b"MAP 42 84.000 78.2 108.3 63.3 95*6b\r\n")


def test_frame_end() -> None:
    assert frame_end(b"NONE*0A\r") is None
    assert frame_end(b"NONE*0A\r\nMAP") == 9


@pytest.mark.parametrize(
    "bad",
    [
        lambda: encode_reply(Numeric(1, 0.0, 1000.0, 1.0, 1.0, 60)),  # above 999.9
        lambda: encode_reply(Numeric(1, 0.0, -0.1, 1.0, 1.0, 60)),
        lambda: encode_reply(Numeric(MAX_SEQ + 1, 0.0, 1.0, 1.0, 1.0, 60)),
        lambda: encode_reply(Numeric(1, float("nan"), 1.0, 1.0, 1.0, 60)),
        lambda: encode_reply(Numeric(1, 0.0, 1.0, 1.0, 1.0, 1000)),
        lambda: encode_reply(Identity(1, "two words")),
        lambda: encode_reply(ErrorReply("OOPS")),
        lambda: Get(-1),
        lambda: encode_frame("x" * MAX_FRAME),
        lambda: encode_frame("a*b"),
    ],
)
def test_values_outside_the_protocol_are_refused_on_encoding(bad: object) -> None:
    with pytest.raises(MonitorCodecError):
        bad()  # type: ignore[operator]


def test_sequence_at_its_limit_and_one_past() -> None:
    assert parse_reply(decode_frame(encode_reply(NoSignal(MAX_SEQ, 0.0)))) == NoSignal(MAX_SEQ, 0.0)
    body = f"NOSIG {MAX_SEQ + 1} 0.000"
    with pytest.raises(MonitorCodecError):
        parse_reply(body)


# --------------------------------------------------------------------------- properties

pressures = st.integers(0, 9999).map(lambda tenths: tenths / 10.0)
times = st.integers(-(10**12) + 1, 10**12 - 1).map(lambda ms: ms / 1000.0)


@given(
    seq=st.integers(0, MAX_SEQ),
    t=times,
    m=pressures,
    s=pressures,
    d=pressures,
    hr=st.integers(0, 999),
)
def test_numeric_round_trip(seq: int, t: float, m: float, s: float, d: float, hr: int) -> None:
    numeric = Numeric(seq, t, m, s, d, hr)
    wire = encode_reply(numeric)
    assert len(wire) <= MAX_FRAME and wire.endswith(b"\r\n")
    assert parse_reply(decode_frame(wire)) == numeric


@given(after=st.one_of(st.none(), st.integers(0, MAX_SEQ)))
def test_get_round_trip(after: int | None) -> None:
    assert parse_request(decode_frame(encode_request(Get(after)))) == Get(after)


@given(st.binary(max_size=140))
def test_any_bytes_decode_or_raise_the_codec_error(data: bytes) -> None:
    try:
        body = decode_frame(data)
    except MonitorCodecError:
        return
    for parse in (parse_reply, parse_request):
        with contextlib.suppress(MonitorCodecError):
            parse(body)


@given(st.binary(max_size=80))
def test_a_single_flipped_bit_is_caught(noise: bytes) -> None:
    wire = bytearray(encode_reply(Numeric(42, 84.0, 78.2, 108.3, 63.3, 95)))
    for i, b in enumerate(noise[:8]):
        position = b % (len(wire) - 2)  # never the CR LF
        flipped = bytearray(wire)
        flipped[position] ^= 1 << (i % 7)
        try:
            decoded = parse_reply(decode_frame(bytes(flipped)))
        except MonitorCodecError:
            continue
        # the only flips that pass are ones that still decode to the same numeric
        assert decoded == Numeric(42, 84.0, 78.2, 108.3, 63.3, 95)


# --------------------------------------------------------------------------- monitor side


def _reading(seq: int, value: float | None) -> Reading:
    status = Status.OK if value is not None else Status.NO_SIGNAL
    sys_ = None if value is None else value + 30
    dia = None if value is None else value - 15
    return Reading(seq, 2.0 * seq, status, value, sys_, dia, 90, 80.0, None)


class _Feed:
    def __init__(self) -> None:
        self.pending: list[Reading] = []

    def __call__(self) -> list[Reading]:
        out, self.pending = self.pending, []
        return out


def _ask(side: MonitorSide, wire: bytes) -> bytes:
    side.feed(wire, 0.0)
    request = side.next_request()
    assert request is not None
    reply = side.handle(request, 0.0)
    assert reply is not None
    return reply


def test_monitor_side_answers_every_request() -> None:
    feed = _Feed()
    side = MonitorSide(feed)
    assert _ask(side, b"HELLO*42\r\n") == b"MONITOR 1 pumpctl-sim*44\r\n"
    assert _ask(side, b"GET*56\n") == b"NONE*0A\r\n"  # nothing measured yet
    feed.pending = [_reading(0, 80.0), _reading(1, None), _reading(2, 82.5)]
    assert _ask(side, b"GET*56\r\n") == encode_reply(Numeric(2, 4.0, 82.5, 112.5, 67.5, 90))
    assert _ask(side, encode_request(Get(0))) == encode_reply(NoSignal(1, 2.0))
    assert _ask(side, encode_request(Get(2))) == b"NONE*0A\r\n"
    assert _ask(side, b"GET*57\r\n") == b"ERR CHECKSUM*68\r\n"
    assert _ask(side, encode_frame("PUT 3")) == encode_reply(ErrorReply("SYNTAX"))
    assert side.describe()["newest_seq"] == 2


def test_monitor_side_reassembles_split_requests_and_refuses_long_lines() -> None:
    side = MonitorSide(_Feed())
    side.feed(b"HEL", 0.0)
    assert side.next_request() is None
    side.feed(b"LO*42\r\nGET*56\n", 0.0)
    assert side.next_request() == b"HELLO*42\r\n"
    assert side.next_request() == b"GET*56\n"
    side.feed(b"A" * (MAX_FRAME + 10), 0.0)
    assert side.next_request() is None
    side.feed(b"B" * 50 + b"\nHELLO*42\n", 0.0)
    long = side.next_request()
    assert long is not None and side.handle(long, 0.0) == encode_reply(ErrorReply("TOOLONG"))
    assert side.next_request() == b"HELLO*42\n"  # the next line is read normally
