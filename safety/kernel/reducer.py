"""Events -> state: the one place the kernel's state changes.

Live, the host journals each event and then applies it; after a crash, replaying the
journal through this same function rebuilds the same state (S14). Must be total and
deterministic: it never raises on a well-formed event and reads no clock.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from safety.alarms import Priority
from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    AlarmsAcknowledged,
    BenchConfigured,
    ClientDropped,
    CommandFailed,
    CommandIssued,
    CommsFailed,
    ContainerLoaded,
    ContainerPaused,
    ContainerResumed,
    ControllerAttached,
    ControllerLost,
    EmergencyStopRaised,
    Event,
    FluidLimits,
    HandoverEnded,
    HandoverStarted,
    HandoverStepped,
    JournalRecovered,
    LibraryChecked,
    PatientAdmitted,
    PatientUpdated,
    PrimePump,
    ProgramLimits,
    ProgramLoaded,
    PumpNamed,
    ReadbackReceived,
    RequestDecided,
    Resumed,
    SetInterlock,
    SetRate,
    StandbyArmed,
    StandbyDisarmed,
    StartPump,
    StopConfirmed,
    StopPump,
    Ticked,
    TimelineResumed,
)
from safety.kernel.observe import (
    count_unseen_delivery,
    observe,
    pump_names_alike,
    pump_replaced,
    reconcile,
    record_history,
    stop_confirmed,
    tick,
)
from safety.kernel.relay import solution_difference
from safety.kernel.state import (
    ActiveProgram,
    ChannelState,
    ContainerPause,
    ContainerState,
    DrugRecord,
    Handover,
    KernelState,
    Patient,
    Pending,
    Priming,
    PriorLimits,
    Program,
    Standby,
    program_of,
    window_horizon_s,
)
from safety.reasons import Reason
from safety.rules import num


def apply(config: KernelConfig, state: KernelState, event: Event) -> KernelState:
    """The state after ``event``. Reads no library: a journaled event carries what it
    needs (a program its limits), so a replay never depends on the library of the day."""
    t = event.now.clinical
    if isinstance(event, ProgramLoaded):
        return _standbys_still_alike(_program_loaded(state, event, t), event.channel, t)
    if isinstance(event, PatientAdmitted):
        patient = Patient(event.patient_id, event.patient, t, event.how)
        if event.how == "first program":
            return replace(state, patient=patient)
        # a new patient: fresh histories and no program (S16: the only way to get them)
        channels = {
            name: replace(c, program=None, program_stale=None, standby=None)
            for name, c in state.channels.items()
        }
        return replace(state, patient=patient, drugs={}, channels=channels)
    if isinstance(event, PatientUpdated):
        return _patient_updated(state, event)
    if isinstance(event, LibraryChecked):
        return _library_checked(state, event)
    if isinstance(event, TimelineResumed):
        return _timeline_resumed(state, event)
    if isinstance(event, JournalRecovered):
        why = (
            f"the journal was damaged ({event.detail}); {event.entries_kept} entries were "
            f"readable and replayed, the damaged file is kept as {event.damaged_file}"
        )
        alarms = state.alarms.raised(
            "journal_damaged", Reason.JOURNAL_DAMAGED, Priority.HIGH, why, t
        ).condition_gone("journal_damaged")
        stale = f"{why}: re-program to confirm it"
        return _stale(replace(state, alarms=alarms), None, stale)
    if isinstance(event, RequestDecided):
        if event.seq is not None and event.session == state.session and event.seq > state.last_seq:
            return replace(state, last_seq=event.seq)
        return state
    if isinstance(event, CommandIssued):
        return _issued(state, event)
    if isinstance(event, CommandFailed):
        return _failed(state, event)
    if isinstance(event, ReadbackReceived):
        return observe(state, event.reading, event.now, config, event.channel)[0]
    if isinstance(event, StopConfirmed):
        return stop_confirmed(state, event.channel, event.now, config)
    if isinstance(event, CommsFailed):
        alarms = state.alarms.raised(
            "pump_comms",
            Reason.PUMP_COMMS,
            Priority.HIGH,
            f"pump not answering: {event.detail}",
            t,
            event.channel,
        )
        return replace(state, alarms=alarms).with_channel(
            event.channel, comms_ok=False, other_pump=event.other_pump
        )
    if isinstance(event, ControllerAttached):
        return replace(
            state,
            session=event.session,
            last_seq=0,
            attached=True,
            hold=False,
            alarms=state.alarms.condition_gone("controller_lost"),
        )
    if isinstance(event, ControllerLost):
        if not state.attached:
            return state
        if not state.any_busy():
            # nothing is infusing: nothing to hold, nobody to alarm; changes still wait
            # for a controller to attach
            return replace(state, attached=False, hold=True)
        alarms = state.alarms.raised(
            "controller_lost",
            Reason.HOLD,
            Priority.HIGH,
            f"controller lost ({event.why}): {_holding(state)}; changes refused until a "
            "controller re-attaches",
            t,
        )
        return replace(state, attached=False, hold=True, alarms=alarms)
    if isinstance(event, EmergencyStopRaised):
        alarms = state.alarms.raised(
            "estop",
            Reason.EMERGENCY_STOPPED,
            Priority.HIGH,
            f"emergency stop ({event.source})",
            t,
        )
        # a handover in progress ends with it: nothing restarts a pump but a person
        return replace(state, estopped=True, alarms=alarms, handover=None)
    if isinstance(event, AlarmsAcknowledged):
        alarms = state.alarms.acknowledged(event.keys, event.now.liveness)
        estopped = state.estopped and alarms.has("estop")
        return replace(state, alarms=alarms, estopped=estopped)
    if isinstance(event, Ticked):
        return tick(state, event.now, config)[0]
    if isinstance(event, ClientDropped):
        return state  # on record only (S17)
    if isinstance(event, BenchConfigured):
        return _bench_configured(state, event)
    if isinstance(event, StandbyArmed | StandbyDisarmed | ContainerLoaded | ContainerPaused):
        return _relay_setting(state, event)
    if isinstance(event, ContainerResumed):
        return state.with_channel(event.channel, pause=None)
    if isinstance(event, PumpNamed):
        if event.nameless:
            named = state.with_channel(event.channel, pump_name="", pump_nameless=True)
            return pump_names_alike(named, t)
        if not event.name:  # a replacement accepted: the old pump and all it did are gone
            return pump_replaced(state, event.channel, event.now, config)
        named = state.with_channel(event.channel, pump_name=event.name, pump_nameless=False)
        return pump_names_alike(named, t)
    if isinstance(event, HandoverStarted | HandoverStepped | HandoverEnded):
        return _handover(state, event)
    assert isinstance(event, Resumed)
    return _resumed(state, event, config)


def _holding(state: KernelState) -> str:
    rates = [(n, c.set_rate) for n, c in state.channels.items() if c.busy]
    if len(state.channels) <= 1:
        return f"holding {num(rates[0][1])} mL/h" if rates else "holding"
    return "holding " + ", ".join(f"{n} {num(r)} mL/h" for n, r in rates)


def _stale(state: KernelState, channels: tuple[str, ...] | None, why: str) -> KernelState:
    """Every loaded program (of ``channels``, when given) is stale for ``why``."""
    out = dict(state.channels)
    for name, c in state.channels.items():
        if c.program is not None and (channels is None or name in channels):
            out[name] = replace(c, program_stale=why)
    return replace(state, channels=out)


def _program_loaded(state: KernelState, event: ProgramLoaded, t: float) -> KernelState:
    """The channel's program; the drug's record keeps its history, and the limits of the
    drug's previous program, if they differ, keep applying until their windows pass."""
    limits = event.limits
    channel = event.channel
    if isinstance(limits, FluidLimits):  # no drug: no history, no patient
        return _with_program(
            state, channel, program_of(event.spec, limits, t, event.infused_baseline_ml)
        )
    record = state.drugs.get(limits.drug, DrugRecord())
    priors = record.priors_at(t)
    old = record.limits
    if old is not None and old != limits:
        priors = (*priors, PriorLimits(old, t + window_horizon_s(old), _why_prior(old, limits)))
    drugs = {**state.drugs, limits.drug: DrugRecord(record.history, limits, priors)}
    program = ActiveProgram(event.spec, limits, t, event.infused_baseline_ml)
    return _with_program(replace(state, drugs=drugs), channel, program)


