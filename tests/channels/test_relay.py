"""Relay infusion (S15): the safety process hands a drug over to a primed standby of the
same solution when the active container nears empty, with the controller dead too.

Norepinephrine 8 mcg/min (30 mL/h of 16 mcg/mL) on channel A; channel A's syringe holds
10 mL (20 min). A quick handover starts when A would empty within 5 min; an overlap one
4 steps of 1 min earlier. The simulated pumps are ideal (no slack): the truth of both
channels summed is what the patient received.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.kernel.model import (
    CommandIssued,
    HandoverEnded,
    HandoverStarted,
    ProgramSpec,
    SetRate,
    StartPump,
    StopPump,
)
from safety.reasons import Reason
from tests.channels.support import ChannelBench

PER_ML = Fraction(16)  # mcg per mL of 4 mg/250 mL


@pytest.fixture
def relay(make_channels: Callable[..., ChannelBench], std: ProgramSpec) -> ChannelBench:
    """A at 8 mcg/min with 10 mL left; B loaded with the same solution, primed."""
    bench = make_channels(loaded_ml={"A": 10.0})
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 8).execution == "applied"
    bench.prime_done("B")
    return bench


# --------------------------------------------------------------------------- arming


def test_a_standby_holds_the_same_concentration_or_it_is_refused(
    relay: ChannelBench, std: ProgramSpec
) -> None:
    double = ProgramSpec(**{**std.__dict__, "concentration": "8 mg/250 mL"})
    assert relay.load_on("B", double).verdict.accepted
    refused = relay.arm("B", "A")
    assert refused.verdict.reason is Reason.STANDBY_MISMATCH
    assert refused.verdict.message == (
        "refused: channel B holds concentration 8 mg/250 mL, not 4 mg/250 mL: a relief "
        "syringe must hold the same drug at the same concentration and diluent as channel "
        "A (a change of concentration at a changeover is the main risk factor of "
        "instability)"
    )
    saline = ProgramSpec(**{**std.__dict__, "diluent": "D5NS"})
    assert relay.load_on("B", saline).verdict.accepted
    assert relay.arm("B", "A").verdict.message.startswith(
        "refused: channel B holds diluent D5NS, not D5W"
    )


def test_a_standby_must_be_primed_since_its_container_was_loaded(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    bench = make_channels()
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 8).verdict.accepted
    unprimed = bench.arm("B", "A")
    assert unprimed.verdict.reason is Reason.NOT_PRIMED, unprimed.verdict.message
    bench.prime_done("B")
    assert bench.arm("B", "A").verdict.accepted
    # a new syringe in the standby is a new prime: it must be disarmed to change it
    assert bench.container_changed("50", "B").verdict.reason is Reason.RELAY
    assert bench.disarm("B").verdict.accepted
    assert bench.container_changed("50", "B").verdict.accepted
    assert not bench.ch("B").container.primed
    assert bench.arm("B", "A").verdict.reason is Reason.NOT_PRIMED


def test_a_standby_stands_still_and_is_not_its_own_relief(
    relay: ChannelBench, std: ProgramSpec
) -> None:
    assert relay.arm("A", "A").verdict.message == "refused: channel A cannot relieve itself"
    assert relay.start_on("B", 1).verdict.accepted
    running = relay.arm("B", "A")
    assert running.verdict.reason is Reason.ALREADY_INFUSING


def test_an_armed_standby_takes_no_orders(relay: ChannelBench) -> None:
    assert relay.arm("B", "A").verdict.accepted
    assert relay.start_on("B", 1).verdict.reason is Reason.RELAY
    assert relay.prime("B").verdict.reason is Reason.RELAY


def test_a_prime_needs_the_line_off_the_patient_and_a_bounded_volume(
    two: ChannelBench, std: ProgramSpec
) -> None:
    unconfirmed = two.prime("B", "2", confirm=False)
    assert unconfirmed.verdict.reason is Reason.CONFIRMATION_REQUIRED
    assert "NOT connected to the patient" in unconfirmed.verdict.message
    past = two.prime("B", "5.001")
    assert past.verdict.reason is Reason.BAD_INPUT
    assert past.verdict.message.startswith("refused: volume_ml must be more than 0 and at most 5")
    assert two.prime("B", "0").verdict.reason is Reason.BAD_INPUT
    at = two.prime("B", "5")
    assert at.verdict.accepted and at.execution == "applied", at.verdict.message
    assert two.drivers["B"].primes == [5.0]
    # the prime runs to waste: no drug history, no read-back alarm for a pump nobody started
    two.advance(30, poll_every_s=1)
    assert two.ch("B").priming is None and two.ch("B").container.primed
    assert not two.core.state.alarms.has("readback_over")
    assert two.core.state.drugs == {}


# --------------------------------------------------------------------------- handovers


def test_a_quick_handover_happens_with_the_controller_dead(relay: ChannelBench) -> None:
    assert relay.arm("B", "A").verdict.accepted
    relay.lose_controller()
    assert relay.core.state.hold
    relay.advance(20 * 60, poll_every_s=20)
    started = [e for e in relay.relay_events() if isinstance(e, HandoverStarted)]
    assert len(started) == 1 and started[0].strategy == "quick"
    assert started[0].why.startswith("channel A's container empties in about 5 min")
    commands = [e.action for e in relay.relay_events() if isinstance(e, CommandIssued)]
    assert commands == [SetRate(Decimal("30.0"), "B"), StartPump("B"), StopPump("A")]
    ended = [e for e in relay.relay_events() if isinstance(e, HandoverEnded)]
    assert [e.outcome for e in ended] == ["done"]
    a, b = relay.pumps["A"].snapshot(), relay.pumps["B"].snapshot()
    assert not a.running and b.running and b.set_rate_ml_h == 30.0
    assert a.remaining_ml == pytest.approx(2.5, abs=0.05)  # 5 min before empty, at 30 mL/h
    # the patient's drug rate never moved: no gap, no overlap
    for t in range(60, 20 * 60, 10):
        assert relay.truth_total_rate(PER_ML, float(t)) == Fraction(480)
    # and the history shows no double dose between the two commands' read-backs
    history = relay.core.state.history_of("norepinephrine")
    assert history.max_amount_rate(0.0, relay.patient_now()) == Fraction(480)
    assert relay.core.state.handover is None and relay.ch("B").standby is None


def test_an_overlap_handover_moves_the_rate_in_steps_as_the_standby_delivers(
    relay: ChannelBench,
) -> None:
    assert relay.arm("B", "A", "overlap").verdict.accepted
    relay.advance(20 * 60, poll_every_s=20)
    commands = [e.action for e in relay.relay_events() if isinstance(e, CommandIssued)]
    assert commands == [
        SetRate(Decimal("7.5"), "B"),
        StartPump("B"),
        SetRate(Decimal("22.5"), "A"),
        SetRate(Decimal("15.0"), "B"),
        SetRate(Decimal("15.0"), "A"),
        SetRate(Decimal("22.5"), "B"),
        SetRate(Decimal("7.5"), "A"),
        SetRate(Decimal("30.0"), "B"),
        StopPump("A"),
    ]
    starts = [e.now.clinical for e in relay.relay_events() if isinstance(e, CommandIssued)]
    assert starts[0] == pytest.approx(20 * 60 - 9 * 60, abs=6)  # 5 + 4 steps of 1 min early
    steps = sorted(set(starts))
    assert len(steps) == 4 and all(b - a >= 60 for a, b in itertools.pairwise(steps))
    for t in range(60, 20 * 60, 10):
        assert relay.truth_total_rate(PER_ML, float(t)) == Fraction(480)
    history = relay.core.state.history_of("norepinephrine")
    assert history.max_amount_rate(0.0, relay.patient_now()) == Fraction(480)


def test_a_standby_that_does_not_start_leaves_the_active_channel_running(
    relay: ChannelBench,
) -> None:
    assert relay.arm("B", "A").verdict.accepted
    relay.pumps["B"].set_stall(True)  # B's motor: it refuses to start
    relay.advance(20 * 60 - 5 * 60 + 10, poll_every_s=20)
    ended = [e for e in relay.relay_events() if isinstance(e, HandoverEnded)]
    assert [e.outcome for e in ended] == ["failed"]
    assert relay.pumps["A"].snapshot().running  # never stopped while B did not start
    alarm = relay.core.state.alarms.get("handover_failed", "A")
    assert alarm is not None and alarm.priority.word == "high"
    # B is no longer armed: the warning that A empties with no standby is up, high
    no_standby = relay.core.state.alarms.get("relay_no_standby", "A")
    assert no_standby is not None and no_standby.priority.word == "high"


def _armed_with_3_ml(make_channels: Callable[..., ChannelBench], std: ProgramSpec) -> ChannelBench:
    """A runs 8 mcg/min (30 mL/h) from a syringe said to hold 50 mL that holds 3 (empty
    after 6 min); B, primed, is armed as its standby."""
    bench = make_channels(actual_ml={"A": 3.0})
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 8).verdict.accepted
    bench.prime_done("B")
    assert bench.arm("B", "A").verdict.accepted
    return bench


def test_a_pump_that_stops_empty_early_is_relieved_at_its_rate(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    """The safety process believes 50 mL; the syringe held 3: A stops empty after 6 min,
    before any planned handover, and B takes over at once at A's rate (what ran in the
    titration window is no titration)."""
    bench = _armed_with_3_ml(make_channels, std)
    bench.advance(10 * 60, poll_every_s=20)
    started = [e for e in bench.relay_events() if isinstance(e, HandoverStarted)]
    assert len(started) == 1 and started[0].why == "channel A's pump stopped empty"
    b = bench.pumps["B"].snapshot()
    assert b.running and b.set_rate_ml_h == 30.0


def test_a_pump_that_runs_empty_while_the_safety_process_is_down_is_relieved_at_restart(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    """The safety process is down for 6 min while A's 3 mL syringe runs empty: its restart
    finds the pump stopped that the journal had told to run, which is the pump's own
    stop (S15), and the armed standby takes over at once, with no controller. (Review of
    4 December 2026: the first version of "a supervised own stop only" marked such a stop
    at read-backs alone, and this relief was lost.)"""
    bench = _armed_with_3_ml(make_channels, std)
    bench.advance(60, poll_every_s=20)
    bench.clinical.advance(6 * 60)  # the process is down; A runs on, empty
    bench.liveness.advance(6 * 60)
    assert not bench.pumps["A"].snapshot().running
    bench.restart(attach=False)
    bench.advance(60, poll_every_s=20)
    started = [e for e in bench.relay_events() if isinstance(e, HandoverStarted)]
    assert [e.why for e in started] == ["channel A's pump stopped empty"]
    b = bench.pumps["B"].snapshot()
    assert b.running and b.set_rate_ml_h == 30.0


# --------------------------------------------------------------------------- warnings


def test_a_container_nearing_empty_with_no_standby_is_alarmed_early_then_loud(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    """30 mL at 30 mL/h: 60 min. Medium from 30 min before empty, high from 5 min."""
    bench = make_channels(loaded_ml={"A": 30.0})
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted
    assert bench.start_on("A", 8).verdict.accepted
    bench.advance(29 * 60, poll_every_s=30)
    assert bench.core.state.alarms.get("relay_no_standby") is None
    bench.advance(90, poll_every_s=30)
    alarm = bench.core.state.alarms.get("relay_no_standby", "A")
    assert alarm is not None and alarm.priority.word == "medium"
    bench.advance(25 * 60, poll_every_s=30)
    alarm = bench.core.state.alarms.get("relay_no_standby", "A")
    assert alarm is not None and alarm.priority.word == "high"


def test_a_one_pump_bench_has_no_relay_warning(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    bench = make_channels(names=("A",), loaded_ml={"A": 10.0})
    bench.boot()
    assert bench.load(std).verdict.accepted and bench.start(8).verdict.accepted
    bench.advance(18 * 60, poll_every_s=30)
    assert bench.core.state.alarms.get("relay_no_standby") is None


def test_a_standby_that_fails_mid_overlap_hands_the_whole_rate_back(
    relay: ChannelBench,
) -> None:
    assert relay.arm("B", "A", "overlap").verdict.accepted
    relay.advance(690 - relay.patient_now(), poll_every_s=20)  # the first step: B 7.5, A 22.5
    assert relay.pumps["A"].snapshot().set_rate_ml_h == 22.5
    relay.pumps["B"].set_stall(True)  # B's motor stalls: it stops with its alarm
    relay.advance(30, poll_every_s=20)
    ended = [e for e in relay.relay_events() if isinstance(e, HandoverEnded)]
    assert [e.outcome for e in ended] == ["failed"]
    assert ended[0].detail == "channel B stopped by itself; channel A runs the whole rate again"
    assert relay.pumps["A"].snapshot().set_rate_ml_h == 30.0


def test_an_overlap_step_waits_for_the_standbys_counter(relay: ChannelBench) -> None:
    """Pure: after a step, the next waits until the standby's own counter shows at least
    90 % of what its rate should have moved since (and the step's minute has passed)."""
    from dataclasses import replace

    from safety.kernel.model import Now
    from safety.kernel.relay import relay_move

    assert relay.arm("B", "A", "overlap").verdict.accepted
    relay.advance(690 - relay.patient_now(), poll_every_s=20)
    state = relay.core.state
    handover = state.handover
    assert handover is not None and handover.step == 1 and handover.step_at is not None
    b = state.channel("B")
    at = handover.step_at + 120.0  # 2 min later: B at 7.5 mL/h should have moved 0.25 mL
    start = handover.counter_at_step
    assert start is not None

    def moved(ml: float) -> object:
        container = replace(b.container, counter_ml=start + ml, read_at=at)
        shown = replace(b, container=container, last_reading_at=at)
        later = state.with_channel(
            "B", **{f: getattr(shown, f) for f in ("container", "last_reading_at")}
        )
        return relay_move(later, Now(at, 0.0), relay.core.config, relay.core.pumps)

    assert moved(0.2249) is None  # under 90 % of 0.25 mL
    step = moved(0.225)
    assert step is not None and step.step == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("alarm", ["stall", "occlusion"])
def test_a_pump_that_stops_on_its_own_is_relieved_by_its_armed_standby(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec, alarm: str
) -> None:
    """An NE-1000 or Harvard pump senses motor force only: a syringe that held less than
    the operator said stops as a stall, indistinguishable from an occlusion. Either way
    A's flow has stopped: the armed standby takes over at once at A's rate, and A stays
    stopped."""
    bench = make_channels()
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 8).verdict.accepted
    bench.prime_done("B")
    assert bench.arm("B", "A").verdict.accepted
    bench.advance(60, poll_every_s=20)
    if alarm == "stall":
        bench.pumps["A"].set_stall(True)
    else:
        bench.pumps["A"].set_occlusion(True)
    bench.advance(60, poll_every_s=20)
    started = [e for e in bench.relay_events() if isinstance(e, HandoverStarted)]
    assert len(started) == 1 and started[0].why.startswith("channel A's pump stopped "), started
    b, a = bench.pumps["B"].snapshot(), bench.pumps["A"].snapshot()
    assert b.running and b.set_rate_ml_h == 30.0
    assert not a.running


