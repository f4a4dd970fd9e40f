"""What a read-back records around its decisions (``observe.observe``): each alarm's
key, reason, priority, channel and instant, the condition each later reading clears,
the retry's bookkeeping, the words of a pump that stopped by itself, and the cause the
reaction is journaled with.

The stops themselves (S1, S9, S12) are tested on the bench; here each state is built by
hand and read once or twice, on a bench of two channels where the channel matters: an
alarm stamped on the wrong channel, or a condition cleared on the wrong one, sends the
operator to the wrong pump.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.alarms import Alarm, Priority
from safety.kernel.config import KernelConfig
from safety.kernel.history import FlowLog, RateHistory
from safety.kernel.model import Now, PumpReading, Reaction, SetRate, StopPump
from safety.kernel.observe import observe
from safety.kernel.state import (
    ActiveProgram,
    ContainerState,
    DrugRecord,
    KernelState,
    Priming,
    load_program,
    single_channel,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
T = 500.0
RATE = Decimal("30.0")  # 8 mcg/min at 16 mcg/mL


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def running(program: ActiveProgram) -> KernelState:
    """Channel A set to and verified running 30 mL/h since t=0."""
    history = RateHistory().with_rate(0.0, Fraction(RATE) * program.amount_per_ml)
    return single_channel(
        drugs={program.drug: DrugRecord(history, program.limits)},
        program=program,
        running=True,
        set_rate=RATE,
        expected_running=True,
        expected_rate=RATE,
        session="s",
        attached=True,
    )


def with_b(state: KernelState) -> KernelState:
    """A second channel, B, idle: a bench of two."""
    return state.with_channel("B")


def read(
    state: KernelState,
    rate: str,
    *,
    is_running: bool = True,
    alarms: tuple[str, ...] = (),
    t: float = T,
    channel: str = "A",
) -> tuple[KernelState, Reaction]:
    return observe(
        state, PumpReading(is_running, Decimal(rate), 1.0, alarms), Now(t, 9.0), CONFIG, channel
    )


def raised(state: KernelState, key: str, scope: str) -> KernelState:
    """``key`` active in ``scope`` (as an earlier reading would have left it)."""
    alarms = state.alarms.raised(key, Reason.PUMP_ALARM, Priority.MEDIUM, "earlier", 1.0, scope)
    return replace(state, alarms=alarms)


def the(state: KernelState, key: str, scope: str = "A") -> Alarm:
    alarm = state.alarms.get(key, scope)
    assert alarm is not None, f"no {key} in {scope!r}: {state.alarms}"
    return alarm


def cause_now(state: KernelState) -> str:
    """The cause label of the drug's history from now on (``"pump"``: nobody's command,
    left out of the rates a restart may resume)."""
    current = state.history_of("norepinephrine").current
    assert current is not None
    return current.cause


def whole(alarm: Alarm) -> tuple[object, ...]:
    return (alarm.reason, alarm.priority, alarm.raised_at, alarm.scope, alarm.active)


# --------------------------------------------------------------------------- S1, S9: stops


def test_a_rate_above_the_hard_max_is_stopped_with_its_alarm_on_its_channel(
    std: ActiveProgram,
) -> None:
    """180 mL/h is 48 mcg/min, above the hard max 47."""
    after, reaction = read(with_b(running(std)), "180.0")
    assert reaction == Reaction((StopPump("A"),), "safety")
    alarm = the(after, "readback_hard_max")
    assert whole(alarm) == (Reason.HARD_MAX, Priority.HIGH, T, "A", True)
    assert alarm.message.startswith("pump runs 180 mL/h = 48 mcg/min, above the hard maximum 47")
    assert after.alarms.get("readback_over") is None
    assert cause_now(after) == "pump"  # a rate nobody commanded


def test_a_pump_running_that_was_not_started_is_stopped(std: ActiveProgram) -> None:
    """Verified stopped since t=100 s, found running 30 mL/h on its own."""
    state = with_b(running(std)).with_channel("A", running=False, expected_running=False)
    record = state.drugs["norepinephrine"]
    stopped = record.history.with_rate(100.0, Fraction(0), "command", 1e9)
    state = replace(state, drugs={"norepinephrine": replace(record, history=stopped)})
    after, reaction = read(state, "30.0")
    assert reaction == Reaction((StopPump("A"),), "safety")
    alarm = the(after, "readback_over")
    assert whole(alarm) == (Reason.READBACK_OVER, Priority.HIGH, T, "A", True)
    assert alarm.message == (
        "pump is running at 30 mL/h but was not started by the safety process: stopped"
    )
    current = after.history_of("norepinephrine").current
    assert current is not None and (current.start, current.cause) == (T, "pump")


def test_a_rate_above_the_one_set_is_stopped(std: ActiveProgram) -> None:
    """30.1 mL/h where 30 was set: beyond the 0.05 % band (30.015)."""
    after, reaction = read(with_b(running(std)), "30.1")
    assert reaction == Reaction((StopPump("A"),), "safety")
    alarm = the(after, "readback_over")
    assert whole(alarm) == (Reason.READBACK_OVER, Priority.HIGH, T, "A", True)
    assert alarm.message == "pump runs 30.1 mL/h, above the 30 mL/h it was set to: stopped"
    assert cause_now(after) == "pump"


def test_a_rate_at_the_edge_of_the_band_is_the_rate_set(std: ActiveProgram) -> None:
    """30.015 and 29.985 mL/h are 30 within 0.05 %: no stop, no retry, no alarm."""
    for rate in ("30.015", "29.985"):
        after, reaction = read(running(std), rate)
        assert reaction == Reaction((), "safety")
        assert after.alarms.alarms == ()


# --------------------------------------------------------------------------- S9: under


def test_a_rate_below_the_one_set_is_set_again_once_then_alarms(std: ActiveProgram) -> None:
    """29.9 mL/h where 30 was set: the rate is sent again (the reaction's cause is the
    retry), then, still under, a medium alarm and the lower rate is what is expected."""
    first, reaction = read(with_b(running(std)), "29.9")
    assert reaction == Reaction((SetRate(RATE, "A"),), "retry")
    assert first.channel("A").under_retries == 1
    assert first.alarms.get("readback_under", "A") is None
    second, reaction = read(first, "29.9", t=T + 5)
    assert reaction == Reaction((), "safety")
    alarm = the(second, "readback_under")
    assert whole(alarm) == (Reason.READBACK_UNDER, Priority.MEDIUM, T + 5, "A", True)
    assert alarm.message == "pump runs 29.9 mL/h, below the 30 mL/h it was set to, after a retry"
    assert second.channel("A").expected_rate == Decimal("29.9")
    assert second.channel("B").expected_rate == Decimal(0)


def test_a_right_rate_ends_the_retries_and_clears_under_and_hard_max_on_its_channel(
    std: ActiveProgram,
) -> None:
    state = with_b(running(std)).with_channel("A", under_retries=1)
    for key in ("readback_under", "readback_hard_max"):
        state = raised(raised(state, key, "B"), key, "A")  # B first in the book
    after, reaction = read(state, "30.0")
    assert reaction == Reaction((), "safety")
    assert after.channel("A").under_retries == 0
    for key in ("readback_under", "readback_hard_max"):
        assert not the(after, key, "A").active
        assert the(after, key, "B").active


def test_a_stopped_pump_clears_over_and_hard_max_on_its_channel(std: ActiveProgram) -> None:
    state = with_b(running(std)).with_channel("A", expected_running=False)
    for key in ("readback_over", "readback_hard_max"):
        state = raised(raised(state, key, "B"), key, "A")  # B first in the book
    after, _ = read(state, "30.0", is_running=False)
    for key in ("readback_over", "readback_hard_max"):
        assert not the(after, key, "A").active
        assert the(after, key, "B").active


# --------------------------------------------------------------------------- S13: stopped by itself


@pytest.mark.parametrize(
    ("alarms", "why"),
    [
        (("occlusion", "near_empty"), "downstream occlusion: the pump has stopped flow"),
        (("empty", "stall"), "syringe empty, motor stalled"),
        (("gremlin",), "pump alarm"),
        (("near_empty",), "no reason given by the pump"),
        ((), "no reason given by the pump"),
    ],
    ids=["occlusion", "two", "unknown", "near-empty-only", "none"],
)
def test_a_pump_that_stopped_by_itself_says_why_and_is_not_expected_to_run(
    std: ActiveProgram, alarms: tuple[str, ...], why: str
) -> None:
    """Nearly empty is no reason to stop; the alarm is latched for the operator (its
    condition is over: the pump is stopped and expected so)."""
    after, reaction = read(with_b(running(std)), "30.0", is_running=False, alarms=alarms)
    assert reaction == Reaction((), "safety")
    alarm = the(after, "pump_stopped")
    assert whole(alarm) == (Reason.PUMP_ALARM, Priority.HIGH, T, "A", False)
    assert alarm.message == (
        f"the pump stopped by itself ({why}); it will not be restarted automatically"
    )
    assert not after.channel("A").expected_running
    assert cause_now(after) == "pump"


def test_a_pump_seen_running_as_expected_keeps_its_stopped_alarm_until_then(
    std: ActiveProgram,
) -> None:
    """The condition goes when the pump is stopped or not expected to run, on its channel."""
    state = raised(raised(with_b(running(std)), "pump_stopped", "B"), "pump_stopped", "A")
    after, _ = read(state, "30.0")
    assert the(after, "pump_stopped", "A").active
    state = state.with_channel("A", expected_running=False)
    after, _ = read(state, "30.0", is_running=False)
    assert not the(after, "pump_stopped", "A").active
    assert the(after, "pump_stopped", "B").active


# --------------------------------------------------------------------------- comms, estop


def test_a_reading_ends_its_channels_comms_alarm_only(std: ActiveProgram) -> None:
    state = with_b(running(std)).with_channel("A", comms_ok=False)
    state = raised(raised(state, "pump_comms", "A"), "pump_comms", "B")
    after, _ = read(state, "30.0")
    assert after.channel("A").comms_ok is True
    assert not the(after, "pump_comms", "A").active
    assert the(after, "pump_comms", "B").active


def test_an_emergency_stop_alarm_ends_when_every_pump_is_seen_stopped(
    std: ActiveProgram,
) -> None:
    state = with_b(running(std))
    state = replace(state, estopped=True)
    state = replace(
        state,
        alarms=state.alarms.raised("estop", Reason.EMERGENCY_STOPPED, Priority.HIGH, "x", 1.0),
    )
    still, reaction = read(state, "30.0")
    assert reaction.actions == (StopPump("A"),)
    assert the(still, "estop", "").active
    stopped, reaction = read(
        state.with_channel("A", expected_running=False), "30.0", is_running=False
    )
    assert reaction.actions == ()
    assert not the(stopped, "estop", "").active
    assert stopped.estopped  # until acknowledged


# --------------------------------------------------------------------------- pump alarms, comms


def test_a_pump_alarm_is_raised_and_ended_on_the_channel_read(std: ActiveProgram) -> None:
    """B's occlusion is B's; a reading of B without it ends B's alarm, not A's (raised
    before it in the book)."""
    state = raised(with_b(running(std)), "pump:occlusion", "A")
    after, _ = read(state, "0", is_running=False, alarms=("occlusion",), channel="B")
    alarm = the(after, "pump:occlusion", "B")
    assert whole(alarm) == (Reason.PUMP_ALARM, Priority.HIGH, T, "B", True)
    assert alarm.message == "pump alarm: downstream occlusion: the pump has stopped flow"
    later, _ = read(after, "0", is_running=False, channel="B", t=T + 5)
    assert not the(later, "pump:occlusion", "B").active
    assert the(later, "pump:occlusion", "A").active


def test_a_reading_ends_the_comms_alarm_of_its_channel_not_one_raised_before(
    std: ActiveProgram,
) -> None:
    state = raised(raised(with_b(running(std)), "pump_comms", "B"), "pump_comms", "A")
    after, _ = read(state, "30.0")
    assert not the(after, "pump_comms", "A").active
    assert the(after, "pump_comms", "B").active


# --------------------------------------------------------------------------- what is recorded


def test_a_commanded_rate_seen_is_recorded_with_the_commands_cause(std: ActiveProgram) -> None:
    state = running(std).with_channel("A", expected_rate=Decimal("37.5"), expected_cause="command")
    after, reaction = read(state, "37.5")
    assert reaction == Reaction((), "safety")
    current = after.history_of("norepinephrine").current
    assert current is not None
    assert (current.start, current.amount_per_h, current.cause) == (T, Fraction(600), "command")


def test_the_container_is_read_with_the_reading(std: ActiveProgram) -> None:
    """20 mL in the syringe, 1 mL displaced at this reading: 19 mL left, empty 38 min
    after it at 30 mL/h."""
    loaded = ContainerState(volume_ml=20.0, counter_ml=0.0)  # the counter read 0 at loading
    state = running(std).with_channel("A", container=loaded)
    after, _ = read(state, "30.0")
    container = after.channel("A").container
    assert (container.used_ml, container.counter_ml, container.read_at) == (1.0, 1.0, T)
    assert after.channel("A").empty_at() == T + 19.0 / 30.0 * 3600.0


def test_a_first_reading_is_the_containers_baseline(std: ActiveProgram) -> None:
    """No reading since the container was loaded (a new bench, a replaced pump): what the
    pump's counter shows is what it displaced before, not from this container."""
    state = running(std).with_channel("A", container=ContainerState(volume_ml=20.0))
    after, _ = read(state, "30.0")
    container = after.channel("A").container
    assert (container.used_ml, container.counter_ml) == (0.0, 1.0)


