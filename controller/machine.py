"""The operator-side infusion state machine (a ``transitions`` Machine) and its table.

The machine mirrors what the operator is doing with the infusion; it never talks to the
pump or to the safety process. The session (``controller.session``) asks the machine
whether a trigger is allowed (``check``), does the I/O (a request to the safety process),
and only when the safety process has accepted it fires the trigger (``fire``). So:

- an invalid trigger is refused *before* anything is sent, with an operator sentence that
  names the state and what to do ("cannot titrate while weaning; resume first ..."),
  never a ``MachineError`` traceback;
- no I/O inside the machine: its only callbacks are the conditions that pick a destination
  from the reported ``Facts`` (pure); the session does its I/O before it fires, and
  journals the ``Change`` that ``fire`` returns (and any fault in it) afterwards;
- an exception inside a callback (a condition, or an observer) is caught by the
  machine's ``on_exception`` handler or by ``fire``, which only record it. Neither fires
  another trigger, so a failing callback can never loop. (``transitions`` pitfalls, read for this:
  an ``on_exception`` handler that itself changes state recurses when that change fails
  again, pytransitions issue #616; ``on_exception`` also swallows the ``MachineError`` of
  an invalid trigger, #552; an exception in an ``after``/``on_enter`` callback leaves the
  state already changed, with no rollback, #202.) A trigger fired from inside a callback
  is refused and recorded, never queued.

The transition table is data (``RULES``); ``refusal`` words every pair the table does not
allow, so a test can enumerate the full product of states and triggers.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from controller.errors import ControllerError

log = logging.getLogger("controller.machine")


class State(enum.StrEnum):
    IDLE = "idle"  # no program loaded
    PROGRAMMED = "programmed"  # a program is loaded, never started since
    INFUSING = "infusing"  # running at a steady dose, no plan executing
    TITRATING = "titrating"  # a titration plan (rise or fall to a dose) is executing
    WEANING = "weaning"  # a wean plan (gradual fall, possibly ending in a stop) is executing
    STOPPED = "stopped"  # stopped, program still loaded
    ALARM = "alarm"  # an alarm needs the operator; plans are cancelled
    HOLD = "hold"  # safety link lost, or the safety process holds: nothing is sent
    EMERGENCY_STOPPED = "emergency_stopped"


class Trigger(enum.StrEnum):
    # operator triggers
    PROGRAM = "program"
    START = "start"
    TITRATE_TO = "titrate_to"
    WEAN = "wean"
    STOP = "stop"
    EMERGENCY_STOP = "emergency_stop"
    ACKNOWLEDGE = "acknowledge"
    RESUME = "resume"
    REPROGRAM = "reprogram"
    # internal triggers (the session fires them from what the safety process reports)
    PLAN_DONE = "plan_done"
    ALARM_RAISED = "alarm_raised"
    LINK_LOST = "link_lost"
    SAFETY_HOLD = "safety_hold"
    RESYNC = "resync"


OPERATOR_TRIGGERS: tuple[Trigger, ...] = (
    Trigger.PROGRAM,
    Trigger.START,
    Trigger.TITRATE_TO,
    Trigger.WEAN,
    Trigger.STOP,
    Trigger.EMERGENCY_STOP,
    Trigger.ACKNOWLEDGE,
    Trigger.RESUME,
    Trigger.REPROGRAM,
)
INTERNAL_TRIGGERS: tuple[Trigger, ...] = (
    Trigger.PLAN_DONE,
    Trigger.ALARM_RAISED,
    Trigger.LINK_LOST,
    Trigger.SAFETY_HOLD,
    Trigger.RESYNC,
)


class Resolve(enum.StrEnum):
    """Destinations that depend on what the safety process reports (``Facts``)."""

    SETTLE = "settle"  # wherever the safety process's state puts us
    STOP = "stop"  # weaning when the stop plan starts with wean steps, else stopped
    PLAN_END = "plan_end"  # infusing if the pump runs at the plan's end, else stopped


@dataclass(frozen=True)
class Facts:
    """What the safety process reports, reduced to what decides a destination."""

    program: bool = False
    running: bool = False
    has_run: bool = False  # the program has infused since it was loaded
    estopped: bool = False
    hold: bool = False  # the safety process holds (S11) or delivery is uncertain (S10)
    alarm: bool = False  # an unacknowledged alarm needs the operator
    wean_before_stop: bool = False  # the stop plan begins with wean steps


def settle(facts: Facts) -> State:
    """The state the safety process's report puts the controller in (re-attach, ack)."""
    if facts.hold:
        return State.HOLD
    if facts.estopped:
        return State.EMERGENCY_STOPPED
    if facts.alarm:
        return State.ALARM
    if facts.running:
        return State.INFUSING
    if facts.program:
        return State.STOPPED if facts.has_run else State.PROGRAMMED
    return State.IDLE