def _with_program(state: KernelState, channel: str, program: Program) -> KernelState:
    """A new program: what the channel's last one left (a stale mark, retries, a relief,
    a stop by the pump itself) no longer stands."""
    return state.with_channel(
        channel,
        program=program,
        program_stale=None,
        under_retries=0,
        relieved_by=None,
        stopped_itself_at=None,
    )


def _standbys_still_alike(state: KernelState, channel: str, t: float) -> KernelState:
    """A new program on a channel with an armed standby: a standby that no longer holds
    the same solution is disarmed, with an alarm (S15). Left armed, it silenced the early
    no-standby warning, and its handover failed only at the lead, minutes before empty."""
    active = state.channel(channel).drug_program
    for name, c in state.channels.items():
        standby = c.standby
        if standby is None or standby.for_channel != channel:
            continue
        program = c.drug_program
        if active is None or program is None:
            difference: str | None = f"channel {channel} now runs no drug"
        else:
            difference = solution_difference(active, program)
            if difference is not None:
                difference = f"it holds {difference}"
        if difference is None:
            continue
        alarms = state.alarms.raised(
            "standby_disarmed",
            Reason.STANDBY_MISMATCH,
            Priority.MEDIUM,
            f"channel {name} is no longer the standby of channel {channel} after its new "
            f"program: {difference}",
            t,
            name,
        ).condition_gone("standby_disarmed", name)
        state = replace(state, alarms=alarms).with_channel(name, standby=None)
    return state


