"""The controller's side of the socket: ``SafetyClient``, a ``SafetyLink``.

Three background threads, each supervised: if one ends while the link is meant to be
up, whatever the cause, the link is declared down (``LinkDown(final=True)``, the
``on_failure`` callback, ``SafetyUnavailable`` from every call) and the socket is
closed, which the safety process in turn sees as a lost controller (S11: hold). A
heartbeat that silently stopped would otherwise look, from this side, like health.

- reader: reads lines, matches replies to callers by ``id``, queues notifications;
- heartbeat: every ``heartbeat_period_s`` (the server's figure) sends a heartbeat (a
  plain ping while not attached), and watches the other way: nothing at all from the
  safety process for ``heartbeat_timeout_s`` -> ``LinkDown(final=False)`` (it is hung,
  or blocked on its pump), ``LinkRestored`` if it speaks again; EOF -> final at once;
- dispatcher: calls the subscribers, so a slow subscriber never delays the reader.

``connect`` authenticates before any thread starts: a wrong key fails the constructor
with ``AuthenticationFailed`` and nothing else happens.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from firmware_bridge.clock import Clock, MonotonicClock
from safety.ipc import auth
from safety.ipc.framing import (
    MAX_SERVER_BYTES,
    FrameError,
    LineFramer,
    decode_server,
    encode,
)
from safety.ipc.link import (
    DEFAULT_TTL_S,
    AlarmRaised,
    AuthenticationFailed,
    ControllerBusy,
    LinkDown,
    LinkRestored,
    NotAttached,
    Notice,
    ProtocolFailure,
    SafetyLinkError,
    SafetyUnavailable,
    SessionLost,
    StatusChanged,
)
from safety.ipc.messages import (
    AlarmNotice,
    Attach,
    Attached,
    Challenge,
    ErrorCode,
    ErrorReply,
    GetSnapshot,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Reply,
    RequestMessage,
    Role,
    ServerMessage,
    SnapshotReply,
    StatusNotice,
    Subscribe,
    Subscribed,
    Welcome,
)
from safety.ipc.snapshots import HistoryOutOfStep, SnapshotReceiver
from safety.kernel.model import EmergencyStop, RequestBody
from safety.status import Outcome, Snapshot

log = logging.getLogger("safety.ipc.client")

DEFAULT_REPLY_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
_SOCKET_TIMEOUT_S = 0.5  # recv wakes this often to look at the stop flag; bounds sendall

M = TypeVar("M", bound=ServerMessage)
_CallMessage = Attach | Heartbeat | RequestMessage | GetSnapshot | Subscribe


@dataclass(frozen=True)
class ServerInfo:
    """What the safety process told us when we authenticated."""

    heartbeat_timeout_s: float
    heartbeat_period_s: float
    clinical_clock: str
    library_hash: str


class _Pending:
    def __init__(self, callback: Callable[[ServerMessage], None] | None = None) -> None:
        self.done = threading.Event()
        self.message: ServerMessage | None = None
        self.callback = callback
        #: the reply's history could not be reconstructed: the caller fetches a full one
        self.resync = False


class _Resync:
    """Queued for the dispatcher thread: fetch a full snapshot (the history is out of
    step) and tell the subscribers, in place of the status notice that was dropped."""


_RESYNC = _Resync()


def error_for(reply: ErrorReply) -> SafetyLinkError:
    """The typed exception for a server's error reply."""
    text = f"safety process: {reply.message}"
    if reply.code is ErrorCode.CONTROLLER_ATTACHED:
        return ControllerBusy(text)
    if reply.code is ErrorCode.AUTH_FAILED:
        return AuthenticationFailed(text)
    if reply.code in (ErrorCode.SHUTTING_DOWN, ErrorCode.TOO_MANY_CLIENTS):
        return SafetyUnavailable(text)
    return ProtocolFailure(f"{text} ({reply.code})")


