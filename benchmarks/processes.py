"""Everything a benchmark run starts, and the guarantee that it all ends.

``Pool`` owns a temporary directory (journals, sockets, keys, logs, simulated GPIO
pins) and every child process: emulators (``python -m firmware_bridge.emulators``, which
also own their ptys), safety processes (``python -m safety``) and controller children.
``Pool.close()`` ends each child (SIGCONT for a stopped one, SIGTERM, then SIGKILL after
a bounded wait) and removes the directory; the command calls it in a ``finally``, so an
error, a Ctrl-C or a SIGTERM leaves nothing behind. Children run in their own sessions,
so the terminal's Ctrl-C reaches only the benchmark, which then cleans up in order.

The emulator's stdout goes to a file, not a pipe: it logs every frame, and a pipe nobody
drains would stall it; the benchmark reads the first line (where to connect) and later the
frames of the commands it measures from that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from safety.ipc.client import SafetyClient
from safety.ipc.launch import SafetyChild, start_safety_process
from safety.status import Outcome

#: bounded waits for a child to come up or go away (not timing requirements)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
#: a Unix socket path must fit sockaddr_un
MAX_SOCKET_PATH = 107


class BenchError(Exception):
    """A benchmark could not be run (a child did not start, a command was refused)."""


def require_accepted(outcome: Outcome, what: str, pump_action: bool = False) -> None:
    """A benchmark's command must be accepted (and, for ``pump_action``, carried out at
    the pump): anything else means the figure would measure something else."""
    if not outcome.verdict.accepted:
        raise BenchError(
            f"the safety process refused to {what}: {outcome.verdict.message} "
            f"({outcome.verdict.reason})"
        )
    if pump_action and outcome.execution != "applied":
        raise BenchError(f"{what}: accepted but not carried out at the pump: {outcome.execution}")


@dataclass(frozen=True)
class Frame:
    """One frame the emulator logged: ``rx`` host -> pump, ``tx`` pump -> host."""

    at: float  # the emulator's time.monotonic() (CLOCK_MONOTONIC, ms resolution)
    direction: str
    data: bytes


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    where: str  # pty path or host:port, the emulator's first line
    log_path: Path

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def frames(self, since_offset: int = 0) -> list[Frame]:
        with self.log_path.open("rb") as handle:
            handle.seek(since_offset)
            text = handle.read().decode("ascii", "replace")
        return [f for f in (parse_frame(line) for line in text.splitlines()) if f is not None]


def parse_frame(line: str) -> Frame | None:
    """``"12.345 ne1000 rx 30 56 45 52 0d |0VER.|"`` -> Frame; other lines -> None."""
    parts = line.split()
    if len(parts) < 4 or parts[2] not in ("rx", "tx"):
        return None
    try:
        at = float(parts[0])
    except ValueError:
        return None
    octets: list[int] = []
    for token in parts[3:]:
        if len(token) != 2:
            break
        try:
            octets.append(int(token, 16))
        except ValueError:
            break
    return Frame(at, parts[2], bytes(octets)) if octets else None


@dataclass
class Safety:
    """A safety process this run started, with what a client needs to reach it."""

    child: SafetyChild
    config: Path
    socket: Path
    key_file: Path
    ready_s: float  # from spawning to its "ready" line
    gpio_dir: Path | None

    @property
    def pid(self) -> int:
        return self.child.process.pid

    def alive(self) -> bool:
        return self.child.process.poll() is None

    def client(self, name: str = "pumpctl-bench") -> SafetyClient:
        return SafetyClient(self.socket, key_file=self.key_file, name=name)


@dataclass(frozen=True)
class SafetySetup:
    """What goes into a generated safety config (the reference is demo-safety.toml)."""

    driver: str  # mock | ne1000 | modbus
    options: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    gpio: bool = False  # simulated GPIO pins in <dir>/gpio
    heartbeat_timeout_s: float = 2.0
    poll_period_s: float = 1.0
    keep_alive_period_s: float = 2.0
    syringe: str = "bd-plastipak-50ml"


class Pool:
    """A temporary directory and the children of one benchmark run."""

    def __init__(self, parent: Path | None = None, *, keep: bool = False) -> None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="pumpctl-bench-", dir=parent))
        self.keep = keep
        self._children: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []
        self._counter = 0

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ places
    def new_dir(self, name: str) -> Path:
        self._counter += 1
        path = self.root / f"{self._counter:02d}-{name}"
        path.mkdir()
        return path

    def _log(self, path: Path) -> IO[bytes]:
        handle = path.open("ab")
        self._files.append(handle)
        return handle

    # ------------------------------------------------------------------ children
    def spawn(
        self,
        args: Sequence[str],
        *,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(args), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self._children.append(process)
        return process

    def adopt(self, process: subprocess.Popen[bytes]) -> None:
        self._children.append(process)

    def emulator(self, protocol: str, *args: str) -> Emulator:
        """Start ``python -m firmware_bridge.emulators PROTOCOL ARGS`` and wait for its
        first line (where to connect)."""
        where_dir = self.new_dir(f"emulator-{protocol}")
        out_path = where_dir / "frames.log"
        out = self._log(out_path)
        err = self._log(where_dir / "stderr.log")
        process = self.spawn(
            [sys.executable, "-m", "firmware_bridge.emulators", protocol, *args],
            stdout=out,
            stderr=err,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = out_path.read_bytes()
            if b"\n" in text:
                where = text.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
                return Emulator(process, where, out_path)
            if process.poll() is not None:
                tail = (where_dir / "stderr.log").read_text(errors="replace").strip()
                raise BenchError(
                    f"the {protocol} emulator exited with status {process.returncode}: {tail}"
                )
            if time.monotonic() > deadline:
                raise BenchError(f"the {protocol} emulator did not start")
            time.sleep(0.01)

    def safety(self, setup: SafetySetup, *, where: Path | None = None) -> Safety:
        """Write a config for ``setup`` and start a safety process on it (or, with
        ``where`` an existing bench directory, restart one on its journal)."""
        bench = where if where is not None else self.new_dir(f"safety-{setup.driver}")
        config = bench / "safety.toml"
        if where is None:
            write_safety_config(config, setup)
        log = self._log(bench / "safety.log")
        started = time.perf_counter()
        try:
            child = start_safety_process(
                config, python=sys.executable, timeout_s=START_TIMEOUT_S, stderr=log.fileno()
            )
        except Exception as exc:
            tail = (bench / "safety.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(
                f"the safety process did not start: {exc}: {' | '.join(tail)}"
            ) from None
        ready = time.perf_counter() - started
        self.adopt(child.process)
        return Safety(
            child,
            config,
            Path(child.socket_path),
            bench / "ipc.key",
            ready,
            bench / "gpio" if setup.gpio else None,
        )

    # ------------------------------------------------------------------ the end
    def stop(self, process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
        """End one child: SIGKILL at once with ``kill``, else SIGTERM, then SIGKILL."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a stopped child cannot act on SIGTERM
                process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """End every child (the newest first) and remove the directory; never raises."""
        while self._children:
            process = self._children.pop()
            with contextlib.suppress(Exception):
                self.stop(process)
        with contextlib.suppress(Exception):
            self._kill_strays()
        for handle in self._files:
            with contextlib.suppress(OSError):
                handle.close()
        self._files.clear()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_strays(self) -> None:
        """A child whose handle never reached the pool (a Ctrl-C while
        ``start_safety_process`` waited for its 'ready' line) still names the run's
        directory on its command line: find it in /proc and kill it."""
        marker = os.fsencode(self.root)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signal.SIGKILL)
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(int(entry.name), 0)


