"""Values <-> Modbus register words, for every data type, word order and scale.

Pure functions, one error type (``CodecError``). Modbus itself only defines 16-bit
registers sent high byte first (Modbus Application Protocol v1.1b3, section 4.2); how
wider values span two registers ("word order") and what a raw number means ("scale")
is each vendor's choice, so both are parameters here. Word order ``big`` puts the high
word at the lower address; ``little`` the low word first.

Rounding is explicit because a pump must never run faster than the safety kernel
checked: a set-point is encoded ``EXACT`` (a value the registers cannot hold is an
error, never silently changed) and a rate is quantized ``DOWN`` before it is checked.
Float noise from unit conversions (e.g. 16.66 uL/min -> 1665.9999999999998 raw) is
tolerated; a real difference is not.
"""

from __future__ import annotations

import enum
import functools
import math
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

_EPS = sys.float_info.epsilon


class CodecError(ValueError):
    """A value or word sequence that the given encoding cannot represent."""


class DataType(enum.StrEnum):
    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    FLOAT32 = "float32"

    @property
    def word_count(self) -> int:
        return 1 if self in (DataType.UINT16, DataType.INT16) else 2

    @property
    def is_integer(self) -> bool:
        return self is not DataType.FLOAT32


class WordOrder(enum.StrEnum):
    BIG = "big"  # high word at the lower address (most devices, "ABCD")
    LITTLE = "little"  # low word first ("CDAB")


class Rounding(enum.StrEnum):
    EXACT = "exact"  # the value must be representable (within float noise)
    NEAREST = "nearest"
    DOWN = "down"  # toward -infinity: never above the value asked for
    UP = "up"  # toward +infinity


INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.UINT16: (0, 0xFFFF),
    DataType.INT16: (-0x8000, 0x7FFF),
    DataType.UINT32: (0, 0xFFFF_FFFF),
    DataType.INT32: (-0x8000_0000, 0x7FFF_FFFF),
}
FLOAT32_MAX: float = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
#: scales outside this range are rejected: they would lose float64 precision
MIN_SCALE = 1e-9
MAX_SCALE = 1e6


@dataclass(frozen=True)
class Encoding:
    """How one value sits in registers: ``value = raw * scale``."""

    data_type: DataType = DataType.UINT16
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.data_type, DataType):
            raise CodecError(f"data type must be one of {[d.value for d in DataType]}")
        if not isinstance(self.word_order, WordOrder):
            raise CodecError(f"word order must be one of {[w.value for w in WordOrder]}")
        if not (math.isfinite(self.scale) and MIN_SCALE <= self.scale <= MAX_SCALE):
            raise CodecError(f"scale must be {MIN_SCALE:g}-{MAX_SCALE:g}, got {self.scale}")

    @property
    def word_count(self) -> int:
        return self.data_type.word_count

    def value_range(self) -> tuple[float, float]:
        """Smallest and largest value these registers hold."""
        if self.data_type is DataType.FLOAT32:
            return (-FLOAT32_MAX * self.scale, FLOAT32_MAX * self.scale)
        lo, hi = INT_RANGES[self.data_type]
        return (lo * self.scale, hi * self.scale)


@functools.lru_cache(maxsize=64)
def _decimal(scale: float) -> Decimal:
    return Decimal(repr(scale))


# ------------------------------------------------------------------ words and bytes
def check_words(words: Sequence[int], count: int | None = None) -> tuple[int, ...]:
    """Validate register words (0-65535) and, if given, their number."""
    out = tuple(words)
    if count is not None and len(out) != count:
        raise CodecError(f"expected {count} register word(s), got {len(out)}")
    for w in out:
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 0xFFFF:
            raise CodecError(f"register word must be an integer 0-65535, got {w!r}")
    return out


def words_to_bytes(words: Sequence[int]) -> bytes:
    """Registers as they travel on the wire: each word high byte first."""
    return b"".join(w.to_bytes(2, "big") for w in check_words(words))


