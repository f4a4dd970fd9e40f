"""Corners of the pure kernel that the bench rarely reaches: a command the pump
refused or whose outcome was lost (S10), what a read-back says about it, the stop rule
under earlier limits, a rise from a pump found running at 0 mL/h, and the exact words
of refusals an operator acts on.

Each state is built by hand (``KernelState`` is a plain value), so one rule is under
test at a time and its reason code, actions and sentence are asserted whole.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.alarms import Priority
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import _amount, decide
from safety.kernel.history import RateHistory
from safety.kernel.model import (
    ChangeDose,
    CommandFailed,
    Now,
    PumpReading,
    Request,
    RequestBody,
    RequestMeta,
    SetInterlock,
    SetRate,
    StartInfusion,
    StartPump,
    StopInfusion,
    StopPump,
    Verdict,
)
from safety.kernel.observe import observe, tick
from safety.kernel.reducer import _duration, apply
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    Pending,
    PriorLimits,
    evolve,
    load_program,
    single_channel,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
PUMP = PumpCapabilities(Decimal("1.0"), Decimal("1999.1"), lambda rate: rate)
NOW = Now(100.0, 50.0)


def _running(
    program: ActiveProgram, rate: str, *, priors: tuple[PriorLimits, ...] = ()
) -> KernelState:
    """Attached, ``program`` loaded and verified running at ``rate`` mL/h since t=0."""
    ml_h = Decimal(rate)
    history = RateHistory().with_rate(0.0, Fraction(ml_h) * program.amount_per_ml)
    record = DrugRecord(history, program.limits, priors)
    return single_channel(
        drugs={program.drug: record},
        program=program,
        running=True,
        set_rate=ml_h,
        expected_running=True,
        expected_rate=ml_h,
        session="s",
        attached=True,
    )


def _decide(state: KernelState, body: RequestBody, now: Now = NOW) -> Verdict:
    request = Request(RequestMeta("s", state.last_seq + 1, 1e6), body)
    return decide(None, state, request, now, PUMP, CONFIG)


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


# --------------------------------------------------------------------------- S10


def test_a_command_the_pump_refused_raises_its_alarm_and_expects_what_was_verified(
    std: ActiveProgram,
) -> None:
    state = evolve(_running(std, "30.0"), expected_rate=Decimal("37.5"))
    failed = CommandFailed(SetRate(Decimal("37.5")), "rejected", "rate out of range", NOW)
    after = apply(CONFIG, state, failed)
    alarm = after.alarms.get("pump_rejected")
    assert alarm is not None
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.PUMP_ALARM,
        Priority.MEDIUM,
        100.0,
    )
    assert alarm.message == "the pump refused a command: rate out of range"
    assert not alarm.active  # latched for the operator; the condition itself is over
    assert (after.expected_rate, after.expected_running) == (Decimal("30.0"), True)
    assert after.pending is None
    # a start the pump refused: nothing is expected to run any more
    stopped = evolve(state, running=False, set_rate=Decimal(0), expected_running=True)
    refused = apply(CONFIG, stopped, CommandFailed(StartPump(), "rejected", "occluded", NOW))
    assert (refused.expected_running, refused.expected_rate) == (False, Decimal(0))


def test_a_relay_command_that_failed_is_a_high_alarm_and_nothing_pending(
    std: ActiveProgram,
) -> None:
    state = _running(std, "30.0")
    failed = CommandFailed(SetInterlock(True), "error", "GPIO write failed", NOW)
    after = apply(CONFIG, state, failed)
    alarm = after.alarms.get("interlock")
    assert alarm is not None and alarm.active
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.PUMP_ALARM,
        Priority.HIGH,
        100.0,
    )
    assert alarm.message == "interlock relay: GPIO write failed"
    assert after.pending is None and after.expected_rate == state.expected_rate


def test_a_lost_acknowledgement_leaves_the_command_pending_with_what_was_before(
    std: ActiveProgram,
) -> None:
    state = _running(std, "30.0")
    failed = CommandFailed(SetRate(Decimal("37.5")), "timeout", "no reply in 2 s", NOW)
    after = apply(CONFIG, state, failed)
    assert after.pending == Pending(SetRate(Decimal("37.5")), Decimal("30.0"), True, 100.0)
    alarm = after.alarms.get("delivery_uncertain")
    assert alarm is not None and alarm.active
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.DELIVERY_UNCERTAIN,
        Priority.MEDIUM,
        100.0,
    )
    assert alarm.message == (
        "command outcome uncertain (timeout: no reply in 2 s); reconciling by read-back"
    )


@pytest.mark.parametrize(
    ("action", "reading", "took", "expected"),
    [
        (StartPump(), PumpReading(True, Decimal("30.0"), 0.0), "it took effect", (True, "30.0")),
        (
            StartPump(),
            PumpReading(False, Decimal("30.0"), 0.0),
            "it did not take effect",
            (False, "0"),
        ),
        (StopPump(), PumpReading(False, Decimal("30.0"), 0.0), "it took effect", (True, "30.0")),
        (
            StopPump(),
            PumpReading(True, Decimal("30.0"), 0.0),
            "it did not take effect",
            (True, "30.0"),
        ),
        (
            SetInterlock(True),
            PumpReading(True, Decimal("30.0"), 0.0),
            "it took effect",
            (True, "30.0"),
        ),
        (
            SetRate(Decimal("37.5")),
            PumpReading(True, Decimal("33.0"), 0.0),
            "the pump shows neither the old nor the new setting",
            (True, "37.5"),
        ),
    ],
    ids=["start-took", "start-lost", "stop-took", "stop-lost", "relay", "neither"],
)
def test_a_read_back_reconciles_an_uncertain_command_and_says_how(
    std: ActiveProgram,
    action: StartPump | StopPump | SetInterlock | SetRate,
    reading: PumpReading,
    took: str,
    expected: tuple[bool, str],
) -> None:
    """The pending command's outcome, judged on the pump: the start, stop or rate it
    shows; when it did not take effect, the expectation returns to what was before."""
    was_running, was_rate = expected
    base = _running(std, "30.0")
    before = Pending(action, Decimal(was_rate), was_running, 90.0)
    state = evolve(base, pending=before, expected_running=True, expected_rate=Decimal("37.5"))
    if isinstance(action, SetRate):
        state = evolve(state, expected_rate=action.rate_ml_h)
    after, _ = observe(state, reading, NOW, CONFIG)
    assert after.pending is None
    alarm = after.alarms.get("delivery_uncertain")
    assert alarm is not None and not alarm.active
    assert alarm.message == f"uncertain command reconciled by read-back: {took}"
    assert alarm.raised_at == 100.0
    if took == "it did not take effect":
        assert (after.expected_running, after.expected_rate) == (was_running, Decimal(was_rate))
        # a start that never happened is no pump that stopped by itself
        assert after.alarms.get("pump_stopped") is None


# --------------------------------------------------------------------------- tick


def test_a_tick_without_a_cap_in_sight_acts_for_safety_and_rearms_silenced_alarms(
    std: ActiveProgram,
) -> None:
    state = _running(std, "30.0")
    book = state.alarms.raised("x", Reason.PUMP_ALARM, Priority.HIGH, "x", 0.0)
    book = book.acknowledged(None, liveness_now=NOW.liveness - 1000.0)  # silence over
    state = replace(state, alarms=book)
    alarm = state.alarms.get("x")
    assert alarm is not None and alarm.acknowledged
    after, reaction = tick(state, NOW, CONFIG)
    assert reaction.actions == () and reaction.cause == "safety"
    again = after.alarms.get("x")
    assert again is not None and not again.acknowledged and again.silenced_until is None


# --------------------------------------------------------------------------- S5 stop


def test_stop_refused_by_earlier_limits_that_wean_when_the_program_does_not(
    std: ActiveProgram,
) -> None:
    """The loaded program has no gradual-wean rule, an earlier one of the same drug
    (still in force) has: a stop at 12 mcg/min is still a stop above its threshold."""
    therapy = std.limits.therapy
    no_wean = therapy.wean.model_copy(
        update={
            "gradual_wean_only": therapy.wean.gradual_wean_only.model_copy(update={"value": False})
        }
    )
    loose = replace(std.limits, therapy=therapy.model_copy(update={"wean": no_wean}))
    program = replace(std, limits=loose)
    prior = PriorLimits(std.limits, until=1000.0, why="limits of the earlier program")
    state = _running(program, "45.0", priors=(prior,))
    verdict = _decide(state, StopInfusion())
    assert verdict.reason is Reason.STOP_ABOVE_THRESHOLD
    assert verdict.message.endswith(
        "is above the stop threshold 2 mcg/min (still in force until t=1000 s: limits of the "
        "earlier program); wean first (emergency stop stops at once)"
    )
    # once the earlier limits have passed, the program's own (no wean) allow it
    ok = _decide(state, StopInfusion(), Now(1000.0, NOW.liveness))
    assert ok.accepted and ok.actions == (StopPump(),)
    assert ok.message == "accepted: stop"


def test_stop_of_a_pump_running_on_its_own_is_allowed_and_of_nothing_refused(
    std: ActiveProgram,
) -> None:
    """A pump found running that the safety process did not start (stopped by S9 on the
    next read-back anyway) may be stopped; with nothing running or started, a stop is
    refused as not infusing."""
    rogue = evolve(_running(std, "7.5"), expected_running=False)
    assert _decide(rogue, StopInfusion()).accepted
    started = evolve(_running(std, "7.5"), running=False)  # started, not yet read back
    assert _decide(started, StopInfusion()).accepted
    idle = evolve(_running(std, "7.5"), running=False, expected_running=False)
    verdict = _decide(idle, StopInfusion())
    assert verdict.reason is Reason.NOT_INFUSING
    assert verdict.message == "refused: not infusing"


# --------------------------------------------------------------------------- S4


def test_a_rise_from_a_pump_found_running_at_zero_is_bounded_by_the_relative_step(
    std: ActiveProgram,
) -> None:
    """25 % of nothing is nothing: any rise from 0 mL/h is refused as a step."""
    state = _running(std, "0")
    verdict = _decide(state, ChangeDose(Decimal(2)))
    assert verdict.reason is Reason.STEP_RISE
    assert verdict.message.startswith(
        "refused: 2 mcg/min is a rise from the current 0 mcg/min; the largest allowed rise "
        "now is 0 mcg/min"
    )


def test_a_step_refusal_says_the_ratio_to_three_digits(std: ActiveProgram) -> None:
    verdict = _decide(_running(std, "30.0"), ChangeDose(Decimal(11)))
    assert verdict.reason is Reason.STEP_RISE
    assert verdict.message == (
        "refused: 11 mcg/min is 1.38x the current 8 mcg/min; the largest allowed rise now "
        "is 2 mcg/min (to 10 mcg/min)"
    )


def test_a_window_with_no_running_rate_in_it_measures_from_the_current_rate(
    std: ActiveProgram,
) -> None:
    """A state whose verified history holds no running rate (restored without one) while
    the pump runs: the window's rise is measured from the current rate, so a step within
    the step rule passes."""
    state = replace(_running(std, "30.0"), drugs={std.drug: DrugRecord(limits=std.limits)})
    verdict = _decide(state, ChangeDose(Decimal(10)))
    assert verdict.accepted, verdict.message


# --------------------------------------------------------------------------- S5 words


def test_a_wean_refusal_says_the_fraction_window_highest_and_floor(std: ActiveProgram) -> None:
    verdict = _decide(_running(std, "30.0"), ChangeDose(Decimal(5)))
    assert verdict.reason is Reason.WEAN_TOO_FAST
    assert verdict.message == (
        "refused: 5 mcg/min is a faster wean than allowed: at most 25 % below the highest "
        "dose of the last 30 min (8 mcg/min), so not below 6 mcg/min now"
    )


# --------------------------------------------------------------------------- S3 words


def test_the_cap_refusal_counts_what_was_given_in_the_caps_unit() -> None:
    assert _amount(67_200.0, "mg") == "67.2 mg"
    assert _amount(4.5, "units") == "4.5 units"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (119.0, "119 s"),
        (120.0, "2 min"),
        (7199.0, "120 min"),
        (7200.0, "2.0 h"),
        (8820.0, "2.5 h"),  # 2.45 h: a hair's error in the hour would show 2.4
    ],
)
def test_a_credited_gap_is_said_in_seconds_minutes_or_hours(seconds: float, words: str) -> None:
    assert _duration(seconds) == words


# --------------------------------------------------------------------------- units


def test_a_dose_in_another_unit_is_refused_saying_which_kind_it_is(std: ActiveProgram) -> None:
    state = _running(std, "30.0")
    weight_based = _decide(state, ChangeDose(Decimal("0.1"), unit="mcg/kg/min"))
    assert weight_based.reason is Reason.DOSE_UNIT_MISMATCH
    assert weight_based.message == (
        "refused: the dose is in mcg/kg/min (weight-based) but norepinephrine (Adult ICU, "
        "Standard (mcg/min)) is dosed in mcg/min; re-enter it in mcg/min"
    )
    absolute = _decide(state, ChangeDose(Decimal("0.5"), unit="mg/h"))
    assert absolute.reason is Reason.DOSE_UNIT_MISMATCH
    assert "(not weight-based)" in absolute.message
    garbled = _decide(state, StartInfusion(Decimal(8), unit="mcg/fortnight"))
    assert garbled.reason is Reason.BAD_INPUT
    assert garbled.message.startswith("refused: unit: ")


def test_limit_sets_convert_both_ways(std: ActiveProgram) -> None:
    from safety.kernel.limits import LimitSet

    limit_set = LimitSet(std.limits, std.dose_per_amount_h)
    assert limit_set.dose(Fraction(480)) == 8  # 480 mcg/h is 8 mcg/min
    assert limit_set.amount_rate(Fraction(8)) == 480
    assert std.dose_of_amount_rate(Fraction(480)) == 8


def test_a_pump_alarm_is_stamped_with_the_reading_that_showed_it(std: ActiveProgram) -> None:
    reading = PumpReading(False, Decimal("30.0"), 1.0, alarms=("occlusion",))
    after, reaction = observe(_running(std, "30.0"), reading, NOW, CONFIG)
    alarm = after.alarms.get("pump:occlusion")
    assert alarm is not None and alarm.raised_at == NOW.clinical
    assert alarm.priority is Priority.HIGH
    assert reaction.cause == "safety"


def test_a_float_that_lands_on_a_pump_rate_above_the_exact_one_is_stepped_down() -> None:
    """180 - 1e-20 mL/h is 180.0 as a float: the pump would run 180.0, above the order;
    the kernel steps the float down until the pump's rate is not above it: 179.9."""
    from drivers.pumps.mock import MockPumpDriver

    pump = PumpCapabilities(Decimal("1.0"), Decimal("1999.1"), MockPumpDriver().quantize_rate)
    assert pump.pump_rate(Fraction(180)) == Decimal("180.0")
    assert pump.pump_rate(Fraction(180) - Fraction(1, 10**20)) == Decimal("179.9")


