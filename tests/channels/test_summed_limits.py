"""Limits per patient and drug, summed over channels (S1, S3, S4, S5 on the total).

Norepinephrine, adult ICU, standard (mcg/min), 4 mg/250 mL (16 mcg/mL: 1 mcg/min is
3.75 mL/h; the mock pump runs 4 significant digits, so one pump step at 7.5 mL/h is
0.001 mL/h, 0.0003 mcg/min, and at 11.25 mL/h 0.01 mL/h, 0.0027 mcg/min). Titration: a
step rises at most min(2 mcg/min, 25 %), a 10-minute window at most min(4, 50 %) above
its lowest dose; wean: at most 25 % below the highest dose of the last 30 min; stop only
at or below 2 mcg/min; hard max 47.

Each limit is tested exactly at it and one pump step past it, on channel B while
channel A gives the same drug: judged alone, B's dose would pass every time.
"""

from __future__ import annotations

from decimal import Decimal

from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    ChangeDose,
    CommandIssued,
    ProgramSpec,
    SetInterlock,
    StartInfusion,
    StopPump,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.channels.support import ChannelBench
from tests.kernel.support import norepi_weight_based


def _both(bench: ChannelBench, spec: ProgramSpec, a: str, b: str, *, confirm: bool = False) -> None:
    """A started at ``a``, then B at ``b`` beside it (each accepted)."""
    assert bench.load_on("A", spec).verdict.accepted
    assert bench.load_on("B", spec).verdict.accepted
    outcome = bench.start_on("A", a, confirm=confirm)
    assert outcome.verdict.accepted and outcome.execution == "applied", outcome.verdict.message
    outcome = bench.start_on("B", b, confirm=confirm)
    assert outcome.verdict.accepted and outcome.execution == "applied", outcome.verdict.message


# --------------------------------------------------------------------------- S4


def test_a_start_beside_a_running_channel_is_a_step_of_the_total(
    two: ChannelBench, std: ProgramSpec
) -> None:
    """A runs 8: B may start at 2 (total 10, the largest step from 8), not 2.0003."""
    assert two.load_on("A", std).verdict.accepted and two.load_on("B", std).verdict.accepted
    assert two.start_on("A", 8).verdict.accepted
    two.advance(60)
    past = two.start_on("B", "2.0003")
    assert past.verdict.reason is Reason.STEP_RISE, past.verdict.message
    assert "(the total of channels A, B)" in past.verdict.message
    at = two.start_on("B", 2)
    assert at.verdict.accepted and at.execution == "applied", at.verdict.message
    assert at.verdict.message.endswith("with channels A the total is 10 mcg/min")
    assert two.pumps["B"].snapshot().running and two.pumps["A"].snapshot().set_rate_ml_h == 30.0


def test_rises_on_either_channel_count_against_the_totals_window(
    two: ChannelBench, std: ProgramSpec
) -> None:
    """From a total of 8, four steps of 1 on B reach 12 (the window's +4 over its lowest);
    one pump step more is refused though the step itself is small."""
    _both(two, std, "8", "1")
    for dose in ("2", "3", "4"):
        two.advance(30)
        assert two.change_on("B", dose).verdict.accepted
    two.advance(30)
    past = two.change_on("B", "4.0003")
    assert past.verdict.reason is Reason.WINDOW_RISE, past.verdict.message
    assert two.change_on("A", "8.0003").verdict.reason is Reason.WINDOW_RISE


# --------------------------------------------------------------------------- S1


def test_the_hard_max_binds_the_total_exactly_at_it_and_one_step_past(
    make_channels: object, std: ProgramSpec
) -> None:
    assert callable(make_channels)
    bench: ChannelBench = make_channels()
    bench.seed(std, [(0.0, "44")], boot_at=3600.0)  # channel A's course so far: 44 mcg/min
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted  # re-programmed in place
    assert bench.load_on("B", std).verdict.accepted
    assert bench.start_on("B", 1, confirm=True).verdict.accepted  # 45 in all
    bench.advance(11 * 60)
    past = bench.change_on("B", "3.0003", confirm=True)
    assert past.verdict.reason is Reason.HARD_MAX, past.verdict.message
    assert "summed over channels A, B" in past.verdict.message
    at = bench.change_on("B", 3, confirm=True)
    assert at.verdict.accepted, at.verdict.message  # 47: the hard max itself