@pytest.mark.parametrize("case", ["after an emergency stop", "armed after the stop"])
def test_only_a_supervised_pumps_own_stop_calls_its_standby_in(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec, case: str
) -> None:
    """The standby is called in at once only for a pump that stopped by itself while it
    was told to run, after the standby was armed. Found on 4 December 2026 (review):
    after an emergency stop and its acknowledgement, a prime of A against a closed clamp
    stopped with an occlusion, and the safety process started B at A's old 30 mL/h with
    nobody ordering it (S12: nothing restarts a pump but a person); a standby armed two
    minutes after A stopped itself started B at A's old rate, above the largest start a
    person may ask for (S4)."""
    bench = make_channels()
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 8).verdict.accepted
    bench.prime_done("B")
    if case == "after an emergency stop":
        assert bench.arm("B", "A").verdict.accepted
        bench.advance(120, poll_every_s=20)
        assert bench.estop().verdict.accepted
        bench.advance(30, poll_every_s=10)
        assert bench.ack().verdict.accepted
        bench.advance(120, poll_every_s=20)
        assert bench.container_changed("50", "A").verdict.accepted
        bench.pumps["A"].set_occlusion(True)  # the clamp on A's line is closed
        assert bench.prime("A").verdict.accepted
    else:
        bench.advance(60, poll_every_s=20)
        bench.pumps["A"].set_occlusion(True)
        bench.advance(60, poll_every_s=20)
        assert not bench.pumps["A"].snapshot().running
        assert bench.arm("B", "A").verdict.accepted
    bench.advance(60, poll_every_s=5)
    assert not [e for e in bench.relay_events() if isinstance(e, HandoverStarted)]
    assert not bench.pumps["B"].snapshot().running