def test_the_cap_deadline_reads_earlier_limits_in_force(std: ActiveProgram) -> None:
    """An earlier program's cap binds the deadline as the program's own does."""
    from safety.kernel.observe import next_deadline

    uncapped = replace(std, limits=replace(std.limits, cap=None))
    prior = PriorLimits(std.limits, until=1e9, why="earlier")
    state = _running(uncapped, "30.0", priors=(prior,))
    assert next_deadline(state, NOW, CONFIG) == pytest.approx(
        68_000 / 480 * 3600 - CONFIG.cap_guard_s
    )
    assert next_deadline(_running(uncapped, "30.0"), NOW, CONFIG) is None


def test_a_restart_clears_the_link_and_reconciles_a_pending_command(std: ActiveProgram) -> None:
    """A command whose reply was lost with the process is judged on the restart's first
    reading (S10), as a read-back would judge it: its ``delivery_uncertain`` condition
    ends there. Before, the restart dropped the command unjudged and the alarm's
    condition never ended (an acknowledged one then hid every later lost reply)."""
    from safety.kernel.model import Resumed

    pending = Pending(SetRate(Decimal("37.5")), Decimal("30.0"), True, 90.0)
    lost = apply(CONFIG, _running(std, "30.0"), CommandFailed(pending.action, "timeout", "", NOW))
    uncertain = lost.alarms.get("delivery_uncertain")
    assert uncertain is not None and uncertain.active and lost.pending is not None
    state = evolve(lost, pending=pending, hold=True)
    reading = PumpReading(True, Decimal("30.0"), 0.0)
    after = apply(CONFIG, state, Resumed(reading, NOW, "restart"))
    assert after.pending is None and not after.attached and after.session is None
    judged = after.alarms.get("delivery_uncertain")
    assert judged is not None and not judged.active and judged.raised_at == NOW.clinical
    assert judged.message == "uncertain command reconciled by read-back: it did not take effect"
    took = apply(CONFIG, state, Resumed(PumpReading(True, Decimal("37.5"), 0.0), NOW))
    judged = took.alarms.get("delivery_uncertain")
    assert judged is not None and not judged.active and judged.message.endswith("took effect")
    assert after.hold  # a running pump is held until a controller attaches
    alarm = after.alarms.get("safety_restarted")
    assert alarm is not None and alarm.raised_at == NOW.clinical
    assert alarm.message == (
        "the safety process restarted (restart); holding 30 mL/h until a controller attaches"
    )
    blind = apply(CONFIG, state, Resumed(None, NOW))
    assert not blind.hold  # no reading: nothing to hold yet
    assert blind.pending == pending  # ...and the command is judged on the first reading
    first = PumpReading(True, Decimal("30.0"), 0.0)
    read, _ = observe(blind, first, Now(NOW.clinical + 1, NOW.liveness + 1), CONFIG)
    assert read.pending is None
    judged = read.alarms.get("delivery_uncertain")
    assert judged is not None and not judged.active
    rogue = apply(CONFIG, state, Resumed(PumpReading(True, Decimal("40.0"), 0.0), NOW))
    changed = rogue.alarms.get("resume_changed")
    assert changed is not None and changed.raised_at == NOW.clinical
    # the channel's, latched for people, its condition over: the pump is read as it is
    assert changed.scope == state.resolve(None) and not changed.active
    assert (
        changed.message == "the pump's state changed while the safety process was down: now 40 mL/h"
    )
    assert (rogue.expected_running, rogue.expected_rate, rogue.expected_cause) == (
        True,
        Decimal("40.0"),
        "pump",
    )


