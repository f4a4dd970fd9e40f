"""Starting the safety process as a child: ``start_safety_process`` and its handle.

A parent (``pumpctl run``, the demo, the scenario runner's real bench, the benchmarks,
tests) runs ``python -m safety`` and waits for its ``ready <socket>`` line; then it talks
to it over the socket like any controller (``safety.ipc.client``). Nothing of the safety
process is imported here: it is started by name, in its own process group, and outlives
its parent on purpose (S11).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from safety.ipc.link import SafetyStartFailed


@dataclass
class SafetyChild:
    """A safety process started by ``start_safety_process``."""

    process: subprocess.Popen[bytes]
    socket_path: str
    #: where its log (stderr) goes, when the parent gave it a file
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM (a clean shutdown that leaves the pump running), SIGKILL after
        ``timeout_s``; return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def start_safety_process(
    config: str | os.PathLike[str],
    *,
    socket_path: str | os.PathLike[str] | None = None,
    journal: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
    timeout_s: float = 30.0,
    new_session: bool = True,
    stderr: int | None = None,
    log_path: Path | None = None,
) -> SafetyChild:
    """Start ``python -m safety`` as a child and wait for its ``ready <socket>`` line.

    ``new_session`` (default): the child gets its own session and process group, so a
    Ctrl-C or a hang-up aimed at the controller's terminal does not also stop the safety
    process (S11: it must outlive the controller, hold the rate and alarm). Its log goes
    to ``stderr`` (default: inherited; never a pipe nobody reads, which would block it);
    ``log_path`` only records, for the caller's messages, which file that is.
    Raises ``SafetyStartFailed`` if it exits first (status 2: invalid config or library)
    or is not ready within ``timeout_s`` (it is killed then).
    """
    args = [python, "-m", "safety", "--config", os.fspath(config)]
    for flag, value in (
        ("--socket", socket_path),
        ("--journal", journal),
        ("--key-file", key_file),
    ):
        if value is not None:
            args += [flag, os.fspath(value)]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=stderr, start_new_session=new_session
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0:
                line, buffer = buffer[:newline].decode("utf-8", "replace"), buffer[newline + 1 :]
                if line.startswith("ready "):
                    return SafetyChild(process, line.removeprefix("ready ").strip(), log_path)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                process.wait(5.0)
                raise SafetyStartFailed(
                    f"the safety process was not ready within {timeout_s:g} s", None
                )
            if sel.select(min(left, 0.5)):
                chunk = os.read(process.stdout.fileno(), 4096)
                if chunk:
                    buffer += chunk
                    continue
                code = process.wait(5.0)
                raise SafetyStartFailed(
                    f"the safety process exited with status {code} before it was ready"
                    + (" (invalid config or drug library; see its log)" if code == 2 else ""),
                    code,
                )
