"""The Modbus driver byte for byte, against scripted pumps (pymeasure's expected_protocol idea).

A scripted pump plays a list of (expected request, reply) pairs over a real TCP socket
or a real pty: each request the driver sends must equal the next expected bytes exactly,
and the recorded reply (or silence, or a dropped connection) goes back. After the script
nothing more may arrive: a retried write would show up here.

All frames below are written out literally. The RTU CRCs were produced with pymodbus'
FramerRTU, an implementation independent of ours. The map is the example syringe map
(``config/pumps/modbus_syringe.toml``), device id 1:
coil 0 run; DI 0 running; HR 0-1 rate uint32 x0.001 mL/h; HR 2 diameter x0.01 mm;
HR 3 comms timeout ms; IR 2-3 infused uint32 x0.01 uL; IR 4 alarms (bit 0 occlusion,
bit 1 empty); IR 5-8 rate min/max; IR 9 pressure x0.01 kPa; IR 10 firmware x0.01.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import socket
import threading
import time
import tty
from collections.abc import Iterator, Sequence
from typing import Final

import pytest

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.pumps.base import (
    AnotherPumpAnswers,
    PumpAlarmError,
    PumpAlarmKind,
    PumpChecksumError,
    PumpRejected,
)
from drivers.pumps.modbus import ModbusDriver
from firmware_bridge.syringes import syringe_by_name

TIMEOUT_S: Final = 0.2
SCRIPT_WAIT_S: Final = 5.0


class _Disconnect:
    def __repr__(self) -> str:
        return "DISCONNECT"


DISCONNECT: Final = _Disconnect()
Reply = str | None | _Disconnect
Step = tuple[str, Reply]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ====================================================================== scripted peers
class ScriptedTcpPump:
    """A Modbus TCP 'pump' that plays a script; reconnects are accepted transparently."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.errors: list[str] = []
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(SCRIPT_WAIT_S)
        self.port = self._server.getsockname()[1]
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _accept(self) -> socket.socket:
        conn, _ = self._server.accept()
        conn.settimeout(SCRIPT_WAIT_S)
        self.connections += 1
        self._conn = conn
        return conn

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            conn = self._conn or self._accept()
            chunk = conn.recv(n - len(buf))
            if not chunk:  # the driver closed to resynchronise: it will reconnect
                conn.close()
                self._conn = None
                if buf:
                    raise AssertionError(f"connection closed mid-request after {buf.hex(' ')}")
                continue
            buf += chunk
        return buf

    def _run(self) -> None:
        try:
            for i, (expected, reply) in enumerate(self.steps):
                want = h(expected)
                got = self._recv_exact(len(want))
                if got != want:
                    self.errors.append(
                        f"step {i}: expected {want.hex(' ')}\n          got {got.hex(' ')}"
                    )
                    return
                if isinstance(reply, _Disconnect):
                    assert self._conn is not None
                    self._conn.close()
                    self._conn = None
                elif reply is not None:
                    assert self._conn is not None
                    self._conn.sendall(h(reply))
            # after the script the driver may only close the connection
            if self._conn is not None:
                extra = self._conn.recv(4096)
                if extra:
                    self.errors.append(f"unexpected request after the script: {extra.hex(' ')}")
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if self._conn is not None:
                self._conn.close()
            self._server.close()

    def finish(self) -> None:
        self._thread.join(SCRIPT_WAIT_S + 1)
        assert not self._thread.is_alive(), "scripted pump still waiting for requests"
        assert not self.errors, "\n".join(self.errors)