def test_a_restart_under_the_emergency_stop_says_the_pump_is_stopped_again_not_held(
    std: ActiveProgram,
) -> None:
    """A pump that reads running at a restart while an emergency stop is in force (its
    stop was lost with the process) is stopped again by the first read-back (S12 holds
    until acknowledged): the restart's alarm must not tell people it is held."""
    from safety.kernel.model import Resumed

    state = evolve(_running(std, "30.0"), estopped=True)
    after = apply(CONFIG, state, Resumed(PumpReading(True, Decimal("30.0"), 0.0), NOW, "restart"))
    alarm = after.alarms.get("safety_restarted")
    assert alarm is not None and alarm.raised_at == NOW.clinical
    assert (alarm.reason, alarm.priority) == (Reason.EMERGENCY_STOPPED, Priority.HIGH)
    assert alarm.message == (
        "the safety process restarted (restart) under the emergency stop; the pump reads "
        "30 mL/h: it is stopped again at its first read-back"
    )
    _, reaction = observe(after, PumpReading(True, Decimal("30.0"), 0.0), NOW, CONFIG)
    assert reaction.actions == (StopPump("A"),)
    reading = PumpReading(True, Decimal("30.0"), 0.0)
    held = apply(CONFIG, evolve(state, estopped=False), Resumed(reading, NOW))
    alarm = held.alarms.get("safety_restarted")
    assert alarm is not None and alarm.reason is Reason.HOLD


