"""The infusion state machine: the whole transition table, and callbacks that fail.

``EXPECTED`` below is written out by hand, independently of ``controller.machine.RULES``:
every (state, trigger) pair of the full product is either allowed with its destination
or refused. The test compares the two pair by pair, fires every allowed pair (with every
combination of safety-process facts for the pairs whose destination depends on them)
and checks every refusal's sentence.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from controller.errors import ControllerError
from controller.machine import (
    INTERNAL_TRIGGERS,
    OPERATOR_TRIGGERS,
    RULES,
    Change,
    Facts,
    InfusionMachine,
    Resolve,
    State,
    TransitionRefused,
    Trigger,
    refusal,
    resolve,
    rule_for,
    settle,
)

S, T, R = State, Trigger, Resolve
ALL = tuple(State)
ORDINARY = (S.IDLE, S.PROGRAMMED, S.INFUSING, S.TITRATING, S.WEANING, S.STOPPED)

#: the specification, pair by pair (absent = refused)
EXPECTED: dict[tuple[State, Trigger], State | Resolve] = {
    (S.IDLE, T.PROGRAM): S.PROGRAMMED,
    (S.PROGRAMMED, T.REPROGRAM): S.PROGRAMMED,
    (S.STOPPED, T.REPROGRAM): S.PROGRAMMED,
    (S.INFUSING, T.REPROGRAM): S.INFUSING,  # the same solution, in place (safety decides)
    (S.PROGRAMMED, T.START): S.INFUSING,
    (S.STOPPED, T.START): S.INFUSING,
    (S.INFUSING, T.TITRATE_TO): S.TITRATING,
    (S.INFUSING, T.WEAN): S.WEANING,
    (S.INFUSING, T.STOP): R.STOP,
    (S.TITRATING, T.STOP): R.STOP,
    (S.WEANING, T.STOP): R.STOP,
    (S.TITRATING, T.RESUME): S.INFUSING,
    (S.WEANING, T.RESUME): S.INFUSING,
    (S.HOLD, T.RESUME): R.SETTLE,
    (S.ALARM, T.ACKNOWLEDGE): R.SETTLE,
    (S.EMERGENCY_STOPPED, T.ACKNOWLEDGE): R.SETTLE,
    (S.TITRATING, T.PLAN_DONE): R.PLAN_END,
    (S.WEANING, T.PLAN_DONE): R.PLAN_END,
    **{(s, T.ACKNOWLEDGE): s for s in ORDINARY},
    **{(s, T.EMERGENCY_STOP): S.EMERGENCY_STOPPED for s in ALL},
    **{(s, T.ALARM_RAISED): S.ALARM for s in (*ORDINARY, S.ALARM)},
    **{(s, T.LINK_LOST): S.HOLD for s in ALL},
    **{(s, T.SAFETY_HOLD): S.HOLD for s in ALL},
    **{(s, T.RESYNC): R.SETTLE for s in ALL},
}

#: the words each state's refusals must contain
STATE_WORDS = {
    S.IDLE: "idle",
    S.PROGRAMMED: "programmed",
    S.INFUSING: "infusing",
    S.TITRATING: "titrating",
    S.WEANING: "weaning",
    S.STOPPED: "stopped",
    S.ALARM: "alarm",
    S.HOLD: "hold",
    S.EMERGENCY_STOPPED: "emergency-stopped",
}

FACT_NAMES = ("program", "running", "has_run", "estopped", "hold", "alarm", "wean_before_stop")
ALL_FACTS = [Facts(*values) for values in itertools.product((False, True), repeat=7)]

PAIRS = list(itertools.product(ALL, tuple(Trigger)))


def test_triggers_are_the_operator_ones_and_the_internal_ones() -> None:
    assert set(OPERATOR_TRIGGERS) | set(INTERNAL_TRIGGERS) == set(Trigger)
    assert not set(OPERATOR_TRIGGERS) & set(INTERNAL_TRIGGERS)
    assert {t.value for t in OPERATOR_TRIGGERS} == {
        "program",
        "start",
        "titrate_to",
        "wean",
        "stop",
        "emergency_stop",
        "acknowledge",
        "resume",
        "reprogram",
    }
    assert {s.value for s in State} >= {
        "idle",
        "programmed",
        "infusing",
        "titrating",
        "weaning",
        "stopped",
        "alarm",
        "hold",
        "emergency_stopped",
    }


def test_the_table_has_one_rule_per_pair_at_most() -> None:
    keys = [(r.source, r.trigger) for r in RULES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(("state", "trigger"), PAIRS, ids=[f"{s}-{t}" for s, t in PAIRS])
def test_every_pair_is_allowed_with_its_effect_or_refused_clearly(
    state: State, trigger: Trigger
) -> None:
    expected = EXPECTED.get((state, trigger))
    rule = rule_for(state, trigger)
    if expected is None:
        assert rule is None, f"{state}/{trigger} should be refused"
        message = refusal(state, trigger)
        assert message is not None
        assert message.startswith("cannot ")
        assert STATE_WORDS[state] in message
        assert "; " in message  # and what to do about it
        machine = InfusionMachine(initial=state)
        with pytest.raises(TransitionRefused) as info:
            machine.check(trigger)
        assert info.value.message == message
        assert info.value.state is state and info.value.trigger is trigger
        with pytest.raises(TransitionRefused):
            machine.fire(trigger, Facts())
        assert machine.state is state  # nothing changed
        assert machine.history == []
        return
    assert rule is not None and rule.dest == expected
    assert refusal(state, trigger) is None
    facts_to_try = ALL_FACTS if isinstance(expected, Resolve) else [Facts()]
    for facts in facts_to_try:
        machine = InfusionMachine(initial=state)
        machine.check(trigger)
        change = machine.fire(trigger, facts)
        want = resolve(expected, facts)
        assert machine.state is want, f"{state}/{trigger} with {facts}"
        assert change.complete and change.source is state and change.dest is want


def _facts_id(facts: Facts) -> str:
    return "".join(str(int(v)) for v in vars(facts).values())


@pytest.mark.parametrize("facts", ALL_FACTS, ids=_facts_id)
def test_settle_follows_the_safety_process(facts: Facts) -> None:
    state = settle(facts)
    if facts.hold:
        assert state is S.HOLD
    elif facts.estopped:
        assert state is S.EMERGENCY_STOPPED
    elif facts.alarm:
        assert state is S.ALARM
    elif facts.running:
        assert state is S.INFUSING
    elif facts.program:
        assert state is (S.STOPPED if facts.has_run else S.PROGRAMMED)
    else:
        assert state is S.IDLE


def test_stop_weans_when_the_plan_starts_with_wean_steps() -> None:
    machine = InfusionMachine(initial=S.INFUSING)
    assert machine.fire(T.STOP, Facts(wean_before_stop=True)).dest is S.WEANING
    assert machine.fire(T.PLAN_DONE, Facts(running=False)).dest is S.STOPPED
    machine = InfusionMachine(initial=S.INFUSING)
    assert machine.fire(T.STOP, Facts(wean_before_stop=False)).dest is S.STOPPED


def test_the_brief_example_sentence() -> None:
    assert refusal(S.WEANING, T.TITRATE_TO) == (
        "cannot titrate while weaning; resume first (ends the wean in progress at the "
        "current dose), then retry"
    )


def test_reprogram_while_titrating_says_finish_the_plan_first() -> None:
    message = refusal(S.TITRATING, T.REPROGRAM)
    assert message is not None


def test_an_invalid_trigger_is_never_a_machine_error() -> None:
    machine = InfusionMachine(initial=S.WEANING)
    with pytest.raises(ControllerError) as info:
        machine.fire(T.TITRATE_TO)
    assert type(info.value) is TransitionRefused
    assert "MachineError" not in str(info.value)


# --------------------------------------------------------------------------- callbacks


def test_a_trigger_fired_from_inside_a_transition_is_refused_not_looped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = InfusionMachine(initial=S.HOLD)
    nested: list[Change] = []

    class Reentrant:
        """Facts whose reading, inside the transition's condition, fires a trigger."""

        program = running = has_run = estopped = alarm = wean_before_stop = False
        reads = 0

        @property
        def hold(self) -> bool:
            type(self).reads += 1
            if type(self).reads > 1:  # the pre-check reads once; then the condition
                nested.append(machine.fire(T.EMERGENCY_STOP))  # allowed from anywhere
            return False

    with caplog.at_level(logging.CRITICAL, logger="controller.machine"):
        change = machine.fire(T.RESUME, Reentrant())  # type: ignore[arg-type]
    assert nested == []  # refused, not queued and not run
    assert machine.state is S.HOLD
    assert any("re-entrant" in f for f in change.faults)
    assert Reentrant.reads < 10
    assert machine.fire(T.EMERGENCY_STOP).dest is S.EMERGENCY_STOPPED  # and it still works


