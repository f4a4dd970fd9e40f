"""A restart's edges (S11, S14, S16): a running pump is held until a controller attaches,
a stopped one is not; a pump that stayed as it was (stopped, or running below 1 mL/h) is
no change; an in-flight fall counts from the restart, not from when it was issued (more
drug counted, never less); and the alarms a restart raises are stamped at it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from safety.alarms import Priority
from safety.kernel.model import ProgramSpec
from safety.kernel.state import Mode
from safety.reasons import Reason
from tests.kernel.support import Bench
from tests.kernel.test_resume_in_flight import _killed_after_the_pump_applied


def test_a_running_pump_is_held_until_a_controller_attaches(infusing: Bench) -> None:
    infusing.advance(60)
    infusing.restart(attach=False)
    state = infusing.core.state
    assert state.hold and state.mode is Mode.HOLD and not state.attached
    alarm = state.alarms.get("safety_restarted")
    assert alarm is not None and not alarm.active  # latched until acknowledged
    assert (alarm.reason, alarm.priority) == (Reason.HOLD, Priority.HIGH)
    assert alarm.raised_at == infusing.patient_now()
    assert infusing.change(10).verdict.reason is Reason.HOLD
    infusing.attach()
    assert not infusing.core.state.hold
    assert infusing.change(10).verdict.accepted


def test_a_stopped_pump_that_stayed_stopped_is_no_change_and_no_hold(
    bench: Bench, std: ProgramSpec
) -> None:
    assert bench.load(std).verdict.accepted
    assert bench.start(2).verdict.accepted
    bench.advance(60)
    assert bench.stop().verdict.accepted
    bench.advance(60)
    bench.restart(attach=False)
    state = bench.core.state
    assert not state.hold and state.mode is Mode.PROGRAMMED
    assert state.alarms.get("resume_changed") is None
    assert state.alarms.get("safety_restarted") is None


def test_a_pump_running_below_one_ml_h_that_stayed_so_is_no_change(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """0.9 mL/h (0.24 mcg/min, a 10 mL syringe): running, unchanged across the restart."""
    bench = make_bench(syringe="bd-plastipak-10ml")
    bench.boot()
    assert bench.load(std).verdict.accepted
    assert bench.start("0.24", confirm=True).verdict.accepted
    assert bench.truth_rate() == 0.9
    bench.advance(60)
    bench.restart()
    state = bench.core.state
    assert state.alarms.get("resume_changed") is None
    assert state.expected_cause == "command"


def test_an_in_flight_fall_counts_from_the_restart(infusing: Bench) -> None:
    """8 -> 6 went out and the pump ran it, the reply lost with the process: the history
    keeps 8 until the restart (the drug given is never under-counted) and 6 from there."""
    infusing.advance(60)
    issued_at = _killed_after_the_pump_applied(infusing, "6", "22.5")
    infusing.advance(30)
    infusing.restart()
    state = infusing.core.state
    assert state.alarms.get("resume_changed") is None
    segment = state.history.current
    assert segment is not None and segment.rate_ml_h == Decimal("22.5")
    assert segment.start > issued_at
    assert segment.start == infusing.patient_now()
