"""Simulation speed: a 24 h norepinephrine course on the virtual clock, in one process.

The same code as a real bench (``Session`` -> ``SafetyLink`` -> dispatcher -> safety core
-> kernel -> mock driver -> the one simulated pump), every message encoded to its JSON
line and decoded again (``LocalSafety``), both journals written (SQLite in memory: this
figure is about the code, not the disk). Only the operating-system boundary is missing.

The course: program 4 mg/250 mL in D5W, start at 8 mcg/min, titrate to 12 (1 h) and 16
(3 h), wean to 10 (8 h), titrate to 14 (14 h), stop (20 h: weaned to the 2 mcg/min stop
threshold, then stopped), all through two-step plans the session sends when due. The
script advances the clock the way a scenario runner would: to the next planned step, the
next scripted action, or ``MAX_STEP_S``, whichever comes first.

A day of norepinephrine at 8-16 mcg/min is 0.7-1.4 L at 16 mcg/mL: no syringe holds it, so
the nurse changes the syringe whenever less than ``REFILL_BELOW_ML`` is left, without
interrupting the flow (as a second, primed pump would): the simulated syringe is set back
to full (``SimulatedPump.empty_syringe(remaining_ml=...)``, which sets the volume left).

Timing on the liveness clock, chosen for simulation (every one of these runs per
simulated second otherwise): the safety core polls the pump every ``POLL_S`` and sends a
keep-alive as often; the heartbeat timeout is ``HEARTBEAT_TIMEOUT_S`` (heartbeats every
quarter of it). A real bench polls every second; the simulated pump cannot drift between
polls, so a longer period changes what is simulated only in when a read-back happens.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import interrupt
from controller.machine import State
from controller.session import Session
from safety.ipc.local import LocalSafety
from safety.library import DrugLibrary, load_library
from safety.timing import HostTiming

HOUR = 3600.0
#: how far the clock moves at most between two looks at the session (virtual seconds)
MAX_STEP_S = 300.0
#: a syringe change before the pump's near-empty alarm (10 % of 50 mL); at the course's
#: fastest rate (60 mL/h) one MAX_STEP_S uses 5 mL
REFILL_BELOW_ML = 15.0
POLL_S = 60.0
HEARTBEAT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SimTiming:
    poll_period_s: float = POLL_S
    heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S

    def describe(self) -> str:
        return (
            f"pump poll and keep-alive every {self.poll_period_s:g} s, heartbeat timeout "
            f"{self.heartbeat_timeout_s:g} s (heartbeats every "
            f"{self.heartbeat_timeout_s / 4:g} s) on the virtual liveness clock"
        )


@dataclass(frozen=True)
class SimResult:
    simulated_s: float
    real_s: float  # the whole run, start-up included
    setup_s: float  # of which building the in-process safety side and the session
    changes: int  # verified rate changes in the history
    refills: int  # syringe changes
    final_state: str
    alarms: tuple[str, ...]

    @property
    def speed(self) -> float:
        return self.simulated_s / self.real_s


def _script(hours: float) -> list[tuple[float, str, Callable[[Session], None]]]:
    def confirm_titration(dose: int) -> Callable[[Session], None]:
        return lambda s: _confirm(s, lambda: s.titrate_to(dose))

    def start(s: Session) -> None:
        s.program("norepinephrine", "4 mg/250 mL", "D5W")
        s.start(8)

    steps: list[tuple[float, str, Callable[[Session], None]]] = [
        (0.0, "program, start 8 mcg/min", start),
        (1.0, "titrate to 12", confirm_titration(12)),
        (3.0, "titrate to 16", confirm_titration(16)),
        (8.0, "wean to 10", lambda s: _confirm(s, lambda: s.wean(10))),
        (14.0, "titrate to 14", confirm_titration(14)),
        (20.0, "stop (wean, then stop)", lambda s: _confirm(s, s.stop)),
    ]
    # a shorter run (--quick) is the beginning of the same course
    return [(at * HOUR, what, act) for at, what, act in steps if at * HOUR < hours * HOUR]


def _confirm(session: Session, make: Callable[[], object]) -> None:
    """Plan, then confirm: the operator's two steps. A plan still running is ended at
    its current dose first (``resume``), as an operator changing their mind would."""
    if session.state in (State.TITRATING, State.WEANING):
        session.resume()
    pending = make()
    pending.confirm()  # type: ignore[attr-defined]


def simulate_course(
    hours: float = 24.0,
    timing: SimTiming | None = None,
    library: DrugLibrary | None = None,
) -> SimResult:
    library = library or load_library()
    t = timing or SimTiming()
    host_timing = HostTiming(
        poll_period_s=t.poll_period_s,
        keep_alive_period_s=t.poll_period_s,
        heartbeat_timeout_s=t.heartbeat_timeout_s,
    )
    started = time.perf_counter()
    local = LocalSafety(library=library, timing=host_timing)
    session = Session.open(local, library, clinical=local.clinical)
    setup = time.perf_counter() - started
    seen: list[str] = []
    session.subscribe_alarms(lambda alarm: seen.append(f"{alarm.priority} {alarm.key}"))
    end = local.clinical.now() + hours * HOUR
    script = _script(hours)
    refills = 0
    try:
        while True:
            interrupt.check()
            if local.pump.snapshot().remaining_ml < REFILL_BELOW_ML:
                local.pump.empty_syringe(remaining_ml=local.syringe.volume_ml)
                refills += 1
            now = local.clinical.now()
            while script and script[0][0] <= now:
                _, _, act = script.pop(0)
                act(session)
            due = session.service()
            if now >= end:
                break
            target = min(end, now + MAX_STEP_S)
            if due is not None:
                target = min(target, now + max(due, 1.0))
            if script:
                target = min(target, script[0][0])
            local.advance(max(target - now, 1e-3))
        history = session.history()
        state = session.state.value
    finally:
        session.close()
    real = time.perf_counter() - started
    changes = sum(1 for a, b in itertools.pairwise(history) if a.rate_ml_h != b.rate_ml_h)
    return SimResult(hours * HOUR, real, setup, changes, refills, state, tuple(seen))


__all__ = ["SimResult", "SimTiming", "simulate_course"]
