"""Case group 8: a bench of several channels (issue 14), real processes end to end.

Emulated pumps on ptys (two NE-1000s at addresses 0 and 1 on one line; a Harvard pump or
a Modbus TCP pump on a wire of its own), one safety process owning them all
(``[lines.bus]`` and ``[channels.A]``/``[channels.B]``), controllers in this process or as
a child process that is killed. Norepinephrine 8 mg/250 mL (32 mcg/mL) on every channel:
8 mcg/min is 15 mL/h; hard max 47 mcg/min; a titration step at most +2 mcg/min (25 %);
a fall at most 25 % below the highest dose of the last 30 min.

Every case judges the pumps' ground truth (one truth log per pump), summed over the
channels that give the drug: what the patient received.

- relay: the controller is killed (SIGKILL); the safety process alone hands channel A's
  infusion over to the armed, primed standby B before A's syringe empties, quick and
  overlap; the summed delivered flow never leaves the set dose for longer than the wire's
  slack and never exceeds the hard max;
- emergency stop (API): every pump on the line stops, the interlock opens;
- a second pump cannot double the dose: a start on B beside A is judged on the total
  (hard max, titration step) and a stop of A while B runs on is judged as a fall of the
  total (too-fast wean), with the reason on the refusal and nothing at the pumps;
- a mixed bench: an NE-1000 on one line and a Harvard or a Modbus TCP pump on another,
  one drug over both, each pump driven and read back through its own driver.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from controller.errors import Refused
from controller.session import Session
from firmware_bridge.pump_model import TruthSegment
from hil_tests.conftest import _failed
from hil_tests.harness.bench import WIRE_SLACK_S, BenchSettings
from hil_tests.harness.channels import BenchLine, ChannelBench, RelaySettings, ml_h
from hil_tests.harness.conditions import active, held_with_alarm
from hil_tests.harness.processes import wait_for
from hil_tests.harness.pumps import HARVARD, MODBUS_TCP, NE1000, PumpKind
from hil_tests.harness.truth import changes_between, describe, last_rate, segments
from safety.journal_read import read_safety_events
from safety.kernel.model import (
    CommandIssued,
    ControllerLost,
    HandoverEnded,
    HandoverStarted,
    HandoverStepped,
    StartInfusion,
    StopInfusion,
    StopPump,
)
from safety.library import DrugLibrary
from safety.reasons import Reason

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

MCG_PER_ML = 32.0  # 8 mg/250 mL
RATE_8 = ml_h(8, MCG_PER_ML)  # 15 mL/h
RATE_2 = ml_h(2, MCG_PER_ML)  # 3.75 mL/h

MakeChannels = Callable[..., ChannelBench]


@pytest.fixture
def make_channels(
    request: pytest.FixtureRequest, tmp_path: Path, library: DrugLibrary
) -> Iterator[MakeChannels]:
    """``make_channels(lines, relay=..., **settings)``: a started bench of several
    channels; every one is closed at the end, and one whose ground truth was never judged
    fails the case (as ``make_bench`` does)."""
    benches: list[ChannelBench] = []

    def make(
        lines: list[BenchLine], *, relay: RelaySettings | None = None, **settings: Any
    ) -> ChannelBench:
        bench = ChannelBench(
            lines,
            tmp_path / f"bench{len(benches)}",
            BenchSettings(**settings),
            library,
            relay=relay,
        )
        benches.append(bench)
        bench.start()
        return bench

    try:
        yield make
    finally:
        failed = _failed(request.node)
        for bench in benches:
            if failed:
                print(f"\n{bench.diagnostics()}")
            bench.close()
        if failed:
            print(f"journals, truth logs and configs: {tmp_path}")
        unchecked = [b for b in benches if not b.invariants_checked]
        if unchecked and not failed:
            pytest.fail(
                "every case judges the pumps' ground truth: call bench.assert_total_invariants()",
                pytrace=False,
            )


def two_on_one_line(volume_ml: float | None = None) -> list[BenchLine]:
    """Two NE-1000s, A at address 0 and B at address 1, on one pty line."""
    return [BenchLine("bus", NE1000, {"A": 0, "B": 1}, volume_ml=volume_ml)]


def relay_pin(bench: ChannelBench) -> bool:
    return bool(bench.gpio().get("pump_enabled"))


# --------------------------------------------------------------------------- relay


@pytest.mark.parametrize(
    ("kind", "strategy"),
    [(NE1000, "quick"), (NE1000, "overlap"), (HARVARD, "overlap")],
    ids=["ne1000-quick", "ne1000-overlap", "harvard-overlap"],
)
def test_the_safety_process_alone_hands_over_before_the_syringe_empties(
    make_channels: MakeChannels, kind: PumpKind, strategy: str
) -> None:
    """A holds 10 mL at 15 mL/h (40 min); B the same solution, primed to waste first.
    The controller arms B and is killed; the handover is due 5 min (quick) or 5 + 4 x 1
    min (overlap) before A would empty. Two NE-1000s at addresses 0 and 1 on one line;
    and a Harvard chain (its prime is ``irun`` to a target volume). 300x and a poll every
    0.1 s: an overlap step waits for a read-back of the standby, and at 600x with 0.25 s
    polls on a loaded machine four steps could outlast the overlap's 9-minute lead."""
    line = BenchLine("bus", kind, {"A": 0, "B": 1}, volume_ml=10.0)
    bench = make_channels([line], speed=300.0, poll_period_s=0.1)
    bench.channel_fault("B", "patient_line=off")  # B's prime goes to waste
    ctl = bench.channel_child(
        "program:A", "program:B", "start:A:8", "prime:B:2", "primed:B",
        f"arm:B:A:{strategy}",
    )  # fmt: skip
    ctl.wait_line("primed:B")
    bench.channel_fault("B", "patient_line=on")  # connected before it can take over
    ctl.wait_line("ready")
    started = next(s.start for s in segments(bench.channel_truth("A")) if s.rate_ml_h > 0)
    assert bench.channel_pump("B")["wasted_ml"] == pytest.approx(2.0, abs=0.01)
    assert not bench.channel_pump("B")["running"]

    monitor = bench.monitor()
    ctl.kill9()
    wait_for(lambda: held_with_alarm(monitor), 5.0, "hold and the controller-lost alarm")

    # the handover, with nobody attached: A stopped by the safety process, B running
    empty_at = started + 2400.0

    def ended() -> list[HandoverEnded]:
        events = read_safety_events(bench.safety_journal)
        return [e for e in events if isinstance(e, HandoverEnded)]

    wait_for(ended, bench.real_s(empty_at - bench.now()) + 5.0, "the handover's end")
    bench.wait_clinical(bench.now() + 60.0)  # B's flow in the truth for a minute
    a, b = bench.channel_pump("A"), bench.channel_pump("B")
    assert not a["running"] and a["remaining_ml"] > 0.5, a  # stopped before empty
    assert a["alarms"] == [], a  # no empty syringe, no stall
    assert b["running"] and b["set_rate_ml_h"] == pytest.approx(RATE_8), b

    events = read_safety_events(bench.safety_journal)
    lost = next(i for i, e in enumerate(events) if isinstance(e, ControllerLost))
    began = [i for i, e in enumerate(events) if isinstance(e, HandoverStarted)]
    assert len(began) == 1 and began[0] > lost, "the handover came after the controller died"
    handover = events[began[0]]
    assert isinstance(handover, HandoverStarted) and handover.strategy == strategy
    lead_s = (5 + (4 * 1 if strategy == "overlap" else 0)) * 60.0
    assert handover.now.clinical >= empty_at - lead_s - bench.tolerance_s  # not early
    outcomes = [e.outcome for e in events if isinstance(e, HandoverEnded)]
    assert outcomes == ["done"], outcomes
    relay = [e.action for e in events if isinstance(e, CommandIssued) and e.cause == "relay"]
    assert relay[-1] == StopPump("A"), relay
    asked = time.monotonic()
    snap = monitor.snapshot()
    views = {view.name: view for view in snap.channels}
    assert views["B"].running and views["B"].role == "active", views["B"]
    assert views["A"].relieved_by == "B" and views["A"].role == "relieved", views["A"]
    # what the safety process believes is left in each syringe (its next handover's
    # clock) is what the pumps hold: B's prime went out of its syringe too
    # (read up to a poll period and the wire's slack before the snapshot, the pump's
    # figure read after it: at most that much flow apart, less than B's 2 mL prime; the
    # time the reads took counts, which a loaded machine stretches)
    for name in ("A", "B"):
        believed, held = views[name].remaining_ml, bench.channel_pump(name)["remaining_ml"]
        apart_s = bench.settings.poll_period_s + WIRE_SLACK_S + (time.monotonic() - asked)
        lag_ml = RATE_8 * apart_s * bench.settings.speed / 3600
        assert believed is not None and -0.05 <= believed - held <= lag_ml, (name, believed, held)

    # judged on the truth: the summed delivered dose stayed at 8 mcg/min but for the
    # wire's slack, and never went near the hard max
    total = bench.assert_total_invariants()
    since = started + bench.tolerance_s
    assert total.longest(since, (8 * 0.9, 8 * 1.1)) <= bench.tolerance_s, total.describe()
    assert total.longest(since, (8 * 0.9, float("inf"))) <= bench.tolerance_s, total.describe()
    b_truth = bench.channel_truth("B")
    assert last_rate(b_truth) == pytest.approx(RATE_8), describe(b_truth)


