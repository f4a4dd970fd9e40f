"""Case group 1: a full course on each emulated pump.

Program norepinephrine (8 mg/250 mL in D5W, 32 mcg/mL), start at 4 mcg/min, titrate to
6 mcg/min (two steps: S4 allows +25 % per step), wean to 4.5 mcg/min, then stop, which for
a vasopressor is a gradual wean to the stop threshold (2 mcg/min) before the pump stops
(S5). All of it through the real controller (``Session``: plans, confirmations, the
service thread), the real safety process and the real driver on each wire.

Judged on the pump's ground truth: the delivered rate went 4 -> 5 -> 6 mcg/min and never
above, every fall was a gradual one, the pump stopped from at or below the stop
threshold, and every invariant of ``verification.ground_truth`` held.
"""

from __future__ import annotations

import itertools
import os
from decimal import Decimal

import pytest

from controller.machine import State
from controller.plan_executor import PendingChange
from controller.session import Session
from hil_tests.conftest import MakeBench
from hil_tests.harness.bench import HilBench
from hil_tests.harness.processes import unit_niceness, wait_for
from hil_tests.harness.pumps import ALL_KINDS, PumpKind
from hil_tests.harness.truth import changes_between, describe, last_rate, rate_at

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

#: mL/h per mcg/min at 32 mcg/mL
ML_H_PER_MCG_MIN = 60 / 32


def run_plan(bench: HilBench, session: Session, change: PendingChange, until: State) -> None:
    """Confirm a plan and wait (bounded by its clinical length) until the session is in
    ``until``; the service thread sends each step when it is due."""
    change.confirm()
    budget = bench.real_s(change.plan.duration_s) * 2 + 20.0
    wait_for(
        lambda: session.state is until or session.state is State.ALARM,
        budget,
        f"the plan to end in {until}",
    )
    assert session.state is until, f"{session.state}: {session.alarms()}"


@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_full_course_program_start_titrate_wean_stop(make_bench: MakeBench, kind: PumpKind) -> None:
    bench = make_bench(kind)
    session = bench.connect()
    if os.geteuid() == 0:  # as in service: the unit's niceness (hil_tests/harness/bench.py)
        assert bench.safety is not None and bench.emulator is not None
        for child in (bench.safety, bench.emulator):
            assert os.getpriority(os.PRIO_PROCESS, child.pid) == unit_niceness() < 0

    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    started = bench.now()
    outcome = session.start("4 mcg/min")
    assert outcome.execution == "applied", outcome
    bench.wait_clinical(bench.now() + 120)

    titrated = bench.now()
    run_plan(bench, session, session.titrate_to(6), State.INFUSING)
    assert session.status().dose == Decimal(6)
    bench.wait_clinical(bench.now() + 300)

    weaned = bench.now()
    run_plan(bench, session, session.wean("4.5 mcg/min"), State.INFUSING)
    # 8.4375 mL/h is 8.437 on an NE-1000 (4 digits, rounded down: never above the order)
    assert float(session.status().dose or 0) == pytest.approx(4.5, rel=1e-3)
    bench.wait_clinical(bench.now() + 60)

    stopping = bench.now()
    stop = session.stop()
    assert stop.plan.steps[-1].kind == "stop" and len(stop.plan.steps) >= 3, stop.describe()
    run_plan(bench, session, stop, State.STOPPED)
    wait_for(lambda: not bench.pump()["running"], 5.0, "the pump itself to stop")
    report = bench.assert_invariants()

    # the pump's own record of what reached the patient
    truth = bench.truth()
    text = describe(truth)
    assert rate_at(truth, started) == 0.0, text
    first = changes_between(truth, started, titrated)
    assert [s.rate_ml_h for s in first] == [4 * ML_H_PER_MCG_MIN], text
    rises = [s.rate_ml_h for s in changes_between(truth, titrated, weaned)]
    assert rises == pytest.approx([5 * ML_H_PER_MCG_MIN, 6 * ML_H_PER_MCG_MIN]), text
    assert report.summary.max_rate_ml_h == pytest.approx(6 * ML_H_PER_MCG_MIN), text
    falls = [s.rate_ml_h for s in changes_between(truth, stopping)]
    assert falls[-1] == 0.0 and len(falls) >= 3, text
    assert all(b < a for a, b in itertools.pairwise(falls)), text  # only down
    assert falls[-2] <= 2 * ML_H_PER_MCG_MIN + 1e-9, text  # stopped from the threshold
    assert last_rate(truth) == 0.0
    # every change of the delivered flow was an operator's command, judged and journaled
    assert set(report.summary.changes_by_cause) == {"command"}, report.summary.changes_by_cause
    assert not report.summary.bolus_count
