"""The relay's own moves (S15), judged on states built by hand: when a handover begins,
what each step commands, when an overlap goes on, what a failure leaves running, and
when the relay must look again.

``tests/channels/test_relay.py`` runs handovers end to end on simulated pumps; these
pin the pure functions one rule at a time, with every move compared whole (its events,
its commands in order, its step and its words), because the host journals and executes
exactly what the kernel says: a wrong step number is a wrong journal, a command out of
order a gap in the patient's drug.

The bench: channel A runs norepinephrine 4 mg/250 mL (16 mcg/mL) at 30 mL/h (8 mcg/min)
with 2.5 mL left (it empties at t=1300); channel B holds the same solution, primed,
armed as A's standby. Pumps run any rate from 0.01 to 200 mL/h in steps of 0.01.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.alarms import AlarmBook, Priority
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.history import RateHistory
from safety.kernel.model import (
    CommandIssued,
    HandoverEnded,
    HandoverStarted,
    Now,
    ProgramLoaded,
    PumpReading,
    Resumed,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
)
from safety.kernel.observe import observe, pump_replaced
from safety.kernel.reducer import apply
from safety.kernel.relay import RELIEVED_ON, RelayMove, relay_deadline, relay_move
from safety.kernel.state import (
    ActiveProgram,
    ChannelState,
    ContainerPause,
    ContainerState,
    DrugRecord,
    Handover,
    KernelState,
    Pending,
    Standby,
    load_program,
)
from safety.library import DrugLibrary
from safety.library.models import Figure
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
#: A empties at t=1300: 2.5 mL left at 30 mL/h, read at t=1000
EMPTY_AT = 1300.0
QUICK_LEAD = CONFIG.handover_before_empty_s  # 300 s
OVERLAP_LEAD = QUICK_LEAD + CONFIG.overlap_steps * CONFIG.overlap_step_s  # 540 s


def _caps(low: str = "0.01", high: str = "200") -> PumpCapabilities:
    return PumpCapabilities(Decimal(low), Decimal(high), lambda rate: math.floor(rate * 100) / 100)


PUMPS = {"A": _caps(), "B": _caps(), "C": _caps()}


def _at(t: float) -> Now:
    return Now(t, t - 500.0)


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def _running(program: ActiveProgram, rate: str, **fields: object) -> ChannelState:
    """A channel verified running at ``rate`` mL/h, as commanded."""
    base = ChannelState(
        program=program,
        running=True,
        set_rate=Decimal(rate),
        expected_running=True,
        expected_rate=Decimal(rate),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def _bench(std: ActiveProgram, strategy: str = "quick", /, **a_fields: object) -> KernelState:
    """A running at 30 mL/h since t=0 with 2.5 mL left at t=1000; B its armed standby."""
    a = _running(
        std,
        "30",
        container=ContainerState(
            "bd-50",
            volume_ml=50.0,
            capacity_ml=50.0,
            used_ml=47.5,
            counter_ml=47.5,
            read_at=1000.0,
            primed=True,
        ),
    )
    a = replace(a, **a_fields)  # type: ignore[arg-type]
    b = ChannelState(
        program=std,
        container=ContainerState(
            "bd-50",
            volume_ml=50.0,
            capacity_ml=50.0,
            counter_ml=0.0,
            read_at=1000.0,
            primed=True,
        ),
        standby=Standby("A", strategy, 0.0),  # type: ignore[arg-type]
    )
    history = RateHistory().with_rate(0.0, Fraction(30) * std.amount_per_ml)
    return KernelState(
        channels={"A": a, "B": b},
        drugs={std.drug: DrugRecord(history, std.limits, ())},
        session="s",
        attached=True,
    )


def _handing(
    state: KernelState, *, step: int, step_at: float | None, b_rate: str, a_rate: str
) -> KernelState:
    """An overlap from A to B under way: ``step`` of 4 done at ``step_at``, B verified
    at ``b_rate`` (counter 0 at the step) and A at ``a_rate`` ("0": stopped)."""
    handover = Handover(
        "A", "B", "overlap", 760.0, 4, Decimal(30), step, step_at, 0.0 if step_at else None
    )
    b = state.channel("B")
    b = replace(
        _running(b.program, b_rate, container=b.container),  # type: ignore[arg-type]
        standby=None,
    )
    a = state.channel("A")
    if a_rate == "0":
        a = replace(a, running=False, expected_running=False, set_rate=Decimal(0))
    else:
        a = replace(a, set_rate=Decimal(a_rate), expected_rate=Decimal(a_rate))
    return replace(state, handover=handover, channels={**state.channels, "A": a, "B": b})


def _read(state: KernelState, channel: str, counter: float, at: float) -> KernelState:
    c = state.channel(channel)
    return state.with_channel(
        channel, container=replace(c.container, counter_ml=counter, read_at=at)
    )


# --------------------------------------------------------------------------- beginning


def test_a_quick_handover_begins_exactly_its_lead_before_the_container_empties(
    std: ActiveProgram,
) -> None:
    """The safety process starts B at A's rate and stops A in one move, B's commands
    first (the patient's drug never pauses), once A would empty within the lead; not a
    step before."""
    state = _bench(std)
    start = EMPTY_AT - QUICK_LEAD
    assert relay_move(state, _at(start - 0.01), CONFIG, PUMPS) is None
    now = _at(start)
    why = "channel A's container empties in about 5 min"
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverStarted("A", "B", "quick", 1, Decimal(30), why, now),),
        (SetRate(Decimal("30.0"), "B"), StartPump("B"), StopPump("A")),
        1,
        True,
        "relay A -> B, step 1/1: B at 30 mL/h, A stopped (total 8 mcg/min)",
    )


def test_an_overlap_begins_earlier_by_its_steps_and_moves_a_quarter_first(
    std: ActiveProgram,
) -> None:
    """An overlap needs its steps' time before the lead: it begins 300 s + 4 x 60 s
    before A empties, B at a quarter of the rate, A at the rest (the total unchanged)."""
    state = _bench(std, "overlap")
    start = EMPTY_AT - OVERLAP_LEAD
    assert relay_move(state, _at(start - 0.01), CONFIG, PUMPS) is None
    now = _at(start)
    why = "channel A's container empties in about 9 min"
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverStarted("A", "B", "overlap", 4, Decimal(30), why, now),),
        (SetRate(Decimal("7.5"), "B"), StartPump("B"), SetRate(Decimal("22.5"), "A")),
        1,
        False,
        "relay A -> B, step 1/4: B at 7.5 mL/h, A at 22.5 mL/h (total 8 mcg/min)",
    )


@pytest.mark.parametrize(("left_s", "minutes"), [(272.0, 5), (269.0, 4), (-120.0, 0)])
def test_a_handovers_reason_says_the_minutes_left_to_the_nearest(
    std: ActiveProgram, left_s: float, minutes: int
) -> None:
    """4.53 min is "about 5", 4.48 "about 4"; a container past its empty time (the
    estimate was late) "about 0", never a negative time."""
    move = relay_move(_bench(std), _at(EMPTY_AT - left_s), CONFIG, PUMPS)
    assert move is not None
    started = move.events[0]
    assert isinstance(started, HandoverStarted)
    assert started.why == f"channel A's container empties in about {minutes} min"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"estopped": True}, id="emergency stop"),
        pytest.param({"A": {"pending": Pending(StopPump("A"), Decimal(30), True, 1.0)}}, id="A"),
        pytest.param({"B": {"pending": Pending(StopPump("B"), Decimal(0), False, 1.0)}}, id="B"),
        pytest.param({"A": {"program": None}}, id="A without a program"),
        pytest.param({"A": {"running": False}}, id="A not running"),
        pytest.param({"A": {"container": ContainerState()}}, id="A's volume unknown"),
    ],
)
def test_no_handover_begins_under_an_emergency_stop_an_uncertain_command_or_an_unknown(
    std: ActiveProgram, change: dict[str, object]
) -> None:
    """S12: nothing starts under an emergency stop. S10: no move while either pump's
    last command is uncertain (its read-back decides first). And a channel with no
    drug, not verified running, or whose container's volume is unknown has no time to
    empty to hand over at."""
    state = _bench(std)
    for name, fields in change.items():
        if name == "estopped":
            state = replace(state, estopped=True)
        else:
            state = state.with_channel(name, **fields)  # type: ignore[arg-type]
    assert relay_move(state, _at(EMPTY_AT), CONFIG, PUMPS) is None


@pytest.mark.parametrize("key", list(RELIEVED_ON))
def test_a_pump_stopped_by_its_own_alarm_is_relieved_at_once_and_quickly(
    std: ActiveProgram, key: str
) -> None:
    """An empty syringe, a stall or an occlusion stops A's flow on its own: the armed
    standby takes the whole rate at once, whatever its strategy (nothing runs to overlap
    with), and A is not commanded (it is stopped; the safety process does not restart
    it)."""
    stopped = _bench(
        std,
        "overlap",
        running=False,
        expected_running=False,
        # at the instant the standby was armed (t=0) counts: since, not only after
        stopped_itself_at=0.0 if key == "empty" else 900.0,
    )
    if key == "occlusion":  # any rate it ran is handed over, below 1 mL/h too
        stopped = stopped.with_channel("A", set_rate=Decimal("0.5"))
    alarms = AlarmBook().raised(f"pump:{key}", Reason.PUMP_ALARM, Priority.HIGH, "x", 900.0, "A")
    state = replace(stopped, alarms=alarms)
    now = _at(900.0)
    why = f"channel A's pump stopped {RELIEVED_ON[key]}"
    rate = state.channel("A").set_rate
    ml_h, dose = ("0.5", "0.133333") if key == "occlusion" else ("30", "8")
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverStarted("A", "B", "quick", 1, rate, why, now),),
        (SetRate(rate, "B"), StartPump("B")),
        1,
        True,
        f"relay A -> B, step 1/1: B at {ml_h} mL/h, A stopped (total {dose} mcg/min)",
    )


@pytest.mark.parametrize(
    "case",
    [
        "alarm over",
        "alarm on B",
        "another alarm",
        "told to run",
        "set to 0",
        "not stopped by itself",
        "stopped before the standby was armed",
    ],
)
def test_a_stopped_pump_is_relieved_only_on_its_own_active_stopping_alarm(
    std: ActiveProgram, case: str
) -> None:
    """Only a present alarm of A's own that stops flow calls the standby in, and only
    when A's pump stopped by itself while told to run, since the standby was armed (at
    the instant it was armed too); a pump the safety process told to run (its read-back
    pending) or that ran nothing has nothing to hand over."""
    a_fields: dict[str, object] = {
        "running": False,
        "expected_running": False,
        "stopped_itself_at": 900.0,
    }
    key, scope = "pump:stall", "A"
    if case == "not stopped by itself":  # stopped by a command, a prime's end...
        a_fields["stopped_itself_at"] = None
    if case == "stopped before the standby was armed":  # armed at t=0
        a_fields["stopped_itself_at"] = -0.01
    if case == "another alarm":
        key = "pump:low_battery"
    if case == "alarm on B":
        scope = "B"
    if case == "told to run":
        a_fields["expected_running"] = True
    if case == "set to 0":
        a_fields["set_rate"] = Decimal(0)
    state = _bench(std, **a_fields)
    alarms = AlarmBook().raised(key, Reason.PUMP_ALARM, Priority.HIGH, "x", 900.0, scope)
    if case == "alarm over":
        alarms = alarms.condition_gone(key, scope)
    state = replace(state, alarms=alarms)
    assert relay_move(state, _at(900.0), CONFIG, PUMPS) is None


def test_the_first_armed_standby_whose_channel_is_due_hands_over(std: ActiveProgram) -> None:
    """Two standbys, C for a channel not due and B for A: B moves, named as such."""
    state = _bench(std)
    c = replace(state.channel("B"), standby=Standby("D", "quick", 0.0))
    d = _running(std, "30", container=ContainerState(volume_ml=50.0, read_at=1000.0))
    state = replace(state, channels={"C": c, "D": d, **state.channels})
    move = relay_move(state, _at(EMPTY_AT - QUICK_LEAD), CONFIG, PUMPS)
    assert move is not None
    assert move.actions == (SetRate(Decimal("30.0"), "B"), StartPump("B"), StopPump("A"))


# --------------------------------------------------------------------------- a step


def test_a_share_one_pump_cannot_run_is_skipped_to_the_next_step(std: ActiveProgram) -> None:
    """B's pump runs 10 mL/h at least: its quarter (7.5) is impossible, so the first
    move is the second step (15 + 15); A's pump likewise: the third step's 7.5 for A is
    skipped to the last. Exactly at the minimum the share runs."""
    state = _bench(std, "overlap")
    now = _at(EMPTY_AT - OVERLAP_LEAD)
    pumps = {**PUMPS, "B": _caps(low="10")}
    move = relay_move(state, now, CONFIG, pumps)
    assert move is not None
    assert (move.step, move.last) == (2, False)
    assert move.actions == (
        SetRate(Decimal("15.0"), "B"),
        StartPump("B"),
        SetRate(Decimal("15.0"), "A"),
    )
    assert move.message == "relay A -> B, step 2/4: B at 15 mL/h, A at 15 mL/h (total 8 mcg/min)"
    at_minimum = relay_move(state, now, CONFIG, {**PUMPS, "B": _caps(low="7.5")})
    assert at_minimum is not None and at_minimum.step == 1
    handing = _handing(state, step=2, step_at=800.0, b_rate="15", a_rate="15")
    handing = _read(handing, "B", 0.25, 860.0)
    move = relay_move(handing, _at(860.0), CONFIG, {**PUMPS, "A": _caps(low="7.51")})
    assert move is not None
    assert (move.step, move.last, move.actions) == (
        4,
        True,
        (SetRate(Decimal("30.0"), "B"), StopPump("A")),
    )
    at_minimum = relay_move(handing, _at(860.0), CONFIG, {**PUMPS, "A": _caps(low="7.5")})
    assert at_minimum is not None
    assert at_minimum.actions == (SetRate(Decimal("22.5"), "B"), SetRate(Decimal("7.5"), "A"))


def test_the_last_step_stops_the_outgoing_pump_whatever_the_standbys_rounding_leaves(
    std: ActiveProgram,
) -> None:
    """B's pump runs steps of 0.1 mL/h: the 22.55 mL/h handed over becomes 22.5 on B,
    and A is stopped, not left at the 0.05 the rounding leaves (a pump cannot run it,
    and the handover's end is a stop); the total said is what B runs."""
    state = _bench(std, set_rate=Decimal("22.55"), expected_rate=Decimal("22.55"))
    pumps = {
        **PUMPS,
        "B": PumpCapabilities(Decimal("0.1"), Decimal(200), lambda r: math.floor(r * 10) / 10),
    }
    empty_at = 1000.0 + 2.5 / 22.55 * 3600.0
    move = relay_move(state, _at(empty_at - QUICK_LEAD), CONFIG, pumps)
    assert move is not None
    assert move.actions == (SetRate(Decimal("22.5"), "B"), StartPump("B"), StopPump("A"))
    assert move.message == "relay A -> B, step 1/1: B at 22.5 mL/h, A stopped (total 6 mcg/min)"


def test_a_standby_with_its_interlock_off_gets_it_on_first(std: ActiveProgram) -> None:
    """A channel's pump cannot run with its enable relay off: the move turns it on
    before the rate and the start, never after."""
    state = _bench(std).with_channel("B", interlock_enabled=False)
    move = relay_move(state, _at(EMPTY_AT - QUICK_LEAD), CONFIG, PUMPS)
    assert move is not None
    assert move.actions == (
        SetInterlock(True, "B"),
        SetRate(Decimal("30.0"), "B"),
        StartPump("B"),
        StopPump("A"),
    )


def test_the_total_in_a_steps_words_counts_the_drugs_other_channels_once(
    std: ActiveProgram,
) -> None:
    """A third channel C of the same drug at 15 mL/h (4 mcg/min) is part of the
    patient's total; B's own flow, already running mid-overlap, is not counted twice."""
    state = _bench(std, "overlap")
    state = replace(state, channels={**state.channels, "C": _running(std, "15")})
    first = relay_move(state, _at(EMPTY_AT - OVERLAP_LEAD), CONFIG, PUMPS)
    assert first is not None
    assert first.message.endswith("(total 12 mcg/min)")
    handing = _read(
        _handing(state, step=1, step_at=760.0, b_rate="7.5", a_rate="22.5"), "B", 0.125, 820.0
    )
    second = relay_move(handing, _at(820.0), CONFIG, PUMPS)
    assert second == RelayMove(
        (),
        (SetRate(Decimal("15.0"), "B"), SetRate(Decimal("15.0"), "A")),
        2,
        False,
        "relay A -> B, step 2/4: B at 15 mL/h, A at 15 mL/h (total 12 mcg/min)",
    )


# --------------------------------------------------------------------------- failures


def test_a_step_whose_standby_lost_its_program_ends_the_handover_failed(
    std: ActiveProgram,
) -> None:
    """Nothing is commanded: A keeps running as it was, and the end is journaled with
    the start (one move)."""
    state = _bench(std).with_channel("B", program=None)
    now = _at(EMPTY_AT - QUICK_LEAD)
    move = relay_move(state, now, CONFIG, PUMPS)
    assert move is not None
    started = move.events[0]
    why = "a channel lost its program"
    assert move == RelayMove((started, HandoverEnded("failed", why, now)), (), 1, True, why)


def test_a_step_whose_standby_now_holds_another_strength_ends_the_handover_failed(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """A strength changed since the standby was armed (a new program) is refused at the
    step: a concentration change at a changeover is the main risk of instability."""
    double = load_program(library, norepi_standard(library, concentration="8 mg/250 mL"), 0.0)
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    state = _read(handing, "B", 0.125, 820.0).with_channel("B", program=double)
    now = _at(820.0)
    why = "channel B now holds concentration 8 mg/250 mL, not 4 mg/250 mL"
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverEnded("failed", why, now),), (), 2, True, why
    )