# --------------------------------------------------------------------------- helpers


def program_both(session: Session, *names: str) -> None:
    for name in names:
        outcome = session.program("norepinephrine", "8 mg/250 mL", "D5W", channel=name)
        assert outcome.verdict.accepted, outcome.verdict.message


def running_at(bench: ChannelBench, channel: str, rate_ml_h: float) -> bool:
    pump = bench.channel_pump(channel)
    return bool(pump["running"]) and pump["set_rate_ml_h"] == pytest.approx(rate_ml_h)


def a_at_8_and_b_at_2(bench: ChannelBench) -> Session:
    """A started at 8 mcg/min; a clinical minute later B at 2 beside it (10 in all)."""
    session = bench.connect()
    program_both(session, "A", "B")
    assert session.start(Decimal(8), channel="A").execution == "applied"
    bench.wait_clinical(bench.now() + 60)
    assert session.start(Decimal(2), channel="B").execution == "applied"
    wait_for(lambda: running_at(bench, "A", RATE_8), 5.0, "A running at 15 mL/h")
    wait_for(lambda: running_at(bench, "B", RATE_2), 5.0, "B running at 3.75 mL/h")
    return session


def positive_rates(truth: list[Any]) -> list[float]:
    return [e.rate_ml_h for e in truth if isinstance(e, TruthSegment) and e.rate_ml_h > 0]


