"""The closed loop: artefact rejection, estimation, the control law's rails, and whole runs
through the in-process safety process (every change an ordinary, journaled request)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.closed_loop.artefacts import SignalFilter, Verdict, _RunningMedian
from controller.closed_loop.limits import Rules
from controller.closed_loop.loop import (
    NO_ROOM,
    SUSPENDED_KEY,
    ClosedLoop,
    LoopMode,
    arrivals,
    decide_dose,
)
from controller.closed_loop.model import DrugModel, Estimator, Segment, population_d50
from controller.closed_loop.settings import LoopSettingError, LoopSettings
from controller.errors import ControllerError
from controller.journal_plot import alarm_spans
from controller.journal_timeline import controller_alarms
from controller.machine import State
from controller.session import Session
from drivers.monitors import MapSample, MonitorUnavailable
from drivers.monitors.simulated import SimulatedMonitor
from firmware_bridge.patient import (
    Artefact,
    ArtefactEvent,
    LineSetup,
    Patient,
    Scenario,
    draw_patient,
    no_artefacts,
)
from safety.ipc.local import LocalSafety
from safety.journal_read import RawEntry
from safety.kernel.codec import decode_event
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.timing import HostTiming
from verification.ground_truth import SafetyRecord, check_ground_truth

SETTINGS = LoopSettings(soft_limits_confirmed=True)


def sample(seq: int, value: float | None, pulse: float = 45.0) -> MapSample:
    if value is None:
        return MapSample(seq, 2.0 * seq, None)
    return MapSample(seq, 2.0 * seq, value, value + 2 * pulse / 3, value - pulse / 3, 90)


# --------------------------------------------------------------------------- artefacts


def feed(f: SignalFilter, values: list[tuple[float | None, float]]) -> list[Verdict]:
    return [f.add(sample(i, v, p), 2.0 * i) for i, (v, p) in enumerate(values)]


def test_each_artefact_is_rejected_and_blood_pressure_is_not() -> None:
    f = SignalFilter(SETTINGS)
    normal = feed(f, [(80.0 + (i % 3), 45.0) for i in range(10)])
    assert set(normal) == {Verdict.VALID}
    verdicts = [
        f.add(sample(10, 120.0, 45.0), 20.0),  # a jump of 39 mmHg in 2 s
        f.add(sample(20, 300.0, 1.0), 40.0),  # flush
        f.add(sample(21, 0.0, 0.0), 42.0),  # zeroing
        f.add(sample(22, 2.0, 0.5), 44.0),  # disconnect
        f.add(sample(23, 77.0, 15.0), 46.0),  # damped (pulse 15 of a running 45)
        f.add(sample(24, None), 48.0),  # no signal
        f.add(sample(25, 81.0, 8.0), 50.0),  # a pressure with no pulse at all
    ]
    assert verdicts == [
        Verdict.JUMP,
        Verdict.IMPLAUSIBLE,
        Verdict.IMPLAUSIBLE,
        Verdict.IMPLAUSIBLE,
        Verdict.DAMPED,
        Verdict.NO_SIGNAL,
        Verdict.NO_PULSE,
    ]
    median, n = f.median_since(-1.0)
    assert n == 10 and 80 <= (median or 0) <= 82  # only the valid ones count


def test_a_real_change_of_level_is_accepted_after_five_agreeing_samples() -> None:
    f = SignalFilter(SETTINGS)
    feed(f, [(80.0, 45.0)] * 10)
    jumped = [f.add(sample(10 + i, 110.0 + (i % 2), 45.0), 20.0 + 2 * i) for i in range(6)]
    assert jumped[:4] == [Verdict.JUMP] * 4
    assert jumped[4:] == [Verdict.VALID, Verdict.VALID]


@pytest.mark.parametrize(
    ("value", "expected"), [(25.0, Verdict.VALID), (24.9, Verdict.IMPLAUSIBLE)]
)
def test_plausible_range_at_its_limit_and_just_past(value: float, expected: Verdict) -> None:
    f = SignalFilter(SETTINGS)
    assert f.add(sample(0, value), 0.0) is expected


def test_silence_is_measured_from_the_last_valid_sample() -> None:
    f = SignalFilter(SETTINGS)
    assert math.isinf(f.silent_for(0.0))
    f.add(sample(0, 80.0), 10.0)
    f.add(sample(1, None), 12.0)
    assert f.silent_for(40.0) == 30.0


def test_arrival_times_keep_a_batch_spacing() -> None:
    batch = [sample(i, 80.0) for i in range(5)]  # made 2 s apart
    assert arrivals(batch, 100.0) == [92.0, 94.0, 96.0, 98.0, 100.0]
    assert arrivals([], 5.0) == []


def test_settings_name_the_bad_field() -> None:
    with pytest.raises(LoopSettingError, match="band_mmhg: must be within 1-30"):
        LoopSettings(band_mmhg=0.5)
    with pytest.raises(LoopSettingError, match="dose_min"):
        LoopSettings(dose_min=Decimal("2"), dose_max=Decimal("1"))


# --------------------------------------------------------------------------- estimation


def test_the_drug_model_delays_by_the_line_and_settles_on_the_dose() -> None:
    model = DrugModel(dead_volume_ml=0.5, carrier_ml_h=5.0, ml_h_per_dose=100.0)
    model.advance(0.0)
    model.add(Segment(0.0, 10.0, 0.1))  # 15 mL/h in total: 0.5 mL takes 120 s
    model.advance(119.0)
    assert model.effect == 0.0
    model.advance(121.0)
    assert model.effect > 0.0
    model.advance(3 * 3600.0)
    assert model.effect == pytest.approx(0.1, rel=1e-6)
    free, gain = model.predict_effect(3600.0, 0.1)
    assert free + gain * 0.1 == pytest.approx(0.1, rel=1e-6)


def test_a_start_after_carrier_alone_arrives_after_its_own_transit() -> None:
    """Plug flow: the start's fluid is pushed by the start's flow and the carrier (0.5 mL
    at 10.55 mL/h: 170.6 s), not held back to the carrier alone's transit of the segment
    before it (0.5 mL at 5 mL/h: 360 s from the program, which the model once used)."""
    model = DrugModel(dead_volume_ml=0.5, carrier_ml_h=5.0, ml_h_per_dose=277.5)
    model.advance(0.0)
    model.add(Segment(0.0, 0.0, 0.0))  # programmed: the carrier alone flows
    model.add(Segment(120.0, 5.55, 0.02))
    arrival = 120.0 + 0.5 / 10.55 * 3600.0
    assert model.vein_dose(arrival - 0.1) == 0.0
    assert model.vein_dose(arrival + 0.1) == 0.02


def test_a_pause_is_pushed_out_by_the_flow_after_it() -> None:
    """Stopped for 20 s, then run again: the stop's boundary moves 20 s at the carrier's
    5 mL/h, then at 15 mL/h; the gap reaches the vein for the few seconds that are the
    pause's volume, and the restart arrives 120 s after it."""
    model = DrugModel(dead_volume_ml=0.5, carrier_ml_h=5.0, ml_h_per_dose=100.0)
    model.advance(0.0)
    model.add(Segment(0.0, 10.0, 0.1))
    model.add(Segment(1000.0, 0.0, 0.0))
    model.add(Segment(1020.0, 10.0, 0.1))
    pushed = 5.0 / 3600.0 * 20.0  # mL the carrier moved while stopped
    stop_arrives = 1020.0 + (0.5 - pushed) / 15.0 * 3600.0
    assert model.vein_dose(stop_arrives - 0.1) == 0.1
    assert model.vein_dose(stop_arrives + 0.1) == 0.0
    assert model.vein_dose(1140.0 - 0.1) == 0.0
    assert model.vein_dose(1140.0 + 0.1) == 0.1


