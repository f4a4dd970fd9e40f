"""The safety process's Unix socket server: one thread, one selector, the core's timers.

Why one thread: the core (kernel state, pump driver, journal) is not shared with any
other thread, so there is no lock to forget and every event is handled in the order it
happened. The loop waits at most until the core's next timer (``core.service()`` says
when: pump poll, keep-alive, heartbeat deadline, watchdog pin, stop button), and at most
``MAX_WAIT_S``; it then serves whatever sockets are ready.

A slow pump command blocks the loop. Heartbeats that arrived meanwhile are still queued
in the socket, so before the timers run again the loop drains every ready socket (with
a bound): a controller is never timed out for the safety process's own slowness.

The socket is created mode 0600 (bound under a temporary name, chmod-ed, then renamed
into place, so it is never reachable with wider permissions), in a directory created
mode 0700 if missing. A socket file left by a dead process is replaced; a live one (a
second safety process) makes ``open`` fail rather than steal the pump.

Clients are non-blocking; each has an outgoing buffer flushed as the socket allows. A
client that does not read (its buffer over ``MAX_OUTBUF``) is dropped, like one that
sends garbage: logged, and the loop carries on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.clock import Clock, MonotonicClock
from safety.host.core import SafetyCore
from safety.ipc.dispatch import Answer, Dispatcher, Peer
from safety.ipc.framing import MAX_REQUEST_BYTES, FrameError, LineFramer
from safety.ipc.messages import ErrorCode, ErrorReply, ServerMessage

log = logging.getLogger("safety.ipc")

#: longest the loop sleeps without looking at its timers
MAX_WAIT_S = 0.5
#: shortest: a timer that is always due must not turn the loop into a busy spin
MIN_WAIT_S = 0.001
#: rounds of "serve what is ready" after a busy iteration, before the timers run
DRAIN_ROUNDS = 32
MAX_OUTBUF = 16 * 1024 * 1024
RECV_BYTES = 65536
DEFAULT_MAX_CLIENTS = 8
DEFAULT_AUTH_TIMEOUT_S = 5.0


class ServerError(Exception):
    """The server cannot start (socket in use, path not usable); the message says why."""


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: Peer
    auth_deadline: float
    framer: LineFramer = field(default_factory=lambda: LineFramer(MAX_REQUEST_BYTES))
    out: bytearray = field(default_factory=bytearray)
    closing: bool = False  # hang up once ``out`` is flushed
    writing: bool = False


class SafetyServer:
    def __init__(
        self,
        core: SafetyCore,
        socket_path: str | os.PathLike[str],
        key: bytes,
        *,
        clinical_clock: str = "real",
        liveness: Clock | None = None,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S,
        tick: Callable[[], float] | None = None,
    ) -> None:
        """``tick`` runs once per loop iteration and returns seconds until it wants to run
        again (the systemd watchdog ping uses it: it runs only while the loop is alive)."""
        self.core = core
        self.path = Path(socket_path)
        self.dispatcher = Dispatcher(
            core, key, clinical_clock=clinical_clock, max_request_bytes=MAX_REQUEST_BYTES
        )
        self._live = liveness or MonotonicClock()
        self._max_clients = max_clients
        self._auth_timeout_s = auth_timeout_s
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
            with contextlib.suppress(OSError):
                conn.sock.send(bytes(conn.out))
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

    # ------------------------------------------------------------------ the loop
    def _timers(self) -> float:
        wait = self.core.service()
        self._push_notices()
        now = self._live.now()
        for conn in list(self._conns.values()):
            if not conn.peer.authenticated and not conn.closing:
                if now >= conn.auth_deadline:
                    self._hang_up(conn, "did not authenticate in time", ErrorCode.AUTH_FAILED)
                else:
                    wait = min(wait, conn.auth_deadline - now)
        if self._tick is not None:
            wait = min(wait, self._tick())
        return max(0.0, wait)

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
                if events & selectors.EVENT_WRITE and key.fd in self._conns:
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
            peer = Peer(self._next_id, _peer_label(sock))
            conn = _Conn(sock, peer, self._live.now() + self._auth_timeout_s)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, "client")
            if len(self._conns) > self._max_clients:
                self._hang_up(conn, "too many clients", ErrorCode.TOO_MANY_CLIENTS)
                continue
            log.info("%s connected", peer.describe())
            self._send(conn, self.dispatcher.greet(peer))

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
        try:
            lines = conn.framer.feed(data)
        except FrameError as exc:
            self._apply(conn, self.dispatcher.reject(conn.peer, ErrorCode.BAD_MESSAGE, str(exc)))
            return
        for line in lines:
            self._apply(conn, self.dispatcher.receive(conn.peer, line))
            if conn.closing or conn.sock.fileno() not in self._conns:
                return

    def _apply(self, conn: _Conn, answer: Answer) -> None:
        for message in answer.messages:
            self._send(conn, message)
        if answer.close:
            conn.closing = True
            self.dispatcher.disconnected(conn.peer, f"protocol error: {answer.why}")
            self._flush(conn)

    def _push_notices(self) -> None:
        notices = self.dispatcher.notices()
        if not notices:
            return
        for conn in list(self._conns.values()):
            if conn.peer.authenticated and conn.peer.subscribed and not conn.closing:
                for notice in notices:
                    self._send(conn, notice)

    # ------------------------------------------------------------------ output
    def _send(self, conn: _Conn, message: ServerMessage) -> None:
        try:
            conn.out += conn.peer.snapshots.encode(message)
        except FrameError as exc:  # our own message too big: a bug, never the client's
            log.error("not sent to %s: %s", conn.peer.describe(), exc)
            return
        if len(conn.out) > MAX_OUTBUF:
            conn.out.clear()
            self._lost(conn, "not reading its messages (output buffer full)")
            return
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0 or fd not in self._conns:
            return
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._lost(conn, _why(exc))
                return
            del conn.out[:sent]
        if not conn.out and conn.closing:
            self._forget(conn)
            return
        want_write = bool(conn.out)
        if want_write != conn.writing:
            conn.writing = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self._sel.modify(conn.sock, events, "client")

    # ------------------------------------------------------------------ hanging up
    def _hang_up(self, conn: _Conn, why: str, code: ErrorCode) -> None:
        log.warning("%s dropped: %s", conn.peer.describe(), why)
        self._send(conn, ErrorReply(code=code, message=why, fatal=True))
        if conn.sock.fileno() in self._conns:
            conn.closing = True
            self.dispatcher.disconnected(conn.peer, why)
            self._flush(conn)

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


def _peer_label(sock: socket.socket) -> str:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except (OSError, AttributeError, struct.error):
        return "unknown peer"
    return f"pid {pid} uid {uid}"


__all__ = ["MAX_WAIT_S", "SafetyServer", "ServerError"]
