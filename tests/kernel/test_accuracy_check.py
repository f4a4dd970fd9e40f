"""S13 accuracy: the pump's volume counter against the verified rate, at every edge.

The check (``observe._accuracy``) compares what the pump's own counter moved between two
readings with what the channel's verified rates (its ``FlowLog``) give over the same
span, and only over spans in which the pump ran throughout with no pump alarm. Figures
(``KernelConfig``): a deviation beyond 50 % alarms at once (high when over, medium when
under); beyond 10 % it alarms (medium) once it has lasted 15 min; a span shorter than
5 min is not judged yet (the next reading judges the longer span); a verified volume of
0.01 mL or less is nothing to judge. A span inside the tolerance ends a deviation and
clears the alarm; a span the pump did not run throughout (stopped, a pump alarm) or a
counter that went back (cleared) starts from a new base.

Each edge is met exactly and missed by one step: the counter's resolution (1 uL) for
the deviation, a second for spans and persistence. 10 % is no float a counter and a
volume divide into exactly (1.1 and 0.9 are not binary fractions), so the comparison at
the tolerance itself is pinned on a configured tolerance of 12.5 %, which is; 50 % is
met exactly at the default. Every state is built by hand and driven through
``observe``, the read-back the host makes: one rule at a time, its alarm asserted whole
(key, reason, priority, scope, instant, sentence with its figures).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.alarms import Alarm, Priority
from safety.kernel.config import KernelConfig
from safety.kernel.history import RateHistory
from safety.kernel.model import Now, PumpReading
from safety.kernel.observe import observe
from safety.kernel.state import ActiveProgram, DrugRecord, KernelState, load_program, single_channel
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
#: 1 mL a minute (16 mcg/min of norepinephrine at 16 mcg/mL): 5 mL in the shortest span
RATE = Decimal("60.0")
#: the base reading's instant: not 0, so that ``t - since`` and ``t + since`` differ
T0 = 1000.0
#: the shortest judged span, and the persistence, in clinical seconds
SPAN = 300.0
PERSIST = 900.0


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def running(program: ActiveProgram, rate: Decimal = RATE) -> KernelState:
    """Attached, ``program`` loaded and verified running at ``rate`` mL/h since t=0, not
    yet read by the accuracy check (no base)."""
    history = RateHistory().with_rate(0.0, Fraction(rate) * program.amount_per_ml)
    return single_channel(
        drugs={program.drug: DrugRecord(history, program.limits)},
        program=program,
        running=True,
        set_rate=rate,
        expected_running=True,
        expected_rate=rate,
        session="s",
        attached=True,
    )


def read(
    state: KernelState,
    t: float,
    infused_ml: float,
    *,
    rate: Decimal = RATE,
    is_running: bool = True,
    alarms: tuple[str, ...] = (),
    config: KernelConfig = CONFIG,
    channel: str = "A",
) -> KernelState:
    """A read-back at ``t`` of a pump doing what it was told (``rate``, running or not):
    only the counter and the pump's alarms can disagree."""
    state = state.with_channel(channel, expected_rate=rate, expected_running=is_running)
    reading = PumpReading(is_running, rate, infused_ml, alarms)
    after, _ = observe(state, reading, Now(t, t), config, channel)
    return after


def accuracy(state: KernelState, channel: str = "A") -> list[Alarm]:
    """The channel's accuracy alarms, active or not."""
    return [a for a in state.alarms.alarms if a.key.startswith("accuracy_") and a.scope == channel]


def active(state: KernelState, channel: str = "A") -> list[str]:
    return [a.key for a in accuracy(state, channel) if a.active]


def the_alarm(state: KernelState, key: str, channel: str = "A") -> Alarm:
    alarm = state.alarms.get(key, channel)
    assert alarm is not None, f"no {key} alarm on {channel}: {state.alarms}"
    return alarm


