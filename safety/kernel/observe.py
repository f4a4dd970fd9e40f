"""Read-backs and the passage of time -> state changes and safety reactions.

The same checks that guard requests run on what the pumps really do (S1 on read-back,
on the patient's total of the drug over every channel), plus the ones only a read-back
can make, per channel: S9 (set versus read-back), S10 (reconciling an uncertain
command), S13 (pump alarms, pump stopped by itself, accuracy from the pump's own volume
counter); per drug: S3 (the cumulative cap as time passes); and, on a bench of several
channels, the warning that a container will empty with no standby armed (S15). Pure
functions: the reducer applies the state change when the event is replayed; the host
executes the reaction's actions when it happens live.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from safety.alarms import AlarmBook, Priority
from safety.kernel.config import KernelConfig
from safety.kernel.limits import caps_in_force, limit_sets
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    Now,
    PumpAction,
    PumpReading,
    Reaction,
    SetRate,
    StartPump,
    StopPump,
)
from safety.kernel.relay import relay_deadline
from safety.kernel.state import FluidProgram, KernelState, Pending
from safety.library import CumulativeCap
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

#: a prime counts as done when the pump's counter moved at least this share of its volume
PRIME_DONE_SHARE = 0.9
#: a pump still running a prime when its counter moved more than this share of the
#: prime's volume (plus ``PRIME_OVERRUN_FLOOR_ML``) is stopped: a purge that does not end
#: runs at the pump's top rate, counted in no total, to the patient if the line is on
PRIME_OVERRUN_SHARE = 1.5
PRIME_OVERRUN_FLOOR_ML = 0.2
#: ...and one still running this long after it began, whatever its counter says (a
#: counter not known at the prime's start, or reset since: the volume bound cannot judge
#: it); the largest prime at a slow pump's top rate (5 mL at 60 mL/h) takes 5 min
PRIME_LONGEST_S = 10 * 60.0


def drug_scope(drug: str) -> str:
    """The alarm scope of a drug's patient-level conditions (its cap)."""
    return f"drug:{drug}"


#: delivery the pump's counter shows beyond what the verified rates explain is counted as
#: unseen (a bolus) only above this share of what they explain, plus ``UNSEEN_FLOOR_ML``
UNSEEN_TOLERANCE = 0.02
UNSEEN_FLOOR_ML = 0.01


