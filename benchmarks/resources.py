"""Start-up time of the safety process, and the durable journal's cost on this disk.

Start-up is timed from spawning ``python -m safety --config FILE`` to its ``ready
<socket>`` line (``safety.ipc.client.start_safety_process``): interpreter start, imports,
config and library validation, journal open and replay, pump connect, socket. Each
repetition is a fresh bench directory (an empty journal, the mock pump); restarts over
a journal with history are timed by the liveness benchmark.

Peak memory (VmHWM from /proc/<pid>/status) is read from every safety process and
controller child the other benchmarks run, just before each is stopped.

The journal figure times one write-ahead append (SQLite WAL, ``synchronous=FULL``: a
flush to the device) in the run's directory: a dose change waits for two of them (the
verdict with its pump command, then the read-back), a start for three.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import interrupt
from benchmarks.host import vm_hwm_mb
from benchmarks.processes import Pool, SafetySetup
from safety.journal import Journal


def measure_startup(pool: Pool, repetitions: int) -> tuple[list[float], list[float]]:
    """Seconds to ready for fresh safety processes, and their peak RSS (MB)."""
    ready: list[float] = []
    peaks: list[float] = []
    for _ in range(repetitions):
        interrupt.check()
        safety = pool.safety(SafetySetup("mock"))
        ready.append(safety.ready_s)
        peak = vm_hwm_mb(safety.pid)
        if peak is not None:
            peaks.append(peak)
        pool.stop(safety.child.process)
    return ready, peaks


def measure_journal_commit(directory: Path, appends: int) -> list[float]:
    """Seconds per durable append of a small entry, in ``directory``."""
    journal = Journal(directory / "commit-probe.sqlite", "bench")
    try:
        samples = []
        for i in range(appends):
            started = time.perf_counter()
            journal.append("probe", f'{{"i": {i}}}', 0.0, 0.0)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        journal.close()


__all__ = ["measure_journal_commit", "measure_startup"]
