"""A restart's edges (S11, S14, S16): a running pump is held until a controller attaches,
a stopped one is not; a pump that stayed as it was (stopped, or running below 1 mL/h) is
no change; an in-flight fall counts from the restart, not from when it was issued (more
drug counted, never less); and the alarms a restart raises are stamped at it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.alarms import Priority
from safety.kernel.config import KernelConfig
from safety.kernel.history import FlowLog, RateHistory
from safety.kernel.model import ProgramSpec
from safety.kernel.observe import UNSEEN_FLOOR_ML, UNSEEN_TOLERANCE, count_unseen_delivery
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    Mode,
    evolve,
    load_program,
    single_channel,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard
from tests.kernel.test_resume_in_flight import _killed_after_the_pump_applied

CONFIG = KernelConfig()


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
    assert segment is not None and segment.amount_per_h == Fraction(Decimal("22.5")) * 16
    assert segment.start > issued_at
    assert segment.start == infusing.patient_now()


# --------------------------------------------------------------------------- unseen


def _gap_state(
    program: ActiveProgram, *, last_ml: float | None, last_at: float | None
) -> KernelState:
    """9 mL/h of 16 mcg/mL verified since t=0: 100 s of it is 0.25 mL, 4 mcg."""
    history = RateHistory().with_rate(0.0, Fraction(9) * program.amount_per_ml)
    return single_channel(
        drugs={program.drug: DrugRecord(history, program.limits)},
        program=program,
        running=True,
        set_rate=Decimal(9),
        last_infused_ml=last_ml,
        last_reading_at=last_at,
        flow=FlowLog(((0.0, Decimal(9)),)),  # the channel's own verified rate
    )


def _unseen(state: KernelState) -> list[tuple[float, float, str]]:
    return [(b.at, b.amount, b.why) for b in state.history.boluses]


def test_the_counter_beyond_the_verified_rates_is_counted_as_given_unseen(
    library: DrugLibrary,
) -> None:
    """Over 100 s the rates explain 0.25 mL (4 mcg); the tolerance is 2 % of that plus
    0.01 mL (0.16 mcg): 0.24 mcg. More than that on the pump's counter was given unseen."""
    program = load_program(library, norepi_standard(library), 0.0)
    state = _gap_state(program, last_ml=1.0, last_at=100.0)
    counted = state.history.amount(100.0, 200.0)
    assert counted == pytest.approx(4.0)
    threshold = counted * UNSEEN_TOLERANCE + UNSEEN_FLOOR_ML * 16.0
    within = 1.0 + (counted + threshold * 0.9) / 16.0
    assert _unseen(count_unseen_delivery(state, within, (), 200.0)) == []
    # nothing verified in the gap, a counter from 0: exactly the 0.01 mL floor is not
    # counted (the figures are exact: x16 is exact in binary), a little more is
    empty = DrugRecord(RateHistory(), program.limits)
    bare = evolve(state, drugs={program.drug: empty}, last_infused_ml=0.0, flow=FlowLog())
    assert _unseen(count_unseen_delivery(bare, UNSEEN_FLOOR_ML, (), 200.0)) == []
    assert _unseen(count_unseen_delivery(bare, UNSEEN_FLOOR_ML * 1.001, (), 200.0)) != []
    beyond = 1.0 + (counted + 1.0) / 16.0
    after = count_unseen_delivery(state, beyond, (), 200.0)
    ((at, amount, why),) = _unseen(after)
    assert (at, why) == (200.0, "delivered while the safety process was down")
    assert amount == pytest.approx(1.0)
    # half a mL with nothing verified in between: all of it unseen
    idle = evolve(
        state, drugs={program.drug: DrugRecord(RateHistory(), program.limits)}, flow=FlowLog()
    )
    ((_, amount, _),) = _unseen(count_unseen_delivery(idle, 1.5, (), 200.0))
    assert amount == pytest.approx(8.0)


def test_a_counter_that_says_nothing_about_the_gap_counts_nothing(library: DrugLibrary) -> None:
    program = load_program(library, norepi_standard(library), 0.0)
    big = 50.0
    for state, alarms in (
        (_gap_state(program, last_ml=1.0, last_at=100.0), ("reset",)),  # counter cleared
        (_gap_state(program, last_ml=None, last_at=100.0), ()),  # never read before
        (_gap_state(program, last_ml=1.0, last_at=None), ()),
        (evolve(_gap_state(program, last_ml=1.0, last_at=100.0), program=None), ()),
        (_gap_state(program, last_ml=60.0, last_at=100.0), ()),  # counter went back
    ):
        assert _unseen(count_unseen_delivery(state, big, alarms, 200.0)) == []


# --------------------------------------------------------------------------- S4 rogue


def test_a_rate_above_the_hard_max_the_pump_ran_on_its_own_is_no_start_licence(
    infusing: Bench,
) -> None:
    """The pump found at 188 mL/h (50.1 mcg/min, above the hard max 47) is stopped (S1 on
    read-back); that rate must not let a start at 40 (above max start 12) through."""
    infusing.advance(60)
    infusing.pump.set_rate(188.0)
    infusing.core.poll()
    assert not infusing.pump.snapshot().running
    assert infusing.ack().verdict.accepted
    assert infusing.start(40, confirm=True).verdict.reason is Reason.START_TOO_HIGH


def test_a_pump_started_at_its_keypad_gives_no_start_licence(
    bench: Bench, std: ProgramSpec
) -> None:
    assert bench.load(std).verdict.accepted

    def keypad() -> None:
        bench.pump.set_rate(150.0)
        bench.pump.start()

    bench.driver.label("keypad", keypad)
    bench.core.poll()
    assert not bench.pump.snapshot().running  # stopped: nobody started it (S9)
    assert bench.ack().verdict.accepted
    assert bench.start(40, confirm=True).verdict.reason is Reason.START_TOO_HIGH
