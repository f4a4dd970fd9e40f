"""Framing and message decoding: bounded, strict, and nothing escapes but ``FrameError``."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.ipc.framing import (
    MAX_REQUEST_BYTES,
    BadMessage,
    FrameError,
    FrameTooLong,
    LineFramer,
    decode_client,
    decode_server,
    encode,
)
from safety.ipc.messages import (
    Attach,
    ErrorCode,
    ErrorReply,
    GetSnapshot,
    Heartbeat,
    Hello,
    RequestMessage,
    Subscribe,
)
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    EmergencyStop,
    LoadProgram,
    ProgramSpec,
    StartInfusion,
    StopInfusion,
)

HEX = "ab" * 32


def request_line(**body: object) -> bytes:
    message = {
        "v": 1,
        "type": "request",
        "id": 1,
        "session": "s",
        "seq": 1,
        "expires_at": 10.0,
        "body": body,
    }
    return json.dumps(message).encode()


# --------------------------------------------------------------------------- framer


def test_lines_are_split_across_and_within_chunks() -> None:
    framer = LineFramer(100)
    assert framer.feed(b'{"a"') == []
    assert framer.feed(b':1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert framer.pending == 4
    assert framer.feed(b":3}\n") == [b'{"c":3}']
    assert framer.pending == 0


def test_a_line_over_the_limit_is_refused_without_holding_it() -> None:
    framer = LineFramer(16)
    assert framer.feed(b"x" * 16) == []  # exactly at the limit: still waiting
    with pytest.raises(FrameTooLong, match="longer than 16 bytes"):
        framer.feed(b"y")
    assert framer.pending == 0  # the buffer was dropped, not kept growing


def test_an_oversized_line_with_its_newline_is_refused_too() -> None:
    with pytest.raises(FrameTooLong):
        LineFramer(8).feed(b"123456789\n")


def test_the_default_limit_is_64_kib() -> None:
    framer = LineFramer()
    assert framer.max_bytes == MAX_REQUEST_BYTES == 65536
    with pytest.raises(FrameTooLong):
        for _ in range(100):
            framer.feed(b"z" * 1024)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 512))
def test_arbitrary_bytes_raise_nothing_but_frame_errors(chunks: list[bytes], limit: int) -> None:
    framer = LineFramer(limit)
    for chunk in chunks:
        try:
            lines = framer.feed(chunk)
        except FrameError:
            return
        for line in lines:
            assert b"\n" not in line
            assert len(line) <= limit
            for decode in (decode_client, decode_server):
                try:
                    decode(line)
                except FrameError as exc:
                    assert str(exc)  # always a reason for the log


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            ["v", "type", "id", "session", "seq", "expires_at", "body", "kind", "dose", "x"]
        ),
        json_values,
        max_size=8,
    ),
    st.sampled_from(
        ["request", "hello", "attach", "heartbeat", "subscribe", "get_snapshot", "bogus", None]
    ),
)
def test_json_objects_of_the_wrong_shape_raise_only_bad_message(
    obj: dict[str, object], kind: str | None
) -> None:
    if kind is not None:
        obj = {**obj, "type": kind}
    line = json.dumps(obj, allow_nan=True).encode()
    try:
        decode_client(line)
    except FrameError as exc:
        assert str(exc)


def test_deeply_nested_json_is_a_bad_message() -> None:
    with pytest.raises(BadMessage):
        decode_client(b"[" * 5000 + b"]" * 5000)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"not json", "json"),
        (b"\xff\xfe", "invalid json"),
        (b"{}", "type"),
        (b'{"type": "launch_missiles", "id": 1}', "tag"),
        (b'{"type": "attach", "id": 1, "extra": true}', "extra"),
        (b'{"type": "attach", "id": 1, "v": 2}', "v"),
        (b'{"type": "attach", "id": -1}', "id"),
        (request_line(kind="change_dose", dose="0.1", x=1), "body"),
        (request_line(kind="change_dose", dose="NaN"), "not a decimal"),
        (request_line(kind="change_dose", dose="1e999999999"), "plausible"),
        (request_line(kind="change_dose", dose="1." + "1" * 60), "plausible"),
        (request_line(kind="set_rate", rate_ml_h="1"), "body"),
        (b'{"type": "hello", "client": "x", "cnonce": "zz", "mac": "00"}', "cnonce"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(line: bytes, words: str) -> None:
    with pytest.raises(BadMessage) as info:
        decode_client(line)
    assert words.lower() in str(info.value).lower()


def test_a_bad_message_reason_does_not_echo_the_input() -> None:
    secret = "s3cr3t-" * 10
    with pytest.raises(BadMessage) as info:
        decode_client(json.dumps({"type": "attach", "id": secret}).encode())
    assert secret not in str(info.value)


def test_requests_carry_every_kernel_body(spec_values: ProgramSpec) -> None:
    for body in (
        LoadProgram(spec_values),
        StartInfusion(Decimal("8"), confirm_soft_limits=True),
        ChangeDose(Decimal("0.125")),
        StopInfusion(),
        EmergencyStop("api"),
        AcknowledgeAlarms(("estop",)),
        AcknowledgeAlarms(None),
    ):
        message = RequestMessage(id=7, session="abc", seq=3, expires_at=12.5, body=body)
        line = encode(message)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode_client(line[:-1]) == message


def test_every_client_message_round_trips() -> None:
    for message in (
        Hello(client="c", cnonce=HEX, mac=HEX),
        Attach(id=1),
        Heartbeat(id=2, session="abc"),
        Heartbeat(id=3),
        GetSnapshot(id=4),
        Subscribe(id=5, on=False),
    ):
        assert decode_client(encode(message)[:-1]) == message


def test_server_errors_round_trip_and_carry_the_version() -> None:
    error = ErrorReply(id=None, code=ErrorCode.BAD_MESSAGE, message="x", fatal=True)
    line = encode(error)
    assert json.loads(line)["v"] == 1
    assert decode_server(line[:-1]) == error


def test_our_own_message_over_the_limit_is_refused_before_sending() -> None:
    with pytest.raises(FrameTooLong):
        encode(Hello(client="c" * 60, cnonce=HEX, mac=HEX), max_bytes=50)


@pytest.fixture
def spec_values() -> ProgramSpec:
    return ProgramSpec(
        "sha256:x", "norepinephrine", "adult_icu", "standard", "4 mg/250 mL", "D5W", Decimal("70.5")
    )