def bytes_to_words(data: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise CodecError(f"register data must be an even number of bytes, got {len(data)}")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _split32(value: int, order: WordOrder) -> tuple[int, int]:
    hi, lo = (value >> 16) & 0xFFFF, value & 0xFFFF
    return (hi, lo) if order is WordOrder.BIG else (lo, hi)


def _join32(words: tuple[int, ...], order: WordOrder) -> int:
    hi, lo = words if order is WordOrder.BIG else (words[1], words[0])
    return (hi << 16) | lo


def raw_from_words(words: Sequence[int], enc: Encoding) -> int:
    """The unsigned bit pattern the words carry (before sign or float interpretation)."""
    w = check_words(words, enc.word_count)
    return w[0] if enc.word_count == 1 else _join32(w, enc.word_order)


def words_from_raw(raw: int, enc: Encoding) -> tuple[int, ...]:
    bits = 16 * enc.word_count
    if not 0 <= raw < (1 << bits):
        raise CodecError(f"bit pattern {raw:#x} does not fit {bits} bits")
    return (raw,) if enc.word_count == 1 else _split32(raw, enc.word_order)


# ------------------------------------------------------------------ float32 helpers
def _f32_bits(x: float) -> int:
    return int(struct.unpack(">I", struct.pack(">f", x))[0])


def _f32_from_bits(bits: int) -> float:
    return float(struct.unpack(">f", struct.pack(">I", bits))[0])


def _f32_next_down(f: float) -> float:
    if f == 0.0:
        return _f32_from_bits(0x8000_0001)
    bits = _f32_bits(f)
    return _f32_from_bits(bits - 1 if f > 0 else bits + 1)


def _f32_next_up(f: float) -> float:
    if f == 0.0:
        return _f32_from_bits(0x0000_0001)
    bits = _f32_bits(f)
    return _f32_from_bits(bits + 1 if f > 0 else bits - 1)


def _f32_nearest(x: float) -> float:
    try:
        return float(struct.unpack(">f", struct.pack(">f", x))[0])
    except OverflowError:
        raise CodecError(f"{x} is beyond the float32 range") from None


def _noise(x: float) -> float:
    """How far apart two float64 results of the same exact quantity may be after a few
    unit conversions (each adds an ulp or two)."""
    return 32 * _EPS * abs(x)


# ------------------------------------------------------------------ raw numbers
def _raw_int(value: float, enc: Encoding, rounding: Rounding, saturate: bool) -> int:
    x = value / enc.scale
    lo, hi = INT_RANGES[enc.data_type]
    if not math.isfinite(x):  # a finite value over a tiny scale
        if not saturate:
            raise CodecError(f"{value} is outside what {enc.data_type} x {enc.scale:g} holds")
        return hi if x > 0 else lo
    nearest = round(x)
    if abs(x - nearest) <= 1e-9 + _noise(x):
        raw = int(nearest)
    elif rounding is Rounding.EXACT:
        raise CodecError(f"{value} is not a multiple of the register resolution {enc.scale:g}")
    elif rounding is Rounding.NEAREST:
        raw = int(nearest)
    elif rounding is Rounding.DOWN:
        raw = math.floor(x)
    else:
        raw = math.ceil(x)
    if not lo <= raw <= hi:
        if not saturate:
            raise CodecError(
                f"{value} is outside what {enc.data_type} x {enc.scale:g} holds "
                f"({lo * enc.scale:g} to {hi * enc.scale:g})"
            )
        raw = min(max(raw, lo), hi)
    return raw


def _raw_float32(value: float, enc: Encoding, rounding: Rounding, saturate: bool) -> float:
    x = value / enc.scale
    if abs(x) > FLOAT32_MAX:
        direction_ok = (rounding is Rounding.DOWN and x > 0) or (rounding is Rounding.UP and x < 0)
        if not (saturate or direction_ok):
            raise CodecError(f"{value} is beyond the float32 range x {enc.scale:g}")
        return math.copysign(FLOAT32_MAX, x)
    f = _f32_nearest(x)
    if abs(f - x) <= _noise(x):
        return f
    if rounding is Rounding.EXACT:
        raise CodecError(f"{value} is not exactly representable as float32 x {enc.scale:g}")
    if rounding is Rounding.DOWN and f > x:
        f = _f32_next_down(f)
    elif rounding is Rounding.UP and f < x:
        f = _f32_next_up(f)
    if math.isinf(f):
        if not saturate:
            raise CodecError(f"{value} is beyond the float32 range x {enc.scale:g}")
        f = math.copysign(FLOAT32_MAX, f)
    return f


def _check_value(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"value must be a number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise CodecError(f"value {value} is beyond any register") from None
    if not math.isfinite(v):
        raise CodecError(f"value must be finite, got {value!r}")
    return v


# ------------------------------------------------------------------ public API
def encode(
    value: float,
    enc: Encoding,
    rounding: Rounding = Rounding.EXACT,
    *,
    saturate: bool = False,
) -> tuple[int, ...]:
    """The register words holding ``value``; ``saturate`` clamps to the type's range."""
    v = _check_value(value)
    if enc.data_type is DataType.FLOAT32:
        return words_from_raw(_f32_bits(_raw_float32(v, enc, rounding, saturate)), enc)
    raw = _raw_int(v, enc, rounding, saturate)
    return words_from_raw(raw & ((1 << (16 * enc.word_count)) - 1), enc)


def decode(words: Sequence[int], enc: Encoding) -> float:
    """The value the words carry. NaN and infinity are errors: no pump means them."""
    raw = raw_from_words(words, enc)
    if enc.data_type is DataType.FLOAT32:
        f = _f32_from_bits(raw)
        if not math.isfinite(f):
            raise CodecError(f"float32 register value is {f} (bit pattern {raw:#010x})")
        return f * enc.scale
    lo, _hi = INT_RANGES[enc.data_type]
    if lo < 0 and raw >= (1 << (16 * enc.word_count - 1)):
        raw -= 1 << (16 * enc.word_count)
    if enc.scale == 1.0:
        return float(raw)
    # the float nearest to raw x scale as written (1999100 x 0.001 -> 1999.1, where the
    # float product gives 1999.1000000000001 and would sit above a 1999.1 limit)
    return float(Decimal(raw) * _decimal(enc.scale))


def decode_bytes(data: bytes, enc: Encoding) -> float:
    """Decode register data as it arrives on the wire."""
    return decode(bytes_to_words(data), enc)


def quantize(value: float, enc: Encoding, rounding: Rounding = Rounding.DOWN) -> float:
    """The value the registers would really hold for ``value``."""
    return decode(encode(value, enc, rounding), enc)


def representable(value: float, enc: Encoding) -> bool:
    try:
        encode(value, enc, Rounding.EXACT)
    except CodecError:
        return False
    return True


# ------------------------------------------------------------------ bitfields
def encode_bitfield(bits: Iterable[int], enc: Encoding) -> tuple[int, ...]:
    """Words with the given bit numbers set (bit 0 = least significant)."""
    if not enc.data_type.is_integer or enc.data_type in (DataType.INT16, DataType.INT32):
        raise CodecError(f"a bitfield must be uint16 or uint32, got {enc.data_type}")
    width = 16 * enc.word_count
    raw = 0
    for b in bits:
        if not 0 <= b < width:
            raise CodecError(f"bit {b} outside a {width}-bit field")
        raw |= 1 << b
    return words_from_raw(raw, enc)


def decode_bitfield(words: Sequence[int], enc: Encoding) -> frozenset[int]:
    """Bit numbers set in the words."""
    if not enc.data_type.is_integer or enc.data_type in (DataType.INT16, DataType.INT32):
        raise CodecError(f"a bitfield must be uint16 or uint32, got {enc.data_type}")
    raw = raw_from_words(words, enc)
    return frozenset(b for b in range(16 * enc.word_count) if raw >> b & 1)


# ------------------------------------------------------------------ rates
def step_down(words: Sequence[int], enc: Encoding) -> tuple[int, ...]:
    """The next smaller value the registers can hold."""
    if enc.data_type is DataType.FLOAT32:
        f = decode(words, enc) / enc.scale
        lower = _f32_next_down(_f32_nearest(f))
        if math.isinf(lower):
            raise CodecError("no float32 below the lowest one")
        return words_from_raw(_f32_bits(lower), enc)
    raw = round(decode(words, enc) / enc.scale)
    lo, _hi = INT_RANGES[enc.data_type]
    if raw <= lo:
        raise CodecError(f"nothing below {lo * enc.scale:g} in {enc.data_type} x {enc.scale:g}")
    return words_from_raw((raw - 1) & ((1 << (16 * enc.word_count)) - 1), enc)


def quantize_rate(
    rate_ml_h: float,
    enc: Encoding,
    to_units: Callable[[float], float],
    from_units: Callable[[float], float],
) -> float:
    """The rate in mL/h a set-point register really holds when ``rate_ml_h`` is asked
    for: rounded DOWN to the register's resolution, never above the request even after
    unit-conversion noise (the safety kernel checks limits against this figure)."""
    v = _check_value(rate_ml_h)
    if v < 0:
        raise CodecError(f"rate must not be negative, got {rate_ml_h} mL/h")
    words = encode(to_units(v), enc, Rounding.DOWN)
    q = from_units(decode(words, enc))
    if q > v:
        q = from_units(decode(step_down(words, enc), enc))
    return q