def _lost_then_blind_restart(std: ActiveProgram) -> KernelState:
    """Running at 30 mL/h; a rise to 37.5 whose reply was lost; the process went down
    and its restart could not read the pump: the rise is still uncertain."""
    from safety.kernel.model import CommandIssued, Resumed

    state = _running(std, "30.0")
    at = Now(50.0, 50.0)
    state = apply(CONFIG, state, CommandIssued(SetRate(Decimal("37.5")), "command", at))
    state = apply(CONFIG, state, CommandFailed(SetRate(Decimal("37.5")), "timeout", "x", at))
    state = apply(CONFIG, state, Resumed(None, Now(60.0, 60.0), "restart: not reachable"))
    assert state.pending is not None
    return state


@pytest.mark.parametrize("cause", ["estop", "safety"])
def test_a_stop_sent_while_a_command_is_uncertain_is_what_the_reading_is_judged_on(
    std: ActiveProgram, cause: str
) -> None:
    """While a rise is uncertain the kernel still sends stops (an emergency stop, a cap's
    stop). The first reading shows the pump stopped at the old rate: the lost rise did
    not take effect, and the stop did. Judged against the rise alone, the old
    expectation (running) came back and the stop read as a pump that stopped by itself
    (a false high alarm, the history's cause "pump")."""
    from safety.kernel.model import CommandIssued, ReadbackReceived

    state = _lost_then_blind_restart(std)
    stop_at = Now(70.0, 70.0)
    state = apply(CONFIG, state, CommandIssued(StopPump(), cause, stop_at))
    assert state.pending is not None and state.pending.superseded
    reading = PumpReading(False, Decimal("30.0"), 0.0)
    after = apply(CONFIG, state, ReadbackReceived(reading, Now(71.0, 71.0)))
    assert after.pending is None and not after.expected_running
    assert after.alarms.get("pump_stopped") is None
    judged = after.alarms.get("delivery_uncertain")
    assert judged is not None and not judged.active
    assert judged.message.endswith("it did not take effect")
    record = after.drugs[std.drug]
    assert record.history.segments[-1].cause == cause