def based(program: ActiveProgram, infused_ml: float = 0.0, **options: object) -> KernelState:
    """The first reading at ``T0``: the base the next spans are judged from."""
    state = read(running(program), T0, infused_ml, **options)  # type: ignore[arg-type]
    assert accuracy(state) == []
    return state


def over_far(infused_ml: float, expected_ml: float, percent: str) -> str:
    return (
        f"over-infusion: the pump's counter shows {infused_ml:.3f} mL where the verified "
        f"rate gives {expected_ml:.3f} mL ({percent} %)"
    )


def under_far(infused_ml: float, expected_ml: float, percent: str) -> str:
    return over_far(infused_ml, expected_ml, percent).replace("over-infusion", "under-infusion")


# --------------------------------------------------------------------------- the base


def test_the_first_reading_is_a_base_whatever_its_counter_shows(std: ActiveProgram) -> None:
    """No earlier reading: nothing to compare the counter with; it becomes the base."""
    state = read(running(std), T0, 123.456)
    assert accuracy(state) == []
    c = state.channel("A")
    assert (c.last_reading_at, c.last_infused_ml, c.deviation_since) == (T0, 123.456, None)
    # and the next span is judged from it: 5 mL more in 5 min is right
    state = read(state, T0 + SPAN, 128.456)
    assert accuracy(state) == []
    assert state.channel("A").last_reading_at == T0 + SPAN


# --------------------------------------------------------------------------- far: 50 %


def test_over_infusion_beyond_half_alarms_high_at_once_with_its_figures(
    std: ActiveProgram,
) -> None:
    """+80 % in the shortest span: high, on this reading, scoped to the channel."""
    state = read(based(std, 2.0), T0 + SPAN, 2.0 + 9.0)
    alarm = the_alarm(state, "accuracy_over")
    assert alarm.active and not alarm.acknowledged
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.PUMP_ALARM,
        Priority.HIGH,
        T0 + SPAN,
    )
    assert alarm.message == over_far(9.0, 5.0, "+80")
    assert active(state) == ["accuracy_over"]


def test_under_infusion_beyond_half_alarms_medium_at_once_with_its_figures(
    std: ActiveProgram,
) -> None:
    state = read(based(std, 2.0), T0 + SPAN, 2.0 + 1.25)
    alarm = the_alarm(state, "accuracy_under")
    assert (alarm.reason, alarm.priority, alarm.raised_at, alarm.active) == (
        Reason.PUMP_ALARM,
        Priority.MEDIUM,
        T0 + SPAN,
        True,
    )
    assert alarm.message == under_far(1.25, 5.0, "-75")
    assert active(state) == ["accuracy_under"]


def test_a_counter_that_does_not_move_while_the_pump_runs_is_a_full_under_infusion(
    std: ActiveProgram,
) -> None:
    """The same counter twice is no cleared counter (a new base) and no "nothing
    measured": it is -100 %."""
    state = read(based(std, 7.0), T0 + SPAN, 7.0)
    alarm = the_alarm(state, "accuracy_under")
    assert alarm.priority is Priority.MEDIUM
    assert alarm.message == under_far(0.0, 5.0, "-100")


def test_far_over_exactly_half_waits_for_persistence_one_microlitre_more_alarms_at_once(
    std: ActiveProgram,
) -> None:
    """7.5 mL where 5 are due is +50 % exactly: a deviation (beyond 10 %) that must last
    15 min; 7.501 mL is beyond 50 %: high at once."""
    at = read(based(std), T0 + SPAN, 7.5)
    assert accuracy(at) == []
    assert at.channel("A").deviation_since == T0
    past = read(based(std), T0 + SPAN, 7.501)
    assert the_alarm(past, "accuracy_over").priority is Priority.HIGH
    assert the_alarm(past, "accuracy_over").message == over_far(7.501, 5.0, "+50")