@pytest.mark.parametrize(
    ("strategy", "pumps", "why"),
    [
        pytest.param(
            "quick",
            {**PUMPS, "B": _caps(high="20")},
            "refused: channel B's share needs 30 mL/h, above the pump's 20 mL/h with this syringe",
            id="B",
        ),
        pytest.param(
            "overlap",
            {**PUMPS, "A": _caps(high="20")},
            "refused: channel A's share needs 22.5 mL/h, above the pump's 20 mL/h with this "
            "syringe",
            id="A",
        ),
    ],
)
def test_a_share_above_a_pumps_range_ends_the_handover_failed(
    std: ActiveProgram, strategy: str, pumps: dict[str, PumpCapabilities], why: str
) -> None:
    """S7 on each pump's share: B's whole rate at a quick handover, A's rest at an
    overlap's first step."""
    state = _bench(std, strategy)
    lead = QUICK_LEAD if strategy == "quick" else OVERLAP_LEAD
    now = _at(EMPTY_AT - lead)
    move = relay_move(state, now, CONFIG, pumps)
    assert move is not None
    assert move.events[1:] == (HandoverEnded("failed", why, now),)
    assert (move.actions, move.step, move.last, move.message) == ((), 1, True, why)


def test_an_outgoing_pump_whose_range_excludes_everything_is_not_judged_at_the_last_step(
    std: ActiveProgram,
) -> None:
    """At the last step A is stopped, not set: its range is not in question."""
    state = _bench(std)
    move = relay_move(state, _at(EMPTY_AT - QUICK_LEAD), CONFIG, {**PUMPS, "A": _caps(low="100")})
    assert move is not None and move.actions[-1] == StopPump("A")


