"""A Monte Carlo cohort: patients x sensitivities x conditions x arms, on every core.

The design of the published robustness simulation (Rinehart 2019: 250 simulated septic
patients at each of 7 norepinephrine sensitivities, 0.1x-10x, 60 min, stable or wandering
background vasodilation), with a manual-titration arm on the same patients beside the
closed loop. Patient ``i`` is the same person at every sensitivity, in both conditions
and both arms (``draw_patient(seed, i)``): only the potency, the disturbance and who
titrates change.

Runs are independent, so they go to a process pool (fork: the library and the code are
shared copy-on-write); each returns its result, and the results are put in one fixed
order (sensitivity, condition, patient, arm) whatever the number of workers, so the JSON
of a seed is the same on 1 core or 16. A run that raises is reported as failed (with the
error), never dropped silently.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from firmware_bridge.patient.params import Condition
from safety.library import DrugLibrary
from verification.cohort.metrics import cohort_medians
from verification.cohort.run import Arm, Design, RunResult, RunSpec, run_one

SENSITIVITIES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
CONDITIONS = (Condition.STABLE, Condition.WANDERING)
ARMS = (Arm.CLOSED_LOOP, Arm.MANUAL)

log = logging.getLogger("verification.cohort")


@dataclass(frozen=True)
class CohortSpec:
    design: Design
    patients: int = 250
    sensitivities: tuple[float, ...] = SENSITIVITIES
    conditions: tuple[Condition, ...] = CONDITIONS
    arms: tuple[Arm, ...] = ARMS

    def runs(self) -> list[RunSpec]:
        return [
            RunSpec(i, s, c, a)
            for s in self.sensitivities
            for c in self.conditions
            for i in range(self.patients)
            for a in self.arms
        ]


@dataclass(frozen=True)
class Failure:
    spec: RunSpec
    error: str


@dataclass
class CohortResult:
    spec: CohortSpec
    results: list[RunResult]
    failures: list[Failure] = field(default_factory=list)
    real_s: float = 0.0
    workers: int = 1

    def group(self, sensitivity: float, condition: Condition, arm: Arm) -> list[RunResult]:
        return [
            r
            for r in self.results
            if r.spec.sensitivity == sensitivity
            and r.spec.condition is condition
            and r.spec.arm is arm
        ]

    def summary(self) -> list[dict[str, object]]:
        """One row per (sensitivity, condition, arm): medians across patients, totals of
        requests, accepted, refusals, suspensions and violations over the level's ``n``
        runs (the JSON's ``summary``; the table shows the medians across runs of each run's
        requests and refusals instead, beside the other medians: docs/closed-loop.md)."""
        rows: list[dict[str, object]] = []
        for s in self.spec.sensitivities:
            for c in self.spec.conditions:
                for a in self.spec.arms:
                    group = self.group(s, c, a)
                    if not group:
                        continue
                    medians = cohort_medians(r.performance for r in group)
                    refusals: dict[str, int] = {}
                    for r in group:
                        for reason, n in r.refusals.items():
                            refusals[reason] = refusals.get(reason, 0) + n
                    rows.append(
                        {
                            "sensitivity": s,
                            "condition": c.value,
                            "arm": a.value,
                            "n": len(group),
                            "median": medians,
                            "drug_mcg_per_kg_median": _median([r.drug_mcg_per_kg for r in group]),
                            "requests": sum(r.requests for r in group),
                            "accepted": sum(r.accepted for r in group),
                            "refusals": dict(sorted(refusals.items())),
                            "suspensions": sum(r.suspensions for r in group),
                            "violations": sum(len(r.violations) for r in group),
                            "runs_with_violations": sum(1 for r in group if r.violations),
                        }
                    )
        return rows

    def ratio_to_manual(self, figure: str = "in_band") -> dict[str, float | None]:
        """Closed loop / manual, per sensitivity and condition, of a median figure."""
        out: dict[str, float | None] = {}
        for s in self.spec.sensitivities:
            for c in self.spec.conditions:
                loop = self.group(s, c, Arm.CLOSED_LOOP)
                manual = self.group(s, c, Arm.MANUAL)
                if not loop or not manual:
                    continue
                a = cohort_medians(r.performance for r in loop)[figure]
                b = cohort_medians(r.performance for r in manual)[figure]
                out[f"{s:g}x {c.value}"] = None if b == 0 else a / b
        return out

    def violations(self) -> int:
        return sum(len(r.violations) for r in self.results)

    def to_json(self, *, traces: bool = False) -> dict[str, object]:
        return {
            "kind": "pumpctl-cohort",
            "design": self.spec.design.to_json(),
            "patients": self.spec.patients,
            "sensitivities": list(self.spec.sensitivities),
            "conditions": [c.value for c in self.spec.conditions],
            "arms": [a.value for a in self.spec.arms],
            "summary": self.summary(),
            "in_band_ratio_to_manual": self.ratio_to_manual(),
            "violations": self.violations(),
            "failures": [{"run": _spec_json(f.spec), "error": f.error} for f in self.failures],
            "runs": [r.to_json(with_trace=traces) for r in self.results],
        }


def _spec_json(spec: RunSpec) -> dict[str, object]:
    return {
        "index": spec.index,
        "sensitivity": spec.sensitivity,
        "condition": spec.condition.value,
        "arm": spec.arm.value,
    }


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


# --------------------------------------------------------------------------- running

_WORKER: tuple[Design, DrugLibrary] | None = None


def _init_worker(design: Design, library: DrugLibrary, *, forked: bool = True) -> None:
    global _WORKER  # noqa: PLW0603 - one per worker process, set once by the pool
    _WORKER = (design, library)
    logging.disable(logging.WARNING)  # a run's own link noise (the session's hang-up)
    if forked:
        # a forked worker inherits the parent's handlers (``pumpctl bench`` turns SIGTERM
        # into KeyboardInterrupt): the parent alone handles Ctrl-C and ends the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        # what the worker inherited (modules, the library) lives as long as it does: kept
        # out of the collector's passes, which otherwise walk it again and again (and
        # touch, so copy, the parent's pages) while the runs make short-lived objects
        gc.freeze()


def _work(spec: RunSpec) -> RunResult | Failure:
    assert _WORKER is not None
    design, library = _WORKER
    try:
        return run_one(design, spec, library)
    except Exception as exc:  # reported with its spec, never dropped
        return Failure(spec, f"{type(exc).__name__}: {exc}")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def run_cohort(
    spec: CohortSpec,
    library: DrugLibrary,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> CohortResult:
    """Every run of ``spec``; ``workers`` processes (default: the usable cores; 1 runs in
    this process)."""
    started = time.perf_counter()
    runs = spec.runs()
    n = workers or default_workers()
    done: list[RunResult | Failure] = []
    for result in _results(runs, spec.design, library, n, check_interrupt):
        done.append(result)
        if progress is not None:
            progress(len(done), len(runs))
    order = {r.key: i for i, r in enumerate(runs)}
    done.sort(key=lambda r: order[r.spec.key])
    return CohortResult(
        spec,
        [r for r in done if isinstance(r, RunResult)],
        [r for r in done if isinstance(r, Failure)],
        time.perf_counter() - started,
        n,
    )


def _results(
    runs: list[RunSpec],
    design: Design,
    library: DrugLibrary,
    workers: int,
    check_interrupt: Callable[[], None] | None,
) -> Iterator[RunResult | Failure]:
    if workers <= 1:
        _init_worker(design, library, forked=False)
        try:
            for spec in runs:
                if check_interrupt is not None:
                    check_interrupt()
                yield _work(spec)
        finally:
            logging.disable(logging.NOTSET)
        return
    context = multiprocessing.get_context("fork")
    chunk = max(1, min(16, len(runs) // (workers * 8) or 1))
    with context.Pool(workers, initializer=_init_worker, initargs=(design, library)) as pool:
        for result in pool.imap_unordered(_work, runs, chunksize=chunk):
            if check_interrupt is not None:
                check_interrupt()
            yield result
        pool.close()  # every run is done: let the workers exit rather than terminate them
        pool.join()