def observe(
    state: KernelState,
    reading: PumpReading,
    now: Now,
    config: KernelConfig,
    channel: str = DEFAULT_CHANNEL,
) -> tuple[KernelState, Reaction]:
    t = now.clinical
    if state.channel(channel).unseen_pending:  # a restart that could not read the pump
        state = count_unseen_delivery(state, reading.infused_ml, reading.alarms, t, channel)
        state = state.with_channel(channel, unseen_pending=False)
    alarms = state.alarms.condition_gone("pump_comms", channel)
    alarms = _pump_alarms(alarms, reading, t, channel)
    s = _with_alarms(state, alarms).with_channel(channel, comms_ok=True, other_pump="")
    rate = reading.set_rate_ml_h
    running = reading.running

    c = s.channel(channel)
    if c.pending is not None:
        s = reconcile(s, channel, c.pending, reading, t)
    s = _container_used(s, channel, reading.infused_ml, t)
    if s.channel(channel).priming is not None:
        return _priming(s, channel, reading, now, config)

    actions: list[PumpAction] = []
    c = s.channel(channel)
    cause = c.expected_cause
    tol = config.readback_rel_tolerance
    if running:
        if c.stopped_itself_at is not None:  # running again: that stop is over
            s = s.with_channel(channel, stopped_itself_at=None)
        over_by_hard = _above_hard_max(s, channel, rate, t)
        if s.estopped:
            # S12 holds until acknowledged: a pump seen running under an emergency stop
            # (its stop lost on the wire, or restarted at its keypad) is stopped again,
            # on this read-back, not by repeating blindly
            actions.append(StopPump(channel))
        elif over_by_hard is not None:
            s = _alarm(
                s,
                "readback_hard_max",
                Reason.HARD_MAX,
                Priority.HIGH,
                f"pump runs {num(rate)} mL/h = {over_by_hard}: stopped",
                t,
                channel,
            )
            actions.append(StopPump(channel))
            cause = "pump"  # a rate nobody commanded
        elif not c.expected_running:
            s = _alarm(
                s,
                "readback_over",
                Reason.READBACK_OVER,
                Priority.HIGH,
                f"pump is running at {num(rate)} mL/h but was not started by the safety "
                "process: stopped",
                t,
                channel,
            )
            actions.append(StopPump(channel))
            cause = "pump"
        elif rate > c.expected_rate * (1 + tol):
            s = _alarm(
                s,
                "readback_over",
                Reason.READBACK_OVER,
                Priority.HIGH,
                f"pump runs {num(rate)} mL/h, above the {num(c.expected_rate)} mL/h it was "
                "set to: stopped",
                t,
                channel,
            )
            actions.append(StopPump(channel))
            cause = "pump"
        elif rate < c.expected_rate * (1 - tol):
            if c.under_retries < config.max_under_retries:
                s = s.with_channel(channel, under_retries=c.under_retries + 1)
                actions.append(SetRate(c.expected_rate, channel))
                cause = "retry"
            else:
                s = _alarm(
                    s,
                    "readback_under",
                    Reason.READBACK_UNDER,
                    Priority.MEDIUM,
                    f"pump runs {num(rate)} mL/h, below the {num(c.expected_rate)} mL/h it "
                    "was set to, after a retry",
                    t,
                    channel,
                )
                s = s.with_channel(channel, expected_rate=rate)
        else:
            s = s.with_channel(channel, under_retries=0)
            alarms = s.alarms.condition_gone("readback_under", channel)
            s = _with_alarms(s, alarms.condition_gone("readback_hard_max", channel))
    else:
        if c.expected_running:
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
                channel,
            )
            s = s.with_channel(channel, expected_running=False, stopped_itself_at=t)
            cause = "pump"
        alarms = s.alarms.condition_gone("readback_over", channel)
        s = _with_alarms(s, alarms.condition_gone("readback_hard_max", channel))
    if not running or not s.channel(channel).expected_running:
        s = _with_alarms(s, s.alarms.condition_gone("pump_stopped", channel))

    was_running = state.channel(channel).running
    s = _record(s, channel, running, rate, t, cause, config)
    if s.estopped and not s.any_running():
        s = _with_alarms(s, s.alarms.condition_gone("estop"))  # every pump seen stopped
    steady = was_running and running and not reading.alarms
    s = _accuracy(s, channel, reading, t, config, steady=steady)
    drug = s.channel(channel).drug
    if drug is not None:
        s, cap_actions = _cap(s, drug, now, config)
        for action in cap_actions:
            if action not in actions:
                actions.append(action)
    s = container_warnings(s, now, config)
    s = _with_alarms(s, s.alarms.rearmed(now.liveness))
    return s, Reaction(tuple(actions), "safety" if cause != "retry" else "retry")


def tick(state: KernelState, now: Now, config: KernelConfig) -> tuple[KernelState, Reaction]:
    """Time passed without a read-back: the caps, the container warnings, the alarm
    silences."""
    s = state
    actions: list[PumpAction] = []
    for drug in _drugs_given(s):
        s, more = _cap(s, drug, now, config)
        actions += [a for a in more if a not in actions]
    s = container_warnings(s, now, config)
    s = _with_alarms(s, s.alarms.rearmed(now.liveness))
    return s, Reaction(tuple(actions), "safety")


def next_deadline(state: KernelState, now: Now, config: KernelConfig) -> float | None:
    """Clinical time by which the kernel must look again (each drug's cap guard), if
    any, and the relay's next moment (``safety.kernel.relay.relay_deadline``) still to
    come."""
    t = now.clinical
    deadlines: list[float] = []
    for drug in _drugs_given(state):
        if not any(c.running for _, c in state.drug_channels(drug)):
            continue
        seg = state.history_of(drug).current
        if seg is None or seg.amount_per_h <= 0:
            continue
        per_s = float(seg.amount_per_h) / 3600.0
        history = state.history_of(drug)
        deadlines += [
            t
            + max(
                0.0,
                (float(cap.base_amount) - history.amount(t - float(cap.window_s), t)) / per_s
                - config.cap_guard_s,
            )
            for cap, _ in caps_in_force(state, drug, t)
        ]
    relay = relay_deadline(state, config)
    if relay is not None and relay > t:
        deadlines.append(relay)
    return min(deadlines, default=None)


