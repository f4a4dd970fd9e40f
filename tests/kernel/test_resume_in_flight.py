"""A restart attributes an in-flight change to the command that caused it (issue 9).

The process is killed after the pump applied a journaled, accepted change but before its
reply came back. Before the fix the restart compared the pump only with the last
*verified* rate: it raised a false ``resume_changed`` alarm and recorded the new rate as
the pump's own doing from the restart instant, exempt from the titration and wean rules.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from safety.kernel.codec import encode_event
from safety.kernel.model import (
    ChangeDose,
    CommandIssued,
    Event,
    RequestDecided,
    SetRate,
)
from safety.reasons import Reason
from tests.kernel.support import Bench


def _killed_after_the_pump_applied(bench: Bench, dose: str, rate: str) -> float:
    """Journal an accepted change and its command exactly as the core does, make the pump
    run it, and lose the process before the reply: returns the command's clinical time."""
    now = bench.core.now()
    assert bench.session is not None
    bench.seq += 1
    events: list[Event] = [
        RequestDecided(
            bench.session, bench.seq, ChangeDose(Decimal(dose)), True, Reason.ACCEPTED, now
        ),
        CommandIssued(SetRate(Decimal(rate)), "command", now),
    ]
    bench.journal.append_many(
        [(e.kind, encode_event(e), e.now.clinical, e.now.liveness) for e in events]
    )
    bench.driver.label("command", lambda: bench.pump.set_rate(float(rate)))
    bench.core.close()
    return now.clinical


def test_the_change_is_the_commands_not_the_pumps(infusing: Bench) -> None:
    infusing.advance(60)
    issued_at = _killed_after_the_pump_applied(infusing, "10", "37.5")
    infusing.advance(30)  # the pump runs 37.5 mL/h while nothing supervises it
    infusing.restart()

    state = infusing.core.state
    assert state.alarms.get("resume_changed") is None
    assert state.expected_cause == "command"
    segment = state.history.current
    program = state.drug_program
    assert program is not None and segment is not None
    assert segment.amount_per_h == Fraction(Decimal("37.5")) * program.amount_per_ml
    # a rise counts from when it was issued: more drug counted, never less
    assert segment.start == issued_at and segment.cause == "command"


def test_the_rules_still_judge_what_follows_the_in_flight_change(infusing: Bench) -> None:
    """8 -> 10 went out before the crash; from 10 a rise to 13 is a step of 3 (> 2) and a
    window rise of 5 over 8 (> 4): refused as for any command. A fall to 2 is too fast."""
    infusing.advance(60)
    _killed_after_the_pump_applied(infusing, "10", "37.5")
    infusing.restart()
    assert infusing.change(13).verdict.reason is Reason.STEP_RISE
    assert infusing.change(2).verdict.reason is Reason.WEAN_TOO_FAST
    assert infusing.change(12).verdict.accepted


def test_a_rate_nobody_asked_for_is_still_the_pumps_own(infusing: Bench) -> None:
    """The counterpart: the pump shows a rate no journaled command asked for."""
    infusing.advance(60)
    infusing.core.close()
    infusing.driver.label("keypad", lambda: infusing.pump.set_rate(40.0))
    infusing.restart()
    alarm = infusing.core.state.alarms.get("resume_changed")
    assert alarm is not None
    assert infusing.core.state.expected_cause == "pump"