def _why_prior(old: ProgramLimits, new: ProgramLimits) -> str:
    changes = []
    if old.profile != new.profile:
        changes.append(f"profile {old.profile} -> {new.profile}")
    if old.weight_kg != new.weight_kg:
        changes.append(f"weight {old.weight_kg} -> {new.weight_kg} kg")
    if old.therapy != new.therapy:
        changes.append(f"therapy {old.therapy.display_name} -> {new.therapy.display_name}")
    if old.cap != new.cap:
        changes.append("cumulative cap changed")
    if old.library_hash != new.library_hash:
        changes.append("library updated")
    return f"limits of {old.what} ({', '.join(changes) or 'changed'})"


def _patient_updated(state: KernelState, event: PatientUpdated) -> KernelState:
    patient = state.patient
    if patient is None:  # not journaled by the core; kept total for hand-made journals
        return state
    new = replace(patient, spec=event.patient)
    channels = dict(state.channels)
    for name, c in state.channels.items():
        program = c.drug_program
        if program is None or event.how != "confirmed":
            continue
        limits = program.limits
        weight_changed = (
            event.patient.weight_kg is not None and limits.weight_kg != event.patient.weight_kg
        )
        if limits.profile != event.patient.profile or weight_changed:
            stale = (
                f"the patient is now {event.patient.profile}"
                + (f", {num(event.patient.weight_kg)} kg" if event.patient.weight_kg else "")
                + f"; {program.what} was made for {limits.profile}"
                + (f", {num(limits.weight_kg)} kg" if limits.weight_kg is not None else "")
                + ": re-program it"
            )
            channels[name] = replace(c, program_stale=stale)
    return replace(state, patient=new, channels=channels)


