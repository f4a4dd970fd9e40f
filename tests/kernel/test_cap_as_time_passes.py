"""S3 as time passes (``observe._cap``): the warning's instant, minutes and words, the
stop, which cap a warning names, and when each alarm's condition is gone.

The bench tests reach the cap through hours of seeded history and check that the pump
stops in time; here the state is built by hand so each edge is met to the second and
each alarm is asserted whole (key, reason, priority, scope, instant, sentence).

Figures: norepinephrine at 16 mcg/mL, cap 68 mg per 24 h. The history holds 60 mg
counted at t=1000 s (a bolus) and a running rate of 1800 mcg/h (0.5 mcg/s, 112.5 mL/h)
from t=0: at t the drug given in the window is 60 000 + t/2 mcg, so the headroom is
8000 - t/2 mcg and lasts (16 000 - t) s at that rate. The warning (2 h of headroom)
begins at t = 8800 s; the guard (60 s of headroom) stops at t = 15 940 s. A rate of
0.5 mcg/s keeps apart the figures a rate of 1 would make equal (headroom / rate and
headroom * rate).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.alarms import Alarm, Priority
from safety.kernel.config import KernelConfig
from safety.kernel.history import RateHistory
from safety.kernel.model import Now, StopPump
from safety.kernel.observe import tick
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    PriorLimits,
    load_program,
    single_channel,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
SCOPE = "drug:norepinephrine"
RATE_ML_H = Decimal("112.5")  # 1800 mcg/h at 16 mcg/mL
WARN_AT = 8800.0
STOP_AT = 15_940.0
CAP = "68 mg per 24 h"


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def history(*, running: bool = True, bolus: float = 60_000.0) -> RateHistory:
    h = RateHistory().with_rate(0.0, Fraction(1800))
    h = h.with_amount(1000.0, bolus, "counted after a gap")
    return h.with_rate(1000.0, Fraction(0)) if not running else h


def state_of(
    program: ActiveProgram,
    *,
    running: bool = True,
    bolus: float = 60_000.0,
    priors: tuple[PriorLimits, ...] = (),
) -> KernelState:
    """Channel A giving ``program`` at 112.5 mL/h (or stopped since t=1000 s)."""
    record = DrugRecord(history(running=running, bolus=bolus), program.limits, priors)
    return single_channel(
        drugs={program.drug: record},
        program=program,
        running=running,
        set_rate=RATE_ML_H,
        expected_running=running,
        expected_rate=RATE_ML_H,
        session="s",
        attached=True,
    )


def at(state: KernelState, t: float) -> tuple[KernelState, tuple[object, ...]]:
    after, reaction = tick(state, Now(t, 50.0), CONFIG)
    assert reaction.cause == "safety"
    return after, reaction.actions


def alarm(state: KernelState, key: str) -> Alarm:
    found = state.alarms.get(key, SCOPE)
    assert found is not None, f"no {key} in {SCOPE}: {state.alarms}"
    return found


def warning_words(minutes: int, shown: str = CAP) -> str:
    return f"cumulative cap ({shown}) will be reached in {minutes} min at this rate: wean now"


# --------------------------------------------------------------------------- the warning


def test_the_warning_begins_exactly_when_two_hours_of_headroom_are_left(
    std: ActiveProgram,
) -> None:
    """One second before (7201 s left): nothing; at it: medium, in the drug's scope."""
    before, actions = at(state_of(std), WARN_AT - 1.0)
    assert actions == ()
    assert before.alarms.get("cap_warning") is None and before.alarms.get("cap") is None
    after, actions = at(state_of(std), WARN_AT)
    assert actions == ()
    warning = alarm(after, "cap_warning")
    assert (warning.reason, warning.priority, warning.raised_at, warning.active) == (
        Reason.CUMULATIVE_CAP,
        Priority.MEDIUM,
        WARN_AT,
        True,
    )
    assert warning.message == warning_words(120)
    assert after.alarms.get("cap") is None


@pytest.mark.parametrize(("t", "minutes"), [(10_000.0, 100), (15_000.0, 17), (15_939.0, 1)])
def test_the_warning_says_in_how_many_minutes_the_cap_is_reached_at_this_rate(
    std: ActiveProgram, t: float, minutes: int
) -> None:
    """(16 000 - t) s left: 100 min, 16.7 min (17), 61 s (1 min)."""
    after, actions = at(state_of(std), t)
    assert actions == ()
    assert alarm(after, "cap_warning").message == warning_words(minutes)


# --------------------------------------------------------------------------- the stop


def test_the_guard_stops_with_a_high_alarm_in_the_drugs_scope(std: ActiveProgram) -> None:
    after, actions = at(state_of(std), STOP_AT)
    assert actions == (StopPump("A"),)
    cap = alarm(after, "cap")
    assert (cap.reason, cap.priority, cap.raised_at, cap.active) == (
        Reason.CUMULATIVE_CAP,
        Priority.HIGH,
        STOP_AT,
        True,
    )
    assert cap.message == f"cumulative cap reached ({CAP}): pump stopped; it is a hard limit"