def test_a_raising_condition_halts_the_transition_and_is_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky:
        """Facts that read fine once (the pre-check) and raise inside the transition's
        condition, the way a half-updated report might."""

        program = running = has_run = estopped = alarm = wean_before_stop = False
        reads = 0

        @property
        def hold(self) -> bool:
            type(self).reads += 1
            if type(self).reads > 1:
                raise ValueError("facts unreadable")
            return False

    machine = InfusionMachine(initial=S.HOLD)
    with caplog.at_level(logging.CRITICAL, logger="controller.machine"):
        change = machine.fire(T.RESUME, Flaky())  # type: ignore[arg-type]
    assert machine.state is S.HOLD  # halted before any change
    assert change.dest is S.HOLD and change.expected is S.IDLE
    assert any("facts unreadable" in f for f in change.faults)
    assert Flaky.reads < 10  # the failing condition was not retried in a loop
    assert machine.fire(T.RESUME, Facts(running=True, program=True)).dest is S.INFUSING


def test_a_raising_observer_is_recorded_after_the_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Any] = []
    machine = InfusionMachine()
    machine.add_observer(seen.append)

    def broken(change: object) -> None:
        raise ZeroDivisionError("observer bug")

    machine.add_observer(broken)
    with caplog.at_level(logging.CRITICAL, logger="controller.machine"):
        change = machine.fire(T.PROGRAM)
    assert machine.state is S.PROGRAMMED
    assert len(seen) == 1 and seen[0].dest is S.PROGRAMMED
    assert any("ZeroDivisionError" in f for f in change.faults)
    assert machine.history[-1] == change


def test_allowed_triggers_lists_the_operator_choices() -> None:
    machine = InfusionMachine(initial=S.WEANING)
    assert set(machine.allowed_triggers()) == {
        T.STOP,
        T.EMERGENCY_STOP,
        T.ACKNOWLEDGE,
        T.RESUME,
    }
    assert machine.fire(T.RESUME).dest is S.INFUSING