# --------------------------------------------------------------------------- emergency stop


def test_the_emergency_stop_stops_every_channel_on_the_line(make_channels: MakeChannels) -> None:
    bench = make_channels(two_on_one_line())
    session = a_at_8_and_b_at_2(bench)
    wait_for(lambda: relay_pin(bench), 5.0, "the pump-enable relay closed")

    pressed = bench.now()
    outcome = session.emergency_stop()
    returned = bench.now()
    assert outcome.verdict.accepted and outcome.verdict.reason is Reason.EMERGENCY_STOPPED
    assert "every pump stopped (A, B)" in outcome.verdict.message
    # both pumps stopped before the call returned (the pumps' own state), relay open
    for name in ("A", "B"):
        assert not bench.channel_pump(name)["running"], name
    pins = bench.gpio()
    assert pins["pump_enabled"] is False and pins["alarm_on"] is True
    snap = outcome.snapshot
    assert snap.estopped and not any(view.running for view in snap.channels)

    events = read_safety_events(bench.safety_journal)
    stops = [e.action for e in events if isinstance(e, CommandIssued) and e.cause == "estop"]
    assert StopPump("A") in stops and StopPump("B") in stops, stops
    for name in ("A", "B"):
        truth = bench.channel_truth(name)
        assert last_rate(truth) == 0.0, describe(truth)
        stop = changes_between(truth, pressed)
        assert [s.rate_ml_h for s in stop] == [0.0], describe(truth)
        assert stop[0].start <= returned, describe(truth)
    # nothing restarts either pump while the stop stands unacknowledged
    refused = session.order(StartInfusion(Decimal(2), channel="B"))
    assert refused.verdict.reason is Reason.EMERGENCY_STOPPED, refused.verdict.message
    assert not refused.verdict.accepted
    bench.wait_clinical(bench.now() + 120)
    assert not bench.channel_pump("A")["running"] and not bench.channel_pump("B")["running"]
    bench.assert_total_invariants()