def test_a_readback_above_the_hard_max_in_all_stops_the_channel_that_showed_it(
    make_channels: object, std: ProgramSpec
) -> None:
    """B's pump runs 4 mcg/min where it was set to 1: B alone is far from the hard max,
    with A's 44 it is above it: B is stopped, A runs on."""
    assert callable(make_channels)
    bench: ChannelBench = make_channels()
    bench.seed(std, [(0.0, "44")], boot_at=3600.0)
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("B", 1, confirm=True).verdict.accepted
    bench.drivers["B"].label("keypad", lambda: bench.pumps["B"].set_rate(15.0))  # 4 mcg/min
    bench.core.poll()
    alarm = bench.core.state.alarms.get("readback_hard_max", "B")
    assert alarm is not None and alarm.priority.word == "high", bench.core.state.alarms
    assert "(the total with channels A)" in alarm.message
    assert not bench.pumps["B"].snapshot().running
    assert bench.pumps["A"].snapshot().running and bench.pumps["A"].snapshot().set_rate_ml_h == 165


# --------------------------------------------------------------------------- S5


def test_stopping_one_channel_is_a_fall_of_the_total_not_a_stop(
    two: ChannelBench, std: ProgramSpec
) -> None:
    """A 9 + B 3 = 12: stopping B leaves 9, exactly 75 %: allowed, though B alone is above
    the stop threshold."""
    _both(two, std, "9", "2")
    two.advance(30)
    assert two.change_on("B", 3).verdict.accepted
    two.advance(60)
    stop = two.stop_on("B")
    assert stop.verdict.accepted and stop.execution == "applied", stop.verdict.message
    assert stop.verdict.message == "accepted: stop channel B (channels A give 9 mcg/min)"
    assert not two.pumps["B"].snapshot().running and two.pumps["A"].snapshot().running


def test_stopping_one_channel_one_step_too_fast_is_refused_as_a_wean(
    two: ChannelBench, std: ProgramSpec
) -> None:
    _both(two, std, "9", "2")
    two.advance(30)
    assert two.change_on("B", "3.0027").verdict.accepted  # 11.26 mL/h: 12.0027 in all
    two.advance(60)
    stop = two.stop_on("B")
    assert stop.verdict.reason is Reason.WEAN_TOO_FAST, stop.verdict.message
    assert "(the total of channels A, B)" in stop.verdict.message


def test_a_small_channel_carrying_much_of_the_total_is_not_stopped(
    two: ChannelBench, std: ProgramSpec
) -> None:
    """A 4 + B 1.5: B alone is below the stop threshold, but stopping it leaves 73 %."""
    _both(two, std, "4", "1")
    two.advance(30)
    assert two.change_on("B", "1.5").verdict.accepted
    two.advance(60)
    stop = two.stop_on("B")
    assert stop.verdict.reason is Reason.WEAN_TOO_FAST, stop.verdict.message


def test_a_fall_on_one_channel_is_judged_on_the_total(two: ChannelBench, std: ProgramSpec) -> None:
    """A 8 + B 8 (built up within the titration rules): B to 4 leaves 12, 75 % of 16."""
    _both(two, std, "8", "2")
    for dose in ("4", "6", "8"):
        two.advance(11 * 60)
        assert two.change_on("B", dose).verdict.accepted, dose
    two.advance(60)
    past = two.change_on("B", "3.9997")
    assert past.verdict.reason is Reason.WEAN_TOO_FAST, past.verdict.message
    assert two.change_on("B", 4).verdict.accepted