def test_far_under_exactly_half_waits_for_persistence_one_microlitre_less_alarms_at_once(
    std: ActiveProgram,
) -> None:
    at = read(based(std), T0 + SPAN, 2.5)
    assert accuracy(at) == []
    past = read(based(std), T0 + SPAN, 2.499)
    alarm = the_alarm(past, "accuracy_under")
    assert alarm.priority is Priority.MEDIUM
    assert alarm.message == under_far(2.499, 5.0, "-50")


# --------------------------------------------------------------------------- span: 5 min


def test_a_span_shorter_than_five_minutes_is_not_judged_and_the_next_reading_judges_it_all(
    std: ActiveProgram,
) -> None:
    """+100 % over 299 s: not judged, and the base stays; at 400 s the whole span from
    the base is judged: 12 mL where 6.667 are due (+80 %)."""
    base = based(std)
    early = read(base, T0 + SPAN - 1.0, 10.0)
    assert accuracy(early) == []
    assert early.channel("A").last_reading_at == T0
    assert early.channel("A").last_infused_ml == 0.0
    state = read(early, T0 + 400.0, 12.0)
    assert the_alarm(state, "accuracy_over").message == over_far(12.0, 6.667, "+80")


def test_a_span_of_exactly_five_minutes_is_judged(std: ActiveProgram) -> None:
    state = read(based(std), T0 + SPAN, 10.0)
    assert the_alarm(state, "accuracy_over").message == over_far(10.0, 5.0, "+100")
    assert state.channel("A").last_reading_at == T0 + SPAN


# --------------------------------------------------------------------------- tolerance


@pytest.mark.parametrize(
    ("infused_ml", "alarm"),
    [
        (16.501, "accuracy_over"),  # +10.007 %
        (16.499, None),  # +9.993 %
        (13.501, None),  # -9.993 %
        (13.499, "accuracy_under"),  # -10.007 %
    ],
)
def test_a_deviation_one_microlitre_past_ten_percent_over_fifteen_minutes_alarms_medium(
    std: ActiveProgram, infused_ml: float, alarm: str | None
) -> None:
    """One span of exactly 15 min (15 mL due): a deviation beyond 10 % has lasted the
    persistence already; one inside it is none."""
    state = read(based(std), T0 + PERSIST, infused_ml)
    if alarm is None:
        assert accuracy(state) == []
        assert state.channel("A").deviation_since is None
        return
    raised = the_alarm(state, alarm)
    assert (raised.priority, raised.reason, raised.raised_at) == (
        Priority.MEDIUM,
        Reason.PUMP_ALARM,
        T0 + PERSIST,
    )
    words = alarm.removeprefix("accuracy_")
    sign = "+" if words == "over" else "-"
    assert raised.message == (
        f"{words}-infusion: the pump's counter shows {infused_ml:.3f} mL where the "
        f"verified rate gives 15.000 mL ({sign}10 %)"
    )


def test_a_deviation_one_second_short_of_fifteen_minutes_does_not_alarm(
    std: ActiveProgram,
) -> None:
    """+12 % over a span of 899 s: a deviation that has not lasted 15 min."""
    due = 60.0 * (PERSIST - 1.0) / 3600.0
    state = read(based(std), T0 + PERSIST - 1.0, due * 1.12)
    assert accuracy(state) == []
    assert state.channel("A").deviation_since == T0


@pytest.mark.parametrize("share", [1.125, 0.875])
def test_exactly_at_the_tolerance_is_no_deviation_one_microlitre_past_is(
    std: ActiveProgram, share: float
) -> None:
    """At a tolerance a float division can meet exactly (12.5 %: 5.625 / 5 and 4.375 /
    5 are exact): exactly at it is inside; one microlitre past it is a deviation."""
    config = replace(CONFIG, accuracy_tolerance=0.125)
    at = read(based(std, config=config), T0 + PERSIST, 15.0 * share, config=config)
    assert accuracy(at) == []
    assert at.channel("A").deviation_since is None
    step = 0.001 if share > 1 else -0.001
    past = read(based(std, config=config), T0 + PERSIST, 15.0 * share + step, config=config)
    assert active(past) == ["accuracy_over" if share > 1 else "accuracy_under"]