def test_a_step_above_the_hard_max_ends_the_handover_failed(std: ActiveProgram) -> None:
    """Every step is judged on the patient's total (S1): limits tightened since A
    started (here B's program holds a hard max of 5 mcg/min) refuse the rate."""
    therapy = std.limits.therapy
    hard_max = Figure(value=Decimal(5), source=therapy.hard_max.source)
    limits = replace(std.limits, therapy=therapy.model_copy(update={"hard_max": hard_max}))
    tight = replace(std, limits=limits)
    state = _bench(std).with_channel("B", program=tight)
    now = _at(EMPTY_AT - QUICK_LEAD)
    why = "refused: 8 mcg/min is above the hard maximum of 5 mcg/min (the total handed over)"
    move = relay_move(state, now, CONFIG, PUMPS)
    assert move is not None
    assert move.events[1:] == (HandoverEnded("failed", why, now),)
    assert (move.actions, move.step, move.last, move.message) == ((), 1, True, why)


# --------------------------------------------------------------------------- under way


def test_a_handover_waits_for_both_pumps_read_backs(std: ActiveProgram) -> None:
    """S10 mid-way: an uncertain command on either channel holds every move."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    handing = _read(handing, "B", 1.0, 900.0)
    for name in "AB":
        pending = Pending(SetRate(Decimal(1), name), Decimal(1), True, 800.0)
        assert (
            relay_move(handing.with_channel(name, pending=pending), _at(900.0), CONFIG, PUMPS)
            is None
        )
    assert relay_move(handing, _at(900.0), CONFIG, PUMPS) is not None


def test_a_handover_whose_steps_are_done_ends_done(std: ActiveProgram) -> None:
    handing = _handing(_bench(std, "overlap"), step=4, step_at=940.0, b_rate="30", a_rate="0")
    now = _at(941.0)
    assert relay_move(handing, now, CONFIG, PUMPS) == RelayMove(
        (HandoverEnded("done", "handed over", now),), (), 4, True, ""
    )


def test_an_overlap_step_goes_on_after_its_time_and_once_the_standby_shows_its_flow(
    std: ActiveProgram,
) -> None:
    """Step 2 is due 60 s after step 1 (not a moment before) and only once B's own
    counter shows 90 % of what 7.5 mL/h gives in the time (0.1125 mL in 60 s)."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    shown = _read(handing, "B", 0.1125, 820.0)
    assert relay_move(shown, _at(819.99), CONFIG, PUMPS) is None
    move = relay_move(shown, _at(820.0), CONFIG, PUMPS)
    assert move == RelayMove(
        (),
        (SetRate(Decimal("15.0"), "B"), SetRate(Decimal("15.0"), "A")),
        2,
        False,
        "relay A -> B, step 2/4: B at 15 mL/h, A at 15 mL/h (total 8 mcg/min)",
    )
    short = _read(handing, "B", 0.112499, 820.0)
    assert relay_move(short, _at(900.0), CONFIG, PUMPS) is None
    # an early reading counts for its own time: 0.001 mL in 0.5 s is 96 % of 7.5 mL/h
    early = _read(handing, "B", 0.001, 760.5)
    assert relay_move(early, _at(820.0), CONFIG, PUMPS) == move


