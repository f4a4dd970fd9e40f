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

A day of norepinephrine at 8-16 mcg/min is 0.7-1.4 L at 16 mcg/mL: no syringe holds it.
Two ways through (``relay``):

- ``relay=True`` (the figure, issue 14): a bench of two channels, A and B, each a 50 mL
  syringe. B is loaded with the same solution, primed (its line off the patient) and armed
  as A's standby (``RELAY_STRATEGY``); the safety process itself hands the infusion over
  when the active syringe would empty within 5 min, and the session follows it to the
  other channel. The emptied channel then gets a new syringe (``ContainerChanged``), is
  primed and armed as the standby of the running one, as a nurse would do it: every
  handover is the real one, journaled, judged by the kernel step by step.
- ``relay=False`` (one pump, the same-run baseline): the nurse changes the syringe out of
  band whenever less than ``REFILL_BELOW_ML`` is left, without interrupting the flow: the
  simulated syringe is set back to full (``SimulatedPump.empty_syringe(remaining_ml=...)``,
  which sets the volume left); the safety process never sees it.

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
from decimal import Decimal

from benchmarks import interrupt
from controller.machine import State
from controller.session import Session
from safety.ipc.local import LocalChannel, LocalSafety
from safety.kernel.codec import decode_event
from safety.kernel.model import HandoverEnded, RelayStrategy
from safety.library import DrugLibrary, load_library
from safety.timing import HostTiming

HOUR = 3600.0
#: how far the clock moves at most between two looks at the session (virtual seconds)
MAX_STEP_S = 300.0
#: a syringe change before the pump's near-empty alarm (10 % of 50 mL); at the course's
#: fastest rate (60 mL/h) one MAX_STEP_S uses 5 mL
REFILL_BELOW_ML = 15.0
#: relay: the strategy of every handover (the one with more steps, so the slower to
#: simulate), and what a prime pushes through the line before a syringe is armed
RELAY_STRATEGY: RelayStrategy = "overlap"
PRIME_ML = Decimal(2)
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
    refills: int  # syringe changes (relay: new syringes in the emptied channel)
    final_state: str
    alarms: tuple[str, ...]
    handovers: int = 0  # relay: handovers the safety process carried out
    failed_handovers: int = 0  # relay: handovers that did not end "done"
    replans: int = 0  # relay: plans ordered again after a handover cut them short

    @property
    def speed(self) -> float:
        return self.simulated_s / self.real_s


@dataclass(frozen=True)
class _Step:
    """One scripted action: when, what, how, and the dose it aims at (None: stopped)."""

    at_s: float
    what: str
    act: Callable[[Session], None]
    target: int | None

    def reached(self, session: Session) -> bool:
        snapshot = session.snapshot
        if snapshot is None:
            return False
        if self.target is None:
            return not snapshot.running
        return snapshot.running and snapshot.dose == self.target


