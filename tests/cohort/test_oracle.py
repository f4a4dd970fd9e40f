"""The steady-dose oracle: the bound docs/closed-loop.md (section 8) sets beside the
time-in-band goals. It must be the patient's own dose from the first tick, never more, on
the same person, line and hour as a cohort run."""

from __future__ import annotations

import math

from firmware_bridge.patient.params import Condition, draw_patient
from verification.cohort.oracle import oracle_run
from verification.cohort.run import Design

DESIGN = Design(seed="bench", minutes=20.0)


def test_the_patients_own_dose_reaches_the_band_and_never_overshoots_it() -> None:
    design = Design(seed="bench", minutes=60.0)
    need = draw_patient(design.seed, 0, 1.0).dose_for_map(design.target_mmhg)
    assert 0 < need < math.inf
    perf = oracle_run(design, 0, 1.0, Condition.STABLE)
    assert perf.above_band == 0.0  # the steady dose: the MAP rises to the target, no further
    assert perf.in_band + perf.below_band == 100.0
    # the line's dead space and the drug's effect delay keep it below for a while, and
    # then it holds the target
    assert 0.0 < perf.below_band < 50.0
    assert perf.mdape < 5.0


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
