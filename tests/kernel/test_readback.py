"""The checks that run on what the pump really does: S1 on read-back, S9 (set versus
read-back), S10 (uncertain delivery) and S13 (pump alarms, comms).

Faults are injected the way they happen: the simulated pump is changed behind the
kernel's back (``pump.set_rate``, occlusion, stall...), or the wire loses a request or
its reply (``WireFaults``). The kernel only learns of it through a read-back.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from safety.alarms import Priority
from safety.kernel.model import CommandFailed, SetRate, StartPump, StopPump
from safety.kernel.state import Mode
from safety.reasons import Reason
from tests.kernel.support import Bench

# --------------------------------------------------------------------------- S1 on read-back


def test_s1_readback_above_hard_max_stops_the_pump_with_a_high_alarm(infusing: Bench) -> None:
    infusing.pump.set_rate(200.0)  # 53.3 mcg/min: above the hard max 47
    infusing.core.poll()

    assert not infusing.pump.snapshot().running
    assert infusing.truth_rate() == 0.0
    alarm = infusing.core.state.alarms.get("readback_hard_max")
    assert alarm is not None, [a.key for a in infusing.core.state.alarms.alarms]
    assert alarm.priority is Priority.HIGH and alarm.reason is Reason.HARD_MAX
    assert "above the hard maximum 47 mcg/min" in alarm.message
    last_stop = [c for c in infusing.commands() if isinstance(c.action, StopPump)][-1]
    assert last_stop.cause == "safety"


# --------------------------------------------------------------------------- S9


def test_s9_a_set_is_read_back_once_by_the_core_not_also_inside_the_driver(
    infusing: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core sends the rate alone (``send_rate``) and its own read-back of the whole
    status checks it: the driver's reading ``set_rate`` would add an exchange to every
    change on a shared line and tell the core nothing more."""
    calls: list[str] = []
    driver = infusing.driver
    for name in ("set_rate", "send_rate", "read_status"):
        method = getattr(driver, name)

        def logged(*args: object, _name: str = name, _method: Any = method) -> Any:
            calls.append(_name)
            return _method(*args)

        monkeypatch.setattr(driver, name, logged)
    assert infusing.change(10).execution == "applied"
    assert calls == ["send_rate", "read_status"]
    assert infusing.truth_rate() == 37.5


def test_s9_readback_over_the_set_rate_stops_the_pump_with_a_high_alarm(infusing: Bench) -> None:
    """31 mL/h (8.27 mcg/min) is far under the hard max: only S9 can catch it."""
    infusing.pump.set_rate(31.0)
    infusing.core.poll()

    assert not infusing.pump.snapshot().running
    alarm = infusing.core.state.alarms.get("readback_over")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.reason is Reason.READBACK_OVER
    assert infusing.core.state.alarms.get("readback_hard_max") is None
    assert [c.cause for c in infusing.commands() if isinstance(c.action, StopPump)] == ["safety"]


def test_s9_pump_running_without_a_start_is_stopped(bench: Bench, std: object) -> None:
    """Started at its keypad after a stop: running, but never started by the kernel."""
    assert bench.load(std).verdict.accepted  # type: ignore[arg-type]
    assert bench.start(2).verdict.accepted
    assert bench.stop().verdict.accepted
    bench.pump.start()
    bench.core.poll()
    assert not bench.pump.snapshot().running
    alarm = bench.core.state.alarms.get("readback_over")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert "not started by the safety process" in alarm.message


def test_s9_readback_under_the_set_rate_is_retried_once(infusing: Bench) -> None:
    infusing.pump.set_rate(25.0)
    infusing.core.poll()

    retries = infusing.set_rates(cause="retry")
    assert [c.action for c in retries] == [SetRate(infusing.core.state.expected_rate)]
    assert infusing.truth_rate() == 30.0  # the retry put it right
    assert infusing.core.state.alarms.get("readback_under") is None
    assert infusing.pump.snapshot().running


