"""A prime's read-backs and a restart during one (S15 with S1, S3, S12).

A prime runs the pump to waste at its top rate, and while it runs the channel counts in
no total and its read-backs judge no rate (``observe._priming``). That blind spot must
stay bounded: a purge that runs on well past its volume is stopped, an emergency stop
whose stop was lost stops a priming pump as any other, and a restart neither holds a
purge as an infusion nor counts it as drug given to the patient. (Found by review,
4 December 2026: a pump seen running at 200 mL/h with 40 mL out of a 2 mL prime was
neither stopped nor alarmed; under an emergency stop a priming pump seen running was not
stopped again; a restart mid-prime adopted the purge as an infusion to hold, with a false
"stopped by itself" alarm at its end, or counted the purge as drug given.)
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from safety.alarms import AlarmBook, Priority
from safety.kernel.config import KernelConfig
from safety.kernel.history import RateHistory
from safety.kernel.model import Now, PumpReading, Resumed, StopPump
from safety.kernel.observe import (
    PRIME_LONGEST_S,
    PRIME_OVERRUN_FLOOR_ML,
    PRIME_OVERRUN_SHARE,
    count_unseen_delivery,
    observe,
)
from safety.kernel.reducer import apply
from safety.kernel.state import (
    ActiveProgram,
    ChannelState,
    ContainerState,
    DrugRecord,
    KernelState,
    Priming,
    load_program,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
NOW = Now(1100.0, 600.0)
#: the pump's counter when the 2 mL prime began (0: the bounds below are exact floats)
COUNTER_AT_START = 0.0


@pytest.fixture
def priming(library: DrugLibrary) -> KernelState:
    """Channel A primes 2 mL (since t=1000, counter 10 mL), its pump seen purging at
    1200 mL/h; channel B idle."""
    program: ActiveProgram = load_program(library, norepi_standard(library), 0.0)
    a = ChannelState(
        program=program,
        running=True,
        set_rate=Decimal(1200),
        priming=Priming(2.0, 1000.0, COUNTER_AT_START),
        container=ContainerState(volume_ml=50.0, counter_ml=COUNTER_AT_START, read_at=1000.0),
        last_infused_ml=COUNTER_AT_START,
        last_reading_at=1000.0,
    )
    drugs = {program.drug: DrugRecord(RateHistory(), program.limits, ())}
    return KernelState(
        channels={"A": a, "B": ChannelState()}, drugs=drugs, session="s", attached=True
    )


def _purging(moved_ml: float) -> PumpReading:
    return PumpReading(True, Decimal(1200), COUNTER_AT_START + moved_ml)


def test_a_purge_that_runs_on_past_its_bound_is_stopped_and_alarmed(
    priming: KernelState,
) -> None:
    """Up to 1.5 x the volume + 0.2 mL (3.2 mL of a 2 mL prime) the purge runs on (a
    pump's own prime may overshoot); past it the pump is stopped, with a high alarm."""
    most = PRIME_OVERRUN_SHARE * 2.0 + PRIME_OVERRUN_FLOOR_ML
    at, reaction = observe(priming, _purging(most), NOW, CONFIG, "A")
    assert reaction.actions == ()
    assert at.alarms.get("prime_overrun", "A") is None
    assert at.channel("A").priming is not None
    past, reaction = observe(priming, _purging(most + 0.01), NOW, CONFIG, "A")
    assert reaction.actions == (StopPump("A"),)
    alarm = past.alarms.get("prime_overrun", "A")
    assert alarm is not None
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.RELAY,
        Priority.HIGH,
        NOW.clinical,
    )
    assert alarm.message == (
        "the prime of 2 mL has pushed 3.21 mL in 2 min and the pump runs on: stopped"
    )
    # the minutes to the nearest: 91 s is "2 min" (1.52)
    early, _ = observe(priming, _purging(most + 0.01), Now(1091.0, 600.0), CONFIG, "A")
    overrun = early.alarms.get("prime_overrun", "A")
    assert overrun is not None and " in 2 min " in overrun.message