def resolve(dest: State | Resolve, facts: Facts) -> State:
    if isinstance(dest, State):
        return dest
    if dest is Resolve.SETTLE:
        return settle(facts)
    if dest is Resolve.STOP:
        return State.WEANING if facts.wean_before_stop else State.STOPPED
    return State.INFUSING if facts.running else State.STOPPED


@dataclass(frozen=True)
class Rule:
    trigger: Trigger
    source: State
    dest: State | Resolve


_RUNNING = (State.INFUSING, State.TITRATING, State.WEANING)
_ORDINARY = (State.IDLE, State.PROGRAMMED, *_RUNNING, State.STOPPED)

#: The whole table: every (trigger, source) pair not listed here is refused (``refusal``).
RULES: tuple[Rule, ...] = (
    Rule(Trigger.PROGRAM, State.IDLE, State.PROGRAMMED),
    Rule(Trigger.REPROGRAM, State.PROGRAMMED, State.PROGRAMMED),
    Rule(Trigger.REPROGRAM, State.STOPPED, State.PROGRAMMED),
    # the same solution re-programmed while it runs (after a patient update or a library
    # change): the safety process refuses anything else while infusing
    Rule(Trigger.REPROGRAM, State.INFUSING, State.INFUSING),
    Rule(Trigger.START, State.PROGRAMMED, State.INFUSING),
    Rule(Trigger.START, State.STOPPED, State.INFUSING),
    Rule(Trigger.TITRATE_TO, State.INFUSING, State.TITRATING),
    Rule(Trigger.WEAN, State.INFUSING, State.WEANING),
    *(Rule(Trigger.STOP, s, Resolve.STOP) for s in _RUNNING),
    # S12: an emergency stop is never refused, from any state
    *(Rule(Trigger.EMERGENCY_STOP, s, State.EMERGENCY_STOPPED) for s in State),
    *(Rule(Trigger.ACKNOWLEDGE, s, s) for s in _ORDINARY),
    Rule(Trigger.ACKNOWLEDGE, State.ALARM, Resolve.SETTLE),
    Rule(Trigger.ACKNOWLEDGE, State.EMERGENCY_STOPPED, Resolve.SETTLE),
    Rule(Trigger.RESUME, State.TITRATING, State.INFUSING),
    Rule(Trigger.RESUME, State.WEANING, State.INFUSING),
    Rule(Trigger.RESUME, State.HOLD, Resolve.SETTLE),
    Rule(Trigger.PLAN_DONE, State.TITRATING, Resolve.PLAN_END),
    Rule(Trigger.PLAN_DONE, State.WEANING, Resolve.PLAN_END),
    *(Rule(Trigger.ALARM_RAISED, s, State.ALARM) for s in (*_ORDINARY, State.ALARM)),
    *(Rule(Trigger.LINK_LOST, s, State.HOLD) for s in State),
    *(Rule(Trigger.SAFETY_HOLD, s, State.HOLD) for s in State),
    *(Rule(Trigger.RESYNC, s, Resolve.SETTLE) for s in State),
)


def rule_for(state: State, trigger: Trigger) -> Rule | None:
    for rule in RULES:
        if rule.source is state and rule.trigger is trigger:
            return rule
    return None


def possible_destinations(dest: State | Resolve) -> tuple[State, ...]:
    if isinstance(dest, State):
        return (dest,)
    if dest is Resolve.STOP:
        return (State.WEANING, State.STOPPED)
    if dest is Resolve.PLAN_END:
        return (State.INFUSING, State.STOPPED)
    return tuple(State)


# --------------------------------------------------------------------------- refusals

