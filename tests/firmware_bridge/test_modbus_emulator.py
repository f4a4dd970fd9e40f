"""The Modbus emulator on a real socket and a real pty.

Clients here are written from the register map, not from our driver: pymodbus' own
clients, and raw request bytes with the replies checked byte for byte (RTU CRCs computed
with pymodbus' FramerRTU). Real-time waits are short and bounded; the pump's clinical
time is a VirtualClock moved by the test.
"""

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
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.framer.rtu import FramerRTU

from drivers.errors import DeviceDisconnected
from drivers.pumps.base import PumpAlarmKind
from drivers.pumps.modbus import ModbusDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import WireFaults
from firmware_bridge.modbus.emulator import (
    BackgroundEmulator,
    ModbusEmulatorError,
    serve_modbus,
)
from firmware_bridge.pump_model import PumpAlarm, SimulatedPump

WAIT_S = 3.0  # upper bound for anything that should happen "soon"
QUIET_S = 0.25  # how long we listen to be sure nothing comes back


@contextlib.contextmanager
def emulator(
    map_path: str | None = None,
    *,
    rtu: bool = False,
    liveness: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[BackgroundEmulator, SimulatedPump, VirtualClock, WireFaults]]:
    """``liveness``: what the comms-timeout watchdog reads (a ``VirtualClock().now`` lets
    a test move the silence on by hand instead of waiting it out)."""
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    where = {"use_pty": True} if rtu else {"tcp": ("127.0.0.1", 0)}
    with BackgroundEmulator(pump, wire, map_path=map_path, liveness=liveness, **where) as emu:
        yield emu, pump, clock, wire


