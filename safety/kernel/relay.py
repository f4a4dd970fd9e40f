"""Relay infusion and container changes (S15), decided purely.

A vasopressor course outlives its syringe. Two ways through, both the safety process's:

- **relay**: a standby channel holds the same drug at the same concentration and diluent
  (a change of concentration at a changeover is the main risk factor of instability),
  primed, standing still; when the active channel's container would empty within
  ``handover_before_empty_s`` the safety process itself hands the infusion over, so it
  happens with the controller dead. ``quick`` starts the standby at the active rate and
  stops the active channel in one step; ``overlap`` moves the rate across in
  ``overlap_steps`` steps, the next one only once the standby's own volume counter shows
  its flow. Every step is judged like any request on the patient's total of the drug
  (S1 hard max, S5 wean, S3 cap; S7 on each pump) except that restoring at most the rate
  that ran before the handover is not a titration (S4). A step the rules refuse ends the
  handover with a high alarm, leaving the pumps as they are.
- **container change on one pump**: pause (a stop that is explicit, bounded by
  ``max_container_pause_s`` and alarmed past it, the one way a gradual-wean drug may stop
  above its stop threshold), the new container's volume (another concentration needs a
  re-program; nothing resets the drug's history), a prime, and a resume at the drug
  rate that ran before.

``decide_relay`` judges the operator's requests; ``relay_move`` says what the relay does
now; ``relay_deadline`` when it must look next. The host journals and executes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import Pumps, judge_total, pump_of, pump_range, total_context
from safety.kernel.model import (
    ArmStandby,
    ContainerChanged,
    DisarmStandby,
    Event,
    HandoverEnded,
    HandoverStarted,
    Now,
    PauseForContainerChange,
    PrimeChannel,
    PrimePump,
    PumpAction,
    RequestBody,
    ResumeAfterContainerChange,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
    Verdict,
)
from safety.kernel.state import ActiveProgram, ChannelState, FluidProgram, KernelState
from safety.library import DiluentError, DrugLibrary, parse_diluent
from safety.reasons import Reason
from safety.rules import num
from safety.units import DOSE_VALUE_MAX, UnitError, parse_concentration

#: an overlap step goes on once the standby's counter shows this share of its set flow
FLOW_SHOWN_SHARE = 0.9


# --------------------------------------------------------------------------- requests


def decide_relay(
    library: DrugLibrary | None,
    state: KernelState,
    body: RequestBody,
    now: Now,
    pumps: Pumps,
    config: KernelConfig,
) -> Verdict:
    """The relay and container-change requests (link, channel names and S10 checked)."""
    if isinstance(body, ArmStandby):
        return _arm(state, body, pumps, config)
    if isinstance(body, DisarmStandby):
        return _disarm(state, body)
    if isinstance(body, PrimeChannel):
        return _prime(state, body, pump_of(pumps, body.channel), config)
    if isinstance(body, PauseForContainerChange):
        return _pause(state, body, config)
    if isinstance(body, ContainerChanged):
        return _container_changed(state, body)
    assert isinstance(body, ResumeAfterContainerChange)
    return _resume(state, body, now, pumps, config)


def _handing(state: KernelState, *channels: str) -> Verdict | None:
    handover = state.handover
    if handover is not None and {handover.from_channel, handover.to_channel} & set(channels):
        return Verdict.refuse(
            Reason.RELAY,
            f"refused: the safety process is handing the infusion over from channel "
            f"{handover.from_channel} to {handover.to_channel}; wait until it ends",
        )
    return None


def solution_difference(active: ActiveProgram, standby: ActiveProgram) -> str | None:
    """What differs between two programs' solutions (None: the same drug, strength and
    diluent), for people."""
    a, b = active.spec, standby.spec
    if a.drug != b.drug:
        return f"drug {b.drug}, not {a.drug}"
    try:
        if parse_diluent(a.diluent) != parse_diluent(b.diluent):
            return f"diluent {b.diluent}, not {a.diluent}"
    except DiluentError as exc:  # pragma: no cover - both were checked when loaded
        return str(exc)
    if not active.concentration.same_strength(standby.concentration, Fraction(0)):
        return f"concentration {b.concentration}, not {a.concentration}"
    return None


def _arm(state: KernelState, body: ArmStandby, pumps: Pumps, config: KernelConfig) -> Verdict:
    b, a = body.channel, body.for_channel
    if a == b:
        return Verdict.refuse(Reason.BAD_INPUT, f"refused: channel {b} cannot relieve itself")
    refusal = _handing(state, a, b)
    if refusal is not None:
        return refusal
    ca, cb = state.channel(a), state.channel(b)
    if ca.standby is not None:
        return Verdict.refuse(
            Reason.RELAY,
            f"refused: channel {a} is itself the standby of channel {ca.standby.for_channel}",
        )
    pa, pb = ca.drug_program, cb.drug_program
    if pa is None:
        return Verdict.refuse(
            Reason.NO_PROGRAM, f"refused: channel {a} has no drug program to relieve"
        )
    if pb is None:
        return Verdict.refuse(
            Reason.NO_PROGRAM,
            f"refused: channel {b} has no drug program: load the same drug, concentration and "
            f"diluent as channel {a} ({pa.spec.drug}, {pa.spec.concentration} in "
            f"{pa.spec.diluent})",
        )
    if cb.program_stale is not None:
        return Verdict.refuse(
            Reason.PROGRAM_STALE, f"refused: channel {b}'s program: {cb.program_stale}"
        )
    difference = solution_difference(pa, pb)
    if difference is not None:
        return Verdict.refuse(
            Reason.STANDBY_MISMATCH,
            f"refused: channel {b} holds {difference}: a relief syringe must hold the same "
            f"drug at the same concentration and diluent as channel {a} (a change of "
            "concentration at a changeover is the main risk factor of instability)",
        )
    if cb.busy:
        return Verdict.refuse(
            Reason.ALREADY_INFUSING, f"refused: channel {b} is running; a standby stands still"
        )
    if cb.priming is not None or cb.pause is not None:
        what = "priming" if cb.priming is not None else "paused for a container change"
        return Verdict.refuse(Reason.RELAY, f"refused: channel {b} is {what}")
    if not cb.container.primed:
        return Verdict.refuse(
            Reason.NOT_PRIMED,
            f"refused: channel {b} has not been primed since its container was loaded: an "
            "unprimed syringe can take many minutes to deliver at low rates; prime it (line "
            "not connected to the patient), then arm it",
        )
    if ca.running:  # the standby's pump must run what the active one runs (S7)
        caps = pump_of(pumps, b)
        exact = Fraction(ca.set_rate)
        refusal = pump_range(caps, exact, caps.pump_rate(exact), f"channel {a}'s rate", {})
        if refusal is not None:
            return Verdict.refuse(refusal.reason, refusal.message + f" (on channel {b})")
    lead = _lead_s(body.strategy, config)
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"channel {b} armed as the standby of channel {a} ({body.strategy}): it takes over "
        f"when channel {a}'s container would empty within {lead / 60:.0f} min",
    )


def _disarm(state: KernelState, body: DisarmStandby) -> Verdict:
    c = state.channel(body.channel)
    if c.standby is None:
        return Verdict.refuse(
            Reason.RELAY, f"refused: channel {body.channel} is not armed as a standby"
        )
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"channel {body.channel} disarmed: channel {c.standby.for_channel} has no standby",
    )


def _prime(
    state: KernelState, body: PrimeChannel, pump: PumpCapabilities, config: KernelConfig
) -> Verdict:
    name = body.channel
    c = state.channel(name)
    if state.estopped:
        return Verdict.refuse(
            Reason.EMERGENCY_STOPPED,
            "refused: emergency stop is active; acknowledge it before priming",
        )
    refusal = _handing(state, name)  # a purge would read as the standby's flow
    if refusal is not None:
        return refusal
    if c.busy:
        return Verdict.refuse(
            Reason.ALREADY_INFUSING, f"refused: channel {name} is running; stop it to prime"
        )
    if c.standby is not None:
        return Verdict.refuse(
            Reason.RELAY, f"refused: channel {name} is an armed standby; disarm it to prime"
        )
    if c.priming is not None:
        return Verdict.refuse(Reason.RELAY, f"refused: channel {name} is already priming")
    volume = body.volume_ml
    most = config.max_prime_ml
    remaining = c.remaining_ml
    if remaining is not None:
        most = min(most, Decimal(repr(remaining)).quantize(Decimal("0.001")))
    if not volume.is_finite() or not (0 < volume <= most):
        return Verdict.refuse(
            Reason.BAD_INPUT,
            f"refused: volume_ml must be more than 0 and at most {num(most)} mL (the largest "
            f"prime{', and what the container holds' if most < config.max_prime_ml else ''})",
        )
    if not body.confirm_line_disconnected:
        return Verdict.refuse(
            Reason.CONFIRMATION_REQUIRED,
            f"refused until confirmed: a prime pushes {num(volume)} mL out of channel {name}'s "
            "line at the pump's top rate; confirm that the line is NOT connected to the "
            "patient",
        )
    if pump.max_rate_ml_h <= 0:
        return Verdict.refuse(
            Reason.PUMP_COMMS,
            f"refused: channel {name}'s pump has not answered since the safety process started",
        )
    actions: tuple[PumpAction, ...] = (PrimePump(volume, name),)
    if not c.interlock_enabled:
        actions = (SetInterlock(True, name), *actions)
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted: channel {name} primes {num(volume)} mL to waste",
        actions=actions,
    )


def _pause(state: KernelState, body: PauseForContainerChange, config: KernelConfig) -> Verdict:
    name = body.channel
    assert name is not None
    c = state.channel(name)
    refusal = _handing(state, name)
    if refusal is not None:
        return refusal
    if c.pause is not None:
        return Verdict.refuse(Reason.CONTAINER_PAUSE, f"refused: channel {name} is already paused")
    if c.priming is not None:
        # the pump runs to waste at its top rate: a pause would keep that as the rate to
        # resume at
        return Verdict.refuse(Reason.RELAY, f"refused: channel {name} is priming")
    if c.program is None:
        return Verdict.refuse(Reason.NO_PROGRAM, "refused: no program loaded")
    if not c.busy:
        return Verdict.refuse(
            Reason.NOT_INFUSING,
            f"refused: channel {name} is not running: change its container without a pause",
        )
    minutes = config.max_container_pause_s / 60
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted: channel {name} paused for a container change, at most {minutes:.0f} min "
        f"(alarmed past it); resume it after the change at {num(_paused_rate(c))} mL/h",
        actions=(StopPump(name),),
    )


def _paused_rate(c: ChannelState) -> Decimal:
    return c.expected_rate if c.expected_running else c.set_rate


def pause_event_fields(c: ChannelState) -> tuple[Decimal, str]:
    """What a ``ContainerPaused`` keeps: the rate that ran and the program's strength."""
    program = c.drug_program
    return _paused_rate(c), (program.spec.concentration if program is not None else "")