class ScriptedRtuPump:
    """A Modbus RTU 'pump' on the master side of a pty the driver opens."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.errors: list[str] = []
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._closed_master = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        deadline = time.monotonic() + SCRIPT_WAIT_S
        while len(buf) < n:
            ready, _, _ = select.select([self._master], [], [], deadline - time.monotonic())
            if not ready:
                raise AssertionError(f"no request within {SCRIPT_WAIT_S} s (got {buf.hex(' ')})")
            buf += os.read(self._master, n - len(buf))
        return buf

    def _run(self) -> None:
        try:
            for i, (expected, reply) in enumerate(self.steps):
                want = h(expected)
                got = self._recv_exact(len(want))
                if got != want:
                    self.errors.append(
                        f"step {i}: expected {want.hex(' ')}\n          got {got.hex(' ')}"
                    )
                    return
                if isinstance(reply, _Disconnect):
                    os.close(self._master)
                    self._closed_master = True
                    return
                if reply is not None:
                    os.write(self._master, h(reply))
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def finish(self) -> None:
        self._thread.join(SCRIPT_WAIT_S + 1)
        assert not self._thread.is_alive(), "scripted pump still waiting for requests"
        if not self._closed_master:
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    extra = os.read(self._master, 4096)
                    self.errors.append(f"unexpected request after the script: {extra.hex(' ')}")
            os.close(self._master)
        os.close(self._slave)
        assert not self.errors, "\n".join(self.errors)


# Read Device Identification (43/14), basic stream from object 0, and the device's answer:
# conformity 0x81, no more follows, 3 objects: VendorName "ACME", ProductCode "SP-1",
# MajorMinorRevision "1.00": the name "ACME SP-1 1.00"
NAME_OBJECTS: Final = "00 04 41 43 4d 45 01 04 53 50 2d 31 02 04 31 2e 30 30"
#: the same with ProductCode "SP-2": another device
OTHER_OBJECTS: Final = "00 04 41 43 4d 45 01 04 53 50 2d 32 02 04 31 2e 30 30"


def tcp_name(tid: int, objects: str = NAME_OBJECTS) -> Step:
    return (
        f"00 {tid:02x} 00 00 00 05 01 2b 0e 01 00",
        f"00 {tid:02x} 00 00 00 1a 01 2b 0e 01 81 00 00 03 {objects}",
    )


RTU_NAME: Final = (
    "01 2b 0e 01 00 70 77",
    f"01 2b 0e 01 81 00 00 03 {NAME_OBJECTS} 19 7c",
)
RTU_OTHER_NAME: Final = (RTU_NAME[0], f"01 2b 0e 01 81 00 00 03 {OTHER_OBJECTS} 2a 7c")
CONNECT_TCP: Final = [
    tcp_name(1),
    ("00 02 00 00 00 06 01 02 00 00 00 01", "00 02 00 00 00 04 01 02 01 00"),
]
CONNECT_RTU: Final = [RTU_NAME, ("01 02 00 00 00 01 b9 ca", "01 02 01 00 a1 88")]


@contextlib.contextmanager
def tcp_script(steps: Sequence[Step], **options: object) -> Iterator[ModbusDriver]:
    """A driver connected to a scripted TCP pump; connect() is the first step."""
    pump = ScriptedTcpPump([*CONNECT_TCP, *steps])
    driver = ModbusDriver(host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S, **options)  # type: ignore[arg-type]
    try:
        driver.connect()
        yield driver
    finally:
        driver.close()
        pump.finish()


@contextlib.contextmanager
def rtu_script(steps: Sequence[Step], **options: object) -> Iterator[ModbusDriver]:
    pump = ScriptedRtuPump([*CONNECT_RTU, *steps])
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S, **options)  # type: ignore[arg-type]
    try:
        driver.connect()
        yield driver
    finally:
        driver.close()
        pump.finish()


# ====================================================================== TCP
def test_tcp_set_rate_writes_both_words_then_reads_back() -> None:
    with tcp_script(
        [
            (
                "00 03 00 00 00 0b 01 10 00 00 00 02 04 00 00 30 34",
                "00 03 00 00 00 06 01 10 00 00 00 02",
            ),
            ("00 04 00 00 00 06 01 03 00 00 00 02", "00 04 00 00 00 07 01 03 04 00 00 30 34"),
        ]
    ) as driver:
        assert driver.set_rate(12.34) == 12.34


def test_tcp_send_rate_writes_both_words_and_reads_nothing_back() -> None:
    with tcp_script(
        [
            (
                "00 03 00 00 00 0b 01 10 00 00 00 02 04 00 00 30 34",
                "00 03 00 00 00 06 01 10 00 00 00 02",
            ),
        ]
    ) as driver:
        driver.send_rate(12.34)


def test_tcp_set_rate_returns_what_the_pump_reads_back_not_what_was_sent() -> None:
    with tcp_script(
        [
            (
                "00 03 00 00 00 0b 01 10 00 00 00 02 04 00 00 30 34",
                "00 03 00 00 00 06 01 10 00 00 00 02",
            ),
            ("00 04 00 00 00 06 01 03 00 00 00 02", "00 04 00 00 00 07 01 03 04 00 00 13 88"),
        ]
    ) as driver:
        assert driver.set_rate(12.34) == 5.0  # the kernel's read-back check (S9) sees this


def test_tcp_exception_reply_is_rejected_with_the_reason_and_never_retried() -> None:
    with (
        tcp_script(
            [("00 03 00 00 00 0b 01 10 00 00 00 02 04 00 4c 4b 40", "00 03 00 00 00 03 01 90 03")]
        ) as driver,
        pytest.raises(PumpRejected) as info,
    ):
        driver.set_rate(5000.0)
    assert "ILLEGAL DATA VALUE" in info.value.reason
    assert "03" in info.value.reason


def test_tcp_lost_reply_to_a_write_is_a_timeout_and_never_retried() -> None:
    with (
        tcp_script([("00 03 00 00 00 0b 01 10 00 00 00 02 04 00 00 30 34", None)]) as driver,
        pytest.raises(DeviceTimeout),
    ):
        driver.set_rate(12.34)


def test_tcp_lost_reply_to_a_read_is_retried_once() -> None:
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 02 00 00 00 01", None),
            ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 01 02 01 01"),
        ]
    ) as driver:
        driver.keep_alive()


def test_tcp_a_read_gives_up_after_the_one_retry() -> None:
    with (
        tcp_script(
            [
                ("00 03 00 00 00 06 01 02 00 00 00 01", None),
                ("00 04 00 00 00 06 01 02 00 00 00 01", None),
            ]
        ) as driver,
        pytest.raises(DeviceTimeout),
    ):
        driver.keep_alive()


def test_tcp_late_reply_of_a_timed_out_request_is_skipped_by_transaction_id() -> None:
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 02 00 00 00 01", None),
            (
                "00 04 00 00 00 06 01 02 00 00 00 01",
                # the late reply to transaction 2 (not running), then the one to 3 (running)
                "00 03 00 00 00 04 01 02 01 00" + "00 04 00 00 00 04 01 02 01 01",
            ),
        ]
    ) as driver:
        driver.keep_alive()


def test_tcp_read_status_reads_contiguous_spans() -> None:
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 02 00 00 00 01", "00 03 00 00 00 04 01 02 01 01"),
            ("00 04 00 00 00 06 01 03 00 00 00 02", "00 04 00 00 00 07 01 03 04 00 00 30 34"),
            # infused (IR 2-3) and alarms (IR 4) in one read: 1000 x 0.01 uL, occlusion bit
            ("00 05 00 00 00 06 01 04 00 02 00 03", "00 05 00 00 00 09 01 04 06 00 00 03 e8 00 01"),
            ("00 06 00 00 00 06 01 04 00 09 00 01", "00 06 00 00 00 05 01 04 02 00 c8"),
        ]
    ) as driver:
        status = driver.read_status()
    assert status.running
    assert status.set_rate_ml_h == 12.34
    assert status.infused_ml == pytest.approx(0.01, rel=1e-12)
    assert status.alarms == {PumpAlarmKind.OCCLUSION}
    assert status.pressure_mmhg == pytest.approx(2.00 / 0.133322387415, rel=1e-9)
    assert "rate_setpoint=[0, 12340]" in status.raw


def test_tcp_configure_syringe_writes_the_bore_and_returns_the_published_range() -> None:
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 06 00 02 0a 63", "00 03 00 00 00 06 01 06 00 02 0a 63"),
            ("00 04 00 00 00 06 01 03 00 02 00 01", "00 04 00 00 00 05 01 03 02 0a 63"),
            (
                "00 05 00 00 00 06 01 04 00 05 00 04",
                "00 05 00 00 00 0b 01 04 08 00 00 03 e8 00 1e 80 fc",
            ),
        ]
    ) as driver:
        rng = driver.configure_syringe(syringe_by_name("bd-plastipak-50ml"))  # 26.59 mm
    assert (rng.min_ml_h, rng.max_ml_h) == (1.0, 1999.1)


def test_tcp_diameter_read_back_mismatch_is_rejected() -> None:
    with (
        tcp_script(
            [
                ("00 03 00 00 00 06 01 06 00 02 0a 63", "00 03 00 00 00 06 01 06 00 02 0a 63"),
                ("00 04 00 00 00 06 01 03 00 02 00 01", "00 04 00 00 00 05 01 03 02 05 a3"),
            ]
        ) as driver,
        pytest.raises(PumpRejected, match=r"14\.43 mm"),
    ):
        driver.configure_syringe(syringe_by_name("bd-plastipak-50ml"))


def test_tcp_start_refused_with_an_alarm_raised_names_the_alarm() -> None:
    with (
        tcp_script(
            [
                ("00 03 00 00 00 06 01 05 00 00 ff 00", "00 03 00 00 00 03 01 85 04"),
                ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 01 02 01 00"),
                ("00 05 00 00 00 06 01 04 00 04 00 01", "00 05 00 00 00 05 01 04 02 00 02"),
            ]
        ) as driver,
        pytest.raises(PumpAlarmError) as info,
    ):
        driver.start()
    assert info.value.alarms == {PumpAlarmKind.EMPTY}


def test_tcp_start_refused_without_alarm_is_rejected() -> None:
    with (
        tcp_script(
            [
                ("00 03 00 00 00 06 01 05 00 00 ff 00", "00 03 00 00 00 03 01 85 04"),
                ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 01 02 01 00"),
                ("00 05 00 00 00 06 01 04 00 04 00 01", "00 05 00 00 00 05 01 04 02 00 00"),
            ]
        ) as driver,
        pytest.raises(PumpRejected) as info,
    ):
        driver.start()
    assert "SERVER DEVICE FAILURE" in info.value.reason


def test_tcp_start_and_stop_read_back_the_running_state() -> None:
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 05 00 00 ff 00", "00 03 00 00 00 06 01 05 00 00 ff 00"),
            ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 01 02 01 01"),
            ("00 05 00 00 00 06 01 05 00 00 00 00", "00 05 00 00 00 06 01 05 00 00 00 00"),
            ("00 06 00 00 00 06 01 02 00 00 00 01", "00 06 00 00 00 04 01 02 01 01"),
        ]
    ) as driver:
        driver.start()
        with pytest.raises(PumpRejected, match="still running"):
            driver.stop()  # the pump says it still runs: never reported as stopped


def test_tcp_a_stop_is_never_confirmed_by_its_reply() -> None:
    """A write's reply echoes the request: it says the register was written, not that the
    motor stopped. The run state read after it is a second exchange, so the stop returns
    no confirmation and the caller reads the pump back."""
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 05 00 00 00 00", "00 03 00 00 00 06 01 05 00 00 00 00"),
            ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 01 02 01 00"),
        ]
    ) as driver:
        assert driver.stop() is None


def test_tcp_bad_mbap_header_is_a_checksum_error_and_the_link_resynchronises() -> None:
    with tcp_script(
        [
            # protocol id 1 in the reply: framing broken
            (
                "00 03 00 00 00 0b 01 10 00 00 00 02 04 00 00 30 34",
                "00 03 00 01 00 06 01 10 00 00 00 02",
            ),
            # the next call arrives on a new connection, transaction ids continue; the
            # device is asked who it is before anything else
            tcp_name(4),
            ("00 05 00 00 00 06 01 02 00 00 00 01", "00 05 00 00 00 04 01 02 01 00"),
        ]
    ) as driver:
        with pytest.raises(PumpChecksumError, match="protocol id"):
            driver.set_rate(12.34)
        driver.keep_alive()


def test_tcp_write_echo_that_differs_is_a_checksum_error() -> None:
    with (
        tcp_script(
            [("00 03 00 00 00 06 01 05 00 00 ff 00", "00 03 00 00 00 06 01 05 00 00 00 00")]
        ) as driver,
        pytest.raises(PumpChecksumError, match="echo"),
    ):
        driver.start()


def test_tcp_reply_from_another_unit_is_a_checksum_error() -> None:
    with (
        tcp_script(
            [
                ("00 03 00 00 00 06 01 02 00 00 00 01", "00 03 00 00 00 04 02 02 01 00"),
                ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 02 02 01 00"),
            ]
        ) as driver,
        pytest.raises(PumpChecksumError, match="unit 2"),
    ):
        driver.keep_alive()


def test_tcp_connection_loss_is_reported_then_reconnected_on_the_next_call() -> None:
    pump_steps: list[Step] = [
        ("00 03 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
        tcp_name(4),  # a new connection: the device is asked who it is first
        ("00 05 00 00 00 06 01 02 00 00 00 01", "00 05 00 00 00 04 01 02 01 00"),
    ]
    with tcp_script(pump_steps) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        driver.keep_alive()


def test_tcp_reconnect_is_one_attempt_then_paced() -> None:
    """The listener gone: one attempt to reconnect, then calls fail at once (naming the
    reason and the pause) instead of trying at every call (``drivers.opening``)."""
    pump = ScriptedTcpPump([*CONNECT_TCP, ("00 03 00 00 00 06 01 02 00 00 00 01", DISCONNECT)])
    driver = ModbusDriver(host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S)
    driver.connect()
    with pytest.raises(DeviceDisconnected):
        driver.keep_alive()
    pump.finish()  # the listener is gone now
    with pytest.raises(DeviceDisconnected, match=r"^cannot connect to Modbus TCP 127"):
        driver.keep_alive()
    with pytest.raises(DeviceDisconnected, match=r"cannot connect.*\(next attempt in"):
        driver.keep_alive()
    driver.close()


def test_tcp_identify_reads_the_firmware_register() -> None:
    with tcp_script(
        [("00 03 00 00 00 06 01 04 00 0a 00 01", "00 03 00 00 00 05 01 04 02 00 7b")]
    ) as driver:
        identity = driver.identify()
    assert identity.firmware == "1.23"
    assert identity.address == 1
    assert "EXAMPLE" in identity.model


def test_tcp_comms_timeout_is_written_on_connect_and_read_back() -> None:
    pump = ScriptedTcpPump(
        [
            tcp_name(1),
            ("00 02 00 00 00 06 01 06 00 03 07 d0", "00 02 00 00 00 06 01 06 00 03 07 d0"),
            ("00 03 00 00 00 06 01 03 00 03 00 01", "00 03 00 00 00 05 01 03 02 07 d0"),
            ("00 04 00 00 00 06 01 02 00 00 00 01", "00 04 00 00 00 04 01 02 01 00"),
        ]
    )
    driver = ModbusDriver(
        host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S, comms_timeout_s=2.0
    )
    driver.connect()
    driver.close()
    pump.finish()


def test_unquantized_rate_is_refused_before_anything_is_sent() -> None:
    with tcp_script([]) as driver, pytest.raises(ValueError, match="quantize_rate"):
        driver.set_rate(12.3456)


# ====================================================================== RTU
def test_rtu_set_rate_frames_with_crc_and_reads_back() -> None:
    with rtu_script(
        [
            ("01 10 00 00 00 02 04 00 00 30 34 e6 78", "01 10 00 00 00 02 41 c8"),
            ("01 03 00 00 00 02 c4 0b", "01 03 04 00 00 30 34 ef e4"),
        ]
    ) as driver:
        assert driver.set_rate(12.34) == 12.34


def test_rtu_exception_reply_is_rejected() -> None:
    with (
        rtu_script([("01 10 00 00 00 02 04 00 4c 4b 40 05 78", "01 90 03 0c 01")]) as driver,
        pytest.raises(PumpRejected) as info,
    ):
        driver.set_rate(5000.0)
    assert "ILLEGAL DATA VALUE" in info.value.reason


def test_rtu_crc_error_on_a_write_is_a_checksum_error_never_retried() -> None:
    with (
        rtu_script(
            [("01 10 00 00 00 02 04 00 00 30 34 e6 78", "01 10 00 00 00 02 41 c9")]
        ) as driver,
        pytest.raises(PumpChecksumError, match="CRC"),
    ):
        driver.set_rate(12.34)


def test_rtu_crc_error_on_a_read_is_retried_once() -> None:
    with rtu_script(
        [
            ("01 02 00 00 00 01 b9 ca", "01 02 01 01 60 49"),  # CRC off by one bit
            ("01 02 00 00 00 01 b9 ca", "01 02 01 01 60 48"),
        ]
    ) as driver:
        driver.keep_alive()


def test_rtu_no_reply_is_a_timeout() -> None:
    with (
        rtu_script([("01 10 00 00 00 02 04 00 00 30 34 e6 78", None)]) as driver,
        pytest.raises(DeviceTimeout),
    ):
        driver.set_rate(12.34)


def test_rtu_reply_from_another_address_is_a_checksum_error() -> None:
    with (
        rtu_script(
            [
                ("01 02 00 00 00 01 b9 ca", "02 02 01 00 a1 cc"),
                ("01 02 00 00 00 01 b9 ca", "02 02 01 00 a1 cc"),
            ]
        ) as driver,
        pytest.raises(PumpChecksumError, match="address 2"),
    ):
        driver.keep_alive()


def test_rtu_garbage_is_a_checksum_error() -> None:
    with (
        rtu_script([("01 05 00 00 ff 00 8c 3a", "ff 13 37 00")]) as driver,
        pytest.raises(PumpChecksumError, match="garbled"),
    ):
        driver.start()


def test_rtu_truncated_reply_is_a_checksum_error() -> None:
    with (
        rtu_script([("01 10 00 00 00 02 04 00 00 30 34 e6 78", "01 10 00 00")]) as driver,
        pytest.raises(PumpChecksumError, match="incomplete"),
    ):
        driver.set_rate(12.34)


def test_rtu_vanished_port_is_reported_and_reconnect_is_paced() -> None:
    pump = ScriptedRtuPump([*CONNECT_RTU, ("01 02 00 00 00 01 b9 ca", DISCONNECT)])
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S)
    driver.connect()
    with pytest.raises(DeviceDisconnected):
        driver.keep_alive()
    with pytest.raises(DeviceDisconnected, match=r"^cannot open Modbus RTU port"):
        driver.keep_alive()
    with pytest.raises(DeviceDisconnected, match=r"\(next attempt in"):
        driver.keep_alive()
    driver.close()
    pump.finish()


def test_driver_options_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ModbusDriver()
    with pytest.raises(ValueError, match="exactly one"):
        ModbusDriver(host="h", serial_port="/dev/null")
    with pytest.raises(ValueError, match="device_id"):
        ModbusDriver(host="h", device_id=0)
    with pytest.raises(ValueError, match="timeout_s"):
        ModbusDriver(host="h", timeout_s=0)
    with pytest.raises(ValueError, match="comms timeout must be 0-60 s"):
        ModbusDriver(host="h", comms_timeout_s=61)
    with pytest.raises(ValueError, match="parity"):
        ModbusDriver(serial_port="/dev/null", parity="X")


def test_calls_before_connect_say_so() -> None:
    driver = ModbusDriver(host="127.0.0.1", port=9)
    with pytest.raises(DeviceDisconnected, match="connect"):
        driver.read_status()


def test_quantize_rate_is_pure_and_rounds_down() -> None:
    driver = ModbusDriver(host="127.0.0.1", port=9)  # never connected: no I/O needed
    assert driver.quantize_rate(12.3456789) == 12.345
    assert driver.quantize_rate(12.345) == 12.345
    with pytest.raises(ValueError, match="negative"):
        driver.quantize_rate(-1.0)


# ====================================================================== one RTU line, two ids
def test_two_device_ids_on_one_shared_rtu_line_byte_for_byte() -> None:
    """Drivers for device ids 1 and 2 on one ``SharedLine``: one port, each request
    framed with its own id, and a reply from the other device refused."""
    from drivers.lines import LineSpec, open_line

    pump = ScriptedRtuPump(
        [
            *CONNECT_RTU,
            # device 2 asked its own identification: it has none (exception 01)
            ("02 2b 0e 01 00 34 77", "02 ab 01 6e f0"),
            ("02 02 00 00 00 01 b9 f9", "02 02 01 00 a1 cc"),
            ("02 10 00 00 00 02 04 00 00 30 34 e9 3c", "02 10 00 00 00 02 41 fb"),
            ("02 03 00 00 00 02 c4 38", "02 03 04 00 00 30 34 dc e4"),
            ("01 10 00 00 00 02 04 00 00 30 34 e6 78", "01 10 00 00 00 02 41 c8"),
            ("01 03 00 00 00 02 c4 0b", "02 03 04 00 00 30 34 dc e4"),  # device 2 answers
            ("01 03 00 00 00 02 c4 0b", "02 03 04 00 00 30 34 dc e4"),
        ]
    )
    line = open_line(LineSpec(kind="serial", port=pump.path, baud=19200, parity="E"))
    one = ModbusDriver(line=line, device_id=1, timeout_s=TIMEOUT_S)
    two = ModbusDriver(line=line, device_id=2, timeout_s=TIMEOUT_S)
    try:
        one.connect()
        two.connect()
        assert two.set_rate(12.34) == 12.34
        with pytest.raises(PumpChecksumError, match="reply from address 2, asked 1"):
            one.set_rate(12.34)
    finally:
        one.close()
        two.close()
        pump.finish()


# ====================================================================== the device's name
def test_the_device_names_itself_at_connect() -> None:
    with tcp_script([]) as driver:
        assert driver.pump_name is not None
        assert driver.pump_name.first == "ACME SP-1 1.00"
        assert driver.pump_name.foreign is None


def test_tcp_another_device_after_a_reconnect_is_refused_and_gets_nothing_but_the_question() -> (
    None
):
    """After the connection is lost, the port answers as "ACME SP-2 1.00": every call
    asks its name again and is refused, nothing else is sent, until "ACME SP-1 1.00" is
    back; then the call goes on as usual."""
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            tcp_name(4, OTHER_OBJECTS),
            tcp_name(5, OTHER_OBJECTS),
            tcp_name(6),
            ("00 07 00 00 00 06 01 02 00 00 00 01", "00 07 00 00 00 04 01 02 01 00"),
        ]
    ) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(AnotherPumpAnswers, match=r"'ACME SP-2 1\.00', not 'ACME SP-1 1\.00'"):
            driver.read_status()
        with pytest.raises(AnotherPumpAnswers, match="after the reconnect"):
            driver.start()
        driver.keep_alive()  # the channel's device again
        assert driver.pump_name is not None and driver.pump_name.foreign is None


def test_rtu_a_name_recorded_before_a_restart_refuses_another_device() -> None:
    """The safety process presets the recorded name (``PumpName.expect``) before connect:
    another device gets the question only, at connect and at every call; connect raises
    ``AnotherPumpAnswers`` as the NE-1000 and Harvard drivers do."""
    pump = ScriptedRtuPump([RTU_OTHER_NAME, RTU_OTHER_NAME])
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S)
    assert driver.pump_name is not None
    driver.pump_name.expect("ACME SP-1 1.00", "put the channel's pump back")
    try:
        with pytest.raises(AnotherPumpAnswers, match="before the safety process restarted"):
            driver.connect()  # nothing sent but the question
        with pytest.raises(AnotherPumpAnswers, match="before the safety process restarted"):
            driver.read_status()
    finally:
        driver.close()
        pump.finish()


def test_rtu_the_recorded_device_is_asked_its_name_once_at_connect() -> None:
    """A name preset before connect (``expect``) is asked at connect, once: the next call
    goes straight to its own exchange."""
    pump = ScriptedRtuPump([*CONNECT_RTU, CONNECT_RTU[1]])
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S)
    assert driver.pump_name is not None
    driver.pump_name.expect("ACME SP-1 1.00", "put the channel's pump back")
    try:
        driver.connect()
        assert not driver.pump_name.must_ask
        driver.keep_alive()
    finally:
        driver.close()
        pump.finish()


def test_rtu_a_device_without_identification_connects_as_before() -> None:
    """Exception 01 to the question: no name, no check; the status read follows, and the
    question is not asked again on the same connection."""
    pump = ScriptedRtuPump(
        [
            (RTU_NAME[0], "01 ab 01 9e f0"),
            ("01 02 00 00 00 01 b9 ca", "01 02 01 00 a1 88"),
            ("01 02 00 00 00 01 b9 ca", "01 02 01 00 a1 88"),
        ]
    )
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S)
    try:
        driver.connect()
        driver.keep_alive()
        assert driver.pump_name is not None and driver.pump_name.first is None
    finally:
        driver.close()
        pump.finish()


def test_tcp_a_device_that_gives_no_name_where_one_was_heard_is_another() -> None:
    with tcp_script(
        [
            ("00 03 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            ("00 04 00 00 00 05 01 2b 0e 01 00", "00 04 00 00 00 03 01 ab 01"),
        ]
    ) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(AnotherPumpAnswers, match="no device identification: ILLEGAL"):
            driver.keep_alive()


def test_tcp_more_follows_is_followed_from_the_next_object() -> None:
    pump = ScriptedTcpPump(
        [
            (
                "00 01 00 00 00 05 01 2b 0e 01 00",
                "00 01 00 00 00 14 01 2b 0e 01 81 ff 02 02 00 04 41 43 4d 45 01 04 53 50 2d 31",
            ),
            (
                "00 02 00 00 00 05 01 2b 0e 01 02",
                "00 02 00 00 00 0e 01 2b 0e 01 81 00 00 01 02 04 31 2e 30 30",
            ),
            ("00 03 00 00 00 06 01 02 00 00 00 01", "00 03 00 00 00 04 01 02 01 00"),
        ]
    )
    driver = ModbusDriver(host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S)
    try:
        driver.connect()
        assert driver.pump_name is not None and driver.pump_name.first == "ACME SP-1 1.00"
    finally:
        driver.close()
        pump.finish()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        # announces 3 objects, carries 2
        (
            "00 01 00 00 00 14 01 2b 0e 01 81 00 00 03 00 04 41 43 4d 45 01 04 53 50 2d 31",
            "ends inside",
        ),
        # more follows, from an object already given: would never end
        ("00 01 00 00 00 0e 01 2b 0e 01 81 ff 00 01 00 04 41 43 4d 45", "no basic object"),
    ],
)
def test_tcp_a_malformed_identification_is_refused_with_a_reason(reply: str, message: str) -> None:
    """Refused at once with what is wrong (a read: asked once more first), never waited on."""
    request = "00 {:02x} 00 00 00 05 01 2b 0e 01 00"
    second = "00 02" + reply[5:]
    steps: list[Step] = [(request.format(1), reply)]
    if "ends inside" in message:
        steps.append((request.format(2), second))
    pump = ScriptedTcpPump(steps)
    driver = ModbusDriver(host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S)
    try:
        started = time.monotonic()
        with pytest.raises(PumpChecksumError, match=message):
            driver.connect()
        assert time.monotonic() - started < TIMEOUT_S
    finally:
        driver.close()
        pump.finish()


def test_rtu_an_unanswered_question_is_asked_once_more() -> None:
    """A device fresh from power-up may ignore its first request."""
    pump = ScriptedRtuPump([(RTU_NAME[0], None), *CONNECT_RTU])
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S)
    try:
        driver.connect()
        assert driver.pump_name is not None and driver.pump_name.first == "ACME SP-1 1.00"
    finally:
        driver.close()
        pump.finish()


def test_tcp_a_device_failure_to_the_question_is_no_name_and_no_connection() -> None:
    """04 is not "I have no identification": the connection fails, as a failed read."""
    pump = ScriptedTcpPump([("00 01 00 00 00 05 01 2b 0e 01 00", "00 01 00 00 00 03 01 ab 04")])
    driver = ModbusDriver(host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S)
    try:
        with pytest.raises(PumpRejected, match="SERVER DEVICE FAILURE"):
            driver.connect()
    finally:
        driver.close()
        pump.finish()


def test_tcp_a_device_silent_at_connect_is_greeted_and_armed_when_it_answers() -> None:
    """The safety process connects once, at start, then reads: a pump that did not answer
    then (switched off, cable out) must come back by itself. The failed connect is raised;
    the next read opens the port again, asks the name and writes the comms timeout (a
    device that was off has forgotten it) before anything else."""
    pump = ScriptedTcpPump(
        [
            ("00 01 00 00 00 05 01 2b 0e 01 00", None),  # no answer, twice: no connection
            ("00 02 00 00 00 05 01 2b 0e 01 00", None),
            tcp_name(3),  # a new connection, on the next call
            ("00 04 00 00 00 06 01 06 00 03 07 d0", "00 04 00 00 00 06 01 06 00 03 07 d0"),
            ("00 05 00 00 00 06 01 03 00 03 00 01", "00 05 00 00 00 05 01 03 02 07 d0"),
            ("00 06 00 00 00 06 01 02 00 00 00 01", "00 06 00 00 00 04 01 02 01 00"),
        ]
    )
    driver = ModbusDriver(
        host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S, comms_timeout_s=2.0
    )
    try:
        with pytest.raises(DeviceTimeout):
            driver.connect()
        driver.keep_alive()
        assert driver.pump_name is not None and driver.pump_name.first == "ACME SP-1 1.00"
    finally:
        driver.close()
        pump.finish()
    assert pump.connections == 2


# ====================================================================== expect while linked
def tcp_status(tid: int, running: bool = False) -> Step:
    """The status read of ``keep_alive`` (DI 0, running)."""
    return (
        f"00 {tid:02x} 00 00 00 06 01 02 00 00 00 01",
        f"00 {tid:02x} 00 00 00 04 01 02 01 {int(running):02x}",
    )


def tcp_arm(tid: int) -> list[Step]:
    """The comms timeout (HR 3) written as 2000 ms and read back: transactions tid, tid+1."""
    return [
        (
            f"00 {tid:02x} 00 00 00 06 01 06 00 03 07 d0",
            f"00 {tid:02x} 00 00 00 06 01 06 00 03 07 d0",
        ),
        (
            f"00 {tid + 1:02x} 00 00 00 06 01 03 00 03 00 01",
            f"00 {tid + 1:02x} 00 00 00 05 01 03 02 07 d0",
        ),
    ]


def tcp_arm_refused(tid: int) -> Step:
    """The comms-timeout write answered with exception 04 (SERVER DEVICE FAILURE)."""
    return (f"00 {tid:02x} 00 00 00 06 01 06 00 03 07 d0", f"00 {tid:02x} 00 00 00 03 01 86 04")


def tcp_read_status(tid: int) -> list[Step]:
    """``read_status``'s reads (transactions tid..tid+3): stopped, 12.34 mL/h, 0.01 mL."""
    return [
        tcp_status(tid),
        (
            f"00 {tid + 1:02x} 00 00 00 06 01 03 00 00 00 02",
            f"00 {tid + 1:02x} 00 00 00 07 01 03 04 00 00 30 34",
        ),
        (
            f"00 {tid + 2:02x} 00 00 00 06 01 04 00 02 00 03",
            f"00 {tid + 2:02x} 00 00 00 09 01 04 06 00 00 03 e8 00 00",
        ),
        (
            f"00 {tid + 3:02x} 00 00 00 06 01 04 00 09 00 01",
            f"00 {tid + 3:02x} 00 00 00 05 01 04 02 00 c8",
        ),
    ]


