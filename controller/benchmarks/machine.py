"""The machine a run's figures came from: a latency figure without it means nothing.

The journal's file system is named too: every accepted command is journaled with
``synchronous=FULL`` (S14) before it takes effect, so the disk's flush time is part of
the command path, and a tmpfs would hide it.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def describe_machine(work_dir: Path) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "work_dir": str(work_dir),
        "work_dir_fs": file_system_of(work_dir),
    }


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


__all__ = ["describe_machine", "file_system_of", "vm_hwm_mb"]