def count_unseen_delivery(
    s: KernelState,
    infused_ml: float,
    pump_alarms: tuple[str, ...],
    t: float,
    channel: str = DEFAULT_CHANNEL,
) -> KernelState:
    """The pump's volume counter across the gap a restart left, against the account of
    it that the channel's own verified rates give (its ``FlowLog``: the drug's history
    sums every channel): what the counter shows beyond it reached the patient unseen (S3
    counts it). Made at the restart's reading, or at the first one after it when the
    pump could not be read then."""
    c = s.channel(channel)
    program = c.drug_program
    last_ml, last_at = c.last_infused_ml, c.last_reading_at
    if program is None or last_ml is None or last_at is None or "reset" in pump_alarms:
        return s  # a reset counter says nothing about the gap; the rate history does
    if c.priming is not None:
        return s  # a prime's purge went to waste: the prime's end accounts for it
    measured_ml = infused_ml - last_ml
    if measured_ml <= 0:
        return s
    per_ml = float(program.amount_per_ml)
    counted = c.flow.volume_ml(last_at, t) * per_ml
    excess = measured_ml * per_ml - counted
    if excess <= counted * UNSEEN_TOLERANCE + UNSEEN_FLOOR_ML * per_ml:
        return s
    return given_unseen(s, program.drug, t, excess, "delivered while the safety process was down")


def given_unseen(s: KernelState, drug: str, t: float, amount: float, why: str) -> KernelState:
    """``amount`` of ``drug`` reached the patient at ``t`` without a verified rate to
    explain it: counted at once in its history (S3, the cap: more drug, never less)."""
    record = s.drugs[drug]
    history = record.history.with_amount(t, amount, why)
    return replace(s, drugs={**s.drugs, drug: replace(record, history=history)})


def record_history(
    s: KernelState, drug: str, t: float, cause: str, config: KernelConfig
) -> KernelState:
    """The patient's total of ``drug`` from ``t`` on: the sum of what its channels give."""
    record = s.drugs.get(drug)
    if record is None:  # a program is always loaded with its record; total all the same
        return s
    total = s.total_amount_rate(drug)
    history = record.history.with_rate(t, total, cause, record.keep_s(config.history_keep_s))
    if history is record.history:
        return s
    return replace(s, drugs={**s.drugs, drug: replace(record, history=history)})


def container_warnings(s: KernelState, now: Now, config: KernelConfig) -> KernelState:
    """S15: a container change paused past its bound alarms (high); an overlap handover
    whose standby shows no flow for ``overlap_stall_s`` alarms (medium); and on a bench
    of several channels, a running drug channel whose container would empty within
    ``warn_before_empty_s`` with no standby armed for it alarms (medium), high from
    ``handover_before_empty_s``. A one-pump bench has no relay to offer: its pump's own
    near-empty alarm speaks."""
    t = now.clinical
    alarms = s.alarms
    for name, c in s.channels.items():
        pause = c.pause
        if pause is None or t <= pause.until:
            alarms = alarms.condition_gone("container_pause_overdue", name)
            continue
        alarms = alarms.raised(
            "container_pause_overdue",
            Reason.CONTAINER_PAUSE,
            Priority.HIGH,
            f"channel {name} has been paused for a container change for "
            f"{(t - pause.since) / 60:.0f} min, longer than the {pause.max_s / 60:.0f} min "
            "allowed: resume it, or give the drug another way",
            pause.until,
            name,
        )
    handover = s.handover
    if handover is not None and handover.step_at is not None and handover.step < handover.steps:
        stalled = t >= handover.step_at + config.overlap_stall_s
        if stalled:
            alarms = alarms.raised(
                "relay_stalled",
                Reason.RELAY,
                Priority.MEDIUM,
                f"the handover to channel {handover.to_channel} waits for its flow: its "
                f"counter has not shown it for {(t - handover.step_at) / 60:.0f} min (an "
                "unprimed syringe, a clamp, an occlusion?)",
                t,
                handover.to_channel,
            )
    if len(s.channels) < 2:
        return _with_alarms(s, alarms)
    armed = {c.standby.for_channel for c in s.channels.values() if c.standby is not None}
    handing = s.handover.from_channel if s.handover is not None else None
    for name, c in s.channels.items():
        empty_at = c.empty_at()
        left = empty_at - t if empty_at is not None else None
        if (
            left is None
            or c.drug_program is None
            or name in armed
            or name == handing
            or left > config.warn_before_empty_s
        ):
            alarms = alarms.condition_gone("relay_no_standby", name)
            continue
        high = left <= config.handover_before_empty_s
        alarms = alarms.raised(
            "relay_no_standby",
            Reason.RELAY,
            Priority.HIGH if high else Priority.MEDIUM,
            f"channel {name}'s {c.container.name or 'container'} empties in about "
            f"{max(0.0, left) / 60:.0f} min and no standby is armed for it: load, prime and "
            "arm another channel, or pause it for a container change",
            t,
            name,
        )
    return _with_alarms(s, alarms)


