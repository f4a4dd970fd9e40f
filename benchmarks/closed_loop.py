"""Closed-loop figures (issue 11): how well the loop holds the MAP, beside a manual arm,
with zero safety violations, and how fast a cohort runs.

Two sizes. The default ``pumpctl bench`` runs a reduced cohort (``patients`` per level,
default 5: about a minute on 2 cores) and *projects* the speed of the full cohort from
its closed-loop runs; ``pumpctl bench --cohort`` runs the published size (250 patients
per level) and *measures* it: first 7 x 250 closed-loop runs of 60 min (one condition,
stable: the speed figure), then the rest of the cohort (wandering, and the manual arm on
the same patients) for the quality figures.

Every run is the real stack on a virtual clock (``verification.cohort.run``): the session,
the IPC messages encoded and decoded, the safety core, the kernel, the mock driver, the
one simulated pump, the patient on its ground truth. The same-run baseline for the speed
figure is the patient model alone (the same patients and hours on a constant infusion,
no controller and no safety process): what a bare simulator would cost.

Quality goals (issue 11) are judged on the ``onset`` design (the published robustness
simulation: patients hypotensive, no drug yet); the ``takeover`` design (at target
first, then scored) is reported beside it as context. docs/closed-loop.md explains why
the two differ so much under the library's titration and wean rules.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from benchmarks.report import Context, Figure, Goal
from firmware_bridge.clock import VirtualClock
from firmware_bridge.patient.params import Condition, LineSetup, draw_patient
from firmware_bridge.patient.patient import Patient, Scenario
from firmware_bridge.pump_model import SimulatedPump
from safety.library import DrugLibrary
from verification.cohort.cohort import (
    SENSITIVITIES,
    CohortResult,
    CohortSpec,
    default_workers,
    run_cohort,
)
from verification.cohort.metrics import cohort_medians
from verification.cohort.oracle import oracle_run
from verification.cohort.run import Arm, Design, Start

SOURCE = "issue 11"
IN_BAND_MID = Goal(">=", 95.0, "%", SOURCE)  # 0.2x-5x
IN_BAND_EDGE = Goal(">=", 90.0, "%", SOURCE)  # 0.1x and 10x
#: "< 5 %" and "< 3 %" in the issue; judged as <= (equality is a measure-zero event)
MDAPE_GOAL = Goal("<=", 5.0, "%", SOURCE)
WOBBLE_GOAL = Goal("<=", 3.0, "%", SOURCE)
VIOLATIONS_GOAL = Goal("<=", 0.0, "violations", SOURCE)
SPEED_GOAL = Goal("<=", 120.0, "s", SOURCE)
FULL_PATIENTS = 250
FULL_MINUTES = 60.0
#: the oracle's bound is a median over at most this many patients per level
ORACLE_PATIENTS = 50
ORACLE_NOTE = (
    "the dose that holds the band's top for each patient, set every tick from the start "
    "of the hour, no rule between it and the pump; stable, a bound for every titrator "
    "that never gives more than that dose; wandering, a reference (the dose for the target) "
    "(docs/closed-loop.md, section 8)"
)


@dataclass(frozen=True)
class ClosedLoopBench:
    patients: int = 5
    full: bool = False
    seed: str = "bench"
    workers: int | None = None


def measure(
    library: DrugLibrary,
    settings: ClosedLoopBench,
    progress: Callable[[str], None],
    check_interrupt: Callable[[], None] | None = None,
) -> tuple[list[Figure], list[Context]]:
    figures: list[Figure] = []
    context: list[Context] = []
    workers = settings.workers or default_workers()
    patients = FULL_PATIENTS if settings.full else settings.patients
    design = Design(seed=settings.seed, minutes=FULL_MINUTES, start=Start.ONSET)
    speed_spec = CohortSpec(
        design, patients=patients, conditions=(Condition.STABLE,), arms=(Arm.CLOSED_LOOP,)
    )
    progress(
        f"closed loop: {len(SENSITIVITIES)} x {patients} closed-loop runs of 60 min "
        f"({workers} workers)"
    )
    started = time.perf_counter()
    speed = run_cohort(speed_spec, library, workers=workers, check_interrupt=check_interrupt)
    wall = time.perf_counter() - started
    progress("closed loop: the rest of the cohort (wandering; the manual arm)")
    rest = run_cohort(
        replace(speed_spec, conditions=(Condition.STABLE, Condition.WANDERING), arms=(Arm.MANUAL,)),
        library,
        workers=workers,
        check_interrupt=check_interrupt,
    )
    wandering = run_cohort(
        replace(speed_spec, conditions=(Condition.WANDERING,)),
        library,
        workers=workers,
        check_interrupt=check_interrupt,
    )
    cohort = _merge(speed, rest, wandering)
    progress("closed loop: baseline (the patient model alone) and the takeover design")
    baseline_s = _patient_model_alone(design.seed, patients, len(SENSITIVITIES))
    takeover = run_cohort(
        CohortSpec(
            replace(design, start=Start.TAKEOVER),
            patients=max(1, patients // 5) if settings.full else patients,
            conditions=(Condition.WANDERING,),
        ),
        library,
        workers=workers,
        check_interrupt=check_interrupt,
    )
    progress("closed loop: the steady-dose oracle on the first patients of each level")
    oracle_n = min(patients, ORACLE_PATIENTS)
    oracle = _oracle_bound(design, oracle_n, cohort.spec.conditions)
    figures += _quality(cohort, oracle, oracle_n)
    figures.append(_violations(cohort, takeover))
    figures.append(_speed(speed, wall, workers, settings.full, baseline_s))
    context += _context(cohort, takeover, baseline_s, speed)
    return figures, context


def _merge(*parts: CohortResult) -> CohortResult:
    first = parts[0]
    spec = replace(
        first.spec,
        conditions=(Condition.STABLE, Condition.WANDERING),
        arms=(Arm.CLOSED_LOOP, Arm.MANUAL),
    )
    results = [r for p in parts for r in p.results]
    failures = [f for p in parts for f in p.failures]
    return CohortResult(spec, results, failures, sum(p.real_s for p in parts), first.workers)


def _quality(
    cohort: CohortResult, oracle: dict[tuple[float, Condition], float], oracle_n: int
) -> list[Figure]:
    out: list[Figure] = []
    n = cohort.spec.patients
    for s in cohort.spec.sensitivities:
        goal = IN_BAND_EDGE if s in (0.1, 10.0) else IN_BAND_MID
        for c in cohort.spec.conditions:
            loop = cohort.group(s, c, Arm.CLOSED_LOOP)
            manual = cohort.group(s, c, Arm.MANUAL)
            if not loop:
                continue
            m = cohort_medians(r.performance for r in loop)
            mm = cohort_medians(r.performance for r in manual) if manual else {}
            ratio = m["in_band"] / mm["in_band"] if mm and mm["in_band"] > 0 else None
            out.append(
                Figure(
                    f"closed_loop.in_band.{s:g}x.{c.value}",
                    f"closed loop: median time within +-5 mmHg, {s:g}x, {c.value}",
                    m["in_band"],
                    "%",
                    goal,
                    f"median of {len(loop)} patients (onset design)",
                    {
                        "manual arm": mm.get("in_band", float("nan")),
                        "ratio to manual": ratio if ratio is not None else float("nan"),
                        "below band": m["below_band"],
                        "above band": m["above_band"],
                        "MDPE %": m["mdpe"],
                        "divergence %/h": m["divergence"],
                        "MAP < 65 %": m["below_65"],
                        "MAP < 90 % of baseline %": m["below_90pct_baseline"],
                        "manual: MAP < 90 % of baseline %": mm.get(
                            "below_90pct_baseline", float("nan")
                        ),
                        f"steady-dose oracle, {_oracle_kind(c)} (no rules; first "
                        f"{oracle_n} patients)": oracle.get((s, c), float("nan")),
                    },
                    note=f"{n} patients per level; the oracle: {ORACLE_NOTE}",
                )
            )
    worst_mdape = _worst(cohort, "mdape")
    worst_wobble = _worst(cohort, "wobble")
    out.append(
        Figure(
            "closed_loop.mdape_worst",
            "closed loop: MDAPE at its worst level",
            worst_mdape[1],
            "%",
            MDAPE_GOAL,
            f"the largest per-level median ({worst_mdape[0]})",
            _per_level(cohort, "mdape"),
        )
    )
    out.append(
        Figure(
            "closed_loop.wobble_worst",
            "closed loop: wobble at its worst level",
            worst_wobble[1],
            "%",
            WOBBLE_GOAL,
            f"the largest per-level median ({worst_wobble[0]})",
            _per_level(cohort, "wobble"),
        )
    )
    return out


def _oracle_kind(condition: Condition) -> str:
    """Stable, the oracle bounds every titrator that never gives more than its dose;
    wandering, it is only a reference (``verification.cohort.oracle``)."""
    return "bound" if condition is Condition.STABLE else "reference"


def _oracle_bound(
    design: Design, patients: int, conditions: tuple[Condition, ...]
) -> dict[tuple[float, Condition], float]:
    """Median % time in band of the steady-dose oracle (``verification.cohort.oracle``)
    per level and condition, on the cohort's first ``patients`` patients (its cost is the
    patient model's alone, about the speed figure's baseline per run). Stable, aimed at
    the band's top (the bound); wandering, at the target (a reference: aimed at the top,
    every fall of the need would leave it above the band)."""

    def aim(condition: Condition) -> float | None:
        return None if condition is Condition.STABLE else design.target_mmhg

    return {
        (s, c): statistics.median(
            oracle_run(design, i, s, c, aim_mmhg=aim(c)).in_band for i in range(patients)
        )
        for s in SENSITIVITIES
        for c in conditions
    }


def _per_level(cohort: CohortResult, key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in cohort.spec.sensitivities:
        for c in cohort.spec.conditions:
            group = cohort.group(s, c, Arm.CLOSED_LOOP)
            if group:
                out[f"{s:g}x {c.value}"] = cohort_medians(r.performance for r in group)[key]
    return out


def _worst(cohort: CohortResult, key: str) -> tuple[str, float]:
    levels = _per_level(cohort, key)
    name = max(levels, key=lambda k: levels[k])
    return name, levels[name]


def _violations(*cohorts: CohortResult) -> Figure:
    runs = sum(len(c.results) for c in cohorts)
    failures = [f for c in cohorts for f in c.failures]
    failed = len(failures)
    total = sum(c.violations() for c in cohorts)
    return Figure(
        "closed_loop.violations",
        "hard-limit, cap, titration and wean violations on the delivered flow",
        float(total),
        "violations",
        VIOLATIONS_GOAL,
        f"sum over {runs} runs (both designs, both arms), checked on each pump's ground truth",
        {"runs": float(runs), "failed runs": float(failed)},
        error=None
        if failed == 0
        else f"{failed} run(s) failed, e.g. {failures[0].spec}: {failures[0].error}",
    )


def _speed(speed: CohortResult, wall: float, workers: int, full: bool, baseline_s: float) -> Figure:
    runs = len(speed.results)
    per_run = [r.real_s for r in speed.results]
    cpu = [r.cpu_s for r in speed.results]
    target_runs = len(SENSITIVITIES) * FULL_PATIENTS
    if full:
        value, judged = wall, f"measured: {runs} closed-loop runs, {workers} workers"
    else:
        # the pool's throughput on this machine, scaled to the full cohort
        value = wall / runs * target_runs
        judged = f"projected from {runs} runs ({workers} workers) to {target_runs}"
    return Figure(
        "closed_loop.cohort_speed",
        f"{len(SENSITIVITIES)} x {FULL_PATIENTS} patients x 60 min, closed loop, real safety code",
        value,
        "s",
        SPEED_GOAL,
        judged,
        {
            "per run median s": statistics.median(per_run) if per_run else float("nan"),
            "per run mean CPU s": statistics.fmean(cpu) if cpu else float("nan"),
            "on idle cores, from CPU time s": statistics.fmean(cpu) * target_runs / workers
            if cpu
            else float("nan"),
            "simulated x real time per run": 3600.0 / statistics.median(per_run)
            if per_run
            else float("nan"),
            "baseline: patient model alone, CPU s per run": baseline_s,
            "ratio to the baseline (CPU)": statistics.fmean(cpu) / baseline_s
            if cpu and baseline_s > 0
            else float("nan"),
        },
        note="each run: session, IPC encode/decode, safety core and kernel, simulated pump, "
        "patient, monitor, controller, then the ground-truth check",
    )


def _patient_model_alone(seed: str, patients: int, levels: int) -> float:
    """Seconds per 60-min patient for the patient model alone (constant infusion, same
    monitor grid), over a sample of the cohort's patients."""
    sample = min(patients * levels, 35)
    started = time.process_time()
    for k in range(sample):
        clock = VirtualClock(0.0)
        pump = SimulatedPump(clock, "bd-plastipak-50ml")
        params = draw_patient(seed, k % patients, SENSITIVITIES[k % levels])
        patient = Patient(params, LineSetup(16.0), pump, seed=seed, index=k, scenario=Scenario())
        pump.set_rate(5.0)
        pump.start()
        for _ in range(120):
            clock.advance(30.0)
            patient.readings_until(clock.now())
    return (time.process_time() - started) / sample