def test_accepting_a_replacement_ends_an_uncertain_commands_alarm(std: ActiveProgram) -> None:
    """The old pump goes with its uncertain command (never to be read back): the alarm's
    condition ends. Acknowledged and left active, it made the next lost reply on the
    channel be born acknowledged: nobody was told."""
    from safety.kernel.model import AlarmsAcknowledged, CommandIssued, PumpNamed

    state = _lost_then_blind_restart(std)
    state = apply(CONFIG, state, AlarmsAcknowledged(None, Now(61.0, 61.0)))
    state = apply(CONFIG, state, PumpNamed(state.resolve(None), "", Now(62.0, 62.0)))
    gone = state.alarms.get("delivery_uncertain")
    assert state.pending is None and (gone is None or not gone.active)  # acknowledged: gone
    at = Now(64.0, 64.0)
    state = apply(CONFIG, state, CommandIssued(SetRate(Decimal("20")), "command", at))
    state = apply(CONFIG, state, CommandFailed(SetRate(Decimal("20")), "timeout", "y", at))
    again = state.alarms.get("delivery_uncertain")
    assert again is not None and again.active and not again.acknowledged


# --------------------------------------------------------------------------- S12


def test_an_emergency_stop_while_a_restart_connects_cuts_the_relay_before_unknown_links(
    std: ActiveProgram,
) -> None:
    """A restart configures the bench, then resumes its channels one by one. A channel not
    resumed yet has an unknown link, whatever the journal said of it before: an emergency
    stop then (the stop button pressed while the restart connects) stops the channels
    read so far, cuts the relay, and only then tries the others, which may take seconds
    to give up. Resumed, a channel answers again as its link says."""
    from safety.kernel.model import BenchConfigured, ChannelConfigured, EmergencyStop, Resumed

    def configured(name: str) -> ChannelConfigured:
        return ChannelConfigured(name, "mock", "bd-plastipak-50ml", "syringe", 50.0, 50.0)

    for scope in ("bench", "channel"):
        bench = BenchConfigured((configured("A"), configured("B")), scope, NOW)
        state = apply(CONFIG, KernelState(), bench)
        assert all(c.comms_ok and c.connecting for c in state.channels.values())
        reading = PumpReading(False, Decimal(0), 0.0)
        state = apply(CONFIG, state, Resumed(reading, NOW, "restart", "A"))
        assert not state.channel("A").connecting and state.channel("B").connecting
        if scope == "bench":  # one relay, named by the first channel
            cuts: tuple[SetInterlock, ...] = (SetInterlock(False, "A"),)
        else:  # each channel's own relay
            cuts = (SetInterlock(False, "A"), SetInterlock(False, "B"))
        verdict = _decide(state, EmergencyStop("button"))
        assert verdict.actions == (StopPump("A"), *cuts, StopPump("B"))
        assert (
            verdict.message == "emergency stop (button): every pump stopped (A, B) and interlocked"
        )
        state = apply(CONFIG, state, Resumed(reading, NOW, "restart", "B"))
        verdict = _decide(state, EmergencyStop("button"))
        assert verdict.actions == (StopPump("A"), StopPump("B"), *cuts)