@pytest.mark.parametrize(
    ("b_fields", "counter", "read_at"),
    [
        pytest.param({}, 5.0, 760.0, id="read at the step itself"),
        pytest.param({}, None, 820.0, id="no counter"),
        pytest.param({}, 5.0, None, id="never read"),
        pytest.param({"running": False}, 5.0, 820.0, id="B not verified running"),
    ],
)
def test_an_overlap_step_needs_a_reading_since_the_step_that_shows_flow(
    std: ActiveProgram, b_fields: dict[str, object], counter: float | None, read_at: float | None
) -> None:
    """No counter, no reading since the step (no time has passed), or a pump not seen
    running: the standby has shown nothing, and A keeps its share."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    b = handing.channel("B")
    state = handing.with_channel(
        "B", container=replace(b.container, counter_ml=counter, read_at=read_at), **b_fields
    )
    assert relay_move(state, _at(900.0), CONFIG, PUMPS) is None


def test_a_handover_without_the_counter_at_its_step_waits(std: ActiveProgram) -> None:
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    handover = handing.handover
    assert handover is not None
    state = replace(
        _read(handing, "B", 5.0, 820.0), handover=replace(handover, counter_at_step=None)
    )
    assert relay_move(state, _at(900.0), CONFIG, PUMPS) is None


def test_the_flow_shown_is_counted_from_the_counter_at_the_step(std: ActiveProgram) -> None:
    """B's counter read 2.0 at the step: 2.11 60 s later shows 0.11 mL, short of
    0.1125; 2.2 shows enough."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    handover = handing.handover
    assert handover is not None
    state = replace(handing, handover=replace(handover, counter_at_step=2.0))
    assert relay_move(_read(state, "B", 2.11, 820.0), _at(820.0), CONFIG, PUMPS) is None
    assert relay_move(_read(state, "B", 2.2, 820.0), _at(820.0), CONFIG, PUMPS) is not None