#: ports given out in the order the adapters come up: after a reboot ``ttyUSB0`` may be
#: the adapter that was ``ttyUSB1``; pyserial's ``hwgrep://`` opens the first adapter
#: that matches (docs/protocols.md)
PLUG_ORDER_PORT = re.compile(r"(?:.*/)?tty(?:USB|ACM)\d+|hwgrep://.*")
#: a board's own UARTs (the Raspberry Pi's among them): no adapter ever comes up as one
ON_BOARD_PORT = re.compile(r"(?:.*/)?(?:tty(?:AMA|S)\d+|serial\d+)")


def pump_names_alike(state: KernelState, t: float) -> KernelState:
    """Tell the operator where the pump-name check cannot see a swap (a low alarm, bench
    scope ``pump_names_alike``): it is a warning, never a refusal.

    A restart tells a channel's own pump from another behind its port by the name the
    pump gave (``PumpNamed``, ``drivers.pumps.base.PumpName``), and two pumps of one model
    and firmware give the same name; pumps that give no name at all (a Modbus device
    without identification, ``pump_nameless``) are alike to every other of their driver's
    kind. Two such channels on different serial devices that may trade adapters at a
    reboot (``_may_swap``) could come back swapped unnoticed, a channel driving another's
    pump as its own. Channels on one line are no such pair (their pumps' addresses tell
    them apart), nor channels whose device is not known (mock, TCP, a journal from before
    devices were recorded). Derived from the recorded names and the bench's devices
    alone, so a replay re-derives it; gone when no such pair is left (a replacement
    accepted names itself otherwise, the ports renamed)."""
    groups_of: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, c in state.channels.items():
        if c.serial_port and c.pump_name:
            groups_of.setdefault(("named", c.pump_name), []).append((name, c.serial_port))
        elif c.serial_port and c.pump_nameless:
            groups_of.setdefault(("nameless", c.driver), []).append((name, c.serial_port))
    groups: list[str] = []
    for (how, word), members in groups_of.items():
        alike = [
            f"{name} ({port})"
            for name, port in members
            if any(other != port and _may_swap(port, other) for _, other in members)
        ]
        if alike:
            what = (
                f"pumps that name themselves {word!r}"
                if how == "named"
                else f"{word} pumps that give no name"
            )
            groups.append(f"channels {', '.join(alike)} have {what}")
    if not groups:
        return _with_alarms(state, state.alarms.condition_gone("pump_names_alike"))
    return _alarm(
        state,
        "pump_names_alike",
        Reason.PUMP_NAMES_ALIKE,
        Priority.LOW,
        "; ".join(groups)
        + ", on ports a reboot may swap: the pumps' names cannot tell them apart, so a "
        "swap would go unnoticed and a channel would drive another channel's pump; name "
        "each of these ports by /dev/serial/by-id/ (or by-path), docs/protocols.md",
        t,
    )