def test_the_guard_stops_every_running_channel_of_the_drug(std: ActiveProgram) -> None:
    state = state_of(std)
    a = state.channel("A")
    state = state.with_channel("B", program=std, running=True, set_rate=a.set_rate)
    state = state.with_channel("C", program=std, running=False)
    _, actions = at(state, STOP_AT)
    assert actions == (StopPump("A"), StopPump("B"))


# --------------------------------------------------------------------------- conditions gone


def test_a_stopped_drug_past_its_cap_raises_nothing_and_clears_both_alarms(
    std: ActiveProgram,
) -> None:
    """Nothing runs: no rate to project (and nothing divided by it), no stop to make;
    the cap and its warning are gone, though the window still holds more than the cap."""
    raised = state_of(std, running=False, bolus=70_000.0)
    for key, priority in (("cap", Priority.HIGH), ("cap_warning", Priority.MEDIUM)):
        alarms = raised.alarms.raised(key, Reason.CUMULATIVE_CAP, priority, "x", 0.0, SCOPE)
        raised = replace(raised, alarms=alarms)
    after, actions = at(raised, 5000.0)
    assert actions == ()
    assert not alarm(after, "cap").active
    assert not alarm(after, "cap_warning").active


def test_a_stopped_drug_at_its_cap_raises_no_alarm(std: ActiveProgram) -> None:
    after, actions = at(state_of(std, running=False, bolus=70_000.0), 5000.0)
    assert actions == ()
    assert after.alarms.alarms == ()


def test_the_cap_alarm_stays_while_the_drug_runs_and_the_warning_goes_with_the_headroom(
    std: ActiveProgram,
) -> None:
    """Running with ample headroom: the warning's condition is gone; the cap alarm's
    is not (it goes once nothing runs)."""
    state = state_of(std, bolus=1000.0)
    for key, priority in (("cap", Priority.HIGH), ("cap_warning", Priority.MEDIUM)):
        alarms = state.alarms.raised(key, Reason.CUMULATIVE_CAP, priority, "x", 0.0, SCOPE)
        state = replace(state, alarms=alarms)
    after, actions = at(state, 5000.0)
    assert actions == ()
    assert alarm(after, "cap").active
    assert not alarm(after, "cap_warning").active


# --------------------------------------------------------------------------- several caps


def prior_with(std: ActiveProgram, **cap: object) -> PriorLimits:
    assert std.limits.cap is not None
    limits = replace(std.limits, cap=std.limits.cap.model_copy(update=cap))
    return PriorLimits(limits, until=1e9, why="earlier")


NOTE = " (still in force until t=1000000000 s: earlier)"


def test_the_warning_names_the_cap_reached_first(std: ActiveProgram) -> None:
    """An earlier program's 67 mg per 24 h is reached 2000 s before the 68 mg cap."""
    state = state_of(std, priors=(prior_with(std, amount=Decimal(67)),))
    after, actions = at(state, 10_000.0)
    assert actions == ()
    assert alarm(after, "cap_warning").message == warning_words(67, f"67 mg per 24 h{NOTE}")


def test_of_two_caps_reached_at_the_same_minute_the_warning_names_the_programs_own(
    std: ActiveProgram,
) -> None:
    """68 mg per 12 h holds the same drug now (all of it was given in the last 12 h):
    the same headroom, so the program's own cap is named."""
    state = state_of(std, priors=(prior_with(std, window_h=Decimal(12)),))
    after, _ = at(state, 10_000.0)
    assert alarm(after, "cap_warning").message == warning_words(100)


def test_a_drug_clears_its_own_cap_alarms_only(std: ActiveProgram) -> None:
    """Another drug's cap and warning (raised first in the book) stay as they are when
    this drug's conditions are gone."""
    other = "drug:vasopressin"
    state = state_of(std, running=False, bolus=1000.0)
    for scope in (other, SCOPE):
        for key, priority in (("cap", Priority.HIGH), ("cap_warning", Priority.MEDIUM)):
            alarms = state.alarms.raised(key, Reason.CUMULATIVE_CAP, priority, "x", 0.0, scope)
            state = replace(state, alarms=alarms)
    after, _ = at(state, 5000.0)
    for key in ("cap", "cap_warning"):
        assert not alarm(after, key).active
        kept = after.alarms.get(key, other)
        assert kept is not None and kept.active


def test_a_drug_loaded_but_never_given_has_no_cap_to_watch(std: ActiveProgram) -> None:
    """No history yet (nothing ran): nothing to project, nothing raised."""
    state = single_channel(
        drugs={std.drug: DrugRecord(RateHistory(), std.limits)},
        program=std,
        session="s",
        attached=True,
    )
    after, actions = at(state, 5000.0)
    assert actions == ()
    assert after.alarms.alarms == ()