# --------------------------------------------------------------------------- S10 and addressing


def test_an_uncertain_command_on_one_channel_holds_every_channel_of_its_drug(
    two: ChannelBench, std: ProgramSpec
) -> None:
    _both(two, std, "8", "1")
    two.advance(30)
    two.wire.lose_ack_next(2)  # channel A: the set's reply and the reconciling read's
    lost = two.change_on("A", 9)
    assert lost.execution.startswith("uncertain"), lost.execution
    assert two.ch("A").pending is not None
    held = two.change_on("B", 2)
    assert held.verdict.reason is Reason.DELIVERY_UNCERTAIN
    assert "on channel A" in held.verdict.message


def test_a_request_names_its_channel_on_a_bench_of_several(
    two: ChannelBench, std: ProgramSpec
) -> None:
    unnamed = two.send(StartInfusion(Decimal(8)))
    assert unnamed.verdict.reason is Reason.UNKNOWN_CHANNEL
    assert unnamed.verdict.message == ("refused: the bench has 2 channels (A, B): name the channel")
    unknown = two.send(ChangeDose(Decimal(8), channel="C"))
    assert unknown.verdict.message == "refused: there is no channel 'C' (channels: A, B)"


def test_the_emergency_stop_stops_every_channel(two: ChannelBench, std: ProgramSpec) -> None:
    _both(two, std, "8", "1")
    outcome = two.estop()
    assert outcome.verdict.message == (
        "emergency stop (api): every pump stopped (A, B) and interlocked"
    )
    assert not any(p.snapshot().running for p in two.pumps.values())
    assert not two.ch("A").running and not two.ch("B").running


# --------------------------------------------------------------------------- S3


def test_the_cap_guard_stops_every_channel_of_the_drug(
    make_channels: object, library: DrugLibrary
) -> None:
    """68 mg per 24 h, weight-based at 70 kg: A gave 0.9 mcg/kg/min (63 mcg/min, 3.78 mg
    an hour) until 67.4 mg; with B's 0.02 beside it (a look-ahead of 5 min lets it start)
    the total reaches the cap about 9 min later, before A's syringe runs out. The guard
    stops both pumps, not one."""
    assert callable(make_channels)
    spec = norepi_weight_based(library)
    bench: ChannelBench = make_channels(config=KernelConfig(cap_lookahead_s=300.0))
    per_h = float(bench.pump_rate_for(spec, "0.9")) * 16 / 1000  # mg/h
    bench.seed(spec, [(0.0, "0.9")], boot_at=67.4 / per_h * 3600)
    bench.boot()
    assert bench.load_on("A", spec).verdict.accepted and bench.load_on("B", spec).verdict.accepted
    started = bench.start_on("B", "0.02", confirm=True)
    assert started.verdict.accepted, started.verdict.message
    bench.advance(10 * 60, poll_every_s=60)
    assert not any(p.snapshot().running for p in bench.pumps.values())
    assert not bench.core.state.alarms.has("pump:empty")
    alarm = bench.core.state.alarms.get("cap", "drug:norepinephrine")
    assert alarm is not None and alarm.priority.word == "high"
    stops = [c.action.channel for c in bench.commands() if c.cause == "safety"]
    assert sorted(stops) == ["A", "B"]


def test_the_emergency_stop_stops_the_answering_pumps_and_cuts_the_relay_first(
    two: ChannelBench, std: ProgramSpec
) -> None:
    """A silent pump's link may take seconds to give up (a Modbus TCP device's reconnect
    attempts): the pumps that answer are stopped and the interlock cut before it is
    tried, whatever the channel order."""
    _both(two, std, "8", "1")
    two.core.state = two.core.state.with_channel("A", comms_ok=False)  # A's link is down
    first = len(two.events())
    two.estop()
    issued = [e.action for e in two.events()[first:] if isinstance(e, CommandIssued)]
    assert issued[:3] == [StopPump("B"), SetInterlock(False, "A"), StopPump("A")]