# --------------------------------------------------------------------------- S13


def test_accepting_a_replacement_forgets_the_old_pump_and_keeps_the_patients(
    std: ActiveProgram,
) -> None:
    """``observe.pump_replaced``, field by field: everything the kernel knew of the old
    pump goes (its name, its expectation, its counter and the container's reading of it,
    a prime, a relay role, a pending command and its alarm's condition, a deviation, the
    retries); the infusion ends now as a stop by the pump, with the high ``pump_stopped``
    alarm on the channel; the program, the container's own figures and the patient's
    history stay."""
    from safety.kernel.model import PumpNamed
    from safety.kernel.state import ContainerState, Priming, Standby

    container = ContainerState(
        name="bd-plastipak-50ml", volume_ml=50.0, capacity_ml=50.0, used_ml=3.0,
        counter_ml=3.0, read_at=90.0, primed=True, loaded_at=0.0,
    )  # fmt: skip
    lost = Pending(SetRate(Decimal("37.5")), Decimal("30.0"), True, 95.0)
    state = evolve(
        _running(std, "30.0"),
        pump_name="PUMP-1",
        pump_nameless=True,
        pending=lost,
        under_retries=2,
        last_infused_ml=3.0,
        unseen_pending=True,
        deviation_since=80.0,
        container=container,
        standby=Standby("B", "quick", 10.0),
        priming=Priming(1.0, 85.0, 2.0),
        relieved_by="B",
    )
    state = replace(
        state,
        alarms=state.alarms.raised(
            "delivery_uncertain", Reason.DELIVERY_UNCERTAIN, Priority.MEDIUM, "lost", 95.0, "A"
        ),
    )
    after = apply(CONFIG, state, PumpNamed("A", "", NOW))
    c = after.channel("A")
    assert (c.pump_name, c.pump_nameless) == ("", False)
    assert (c.expected_running, c.expected_rate, c.expected_cause, c.expected_since) == (
        False,
        Decimal(0),
        "pump",
        NOW.clinical,
    )
    assert (c.running, c.set_rate) == (False, Decimal(0))
    assert c.pending is None and c.under_retries == 0 and c.last_infused_ml is None
    assert not c.unseen_pending and c.deviation_since is None
    assert c.standby is None and c.priming is None and c.relieved_by is None
    assert c.container == replace(container, counter_ml=None, read_at=None, primed=False)
    assert c.program == std  # the patient's, not the pump's
    stopped = after.alarms.get("pump_stopped", "A")
    assert stopped is not None and stopped.active
    assert (stopped.reason, stopped.priority, stopped.raised_at) == (
        Reason.PUMP_ALARM,
        Priority.HIGH,
        NOW.clinical,
    )
    uncertain = after.alarms.get("delivery_uncertain", "A")
    assert uncertain is not None and not uncertain.active
    segments = after.drugs[std.drug].history.segments
    assert (segments[-1].start, segments[-1].amount_per_h, segments[-1].cause) == (
        NOW.clinical,
        Fraction(0),
        "pump",
    )


