"""Byte-exact protocol tests for drivers, in the spirit of pymeasure's ``expected_protocol``.

A ``ScriptedTransport`` stands where the serial port would be and plays a script: a list
of (expected request bytes, reply bytes). Each request the driver sends must equal the next
expected one exactly, or the test fails on the spot with both byte strings in hex. A reply
of ``None`` means "the pump says nothing" (the driver sees ``DeviceTimeout`` at once, no
waiting); ``DISCONNECT`` means the device vanishes (``DeviceDisconnected``). A reply may hold
more than one frame: what the driver does not read stays pending, as unsolicited bytes
would on a real line. At the end, every step must have been played and every byte read.

Example::

    with expected_protocol(
        lambda t: Ne1000Driver(port="scripted", transport=t),
        [(b"0VER\\r", b"\\x0200SNE1000V3.928\\x03")],
    ) as driver:
        assert driver.identify().firmware == "3.928"
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.transport import Ambiguous, FrameEnd, ToCome, render


class _Disconnect:
    def __repr__(self) -> str:
        return "DISCONNECT"


DISCONNECT = _Disconnect()
Reply = bytes | None | _Disconnect
Step = tuple[bytes, Reply]


class ScriptError(AssertionError):
    """The driver did not do what the script expected."""


class ScriptedTransport:
    """A ``drivers.transport.Transport`` that plays a fixed script of request/reply pairs.

    ``refuse_reopen`` makes ``ensure_open`` fail, as an adapter that is still unplugged.
    """

    def __init__(self, steps: Sequence[Step], *, refuse_reopen: bool = False) -> None:
        self._steps = list(steps)
        self._played: list[Step] = []
        self._pending = bytearray()
        self._open = False
        self._ever_opened = False
        self._refuse_reopen = refuse_reopen
        self._lock = threading.RLock()
        self._failure: ScriptError | None = None
        self.opens = 0
        self.timeouts: list[float] = []
        #: reads that wait for a frame without sending anything (each may cost a timeout
        #: on a real line)
        self.unprompted_reads = 0

    # ------------------------------------------------------------------ Transport
    @property
    def lock(self) -> AbstractContextManager[Any]:
        return self._lock

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True
        self._ever_opened = True
        self.opens += 1

    def close(self) -> None:
        self._open = False

    def ensure_open(self) -> bool:
        if self._open:
            return False
        if not self._ever_opened:
            raise DeviceDisconnected("scripted port was never opened: call connect() first")
        if self._refuse_reopen:
            raise DeviceDisconnected("scripted port is still gone")
        self.open()
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
        if not self._open:
            self._fail(f"request {render(request)} sent on a closed port")
        if not self._steps:
            self._fail(f"unexpected request {render(request)}: the script is finished")
        expected, reply = self._steps.pop(0)
        self._played.append((expected, reply))
        if request != expected:
            self._fail(
                f"request #{len(self._played)} differs from the script\n"
                f"  expected {render(expected)}\n  got      {render(request)}"
            )
        self.timeouts.append(timeout_s)
        if isinstance(reply, _Disconnect):
            self._open = False
            self._pending.clear()
            raise DeviceDisconnected("scripted port vanished")
        if reply is not None:
            self._pending += reply
        return self._take_frame(frame_end, timeout_s, to_come)

    def read_frame(
        self,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        if not self._open:
            raise DeviceDisconnected("scripted port is not open")
        self.unprompted_reads += 1
        return self._take_frame(frame_end, timeout_s, to_come)

    def drain(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    # ------------------------------------------------------------------ checks
    @property
    def remaining(self) -> list[Step]:
        return list(self._steps)

    def assert_finished(self) -> None:
        """Every step played and every reply byte read; also re-raises any earlier
        mismatch, in case the driver swallowed it."""
        if self._failure is not None:
            raise self._failure
        if self._steps:
            listing = "\n".join(f"  {render(req)}" for req, _ in self._steps)
            raise ScriptError(f"{len(self._steps)} scripted request(s) never sent:\n{listing}")
        if self._pending:
            raise ScriptError(
                f"reply bytes never read by the driver: {render(bytes(self._pending))}"
            )

    # ------------------------------------------------------------------ internals
    def _take_frame(
        self, frame_end: FrameEnd, timeout_s: float, to_come: ToCome | None = None
    ) -> bytes:
        end = frame_end(bytes(self._pending))
        if end is None:
            received = bytes(self._pending)
            self._pending.clear()
            raise DeviceTimeout(
                f"scripted: no complete reply within {timeout_s:g} s (received {render(received)})"
            )
        if to_come is not None:
            self._check_to_come(to_come, bytes(self._pending[:end]))
        frame = bytes(self._pending[:end])
        del self._pending[:end]
        return frame

    def _check_to_come(self, to_come: ToCome, frame: bytes) -> None:
        """A real port sleeps through the bytes a driver says are still to come: a claim
        of more than the reply holds would be a wait past its end, on every part of it."""
        for arrived in range(len(frame)):
            claimed = to_come(frame[:arrived])
            if claimed > len(frame) - arrived:
                self._fail(
                    f"to_come says {claimed} byte(s) are still to come after "
                    f"{render(frame[:arrived])}; the reply {render(frame)} has "
                    f"{len(frame) - arrived}"
                )

    def _fail(self, message: str) -> None:
        self._failure = ScriptError(message)
        raise self._failure


class _Device(Protocol):
    """Any driver a scripted transport can stand under (pump, balance, monitor)."""

    def connect(self) -> None: ...


D = TypeVar("D", bound=_Device)


@contextmanager
def expected_protocol(
    make_driver: Callable[[ScriptedTransport], D],
    steps: Sequence[Step],
    *,
    connect: bool = False,
    refuse_reopen: bool = False,
) -> Iterator[D]:
    """Build a driver on a scripted transport, optionally connect it, and on leaving check
    that the whole script was played (only when the body did not raise)."""
    transport = ScriptedTransport(steps, refuse_reopen=refuse_reopen)
    driver = make_driver(transport)
    if connect:
        driver.connect()
    yield driver
    transport.assert_finished()