# --------------------------------------------------------------------------- no double dose


def test_a_second_pump_cannot_double_the_dose_or_stop_it_abruptly(
    make_channels: MakeChannels,
) -> None:
    bench = make_channels(two_on_one_line())
    session = bench.connect()
    program_both(session, "A", "B")
    assert session.start(Decimal(8), channel="A").execution == "applied"
    wait_for(lambda: running_at(bench, "A", RATE_8), 5.0, "A running at 15 mL/h")
    bench.wait_clinical(bench.now() + 60)

    # B at 8 beside A's 8: judged alone a permitted start, on the total a step of +8
    step = session.order(StartInfusion(Decimal(8), channel="B"))
    assert step.verdict.reason is Reason.STEP_RISE, step.verdict.message
    assert "(the total of channels A, B)" in step.verdict.message
    # B at 40 beside A's 8: 48 mcg/min in all, above the hard max of 47
    high = session.order(StartInfusion(Decimal(40), confirm_soft_limits=True, channel="B"))
    assert high.verdict.reason is Reason.HARD_MAX, high.verdict.message
    assert "summed over channels A, B" in high.verdict.message
    # the operator's way is refused by the safety process with the same reason
    with pytest.raises(Refused) as refused:
        session.start(Decimal(8), channel="B")
    assert refused.value.outcome.verdict.reason is Reason.STEP_RISE
    assert positive_rates(bench.channel_truth("B")) == []  # B never ran

    # B at 2 is a step of +2 on the total: accepted
    assert session.start(Decimal(2), channel="B").execution == "applied"
    wait_for(lambda: running_at(bench, "B", RATE_2), 5.0, "B running at 3.75 mL/h")
    bench.wait_clinical(bench.now() + 60)
    # stopping A leaves B's 2 of a total of 10: an 80 % fall, refused as a wean (S5)
    stop = session.order(StopInfusion(channel="A"))
    assert stop.verdict.reason is Reason.WEAN_TOO_FAST, stop.verdict.message
    assert "(the total of channels A, B)" in stop.verdict.message
    bench.wait_clinical(bench.now() + 60)

    a_truth, b_truth = bench.channel_truth("A"), bench.channel_truth("B")
    assert positive_rates(a_truth) == [RATE_8] and last_rate(a_truth) == RATE_8, describe(a_truth)
    assert positive_rates(b_truth) == [RATE_2] and last_rate(b_truth) == RATE_2, describe(b_truth)
    total = bench.assert_total_invariants()
    assert total.at(bench.now()) == pytest.approx(10.0)


# --------------------------------------------------------------------------- mixed bench


@pytest.mark.parametrize("other", [HARVARD, MODBUS_TCP], ids=str)
def test_a_mixed_bench_serves_every_channel_through_its_own_driver(
    make_channels: MakeChannels, other: PumpKind
) -> None:
    """An NE-1000 on a shared line (address 0) and a Harvard or Modbus TCP pump on a wire
    of its own: one drug over both, each pump commanded and read back by its driver."""
    bench = make_channels(
        [BenchLine("bus", NE1000, {"A": 0}), BenchLine("side", other, {"B": 1}, shared=False)]
    )
    session = a_at_8_and_b_at_2(bench)
    snap = session.status()
    views = {view.name: view for view in snap.channels}
    assert views["A"].driver == "ne1000" and views["B"].driver == other.protocol
    assert all(v.comms_ok and v.running for v in views.values()), views
    drug = next(d for d in snap.drugs if d.drug == "norepinephrine")
    assert drug.dose == Decimal(10) and drug.channels == ("A", "B")

    # stopping B leaves 8 of 10: within the wean rule on the total, accepted
    bench.wait_clinical(bench.now() + 60)
    stop = session.order(StopInfusion(channel="B"))
    assert stop.verdict.accepted and stop.execution == "applied", stop.verdict.message
    wait_for(lambda: not bench.channel_pump("B")["running"], 5.0, "B stopped")
    assert running_at(bench, "A", RATE_8)
    bench.wait_clinical(bench.now() + 60)

    a_truth, b_truth = bench.channel_truth("A"), bench.channel_truth("B")
    assert positive_rates(a_truth) == [RATE_8] and last_rate(a_truth) == RATE_8, describe(a_truth)
    assert positive_rates(b_truth) == [RATE_2] and last_rate(b_truth) == 0.0, describe(b_truth)
    assert bench.set_rates_executed() >= 1  # the NE-1000's frame log: its own rate set
    bench.assert_total_invariants()