def test_s9_readback_still_under_after_the_retry_raises_an_alarm(infusing: Bench) -> None:
    """A pump that runs 80 % of whatever it is set to: one retry, then an alarm, and
    no further retries (never a loop of blind repeats)."""
    infusing.driver.sag = 0.8
    infusing.pump.set_rate(24.0)
    infusing.core.poll()

    alarm = infusing.core.state.alarms.get("readback_under")
    assert alarm is not None and alarm.reason is Reason.READBACK_UNDER
    assert alarm.priority is Priority.MEDIUM
    for _ in range(3):
        infusing.service()
    assert len(infusing.set_rates(cause="retry")) == 1
    assert infusing.pump.snapshot().running  # under-infusion of a vasopressor: keep going


# --------------------------------------------------------------------------- S10


def test_s10_lost_ack_makes_delivery_uncertain_until_a_readback_it_took_effect(
    infusing: Bench,
) -> None:
    infusing.wire.lose_ack_next(2)  # the set's reply, and the reconciling read's reply
    out = infusing.change(10)
    assert out.verdict.accepted
    assert out.execution.startswith("uncertain")
    assert infusing.truth_rate() == 37.5  # it did reach the pump
    assert infusing.core.state.mode is Mode.UNCERTAIN

    refused = infusing.change(12)  # a step the kernel would otherwise accept
    assert not refused.verdict.accepted
    assert refused.verdict.reason is Reason.DELIVERY_UNCERTAIN
    assert infusing.truth_rate() == 37.5

    infusing.core.poll()
    state = infusing.core.state
    assert state.pending is None and state.expected_rate == Decimal("37.5")
    alarm = state.alarms.get("delivery_uncertain")
    assert alarm is not None and "it took effect" in alarm.message
    # nothing was repeated: one SetRate to 37.5 journaled, one sent
    expected = [SetRate(Decimal(30)), SetRate(Decimal("37.5"))]
    assert [c.action for c in infusing.set_rates()] == expected
    assert [a for _, a in infusing.guard.sent if isinstance(a, SetRate)] == expected
    assert infusing.change(12).verdict.accepted


def test_s10_lost_request_reconciled_as_not_taken_effect(infusing: Bench) -> None:
    infusing.wire.drop_next(2)  # the set never reaches the pump; the read is lost too
    out = infusing.change(10)
    assert out.verdict.accepted and out.execution.startswith("uncertain")
    assert infusing.truth_rate() == 30.0
    assert infusing.change(9).verdict.reason is Reason.DELIVERY_UNCERTAIN

    infusing.core.poll()
    state = infusing.core.state
    assert state.pending is None
    assert state.expected_rate == 30  # back to what the pump really does
    alarm = state.alarms.get("delivery_uncertain")
    assert alarm is not None and "did not take effect" in alarm.message
    assert infusing.truth_rate() == 30.0
    # not resent by the kernel: the one failed SetRate(37.5), no other
    failed = [e for e in infusing.events() if isinstance(e, CommandFailed)]
    assert len(failed) == 1 and failed[0].failure == "timeout"
    assert [c.action for c in infusing.set_rates()] == [
        SetRate(Decimal(30)),
        SetRate(Decimal("37.5")),
    ]
    # the operator may ask again: a new decision, sent once
    assert infusing.change(10).verdict.accepted
    assert infusing.truth_rate() == 37.5


@pytest.mark.parametrize("fault", ["lose_ack", "corrupt"])
def test_s10_uncertain_command_reconciled_at_once_when_the_readback_works(
    infusing: Bench, fault: str
) -> None:
    getattr(infusing.wire, f"{fault}_next")(1)
    out = infusing.change(10)
    assert out.execution.startswith("uncertain") and "reconciled" in out.execution
    assert infusing.core.state.pending is None
    assert infusing.core.state.expected_rate == Decimal("37.5")
    assert len(infusing.set_rates()) == 2  # the start's and this one, never repeated
    assert infusing.change(12).verdict.accepted