def _library_checked(state: KernelState, event: LibraryChecked) -> KernelState:
    t = event.now.clinical
    alarms = state.alarms
    if event.status == "ok":
        alarms = alarms.condition_gone("library_unusable").condition_gone("library_changed")
        return replace(state, alarms=alarms)
    if event.status == "unusable":
        words = f"the drug library cannot be used: {event.detail}"
        alarms = alarms.raised("library_unusable", Reason.LIBRARY_UNUSABLE, Priority.HIGH, words, t)
    else:
        words = f"the drug library changed since the program was loaded: {event.detail}"
        alarms = alarms.raised("library_changed", Reason.PROGRAM_STALE, Priority.HIGH, words, t)
        alarms = alarms.condition_gone("library_changed")  # latched until acknowledged
    return _stale(replace(state, alarms=alarms), event.channels or None, words)


def _timeline_resumed(state: KernelState, event: TimelineResumed) -> KernelState:
    if not event.discontinuity:
        return state
    t = event.now.clinical
    gap = _duration(event.credited_s)
    if event.conservative:
        how = (
            f"counted as {gap} ({event.basis}); the real gap may be longer, and every "
            "window and cap counts the shorter one"
        )
    else:
        how = f"{gap} by {event.basis}"
    alarms = state.alarms.raised(
        "timeline",
        Reason.TIMELINE_GAP,
        Priority.LOW,
        f"the clinical timeline resumed after the safety process was down: {how}",
        t,
    ).condition_gone("timeline")
    if event.conservative:
        return replace(state, alarms=alarms, licence_since=t)
    return replace(state, alarms=alarms)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _issued(state: KernelState, event: CommandIssued) -> KernelState:
    action = event.action
    channel = action.channel
    t = event.now.clinical
    c = state.channel(channel)
    if c.stopped_itself_at is not None:  # a command since: no longer the pump's own stop
        state = state.with_channel(channel, stopped_itself_at=None)
    if c.pending is not None and isinstance(action, SetRate | StartPump | StopPump):
        # issued while another is uncertain (the kernel sends only stops then): this
        # one's expectation is the one a read-back judges (``reconcile``)
        state = state.with_channel(channel, pending=replace(c.pending, superseded=True))
    if isinstance(action, SetRate):
        retries = c.under_retries if event.cause == "retry" else 0
        return state.with_channel(
            channel,
            expected_rate=action.rate_ml_h,
            expected_cause=event.cause,
            expected_since=t,
            under_retries=retries,
            unread_command=True,
        )
    if isinstance(action, StartPump):
        return state.with_channel(
            channel,
            expected_running=True,
            expected_cause=event.cause,
            expected_since=t,
            unread_command=True,
            relieved_by=None,
        )
    if isinstance(action, StopPump):
        return state.with_channel(
            channel,
            expected_running=False,
            expected_cause=event.cause,
            expected_since=t,
            unread_command=True,
        )
    if isinstance(action, PrimePump):
        priming = Priming(float(action.volume_ml), t, c.container.counter_ml)
        return state.with_channel(channel, priming=priming)
    assert isinstance(action, SetInterlock)
    if state.interlock_scope == "bench":  # one relay: every pump is enabled or cut
        channels = {
            n: replace(ch, interlock_enabled=action.pump_enabled)
            for n, ch in state.channels.items()
        }
        return replace(state, channels=channels).with_channel(
            channel, interlock_enabled=action.pump_enabled
        )
    return state.with_channel(channel, interlock_enabled=action.pump_enabled)