class RawTcp:
    """Send exact request bytes, read one MBAP frame back (or nothing)."""

    def __init__(self, emu: BackgroundEmulator) -> None:
        self.sock = socket.create_connection(emu.host_port, timeout=WAIT_S)

    def send(self, hex_request: str) -> None:
        self.sock.sendall(bytes.fromhex(hex_request))

    def recv(self, timeout: float = WAIT_S) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            head = self.sock.recv(7)
        except TimeoutError:
            return None
        if len(head) < 7:
            return head  # garbage or EOF
        body = b""
        want = int.from_bytes(head[4:6], "big") - 1
        self.sock.settimeout(WAIT_S)
        while len(body) < want:
            chunk = self.sock.recv(want - len(body))
            if not chunk:
                break
            body += chunk
        return head + body

    def recv_any(self, timeout: float = WAIT_S) -> bytes:
        """Whatever arrives first (junk has no frame to follow)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096)
        except TimeoutError:
            return b""

    def ask(self, hex_request: str) -> str:
        self.send(hex_request)
        reply = self.recv()
        assert reply is not None, f"no reply to {hex_request}"
        return reply.hex(" ")

    def close(self) -> None:
        self.sock.close()


def rtu(hex_body: str) -> bytes:
    body = bytes.fromhex(hex_body)
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


class RawRtu:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def send(self, frame: bytes) -> None:
        os.write(self.fd, frame)

    def recv(self, n: int, timeout: float = WAIT_S) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            buf += os.read(self.fd, n - len(buf))
        return buf

    def close(self) -> None:
        os.close(self.fd)


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)
    pytest.fail(f"not within {WAIT_S} s: {what}")


# ====================================================================== TCP
def test_a_client_written_from_the_map_runs_the_peristaltic_drive() -> None:
    with emulator("peristaltic") as (emu, pump, clock, _wire):
        host, port = emu.host_port
        assert host == "127.0.0.1" and port > 0
        client = ModbusTcpClient(host, port=port, timeout=WAIT_S, retries=0)
        assert client.connect()  # type: ignore[no-untyped-call]
        try:
            f32 = client.DATATYPE.FLOAT32
            setpoint = client.convert_to_registers(60.0, f32, word_order="big")
            assert not client.write_registers(1211, setpoint, device_id=1).isError()
            assert not client.write_coil(0, True, device_id=1).isError()
            clock.advance(1800.0)
            speed = client.read_holding_registers(1213, count=2, device_id=1).registers
            rpm = client.convert_from_registers(speed, client.DATATYPE.UINT32, word_order="little")
            assert rpm == 200  # 2.00 rpm x100: 60 mL/h over 0.5 mL/rev
            volume = client.read_holding_registers(1215, count=2, device_id=1).registers
            assert client.convert_from_registers(volume, f32) == pytest.approx(30.0)
            status = client.read_holding_registers(1200, count=1, device_id=1).registers
            assert status == [1]
            pump.set_stall(True)
            errors = client.read_holding_registers(1201, count=2, device_id=1).registers
            assert client.convert_from_registers(errors, client.DATATYPE.UINT32) == 0b100
            ack = client.write_register(1236, 0x5555, device_id=1)
            assert not ack.isError()
            assert ack.registers == [0x5555]  # the reply echoes the request
        finally:
            client.close()  # type: ignore[no-untyped-call]


def test_exception_replies_byte_for_byte() -> None:
    with emulator() as (emu, pump, _clock, _wire):
        raw = RawTcp(emu)
        try:
            # nothing at holding register 4 -> 02 ILLEGAL DATA ADDRESS
            assert raw.ask("00 01 00 00 00 06 01 03 00 04 00 01") == "00 01 00 00 00 03 01 83 02"
            # 5000 mL/h is beyond the syringe -> 03 ILLEGAL DATA VALUE, rate unchanged
            assert (
                raw.ask("00 02 00 00 00 0b 01 10 00 00 00 02 04 00 4c 4b 40")
                == "00 02 00 00 00 03 01 90 03"
            )
            assert pump.snapshot().set_rate_ml_h == 0.0
            # start with no rate set -> 04 SERVER DEVICE FAILURE
            assert raw.ask("00 03 00 00 00 06 01 05 00 00 ff 00") == "00 03 00 00 00 03 01 85 04"
            # diagnostics (08) is not served -> 01 ILLEGAL FUNCTION
            assert raw.ask("00 04 00 00 00 06 01 08 00 00 12 34") == "00 04 00 00 00 03 01 88 01"
            # a function code nobody knows -> 01 as well
            assert raw.ask("00 05 00 00 00 02 01 41") == "00 05 00 00 00 03 01 c1 01"
            # unit id 7 is not this pump: answered as a gateway without that device
            assert raw.ask("00 06 00 00 00 06 07 03 00 00 00 02") == "00 06 00 00 00 03 07 83 0b"
            # unit id 255 reaches a directly connected device
            assert (
                raw.ask("00 07 00 00 00 06 ff 03 00 00 00 02")
                == "00 07 00 00 00 07 ff 03 04 00 00 00 00"
            )
        finally:
            raw.close()


def test_every_request_and_reply_is_logged() -> None:
    with emulator() as (emu, _pump, _clock, _wire):
        raw = RawTcp(emu)
        raw.ask("00 01 00 00 00 06 01 02 00 00 00 01")
        raw.close()
    rx = [line for line in emu.lines if line.startswith("rx ")]
    tx = [line for line in emu.lines if line.startswith("tx ")]
    assert rx and rx[0].startswith("rx 00 01 00 00 00 06 01 02 00 00 00 01")
    assert tx and tx[0].startswith("tx 00 01 00 00 00 04 01 02 01 00")


def test_comms_timeout_stops_the_pump_when_the_master_falls_silent() -> None:
    with emulator() as (emu, pump, _clock, _wire):
        raw = RawTcp(emu)
        try:
            raw.ask("00 01 00 00 00 0b 01 10 00 00 00 02 04 00 00 27 10")  # 10 mL/h
            raw.ask("00 02 00 00 00 06 01 06 00 03 00 c8")  # comms timeout 200 ms
            raw.ask("00 03 00 00 00 06 01 05 00 00 ff 00")  # run
            assert pump.snapshot().running
            wait_until(lambda: not pump.snapshot().running, "pump stopped by the watchdog")
            assert PumpAlarm.COMMS_TIMEOUT in pump.snapshot().alarms
            # the alarm bit (5) is readable once the master talks again
            assert (
                raw.ask("00 04 00 00 00 06 01 04 00 04 00 01") == "00 04 00 00 00 05 01 04 02 00 20"
            )
        finally:
            raw.close()
    assert any("comms timeout" in line for line in emu.lines)


def test_requests_keep_the_comms_timeout_from_firing() -> None:
    liveness = VirtualClock()
    with emulator(liveness=liveness.now) as (emu, pump, _clock, _wire):
        raw = RawTcp(emu)
        try:
            raw.ask("00 01 00 00 00 0b 01 10 00 00 00 02 04 00 00 27 10")
            raw.ask("00 02 00 00 00 06 01 06 00 03 01 2c")  # 300 ms
            raw.ask("00 03 00 00 00 06 01 05 00 00 ff 00")
            for tid in range(4, 24):  # three timeouts' worth of polling every 50 ms
                liveness.advance(0.05)
                raw.ask(f"00 {tid:02x} 00 00 00 06 01 02 00 00 00 01")
            assert liveness.now() == pytest.approx(1.0)
            time.sleep(QUIET_S)  # the watchdog looks several times meanwhile
            assert pump.snapshot().running
            liveness.advance(0.3)  # the master falls silent for exactly the timeout
            wait_until(lambda: not pump.snapshot().running, "pump stopped by the watchdog")
        finally:
            raw.close()


SET_20: str = "00 0b 01 10 00 00 00 02 04 00 00 4e 20"  # MBAP length.. + write 20 mL/h


def test_wire_faults_on_tcp() -> None:
    with emulator() as (emu, pump, _clock, wire):
        raw = RawTcp(emu)
        try:
            raw.ask("00 01 00 00 00 0b 01 10 00 00 00 02 04 00 00 27 10")  # 10 mL/h

            wire.drop_next()  # lost on the way in: not executed, no reply
            raw.send("00 02 00 00 " + SET_20)
            assert raw.recv(QUIET_S) is None
            assert pump.snapshot().set_rate_ml_h == 10.0

            wire.lose_ack_next()  # executed, reply lost
            raw.send("00 03 00 00 " + SET_20)
            assert raw.recv(QUIET_S) is None
            assert pump.snapshot().set_rate_ml_h == 20.0

            wire.corrupt_next()  # executed, MBAP protocol id flipped
            assert raw.ask("00 04 00 00 00 06 01 02 00 00 00 01") == "00 04 01 00 00 04 01 02 01 00"

            wire.set_delay(0.3)  # late, but whole
            raw.send("00 05 00 00 00 06 01 02 00 00 00 01")
            assert raw.recv(0.1) is None
            late = raw.recv(WAIT_S)
            assert late is not None and late.hex(" ") == "00 05 00 00 00 04 01 02 01 00"
            wire.set_delay(0.0)

            wire.set_garbage(True)  # not executed, junk back
            raw.send("00 06 00 00 00 06 01 05 00 00 ff 00")
            junk = raw.recv_any()
            assert junk
            assert not junk.startswith(bytes.fromhex("00 06 00 00"))
            assert not pump.snapshot().running
            wire.set_garbage(False)
            raw.close()

            raw = RawTcp(emu)  # the junk left the stream out of step: start afresh
            wire.set_silent(True)
            raw.send("00 01 00 00 00 06 01 02 00 00 00 01")
            assert raw.recv(QUIET_S) is None
            wire.set_silent(False)
            assert raw.ask("00 02 00 00 00 06 01 02 00 00 00 01") == "00 02 00 00 00 04 01 02 01 00"

            wire.request_disconnect()  # the socket closes; the pump listens on
            raw.sock.settimeout(WAIT_S)
            assert raw.sock.recv(16) == b""
            raw.close()
            raw = RawTcp(emu)
            assert raw.ask("00 01 00 00 00 06 01 02 00 00 00 01") == "00 01 00 00 00 04 01 02 01 00"
        finally:
            raw.close()
    faults = " ".join(line for line in emu.lines if line.startswith("fault"))
    for name in ("drop_request", "lose_ack", "corrupt", "delay", "garbage", "silent", "disconnect"):
        assert name in faults


def test_shutdown_releases_the_port_and_the_thread() -> None:
    threads_before = threading.active_count()
    with emulator() as (emu, _pump, _clock, _wire):
        host, port = emu.host_port
        raw = RawTcp(emu)
        raw.ask("00 01 00 00 00 06 01 02 00 00 00 01")
    assert not emu.running
    assert threading.active_count() == threads_before
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=WAIT_S).close()
    assert raw.sock.recv(16) == b""  # the open connection was closed too
    raw.close()


def test_announce_is_called_once_with_the_real_port() -> None:
    announced: list[str] = []
    stop = threading.Event()
    pump = SimulatedPump(VirtualClock())

    def announce(where: str) -> None:
        announced.append(where)
        stop.set()

    serve_modbus(
        pump,
        WireFaults(),
        map_path=None,
        tcp=("127.0.0.1", 0),
        serial_port=None,
        use_pty=False,
        device_id=1,
        baud=19200,
        announce=announce,
        log=lambda _line: None,
        stop=stop,
    )
    assert len(announced) == 1
    assert announced[0].startswith("127.0.0.1:") and not announced[0].endswith(":0")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"tcp": None, "use_pty": False}, ModbusEmulatorError, "exactly one"),
        ({"tcp": ("127.0.0.1", 0), "use_pty": True}, ModbusEmulatorError, "exactly one"),
        ({"device_id": 0}, ModbusEmulatorError, "1-247"),
        ({"tcp": ("127.0.0.1", 70000)}, ModbusEmulatorError, "0-65535"),
        ({"map_path": "/nonexistent/map.toml"}, ModbusEmulatorError, "no such file"),
    ],
)
def test_bad_arguments_fail_before_serving(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    args: dict[str, object] = {
        "map_path": None,
        "tcp": ("127.0.0.1", 0),
        "serial_port": None,
        "use_pty": False,
        "device_id": 1,
        "baud": 19200,
        "announce": lambda _w: pytest.fail("announced"),
        "log": lambda _line: None,
        "stop": threading.Event(),
    }
    args.update(kwargs)
    with pytest.raises(error, match=words):
        serve_modbus(SimulatedPump(VirtualClock()), WireFaults(), **args)  # type: ignore[arg-type]


def test_a_port_in_use_is_a_clear_error() -> None:
    with emulator() as (emu, _pump, _clock, _wire):
        host, port = emu.host_port
        busy = socket.socket()
        try:
            busy.bind((host, 0))
            busy.listen()
            taken = busy.getsockname()[1]
            clash = BackgroundEmulator(SimulatedPump(VirtualClock()), tcp=(host, taken))
            with pytest.raises(ModbusEmulatorError, match="cannot serve"):
                clash.start()
        finally:
            busy.close()
        assert port > 0


# ====================================================================== RTU on a pty
def test_a_serial_client_written_from_the_map_works_on_the_pty() -> None:
    with emulator(rtu=True) as (emu, pump, clock, _wire):
        # parity N: a Linux pty refuses re-applying parity settings, and carries bytes anyway
        client = ModbusSerialClient(
            emu.where, framer=FramerType.RTU, baudrate=19200, parity="N", timeout=WAIT_S, retries=0
        )
        assert client.connect()
        try:
            words = client.convert_to_registers(60000, client.DATATYPE.UINT32)  # 60 mL/h
            assert not client.write_registers(0, words, device_id=1).isError()
            assert not client.write_coil(0, True, device_id=1).isError()
            clock.advance(60.0)
            assert client.read_discrete_inputs(0, count=1, device_id=1).bits[0]
            infused = client.read_input_registers(2, count=2, device_id=1).registers
            counts = client.convert_from_registers(infused, client.DATATYPE.UINT32)
            assert counts == 100_000  # x 0.01 uL = 1 mL: a minute at 60 mL/h
            reply = client.read_holding_registers(4, count=1, device_id=1)
            assert reply.isError() and reply.exception_code == 2
            assert pump.snapshot().running
        finally:
            client.close()  # type: ignore[no-untyped-call]


def test_rtu_frames_byte_for_byte_with_addressing() -> None:
    with emulator(rtu=True) as (emu, pump, _clock, _wire):
        line = RawRtu(emu.where)
        try:
            line.send(rtu("01 03 00 04 00 01"))  # nothing at HR 4
            assert line.recv(5) == rtu("01 83 02")
            line.send(rtu("02 03 00 00 00 02"))  # another pump's address: silence
            assert line.recv(1, QUIET_S) == b""
            # a broadcast write is executed, never answered
            line.send(rtu("00 10 00 00 00 02 04 00 00 27 10"))
            assert line.recv(1, QUIET_S) == b""
            assert pump.snapshot().set_rate_ml_h == 10.0
            line.send(rtu("01 03 00 00 00 02"))
            assert line.recv(9) == rtu("01 03 04 00 00 27 10")
            bad = bytearray(rtu("01 03 00 00 00 02"))
            bad[-1] ^= 0xFF  # a request with a broken CRC is ignored, as on a real line
            line.send(bytes(bad))
            assert line.recv(1, QUIET_S) == b""
        finally:
            line.close()


def test_rtu_corrupt_reply_fails_its_crc() -> None:
    with emulator(rtu=True) as (emu, _pump, _clock, wire):
        line = RawRtu(emu.where)
        try:
            wire.corrupt_next()
            line.send(rtu("01 02 00 00 00 01"))
            reply = line.recv(6)
            good = rtu("01 02 01 00")
            assert len(reply) == 6 and reply != good
            assert reply[:2] == good[:2]  # address and function intact: a payload byte flipped
        finally:
            line.close()


def test_rtu_disconnect_vanishes_and_comes_back_at_the_same_path() -> None:
    with emulator(rtu=True) as (emu, _pump, _clock, wire):
        driver = ModbusDriver(serial_port=emu.where, timeout_s=0.4)
        driver.connect()
        first = os.path.realpath(emu.where)
        wire.request_disconnect()
        wait_until(lambda: os.path.realpath(emu.where) != first, "a new pty behind the path")
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        driver.keep_alive()  # reconnected on the next call, same path
        driver.close()
    assert not Path(emu.where).exists()  # the pty folder is gone after shutdown


def test_serial_port_mode_on_a_pty_pair() -> None:
    """``serial_port``: the emulator opens a device path itself (here a pty slave; parity
    cannot be applied to a pty and is dropped, with a log line)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    pump = SimulatedPump(VirtualClock())
    try:
        with BackgroundEmulator(pump, serial_port=path) as emu:
            assert emu.where == path
            os.write(master, rtu("01 03 00 00 00 02"))
            reply = b""
            deadline = time.monotonic() + WAIT_S
            while len(reply) < 9 and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    reply += os.read(master, 64)
            assert reply == rtu("01 03 04 00 00 00 00")
        assert any("parity E not applied" in line for line in emu.lines)
    finally:
        os.close(master)
        os.close(slave)


