"""Modbus frames, byte-exact: PDUs of the functions a pump needs, RTU and TCP (MBAP) ADUs.

Pure and independent of pymodbus on purpose: the host driver frames its own requests
with it (so every failure maps to one typed error), the tests state expected bytes with
it, and the emulator, which is pymodbus, checks it from the other side. Sources:
Modbus Application Protocol v1.1b3 (PDUs, exception replies), Modbus over Serial Line
v1.02 (RTU: address, PDU, CRC-16 low byte first) and Modbus Messaging on TCP/IP v1.0b
(MBAP: transaction id, protocol id 0, length = unit id + PDU, unit id).

Decoding anything raises only ``FrameError`` (``CrcError`` for a bad checksum).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FrameError(ValueError):
    """Bytes that are not the expected Modbus frame."""


class CrcError(FrameError):
    """An RTU frame whose CRC does not match its content."""


class FunctionCode(enum.IntEnum):
    READ_COILS = 0x01
    READ_DISCRETE_INPUTS = 0x02
    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04
    WRITE_SINGLE_COIL = 0x05
    WRITE_SINGLE_REGISTER = 0x06
    WRITE_MULTIPLE_COILS = 0x0F
    WRITE_MULTIPLE_REGISTERS = 0x10


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes (Modbus Application Protocol v1.1b3, section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_NO_RESPONSE = 0x0B

    def describe(self) -> str:
        return f"{self.name.replace('_', ' ')} ({self.value:02d})"


def describe_exception(code: int) -> str:
    try:
        return ExceptionCode(code).describe()
    except ValueError:
        return f"exception code {code:#04x}"


READ_FUNCTIONS = frozenset(
    {
        FunctionCode.READ_COILS,
        FunctionCode.READ_DISCRETE_INPUTS,
        FunctionCode.READ_HOLDING_REGISTERS,
        FunctionCode.READ_INPUT_REGISTERS,
    }
)
_MAX_READ = {
    FunctionCode.READ_COILS: 2000,
    FunctionCode.READ_DISCRETE_INPUTS: 2000,
    FunctionCode.READ_HOLDING_REGISTERS: 125,
    FunctionCode.READ_INPUT_REGISTERS: 125,
}
COIL_ON = 0xFF00
COIL_OFF = 0x0000


def _u16(value: int, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise FrameError(f"{what} must be 0-65535, got {value!r}")
    return value.to_bytes(2, "big")


def _check_span(address: int, count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise FrameError(f"count must be 1-{limit}, got {count}")
    if address + count - 1 > 0xFFFF:
        raise FrameError(f"address {address} + count {count} passes 65535")


# ---------------------------------------------------------------------- requests
def read_request(function: FunctionCode, address: int, count: int) -> bytes:
    if function not in READ_FUNCTIONS:
        raise FrameError(f"function {function} is not a read")
    head = _u16(address, "address")
    _check_span(address, count, _MAX_READ[function])
    return bytes([function]) + head + _u16(count, "count")


def write_coil_request(address: int, on: bool) -> bytes:
    return (
        bytes([FunctionCode.WRITE_SINGLE_COIL])
        + _u16(address, "address")
        + _u16(COIL_ON if on else COIL_OFF, "value")
    )


def write_register_request(address: int, value: int) -> bytes:
    return (
        bytes([FunctionCode.WRITE_SINGLE_REGISTER])
        + _u16(address, "address")
        + _u16(value, "value")
    )


def write_coils_request(address: int, bits: tuple[bool, ...] | list[bool]) -> bytes:
    head = _u16(address, "address")
    _check_span(address, len(bits), 1968)
    packed = _pack_bits(bits)
    return (
        bytes([FunctionCode.WRITE_MULTIPLE_COILS])
        + head
        + _u16(len(bits), "count")
        + bytes([len(packed)])
        + packed
    )


def write_registers_request(address: int, values: tuple[int, ...] | list[int]) -> bytes:
    head = _u16(address, "address")
    _check_span(address, len(values), 123)
    data = b"".join(_u16(v, "register value") for v in values)
    return (
        bytes([FunctionCode.WRITE_MULTIPLE_REGISTERS])
        + head
        + _u16(len(values), "count")
        + bytes([len(data)])
        + data
    )


def _pack_bits(bits: tuple[bool, ...] | list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> tuple[bool, ...]:
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))


@dataclass(frozen=True)
class Request:
    """A request PDU taken apart (the server's view; used by tests and scripted peers)."""

    function: int
    address: int
    count: int
    values: tuple[int, ...] = ()  # registers written, or coils as 0/1


def parse_request(pdu: bytes) -> Request:
    if len(pdu) < 5:
        raise FrameError(f"request PDU too short ({len(pdu)} bytes)")
    fc, address, second = pdu[0], int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
    if fc in READ_FUNCTIONS:
        if len(pdu) != 5:
            raise FrameError(f"read request must be 5 bytes, got {len(pdu)}")
        _check_span(address, second, _MAX_READ[FunctionCode(fc)])
        return Request(fc, address, second)
    if fc == FunctionCode.WRITE_SINGLE_COIL:
        if len(pdu) != 5 or second not in (COIL_ON, COIL_OFF):
            raise FrameError("write-coil request must be 5 bytes with value FF00 or 0000")
        return Request(fc, address, 1, (int(second == COIL_ON),))
    if fc == FunctionCode.WRITE_SINGLE_REGISTER:
        if len(pdu) != 5:
            raise FrameError(f"write-register request must be 5 bytes, got {len(pdu)}")
        return Request(fc, address, 1, (second,))
    if fc in (FunctionCode.WRITE_MULTIPLE_COILS, FunctionCode.WRITE_MULTIPLE_REGISTERS):
        if len(pdu) < 6 or len(pdu) != 6 + pdu[5]:
            raise FrameError("write-multiple request: byte count does not match the data")
        data = pdu[6:]
        if fc == FunctionCode.WRITE_MULTIPLE_COILS:
            _check_span(address, second, 1968)
            if len(data) != (second + 7) // 8:
                raise FrameError("write-coils request: byte count does not match the count")
            return Request(fc, address, second, tuple(map(int, _unpack_bits(data, second))))
        _check_span(address, second, 123)
        if len(data) != 2 * second:
            raise FrameError("write-registers request: byte count does not match the count")
        words = tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        return Request(fc, address, second, words)
    raise FrameError(f"unsupported function code {fc:#04x}")


# ---------------------------------------------------------------------- replies
@dataclass(frozen=True)
class ExceptionReply:
    function: int
    code: int

    def describe(self) -> str:
        return describe_exception(self.code)


@dataclass(frozen=True)
class BitsReply:
    bits: tuple[bool, ...]


@dataclass(frozen=True)
class RegistersReply:
    words: tuple[int, ...]


@dataclass(frozen=True)
class WriteReply:
    address: int
    value: int  # the written value (single writes) or the count (multiple writes)


Reply = ExceptionReply | BitsReply | RegistersReply | WriteReply


def exception_reply(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code & 0xFF])