# --------------------------------------------------------------------------- persistence


def deviate(state: KernelState, t: float, share: float = 1.12) -> KernelState:
    """A span ending at ``t`` in which the counter moved ``share`` of the verified 5 mL
    (the span from the last judged reading, which the tests keep at 5 min)."""
    c = state.channel("A")
    assert c.last_reading_at == t - SPAN and c.last_infused_ml is not None
    return read(state, t, round(c.last_infused_ml + 5.0 * share, 3))  # 1 uL resolution


def right(state: KernelState, t: float) -> KernelState:
    c = state.channel("A")
    assert c.last_reading_at == t - SPAN and c.last_infused_ml is not None
    return read(state, t, round(c.last_infused_ml + 5.0, 3))


def test_a_deviation_alarms_once_it_has_lasted_fifteen_minutes_from_the_start_of_its_first_span(
    std: ActiveProgram,
) -> None:
    """+12 % in three spans of 5 min: the deviation began at the base (the start of the
    first deviating span), so it has lasted 15 min at the third reading, not before."""
    state = deviate(based(std), T0 + SPAN)
    assert state.channel("A").deviation_since == T0
    state = deviate(state, T0 + 2 * SPAN)
    assert accuracy(state) == []
    assert state.channel("A").deviation_since == T0
    state = deviate(state, T0 + PERSIST)
    alarm = the_alarm(state, "accuracy_over")
    assert (alarm.priority, alarm.reason, alarm.raised_at, alarm.scope) == (
        Priority.MEDIUM,
        Reason.PUMP_ALARM,
        T0 + PERSIST,
        "A",
    )
    assert alarm.message == over_far(5.6, 5.0, "+12")


def test_an_under_infusion_persists_the_same_way(std: ActiveProgram) -> None:
    state = deviate(based(std), T0 + SPAN, 0.8)
    state = deviate(state, T0 + 2 * SPAN, 0.8)
    assert accuracy(state) == []
    state = deviate(state, T0 + PERSIST, 0.8)
    alarm = the_alarm(state, "accuracy_under")
    assert (alarm.priority, alarm.raised_at) == (Priority.MEDIUM, T0 + PERSIST)
    assert alarm.message == under_far(4.0, 5.0, "-20")


def test_a_span_inside_the_tolerance_ends_the_deviation(std: ActiveProgram) -> None:
    """Deviating, right, deviating twice: the deviation began again at the start of the
    third span, so it alarms 15 min after that, not 15 min after the first."""
    state = deviate(based(std), T0 + SPAN)
    state = right(state, T0 + 2 * SPAN)
    assert state.channel("A").deviation_since is None
    state = deviate(state, T0 + 3 * SPAN)
    assert state.channel("A").deviation_since == T0 + 2 * SPAN
    state = deviate(state, T0 + 4 * SPAN)
    assert accuracy(state) == []
    state = deviate(state, T0 + 5 * SPAN)
    assert the_alarm(state, "accuracy_over").raised_at == T0 + 5 * SPAN


@pytest.mark.parametrize(
    "key, share", [("accuracy_over", 1.6), ("accuracy_under", 0.4)], ids=["over", "under"]
)
def test_a_span_inside_the_tolerance_clears_the_accuracy_alarm_of_its_channel_only(
    std: ActiveProgram, key: str, share: float
) -> None:
    """The condition is gone: the alarm stays in the book, inactive, until acknowledged;
    another channel's alarm of the same key (raised before it) stays active."""
    state = based(std)
    state = replace(
        state, alarms=state.alarms.raised(key, Reason.PUMP_ALARM, Priority.MEDIUM, "B", 0, "B")
    )
    state = deviate(state, T0 + SPAN, share)
    assert active(state) == [key]
    raised = the_alarm(state, key)
    state = right(state, T0 + 2 * SPAN)
    alarm = the_alarm(state, key)
    assert not alarm.active
    assert alarm.message == raised.message  # the figures that raised it
    assert the_alarm(state, key, "B").active


