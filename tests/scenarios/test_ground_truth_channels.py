"""The oracle on a bench of two channels (``verification.channel_truth``), on hand-made
journals and truth logs where the verdict turns on the patient's total of the drug: what
each pump alone would pass or fail, the sum decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from firmware_bridge.pump_model import TruthEvent, TruthSegment, TruthWaste
from safety.kernel.model import (
    CommandIssued,
    EmergencyStop,
    Event,
    Now,
    PrimePump,
    ProgramLoaded,
    ProgramSpec,
    PumpAction,
    PumpReading,
    ReadbackReceived,
    RequestBody,
    RequestDecided,
    SetRate,
    StartInfusion,
    StartPump,
    StopInfusion,
    StopPump,
)
from safety.kernel.state import load_program
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard
from verification.channel_truth import ChannelsError, ChannelsReport, check_channels
from verification.handover import set_flow, summed_flow, window_figures

#: norepinephrine 4 mg/250 mL = 16 mcg/mL: 1 mcg/min = 3.75 mL/h
PER_MCG_MIN = 3.75


def _rate(mcg_min: float, per_mcg_min: float = PER_MCG_MIN) -> Decimal:
    return Decimal(repr(mcg_min * per_mcg_min))


def _load(
    library: DrugLibrary, t: float, channel: str, concentration: str = "4 mg/250 mL"
) -> ProgramLoaded:
    spec = ProgramSpec(
        library.content_hash, "norepinephrine", "adult_icu", "standard", concentration, "D5W"
    )
    program = load_program(library, spec, t)
    return ProgramLoaded(spec, program.limits, 0.0, Now(t, t), channel)


def _do(t: float, action: PumpAction, cause: str = "command") -> CommandIssued:
    return CommandIssued(action, cause, Now(t, t))


def _decided(t: float, body: RequestBody) -> RequestDecided:
    """The accepted request whose commands follow (one decision's commands are journaled
    back to back after it)."""
    return RequestDecided(None, None, body, True, Reason.ACCEPTED, Now(t, t))


def _stop(t: float, channel: str) -> list[Event]:
    """An operator's stop of one channel, as journaled."""
    return [
        _decided(t, StopInfusion(channel=channel)),
        _do(t, StopPump(channel)),
        _read(t, channel, Decimal(0), running=False),
    ]


def _estop(t: float, *channels: str) -> list[Event]:
    """An emergency stop: every channel stopped, one decision."""
    return [_decided(t, EmergencyStop("api")), *(_do(t, StopPump(c), "estop") for c in channels)]


def _read(t: float, channel: str, rate: Decimal, running: bool = True) -> ReadbackReceived:
    return ReadbackReceived(PumpReading(running, rate, 0.0), Now(t, t), channel)


def _start(t: float, channel: str, mcg_min: float, cause: str = "command") -> list[Event]:
    """A start as the safety process journals it: the rate, the start, the read-back."""
    rate = _rate(mcg_min)
    return [
        _decided(t, StartInfusion(Decimal(repr(mcg_min)), channel=channel)),
        _do(t, SetRate(rate, channel), cause),
        _do(t, StartPump(channel), cause),
        _read(t, channel, rate),
    ]


def _truth(*steps: tuple[float, float], per_mcg_min: float = PER_MCG_MIN) -> list[TruthEvent]:
    """One pump's truth: (time s, mcg/min) changes, from a stopped pump at 0."""
    events: list[TruthEvent] = [TruthSegment(0.0, 0.0)]
    return events + [TruthSegment(t, d * per_mcg_min) for t, d in steps]


def _check(
    library: DrugLibrary,
    truths: Mapping[str, Sequence[TruthEvent]],
    events: list[Event],
    until: float,
    tolerance_s: float = 0.0,
) -> ChannelsReport:
    return check_channels(truths, library, events, until=until, tolerance_s=tolerance_s)


def _rules(report: ChannelsReport) -> list[str]:
    return [v.rule for v in report.total.violations]


def _two(library: DrugLibrary) -> list[Event]:
    return [_load(library, 0, "A"), _load(library, 0, "B")]