def test_delivery_unseen_across_a_restart_is_counted_on_the_channel_read(
    std: ActiveProgram,
) -> None:
    """Channel B ran 30 mL/h from its last reading (t=100 s, counter 1 mL); a restart
    could not read it. At t=500 s its counter shows 2 mL more than the 3.333 mL the rate
    explains: 32 mcg counted at once, as a bolus of the drug, on B's reading."""
    b = running(std).channel("A")
    state = single_channel(drugs=running(std).drugs, session="s", attached=True)
    state = state.with_channel(
        "B",
        **{f: getattr(b, f) for f in ("program", "running", "set_rate")},
        expected_running=True,
        expected_rate=RATE,
        last_reading_at=100.0,
        last_infused_ml=1.0,
        flow=FlowLog(((100.0, RATE),)),
        unseen_pending=True,
    )
    due = 1.0 + 30.0 * 400.0 / 3600.0
    reading = PumpReading(True, RATE, due + 2.0)
    after, _ = observe(state, reading, Now(T, 9.0), CONFIG, "B")
    boluses = after.history_of("norepinephrine").boluses
    assert [b.at for b in boluses] == [T]
    assert boluses[0].amount == pytest.approx(32.0)
    assert not after.channel("B").unseen_pending


# --------------------------------------------------------------------------- a prime