def test_a_handover_under_way_survives_a_kill_9_of_the_safety_process(
    make_channels: MakeChannels,
) -> None:
    """An overlap of 4 steps of 10 min (it starts 45 min before A's 15 mL would empty); the
    safety process is killed after the first step and restarted: the new process carries
    the handover through from its journal, with the controller dead all along.

    150x, not 600x: the restarted process's start (interpreter, journal replay, the
    handshakes with the two NE-1000s left in safe mode) takes real seconds, and at 600x a
    second is 10 clinical minutes of the handover's 45."""
    relay = RelaySettings(overlap_step_min=10.0)
    bench = make_channels(two_on_one_line(volume_ml=15.0), relay=relay, speed=150.0)
    bench.channel_fault("B", "patient_line=off")
    ctl = bench.channel_child(
        "program:A", "program:B", "start:A:8", "prime:B:2", "primed:B", "arm:B:A:overlap"
    )
    ctl.wait_line("primed:B")
    bench.channel_fault("B", "patient_line=on")
    ctl.wait_line("ready")
    started = next(s.start for s in segments(bench.channel_truth("A")) if s.rate_ml_h > 0)
    empty_at = started + 3600.0
    ctl.kill9()

    def steps() -> list[HandoverStepped]:
        events = read_safety_events(bench.safety_journal)
        return [e for e in events if isinstance(e, HandoverStepped)]

    wait_for(steps, bench.real_s(empty_at - bench.now()), "the handover's first step")
    bench.kill_safety()
    assert [s.step for s in steps()] == [1]  # killed mid-way
    assert bench.channel_pump("A")["running"] and bench.channel_pump("B")["running"]
    bench.start_safety()

    def ended() -> list[HandoverEnded]:
        events = read_safety_events(bench.safety_journal)
        return [e for e in events if isinstance(e, HandoverEnded)]

    done = wait_for(ended, bench.real_s(empty_at - bench.now()) + 5.0, "the handover's end")
    assert [e.outcome for e in done] == ["done"], done
    assert [s.step for s in steps()] == [1, 2, 3, 4]  # carried on from step 1, not redone
    a, b = bench.channel_pump("A"), bench.channel_pump("B")
    assert not a["running"] and a["remaining_ml"] > 0 and a["alarms"] == [], a  # not empty
    assert b["running"] and b["set_rate_ml_h"] == pytest.approx(RATE_8), b
    b_rates = positive_rates(bench.channel_truth("B"))
    assert b_rates == sorted(b_rates) and b_rates[-1] == pytest.approx(RATE_8), b_rates
    # the restart read every pump after its handshake: no false accuracy alarm
    snap = bench.monitor().snapshot()
    accuracy = [a for a in snap.alarms if a.key.startswith("accuracy_")]
    assert accuracy == [], accuracy
    total = bench.assert_total_invariants()
    since = started + bench.tolerance_s
    assert total.longest(since, (8 * 0.9, 8 * 1.1)) <= bench.tolerance_s, total.describe()


# --------------------------------------------------------------------------- container change


