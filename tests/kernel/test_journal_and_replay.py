"""S14: write-ahead journal, exact replay, and a restart that resumes without touching
the pump.

The write-ahead check is made from the outside: the bench's driver and GPIO refuse any
command whose ``CommandIssued`` is not already the journal's latest entry (see
``support.JournalGuard``), so every test in this suite checks S14 on every command it
causes; the tests here make sure that guard really sees commands, and add the alarm
output and the order of request, verdict, command and read-back.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from safety.alarms import Priority
from safety.journal import Journal
from safety.kernel.codec import decode_event
from safety.kernel.model import (
    CommandIssued,
    ProgramSpec,
    ReadbackReceived,
    RequestDecided,
    Resumed,
    SetRate,
    StartPump,
)
from safety.kernel.replay import replay_journal
from safety.kernel.state import Mode
from tests.kernel.support import Bench, GuardedGpio


def test_s14_the_guard_sees_every_command_and_it_was_journaled_first(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = make_bench(gpio=True)
    bench.boot()
    assert bench.load(std).verdict.accepted
    assert bench.start(8).verdict.accepted
    bench.advance(60)
    assert bench.change(10).verdict.accepted
    assert bench.estop().verdict.accepted
    assert bench.ack().verdict.accepted
    assert bench.start(8).verdict.accepted
    kinds = [type(a).__name__ for _, a in bench.guard.sent]
    assert kinds == [
        "SetRate",
        "StartPump",
        "SetRate",
        "StopPump",
        "SetInterlock",
        "SetInterlock",
        "SetRate",
        "StartPump",
    ]
    assert bench.guard.violations == []
    journaled = [c.action for c in bench.commands()]
    assert journaled == [a for _, a in bench.guard.sent]


def test_s14_request_verdict_command_readback_in_that_order(infusing: Bench) -> None:
    first = infusing.journal.last_id()
    assert infusing.change(10).verdict.accepted
    events = [decode_event(e.payload) for e in infusing.journal.entries(since_id=first)]
    assert isinstance(events[0], RequestDecided) and events[0].accepted
    assert isinstance(events[1], CommandIssued) and events[1].action == SetRate(Decimal("37.5"))
    assert isinstance(events[2], ReadbackReceived)
    assert events[2].reading.set_rate_ml_h == Decimal("37.5")


def test_s14_refused_requests_are_journaled_with_their_reason(infusing: Bench) -> None:
    out = infusing.change(80)
    last = infusing.decisions()[-1]
    assert not last.accepted and last.reason is out.verdict.reason
    assert last.seq == infusing.seq


class _AlarmOracle(GuardedGpio):
    """The alarm output may only change to what the journal already says."""

    bench: Bench | None = None
    checked = 0

    def set_alarm(self, on: bool) -> None:
        if self.bench is not None and self.bench.booted:
            state = replay_journal(self.bench.config, self.bench.journal).state
            loud = [a for a in state.alarms.annunciating() if a.priority >= Priority.MEDIUM]
            assert bool(loud) == on, (on, loud)
            type(self).checked += 1
        super().set_alarm(on)


def test_s14_alarm_output_follows_only_journaled_alarms(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = make_bench()
    oracle = _AlarmOracle(state_dir=bench.gpio_dir, clock=bench.liveness)
    oracle.open()
    oracle.bench = bench
    oracle.guard = bench.guard
    oracle.clinical = bench.clinical
    bench.gpio = oracle
    bench.core = bench._new_core()
    bench.boot()
    assert bench.load(std).verdict.accepted
    assert bench.start(8).verdict.accepted
    bench.pump.set_occlusion(True)
    bench.advance(120)
    assert oracle.alarm_on
    bench.pump.set_occlusion(False)
    assert bench.ack().verdict.accepted
    bench.advance(5)
    assert not oracle.alarm_on
    assert _AlarmOracle.checked > 5


def _varied_run(bench: Bench, std: ProgramSpec) -> None:
    assert bench.load(std).verdict.accepted
    assert bench.start(8).verdict.accepted
    bench.advance(300)
    assert bench.change(10).verdict.accepted
    bench.wire.lose_ack_next(2)
    bench.change(12)
    bench.advance(60)
    bench.pump.set_occlusion(True)
    bench.advance(120)
    bench.pump.set_occlusion(False)
    bench.ack()
    bench.start(8)
    bench.lose_controller()
    bench.attach()
    bench.estop()
    bench.ack()
    bench.start(6)
    bench.advance(900)


def test_s14_replay_reproduces_the_exact_state(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = make_bench()
    bench.boot()
    _varied_run(bench, std)
    assert bench.core.state.program is not None and bench.core.state.running
    assert bench.replayed() == bench.core.state
    # and from a second connection to the same file (what a restarted process opens)
    other = Journal(bench.journal.path, "safety")
    try:
        assert replay_journal(bench.core.config, other).state == bench.core.state
    finally:
        other.close()


def test_s14_restart_resumes_without_touching_the_pump(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = make_bench()
    bench.boot()
    _varied_run(bench, std)
    before = bench.core.state
    truth = list(bench.pump.truth.events)
    sent = len(bench.guard.sent)

    bench.restart()

    assert bench.pump.truth.events == truth  # the pump did not change at all
    assert len(bench.guard.sent) == sent  # nothing was sent to it
    after = bench.core.state
    assert after.running and after.set_rate == before.set_rate
    assert after.history.segments[: len(before.history.segments)] == before.history.segments
    assert after.program == before.program
    resumed = [e for e in bench.events() if isinstance(e, Resumed)]
    assert resumed[-1].reading is not None and resumed[-1].reading.running
    assert after.alarms.get("resume_changed") is None
    assert after.alarms.get("pump_comms") is None  # the pump answered: no comms alarm
    assert bench.replayed() == after


def test_s14_restart_while_infusing_keeps_titration_and_wean_possible(
    infusing: Bench,
) -> None:
    """After a restart the pump's rate range must still be known: a process that can no
    longer wean a vasopressor is not safe either."""
    infusing.advance(600)
    infusing.restart()
    assert infusing.core.state.mode is Mode.INFUSING
    up = infusing.change(10)
    assert up.verdict.accepted, up.verdict.message
    infusing.advance(60)
    down = infusing.change(8)
    assert down.verdict.accepted, down.verdict.message


def test_s14_restart_while_the_pump_is_briefly_unreachable_recovers_the_pump_range(
    infusing: Bench,
) -> None:
    infusing.advance(60)
    infusing.wire.drop_next(1)  # the restart's first request to the pump is lost
    infusing.core.close()
    infusing.restart()
    assert infusing.truth_rate() == 30.0  # nothing touched the pump
    infusing.advance(60)  # the pump answers again
    assert infusing.core.state.comms_ok
    out = infusing.change(7)  # a wean step every rule allows
    assert out.verdict.accepted, out.verdict.message


def test_s14_restart_after_a_pump_change_while_down_says_so(
    infusing: Bench,
) -> None:
    """The pump stopped (power cycle) while the safety process was down: it resumes
    with what the pump really does, and says so; it starts nothing."""
    infusing.core.close()
    infusing.pump.power_cycle()
    infusing.restart()
    state = infusing.core.state
    assert not state.running
    assert not [c for c in infusing.commands()[2:] if isinstance(c.action, StartPump)]
    changed = state.alarms.get("resume_changed")
    assert changed is not None and "now stopped" in changed.message
    assert state.alarms.get("pump:reset") is not None


def test_s14_journal_is_append_only_and_ids_increase(infusing: Bench) -> None:
    ids = [e.id for e in infusing.journal.entries()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    infusing.change(10)
    later = [e.id for e in infusing.journal.entries()]
    assert later[: len(ids)] == ids
