"""The byte pipe under the Modbus driver: one request out, one reply back, within a deadline.

One link may serve several devices (Modbus RTU device ids 1-247 on one RS-485 line, unit
ids behind one TCP gateway): each request names its unit, the link's user (the driver,
under the shared line's lock: ``drivers.lines``) keeps one request in flight, and a reply
from another unit than the one asked is an error, never taken as the answer.

Framing is ``firmware_bridge.modbus.frames``; this module owns the socket or serial port
and turns every way a reply can fail into one typed error:

- nothing (complete) within the deadline -> ``DeviceTimeout``;
- bytes that are not a valid frame (CRC, MBAP header, wrong address, garbage,
  a frame cut short) -> ``PumpChecksumError``;
- the socket or port gone (reset, EOF, unplugged adapter, closed pty) ->
  ``DeviceDisconnected``; the link is then closed and the driver reopens it on its next call
  (``reopen``: one attempt at a time, waited on for a bounded time and paced after a
  failure, ``drivers.opening``: a gateway that drops its packets holds ``connect`` for the
  whole timeout, which the safety loop must not wait through at every poll).

Nothing here retries. pymodbus' own clients fold CRC errors into timeouts and retry on
their own; a pump driver must know which of these happened and must never repeat a
write blindly (S10), so the link is ours. pyserial is imported only when an RTU link
opens.

TCP: replies are matched by transaction id; a late reply to an earlier request that
timed out is recognised and skipped. A broken header desynchronises the byte stream, so
the link closes and reconnects rather than guess where the next frame starts.

RTU: replies carry no transaction id. Before each request the input is flushed, and
after a timeout the link first waits until the line has been quiet for ``quiet_s`` so a
reply that arrives late (but within that time) is not taken for the next one. A reply
later still can be mistaken for the next reply of the same function and length: keep the
timeout above the pump's worst reply time (Modbus over Serial Line v1.02 leaves the
response timeout to the implementer).
"""

from __future__ import annotations

import abc
import contextlib
import select
import socket
import termios
import time
from typing import Any

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.opening import Opener
from drivers.pumps.base import PumpChecksumError
from firmware_bridge.modbus.frames import (
    MBAP_HEADER_LEN,
    CrcError,
    FrameError,
    mbap_adu,
    parse_mbap_header,
    parse_rtu_adu,
    rtu_adu,
    rtu_reply_length,
)

#: how far back a TCP transaction id may lag and still be taken for a late reply
_STALE_WINDOW = 64