def bits_reply(function: int, bits: tuple[bool, ...] | list[bool]) -> bytes:
    packed = _pack_bits(bits)
    return bytes([function, len(packed)]) + packed


def registers_reply(function: int, words: tuple[int, ...] | list[int]) -> bytes:
    data = b"".join(_u16(w, "register value") for w in words)
    return bytes([function, len(data)]) + data


def parse_reply(request: bytes, reply: bytes) -> Reply:
    """Check ``reply`` answers ``request`` (function, sizes, echo) and take it apart."""
    if len(request) < 5:
        raise FrameError("request PDU too short")
    if not reply:
        raise FrameError("empty reply PDU")
    fc = request[0]
    if reply[0] == (fc | 0x80):
        if len(reply) != 2:
            raise FrameError(f"exception reply must be 2 bytes, got {len(reply)}")
        return ExceptionReply(fc, reply[1])
    if reply[0] != fc:
        raise FrameError(f"reply function {reply[0]:#04x} to a request {fc:#04x}")
    count = int.from_bytes(request[3:5], "big")
    if fc in READ_FUNCTIONS:
        if len(reply) < 2 or len(reply) != 2 + reply[1]:
            raise FrameError("reply byte count does not match its data")
        data = reply[2:]
        if fc in (FunctionCode.READ_COILS, FunctionCode.READ_DISCRETE_INPUTS):
            if len(data) != (count + 7) // 8:
                raise FrameError(f"asked {count} bits, reply has {len(data)} bytes")
            return BitsReply(_unpack_bits(data, count))
        if len(data) != 2 * count:
            raise FrameError(f"asked {count} registers, reply has {len(data)} bytes")
        return RegistersReply(
            tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        )
    if fc in (FunctionCode.WRITE_SINGLE_COIL, FunctionCode.WRITE_SINGLE_REGISTER):
        if reply != request[:5]:
            raise FrameError(f"write echo {reply.hex(' ')} differs from {request[:5].hex(' ')}")
        return WriteReply(int.from_bytes(reply[1:3], "big"), int.from_bytes(reply[3:5], "big"))
    if fc in (FunctionCode.WRITE_MULTIPLE_COILS, FunctionCode.WRITE_MULTIPLE_REGISTERS):
        if reply != request[:5]:
            raise FrameError(f"write reply {reply.hex(' ')} differs from {request[:5].hex(' ')}")
        return WriteReply(int.from_bytes(reply[1:3], "big"), count)
    raise FrameError(f"unsupported function code {fc:#04x}")