def _context(
    cohort: CohortResult, takeover: CohortResult, baseline_s: float, speed: CohortResult
) -> list[Context]:
    out: list[Context] = []
    for row in takeover.summary():
        if row["arm"] != Arm.CLOSED_LOOP.value:
            continue
        median = row["median"]
        assert isinstance(median, dict)
        manual = next(
            (
                r["median"]
                for r in takeover.summary()
                if r["arm"] == Arm.MANUAL.value
                and r["sensitivity"] == row["sensitivity"]
                and r["condition"] == row["condition"]
            ),
            None,
        )
        stats = {"above band": median["above_band"], "below band": median["below_band"]}
        if isinstance(manual, dict):
            stats["manual arm"] = manual["in_band"]
        out.append(
            Context(
                f"closed_loop.takeover.{row['sensitivity']:g}x.{row['condition']}",
                f"takeover design: median time in band, {row['sensitivity']:g}x, "
                f"{row['condition']}",
                median["in_band"],
                "%",
                stats,
                note=f"{row['n']} patients titrated to target first (not scored), then 60 min",
            )
        )
    requests = sum(r.requests for r in cohort.results if r.spec.arm is Arm.CLOSED_LOOP)
    refused = sum(sum(r.refusals.values()) for r in cohort.results if r.spec.arm is Arm.CLOSED_LOOP)
    out.append(
        Context(
            "closed_loop.requests",
            "closed loop: requests sent to the safety process, and refused",
            float(requests),
            "requests",
            {"refused": float(refused), "runs": float(len(cohort.results))},
            note="every change an ordinary request; the loop pre-checks with the kernel's "
            "pure rules, so a refusal means the safety process saw what the loop did not",
        )
    )
    return out