def _failed(state: KernelState, event: CommandFailed) -> KernelState:
    t = event.now.clinical
    channel = event.action.channel
    c = state.channel(channel)
    if event.failure == "rejected":
        alarms = state.alarms.raised(
            "pump_rejected",
            Reason.PUMP_ALARM,
            Priority.MEDIUM,
            f"the pump refused a command: {event.detail}",
            t,
            channel,
        ).condition_gone("pump_rejected", channel)
        priming = None if isinstance(event.action, PrimePump) else c.priming
        return replace(state, alarms=alarms).with_channel(
            channel,
            expected_rate=c.set_rate,
            expected_running=c.running,
            priming=priming,
        )
    if isinstance(event.action, SetInterlock):
        scope = "" if state.interlock_scope == "bench" else channel
        alarms = state.alarms.raised(
            "interlock",
            Reason.PUMP_ALARM,
            Priority.HIGH,
            f"interlock relay: {event.detail}",
            t,
            scope,
        )
        return replace(state, alarms=alarms)
    # timeout, checksum error, disconnect: the pump may or may not have acted (S10)
    alarms = state.alarms.raised(
        "delivery_uncertain",
        Reason.DELIVERY_UNCERTAIN,
        Priority.MEDIUM,
        f"command outcome uncertain ({event.failure}: {event.detail}); reconciling by read-back",
        t,
        channel,
    )
    pending = Pending(event.action, c.set_rate, c.running, t)
    return replace(state, alarms=alarms).with_channel(channel, pending=pending)


def _bench_configured(state: KernelState, event: BenchConfigured) -> KernelState:
    """The channels of this run, in their configured order; a channel the journal knows
    with the same container keeps what it knew. The controller link starts afresh."""
    t = event.now.clinical
    channels: dict[str, ChannelState] = {}
    alarms = state.alarms
    for spec in event.channels:
        old = state.channels.get(spec.name, ChannelState())
        container = old.container
        if container.name != spec.container:
            container = ContainerState(
                name=spec.container,
                kind=spec.container_kind,
                volume_ml=spec.loaded_ml,
                capacity_ml=spec.volume_ml,
                counter_ml=container.counter_ml,
                loaded_at=t,
            )
        # a pump name heard by another kind of driver says nothing of this one's pump:
        # a driver changed in the config is a deliberate change of pump
        same_driver = old.driver in ("", spec.driver)
        pump_name = old.pump_name if same_driver else ""
        channels[spec.name] = replace(
            old,
            container=container,
            driver=spec.driver,
            pump_name=pump_name,
            pump_nameless=old.pump_nameless and same_driver,
            serial_port=spec.serial_port,
            connecting=True,  # until its ``Resumed``
        )
    for name, c in state.channels.items():
        if name not in channels and c.busy:
            alarms = alarms.raised(
                "channel_removed",
                Reason.PUMP_COMMS,
                Priority.HIGH,
                f"channel {name} was running and is no longer in the safety process's "
                "config: its pump is unsupervised",
                t,
            )
    standbys = {n: c for n, c in channels.items() if c.standby is not None}
    for name, c in standbys.items():
        assert c.standby is not None
        if c.standby.for_channel not in channels:
            channels[name] = replace(c, standby=None)
    configured = replace(
        state,
        channels=channels,
        interlock_scope=event.interlock_scope,
        attached=False,
        session=None,
        hold=False,
        alarms=alarms,
    )
    return pump_names_alike(configured, t)  # the devices may be named otherwise now


def _relay_setting(
    state: KernelState,
    event: StandbyArmed | StandbyDisarmed | ContainerLoaded | ContainerPaused,
) -> KernelState:
    t = event.now.clinical
    channel = event.channel
    c = state.channel(channel)
    if isinstance(event, StandbyArmed):
        standby = Standby(event.for_channel, event.strategy, t)
        # one standby per active channel: arming another lets the first go
        channels = {
            n: replace(ch, standby=None)
            if ch.standby is not None and ch.standby.for_channel == event.for_channel
            else ch
            for n, ch in state.channels.items()
        }
        alarms = state.alarms.condition_gone("relay_no_standby", event.for_channel)
        return replace(state, channels=channels, alarms=alarms).with_channel(
            channel, standby=standby
        )
    if isinstance(event, StandbyDisarmed):
        return state.with_channel(channel, standby=None)
    if isinstance(event, ContainerLoaded):
        container = replace(
            c.container,
            name=event.container,
            volume_ml=event.volume_ml,
            used_ml=0.0,
            primed=False,
            loaded_at=t,
        )
        pause = replace(c.pause, changed=True) if c.pause is not None else None
        stale = c.program_stale
        if event.concentration is not None:
            stale = (
                f"the new container holds {event.concentration}, the program "
                f"{c.program.spec.concentration if c.program is not None else 'none'}: "
                "re-program the channel for it"
            )
        alarms = state.alarms.condition_gone("relay_no_standby", channel)
        return replace(state, alarms=alarms).with_channel(
            channel, container=container, pause=pause, program_stale=stale, relieved_by=None
        )
    pause = ContainerPause(
        t, event.rate_ml_h, event.max_s, event.concentration, False, _total_before(state, event)
    )
    return state.with_channel(channel, pause=pause)


