"""Opening a port again without stalling whoever asked: one attempt at a time, in its own
thread, paced, and waited on for a bounded time.

Why: the safety process serves the stop button, the watchdog and every channel from one
loop. Opening a local serial device is a system call that succeeds or fails at once, but
opening a network port can block for seconds: pyserial's ``socket://`` waits up to 5 s for
a host that does not answer, ``rfc2217://`` negotiates before it returns, a Modbus TCP
gateway that drops its packets holds ``connect`` for the whole timeout. A port that is
missing (an adapter unplugged, or not yet plugged in when the process started) is tried
again at every poll; done on the loop, a silent network port took seconds of every pass,
a healthy NE-1000 in safe mode was starved of traffic until it stopped itself, and a short
press of the stop button was missed.

So a reopen runs in a thread of its own and the caller waits for it at most ``wait_s``:

- a local device opens well within that wait, so a call that finds its port lost
  reopens it and goes on in the same call, as before;
- a slow attempt is left to finish in the background; the call fails with
  ``DeviceDisconnected`` (the channel's comms alarm), and a later call takes the port
  the attempt opened;
- a call that finds an attempt already in flight does not wait for it at all: only the
  call that started it does, so several drivers on one silent line (and their
  keep-alives) cost one wait a round, not one each;
- after a failed attempt no other starts until ``retry_s`` after its start: calls in
  that pause fail at once with the last reason. The pause is shorter than a poll period,
  so a missing port is looked for at every poll and taken up at the first one after it
  appears, but not by every call of a round;
- at most one attempt per port at a time, never one per call: an attempt whose owner
  closed the port meanwhile (``cancel``) is waited for by the next one, so that the two
  never hold the port at once (a serial port is opened for exclusive use; a TCP gateway
  may take one client only).

A deliberate opening (a driver's ``connect``) waits for its attempt to end and ignores the
pause: the operator asked for it now. ``cancel`` forgets an attempt in flight; whatever
it opens later is closed, never handed out. An attempt that never returns (an operating
system call that hangs) is not abandoned: the port is then reported "still opening",
with the attempt's age, until it does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from drivers.errors import DeviceDisconnected

Port = TypeVar("Port")

#: readings of the clock closer than this are the same instant (a sum of float steps can
#: land a hair short of the end of the pause that it reaches exactly)
_CLOCK_EPSILON_S = 1e-9

#: longest a call waits for a reopen before it fails with the comms alarm; a local device
#: opens in well under a millisecond (a loaded machine may take longer to start the
#: thread), so only a network port that is slow to answer reaches it
WAIT_S = 0.25
#: after a failed attempt, the next one starts no sooner than this after its start (calls
#: fail at once meanwhile); shorter than the safety process's poll period (1 s by default),
#: so that every poll looks for a missing port once
RETRY_S = 0.5


class Opener(Generic[Port]):
    """One port's attempts to open, for the transport or link that owns the port."""

    def __init__(
        self,
        open_port: Callable[[], Port],
        close_port: Callable[[Port], None],
        *,
        what: str,
        wait_s: float | None = None,
        retry_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_port = open_port
        self._close_port = close_port
        self.what = what
        # the module's figures read here, not at import: a test bench may set them
        self.wait_s = WAIT_S if wait_s is None else wait_s
        self.retry_s = RETRY_S if retry_s is None else retry_s
        self._now = clock
        self._mutex = threading.Lock()
        #: an attempt in flight: ended when its event is set
        self._attempt: threading.Event | None = None
        #: a port an attempt opened that nobody has taken yet
        self._opened: Port | None = None
        #: the last attempt's failure (None: it opened, or none yet)
        self._failure: DeviceDisconnected | None = None
        #: when the last attempt started: its age, and the pause after a failure, run from it
        self._started_at = 0.0
        #: the last attempt started, cancelled or not: the next one waits for it to end
        self._last: threading.Event | None = None
        #: bumped by ``cancel``: an attempt of an older epoch closes what it opens
        self._epoch = 0

    @property
    def in_flight(self) -> bool:
        """An attempt on this port has not ended: the owner's, or one it cancelled (which
        may still hold the port, and which the next attempt waits for)."""
        with self._mutex:
            last = self._last
        return last is not None and not last.is_set()

    def open_now(self) -> Port:
        """The port, opened by an attempt started now (or the one in flight), waited on to
        its end; ``DeviceDisconnected`` when it failed."""
        return self._take(wait_s=None, paced=False)

    def reopen(self) -> Port:
        """The port, if an attempt (started now unless the pause after a failure runs, or
        the one in flight) opens it within ``wait_s``; otherwise ``DeviceDisconnected``
        at once, the attempt left to finish for a later call."""
        return self._take(wait_s=self.wait_s, paced=True)

    def cancel(self) -> None:
        """The owner closed the port: an attempt in flight, or a port opened and not
        taken, is not handed out any more (the latter is closed now, the former when it
        ends); the pause after a failure is forgotten."""
        with self._mutex:
            self._epoch += 1
            opened, self._opened = self._opened, None
            self._attempt = None
            self._failure = None
        if opened is not None:
            self._close_quietly(opened)

    # ------------------------------------------------------------------ internals
    def _take(self, *, wait_s: float | None, paced: bool) -> Port:
        with self._mutex:
            port = self._taken()
            if port is not None:
                return port
            attempt = self._attempt
            joined = attempt is not None
            if attempt is None:
                failure = self._failure
                left = self._started_at + self.retry_s - self._now()
                if paced and failure is not None and left > _CLOCK_EPSILON_S:
                    raise DeviceDisconnected(f"{failure} (next attempt in {left:.1f} s)")
                attempt = self._start()
        # a call that joins an attempt in flight does not wait for it (the one that started
        # it did), unless it is a deliberate opening
        ended = attempt.wait(0 if joined and wait_s is not None else wait_s)
        with self._mutex:
            port = self._taken()
            if port is not None:
                return port
            if not ended and self._attempt is attempt:
                age = self._now() - self._started_at
                raise DeviceDisconnected(
                    f"{self.what}: still opening, {age:.2f} s since the attempt started "
                    "(left to finish; the port is taken up when it opens)"
                )
            raise self._failure or DeviceDisconnected(f"{self.what}: not opened")

    def _taken(self) -> Port | None:
        """The port an attempt opened, handed over once (the mutex held)."""
        port, self._opened = self._opened, None
        return port

    def _start(self) -> threading.Event:
        """A new attempt in its own thread (the mutex held)."""
        attempt = threading.Event()
        after, self._last = self._last, attempt
        self._attempt = attempt
        self._started_at = self._now()
        threading.Thread(
            target=self._run,
            args=(attempt, self._epoch, after),
            name=f"open {self.what}",
            daemon=True,
        ).start()
        return attempt

    def _run(self, attempt: threading.Event, epoch: int, after: threading.Event | None) -> None:
        try:
            self._attempt_to_open(epoch, after)
        finally:
            attempt.set()  # whatever happened: the next attempt and every waiter go on

    def _attempt_to_open(self, epoch: int, after: threading.Event | None) -> None:
        port: Port | None = None
        failure: DeviceDisconnected | None = None
        if after is not None:
            after.wait()  # an earlier attempt, cancelled, may still hold the port
        try:
            port = self._open_port()
        except DeviceDisconnected as exc:
            failure = exc
        except BaseException as exc:  # whatever the opening raised is the reason
            failure = DeviceDisconnected(f"{self.what}: cannot open: {exc}")
        with self._mutex:
            current = epoch == self._epoch
            if current:
                self._attempt = None
                self._opened = port
                self._failure = failure
        if not current and port is not None:
            self._close_quietly(port)  # before the end is signalled: the next attempt waits

    def _close_quietly(self, port: Port) -> None:
        with contextlib.suppress(Exception):
            self._close_port(port)