def test_a_container_change_on_one_pump_is_a_bounded_journaled_gap(
    make_channels: MakeChannels,
) -> None:
    """One NE-1000 on a [channels] bench, norepinephrine 8 mcg/min from 10 mL: pause, a
    new 50 mL syringe, a prime to waste, resume at the rate before; then a second pause
    left past its 3-minute bound. 60x: the operator's steps take real time."""
    bench = make_channels([BenchLine("bus", NE1000, {"A": 0}, volume_ml=10.0)], speed=60.0)
    session = bench.connect()
    program_both(session, "A")
    assert session.start(Decimal(8), channel="A").execution == "applied"
    wait_for(lambda: running_at(bench, "A", RATE_8), 5.0, "A running at 15 mL/h")
    bench.wait_clinical(bench.now() + 120)
    # a vasopressor is never stopped abruptly: only a pause for a container change
    assert session.order(StopInfusion(channel="A")).verdict.reason is Reason.STOP_ABOVE_THRESHOLD

    paused = session.pause_for_container_change("A")
    assert paused.verdict.accepted and paused.execution == "applied", paused.verdict.message
    assert not bench.channel_pump("A")["running"]
    bench.channel_fault("A", "empty=50")  # the new syringe: what the pump now holds
    bench.channel_fault("A", "patient_line=off")
    changed = session.container_changed("50", "A")
    assert changed.verdict.accepted, changed.verdict.message
    assert session.prime("1", "A", confirm_line_disconnected=True).execution == "applied"

    def primed() -> bool:
        view = session.status().channel("A")
        return view is not None and view.primed and view.role != "priming"

    wait_for(primed, 5.0, "A primed")
    bench.channel_fault("A", "patient_line=on")
    resumed = session.resume_after_container_change("A")
    assert resumed.verdict.accepted and resumed.execution == "applied", resumed.verdict.message
    wait_for(lambda: running_at(bench, "A", RATE_8), 5.0, "A running again at 15 mL/h")

    truth = bench.channel_truth("A")
    rates = [s.rate_ml_h for s in segments(truth)]
    assert [r for r in rates if r > 0] == [RATE_8, RATE_8], describe(truth)
    # the gap: from the pause's stop to the resume's first flow, on the pump's truth
    segs = [s for s in segments(truth) if s.start > segments(truth)[0].start]
    gap = next(
        b.start - a.start
        for a, b in itertools.pairwise(segs)
        if a.rate_ml_h == 0 and b.rate_ml_h > 0
    )
    assert gap <= 3 * 60, describe(truth)  # the pause's bound
    assert bench.channel_pump("A")["wasted_ml"] == pytest.approx(1.0, abs=0.01)
    events = read_safety_events(bench.safety_journal)
    kinds = [type(e).__name__ for e in events]
    for kind in ("ContainerPaused", "ContainerLoaded", "ContainerResumed"):
        assert kind in kinds, kind
    view = session.status().channel("A")
    assert view is not None and view.container_volume_ml == 50.0

    # a pause left past its bound: a high alarm, cleared by the resume
    assert session.pause_for_container_change("A").execution == "applied"
    monitor = bench.monitor()
    snap = wait_for(
        lambda: active(monitor, "container_pause_overdue"), bench.real_s(4 * 60) + 5.0, "overdue"
    )
    overdue = next(a for a in snap.alarms if a.key == "container_pause_overdue")
    assert overdue.priority == "high" and overdue.scope == "A", overdue
    assert session.resume_after_container_change("A").execution == "applied"
    wait_for(lambda: running_at(bench, "A", RATE_8), 5.0, "A running after the late resume")
    wait_for(
        lambda: not active(monitor, "container_pause_overdue"), 5.0, "the alarm's condition gone"
    )
    bench.assert_total_invariants()


def test_a_syringe_that_empties_early_is_relieved_on_a_force_sensing_pump(
    make_channels: MakeChannels,
) -> None:
    """The operator said 50 mL; A's syringe held 8: A (15 mL/h) runs empty after 32 min,
    long before the planned handover, and its NE-1000 reports it as a motor stall. The
    armed, primed standby B should take over at once, as it does for a pump that reports
    "empty" (tests/channels/test_relay.py)."""
    line = BenchLine("bus", NE1000, {"A": 0, "B": 1}, volume_ml=8.0, told_ml=50.0)
    bench = make_channels([line])
    bench.channel_fault("B", "patient_line=off")
    ctl = bench.channel_child(
        "program:A", "program:B", "start:A:8", "prime:B:2", "primed:B", "arm:B:A:quick"
    )
    ctl.wait_line("primed:B")
    bench.channel_fault("B", "patient_line=on")
    ctl.wait_line("ready")
    started = next(s.start for s in segments(bench.channel_truth("A")) if s.rate_ml_h > 0)
    bench.wait_clinical(started + 40 * 60)
    a = bench.channel_pump("A")
    assert not a["running"] and a["remaining_ml"] == 0.0, a  # it did run empty
    total = bench.assert_total_invariants()
    # B took over within two polls and the wire's slack of A's stop
    assert bench.channel_pump("B")["running"], total.describe()
    limit = 2 * bench.settings.poll_period_s * bench.settings.speed + bench.tolerance_s
    assert total.longest(started + bench.tolerance_s, (8 * 0.9, 8 * 1.1)) <= limit
