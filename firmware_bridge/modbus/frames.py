"""Modbus frames, byte-exact: PDUs of the functions a pump needs, RTU and TCP (MBAP) ADUs.

Besides the data functions, Read Device Identification (function 43, MEI type 14,
Modbus Application Protocol v1.1b3 section 6.21): how a device says who it is, which the
driver asks at every connection to tell the channel's pump from another on its port.

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
from collections.abc import Sequence
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
    #: Encapsulated Interface Transport; with MEI type 14: Read Device Identification
    ENCAPSULATED_INTERFACE = 0x2B


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


# ---------------------------------------------------------------------- device identification
#: MEI type of Read Device Identification under function 43 (v1.1b3, 6.21)
MEI_READ_DEVICE_ID = 0x0E
#: a PDU is at most 253 bytes (v1.1b3, 4.1); a reply's header takes 7 of them
MAX_PDU = 253
_DEVICE_ID_HEADER = 7
#: the most object bytes (id, length and value of each) one reply can carry
DEVICE_ID_SPACE = MAX_PDU - _DEVICE_ID_HEADER
#: the longest value of one object: alone in a reply, with its id and length bytes
MAX_OBJECT_LENGTH = DEVICE_ID_SPACE - 2
#: "more follows": 0xFF, ask again from ``next_object_id``; 0x00, the stream is complete
MORE_FOLLOWS = 0xFF
NO_MORE = 0x00


class DeviceIdCode(enum.IntEnum):
    """What a request asks for (v1.1b3, 6.21: "Read Device ID code")."""

    BASIC = 0x01  # stream access to the basic objects 0x00-0x02
    REGULAR = 0x02  # stream access to the regular objects 0x03-0x7F
    EXTENDED = 0x03  # stream access to the extended objects 0x80-0xFF
    SPECIFIC = 0x04  # one object, individual access


class BasicObject(enum.IntEnum):
    """The basic objects, mandatory for a device that answers at all (ASCII strings)."""

    VENDOR_NAME = 0x00
    PRODUCT_CODE = 0x01
    MAJOR_MINOR_REVISION = 0x02


#: conformity levels: basic, regular, extended (stream access only), and the same with
#: individual access as well (0x81-0x83)
CONFORMITY_LEVELS = frozenset({0x01, 0x02, 0x03, 0x81, 0x82, 0x83})
#: a device with the basic objects, by stream or one at a time
BASIC_CONFORMITY = 0x81


@dataclass(frozen=True)
class DeviceIdRequest:
    code: int
    object_id: int


@dataclass(frozen=True)
class DeviceIdReply:
    """A Read Device Identification reply taken apart. ``next_object_id`` means something
    only while ``more_follows``: a client then asks again from it."""

    code: int
    conformity: int
    more_follows: bool
    next_object_id: int
    objects: tuple[tuple[int, bytes], ...]


def device_id_request(code: int = DeviceIdCode.BASIC, object_id: int = 0) -> bytes:
    """Function 43, MEI type 14, the read device id code and the first object wanted."""
    if not (0 <= code <= 0xFF and 0 <= object_id <= 0xFF):
        raise FrameError(f"read device id code and object id are bytes, got {code}, {object_id}")
    return bytes([FunctionCode.ENCAPSULATED_INTERFACE, MEI_READ_DEVICE_ID, code, object_id])


def parse_device_id_request(pdu: bytes) -> DeviceIdRequest:
    if len(pdu) != 4 or pdu[0] != FunctionCode.ENCAPSULATED_INTERFACE:
        raise FrameError(f"read device identification request is 4 bytes, got {pdu.hex(' ')}")
    if pdu[1] != MEI_READ_DEVICE_ID:
        raise FrameError(f"MEI type {pdu[1]:#04x} is not read device identification (0x0e)")
    return DeviceIdRequest(pdu[2], pdu[3])


def device_id_reply(reply: DeviceIdReply) -> bytes:
    """The reply PDU, byte for byte; a reply that cannot be sent (an object or the whole
    beyond 253 bytes, a field outside a byte) is a ``FrameError``."""
    for name, field in (
        ("code", reply.code),
        ("conformity", reply.conformity),
        ("next_object_id", reply.next_object_id),
    ):
        if not 0 <= field <= 0xFF:
            raise FrameError(f"{name} must be a byte, got {field}")
    if len(reply.objects) > 0xFF:
        raise FrameError(f"{len(reply.objects)} objects: the count is one byte")
    body = b""
    for object_id, value in reply.objects:
        if not 0 <= object_id <= 0xFF:
            raise FrameError(f"object id must be a byte, got {object_id}")
        if len(value) > MAX_OBJECT_LENGTH:
            raise FrameError(
                f"object {object_id:#04x}: {len(value)} bytes, at most {MAX_OBJECT_LENGTH}"
            )
        body += bytes([object_id, len(value)]) + value
    if len(body) > DEVICE_ID_SPACE:
        raise FrameError(f"objects take {len(body)} bytes; a reply holds {DEVICE_ID_SPACE}")
    head = [
        FunctionCode.ENCAPSULATED_INTERFACE,
        MEI_READ_DEVICE_ID,
        reply.code,
        reply.conformity,
        MORE_FOLLOWS if reply.more_follows else NO_MORE,
        reply.next_object_id,
        len(reply.objects),
    ]
    return bytes(head) + body


def device_id_stream(
    code: int, conformity: int, objects: Sequence[tuple[int, bytes]], first: int
) -> DeviceIdReply:
    """A server's stream reply: the objects from id ``first`` on (from the first object
    when none has that id: v1.1b3 restarts the stream there), as many as one PDU holds;
    the rest is announced with "more follows" and the id to ask for next."""
    ids = [object_id for object_id, _ in objects]
    start = ids.index(first) if first in ids else 0
    taken: list[tuple[int, bytes]] = []
    space = DEVICE_ID_SPACE
    for object_id, value in objects[start:]:
        if 2 + len(value) > space:
            return DeviceIdReply(code, conformity, True, object_id, tuple(taken))
        taken.append((object_id, value))
        space -= 2 + len(value)
    return DeviceIdReply(code, conformity, False, 0, tuple(taken))


def parse_device_id_reply(request: bytes, reply: bytes) -> DeviceIdReply:
    """Check a (non-exception) reply answers ``request`` and take it apart: the MEI type
    and read device id code echoed, a known conformity level, "more follows" 00 or FF
    (and some object with it: asking again would otherwise never end), and exactly the
    announced objects, each within the reply."""
    asked = parse_device_id_request(request)
    if len(reply) > MAX_PDU:
        raise FrameError(f"reply of {len(reply)} bytes; a PDU has at most {MAX_PDU}")
    if len(reply) < _DEVICE_ID_HEADER:
        raise FrameError(f"device identification reply cut short: {reply.hex(' ')}")
    fc, mei, code, conformity, more, next_id, count = reply[:_DEVICE_ID_HEADER]
    if fc != FunctionCode.ENCAPSULATED_INTERFACE:
        raise FrameError(f"reply function {fc:#04x} to a request 0x2b")
    if mei != MEI_READ_DEVICE_ID:
        raise FrameError(f"reply MEI type {mei:#04x}, asked 0x0e")
    if code != asked.code:
        raise FrameError(f"reply read device id code {code:#04x}, asked {asked.code:#04x}")
    if conformity not in CONFORMITY_LEVELS:
        raise FrameError(f"conformity level {conformity:#04x} is none of the specification's")
    if more not in (NO_MORE, MORE_FOLLOWS):
        raise FrameError(f"more follows {more:#04x}: must be 0x00 or 0xff")
    if more == MORE_FOLLOWS and count == 0:
        raise FrameError("more follows, yet the reply carries no object")
    objects: list[tuple[int, bytes]] = []
    pos = _DEVICE_ID_HEADER
    for i in range(count):
        if pos + 2 > len(reply):
            raise FrameError(f"reply announces {count} objects and ends inside object {i}")
        object_id, length = reply[pos], reply[pos + 1]
        value = reply[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise FrameError(
                f"object {object_id:#04x} says {length} bytes, the reply holds {len(value)}"
            )
        objects.append((object_id, value))
        pos += 2 + length
    if pos != len(reply):
        raise FrameError(f"{len(reply) - pos} bytes after the {count} announced objects")
    return DeviceIdReply(code, conformity, more == MORE_FOLLOWS, next_id, tuple(objects))


Reply = ExceptionReply | BitsReply | RegistersReply | WriteReply | DeviceIdReply


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
    if not request:
        raise FrameError("empty request PDU")
    if not reply:
        raise FrameError("empty reply PDU")
    fc = request[0]
    if reply[0] == (fc | 0x80):
        if len(reply) != 2:
            raise FrameError(f"exception reply must be 2 bytes, got {len(reply)}")
        return ExceptionReply(fc, reply[1])
    if reply[0] != fc:
        raise FrameError(f"reply function {reply[0]:#04x} to a request {fc:#04x}")
    if fc == FunctionCode.ENCAPSULATED_INTERFACE:
        return parse_device_id_reply(request, reply)
    if len(request) < 5:
        raise FrameError("request PDU too short")
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
    if fc == FunctionCode.ENCAPSULATED_INTERFACE:
        return _rtu_device_id_length(prefix)
    if fc in (
        FunctionCode.WRITE_SINGLE_COIL,
        FunctionCode.WRITE_SINGLE_REGISTER,
        FunctionCode.WRITE_MULTIPLE_COILS,
        FunctionCode.WRITE_MULTIPLE_REGISTERS,
    ):
        return 8
    raise FrameError(f"unsupported function code {fc:#04x}")


def _rtu_device_id_length(prefix: bytes) -> int | None:
    """An identification reply's length follows from its object count and each object's
    length byte; one that would pass the 253-byte PDU is garbage, not waited for."""
    if len(prefix) >= 3 and prefix[2] != MEI_READ_DEVICE_ID:
        raise FrameError(f"reply MEI type {prefix[2]:#04x}, asked 0x0e")
    if len(prefix) < 1 + _DEVICE_ID_HEADER:
        return None
    pos = 1 + _DEVICE_ID_HEADER
    for _ in range(prefix[_DEVICE_ID_HEADER]):
        if len(prefix) < pos + 2:
            return None
        pos += 2 + prefix[pos + 1]
        if pos - 1 > MAX_PDU:
            raise FrameError(f"identification reply longer than a {MAX_PDU}-byte PDU")
    return pos + 2


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
    if fc == FunctionCode.ENCAPSULATED_INTERFACE:
        return 1 + 4 + 2
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