def priming(program: ActiveProgram, counter_at_start: float | None = 0.0) -> KernelState:
    """Channel A priming 2 mL to waste from t=400 s: no drug to the patient."""
    return single_channel(
        drugs=running(program).drugs,
        program=program,
        running=True,
        set_rate=Decimal("1500"),
        priming=Priming(2.0, 400.0, counter_at_start),
        session="s",
        attached=True,
    )


def test_a_pump_priming_is_neither_an_infusion_nor_a_rogue_start(std: ActiveProgram) -> None:
    """Running at its top rate, not started by a dose order: no stop, no alarm, nothing
    in the drug's history."""
    state = priming(std)
    after, reaction = observe(state, PumpReading(True, Decimal("1500"), 2.0), Now(T, 9.0), CONFIG)
    assert reaction == Reaction((), "safety")
    assert after.alarms.alarms == ()
    assert after.history_of("norepinephrine") == state.history_of("norepinephrine")
    c = after.channel("A")
    assert c.priming is not None and (c.last_reading_at, c.last_infused_ml) == (T, 2.0)


@pytest.mark.parametrize(
    ("counter", "alarms", "message"),
    [
        (1.8, (), None),  # 1.8 mL of 2: 90 %, done
        (1.79, (), "the prime of 2 mL stopped after 1.79 mL: the channel is not primed"),
        (
            1.9,
            ("occlusion",),
            "the prime of 2 mL stopped after 1.90 mL (downstream occlusion: the pump has "
            "stopped flow): the channel is not primed",
        ),
    ],
    ids=["done", "short", "alarm"],
)
def test_a_prime_ends_when_the_pump_stops_primed_or_with_its_alarm(
    std: ActiveProgram, counter: float, alarms: tuple[str, ...], message: str | None
) -> None:
    after, reaction = observe(
        priming(std), PumpReading(False, Decimal("1500"), counter, alarms), Now(T, 9.0), CONFIG
    )
    assert reaction == Reaction((), "safety")
    c = after.channel("A")
    assert c.priming is None
    assert c.container.primed is (message is None)
    failed = after.alarms.get("prime_failed", "A")
    if message is None:
        assert failed is None
        return
    assert failed is not None
    assert whole(failed) == (Reason.RELAY, Priority.MEDIUM, T, "A", True)
    assert failed.message == message


