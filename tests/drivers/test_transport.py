"""The serial transport over a real pty (the test plays the pump on the master side), and
the scripted transport's own promises."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.opening import Opener
from drivers.testing import ScriptedTransport, ScriptError
from drivers.transport import SerialTransport
from firmware_bridge.harvard.codec import reply_end
from firmware_bridge.ne1000.codec import (
    any_reply_end,
    basic_reply_end,
    encode_safe_packet,
    reply_bytes_to_come,
)

WAIT_S = 2.0  # bounded waits for the responder thread, never reached when things work


class FakePump:
    """The master side of a pty, answering each request it reads with canned bytes."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)
        self.requests: list[bytes] = []

    def answer_next(self, *pieces: bytes) -> threading.Thread:
        """In the background: wait for one request, then write ``pieces`` one by one."""

        def run() -> None:
            if select.select([self.master], [], [], WAIT_S)[0]:
                self.requests.append(os.read(self.master, 4096))
                for piece in pieces:
                    os.write(self.master, piece)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def answer_paced(self, reply: bytes, char_s: float) -> threading.Thread:
        """In the background: wait for one request, then write ``reply`` a byte at a time,
        byte i at i character times after the first (a UART's pace)."""

        def run() -> None:
            if select.select([self.master], [], [], WAIT_S)[0]:
                self.requests.append(os.read(self.master, 4096))
                start = time.monotonic()
                for i, byte in enumerate(reply):
                    time.sleep(max(0.0, start + i * char_s - time.monotonic()))
                    os.write(self.master, bytes([byte]))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.master)


@pytest.fixture
def pump() -> Iterator[FakePump]:
    fake = FakePump()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def transport(pump: FakePump) -> Iterator[SerialTransport]:
    t = SerialTransport(pump.path, baudrate=19200, dirty_quiet_s=0.05)
    t.open()
    try:
        yield t
    finally:
        t.close()


def exchange(
    t: SerialTransport, request: bytes, frame_end: Callable[[bytes], int | None], **kw: float
) -> bytes:
    return t.exchange(
        request,
        frame_end=frame_end,
        timeout_s=kw.get("timeout_s", WAIT_S),
        settle_s=kw.get("settle_s", 0.0),
    )


def test_a_reply_in_pieces_with_noise_before_it_is_one_frame(
    pump: FakePump, transport: SerialTransport
) -> None:
    thread = pump.answer_next(b"\xff\x0200", b"S\x03")
    assert exchange(transport, b"0\r", basic_reply_end) == b"\xff\x0200S\x03"
    thread.join(WAIT_S)
    assert pump.requests == [b"0\r"]


def test_no_reply_is_a_timeout_naming_what_arrived(
    pump: FakePump, transport: SerialTransport
) -> None:
    thread = pump.answer_next(b"\x0200")  # half a frame, then silence
    with pytest.raises(DeviceTimeout, match=r"received 02 30 30 \|\.00\|"):
        exchange(transport, b"0\r", basic_reply_end, timeout_s=0.1)
    thread.join(WAIT_S)


def test_a_late_reply_is_not_taken_for_the_next_one(
    pump: FakePump, transport: SerialTransport
) -> None:
    with pytest.raises(DeviceTimeout):
        exchange(transport, b"0RAT\r", basic_reply_end, timeout_s=0.05)
    assert select.select([pump.master], [], [], WAIT_S)[0]
    assert os.read(pump.master, 4096) == b"0RAT\r"
    os.write(pump.master, b"\x0200S5.000MH\x03")  # the answer to RAT, too late
    thread = pump.answer_next(b"\x0200SNE1000V3.928\x03")
    assert exchange(transport, b"0VER\r", basic_reply_end) == b"\x0200SNE1000V3.928\x03"
    thread.join(WAIT_S)


def test_settle_waits_for_a_reply_that_only_looked_complete(
    pump: FakePump, transport: SerialTransport
) -> None:
    # "\n12:" is the idle prompt of pump 12, and also how its error lines begin
    thread = pump.answer_next(b"\n12:", b"Out of range\r\n12:")
    frame = exchange(transport, b"12:irate 1 m/m\r", reply_end, settle_s=0.2)
    assert frame == b"\n12:Out of range\r\n12:"
    thread.join(WAIT_S)