def test_s10_lost_start_reconciled_without_a_second_start(bench: Bench, std: object) -> None:
    assert bench.load(std).verdict.accepted  # type: ignore[arg-type]
    bench.wire.drop_next(1)  # the SetRate request is lost on the wire
    out = bench.start(8)
    assert out.execution.startswith("uncertain")
    starts = [c for c in bench.commands() if isinstance(c.action, StartPump)]
    assert starts == []  # after an uncertain set, the start is not sent on top of it
    assert not bench.pump.snapshot().running


# --------------------------------------------------------------------------- S13


PUMP_FAULTS: dict[str, tuple[Callable[[Bench], None], str, str]] = {
    "occlusion": (lambda b: b.pump.set_occlusion(True), "pump:occlusion", "occlusion"),
    "empty": (lambda b: b.pump.empty_syringe(), "pump:empty", "syringe empty"),
    "stall": (lambda b: b.pump.set_stall(True), "pump:stall", "motor stalled"),
    "power_cycle": (lambda b: b.pump.power_cycle(), "pump:reset", "power was interrupted"),
}


@pytest.mark.parametrize("fault", sorted(PUMP_FAULTS))
def test_s13_pump_alarm_raises_a_high_alarm_with_the_pumps_reason(
    infusing: Bench, fault: str
) -> None:
    inject, key, words = PUMP_FAULTS[fault]
    inject(infusing)
    infusing.advance(120)  # occlusion needs ~26 s of pumping to reach its pressure limit

    state = infusing.core.state
    alarm = state.alarms.get(key)
    assert alarm is not None, [a.key for a in state.alarms.alarms]
    assert alarm.priority is Priority.HIGH and alarm.reason is Reason.PUMP_ALARM
    assert words in alarm.message
    stopped = state.alarms.get("pump_stopped")
    assert stopped is not None and stopped.priority is Priority.HIGH
    assert words in stopped.message  # the pump's own reason, not a generic one
    assert not state.running and not infusing.pump.snapshot().running
    # never restarted behind the operator's back
    assert [c for c in infusing.commands() if isinstance(c.action, StartPump)][-1].now.clinical == 0


def test_s13_occlusion_stops_flow_and_is_high_priority(infusing: Bench) -> None:
    infusing.pump.set_occlusion(True)
    infusing.advance(60)
    truth = infusing.truth_segments()
    assert truth[-1].rate_ml_h == 0.0  # no flow reached the patient past the block
    alarm = infusing.core.state.alarms.get("pump:occlusion")
    assert alarm is not None and alarm.priority is Priority.HIGH


def test_s13_near_empty_is_a_medium_alarm_and_the_pump_keeps_going(infusing: Bench) -> None:
    infusing.pump.empty_syringe(remaining_ml=4.0)  # below 10 % of 50 mL
    infusing.core.poll()
    alarm = infusing.core.state.alarms.get("pump:near_empty")
    assert alarm is not None and alarm.priority is Priority.MEDIUM
    assert infusing.pump.snapshot().running and infusing.core.state.running
    assert infusing.core.state.alarms.get("pump_stopped") is None


def test_s13_comms_loss_raises_a_high_alarm_and_leaves_the_pump_alone(infusing: Bench) -> None:
    commands = len(infusing.commands())
    infusing.wire.set_silent(True)
    infusing.advance(30)
    state = infusing.core.state
    alarm = state.alarms.get("pump_comms")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.reason is Reason.PUMP_COMMS and "not answering" in alarm.message
    assert not state.comms_ok
    assert infusing.pump.snapshot().running and infusing.truth_rate() == 30.0
    assert len(infusing.commands()) == commands  # nothing sent to a pump we cannot hear
    infusing.wire.set_silent(False)
    infusing.advance(1)
    assert infusing.core.state.comms_ok
    latched = infusing.core.state.alarms.get("pump_comms")
    assert latched is not None and not latched.active  # latched until acknowledged
    assert infusing.ack().verdict.accepted
    assert infusing.core.state.alarms.get("pump_comms") is None
