"""Process harness shared by the real-process tests (``hil_tests/`` and
``tests/safety_process/``): bounded waiting, child processes that are always cleaned up,
a raw protocol client for the safety socket, and a tiny TOML writer for configs.

Why here: the hardware-in-the-loop suite and the safety process's own real-process tests
start the same processes the same way; one implementation keeps their clean-up and their
timeouts alike."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from safety.ipc import auth
from safety.ipc.framing import MAX_SERVER_BYTES, LineFramer, decode_server, encode
from safety.ipc.messages import (
    Challenge,
    ClientMessage,
    Hello,
    Reply,
    RequestMessage,
    Role,
    ServerMessage,
    Welcome,
)
from safety.kernel.model import RequestBody

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
#: the safety process's unit file (``unit_niceness``)
SAFETY_UNIT = REPO / "config" / "systemd" / "pumpctl-safety.service"


def unit_niceness(unit: Path = SAFETY_UNIT) -> int:
    """The ``Nice=`` a systemd unit runs its process at (0 where it sets none): the hil
    benches run the safety process as its unit does, where they may."""
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "Nice":
            return int(value.strip())
    return 0


T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout_s: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` every 20 ms until it returns something truthy; fail after
    ``timeout_s``. The bound is a failure, never a sleep that makes a test pass."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


class RawClient:
    """Speaks the protocol line by line, so tests can send what a real client never would."""

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(os.fspath(path))
        self.framer = LineFramer(MAX_SERVER_BYTES)
        self.queue: list[bytes] = []

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: ClientMessage) -> None:
        self.sock.sendall(encode(message))

    def read(self) -> ServerMessage:
        """The next message; raises EOFError when the server hangs up."""
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.queue.extend(self.framer.feed(data))
        return decode_server(self.queue.pop(0))

    def read_until(self, kind: type[T], limit: int = 50) -> T:
        """Skip pushed notices until a ``kind`` arrives."""
        for _ in range(limit):
            message = self.read()
            if isinstance(message, kind):
                return message
        raise AssertionError(f"no {kind.__name__} in {limit} messages")

    def authenticate(
        self, key: bytes, name: str = "raw-test", role: Role = "controller"
    ) -> Welcome:
        challenge = self.read()
        assert isinstance(challenge, Challenge)
        cnonce = auth.new_nonce()
        nonce = bytes.fromhex(challenge.nonce)
        self.send(
            Hello(
                client=name,
                cnonce=cnonce.hex(),
                mac=auth.client_proof(key, nonce, cnonce),
                role=role,
            )
        )
        welcome = self.read()
        assert isinstance(welcome, Welcome), welcome
        return welcome

    def closed_by_server(self, timeout_s: float = 5.0) -> bool:
        """True once the server has hung up (all pending messages are discarded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return True
            if not data:
                return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def unattached_request(socket_path: str | os.PathLike[str], key: bytes, body: RequestBody) -> Reply:
    """A request from an authenticated connection that holds no session: the kernel
    decides it all the same and says why it refuses (e.g. a change while it holds)."""
    raw = RawClient(socket_path)
    try:
        raw.authenticate(key)
        raw.send(
            RequestMessage(id=1, session=None, seq=1, expires_at=time.monotonic() + 5, body=body)
        )
        return raw.read_until(Reply)
    finally:
        raw.close()


# --------------------------------------------------------------------------- strays


#: another process that opens connections and never authenticates. ``count`` kept
#: open at once (silent), or with ``forever``: a new one every 2 ms, each held 1 s, until
#: killed. Prints how many the server closed on it ("evicted").
STRAY = """
import socket, sys, time
path, count, forever = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
held = []
print("ready", flush=True)
while True:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    held.append((time.monotonic(), s))
    if not forever and len(held) >= count:
        break
    time.sleep(0.002)
    while forever and held and held[0][0] < time.monotonic() - 1.0:
        held.pop(0)[1].close()
time.sleep(1.0)
evicted = 0
for _, s in held:
    s.settimeout(0.5)
    try:
        data = s.recv(65536) + s.recv(65536)
    except OSError:
        continue
    evicted += b"evicted" in data
print("evicted", evicted, flush=True)
"""


def stray(
    path: str | os.PathLike[str], count: int, *, forever: bool = False
) -> subprocess.Popen[str]:
    """Start ``STRAY`` (another process: the safety process counts waiting connections
    per process); returns once it connects. Kill it when done."""
    process = subprocess.Popen(
        [sys.executable, "-c", STRAY, os.fspath(path), str(count), "1" if forever else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


# --------------------------------------------------------------------------- child processes


def _text(line: bytes) -> str:
    """A line as text, without its line end (``\n`` or ``\r\n``)."""
    return line.removesuffix(b"\r").decode("utf-8", "replace")


class _Output:
    """One output pipe of a child, split into lines by a reader thread, and readable to
    its end on demand (``drain``): both read under one lock, without blocking, so after
    ``drain`` every byte the child had written before it is a line in ``lines``. A
    reader thread alone may lag behind (it needs the interpreter to run): a case that
    counts an emulator's frames right after a reply would miss the last one."""

    def __init__(self, stream: Any, *, follow: bool = True) -> None:
        """``follow``: start the reader thread (without it, only ``drain`` reads). The
        stream stays Popen's (it closes it); it is read here through its descriptor."""
        self.fd: int = stream.fileno()
        os.set_blocking(self.fd, False)
        self.lines: list[str] = []
        self._partial = b""
        self._eof = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        if follow:
            self.thread.start()

    def _follow(self) -> None:
        while not self._eof:
            with contextlib.suppress(OSError, ValueError):
                select.select([self.fd], [], [])
            self.drain()

    def drain(self) -> None:
        """Read everything in the pipe now, into ``lines``."""
        with self._lock:
            while not self._eof:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    return
                except (OSError, ValueError):  # closed under us: nothing more will come
                    chunk = b""
                if not chunk:
                    self._eof = True
                    if self._partial:
                        self.lines.append(_text(self._partial))
                    return
                *complete, self._partial = (self._partial + chunk).split(b"\n")
                self.lines.extend(_text(line) for line in complete)


class Child:
    """A child process whose stdout lines are collected by a thread; killed on exit."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        niceness: int | None = None,
    ) -> None:
        """``niceness``: set on the child as soon as it runs, before it starts a thread
        (they inherit it); left as it is where this process may not (a negative one
        needs root)."""
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=cwd or REPO,
            start_new_session=True,
        )
        if niceness is not None:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, niceness)
        self._stdout = _Output(self.proc.stdout)
        self._stderr = _Output(self.proc.stderr)
        self._threads = [self._stdout.thread, self._stderr.thread]

    @property
    def lines(self) -> list[str]:
        """Every stdout line the child wrote before this call (the pipe is drained first:
        a frame counted right after a reply, a line logged before an answer, is there)."""
        self._stdout.drain()
        return self._stdout.lines

    @property
    def errors(self) -> list[str]:
        """Every stderr line the child wrote before this call (drained, as ``lines``)."""
        self._stderr.drain()
        return self._stderr.lines

    @property
    def pid(self) -> int:
        return self.proc.pid

    def first_line(self, timeout_s: float = 20.0) -> str:
        """The first stdout line (an emulator prints where to connect there)."""
        return self.wait_line("", timeout_s)

    def wait_line(self, prefix: str, timeout_s: float = 20.0) -> str:
        def seen() -> str | None:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            return None

        def found() -> str | None:
            line = seen()
            if line is not None:
                return line
            if self.proc.poll() is not None:
                for t in self._threads:  # the last lines may still be in the pipe
                    t.join(timeout=2)
                line = seen()
                if line is not None:
                    return line
                raise AssertionError(
                    f"{self.args[2:4]} exited with {self.proc.returncode} before printing "
                    f"{prefix!r}; stdout (last lines):\n"
                    + "\n".join(self.lines[-5:])
                    + "\nstderr:\n"
                    + "\n".join(self.errors[-30:])
                )
            return None

        return wait_for(found, timeout_s, f"{prefix!r} from {self.args[:4]}")

    def wait(self, timeout_s: float) -> int:
        """Its exit status, once it has exited and every line it wrote has been read
        (bounded: a child still running after ``timeout_s`` fails the case)."""
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args[2:5]} still running after {timeout_s} s") from None
        for t in self._threads:
            t.join(timeout=2)
        return code

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGCONT (in case it is stopped), SIGTERM, then SIGKILL; always reaped."""
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        for t in self._threads:
            t.join(timeout=2)

    def stderr_text(self) -> str:
        return "\n".join(self.errors)

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Every child appended to the list is stopped at the end, whatever happened."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def safety_args(config: Path) -> list[str]:
    return [PYTHON, "-m", "safety", "--config", str(config), "--log-level", "debug"]


def write_toml(path: Path, table: dict[str, Any]) -> Path:
    """A tiny TOML writer for the config shapes used here (tables of scalars, nested)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        return json.dumps(str(value))

    def emit(prefix: str, data: dict[str, Any]) -> None:
        simple = {k: v for k, v in data.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in data.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in simple.items():
            lines.append(f"{k} = {scalar(v)}")
        for k, v in nested.items():
            emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", table)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ready_socket(child: Child) -> str:
    return child.wait_line("ready ").split(" ", 1)[1]


def wait_readable(sock: socket.socket, timeout_s: float) -> bool:
    return bool(select.select([sock], [], [], timeout_s)[0])