def test_two_channels_each_under_the_hard_max_are_over_it_together(
    library: DrugLibrary,
) -> None:
    """A at 12 and B started at 36 beside it (each alone under 47 mcg/min): the patient
    gets 48. B's start is a rise of the total (S4 too), and the total is over the hard max."""
    events = [*_two(library), *_start(0, "A", 12), *_start(600, "B", 36)]
    truths = {"A": _truth((0, 12)), "B": _truth((600, 36))}
    report = _check(library, truths, events, until=1200)
    assert "hard_max" in _rules(report)
    hard = next(v for v in report.total.violations if v.rule == "hard_max")
    assert hard.time == 600 and "48 mcg/min" in hard.message
    assert report.total.summary.max_dose == pytest.approx(48)
    # each pump's own record is under it
    for channel in ("A", "B"):
        assert "hard_max" not in [v.rule for v in report.channels[channel].violations]


def test_the_hard_max_is_judged_exactly_at_it_and_one_step_past(library: DrugLibrary) -> None:
    """A at 12, B at 35 beside it: 47, the hard maximum itself, passes; 35.01 does not."""
    for b, broken in ((35.0, False), (35.01, True)):
        events = [*_two(library), *_start(0, "A", 12), *_start(0, "B", b)]
        truths = {"A": _truth((0, 12)), "B": _truth((0, b))}
        report = _check(library, truths, events, until=600)
        assert ("hard_max" in _rules(report)) is broken, (b, report.total.violations)


def test_a_start_beside_a_running_channel_is_a_rise_of_the_total(
    library: DrugLibrary,
) -> None:
    """A at 8, then B started at 2 beside it: the total rises by 2, the largest step (S4);
    at 2.01 it is one step past, though B's start alone is far under the largest start.
    Commands of one instant are judged in the journal's order, as the kernel decided them."""
    for b, broken in ((2.0, False), (2.01, True)):
        for at in (0.0, 600.0):
            events = [*_two(library), *_start(0, "A", 8), *_start(at, "B", b)]
            truths = {"A": _truth((0, 8)), "B": _truth((at, b))}
            report = _check(library, truths, events, until=1200)
            assert _rules(report) == (["step_rise"] if broken else []), (b, at)


def test_one_instant_is_taken_in_the_journals_order(library: DrugLibrary) -> None:
    """On a virtual clock A starts at 8, an emergency stop stops it and B starts at 1.2,
    all at one instant: the journal's order makes that a start, a stop (exempt) and a
    start of 1.2 - not a fall from 9.2 to 1.2, which no instant ever delivered."""
    events = [*_two(library), *_start(0, "A", 8), *_estop(0, "A", "B"), *_start(0, "B", 1.2)]
    truths = {"A": _truth((0, 8), (0, 0)), "B": _truth((0, 1.2))}
    report = _check(library, truths, events, until=600)
    assert report.ok, report.total.violations
    assert [(c.kind, c.cause) for c in report.total.changes] == [
        ("start", "command"),
        ("stop", "estop"),
        ("start", "command"),
    ]


def test_a_stretch_keeps_the_strength_it_was_started_with(library: DrugLibrary) -> None:
    """B runs 4 mg/250 mL at 1.2 mcg/min; an emergency stop, and B is re-loaded with
    8 mg/250 mL at the same instant: what B delivered before counts at the strength it
    ran (the load came after it in the journal), so nothing rose."""
    events = [*_two(library), *_start(0, "A", 8), *_start(0, "B", 1.2)]
    events += _estop(0, "A", "B")
    events += [_load(library, 0, "B", "8 mg/250 mL")]
    truths = {"A": _truth((0, 8), (0, 0)), "B": _truth((0, 1.2), (0, 0))}
    report = _check(library, truths, events, until=600)
    assert report.ok, report.total.violations
    # and the emergency stop's stops of A and B are one decision: one fall to 0
    assert [c.to_dose for c in report.total.changes] == [8, Fraction(92, 10), 0]