def test_a_purge_whose_volume_cannot_be_judged_is_stopped_after_ten_minutes(
    priming: KernelState,
) -> None:
    """Without the counter at the prime's start (a pump replaced, a counter reset) the
    volume bound cannot judge: a purge still running 10 min after it began is stopped,
    not a step before."""
    a = priming.channel("A")
    assert a.priming is not None
    blind = priming.with_channel("A", priming=replace(a.priming, counter_at_start=None))
    began = a.priming.since
    at_bound = Now(began + PRIME_LONGEST_S, 600.0)
    _, reaction = observe(blind, _purging(1.0), at_bound, CONFIG, "A")
    assert reaction.actions == ()
    past = Now(began + PRIME_LONGEST_S + 0.01, 600.0)
    after, reaction = observe(blind, _purging(1.0), past, CONFIG, "A")
    assert reaction.actions == (StopPump("A"),)
    alarm = after.alarms.get("prime_overrun", "A")
    assert alarm is not None and alarm.message == (
        "the prime of 2 mL has run 10 min (the volume it pushed not known) and the pump "
        "runs on: stopped"
    )


def test_a_priming_pump_seen_running_under_an_emergency_stop_is_stopped_again(
    priming: KernelState,
) -> None:
    """S12 holds until acknowledged, for a prime as for an infusion: a pump seen running
    (its stop lost on the wire) is stopped again at this read-back."""
    stopped = KernelState(channels=priming.channels, drugs=priming.drugs, estopped=True)
    _, reaction = observe(stopped, _purging(0.5), NOW, CONFIG, "A")
    assert reaction.actions == (StopPump("A"),)
    _, quiet = observe(priming, _purging(0.5), NOW, CONFIG, "A")
    assert quiet.actions == ()  # without the emergency stop, a prime in its bound runs on


def test_a_purge_is_not_counted_as_drug_the_process_did_not_see(priming: KernelState) -> None:
    """The counter moved 1.9 mL while the process was down: the prime's purge, to waste,
    not a bolus to the patient (the prime's end accounts for it)."""
    after = count_unseen_delivery(priming, COUNTER_AT_START + 1.9, (), 1100.0, "A")
    assert after == priming
    done = priming.with_channel("A", priming=None)
    counted = count_unseen_delivery(done, COUNTER_AT_START + 1.9, (), 1100.0, "A")
    assert counted.history_of("norepinephrine").given_total(1100.0) > 0  # not priming: counted


def test_a_restart_during_a_prime_holds_nothing_and_adopts_no_infusion(
    priming: KernelState,
) -> None:
    """A pump found purging at a restart is not an infusion: nothing is held for a
    controller, no "holding" alarm is raised, the channel is not expected to run (its
    purge's end is no "stopped by itself"), and the purge is not counted as given."""
    unread = priming.with_channel("A", unseen_pending=True)  # an earlier start could not read it
    after = apply(CONFIG, unread, Resumed(_purging(1.0), NOW, "restart", "A"))
    assert list(after.channels) == ["A", "B"]
    a = after.channel("A")
    assert not after.hold and not a.expected_running and not a.unseen_pending
    assert a.priming == priming.channel("A").priming
    assert after.alarms.get("safety_restarted") is None
    assert after.history_of("norepinephrine").given_total(1100.0) == 0
    ended, _ = observe(after, PumpReading(False, Decimal(1200), 12.0), NOW, CONFIG, "A")
    assert ended.channel("A").priming is None and ended.channel("A").container.primed
    assert ended.alarms.get("pump_stopped", "A") is None


# --------------------------------------------------------------------------- its end


def test_a_priming_read_back_takes_the_pumps_state_and_nothing_else(
    priming: KernelState,
) -> None:
    """While it primes, a read-back records what the pump does (running, its rate), the
    reading's time and counter, clears the command's unread mark and any accuracy
    deviation (a purge is no delivery to judge), and re-arms alarms whose silence ran
    out; the prime goes on. Compared whole."""
    a = priming.channel("A")
    book = AlarmBook().raised("comms", Reason.PUMP_COMMS, Priority.LOW, "x", 1000.0, "A")
    silenced = replace(book.alarms[0], acknowledged=True, silenced_until=500.0)
    state = replace(
        priming.with_channel("A", unread_command=True, deviation_since=900.0, set_rate=Decimal(0)),
        alarms=AlarmBook((silenced,)),
    )
    after, reaction = observe(state, PumpReading(True, Decimal(1200), 1.0), NOW, CONFIG, "A")
    assert reaction.actions == () and reaction.cause == "safety"
    expected = replace(
        a,
        running=True,
        set_rate=Decimal(1200),
        unread_command=False,
        deviation_since=None,
        last_reading_at=NOW.clinical,
        last_infused_ml=1.0,
        container=replace(a.container, counter_ml=1.0, read_at=NOW.clinical, used_ml=1.0),
    )
    assert after.channel("A") == expected
    (rearmed,) = after.alarms.alarms
    assert (rearmed.acknowledged, rearmed.silenced_until) == (False, None)


