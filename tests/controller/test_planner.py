"""The planner on hand-built snapshots: the plans a bench sees most, and the refusals it
must explain."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from controller.planner import (
    PlanError,
    PlanKind,
    PlannerSettings,
    StepKind,
    plan_stop,
    plan_titration,
    plan_wean,
    planning_state,
)
from safety.kernel.config import KernelConfig
from safety.kernel.state import PriorLimits, limits_of, program_check
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import Snapshot
from tests.controller.conftest import (
    DOBUTAMINE,
    NOREPI,
    NOREPI_HRS,
    NOREPI_KG,
    PUMP_50ML,
    VASOPRESSIN,
    make_snapshot,
)

#: 8 mcg/min of norepinephrine 16 mcg/mL = 30 mL/h, running for 10 min
RATE_8 = Decimal(30)


def norepi_at(library: DrugLibrary, rate: Decimal = RATE_8, since: float = -600.0) -> Snapshot:
    return make_snapshot(library, NOREPI, [(since, rate)], now=0.0)


def test_a_rise_takes_the_largest_steps_and_waits_for_the_window(library: DrugLibrary) -> None:
    plan = plan_titration(library, norepi_at(library), Decimal(14))
    assert plan.reachable and plan.kind is PlanKind.TITRATE
    assert [s.dose for s in plan.steps] == [Decimal(10), Decimal(12), Decimal(14)]
    assert [s.at_s for s in plan.steps] == [0.0, 60.0, 601.0]
    # step 3 waits until 8 mcg/min has left the 10-minute window (S4: +4 per window)
    assert plan.steps[2].waits_for is not None and "titration window" in plan.steps[2].waits_for
    assert plan.duration_s == 601.0
    assert plan.steps[0].rate_ml_h == Decimal("37.5")
    text = plan.describe()
    assert "3 steps over 0:10:01" in text and "14 mcg/min" in text


def test_a_wean_never_falls_more_than_the_rule_allows(library: DrugLibrary) -> None:
    plan = plan_titration(library, norepi_at(library, Decimal(45)), Decimal(4))  # 12 -> 4
    assert plan.reachable
    doses = [Fraction(s.delivers) for s in plan.steps]
    assert doses[-1] == 4
    previous = Fraction(12)
    for step, dose in zip(plan.steps, doses, strict=True):
        # one wean step per 30-minute window: never below 75 % of the window's highest
        assert dose >= Fraction(3, 4) * previous
        assert step.waits_for is None or "wean window" in step.waits_for or step.index == 1
        previous = dose
    gaps = [b.at_s - a.at_s for a, b in zip(plan.steps, plan.steps[1:], strict=False)]
    assert all(gap > 1800 for gap in gaps)


def test_a_stop_of_norepinephrine_weans_to_the_threshold_then_stops(
    library: DrugLibrary,
) -> None:
    plan = plan_stop(library, norepi_at(library, Decimal(45)))  # 12 mcg/min
    assert plan.kind is PlanKind.STOP and plan.ends_in_stop and plan.reachable
    assert plan.steps[-2].dose == Decimal(2)  # the stop threshold
    assert plan.steps[-1].kind is StepKind.STOP
    assert all(s.kind is StepKind.CHANGE for s in plan.steps[:-1])
    assert plan.duration_s > 2 * 3600
    assert plan_wean(library, norepi_at(library, Decimal(45))).steps == plan.steps


def test_a_stop_below_the_threshold_is_one_step(library: DrugLibrary) -> None:
    plan = plan_stop(library, norepi_at(library, Decimal("7.5")))  # 2 mcg/min
    assert [s.kind for s in plan.steps] == [StepKind.STOP]
    assert plan.steps[0].at_s == 0.0


def test_a_drug_without_a_wean_rule_falls_and_stops_at_once(library: DrugLibrary) -> None:
    snap = make_snapshot(library, DOBUTAMINE, [(-600.0, Decimal("10.8"))], now=0.0)  # 6 mcg/kg/min
    fall = plan_titration(library, snap, Decimal("2.5"))
    assert len(fall.steps) == 1 and fall.steps[0].dose == Decimal("2.5")
    stop = plan_stop(library, snap)
    assert [s.kind for s in stop.steps] == [StepKind.STOP]
    vaso = make_snapshot(library, VASOPRESSIN, [(-600.0, Decimal(12))], now=0.0)  # 0.04 u/min
    assert [s.kind for s in plan_stop(library, vaso).steps] == [StepKind.STOP]


def test_above_the_hard_max_is_explained_with_what_is_possible(library: DrugLibrary) -> None:
    plan = plan_titration(library, norepi_at(library), Decimal(50))
    assert not plan.reachable and plan.code is Reason.HARD_MAX
    assert plan.problem is not None
    assert "hard maximum of 47 mcg/min" in plan.problem
    assert "highest dose possible is 47 mcg/min" in plan.problem
    assert plan.best == Decimal(47)
    assert "NOT REACHABLE" in plan.describe()


def test_above_the_pump_range_names_the_pump_and_the_highest_dose(library: DrugLibrary) -> None:
    # dobutamine 2 mg/mL at 60 kg: 20 mcg/kg/min = 36 mL/h; a 1 mL/h..1999 pump is fine,
    # so use a tiny pump range instead
    snap = make_snapshot(
        library, DOBUTAMINE, [(-600.0, Decimal("10.8"))], 0.0, (Decimal("0.5"), Decimal(12))
    )
    plan = plan_titration(library, snap, Decimal(10))
    assert not plan.reachable and plan.code is Reason.PUMP_RANGE_HIGH
    assert plan.problem is not None and "above the pump's 12 mL/h" in plan.problem
    assert plan.best is not None and plan.best < Decimal(10)


def test_below_the_pump_range_names_the_lowest_dose(library: DrugLibrary) -> None:
    snap = make_snapshot(library, NOREPI, [(-600.0, RATE_8)], now=0.0, pump=PUMP_50ML)
    plan = plan_titration(library, snap, Decimal("0.1"))  # 0.375 mL/h < 1 mL/h
    assert not plan.reachable and plan.code is Reason.PUMP_RANGE_LOW
    assert plan.problem is not None and "below the pump's minimum 1 mL/h" in plan.problem


def test_soft_limit_crossings_are_flagged_step_by_step(library: DrugLibrary) -> None:
    snap = make_snapshot(library, NOREPI, [(-3600.0, Decimal("127.5"))], now=0.0)  # 34
    plan = plan_titration(library, snap, Decimal(38))
    assert plan.reachable and plan.needs_soft_confirmation
    flagged = [s.dose for s in plan.steps if s.confirm_soft_limits]
    assert flagged == [s.dose for s in plan.steps if s.dose is not None and s.dose > 35]
    assert any("soft maximum of 35 mcg/min" in f for f in plan.soft_findings)
    assert "soft-limit confirmation" in plan.describe()


def test_the_cumulative_cap_limits_a_rise_and_says_how_far(library: DrugLibrary) -> None:
    # 46 mcg/min (172.5 mL/h) for 23.7 h: 65.4 mg of the 68 mg/24 h cap given; 47 for
    # the next hour would cross it (S3 look-ahead)
    snap = make_snapshot(
        library, NOREPI, [(-23.7 * 3600.0, Decimal("172.5"))], now=0.0, pump=PUMP_50ML
    )
    plan = plan_titration(library, snap, Decimal(47))
    assert not plan.reachable and plan.code is Reason.CUMULATIVE_CAP
    assert plan.problem is not None and "cap allows at most about" in plan.problem


def test_a_cap_reached_during_a_wean_is_a_warning(library: DrugLibrary) -> None:
    # 0.9 mcg/kg/min at 70 kg (63 mcg/min) for 17 h: 64.3 of the 68 mg; weaning from there
    # still crosses the cap before the window lets go of any of it
    snap = make_snapshot(library, NOREPI_KG, [(-17 * 3600.0, Decimal("236.25"))], now=0.0)
    plan = plan_stop(library, snap, config=KernelConfig())
    assert plan.warnings and "cumulative cap (68 mg per 24 h)" in plan.warnings[0]
    assert "would then stop the pump" in plan.warnings[0]


def test_no_cap_warning_when_the_window_lets_go_in_time(library: DrugLibrary) -> None:
    # 46 mcg/min for 23.7 h is 65.4 mg, but the oldest drug leaves the 24 h window faster
    # than the wean adds: the guard never trips
    snap = make_snapshot(
        library, NOREPI, [(-23.7 * 3600.0, Decimal("172.5"))], now=0.0, pump=PUMP_50ML
    )
    assert plan_stop(library, snap).warnings == ()


def test_weight_based_and_long_window_therapies(library: DrugLibrary) -> None:
    # 0.05 mcg/kg/min at 70 kg, 16 mcg/mL = 13.125 mL/h
    snap = make_snapshot(library, NOREPI_KG, [(-3600.0, Decimal("13.125"))], now=0.0)
    plan = plan_titration(library, snap, Decimal("0.2"))
    assert plan.reachable and plan.steps[-1].dose == Decimal("0.2")
    # hepatorenal: +0.5 mg/h per 4 h
    hrs = make_snapshot(library, NOREPI_HRS, [(-3600.0, Decimal("31.25"))], now=0.0)  # 0.5 mg/h
    plan = plan_titration(library, hrs, Decimal(2))
    assert plan.reachable
    assert [s.dose for s in plan.steps] == [Decimal(1), Decimal("1.5"), Decimal(2)]
    assert plan.duration_s > 8 * 3600  # one step per 4-hour window


def test_the_first_step_keeps_its_distance_from_the_last_change(library: DrugLibrary) -> None:
    plan = plan_titration(library, norepi_at(library, since=-10.0), Decimal(10))
    assert plan.steps[0].at_s == 50.0
    waits = plan.steps[0].waits_for
    assert waits is not None and "after the last change" in waits


def test_planning_needs_a_running_infusion(library: DrugLibrary) -> None:
    stopped = make_snapshot(library, NOREPI, [(-600.0, RATE_8), (-60.0, Decimal(0))], now=0.0)
    with pytest.raises(PlanError, match="nothing is infusing; start first"):
        plan_titration(library, stopped, Decimal(10))
    with pytest.raises(PlanError, match="positive"):
        plan_titration(library, norepi_at(library), Decimal(0))


def test_a_state_judged_at_a_later_instant_is_the_one_a_later_snapshot_gives(
    library: DrugLibrary,
) -> None:
    """``planning_state(now=)`` on a snapshot of an earlier instant (nothing changed since):
    the same kernel state as from a snapshot taken at ``now``, whose earlier limits still
    in force are only those that have not run out by then."""
    limits = limits_of(program_check(library, NOREPI_HRS.spec(library)), library.content_hash)
    early = PriorLimits(limits, until=5000.0, why="ends first")
    late = PriorLimits(limits, until=9000.0, why="ends later")
    base = make_snapshot(library, NOREPI, [(-600.0, RATE_8), (3000.0, Decimal(36))], now=4000.0)
    held = replace(base, priors=(early, late))  # what was shown at t=4000
    for now, still in ((4000.0, (early, late)), (6000.0, (late,)), (9500.0, ())):
        taken = replace(base, clinical_time=now, priors=still)  # what t=now would show
        assert planning_state(library, held, now=now) == planning_state(library, taken)
    assert planning_state(library, held, now=4000.0) == planning_state(library, held)


def test_a_foreign_library_is_refused(library: DrugLibrary) -> None:
    snap = norepi_at(library)
    assert snap.program is not None
    foreign = replace(snap, program=replace(snap.program, library_hash="sha256:other"))
    with pytest.raises(PlanError, match="library"):
        plan_titration(library, foreign, Decimal(10))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_step_interval_s"):
        PlannerSettings(min_step_interval_s=0)
    with pytest.raises(ValueError, match="wean_margin"):
        PlannerSettings(wean_margin=Fraction(1))


def test_no_step_is_wasted_on_a_rise_the_pump_would_round_away(library: DrugLibrary) -> None:
    """Found by hypothesis: near the window bound, +0.0004 mg/h rounds to the same pump
    rate; the planner must wait for the window instead of stepping in place for ever."""
    snap = make_snapshot(library, NOREPI_HRS, [(-30.0, Decimal("31.4"))], now=0.0)
    plan = plan_titration(library, snap, Decimal("2.0038"))
    assert plan.reachable and plan.steps[-1].dose == Decimal("2.0038")
    rates = [s.rate_ml_h for s in plan.steps[:-1]]
    assert len(rates) == len(set(rates))  # every step but the last changes the rate
    assert len(plan.steps) < 10