def write_safety_config(path: Path, setup: SafetySetup) -> None:
    """A safety config (TOML) with every path inside ``path``'s directory."""
    here = path.parent
    socket = here / "safety.sock"
    if len(os.fsencode(socket)) > MAX_SOCKET_PATH:
        raise BenchError(
            f"the benchmark's directory {here} is too deep for a Unix socket path "
            f"(at most {MAX_SOCKET_PATH} bytes): choose a shorter --work-dir"
        )
    lines = [
        "# written by pumpctl bench; reference: config/bench/demo-safety.toml",
        "[pump]",
        f"driver = {_toml(setup.driver)}",
        f"syringe = {_toml(setup.syringe)}",
    ]
    if setup.options:
        lines.append("[pump.mock]" if setup.driver == "mock" else "[pump.options]")
        lines += [f"{key} = {_toml(value)}" for key, value in setup.options.items()]
    if setup.gpio:
        lines += ["[gpio]", 'backend = "simulated"', f"state_dir = {_toml(str(here / 'gpio'))}"]
    else:
        lines += ["[gpio]", 'backend = "none"']
    lines += [
        "[timing]",
        f"heartbeat_timeout_s = {_toml(setup.heartbeat_timeout_s)}",
        f"poll_period_s = {_toml(setup.poll_period_s)}",
        f"keep_alive_period_s = {_toml(setup.keep_alive_period_s)}",
        "[paths]",
        f"journal = {_toml(str(here / 'safety-journal.sqlite'))}",
        f"socket = {_toml(str(socket))}",
        f"key_file = {_toml(str(here / 'ipc.key'))}",
        "[clock]",
        'clinical = "real"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a TOML basic string for the ASCII paths and names used here


__all__ = [
    "BenchError",
    "Emulator",
    "Frame",
    "Pool",
    "Safety",
    "SafetySetup",
    "parse_frame",
    "write_safety_config",
]