CONNECT_ARMED: Final = [tcp_name(1), *tcp_arm(2), tcp_status(4)]


@contextlib.contextmanager
def armed_tcp_script(steps: Sequence[Step], connections: int = 1) -> Iterator[ModbusDriver]:
    """A driver with a 2 s comms timeout connected to a scripted TCP pump (``CONNECT_ARMED``
    is the first steps); ``connections``: how many TCP connections the script takes."""
    pump = ScriptedTcpPump([*CONNECT_ARMED, *steps])
    driver = ModbusDriver(
        host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S, comms_timeout_s=2.0
    )
    try:
        driver.connect()
        yield driver
    finally:
        driver.close()
        pump.finish()
    assert pump.connections == connections


def test_tcp_expect_none_while_linked_asks_the_name_at_the_next_call() -> None:
    """The channel's device was silent a moment (its link stayed up) and the operator
    accepted a replacement meanwhile (``expect(None)``): the next call asks the device on
    the port its name before anything else, takes it, and arms that device's comms
    timeout (a replacement never had it) before its own read. A device answering
    otherwise after a reconnect is then refused, with nothing but the question."""
    with armed_tcp_script(
        [
            ("00 05 00 00 00 06 01 02 00 00 00 01", None),  # silent a moment, twice
            ("00 06 00 00 00 06 01 02 00 00 00 01", None),
            tcp_name(7),  # after expect(None): the name first, on the same connection
            *tcp_arm(8),  # a device named anew is armed anew
            tcp_status(10),
            ("00 0b 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            tcp_name(12, OTHER_OBJECTS),  # another device: the question, nothing else
            tcp_name(13, OTHER_OBJECTS),
        ],
        connections=2,
    ) as driver:
        assert driver.pump_name is not None
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()
        driver.pump_name.expect(None, "accept it with newpump A")
        assert driver.pump_name.must_ask
        driver.keep_alive()
        assert driver.pump_name.first == "ACME SP-1 1.00"
        assert not driver.pump_name.must_ask and driver.pump_name.foreign is None
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"'ACME SP-2 1\.00', not 'ACME SP-1"):
                driver.read_status()


