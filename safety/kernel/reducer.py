"""Events -> state: the one place the kernel's state changes.

Live, the host journals each event and then applies it; after a crash, replaying the
journal through this same function rebuilds the same state (S14). Must be total and
deterministic: it never raises on a well-formed event and reads no clock.
"""

from __future__ import annotations

from dataclasses import replace

from safety.alarms import Priority
from safety.kernel.config import KernelConfig
from safety.kernel.history import RateHistory
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
    ProgramLoaded,
    ReadbackReceived,
    RequestDecided,
    Resumed,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
    Ticked,
)
from safety.kernel.observe import observe, tick
from safety.kernel.state import ActiveProgram, KernelState, Pending, program_check
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.rules import num


def apply(
    library: DrugLibrary, config: KernelConfig, state: KernelState, event: Event
) -> KernelState:
    t = event.now.clinical
    if isinstance(event, ProgramLoaded):
        check = program_check(library, event.spec)
        program = ActiveProgram(event.spec, check, t, event.infused_baseline_ml)
        history = state.history
        old = state.program
        if old is not None and old.check.selection.drug_id != check.selection.drug_id:
            history = RateHistory()  # another drug: its windows start afresh
        return replace(state, program=program, history=history, under_retries=0)
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
    return _resumed(state, event)


def _issued(state: KernelState, event: CommandIssued) -> KernelState:
    action = event.action
    if isinstance(action, SetRate):
        retries = state.under_retries if event.cause == "retry" else 0
        return replace(
            state,
            expected_rate=action.rate_ml_h,
            expected_cause=event.cause,
            under_retries=retries,
        )
    if isinstance(action, StartPump):
        return replace(state, expected_running=True, expected_cause=event.cause)
    if isinstance(action, StopPump):
        return replace(state, expected_running=False, expected_cause=event.cause)
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


def _resumed(state: KernelState, event: Resumed) -> KernelState:
    """After a restart: adopt what the pump is doing, touch nothing, note any change."""
    t = event.now.clinical
    s = replace(state, attached=False, hold=False, session=None, pending=None)
    reading = event.reading
    if reading is None:
        return s
    seg = s.history.current
    was_running = seg is not None and seg.rate_ml_h > 0
    now_rate = reading.set_rate_ml_h if reading.running else None
    same = (was_running and seg is not None and now_rate == seg.rate_ml_h) or (
        not was_running and now_rate is None
    )
    alarms = s.alarms
    if not same:
        alarms = alarms.raised(
            "resume_changed",
            Reason.PUMP_ALARM,
            Priority.MEDIUM,
            "the pump's state changed while the safety process was down: "
            + (f"now {num(reading.set_rate_ml_h)} mL/h" if reading.running else "now stopped"),
            t,
        ).condition_gone("resume_changed")
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
    s = replace(
        s,
        alarms=alarms,
        hold=reading.running,
        expected_running=reading.running,
        expected_rate=reading.set_rate_ml_h,
        expected_cause="command" if same else "pump",
    )
    return s
