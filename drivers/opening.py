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
- a slow attempt is left to finish in the background; the call fails at once with
  ``DeviceDisconnected`` (the channel's comms alarm), and a later call takes the port
  the attempt opened;
- a failed attempt is not repeated for ``retry_s``: calls within that pause fail at once
  with the last reason;
- at most one attempt is in flight per port, so a port that never answers costs one
  waiting thread, never one per call.

A deliberate opening (a driver's ``connect``) waits for its attempt to end and ignores the
pause: the operator asked for it now. ``cancel`` (the port closed by its owner) forgets an
attempt in flight; whatever it opens later is closed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from drivers.errors import DeviceDisconnected

Port = TypeVar("Port")

#: longest a call waits for a reopen before it fails with the comms alarm; a local device
#: opens in well under a millisecond (a loaded machine may take longer to start the
#: thread), so only a network port that is slow to answer reaches it
WAIT_S = 0.25
#: after a failed attempt, the next one starts no sooner than this (calls fail at once)
RETRY_S = 1.0


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
        #: the last attempt's failure, and when it ended (the pause runs from there)
        self._failure: DeviceDisconnected | None = None
        self._failed_at = 0.0
        #: bumped by ``cancel``: an attempt of an older epoch closes what it opens
        self._epoch = 0

    @property
    def in_flight(self) -> bool:
        with self._mutex:
            return self._attempt is not None

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
            if attempt is None:
                failure = self._failure
                left = self._failed_at + self.retry_s - self._now()
                if paced and failure is not None and left > 0:
                    raise DeviceDisconnected(f"{failure} (next attempt in {left:.1f} s)")
                attempt = self._start()
        ended = attempt.wait(wait_s)
        with self._mutex:
            port = self._taken()
            if port is not None:
                return port
            if not ended and self._attempt is attempt:
                raise DeviceDisconnected(
                    f"{self.what}: still opening after {self.wait_s:g} s "
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
        self._attempt = attempt
        epoch = self._epoch
        threading.Thread(
            target=self._run, args=(attempt, epoch), name=f"open {self.what}", daemon=True
        ).start()
        return attempt

    def _run(self, attempt: threading.Event, epoch: int) -> None:
        port: Port | None = None
        failure: DeviceDisconnected | None = None
        try:
            port = self._open_port()
        except DeviceDisconnected as exc:
            failure = exc
        except Exception as exc:  # whatever the opening raised is the reason
            failure = DeviceDisconnected(f"{self.what}: cannot open: {exc}")
        with self._mutex:
            current = epoch == self._epoch
            if current:
                self._attempt = None
                self._opened = port
                self._failure = failure
                self._failed_at = self._now()
        attempt.set()
        if not current and port is not None:
            self._close_quietly(port)

    def _close_quietly(self, port: Port) -> None:
        with contextlib.suppress(Exception):
            self._close_port(port)