def _may_swap(port: str, other: str) -> bool:
    """Can two serial devices trade pumps at a reboot? Only when one is a name handed out
    in plug-in order (``ttyUSB0``, ``ttyACM1``: ``PLUG_ORDER_PORT``) and the other names a
    USB adapter too (another such name, or a udev link that follows its adapter: by-id,
    by-path, a rule's own ``/dev/pumpA``), which may come up under the first name. Two
    udev links follow their adapters, and a board's own UART (``ttyAMA0``, ``serial0``) is
    never an adapter's name: neither pair can swap, and warning them would be a warning
    nobody could ever clear."""
    ports = (port, other)
    if not any(PLUG_ORDER_PORT.fullmatch(p) for p in ports):
        return False
    return not any(ON_BOARD_PORT.fullmatch(p) for p in ports)


# --------------------------------------------------------------------------- pieces


def _drugs_given(s: KernelState) -> list[str]:
    drugs: list[str] = []
    for c in s.channels.values():
        drug = c.drug
        if drug is not None and drug not in drugs:
            drugs.append(drug)
    return drugs


def _alarm(
    s: KernelState,
    key: str,
    reason: Reason,
    priority: Priority,
    message: str,
    t: float,
    scope: str = "",
) -> KernelState:
    return replace(s, alarms=s.alarms.raised(key, reason, priority, message, t, scope))


def _with_alarms(s: KernelState, alarms: AlarmBook) -> KernelState:
    """``s`` with the book ``alarms``: ``s`` itself when it is the book ``s`` has (a
    condition gone that was not there, a silence not yet over)."""
    return s if alarms is s.alarms else replace(s, alarms=alarms)


def _pump_alarms(alarms: AlarmBook, reading: PumpReading, t: float, channel: str) -> AlarmBook:
    present = set(reading.alarms)
    for kind, (priority, words) in PUMP_ALARMS.items():
        key = f"pump:{kind}"
        if kind in present:
            alarms = alarms.raised(
                key, Reason.PUMP_ALARM, priority, f"pump alarm: {words}", t, channel
            )
        else:
            alarms = alarms.condition_gone(key, channel)
    return alarms


def _container_used(s: KernelState, channel: str, infused_ml: float, t: float) -> KernelState:
    """What the pump's counter displaced since the last reading is gone from its
    container (a counter that went back was cleared: it counts again from zero). With no
    reading yet (``counter_ml`` None: a new bench, a replaced pump) the first one is the
    baseline: what a pump's counter held before is not this container's."""
    c = s.channel(channel)
    container = c.container
    last = container.counter_ml if container.counter_ml is not None else infused_ml
    moved = infused_ml - last if infused_ml >= last else infused_ml
    container = replace(
        container, used_ml=container.used_ml + max(0.0, moved), counter_ml=infused_ml, read_at=t
    )
    return s.with_channel(channel, container=container)


