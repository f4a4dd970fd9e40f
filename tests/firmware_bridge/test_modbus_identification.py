"""Read Device Identification (function 43, MEI type 14): our codec byte for byte, and our
emulator answering it from the register map.

Facts (Modbus Application Protocol v1.1b3, 6.21): the request is 2B 0E, the read device
id code (01 basic stream, 04 one object) and the first object wanted; the reply echoes
2B 0E and the code, then the conformity level, "more follows" (00 or FF), the next object
id, the number of objects and each object as id, length, value. A PDU holds at most 253
bytes, so one reply carries at most 246 object bytes. The RTU CRCs below come from
pymodbus' FramerRTU, an implementation independent of ours.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from drivers.errors import DeviceDisconnected
from drivers.pumps.base import AnotherPumpAnswers
from drivers.pumps.modbus import ModbusDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import WireFaults
from firmware_bridge.modbus import frames
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.modbus.frames import DeviceIdReply, FrameError
from firmware_bridge.modbus.register_map import (
    RegisterMapError,
    default_map_path,
    load_register_map,
)
from firmware_bridge.pump_model import SimulatedPump
from tests.firmware_bridge.test_modbus_emulator import RawRtu, RawTcp

pytestmark = pytest.mark.timeout(60)

BASIC_REQUEST = "2b 0e 01 00"
#: "ACME", "SP-1", "1.00" as objects 0, 1, 2
ACME = "00 04 41 43 4d 45 01 04 53 50 2d 31 02 04 31 2e 30 30"
ACME_REPLY = f"2b 0e 01 81 00 00 03 {ACME}"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def rtu(hex_body: str) -> bytes:
    body = h(hex_body)
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


ACME_OBJECTS = ((0, b"ACME"), (1, b"SP-1"), (2, b"1.00"))


# ====================================================================== codec: requests
def test_request_bytes() -> None:
    assert frames.device_id_request() == h(BASIC_REQUEST)
    assert frames.device_id_request(frames.DeviceIdCode.SPECIFIC, 2) == h("2b 0e 04 02")
    assert frames.parse_device_id_request(h("2b 0e 01 02")) == frames.DeviceIdRequest(1, 2)
    assert frames.rtu_adu(1, frames.device_id_request()) == h("01 2b 0e 01 00 70 77")
    assert frames.rtu_request_length(h("01 2b")) == 7
    with pytest.raises(FrameError, match="MEI type"):
        frames.parse_device_id_request(h("2b 0d 01 00"))
    with pytest.raises(FrameError, match="4 bytes"):
        frames.parse_device_id_request(h("2b 0e 01"))
    with pytest.raises(FrameError):
        frames.device_id_request(1, 256)


# ====================================================================== codec: replies
def test_reply_bytes_and_parse() -> None:
    reply = DeviceIdReply(1, 0x81, False, 0, ACME_OBJECTS)
    assert frames.device_id_reply(reply) == h(ACME_REPLY)
    assert frames.parse_reply(h(BASIC_REQUEST), h(ACME_REPLY)) == reply
    # an exception reply to it is an exception, as to any function
    assert frames.parse_reply(h(BASIC_REQUEST), h("ab 01")) == frames.ExceptionReply(0x2B, 1)


def test_more_follows_zero_ignores_the_next_object_id_and_ff_carries_it() -> None:
    """With "more follows" 00 the stream is complete whatever the next object id says; FF
    announces more from ``next_object_id``."""
    done = frames.parse_reply(h(BASIC_REQUEST), h("2b 0e 01 01 00 05 01 00 04 41 43 4d 45"))
    assert isinstance(done, DeviceIdReply)
    assert not done.more_follows
    assert done.objects == ((0, b"ACME"),)
    more = frames.parse_reply(h(BASIC_REQUEST), h("2b 0e 01 01 ff 01 01 00 04 41 43 4d 45"))
    assert isinstance(more, DeviceIdReply)
    assert more.more_follows and more.next_object_id == 1


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("2b 0e 01 81 00 00", "cut short"),
        ("2b 0d 01 81 00 00 00", "MEI type"),
        ("2b 0e 04 81 00 00 00", "read device id code"),
        ("2b 0e 01 84 00 00 00", "conformity level"),
        ("2b 0e 01 81 7f 00 00", "more follows"),
        ("2b 0e 01 81 ff 00 00", "no object"),
        (f"2b 0e 01 81 00 00 04 {ACME}", "ends inside object 3"),
        ("2b 0e 01 81 00 00 01 00 05 41 43 4d 45", "says 5 bytes"),
        (f"{ACME_REPLY} 00", "1 bytes after"),
        ("2b 0e 01 81 00 00 01 00 f7" + " 41" * 247, "253"),
        ("03 02 00 00", "reply function"),
    ],
)
def test_malformed_replies_are_refused_with_a_reason(reply: str, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        frames.parse_reply(h(BASIC_REQUEST), h(reply))


def test_object_lengths_at_the_limits() -> None:
    """Length 0, and the longest value one reply can hold (244 bytes: 253 - 7 - 2)."""
    empty = DeviceIdReply(1, 0x81, False, 0, ((0, b""), (1, b""), (2, b"")))
    assert frames.device_id_reply(empty) == h("2b 0e 01 81 00 00 03 00 00 01 00 02 00")
    longest = DeviceIdReply(1, 0x81, True, 1, ((0, b"V" * frames.MAX_OBJECT_LENGTH),))
    pdu = frames.device_id_reply(longest)
    assert len(pdu) == frames.MAX_PDU == 253
    assert frames.parse_reply(h(BASIC_REQUEST), pdu) == longest
    with pytest.raises(FrameError, match="at most 244"):
        frames.device_id_reply(DeviceIdReply(1, 0x81, False, 0, ((0, b"V" * 245),)))
    with pytest.raises(FrameError, match="holds 246"):
        frames.device_id_reply(DeviceIdReply(1, 0x81, False, 0, ((0, b"V" * 200), (1, b"W" * 45))))


def test_rtu_reply_length_follows_the_objects() -> None:
    frame = rtu(f"01 {ACME_REPLY}")
    for n in range(len(frame)):
        got = frames.rtu_reply_length(frame[:n], 0x2B)
        assert got is None or got == len(frame)
    assert frames.rtu_reply_length(frame, 0x2B) == len(frame) == 1 + 25 + 2
    assert frames.rtu_reply_length(h("01 ab"), 0x2B) == 5
    with pytest.raises(FrameError, match="MEI type"):
        frames.rtu_reply_length(h("01 2b 0d"), 0x2B)
    # object lengths that pass a 253-byte PDU: garbage, never waited for
    with pytest.raises(FrameError, match="253"):
        frames.rtu_reply_length(h("01 2b 0e 01 81 00 00 02 00 f0") + bytes(240) + h("01 f0"), 0x2B)


values = st.binary(max_size=frames.MAX_OBJECT_LENGTH)


@st.composite
def replies(draw: st.DrawFn) -> DeviceIdReply:
    objects: list[tuple[int, bytes]] = []
    space = frames.DEVICE_ID_SPACE
    for _ in range(draw(st.integers(0, 6))):
        value = draw(st.binary(max_size=min(space - 2, frames.MAX_OBJECT_LENGTH)))
        objects.append((draw(st.integers(0, 255)), value))
        space -= 2 + len(value)
        if space < 2:
            break
    more = draw(st.booleans()) and bool(objects)
    return DeviceIdReply(
        code=draw(st.integers(1, 4)),
        conformity=draw(st.sampled_from(sorted(frames.CONFORMITY_LEVELS))),
        more_follows=more,
        next_object_id=draw(st.integers(0, 255)),
        objects=tuple(objects),
    )


@given(reply=replies())
def test_identification_replies_round_trip(reply: DeviceIdReply) -> None:
    pdu = frames.device_id_reply(reply)
    assert len(pdu) <= frames.MAX_PDU
    request = frames.device_id_request(reply.code, 0)
    assert frames.parse_reply(request, pdu) == reply
    frame = frames.rtu_adu(7, pdu)
    assert frames.rtu_reply_length(frame, 0x2B) == len(frame)


@given(objects=st.lists(values, min_size=1, max_size=3), first=st.integers(0, 255))
def test_a_stream_split_by_more_follows_gives_every_object_once(
    objects: list[bytes], first: int
) -> None:
    numbered = list(enumerate(objects))
    got: list[tuple[int, bytes]] = []
    start = first
    for _ in numbered:
        reply = frames.device_id_stream(1, 0x81, numbered, start)
        assert len(frames.device_id_reply(reply)) <= frames.MAX_PDU
        got.extend(reply.objects)
        if not reply.more_follows:
            break
        start = reply.next_object_id
    assert not reply.more_follows
    # an unknown first object restarts the stream at the beginning (v1.1b3, 6.21)
    skipped = first if first < len(objects) else 0
    assert got == numbered[skipped:]


@given(data=st.binary(max_size=300))
def test_arbitrary_reply_bytes_raise_only_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        frames.parse_reply(h(BASIC_REQUEST), b"\x2b" + data)
    with contextlib.suppress(FrameError):
        frames.rtu_reply_length(b"\x01\x2b" + data, 0x2B)


# ====================================================================== register map
def test_the_maps_say_what_the_device_gives() -> None:
    syringe = load_register_map(default_map_path("syringe")).device
    assert syringe.identification_objects() == (
        (0, b"pumpctl"),
        (1, b"EXAMPLE-MODBUS-SYRINGE"),
        (2, b"1.00"),  # firmware_version
    )
    assert (
        load_register_map(default_map_path("peristaltic")).device.identification_objects() is None
    )


def map_with(tmp_path: Path, lines: str) -> str:
    """The example syringe map with ``lines`` set in its ``[device]`` table."""
    keys = {line.split("=")[0].strip() for line in lines.splitlines()}
    kept = [
        line
        for line in default_map_path("syringe").read_text().splitlines()
        if line.split("=")[0].strip() not in keys
    ]
    text = "\n".join(kept).replace("[device]", f"[device]\n{lines}", 1)
    path = tmp_path / "map.toml"
    path.write_text(text)
    return str(path)


def test_a_map_without_the_fields_keeps_working_with_defaults(tmp_path: Path) -> None:
    text = default_map_path("syringe").read_text()
    for field in ("identification", "vendor_name", "product_code"):
        text = "\n".join(line for line in text.splitlines() if not line.startswith(field))
    path = tmp_path / "old.toml"
    path.write_text(text)
    device = load_register_map(path).device
    objects = device.identification_objects()
    assert objects is not None
    assert objects[0] == (0, b"pumpctl") and objects[1] == (1, device.model.encode())


def test_identification_fields_are_checked(tmp_path: Path) -> None:
    with pytest.raises(RegisterMapError, match=r"device\.vendor_name"):
        load_register_map(map_with(tmp_path, 'vendor_name = "Müller"'))
    with pytest.raises(RegisterMapError, match=r"device\.revision"):
        load_register_map(map_with(tmp_path, f'revision = "{"9" * 245}"'))


# ====================================================================== emulator
@contextlib.contextmanager
def served(map_path: str | None = None, *, rtu_line: bool = False) -> Iterator[BackgroundEmulator]:
    where = {"use_pty": True} if rtu_line else {"tcp": ("127.0.0.1", 0)}
    with BackgroundEmulator(
        SimulatedPump(VirtualClock()), WireFaults(), map_path=map_path, **where
    ) as emu:
        yield emu


def mbap(tid: int, pdu: str) -> str:
    return f"00 {tid:02x} 00 00 00 {len(h(pdu)) + 1:02x} 01 {pdu}"


def test_emulator_answers_from_the_map_on_tcp() -> None:
    name = "00 07 70 75 6d 70 63 74 6c"  # "pumpctl"
    product = "01 16 " + b"EXAMPLE-MODBUS-SYRINGE".hex(" ")
    revision = "02 04 31 2e 30 30"  # "1.00"
    with served() as emu:
        raw = RawTcp(emu)
        try:
            stream = f"2b 0e 01 81 00 00 03 {name} {product} {revision}"
            assert raw.ask(mbap(1, BASIC_REQUEST)) == mbap(1, stream)
            # from object 2 on; from an unknown object: the whole stream again
            assert raw.ask(mbap(2, "2b 0e 01 02")) == mbap(2, f"2b 0e 01 81 00 00 01 {revision}")
            assert raw.ask(mbap(3, "2b 0e 01 09")) == mbap(3, stream)
            # one object by individual access; one it does not have: 02
            assert raw.ask(mbap(4, "2b 0e 04 01")) == mbap(4, f"2b 0e 04 81 00 00 01 {product}")
            assert raw.ask(mbap(5, "2b 0e 04 05")) == mbap(5, "ab 02")
            # regular and extended streams, and codes outside 1-4: 03 (a basic device)
            for tid, code in ((6, "02"), (7, "03"), (8, "00"), (9, "05")):
                assert raw.ask(mbap(tid, f"2b 0e {code} 00")) == mbap(tid, "ab 03")
            # a unit it does not serve: gateway without that device
            assert raw.ask(f"00 0a 00 00 00 05 07 {BASIC_REQUEST}") == (
                "00 0a 00 00 00 03 07 ab 0b"
            )
        finally:
            raw.close()


def test_emulator_of_a_device_without_identification_answers_01() -> None:
    with served("peristaltic") as emu:
        raw = RawTcp(emu)
        try:
            assert raw.ask(mbap(1, BASIC_REQUEST)) == mbap(1, "ab 01")
            assert raw.ask(mbap(2, "2b 0e 04 00")) == mbap(2, "ab 01")
        finally:
            raw.close()


def test_emulator_answers_on_rtu_and_without_identification_with_01(tmp_path: Path) -> None:
    with served("syringe", rtu_line=True) as emu:
        line = RawRtu(emu.where)
        try:
            line.send(rtu("01 2b 0e 04 02"))
            assert line.recv(16) == rtu("01 2b 0e 04 81 00 00 01 02 04 31 2e 30 30")
        finally:
            line.close()
    with served(map_with(tmp_path, "identification = false"), rtu_line=True) as emu:
        line = RawRtu(emu.where)
        try:
            line.send(rtu(f"01 {BASIC_REQUEST}"))
            assert line.recv(5) == rtu("01 ab 01")
        finally:
            line.close()


def test_emulator_at_the_limits_empty_objects_and_the_longest(tmp_path: Path) -> None:
    """Empty objects fit one reply; a 244-byte vendor name fills a reply alone, so the
    rest follows ("more follows" FF, next object 1)."""
    empty = map_with(tmp_path, 'vendor_name = ""\nproduct_code = ""\nrevision = ""')
    with served(empty) as emu:
        raw = RawTcp(emu)
        try:
            assert raw.ask(mbap(1, BASIC_REQUEST)) == mbap(
                1, "2b 0e 01 81 00 00 03 00 00 01 00 02 00"
            )
        finally:
            raw.close()
    longest = map_with(tmp_path, f'vendor_name = "{"V" * 244}"\nproduct_code = "P"')
    with served(longest) as emu:
        raw = RawTcp(emu)
        try:
            first = raw.ask(mbap(1, BASIC_REQUEST))
            assert first == mbap(1, "2b 0e 01 81 ff 01 01 00 f4 " + " ".join(["56"] * 244))
            assert len(h(first)) == 7 + 253
            assert raw.ask(mbap(2, "2b 0e 01 01")) == mbap(
                2, "2b 0e 01 81 00 00 02 01 01 50 02 04 31 2e 30 30"
            )
        finally:
            raw.close()


# ====================================================================== driver and emulator
def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"not within 3 s: {what}")


def unplug(emu: BackgroundEmulator) -> None:
    """The emulator's pty closes (a USB adapter pulled); a new one appears behind its path."""
    before = os.path.realpath(emu.where)
    emu.wire.request_disconnect()
    wait_until(lambda: os.path.realpath(emu.where) != before, "a new pty behind the path")