_DOING: dict[Trigger, str] = {
    Trigger.PROGRAM: "load a program",
    Trigger.REPROGRAM: "change the program",
    Trigger.START: "start",
    Trigger.TITRATE_TO: "titrate",
    Trigger.WEAN: "wean",
    Trigger.STOP: "stop",
    Trigger.EMERGENCY_STOP: "emergency-stop",
    Trigger.ACKNOWLEDGE: "acknowledge alarms",
    Trigger.RESUME: "resume",
    Trigger.PLAN_DONE: "finish a plan",
    Trigger.ALARM_RAISED: "raise an alarm",
    Trigger.LINK_LOST: "lose the link",
    Trigger.SAFETY_HOLD: "hold",
    Trigger.RESYNC: "resynchronise",
}

_BEING: dict[State, str] = {
    State.IDLE: "idle (no program loaded)",
    State.PROGRAMMED: "programmed (not started)",
    State.INFUSING: "infusing",
    State.TITRATING: "titrating",
    State.WEANING: "weaning",
    State.STOPPED: "stopped",
    State.ALARM: "in alarm",
    State.HOLD: "on hold (safety link lost or the safety process is holding)",
    State.EMERGENCY_STOPPED: "emergency-stopped",
}


def _advice(state: State, trigger: Trigger) -> str:
    """What the operator should do instead (only called for refused pairs)."""
    if trigger in INTERNAL_TRIGGERS:
        return "internal trigger not expected here; nothing was changed"
    if state is State.HOLD:
        return (
            "nothing is sent while on hold; resume first (re-attaches to the safety process "
            "and re-synchronises without changing the rate)"
        )
    if state is State.EMERGENCY_STOPPED:
        return "acknowledge the emergency stop first (ack)"
    if state is State.ALARM:
        return "acknowledge the alarm first (ack); estop stops at once"
    if trigger is Trigger.PROGRAM:
        if state in _RUNNING:
            return "an infusion is running: stop it first, then reprogram"
        return "a program is already loaded; use reprogram to change it"
    if trigger is Trigger.REPROGRAM:
        if state is State.IDLE:
            return "no program is loaded; use program"
        return (
            "changing the program ends the running infusion: stop it first (a wean-only "
            "drug is weaned to its stop threshold, then stopped), then reprogram"
        )
    if trigger is Trigger.START:
        if state is State.IDLE:
            return "load a program first (program)"
        return "it is already running; use titrate to change the dose"
    if trigger in (Trigger.TITRATE_TO, Trigger.WEAN):
        if state in (State.TITRATING, State.WEANING):
            doing = "titration" if state is State.TITRATING else "wean"
            return f"resume first (ends the {doing} in progress at the current dose), then retry"
        if state is State.IDLE:
            return "load a program and start first"
        return "nothing is infusing; start first"
    if trigger is Trigger.STOP:
        return "nothing is infusing"
    if trigger is Trigger.RESUME:
        return "there is no plan, hold or alarm to resume from"
    return "not possible in this state"  # pragma: no cover - every pair is worded above


def refusal(state: State, trigger: Trigger) -> str | None:
    """The operator sentence for a pair the table refuses; None when it is allowed."""
    if rule_for(state, trigger) is not None:
        return None
    return f"cannot {_DOING[trigger]} while {_BEING[state]}; {_advice(state, trigger)}"


class TransitionRefused(ControllerError):
    """A trigger the transition table does not allow in the current state."""

    def __init__(self, state: State, trigger: Trigger, message: str) -> None:
        super().__init__(message, code="invalid_in_state")
        self.state = state
        self.trigger = trigger


# --------------------------------------------------------------------------- the machine


@dataclass(frozen=True)
class Change:
    """One fired trigger: where it went, and any callback faults (recorded, not raised)."""

    trigger: Trigger
    source: State
    dest: State
    expected: State
    faults: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.dest is self.expected and not self.faults


Observer = Callable[[Change], None]


@dataclass
class _Model:
    """What ``transitions`` decorates with trigger methods; kept apart from our API."""

    state: str = State.IDLE.value
    extra: dict[str, Any] = field(default_factory=dict)