def test_a_quick_handover_that_keeps_the_total_passes(library: DrugLibrary) -> None:
    """The relay starts B at A's rate and stops A at one instant: the patient's total never
    moves, though each pump alone shows a start at 12 and a stop from 12."""
    rate = _rate(12)
    events = [
        *_two(library),
        *_start(0, "A", 12),
        _do(3600, SetRate(rate, "B"), "relay"),
        _do(3600, StartPump("B"), "relay"),
        _do(3600, StopPump("A"), "relay"),
        _read(3600, "B", rate),
        _read(3600, "A", Decimal(0), running=False),
    ]
    truths = {"A": _truth((0, 12), (3600, 0)), "B": _truth((3600, 12))}
    report = _check(library, truths, events, until=7200)
    assert report.ok, report.total.violations
    assert [c.kind for c in report.total.changes] == ["start"]
    assert report.total.summary.drug_amount == pytest.approx(12 * 120 / 1000)


def test_a_quick_handover_on_a_real_wire_is_one_change_of_the_total(
    library: DrugLibrary,
) -> None:
    """On a wire B starts 1.5 s before A stops: the patient got twice the dose for 1.5 s.
    That transient counts for the hard max and the cap, but the relay's move is one
    decision: the fall from the doubled total is no wean step of its own. The same fall
    made by an operator's stop of A is judged (stopping one of two pumps is a fall of the
    total)."""
    rate = _rate(12)

    def journal(stop_cause: str) -> list[Event]:
        return [
            *_two(library),
            *_start(0, "A", 12),
            _do(3600, SetRate(rate, "B"), "relay"),
            _do(3600, StartPump("B"), "relay"),
            *([_decided(3601.5, StopInfusion(channel="A"))] if stop_cause == "command" else []),
            _do(3601.5, StopPump("A"), stop_cause),
            _read(3602, "B", rate),
            _read(3602, "A", Decimal(0), running=False),
        ]

    truths = {"A": _truth((0, 12), (3601.5, 0)), "B": _truth((3600, 12))}
    relay = _check(library, truths, journal("relay"), until=7200, tolerance_s=2.0)
    assert relay.ok, relay.total.violations
    assert relay.total.summary.max_dose == pytest.approx(24)  # the raw total
    by_hand = _check(library, truths, journal("command"), until=7200, tolerance_s=2.0)
    assert _rules(by_hand) == ["wean_too_fast"]


def test_stopping_one_of_two_channels_abruptly_fails_the_wean_rule(
    library: DrugLibrary,
) -> None:
    """A at 8 and B at 2 beside it for an hour; the operator stops A: the total falls
    10 -> 2, more than 25 % within 30 min. On the total that is a fall, not a stop."""
    events = [*_two(library), *_start(0, "A", 8), *_start(600, "B", 2)]
    events += _stop(3600, "A")
    truths = {"A": _truth((0, 8), (3600, 0)), "B": _truth((600, 2))}
    report = _check(library, truths, events, until=5400)
    assert _rules(report) == ["wean_too_fast"]
    assert "fell to 2 mcg/min" in report.total.violations[0].message


def test_stopping_a_small_second_channel_within_the_wean_rule_passes(
    library: DrugLibrary,
) -> None:
    """A at 9.5, B brought up to 2.5 beside it; stopping B (above the 2 mcg/min stop
    threshold, which one pump alone could not do) lowers the total by 21 %: within the
    wean rule."""
    events = [*_two(library), *_start(0, "A", 9.5), *_start(600, "B", 2)]
    events += [_do(1200, SetRate(_rate(2.5), "B")), _read(1200, "B", _rate(2.5))]
    events += _stop(3600, "B")
    truths = {"A": _truth((0, 9.5)), "B": _truth((600, 2), (1200, 2.5), (3600, 0))}
    report = _check(library, truths, events, until=5400)
    assert report.ok, report.total.violations
    # B's own record alone shows a stop from 2.5: what the total rightly ignores
    assert "stop_above_threshold" in [v.rule for v in report.channels["B"].violations]