def test_tcp_expect_none_while_linked_takes_the_replacement_that_answers() -> None:
    """The device answering after ``expect(None)`` on a link that stayed up is another one
    (a replacement on the same gateway): it is the channel's from then on."""
    with armed_tcp_script([tcp_name(5, OTHER_OBJECTS), *tcp_arm(6), tcp_status(8)]) as driver:
        assert driver.pump_name is not None
        driver.pump_name.expect(None)
        driver.keep_alive()
        assert driver.pump_name.first == "ACME SP-2 1.00" and driver.pump_name.foreign is None


def test_tcp_expect_of_another_name_while_linked_refuses_the_device_on_the_port() -> None:
    """``expect`` of a name while connected: the device on the port is asked at the next
    call and, naming itself otherwise, gets nothing but the question, call after call."""
    with armed_tcp_script([tcp_name(5), tcp_name(6)]) as driver:
        assert driver.pump_name is not None
        driver.pump_name.expect("ACME SP-9 2.00", "put the channel's pump back")
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"'ACME SP-1 1\.00', not 'ACME SP-9"):
                driver.stop()


def test_rtu_a_device_without_identification_is_asked_once_after_expect() -> None:
    """A device without identification, ``expect(None)`` while linked: asked once at the
    next call (no name: nothing to compare), not at every call after it."""
    no_id = (RTU_NAME[0], "01 ab 01 9e f0")
    status = ("01 02 00 00 00 01 b9 ca", "01 02 01 00 a1 88")
    pump = ScriptedRtuPump([no_id, status, no_id, status, status])
    driver = ModbusDriver(serial_port=pump.path, timeout_s=TIMEOUT_S)
    try:
        driver.connect()
        assert driver.pump_name is not None
        driver.pump_name.expect(None)
        driver.keep_alive()
        assert not driver.pump_name.must_ask and driver.pump_name.first is None
        driver.keep_alive()
    finally:
        driver.close()
        pump.finish()