def test_a_deviation_between_ten_and_fifty_percent_neither_raises_nor_clears(
    std: ActiveProgram,
) -> None:
    """After a far over-infusion, +20 % keeps the alarm as it is: only a right span clears."""
    state = deviate(based(std), T0 + SPAN, 1.6)
    state = deviate(state, T0 + 2 * SPAN, 1.2)
    assert active(state) == ["accuracy_over"]
    assert the_alarm(state, "accuracy_over").message == over_far(8.0, 5.0, "+60")


# --------------------------------------------------------------------------- new bases


def test_a_reading_with_a_pump_alarm_starts_a_new_base_and_ends_the_deviation(
    std: ActiveProgram,
) -> None:
    """The span up to a reading that shows a pump alarm (here only "nearly empty") is
    not judged, however far off; the deviation before it is over; the next spans are
    judged from that reading."""
    state = deviate(based(std), T0 + SPAN)
    state = read(state, T0 + 2 * SPAN, 100.0, alarms=("near_empty",))
    assert accuracy(state) == []
    c = state.channel("A")
    assert (c.last_reading_at, c.last_infused_ml, c.deviation_since) == (
        T0 + 2 * SPAN,
        100.0,
        None,
    )
    state = deviate(state, T0 + 3 * SPAN)
    state = deviate(state, T0 + 4 * SPAN)
    assert accuracy(state) == []
    state = deviate(state, T0 + 5 * SPAN)
    assert the_alarm(state, "accuracy_over").raised_at == T0 + 5 * SPAN


def test_a_pump_that_stopped_in_between_starts_a_new_base(std: ActiveProgram) -> None:
    """Stopped at one reading, running at the next: neither span ran throughout, so
    neither is judged; the one after is, from the reading that found it running."""
    state = deviate(based(std), T0 + SPAN)
    state = read(state, T0 + 2 * SPAN, 5.6, is_running=False)
    assert state.channel("A").deviation_since is None
    state = read(state, T0 + 3 * SPAN, 50.0)  # running again: a counter far off, unjudged
    assert accuracy(state) == []
    assert state.channel("A").last_reading_at == T0 + 3 * SPAN
    state = read(state, T0 + 4 * SPAN, 50.0 + 10.0)
    assert the_alarm(state, "accuracy_over").message == over_far(10.0, 5.0, "+100")


def test_a_counter_that_went_back_was_cleared_and_counts_from_a_new_base(
    std: ActiveProgram,
) -> None:
    """A counter below the last one: a new base at it, the deviation before it over, and
    the next span judged from the cleared counter."""
    state = deviate(based(std, 40.0), T0 + SPAN)
    state = read(state, T0 + 2 * SPAN, 0.5)
    assert accuracy(state) == []
    c = state.channel("A")
    assert (c.last_reading_at, c.last_infused_ml, c.deviation_since) == (
        T0 + 2 * SPAN,
        0.5,
        None,
    )
    state = right(state, T0 + 3 * SPAN)
    assert accuracy(state) == []
    state = read(state, T0 + 4 * SPAN, 5.5 + 2.0)
    assert the_alarm(state, "accuracy_under").message == under_far(2.0, 5.0, "-60")


# --------------------------------------------------------------------------- the rates


