"""Read-backs and the passage of time -> state changes and safety reactions.

The same checks that guard requests run on what the pump really does (S1 on read-back),
plus the ones only a read-back can make: S9 (set versus read-back), S10 (reconciling an
uncertain command), S13 (pump alarms, pump stopped by itself, accuracy from the pump's
own volume counter) and S3 (the cumulative cap as time passes). Pure functions: the
reducer applies the state change when the event is replayed; the host executes the
reaction's actions when it happens live.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from safety.alarms import AlarmBook, Priority
from safety.kernel.config import KernelConfig
from safety.kernel.limits import caps_in_force, limit_sets
from safety.kernel.model import (
    Now,
    PumpAction,
    PumpReading,
    Reaction,
    SetRate,
    StartPump,
    StopPump,
)
from safety.kernel.state import FluidProgram, KernelState, Pending
from safety.reasons import Reason
from safety.rules import num

#: pump alarm kind -> (priority, words for people). Occlusion is high priority
#: (IEC 60601-2-24); anything that stopped delivery is high for a vasopressor.
PUMP_ALARMS: dict[str, tuple[Priority, str]] = {
    "occlusion": (Priority.HIGH, "downstream occlusion: the pump has stopped flow"),
    "empty": (Priority.HIGH, "syringe empty"),
    "stall": (Priority.HIGH, "motor stalled"),
    "reset": (Priority.HIGH, "pump power was interrupted (reset)"),
    "comms_timeout": (Priority.HIGH, "the pump stopped itself: safe-mode communication timeout"),
    # a volumetric pump's sensors: each stops flow (the door by free-flow protection)
    "air_in_line": (Priority.HIGH, "air in the line: the pump has stopped flow"),
    "upstream_occlusion": (
        Priority.HIGH,
        "upstream occlusion (between container and pump): the pump has stopped flow",
    ),
    "door_open": (Priority.HIGH, "pump door open: flow stopped (free-flow protection)"),
    "program_error": (Priority.MEDIUM, "pump program error"),
    "near_empty": (Priority.MEDIUM, "syringe nearly empty"),
    "other": (Priority.MEDIUM, "pump alarm"),
}


#: delivery the pump's counter shows beyond what the verified rates explain is counted as
#: unseen (a bolus) only above this share of what they explain, plus ``UNSEEN_FLOOR_ML``
UNSEEN_TOLERANCE = 0.02
UNSEEN_FLOOR_ML = 0.01


def observe(
    state: KernelState, reading: PumpReading, now: Now, config: KernelConfig
) -> tuple[KernelState, Reaction]:
    t = now.clinical
    if state.unseen_pending:  # a restart that could not read the pump: count the gap now
        state = count_unseen_delivery(state, reading.infused_ml, reading.alarms, t)
        state = replace(state, unseen_pending=False)
    alarms = state.alarms.condition_gone("pump_comms")
    alarms = _pump_alarms(alarms, reading, t)
    s = replace(state, comms_ok=True, alarms=alarms)
    rate = reading.set_rate_ml_h
    running = reading.running

    if s.pending is not None:
        s = _reconcile(s, s.pending, reading, t)

    actions: list[PumpAction] = []
    cause = s.expected_cause
    tol = config.readback_rel_tolerance
    if running:
        over_by_hard = _above_hard_max(s, rate, t)
        if s.estopped:
            # S12 holds until acknowledged: a pump seen running under an emergency stop
            # (its stop lost on the wire, or restarted at its keypad) is stopped again,
            # on this read-back, not by repeating blindly
            actions.append(StopPump())
        elif over_by_hard is not None:
            s = _alarm(
                s,
                "readback_hard_max",
                Reason.HARD_MAX,
                Priority.HIGH,
                f"pump runs {num(rate)} mL/h = {over_by_hard}: stopped",
                t,
            )
            actions.append(StopPump())
            cause = "pump"  # a rate nobody commanded
        elif not s.expected_running:
            s = _alarm(
                s,
                "readback_over",
                Reason.READBACK_OVER,
                Priority.HIGH,
                f"pump is running at {num(rate)} mL/h but was not started by the safety "
                "process: stopped",
                t,
            )
            actions.append(StopPump())
            cause = "pump"
        elif rate > s.expected_rate * (1 + tol):
            s = _alarm(
                s,
                "readback_over",
                Reason.READBACK_OVER,
                Priority.HIGH,
                f"pump runs {num(rate)} mL/h, above the {num(s.expected_rate)} mL/h it was "
                "set to: stopped",
                t,
            )
            actions.append(StopPump())
            cause = "pump"
        elif rate < s.expected_rate * (1 - tol):
            if s.under_retries < config.max_under_retries:
                s = replace(s, under_retries=s.under_retries + 1)
                actions.append(SetRate(s.expected_rate))
                cause = "retry"
            else:
                s = _alarm(
                    s,
                    "readback_under",
                    Reason.READBACK_UNDER,
                    Priority.MEDIUM,
                    f"pump runs {num(rate)} mL/h, below the {num(s.expected_rate)} mL/h it "
                    "was set to, after a retry",
                    t,
                )
                s = replace(s, expected_rate=rate)
        else:
            s = replace(s, under_retries=0)
            s = replace(
                s,
                alarms=s.alarms.condition_gone("readback_under").condition_gone(
                    "readback_hard_max"
                ),
            )
    else:
        if s.expected_running:
            present = [a for a in reading.alarms if a != "near_empty"]
            why = ", ".join(PUMP_ALARMS.get(a, PUMP_ALARMS["other"])[1] for a in present)
            s = _alarm(
                s,
                "pump_stopped",
                Reason.PUMP_ALARM,
                Priority.HIGH,
                f"the pump stopped by itself ({why or 'no reason given by the pump'}); "
                "it will not be restarted automatically",
                t,
            )
            s = replace(s, expected_running=False)
            cause = "pump"
        s = replace(
            s, alarms=s.alarms.condition_gone("readback_over").condition_gone("readback_hard_max")
        )
        if s.estopped:
            s = replace(s, alarms=s.alarms.condition_gone("estop"))
    if not running or not s.expected_running:
        s = replace(s, alarms=s.alarms.condition_gone("pump_stopped"))

    was_running = state.running
    s = _record(s, running, rate, t, cause, config)
    s = _accuracy(s, reading, t, config, steady=was_running and running and not reading.alarms)
    s, cap_actions = _cap(s, now, config)
    for action in cap_actions:
        if StopPump() not in actions:
            actions.append(action)
    s = replace(s, alarms=s.alarms.rearmed(now.liveness))
    return s, Reaction(tuple(actions), "safety" if cause != "retry" else "retry")


def tick(state: KernelState, now: Now, config: KernelConfig) -> tuple[KernelState, Reaction]:
    """Time passed without a read-back: the cap and the alarm silences."""
    s, actions = _cap(state, now, config)
    s = replace(s, alarms=s.alarms.rearmed(now.liveness))
    return s, Reaction(tuple(actions), "safety")


def next_deadline(state: KernelState, now: Now, config: KernelConfig) -> float | None:
    """Clinical time by which the kernel must look again (the cap guard), if any."""
    if state.program is None or not state.running:
        return None
    seg = state.history.current
    if seg is None or seg.amount_per_h <= 0:
        return None
    t = now.clinical
    per_s = float(seg.amount_per_h) / 3600.0
    deadlines = [
        t
        + max(
            0.0,
            (float(cap.base_amount) - state.history.amount(t - float(cap.window_s), t)) / per_s
            - config.cap_guard_s,
        )
        for cap, _ in caps_in_force(state, t)
    ]
    return min(deadlines, default=None)


def count_unseen_delivery(
    s: KernelState, infused_ml: float, pump_alarms: tuple[str, ...], t: float
) -> KernelState:
    """The pump's volume counter across the gap a restart left, against the verified
    history's account of it: what the counter shows beyond it reached the patient unseen
    (S3 counts it). Made at the restart's reading, or at the first one after it when the
    pump could not be read then."""
    program = s.drug_program
    last_ml, last_at = s.last_infused_ml, s.last_reading_at
    if program is None or last_ml is None or last_at is None or "reset" in pump_alarms:
        return s  # a reset counter says nothing about the gap; the rate history does
    measured_ml = infused_ml - last_ml
    if measured_ml <= 0:
        return s
    per_ml = float(program.amount_per_ml)
    counted = s.history.amount(last_at, t)
    excess = measured_ml * per_ml - counted
    if excess <= counted * UNSEEN_TOLERANCE + UNSEEN_FLOOR_ML * per_ml:
        return s
    record = s.drugs[program.drug]
    history = record.history.with_amount(t, excess, "delivered while the safety process was down")
    drugs = {**s.drugs, program.drug: replace(record, history=history)}
    return replace(s, drugs=drugs)


def record_history(
    s: KernelState, t: float, rate: Decimal, cause: str, config: KernelConfig
) -> KernelState:
    """The loaded program's drug ran ``rate`` mL/h of its solution from ``t`` on."""
    program = s.drug_program
    if program is None:  # nothing loaded, or a test fluid: no drug ran
        return s
    record = s.drugs.get(program.drug)
    if record is None:  # a program is always loaded with its record; total all the same
        return s
    history = record.history.with_rate(
        t, rate, program.amount_per_ml, cause, record.keep_s(config.history_keep_s)
    )
    if history is record.history:
        return s
    return replace(s, drugs={**s.drugs, program.drug: replace(record, history=history)})