def _container_changed(state: KernelState, body: ContainerChanged) -> Verdict:
    name = body.channel
    assert name is not None
    c = state.channel(name)
    refusal = _handing(state, name)
    if refusal is not None:
        return refusal
    if c.busy:
        return Verdict.refuse(
            Reason.ALREADY_INFUSING,
            f"refused: channel {name} is running: pause it for the container change first",
        )
    if c.standby is not None:
        return Verdict.refuse(
            Reason.RELAY, f"refused: channel {name} is an armed standby; disarm it first"
        )
    if c.priming is not None:
        return Verdict.refuse(Reason.RELAY, f"refused: channel {name} is priming")
    volume = body.volume_ml
    capacity = Decimal(repr(c.container.capacity_ml)) if c.container.capacity_ml else None
    most = capacity if capacity is not None else DOSE_VALUE_MAX
    if not volume.is_finite() or not (0 < volume <= most):
        return Verdict.refuse(
            Reason.BAD_INPUT,
            f"refused: volume_ml must be more than 0 and at most {num(most)} mL"
            + (f" (what {c.container.name} holds)" if capacity is not None else ""),
        )
    note = ""
    if body.concentration is not None:
        try:
            given = parse_concentration(body.concentration)
        except UnitError as exc:
            return Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
        program = c.drug_program
        if program is not None and not given.same_strength(program.concentration, Fraction(0)):
            note = (
                f"; it holds {given}, the program {program.concentration}: re-program the "
                "channel before it runs"
            )
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"container changed on channel {name}: {num(volume)} mL; not primed{note}",
    )


