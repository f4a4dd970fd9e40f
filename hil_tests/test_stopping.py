"""Case group 3: stopping. An abrupt stop of norepinephrine becomes a wean (S5); an
emergency stop stops at once, with the interlock relay opened (S12).

Judged on the pump's ground truth: the wean is a staircase of falls, none more than 25 %
below the highest dose of the previous 30 min, ending in a stop from the stop threshold;
the emergency stop reached the pump before the call that asked for it returned, and the
pump-enable relay pin went off.
"""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import pytest

from controller.machine import State
from drivers.gpio.simulated import press_stop_button, release_stop_button
from hil_tests.conftest import MakeBench
from hil_tests.harness.processes import wait_for
from hil_tests.harness.pumps import ALL_KINDS, NE1000, PumpKind
from hil_tests.harness.truth import changes_between, describe, highest_between, last_rate
from safety.kernel.model import StartInfusion, StopInfusion
from safety.reasons import Reason

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]

#: mL/h per mcg/min at 32 mcg/mL
ML_H_PER_MCG_MIN = 60 / 32
WEAN_FRACTION = 0.25  # norepinephrine: at most 25 % below the highest dose ...
WEAN_WINDOW_S = 30 * 60  # ... of the last 30 min
STOP_THRESHOLD = 2.0  # mcg/min


def test_an_abrupt_stop_of_norepinephrine_becomes_a_gradual_wean(make_bench: MakeBench) -> None:
    bench = make_bench(NE1000)
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    session.start(8)
    bench.wait_clinical(bench.now() + 10 * 60)

    # the stop as one request, straight to the safety process: refused (S5)
    abrupt = session.order(StopInfusion())
    assert abrupt.verdict.reason is Reason.STOP_ABOVE_THRESHOLD, abrupt.verdict
    assert bench.pump()["running"]

    # the operator's stop: the controller plans it as a wean, then the stop
    stopping = bench.now()
    change = session.stop()
    plan = change.plan
    assert [s.kind for s in plan.steps][-1] == "stop"
    assert len(plan.steps) >= 4 and plan.duration_s >= 3 * WEAN_WINDOW_S, change.describe()
    change.confirm()
    wait_for(
        lambda: session.state in (State.STOPPED, State.ALARM),
        bench.real_s(plan.duration_s) * 2 + 20,
        "the wean to end in a stop",
    )
    assert session.state is State.STOPPED, session.alarms()
    wait_for(lambda: not bench.pump()["running"], 5.0, "the pump stopped")

    truth = bench.truth()
    text = describe(truth)
    steps = changes_between(truth, stopping)
    assert len(steps) >= 4 and steps[-1].rate_ml_h == 0.0, text
    assert steps[-1].start - stopping >= 3 * WEAN_WINDOW_S, text  # hours, not at once
    for step in steps[:-1]:
        # S5 on the delivered flow: not below 75 % of the highest rate of the last 30 min
        highest = highest_between(truth, step.start - WEAN_WINDOW_S, step.start)
        assert step.rate_ml_h >= (1 - WEAN_FRACTION) * highest - 1e-9, text
    assert all(b.rate_ml_h < a.rate_ml_h for a, b in itertools.pairwise(steps)), text
    assert steps[-2].rate_ml_h <= STOP_THRESHOLD * ML_H_PER_MCG_MIN + 1e-9, text
    report = bench.assert_invariants()
    assert report.summary.changes_by_cause == {"command": len(steps) + 1}


@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_an_emergency_stop_stops_the_pump_at_once_and_opens_the_relay(
    make_bench: MakeBench, kind: PumpKind
) -> None:
    bench = make_bench(kind)
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    session.start(8)
    wait_for(lambda: bench.gpio().get("pump_enabled") is True, 5.0, "the relay closed")
    bench.wait_clinical(bench.now() + 5 * 60)

    asked = bench.now()
    outcome = session.emergency_stop()
    returned = bench.now()
    assert outcome.verdict.accepted and outcome.execution == "applied", outcome
    # the pump itself stopped before the call returned: no wean, no delay (S12)
    truth = bench.truth()
    stops = changes_between(truth, asked)
    assert [s.rate_ml_h for s in stops] == [0.0], describe(truth)
    assert asked <= stops[0].start <= returned, describe(truth)
    assert not bench.pump()["running"]
    pins = bench.gpio()
    assert pins["pump_enabled"] is False  # the interlock relay cuts the pump
    assert pins["alarm_on"] is True
    snap = session.status()
    assert snap.estopped and any(a.key == "estop" and a.priority == "high" for a in snap.alarms)
    assert session.state is State.EMERGENCY_STOPPED

    # nothing starts again until the operator acknowledges the emergency stop
    held = session.order(StartInfusion(Decimal(2)))
    assert held.verdict.reason is Reason.EMERGENCY_STOPPED, held.verdict
    assert not bench.pump()["running"] and last_rate(bench.truth()) == 0.0
    report = bench.assert_invariants()
    assert report.summary.changes_by_cause == {"command": 1, "estop": 1}


def test_a_short_press_while_the_safety_process_waits_on_its_pump_is_not_missed(
    make_bench: MakeBench,
) -> None:
    """Every reply of the pump now comes 1.5 s late: the loop is inside an exchange nearly
    all the time, and it reads the button only between two. A 0.3 s press, begun and
    ended inside one wait, is counted by the GPIO's own sampling thread
    (``watch_stop_button``) and acted on at the loop's next look: an emergency stop, the
    relay cut and the pump stopped. Without the thread nine presses in ten were missed."""
    bench = make_bench(NE1000, reply_timeout_s=3.0, safe_mode_timeout_s=30)
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    session.start(8)
    wait_for(lambda: bench.gpio().get("pump_enabled") is True, 5.0, "the relay closed")
    session.close()  # a controller would only wait on the slow loop beside us
    bench.fault("delay=1.5")
    time.sleep(1.0)  # the loop is waiting on a reply by now
    pressed = bench.now()
    press_stop_button(bench.gpio_dir)
    time.sleep(0.3)  # the press itself
    release_stop_button(bench.gpio_dir)
    wait_for(lambda: bench.gpio().get("pump_enabled") is False, 15.0, "the relay cut")
    wait_for(lambda: not bench.pump()["running"], 15.0, "the pump stopped")
    truth = bench.truth()
    assert [s.rate_ml_h for s in changes_between(truth, pressed)] == [0.0], describe(truth)
    bench.fault("clear")
    bench.assert_invariants()
