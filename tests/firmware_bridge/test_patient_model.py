"""The simulated norepinephrine patient: units, closed forms, determinism, the line.

The plausibility check (docs/closed-loop.md): at 0.1 mcg/kg/min in a 70 kg adult with a
clearance of 2 L/min the steady plasma level is 3.5 ug/L, and the MAP rise must be of
the order of Oualha's Emax model (32 mmHg x 3.5 / (3.5 + 4.11) = 14.7 mmHg), not the
0.44 mmHg one gets by reading PAS's C50 of 70.4 as ng/mL.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import VirtualClock
from firmware_bridge.patient import (
    FIGURES,
    SOURCES,
    Artefact,
    ArtefactEvent,
    Bleed,
    Condition,
    Disturbances,
    FluidBolus,
    LineSetup,
    Patient,
    PatientParameters,
    Scenario,
    Status,
    draw_patient,
    no_artefacts,
    typical_patient,
)
from firmware_bridge.patient.arterial import ArtefactSchedule, ArterialLine
from firmware_bridge.patient.disturbances import Vasodilation
from firmware_bridge.patient.line import InfusionLine
from firmware_bridge.patient.params import NMOL_PER_L_PER_NG_PER_ML, clearance_for_saps2, fig
from firmware_bridge.patient.pkpd import Pharmacokinetics
from firmware_bridge.patient.spec import parse_patient_spec
from firmware_bridge.pump_model import NotApplicable, SimulatedPump

DOCS = Path(__file__).resolve().parents[2] / "docs" / "closed-loop.md"
QUIET = Scenario(artefact_rates=no_artefacts())
STRENGTH = 16.0  # ug/mL: 4 mg in 250 mL


def ml_h(mcg_kg_min: float, weight: float) -> float:
    return mcg_kg_min * weight * 60.0 / STRENGTH


def bench(
    params: PatientParameters | None = None,
    *,
    seed: str = "t",
    scenario: Scenario = QUIET,
    line: LineSetup | None = None,
) -> tuple[VirtualClock, SimulatedPump, Patient]:
    clock = VirtualClock(0.0)
    pump = SimulatedPump(clock, "bd-plastipak-50ml")
    patient = Patient(
        params or typical_patient(),
        line or LineSetup(STRENGTH),
        pump,
        seed=seed,
        scenario=scenario,
    )
    return clock, pump, patient


def run(clock: VirtualClock, patient: Patient, seconds: float, step: float = 60.0) -> list:  # type: ignore[type-arg]
    out = []
    end = clock.now() + seconds
    while clock.now() < end - 1e-9:
        clock.advance(min(step, end - clock.now()))
        out += patient.readings_until(clock.now())
    return out


# --------------------------------------------------------------------------- units


def test_plausibility_check_settles_the_units() -> None:
    p = typical_patient()
    dose = 0.1 * 70.0  # 0.1 mcg/kg/min at 70 kg: 7 mcg/min
    level = p.steady_level_ng_ml(dose)
    assert level == pytest.approx(3.5)
    rise = p.effect_mmhg(level)
    oualha = 32.0 * level / (level + 4.11)
    assert oualha == pytest.approx(14.7, abs=0.05)
    # our reading (C50 = 70.4 nmol/L = 11.9 ng/mL): about 10 mmHg, same order as Oualha
    assert rise == pytest.approx(9.8, abs=0.1)
    assert 0.5 * oualha < rise < 1.5 * oualha
    # PAS as published (70.4 read as ng/mL): the implausible figures the reference measured
    published = replace(p, c50_ng_ml=70.4)
    assert published.effect_mmhg(level) == pytest.approx(0.44, abs=0.01)
    assert published.effect_mmhg(p.steady_level_ng_ml(0.5 * 70.0)) == pytest.approx(7.45, abs=0.02)
    assert published.effect_mmhg(level) < 0.1 * oualha  # rejected: 30x too weak


def test_molar_conversion() -> None:
    assert pytest.approx(5.91, abs=0.01) == NMOL_PER_L_PER_NG_PER_ML
    assert typical_patient().c50_ng_ml == pytest.approx(70.4 / 5.911, rel=1e-3)


def test_clearance_by_severity_meets_the_published_points() -> None:
    assert clearance_for_saps2(20) == pytest.approx(3.0)
    assert clearance_for_saps2(30) == pytest.approx(2.0)
    assert clearance_for_saps2(60) == pytest.approx(0.9)
    assert clearance_for_saps2(10) == clearance_for_saps2(20)  # held flat outside
    # half-lives with V 8.84 L: ~2 min at SAPS II 20, ~6.8 min at 60 (Beloeil)
    for saps, half_life in ((20, 2.0), (60, 6.8)):
        t_half = math.log(2) * fig("volume_l") / clearance_for_saps2(saps)
        assert t_half == pytest.approx(half_life, abs=0.05)
    values = [clearance_for_saps2(s) for s in range(20, 61)]
    assert values == sorted(values, reverse=True)


def test_every_figure_names_a_known_source_and_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, figure in FIGURES.items():
        assert figure.source in SOURCES
        assert re.search(rf"`{re.escape(name)}`", text), f"{name} is missing from {DOCS.name}"


# --------------------------------------------------------------------------- PK/PD


def test_pk_closed_form_matches_fine_integration() -> None:
    p = typical_patient()
    exact = Pharmacokinetics(p, plasma=1.0, effect=3.0)
    exact.run(7.0, 10.0)
    c, ce, dt = 1.0, 3.0, 1e-4
    k, ke0 = p.clearance_l_min / p.volume_l, p.ke0_per_min
    for _ in range(int(7.0 / dt)):
        c, ce = c + dt * (10.0 / p.volume_l - k * c), ce + dt * ke0 * (c - ce)
    assert exact.plasma == pytest.approx(c, rel=1e-3)
    assert exact.effect == pytest.approx(ce, rel=1e-3)


def test_pk_limit_when_effect_and_plasma_rates_are_equal() -> None:
    p = typical_patient()
    equal = replace(p, ke0_per_min=p.clearance_l_min / p.volume_l)
    near = replace(p, ke0_per_min=p.clearance_l_min / p.volume_l * (1 + 1e-6))
    a, b = Pharmacokinetics(equal, 2.0, 0.0), Pharmacokinetics(near, 2.0, 0.0)
    a.run(3.0, 5.0)
    b.run(3.0, 5.0)
    assert a.effect == pytest.approx(b.effect, rel=1e-5)


def test_steady_state_of_the_simulation_is_the_closed_form() -> None:
    p = typical_patient()
    clock, pump, patient = bench(p, line=LineSetup(STRENGTH, dead_volume_ml=0.5, carrier_ml_h=5))
    pump.set_rate(ml_h(0.1, 70.0))
    pump.start()
    readings = run(clock, patient, 90 * 60.0)  # 39 mL of the 50 mL syringe
    assert readings[-1].true_map_mmhg == pytest.approx(p.steady_map(7.0), abs=1e-6)
    assert patient.pk.plasma == pytest.approx(3.5, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    low=st.floats(0.0, 0.5),
    factor=st.floats(1.01, 5.0),
    sensitivity=st.sampled_from([0.1, 1.0, 10.0]),
    index=st.integers(0, 50),
)
def test_more_drug_never_lowers_the_map(
    low: float, factor: float, sensitivity: float, index: int
) -> None:
    params = draw_patient("mono", index, sensitivity)
    strong = LineSetup(160.0)  # ten times 16 ug/mL: a 50 mL syringe lasts the run
    traces = []
    for dose in (low, low * factor + 0.001):
        clock, pump, patient = bench(
            params, scenario=replace(QUIET, condition=Condition.WANDERING), line=strong
        )
        rate = ml_h(dose, params.weight_kg) / 10.0
        if rate >= pump.syringe.min_rate_ml_h:
            pump.set_rate(rate)
            pump.start()
        traces.append([r.true_map_mmhg for r in run(clock, patient, 1800.0, step=300.0)])
        assert not pump.snapshot().alarms
    assert all(b >= a - 1e-9 for a, b in zip(*traces, strict=True))


# --------------------------------------------------------------------------- determinism


def _script(pump: SimulatedPump, clock: VirtualClock, patient: Patient) -> list:  # type: ignore[type-arg]
    pump.set_rate(5.0)
    pump.start()
    out = run(clock, patient, 600.0, step=37.0)
    pump.set_rate(9.5)
    out += run(clock, patient, 600.0, step=53.0)
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.text(min_size=1, max_size=8), index=st.integers(0, 1000))
def test_same_seed_same_readings(seed: str, index: int) -> None:
    scenario = Scenario(condition=Condition.WANDERING)  # random artefacts included
    runs = []
    for _ in range(2):
        clock, pump, patient = bench(draw_patient(seed, index), seed=seed, scenario=scenario)
        runs.append(_script(pump, clock, patient))
    assert runs[0] == runs[1]


def test_readings_do_not_depend_on_how_often_they_are_asked_for() -> None:
    outs = []
    for step in (2.0, 61.0, 600.0):
        clock, pump, patient = bench(draw_patient(3, 3), seed="3", scenario=Scenario())
        pump.set_rate(12.0)
        pump.start()
        outs.append(run(clock, patient, 1200.0, step=step))
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0]) == 601  # every 2 s, t = 0 and t = 1200 included


def test_another_seed_another_patient() -> None:
    assert draw_patient("a", 0) != draw_patient("b", 0)
    assert draw_patient("a", 0) != draw_patient("a", 1)
    a, b = draw_patient("a", 5, 0.1), draw_patient("a", 5, 10.0)
    assert a == replace(b, sensitivity=0.1)  # the same person at every level


@settings(max_examples=30, deadline=None)
@given(
    index=st.integers(0, 10_000),
    sensitivity=st.floats(0.01, 100.0),
    steps=st.lists(
        st.tuples(st.sampled_from(["rate", "stop", "occlude", "clear"]), st.floats(1.0, 800.0)),
        max_size=8,
    ),
    dead=st.floats(0.0, 5.0),
    carrier=st.floats(0.0, 50.0),
)
def test_no_nan_whatever_the_pump_does(
    index: int, sensitivity: float, steps: list[tuple[str, float]], dead: float, carrier: float
) -> None:
    scenario = Scenario(
        condition=Condition.WANDERING,
        disturbances=Disturbances((Bleed(100.0, 50.0, 300.0),), (FluidBolus(400.0, 500.0, 600.0),)),
    )
    clock, pump, patient = bench(
        draw_patient("nan", index, sensitivity),
        scenario=scenario,
        line=LineSetup(STRENGTH, dead, carrier),
    )
    readings = []
    for action, value in steps:
        if action == "rate":
            pump.set_rate(value)
            with contextlib.suppress(NotApplicable):  # occluded or empty: the pump says no
                pump.start()
        elif action == "stop":
            pump.stop()
        else:
            pump.set_occlusion(action == "occlude")
        readings += run(clock, patient, 90.0, step=45.0)
    readings += run(clock, patient, 300.0)
    for r in readings:
        assert math.isfinite(r.true_map_mmhg) and r.true_map_mmhg >= 15.0
        if r.map_mmhg is not None:
            assert math.isfinite(r.map_mmhg)
    held = patient.line.drug_in_line_ug
    assert patient.drug_from_pump_ug == pytest.approx(patient.drug_to_vein_ug + held, abs=1e-6)


# --------------------------------------------------------------------------- the line


def test_a_change_reaches_the_vein_after_dead_volume_over_total_flow() -> None:
    line = InfusionLine(16.0, dead_volume_ml=1.0, carrier_ml_h=6.0, prime=0.0)
    pieces = list(line.flow(10.0, 6.0))  # 12 mL/h total: 1 mL takes 5 min
    assert pieces[0].minutes == pytest.approx(5.0)
    assert pieces[0].ug_per_min == 0.0  # the drug-free prime goes first
    assert pieces[1].ug_per_min == pytest.approx(16.0 * 6.0 / 60.0)  # then the full dose
    assert line.transit_min(6.0) == pytest.approx(5.0)
    assert math.isinf(InfusionLine(16.0, 1.0, 0.0, 0.0).transit_min(0.0))


def test_a_bolus_pushes_out_what_the_line_held() -> None:
    line = InfusionLine(16.0, dead_volume_ml=1.0, carrier_ml_h=0.0, prime=8.0)
    assert line.bolus(0.25) == pytest.approx(0.25 * 8.0)  # the prime's strength leaves
    assert line.drug_in_line_ug == pytest.approx(0.75 * 8.0 + 0.25 * 16.0)


def test_no_dead_volume_feeds_the_vein_at_once() -> None:
    line = InfusionLine(16.0, 0.0, 0.0, 0.0)
    assert [p.ug_per_min for p in line.flow(1.0, 60.0)] == [16.0]


# --------------------------------------------------------------------------- disturbances


def test_bleed_and_fluid_offsets() -> None:
    bleed = Bleed(60.0, 100.0, 300.0)  # 500 mL over 5 min
    assert bleed.lost_ml(0.0) == 0.0
    assert bleed.lost_ml(360.0) == pytest.approx(500.0)
    assert Disturbances((bleed,)).offset_mmhg(1000.0) == pytest.approx(-10.0)
    fluid = FluidBolus(0.0, 500.0, 600.0)
    tau = fig("fluid_redistribution_s")
    peak = fluid.intravascular_ml(600.0, tau)
    assert peak == pytest.approx(500.0 / 600.0 * tau * (1 - math.exp(-600.0 / tau)))
    assert fluid.intravascular_ml(600.0 + tau, tau) == pytest.approx(peak / math.e)
    with pytest.raises(ValueError, match="bleed rate"):
        Bleed(0.0, -1.0, 10.0)


@settings(max_examples=20, deadline=None)
@given(start=st.floats(0.0, 30.0), index=st.integers(0, 100))
def test_wandering_stays_within_its_amplitude(start: float, index: int) -> None:
    amplitude = fig("wander_amplitude_mmhg")
    v = Vasodilation(Condition.WANDERING, start, "w", index)
    values = [v.mmhg(t) for t in range(0, 4 * 3600, 30)]
    assert all(max(0.0, start - amplitude) - 1e-9 <= x <= start + amplitude + 1e-9 for x in values)
    assert len({round(x, 6) for x in values}) > 10  # it does wander
    stable = Vasodilation(Condition.STABLE, start, "w", index)
    assert {stable.mmhg(t) for t in range(0, 3600, 60)} == {start}


# --------------------------------------------------------------------------- the monitor


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        (Artefact.FLUSH, lambda r: r.map_mmhg > 290 and r.sys_mmhg - r.dia_mmhg < 2),
        (Artefact.ZEROING, lambda r: r.map_mmhg == 0 and r.sys_mmhg == r.dia_mmhg == 0),
        (Artefact.DISCONNECT, lambda r: r.map_mmhg < 5 and r.sys_mmhg - r.dia_mmhg < 1),
        (Artefact.DAMPING, lambda r: r.sys_mmhg - r.dia_mmhg < 0.3 * 70),
        (Artefact.NO_SIGNAL, lambda r: r.status is Status.NO_SIGNAL and r.map_mmhg is None),
    ],
)
def test_each_artefact_distorts_the_reading_not_the_patient(kind: Artefact, check: object) -> None:
    scenario = Scenario(
        artefact_rates=no_artefacts(), artefacts=(ArtefactEvent(kind, 100.0, 20.0),)
    )
    clock, _, patient = bench(scenario=scenario)
    readings = run(clock, patient, 200.0)
    hit = [r for r in readings if 100.0 <= r.time < 120.0]
    clean = [r for r in readings if not 100.0 <= r.time < 120.0]
    assert hit and all(r.artefact is kind and check(r) for r in hit)  # type: ignore[operator]
    assert all(r.artefact is None and r.status is Status.OK for r in clean)
    assert all(60 < r.true_map_mmhg < 100 for r in readings)


def test_random_artefacts_arrive_at_about_their_rate() -> None:
    _, _, patient = bench(scenario=Scenario())
    schedule = patient.arterial.schedule
    events = schedule.events_until(200 * 3600.0)
    per_hour = {k: sum(1 for e in events if e.kind is k) / 200.0 for k in Artefact}
    assert per_hour[Artefact.FLUSH] == pytest.approx(fig("flush_per_h"), rel=0.3)
    assert per_hour[Artefact.NO_SIGNAL] == pytest.approx(fig("no_signal_per_h"), rel=0.5)


def test_patient_spec_parses_and_names_bad_keys() -> None:
    spec = parse_patient_spec(
        "seed=7,index=2,sensitivity=0.5,condition=wandering,artefacts=none,"
        "artefact=flush@60:5,bleed=600:50:300,fluid=900:500:600,dead=0.3,carrier=0"
    )
    assert (spec.seed, spec.index, spec.sensitivity) == ("7", 2, 0.5)
    assert spec.scenario.condition is Condition.WANDERING
    assert spec.scenario.artefacts == (ArtefactEvent(Artefact.FLUSH, 60.0, 5.0),)
    assert spec.line.carrier_ml_h == 0.0
    for bad, field in [
        ("colour=red", "unknown key"),
        ("sensitivity=1000", "sensitivity"),
        ("artefact=flush", "KIND@START:DURATION"),
        ("condition=calm", "condition"),
        ("bleed=1:2", "START:AMOUNT:DURATION"),
    ]:
        with pytest.raises(ValueError, match=field):
            parse_patient_spec(bad)


@pytest.mark.parametrize("period", ["0.1", "60", "2"])
def test_patient_spec_takes_a_monitor_period_at_its_limits(period: str) -> None:
    spec = parse_patient_spec(f"period={period}")
    assert spec.period_s == float(period)
    # the arterial line takes what the spec took (its own check is the same range)
    ArterialLine(typical_patient(), "1", 0, spec.period_s, ArtefactSchedule("1", 0))


@pytest.mark.parametrize("period", ["0.0999", "60.001", "0", "100", "0.05", "nan", "inf", "-1"])
def test_patient_spec_refuses_a_monitor_period_out_of_range(period: str) -> None:
    with pytest.raises(ValueError, match=r"^patient spec: period must be 0\.1-60 s, got "):
        parse_patient_spec(f"period={period}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("drug=0", "drug strength must be above 0 and at most 10000 ug/mL, got 0.0"),
        ("drug=10000.01", "drug strength must be above 0 and at most 10000 ug/mL"),
        (
            "artefact=flush@5:0",
            "artefact 'flush@5:0': artefact duration must be above 0 and at most 86400 s, got 0.0",
        ),
        ("artefact=flush@5:86400.5", "duration must be above 0 and at most 86400 s"),
        ("artefact=flush@-1:5", "artefact start must be at least 0 s"),
        (
            "artefact=bogus@10:5",
            "artefact 'bogus@10:5': kind 'bogus' is not one of flush, zeroing, damping, "
            "disconnect, no_signal",
        ),
        ("artefact=flush@x:5", "artefact 'flush@x:5': START 'x' is not a number (seconds)"),
        ("artefact=flush@5:y", "artefact 'flush@5:y': DURATION 'y' is not a number (seconds)"),
    ],
)
def test_patient_spec_errors_state_the_range_really_accepted(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_patient_spec(spec)
    assert message in str(caught.value)
    assert str(caught.value).startswith("patient spec: ")


@pytest.mark.parametrize(
    "spec", ["drug=10000", "drug=0.001", "artefact=flush@0:86400", "artefact=flush@5:0.001"]
)
def test_patient_spec_takes_drug_and_artefact_at_their_limits(spec: str) -> None:
    parse_patient_spec(spec)