def test_the_volume_due_follows_the_verified_rates_within_the_span(std: ActiveProgram) -> None:
    """60 mL/h for 2 min, then 120 mL/h (seen at a reading too early to judge) for 3 min:
    8 mL are due, not 5 or 10."""
    base = based(std)
    state = read(base, T0 + 120.0, 2.0, rate=Decimal("120.0"))
    assert accuracy(state) == []
    right_count = read(state, T0 + SPAN, 8.0, rate=Decimal("120.0"))
    assert accuracy(right_count) == []
    assert right_count.channel("A").last_infused_ml == 8.0
    # 3.5 mL is -56 % of the 8 due (far, at once); it would be -30 % of 5 and -65 % of 10
    short = read(state, T0 + SPAN, 3.5, rate=Decimal("120.0"))
    assert the_alarm(short, "accuracy_under").message == under_far(3.5, 8.0, "-56")


def test_a_verified_volume_of_a_hundredth_of_a_millilitre_is_nothing_to_judge(
    std: ActiveProgram,
) -> None:
    """0.12 mL/h for 5 min is 0.01 mL: a counter 1 mL on is not judged (a counter's
    resolution is that order); at 0.121 mL/h (0.0101 mL) it is: far over."""
    slow = Decimal("0.12")
    state = read(read(running(std, slow), T0, 0.0, rate=slow), T0 + SPAN, 1.0, rate=slow)
    assert accuracy(state) == []
    assert state.channel("A").last_reading_at == T0 + SPAN  # judged nothing, a new base
    less_slow = Decimal("0.121")
    state = read(running(std, less_slow), T0, 0.0, rate=less_slow)
    state = read(state, T0 + SPAN, 1.0, rate=less_slow)
    assert active(state) == ["accuracy_over"]
    assert "0.010 mL" in the_alarm(state, "accuracy_over").message


def test_a_pump_running_at_nought_is_nothing_to_judge(std: ActiveProgram) -> None:
    """Verified running at 0 mL/h: nothing is due, and nothing is divided by it."""
    zero = Decimal(0)
    state = read(read(running(std, zero), T0, 3.0, rate=zero), T0 + SPAN, 3.0, rate=zero)
    assert accuracy(state) == []


def test_nothing_to_judge_ends_a_deviation(std: ActiveProgram) -> None:
    """Deviating at 60 mL/h, a span at 0.12 mL/h (0.01 mL due: nothing to judge), then
    60 mL/h again: the deviation began again after the slow span."""
    slow = Decimal("0.12")
    state = deviate(based(std), T0 + SPAN)
    assert state.channel("A").deviation_since == T0
    state = read(state, T0 + SPAN, 5.6, rate=slow)  # the rate lowered: seen at once
    assert state.channel("A").deviation_since == T0  # the same counter: no new base
    state = read(state, T0 + 2 * SPAN, 5.61, rate=slow)
    assert state.channel("A").last_reading_at == T0 + 2 * SPAN
    assert state.channel("A").deviation_since is None
    state = read(state, T0 + 2 * SPAN, 5.61)  # back to 60 mL/h
    state = deviate(state, T0 + 3 * SPAN)
    state = deviate(state, T0 + 4 * SPAN)
    assert accuracy(state) == []
    state = deviate(state, T0 + 5 * SPAN)
    assert the_alarm(state, "accuracy_over").raised_at == T0 + 5 * SPAN


# --------------------------------------------------------------------------- channels


def test_each_channel_is_judged_on_its_own_counter_and_rates(std: ActiveProgram) -> None:
    """Two pumps of the same drug: B's counter far off alarms on B; A's right counter
    keeps A quiet and A's deviation streak is A's alone."""
    state = based(std)
    state = state.with_channel("B", **{f: getattr(state.channel("A"), f) for f in _COPIED})
    state = read(state, T0, 0.0, channel="B")  # B's base
    state = deviate(state, T0 + SPAN)
    state = read(state, T0 + SPAN, 9.0, channel="B")
    assert active(state, "B") == ["accuracy_over"]
    assert the_alarm(state, "accuracy_over", "B").message == over_far(9.0, 5.0, "+80")
    assert active(state, "A") == []
    assert state.channel("A").deviation_since == T0
    assert state.channel("B").deviation_since is None


_COPIED = ("program", "running", "set_rate", "expected_running", "expected_rate")