def _priming(
    s: KernelState, channel: str, reading: PumpReading, now: Now, config: KernelConfig
) -> tuple[KernelState, Reaction]:
    """A channel priming runs to waste: neither an infusion (no history, no read-back
    alarm for a pump nobody started) nor idle. Done when the pump stops by itself;
    stopped when it runs on well past its volume, or under an emergency stop (its stop
    lost on the wire)."""
    t = now.clinical
    c = s.channel(channel)
    priming = c.priming
    assert priming is not None
    c = replace(c, running=reading.running, set_rate=reading.set_rate_ml_h, unread_command=False)
    moved = (
        reading.infused_ml - priming.counter_at_start
        if priming.counter_at_start is not None and reading.infused_ml >= priming.counter_at_start
        else None
    )
    actions: tuple[PumpAction, ...] = ()
    most = PRIME_OVERRUN_SHARE * priming.volume_ml + PRIME_OVERRUN_FLOOR_ML
    if reading.running:
        if s.estopped:  # S12 holds until acknowledged: its stop was lost on the wire
            actions = (StopPump(channel),)
        elif (moved is not None and moved > most) or t - priming.since > PRIME_LONGEST_S:
            actions = (StopPump(channel),)
            minutes = f"{(t - priming.since) / 60:.0f} min"
            pushed = (
                f"has pushed {moved:.2f} mL in {minutes}"
                if moved is not None
                else f"has run {minutes} (the volume it pushed not known)"
            )
            s = _alarm(
                s,
                "prime_overrun",
                Reason.RELAY,
                Priority.HIGH,
                f"the prime of {priming.volume_ml:g} mL {pushed} and the pump runs on: stopped",
                t,
                channel,
            )
    else:
        if moved is not None and c.program is not None:
            # what the program infused is what reached the patient: the prime went to
            # waste, up to its bound; beyond it (pushed while nobody saw the pump run, as
            # a restart finds it) it counts as given, the safe side for the cap (S3)
            program = c.program
            waste = min(moved, most)
            c = replace(
                c, program=replace(program, infused_baseline_ml=program.infused_baseline_ml + waste)
            )
            drug_program = c.drug_program
            if moved > most and drug_program is not None:
                beyond = moved - waste
                amount = beyond * float(drug_program.amount_per_ml)
                s = given_unseen(s, drug_program.drug, t, amount, "pushed past its prime")
                s = _alarm(
                    s,
                    "prime_overrun",
                    Reason.RELAY,
                    Priority.HIGH,
                    f"the prime of {priming.volume_ml:g} mL stopped after {moved:.2f} mL: the "
                    f"{beyond:.2f} mL beyond its bound counted as given",
                    t,
                    channel,
                )
        done = moved is None or moved >= PRIME_DONE_SHARE * priming.volume_ml
        present = [a for a in reading.alarms if a != "near_empty"]
        if done and not present:
            c = replace(c, priming=None, container=replace(c.container, primed=True))
            s = replace(s, alarms=s.alarms.condition_gone("prime_failed", channel))
        else:
            why = ", ".join(PUMP_ALARMS.get(a, PUMP_ALARMS["other"])[1] for a in present)
            c = replace(c, priming=None)
            s = _alarm(
                s,
                "prime_failed",
                Reason.RELAY,
                Priority.MEDIUM,
                f"the prime of {priming.volume_ml:g} mL stopped "
                + (f"after {moved:.2f} mL" if moved is not None else "early")
                + (f" ({why})" if why else "")
                + ": the channel is not primed",
                t,
                channel,
            )
    c = replace(c, last_reading_at=t, last_infused_ml=reading.infused_ml, deviation_since=None)
    s = replace(s, channels={**s.channels, channel: c})
    s = replace(s, alarms=s.alarms.rearmed(now.liveness))
    return s, Reaction(actions, "safety")


def stop_confirmed(state: KernelState, channel: str, now: Now, config: KernelConfig) -> KernelState:
    """The pump's own reply to its stop showed it stopped (``StopConfirmed``, S12): the
    channel counts as stopped from ``now``, its flow and its drug's total drop there, as
    its read-back would record them. Nothing else is taken from the reply: the command
    stays unread (rate, volumes and alarms wait for the next read-back, which verifies;
    a pump seen running then under the emergency stop is stopped again). Every channel
    stopped under an emergency stop: the stop's condition is gone, as on a read-back."""
    c = state.channel(channel)
    s = _record(state, channel, False, c.set_rate, now.clinical, c.expected_cause, config)
    s = s.with_channel(channel, unread_command=c.unread_command)
    if s.estopped and not s.any_running():
        s = replace(s, alarms=s.alarms.condition_gone("estop"))
    return s


def reconcile(
    s: KernelState, channel: str, pending: Pending, reading: PumpReading, t: float
) -> KernelState:
    """S10: did the command whose acknowledgement was lost take effect? Judged on the
    first reading after it: a read-back, or a restart's first reading (``Resumed``)."""
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
        # the expectation goes back to what was verified before it; unless a command
        # issued since (an emergency stop, a cap's stop: what the kernel sends while one
        # is uncertain) has set it anew: that one stands
        if not pending.superseded:
            s = s.with_channel(
                channel,
                expected_rate=pending.previous_rate,
                expected_running=pending.previous_running,
            )
    else:
        verdict = "the pump shows neither the old nor the new setting"
    alarms = s.alarms.raised(
        "delivery_uncertain",
        Reason.DELIVERY_UNCERTAIN,
        Priority.MEDIUM,
        f"uncertain command reconciled by read-back: {verdict}",
        t,
        channel,
    ).condition_gone("delivery_uncertain", channel)
    return replace(s, alarms=alarms).with_channel(channel, pending=None)


