"""One simulated patient for one hour, through the real safety code, in one process.

The bench is the one every one-process run uses (``safety.ipc.local.LocalSafety``: the
safety core, its kernel, the dispatcher with every message encoded and decoded, the mock
driver over the one simulated pump, an in-memory journal) with a ``Session`` on top and a
simulated patient attached to that pump's ground truth. The arm in charge is the closed
loop (``controller.closed_loop``) or the nurse (``verification.cohort.nurse``); both read
the patient's monitor (``drivers.monitors.simulated``) and send ordinary requests.

Two ways in (``Start``):

- ``onset``: the published robustness design. The patient is hypotensive (vasodilated)
  and on no drug; after two minutes of monitoring the infusion is started at
  ``start_dose`` and handed to the arm; the hour is scored from the start.
- ``takeover``: the maintenance comparison. A run-in (not scored) titrates the patient to
  the target under the same rules, as fast as they allow, knowing the patient's true dose
  (the best a clinician could do), then holds it for the wean window; the arm takes over
  a patient at target and the hour is scored from then (the wandering starts then too).

After the hour the delivered flow (the pump's ground truth) is checked with the safety
journal by ``verification.ground_truth``: every hard-limit, cap, titration and wean
violation is counted. Deterministic: the same design and spec give the same result.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from controller.closed_loop.limits import Rules
from controller.closed_loop.loop import ClosedLoop
from controller.closed_loop.settings import LoopSettings
from controller.session import Session
from drivers.monitors.simulated import SimulatedMonitor
from firmware_bridge.patient.arterial import Reading
from firmware_bridge.patient.params import (
    Condition,
    LineSetup,
    PatientParameters,
    draw_patient,
    fig,
    rng,
)
from firmware_bridge.patient.patient import DEFAULT_PERIOD_S, Patient, Scenario
from firmware_bridge.pump_model import SimulatedPump, delivered_volume
from safety.ipc.local import LocalSafety
from safety.kernel.codec import decode_event
from safety.kernel.model import ChangeDose
from safety.library import DrugLibrary
from safety.timing import HostTiming
from verification.cohort.metrics import Performance, performance
from verification.cohort.nurse import Nurse, Protocol
from verification.ground_truth import SafetyRecord, check_ground_truth

#: the safety core's timers in a simulated run: read-backs still follow every set at once;
#: the periodic poll and keep-alive every minute, heartbeat timeout 10 min (virtual clock:
#: nothing hangs; every timer that runs per simulated second costs real time)
SIM_TIMING = HostTiming(poll_period_s=60.0, keep_alive_period_s=60.0, heartbeat_timeout_s=600.0)
#: monitoring before the drug starts (onset) so the arm knows the patient's own MAP
LEAD_IN_S = 120.0
#: run-in (takeover): one rise a minute toward the patient's true dose, then hold this long
RUN_IN_STEP_S = 60.0
RUN_IN_HOLD_S = 30 * 60.0
RUN_IN_LIMIT_S = 6 * 3600.0
#: refill the syringe (without interrupting the flow, as a primed relief syringe would)
#: when less than this many ticks of drug are left
REFILL_TICKS = 3.0
#: the unit of every dose of a run (the library's weight-based norepinephrine therapy)
DOSE_UNIT = "mcg/kg/min"
#: a trace point for the plots this often (clinical s)
TRACE_EVERY_S = 30.0

log = logging.getLogger("verification.cohort")


class Arm(enum.StrEnum):
    CLOSED_LOOP = "closed_loop"
    MANUAL = "manual"


class Start(enum.StrEnum):
    ONSET = "onset"
    TAKEOVER = "takeover"


@dataclass(frozen=True)
class Design:
    """What every run of a cohort shares."""

    seed: str = "1"
    minutes: float = 60.0
    start: Start = Start.ONSET
    target_mmhg: float = 80.0
    band_mmhg: float = 5.0
    start_dose: Decimal = Decimal("0.02")  # mcg/kg/min: the library's default start
    dose_min: Decimal = Decimal("0.005")
    dose_max: Decimal = Decimal("1.0")  # the library's hard maximum
    soft_limits_confirmed: bool = True  # the protocol allows 0.005-1.0 (below/above soft)
    concentration: str = "4 mg/250 mL"
    diluent: str = "D5W"
    drug_ug_per_ml: float = 16.0  # what that concentration is, for the patient's line
    dead_volume_ml: float = 0.5
    carrier_ml_h: float = 5.0
    syringe: str = "bd-plastipak-50ml"
    monitor_period_s: float = DEFAULT_PERIOD_S
    tick_s: float = 30.0  # the arms act (and the clock moves) in ticks of this
    wander_mmhg: float | None = None  # None: the patient model's default

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(
            target_mmhg=self.target_mmhg,
            band_mmhg=self.band_mmhg,
            dose_min=self.dose_min,
            dose_max=self.dose_max,
            soft_limits_confirmed=self.soft_limits_confirmed,
            dead_volume_ml=self.dead_volume_ml,
            carrier_ml_h=self.carrier_ml_h,
            period_s=self.tick_s,
        )

    def to_json(self) -> dict[str, object]:
        """Every setting as it was in force: the wandering amplitude the patient model
        used, not None for "its default"."""
        out = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.__dict__.items()}
        if self.wander_mmhg is None:
            out["wander_mmhg"] = fig("wander_amplitude_mmhg")
        out["dose_unit"] = DOSE_UNIT
        return out


@dataclass(frozen=True)
class RunSpec:
    index: int
    sensitivity: float
    condition: Condition
    arm: Arm

    @property
    def key(self) -> tuple[float, str, int, str]:
        return (self.sensitivity, self.condition.value, self.index, self.arm.value)


@dataclass
class RunResult:
    spec: RunSpec
    performance: Performance
    drug_mcg_per_kg: float  # delivered in the scored hour
    requests: int
    accepted: int
    refusals: dict[str, int]
    suspensions: int
    violations: list[str]
    patient: dict[str, float]
    trace: list[tuple[float, float, float]] = field(default_factory=list)  # (min, MAP, dose)
    real_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time for the run (blind to other processes' load)

    def to_json(self, *, with_trace: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "index": self.spec.index,
            "sensitivity": self.spec.sensitivity,
            "condition": self.spec.condition.value,
            "arm": self.spec.arm.value,
            "performance": self.performance.to_json(),
            "drug_mcg_per_kg": self.drug_mcg_per_kg,
            "requests": self.requests,
            "accepted": self.accepted,
            "refusals": dict(sorted(self.refusals.items())),
            "suspensions": self.suspensions,
            "violations": self.violations,
            "patient": self.patient,
        }
        if with_trace:
            out["trace"] = [list(p) for p in self.trace]
        return out


class _Recorder:
    """The truth behind each numeric: the physiological MAP (metrics), never control."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []

    def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)


