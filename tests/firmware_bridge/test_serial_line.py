"""The emulator's serial line over a real pty: framing, wire faults, logging, disconnect.

The line is stepped by the test itself (no thread), so "the reply was written" is known
exactly: a request is answered within the step that completes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.endpoints import PtyEndpoint, SerialPortEndpoint
from firmware_bridge.emulators.serial_line import SerialLine, corrupt, render
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.codec import decode_safe_packet
from firmware_bridge.ne1000.emulator import FIRMWARE, Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump

MAX_STEPS = 300  # each step waits at most 10 ms: a bounded 3 s ceiling, never reached


class Line:
    def __init__(self, tmp_path: Path) -> None:
        self.pump = SimulatedPump(VirtualClock())
        self.wire = WireFaults()
        self.log: list[str] = []
        self.endpoint = PtyEndpoint(link=str(tmp_path / "pump.tty"))
        self.line = SerialLine(
            Ne1000PumpSide(self.pump), self.endpoint, self.wire, log=self.log.append,
            reopen_after_s=0.0,
        )  # fmt: skip
        self.stop = threading.Event()
        self.endpoint.open()
        self.client = self.connect()

    def connect(self) -> int:
        fd = os.open(self.endpoint.name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        return fd

    def request(self, data: bytes) -> bytes:
        """Send, step until the line has taken the request, return what came back."""
        before = self.line.requests
        os.write(self.client, data)
        for _ in range(MAX_STEPS):
            self.line.step(self.stop)
            if self.line.requests > before:
                break
        else:
            pytest.fail("the line never took the request")
        return self.read()

    def read(self) -> bytes:
        data = b""
        while select.select([self.client], [], [], 0)[0]:
            try:
                chunk = os.read(self.client, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.client)
        self.endpoint.shutdown()


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Line]:
    built = Line(tmp_path)
    try:
        yield built
    finally:
        built.close()


def test_a_request_is_answered_and_logged(line: Line) -> None:
    assert line.request(b"0VER\r") == b"\x0200S" + FIRMWARE.encode() + b"\x03"
    rx = [entry for entry in line.log if " rx " in entry]
    tx = [entry for entry in line.log if " tx " in entry]
    assert rx and "30 56 45 52 0d |0VER.|" in rx[0]
    assert tx and "|.00SNE1000V3.928.|" in tx[0]


def test_render_shows_hex_and_printable() -> None:
    assert render(b"\x0200S\x03") == "02 30 30 53 03 |.00S.|"


def test_dropped_request_is_neither_executed_nor_answered(line: Line) -> None:
    line.wire.drop_next()
    assert line.request(b"0RAT10MH\r") == b""
    assert line.pump.snapshot().set_rate_ml_h == 0.0
    assert any("dropped" in entry for entry in line.log)
    assert line.request(b"0RAT\r") == b"\x0200S0.000MH\x03"  # one request only


def test_lost_ack_executes_but_answers_nothing(line: Line) -> None:
    line.wire.lose_ack_next()
    assert line.request(b"0RAT10MH\r") == b""
    assert line.pump.snapshot().set_rate_ml_h == 10.0


def test_corrupt_flips_one_byte_of_an_executed_reply(line: Line) -> None:
    line.wire.corrupt_next()
    reply = line.request(b"0RAT10MH\r")
    assert reply == corrupt(b"\x0200S\x03") == b"\x0201S\x03"
    assert line.pump.snapshot().set_rate_ml_h == 10.0


def test_garbage_and_silence_do_not_execute(line: Line) -> None:
    line.wire.set_garbage(True)
    garbage = line.request(b"0RAT10MH\r")
    assert len(garbage) == 8
    line.wire.set_garbage(False)
    line.wire.set_silent(True)
    assert line.request(b"0RAT10MH\r") == b""
    assert line.pump.snapshot().set_rate_ml_h == 0.0
    line.wire.set_silent(False)
    assert line.request(b"0\r") == b"\x0200S\x03"


def test_a_delayed_reply_still_arrives(line: Line) -> None:
    line.wire.set_delay(0.05)
    assert line.request(b"0\r") == b"\x0200S\x03"


def test_unsolicited_packets_go_out_unless_silent(line: Line) -> None:
    # entering safe mode: answered in the framing of the mode it switches to
    assert decode_safe_packet(line.request(b"0SAF30\r")) == b"00S"
    line.pump.power_cycle()
    line.line.step(line.stop)
    assert decode_safe_packet(line.read()) == b"00A?R"
    assert any("tx*" in entry for entry in line.log)


def test_disconnect_closes_the_pty_and_it_comes_back_under_its_link(line: Line) -> None:
    line.wire.request_disconnect()
    line.line.step(line.stop)
    assert not line.endpoint.is_open
    # the name is gone while the line is down (as udev removes an unplugged adapter's): it
    # would otherwise name a pty number the kernel may give any pty opened next
    assert not os.path.lexists(line.endpoint.name)
    # the host sees a hang-up: readable at once, then end-of-file (or EIO)
    assert select.select([line.client], [], [], 0)[0]
    try:
        assert os.read(line.client, 10) == b""
    except OSError as exc:
        assert exc.errno == errno.EIO
    os.close(line.client)
    line.line.step(line.stop)  # reopen_after_s=0: back at once
    assert line.endpoint.is_open  # a fresh pty (the kernel may reuse the freed number)
    assert os.path.realpath(line.endpoint.name) == line.endpoint.pty_path
    line.client = line.connect()
    assert line.request(b"0\r") == b"\x0200S\x03"
    assert line.line.disconnects == 1


def test_the_same_line_serves_a_serial_port_device() -> None:
    # a pty slave opened through pyserial stands in for /dev/ttyUSB0; the test is the host
    host, device = os.openpty()
    tty.setraw(host)
    path = os.ttyname(device)
    os.close(device)
    endpoint = SerialPortEndpoint(path, 19200)
    line = SerialLine(Ne1000PumpSide(SimulatedPump(VirtualClock())), endpoint, WireFaults())
    stop = threading.Event()
    try:
        endpoint.open()
        os.write(host, b"0VER\r")
        for _ in range(MAX_STEPS):
            line.step(stop)
            if line.requests:
                break
        assert select.select([host], [], [], 1.0)[0]
        assert os.read(host, 4096) == b"\x0200S" + FIRMWARE.encode() + b"\x03"
    finally:
        endpoint.shutdown()
        os.close(host)