def test_the_prediction_switches_after_the_transit_of_the_dose_s_rate() -> None:
    """``predict_effect`` gets a dose; its transit is that of the dose's pump rate (10
    mL/h here: 120 s with the carrier), not of the dose's number read as mL/h (0.1 mL/h:
    353 s), which left a change outside a 200 s horizon."""
    model = DrugModel(dead_volume_ml=0.5, carrier_ml_h=5.0, ml_h_per_dose=100.0)
    model.advance(0.0)
    model.add(Segment(0.0, 10.0, 0.1))
    model.advance(3600.0)
    assert model.predict_effect(119.0, 0.1)[1] == 0.0
    assert model.predict_effect(200.0, 0.1)[1] > 0.0


@settings(max_examples=15, deadline=None)
@given(fold=st.floats(0.1, 10.0), baseline=st.floats(50.0, 75.0))
def test_the_estimator_learns_sensitivity_from_dose_changes(fold: float, baseline: float) -> None:
    """Noise-free measurements of the controller's own model at three doses: the posterior
    puts the needed dose where it really is."""
    est = Estimator(population_d50(1 / 70.0))
    true_theta = math.log(population_d50(1 / 70.0) / fold)
    doses = [0.0, 0.02 / fold, 0.05 / fold, 0.1 / fold]
    for _ in range(10):
        for u in doses:
            est.predict(0.5)
            est.update(baseline + est.effect(u, true_theta), u)
    need = 80.0 - baseline
    true_dose = math.exp(true_theta + math.log(need / (est.emax - need)) / est.gamma)
    assert est.quantile_dose(80.0, 0.5) == pytest.approx(true_dose, rel=0.15)
    b, _, _ = est.mean()
    assert b == pytest.approx(baseline, abs=1.0)