def run_one(design: Design, spec: RunSpec, library: DrugLibrary) -> RunResult:
    started = time.perf_counter()
    cpu_started = time.process_time()
    params = draw_patient(design.seed, spec.index, spec.sensitivity)
    weight = round(params.weight_kg, 1)
    local = LocalSafety(library=library, syringe=design.syringe, timing=SIM_TIMING)
    session = Session.open(local, library, clinical=local.clinical)
    try:
        session.program(
            "norepinephrine",
            design.concentration,
            design.diluent,
            weight_kg=Decimal(str(weight)),
            therapy="weight_based",
        )
        recorder = _Recorder()
        scenario = Scenario(condition=spec.condition, wander_amplitude_mmhg=design.wander_mmhg)
        patient = Patient(
            params,
            LineSetup(design.drug_ug_per_ml, design.dead_volume_ml, design.carrier_ml_h),
            local.pump,
            seed=design.seed,
            index=spec.index,
            scenario=scenario,
            period_s=design.monitor_period_s,
        )
        monitor = SimulatedMonitor(patient, on_reading=recorder)
        settings = design.loop_settings()
        clock = local.clinical
        bench = _Bench(local, session, design)
        arm: ClosedLoop | Nurse
        if spec.arm is Arm.CLOSED_LOOP:
            arm = ClosedLoop(session, monitor, settings, clock=clock)
        else:
            arm = Nurse(
                session,
                monitor,
                settings,
                rng(design.seed, "nurse", spec.index, spec.condition.value, spec.sensitivity),
                clock=clock,
                protocol=Protocol(),
            )
        bench.run_for(LEAD_IN_S, arm.step)
        if design.start is Start.ONSET:
            _start(session, design.start_dose, confirm_soft_limits=design.soft_limits_confirmed)
        else:
            _run_in(bench, params, weight, design)
            patient.vasodilation.wander_start_s = clock.now() - patient.start
        t0 = clock.now()
        if isinstance(arm, ClosedLoop):
            arm.engage()
        else:
            arm.begin()
        trace: list[tuple[float, float, float]] = []
        bench.run_for(
            design.minutes * 60.0, arm.step,
            trace=trace, recorder=recorder, t0=t0, start_map=patient.true_map(t0),
        )  # fmt: skip
        end = clock.now()
        scored = [r for r in recorder.readings if t0 <= r.time <= end]
        perf = performance(
            [r.time - t0 for r in scored],
            [r.true_map_mmhg for r in scored],
            design.target_mmhg,
            design.band_mmhg,
            params.map_pre_mmhg,
        )
        truth = list(local.pump.truth.events)
        delivered_ml = _delivered_ml(local, t0, end)
        events = [decode_event(e.payload) for e in local.journal.entries()]
        report = check_ground_truth(truth, library, SafetyRecord.from_events(events), until=end)
        stats = arm.stats
        refusals = Counter(stats.refusals)
        suspensions = arm.stats.suspensions if isinstance(arm, ClosedLoop) else 0
        needed = params.dose_for_map(design.target_mmhg)
        return RunResult(
            spec=spec,
            performance=perf,
            drug_mcg_per_kg=delivered_ml * design.drug_ug_per_ml / weight,
            requests=stats.requests,
            accepted=stats.accepted,
            refusals=dict(refusals),
            suspensions=suspensions,
            violations=[v.rule for v in report.violations],
            patient={
                "weight_kg": weight,
                "saps2": round(params.saps2, 1),
                "half_life_min": round(params.half_life_min, 2),
                "map_pre_mmhg": round(params.map_pre_mmhg, 1),
                "vasodilation_mmhg": round(params.vasodilation_mmhg, 1),
                "needed_mcg_kg_min": round(needed / weight, 4) if math.isfinite(needed) else -1.0,
            },
            trace=trace,
            real_s=time.perf_counter() - started,
            cpu_s=time.process_time() - cpu_started,
        )
    finally:
        _close(session)