def test_an_outgoing_pump_that_stopped_makes_the_next_move_the_last(std: ActiveProgram) -> None:
    """A stopped by itself mid-overlap (empty early): B takes the whole rate at once,
    without waiting for the step's time or B's counter; A is not commanded."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="0")
    move = relay_move(handing, _at(770.0), CONFIG, PUMPS)
    assert move == RelayMove(
        (),
        (SetRate(Decimal("30.0"), "B"),),
        4,
        True,
        "relay A -> B, step 4/4: B at 30 mL/h, A stopped (total 8 mcg/min)",
    )
    told = handing.with_channel("A", expected_running=True)  # its start's read-back due
    assert relay_move(told, _at(770.0), CONFIG, PUMPS) is None


def test_a_handover_resumed_after_a_restart_begins_again_at_its_first_step(
    std: ActiveProgram,
) -> None:
    """A restart mid-way leaves the handover without its step's time: the first step
    again, from the rate handed over, without waiting."""
    handing = _handing(_bench(std, "overlap"), step=0, step_at=None, b_rate="7.5", a_rate="22.5")
    assert relay_move(handing, _at(770.0), CONFIG, PUMPS) == RelayMove(
        (),
        (SetRate(Decimal("7.5"), "B"), SetRate(Decimal("22.5"), "A")),
        1,
        False,
        "relay A -> B, step 1/4: B at 7.5 mL/h, A at 22.5 mL/h (total 8 mcg/min)",
    )


# --------------------------------------------------------------------------- falling back


def test_a_standby_that_stopped_by_itself_gives_the_whole_rate_back(std: ActiveProgram) -> None:
    """B stopped mid-overlap (not told to): A takes back the rate it handed over (no
    titration: it ran before) and the handover ends failed, in one move."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    state = handing.with_channel("B", running=False, expected_running=False)
    now = _at(800.0)
    why = "channel B stopped by itself"
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverEnded("failed", f"{why}; channel A runs the whole rate again", now),),
        (SetRate(Decimal("30.0"), "A"),),
        1,
        True,
        why,
    )
    told = handing.with_channel("B", running=False)  # its start's read-back is due
    assert relay_move(told, now, CONFIG, PUMPS) is None


@pytest.mark.parametrize("lost", ["program", "running"])
def test_a_fall_back_to_a_channel_that_cannot_take_it_commands_nothing(
    std: ActiveProgram, lost: str
) -> None:
    """Both stopped, or A without its drug: nothing to give back to; the end says so."""
    handing = _handing(_bench(std, "overlap"), step=2, step_at=820.0, b_rate="15", a_rate="15")
    state = handing.with_channel("B", running=False, expected_running=False)
    if lost == "program":
        state = state.with_channel("A", program=None)
    else:
        state = state.with_channel("A", running=False)
    now = _at(830.0)
    why = "channel B stopped by itself"
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverEnded("failed", f"{why}; channel A runs the whole rate again", now),),
        (),
        2,
        True,
        why,
    )