def _law(
    est: Estimator, measured: float, current: float, trend: float | None = None
) -> float | None:
    drug = DrugModel(0.0, 0.0, 1.0)
    drug.advance(0.0)
    drug.add(Segment(0.0, 1.0, current))
    drug.advance(3600.0)  # settled on the running dose
    return decide_dose(est, drug, SETTINGS, current, measured, trend)


def test_law_rails_direction_comes_from_the_measured_map() -> None:
    est = Estimator(0.3)
    for _ in range(5):
        est.update(70.0, 0.05)
    assert (_law(est, 70.0, 0.05) or 0) > 0.05  # below: a rise
    assert _law(est, 79.0, 0.05) is None  # inside the dead band: nothing
    est2 = Estimator(0.3)
    for _ in range(5):
        est2.update(95.0, 0.05)
    fall = _law(est2, 95.0, 0.05)
    assert fall is not None and fall < 0.05  # above: a fall
    assert _law(est2, 81.0, 0.05) is None  # inside the dead band: nothing


def test_no_rise_while_the_trend_brings_the_map_to_the_target_at_the_limit() -> None:
    """The MAP rising on its own: a rise waits while the trend, ``trend_ahead_s`` ahead,
    reaches the dead band below the target (78.5 mmHg); a hair less and it goes."""
    est = Estimator(0.3)
    for _ in range(5):
        est.update(70.0, 0.05)
    ahead_min = SETTINGS.trend_ahead_s / 60.0
    floor = SETTINGS.target_mmhg - SETTINGS.deadband_mmhg
    at_floor = (floor - 70.0) / ahead_min  # mmHg/min that reaches the floor exactly
    assert _law(est, 70.0, 0.05, at_floor) is None
    assert _law(est, 70.0, 0.05, at_floor + 1.0) is None
    assert (_law(est, 70.0, 0.05, at_floor - 0.01) or 0) > 0.05
    assert (_law(est, 70.0, 0.05, None) or 0) > 0.05  # no trend known: as before
    assert (_law(est, 70.0, 0.05, -2.0) or 0) > 0.05  # falling: a rise
    est2 = Estimator(0.3)
    for _ in range(5):
        est2.update(95.0, 0.05)
    fall = _law(est2, 95.0, 0.05, 3.0)  # a fall is never held by the trend
    assert fall is not None and fall < 0.05