def container_concentration(state: KernelState, body: ContainerChanged) -> str | None:
    """The concentration a ``ContainerLoaded`` records: the label's when it is not the
    program's (None: the program's)."""
    if body.concentration is None or body.channel is None:
        return None
    program = state.channel(body.channel).drug_program
    given = parse_concentration(body.concentration)
    if program is not None and given.same_strength(program.concentration, Fraction(0)):
        return None
    return body.concentration


def _resume(
    state: KernelState,
    body: ResumeAfterContainerChange,
    now: Now,
    pumps: Pumps,
    config: KernelConfig,
) -> Verdict:
    name = body.channel
    assert name is not None
    c = state.channel(name)
    pause = c.pause
    if pause is None:
        return Verdict.refuse(
            Reason.CONTAINER_PAUSE, f"refused: channel {name} is not paused for a change"
        )
    if state.estopped:
        return Verdict.refuse(
            Reason.EMERGENCY_STOPPED,
            "refused: emergency stop is active; acknowledge it before resuming",
        )
    if c.priming is not None:
        # a prime runs to waste: its flow counts in no total and its read-backs judge
        # no rate, so a resume now would give the patient drug no rule sees (S1, S3, S9)
        return Verdict.refuse(
            Reason.RELAY,
            f"refused: channel {name} is priming; resume it once the prime is done",
        )
    program = c.program
    if program is None:
        return Verdict.refuse(Reason.NO_PROGRAM, "refused: no program loaded")
    if c.program_stale is not None:
        return Verdict.refuse(
            Reason.PROGRAM_STALE,
            f"refused: {c.program_stale}. Load the program for the new container first",
        )
    pump = pump_of(pumps, name)
    if isinstance(program, FluidProgram):
        exact = Fraction(pause.rate_ml_h)
    else:
        before = parse_concentration(pause.concentration) if pause.concentration else None
        per_ml = before.base_per_ml() if before is not None else program.amount_per_ml
        exact = Fraction(pause.rate_ml_h) * per_ml / program.amount_per_ml
    rate = pump.pump_rate(exact)
    extra: dict[str, object] = {"rate_ml_h": rate, "unit": program.unit}
    refusal = pump_range(pump, exact, rate, "the rate before the pause", extra)
    if refusal is not None:
        return refusal
    if isinstance(program, ActiveProgram):
        drug = program.drug
        others = state.others_amount_rate(drug, name)
        asked = exact * program.amount_per_ml + others
        given = Fraction(rate) * program.amount_per_ml + others
        refusal = judge_total(
            state,
            drug,
            name,
            asked,
            given,
            others + c.current_amount_rate(),
            now.clinical,
            config,
            start=False,
            own_checked=False,
            # what ran before the pause is no titration; more than that is a rise (S4)
            resume_to=pause.total_before,
            context=total_context(state, drug, name) if others else "",
        )
        if refusal is not None:
            return Verdict.refuse(refusal.reason, refusal.message, **extra)
    actions: tuple[PumpAction, ...] = (SetRate(rate, name), StartPump(name))
    if not c.interlock_enabled:
        actions = (SetInterlock(True, name), *actions)
    gap = now.clinical - pause.since
    primed = "" if c.container.primed else "; not primed: expect a late start at low rates"
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted: channel {name} resumes at {num(rate)} mL/h after a pause of "
        f"{gap:.0f} s{primed}",
        actions=actions,
        rate_ml_h=rate,
        unit=program.unit,
    )


