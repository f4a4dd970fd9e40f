"""The safety process's Unix socket server: one thread, one selector, the core's timers.

Why one thread: the core (kernel state, pump driver, journal) is not shared with any
other thread, so there is no lock to forget and every event is handled in the order it
happened. The loop waits at most until the core's next timer (``core.service()`` says
when: pump poll, keep-alive, heartbeat deadline, watchdog pin, stop button), and at most
``MAX_WAIT_S``; it then serves whatever sockets are ready.

A slow pump command blocks the loop. Heartbeats that arrived meanwhile are still queued
in the socket, so before the timers run again the loop drains every ready socket (with
a bound): a controller is never timed out for the safety process's own slowness. Within
a timer pass, the core also lets waiting requests in between two pumps' exchanges
(``SafetyCore.between_exchanges``): with several pumps on one line, an emergency stop or a
dose change waits behind one pump's read-back, not behind a whole round of them.

The socket is created mode 0600 (bound under a temporary name, chmod-ed, then renamed
into place, so it is never reachable with wider permissions), in a directory created
mode 0700 if missing. A socket file left by a dead process is replaced; a live one (a
second safety process) makes ``open`` fail rather than steal the pump.

Who gets a slot (a stray local process must never lock the controller out):

- a new connection waits in the *unauthenticated pool* (``max_pending``, default 8) and
  must prove a key within ``auth_timeout_s`` (default 2 s). One process (the peer's pid,
  ``SO_PEERCRED``) holds at most ``max_pending_per_peer`` (2) waiting connections: its
  next one evicts its own oldest. When the pool is full, the process holding the most
  waiting connections loses its oldest (one that has sent nothing first). So a process
  that reconnects for ever, or opens any number of silent connections, only ever evicts
  its own, and a controller (another process, which answers the challenge at once) gets
  in; only as many distinct processes as the pool holds, all connecting within the
  controller's handshake, could crowd it out;
- authenticated connections have slots per role: ``max_controllers`` (default 4: the
  controller, a restarted one while the old one times out, a stop panel) and
  ``max_observers`` (default 8); a role that is full refuses the newcomer;
- an authenticated connection holding part of a line for ``line_timeout_s`` (default
  2 s) is dropped: a line is sent whole, at once, by every honest client.

Output: each connection has a queue of encoded messages bounded in bytes
(``max_queued_bytes``, default 5 MiB: one full snapshot at the largest, with room to
spare) and in time (``stall_timeout_s``, default 5 s without the socket taking a byte
while something waits). A connection past either bound is dropped at once, never
waited for, so the safety loop never blocks on a client and its memory stays bounded.
Every drop of an authenticated connection is put on record in the safety journal
(``ClientDropped``; a lost controller is also S11's ``ControllerLost``); an
unauthenticated one is only logged, so a flood of strays cannot fill the journal.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import selectors
import socket
import stat
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.clock import Clock, MonotonicClock
from safety.host.core import SafetyCore
from safety.ipc.dispatch import Answer, Dispatcher, Peer
from safety.ipc.framing import MAX_REQUEST_BYTES, MAX_SERVER_BYTES, FrameError, LineFramer
from safety.ipc.messages import ErrorCode, ErrorReply, Role, ServerMessage

log = logging.getLogger("safety.ipc")

#: longest the loop sleeps without looking at its timers
MAX_WAIT_S = 0.5
#: shortest: a timer that is always due must not turn the loop into a busy spin
MIN_WAIT_S = 0.001
#: rounds of "serve what is ready" after a busy iteration, before the timers run
DRAIN_ROUNDS = 32
RECV_BYTES = 65536
DEFAULT_MAX_PENDING = 8
DEFAULT_MAX_PENDING_PER_PEER = 2
DEFAULT_MAX_CONTROLLERS = 4
DEFAULT_MAX_OBSERVERS = 8
DEFAULT_AUTH_TIMEOUT_S = 2.0
DEFAULT_LINE_TIMEOUT_S = 2.0
DEFAULT_STALL_TIMEOUT_S = 5.0
#: one largest message, and 1 MiB of notices behind it
DEFAULT_MAX_QUEUED_BYTES = MAX_SERVER_BYTES + 1024 * 1024


class ServerError(Exception):
    """The server cannot start (socket in use, path not usable); the message says why."""


@dataclass(frozen=True)
class Limits:
    """The server's bounds on its clients (see the module docstring)."""

    max_pending: int = DEFAULT_MAX_PENDING
    max_pending_per_peer: int = DEFAULT_MAX_PENDING_PER_PEER
    max_controllers: int = DEFAULT_MAX_CONTROLLERS
    max_observers: int = DEFAULT_MAX_OBSERVERS
    auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S
    line_timeout_s: float = DEFAULT_LINE_TIMEOUT_S
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES

    def __post_init__(self) -> None:
        for name in (
            "max_pending",
            "max_pending_per_peer",
            "max_controllers",
            "max_observers",
            "max_queued_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("auth_timeout_s", "line_timeout_s", "stall_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: Peer
    opened: float  # liveness time of the accept
    auth_deadline: float
    framer: LineFramer = field(default_factory=lambda: LineFramer(MAX_REQUEST_BYTES))
    #: encoded messages waiting for the socket; the first one from ``sent`` bytes on
    out: deque[bytes] = field(default_factory=deque)
    queued: int = 0  # bytes in ``out`` not yet sent
    sent: int = 0
    #: liveness time since when ``out`` has waited without the socket taking a byte
    stalled_since: float | None = None
    #: liveness time since when part of a line is held
    partial_since: float | None = None
    heard: bool = False  # it has sent at least one byte
    pid: int | None = None  # the peer process (SO_PEERCRED), None if unknown
    closing: bool = False  # hang up once ``out`` is flushed
    writing: bool = False


class SafetyServer:
    def __init__(
        self,
        core: SafetyCore,
        socket_path: str | os.PathLike[str],
        key: bytes,
        *,
        observer_key: bytes | None = None,
        clinical_clock: str = "real",
        liveness: Clock | None = None,
        limits: Limits | None = None,
        auth_timeout_s: float | None = None,
        tick: Callable[[], float] | None = None,
    ) -> None:
        """``tick`` runs once per loop iteration and returns seconds until it wants to run
        again (the systemd watchdog ping uses it: it runs only while the loop is alive).
        ``observer_key`` None: no observer can authenticate. ``auth_timeout_s``
        overrides ``limits.auth_timeout_s``."""
        self.core = core
        self.path = Path(socket_path)
        self.dispatcher = Dispatcher(
            core,
            key,
            clinical_clock=clinical_clock,
            max_request_bytes=MAX_REQUEST_BYTES,
            observer_key=observer_key,
        )
        self.dispatcher.admit = self._admit
        self._live = liveness or MonotonicClock()
        limits = limits or Limits()
        if auth_timeout_s is not None:
            limits = Limits(**{**limits.__dict__, "auth_timeout_s": auth_timeout_s})
        self.limits = limits
        self._tick = tick
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}  # fd -> connection
        self._next_id = 0
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._inode: int | None = None
        core.between_exchanges = self._serve_waiting

    # ------------------------------------------------------------------ life cycle
    def open(self) -> None:
        """Bind and listen (mode 0600); replace a stale socket, refuse a live one."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ServerError(f"socket directory {path.parent}: {exc.strerror or exc}") from None
        _refuse_live_or_foreign(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = path.parent / f".{os.getpid()}.sock"
        try:
            tmp.unlink(missing_ok=True)
            if len(os.fsencode(tmp)) <= 107:
                listener.bind(os.fspath(tmp))
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
            else:  # no room for a temporary name: bind in place, chmod at once
                path.unlink(missing_ok=True)
                listener.bind(os.fspath(path))
                os.chmod(path, 0o600)
            listener.listen(16)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            tmp.unlink(missing_ok=True)
            raise ServerError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        self._inode = path.stat().st_ino
        self._listener = listener
        self._sel.register(listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        log.info("listening on %s", path)

    def request_stop(self) -> None:
        """Ask ``serve`` to return. Safe from a signal handler and from other threads."""
        self._stop = True
        with contextlib.suppress(OSError):  # a full pipe already wakes the loop
            os.write(self._wake_w, b"x")

    def serve(self) -> None:
        """Run until ``request_stop``. Exceptions from the core (the journal cannot be
        written, a bug) propagate: the process must not go on without its journal."""
        if self._listener is None:
            self.open()
        while not self._stop:
            self.step()

    def step(self, max_wait: float = MAX_WAIT_S) -> None:
        """One loop iteration: timers, then wait for and serve ready sockets."""
        wait = min(self._timers(), max_wait)
        self._serve(self._sel.select(max(MIN_WAIT_S, wait)))
        for _ in range(DRAIN_ROUNDS):
            ready = self._sel.select(0)
            if not ready or self._stop:
                break
            self._serve(ready)

    def close(self) -> None:
        """Hang up on every client (not a controller loss: it is us leaving) and remove
        the socket file if it is still ours."""
        for conn in list(self._conns.values()):
            self._send(
                conn,
                ErrorReply(
                    code=ErrorCode.SHUTTING_DOWN,
                    message="the safety process is shutting down",
                    fatal=True,
                ),
            )
            with contextlib.suppress(OSError):  # a last try, never a wait
                conn.sock.send(b"".join(conn.out)[conn.sent :])
            self._forget(conn)
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                if self._inode is not None and self.path.stat().st_ino == self._inode:
                    self.path.unlink()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._sel.close()

    @property
    def client_count(self) -> int:
        return len(self._conns)

    def counts(self) -> dict[str, int]:
        """Connections by pool: "pending" (not authenticated), "controller", "observer"."""
        out = {"pending": 0, "controller": 0, "observer": 0}
        for conn in self._conns.values():
            if not conn.closing:
                out[conn.peer.role if conn.peer.authenticated else "pending"] += 1
        return out

    def queued_bytes(self) -> int:
        """Bytes waiting in every connection's output queue (memory bound, benchmarks)."""
        return sum(conn.queued for conn in self._conns.values())

    # ------------------------------------------------------------------ the loop
    def _timers(self) -> float:
        wait = self.core.service()
        # a request that arrived during the timers' last exchange is answered before the
        # status their read-backs changed is pushed: the notices wait, the request need not
        if self._serve_waiting():
            wait = 0.0  # what was served may have brought a timer forward: look again
        self._push_notices()
        now = self._live.now()
        limits = self.limits
        for conn in list(self._conns.values()):
            if conn.closing:
                continue
            if not conn.peer.authenticated:
                deadline, why = conn.auth_deadline, "did not authenticate in time"
                code = ErrorCode.AUTH_FAILED
            elif conn.partial_since is not None:
                deadline = conn.partial_since + limits.line_timeout_s
                why = f"held an incomplete line for more than {limits.line_timeout_s:g} s"
                code = ErrorCode.TOO_SLOW
            else:
                deadline = None
            if deadline is not None:
                if now >= deadline:
                    self._hang_up(conn, why, code)
                    continue
                wait = min(wait, deadline - now)
            if conn.stalled_since is not None:
                deadline = conn.stalled_since + limits.stall_timeout_s
                if now >= deadline:
                    self._drop(
                        conn,
                        f"did not read its messages for {limits.stall_timeout_s:g} s "
                        f"({conn.queued} bytes waiting)",
                    )
                    continue
                wait = min(wait, deadline - now)
        if self._tick is not None:
            wait = min(wait, self._tick())
        return max(0.0, wait)

    def _serve_waiting(self) -> bool:
        """Serve what is ready now, never wait; say whether anything was. The core calls it
        between two pumps' exchanges on its timers (an emergency stop must not wait for a
        round of polls)."""
        if self._listener is None or self._stop:
            return False
        ready = self._sel.select(0)
        if ready:
            self._serve(ready)
        return bool(ready)

    def _serve(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, events in ready:
            if key.data == "listen":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            else:
                conn = self._conns.get(key.fd)
                if conn is None:
                    continue
                if events & selectors.EVENT_READ:
                    self._read(conn)
                if events & selectors.EVENT_WRITE and self._conns.get(key.fd) is conn:
                    self._flush(conn)
        self._push_notices()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._next_id += 1
            pid, label = _peer_credentials(sock)
            peer = Peer(self._next_id, label)
            now = self._live.now()
            conn = _Conn(sock, peer, now, now + self.limits.auth_timeout_s, pid=pid)
            self._make_room(pid)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, "client")
            log.info("%s connected", peer.describe())
            self._send(conn, self.dispatcher.greet(peer))

    def _make_room(self, pid: int | None) -> None:
        """Evict from the unauthenticated pool until a newcomer from ``pid`` fits (see
        the module docstring): first that process's own oldest beyond its share, then,
        while the pool is full, the oldest of the process holding the most."""
        limits = self.limits
        while True:
            pending = [
                c for c in self._conns.values() if not c.peer.authenticated and not c.closing
            ]
            own = [c for c in pending if c.pid == pid]
            if len(own) >= limits.max_pending_per_peer:
                victims = own
                why = (
                    f"evicted: one process may hold {limits.max_pending_per_peer} "
                    "connections waiting to authenticate"
                )
            elif len(pending) >= limits.max_pending:
                held = collections.Counter(c.pid for c in pending)
                most = max(held.values())
                victims = [c for c in pending if held[c.pid] == most]
                why = f"evicted: more than {limits.max_pending} connections waiting to authenticate"
            else:
                return
            victim = min(victims, key=lambda c: (c.heard, c.opened, c.peer.id))
            self._hang_up(victim, why, ErrorCode.TOO_MANY_CLIENTS)

    def _admit(self, peer: Peer, role: Role) -> str | None:
        """The dispatcher asks before it welcomes ``peer`` as ``role``."""
        limit = self.limits.max_controllers if role == "controller" else self.limits.max_observers
        taken = sum(
            1
            for c in self._conns.values()
            if c.peer is not peer and c.peer.authenticated and c.peer.role == role and not c.closing
        )
        if taken >= limit:
            return f"too many {role} connections ({limit} allowed)"
        return None

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(conn, _why(exc))
            return
        if not data:
            self._lost(conn, "eof")
            return
        if conn.closing:
            return  # already hanging up: nothing more is read from it
        conn.heard = True
        try:
            lines = conn.framer.feed(data)
        except FrameError as exc:
            self._apply(conn, self.dispatcher.reject(conn.peer, ErrorCode.BAD_MESSAGE, str(exc)))
            return
        if not conn.framer.pending:
            conn.partial_since = None
        elif conn.partial_since is None or lines:
            conn.partial_since = self._live.now()  # a new line has begun
        for line in lines:
            self._apply(conn, self.dispatcher.receive(conn.peer, line))
            if conn.closing or self._conns.get(conn.sock.fileno()) is not conn:
                return

    def _apply(self, conn: _Conn, answer: Answer) -> None:
        for message in answer.messages:
            self._send(conn, message)
        if answer.close and self._conns.get(conn.sock.fileno()) is conn:
            conn.closing = True
            if not answer.recorded:
                self._on_record(conn, f"protocol error: {answer.why}")
            self.dispatcher.disconnected(conn.peer, f"protocol error: {answer.why}")
            self._flush(conn)

    def _push_notices(self) -> None:
        notices = self.dispatcher.notices()
        if not notices:
            return
        for conn in list(self._conns.values()):
            peer = conn.peer
            if peer.authenticated and peer.subscribed and not conn.closing:
                for notice in notices:
                    if not self.dispatcher.is_for(peer, notice):
                        continue
                    self._send(conn, notice)
                    if conn.closing or self._conns.get(conn.sock.fileno()) is not conn:
                        break

    # ------------------------------------------------------------------ output
    def _send(self, conn: _Conn, message: ServerMessage) -> None:
        """Queue ``message`` and write what the socket takes now; never wait."""
        if self._conns.get(conn.sock.fileno()) is not conn:
            return
        try:
            data = conn.peer.snapshots.encode(message)
        except FrameError as exc:  # our own message too big: a bug, never the client's
            log.error("not sent to %s: %s", conn.peer.describe(), exc)
            return
        if conn.queued + len(data) > self.limits.max_queued_bytes:
            self._drop(
                conn,
                f"did not read its messages (over {self.limits.max_queued_bytes} bytes waiting)",
            )
            return
        conn.out.append(data)
        conn.queued += len(data)
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0 or self._conns.get(fd) is not conn:
            return
        progressed = False
        while conn.out:
            head = conn.out[0]
            try:
                sent = conn.sock.send(memoryview(head)[conn.sent :])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._lost(conn, _why(exc))
                return
            progressed = progressed or sent > 0
            conn.sent += sent
            conn.queued -= sent
            if conn.sent >= len(head):
                conn.out.popleft()
                conn.sent = 0
        if not conn.out:
            conn.stalled_since = None
            if conn.closing:
                self._forget(conn)
                return
        elif progressed or conn.stalled_since is None:
            conn.stalled_since = self._live.now()
        want_write = bool(conn.out)
        if want_write != conn.writing:
            conn.writing = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self._sel.modify(conn.sock, events, "client")

    # ------------------------------------------------------------------ hanging up
    def _hang_up(self, conn: _Conn, why: str, code: ErrorCode) -> None:
        """Tell the peer why (if its queue has room) and close once that is written."""
        if self._conns.get(conn.sock.fileno()) is not conn or conn.closing:
            return
        log.warning("%s dropped: %s", conn.peer.describe(), why)
        self._send(conn, ErrorReply(code=code, message=why, fatal=True))
        if self._conns.get(conn.sock.fileno()) is conn:
            conn.closing = True
            self._on_record(conn, why)
            self.dispatcher.disconnected(conn.peer, why)
            self._flush(conn)

    def _drop(self, conn: _Conn, why: str) -> None:
        """Close now, whatever is queued (a client that does not read is never waited
        for); on record."""
        log.warning("%s dropped: %s", conn.peer.describe(), why)
        self._forget(conn)
        self._on_record(conn, why)
        self.dispatcher.disconnected(conn.peer, why)

    def _on_record(self, conn: _Conn, why: str) -> None:
        if conn.peer.authenticated:
            self.core.client_dropped(conn.peer.describe(), conn.peer.role, why)

    def _lost(self, conn: _Conn, why: str) -> None:
        """The connection broke (EOF, error): forget it; S11 if it was the controller."""
        if conn.peer.authenticated or not conn.closing:
            log.info("%s gone: %s", conn.peer.describe(), why)
        self._forget(conn)
        self.dispatcher.disconnected(conn.peer, why)

    def _forget(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0 and self._conns.get(fd) is conn:
            del self._conns[fd]
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        conn.out.clear()
        conn.queued = conn.sent = 0
        with contextlib.suppress(OSError):
            conn.sock.close()


def _why(exc: OSError) -> str:
    """A peer that closed (with our messages unread: reset; while we wrote: broken pipe)
    is an EOF like any other; anything else is a socket error, named."""
    if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
        return "eof"
    return f"socket error: {exc.strerror or exc}"


def _refuse_live_or_foreign(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServerError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing the stale socket %s (no process listens on it)", path)
        return
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return
        raise ServerError(f"socket {path} exists and cannot be probed: {exc}") from None
    finally:
        probe.close()
    raise ServerError(
        f"another process is serving on {path} (a second safety process?); "
        "refusing to start: only one process may own the pump"
    )


def _peer_credentials(sock: socket.socket) -> tuple[int | None, str]:
    """The peer's pid (None if unknown) and a label for the logs."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except (OSError, AttributeError, struct.error):
        return None, "unknown peer"
    return pid, f"pid {pid} uid {uid}"


__all__ = ["MAX_WAIT_S", "Limits", "SafetyServer", "ServerError"]
