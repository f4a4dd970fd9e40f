"""The steady-dose oracle: the bound docs/closed-loop.md (section 8) sets beside the
time-in-band goals. It must give the dose that holds the band's top from the first tick,
as things are at each tick, on the same person, line and hour as a cohort run."""

from __future__ import annotations

import math

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.patient.params import Condition, LineSetup, draw_patient
from firmware_bridge.patient.patient import Patient, Scenario
from firmware_bridge.pump_model import SimulatedPump
from verification.cohort.oracle import _rate_needed, oracle_run
from verification.cohort.run import Design

DESIGN = Design(seed="bench", minutes=20.0)


@pytest.mark.parametrize("sensitivity", [0.2, 1.0, 5.0])
def test_the_dose_for_the_bands_top_reaches_the_band_and_never_leaves_it(
    sensitivity: float,
) -> None:
    design = Design(seed="bench", minutes=60.0)
    need = draw_patient(design.seed, 0, sensitivity).dose_for_map(design.target_mmhg + 5.0)
    assert 0 < need < math.inf
    perf = oracle_run(design, 0, sensitivity, Condition.STABLE)
    assert perf.above_band == 0.0  # the MAP rises to the band's top, no further
    assert perf.in_band + perf.below_band == 100.0
    # the line's dead space and the drug's effect delay keep it below for a while
    assert 0.0 < perf.below_band < 50.0


def test_a_higher_aim_overshoots_the_band() -> None:
    design = Design(seed="bench", minutes=60.0)
    perf = oracle_run(design, 0, 1.0, Condition.STABLE, aim_mmhg=design.target_mmhg + 15.0)
    assert perf.above_band > 0.0


def test_the_dose_follows_the_need_of_the_moment() -> None:
    """Wandering, the dose is the one for the band's top at the vasodilation of the
    tick, whatever it was at the start."""
    design = Design(seed="bench", minutes=60.0)
    params = draw_patient(design.seed, 2, 1.0)
    clock = VirtualClock(0.0)
    patient = Patient(
        params,
        LineSetup(design.drug_ug_per_ml, design.dead_volume_ml, design.carrier_ml_h),
        SimulatedPump(clock, design.syringe),
        seed=design.seed,
        index=2,
        scenario=Scenario(condition=Condition.WANDERING),
    )
    aims = set()
    for minute in (5, 20, 40):
        t = minute * 60.0
        lowering = patient.vasodilation_mmhg(t)
        expected = params.dose_for_map(85.0, lowering) * 60.0 / design.drug_ug_per_ml
        assert _rate_needed(design, params, patient, t, 85.0) == pytest.approx(expected)
        aims.add(round(expected, 6))
    assert len(aims) == 3  # the vasodilation wandered, and the dose with it


def test_a_target_no_dose_reaches_is_never_in_the_band() -> None:
    design = Design(seed="bench", minutes=20.0, target_mmhg=250.0)
    assert draw_patient(design.seed, 0, 1.0).dose_for_map(design.target_mmhg) == math.inf
    perf = oracle_run(design, 0, 1.0, Condition.STABLE)  # runs the loop's maximum
    assert perf.in_band == 0.0
    assert perf.below_band == 100.0


def test_the_same_patient_gives_the_same_bound() -> None:
    one = oracle_run(DESIGN, 3, 2.0, Condition.WANDERING)
    assert oracle_run(DESIGN, 3, 2.0, Condition.WANDERING) == one
    assert one.n == 20 * 60 // 2  # the monitor's numerics over the scored minutes