def test_the_wean_floor_on_the_total_exactly_at_it_and_one_step_past(
    library: DrugLibrary,
) -> None:
    """A at 6 and B brought up to 2 beside it (1.4, then 2: each a step S4 allows):
    stopping B leaves 6, exactly 25 % below 8 (passes); with A at 5.99 it leaves 25.03 %
    less (fails)."""
    for a, broken in ((6.0, False), (5.99, True)):
        events = [*_two(library), *_start(0, "A", a), *_start(600, "B", 1.4)]
        events += [_do(1200, SetRate(_rate(2), "B")), _read(1200, "B", _rate(2))]
        events += _stop(3600, "B")
        truths = {"A": _truth((0, a)), "B": _truth((600, 1.4), (1200, 2), (3600, 0))}
        report = _check(library, truths, events, until=5400)
        assert _rules(report) == (["wean_too_fast"] if broken else []), a


def test_a_relay_step_that_drops_the_total_is_judged_by_the_wean_rule(
    library: DrugLibrary,
) -> None:
    """A relay that brought B up to only half of A's rate as it stopped A would halve the
    total: the relay's falls are held to the wean rule like anyone's."""
    events = [
        *_two(library),
        *_start(0, "A", 12),
        _do(3600, SetRate(_rate(6), "B"), "relay"),
        _do(3600, StartPump("B"), "relay"),
        _do(3600, StopPump("A"), "relay"),
    ]
    truths = {"A": _truth((0, 12), (3600, 0)), "B": _truth((3600, 6))}
    report = _check(library, truths, events, until=5400)
    assert _rules(report) == ["wean_too_fast"]


def test_a_prime_to_waste_is_never_delivery(library: DrugLibrary) -> None:
    """B primed 2 mL (its line not connected): its truth records waste and no flow, and
    the patient's total, volume and cap count none of it."""
    events = [
        *_two(library),
        *_start(0, "A", 12),
        _do(600, PrimePump(Decimal(2), "B")),
        _read(601, "B", Decimal(1500)),  # the purge at the syringe's top rate
        _read(610, "B", Decimal(0), running=False),
    ]
    truths: dict[str, list[TruthEvent]] = {
        "A": _truth((0, 12)),
        "B": [TruthSegment(0.0, 0.0), TruthWaste(610.0, 2.0)],
    }
    report = _check(library, truths, events, until=3600)
    assert report.ok, report.total.violations
    assert report.total.summary.volume_ml == pytest.approx(12 * 3.75)
    assert report.total.summary.max_dose == pytest.approx(12)
    assert summed_flow(truths) == [TruthSegment(0.0, 45.0)]


def test_channels_of_other_strengths_are_summed_in_drug(library: DrugLibrary) -> None:
    """A holds 8 mg/250 mL (32 mcg/mL), B 4 mg/250 mL (16 mcg/mL): 22.5 mL/h on A and
    45 mL/h on B are 12 mcg/min each, 24 together; at 25 each the total breaks 47."""
    for dose, broken in ((12.0, False), (25.0, True)):
        events: list[Event] = [
            _load(library, 0, "A", "8 mg/250 mL"),
            _load(library, 0, "B"),
            _do(0, SetRate(_rate(dose, 1.875), "A")),
            _do(0, StartPump("A")),
            _read(0, "A", _rate(dose, 1.875)),
            _do(0, SetRate(_rate(dose), "B")),
            _do(0, StartPump("B")),
        ]
        truths = {"A": _truth((0, dose), per_mcg_min=1.875), "B": _truth((0, dose))}
        report = _check(library, truths, events, until=600)
        assert report.total.summary.max_dose == pytest.approx(2 * dose)
        assert ("hard_max" in _rules(report)) is broken


def test_a_protective_action_that_raises_one_pump_is_named_with_its_channel(
    library: DrugLibrary,
) -> None:
    """A "safety" command that raised channel B's flow breaks a rule of one pump, found on
    B's own record (and on the total, which it raised until A's rate came down)."""
    events = [*_two(library), *_start(0, "A", 10), *_start(600, "B", 2)]
    events += [_do(1200, SetRate(_rate(4), "B"), "safety"), _read(1200, "B", _rate(4))]
    events += [_do(1200, SetRate(_rate(8), "A")), _read(1200, "A", _rate(8))]
    truths = {"A": _truth((0, 10), (1200, 8)), "B": _truth((600, 2), (1200, 4))}
    report = _check(library, truths, events, until=1800)
    assert set(_rules(report)) == {"protective_raise"}
    assert any(v.message.startswith("channel B: ") for v in report.total.violations)