def test_a_fall_back_the_outgoing_pump_cannot_run_commands_nothing_and_says_why(
    std: ActiveProgram,
) -> None:
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    state = handing.with_channel("B", running=False, expected_running=False)
    now = _at(800.0)
    why = "channel B stopped by itself"
    refusal = "refused: channel A's rate needs 30 mL/h, above the pump's 25 mL/h with this syringe"
    assert relay_move(state, now, CONFIG, {**PUMPS, "A": _caps(high="25")}) == RelayMove(
        (HandoverEnded("failed", f"{why}; {refusal}", now),), (), 0, True, why
    )


def test_a_fall_back_is_judged_on_the_patients_total(std: ActiveProgram) -> None:
    """Giving A the whole rate back while a third channel C of the drug runs 150 mL/h
    (40 mcg/min) would make 48 mcg/min, above the hard max of 47: refused (S1)."""
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    state = handing.with_channel("B", running=False, expected_running=False)
    state = replace(state, channels={**state.channels, "C": _running(std, "150")})
    now = _at(800.0)
    why = "channel B stopped by itself"
    refusal = "refused: 48 mcg/min is above the hard maximum of 47 mcg/min"
    assert relay_move(state, now, CONFIG, PUMPS) == RelayMove(
        (HandoverEnded("failed", f"{why}; {refusal}", now),), (), 0, True, why
    )
    # C at 30 mL/h: 16 mcg/min in all, above the max start (12) and within the hard max:
    # giving back what ran is neither a start nor a titration
    within = state.with_channel("C", set_rate=Decimal(30), expected_rate=Decimal(30))
    fine = relay_move(within, now, CONFIG, PUMPS)
    assert fine is not None and fine.actions == (SetRate(Decimal("30.0"), "A"),)


# --------------------------------------------------------------------------- deadlines


def test_no_relay_deadline_on_a_bench_with_nothing_to_watch(std: ActiveProgram) -> None:
    state = _bench(std).with_channel("B", standby=None)
    assert relay_deadline(state, CONFIG) is None
    assert relay_deadline(_bench(std).with_channel("A", running=False), CONFIG) is None


@pytest.mark.parametrize(("strategy", "lead"), [("quick", QUICK_LEAD), ("overlap", OVERLAP_LEAD)])
def test_an_armed_standby_is_due_its_lead_before_its_channel_empties(
    std: ActiveProgram, strategy: str, lead: float
) -> None:
    assert relay_deadline(_bench(std, strategy), CONFIG) == EMPTY_AT - lead


def test_a_handover_under_way_is_due_at_its_start_its_next_step_or_its_stall(
    std: ActiveProgram,
) -> None:
    """A handover resumed without a step is due at once (its start); a step is due 60 s
    after the last one, or at the stall's alarm when that comes first; a handover whose
    steps are done has nothing more (and the standby it used is not watched meanwhile)."""
    state = _bench(std, "overlap")
    resumed = _handing(state, step=0, step_at=None, b_rate="7.5", a_rate="22.5")
    assert relay_deadline(resumed, CONFIG) == 760.0
    stepped = _handing(state, step=1, step_at=800.0, b_rate="7.5", a_rate="22.5")
    assert relay_deadline(stepped, CONFIG) == 860.0
    quick_stall = replace(CONFIG, overlap_stall_s=30.0)
    assert relay_deadline(stepped, quick_stall) == 830.0
    done = _handing(state, step=4, step_at=940.0, b_rate="30", a_rate="0")
    armed = done.with_channel("A", standby=Standby("B", "quick", 0.0))
    b = armed.channel("B")
    armed = armed.with_channel("B", container=replace(b.container, volume_ml=1.0, used_ml=0.0))
    assert relay_deadline(armed, CONFIG) is None


def test_a_container_pause_is_due_at_its_end_the_earliest_deadline_wins(
    std: ActiveProgram,
) -> None:
    state = _bench(std)
    paused = ContainerPause(since=800.0, rate_ml_h=Decimal(10), max_s=180.0)
    c = ChannelState(program=std, pause=paused)
    with_pause = replace(state, channels={**state.channels, "C": c})
    assert relay_deadline(with_pause, CONFIG) == 980.0  # before the standby's 1000
    later = replace(paused, since=900.0)
    assert relay_deadline(with_pause.with_channel("C", pause=later), CONFIG) == 1000.0


# --------------------------------------------------------------------------- own stop


def test_the_pumps_own_stop_is_marked_by_its_read_back_and_ends_with_anything_else(
    std: ActiveProgram,
) -> None:
    """``stopped_itself_at`` is what calls a standby in (above): set by the read-back
    that finds a pump stopped which was told to run, and cleared by a reading that shows
    it running, by any command to the channel, by a program, and by a replaced pump."""
    state = _bench(std)
    stopped, _ = observe(
        state, PumpReading(False, Decimal(30), 47.6, ("occlusion",)), _at(1010.0), CONFIG, "A"
    )
    assert stopped.channel("A").stopped_itself_at == 1010.0
    assert not stopped.channel("A").expected_running
    again, _ = observe(stopped, PumpReading(True, Decimal(30), 47.7), _at(1020.0), CONFIG, "A")
    assert again.channel("A").stopped_itself_at is None
    told = apply(CONFIG, stopped, CommandIssued(StartPump("A"), "command", _at(1015.0)))
    assert told.channel("A").stopped_itself_at is None
    assert (
        apply(CONFIG, stopped, CommandIssued(StartPump("B"), "command", _at(1015.0)))
        .channel("A")
        .stopped_itself_at
        == 1010.0
    )  # a command to another channel changes nothing of A
    program = stopped.channel("A").program
    assert isinstance(program, ActiveProgram)
    loaded = apply(
        CONFIG, stopped, ProgramLoaded(program.spec, program.limits, 0.0, _at(1015.0), "A")
    )
    assert loaded.channel("A").stopped_itself_at is None
    replaced = pump_replaced(stopped, "A", _at(1015.0), CONFIG)
    assert replaced.channel("A").stopped_itself_at is None
    # a stop the safety process caused is not the pump's own
    commanded = state.with_channel("A", expected_running=False)
    quiet, _ = observe(
        commanded, PumpReading(False, Decimal(30), 47.6, ("occlusion",)), _at(1010.0), CONFIG, "A"
    )
    assert quiet.channel("A").stopped_itself_at is None