def test_a_pump_seen_running_unbidden_ends_an_earlier_stopped_by_itself(
    std: ActiveProgram,
) -> None:
    """Stopped by itself earlier, now found running though nobody started it: that
    condition is over (this one is an over-rate, stopped)."""
    state = raised(with_b(running(std)), "pump_stopped", "A").with_channel(
        "A", expected_running=False
    )
    after, reaction = read(state, "30.0")
    assert reaction.actions == (StopPump("A"),)
    assert not the(after, "pump_stopped", "A").active
    assert the(after, "readback_over", "A").active


def test_the_under_rate_retry_goes_to_the_channel_read(std: ActiveProgram) -> None:
    state = with_b(running(std))
    b = state.channel("A")
    state = state.with_channel("B", **{f: getattr(b, f) for f in _RUNNING})
    _, reaction = read(state, "29.9", channel="B")
    assert reaction == Reaction((SetRate(RATE, "B"),), "retry")


_RUNNING = ("program", "running", "set_rate", "expected_running", "expected_rate")


def test_a_read_back_rearms_an_alarm_whose_silence_has_ended(std: ActiveProgram) -> None:
    """Acknowledged at liveness 0 (silenced for its while), still active: a reading after
    the silence annunciates it again."""
    state = raised(running(std), "pump:occlusion", "A")
    state = replace(state, alarms=state.alarms.acknowledged(None, 0.0))
    assert not the(state, "pump:occlusion").annunciating
    after, _ = observe(
        state,
        PumpReading(False, RATE, 1.0, ("occlusion",)),
        Now(T, 1e6),
        CONFIG,
    )
    assert the(after, "pump:occlusion").annunciating


def test_a_channel_near_empty_with_no_standby_on_a_bench_of_two_alarms(
    std: ActiveProgram,
) -> None:
    """10 mL loaded, 1 mL displaced at this reading: 9 mL at 30 mL/h is 18 min, within
    the 30 min warning: medium."""
    loaded = ContainerState(volume_ml=10.0, counter_ml=0.0)
    state = with_b(running(std)).with_channel("A", container=loaded)
    after, _ = read(state, "30.0")
    alarm = the(after, "relay_no_standby")
    assert whole(alarm) == (Reason.RELAY, Priority.MEDIUM, T, "A", True)
    assert alarm.message.startswith(
        "channel A's container empties in about 18 min and no standby is armed for it"
    )
