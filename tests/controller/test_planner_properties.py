"""Planner properties over random programs, histories, pumps and targets.

Each plan is checked by an independent re-simulation: the test builds its own kernel
state from the history it generated (not the planner's), asks the kernel's ``decide``
about every step at the step's time, and applies the accepted rate. Every step must be
accepted; gradual-wean drugs must never fall below (1 - f) x the highest dose of the
window (checked here by hand, not by ``decide``); a plan must reach its target or say
which limit stops it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from controller.planner import (
    Plan,
    PlannerSettings,
    StepKind,
    plan_stop,
    plan_titration,
)
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.history import RateHistory, Segment
from safety.kernel.model import Now, Request, RequestMeta
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    evolve,
    load_program,
    single_channel,
)
from safety.pump_rounding import PumpResolution
from safety.reasons import Reason
from tests.conftest import shipped_library
from tests.controller.conftest import (
    PROGRAMS,
    PUMP_5ML,
    PUMP_50ML,
    Program,
    make_snapshot,
)

LIBRARY = shipped_library()
RESOLUTION = PumpResolution()
SETTINGS = PlannerSettings()
CONFIG = KernelConfig()
#: the limits a plan may legitimately fail on: no waiting can satisfy them
FINAL_LIMITS = {
    Reason.HARD_MAX,
    Reason.PUMP_RANGE_HIGH,
    Reason.PUMP_RANGE_LOW,
    Reason.CUMULATIVE_CAP,
}


def _program(p: Program) -> ActiveProgram:
    spec = p.spec(LIBRARY)
    return load_program(LIBRARY, spec, -1e9)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Program, list[tuple[float, Decimal]], tuple[Decimal, Decimal], Decimal | None]:
    program = draw(st.sampled_from(PROGRAMS))
    pump = draw(st.sampled_from((PUMP_5ML, PUMP_50ML)))
    active = _program(program)
    therapy = active.therapy
    low, high = Fraction(therapy.soft_min.value), Fraction(therapy.soft_max.value)
    count = draw(st.integers(1, 4))
    durations = draw(st.lists(st.floats(30.0, 5 * 3600.0), min_size=count, max_size=count))
    segments: list[tuple[float, Decimal]] = []
    start = -sum(durations)
    for duration in durations:
        share = Fraction(draw(st.integers(0, 1000)), 1000)
        dose = low + (high - low) * share
        rate = RESOLUTION.round_down(active.exact_rate(dose))
        assume(pump[0] <= rate <= pump[1])
        segments.append((start, rate))
        start += duration
    if draw(st.booleans()):
        target = None  # a stop
    else:
        # mostly within [soft min / 2, hard max x 1.1], the range that needs planning
        bottom = low / 2
        top = Fraction(therapy.hard_max.value) * Fraction(11, 10)
        share = Fraction(draw(st.integers(0, 1000)), 1000)
        target = Decimal(str(round(float(bottom + (top - bottom) * share), 4)))
        assume(target > 0)
    return program, segments, pump, target


def _replay(
    program: Program,
    segments: list[tuple[float, Decimal]],
    pump: tuple[Decimal, Decimal],
    plan: Plan,
) -> ActiveProgram:
    """Re-run the plan against the kernel, from a state built here."""
    active = _program(program)
    amount = active.amount_per_ml
    history = RateHistory(
        tuple(Segment(start, Fraction(rate) * amount) for start, rate in segments)
    )
    rate = segments[-1][1]
    state = single_channel(
        program=active,
        drugs={active.drug: DrugRecord(history, active.limits)},
        running=True,
        set_rate=rate,
        expected_running=True,
        expected_rate=rate,
        session="check",
        attached=True,
    )
    caps = PumpCapabilities(pump[0], pump[1], lambda r: float(RESOLUTION.round_down(Fraction(r))))
    wean = active.therapy.wean
    last_change = segments[-1][0]
    for seq, step in enumerate(plan.steps, start=1):
        t = plan.created_at + step.at_s
        assert t >= last_change + SETTINGS.min_step_interval_s or (
            step.kind is StepKind.STOP and seq == 1
        ), "steps keep their spacing"
        current = state.current_dose()
        verdict = decide(
            LIBRARY,
            state,
            Request(RequestMeta("check", seq, math.inf), step.request()),
            Now(t, 0.0),
            caps,
            CONFIG,
        )
        assert verdict.accepted, f"step {seq} refused: {verdict.message}\n{plan.describe()}"
        if step.kind is StepKind.STOP:
            state = evolve(
                state.with_history(state.history.with_rate(t, Fraction(0))),
                running=False,
                expected_running=False,
            )
            continue
        assert verdict.rate_ml_h is not None
        effective = active.dose(verdict.rate_ml_h)
        if wean.gradual_wean_only.value and effective < current:
            assert wean.max_fall_fraction is not None and wean.window_min is not None
            window = float(wean.window_min.value) * 60
            highest = active.dose_of_amount_rate(state.history.max_amount_rate(t - window, t))
            floor = (1 - Fraction(wean.max_fall_fraction.value)) * highest
            assert effective >= floor, f"step {seq} weans faster than the rule"
        state = evolve(
            state.with_history(state.history.with_rate(t, Fraction(verdict.rate_ml_h) * amount)),
            set_rate=verdict.rate_ml_h,
            expected_rate=verdict.rate_ml_h,
        )
        last_change = t
    return active


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(scenarios())
def test_every_step_is_accepted_and_the_target_is_reached_or_explained(
    scenario: tuple[Program, list[tuple[float, Decimal]], tuple[Decimal, Decimal], Decimal | None],
) -> None:
    program, segments, pump, target = scenario
    snapshot = make_snapshot(LIBRARY, program, segments, now=0.0, pump=pump)
    if target is None:
        plan = plan_stop(LIBRARY, snapshot)
    else:
        plan = plan_titration(LIBRARY, snapshot, target)
    active = _replay(program, segments, pump, plan)
    event(f"{program.drug}/{program.therapy}")
    event("reachable" if plan.reachable else f"unreachable: {plan.code}")
    event(f"steps: {min(len(plan.steps), 10)}{'+' if len(plan.steps) >= 10 else ''}")
    if plan.reachable:
        assert plan.problem is None
        if target is None:
            assert plan.steps and plan.steps[-1].kind is StepKind.STOP
            assert all(s.kind is StepKind.CHANGE for s in plan.steps[:-1])
        elif plan.steps:
            assert plan.steps[-1].dose == target
        else:
            assert Fraction(target) == Fraction(plan.start_dose)
        return
    # not reachable: the sentence names a limit that waiting cannot satisfy
    assert plan.problem and plan.code in FINAL_LIMITS, plan.describe()
    therapy = active.therapy
    if plan.code is Reason.HARD_MAX:
        assert target is not None and Fraction(target) > Fraction(therapy.hard_max.value)
        assert plan.best is not None and "highest dose possible" in plan.problem
    if plan.code is Reason.PUMP_RANGE_HIGH:
        assert plan.best is not None
        assert active.exact_rate(Fraction(plan.best)) <= Fraction(pump[1])
    if plan.code is Reason.PUMP_RANGE_LOW:
        assert "lowest dose possible" in plan.problem


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(scenarios(), st.integers(1, 3))
def test_a_plan_is_deterministic_and_resumable_from_its_own_midpoint(
    scenario: tuple[Program, list[tuple[float, Decimal]], tuple[Decimal, Decimal], Decimal | None],
    cut: int,
) -> None:
    """Planning again after some steps ran (as the session does after a refusal) still
    gives steps the kernel accepts, to the same target."""
    program, segments, pump, target = scenario
    assume(target is not None)
    assert target is not None
    snapshot = make_snapshot(LIBRARY, program, segments, now=0.0, pump=pump)
    plan = plan_titration(LIBRARY, snapshot, target)
    assert plan == plan_titration(LIBRARY, snapshot, target)
    assume(plan.reachable and len(plan.steps) > cut)
    done = plan.steps[:cut]
    later = list(segments)
    for step in done:
        later.append((step.at_s, step.rate_ml_h))
    now = done[-1].at_s + 1.0
    again = plan_titration(LIBRARY, make_snapshot(LIBRARY, program, later, now, pump), target)
    _replay(program, later, pump, replace(again, created_at=now))
    assert again.reachable and again.steps[-1].dose == target
