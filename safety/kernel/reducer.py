"""Events -> state: the one place the kernel's state changes.

Live, the host journals each event and then applies it; after a crash, replaying the
journal through this same function rebuilds the same state (S14). Must be total and
deterministic: it never raises on a well-formed event and reads no clock.
"""

from __future__ import annotations

from dataclasses import replace

from safety.alarms import Priority
from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    AlarmsAcknowledged,
    ClientDropped,
    CommandFailed,
    CommandIssued,
    CommsFailed,
    ControllerAttached,
    ControllerLost,
    EmergencyStopRaised,
    Event,
    FluidLimits,
    JournalRecovered,
    LibraryChecked,
    PatientAdmitted,
    PatientUpdated,
    ProgramLimits,
    ProgramLoaded,
    ReadbackReceived,
    RequestDecided,
    Resumed,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
    Ticked,
    TimelineResumed,
)
from safety.kernel.observe import count_unseen_delivery, observe, record_history, tick
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    Patient,
    Pending,
    PriorLimits,
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
        return _program_loaded(state, event, t)
    if isinstance(event, PatientAdmitted):
        patient = Patient(event.patient_id, event.patient, t, event.how)
        if event.how == "first program":
            return replace(state, patient=patient)
        # a new patient: fresh histories and no program (S16: the only way to get them)
        return replace(state, patient=patient, drugs={}, program=None, program_stale=None)
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
        stale = None if state.program is None else f"{why}: re-program to confirm it"
        return replace(state, alarms=alarms, program_stale=stale)
    if isinstance(event, RequestDecided):
        if event.seq is not None and event.session == state.session and event.seq > state.last_seq:
            return replace(state, last_seq=event.seq)
        return state
    if isinstance(event, CommandIssued):
        return _issued(state, event)
    if isinstance(event, CommandFailed):
        return _failed(state, event)
    if isinstance(event, ReadbackReceived):
        return observe(state, event.reading, event.now, config)[0]
    if isinstance(event, CommsFailed):
        alarms = state.alarms.raised(
            "pump_comms",
            Reason.PUMP_COMMS,
            Priority.HIGH,
            f"pump not answering: {event.detail}",
            t,
        )
        return replace(state, comms_ok=False, alarms=alarms)
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
        if not (state.running or state.expected_running):
            # nothing is infusing: nothing to hold, nobody to alarm; changes still wait
            # for a controller to attach
            return replace(state, attached=False, hold=True)
        holding = f"holding {num(state.set_rate)} mL/h"
        alarms = state.alarms.raised(
            "controller_lost",
            Reason.HOLD,
            Priority.HIGH,
            f"controller lost ({event.why}): {holding}; changes refused until a controller "
            "re-attaches",
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
        return replace(state, estopped=True, alarms=alarms)
    if isinstance(event, AlarmsAcknowledged):
        alarms = state.alarms.acknowledged(event.keys, event.now.liveness)
        estopped = state.estopped and alarms.has("estop")
        return replace(state, alarms=alarms, estopped=estopped)
    if isinstance(event, Ticked):
        return tick(state, event.now, config)[0]
    if isinstance(event, ClientDropped):
        return state  # on record only (S17)
    assert isinstance(event, Resumed)
    return _resumed(state, event, config)


def _program_loaded(state: KernelState, event: ProgramLoaded, t: float) -> KernelState:
    """The channel's program; the drug's record keeps its history, and the limits of the
    drug's previous program, if they differ, keep applying until their windows pass."""
    limits = event.limits
    if isinstance(limits, FluidLimits):  # no drug: no history, no patient
        program = program_of(event.spec, limits, t, event.infused_baseline_ml)
        return replace(state, program=program, program_stale=None, under_retries=0)
    record = state.drugs.get(limits.drug, DrugRecord())
    priors = record.priors_at(t)
    old = record.limits
    if old is not None and old != limits:
        priors = (*priors, PriorLimits(old, t + window_horizon_s(old), _why_prior(old, limits)))
    drugs = {**state.drugs, limits.drug: DrugRecord(record.history, limits, priors)}
    program = ActiveProgram(event.spec, limits, t, event.infused_baseline_ml)
    return replace(state, program=program, drugs=drugs, program_stale=None, under_retries=0)


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
    program = state.drug_program
    stale = state.program_stale
    if program is not None and event.how == "confirmed":
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
    return replace(state, patient=new, program_stale=stale)


def _library_checked(state: KernelState, event: LibraryChecked) -> KernelState:
    t = event.now.clinical
    alarms = state.alarms
    stale = state.program_stale
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
    if state.program is not None:
        stale = words
    return replace(state, alarms=alarms, program_stale=stale)


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
    return replace(state, alarms=alarms)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _issued(state: KernelState, event: CommandIssued) -> KernelState:
    action = event.action
    if isinstance(action, SetRate):
        retries = state.under_retries if event.cause == "retry" else 0
        return replace(
            state,
            expected_rate=action.rate_ml_h,
            expected_cause=event.cause,
            expected_since=event.now.clinical,
            under_retries=retries,
        )
    if isinstance(action, StartPump):
        return replace(
            state,
            expected_running=True,
            expected_cause=event.cause,
            expected_since=event.now.clinical,
        )
    if isinstance(action, StopPump):
        return replace(
            state,
            expected_running=False,
            expected_cause=event.cause,
            expected_since=event.now.clinical,
        )
    assert isinstance(action, SetInterlock)
    return replace(state, interlock_enabled=action.pump_enabled)


def _failed(state: KernelState, event: CommandFailed) -> KernelState:
    t = event.now.clinical
    if event.failure == "rejected":
        alarms = state.alarms.raised(
            "pump_rejected",
            Reason.PUMP_ALARM,
            Priority.MEDIUM,
            f"the pump refused a command: {event.detail}",
            t,
        ).condition_gone("pump_rejected")
        return replace(
            state,
            expected_rate=state.set_rate,
            expected_running=state.running,
            alarms=alarms,
        )
    if isinstance(event.action, SetInterlock):
        alarms = state.alarms.raised(
            "interlock", Reason.PUMP_ALARM, Priority.HIGH, f"interlock relay: {event.detail}", t
        )
        return replace(state, alarms=alarms)
    # timeout, checksum error, disconnect: the pump may or may not have acted (S10)
    alarms = state.alarms.raised(
        "delivery_uncertain",
        Reason.DELIVERY_UNCERTAIN,
        Priority.MEDIUM,
        f"command outcome uncertain ({event.failure}: {event.detail}); reconciling by read-back",
        t,
    )
    pending = Pending(event.action, state.set_rate, state.running, t)
    return replace(state, pending=pending, alarms=alarms)


def _resumed(state: KernelState, event: Resumed, config: KernelConfig) -> KernelState:
    """After a restart: adopt what the pump is doing, touch nothing, note any change.

    A change the pump shows that the journal's last command asked for is that command's
    doing (it was journaled and sent, the reply was lost with the process), never the
    pump's own: no false alarm, and its rise counts from when it was issued (more drug
    counted, never less). Delivery the pump's own counter shows beyond what the verified
    rates explain (the gap was longer than the timeline could credit) is counted too.
    """
    t = event.now.clinical
    s = replace(state, attached=False, hold=False, session=None, pending=None)
    reading = event.reading
    if reading is None:  # counted at the first reading (``count_unseen_delivery``)
        return replace(s, unseen_pending=True)
    seg = s.history.current
    was_running = seg is not None and seg.rate_ml_h > 0
    now_rate = reading.set_rate_ml_h if reading.running else None
    same = (was_running and seg is not None and now_rate == seg.rate_ml_h) or (
        not was_running and now_rate is None
    )
    as_commanded = reading.running == s.expected_running and (
        not reading.running or reading.set_rate_ml_h == s.expected_rate
    )
    alarms = s.alarms
    cause = "command"
    if not same and as_commanded and s.expected_since is not None:
        cause = s.expected_cause
        if now_rate is not None and s.program is not None:
            rises = seg is None or not was_running or now_rate > seg.rate_ml_h
            if rises:
                s = record_history(s, s.expected_since, now_rate, cause, config)
    elif not same:
        cause = "pump"
        alarms = alarms.raised(
            "resume_changed",
            Reason.PUMP_ALARM,
            Priority.MEDIUM,
            "the pump's state changed while the safety process was down: "
            + (f"now {num(reading.set_rate_ml_h)} mL/h" if reading.running else "now stopped"),
            t,
        ).condition_gone("resume_changed")
    s = count_unseen_delivery(s, reading.infused_ml, reading.alarms, t)
    if reading.running:
        # Unsupervised until a controller attaches: hold the rate, and tell people that
        # the safety process itself went down (S11 applies as for a lost controller).
        alarms = alarms.raised(
            "safety_restarted",
            Reason.HOLD,
            Priority.HIGH,
            f"the safety process restarted ({event.detail or 'resumed'}); holding "
            f"{num(reading.set_rate_ml_h)} mL/h until a controller attaches",
            t,
        ).condition_gone("safety_restarted")
    return replace(
        s,
        alarms=alarms,
        hold=reading.running,
        expected_running=reading.running,
        expected_rate=reading.set_rate_ml_h,
        expected_cause=cause,
        unseen_pending=False,
    )