def _close(session: Session) -> None:
    """Hang up: the safety core logs the end of every run as a lost controller (an error
    on a real bench); here it is the expected end, so that one logger is quiet meanwhile."""
    dispatch = logging.getLogger("safety.ipc")
    level = dispatch.level
    dispatch.setLevel(logging.CRITICAL)
    try:
        session.close()
    finally:
        dispatch.setLevel(level)


def _start(session: Session, dose: Decimal, *, confirm_soft_limits: bool) -> None:
    """The operator's start (raises Refused if the rules refuse it). A start below the
    soft minimum (``--start-dose`` under 0.02) is one the protocol's confirmation of its
    dose range covers, as it covers the loop's and the nurse's changes."""
    session.start(dose, confirm_soft_limits=confirm_soft_limits)


def _run_in(
    bench: _Bench,
    params: PatientParameters,
    weight: float,
    design: Design,
) -> None:
    """Titrate to the patient's true dose as fast as the rules allow, then hold."""
    session = bench.session
    needed = params.dose_for_map(design.target_mmhg) / weight
    # the pump's slowest rate with this syringe sets a floor under the dose range
    syringe_min_ml_h = float(bench.local.pump.syringe.min_rate_ml_h)
    floor = syringe_min_ml_h * design.drug_ug_per_ml / 60.0 / weight
    low = max(float(design.dose_min), math.ceil(floor * 1e4) / 1e4)
    goal = Fraction(min(float(design.dose_max), max(low, needed)))
    first = min(goal, Fraction(Decimal("0.1")))  # the library's max start
    first_dose = Decimal(str(math.ceil(float(first) * 1e4) / 1e4))
    soft = first_dose < Decimal("0.02")
    session.start(first_dose, confirm_soft_limits=soft)
    deadline = bench.local.clinical.now() + RUN_IN_LIMIT_S
    while bench.local.clinical.now() < deadline:
        snapshot = session.status()
        rules = Rules(session.library, snapshot, session.kernel_config)
        current = rules.state.current_dose()
        if current >= goal * Fraction(99, 100):
            break
        dose, _ = rules.propose(goal, design.dose_min, design.dose_max, True)
        if dose is not None:
            session.order(
                ChangeDose(dose, confirm_soft_limits=rules.needs_soft_confirmation(dose),
                           unit=rules.unit)
            )  # fmt: skip
        bench.run_for(RUN_IN_STEP_S, None)
    bench.run_for(RUN_IN_HOLD_S, None)


