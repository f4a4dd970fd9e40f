"""The ground-truth checker on hand-made records: each rule fails when broken, and the
exemptions (the pump's own doing, emergency and safety stops) are exempt."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from firmware_bridge.emulators.truth_log import TruthLogWriter, read_truth_log
from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from safety.kernel.model import ProgramSpec
from safety.kernel.state import load_program
from safety.library import DrugLibrary
from verification.ground_truth import (
    Command,
    SafetyRecord,
    Verified,
    check_ground_truth,
)

#: norepinephrine 4 mg/250 mL = 16 mcg/mL: 1 mcg/min = 3.75 mL/h
PER_MCG_MIN = 3.75


def _spec(library: DrugLibrary, therapy: str = "standard") -> ProgramSpec:
    return ProgramSpec(
        library.content_hash, "norepinephrine", "adult_icu", therapy, "4 mg/250 mL", "D5W"
    )


def _rate(mcg_min: float) -> float:
    return mcg_min * PER_MCG_MIN


def _record(
    library: DrugLibrary, commands: list[Command], verified: list[Verified] | None = None
) -> SafetyRecord:
    program = load_program(library, _spec(library), 0.0)
    return SafetyRecord(((0.0, program),), tuple(commands), tuple(verified or ()))


def _set(t: float, mcg_min: float, cause: str = "command") -> Command:
    return Command(t, "set_rate", cause, Decimal(repr(_rate(mcg_min))))


def _course(*steps: tuple[float, float]) -> list[TruthEvent]:
    """Truth: (time s, mcg/min) changes, from a stopped pump at 0."""
    events: list[TruthEvent] = [TruthSegment(0.0, 0.0)]
    events += [TruthSegment(t, _rate(d)) for t, d in steps]
    return events


def _rules(report: object) -> list[str]:
    return [v.rule for v in report.violations]  # type: ignore[attr-defined]


def test_a_clean_course_holds_and_is_summarised(library: DrugLibrary) -> None:
    truth = _course((0, 8), (600, 10), (1200, 7.6), (3000, 0))
    commands = [
        _set(0, 8),
        Command(0, "start_pump", "command"),
        _set(600, 10),
        _set(1200, 7.6),
        Command(3000, "stop_pump", "estop"),
    ]
    report = check_ground_truth(truth, library, _record(library, commands), until=3600)
    assert report.ok, report.violations
    s = report.summary
    assert s.max_dose == pytest.approx(10) and s.max_rate_ml_h == pytest.approx(37.5)
    assert s.dose_unit == "mcg/min" and s.amount_unit == "mg"
    # 8 x 10 min + 10 x 10 min + 7.6 x 30 min = 408 mcg
    assert s.drug_amount == pytest.approx(0.408)
    assert s.volume_ml == pytest.approx(408 / 16)
    assert s.running_s == 3000 and s.above_soft_max_s == 0
    assert s.changes_by_cause == {"command": 3, "estop": 1}
    assert [c.kind for c in report.changes] == ["start", "rise", "fall", "stop"]


def test_hard_max_is_checked_on_every_stretch_whatever_caused_it(library: DrugLibrary) -> None:
    truth = _course((0, 8), (600, 50), (660, 8))  # 50 > 47 mcg/min, by nobody's command
    report = check_ground_truth(truth, library, _record(library, [_set(0, 8)]), until=900)
    assert _rules(report) == ["hard_max"]
    assert report.violations[0].time == 600
    assert "above the hard maximum 47 mcg/min" in report.violations[0].message
    assert [c.cause for c in report.changes][1:] == ["pump", "pump"]


def test_without_a_journal_only_the_hard_max_and_cap_are_judged(library: DrugLibrary) -> None:
    truth = _course((0, 8), (60, 40))  # a 5x rise, but nobody says who made it
    report = check_ground_truth(truth, library, program=_spec(library), until=120)
    assert report.ok
    assert {c.cause for c in report.changes} == {"pump"}


def test_a_commanded_step_rise_over_the_limit_fails(library: DrugLibrary) -> None:
    truth = _course((0, 8), (600, 12))  # +4: the step limit is min(2, 25 %) = 2
    commands = [_set(0, 8), Command(0, "start_pump", "command"), _set(600, 12)]
    report = check_ground_truth(truth, library, _record(library, commands), until=900)
    assert _rules(report) == ["step_rise"]
    assert "at most +2 mcg/min" in report.violations[0].message


def test_the_same_rise_by_the_pump_itself_is_not_a_titration(library: DrugLibrary) -> None:
    truth = _course((0, 8), (600, 12))
    commands = [_set(0, 8), Command(0, "start_pump", "command")]
    assert check_ground_truth(truth, library, _record(library, commands), until=900).ok


def test_a_change_past_the_commanded_rate_is_judged_as_the_commands(
    library: DrugLibrary,
) -> None:
    """At the instant a rise to 10 mcg/min is journaled the pump goes to 16, and at a wean
    step to 7.5 it falls to 4: the patient got a larger change than was ordered, judged
    as the command's (S4, S5) on the delivered figure, not exempted as the pump's own.
    A change the other way than ordered at that instant stays the pump's."""
    rise = [_set(0, 8), Command(0, "start_pump", "command"), _set(600, 10)]
    over = check_ground_truth(
        _course((0, 8), (600, 16)), library, _record(library, rise), until=900
    )
    assert [c.cause for c in over.changes] == ["command", "command"]
    assert _rules(over) == ["step_rise", "window_rise"]

    wean = [_set(0, 10), Command(0, "start_pump", "command"), _set(3600, 7.5)]
    under = check_ground_truth(
        _course((0, 10), (3600, 4)), library, _record(library, wean), until=3900
    )
    assert [c.cause for c in under.changes] == ["command", "command"]
    assert _rules(under) == ["wean_too_fast"]

    against = check_ground_truth(
        _course((0, 10), (3600, 11)), library, _record(library, wean), until=3900
    )
    assert against.ok and against.changes[-1].cause == "pump"