def test_driver_refuses_another_emulated_device_behind_the_port_name(tmp_path: Path) -> None:
    """``ttyUSB0`` (a link we point) reaches the channel's device, then another one after
    an unplug: refused (``AnotherPumpAnswers``) with nothing but the question sent to it;
    back on the channel's device, the driver goes on. The other device's own log is the
    evidence of what it got."""
    other_map = map_with(tmp_path, 'product_code = "OTHER"')
    port = tmp_path / "ttyUSB0"
    with (
        served("syringe", rtu_line=True) as own,
        served(other_map, rtu_line=True) as other,
    ):
        port.symlink_to(own.where)
        driver = ModbusDriver(serial_port=str(port), timeout_s=0.4)
        driver.connect()
        try:
            assert driver.pump_name is not None
            assert driver.pump_name.first == "pumpctl EXAMPLE-MODBUS-SYRINGE 1.00"
            port.unlink()
            port.symlink_to(other.where)
            unplug(own)
            with pytest.raises(DeviceDisconnected):
                driver.keep_alive()
            with pytest.raises(AnotherPumpAnswers, match=r"'pumpctl OTHER 1\.00'"):
                driver.read_status()
            with pytest.raises(AnotherPumpAnswers):
                driver.start()
            asked = [line for line in other.lines if line.startswith("rx ")]
            assert len(asked) == 2
            assert all(" 2b 0e 01 00 " in line for line in asked), asked
            assert not other.pump.snapshot().running  # type: ignore[union-attr]
            port.unlink()
            port.symlink_to(own.where)
            unplug(other)
            with pytest.raises(DeviceDisconnected):
                driver.keep_alive()
            driver.keep_alive()
            assert driver.pump_name.foreign is None
        finally:
            driver.close()


def test_driver_connects_to_an_emulated_device_without_identification() -> None:
    with served("peristaltic") as emu:
        host, port = emu.host_port
        driver = ModbusDriver(map_path="peristaltic", host=host, port=port, device_id=1)
        driver.connect()
        try:
            assert driver.pump_name is not None and driver.pump_name.first is None
            assert not driver.read_status().running
        finally:
            driver.close()
    assert any(" ab 01" in line for line in emu.lines if line.startswith("tx "))
