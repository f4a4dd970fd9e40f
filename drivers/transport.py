"""Byte transport under the serial drivers: deadlines everywhere, one exchange at a time.

Failures seen in public pump drivers, and what this module does instead:

- a port opened with no timeout, so a lost reply hangs forever: every read here waits at
  most ``POLL_S`` and every exchange has an overall deadline;
- a byte-by-byte read until ETX with no deadline: the loop that assembles a reply checks the
  deadline on every turn;
- two threads interleaving commands on one port: ``lock`` (re-entrant) is held for each
  exchange, and a driver holds it across a set and its read-back; two processes on one
  port: the port is opened with an exclusive (advisory) lock;
- a vanished USB adapter crashing the host or being retried forever: an OS error on the
  port closes it and raises ``DeviceDisconnected``; the next call reopens it
  (``ensure_open``) and reports ``DeviceDisconnected`` again if that fails. No retry loops:
  one attempt at a time, paced and waited on for a bounded time (``drivers.opening``), so
  a port that is slow to open (a network URL whose host does not answer) never holds the
  caller for longer than that wait. A port missing when ``open`` was first asked (an
  adapter plugged in after the process started) is taken up the same way once it appears.

A late reply is the other classic trap: after a timeout the reply may still arrive and be
taken for the answer to the next command. After a timeout the transport is "dirty" and the
next exchange first discards whatever arrives during one more timeout period.

A frame is recognised by the protocol, not here: callers pass ``frame_end(buffer)``, which
returns how many bytes of ``buffer`` make the first complete reply (leading noise
included), or None while it is incomplete. ``settle_s`` keeps reading until the line has
been quiet that long after a reply looks complete, for protocols where the end of a reply
can also be the start of a longer one (Harvard: ``<LF>01:`` is the idle prompt of pump 1
and the head of its next text line). ``ambiguous(frame)`` narrows that wait to the frames
that really are ambiguous: when given, a complete-looking frame for which it returns False
is taken at once, so a reply finishes at its wire time instead of after a quiet period.
The quiet period itself is watched with short sleeps and non-blocking reads, not with the
port's read timeout, so a settle of 2 ms costs 2 ms.

``to_come(buffer)``, when the protocol can tell, is how many bytes the first reply in
``buffer`` still needs at least (a safe-mode NE-1000 packet says its length in its second
byte). The transport then sleeps through the wire time of all but the last of them
instead of waking for every character as it arrives (a 20-byte reply at 19200 baud was
20 wake-ups of the process, each a chance for the scheduler to run something else just
as the reply ends). It never sleeps longer than the wire time of the bytes still to come
at the port's own speed, nor past the deadline. On a UART the bytes arrive at that pace,
so the reply is taken no later than character by character. Behind an adapter that hands
bytes over in bursts (a USB-serial bridge's latency timer) the first burst may be seen
late and the rest arrive during the sleep: it is then taken when the sleep ends, up to
the wire time of those bytes later than a read waiting on the port would have taken it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import serial

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.opening import Opener

FrameEnd = Callable[[bytes], int | None]
#: True when a complete-looking frame may still grow (see the module docstring)
Ambiguous = Callable[[bytes], bool]
#: bytes the first reply in the buffer still needs at least, 0 when unknown (docstring)
ToCome = Callable[[bytes], int]

#: longest single wait inside a read loop
POLL_S = 0.01
#: a write that cannot hand its bytes to the driver within this long is a lost port
WRITE_TIMEOUT_S = 1.0
#: drain() gives up after this long past its quiet period, even on a babbling line
DRAIN_CAP_S = 0.5
#: longest sleep between two looks at the line while it settles
SETTLE_STEP_S = 0.0005
#: bytes read in one call at most, so that even a babbling line cannot stall the loop
MAX_CHUNK = 4096


def render(data: bytes) -> str:
    printable = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
    return f"{data.hex(' ')} |{printable}|" if data else "nothing"


class Transport(Protocol):
    """What a serial driver needs from the wire."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held for one exchange; drivers hold it across a set and its read-back."""
        ...

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def ensure_open(self) -> bool:
        """Reopen a lost port, or one that could not be opened when ``open`` was asked
        (bounded: ``drivers.opening``); True when it was (re)opened just now."""
        ...

    def exchange(
        self,
        request: bytes,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        """Send ``request`` and return the first complete reply frame."""
        ...

    def read_frame(
        self,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        """Return the next complete frame without sending anything."""
        ...

    def drain(self) -> bytes:
        """Whatever has arrived unasked, without waiting (longer only when dirty)."""
        ...


class SerialTransport:
    """A pyserial port (any ``serial_for_url`` URL: a device path, ``socket://host:port``)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        dirty_quiet_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self._settings: dict[str, Any] = {
            "baudrate": baudrate,
            "bytesize": bytesize,
            "parity": parity,
            "stopbits": stopbits,
            "timeout": POLL_S,
            "write_timeout": WRITE_TIMEOUT_S,
            # an advisory lock: a second process opening the same pump fails at once
            # instead of interleaving its commands with ours
            "exclusive": True,
        }
        self._dirty_quiet_s = dirty_quiet_s
        self._now = clock
        #: one character's wire time at the port's settings (start bit, data, parity,
        #: stop bits); none over a network URL, whose bytes the line does not pace
        bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        self._char_s = 0.0 if "://" in port else bits / baudrate
        self._lock = threading.RLock()
        self._serial: Any = None
        self._pending = bytearray()
        self._dirty_until = 0.0
        #: ``open`` was asked: a port lost since, or missing then, is opened again
        self._wanted = False
        self._opener: Opener[Any] = Opener(self._open_port, _close_port, what=port)

    @property
    def lock(self) -> AbstractContextManager[Any]:
        return self._lock

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        with self._lock:
            if self._serial is not None:
                return
            self._wanted = True  # wanted from now on, even if it is not there yet
            self._adopt(self._opener.open_now())

    def close(self) -> None:
        with self._lock:
            self._opener.cancel()
            self._drop()

    def ensure_open(self) -> bool:
        with self._lock:
            if self._serial is not None:
                return False
            if not self._wanted:
                raise DeviceDisconnected(f"{self.port} was never opened: call connect() first")
            self._adopt(self._opener.reopen())
            return True

    def exchange(
        self,
        request: bytes,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        with self._lock:
            self._require_open()
            if self._dirty_until:
                self.drain()
            self._write(request)
            return self._read_frame(frame_end, timeout_s, settle_s, ambiguous, to_come)

    def read_frame(
        self,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        with self._lock:
            self._require_open()
            return self._read_frame(frame_end, timeout_s, settle_s, ambiguous, to_come)

    def drain(self) -> bytes:
        with self._lock:
            self._require_open()
            quiet_until = max(self._dirty_until, self._now())
            hard_stop = quiet_until + DRAIN_CAP_S
            self._dirty_until = 0.0
            data = bytearray(self._take_pending())
            while self._now() < hard_stop:
                chunk = self._read_available()
                if chunk:
                    data += chunk
                    continue
                if self._now() >= quiet_until:
                    break
                self._read_some()  # waits at most POLL_S
                data += self._take_pending()
            return bytes(data)

    # ------------------------------------------------------------------ internals
    def _open_port(self) -> Any:
        """One attempt (in the opener's thread: nothing of this transport is touched)."""
        try:
            return serial.serial_for_url(self.port, **self._settings)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceDisconnected(f"cannot open {self.port}: {exc}") from None

    def _adopt(self, ser: Any) -> None:
        """Take an opened port as this transport's. What is already there is nobody's
        reply: an attempt may have opened the port a poll before this call took it, and a
        pump's prompt or a serial server's buffered bytes would be read as the answer to
        the first request. So the port starts dirty with no quiet period to wait: the first
        exchange drains whatever has arrived (all of it, however the port counts what is
        waiting: a ``socket://`` port says 1 byte at most), and a driver that drains
        before its exchanges (the NE-1000's unsolicited alarm packets) reads it itself."""
        self._serial = ser
        self._pending.clear()
        self._dirty_until = self._now()

    def _drop(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            _close_port(ser)
        self._pending.clear()

    def _require_open(self) -> None:
        if self._serial is None:
            raise DeviceDisconnected(f"{self.port} is not open")

    def _lost(self, exc: Exception) -> DeviceDisconnected:
        self._drop()  # still wanted: the next call opens it again
        return DeviceDisconnected(f"{self.port} vanished: {exc}")

    def _write(self, data: bytes) -> None:
        try:
            # no flush(): tcdrain() has no timeout and can hang on a wedged adapter;
            # write() itself is bounded by write_timeout
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def _read_some(self) -> None:
        """Wait at most POLL_S for bytes; add them to the pending buffer."""
        try:
            waiting = self._serial.in_waiting
            chunk = self._serial.read(min(MAX_CHUNK, max(1, waiting)))
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None
        self._pending += chunk

    def _read_available(self) -> bytes:
        try:
            waiting = self._serial.in_waiting
            chunk = self._serial.read(min(MAX_CHUNK, waiting)) if waiting else b""
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None
        return bytes(chunk)

    def _take_pending(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def _read_frame(
        self,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        deadline = self._now() + timeout_s
        hard_stop = deadline + settle_s
        while True:
            end = frame_end(bytes(self._pending))
            if (
                end is not None
                and settle_s > 0
                and (ambiguous is None or ambiguous(bytes(self._pending[:end])))
            ):
                end = self._settle(frame_end, settle_s, hard_stop, ambiguous)
            if end is not None:
                frame = bytes(self._pending[:end])
                del self._pending[:end]
                return frame
            if self._now() >= deadline:
                received = self._take_pending()
                self._dirty_until = self._now() + self._dirty_quiet_s
                raise DeviceTimeout(
                    f"{self.port}: no complete reply within {timeout_s:g} s "
                    f"(received {render(received)})"
                )
            if to_come is not None:
                chunk = self._read_available()  # a late look may find more there already
                if chunk:
                    self._pending += chunk
                    continue
                self._sleep_through(to_come(bytes(self._pending)), deadline)
            self._read_some()

    def _sleep_through(self, to_come: int, deadline: float) -> None:
        """Sleep while all but the last of ``to_come`` bytes cross the wire (never past
        ``deadline``): the read after it finds the reply whole or nearly so."""
        if to_come <= 1 or self._char_s <= 0:
            return
        time.sleep(max(0.0, min((to_come - 1) * self._char_s, deadline - self._now())))

    def _settle(
        self,
        frame_end: FrameEnd,
        settle_s: float,
        hard_stop: float,
        ambiguous: Ambiguous | None = None,
    ) -> int | None:
        """Keep reading until the line has been quiet for ``settle_s`` (or ``hard_stop``);
        the reply may have grown meanwhile, so its end is found again. A reply that grows
        into an unambiguous whole (``ambiguous`` says so) is taken at once: a reply still
        arriving byte by byte passes through ambiguous states on its way."""
        quiet_since = self._now()
        while True:
            now = self._now()
            left = min(hard_stop, quiet_since + settle_s) - now
            if left <= 0:
                break
            time.sleep(min(left, SETTLE_STEP_S))
            chunk = self._read_available()
            if chunk:
                self._pending += chunk
                quiet_since = self._now()
                end = frame_end(bytes(self._pending))
                if (
                    end is not None
                    and ambiguous is not None
                    and not ambiguous(bytes(self._pending[:end]))
                ):
                    return end
        return frame_end(bytes(self._pending))


def _close_port(ser: Any) -> None:
    # closing a vanished device may fail; it is gone anyway
    with contextlib.suppress(Exception):
        ser.close()
