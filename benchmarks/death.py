"""Liveness: how soon a death is noticed, across real process boundaries.

- controller SIGKILL -> the safety process's alarm pin goes high (S11: the socket's EOF
  is seen at once; the alarm is journaled, then set);
- controller SIGSTOP -> alarm pin high once its heartbeats stop (S11: the heartbeat
  timeout; the last heartbeat went out up to a quarter of it before the stop);
- safety process SIGKILL -> the controller's session raises its own
  ``controller:safety_link_lost`` alarm (the link's EOF, then the session's service thread).

The controller is a child process (``controller_child``) the benchmark controls; the
safety process runs the mock pump and simulated GPIO, whose pins are a JSON file any
process can read (``drivers.gpio.simulated``; the controller may not import drivers, so
the file is read here as a probe on the pin would be: the alarm pin's level, active
high as configured). Times are CLOCK_MONOTONIC readings: the benchmark's just before
the signal, and the pin's first high reading (polled every ``PROBE_S``) or the child's
own stamp on its alarm line. Every repetition starts from a quiet pin: the new controller
attaches and acknowledges what the last death latched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import interrupt
from benchmarks.host import vm_hwm_mb
from benchmarks.processes import BenchError, Pool, Safety, SafetySetup

#: how often the pin file is read while waiting for the alarm (the figures' resolution)
PROBE_S = 0.0002
#: bounded waits (not requirements): a child becoming ready, a quiet pin after attach
READY_TIMEOUT_S = 30.0
QUIET_TIMEOUT_S = 5.0
#: how long past the goal a death may go unnoticed before it counts as never seen
SEEN_TIMEOUT_S = 10.0
LINK_LOST = "controller:safety_link_lost"


@dataclass
class DeathResult:
    heartbeat_timeout_s: float
    controller_kill_s: list[float] = field(default_factory=list)
    controller_stop_s: list[float] = field(default_factory=list)
    safety_kill_s: list[float] = field(default_factory=list)
    controller_peaks_mb: list[float] = field(default_factory=list)
    safety_peaks_mb: list[float] = field(default_factory=list)
    restart_ready_s: list[float] = field(default_factory=list)


def alarm_pin_high(gpio_dir: Path) -> bool | None:
    """The alarm pin's level from the simulated GPIO file (None: not readable yet)."""
    try:
        data = json.loads((gpio_dir / "pins.json").read_text(encoding="utf-8"))
        pin = str(data["functions"]["alarm"])
        return bool(data["pins"][pin]["level"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _until(condition: Callable[[], bool], timeout_s: float, interval_s: float) -> float | None:
    """CLOCK_MONOTONIC when ``condition`` first holds, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval_s)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


class Liveness:
    """One safety process with simulated GPIO, and controller children on it."""

    def __init__(self, pool: Pool, heartbeat_timeout_s: float) -> None:
        self.pool = pool
        self.setup = SafetySetup("mock", gpio=True, heartbeat_timeout_s=heartbeat_timeout_s)
        self.safety: Safety = pool.safety(self.setup)
        self.dir = self.safety.config.parent
        self._children = 0
        self.result = DeathResult(heartbeat_timeout_s)

    @property
    def gpio(self) -> Path:
        assert self.safety.gpio_dir is not None
        return self.safety.gpio_dir

    def controller(self) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a controller child; return it and its output file once it is ready
        (attached, infusing, alarms acknowledged and the alarm pin low)."""
        self._children += 1
        n = self._children
        out = self.dir / f"controller-{n}.out"
        with out.open("wb") as stdout, (self.dir / f"controller-{n}.err").open("wb") as stderr:
            process = self.pool.spawn(
                [
                    sys.executable, "-m", "benchmarks.controller_child",
                    str(self.safety.config), str(self.dir / f"controller-{n}.sqlite"),
                ],
                stdout=stdout, stderr=stderr,
            )  # fmt: skip
        ready = _until(
            lambda: (
                any(line.startswith("ready ") for line in _lines(out)) or process.poll() is not None
            ),
            READY_TIMEOUT_S,
            0.01,
        )
        if ready is None or process.poll() is not None:
            err = (self.dir / f"controller-{n}.err").read_text(errors="replace").strip()
            raise BenchError(f"the controller child did not become ready: {err[-400:]}")
        if _until(lambda: alarm_pin_high(self.gpio) is False, QUIET_TIMEOUT_S, 0.005) is None:
            raise BenchError(
                "the alarm pin stayed high after a controller attached and acknowledged"
            )
        peak = vm_hwm_mb(process.pid)
        if peak is not None:
            self.result.controller_peaks_mb.append(peak)
        return process, out

    def controller_death(self, sig: signal.Signals) -> float:
        """Seconds from ``sig`` to the controller until the alarm pin is high."""
        child, _ = self.controller()
        limit = self.result.heartbeat_timeout_s + SEEN_TIMEOUT_S
        sent = time.monotonic()
        os.kill(child.pid, sig)
        seen = _until(lambda: alarm_pin_high(self.gpio) is True, limit, PROBE_S)
        self.pool.stop(child, kill=True)
        if seen is None:
            raise BenchError(
                f"no alarm on the pin within {limit:g} s of {sig.name} to the controller"
            )
        return seen - sent

    def safety_death(self) -> float:
        """Seconds from SIGKILL to the safety process until the controller's session
        raises its link-lost alarm; the safety process is then restarted on its journal."""
        child, out = self.controller()
        peak = vm_hwm_mb(self.safety.pid)
        if peak is not None:
            self.result.safety_peaks_mb.append(peak)
        sent = time.monotonic()
        os.kill(self.safety.pid, signal.SIGKILL)
        prefix = f"alarm {LINK_LOST} "
        found = _until(
            lambda: any(line.startswith(prefix) for line in _lines(out)), SEEN_TIMEOUT_S, 0.001
        )
        self.pool.stop(self.safety.child.process)  # reap it
        self.pool.stop(child, kill=True)
        if found is None:
            raise BenchError(
                f"the controller did not raise {LINK_LOST} within {SEEN_TIMEOUT_S:g} s"
            )
        stamp = next(line for line in _lines(out) if line.startswith(prefix))
        seen = float(stamp.split()[2])
        self.safety = self.pool.safety(self.setup, where=self.dir)
        self.result.restart_ready_s.append(self.safety.ready_s)
        return seen - sent

    def close(self) -> None:
        peak = vm_hwm_mb(self.safety.pid)
        if peak is not None:
            self.result.safety_peaks_mb.append(peak)
        self.pool.stop(self.safety.child.process)


def measure_liveness(
    pool: Pool, *, heartbeat_timeout_s: float, kills: int, stops: int, safety_kills: int
) -> DeathResult:
    bench = Liveness(pool, heartbeat_timeout_s)
    try:
        for _ in range(kills):
            interrupt.check()
            bench.result.controller_kill_s.append(bench.controller_death(signal.SIGKILL))
        for _ in range(stops):
            interrupt.check()
            bench.result.controller_stop_s.append(bench.controller_death(signal.SIGSTOP))
        for _ in range(safety_kills):
            interrupt.check()
            bench.result.safety_kill_s.append(bench.safety_death())
    finally:
        bench.close()
    return bench.result


__all__ = ["DeathResult", "alarm_pin_high", "measure_liveness"]