# --------------------------------------------------------------------------- the relay


@dataclass(frozen=True)
class RelayMove:
    """What the relay does now: ``events`` to journal (with the first action), the
    ``actions`` in order (cause "relay"), and the step they complete."""

    events: tuple[Event, ...]
    actions: tuple[PumpAction, ...]
    step: int
    last: bool
    message: str


def _lead_s(strategy: str, config: KernelConfig) -> float:
    """How long before the container empties a handover of ``strategy`` begins."""
    lead = config.handover_before_empty_s
    if strategy == "overlap":
        lead += config.overlap_steps * config.overlap_step_s
    return lead


def relay_deadline(state: KernelState, config: KernelConfig) -> float | None:
    """Clinical time of the relay's next moment: a handover's start, an overlap's next
    step, a stalled overlap's alarm, a container pause's end. May lie in the past (due)."""
    times: list[float] = []
    handover = state.handover
    if handover is not None:
        if handover.step_at is None:
            times.append(handover.started_at)
        elif handover.step < handover.steps:
            times.append(handover.step_at + config.overlap_step_s)
            times.append(handover.step_at + config.overlap_stall_s)
    else:
        for c in state.channels.values():
            if c.standby is None:
                continue
            active = state.channel(c.standby.for_channel)
            empty_at = active.empty_at()
            if empty_at is not None:
                times.append(empty_at - _lead_s(c.standby.strategy, config))
    for c in state.channels.values():
        if c.pause is not None:
            times.append(c.pause.until)
    return min(times, default=None)