def _record(
    s: KernelState,
    channel: str,
    running: bool,
    rate: Decimal,
    t: float,
    cause: str,
    config: KernelConfig,
) -> KernelState:
    c = s.channel(channel)
    effective = rate if running else Decimal(0)
    flow = c.flow.with_rate(t, effective) if c.drug_program is not None else c.flow
    s = s.with_channel(channel, running=running, set_rate=rate, unread_command=False, flow=flow)
    drug = c.drug
    if drug is None:  # nothing loaded, or a test fluid: no drug ran
        return s
    return record_history(s, drug, t, "estop" if s.estopped else cause, config)


def pump_replaced(state: KernelState, channel: str, now: Now, config: KernelConfig) -> KernelState:
    """The operator accepted a replacement of the channel's pump (``AcceptPump``): the
    old pump is gone, and everything the kernel knew of it goes with it.

    Its infusion ends now (the history counts the old rate until this instant, the safe
    side for the cap; a stop by the pump, as a pump that stopped by itself), with the
    ``pump_stopped`` alarm when one was running or expected: nothing of it is moved onto
    the new pump, whose first reading is judged as any pump's (running, it was not started
    by the safety process: stopped). The new pump's counter is its own: no unseen
    delivery counted from it, the container's baseline at its first reading. A relay
    role ends (the new pump's container was never confirmed, S15), and so do a prime
    and a pending command (nothing will ever read them back). The program stays: the
    drug, its limits and the patient's history are the patient's, not the pump's."""
    t = now.clinical
    c = state.channel(channel)
    s = state
    if c.expected_running or c.running:
        s = _alarm(
            s,
            "pump_stopped",
            Reason.PUMP_ALARM,
            Priority.HIGH,
            "the pump was replaced (accepted by the operator): the infusion stopped with "
            "the old pump and is not moved to the new one; start it again on purpose",
            t,
            channel,
        )
    s = s.with_channel(
        channel,
        pump_name="",
        pump_nameless=False,
        expected_running=False,
        expected_rate=Decimal(0),
        expected_cause="pump",
        expected_since=t,
        pending=None,
        under_retries=0,
        last_infused_ml=None,
        unseen_pending=False,
        deviation_since=None,
        container=replace(c.container, counter_ml=None, read_at=None, primed=False),
        standby=None,
        priming=None,
        relieved_by=None,
        stopped_itself_at=None,
    )
    if c.pending is not None:  # never to be read back: its alarm's condition ends with it
        s = _with_alarms(s, s.alarms.condition_gone("delivery_uncertain", channel))
    s = pump_names_alike(s, t)  # the old pump's name goes with it
    return _record(s, channel, False, Decimal(0), t, "pump", config)


def _above_hard_max(s: KernelState, channel: str, rate: Decimal, t: float) -> str | None:
    """S1 on read-back, against every limit set in force, on the patient's total of the
    drug (this channel's read rate and what the others give): what it is, in words,
    when it is above one of their hard maxima."""
    c = s.channel(channel)
    program = c.program
    if program is None:
        return None
    if isinstance(program, FluidProgram):
        if Fraction(rate) > program.max_rate:
            return f"above the maximum {num(program.max_rate)} mL/h of {program.what}"
        return None
    others = s.others_amount_rate(program.drug, channel)
    amount = Fraction(rate) * program.amount_per_ml + others
    total = f" (the total with channels {_others(s, program.drug, channel)})" if others else ""
    for limit_set in limit_sets(s, channel, t):
        dose = limit_set.dose(amount)
        hard = Fraction(limit_set.therapy.hard_max.value)
        if dose > hard:
            return (
                f"{num(dose)} {limit_set.unit}{total}, above the hard maximum {num(hard)} "
                f"{limit_set.unit}{limit_set.note}"
            )
    return None


def _others(s: KernelState, drug: str, but: str) -> str:
    return ", ".join(n for n, c in s.drug_channels(drug) if n != but and c.licensed_amount_rate())


