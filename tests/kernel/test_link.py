"""S8 (session, sequence, expiry) and S11 (controller lost: hold the last verified rate).

Every refused request below is one the kernel would accept from the attached controller
with the next sequence number in time (a +2 mcg/min step from 8), so the refusal can
only come from the link check under test.
"""

from __future__ import annotations

from decimal import Decimal

from safety.alarms import Priority
from safety.kernel.model import (
    ChangeDose,
    ControllerLost,
    EmergencyStop,
    Request,
    SetRate,
    StopPump,
)
from safety.kernel.state import Mode
from safety.reasons import Reason
from tests.kernel.support import Bench

# --------------------------------------------------------------------------- S8


def test_s8_the_reference_request_is_accepted(infusing: Bench) -> None:
    """The request every S8 test below spoils one way."""
    assert infusing.change(10).verdict.accepted


def test_s8_duplicate_sequence_number_refused(infusing: Bench) -> None:
    seq = infusing.seq + 1
    assert infusing.change(10, seq=seq).verdict.accepted
    sets = len(infusing.set_rates())
    out = infusing.change(12, seq=seq)  # a valid step, but the number is used
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.STALE_SEQUENCE
    assert len(infusing.set_rates()) == sets and infusing.truth_rate() == 37.5


def test_s8_replayed_request_is_not_executed_twice(infusing: Bench) -> None:
    seq = infusing.seq + 1
    assert infusing.change(10, seq=seq).verdict.accepted
    again = infusing.change(10, seq=seq)
    assert again.verdict.reason is Reason.STALE_SEQUENCE
    assert [c.action for c in infusing.set_rates()].count(SetRate(Decimal("37.5"))) == 1


def test_s8_out_of_order_request_refused(infusing: Bench) -> None:
    assert infusing.change(10, seq=infusing.seq + 5).verdict.accepted
    out = infusing.change(12, seq=infusing.seq - 1)  # older than the last one accepted
    assert out.verdict.reason is Reason.STALE_SEQUENCE
    assert infusing.truth_rate() == 37.5


def test_s8_expired_request_refused(infusing: Bench) -> None:
    out = infusing.change(10, expires_at=infusing.liveness.now() - 0.001)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.EXPIRED
    assert infusing.truth_rate() == 30.0
    # a request examined at its very expiry instant is still in time
    assert infusing.change(10, expires_at=infusing.liveness.now()).verdict.accepted


def test_s8_request_from_another_session_refused(infusing: Bench) -> None:
    out = infusing.change(10, session="f" * 16)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.NOT_ATTACHED
    assert infusing.truth_rate() == 30.0


def test_s8_old_session_refused_after_a_re_attach(infusing: Bench) -> None:
    old = infusing.session
    assert old is not None
    infusing.attach()
    out = infusing.change(10, session=old, seq=100)
    assert out.verdict.reason is Reason.NOT_ATTACHED
    assert infusing.change(10).verdict.accepted  # the new session starts at seq 1


def test_s8_request_without_session_refused_except_emergency_stop(infusing: Bench) -> None:
    out = infusing.core.handle(Request(None, ChangeDose(Decimal(10))))
    assert out.verdict.reason is Reason.BAD_INPUT
    assert infusing.truth_rate() == 30.0
    assert infusing.core.handle(Request(None, EmergencyStop("button"))).verdict.accepted


# --------------------------------------------------------------------------- S11


def _assert_holding(bench: Bench, truth_events_before: int) -> None:
    state = bench.core.state
    assert state.hold and state.mode is Mode.HOLD
    alarm = state.alarms.get("controller_lost")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.reason is Reason.HOLD and "holding 30" in alarm.message
    assert bench.pump.snapshot().running and bench.truth_rate() == 30.0
    assert len(bench.pump.truth.events) == truth_events_before  # the pump untouched


def test_s11_heartbeat_timeout_holds_the_last_rate_with_a_high_alarm(infusing: Bench) -> None:
    truth = len(infusing.pump.truth.events)
    commands = len(infusing.commands())
    infusing.lose_controller(gap_s=2.5)  # heartbeat timeout is 2 s
    _assert_holding(infusing, truth)
    lost = [e for e in infusing.events() if isinstance(e, ControllerLost)]
    assert [e.why for e in lost] == ["heartbeat timeout"]
    assert len(infusing.commands()) == commands  # hold: no command, not even a stop
    infusing.advance(600)  # and it keeps holding (10 min, polls and all)
    assert infusing.truth_rate() == 30.0 and infusing.core.state.hold


def test_s11_controller_eof_holds_the_last_rate(infusing: Bench) -> None:
    truth = len(infusing.pump.truth.events)
    infusing.core.controller_lost("eof")
    _assert_holding(infusing, truth)


def test_s11_changes_refused_while_holding(infusing: Bench) -> None:
    infusing.core.controller_lost("eof")
    for out in (infusing.change(10), infusing.stop(), infusing.ack()):
        assert not out.verdict.accepted
        assert out.verdict.reason is Reason.HOLD
    assert infusing.truth_rate() == 30.0
    # heartbeats from the lost session do not end the hold
    assert infusing.session is not None
    assert infusing.core.heartbeat(infusing.session) is False
    assert infusing.core.state.hold


def test_s11_emergency_stop_still_works_while_holding(infusing: Bench) -> None:
    infusing.core.controller_lost("eof")
    out = infusing.estop()
    assert out.verdict.accepted and out.verdict.reason is Reason.EMERGENCY_STOPPED
    assert not infusing.pump.snapshot().running and infusing.truth_rate() == 0.0
    assert infusing.core.emergency_stop("button").verdict.accepted


def test_s11_safety_reactions_continue_while_holding(infusing: Bench) -> None:
    """Hold freezes the controller's requests, not the kernel's own checks."""
    infusing.core.controller_lost("eof")
    infusing.pump.set_rate(40.0)  # runs over its set rate behind the kernel's back
    infusing.core.poll()
    assert not infusing.pump.snapshot().running
    stops = [c for c in infusing.commands() if isinstance(c.action, StopPump)]
    assert [c.cause for c in stops] == ["safety"]


def test_s11_re_attach_clears_the_hold(infusing: Bench) -> None:
    infusing.core.controller_lost("eof")
    infusing.attach()
    state = infusing.core.state
    assert not state.hold and state.attached and state.mode is Mode.INFUSING
    alarm = state.alarms.get("controller_lost")
    assert alarm is not None and not alarm.active  # latched until acknowledged
    out = infusing.change(10)
    assert out.verdict.accepted
    assert infusing.truth_rate() == 37.5