class ModbusLink(abc.ABC):
    """One port to one pump; at most one request in flight (the driver holds a lock)."""

    where: str = ""
    #: how many times the port was opened: a driver that asked its device's name on an
    #: earlier opening asks again (another device may be there now), whichever driver of a
    #: shared line reopened it
    opens: int = 0

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    @abc.abstractmethod
    def open(self) -> None:
        """Open the port now, waiting for the attempt to end (a driver's ``connect``);
        ``DeviceDisconnected`` when it cannot be opened."""

    @abc.abstractmethod
    def reopen(self) -> None:
        """Open the port unless it is open: one attempt at a time, waited on for a bounded
        time, paced after a failure (``drivers.opening``); ``DeviceDisconnected`` at once
        while it is not open."""

    @abc.abstractmethod
    def close(self) -> None:
        """Idempotent; an attempt to open in flight is forgotten (what it opens is closed)."""

    @abc.abstractmethod
    def transact(
        self, pdu: bytes, unit: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Send a request PDU to ``unit`` (default: the link's), return the reply PDU
        (framing and the answering unit checked, content not). On a shared line each
        driver passes its own device id and deadline."""


class _PortLink(ModbusLink):
    """A link that owns its port: opened through an ``Opener`` (``drivers.opening``)."""

    def __init__(self) -> None:
        self._opener: Opener[Any] = Opener(self._open_port, self._close_port, what=self.where)

    def open(self) -> None:
        self.close()
        self._adopt(self._opener.open_now())
        self.opens += 1

    def reopen(self) -> None:
        if self.is_open:
            return
        self._adopt(self._opener.reopen())
        self.opens += 1

    def close(self) -> None:
        self._opener.cancel()
        self._drop()

    @abc.abstractmethod
    def _open_port(self) -> Any:
        """One attempt to open (in the opener's thread: touches nothing of the link)."""

    @staticmethod
    @abc.abstractmethod
    def _close_port(port: Any) -> None:
        """Close what ``_open_port`` opened, quietly."""

    @abc.abstractmethod
    def _adopt(self, port: Any) -> None:
        """Take an opened port as the link's."""

    @abc.abstractmethod
    def _drop(self) -> None:
        """Close the link's port (idempotent); it stays wanted (``reopen``)."""


class TcpLink(_PortLink):
    def __init__(self, host: str, port: int, unit: int, timeout_s: float) -> None:
        self.host, self.port, self.unit, self.timeout_s = host, port, unit, timeout_s
        self.where = f"{host}:{port}"
        self._sock: socket.socket | None = None
        self._tid = 0
        super().__init__()

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def _open_port(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise DeviceDisconnected(f"cannot connect to Modbus TCP {self.where}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def _close_port(port: Any) -> None:
        with contextlib.suppress(OSError):
            port.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            port.close()

    def _adopt(self, port: Any) -> None:
        self._sock = port

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._close_port(sock)

    def transact(
        self, pdu: bytes, unit: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        sock = self._require()
        unit = self.unit if unit is None else unit
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        self._tid = self._tid % 0xFFFF + 1
        tid = self._tid
        try:
            sock.sendall(mbap_adu(tid, unit, pdu))
        except OSError as exc:
            self._drop()
            raise DeviceDisconnected(f"Modbus TCP {self.where}: send failed: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while True:
            head = self._recv_exact(
                sock, MBAP_HEADER_LEN, deadline, mid_frame=False, timeout_s=timeout_s
            )
            try:
                header = parse_mbap_header(head)
            except FrameError as exc:
                self._drop()
                raise PumpChecksumError(
                    f"Modbus TCP {self.where}: bad MBAP header {head.hex(' ')}: {exc}; "
                    "connection closed to resynchronise"
                ) from None
            body = self._recv_exact(
                sock, header.pdu_length, deadline, mid_frame=True, timeout_s=timeout_s
            )
            if header.transaction_id != tid:
                lag = (tid - header.transaction_id) % 0x10000
                if 0 < lag <= _STALE_WINDOW:
                    continue  # the late reply of a request that already timed out
                self._drop()
                raise PumpChecksumError(
                    f"Modbus TCP {self.where}: reply transaction {header.transaction_id}, "
                    f"expected {tid}; connection closed to resynchronise"
                )
            if header.unit != unit:
                raise PumpChecksumError(
                    f"Modbus TCP {self.where}: reply from unit {header.unit}, asked {unit}"
                )
            return body

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise DeviceDisconnected(f"Modbus TCP {self.where}: not connected")
        return self._sock

    def _recv_exact(
        self, sock: socket.socket, n: int, deadline: float, *, mid_frame: bool, timeout_s: float
    ) -> bytes:
        buf = b""
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if buf or mid_frame:
                    self._drop()  # part of a frame is in the stream: out of step
                    raise PumpChecksumError(
                        f"Modbus TCP {self.where}: reply cut short after "
                        f"{len(buf)} of {n} bytes; connection closed"
                    )
                raise DeviceTimeout(f"Modbus TCP {self.where}: no reply within {timeout_s:g} s")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                continue
            except OSError as exc:
                self._drop()
                raise DeviceDisconnected(f"Modbus TCP {self.where}: {exc}") from None
            if not chunk:
                self._drop()
                raise DeviceDisconnected(f"Modbus TCP {self.where}: connection closed by the pump")
            buf += chunk
        return buf


class RtuLink(_PortLink):
    def __init__(
        self,
        port: str,
        *,
        baud: int,
        parity: str,
        stop_bits: int,
        unit: int,
        timeout_s: float,
        quiet_s: float | None = None,
    ) -> None:
        self.port, self.baud, self.parity, self.stop_bits = port, baud, parity, stop_bits
        self.unit, self.timeout_s = unit, timeout_s
        self.where = port
        # 3.5 character times is the RTU frame gap; at least 20 ms for USB adapters and ptys
        char_s = 11.0 / baud
        self.quiet_s = quiet_s if quiet_s is not None else min(timeout_s, max(0.02, 35 * char_s))
        self._ser: Any = None
        self._dirty = False
        super().__init__()

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def _open_port(self) -> Any:
        try:
            import serial  # noqa: PLC0415 - only an RTU link needs pyserial
        except ImportError:
            raise DeviceDisconnected("Modbus RTU needs pyserial (pip install pyserial)") from None
        try:
            return serial.Serial(
                self.port,
                baudrate=self.baud,
                bytesize=8,
                parity=self.parity,
                stopbits=self.stop_bits,
                timeout=0,
                write_timeout=self.timeout_s,
                exclusive=True,
            )
        except (OSError, ValueError, termios.error, serial.SerialException) as exc:
            # termios.error: pyserial lets it through from tcsetattr (e.g. a Linux pty
            # refuses parity re-applied by a second open: EINVAL); it is not an OSError
            raise DeviceDisconnected(f"cannot open Modbus RTU port {self.port}: {exc}") from None

    @staticmethod
    def _close_port(port: Any) -> None:
        # closing a vanished device may fail; it is gone anyway
        with contextlib.suppress(Exception):
            port.close()

    def _adopt(self, port: Any) -> None:
        self._ser = port
        self._dirty = True  # whatever sat in the buffers before we opened is not ours

    def _drop(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            self._close_port(ser)

    def transact(
        self, pdu: bytes, unit: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        if self._ser is None:
            raise DeviceDisconnected(f"Modbus RTU {self.where}: not open")
        try:
            return self._transact(
                pdu,
                self.unit if unit is None else unit,
                self.timeout_s if timeout_s is None else timeout_s,
            )
        except DeviceDisconnected:
            raise
        except Exception as exc:
            if _is_serial_error(exc):
                self._drop()
                raise DeviceDisconnected(
                    f"Modbus RTU {self.where}: port failed ({exc}); device unplugged or closed?"
                ) from None
            raise

    def _transact(self, pdu: bytes, unit: int, timeout_s: float) -> bytes:
        ser = self._ser
        self._settle()
        ser.write(rtu_adu(unit, pdu))
        ser.flush()
        deadline = time.monotonic() + timeout_s
        buf = b""
        expected: int | None = None
        while expected is None or len(buf) < expected:
            if expected is None:
                try:
                    expected = rtu_reply_length(buf, pdu[0])
                except FrameError:
                    self._garbled(buf, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._dirty = True
                if buf:
                    raise PumpChecksumError(
                        f"Modbus RTU {self.where}: incomplete reply {buf.hex(' ')}"
                    )
                raise DeviceTimeout(f"Modbus RTU {self.where}: no reply within {timeout_s:g} s")
            want = 1 if expected is None else expected - len(buf)
            buf += self._read_some(want, remaining)
        if len(buf) > expected:
            self._dirty = True
        frame = buf[:expected]
        try:
            answered, reply = parse_rtu_adu(frame)
        except CrcError as exc:
            self._dirty = True
            raise PumpChecksumError(
                f"Modbus RTU {self.where}: {exc} in reply {frame.hex(' ')}"
            ) from None
        except FrameError as exc:
            self._dirty = True
            raise PumpChecksumError(f"Modbus RTU {self.where}: {exc}") from None
        if answered != unit:
            self._dirty = True
            raise PumpChecksumError(
                f"Modbus RTU {self.where}: reply from address {answered}, asked {unit}"
            )
        return reply

    def _garbled(self, buf: bytes, deadline: float) -> None:
        """Swallow the rest of a reply that makes no sense, then report it."""
        self._drain(deadline)
        self._dirty = True
        raise PumpChecksumError(f"Modbus RTU {self.where}: garbled reply {buf.hex(' ')}")

    def _settle(self) -> None:
        ser = self._ser
        if self._dirty:
            self._drain(time.monotonic() + self.timeout_s)
            self._dirty = False
        ser.reset_input_buffer()

    def _drain(self, deadline: float) -> None:
        """Read until the line has been quiet for ``quiet_s`` (or the deadline passes)."""
        while time.monotonic() < deadline:
            if not self._read_some(256, self.quiet_s):
                return

    def _read_some(self, n: int, wait_s: float) -> bytes:
        """Up to ``n`` bytes, waiting at most ``wait_s`` for the first.

        The port stays non-blocking (timeout 0) and we wait with select: changing
        pyserial's timeout re-applies the termios settings, which a Linux pty refuses
        (EINVAL) once parity is set.
        """
        ser = self._ser
        ready, _, _ = select.select([ser.fileno()], [], [], max(0.0, wait_s))
        if not ready:
            return b""
        return bytes(ser.read(n))  # readable but no data: pyserial raises (device gone)


def _is_serial_error(exc: Exception) -> bool:
    """Errors that mean the port is unusable (pyserial lets termios.error through)."""
    if isinstance(exc, OSError | termios.error):
        return True
    try:
        import serial  # noqa: PLC0415
    except ImportError:
        return False
    return isinstance(exc, serial.SerialException)