# ====================================================================== arming, never stop
def test_tcp_a_failed_arming_is_tried_again_by_the_next_read_status_on_the_same_opening() -> None:
    """After a reconnect the comms-timeout write is refused: the read_status raises it
    (the safety process alarms), and the next read_status, on the same connection, writes
    it again before its reads, and does not ask the name again."""
    with armed_tcp_script(
        [
            ("00 05 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            tcp_name(6),
            tcp_arm_refused(7),
            *tcp_arm(8),  # the same connection: armed at last
            *tcp_read_status(10),
        ],
        connections=2,
    ) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(PumpRejected, match="write to comms_timeout refused"):
            driver.read_status()
        status = driver.read_status()
    assert status.set_rate_ml_h == 12.34 and not status.running


def test_tcp_a_failed_arming_is_tried_again_by_every_keep_alive() -> None:
    with armed_tcp_script(
        [
            ("00 05 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            tcp_name(6),
            tcp_arm_refused(7),
            tcp_arm_refused(8),
            *tcp_arm(9),
            tcp_status(11),
            tcp_status(12),  # armed on this connection: not written again
        ],
        connections=2,
    ) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        for _ in range(2):
            with pytest.raises(PumpRejected, match="SERVER DEVICE FAILURE"):
                driver.keep_alive()
        driver.keep_alive()
        driver.keep_alive()


def test_tcp_a_stop_on_a_fresh_opening_is_sent_right_after_the_name() -> None:
    """S12: a stop is never held up by arming. On a reopened connection the stop is the
    name question, then the stop write, then the run-state read: no comms-timeout write
    before it (which this device would refuse, as the read_status after shows)."""
    with armed_tcp_script(
        [
            ("00 05 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            tcp_name(6),
            ("00 07 00 00 00 06 01 05 00 00 00 00", "00 07 00 00 00 06 01 05 00 00 00 00"),
            tcp_status(8),
            tcp_arm_refused(9),  # the next periodic call arms, and reports the refusal
        ],
        connections=2,
    ) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        assert driver.stop() is None
        with pytest.raises(PumpRejected, match="SERVER DEVICE FAILURE"):
            driver.read_status()


def test_tcp_a_start_is_not_sent_to_a_pump_whose_comms_timeout_cannot_be_armed() -> None:
    """A start arms first: a pump is never started with its watchdog off. The refusal is
    raised and no run command goes out; a rate change is sent without arming (it makes
    no pump run, and may be the kernel lowering a running pump's rate)."""
    with armed_tcp_script(
        [
            ("00 05 00 00 00 06 01 02 00 00 00 01", DISCONNECT),
            tcp_name(6),
            tcp_arm_refused(7),
            (
                "00 08 00 00 00 0b 01 10 00 00 00 02 04 00 00 30 34",
                "00 08 00 00 00 06 01 10 00 00 00 02",
            ),
            tcp_arm_refused(9),
        ],
        connections=2,
    ) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(PumpRejected, match="write to comms_timeout refused"):
            driver.start()
        driver.send_rate(12.34)
        with pytest.raises(PumpRejected, match="write to comms_timeout refused"):
            driver.start()


def test_tcp_connect_raises_when_another_device_answers_and_sends_it_nothing_else() -> None:
    """Connect raises ``AnotherPumpAnswers`` as the other drivers do; the device gets the
    question only (no comms timeout, no status read), and the link stays open: each call
    asks again on it."""
    pump = ScriptedTcpPump([tcp_name(1, OTHER_OBJECTS), tcp_name(2, OTHER_OBJECTS)])
    driver = ModbusDriver(
        host="127.0.0.1", port=pump.port, timeout_s=TIMEOUT_S, comms_timeout_s=2.0
    )
    assert driver.pump_name is not None
    driver.pump_name.expect("ACME SP-1 1.00", "put the channel's pump back")
    try:
        with pytest.raises(AnotherPumpAnswers, match="put the channel's pump back"):
            driver.connect()
        with pytest.raises(AnotherPumpAnswers):
            driver.stop()
    finally:
        driver.close()
        pump.finish()
    assert pump.connections == 1
