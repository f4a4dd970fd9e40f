"""The host a run's figures came from: a latency figure without it means nothing.

("Host", not "machine": in this project a machine is the controller's state machine.)

The journal's file system is named too: every accepted command is journaled with
``synchronous=FULL`` (S14) before it takes effect, so the disk's flush time is part of
the command path, and a tmpfs would hide it.
"""

from __future__ import annotations

import compileall
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def describe_host(work_dir: Path) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "work_dir": str(work_dir),
        "work_dir_fs": file_system_of(work_dir),
        "load_average_at_start": load_average(),
    }


#: the project's packages, as ``pyproject.toml`` installs them (an installed copy has no
#: ``pyproject.toml`` to read; a test keeps the two lists one): what a run's children import
PROJECT_PACKAGES = (
    "firmware_bridge", "drivers", "safety", "controller", "cli", "verification", "benchmarks",
    "observe",
)  # fmt: skip


def compile_project() -> str:
    """Write the bytecode of the project's modules before any child starts, and say so.

    An installed package has its bytecode (pip compiles it at install; a process that may
    write writes it at its first start). Where ``PYTHONDONTWRITEBYTECODE`` is set (this
    project's shared development machines set it) and the checkout has none, every child
    compiled the project's sources at every start: about 1.3 MB more peak memory in a
    safety process and more start-up time, a cost no installed bench pays. Children read
    bytecode whatever that variable says; it only stops them writing it. Written next to
    the sources (``__pycache__``, ignored by git), as Python itself does."""
    root = Path(__file__).resolve().parents[1]
    failed = [
        name
        for name in PROJECT_PACKAGES
        if (root / name).is_dir() and not compileall.compile_dir(root / name, quiet=2)
    ]
    if failed:
        return f"project bytecode not written for {', '.join(failed)} (compiled at each start)"
    return "project bytecode written before the run, as an installed package has it"


def load_average() -> list[float] | None:
    """1, 5 and 15 min load averages: the figures are only as good as the machine was
    quiet (another process on a 2-core machine takes a core from the three under test)."""
    try:
        fields = Path("/proc/loadavg").read_text(encoding="utf-8").split()
        return [float(x) for x in fields[:3]]
    except (OSError, ValueError):
        return None


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        # x86: "model name"; Raspberry Pi (arm64): "Model" names the board
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.machine() or "unknown"


def file_system_of(path: Path) -> str:
    """'ext4 (/dev/vda on /)' for the mount holding ``path`` (from /proc/self/mounts)."""
    try:
        target = path.resolve()
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    best: tuple[int, str] = (-1, "unknown")
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount_point, fs_type = parts[0], parts[1].replace("\\040", " "), parts[2]
        mp = Path(mount_point)
        if (target == mp or mp in target.parents) and len(mount_point) > best[0]:
            best = (len(mount_point), f"{fs_type} ({device} on {mount_point})")
    return best[1]


def tmpfs_dir() -> Path | None:
    """A RAM file system for a journal that should not wait for a disk (``/dev/shm``), or
    None when this host has none: what the same run looks like without the disk's
    flushes tells the software's time from the disk's."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and file_system_of(shm).startswith("tmpfs"):
        return shm
    return None


class CpuMeter:
    """CPU time the rest of the host used while the benchmark ran.

    The host's busy time (``/proc/stat``) minus this process's and its reaped
    children's (``os.times``): what other processes took, in cores on average. The
    benchmark's own processes are waited for before the meter is read, so they count as
    its own."""

    def __init__(self) -> None:
        self._busy0 = _host_busy_s()
        self._own0 = _own_cpu_s()
        self._t0 = time.monotonic()

    def others_cores(self) -> float | None:
        busy0, busy1 = self._busy0, _host_busy_s()
        if busy0 is None or busy1 is None:
            return None
        elapsed = time.monotonic() - self._t0
        if elapsed <= 0:
            return None
        others = (busy1 - busy0) - (_own_cpu_s() - self._own0)
        return max(0.0, others / elapsed)


def _host_busy_s() -> float | None:
    try:
        fields = Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu" or len(fields) < 8:
        return None
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process in MB of 10^6 bytes, the stricter
    reading of the goals' "MB" (None once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            kib = int(line.split()[1])
            return kib * 1024 / 1e6
    return None


__all__ = [
    "PROJECT_PACKAGES",
    "CpuMeter",
    "compile_project",
    "describe_host",
    "file_system_of",
    "load_average",
    "vm_hwm_mb",
]
