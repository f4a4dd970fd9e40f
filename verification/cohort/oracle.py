"""How much of the hour a titrator could hold a patient in the band: a bound.

The steady-dose oracle knows what the closed loop has to learn: the dose that holds the
top of the band (target + band) at steady state for this patient, at the vasodilation and
disturbances of the moment (the patient model's own ``dose_for_map``). At every tick of
the design it sets the pump to that dose, from the first second of the scored hour, with
no rule between it and the pump (no max start, no titration or wean rule, no hard maximum,
no safety process). Only the pump's own range holds it: a dose below the pump's minimum
rate runs at the minimum (more than aimed at), an unreachable aim (beyond the patient's
Emax) at the loop's own maximum.

Stable, this bounds every titrator whose dose never exceeds that one: the drug's path
(line, plasma, effect site) is linear in the dose and its effect rises with it, so no
such titrator's MAP is above the oracle's at any instant, and the oracle's MAP rises to
the band's top and no further; it is in the band whenever the other's is. What keeps it
out is the patient alone: the line's dead space before any drug reaches the vein, the
drug's distribution and effect delay, a target some insensitive patients cannot reach. A
titrator could beat it only by giving more at first and less later (a loading dose),
which the max start and the step rules limit and the gradual wean would not let it take
back quickly. Wandering, the need moves while the drug is on its way, and the oracle's
figure is a reference, not a bound (a titrator that anticipates could do better); the
bench aims it at the target there (``aim_mmhg``), as aimed at the top every fall of the
need leaves it above the band.
docs/closed-loop.md, section 8, reports it beside the goals of issue 11.
"""

from __future__ import annotations

import math

from firmware_bridge.clock import VirtualClock
from firmware_bridge.patient.params import Condition, LineSetup, PatientParameters, draw_patient
from firmware_bridge.patient.patient import Patient, Scenario
from firmware_bridge.pump_model import SimulatedPump
from verification.cohort.metrics import Performance, performance
from verification.cohort.run import LEAD_IN_S, Design, refill_if_low


def oracle_run(
    design: Design,
    index: int,
    sensitivity: float,
    condition: Condition,
    *,
    aim_mmhg: float | None = None,
) -> Performance:
    """The oracle's hour on patient ``index`` at ``sensitivity``, the onset design's way:
    the same person, line, pump, lead-in, monitor grid and scored hour as a cohort run.
    ``aim_mmhg``: the MAP its dose holds at steady state (default: the band's top)."""
    aim = design.target_mmhg + design.band_mmhg if aim_mmhg is None else aim_mmhg
    params = draw_patient(design.seed, index, sensitivity)
    clock = VirtualClock(0.0)
    pump = SimulatedPump(clock, design.syringe)
    patient = Patient(
        params,
        LineSetup(design.drug_ug_per_ml, design.dead_volume_ml, design.carrier_ml_h),
        pump,
        seed=design.seed,
        index=index,
        scenario=Scenario(condition=condition, wander_amplitude_mmhg=design.wander_mmhg),
        period_s=design.monitor_period_s,
    )
    clock.advance(LEAD_IN_S)
    patient.readings_until(clock.now())
    t0 = clock.now()
    end = t0 + design.minutes * 60.0
    times: list[float] = []
    maps: list[float] = []
    while (left := end - clock.now()) > 1e-9:
        _run_at(pump, _rate_needed(design, params, patient, clock.now(), aim))
        refill_if_low(pump, design.tick_s)
        clock.advance(min(design.tick_s, left))
        for reading in patient.readings_until(clock.now()):
            if t0 <= reading.time <= end:
                times.append(reading.time - t0)
                maps.append(reading.true_map_mmhg)
    return performance(times, maps, design.target_mmhg, design.band_mmhg, params.map_pre_mmhg)


def _rate_needed(
    design: Design, params: PatientParameters, patient: Patient, t: float, aim: float
) -> float:
    """mL/h of the dose that holds ``aim`` at steady state, as things are at ``t`` (0: none
    needed)."""
    since = t - patient.start
    # what lowers the MAP now, the disturbances (a bleed, a bolus) counted as vasodilation
    lowering = patient.vasodilation_mmhg(t) - patient.scenario.disturbances.offset_mmhg(since)
    need_ug_min = params.dose_for_map(aim, lowering)
    if not math.isfinite(need_ug_min):
        need_ug_min = float(design.dose_max) * params.weight_kg
    return need_ug_min * 60.0 / design.drug_ug_per_ml


def _run_at(pump: SimulatedPump, rate_ml_h: float) -> None:
    snap = pump.snapshot()
    if rate_ml_h <= 0:
        pump.stop()
        return
    syringe = snap.syringe  # its rate range
    pump.set_rate(min(max(rate_ml_h, syringe.min_rate_ml_h), syringe.max_rate_ml_h))
    if not snap.running:
        pump.start()