def test_window_rise_each_step_allowed_but_the_window_not(library: DrugLibrary) -> None:
    """8 -> 10 -> 12 -> 13 within 10 min: +5 over the window's lowest (8), limit +4."""
    truth = _course((0, 8), (60, 10), (120, 12), (180, 13))
    commands = [_set(0, 8), _set(60, 10), _set(120, 12), _set(180, 13)]
    report = check_ground_truth(truth, library, _record(library, commands), until=300)
    assert _rules(report) == ["window_rise"]
    assert report.violations[0].time == 180


def test_start_above_max_start_unless_licensed_by_a_verified_rate(library: DrugLibrary) -> None:
    truth = _course((0, 15))  # max start 12
    commands = [_set(0, 15), Command(0, "start_pump", "command")]
    report = check_ground_truth(truth, library, _record(library, commands), until=60)
    assert _rules(report) == ["start_above_max_start"]
    # a restart at 15 after an occlusion: 15 was verified running 5 min before
    truth = _course((0, 15), (300, 0), (600, 15))
    commands = [_set(600, 15), Command(600, "start_pump", "command")]
    verified = [Verified(0, Decimal(repr(_rate(15))), True), Verified(330, Decimal(0), False)]
    report = check_ground_truth(truth, library, _record(library, commands, verified), until=900)
    assert report.ok, report.violations
    # ... but a rate the safety process had judged over-rate is no licence
    verified = [Verified(0, Decimal(repr(_rate(15))), False), Verified(330, Decimal(0), False)]
    report = check_ground_truth(truth, library, _record(library, commands, verified), until=900)
    assert _rules(report) == ["start_above_max_start"]


def test_wean_floor_and_stop_threshold(library: DrugLibrary) -> None:
    """Norepinephrine: at most 25 % below the highest dose of the last 30 min."""
    at_floor = _course((0, 8), (600, 6))  # exactly (1 - 0.25) x 8
    report = check_ground_truth(at_floor, library, _record(library, [_set(600, 6)]), until=900)
    assert report.ok
    too_fast = _course((0, 8), (600, 5.9))
    report = check_ground_truth(too_fast, library, _record(library, [_set(600, 5.9)]), until=900)
    assert _rules(report) == ["wean_too_fast"]
    assert "the floor was 6 mcg/min" in report.violations[0].message
    abrupt = _course((0, 8), (600, 0))
    stop = [Command(600, "stop_pump", "command")]
    report = check_ground_truth(abrupt, library, _record(library, stop), until=900)
    assert _rules(report) == ["stop_above_threshold"]