def test_an_uncertain_commands_end_on_one_channel_leaves_anothers_alone(
    std: ActiveProgram,
) -> None:
    """Two channels, each with a command uncertain: B's read-back (or B's pump replaced)
    ends B's condition only; A's alarm stays active. A replaced pump that was expected to
    run but is seen stopped (or the reverse) still ends its infusion with the alarm."""
    from safety.kernel.model import PumpNamed

    one = _running(std, "30.0").channel("A")
    lost = Pending(SetRate(Decimal("37.5")), Decimal("30.0"), True, 95.0)
    channels = {"A": replace(one, pending=lost), "B": replace(one, pending=lost)}
    state = replace(_running(std, "30.0"), channels=channels)
    book = state.alarms
    for name in ("A", "B"):
        book = book.raised(
            "delivery_uncertain", Reason.DELIVERY_UNCERTAIN, Priority.MEDIUM, "lost", 95.0, name
        )
    state = replace(state, alarms=book)

    def active(s: KernelState, name: str) -> bool:
        alarm = s.alarms.get("delivery_uncertain", name)
        return alarm is not None and alarm.active

    read, _ = observe(state, PumpReading(True, Decimal("37.5"), 0.0), NOW, CONFIG, "B")
    assert active(read, "A") and not active(read, "B")
    replaced = apply(CONFIG, state, PumpNamed("B", "", NOW))
    assert active(replaced, "A") and not active(replaced, "B")
    for running, expected in ((False, True), (True, False)):
        b = replace(one, running=running, expected_running=expected)
        s = replace(state, channels={"A": one, "B": b})
        after = apply(CONFIG, s, PumpNamed("B", "", NOW))
        assert after.alarms.get("pump_stopped", "B") is not None, (running, expected)


# --------------------------------------------------------------------------- the bench


def test_a_bench_configured_again_keeps_what_it_knew_of_each_channel_and_nothing_else() -> None:
    """``BenchConfigured`` at a start, field by field: a new channel gets its container
    from the config; a known one with the same container and driver keeps what it knew
    (the container as used, the pump's name); a new container starts again from the
    config, the pump's counter carried (it is the pump's); another driver forgets the
    old pump's name; a channel gone from the config that was running is a high alarm
    (one idle is dropped quietly), and a standby for it is disarmed. The controller link
    starts afresh; every channel's link is unknown until it is resumed."""
    from safety.kernel.model import BenchConfigured, ChannelConfigured
    from safety.kernel.state import ChannelState, ContainerState, Standby

    used = ContainerState(
        name="bd-plastipak-50ml", volume_ml=50.0, capacity_ml=50.0, used_ml=7.0,
        counter_ml=7.0, read_at=40.0, primed=True, loaded_at=0.0,
    )  # fmt: skip
    known = ChannelState(container=used, driver="ne1000", pump_name="NE-1000 V3.930")
    nameless = replace(known, driver="modbus", pump_name="", pump_nameless=True)
    channels = {
        "A": known,  # same container, same driver
        "B": replace(known, standby=Standby("gone", "quick", 10.0)),  # a new container
        "C": replace(known, driver="modbus", pump_name="MODBUS-1"),  # its driver changed
        "D": replace(known, standby=Standby("A", "overlap", 10.0)),
        "E": replace(known, driver=""),  # a journal from before drivers were recorded
        "F": nameless,  # a pump that gives no name, its driver changed
        "gone": replace(known, running=True),
        "idle": known,
    }
    state = KernelState(channels=channels, session="s", attached=True, hold=True)

    def spec(name: str, container: str, driver: str, kind: str = "syringe") -> ChannelConfigured:
        port = f"/dev/ttyUSB{[*'ABCDEF', 'new'].index(name)}"  # names a reboot may swap
        return ChannelConfigured(name, driver, container, kind, 60.0, 55.0, port)  # type: ignore[arg-type]

    event = BenchConfigured(
        (
            spec("A", "bd-plastipak-50ml", "ne1000"),
            spec("B", "d5w-1000ml", "ne1000", "bag"),
            spec("C", "bd-plastipak-50ml", "harvard"),
            spec("D", "bd-plastipak-50ml", "ne1000"),
            spec("E", "bd-plastipak-50ml", "ne1000"),
            spec("F", "bd-plastipak-50ml", "harvard"),
            spec("new", "bd-plastipak-60ml", "modbus"),
        ),
        "channel",
        NOW,
    )
    after = apply(CONFIG, state, event)
    assert list(after.channels) == ["A", "B", "C", "D", "E", "F", "new"]
    assert after.channel("E").pump_name == "NE-1000 V3.930"  # no driver on record: kept
    assert not after.channel("F").pump_nameless  # another driver may hear a name
    # A, B, D and E name themselves alike behind ports a reboot may swap: warned now
    alike = after.alarms.get("pump_names_alike")
    assert alike is not None and alike.active and alike.raised_at == NOW.clinical
    assert (after.interlock_scope, after.attached, after.session, after.hold) == (
        "channel",
        False,
        None,
        False,
    )
    a, b, c, d, new = (after.channel(n) for n in ("A", "B", "C", "D", "new"))
    assert all(x.connecting for x in (a, b, c, d, new))
    assert a.container == used and (a.pump_name, a.pump_nameless) == ("NE-1000 V3.930", False)
    assert (a.driver, a.serial_port) == ("ne1000", "/dev/ttyUSB0")
    fresh = ContainerState(
        name="d5w-1000ml", kind="bag", volume_ml=55.0, capacity_ml=60.0,
        counter_ml=7.0, loaded_at=NOW.clinical,
    )  # fmt: skip
    assert b.container == fresh and b.pump_name == "NE-1000 V3.930"
    assert b.standby is None  # it relieved a channel that is gone
    assert (c.driver, c.pump_name, c.pump_nameless) == ("harvard", "", False)
    assert c.container == used
    assert d.standby == Standby("A", "overlap", 10.0)
    assert new.container == replace(
        fresh, name="bd-plastipak-60ml", kind="syringe", counter_ml=None
    )
    assert (new.driver, new.pump_name, new.serial_port) == ("modbus", "", "/dev/ttyUSB6")
    removed = after.alarms.get("channel_removed")
    assert removed is not None and removed.active
    assert (removed.reason, removed.priority, removed.raised_at, removed.scope) == (
        Reason.PUMP_COMMS,
        Priority.HIGH,
        NOW.clinical,
        "",
    )
    assert removed.message == (
        "channel gone was running and is no longer in the safety process's config: its "
        "pump is unsupervised"
    )
    assert len([x for x in after.alarms.alarms if x.key == "channel_removed"]) == 1  # not idle
    kept_nameless = apply(
        CONFIG,
        KernelState(channels={"C": nameless}),
        BenchConfigured((spec("C", "bd-plastipak-50ml", "modbus"),), "bench", NOW),
    )
    assert kept_nameless.channel("C").pump_nameless  # the same driver: still nameless