class _Bench:
    """Moves the virtual clocks in ticks, keeps the syringe from running dry."""

    def __init__(self, local: LocalSafety, session: Session, design: Design) -> None:
        self.local = local
        self.session = session
        self.design = design

    def run_for(
        self,
        seconds: float,
        act: Callable[[], object] | None,
        *,
        trace: list[tuple[float, float, float]] | None = None,
        recorder: _Recorder | None = None,
        t0: float = 0.0,
        start_map: float | None = None,
    ) -> None:
        """Run ``seconds`` in ticks, ``act`` after each. ``trace``: a point every
        ``TRACE_EVERY_S`` from the MAP ``recorder`` last heard, the first at the start
        with ``start_map`` (the patient's MAP then: the monitor may not have been read
        for a while, as during a run-in)."""
        local = self.local
        end = local.clinical.now() + seconds
        tick = self.design.tick_s
        next_trace = local.clinical.now()
        if trace is not None and start_map is not None:
            # the start (the dose and MAP the arm was handed), before anything moved
            self._trace_point(trace, start_map, next_trace, t0)
            next_trace += TRACE_EVERY_S
        while (left := end - local.clinical.now()) > 1e-9:
            self._refill(tick)
            local.advance(min(tick, left))
            if act is not None:
                act()
            now = local.clinical.now()
            if trace is not None and recorder is not None and now >= next_trace:
                last = recorder.readings[-1].true_map_mmhg if recorder.readings else math.nan
                self._trace_point(trace, last, now, t0)
                next_trace = now + TRACE_EVERY_S

    def _trace_point(
        self, trace: list[tuple[float, float, float]], map_mmhg: float, now: float, t0: float
    ) -> None:
        dose = self.session.snapshot.dose if self.session.snapshot else None
        trace.append((round((now - t0) / 60.0, 3), round(map_mmhg, 2), float(dose or 0)))

    def _refill(self, tick: float) -> None:
        refill_if_low(self.local.pump, tick)


def refill_if_low(pump: SimulatedPump, tick: float) -> None:
    """A full syringe when less than ``REFILL_TICKS`` ticks of drug are left."""
    snap = pump.snapshot()
    if snap.remaining_ml < max(1.0, snap.set_rate_ml_h * tick / 3600.0 * REFILL_TICKS):
        pump.empty_syringe(remaining_ml=snap.syringe.volume_ml)


def _delivered_ml(local: LocalSafety, since: float, until: float) -> float:
    return delivered_volume(local.pump.truth.events, until, since)