def _total_before(state: KernelState, event: ContainerPaused) -> Fraction | None:
    """The drug's total a pause's resume may restore without a titration (S4): the other
    channels as they run (journaled before the pause's stop), and this one at the rate it
    was told and will be resumed at (a read-back within tolerance of it is the same
    rate). Pauses of the drug that overlap share one "before": a channel paused earlier
    is not counted at 0 for the later one."""
    c = state.channel(event.channel)
    program = c.drug_program
    if program is None:
        return None
    drug = program.drug
    total = state.others_amount_rate(drug, event.channel)
    total += Fraction(event.rate_ml_h) * program.amount_per_ml
    for name, other in state.drug_channels(drug):
        pause = other.pause
        if name != event.channel and pause is not None and pause.total_before is not None:
            total = max(total, pause.total_before)
    return total


def _handover(
    state: KernelState, event: HandoverStarted | HandoverStepped | HandoverEnded
) -> KernelState:
    t = event.now.clinical
    if isinstance(event, HandoverStarted):
        started = Handover(
            event.from_channel,
            event.to_channel,
            event.strategy,
            t,
            event.steps,
            rate_ml_h=event.rate_ml_h,
        )
        alarms = state.alarms.condition_gone("relay_no_standby", event.from_channel)
        return replace(state, handover=started, alarms=alarms).with_channel(
            event.to_channel, standby=None
        )
    handover = state.handover
    if handover is None:  # kept total for hand-made journals
        return state
    if isinstance(event, HandoverStepped):
        stepped = replace(handover, step=event.step, step_at=t, counter_at_step=event.counter_ml)
        alarms = state.alarms.condition_gone("relay_stalled", handover.to_channel)
        return replace(state, handover=stepped, alarms=alarms)
    alarms = state.alarms.condition_gone("relay_stalled", handover.to_channel)
    if event.outcome == "done":
        state = state.with_channel(handover.from_channel, relieved_by=handover.to_channel)
    else:
        alarms = alarms.raised(
            "handover_failed",
            Reason.RELAY,
            Priority.HIGH,
            f"the handover from channel {handover.from_channel} to {handover.to_channel} "
            f"{'failed' if event.outcome == 'failed' else 'was cancelled'}: {event.detail}",
            t,
            handover.from_channel,
        ).condition_gone("handover_failed", handover.from_channel)
    return replace(state, handover=None, alarms=alarms)