def test_each_command_issued_sets_what_it_asks_for_before_it_is_sent() -> None:
    """``CommandIssued`` (journaled before the command goes out, S14), per kind: a rate
    set expects its rate (a retry keeps the retry count, anything else starts it again), a
    start and a stop expect running or not (a start ends a relief's note), each marks the
    channel unread until a read-back; a prime starts its bookkeeping from the pump's
    counter; the interlock is the bench's relay (every channel) or the channel's own."""
    from safety.kernel.model import CommandIssued, PrimePump
    from safety.kernel.state import ChannelState, ContainerState, Priming

    base = ChannelState(under_retries=2, relieved_by="B", container=ContainerState(counter_ml=4.0))
    state = KernelState(channels={"A": base, "B": ChannelState()})
    at = Now(70.0, 70.0)

    def issued(action: object, cause: str = "command") -> ChannelState:
        return apply(CONFIG, state, CommandIssued(action, cause, at)).channel("A")  # type: ignore[arg-type]

    rate = issued(SetRate(Decimal("12.5"), "A"))
    assert (rate.expected_rate, rate.expected_cause, rate.expected_since) == (
        Decimal("12.5"),
        "command",
        70.0,
    )
    assert rate.unread_command and rate.under_retries == 0
    retry = issued(SetRate(Decimal("12.5"), "A"), "retry")
    assert retry.under_retries == 2 and retry.expected_cause == "retry"
    start = issued(StartPump("A"), "relay")
    assert (start.expected_running, start.expected_cause, start.expected_since) == (
        True,
        "relay",
        70.0,
    )
    assert start.unread_command and start.relieved_by is None
    stop = issued(StopPump("A"), "estop")
    assert (stop.expected_running, stop.expected_cause, stop.expected_since) == (
        False,
        "estop",
        70.0,
    )
    assert stop.unread_command and stop.relieved_by == "B"
    prime = issued(PrimePump(Decimal("0.5"), "A"), "prime")
    assert prime.priming == Priming(0.5, 70.0, 4.0) and not prime.unread_command
    for scope, cut in (("bench", {"A": False, "B": False}), ("channel", {"A": False, "B": True})):
        s = replace(state, interlock_scope=scope)
        after = apply(CONFIG, s, CommandIssued(SetInterlock(False, "A"), "estop", at))
        assert {n: c.interlock_enabled for n, c in after.channels.items()} == cut, scope