def test_a_map_shooting_past_the_band_brings_the_fall_forward_at_the_limit() -> None:
    """In the band (or above) and on its way past it within ``trend_ahead_s``: a fall as
    far as the wean rule allows (0; the rules clip it), before the MAP is above the
    target; exactly at both edges it falls, a hair inside either it does not."""
    est = Estimator(0.3)
    for _ in range(5):
        est.update(76.0, 0.05)  # a posterior that wants more drug, not less
    ahead_min = SETTINGS.trend_ahead_s / 60.0
    low, high = SETTINGS.band
    at_edge = (high - low) / ahead_min  # from the band's bottom to its top, exactly
    assert _law(est, low, 0.05, at_edge) == 0.0
    assert _law(est, low, 0.05, at_edge - 0.01) is None
    assert _law(est, low - 0.01, 0.05, at_edge + 1.0) is None  # below the band: no
    assert (_law(est, low, 0.05, None) or 0) > 0.05  # no trend known: the rise as before


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ((0.0, 30.0, 60.0, 90.0), None),  # not a span (120 s) of decisions yet
        ((0.0, 30.0, 60.0, 90.0, 120.0), 6.0 / 2.0),  # 6 mmHg over 2 min
        ((0.0, 60.0, 200.0), 6.0 / (140.0 / 60.0)),  # from the newest one a span old
        ((0.0, 240.0), 6.0 / 4.0),  # exactly twice the span: still read
        ((0.0, 240.01), None),  # a gap longer than that: no trend
    ],
)
def test_the_trend_is_read_over_the_span(
    make_bench: object, times: tuple[float, ...], expected: float | None
) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]
    loop = bench.loop
    loop._medians.clear()
    trend = None
    for i, t in enumerate(times):
        # the MAP 70 at the first decision, 76 at the last; in between, off the line
        value = 76.0 if i == len(times) - 1 else (70.0 if i == 0 or t < times[-1] - 120 else 90.0)
        trend = loop._trend(t, value)
    assert trend == (None if expected is None else pytest.approx(expected))


def test_settings_bound_the_trend() -> None:
    with pytest.raises(LoopSettingError, match="trend_span_s: must be within 30-1800"):
        LoopSettings(trend_span_s=29.0)
    with pytest.raises(LoopSettingError, match="trend_ahead_s: must be within 0-3600"):
        LoopSettings(trend_ahead_s=3600.5)
    LoopSettings(trend_span_s=30.0, trend_ahead_s=0.0)  # both limits allowed


# --------------------------------------------------------------------------- whole runs


@dataclass
class Bench:
    local: LocalSafety
    session: Session
    patient: Patient
    loop: ClosedLoop

    def run(self, seconds: float, tick: float = 10.0) -> None:
        end = self.local.clinical.now() + seconds
        while self.local.clinical.now() < end - 1e-9:
            self.local.advance(tick)
            self.session.service()  # an operator's plan steps fall due too
            self.loop.step()

    def journal(self, kind: str) -> list[dict[str, object]]:
        store = self.session.journal.journal
        assert store is not None
        return [json.loads(e.payload) for e in store.entries(kinds=[kind])]


@pytest.fixture
def make_bench(library: DrugLibrary) -> Iterator[object]:
    made: list[Bench] = []

    def build(
        *,
        sensitivity: float = 1.0,
        artefacts: tuple[ArtefactEvent, ...] = (),
        settings_: LoopSettings = SETTINGS,
        start: Decimal = Decimal("0.05"),
    ) -> Bench:
        params = draw_patient("loop-test", 1, sensitivity)
        local = LocalSafety(
            library=library,
            timing=HostTiming(poll_period_s=60, keep_alive_period_s=60, heartbeat_timeout_s=600),
        )
        session = Session.open(local, library, clinical=local.clinical)
        session.program(
            "norepinephrine", "4 mg/250 mL", "D5W", weight_kg=Decimal(70), therapy="weight_based"
        )
        scenario = Scenario(artefact_rates=no_artefacts(), artefacts=artefacts)
        patient = Patient(params, LineSetup(16.0), local.pump, seed="loop-test", scenario=scenario)
        loop = ClosedLoop(session, SimulatedMonitor(patient), settings_, clock=local.clinical)
        bench = Bench(local, session, patient, loop)
        made.append(bench)
        bench.run(60.0)  # the loop watches before anything runs
        session.start(start)
        loop.engage()
        return bench

    yield build
    for bench in made:
        bench.session.close()


