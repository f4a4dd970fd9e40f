"""What the machine did while a case ran: the evidence a failed real-time case needs.

A hil case judges real processes on a scaled clock; when the machine stops scheduling
them (another tenant of a shared VM, a browser's cold start on two cores) a case can fail
for no fault of the code, and its report alone cannot tell that from a real failure. So
every case notes the kernel's pressure-stall totals (``/proc/pressure``, PSI: how long
some runnable task waited for a CPU, for I/O, for memory) at its start, and a watcher
thread in the test process notes every time it was not run for longer than
``STALL_S``. A failed case's report ends with both (``Watch.report``): "the machine
stalled" is then a reading, not a guess.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PRESSURE = Path("/proc/pressure")
RESOURCES = ("cpu", "io", "memory")
#: the watcher's sleep, and the gap past which a wake-up counts as a stall
PERIOD_S = 0.05
STALL_S = 0.5
#: stalls kept (the oldest go first): a worker runs for minutes, a case for seconds
KEPT = 256


def read_pressure(root: Path = PRESSURE) -> dict[str, float]:
    """Seconds some task waited, per resource, since boot (the ``some`` line's
    ``total``, in microseconds); empty where the kernel has no PSI."""
    totals: dict[str, float] = {}
    for resource in RESOURCES:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in (root / resource).read_text().splitlines():
                if line.startswith("some "):
                    total = next(w for w in line.split() if w.startswith("total="))
                    totals[resource] = int(total.removeprefix("total=")) / 1e6
    return totals


@dataclass(frozen=True)
class Stall:
    at: float  # time.monotonic() when the watcher should have woken
    length_s: float  # how long past that it woke


class StallWatcher:
    """A daemon thread that sleeps ``PERIOD_S`` at a time and notes each wake-up that
    came more than ``STALL_S`` late. One per test process, started on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stalls: list[Stall] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stall-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        last = self._clock()
        while True:
            time.sleep(PERIOD_S)
            now = self._clock()
            self.note(last + PERIOD_S, now)
            last = now

    def note(self, due: float, woke: float) -> None:
        """A wake-up due at ``due`` came at ``woke``: a stall if that is ``STALL_S`` late."""
        late = woke - due
        if late > STALL_S:
            with self._lock:
                self._stalls.append(Stall(due, late))
                del self._stalls[:-KEPT]

    def since(self, start: float) -> list[Stall]:
        with self._lock:
            return [s for s in self._stalls if s.at >= start]


WATCHER = StallWatcher()


class Watch:
    """One case's view: what the machine's pressure and the watcher (started by whoever
    owns it: ``WATCHER`` by the hil fixture) saw since ``began``."""

    def __init__(self, watcher: StallWatcher = WATCHER, root: Path = PRESSURE) -> None:
        self.watcher = watcher
        self.root = root
        self.began = time.monotonic()
        self.pressure = read_pressure(root)

    def report(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        took = now - self.began
        lines = [f"the machine during this case ({took:.1f} s):"]
        after = read_pressure(self.root)
        waited = [
            f"{r} {after[r] - self.pressure[r]:.1f} s"
            for r in RESOURCES
            if r in after and r in self.pressure
        ]
        if waited:
            lines.append("  some task waited (PSI, summed over the case): " + ", ".join(waited))
        stalls = self.watcher.since(self.began)
        if stalls:
            worst = max(stalls, key=lambda s: s.length_s)
            lines.append(
                f"  this test process was not run for more than {STALL_S} s {len(stalls)} "
                f"time(s), the longest {worst.length_s:.2f} s at "
                f"{worst.at - self.began:.1f} s into the case"
            )
        else:
            lines.append(f"  this test process was never kept from running for {STALL_S} s")
        return "\n".join(lines)


__all__ = ["WATCHER", "Stall", "StallWatcher", "Watch", "read_pressure"]