def relay_move(
    state: KernelState, now: Now, config: KernelConfig, pumps: Pumps
) -> RelayMove | None:
    """What the relay does at ``now``, if anything."""
    if state.estopped:
        return None
    t = now.clinical
    handover = state.handover
    if handover is None:
        return _maybe_start(state, now, config, pumps)
    a, b = handover.from_channel, handover.to_channel
    ca, cb = state.channel(a), state.channel(b)
    if ca.pending is not None or cb.pending is not None:
        return None  # S10: wait for the read-back
    if handover.step >= handover.steps:
        return RelayMove((_ended(now, "done", "handed over"),), (), handover.step, True, "")
    if handover.step_at is not None:
        if not cb.running and not cb.expected_running:
            return _fall_back(state, now, config, pumps, f"channel {b} stopped by itself")
        a_stopped = not ca.running and not ca.expected_running
        waiting = t < handover.step_at + config.overlap_step_s or not _flow_shown(state, b)
        if waiting and not a_stopped:
            return None
        step = handover.steps if a_stopped else handover.step + 1
    else:
        step = 1  # resumed after a restart mid-way: the first step again, from what runs
    return _step(state, now, config, pumps, a, b, handover.rate_ml_h, step, handover.steps, ())


def _fall_back(
    state: KernelState, now: Now, config: KernelConfig, pumps: Pumps, why: str
) -> RelayMove:
    """The incoming channel failed mid-way: the outgoing one takes back the whole rate it
    handed over (what ran before is no titration), and the handover ends failed."""
    handover = state.handover
    assert handover is not None
    a = handover.from_channel
    ca = state.channel(a)
    pa = ca.drug_program
    ended = _ended(now, "failed", f"{why}; channel {a} runs the whole rate again")
    if pa is None or not ca.running:
        return RelayMove((ended,), (), handover.step, True, why)
    caps = pump_of(pumps, a)
    exact = Fraction(handover.rate_ml_h)
    rate = caps.pump_rate(exact)
    drug = pa.drug
    others = state.others_amount_rate(drug, a)
    given = others + Fraction(rate) * pa.amount_per_ml
    refusal = pump_range(caps, exact, rate, f"channel {a}'s rate", {}) or judge_total(
        state,
        drug,
        a,
        given,
        given,
        state.total_amount_rate(drug),
        now.clinical,
        config,
        start=False,
        own_checked=False,
        resume_to=given,
    )
    if refusal is not None:
        return RelayMove((_ended(now, "failed", f"{why}; {refusal.message}"),), (), 0, True, why)
    return RelayMove((ended,), (SetRate(rate, a),), handover.step, True, why)


def _flow_shown(state: KernelState, channel: str) -> bool:
    """The incoming channel's own counter shows (most of) the flow it was set to since
    the last step."""
    handover = state.handover
    assert handover is not None and handover.step_at is not None
    c = state.channel(channel)
    start = handover.counter_at_step
    counter, read_at = c.container.counter_ml, c.container.read_at
    if start is None or counter is None or read_at is None or not c.running:
        return False
    if read_at <= handover.step_at:
        return False  # no time has passed: no flow can have been shown
    expected = float(c.set_rate) * (read_at - handover.step_at) / 3600.0
    return counter - start >= FLOW_SHOWN_SHARE * expected


#: pump alarms that stop a channel's flow on their own and call its armed standby in at
#: once (quick), in the words of the handover's reason. A syringe pump that senses only
#: motor force (NE-1000, Harvard) reports a syringe emptier than it was said to be as a
#: stall, and cannot tell it from an occlusion; for a vasopressor the standby on its own
#: line is what keeps the drug flowing either way (the total stays what ran, and the
#: stopped pump is not restarted by the safety process)
RELIEVED_ON: dict[str, str] = {
    "empty": "empty",
    "stall": "with its motor stalled (an empty syringe, or an occlusion)",
    "occlusion": "occluded",
}