# --------------------------------------------------------------------------- more corners


def test_near_the_cap_a_step_is_no_rise_but_a_fall_back_is(std: ActiveProgram) -> None:
    """S3 judges a start or a rise. A handover step keeps the total (no rise): near the
    cap it goes on (the cap's own guard stops the drug when its time comes). Giving the
    whole rate back to A after B stopped is a rise from A's share: the cap refuses it if
    the cap would be reached within the hour at that total."""
    history = RateHistory().with_rate(1000.0 - 86400.0, Fraction(2850))
    history = history.with_rate(0.0, Fraction(480))
    record = DrugRecord(history, std.limits, ())
    state = replace(_bench(std), drugs={std.drug: record})
    move = relay_move(state, _at(EMPTY_AT - QUICK_LEAD), CONFIG, PUMPS)
    assert move is not None
    assert move.actions == (SetRate(Decimal("30.0"), "B"), StartPump("B"), StopPump("A"))
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    stopped = replace(handing, drugs={std.drug: record}).with_channel(
        "B", running=False, expected_running=False
    )
    now = _at(800.0)
    why = "channel B stopped by itself"
    refusal = (
        "refused: at this rate the cap of 68 mg per 24 h would be reached within 60 min "
        "(67.7 mg given in the last 24 h)"
    )
    assert relay_move(stopped, now, CONFIG, PUMPS) == RelayMove(
        (HandoverEnded("failed", f"{why}; {refusal}", now),), (), 0, True, why
    )


def _renamed(state: KernelState, names: dict[str, str]) -> KernelState:
    """The same bench with its channels named otherwise (standbys and the handover too)."""
    channels = {}
    for name, channel in state.channels.items():
        standby = channel.standby
        if standby is not None:
            standby = replace(standby, for_channel=names[standby.for_channel])
        channels[names[name]] = replace(channel, standby=standby)
    handover = state.handover
    if handover is not None:
        handover = replace(
            handover,
            from_channel=names[handover.from_channel],
            to_channel=names[handover.to_channel],
        )
    return replace(state, channels=channels, handover=handover)


def test_every_command_names_its_channel_whatever_the_benchs_names(std: ActiveProgram) -> None:
    """A command without a channel goes to the bench's default one ("A"): on a bench whose
    channels are named otherwise, each of a move's commands must name its own."""
    names = {"A": "left", "B": "right"}
    pumps = {"left": _caps(), "right": _caps()}
    state = _renamed(_bench(std, "overlap"), names)
    first = relay_move(state, _at(EMPTY_AT - OVERLAP_LEAD), CONFIG, pumps)
    assert first is not None
    assert first.actions == (
        SetRate(Decimal("7.5"), "right"),
        StartPump("right"),
        SetRate(Decimal("22.5"), "left"),
    )
    handing = _handing(_bench(std, "overlap"), step=1, step_at=760.0, b_rate="7.5", a_rate="22.5")
    stopped = _renamed(handing.with_channel("B", running=False, expected_running=False), names)
    back = relay_move(stopped, _at(800.0), CONFIG, pumps)
    assert back is not None and back.actions == (SetRate(Decimal("30.0"), "left"),)


def test_an_outgoing_share_below_one_ml_h_is_still_held_to_its_pumps_range(
    std: ActiveProgram,
) -> None:
    """A 2 mL/h handover's third step leaves A 0.5 mL/h: above A's pump's 0.45 mL/h (its
    range changed since), refused like any share."""
    state = _bench(std, "overlap", set_rate=Decimal(2), expected_rate=Decimal(2))
    handing = _handing(state, step=2, step_at=800.0, b_rate="1", a_rate="1")
    handover = handing.handover
    assert handover is not None
    handing = replace(handing, handover=replace(handover, rate_ml_h=Decimal(2)))
    handing = _read(handing, "B", 0.1, 860.0)
    now = _at(860.0)
    move = relay_move(handing, now, CONFIG, {**PUMPS, "A": _caps(high="0.45")})
    why = "refused: channel A's share needs 0.5 mL/h, above the pump's 0.45 mL/h with this syringe"
    assert move == RelayMove((HandoverEnded("failed", why, now),), (), 3, True, why)


def test_a_standby_whose_channel_awaits_a_read_back_lets_the_next_one_move(
    std: ActiveProgram,
) -> None:
    """S10 holds one relay, not every one: C (armed for D, whose last command is
    uncertain) waits, and B, armed for A, hands over when A is due."""
    state = _bench(std)
    c = replace(state.channel("B"), standby=Standby("D", "quick", 0.0))
    pending = Pending(SetRate(Decimal(20), "D"), Decimal(30), True, 990.0)
    d = _running(std, "30", container=ContainerState(volume_ml=1.0, read_at=1000.0))
    d = replace(d, pending=pending)
    state = replace(state, channels={"C": c, "D": d, **state.channels})
    move = relay_move(state, _at(EMPTY_AT - QUICK_LEAD), CONFIG, {**PUMPS, "D": _caps()})
    assert move is not None
    assert move.actions == (SetRate(Decimal("30.0"), "B"), StartPump("B"), StopPump("A"))