# ---------------------------------------------------------------------- RTU
def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF); check value "123456789" -> 0x4B37."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def rtu_adu(unit: int, pdu: bytes) -> bytes:
    """Address, PDU, CRC low byte first (Modbus over Serial Line v1.02, 2.5.1.2)."""
    if not 0 <= unit <= 255:
        raise FrameError(f"unit address must be 0-255, got {unit}")
    frame = bytes([unit]) + pdu
    return frame + crc16(frame).to_bytes(2, "little")


def parse_rtu_adu(adu: bytes) -> tuple[int, bytes]:
    if len(adu) < 4:
        raise FrameError(f"RTU frame too short ({len(adu)} bytes)")
    body, crc = adu[:-2], int.from_bytes(adu[-2:], "little")
    if crc16(body) != crc:
        raise CrcError(f"CRC {crc:04x} does not match the frame's {crc16(body):04x}")
    return body[0], body[1:]


def rtu_reply_length(prefix: bytes, request_function: int) -> int | None:
    """Total length of the RTU reply that starts with ``prefix``; None: need more bytes.

    A reply is the request's function (or it | 0x80) and its length follows from it.
    """
    if len(prefix) < 2:
        return None
    fc = prefix[1]
    if fc == (request_function | 0x80):
        return 5
    if fc != request_function:
        raise FrameError(f"reply function {fc:#04x} to a request {request_function:#04x}")
    if fc in READ_FUNCTIONS:
        if len(prefix) < 3:
            return None
        return 3 + prefix[2] + 2
    if fc in (
        FunctionCode.WRITE_SINGLE_COIL,
        FunctionCode.WRITE_SINGLE_REGISTER,
        FunctionCode.WRITE_MULTIPLE_COILS,
        FunctionCode.WRITE_MULTIPLE_REGISTERS,
    ):
        return 8
    raise FrameError(f"unsupported function code {fc:#04x}")


def rtu_request_length(prefix: bytes) -> int | None:
    """Total length of the RTU request that starts with ``prefix``; None: need more."""
    if len(prefix) < 2:
        return None
    fc = prefix[1]
    if fc in READ_FUNCTIONS or fc in (
        FunctionCode.WRITE_SINGLE_COIL,
        FunctionCode.WRITE_SINGLE_REGISTER,
    ):
        return 8
    if fc in (FunctionCode.WRITE_MULTIPLE_COILS, FunctionCode.WRITE_MULTIPLE_REGISTERS):
        if len(prefix) < 7:
            return None
        return 7 + prefix[6] + 2
    raise FrameError(f"unsupported function code {fc:#04x}")


# ---------------------------------------------------------------------- TCP (MBAP)
MBAP_HEADER_LEN = 7


@dataclass(frozen=True)
class MbapHeader:
    transaction_id: int
    protocol_id: int
    length: int  # bytes that follow the length field: unit id + PDU
    unit: int

    @property
    def pdu_length(self) -> int:
        return self.length - 1


def mbap_adu(transaction_id: int, unit: int, pdu: bytes) -> bytes:
    if not 0 <= unit <= 255:
        raise FrameError(f"unit id must be 0-255, got {unit}")
    if not 1 <= len(pdu) <= 253:
        raise FrameError(f"PDU must be 1-253 bytes, got {len(pdu)}")
    return (
        _u16(transaction_id, "transaction id")
        + b"\x00\x00"
        + (len(pdu) + 1).to_bytes(2, "big")
        + bytes([unit])
        + pdu
    )


def parse_mbap_header(data: bytes) -> MbapHeader:
    if len(data) != MBAP_HEADER_LEN:
        raise FrameError(f"MBAP header is 7 bytes, got {len(data)}")
    header = MbapHeader(
        int.from_bytes(data[0:2], "big"),
        int.from_bytes(data[2:4], "big"),
        int.from_bytes(data[4:6], "big"),
        data[6],
    )
    if header.protocol_id != 0:
        raise FrameError(f"MBAP protocol id {header.protocol_id:#06x}, Modbus is 0")
    if not 2 <= header.length <= 254:
        raise FrameError(f"MBAP length {header.length} outside 2-254")
    return header


def parse_mbap_adu(adu: bytes) -> tuple[MbapHeader, bytes]:
    header = parse_mbap_header(adu[:MBAP_HEADER_LEN])
    pdu = adu[MBAP_HEADER_LEN:]
    if len(pdu) != header.pdu_length:
        raise FrameError(f"MBAP says {header.pdu_length} PDU bytes, frame has {len(pdu)}")
    return header, pdu