def _counting_reads(t: SerialTransport, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the transport waits on the port for bytes."""
    reads = [0]
    read_some = t._read_some

    def counted() -> None:
        reads[0] += 1
        read_some()

    monkeypatch.setattr(t, "_read_some", counted)
    return reads


def test_a_reply_that_says_its_length_is_slept_through_not_read_byte_by_byte(
    pump: FakePump, transport: SerialTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A safe-mode packet paced at 19200 baud: told how many bytes are still to come, the
    transport sleeps through their wire time and wakes a few times, not once a byte."""
    packet = encode_safe_packet(b"00S" + b"1" * 24)  # 32 bytes, 17 ms at 19200 baud
    char_s = 10 / 19200
    reads = _counting_reads(transport, monkeypatch)
    thread = pump.answer_paced(packet, char_s)
    frame = transport.exchange(
        b"0\r", frame_end=any_reply_end, timeout_s=WAIT_S, to_come=reply_bytes_to_come
    )
    thread.join(WAIT_S)
    assert frame == packet
    assert reads[0] <= 12, reads[0]  # byte by byte it is about 32


def test_bytes_said_to_be_coming_are_never_waited_for_past_the_deadline(
    pump: FakePump, transport: SerialTransport
) -> None:
    thread = pump.answer_next(b"\x02")
    started = time.monotonic()
    with pytest.raises(DeviceTimeout):
        transport.exchange(
            b"0\r", frame_end=any_reply_end, timeout_s=0.1, to_come=lambda _: 100_000
        )  # 100,000 bytes would be 52 s of wire at 19200 baud
    assert time.monotonic() - started < WAIT_S
    thread.join(WAIT_S)


def test_scripted_transport_refuses_a_claim_of_more_bytes_than_the_reply_has() -> None:
    t = ScriptedTransport([(b"0\r", b"\x0200S\x03")])
    t.open()
    with pytest.raises(ScriptError, match="still to come"):
        t.exchange(b"0\r", frame_end=basic_reply_end, timeout_s=1.0, to_come=lambda _: 99)


def test_a_vanished_device_is_reported_and_reopening_fails_cleanly(
    pump: FakePump, transport: SerialTransport
) -> None:
    pump.close()  # the USB adapter is pulled
    with pytest.raises(DeviceDisconnected, match="vanished"):
        exchange(transport, b"0\r", basic_reply_end, timeout_s=0.5)
    assert not transport.is_open
    with pytest.raises(DeviceDisconnected, match="cannot open"):
        transport.ensure_open()


def test_a_port_never_opened_is_not_reopened_behind_the_callers_back() -> None:
    with pytest.raises(DeviceDisconnected, match="never opened"):
        SerialTransport("/dev/does-not-exist", baudrate=9600).ensure_open()
    with pytest.raises(DeviceDisconnected, match="cannot open /dev/does-not-exist"):
        SerialTransport("/dev/does-not-exist", baudrate=9600).open()


@pytest.mark.usefixtures("prompt_reopening")
def test_a_port_missing_when_opened_is_opened_by_a_later_ensure_open(tmp_path: Path) -> None:
    """An adapter plugged in late (or unplugged across a reboot): ``open`` was asked while
    the port was not there, so a later ``ensure_open`` tries it (one attempt, an error while
    it is still missing; the pause between attempts is not what is tested here) and opens
    it once it is there, as a lost port."""
    link = tmp_path / "ttyUSB0"
    t = SerialTransport(str(link), baudrate=19200, dirty_quiet_s=0.05)
    with pytest.raises(DeviceDisconnected, match="cannot open"):
        t.open()
    with pytest.raises(DeviceDisconnected, match="cannot open"):
        t.ensure_open()  # still missing: reported, not "call connect() first"
    assert not t.is_open
    pump = FakePump()
    try:
        os.symlink(pump.path, link)  # plugged in: udev gives the adapter its name
        assert t.ensure_open()  # opened just now: the caller shakes hands
        assert not t.ensure_open()
        thread = pump.answer_next(b"\x0200S\x03")
        assert exchange(t, b"0\r", basic_reply_end) == b"\x0200S\x03"
        thread.join(WAIT_S)
        assert pump.requests == [b"0\r"]
    finally:
        t.close()
        pump.close()


def test_bytes_that_arrive_before_a_reopened_port_is_taken_are_nobodys_reply() -> None:
    """A reopen's attempt may open the port a poll before a call takes it (a slow opening
    left to finish: ``drivers.opening``). Whatever the pump sent meanwhile (an unsolicited
    alarm packet, a prompt) is discarded when the port is taken, not read as the reply to
    the first request. The attempt here opens the port and then the pump talks, before
    the transport takes it."""
    pump = FakePump()
    t = SerialTransport(pump.path, baudrate=19200, dirty_quiet_s=0.05)
    try:
        t.open()
        opening = t._open_port

        def open_then_the_pump_talks() -> object:
            ser = opening()
            os.write(pump.master, b"\x0200A?S\x03")  # not an answer to anything
            deadline = time.monotonic() + WAIT_S
            while not ser.in_waiting and time.monotonic() < deadline:
                time.sleep(0.001)  # a pty hands bytes over a moment later
            assert ser.in_waiting
            return ser

        t._opener = Opener(open_then_the_pump_talks, lambda ser: ser.close(), what=pump.path)
        t._drop()  # lost, as after an error on the port
        assert t.ensure_open()
        thread = pump.answer_next(b"\x0200S\x03")
        assert exchange(t, b"0\r", basic_reply_end) == b"\x0200S\x03"
        thread.join(WAIT_S)
    finally:
        t.close()
        pump.close()


def _waiting(sock: socket.socket) -> int:
    """Bytes a non-blocking socket holds, without taking them."""
    try:
        return len(sock.recv(64, socket.MSG_PEEK))
    except BlockingIOError:
        return 0


@pytest.mark.usefixtures("prompt_reopening")
def test_bytes_a_serial_server_sent_before_its_port_was_taken_are_nobodys_reply() -> None:
    """The same over ``socket://``, where pyserial says at most 1 byte is waiting whatever
    has arrived: everything the server sent before the port was taken is drained, not
    its first byte alone (the rest was read as the reply to the first request)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = int(server.getsockname()[1])
    asked = threading.Event()
    opened = threading.Event()  # pyserial flushes what is there while it opens: after it

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            assert opened.wait(WAIT_S)
            conn.sendall(b"STALE PROMPT\n")  # buffered before the transport takes the port
            request = b""
            while not request.endswith(b"\r"):
                request += conn.recv(100)
            asked.set()
            conn.sendall(b"FRESH\n")
            asked.wait(WAIT_S)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    t = SerialTransport(f"socket://127.0.0.1:{port}", baudrate=9600)
    try:

        def open_when_the_prompt_is_there() -> object:
            ser = t._open_port()
            opened.set()
            deadline = time.monotonic() + WAIT_S
            while _waiting(ser._socket) < len(b"STALE PROMPT\n"):
                assert time.monotonic() < deadline, "the prompt never came"
                time.sleep(0.001)
            return ser

        t._opener = Opener(open_when_the_prompt_is_there, lambda ser: ser.close(), what="sock")
        t._wanted = True  # as after a connect whose port was missing
        assert t.ensure_open()
        reply = t.exchange(
            b"Q\r",
            frame_end=lambda b: b.index(b"\n") + 1 if b"\n" in b else None,
            timeout_s=WAIT_S,
        )
        assert reply == b"FRESH\n"
    finally:
        t.close()
        server.close()
        thread.join(WAIT_S)


# --------------------------------------------------------------------- scripted transport
def test_scripted_transport_fails_loudly_on_an_unexpected_byte() -> None:
    t = ScriptedTransport([(b"0VER\r", b"\x0200S\x03")])
    t.open()
    with pytest.raises(
        ScriptError, match=r"expected 30 56 45 52 0d \|0VER\.\|\n  got      30 56 45 51 0d"
    ):
        t.exchange(b"0VEQ\r", frame_end=basic_reply_end, timeout_s=1.0)
    with pytest.raises(ScriptError):
        t.assert_finished()  # the failure stays on record even if a driver swallowed it


def test_scripted_transport_requires_the_whole_script_and_every_byte_read() -> None:
    t = ScriptedTransport([(b"0\r", b"\x0200S\x03"), (b"0VER\r", None)])
    t.open()
    assert t.exchange(b"0\r", frame_end=basic_reply_end, timeout_s=1.0) == b"\x0200S\x03"
    with pytest.raises(ScriptError, match="never sent"):
        t.assert_finished()
    with pytest.raises(DeviceTimeout):  # None: the pump says nothing
        t.exchange(b"0VER\r", frame_end=basic_reply_end, timeout_s=1.0)
    t.assert_finished()

    unread = ScriptedTransport([(b"0\r", b"\x0200S\x03\x0200A?R\x03")])
    unread.open()
    unread.exchange(b"0\r", frame_end=basic_reply_end, timeout_s=1.0)
    with pytest.raises(ScriptError, match="never read"):
        unread.assert_finished()
    assert unread.drain() == b"\x0200A?R\x03"  # bytes left over arrive as unasked bytes
    unread.assert_finished()


def test_a_second_process_cannot_open_the_same_pump(
    pump: FakePump, transport: SerialTransport
) -> None:
    other = SerialTransport(pump.path, baudrate=19200)
    with pytest.raises(DeviceDisconnected, match="cannot open"):
        other.open()
    transport.close()
    other.open()  # free again once the owner let go
    other.close()


@pytest.mark.parametrize(
    ("port", "parity", "stopbits", "char_bits"),
    [("/dev/ttyS0", "N", 1, 10), ("/dev/ttyS0", "E", 1, 11), ("/dev/ttyS0", "N", 2, 11),
     ("socket://10.0.0.5:4001", "N", 1, 0)],
)  # fmt: skip
def test_the_sleep_through_the_bytes_to_come_is_their_wire_time_but_one_and_never_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, port: str, parity: str, stopbits: int, char_bits: int
) -> None:
    """All but the last of the bytes still to come, at the port's own speed (start bit,
    data, parity, stop bits); nothing over a network URL (no line paces it), for one byte
    or none, or past the deadline."""
    slept: list[float] = []
    monkeypatch.setattr("drivers.transport.time.sleep", slept.append)
    t = SerialTransport(port, baudrate=19200, parity=parity, stopbits=stopbits, clock=lambda: 0.0)
    char_s = char_bits / 19200
    t._sleep_through(20, deadline=10.0)
    t._sleep_through(1, deadline=10.0)
    t._sleep_through(0, deadline=10.0)
    t._sleep_through(20, deadline=0.002)
    if char_bits:
        assert slept == [pytest.approx(19 * char_s), pytest.approx(0.002)]
    else:
        assert slept == []