# --------------------------------------------------------------------------- pieces


def _alarm(
    s: KernelState, key: str, reason: Reason, priority: Priority, message: str, t: float
) -> KernelState:
    return replace(s, alarms=s.alarms.raised(key, reason, priority, message, t))


def _pump_alarms(alarms: AlarmBook, reading: PumpReading, t: float) -> AlarmBook:
    present = set(reading.alarms)
    for kind, (priority, words) in PUMP_ALARMS.items():
        key = f"pump:{kind}"
        if kind in present:
            alarms = alarms.raised(key, Reason.PUMP_ALARM, priority, f"pump alarm: {words}", t)
        else:
            alarms = alarms.condition_gone(key)
    return alarms


def _reconcile(s: KernelState, pending: Pending, reading: PumpReading, t: float) -> KernelState:
    """S10: did the command whose acknowledgement was lost take effect?"""
    action = pending.action
    if isinstance(action, SetRate):
        applied = reading.set_rate_ml_h == action.rate_ml_h
        unchanged = reading.set_rate_ml_h == pending.previous_rate
    elif isinstance(action, StartPump):
        applied, unchanged = reading.running, not reading.running
    elif isinstance(action, StopPump):
        applied, unchanged = not reading.running, reading.running
    else:
        applied, unchanged = True, False
    if applied:
        verdict = "it took effect"
    elif unchanged:
        verdict = "it did not take effect"
        s = replace(
            s, expected_rate=pending.previous_rate, expected_running=pending.previous_running
        )
    else:
        verdict = "the pump shows neither the old nor the new setting"
    alarms = s.alarms.raised(
        "delivery_uncertain",
        Reason.DELIVERY_UNCERTAIN,
        Priority.MEDIUM,
        f"uncertain command reconciled by read-back: {verdict}",
        t,
    ).condition_gone("delivery_uncertain")
    return replace(s, pending=None, alarms=alarms)