def _violations(bench: Bench, library: DrugLibrary) -> list[str]:
    events = [decode_event(e.payload) for e in bench.local.journal.entries()]
    report = check_ground_truth(
        bench.local.pump.truth.events,
        library,
        SafetyRecord.from_events(events),
        until=bench.local.clinical.now(),
    )
    return [v.rule for v in report.violations]


def test_the_loop_raises_map_into_the_band_through_ordinary_requests(
    make_bench: object, library: DrugLibrary
) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]
    bench.run(45 * 60.0)
    low, high = SETTINGS.band
    assert low <= bench.patient.true_map(bench.local.clinical.now()) <= high + 2
    stats = bench.loop.stats
    assert stats.accepted == stats.requests > 0 and not stats.refusals
    kinds = [r["body"]["kind"] for r in bench.journal("request")]  # type: ignore[index]
    assert kinds == ["load_program", "start", *["change_dose"] * stats.requests]
    loop_events = {e["event"] for e in bench.journal("loop")}
    assert {"engage", "mode", "decision"} <= loop_events
    assert _violations(bench, library) == []


def test_signal_loss_suspends_holds_and_alarms_then_resumes(make_bench: object) -> None:
    lost = ArtefactEvent(Artefact.NO_SIGNAL, 600.0, 180.0)  # 3 min without a waveform
    bench: Bench = make_bench(artefacts=(lost,))  # type: ignore[operator]
    start = bench.patient.start
    bench.run(start + 600.0 + 40.0 - bench.local.clinical.now())
    assert bench.loop.mode is LoopMode.SUSPENDED
    assert "no valid MAP" in (bench.loop.suspended_why or "")
    alarm = next(a for a in bench.session.alarms() if a.key == SUSPENDED_KEY)
    assert alarm.priority == "medium" and alarm.active
    requests_before = bench.loop.stats.requests
    rate_before = bench.session.status().rate_ml_h
    bench.run(120.0)
    assert bench.loop.stats.requests == requests_before  # held: nothing sent
    assert bench.session.status().rate_ml_h == rate_before
    bench.run(240.0)
    assert bench.loop.mode is LoopMode.RUNNING  # type: ignore[comparison-overlap]
    alarm = next(a for a in bench.session.alarms() if a.key == SUSPENDED_KEY)
    assert not alarm.active  # condition gone, still latched until acknowledged
    bench.session.acknowledge((SUSPENDED_KEY,))
    assert all(a.key != SUSPENDED_KEY for a in bench.session.alarms())
    # the journal tells when the suspension ended, and a plot draws it as a span
    store = bench.session.journal.journal
    assert store is not None
    entries = [
        RawEntry(e.id, e.wall, e.clinical, e.liveness, e.process, e.kind, e.data())
        for e in store.entries(kinds=["alarm"])
    ]
    marks = [m for m in controller_alarms(entries) if m.key == SUSPENDED_KEY]
    assert [m.event for m in marks] == ["raised", "cleared"]
    raised, cleared = marks
    assert start + 600.0 < raised.time < cleared.time <= bench.local.clinical.now()
    (span,) = alarm_spans(marks)
    assert span.time == raised.time and span.until == cleared.time


def test_a_flush_is_ignored_without_suspending(make_bench: object) -> None:
    flush = ArtefactEvent(Artefact.FLUSH, 300.0, 6.0)
    bench: Bench = make_bench(artefacts=(flush,))  # type: ignore[operator]
    bench.run(15 * 60.0)
    assert bench.loop.stats.suspensions == 0
    assert bench.loop.filter.counts[Verdict.IMPLAUSIBLE] >= 2


