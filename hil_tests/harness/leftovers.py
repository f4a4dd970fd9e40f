"""What a case may leave behind: nothing. Processes, sockets, ptys and runtime files are
compared before and after each case (``conftest.no_leftovers``).

Why a check and not only a careful tear-down: a case that leaks a process or a socket
still passes, and the next case (or the next CI job on the machine) inherits a pump
emulator on a pty, a safety process holding a journal lock, or a socket path in use. The
check turns that into a failure of the case that leaked.

Looked at, from ``/proc`` (Linux):
- child processes of this test process (``PPid``), zombies included (an unreaped child);
- any process whose command line names a runtime directory created during the case
  (a grandchild or a child that was re-parented after its parent died);
- this process's open sockets and pseudo-terminal descriptors;
- the runtime directories created during the case (they must be gone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _status_field(pid: str, name: str) -> str | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return None


def _cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def child_processes() -> dict[int, str]:
    """Live (or unreaped) children of this process: pid -> command line."""
    me = str(os.getpid())
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _status_field(entry, "PPid") == me:
            out[int(entry)] = _cmdline(entry)
    return out


def processes_naming(paths: list[Path]) -> dict[int, str]:
    """Processes (any parent) whose command line mentions one of ``paths``."""
    if not paths:
        return {}
    needles = [str(p) for p in paths]
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmd = _cmdline(entry)
        if any(n in cmd for n in needles):
            out[int(entry)] = cmd
    return out


def open_channels() -> dict[int, str]:
    """This process's open sockets and ptys: fd -> what it is."""
    out: dict[int, str] = {}
    fd_dir = "/proc/self/fd"
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed between listdir and readlink (the listdir fd itself)
        if target.startswith("socket:") or target.startswith(("/dev/pts/", "/dev/ptmx")):
            out[int(name)] = target
    return out


@dataclass(frozen=True)
class Census:
    children: dict[int, str]
    channels: dict[int, str]

    @classmethod
    def take(cls) -> Census:
        return cls(child_processes(), open_channels())


def problems(before: Census, runtime_dirs: list[Path]) -> list[str]:
    """What is left now that was not there in ``before`` (empty: clean)."""
    found: list[str] = []
    for pid, cmd in child_processes().items():
        if pid not in before.children:
            found.append(f"child process {pid} still there: {cmd[:200]}")
    for pid, cmd in processes_naming(runtime_dirs).items():
        found.append(f"process {pid} still uses a case's runtime dir: {cmd[:200]}")
    for fd, what in open_channels().items():
        if fd not in before.channels:
            found.append(f"fd {fd} left open in the test process: {what}")
    for path in runtime_dirs:
        if path.exists():
            left = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
            found.append(f"runtime dir {path} not removed (holds {left[:10]})")
    return found