def test_two_drugs_on_one_bench_are_refused_by_name(library: DrugLibrary) -> None:
    """The total is one drug's: a record of two is refused with both named, never summed."""
    spec = ProgramSpec(
        library.content_hash, "vasopressin", "adult_icu", "fixed", "20 units/100 mL", "NS"
    )
    program = load_program(library, spec, 0)
    events: list[Event] = [
        _load(library, 0, "A"),
        ProgramLoaded(spec, program.limits, 0.0, Now(0, 0), "B"),
    ]
    with pytest.raises(ChannelsError, match="norepinephrine, vasopressin"):
        _check(library, {"A": _truth(), "B": _truth()}, events, until=60)


def test_the_handover_figures_on_the_summed_flow() -> None:
    """The worst 1-minute window against the set total, and the longest stretch below
    90 %: B starts 6 s late after A stopped (a dip of 6 s in a minute = -10 %)."""
    wanted = [TruthSegment(0.0, 22.5)]
    truths = {
        "A": [TruthSegment(0.0, 22.5), TruthSegment(100.0, 0.0)],
        "B": [TruthSegment(0.0, 0.0), TruthSegment(106.0, 22.5)],
    }
    figures = window_figures(summed_flow(truths), wanted, 0.0, 300.0)
    assert figures.worst == pytest.approx(-0.1)
    assert figures.worst_at is not None and 106.0 <= figures.worst_at <= 160.0
    assert figures.longest_low_s == pytest.approx(6.0)


def test_the_set_total_follows_every_channel_command() -> None:
    events: list[Event] = [
        _do(0, SetRate(Decimal("22.5"), "A")),
        _do(0, StartPump("A")),
        _do(100, SetRate(Decimal("22.5"), "B"), "relay"),
        _do(100, StartPump("B"), "relay"),
        _do(100, StopPump("A"), "relay"),
        _do(200, PrimePump(Decimal(2), "A")),
    ]
    # the relay's start of B and stop of A at one instant leave the total as it was
    assert set_flow(events) == [TruthSegment(0.0, 22.5)]


def test_one_channel_is_judged_as_the_one_pump_oracle_judges_it(
    library: DrugLibrary, tmp_path: Path
) -> None:
    """On a one-pump bench the total is that pump: a real course through the safety core
    (start, rises, a 10x slip refused, an over-rate pump stopped, a wean, an emergency
    stop) gets the same changes and verdicts from both oracles."""
    bench = Bench(tmp_path, library)
    try:
        bench.boot()
        spec = norepi_standard(library)
        assert bench.load(spec).verdict.accepted
        assert bench.start(8).verdict.accepted
        bench.advance(600)
        assert bench.change(10).verdict.accepted
        assert not bench.change(100).verdict.accepted
        bench.advance(900)
        bench.pump.set_rate(bench.pump.snapshot().set_rate_ml_h * 2)  # behind its back
        bench.core.poll()
        bench.ack()
        assert bench.start(10).verdict.accepted
        bench.advance(1800)
        assert bench.change("7.6").verdict.accepted
        bench.advance(600)
        assert bench.estop().verdict.accepted
        bench.advance(60)
        one = bench.judge()
        summed = check_channels(
            {"A": bench.pump.truth.events}, library, bench.events(), until=bench.clinical.now()
        ).total
        assert [(c.time, c.kind, c.cause) for c in summed.changes] == [
            (c.time, c.kind, c.cause) for c in one.changes
        ]
        assert summed.violations == one.violations
        assert summed.summary.drug_amount == pytest.approx(one.summary.drug_amount)
        assert {c.cause for c in one.changes} >= {"command", "pump", "safety", "estop"}
    finally:
        bench.close()