def test_operator_takes_over_and_hands_back(make_bench: object) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]
    bench.run(5 * 60.0)
    bench.loop.take_over("bedside review")
    sent = bench.loop.stats.requests
    # a fall within the wean rule's room (S5: to 75 % of the window's highest at once)
    running = bench.session.status().dose
    assert running is not None
    change = bench.session.titrate_to(running * Decimal("0.9"))
    change.confirm()
    bench.run(10 * 60.0)
    assert bench.loop.stats.requests == sent  # the loop sent nothing meanwhile
    assert bench.session.state is State.INFUSING
    bench.loop.hand_back()
    assert bench.loop.mode is LoopMode.RUNNING
    modes = [e["dest"] for e in bench.journal("loop") if e["event"] == "mode"]
    assert modes == ["running", "manual", "running"]


def test_engage_puts_the_operators_settings_in_force_and_a_refusal_changes_nothing(
    make_bench: object,
) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]
    loop = bench.loop
    loop.take_over()
    before = loop.settings
    wider = replace(before, target_mmhg=before.target_mmhg + 5, band_mmhg=4.0)
    bench.session.titrate_to(Decimal("0.2"))  # a plan pending: not the loop's to change
    with pytest.raises(ControllerError, match="pending confirmation"):
        loop.engage(wider)
    assert loop.settings is before and loop.filter.settings is before
    bench.session.cancel_pending()
    loop.engage(wider)
    assert loop.mode is LoopMode.RUNNING
    assert loop.settings is wider and loop.filter.settings is wider
    engaged = [e for e in bench.journal("loop") if e["event"] == "engage"]
    assert engaged[-1]["settings"] == wider.describe()


@pytest.mark.parametrize(
    ("dose_min", "dose_max", "confirmed", "refused"),
    [
        ("0.005", "1.0", True, None),  # at the hard maximum (1.0 mcg/kg/min)
        ("0.005", "1.001", True, "dose_max: 1.001 mcg/kg/min is above the drug's hard max"),
        ("0.02", "0.5", False, None),  # at both soft limits, nothing to confirm
        ("0.02", "0.501", False, "dose_max: 0.501 mcg/kg/min is above the soft maximum"),
        ("0.019", "0.5", False, "dose_min: 0.019 mcg/kg/min is below the soft minimum"),
    ],
)
def test_engage_refuses_a_dose_range_the_rules_would_never_let_the_loop_use(
    make_bench: object, dose_min: str, dose_max: str, confirmed: bool, refused: str | None
) -> None:
    """A top dose above the hard maximum, or a range beyond a soft limit without the
    operator's confirmation, is refused at engage naming the field and the limit: the
    loop would otherwise stop short of it with the console saying it may go there."""
    bench: Bench = make_bench()  # type: ignore[operator]
    loop = bench.loop
    loop.take_over()
    before = loop.settings
    asked = replace(
        before,
        dose_min=Decimal(dose_min),
        dose_max=Decimal(dose_max),
        soft_limits_confirmed=confirmed,
    )
    if refused is None:
        loop.engage(asked)
        assert loop.settings is asked
        return
    with pytest.raises(LoopSettingError, match=refused) as caught:
        loop.engage(asked)
    assert caught.value.field == refused.partition(":")[0]
    assert loop.settings is before and loop.mode is LoopMode.MANUAL


def test_hand_back_is_refused_while_a_plan_runs(make_bench: object) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]
    bench.loop.take_over()
    bench.session.titrate_to(Decimal("0.2")).confirm()  # a multi-step plan
    assert bench.session.state is State.TITRATING
    with pytest.raises(ControllerError, match="running infusion with no plan"):
        bench.loop.hand_back()


def test_a_change_the_rules_shrink_to_nothing_is_not_sent(make_bench: object) -> None:
    """Capped by the titration window, the loop's wish clipped to the window's top was a
    hair above the running dose (0.0749 ordered, 0.074895 delivered at the rounded rate):
    it sent that same rate again every decision. Nothing that leaves the pump's rate as
    it is goes out."""
    bench: Bench = make_bench()  # type: ignore[operator]
    bench.run(15 * 60.0)
    outcomes = bench.journal("outcome")
    assert outcomes  # the loop did change the dose
    assert not [o for o in outcomes if "(same rate)" in str(o)]
    no_room = [
        e for e in bench.journal("loop") if e["event"] == "decision" and e["reason"] == NO_ROOM
    ]
    assert no_room  # the decisions that would have sent one say why nothing went


