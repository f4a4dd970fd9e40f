"""Handover quality (issue 14): what the patient really receives while the safety process
hands a drug over from an emptying syringe to a primed standby.

In one process, on virtual clocks: ``LocalSafety`` with two channels (the real safety core
and kernel behind the real dispatcher, every message through its JSON line), each a
simulated pump with a real mechanism (``firmware_bridge.mechanics.TYPICAL``: 0.25 mm of
drive slack, a 30 s compliance lag, 2 % lead-screw ripple). The judge is the pumps' own
ground truth (what left each line into the patient, both channels summed), never what
the pumps or the safety process believe.

A condition is a rate (1, 5 or 20 mL/h), a strategy (``quick`` or ``overlap``) and the
standby's state (``primed``: its slack taken up by a prime; ``unprimed``). Each condition
is one chain of handovers A -> B -> A -> ...: after each, the emptied channel gets a new
syringe (``ContainerChanged``), is primed and armed as the standby of the other, as a
nurse would do it. Between handovers the clock runs only as long as the next one needs.

- The set dose: norepinephrine 8 mg/250 mL (32 mcg/mL) in D5W at the dose that is the
  condition's rate; every figure is a ratio of delivered drug rate to that set dose.
- A prime runs with the line off the patient (the bench disconnects it, as the prime
  request's confirmation says, and reconnects it once the prime's after-flow has
  drained): what it pushes out goes to waste, never into the figures.
- Unprimed: the safety process arms only a standby primed since its container was loaded
  (S15), so an unprimed standby cannot be asked for. It is what happens when the syringe
  is seated again after its prime (``SimulatedPump.reload``: the drive's slack opens
  again), which no pump counter shows: the safety process believes it primed.
- Syringe: the largest BD Plastipak whose range holds an overlap's smallest step (a
  quarter of the rate): 10 mL at 1 mL/h (its minimum is 0.1 mL/h; 50 mL stops at 1),
  50 mL at 5 and 20 mL/h.
- Judged per handover over [first relay command - ``PRE_S``, the handover's end +
  ``after_s``], ``after_s`` long enough for an unprimed start-up at that rate to be over:
  the worst deviation of the mean delivered drug rate over any 1-minute window from the
  set dose, and the longest stretch with the delivered rate below 90 % of the set dose,
  both exact on the piecewise-constant truth (``verification.handover``: the demo's
  summary judges its handover with the same code).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from benchmarks import interrupt
from firmware_bridge.mechanics import TYPICAL
from firmware_bridge.pump_model import SimulatedPump, TruthSegment
from firmware_bridge.syringes import syringe_by_name
from safety.ipc.local import LocalChannel, LocalSafety
from safety.kernel.codec import decode_event
from safety.kernel.model import (
    ArmStandby,
    ContainerChanged,
    Event,
    HandoverEnded,
    HandoverStarted,
    LoadProgram,
    PrimeChannel,
    ProgramSpec,
    RelayStrategy,
    StartInfusion,
)
from safety.library import DrugLibrary
from safety.status import Outcome
from safety.timing import HostTiming
from verification.handover import WindowFigures, summed_flow, window_figures

RATES_ML_H = (1.0, 5.0, 20.0)
STRATEGIES: tuple[RelayStrategy, ...] = ("quick", "overlap")
CONCENTRATION = "8 mg/250 mL"
PER_ML_MCG = 32.0
#: judged from this long before the first relay command (the steady state before it)
PRE_S = 60.0
#: the prime: volume, and how long after its end the line stays off the patient. The
#: compliance after-flow of a prime at the top rate holds most of the prime and drains
#: with the lag's time constant: after 12 of them (6 min) what is left flows at 0.002
#: mL/h, 0.2 % of the slowest rate; connected earlier, it would flow into the next
#: handover's judged window as a bolus that has nothing to do with the handover)
PRIME_ML = Decimal(2)
PRIME_DRAIN_S = 12 * TYPICAL.compliance_tau_s
#: the safety core's timing: pumps read every 2 s (a real bench: 1 s; a check gave the
#: same figures, handover by handover, at 1 s: a handover is decided on deadlines, and an
#: overlap step, at least a minute long, waits for the standby's next reading; at 5 s an
#: unprimed overlap came out differently), a heartbeat timeout long enough not to matter
#: on a virtual clock
TIMING = HostTiming(poll_period_s=2.0, keep_alive_period_s=2.0, heartbeat_timeout_s=30.0)
#: how far the clock moves between two looks at the handover (virtual s)
LOOK_S = 5.0
#: a handover not over within this is a failure of the benchmark, not a sample
HANDOVER_LIMIT_S = 3 * 3600.0


def syringe_for(rate_ml_h: float) -> str:
    return "bd-plastipak-10ml" if rate_ml_h < 4 * 1.0 else "bd-plastipak-50ml"


def dose_for(rate_ml_h: float) -> Decimal:
    """The dose (mcg/min, 4 significant digits) that runs at ``rate_ml_h`` of 32 mcg/mL."""
    exact = Decimal(repr(rate_ml_h)) * Decimal(repr(PER_ML_MCG)) / 60
    return Decimal(f"{exact:.4g}")


@dataclass(frozen=True)
class Condition:
    rate_ml_h: float
    strategy: RelayStrategy
    primed: bool

    @property
    def name(self) -> str:
        return f"{self.rate_ml_h:g} mL/h {self.strategy} {'primed' if self.primed else 'unprimed'}"


@dataclass(frozen=True)
class HandoverSample:
    """One handover, judged on the ground truth."""

    worst_window_dev: float  # signed: (delivered / set) - 1 of the worst 1-min window
    longest_low_s: float  # longest stretch below 90 % of the set dose
    duration_s: float  # first relay command to the handover's end


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    samples: list[HandoverSample]
    real_s: float
    simulated_s: float
    failures: int  # handovers that ended without the standby running the whole rate

    @property
    def worst_dev(self) -> float:
        return max((s.worst_window_dev for s in self.samples), key=abs)

    @property
    def longest_low_s(self) -> float:
        return max(s.longest_low_s for s in self.samples)


@dataclass(frozen=True)
class HandoverBench:
    handovers: int = 20
    rates: Sequence[float] = RATES_ML_H
    strategies: Sequence[RelayStrategy] = STRATEGIES


# --------------------------------------------------------------------------- judging


def judge(
    pumps: Sequence[SimulatedPump], set_ml_h: float, start: float, end: float
) -> WindowFigures:
    """The delivered flow of all ``pumps`` summed (their ground truth; a prime to waste is
    no delivery) against the set dose held constant, over [start, end]: the worst
    1-minute window and the longest stretch below 90 % (``verification.handover``, the
    same judge as the demo's summary)."""
    delivered = summed_flow({str(i): p.truth.events for i, p in enumerate(pumps)})
    return window_figures(delivered, [TruthSegment(start, set_ml_h)], start, end)


# --------------------------------------------------------------------------- the chain


class _Chain:
    """One condition's bench: two channels handing one infusion back and forth."""

    def __init__(self, library: DrugLibrary, condition: Condition) -> None:
        self.c = condition
        self.syringe = syringe_by_name(syringe_for(condition.rate_ml_h))
        rate = condition.rate_ml_h
        # an unprimed start-up at this rate, and what a 1-minute window needs after it
        startup = replace(TYPICAL, primed=False).startup_delay_s(self.syringe, rate)
        self.after_s = startup + 5 * TYPICAL.compliance_tau_s + 60.0
        lead = 5 * 60.0 + (4 * 60.0 if condition.strategy == "overlap" else 0.0)
        #: what each new syringe holds: the prime, then the run until the next handover
        run_s = self.after_s + PRIME_DRAIN_S + 60.0 + lead + PRE_S + 30.0
        self.fill_ml = float(PRIME_ML) + rate * run_s / 3600.0
        channels = (
            LocalChannel("A", self.syringe.name, self.fill_ml, mechanics=TYPICAL),
            LocalChannel("B", self.syringe.name, self.fill_ml, mechanics=TYPICAL),
        )
        self.local = LocalSafety(library=library, timing=TIMING, channels=channels)
        self.spec = ProgramSpec(
            library_hash=library.content_hash,
            drug="norepinephrine",
            profile="adult_icu",
            therapy="standard",
            concentration=CONCENTRATION,
            diluent="D5W",
        )
        self.dose = dose_for(rate)
        self._seen = 0

    def new_events(self) -> list[Event]:
        """The journal's events since the last look."""
        out = []
        for entry in self.local.journal.entries(since_id=self._seen):
            out.append(decode_event(entry.payload))
            self._seen = entry.id
        return out

    def send(self, body: object, what: str) -> Outcome:
        outcome = self.local.request(body)  # type: ignore[arg-type]
        if not outcome.verdict.accepted:
            raise RuntimeError(f"{self.c.name}: {what} refused: {outcome.verdict.message}")
        return outcome

    def prime(self, channel: str) -> None:
        """Line off, prime, let the after-flow drain, line on; ``unprimed``: the syringe
        is seated again afterwards (the slack opens; nothing shows it)."""
        pump = self.local.pumps[channel]
        pump.connect_line(False)
        self.send(PrimeChannel(channel, PRIME_ML, True), f"prime {channel}")
        for _ in range(1000):
            self.local.advance(LOOK_S)
            if self.local.core.state.channel(channel).priming is None:
                break
        else:
            raise RuntimeError(f"{self.c.name}: the prime of {channel} never ended")
        self.local.advance(PRIME_DRAIN_S)
        pump.connect_line(True)
        if not self.c.primed:
            pump.reload(pump.snapshot().remaining_ml)

    def start(self) -> None:
        local = self.local
        local.attach()
        for ch in ("A", "B"):
            self.send(LoadProgram(self.spec, channel=ch), f"load {ch}")
        # A's own start-up is not judged: it starts primed, whatever the condition
        primed, self.c = self.c, replace(self.c, primed=True)
        self.prime("A")
        self.c = primed
        self.send(StartInfusion(self.dose, confirm_soft_limits=True, channel="A"), "start A")
        self.prime("B")
        self.send(ArmStandby("B", "A", self.c.strategy), "arm B")

    def one(self, active: str, standby: str) -> tuple[HandoverSample, bool]:
        """Run until the armed standby has taken over; judge it; make the emptied channel
        the new standby. Returns the sample and whether the handover completed."""
        local = self.local
        set_ml_h = local.pumps[active].snapshot().set_rate_ml_h
        deadline = local.clinical.now() + HANDOVER_LIMIT_S
        began: float | None = None
        ended: HandoverEnded | None = None
        while ended is None:
            interrupt.check()
            if local.clinical.now() > deadline:
                raise RuntimeError(f"{self.c.name}: no handover from {active} within "
                                   f"{HANDOVER_LIMIT_S / 3600:g} h")  # fmt: skip
            local.advance(LOOK_S)
            for event in self.new_events():
                if isinstance(event, HandoverStarted):
                    began = event.now.clinical
                elif isinstance(event, HandoverEnded) and began is not None:
                    ended = event
        assert began is not None
        end_at = ended.now.clinical
        local.advance(self.after_s)
        a, b = local.pumps[active].snapshot(), local.pumps[standby].snapshot()
        done = (
            ended.outcome == "done" and not a.running and b.running and b.set_rate_ml_h == set_ml_h
        )
        figures = judge(list(local.pumps.values()), set_ml_h, began - PRE_S, local.clinical.now())
        sample = HandoverSample(figures.worst, figures.longest_low_s, end_at - began)
        # the emptied channel: a new syringe, primed, armed for the other
        pump = local.pumps[active]
        pump.reload(self.fill_ml)
        self.send(ContainerChanged(Decimal(repr(self.fill_ml)), active), f"new syringe {active}")
        self.prime(active)
        self.send(ArmStandby(active, standby, self.c.strategy), f"arm {active}")
        return sample, done


def run_condition(library: DrugLibrary, condition: Condition, handovers: int) -> ConditionResult:
    started = time.perf_counter()
    chain = _Chain(library, condition)
    try:
        chain.start()
        t0 = chain.local.clinical.now()
        samples: list[HandoverSample] = []
        failures = 0
        pairs = itertools.cycle((("A", "B"), ("B", "A")))
        for _ in range(handovers):
            active, standby = next(pairs)
            sample, done = chain.one(active, standby)
            samples.append(sample)
            failures += 0 if done else 1
        simulated = chain.local.clinical.now() - t0
    finally:
        chain.local.close()
    return ConditionResult(condition, samples, time.perf_counter() - started, simulated, failures)


def conditions(bench: HandoverBench) -> list[Condition]:
    return [
        Condition(rate, strategy, primed)
        for rate in bench.rates
        for primed in (True, False)
        for strategy in bench.strategies
    ]


def measure(
    library: DrugLibrary,
    bench: HandoverBench,
    progress: Callable[[str], None] = lambda _: None,
) -> list[ConditionResult]:
    results = []
    for condition in conditions(bench):
        interrupt.check()
        progress(f"handover: {condition.name}, {bench.handovers} handovers")
        results.append(run_condition(library, condition, bench.handovers))
    return results


__all__ = [
    "RATES_ML_H",
    "STRATEGIES",
    "Condition",
    "ConditionResult",
    "HandoverBench",
    "HandoverSample",
    "judge",
    "measure",
    "run_condition",
]