def expect(message: ServerMessage, kind: type[M]) -> M:
    """``message`` if it is a ``kind``; the server's error as its typed exception."""
    if isinstance(message, kind):
        return message
    if isinstance(message, ErrorReply):
        raise error_for(message)
    raise ProtocolFailure(f"expected {kind.__name__}, the safety process sent {message.type!r}")


class SafetyClient:
    """A ``SafetyLink`` over the safety process's Unix socket."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        key_file: str | os.PathLike[str] | None = None,
        name: str = "pumpctl-controller",
        ttl_s: float = DEFAULT_TTL_S,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        liveness: Clock | None = None,
        on_failure: Callable[[LinkDown], None] | None = None,
    ) -> None:
        """Connect and authenticate (``key`` or ``key_file``), then start the threads.

        Raises ``SafetyUnavailable`` (nothing listens), ``AuthenticationFailed``,
        ``ProtocolFailure``; ``safety.ipc.auth.KeyFileError`` for a bad key file.
        """
        if (key is None) == (key_file is None):
            raise ValueError("SafetyClient needs exactly one of key= or key_file=")
        self._key = key if key is not None else auth.load_key(key_file)  # type: ignore[arg-type]
        self.path = os.fspath(socket_path)
        self.name = name
        self.ttl_s = ttl_s
        self.reply_timeout_s = reply_timeout_s
        self._live = liveness or MonotonicClock()
        self._on_failure = on_failure
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # re-entrant: a Ctrl-C that lands while this thread holds one must not make its
        # own clean-up (close -> _go_down) wait for it forever
        self._pending_lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._call_lock = threading.Lock()  # requests one at a time, in order (S8)
        self._subscribers: list[Callable[[Notice], None]] = []
        self._sub_lock = threading.Lock()
        self._notices: queue.SimpleQueue[Notice | _Resync | None] = queue.SimpleQueue()
        self._snapshots = SnapshotReceiver()
        self._resync_queued = False
        self._session: str | None = None
        self._attached = False
        self._seq = 0
        self._closing = threading.Event()
        self._down: LinkDown | None = None
        self._down_lock = threading.RLock()
        self._unresponsive_since: float | None = None
        self._framer = LineFramer(MAX_SERVER_BYTES)
        self._sock = self._connect(connect_timeout_s)
        self._last_rx = self._live.now()
        try:
            self.info = self._handshake()
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(_SOCKET_TIMEOUT_S)
        self._threads = [
            threading.Thread(
                target=self._supervised, args=(role, fn), name=f"safety-link-{role}", daemon=True
            )
            for role, fn in (
                ("reader", self._read_loop),
                ("heartbeat", self._heartbeat_loop),
                ("dispatcher", self._dispatch_loop),
            )
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ SafetyLink
    @property
    def session(self) -> str | None:
        return self._session

    @property
    def attached(self) -> bool:
        """True while the safety process counts us as the attached controller."""
        return self._attached and self._down is None

    @property
    def down(self) -> LinkDown | None:
        """Why the link is gone for good (None while it is up)."""
        return self._down

    def attach(self) -> Snapshot:
        with self._call_lock:
            reply = expect(self._call(Attach(id=self._next_id())), Attached)
            self._session = reply.session
            self._seq = 0
            self._attached = True
            return reply.snapshot

    def heartbeat(self) -> bool:
        session = self._session if self._attached else None
        ack = expect(self._call(Heartbeat(id=self._next_id(), session=session)), HeartbeatAck)
        self._heartbeat_answered(session, ack)
        return ack.ok and session is not None

    def request(self, body: RequestBody, *, ttl_s: float | None = None) -> Outcome:
        with self._call_lock:
            if self._session is None and not isinstance(body, EmergencyStop):
                raise NotAttached(f"attach() before sending {body.kind!r}")
            if self._session is None:
                seq = 0
            else:
                self._seq += 1
                seq = self._seq
            expires = self._live.now() + (self.ttl_s if ttl_s is None else ttl_s)
            message = RequestMessage(
                id=self._next_id(), session=self._session, seq=seq, expires_at=expires, body=body
            )
            pending = self._exchange(message)
            assert pending.message is not None
            outcome = expect(pending.message, Reply).outcome
            if pending.resync:  # the verdict is good, its history was not: a full one now
                outcome = replace(outcome, snapshot=self.snapshot())
            return outcome

    def snapshot(self) -> Snapshot:
        return expect(self._call(GetSnapshot(id=self._next_id())), SnapshotReply).snapshot

    def subscribe(self, callback: Callable[[Notice], None]) -> Callable[[], None]:
        """Notices to ``callback`` (on the dispatcher thread). Also asks the safety process
        for pushed status if this connection is not the controller (which gets them). The
        state this link's own request left comes in its outcome, not as a notice."""
        with self._sub_lock:
            self._subscribers.append(callback)
        if not self._attached and self._down is None:
            expect(self._call(Subscribe(id=self._next_id(), on=True)), Subscribed)

        def unsubscribe() -> None:
            with self._sub_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Hang up (a controller loss for the safety process if attached: S11)."""
        self._closing.set()
        self._go_down("closed by this process", failure=False)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)

    def check(self) -> None:
        """Raise ``SafetyUnavailable`` if the link is down or a thread has died."""
        if self._down is not None:
            raise SafetyUnavailable(self._down.reason)
        for thread in self._threads:
            if not thread.is_alive():
                self._go_down(f"the link's {thread.name} thread is not running")
                raise SafetyUnavailable(f"the link's {thread.name} thread is not running")

    def __enter__(self) -> SafetyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def _next_id(self) -> int:
        return next(self._ids)

    def _call(self, message: _CallMessage, timeout_s: float | None = None) -> ServerMessage:
        pending = self._exchange(message, timeout_s)
        assert pending.message is not None
        return pending.message

    def _exchange(self, message: _CallMessage, timeout_s: float | None = None) -> _Pending:
        """Send and wait for the answer; the pending entry holds it (never None)."""
        self.check()
        pending = _Pending()
        ident = message.id
        with self._pending_lock:
            self._pending[ident] = pending
        try:
            self._send(message)
            wait = self.reply_timeout_s if timeout_s is None else timeout_s
            if not pending.done.wait(wait):
                raise SafetyUnavailable(
                    f"no answer from the safety process within {wait:g} s to {message.type!r}; "
                    "its outcome is unknown: re-read the snapshot"
                )
        finally:
            with self._pending_lock:
                self._pending.pop(ident, None)
        if pending.message is None:
            assert self._down is not None
            raise SafetyUnavailable(self._down.reason)
        return pending

    def _send(self, message: _CallMessage) -> None:
        data = encode(message)
        with self._send_lock:
            if self._down is not None:
                raise SafetyUnavailable(self._down.reason)
            try:
                self._sock.sendall(data)
            except OSError as exc:  # timeout included: a half-sent line breaks the stream
                reason = f"cannot send to the safety process: {exc.strerror or exc}"
                self._go_down(reason)
                raise SafetyUnavailable(reason) from None

    # ------------------------------------------------------------------ connection
    def _connect(self, timeout_s: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise SafetyUnavailable(
                f"cannot reach the safety process at {self.path}: {exc.strerror or exc} "
                "(is python -m safety running?)"
            ) from None
        return sock

    def _handshake(self) -> ServerInfo:
        welcome = handshake(self._sock, self._framer, self._key, self.name, self.path)
        return ServerInfo(
            welcome.heartbeat_timeout_s,
            welcome.heartbeat_period_s,
            welcome.clinical_clock,
            welcome.library_hash,
        )

    # ------------------------------------------------------------------ threads
    def _supervised(self, name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:
            log.exception("safety link %s thread failed", name)
            self._go_down(f"the link's {name} thread failed: {type(exc).__name__}: {exc}")
            return
        if not self._closing.is_set() and self._down is None:
            self._go_down(f"the link's {name} thread stopped")

    def _read_loop(self) -> None:
        while self._down is None:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self._go_down(f"connection to the safety process failed: {exc.strerror or exc}")
                return
            if not data:
                self._go_down("the safety process closed the connection (eof): it has stopped")
                return
            self._received()
            try:
                lines = self._framer.feed(data)
                for line in lines:
                    self._route(decode_server(line))
            except FrameError as exc:
                self._go_down(f"the safety process sent an invalid message: {exc}")
                return

    def _received(self) -> None:
        now = self._live.now()
        self._last_rx = now
        since = self._unresponsive_since
        if since is not None:
            self._unresponsive_since = None
            log.warning("the safety process answers again after %.1f s", now - since)
            self._notices.put(LinkRestored(now - since))

    def _route(self, message: ServerMessage) -> None:
        resync = False
        try:
            message = self._snapshots.receive(message)
        except HistoryOutOfStep as exc:
            log.error(
                "rate history out of step with the safety process (%s): asking for it in full",
                exc.why,
            )
            message, resync = exc.message, True
        if isinstance(message, StatusNotice):
            if not resync:
                self._notices.put(StatusChanged(message.snapshot))
            elif not self._resync_queued:
                self._resync_queued = True
                self._notices.put(_RESYNC)
            return
        if isinstance(message, AlarmNotice):
            self._notices.put(AlarmRaised(message.alarm))
            return
        ident = getattr(message, "id", None)
        if ident is None:
            if isinstance(message, ErrorReply):
                self._go_down(f"the safety process hung up: {message.message} ({message.code})")
                return
            raise FrameError(f"unexpected {message.type!r} message")
        with self._pending_lock:
            pending = self._pending.pop(ident, None)
        if pending is None:
            log.warning("late or unknown reply %s id %s ignored", message.type, ident)
            return
        pending.message = message
        pending.resync = resync
        pending.done.set()
        if pending.callback is not None:
            pending.callback(message)
        else:
            # a caller waits for this reply: let it take the interpreter now. Without a
            # release here it waits for the GIL until this thread blocks in recv again,
            # after decoding whatever else came in the same read (alarms, another change's
            # status): a few tenths of a millisecond on every request.
            time.sleep(0)
        if isinstance(message, ErrorReply) and message.fatal:
            self._go_down(f"the safety process hung up: {message.message} ({message.code})")

    def _heartbeat_loop(self) -> None:
        period = self.info.heartbeat_period_s
        timeout = self.info.heartbeat_timeout_s
        while not self._closing.wait(period):
            if self._down is not None:
                return
            now = self._live.now()
            silent = now - self._last_rx
            if silent > timeout and self._unresponsive_since is None and not self._unread():
                self._unresponsive_since = self._last_rx
                reason = f"no message from the safety process for {silent:.1f} s"
                log.error(reason)
                self._notices.put(LinkDown(reason, final=False))
            session = self._session if self._attached else None
            message = Heartbeat(id=self._next_id(), session=session)
            pending = _Pending(functools.partial(self._heartbeat_reply, session))
            with self._pending_lock:
                self._pending[message.id] = pending
            try:
                self._send(message)
            except SafetyUnavailable:
                return
            self._drop_stale_pending(message.id)

    def _unread(self) -> bool:
        """Whether bytes from the safety process wait in the socket, not yet read. Then it
        has not been silent, whatever ``_last_rx`` says: this process was (stopped, or not
        scheduled) and its reader has not run since; on a SIGCONT this thread may wake
        before the reader, and must not report the safety process as the silent one."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):  # closed under us: the reader reports that
            return False
        return bool(readable)

    def _heartbeat_reply(self, session: str | None, reply: ServerMessage) -> None:
        if isinstance(reply, HeartbeatAck):
            self._heartbeat_answered(session, reply)

    def _heartbeat_answered(self, session: str | None, ack: HeartbeatAck) -> None:
        if session is None or ack.ok:
            return
        if self._attached and self._session == session:  # not a late ack of an old session
            self._attached = False
            reason = (
                "the safety process no longer counts this controller as attached (heartbeat "
                "refused): it holds the last verified rate and refuses changes; re-attach"
            )
            log.error(reason)
            self._notices.put(SessionLost(reason))

    def _drop_stale_pending(self, newest: int) -> None:
        """Heartbeat acks never waited for: forget ones far behind (a hung server)."""
        with self._pending_lock:
            stale = [
                i for i, p in self._pending.items() if p.callback is not None and i < newest - 64
            ]
            for i in stale:
                del self._pending[i]

    def _dispatch_loop(self) -> None:
        while True:
            notice = self._notices.get()
            if notice is None:
                return
            if isinstance(notice, _Resync):
                self._resync_queued = False
                try:
                    notice = StatusChanged(self.snapshot())
                except SafetyLinkError as exc:  # the link's own notice says why
                    log.warning("no full snapshot after the history went out of step: %s", exc)
                    continue
            with self._sub_lock:
                subscribers = list(self._subscribers)
            for callback in subscribers:
                try:
                    callback(notice)
                except Exception:
                    log.exception("a safety-link subscriber failed on %s", type(notice).__name__)

    # ------------------------------------------------------------------ going down
    def _go_down(self, reason: str, *, failure: bool = True) -> None:
        """Once: mark the link down, wake every caller, tell subscribers and on_failure."""
        with self._down_lock:
            if self._down is not None:
                return
            down = LinkDown(reason, final=True)
            self._down = down
        if not self._closing.is_set():
            log.error("safety link down: %s", reason)
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._pending_lock:
            pendings = list(self._pending.values())
            self._pending.clear()
        for pending in pendings:
            pending.done.set()
        self._notices.put(down)
        self._notices.put(None)
        if failure and self._on_failure is not None:
            try:
                self._on_failure(down)
            except Exception:
                log.exception("the safety link's on_failure callback failed")