def _maybe_start(
    state: KernelState, now: Now, config: KernelConfig, pumps: Pumps
) -> RelayMove | None:
    t = now.clinical
    for b, cb in state.channels.items():
        standby = cb.standby
        if standby is None:
            continue
        a = standby.for_channel
        ca = state.channel(a)
        if ca.pending is not None or cb.pending is not None or ca.drug_program is None:
            continue
        empty_at = ca.empty_at()
        stopped_by = next(
            (
                key
                for key in RELIEVED_ON
                if (alarm := state.alarms.get(f"pump:{key}", a)) is not None and alarm.active
            ),
            None,
        )
        if (
            ca.running
            and empty_at is not None
            and t >= empty_at - _lead_s(standby.strategy, config)
        ):
            why = f"channel {a}'s container empties in about {max(0.0, empty_at - t) / 60:.0f} min"
            strategy = standby.strategy
        elif (
            not ca.running
            and not ca.expected_running
            and stopped_by is not None
            and ca.stopped_itself_at is not None
            and ca.stopped_itself_at >= standby.armed_at
            and ca.set_rate > 0
        ):
            why = f"channel {a}'s pump stopped {RELIEVED_ON[stopped_by]}"
            strategy = "quick"
        else:
            continue
        steps = config.overlap_steps if strategy == "overlap" else 1
        started = HandoverStarted(a, b, strategy, steps, ca.set_rate, why, now)
        return _step(state, now, config, pumps, a, b, ca.set_rate, 1, steps, (started,))
    return None


def _step(
    state: KernelState,
    now: Now,
    config: KernelConfig,
    pumps: Pumps,
    a: str,
    b: str,
    rate_a0: Decimal,
    step: int,
    steps: int,
    events: tuple[Event, ...],
) -> RelayMove:
    """Step ``step`` of ``steps``: the standby at ``step/steps`` of the rate handed over,
    the outgoing channel at the rest (stopped at the last step), judged on the total."""
    ca, cb = state.channel(a), state.channel(b)
    pa, pb = ca.drug_program, cb.drug_program
    if pa is None or pb is None:
        return _failed(events, now, step, "a channel lost its program")
    difference = solution_difference(pa, pb)
    if difference is not None:
        return _failed(events, now, step, f"channel {b} now holds {difference}")
    caps_a, caps_b = pump_of(pumps, a), pump_of(pumps, b)
    target = Fraction(rate_a0) * pa.amount_per_ml  # what channel a gave: handed over
    while True:
        share = target * step / steps
        exact_b = share / pb.amount_per_ml
        rate_b = caps_b.pump_rate(exact_b)
        exact_a = (target - Fraction(rate_b) * pb.amount_per_ml) / pa.amount_per_ml
        rate_a = caps_a.pump_rate(exact_a) if step < steps else Decimal(0)
        if step < steps and (rate_a < caps_a.min_rate_ml_h or rate_b < caps_b.min_rate_ml_h):
            step += 1  # a share one pump cannot run: take the next step at once
            continue
        break
    extra: dict[str, object] = {}
    refusal = pump_range(caps_b, exact_b, rate_b, f"channel {b}'s share", extra)
    if refusal is None and rate_a > 0:
        refusal = pump_range(caps_a, exact_a, rate_a, f"channel {a}'s share", extra)
    drug = pa.drug
    others = state.others_amount_rate(drug, a) - cb.licensed_amount_rate()
    given = others + Fraction(rate_b) * pb.amount_per_ml + Fraction(rate_a) * pa.amount_per_ml
    if refusal is None:
        refusal = judge_total(
            state,
            drug,
            b,
            given,
            given,
            state.total_amount_rate(drug),
            now.clinical,
            config,
            start=False,
            own_checked=False,
            resume_to=target + others,
            context=" (the total handed over)",
        )
    if refusal is not None:
        return _failed(events, now, step, refusal.message)
    actions: list[PumpAction] = []
    if not cb.interlock_enabled:
        actions.append(SetInterlock(True, b))
    actions.append(SetRate(rate_b, b))
    if not cb.expected_running:
        actions.append(StartPump(b))
    if step >= steps:
        if ca.expected_running:
            actions.append(StopPump(a))
    else:
        actions.append(SetRate(rate_a, a))
    unit = pa.unit
    message = (
        f"relay {a} -> {b}, step {step}/{steps}: {b} at {num(rate_b)} mL/h, "
        + (f"{a} at {num(rate_a)} mL/h" if step < steps else f"{a} stopped")
        + f" (total {num(pa.dose_of_amount_rate(given))} {unit})"
    )
    return RelayMove(events, tuple(actions), step, step >= steps, message)


def _ended(now: Now, outcome: str, detail: str) -> HandoverEnded:
    return HandoverEnded(outcome, detail, now)  # type: ignore[arg-type]


def _failed(events: tuple[Event, ...], now: Now, step: int, why: str) -> RelayMove:
    return RelayMove((*events, _ended(now, "failed", why)), (), step, True, why)


__all__ = [
    "RelayMove",
    "container_concentration",
    "decide_relay",
    "pause_event_fields",
    "relay_deadline",
    "relay_move",
    "solution_difference",
]
