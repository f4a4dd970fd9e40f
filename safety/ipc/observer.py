"""``ObserverClient``: the read-only connection to the safety process (S17).

For the dashboard and the telemetry publisher. It proves the *observer* key (a separate
file from the controller's: ``[paths] observer_key_file``), subscribes to pushed status,
alarms and the journal stream, and has no way to send a request: the class has no such
method, and the safety process refuses, journals and drops an observer connection that
sends one anyway.

One connection; it does not reconnect (``observe.feed`` does, with backoff). Two
threads, both daemons: the reader decodes what arrives and calls the subscribers (which
must be quick: a reader that falls behind is dropped by the safety process, as every
slow observer is); the pinger sends a liveness ``heartbeat`` (no session) every period
the server asked for, and reports silence longer than its timeout as
``LinkDown(final=False)`` and the end of it as ``LinkRestored``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge.clock import Clock, MonotonicClock
from safety.ipc import auth
from safety.ipc.client import expect, handshake
from safety.ipc.framing import MAX_SERVER_BYTES, FrameError, LineFramer, decode_server, encode
from safety.ipc.link import (
    AlarmRaised,
    LinkDown,
    LinkRestored,
    SafetyUnavailable,
    StatusChanged,
)
from safety.ipc.messages import (
    AlarmNotice,
    ErrorReply,
    Heartbeat,
    JournalNotice,
    ServerMessage,
    StatusNotice,
    Subscribe,
    Subscribed,
)
from safety.ipc.snapshots import HistoryOutOfStep, SnapshotReceiver
from safety.journal_text import JournalLine
from safety.status import Snapshot

log = logging.getLogger("safety.ipc.observer")

_SOCKET_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class JournalLines:
    """New safety-journal lines, in order (the first notice holds the recent tail)."""

    lines: tuple[JournalLine, ...]


ObserverNotice = StatusChanged | AlarmRaised | JournalLines | LinkDown | LinkRestored


class ObserverClient:
    """A read-only view of one safety process. See the module docstring."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        key_file: str | os.PathLike[str] | None = None,
        name: str = "pumpctl-observer",
        journal: bool = True,
        connect_timeout_s: float = 5.0,
        liveness: Clock | None = None,
    ) -> None:
        """Connect, authenticate as an observer, subscribe. Raises ``SafetyUnavailable``,
        ``AuthenticationFailed``, ``ProtocolFailure``; ``KeyFileError`` for a bad key
        file. Call ``start(callback)`` to receive notices."""
        if (key is None) == (key_file is None):
            raise ValueError("ObserverClient needs exactly one of key= or key_file=")
        self._key = key if key is not None else auth.load_key(key_file)  # type: ignore[arg-type]
        self.path = os.fspath(socket_path)
        self.name = name
        self._journal = journal
        self._live = liveness or MonotonicClock()
        self._ids = itertools.count(1)
        self._framer = LineFramer(MAX_SERVER_BYTES)
        self._snapshots = SnapshotReceiver()
        self._closing = threading.Event()
        self._down: LinkDown | None = None
        self._down_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._callback: Callable[[ObserverNotice], None] | None = None
        self._backlog: list[ObserverNotice] = []
        self._unresponsive_since: float | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout_s)
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            raise SafetyUnavailable(
                f"cannot reach the safety process at {self.path}: {exc.strerror or exc}"
            ) from None
        try:
            welcome = handshake(
                self._sock, self._framer, self._key, name, self.path, role="observer"
            )
            self.heartbeat_period_s = welcome.heartbeat_period_s
            self.heartbeat_timeout_s = welcome.heartbeat_timeout_s
            self.clinical_clock = welcome.clinical_clock
            self.library_hash = welcome.library_hash
            self._sock.sendall(encode(Subscribe(id=next(self._ids), on=True, journal=journal)))
            subscribed = self._first(Subscribed)
        except BaseException:
            self._sock.close()
            raise
        self.snapshot: Snapshot = subscribed.snapshot
        self._last_rx = self._live.now()
        self._sock.settimeout(_SOCKET_TIMEOUT_S)
        self._threads = [
            threading.Thread(target=self._read_loop, name="observer-reader", daemon=True),
            threading.Thread(target=self._ping_loop, name="observer-pinger", daemon=True),
        ]

    def _first(self, kind: type[Subscribed]) -> Subscribed:
        """Read until ``kind`` (blocking); keep what came before it for ``start``."""
        while True:
            data = self._sock.recv(65536)
            if not data:
                raise SafetyUnavailable("the safety process closed the connection")
            try:
                lines = self._framer.feed(data)
            except FrameError as exc:
                raise SafetyUnavailable(f"safety process: {exc}") from None
            found: Subscribed | None = None
            for line in lines:
                message = self._snapshots.receive(decode_server(line))
                if found is None and isinstance(message, kind):
                    found = message
                elif found is None and isinstance(message, ErrorReply):
                    expect(message, kind)  # raises the typed error
                else:
                    self._queue(message)
            if found is not None:
                return found

    # ------------------------------------------------------------------ the view
    @property
    def down(self) -> LinkDown | None:
        return self._down

    def start(self, callback: Callable[[ObserverNotice], None]) -> None:
        """Deliver every notice to ``callback`` (on the reader thread; keep it quick),
        beginning with those that arrived with the subscription (the journal's tail)."""
        self._callback = callback
        for notice in self._backlog:
            self._deliver(notice)
        self._backlog.clear()
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._closing.set()
        self._go_down("closed by this process")
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=2.0)

    def __enter__(self) -> ObserverClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ threads
    def _read_loop(self) -> None:
        try:
            while self._down is None:
                try:
                    data = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError as exc:
                    self._go_down(f"connection to the safety process failed: {exc}")
                    return
                if not data:
                    self._go_down("the safety process closed the connection (eof)")
                    return
                self._received()
                for line in self._framer.feed(data):
                    self._route(decode_server(line))
        except FrameError as exc:
            self._go_down(f"the safety process sent an invalid message: {exc}")
        except Exception as exc:  # a subscriber's bug must not look like health
            log.exception("observer reader failed")
            self._go_down(f"the observer's reader failed: {type(exc).__name__}: {exc}")

    def _route(self, message: ServerMessage) -> None:
        try:
            message = self._snapshots.receive(message)
        except HistoryOutOfStep as exc:  # never guessed: a full snapshot comes with the next
            log.error("rate history out of step (%s); resubscribing", exc.why)
            self._send(Subscribe(id=next(self._ids), on=True, journal=self._journal))
            return
        self._queue(message)

    def _queue(self, message: ServerMessage) -> None:
        notice: ObserverNotice | None = None
        if isinstance(message, StatusNotice | Subscribed):
            self.snapshot = message.snapshot
            notice = StatusChanged(message.snapshot)
        elif isinstance(message, AlarmNotice):
            notice = AlarmRaised(message.alarm)
        elif isinstance(message, JournalNotice):
            notice = JournalLines(message.lines)
        elif isinstance(message, ErrorReply) and message.fatal:
            self._go_down(f"the safety process hung up: {message.message} ({message.code})")
            return
        if notice is None:
            return
        if self._callback is None:
            self._backlog.append(notice)
        else:
            self._deliver(notice)

    def _deliver(self, notice: ObserverNotice) -> None:
        assert self._callback is not None
        self._callback(notice)

    def _received(self) -> None:
        now = self._live.now()
        self._last_rx = now
        since = self._unresponsive_since
        if since is not None:
            self._unresponsive_since = None
            self._deliver(LinkRestored(now - since))

    def _ping_loop(self) -> None:
        while not self._closing.wait(self.heartbeat_period_s):
            if self._down is not None:
                return
            silent = self._live.now() - self._last_rx
            if silent > self.heartbeat_timeout_s and self._unresponsive_since is None:
                self._unresponsive_since = self._last_rx
                self._deliver(
                    LinkDown(f"no message from the safety process for {silent:.1f} s", False)
                )
            try:
                self._send(Heartbeat(id=next(self._ids), session=None))
            except SafetyUnavailable:
                return

    def _send(self, message: Heartbeat | Subscribe) -> None:
        with self._send_lock:
            if self._down is not None:
                raise SafetyUnavailable(self._down.reason)
            try:
                self._sock.sendall(encode(message))
            except OSError as exc:
                reason = f"cannot send to the safety process: {exc.strerror or exc}"
                self._go_down(reason)
                raise SafetyUnavailable(reason) from None

    def _go_down(self, reason: str) -> None:
        with self._down_lock:
            if self._down is not None:
                return
            self._down = LinkDown(reason, final=True)
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        if self._callback is not None:
            try:
                self._callback(self._down)
            except Exception:
                log.exception("an observer subscriber failed on LinkDown")


__all__ = ["JournalLines", "ObserverClient", "ObserverNotice"]