# --------------------------------------------------------------------------- the handshake


def handshake(
    sock: socket.socket,
    framer: LineFramer,
    key: bytes,
    name: str,
    path: str,
    role: Role = "controller",
) -> Welcome:
    """Prove ``key`` for ``role`` and check the server's proof (blocking, with the
    socket's timeout). Shared by the controller's and the observer's client."""
    challenge = expect(read_one(sock, framer), Challenge)
    cnonce = auth.new_nonce()
    nonce = bytes.fromhex(challenge.nonce)
    hello = Hello(
        client=name,
        cnonce=cnonce.hex(),
        mac=auth.client_proof(key, nonce, cnonce),
        history_delta=True,
        role=role,
    )
    try:
        sock.sendall(encode(hello))
    except OSError as exc:
        raise SafetyUnavailable(f"safety process: {exc.strerror or exc}") from None
    welcome = expect(read_one(sock, framer), Welcome)
    if not auth.proofs_match(auth.server_proof(key, nonce, cnonce), welcome.mac):
        raise AuthenticationFailed(
            f"the process at {path} did not prove it holds the key: not our safety process"
        )
    return welcome


def read_one(sock: socket.socket, framer: LineFramer) -> ServerMessage:
    """One message during the handshake (blocking, with the socket's timeout)."""
    while True:
        try:
            data = sock.recv(65536)
        except OSError as exc:
            raise SafetyUnavailable(f"safety process: {exc.strerror or exc}") from None
        if not data:
            raise AuthenticationFailed(
                "the safety process closed the connection during authentication"
            )
        try:
            lines = framer.feed(data)
        except FrameError as exc:
            raise ProtocolFailure(f"safety process: {exc}") from None
        if lines:
            if len(lines) > 1:  # nothing is sent after these two unasked
                raise ProtocolFailure("unexpected messages during authentication")
            try:
                return decode_server(lines[0])
            except FrameError as exc:
                raise ProtocolFailure(f"safety process: {exc}") from None


__all__ = [
    "DEFAULT_REPLY_TIMEOUT_S",
    "SafetyClient",
    "ServerInfo",
    "error_for",
    "expect",
    "handshake",
    "read_one",
]
