"""Modbus codecs: register values (every type, word order, scale) and frames (PDU, RTU, MBAP).

Round trips are property-tested; so is the rule that decoding arbitrary input raises only
the codec's own error. Known vectors come from the Modbus specifications and from
pymodbus, an implementation independent of ours.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.framer.rtu import FramerRTU

from firmware_bridge.modbus import frames
from firmware_bridge.modbus.codec import (
    FLOAT32_MAX,
    INT_RANGES,
    CodecError,
    DataType,
    Encoding,
    Rounding,
    WordOrder,
    bytes_to_words,
    decode,
    decode_bitfield,
    decode_bytes,
    encode,
    encode_bitfield,
    quantize,
    quantize_rate,
    step_down,
    words_to_bytes,
)

NOISE = 64 * 2.220446049250313e-16
SCALES = [1.0, 0.1, 0.01, 0.001, 0.5, 2.5, 100.0, 1e-6]
encodings = st.builds(
    Encoding,
    data_type=st.sampled_from(list(DataType)),
    word_order=st.sampled_from(list(WordOrder)),
    scale=st.sampled_from(SCALES),
)
word = st.integers(0, 0xFFFF)


def words_for(enc: Encoding) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*[word] * enc.word_count)


def is_finite_f32(words: tuple[int, ...], enc: Encoding) -> bool:
    if enc.data_type is not DataType.FLOAT32:
        return True
    hi, _lo = words if enc.word_order is WordOrder.BIG else (words[1], words[0])
    return (hi & 0x7F80) != 0x7F80  # exponent all ones: inf or NaN


# ------------------------------------------------------------------ round trips
@given(data=st.data(), enc=encodings)
def test_words_round_trip_through_the_value(data: st.DataObject, enc: Encoding) -> None:
    words = data.draw(words_for(enc))
    if not is_finite_f32(words, enc):
        with pytest.raises(CodecError):
            decode(words, enc)
        return
    value = decode(words, enc)
    back = encode(value, enc)  # EXACT: a decoded value is always representable
    if enc.data_type is DataType.FLOAT32 and words in ((0x8000, 0), (0, 0x8000)):
        back = encode(-0.0, enc)
    assert back == words or (value == 0.0 and decode(back, enc) == 0.0)


@given(data=st.data(), enc=encodings)
def test_values_round_trip_through_the_words(data: st.DataObject, enc: Encoding) -> None:
    words = data.draw(words_for(enc))
    assume(is_finite_f32(words, enc))
    value = decode(words, enc)
    assert decode(encode(value, enc), enc) == value


@given(enc=encodings, raw=st.integers(-(2**31), 2**32 - 1))
def test_integer_values_encode_to_their_raw_count(enc: Encoding, raw: int) -> None:
    assume(enc.data_type.is_integer)
    lo, hi = INT_RANGES[enc.data_type]
    assume(lo <= raw <= hi)
    value = decode(encode(raw * enc.scale, enc, Rounding.NEAREST), enc)
    assert math.isclose(value / enc.scale, raw, rel_tol=1e-12, abs_tol=1e-6)


# ------------------------------------------------------------------ only CodecError
@given(enc=encodings, words=st.lists(st.integers(-(2**20), 2**20), max_size=4))
def test_arbitrary_words_raise_only_codec_error(enc: Encoding, words: list[int]) -> None:
    try:
        value = decode(words, enc)
    except CodecError:
        return
    assert math.isfinite(value)


@given(enc=encodings, data=st.binary(max_size=8))
def test_arbitrary_bytes_raise_only_codec_error(enc: Encoding, data: bytes) -> None:
    try:
        value = decode_bytes(data, enc)
    except CodecError:
        return
    assert math.isfinite(value)
    assert len(data) == 2 * enc.word_count


@given(
    enc=encodings,
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**1100), 2**1100)
    ),
    rounding=st.sampled_from(list(Rounding)),
)
def test_arbitrary_values_raise_only_codec_error(
    enc: Encoding, value: float, rounding: Rounding
) -> None:
    try:
        words = encode(value, enc, rounding)
    except CodecError:
        return
    assert len(words) == enc.word_count
    assert all(0 <= w <= 0xFFFF for w in words)


def test_non_numbers_and_bad_words_are_codec_errors() -> None:
    enc = Encoding(DataType.UINT16)
    for bad in ("1", None, True):
        with pytest.raises(CodecError):
            encode(bad, enc)  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="0-65535"):
        decode([70000], enc)
    with pytest.raises(CodecError, match="expected 1"):
        decode([1, 2], enc)
    with pytest.raises(CodecError, match="even"):
        bytes_to_words(b"\x01")
    with pytest.raises(CodecError, match="scale"):
        Encoding(DataType.UINT16, scale=0.0)
    with pytest.raises(CodecError, match="scale"):
        Encoding(DataType.UINT16, scale=math.nan)


# ------------------------------------------------------------------ rounding
@given(enc=encodings, value=st.floats(-1e12, 1e12))
def test_rounding_down_is_the_largest_representable_value_not_above(
    enc: Encoding, value: float
) -> None:
    try:
        words = encode(value, enc, Rounding.DOWN)
    except CodecError:
        lo, hi = enc.value_range()
        assert value < lo or value > hi
        return
    q = decode(words, enc)
    assert q <= value + NOISE * abs(value) + 1e-9 * enc.scale  # float noise only
    # one step up is above the value
    if enc.data_type is DataType.FLOAT32:
        f = struct.unpack(">f", struct.pack(">f", q / enc.scale))[0]
        if f < FLOAT32_MAX:
            bits = struct.unpack(">I", struct.pack(">f", f))[0]
            up = struct.unpack(">f", struct.pack(">I", bits + 1 if f >= 0 else bits - 1))[0]
            if f == 0.0:
                up = struct.unpack(">f", struct.pack(">I", 1))[0]
            assert up * enc.scale > value * (1 - 1e-15) - 1e-300
    else:
        assert q + enc.scale > value - 1e-6 * enc.scale - abs(value) * 1e-15


@given(enc=encodings, value=st.floats(-1e12, 1e12))
def test_rounding_up_is_never_below(enc: Encoding, value: float) -> None:
    try:
        q = decode(encode(value, enc, Rounding.UP), enc)
    except CodecError:
        return
    assert q >= value - NOISE * abs(value) - 1e-9 * enc.scale


def test_exact_refuses_what_the_registers_would_round() -> None:
    enc = Encoding(DataType.UINT32, scale=0.001)
    assert encode(12.345, enc) == (0, 12345)
    with pytest.raises(CodecError, match=r"resolution 0\.001"):
        encode(12.3456, enc)
    assert encode(12.3456, enc, Rounding.DOWN) == (0, 12345)
    assert encode(12.3456, enc, Rounding.UP) == (0, 12346)
    assert encode(12.3456, enc, Rounding.NEAREST) == (0, 12346)
    f32 = Encoding(DataType.FLOAT32)
    with pytest.raises(CodecError, match="float32"):
        encode(0.1, f32)
    assert (
        decode(encode(0.1, f32, Rounding.DOWN), f32)
        < 0.1
        < decode(encode(0.1, f32, Rounding.UP), f32)
    )


def test_unit_conversion_noise_is_not_a_difference() -> None:
    enc = Encoding(DataType.UINT16, scale=0.01)
    noisy = 0.1 + 0.2  # 0.30000000000000004, as unit conversions produce
    assert noisy != 0.3
    assert encode(noisy, enc) == (30,)
    assert encode(1665.9999999999998 * 0.01, enc) == (1666,)


def test_scaled_integers_decode_to_the_decimal_value() -> None:
    # the float product 1999100 * 0.001 is 1999.1000000000001, above a 1999.1 limit
    assert decode([0x1E, 0x80FC], Encoding(DataType.UINT32, scale=0.001)) == 1999.1


def test_range_is_checked_and_saturate_clamps() -> None:
    enc = Encoding(DataType.UINT16, scale=0.1)
    with pytest.raises(CodecError, match=r"0 to 6553\.5"):
        encode(7000.0, enc)
    with pytest.raises(CodecError):
        encode(-0.1, enc)
    assert encode(7000.0, enc, Rounding.NEAREST, saturate=True) == (0xFFFF,)
    assert encode(-5.0, enc, Rounding.NEAREST, saturate=True) == (0,)
    f32 = Encoding(DataType.FLOAT32)
    assert decode(encode(1e300, f32, Rounding.DOWN), f32) == FLOAT32_MAX
    with pytest.raises(CodecError):
        encode(1e300, f32)


# ------------------------------------------------------------------ known vectors
@pytest.mark.parametrize(
    ("value", "enc", "words"),
    [
        (0x12345678, Encoding(DataType.UINT32, WordOrder.BIG), (0x1234, 0x5678)),
        (0x12345678, Encoding(DataType.UINT32, WordOrder.LITTLE), (0x5678, 0x1234)),
        (-1, Encoding(DataType.INT16), (0xFFFF,)),
        (-2, Encoding(DataType.INT32), (0xFFFF, 0xFFFE)),
        (-2, Encoding(DataType.INT32, WordOrder.LITTLE), (0xFFFE, 0xFFFF)),
        (1.0, Encoding(DataType.FLOAT32), (0x3F80, 0x0000)),
        (1.0, Encoding(DataType.FLOAT32, WordOrder.LITTLE), (0x0000, 0x3F80)),
        (123.45, Encoding(DataType.UINT32, scale=0.01), (0x0000, 0x3039)),  # value x100
        (12.5, Encoding(DataType.UINT16, scale=0.5), (25,)),
    ],
)
def test_known_vectors(value: float, enc: Encoding, words: tuple[int, ...]) -> None:
    assert encode(value, enc) == words
    assert decode(words, enc) == value


_PYMODBUS_TYPE = {
    DataType.UINT16: ModbusClientMixin.DATATYPE.UINT16,
    DataType.INT16: ModbusClientMixin.DATATYPE.INT16,
    DataType.UINT32: ModbusClientMixin.DATATYPE.UINT32,
    DataType.INT32: ModbusClientMixin.DATATYPE.INT32,
    DataType.FLOAT32: ModbusClientMixin.DATATYPE.FLOAT32,
}


@given(
    data=st.data(), dtype=st.sampled_from(list(DataType)), order=st.sampled_from(list(WordOrder))
)
def test_words_agree_with_pymodbus(data: st.DataObject, dtype: DataType, order: WordOrder) -> None:
    enc = Encoding(dtype, order)
    words = data.draw(words_for(enc))
    assume(is_finite_f32(words, enc))
    theirs = ModbusClientMixin.convert_from_registers(
        list(words), _PYMODBUS_TYPE[dtype], word_order=order.value
    )
    assert isinstance(theirs, int | float)
    assert decode(words, enc) == float(theirs)


def test_words_and_bytes() -> None:
    assert words_to_bytes([0x1234, 0x00FF]) == b"\x12\x34\x00\xff"
    assert bytes_to_words(b"\x12\x34\x00\xff") == (0x1234, 0x00FF)


# ------------------------------------------------------------------ bitfields
@given(
    dtype=st.sampled_from([DataType.UINT16, DataType.UINT32]),
    order=st.sampled_from(list(WordOrder)),
    bits=st.sets(st.integers(0, 31)),
)
def test_bitfields_round_trip(dtype: DataType, order: WordOrder, bits: set[int]) -> None:
    enc = Encoding(dtype, order)
    width = 16 * enc.word_count
    if any(b >= width for b in bits):
        with pytest.raises(CodecError):
            encode_bitfield(bits, enc)
        return
    assert decode_bitfield(encode_bitfield(bits, enc), enc) == bits


def test_bitfield_known_vector_and_type_check() -> None:
    enc = Encoding(DataType.UINT32, WordOrder.BIG)
    assert encode_bitfield({0, 17}, enc) == (0x0002, 0x0001)
    with pytest.raises(CodecError, match="uint16 or uint32"):
        encode_bitfield({0}, Encoding(DataType.FLOAT32))


# ------------------------------------------------------------------ rate quantization
Convert = Callable[[float], float]
UNIT_PAIRS: list[tuple[Convert, Convert]] = [
    (lambda v: v, lambda v: v),  # mL/h
    (lambda v: v * 1000.0 / 60.0, lambda v: v / (1000.0 / 60.0)),  # uL/min
    (lambda v: v / 60.0 / 0.37, lambda v: v * 60.0 * 0.37),  # rpm with 0.37 mL/rev
]


@given(
    enc=encodings.filter(lambda e: e.data_type in (DataType.UINT32, DataType.FLOAT32)),
    units=st.sampled_from(UNIT_PAIRS),
    rate=st.floats(0.0, 5000.0),
)
def test_quantize_rate_never_exceeds_and_is_idempotent(
    enc: Encoding, units: tuple[Convert, Convert], rate: float
) -> None:
    to_units, from_units = units
    try:
        q = quantize_rate(rate, enc, to_units, from_units)
    except CodecError:
        return  # beyond what the registers hold
    assert q <= rate
    assert quantize_rate(q, enc, to_units, from_units) == q
    assert encode(to_units(q), enc) is not None  # exactly representable: no CodecError


def _same(v: float) -> float:
    return v


def test_quantize_rate_refuses_negative_and_nan() -> None:
    enc = Encoding(DataType.UINT32, scale=0.001)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(CodecError):
            quantize_rate(bad, enc, _same, _same)


def test_step_down_and_quantize() -> None:
    enc = Encoding(DataType.UINT16, scale=0.01)
    assert step_down((100,), enc) == (99,)
    with pytest.raises(CodecError):
        step_down((0,), enc)
    assert quantize(1.239, enc) == 1.23


# ================================================================== frames
def test_crc_check_value_and_literal_frames() -> None:
    assert frames.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    pdu = frames.read_request(frames.FunctionCode.READ_HOLDING_REGISTERS, 0, 2)
    assert frames.rtu_adu(1, pdu) == bytes.fromhex("01 03 00 00 00 02 c4 0b")
    assert frames.mbap_adu(1, 1, pdu) == bytes.fromhex("00 01 00 00 00 06 01 03 00 00 00 02")


@given(unit=st.integers(0, 255), pdu=st.binary(min_size=1, max_size=252))
def test_rtu_frames_agree_with_pymodbus_and_round_trip(unit: int, pdu: bytes) -> None:
    adu = frames.rtu_adu(unit, pdu)
    body = bytes([unit]) + pdu
    assert adu == body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
    assert frames.parse_rtu_adu(adu) == (unit, pdu)


@given(unit=st.integers(0, 255), pdu=st.binary(min_size=1, max_size=60), bit=st.integers(0, 10_000))
def test_any_single_bit_error_fails_the_crc(unit: int, pdu: bytes, bit: int) -> None:
    adu = bytearray(frames.rtu_adu(unit, pdu))
    bit %= 8 * len(adu)
    adu[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(frames.CrcError):
        frames.parse_rtu_adu(bytes(adu))


@given(
    tid=st.integers(0, 0xFFFF), unit=st.integers(0, 255), pdu=st.binary(min_size=1, max_size=253)
)
def test_mbap_round_trip(tid: int, unit: int, pdu: bytes) -> None:
    header, back = frames.parse_mbap_adu(frames.mbap_adu(tid, unit, pdu))
    assert (header.transaction_id, header.unit, back) == (tid, unit, pdu)


read_fcs = st.sampled_from(sorted(frames.READ_FUNCTIONS))


@given(fc=read_fcs, address=st.integers(0, 0xFFFF), count=st.integers(1, 125))
def test_read_requests_round_trip(fc: frames.FunctionCode, address: int, count: int) -> None:
    assume(address + count - 1 <= 0xFFFF)
    req = frames.parse_request(frames.read_request(fc, address, count))
    assert (req.function, req.address, req.count) == (fc, address, count)


@given(
    address=st.integers(0, 0xFF00),
    values=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=123),
)
def test_write_registers_round_trip(address: int, values: list[int]) -> None:
    pdu = frames.write_registers_request(address, values)
    assert frames.parse_request(pdu) == frames.Request(0x10, address, len(values), tuple(values))
    ack = frames.parse_reply(pdu, pdu[:5])
    assert ack == frames.WriteReply(address, len(values))


@given(address=st.integers(0, 0xF000), bits=st.lists(st.booleans(), min_size=1, max_size=100))
def test_coils_round_trip(address: int, bits: list[bool]) -> None:
    pdu = frames.write_coils_request(address, bits)
    assert frames.parse_request(pdu).values == tuple(int(b) for b in bits)
    read = frames.read_request(frames.FunctionCode.READ_COILS, address, len(bits))
    reply = frames.parse_reply(read, frames.bits_reply(1, bits))
    assert reply == frames.BitsReply(tuple(bits))


@given(words=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_register_replies_round_trip(words: list[int]) -> None:
    read = frames.read_request(frames.FunctionCode.READ_INPUT_REGISTERS, 0, len(words))
    assert frames.parse_reply(read, frames.registers_reply(4, words)) == frames.RegistersReply(
        tuple(words)
    )


def test_single_writes_and_exceptions() -> None:
    coil = frames.write_coil_request(0, True)
    assert coil == bytes.fromhex("05 00 00 ff 00")
    assert frames.parse_reply(coil, coil) == frames.WriteReply(0, 0xFF00)
    with pytest.raises(frames.FrameError, match="echo"):
        frames.parse_reply(coil, frames.write_coil_request(0, False))
    exc = frames.parse_reply(coil, frames.exception_reply(5, 4))
    assert isinstance(exc, frames.ExceptionReply)
    assert exc.describe() == "SERVER DEVICE FAILURE (04)"
    assert frames.describe_exception(0x42) == "exception code 0x42"


def test_reply_checks() -> None:
    read = frames.read_request(frames.FunctionCode.READ_HOLDING_REGISTERS, 0, 2)
    with pytest.raises(frames.FrameError, match="function"):
        frames.parse_reply(read, bytes.fromhex("04 04 00 00 00 00"))
    with pytest.raises(frames.FrameError, match="asked 2 registers"):
        frames.parse_reply(read, bytes.fromhex("03 02 00 00"))
    with pytest.raises(frames.FrameError, match="byte count"):
        frames.parse_reply(read, bytes.fromhex("03 04 00 00"))
    with pytest.raises(frames.FrameError, match="protocol id"):
        frames.parse_mbap_header(bytes.fromhex("00 01 00 01 00 06 01"))
    with pytest.raises(frames.FrameError, match="count"):
        frames.read_request(frames.FunctionCode.READ_HOLDING_REGISTERS, 0, 126)


@given(request=st.binary(max_size=12), reply=st.binary(max_size=40))
def test_arbitrary_replies_raise_only_frame_error(request: bytes, reply: bytes) -> None:
    for call in (
        lambda: frames.parse_reply(request, reply),
        lambda: frames.parse_request(reply),
        lambda: frames.parse_rtu_adu(reply),
        lambda: frames.parse_mbap_adu(reply),
        lambda: frames.rtu_reply_length(reply, request[0] if request else 3),
        lambda: frames.rtu_request_length(reply),
    ):
        with contextlib.suppress(frames.FrameError):
            call()
