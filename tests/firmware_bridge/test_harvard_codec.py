"""Harvard / Legato line-protocol codec: byte-exact examples, units, status, properties."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.harvard.codec import (
    COMMANDS,
    ML_PER_HR,
    UL_PER_HR,
    HarvardCodecError,
    HarvardCommand,
    HarvardReply,
    HarvardStatus,
    Prompt,
    Rate,
    RateUnit,
    decode_reply,
    display_rate,
    display_volume,
    encode_command,
    encode_reply,
    format_decimal,
    parse_command,
    parse_decimal,
    parse_rate,
    parse_rate_limits,
    parse_rate_unit,
    parse_status,
    parse_volume,
    reply_end,
    resolve_command,
    round_significant,
)


# --------------------------------------------------------------------- commands
def test_command_bytes() -> None:
    assert (
        encode_command(HarvardCommand(12, "irate", ("3.2", "ul/min"))) == b"12:irate 3.2 ul/min\r"
    )
    assert encode_command(HarvardCommand(0, "irun")) == b"irun\r"
    assert encode_command(HarvardCommand(None, "ver")) == b"ver\r"
    assert encode_command(HarvardCommand(5)) == b"5:\r"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"12:irat 3.2 ul/min\r\n", HarvardCommand(12, "irat", ("3.2", "ul/min"))),  # PHD ULTRA
        (b"12irat 3.2 u/m\r", HarvardCommand(12, "irat", ("3.2", "u/m"))),  # Legato 200
        (b"1:STATUS\r", HarvardCommand(1, "status")),
        (b"@irate 100 u/m\r", HarvardCommand(None, "irate", ("100", "u/m"))),
        (b"  stp  \r", HarvardCommand(None, "stp")),
        (b"\r", HarvardCommand(None)),
        (b"07:\r", HarvardCommand(7)),
    ],
)
def test_command_lines_parse(line: bytes, expected: HarvardCommand) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("word", "full"),
    [
        ("irat", "irate"),
        ("irate", "irate"),
        ("ivol", "ivolume"),
        ("civo", "civolume"),
        ("ctvol", "ctvolume"),
        ("diam", "diameter"),
        ("stat", "status"),
        ("ver", "ver"),
        ("vers", "version"),
        ("STP", "stp"),
        ("ir", None),
        ("irx", None),
        ("bogus", None),
    ],
)
def test_commands_may_be_cut_to_four_letters(word: str, full: str | None) -> None:
    assert resolve_command(word) == full


def test_every_command_resolves_from_its_first_four_letters_or_itself() -> None:
    for name in COMMANDS:
        assert resolve_command(name) == name
        if len(name) > 4 and not any(o != name and o.startswith(name[:4]) for o in COMMANDS):
            assert resolve_command(name[:4]) == name


# --------------------------------------------------------------------- replies
@pytest.mark.parametrize(
    ("reply", "frame"),
    [
        (HarvardReply(0, (), Prompt.IDLE), b"\n:"),
        (HarvardReply(0, ("5 ml/hr",), Prompt.INFUSING), b"\n5 ml/hr\r\n>"),
        (HarvardReply(12, ("3.2 ul/min",), Prompt.IDLE), b"\n12:3.2 ul/min\r\n12:"),
        (HarvardReply(3, (), Prompt.TARGET_REACHED), b"\n03T*"),
        (HarvardReply(0, (), Prompt.STALLED), b"\n*"),
        (
            HarvardReply(7, ("Argument error: 9000", "   Out of range"), Prompt.WITHDRAWING),
            b"\n07:Argument error: 9000\r\n07:   Out of range\r\n07<",
        ),
    ],
)
def test_reply_bytes(reply: HarvardReply, frame: bytes) -> None:
    assert encode_reply(reply) == frame
    assert decode_reply(frame) == reply
    assert reply_end(frame) == len(frame)


def test_a_reply_is_complete_only_at_its_prompt() -> None:
    frame = b"\n12:3.2 ul/min\r\n12>"
    ends = [reply_end(frame[:i]) for i in range(len(frame) + 1)]
    assert ends[-1] == len(frame)
    # "\n12:" alone is the idle prompt AND the start of a text line: hence the settle time
    assert ends[4] == 4
    assert all(e is None for e in ends[5:-1])


def test_error_replies_carry_the_pumps_words() -> None:
    reply = decode_reply(b"\n07:Argument error: 9000\r\n07:   Out of range\r\n07:")
    assert reply.error == "Argument error: 9000 / Out of range"
    assert HarvardReply(0, ("5 ml/hr",), Prompt.IDLE).error is None


@pytest.mark.parametrize(
    "frame",
    [
        b"12:3.2\r\n12:",  # no leading LF
        b"\n3.2 ul/min",  # no prompt
        b"\n12:x\r\n13:",  # line prefix disagrees with the prompt's address
        b"\n12:x\n12:",  # text line without CR
        b"\nabc\r\n\xff:",  # not ASCII
        b"\n::",  # not a prompt
    ],
)
def test_malformed_replies_are_codec_errors(frame: bytes) -> None:
    with pytest.raises(HarvardCodecError):
        decode_reply(frame)


# --------------------------------------------------------------------- units and numbers
@pytest.mark.parametrize(
    ("text", "ml_h"),
    [
        ("5 ml/hr", Decimal(5)),
        ("5 ml/h", Decimal(5)),
        ("3.2 ul/min", Decimal("0.192")),
        ("1 m/m", Decimal(60)),
        ("100 u/m", Decimal(6)),
        ("2 nl/s", Decimal("0.0072")),
        ("1 pl/hr", Decimal("1E-9")),
    ],
)
def test_rates_parse_to_ml_per_hour(text: str, ml_h: Decimal) -> None:
    assert parse_rate(text).ml_h == ml_h


def test_rate_limits_and_display() -> None:
    low, high = parse_rate_limits("16.67 ul/min to 33.31 ml/min")
    assert low.ml_h == Decimal("1.0002") and high.ml_h == Decimal("1998.6")
    assert display_rate(1.0, up=True).text == "16.67 ul/min"  # minimum rounded up
    assert display_rate(1998.6).text == "33.31 ml/min"  # maximum rounded down
    assert display_volume(0.5).text == "500 ul"
    assert display_volume(12.3456789).text == "12.3456 ml"
    assert parse_volume("20 ul").ml == Decimal("0.02")
    for bad in ("5", "5 ml/day", "x ml/hr", "-1 ml/hr", "5 kl/hr"):
        with pytest.raises(HarvardCodecError):
            parse_rate(bad)
    with pytest.raises(HarvardCodecError):
        parse_rate_limits("1 ml/hr - 5 ml/hr")


def test_significant_digit_rounding() -> None:
    assert round_significant(Decimal("12.3456"), 4) == Decimal("12.34")
    assert round_significant(Decimal("12.3456"), 4, up=True) == Decimal("12.35")
    assert round_significant(Decimal("0.000123456"), 4) == Decimal("0.0001234")
    assert format_decimal(Decimal("1.500")) == "1.5"
    assert format_decimal(Decimal("1E+3")) == "1000"


# --------------------------------------------------------------------- status
def test_status_line_from_the_manual_layout() -> None:
    status = parse_status("1388888888 3600 5000000000000 I...I.")
    assert status.rate_ml_h == Decimal("4.9999999968")  # 1 mL/h is 277 777 777.7 fL/s
    assert status.volume_ml == Decimal(5)
    assert status.infusing_direction and status.motor_running
    assert not status.stalled and not status.target_reached
    stalled = parse_status("0 12 0 i.S.I.")
    assert stalled.stalled and not stalled.motor_running
    assert parse_status("0 0 0 w...W").flags == "w...W"  # PHD ULTRA: five flags
    assert parse_status("0 1 2 i...IT").target_reached


@pytest.mark.parametrize(
    "line", ["1 2 3", "1 2 x i...I.", "1 2 3 z...I.", "1 2 3 i...I.T", "-1 2 3 i...I."]
)
def test_bad_status_lines_are_codec_errors(line: str) -> None:
    with pytest.raises(HarvardCodecError):
        parse_status(line)


# --------------------------------------------------------------------- round trips
_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789./%", min_size=1, max_size=10)


@st.composite
def commands(draw: st.DrawFn) -> HarvardCommand:
    address = draw(st.none() | st.integers(0, 99))
    if draw(st.booleans()):
        return HarvardCommand(address)
    name = draw(st.sampled_from(COMMANDS))
    args = tuple(draw(st.lists(_word, max_size=3)))
    return HarvardCommand(address, name, args)


@given(commands(), st.sampled_from([b"\r", b"\r\n", b"\n"]))
def test_command_round_trip(command: HarvardCommand, terminator: bytes) -> None:
    assert parse_command(encode_command(command, terminator)) == command


_line = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(st.integers(0, 99), st.lists(_line, max_size=4), st.sampled_from(Prompt))
def test_reply_round_trip(address: int, lines: list[str], prompt: Prompt) -> None:
    reply = HarvardReply(address, tuple(lines), prompt)
    frame = encode_reply(reply)
    assert decode_reply(frame) == reply
    assert reply_end(frame) == len(frame)


@given(
    st.integers(0, 10**12),
    st.integers(0, 10**6),
    st.integers(0, 10**15),
    st.sampled_from(["i...I.", "I.S.IT", "w...W.", "W.S.W", "i...I"]),
)
def test_status_round_trip(rate: int, time_s: int, volume: int, flags: str) -> None:
    status = HarvardStatus(rate, time_s, volume, flags)
    assert parse_status(status.text) == status


@given(
    st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False),
    st.sampled_from([ML_PER_HR, UL_PER_HR, RateUnit("n", "min"), RateUnit("p", "s")]),
)
def test_rate_round_trip(value: Decimal, unit: RateUnit) -> None:
    rate = Rate(value, unit)
    assert parse_rate(rate.text).ml_h == rate.ml_h
    assert parse_rate_unit(unit.text) == unit


# --------------------------------------------------------------------- arbitrary input
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_the_codec_error(data: bytes) -> None:
    for decode in (decode_reply, parse_command):
        with contextlib.suppress(HarvardCodecError):
            decode(data)
    end = reply_end(data)
    assert end is None or end == len(data)


@given(st.text(max_size=30))
def test_arbitrary_text_raises_only_the_codec_error(text: str) -> None:
    for parse in (parse_status, parse_rate, parse_volume, parse_rate_limits, parse_decimal):
        with contextlib.suppress(HarvardCodecError):
            parse(text)