class InfusionMachine:
    """The controller's state, changed only by allowed triggers.

    Observers are called after every fired trigger, outside the transitions callbacks;
    they must not block. One that raises is recorded as a fault of that change.
    """

    def __init__(self, initial: State = State.IDLE) -> None:
        self._model = _Model(initial.value)
        self._firing = False
        self._faults: list[str] = []
        self._observers: list[Observer] = []
        self.history: list[Change] = []
        transitions: list[dict[str, Any]] = []
        for rule in RULES:
            for dest in possible_destinations(rule.dest):
                entry: dict[str, Any] = {
                    "trigger": rule.trigger.value,
                    "source": rule.source.value,
                    "dest": dest.value,
                }
                if not isinstance(rule.dest, State):
                    entry["conditions"] = [_leads_to(rule.dest, dest)]
                transitions.append(entry)
        self._machine = Machine(
            model=self._model,
            states=[s.value for s in State],
            transitions=transitions,
            initial=initial.value,
            auto_transitions=False,
            send_event=True,
            on_exception=[self._on_exception],
            queued=False,
        )

    # ------------------------------------------------------------------ queries
    @property
    def state(self) -> State:
        return State(self._model.state)

    def allowed(self, trigger: Trigger) -> bool:
        return rule_for(self.state, trigger) is not None

    def allowed_triggers(self, *, operator_only: bool = True) -> tuple[Trigger, ...]:
        pool = OPERATOR_TRIGGERS if operator_only else tuple(Trigger)
        return tuple(t for t in pool if self.allowed(t))

    def check(self, trigger: Trigger) -> None:
        """Raise ``TransitionRefused`` (operator words) unless ``trigger`` is allowed now."""
        message = refusal(self.state, trigger)
        if message is not None:
            raise TransitionRefused(self.state, trigger, message)

    def destination(self, trigger: Trigger, facts: Facts) -> State:
        self.check(trigger)
        rule = rule_for(self.state, trigger)
        assert rule is not None
        return resolve(rule.dest, facts)

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    # ------------------------------------------------------------------ firing
    def fire(self, trigger: Trigger, facts: Facts | None = None) -> Change:
        """Fire an allowed trigger. Never raises for a callback failure: it is recorded in
        ``Change.faults``; the state is then wherever ``transitions`` left it, which is
        always the source or the destination (there is no third possibility)."""
        facts = facts or Facts()
        if self._firing:
            message = (
                f"re-entrant trigger {trigger.value!r} from a callback refused (state "
                f"{self.state.value}); callbacks must not fire triggers"
            )
            log.error(message)
            raise TransitionRefused(self.state, trigger, message)
        source = self.state
        expected = self.destination(trigger, facts)
        self._faults = []
        self._firing = True
        try:
            method = getattr(self._model, trigger.value)
            method(facts=facts)
        except Exception as exc:  # on_exception should have caught it; record regardless
            self._faults.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._firing = False
        dest = self.state
        if dest is not expected:
            self._faults.append(
                f"{trigger.value} from {source.value} ended in {dest.value}, "
                f"expected {expected.value}"
            )
        change = Change(trigger, source, dest, expected, tuple(self._faults))
        self.history.append(change)
        for observer in list(self._observers):
            try:
                observer(change)
            except Exception as exc:
                fault = f"observer {getattr(observer, '__name__', observer)!r} failed: {exc!r}"
                log.error(fault)
                change = Change(trigger, source, dest, expected, (*change.faults, fault))
                self.history[-1] = change
        return change

    # ------------------------------------------------------------------ callbacks
    def _on_exception(self, event: Any) -> None:
        """Last resort for an exception inside a transition: record it, change nothing."""
        error = getattr(event, "error", None)
        self._record_fault(f"transition callback failed: {error!r}")

    def _record_fault(self, fault: str) -> None:
        try:
            log.error(fault)
            self._faults.append(fault)
        except Exception:  # pragma: no cover - logging itself failed; nothing else to do
            pass


def _leads_to(dest_rule: Resolve, dest: State) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        facts = event.kwargs.get("facts", Facts())
        return resolve(dest_rule, facts) is dest

    condition.__name__ = f"{dest_rule.value}_to_{dest.value}"
    return condition


def table_markdown(triggers: tuple[Trigger, ...] = OPERATOR_TRIGGERS) -> str:
    """The transition table as a Markdown table (docs/python-api.md shows it; a test keeps
    the two equal). A cell is the destination, ``settle``/``stop``/``plan_end`` for one
    that depends on the safety process's report, or ``-`` when refused."""
    header = "| state | " + " | ".join(t.value for t in triggers) + " |"
    lines = [header, "|" + "---|" * (len(triggers) + 1)]
    for state in State:
        cells = []
        for trigger in triggers:
            rule = rule_for(state, trigger)
            cells.append("-" if rule is None else rule.dest.value)
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
