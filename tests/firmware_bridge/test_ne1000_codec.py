"""NE-1000 codec: byte-exact examples from the manual, number rules, and properties."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.ne1000.codec import (
    KNOWN_COMMANDS_2,
    KNOWN_COMMANDS_3,
    RATE_UNIT_PREFERENCE,
    Dispensed,
    Ne1000Alarm,
    Ne1000ChecksumError,
    Ne1000CodecError,
    Ne1000Command,
    Ne1000Error,
    Ne1000FramingError,
    Ne1000Reply,
    Ne1000Status,
    RateChoice,
    RateUnit,
    VolumeUnit,
    basic_reply_end,
    choose_rate,
    crc16,
    decode_basic_reply,
    decode_safe_packet,
    encode_basic_command,
    encode_basic_reply,
    encode_command,
    encode_reply,
    encode_safe_packet,
    floor_to_field,
    format_number,
    parse_command,
    parse_dispensed,
    parse_number,
    parse_rate,
    parse_reply,
    safe_packet_end,
)

SAF0_PACKET = bytes.fromhex("02 08 53 41 46 30 55 43 03")


# --------------------------------------------------------------------- manual examples
def test_safe_mode_check_value_from_the_manual() -> None:
    assert crc16(b"SAF0") == 0x5543
    packet = encode_safe_packet(encode_command(Ne1000Command(None, "SAF", "0")))
    assert packet == SAF0_PACKET
    assert decode_safe_packet(SAF0_PACKET) == b"SAF0"
    assert safe_packet_end(SAF0_PACKET) == len(SAF0_PACKET)


def test_basic_command_bytes() -> None:
    assert encode_basic_command(Ne1000Command(0, "RAT", "5.000MH")) == b"0RAT5.000MH\r"
    assert encode_basic_command(Ne1000Command(12, "VER")) == b"12VER\r"
    assert encode_basic_command(Ne1000Command(None)) == b"\r"
    assert encode_basic_command(Ne1000Command(3)) == b"3\r"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b" 1 rat 5 mh", Ne1000Command(1, "RAT", "5MH")),
        (b"rat\t10.5\x01 uh", Ne1000Command(None, "RAT", "10.5UH")),
        (b"volul", Ne1000Command(None, "VOL", "UL")),
        (b"07DIR INF", Ne1000Command(7, "DIR", "INF")),
        (b"", Ne1000Command(None)),
        (b"12", Ne1000Command(12)),
        (b"123", Ne1000Command(12, "", "3")),
        (b"0XYZ", Ne1000Command(0, "XYZ")),
        (b"al1", Ne1000Command(None, "AL", "1")),
    ],
)
def test_commands_read_the_way_the_pump_reads_them(raw: bytes, expected: Ne1000Command) -> None:
    assert parse_command(raw) == expected


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        (b"\x0200S\x03", Ne1000Reply(0, Ne1000Status.STOPPED)),
        (b"\x0212I\x03", Ne1000Reply(12, Ne1000Status.INFUSING)),
        (b"\x0200SNE1000V3.928\x03", Ne1000Reply(0, Ne1000Status.STOPPED, data="NE1000V3.928")),
        (b"\x0203A?S\x03", Ne1000Reply(3, alarm=Ne1000Alarm.STALL)),
        (b"\x0200A?R\x03", Ne1000Reply(0, alarm=Ne1000Alarm.RESET)),
        (b"\x0200A?T\x03", Ne1000Reply(0, alarm=Ne1000Alarm.COMMS_TIMEOUT)),
        (b"\x0200I?OOR\x03", Ne1000Reply(0, Ne1000Status.INFUSING, error=Ne1000Error.OUT_OF_RANGE)),
        (b"\x0200S?NA\x03", Ne1000Reply(0, Ne1000Status.STOPPED, error=Ne1000Error.NOT_APPLICABLE)),
        (b"\x0200S?\x03", Ne1000Reply(0, Ne1000Status.STOPPED, error=Ne1000Error.UNKNOWN_COMMAND)),
        (
            b"\x0200S?COM\x03",
            Ne1000Reply(0, Ne1000Status.STOPPED, error=Ne1000Error.INVALID_PACKET),
        ),
        (b"\x0200X?IGN\x03", Ne1000Reply(0, Ne1000Status.PURGING, error=Ne1000Error.IGNORED)),
    ],
)
def test_basic_reply_frames(frame: bytes, reply: Ne1000Reply) -> None:
    assert decode_basic_reply(frame) == reply
    assert encode_basic_reply(reply) == frame


def test_every_status_character_decodes() -> None:
    for status, char in zip(Ne1000Status, "IWSPTUX", strict=True):
        assert decode_basic_reply(b"\x0200" + char.encode() + b"\x03").status is status


def test_safe_reply_packet_bytes() -> None:
    packet = encode_safe_packet(encode_reply(Ne1000Reply(0, Ne1000Status.STOPPED)))
    assert packet[:2] == b"\x02\x07" and packet[2:5] == b"00S" and packet[-1] == 0x03
    assert parse_reply(decode_safe_packet(packet)) == Ne1000Reply(0, Ne1000Status.STOPPED)


def test_a_corrupted_packet_fails_its_crc() -> None:
    damaged = SAF0_PACKET[:3] + b"B" + SAF0_PACKET[4:]
    with pytest.raises(Ne1000ChecksumError):
        decode_safe_packet(damaged)


@pytest.mark.parametrize(
    "packet",
    [
        b"\x02\x03SAF",  # length below 4
        b"\x02\x08SAF0UC\x04",  # no ETX
        b"\x02\x09SAF0UC\x03",  # length disagrees
        b"SAF0",  # no STX at all
    ],
)
def test_malformed_packets_are_framing_errors(packet: bytes) -> None:
    with pytest.raises(Ne1000FramingError):
        decode_safe_packet(packet)


def test_frame_ends_are_found_byte_by_byte() -> None:
    stream = b"noise" + SAF0_PACKET
    ends = [safe_packet_end(stream[:i]) for i in range(len(stream) + 1)]
    assert ends[:-1] == [None] * len(stream)
    assert ends[-1] == len(stream)
    frame = b"\xff\x0200S\x03"
    assert [basic_reply_end(frame[:i]) for i in range(len(frame) + 1)] == [None] * 6 + [6]
    assert decode_basic_reply(frame) == Ne1000Reply(0, Ne1000Status.STOPPED)


# --------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "5.000"),
        (0.05, "0.050"),
        (12.345, "12.34"),
        (99.999, "99.99"),
        (999.99, "999.9"),
        (1234.5, "1234"),
        (9999, "9999"),
        (0.0005, "0.000"),
        (Decimal("26.59"), "26.59"),
    ],
)
def test_numbers_are_four_digits_rounded_down(value: float | Decimal, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize("value", [10000, 12345.0, -0.001])
def test_numbers_that_do_not_fit_are_refused(value: float) -> None:
    with pytest.raises(Ne1000CodecError):
        format_number(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", Decimal(5)), (".5", Decimal("0.5")), ("26.59", Decimal("26.59")), ("9999", 9999)],
)
def test_numbers_parse(text: str, value: Decimal) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text", ["", ".", "12345", "1.2345", "0.0001", "1,5", "-1", "1e3", "1.2.3"]
)
def test_bad_numbers_are_codec_errors(text: str) -> None:
    with pytest.raises(Ne1000CodecError):
        parse_number(text)


# --------------------------------------------------------------------- rate units
@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (5.0, "5.000MH"),  # exact in mL/h
        (12.345, "12.34MH"),  # mL/h loses 0.04 %: good enough, stays in the clinical unit
        (150.0, "150.0MH"),
        (0.2345, "3.908UM"),  # mL/h would lose 0.2 %: uL/min keeps 4 digits
        (0.0005, "0.500UH"),  # only uL/h expresses it
        (20000.0, "333.3MM"),  # beyond 9999 mL/h
    ],
)
def test_rate_unit_choice(rate: float, text: str) -> None:
    assert choose_rate(rate).text == text


def test_while_running_only_the_unit_in_use_is_allowed() -> None:
    assert choose_rate(20.0, (RateUnit.UL_PER_H,)).text == "9999UH"  # stop to change units
    assert choose_rate(0.2345, (RateUnit.ML_PER_H,)).text == "0.234MH"


def test_rate_and_dispensed_replies_parse() -> None:
    assert parse_rate("3.908UM") == RateChoice(Decimal("3.908"), RateUnit.UL_PER_MIN)
    assert parse_rate("3.908UM").ml_h == Decimal("0.23448")
    dis = parse_dispensed("I12.34W0.000ML")
    assert dis == Dispensed(Decimal("12.34"), Decimal(0), VolumeUnit.ML)
    assert parse_dispensed("I500.0W1.000UL").infused_ml == Decimal("0.5")
    for bad_rate in ("3.908", "3.908XX", "MH", "12345MH"):
        with pytest.raises(Ne1000CodecError):
            parse_rate(bad_rate)
    for bad_dis in ("I1W2", "I1.0W2.0GL", "W1I2ML"):
        with pytest.raises(Ne1000CodecError):
            parse_dispensed(bad_dis)


@given(st.floats(min_value=1e-4, max_value=5e5, allow_nan=False))
def test_rate_choice_never_rounds_up_and_chooses_itself(rate: float) -> None:
    choice = choose_rate(rate)
    assert choice.ml_h <= Decimal(repr(rate))
    assert choice.ml_h > 0
    again = choose_rate(float(choice.ml_h))
    assert again.ml_h == choice.ml_h  # idempotent: a chosen rate is one the pump runs
    assert parse_rate(choice.text).ml_h == choice.ml_h
    if rate >= 0.01:
        assert choice.ml_h >= Decimal(repr(rate)) * Decimal("0.99")


@given(
    st.floats(min_value=1e-3, max_value=5e4, allow_nan=False),
    st.sampled_from(RATE_UNIT_PREFERENCE),
)
def test_single_unit_choice_is_the_floor_in_that_unit(rate: float, unit: RateUnit) -> None:
    choice = choose_rate(rate, (unit,))
    assert choice.unit is unit
    assert choice.ml_h <= Decimal(repr(rate))
    assert floor_to_field(choice.value) == choice.value


# --------------------------------------------------------------------- round trips
_ARG_CHARS = "0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_names = st.sampled_from(sorted(KNOWN_COMMANDS_3 | KNOWN_COMMANDS_2))


@st.composite
def commands(draw: st.DrawFn) -> Ne1000Command:
    address = draw(st.none() | st.integers(0, 99))
    if draw(st.booleans()):
        return Ne1000Command(address)
    name = draw(_names)
    argument = draw(st.text(_ARG_CHARS, max_size=12))
    # a 2-letter name followed by letters could read as a longer name: keep it unambiguous
    if len(name) == 2 and argument[:1].isalpha():
        argument = "1" + argument
    return Ne1000Command(address, name, argument)


@given(commands())
def test_command_round_trip(command: Ne1000Command) -> None:
    assert parse_command(encode_command(command)) == command
    assert encode_basic_command(command).endswith(b"\r")
    assert parse_command(decode_safe_packet(encode_safe_packet(encode_command(command)))) == command


_data = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).filter(
    lambda s: not s.startswith("?")
)


@st.composite
def replies(draw: st.DrawFn) -> Ne1000Reply:
    address = draw(st.integers(0, 99))
    if draw(st.booleans()):
        return Ne1000Reply(address, alarm=draw(st.sampled_from(Ne1000Alarm)), data=draw(_data))
    status = draw(st.sampled_from(Ne1000Status))
    if draw(st.booleans()):
        return Ne1000Reply(address, status, error=draw(st.sampled_from(Ne1000Error)))
    return Ne1000Reply(address, status, data=draw(_data))


@given(replies())
def test_reply_round_trip(reply: Ne1000Reply) -> None:
    assert parse_reply(encode_reply(reply)) == reply
    assert decode_basic_reply(encode_basic_reply(reply)) == reply
    assert parse_reply(decode_safe_packet(encode_safe_packet(encode_reply(reply)))) == reply


@given(st.binary(max_size=251))
def test_safe_packet_round_trip(data: bytes) -> None:
    packet = encode_safe_packet(data)
    assert safe_packet_end(packet) == len(packet)
    assert decode_safe_packet(packet) == data


@given(st.decimals(min_value=0, max_value=9999, places=3, allow_nan=False))
def test_number_round_trip(value: Decimal) -> None:
    floored = floor_to_field(value)
    assert floored <= value
    assert parse_number(format_number(floored)) == floored


# --------------------------------------------------------------------- arbitrary bytes
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_the_codec_error(data: bytes) -> None:
    for decode in (decode_safe_packet, decode_basic_reply, parse_reply):
        with contextlib.suppress(Ne1000CodecError):
            decode(data)
    parse_command(data)  # the pump reads anything; unknown names are answered '?'
    end = safe_packet_end(data)
    assert end is None or 0 < end <= len(data)
    end = basic_reply_end(data)
    assert end is None or 0 < end <= len(data)


@given(st.text(max_size=20))
def test_arbitrary_text_raises_only_the_codec_error(text: str) -> None:
    for parse in (parse_number, parse_rate, parse_dispensed):
        with contextlib.suppress(Ne1000CodecError):
            parse(text)


@given(st.binary(min_size=1, max_size=40), st.data())
def test_any_single_byte_change_in_a_packet_is_caught(data: bytes, draw: st.DataObject) -> None:
    packet = bytearray(encode_safe_packet(data))
    i = draw.draw(st.integers(0, len(packet) - 1))
    packet[i] ^= draw.draw(st.integers(1, 255))
    try:
        decoded = decode_safe_packet(bytes(packet))
    except Ne1000CodecError:
        return
    # only a change to the leading STX can leave a packet that decodes, and then not as this
    assert i == 0 or decoded != data