def _script(hours: float) -> list[_Step]:
    def confirm_titration(dose: int) -> Callable[[Session], None]:
        return lambda s: _confirm(s, lambda: s.titrate_to(dose))

    def start(s: Session) -> None:
        s.program("norepinephrine", "4 mg/250 mL", "D5W")
        s.start(8)

    steps: list[tuple[float, str, Callable[[Session], None], int | None]] = [
        (0.0, "program, start 8 mcg/min", start, 8),
        (1.0, "titrate to 12", confirm_titration(12), 12),
        (3.0, "titrate to 16", confirm_titration(16), 16),
        (8.0, "wean to 10", lambda s: _confirm(s, lambda: s.wean(10)), 10),
        (14.0, "titrate to 14", confirm_titration(14), 14),
        (20.0, "stop (wean, then stop)", lambda s: _confirm(s, s.stop), None),
    ]
    # a shorter run (--quick) is the beginning of the same course
    return [
        _Step(at * HOUR, what, act, target)
        for at, what, act, target in steps
        if at * HOUR < hours * HOUR
    ]


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
    *,
    relay: bool = False,
) -> SimResult:
    library = library or load_library()
    t = timing or SimTiming()
    host_timing = HostTiming(
        poll_period_s=t.poll_period_s,
        keep_alive_period_s=t.poll_period_s,
        heartbeat_timeout_s=t.heartbeat_timeout_s,
    )
    started = time.perf_counter()
    channels = (LocalChannel("A"), LocalChannel("B")) if relay else ()
    local = LocalSafety(library=library, timing=host_timing, channels=channels)
    session = Session.open(local, library, clinical=local.clinical)
    setup = time.perf_counter() - started
    seen: list[str] = []
    session.subscribe_alarms(lambda alarm: seen.append(f"{alarm.priority} {alarm.key}"))
    end = local.clinical.now() + hours * HOUR
    script = _script(hours)
    nurse = _Nurse(local, session) if relay else None
    refills = 0
    replans = 0
    last: _Step | None = None
    try:
        while True:
            interrupt.check()
            if nurse is not None:
                nurse.look()
            elif local.pump.snapshot().remaining_ml < REFILL_BELOW_ML:
                local.pump.empty_syringe(remaining_ml=local.syringe.volume_ml)
                refills += 1
            now = local.clinical.now()
            while script and script[0].at_s <= now:
                if nurse is not None and nurse.handing_over():
                    break  # a plan moves the drug on one channel: after the handover
                last = script.pop(0)
                last.act(session)
                if nurse is not None and last.target is not None and last.at_s == 0.0:
                    nurse.begin()
            due = session.service()
            if (
                nurse is not None
                and last is not None
                and session.active_plan is None
                and session.state is State.INFUSING
                and not nurse.handing_over()
                and not last.reached(session)
            ):
                # a handover cut the plan short (the session followed the infusion to
                # the other channel): the operator orders it again there
                last.act(session)
                replans += 1
            if now >= end:
                break
            target = min(end, now + MAX_STEP_S)
            if due is not None:
                target = min(target, now + max(due, 1.0))
            if script and script[0].at_s > now:
                target = min(target, script[0].at_s)
            local.advance(max(target - now, 1e-3))
        history = session.history()
        state = session.state.value
        if nurse is not None:
            nurse.count()
    finally:
        session.close()
    real = time.perf_counter() - started
    changes = sum(1 for a, b in itertools.pairwise(history) if a.rate_ml_h != b.rate_ml_h)
    if nurse is None:
        return SimResult(hours * HOUR, real, setup, changes, refills, state, tuple(seen))
    return SimResult(
        hours * HOUR, real, setup, changes, nurse.refills, state, tuple(seen),
        nurse.handovers, nurse.failed, replans,
    )  # fmt: skip


class _Nurse:
    """The relay's hands: loads the standby, gives the emptied channel a new syringe,
    primes it with its line off the patient, and arms it for the running channel."""

    def __init__(self, local: LocalSafety, session: Session) -> None:
        self.local = local
        self.session = session
        self.priming: str | None = None  # a channel whose prime runs (line off)
        self.refills = 0
        self.handovers = 0
        self.failed = 0
        self.begun = False

    def begin(self) -> None:
        """After the course's start on A: B loaded with the same solution."""
        self.session.program("norepinephrine", "4 mg/250 mL", "D5W", channel="B")
        self.session.select_channel("A")
        self.begun = True

    def look(self) -> None:
        if not self.begun:
            return
        state = self.local.core.state
        if state.handover is not None:
            return
        if self.priming is not None:
            if state.channel(self.priming).priming is None:
                name, self.priming = self.priming, None
                self.local.pumps[name].connect_line(True)
                running = self._running()
                if len(running) == 1:
                    self.session.arm_standby(name, running[0], RELAY_STRATEGY)
            return
        running = self._running()
        if len(running) != 1:
            return  # nothing runs (the course ended) or a handover still overlaps
        for name, channel in state.channels.items():
            if name == running[0] or channel.standby is not None:
                continue
            if name == self.session.channel:
                # the session has not followed the handover yet (it does when serviced);
                # a new container first would hide from it whom the infusion went to
                return
            if channel.program is None:
                continue
            pump = self.local.pumps[name]
            if channel.container.primed and pump.snapshot().remaining_ml > REFILL_BELOW_ML:
                self.session.arm_standby(name, running[0], RELAY_STRATEGY)
                return
            if pump.snapshot().remaining_ml < pump.container.volume_ml:
                pump.reload()
                self.session.container_changed(pump.container.volume_ml, channel=name)
                self.refills += 1
            pump.connect_line(False)
            self.session.prime(PRIME_ML, name, confirm_line_disconnected=True)
            self.priming = name
            return

    def handing_over(self) -> bool:
        return self.local.core.state.handover is not None or len(self._running()) > 1

    def _running(self) -> list[str]:
        return [n for n, p in self.local.pumps.items() if p.snapshot().running]

    def count(self) -> None:
        for entry in self.local.journal.entries(kinds=("handover_ended",)):
            event = decode_event(entry.payload)
            assert isinstance(event, HandoverEnded)
            self.handovers += 1
            self.failed += event.outcome != "done"


__all__ = ["SimResult", "SimTiming", "simulate_course"]