def _resumed(state: KernelState, event: Resumed, config: KernelConfig) -> KernelState:
    """After a restart: adopt what the pump is doing, touch nothing, note any change.

    A change the pump shows that the journal's last command asked for is that command's
    doing (it was journaled and sent, the reply was lost with the process), never the
    pump's own: no false alarm, and its rise counts from when it was issued (more drug
    counted, never less). Delivery the pump's own counter shows beyond what the verified
    rates explain (the gap was longer than the timeline could credit) is counted too.
    """
    t = event.now.clinical
    channel = event.channel
    s = replace(state, attached=False, session=None).with_channel(channel, connecting=False)
    reading = event.reading
    # held while any channel read at this start runs (the channels resume one by one;
    # one that could not be read holds nothing)
    others_run = any(o.expected_running for n, o in s.channels.items() if n != channel)
    if reading is None:
        # counted at the first reading (``count_unseen_delivery``); a command whose reply
        # was lost (before the process went down, or an emergency stop to a channel not
        # connected yet during this start) stays uncertain until that reading (S10)
        return replace(s, hold=others_run).with_channel(channel, unseen_pending=True)
    pending = s.channel(channel).pending
    if pending is not None:  # S10, judged on this reading: its alarm's condition ends
        s = reconcile(s, channel, pending, reading, t)
    if s.channel(channel).priming is not None:
        # a prime under way runs to waste: no infusion to hold, adopt or count as given;
        # the read-back that follows ends it, or stops it (``observe``)
        return replace(s, hold=others_run).with_channel(channel, unseen_pending=False)
    c = s.channel(channel)
    # told to run and found stopped: the pump stopped by itself while the process was
    # down (an armed standby relieves it, S15); found running: no such stop stands
    stopped_itself_at = None if reading.running else c.stopped_itself_at
    if c.expected_running and not reading.running:
        stopped_itself_at = t
    seg = s.history_of(c.drug).current if c.drug is not None else None
    was_running = c.running
    now_rate = reading.set_rate_ml_h if reading.running else None
    same = (was_running and now_rate == c.set_rate) or (not was_running and now_rate is None)
    as_commanded = reading.running == c.expected_running and (
        not reading.running or reading.set_rate_ml_h == c.expected_rate
    )
    alarms = s.alarms
    cause = "command"
    if not same and as_commanded and c.expected_since is not None:
        cause = c.expected_cause
        if now_rate is not None and c.program is not None:
            rises = seg is None or not was_running or now_rate > c.set_rate
            if rises:
                since = c.expected_since
                flow = c.flow.with_rate(since, now_rate) if c.drug is not None else c.flow
                s = s.with_channel(
                    channel, running=True, set_rate=now_rate, unread_command=False, flow=flow
                )
                if c.drug is not None:
                    s = record_history(s, c.drug, since, cause, config)
    elif not same:
        cause = "pump"
        alarms = alarms.raised(
            "resume_changed",
            Reason.PUMP_ALARM,
            Priority.MEDIUM,
            "the pump's state changed while the safety process was down: "
            + (f"now {num(reading.set_rate_ml_h)} mL/h" if reading.running else "now stopped"),
            t,
            channel,
        ).condition_gone("resume_changed", channel)
    s = count_unseen_delivery(s, reading.infused_ml, reading.alarms, t, channel)
    if reading.running:
        # Unsupervised until a controller attaches: hold the rate, and tell people that
        # the safety process itself went down (S11 applies as for a lost controller).
        # Under an emergency stop nothing is held: the first read-back stops the pump
        # again (observe, S12 holds until acknowledged), and the words must not say
        # otherwise.
        where = f" on channel {channel}" if len(s.channels) > 1 else ""
        restarted = f"the safety process restarted ({event.detail or 'resumed'})"
        rate = num(reading.set_rate_ml_h)
        alarms = alarms.raised(
            "safety_restarted",
            Reason.EMERGENCY_STOPPED if s.estopped else Reason.HOLD,
            Priority.HIGH,
            f"{restarted} under the emergency stop; the pump{where} reads {rate} mL/h: "
            "it is stopped again at its first read-back"
            if s.estopped
            else f"{restarted}; holding {rate} mL/h{where} until a controller attaches",
            t,
        ).condition_gone("safety_restarted")
    return replace(s, alarms=alarms, hold=others_run or reading.running).with_channel(
        channel,
        expected_running=reading.running,
        expected_rate=reading.set_rate_ml_h,
        expected_cause=cause,
        unseen_pending=False,
        stopped_itself_at=stopped_itself_at,
    )