def _record(
    s: KernelState, running: bool, rate: Decimal, t: float, cause: str, config: KernelConfig
) -> KernelState:
    effective = rate if running else Decimal(0)
    s = record_history(s, t, effective, "estop" if s.estopped else cause, config)
    return replace(s, running=running, set_rate=rate)


def _above_hard_max(s: KernelState, rate: Decimal, t: float) -> str | None:
    """S1 on read-back, against every limit set in force: what the rate is, in words,
    when it is above one of their hard maxima."""
    program = s.program
    if program is None:
        return None
    if isinstance(program, FluidProgram):
        if Fraction(rate) > program.max_rate:
            return f"above the maximum {num(program.max_rate)} mL/h of {program.what}"
        return None
    amount = Fraction(rate) * program.amount_per_ml
    for limit_set in limit_sets(s, t):
        dose = limit_set.dose(amount)
        hard = Fraction(limit_set.therapy.hard_max.value)
        if dose > hard:
            return (
                f"{num(dose)} {limit_set.unit}, above the hard maximum {num(hard)} "
                f"{limit_set.unit}{limit_set.note}"
            )
    return None


def _accuracy(
    s: KernelState, reading: PumpReading, t: float, config: KernelConfig, *, steady: bool
) -> KernelState:
    """S13 / GIP: measured flow (pump's volume counter) against the verified rate.

    Judged only over spans in which the pump ran throughout (``steady``): when it stopped
    in between, the history cannot know the instant, and the pump's own alarm says why.
    """
    if (
        s.last_reading_at is None
        or s.last_infused_ml is None
        or not steady
        or reading.infused_ml < s.last_infused_ml  # the counter was cleared: a new base
    ):
        return replace(
            s, last_reading_at=t, last_infused_ml=reading.infused_ml, deviation_since=None
        )
    span = t - s.last_reading_at
    if span < config.accuracy_min_span_s:
        return s
    measured = reading.infused_ml - s.last_infused_ml
    expected = s.history.volume_ml(s.last_reading_at, t)
    s = replace(s, last_reading_at=t, last_infused_ml=reading.infused_ml)
    if measured < 0 or expected <= 0.01:
        return replace(s, deviation_since=None)  # counter cleared, or nothing to judge
    deviation = measured / expected - 1.0
    words = "over" if deviation > 0 else "under"
    message = (
        f"{words}-infusion: the pump's counter shows {measured:.3f} mL where the verified "
        f"rate gives {expected:.3f} mL ({deviation * 100:+.0f} %)"
    )
    if abs(deviation) > config.accuracy_far:
        priority = Priority.HIGH if deviation > 0 else Priority.MEDIUM
        return _alarm(s, f"accuracy_{words}", Reason.PUMP_ALARM, priority, message, t)
    if abs(deviation) > config.accuracy_tolerance:
        since = s.deviation_since if s.deviation_since is not None else t - span
        s = replace(s, deviation_since=since)
        if t - since >= config.accuracy_persistence_s:
            return _alarm(s, f"accuracy_{words}", Reason.PUMP_ALARM, Priority.MEDIUM, message, t)
        return s
    alarms = s.alarms.condition_gone("accuracy_over").condition_gone("accuracy_under")
    return replace(s, deviation_since=None, alarms=alarms)