@pytest.mark.parametrize(
    ("alarms", "counter", "failed"),
    [
        pytest.param((), 1.8, None, id="done at 90 %"),
        pytest.param(("near_empty",), 1.8, None, id="near empty is no failure"),
        pytest.param((), 1.79, "the prime of 2 mL stopped after 1.79 mL", id="short"),
        pytest.param((), COUNTER_AT_START, "the prime of 2 mL stopped after 0.00 mL", id="none"),
        pytest.param(
            ("occlusion", "mystery"),
            1.9,
            "the prime of 2 mL stopped after 1.90 mL (downstream occlusion: the pump has "
            "stopped flow, pump alarm)",
            id="alarms",
        ),
    ],
)
def test_a_prime_ends_when_its_pump_stops_done_or_failed(
    priming: KernelState, alarms: tuple[str, ...], counter: float, failed: str | None
) -> None:
    """Done: 90 % of the volume out and no alarm but near-empty (the channel is primed,
    and an earlier failed prime's condition ends). Otherwise `prime_failed` says how far
    it got and why, in the pump alarms' words; the channel is not primed."""
    earlier = AlarmBook().raised("prime_failed", Reason.RELAY, Priority.MEDIUM, "x", 900.0, "A")
    state = replace(priming, alarms=earlier)
    after, _ = observe(state, PumpReading(False, Decimal(1200), counter, alarms), NOW, CONFIG, "A")
    a = after.channel("A")
    assert a.priming is None and not a.running
    alarm = after.alarms.get("prime_failed", "A")
    assert alarm is not None
    if failed is None:
        assert a.container.primed and not alarm.active
    else:
        assert not a.container.primed and alarm.active
        assert alarm.message == f"{failed}: the channel is not primed"


def test_a_primes_volume_is_counted_from_the_counter_at_its_start(
    priming: KernelState,
) -> None:
    """A pump whose counter read 10 mL when the prime began and 11 mL when it stopped
    pushed 1 mL, not 11: a 2 mL prime that stopped there failed."""
    a = priming.channel("A")
    assert a.priming is not None
    started_at_10 = priming.with_channel("A", priming=replace(a.priming, counter_at_start=10.0))
    after, _ = observe(started_at_10, PumpReading(False, Decimal(1200), 11.0), NOW, CONFIG, "A")
    alarm = after.alarms.get("prime_failed", "A")
    assert alarm is not None
    assert alarm.message == "the prime of 2 mL stopped after 1.00 mL: the channel is not primed"


def test_a_prime_found_stopped_far_past_its_bound_counts_the_rest_as_given(
    priming: KernelState,
) -> None:
    """A restart finds the prime over, the counter 10 mL on (a pump run on while nobody
    saw it): up to the bound (3.2 mL of a 2 mL prime) it went to waste; the 6.8 mL beyond
    are counted as given (108.8 mcg at 16 mcg/mL), the safe side for the cap (S3), with a
    high alarm. Exactly at the bound nothing is counted."""
    after, _ = observe(priming, PumpReading(False, Decimal(1200), 10.0), NOW, CONFIG, "A")
    given = after.history_of("norepinephrine").given_total(NOW.clinical)
    assert given == pytest.approx(6.8 * 16)
    alarm = after.alarms.get("prime_overrun", "A")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.message == (
        "the prime of 2 mL stopped after 10.00 mL: the 6.80 mL beyond its bound counted as given"
    )
    program = after.channel("A").program
    assert program is not None and program.infused_baseline_ml == pytest.approx(3.2)
    bound = PRIME_OVERRUN_SHARE * 2.0 + PRIME_OVERRUN_FLOOR_ML
    at, _ = observe(priming, PumpReading(False, Decimal(1200), bound), NOW, CONFIG, "A")
    assert at.history_of("norepinephrine").given_total(NOW.clinical) == 0
    assert at.alarms.get("prime_overrun", "A") is None