def test_refusals_are_counted_and_suspend_the_loop(
    make_bench: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop whose own pre-check is blind to S4 (as a library edited under it would make
    it) meets the safety process's refusals: counted, journaled, then it suspends."""
    bench: Bench = make_bench()  # type: ignore[operator]
    rules_bounds = Rules.bounds

    def blind(self: Rules) -> object:
        b = rules_bounds(self)
        return replace(b, highest=b.current * 10)

    class Yes:
        accepted = True
        rate_ml_h = None

    monkeypatch.setattr(Rules, "bounds", blind)
    monkeypatch.setattr(Rules, "check", lambda self, dose, soft: Yes())
    bench.loop._estimator = Estimator(10.0)  # believes the patient needs a lot
    bench.run(10 * 60.0)
    stats = bench.loop.stats
    assert sum(stats.refusals.values()) >= SETTINGS.refusals_to_suspend
    assert set(stats.refusals) <= {str(Reason.STEP_RISE), str(Reason.WINDOW_RISE)}
    # suspended by the refusals (it resumes after ``recover_s`` and meets them again)
    suspended = [
        e for e in bench.journal("loop") if e["event"] == "mode" and e["dest"] == "suspended"
    ]
    assert suspended
    assert "requests in a row refused by the safety process" in str(suspended[0]["why"])
    assert stats.suspensions >= 1
    outcomes = [o for o in bench.journal("outcome") if not o["accepted"]]
    assert len(outcomes) == sum(stats.refusals.values())


def test_monitor_errors_are_signal_loss(make_bench: object) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]

    class Broken:
        name = "broken"

        def poll(self) -> list[MapSample]:
            raise MonitorUnavailable("cable out")

    bench.loop.source = Broken()  # type: ignore[assignment]
    bench.run(90.0)
    assert bench.loop.mode is LoopMode.SUSPENDED
    assert bench.loop.stats.monitor_errors > 0
    why = [e["why"] for e in bench.journal("loop") if e.get("dest") == "suspended"]
    assert why == ["monitor link down (cable out)"]  # the source's own words


def test_proposals_stay_within_the_rules(make_bench: object) -> None:
    bench: Bench = make_bench()  # type: ignore[operator]
    snapshot = bench.session.status()
    rules = Rules(bench.session.library, snapshot)
    bounds = rules.bounds()
    dose, verdict = rules.propose(Fraction(10), Decimal("0.005"), Decimal("1.0"), True)
    assert dose is not None and verdict is not None and verdict.accepted
    assert Fraction(dose) <= bounds.highest
    assert bounds.highest == bounds.current * Fraction(5, 4)  # +25 % (S4 per step)
    down, verdict = rules.propose(Fraction(0), Decimal("0.005"), Decimal("1.0"), True)
    assert down is not None and verdict is not None and verdict.accepted
    assert Fraction(down) >= bounds.current * Fraction(3, 4)  # S5: 25 % below the top
    capped, _ = rules.propose(Fraction(10), Decimal("0.005"), Decimal("0.055"), True)
    assert capped is not None and capped <= Decimal("0.055")  # the loop's own maximum


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=400.0), max_size=80),
    st.sets(st.integers(min_value=0, max_value=79), max_size=3),
)
def test_the_running_median_is_the_median_of_the_last_values(
    values: list[float], clears: set[int]
) -> None:
    """The filter keeps its last values in order of size as they come and go, and drops
    them all at a real change of level (``clears``: before those values). Its median is
    the plain one of those values."""
    running = _RunningMedian(7)
    kept: list[float] = []
    for i, value in enumerate(values):
        if i in clears:
            running.clear()
            kept.clear()
        running.append(value)
        kept = [*kept, value][-7:]
        assert len(running) == len(kept)
        assert running.median() == statistics.median(kept)