def _cap(s: KernelState, now: Now, config: KernelConfig) -> tuple[KernelState, list[PumpAction]]:
    """S3 as time passes: warn when a cap in force nears, stop before one is crossed."""
    if s.program is None:
        return s, []
    t = now.clinical
    seg = s.history.current
    per_s = float(seg.amount_per_h) / 3600.0 if seg is not None and s.running else 0.0
    warning: tuple[float, str] | None = None
    for cap, note in caps_in_force(s, t):
        given = s.history.amount(t - float(cap.window_s), t)
        headroom = float(cap.base_amount) - given
        shown = f"{num(cap.amount)} {cap.unit} per {num(cap.window_h)} h{note}"
        if per_s > 0 and headroom <= per_s * config.cap_guard_s:
            s = _alarm(
                s,
                "cap",
                Reason.CUMULATIVE_CAP,
                Priority.HIGH,
                f"cumulative cap reached ({shown}): pump stopped; it is a hard limit",
                t,
            )
            return s, [StopPump()]
        if per_s > 0 and headroom / per_s <= config.cap_warning_s:
            minutes = headroom / per_s / 60.0
            if warning is None or minutes < warning[0]:
                warning = (minutes, shown)
    if warning is not None:
        minutes, shown = warning
        s = _alarm(
            s,
            "cap_warning",
            Reason.CUMULATIVE_CAP,
            Priority.MEDIUM,
            f"cumulative cap ({shown}) will be reached in {minutes:.0f} min at this rate: wean now",
            t,
        )
        return s, []
    alarms = s.alarms.condition_gone("cap_warning")
    if per_s == 0:
        alarms = alarms.condition_gone("cap")
    return replace(s, alarms=alarms), []