def test_emergency_and_safety_stops_are_exempt_but_may_not_raise(library: DrugLibrary) -> None:
    abrupt = _course((0, 8), (600, 0))
    for cause in ("estop", "safety"):
        stop = [Command(600, "stop_pump", cause)]
        assert check_ground_truth(abrupt, library, _record(library, stop), until=900).ok
    raised = _course((0, 8), (600, 9))
    report = check_ground_truth(raised, library, _record(library, [_set(600, 9, "safety")]))
    assert _rules(report) == ["protective_raise"]
    retry = _course((0, 8), (600, 7), (610, 9))  # a retry above what the operator set
    commands = [_set(0, 8), _set(610, 9, "retry")]
    report = check_ground_truth(retry, library, _record(library, commands), until=900)
    assert _rules(report) == ["retry_above_set_rate"]


def test_cap_counts_prior_delivery_and_boluses(library: DrugLibrary) -> None:
    """68 mg per 24 h: 67.9 mg journaled before, then 8 mcg/min for 15 min (0.12 mg)."""
    hours = 23.0
    prior_rate = 67_900 / (hours * 60) * PER_MCG_MIN  # mL/h delivering 67.9 mg in 23 h
    prior = [TruthSegment(-hours * 3600, prior_rate), TruthSegment(-1.0, 0.0)]
    truth = _course((0, 8))
    report = check_ground_truth(truth, library, program=_spec(library), prior=prior, until=900)
    assert _rules(report) == ["cumulative_cap"]
    assert report.summary.cap_peak is not None and report.summary.cap_peak > 68
    assert "above the cap of 68 mg" in report.violations[0].message
    # the same without the prior: far below
    report = check_ground_truth(truth, library, program=_spec(library), until=900)
    assert report.ok and report.summary.cap_peak == pytest.approx(0.12)
    # a bolus counts: 4300 mL at 16 mcg/mL is 68.8 mg
    bolus: list[TruthEvent] = [*truth, TruthBolus(600.0, 4300.0)]
    report = check_ground_truth(bolus, library, program=_spec(library), until=900)
    assert _rules(report) == ["cumulative_cap"]
    assert report.summary.bolus_count == 1


def test_a_command_just_before_its_effect_is_matched_within_the_tolerance(
    library: DrugLibrary,
) -> None:
    """On a real wire the pump acts a little after the journal entry."""
    truth = _course((0, 8), (600.8, 12))
    commands = [_set(0, 8), _set(600.0, 12)]
    exact = check_ground_truth(truth, library, _record(library, commands), until=900)
    assert exact.ok and exact.changes[-1].cause == "pump"  # unmatched: the pump's own
    loose = check_ground_truth(
        truth, library, _record(library, commands), until=900, tolerance_s=1.0
    )
    assert _rules(loose) == ["step_rise"]


def test_a_truth_log_file_gives_the_same_verdict(library: DrugLibrary, tmp_path: Path) -> None:
    truth = _course((0, 8), (600, 12))
    path = tmp_path / "truth.jsonl"
    with TruthLogWriter(path) as writer:
        for event in truth:
            writer(event)
    record = _record(library, [_set(0, 8), _set(600, 12)])
    a = check_ground_truth(truth, library, record, until=900)
    b = check_ground_truth(read_truth_log(path), library, record, until=900)
    assert _rules(a) == _rules(b) == ["step_rise"]
    assert a.summary.to_json() == b.summary.to_json()


def test_the_journal_gives_the_causes(library: DrugLibrary) -> None:
    """SafetyRecord.from_events: programs, commands with causes, verified rates."""
    from safety.kernel.model import (
        CommandIssued,
        Now,
        ProgramLoaded,
        PumpReading,
        ReadbackReceived,
        SetRate,
        StartPump,
        StopPump,
    )

    now = Now(10.0, 1000.0)
    record = SafetyRecord.from_events(
        [
            ProgramLoaded(
                _spec(library), load_program(library, _spec(library), 10.0).limits, 0.0, now
            ),
            CommandIssued(SetRate(Decimal(30)), "command", now),
            CommandIssued(StartPump(), "command", now),
            ReadbackReceived(PumpReading(True, Decimal(30), 0.0), now),
            ReadbackReceived(PumpReading(True, Decimal(60), 0.1), Now(20.0, 1010.0)),
            CommandIssued(StopPump(), "safety", Now(20.0, 1010.0)),
        ]
    )
    assert [p[0] for p in record.programs] == [10.0]
    assert [(c.action, c.cause) for c in record.commands] == [
        ("set_rate", "command"),
        ("start_pump", "command"),
        ("stop_pump", "safety"),
    ]
    # the 60 mL/h read-back was not what was set: verified, but no licence
    assert [(v.rate_ml_h, v.licensed) for v in record.verified] == [
        (Decimal(30), True),
        (Decimal(60), False),
    ]