def _accuracy(
    s: KernelState,
    channel: str,
    reading: PumpReading,
    t: float,
    config: KernelConfig,
    *,
    steady: bool,
) -> KernelState:
    """S13 / GIP: measured flow (pump's volume counter) against the verified rate.

    Judged only over spans in which the pump ran throughout (``steady``): when it stopped
    in between, the history cannot know the instant, and the pump's own alarm says why.
    """
    c = s.channel(channel)
    if (
        c.last_reading_at is None
        or c.last_infused_ml is None
        or not steady
        or reading.infused_ml < c.last_infused_ml  # the counter was cleared: a new base
    ):
        return s.with_channel(
            channel,
            last_reading_at=t,
            last_infused_ml=reading.infused_ml,
            deviation_since=None,
            flow=c.flow.since(t),
        )
    span = t - c.last_reading_at
    if span < config.accuracy_min_span_s:
        return s
    measured = reading.infused_ml - c.last_infused_ml
    expected = c.flow.volume_ml(c.last_reading_at, t)
    c = replace(c, last_reading_at=t, last_infused_ml=reading.infused_ml, flow=c.flow.since(t))
    s = replace(s, channels={**s.channels, channel: c})
    if measured < 0 or expected <= 0.01:
        return s.with_channel(channel, deviation_since=None)  # nothing to judge
    deviation = measured / expected - 1.0
    words = "over" if deviation > 0 else "under"
    message = (
        f"{words}-infusion: the pump's counter shows {measured:.3f} mL where the verified "
        f"rate gives {expected:.3f} mL ({deviation * 100:+.0f} %)"
    )
    if abs(deviation) > config.accuracy_far:
        priority = Priority.HIGH if deviation > 0 else Priority.MEDIUM
        return _alarm(s, f"accuracy_{words}", Reason.PUMP_ALARM, priority, message, t, channel)
    if abs(deviation) > config.accuracy_tolerance:
        since = c.deviation_since if c.deviation_since is not None else t - span
        s = s.with_channel(channel, deviation_since=since)
        if t - since >= config.accuracy_persistence_s:
            return _alarm(
                s, f"accuracy_{words}", Reason.PUMP_ALARM, Priority.MEDIUM, message, t, channel
            )
        return s
    alarms = s.alarms.condition_gone("accuracy_over", channel).condition_gone(
        "accuracy_under", channel
    )
    return _with_alarms(s, alarms).with_channel(channel, deviation_since=None)


def _cap(
    s: KernelState, drug: str, now: Now, config: KernelConfig
) -> tuple[KernelState, list[PumpAction]]:
    """S3 as time passes: warn when a cap in force nears, stop (every channel of the
    drug) before one is crossed."""
    channels = s.drug_channels(drug)
    if not channels:
        return s, []
    t = now.clinical
    scope = drug_scope(drug)
    history = s.history_of(drug)
    seg = history.current
    running = any(c.running for _, c in channels)
    per_s = float(seg.amount_per_h) / 3600.0 if seg is not None and running else 0.0
    warning: tuple[float, str] | None = None
    for cap, note in caps_in_force(s, drug, t):
        given = history.amount(t - float(cap.window_s), t)
        headroom = float(cap.base_amount) - given
        if per_s > 0 and headroom <= per_s * config.cap_guard_s:
            s = _alarm(
                s,
                "cap",
                Reason.CUMULATIVE_CAP,
                Priority.HIGH,
                f"cumulative cap reached ({_cap_words(cap, note)}): pump stopped; it is a "
                "hard limit",
                t,
                scope,
            )
            return s, [StopPump(name) for name, c in channels if c.running]
        if per_s > 0 and headroom / per_s <= config.cap_warning_s:
            minutes = headroom / per_s / 60.0
            if warning is None or minutes < warning[0]:
                warning = (minutes, _cap_words(cap, note))
    if warning is not None:
        minutes, shown = warning
        s = _alarm(
            s,
            "cap_warning",
            Reason.CUMULATIVE_CAP,
            Priority.MEDIUM,
            f"cumulative cap ({shown}) will be reached in {minutes:.0f} min at this rate: wean now",
            t,
            scope,
        )
        return s, []
    alarms = s.alarms.condition_gone("cap_warning", scope)
    if per_s == 0:
        alarms = alarms.condition_gone("cap", scope)
    return _with_alarms(s, alarms), []


def _cap_words(cap: CumulativeCap, note: str) -> str:
    """A cap as its alarms show it."""
    return f"{num(cap.amount)} {cap.unit} per {num(cap.window_h)} h{note}"