@pytest.mark.parametrize(
    ("told_to_run", "before", "reading_runs", "after"),
    [
        pytest.param(True, None, False, 1000.0, id="told to run, found stopped: its own stop"),
        pytest.param(False, 500.0, False, 500.0, id="an own stop before the restart stands"),
        pytest.param(False, None, False, None, id="stopped as told: no own stop"),
        pytest.param(True, 500.0, True, None, id="found running: no own stop stands"),
        pytest.param(False, 500.0, True, None, id="found running though not told: none"),
    ],
)
def test_a_restart_marks_the_pumps_own_stop_from_its_first_reading(
    std: ActiveProgram,
    told_to_run: bool,
    before: float | None,
    reading_runs: bool,
    after: float | None,
) -> None:
    """The journal says what the pump was told; the restart's first reading what it does.
    Told to run and found stopped, it stopped by itself while the process was down (an
    armed standby relieves it); found running, no stop of its own stands."""
    state = _bench(std).with_channel(
        "A",
        expected_running=told_to_run,
        running=told_to_run,
        stopped_itself_at=before,
        unseen_pending=True,  # an earlier start could not read it
    )
    reading = PumpReading(reading_runs, Decimal(30), 47.6)
    resumed = apply(CONFIG, state, Resumed(reading, _at(1000.0), "restart", "A"))
    a = resumed.channel("A")
    assert a.stopped_itself_at == after
    # what the pump does is what it is expected to do from now (nothing restarts it, and
    # no second "stopped by itself" follows); the gap is counted at this reading
    assert (a.expected_running, a.unseen_pending) == (reading_runs, False)


def test_a_restart_adopts_a_rise_in_flight_on_one_channel_of_several(std: ActiveProgram) -> None:
    """The process died after it sent A's rise to 37.5 mL/h and before the reply: the
    restart's reading shows the pump at it. The rise is the journal's command, not the
    pump's own: A counts as running it since it was issued (its flow and the drug's
    history from t=900, more drug counted, never less), the command is read, and the
    alarm names the channel on a bench of several. Compared whole."""
    a = _bench(std).channel("A")
    state = _bench(std).with_channel(
        "A",
        expected_rate=Decimal("37.5"),
        expected_since=900.0,
        unread_command=True,
        connecting=True,
    )
    issued = state.channel("A")
    reading = PumpReading(True, Decimal("37.5"), 47.6)
    now = _at(1000.0)
    resumed = apply(CONFIG, state, Resumed(reading, now, "", "A"))
    assert resumed.channel("A") == replace(
        issued,
        running=True,
        set_rate=Decimal("37.5"),
        unread_command=False,
        connecting=False,
        flow=a.flow.with_rate(900.0, Decimal("37.5")),
        expected_cause="command",
    )
    history = resumed.history_of(std.drug)
    assert history.max_amount_rate(900.0, 1000.0) == Fraction(600)  # 37.5 x 16 from 900
    assert history.max_amount_rate(899.0, 899.5) == Fraction(480)
    alarm = resumed.alarms.get("safety_restarted")
    assert alarm is not None and alarm.message == (
        "the safety process restarted (resumed); holding 37.5 mL/h on channel A until a "
        "controller attaches"
    )
    assert resumed.hold and not resumed.attached and resumed.session is None


def test_a_restart_adopts_a_start_in_flight(std: ActiveProgram) -> None:
    """A stopped A was started at t=900 and the reply lost with the process: the restart
    reads it running at the rate told, so A runs it since then (not only from now)."""
    state = _bench(std).with_channel(
        "A",
        running=False,
        set_rate=Decimal(0),
        expected_since=900.0,
        unread_command=True,
    )
    resumed = apply(CONFIG, state, Resumed(PumpReading(True, Decimal(30), 47.6), _at(1000.0)))
    a = resumed.channel("A")
    assert (a.running, a.set_rate, a.unread_command) == (True, Decimal(30), False)
    assert a.flow == state.channel("A").flow.with_rate(900.0, Decimal(30))


def test_a_restart_adopts_a_stop_in_flight_and_a_start_below_the_rate_kept(
    std: ActiveProgram,
) -> None:
    """A stop sent just before the process died, found done: the journal's command, no
    "changed while down" alarm, nothing held. A start at 20 mL/h of a channel whose last
    rate was 30, found running at 20: adopted since it was issued (a start is a rise from
    nothing, whatever rate the channel ran before)."""
    stopping = _bench(std).with_channel("A", expected_running=False, expected_since=900.0)
    stopped = apply(CONFIG, stopping, Resumed(PumpReading(False, Decimal(30), 47.6), _at(1000.0)))
    assert stopped.alarms.get("resume_changed", "A") is None
    assert not stopped.channel("A").expected_running and not stopped.hold
    starting = _bench(std).with_channel(
        "A",
        running=False,
        expected_rate=Decimal(20),
        expected_since=900.0,
        unread_command=True,
    )
    reading = PumpReading(True, Decimal(20), 47.6)
    started = apply(CONFIG, starting, Resumed(reading, _at(1000.0)))
    a = started.channel("A")
    assert (a.running, a.set_rate) == (True, Decimal(20))
    assert a.flow == starting.channel("A").flow.with_rate(900.0, Decimal(20))