def test_a_missing_serial_port_is_a_clear_error() -> None:
    emu = BackgroundEmulator(SimulatedPump(VirtualClock()), serial_port="/dev/nonexistent-tty")
    with pytest.raises(ModbusEmulatorError, match="cannot serve Modbus on serial port"):
        emu.start()


def test_the_first_command_after_power_up_can_be_ignored() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, ignore_first_command_after_power_up=True)
    with BackgroundEmulator(pump, tcp=("127.0.0.1", 0)) as emu:
        raw = RawTcp(emu)
        try:
            raw.send("00 01 00 00 " + SET_20)
            assert raw.recv(QUIET_S) is None
            assert pump.snapshot().set_rate_ml_h == 0.0  # not executed either
            assert raw.ask("00 02 00 00 " + SET_20) == "00 02 00 00 00 06 01 10 00 00 00 02"
            assert pump.snapshot().set_rate_ml_h == 20.0
        finally:
            raw.close()
    assert any("ignored" in line for line in emu.lines)


# ====================================================================== with our driver
def test_driver_connects_to_a_pump_that_ignores_its_first_command() -> None:
    pump = SimulatedPump(VirtualClock(), ignore_first_command_after_power_up=True)
    with BackgroundEmulator(pump, tcp=("127.0.0.1", 0)) as emu:
        host, port = emu.host_port
        driver = ModbusDriver(host=host, port=port, timeout_s=0.3)
        driver.connect()  # the first read goes unanswered; reads are repeated once
        assert not driver.read_status().running
        driver.close()


def test_driver_keep_alive_holds_off_the_comms_timeout_until_it_stops() -> None:
    liveness = VirtualClock()
    with emulator(liveness=liveness.now) as (emu, pump, _clock, _wire):
        host, port = emu.host_port
        driver = ModbusDriver(host=host, port=port, timeout_s=0.5, comms_timeout_s=0.3)
        driver.connect()
        try:
            assert driver.read_comms_timeout() == 0.3
            driver.configure_syringe(pump.syringe)
            driver.set_rate(10.0)
            driver.start()
            for _ in range(20):  # one second of keep-alives every 50 ms
                liveness.advance(0.05)
                driver.keep_alive()
            time.sleep(QUIET_S)  # the watchdog looks several times meanwhile
            assert pump.snapshot().running
            liveness.advance(0.3)
            wait_until(lambda: not pump.snapshot().running, "watchdog stop once polling ends")
            status = driver.read_status()
            assert not status.running
            assert PumpAlarmKind.COMMS_TIMEOUT in status.alarms
            assert driver.set_comms_timeout(0.0) == 0.0
        finally:
            driver.close()
