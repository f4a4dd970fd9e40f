"""Requests -> verdicts: invariants S1-S8, S10-S12, S15 applied to what the controller
asks.

``decide`` is a pure function of (library, state, request, now, pump capabilities): it
changes nothing. The host journals the verdict, then executes its actions; the state
changes only through journaled events (``reducer.py``).

A request addresses one channel (its ``channel``; None: the bench's only one). What is
the pump's is judged per channel (S6 program, S7 range, S10 uncertain command); what is
the patient's is judged on the patient's total of the drug, summed over every channel
giving it (S1 hard max, S2 soft limits, S3 cap, S4 rises, S5 wean and stop threshold): a
request on channel B is judged on what the other channels give plus B's new rate, so a
second pump can never double a dose or stop a vasopressor abruptly. The relay and
container-change requests are ``safety.kernel.relay``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.history import RateHistory
from safety.kernel.limits import LimitSet, drug_limit_sets, limit_sets
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    AcceptPump,
    AcknowledgeAlarms,
    AdmitPatient,
    ArmStandby,
    ChangeDose,
    ContainerChanged,
    DisarmStandby,
    EmergencyStop,
    LoadProgram,
    Now,
    PatientSpec,
    PauseForContainerChange,
    PrimeChannel,
    ProgramSpec,
    PumpAction,
    Request,
    ResumeAfterContainerChange,
    SetInterlock,
    SetRate,
    StartInfusion,
    StartPump,
    StopInfusion,
    StopPump,
    UpdatePatient,
    Verdict,
)
from safety.kernel.state import (
    ActiveProgram,
    ChannelError,
    ChannelState,
    FluidProgram,
    KernelState,
    Program,
    dose_per_amount_h,
    fluid_limits,
    limits_of,
    program_check,
)
from safety.library import CumulativeCap, DiluentError, DrugLibrary, LookupProblem
from safety.reasons import Reason
from safety.rules import Finding, RuleRefusal, Severity, limit_findings, num
from safety.units import (
    DOSE_VALUE_MAX,
    BodyWeight,
    UnitError,
    fraction_to_decimal,
    parse_dose_unit,
)

#: the pump capabilities a decision needs: one per channel, or one for every channel
Pumps = PumpCapabilities | Mapping[str, PumpCapabilities]

#: request bodies that address one channel
_CHANNEL_BODIES = (
    LoadProgram,
    StartInfusion,
    ChangeDose,
    StopInfusion,
    PauseForContainerChange,
    ContainerChanged,
    ResumeAfterContainerChange,
)
_RELAY_BODIES = (
    ArmStandby,
    DisarmStandby,
    PrimeChannel,
    PauseForContainerChange,
    ContainerChanged,
    ResumeAfterContainerChange,
)


def pump_of(pumps: Pumps, channel: str) -> PumpCapabilities:
    """The capabilities of ``channel``'s pump (unknown: a range of nothing)."""
    if isinstance(pumps, PumpCapabilities):
        return pumps
    found = pumps.get(channel)
    return found if found is not None else _UNKNOWN_PUMP


_UNKNOWN_PUMP = PumpCapabilities(Decimal(0), Decimal(0), lambda rate: rate)


def decide(
    library: DrugLibrary | None,
    state: KernelState,
    request: Request,
    now: Now,
    pump: Pumps,
    config: KernelConfig,
) -> Verdict:
    body = request.body
    # S12: an emergency stop is never refused, whatever its sequence or the state.
    if isinstance(body, EmergencyStop):
        return _emergency_stop(state, body)
    refusal = _check_link(state, request, now)
    if refusal is not None:
        return refusal
    if isinstance(body, AcknowledgeAlarms):
        return Verdict(True, Reason.ACCEPTED, "alarms acknowledged")
    if isinstance(body, AdmitPatient | UpdatePatient):
        uncertain = _uncertain(state, list(state.channels))
        if uncertain is not None:
            return uncertain
        if library is None:
            return _no_library()
        if isinstance(body, AdmitPatient):
            return _admit(library, state, body)
        return _update_patient(library, state, body)
    if isinstance(body, AcceptPump):
        return _accept_pump(state, body)
    if isinstance(body, ArmStandby | DisarmStandby | PrimeChannel):
        named = [body.channel, *([body.for_channel] if isinstance(body, ArmStandby) else [])]
        for name in named:
            if name not in state.channels:
                return _no_channel(state, name)
    else:
        assert isinstance(body, _CHANNEL_BODIES)
        try:
            body = replace(body, channel=state.resolve(body.channel))
        except ChannelError as exc:
            return Verdict.refuse(Reason.UNKNOWN_CHANNEL, f"refused: {exc}")
    channel = body.channel
    assert channel is not None
    c = state.channel(channel)
    uncertain = _uncertain(state, _involved(state, body))
    if uncertain is not None:
        return uncertain
    if isinstance(body, _RELAY_BODIES):
        from safety.kernel.relay import decide_relay  # noqa: PLC0415 - relay uses this module

        return decide_relay(library, state, body, now, pump, config)
    if isinstance(body, LoadProgram):
        if library is None:
            return _no_library()
        return _load_program(library, state, channel, body, now.clinical)
    program = c.program
    if program is None:
        return Verdict.refuse(Reason.NO_PROGRAM, "refused: no program loaded" + _on(state, channel))
    if c.program_stale is not None:
        return Verdict.refuse(
            Reason.PROGRAM_STALE,
            f"refused: {c.program_stale}. The pump is supervised at its current rate; "
            "load the program again (same drug, concentration and diluent) to change it",
        )
    refusal = _relay_busy(state, channel)
    if refusal is not None:
        return refusal
    if isinstance(body, StartInfusion | ChangeDose) and body.unit is not None:
        refusal = _unit_check(body.unit, program)
        if refusal is not None:
            return refusal
    caps = pump_of(pump, channel)
    if isinstance(body, StartInfusion):
        if state.estopped:
            return Verdict.refuse(
                Reason.EMERGENCY_STOPPED,
                "refused: emergency stop is active; acknowledge it before starting again",
            )
        if c.busy:
            return Verdict.refuse(
                Reason.ALREADY_INFUSING, "refused: already infusing" + _on(state, channel)
            )
        return _dose_change(
            state, channel, program, body.dose, body.confirm_soft_limits, now, caps, config,
            start=True,
        )  # fmt: skip
    if isinstance(body, ChangeDose):
        if not c.running:
            return Verdict.refuse(
                Reason.NOT_INFUSING, "refused: not infusing" + _on(state, channel) + "; start first"
            )
        return _dose_change(
            state, channel, program, body.dose, body.confirm_soft_limits, now, caps, config,
            start=False,
        )  # fmt: skip
    assert isinstance(body, StopInfusion)
    return _stop(state, channel, program, now.clinical)


def _accept_pump(state: KernelState, body: AcceptPump) -> Verdict:
    """A replaced pump is accepted while the channel's recorded pump does not answer (gone,
    or another pump answering in its place): never while it answers as the channel's own,
    whose infusion would then be in the hands of whatever pump came next on the port, nor
    during a relay handover on the channel (the safety process is driving both pumps),
    nor when the pump answering there names itself as another channel's pump that does
    not answer on its own port (ports swapped: accepting would drive that channel's
    pump as this one's).
    Neither an uncertain command nor a running infusion holds it up: both wait on a pump
    that is gone. Accepted, the old pump's infusion ends with it (``pump_replaced``)."""
    try:
        channel = state.resolve(body.channel)
    except ChannelError as exc:
        return Verdict.refuse(Reason.UNKNOWN_CHANNEL, f"refused: {exc}")
    c = state.channel(channel)
    on = f"channel {channel}'s"
    handover = state.handover
    if handover is not None and channel in (handover.from_channel, handover.to_channel):
        return Verdict.refuse(
            Reason.PUMP_REPLACEMENT,
            f"refused: a relay handover {handover.from_channel} -> {handover.to_channel} is "
            f"running on {on} pump: accept a replacement once it has ended",
        )
    if not c.pump_name:
        return Verdict.refuse(
            Reason.PUMP_REPLACEMENT,
            f"refused: no pump name is on record for {on} pump (its pump gives none, or "
            "none has answered yet): the first pump to name itself on its port is taken "
            "as its own; nothing to accept",
        )
    swapped = [
        n
        for n, d in state.channels.items()
        if n != channel and c.other_pump and d.pump_name == c.other_pump and not d.comms_ok
    ]
    if swapped:
        return Verdict.refuse(
            Reason.PUMP_REPLACEMENT,
            f"refused: the pump on {on} port names itself {c.other_pump!r}, as channel "
            f"{swapped[0]}'s pump, which does not answer on its own port: the ports look "
            "swapped, not a pump replaced; put each pump back on its own port (name ports by "
            "/dev/serial/by-id/)",
        )
    if c.comms_ok:
        return Verdict.refuse(
            Reason.PUMP_REPLACEMENT,
            f"refused: {on} own pump ({c.pump_name!r}) answers on its port: nothing to "
            "accept. Accept a replacement once the new pump is on the port and refused "
            "as another pump (or while the old one does not answer)",
        )
    ended = " (its infusion ends with the old pump: start it again on the new one)"
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"the next pump to name itself on {on} port is taken as its own, in place of "
        f"{c.pump_name!r}{ended if c.busy else ''}; the new pump is read from scratch (its "
        "syringe set, its counter its own) and never started by this acceptance",
    )


def _on(state: KernelState, channel: str) -> str:
    """' on channel B' on a bench of several channels ('' on a one-pump bench)."""
    return f" on channel {channel}" if len(state.channels) > 1 else ""


def _no_library() -> Verdict:
    return Verdict.refuse(
        Reason.LIBRARY_UNUSABLE,
        "refused: the safety process has no usable drug library (see its alarm); "
        "it supervises the running program with the limits it was loaded with",
    )


def _no_channel(state: KernelState, name: str) -> Verdict:
    try:
        state.resolve(name)
    except ChannelError as exc:
        return Verdict.refuse(Reason.UNKNOWN_CHANNEL, f"refused: {exc}")
    raise AssertionError("a known channel")  # pragma: no cover


def _involved(state: KernelState, body: object) -> list[str]:
    """The channels whose uncertain command (S10) blocks ``body``: its own, the standby's
    active one, and for a dose change every channel giving the same drug (the patient's
    total is not known while one of them is uncertain)."""
    channel = getattr(body, "channel", None)
    assert isinstance(channel, str)
    names = [channel]
    if isinstance(body, ArmStandby):
        names.append(body.for_channel)
    drug = state.channel(channel).drug
    if drug is not None and isinstance(body, StartInfusion | ChangeDose | StopInfusion):
        names += [n for n, _ in state.drug_channels(drug) if n not in names]
    return names


def _uncertain(state: KernelState, channels: list[str]) -> Verdict | None:
    """S10: nothing new while a command's outcome is uncertain."""
    for name in channels:
        c = state.channel(name)
        if c.pending is not None:
            where = f" on channel {name}" if len(state.channels) > 1 else ""
            return Verdict.refuse(
                Reason.DELIVERY_UNCERTAIN,
                f"refused: the last pump command's outcome{where} is uncertain (its "
                "acknowledgement was lost); waiting for a read-back to reconcile it. Nothing "
                "is repeated blindly." + ("" if c.comms_ok else _gone_pump_hint(name, c)),
            )
    return None


def _gone_pump_hint(name: str, c: ChannelState) -> str:
    """What ends the wait when the pump does not answer (it may never again): a restart
    does not (it learns nothing of the command), a pump that answers on the port does."""
    if c.pump_name:
        how = f"if it is gone for good, accept its replacement (console: newpump {name})"
    else:
        how = "a pump put on its port in its place is read as the channel's own"
    return f" Channel {name}'s pump does not answer: its first reading will settle it; {how}."


def _relay_busy(state: KernelState, channel: str) -> Verdict | None:
    """S15: while the safety process hands a drug over, its channels take no orders (the
    handover is itself judged step by step on the drug's total); an armed standby or a
    channel paused for a container change takes none either."""
    c = state.channel(channel)
    handover = state.handover
    if handover is not None:
        drug = state.channel(handover.to_channel).drug
        if channel in (handover.from_channel, handover.to_channel) or (
            drug is not None and c.drug == drug
        ):
            return Verdict.refuse(
                Reason.RELAY,
                f"refused: the safety process is handing the infusion over from channel "
                f"{handover.from_channel} to {handover.to_channel}; wait until it ends (the "
                "emergency stop acts at once)",
            )
    if c.standby is not None:
        return Verdict.refuse(
            Reason.RELAY,
            f"refused: channel {channel} is armed as the standby of channel "
            f"{c.standby.for_channel}; disarm it first",
        )
    if c.priming is not None:
        return Verdict.refuse(Reason.RELAY, f"refused: channel {channel} is priming")
    if c.pause is not None:
        return Verdict.refuse(
            Reason.CONTAINER_PAUSE,
            f"refused: channel {channel} is paused for a container change; resume it after "
            "the change (it runs again at its rate before the pause)",
        )
    return None


def _emergency_stop(state: KernelState, body: EmergencyStop) -> Verdict:
    """Every pump's stop and the interlock. The pumps that answer are stopped first, then
    the interlock is cut, then the silent ones are tried: a pump whose link is down may
    take seconds to give up (a Modbus TCP device's reconnect attempts), and neither the
    stop of a pump that answers nor the relay may wait for it. A channel a restart has
    not connected yet (a press of the stop button while it connects the others) counts as
    silent: its link is unknown."""
    names = list(state.channels) or [DEFAULT_CHANNEL]
    answering = [n for n in names if n not in state.channels or _answers(state.channel(n))]
    silent = [n for n in names if n not in answering]
    if state.interlock_scope == "channel":
        cuts: list[PumpAction] = [SetInterlock(False, n) for n in names]
    else:
        cuts = [SetInterlock(False, names[0])]
    stops: list[PumpAction] = [StopPump(n) for n in answering]
    late: list[PumpAction] = [StopPump(n) for n in silent]
    if len(names) == 1:
        what = "pump stopped and interlocked"
    else:
        what = f"every pump stopped ({', '.join(names)}) and interlocked"
    return Verdict(
        True,
        Reason.EMERGENCY_STOPPED,
        f"emergency stop ({body.source}): {what}",
        actions=(*stops, *cuts, *late),
    )


def _answers(channel: ChannelState) -> bool:
    """The channel's pump answered its last exchange, in this run of the process."""
    return channel.comms_ok and not channel.connecting


# --------------------------------------------------------------------------- S8


def _check_link(state: KernelState, request: Request, now: Now) -> Verdict | None:
    meta = request.meta
    if meta is None:
        return Verdict.refuse(Reason.BAD_INPUT, "refused: a request without session and sequence")
    if state.hold:  # S11
        return Verdict.refuse(
            Reason.HOLD,
            "refused: the safety process is holding the last verified rate after losing the "
            "controller; re-attach and re-sync first",
        )
    if not state.attached or meta.session != state.session:
        return Verdict.refuse(
            Reason.NOT_ATTACHED,
            "refused: this request is not from the attached controller session",
        )
    if meta.seq <= state.last_seq:
        return Verdict.refuse(
            Reason.STALE_SEQUENCE,
            f"refused: sequence {meta.seq} is not after {state.last_seq} (a duplicate, replayed "
            "or out-of-order command)",
        )
    if now.liveness > meta.expires_at:
        late = now.liveness - meta.expires_at
        return Verdict.refuse(
            Reason.EXPIRED, f"refused: request expired {late:.3f} s before it was examined"
        )
    return None


# --------------------------------------------------------------------------- S6


def _load_program(
    library: DrugLibrary, state: KernelState, channel: str, body: LoadProgram, t: float
) -> Verdict:
    spec = body.spec
    if spec.library_hash != library.content_hash:
        return Verdict.refuse(
            Reason.LIBRARY_MISMATCH,
            f"refused: the program was made with library {spec.library_hash[:19]}, the safety "
            f"process runs {library.content_hash[:19]}",
        )
    c = state.channel(channel)
    if c.standby is not None:
        return Verdict.refuse(
            Reason.RELAY,
            f"refused: channel {channel} is armed as the standby of channel "
            f"{c.standby.for_channel}; disarm it before loading another program",
        )
    if c.priming is not None:
        return Verdict.refuse(Reason.RELAY, f"refused: channel {channel} is priming")
    if spec.test_fluid:
        refusal = _paused_for(c, channel, None)
        return refusal if refusal is not None else _load_fluid(library, c, spec)
    program = c.drug_program
    running = c.busy
    in_place = running and program is not None and _same_solution(program, spec)
    if running and not in_place:
        return Verdict.refuse(
            Reason.ALREADY_INFUSING,
            "refused: an infusion is running; a program for another drug, concentration or "
            "diluent needs it ended first (wean and stop); the same solution may be "
            "re-programmed while it runs",
        )
    try:
        check = program_check(library, spec)
    except RuleRefusal as exc:
        return Verdict.refuse(exc.finding.code, exc.finding.message, findings=(exc.finding,))
    except (UnitError, DiluentError, LookupProblem) as exc:
        return Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
    refusal = _paused_for(c, channel, check.selection.drug_id)  # the library's own name
    if refusal is not None:
        return refusal
    patient = state.patient
    if patient is not None:
        mismatch = _patient_mismatch(patient.spec, check.selection.profile_id, spec.weight_kg)
        if mismatch is not None:
            return Verdict.refuse(
                Reason.PATIENT_MISMATCH,
                f"refused: {mismatch}; correct the patient first (a confirmed patient "
                "update), or admit a new patient",
            )
    unit = check.selection.therapy.dose_unit
    if in_place:
        assert program is not None
        # the running rate under the new program: never above its hard max (S1), with
        # what the other channels give of the drug
        limits = limits_of(check, library.content_hash)
        total = state.total_amount_rate(program.drug)
        running_dose = total * dose_per_amount_h(limits)
        hard = Fraction(check.selection.therapy.hard_max.value)
        if running_dose > hard:
            pumps = "the pump runs" if total == c.current_amount_rate() else "the pumps run"
            return Verdict.refuse(
                Reason.HARD_MAX,
                f"refused: {pumps} {num(running_dose)} {unit} under this program, above "
                f"its hard maximum {num(hard)} {unit}; wean below it first",
            )
    where = " (re-programmed in place: the pump runs on)" if in_place else ""
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"program loaded: {check.what}, {check.concentration}{where}",
        findings=check.findings,
        unit=unit,
    )


def _paused_for(c: ChannelState, channel: str, drug: str | None) -> Verdict | None:
    """A channel paused for a container change takes a program of its own drug only
    (``drug`` None: a test fluid): the resume restores the paused drug's rate, and another
    drug's program would start that drug unordered, above its start limits. Another
    strength for the new container is fine."""
    if c.pause is None or c.program is None or drug == c.drug:
        return None
    was = c.drug
    return Verdict.refuse(
        Reason.CONTAINER_PAUSE,
        f"refused: channel {channel} is paused for a container change of "
        f"{was or 'a test fluid'}: until it resumes, only a program of the same "
        f"{'drug' if was else 'kind'} may be loaded (another strength for the new "
        "container is fine)",
    )


def _load_fluid(library: DrugLibrary, c: ChannelState, spec: ProgramSpec) -> Verdict:
    if c.busy:
        return Verdict.refuse(
            Reason.ALREADY_INFUSING,
            "refused: an infusion is running; a test fluid is loaded only when nothing runs",
        )
    try:
        limits = fluid_limits(library, spec)
    except LookupProblem as exc:
        return Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
    fluid = limits.bench_fluid
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"program loaded: {limits.what}: no drug, rate limits only "
        f"({num(fluid.min_rate_ml_h.value)}-{num(fluid.max_rate_ml_h.value)} mL/h)",
        unit="mL/h",
    )


def _same_solution(program: ActiveProgram, spec: ProgramSpec) -> bool:
    try:
        return program.same_solution(spec)
    except (UnitError, DiluentError):
        return False


def _patient_mismatch(
    patient: PatientSpec, profile_id: str, weight_kg: Decimal | None
) -> str | None:
    if profile_id != patient.profile:
        return f"the patient's profile is {patient.profile}, the program's {profile_id}"
    if weight_kg is not None and patient.weight_kg is not None and weight_kg != patient.weight_kg:
        return (
            f"the patient weighs {num(patient.weight_kg)} kg, the program says {num(weight_kg)} kg"
        )
    return None


# --------------------------------------------------------------------------- S16 patient


def _patient_problem(library: DrugLibrary, patient: PatientSpec) -> tuple[str, Verdict | None]:
    """The profile id the library knows the patient's profile by, or a refusal."""
    try:
        profile_id, profile = library.profile(patient.profile)
        if patient.weight_kg is not None:
            weight = BodyWeight.parse(patient.weight_kg)
            rng = profile.weight_kg
            if not (rng.min <= weight.kg <= rng.max):
                return profile_id, Verdict.refuse(
                    Reason.WEIGHT_OUT_OF_RANGE,
                    f"refused: weight must be {num(rng.min)}-{num(rng.max)} kg for "
                    f"{profile.display_name}, got {weight}",
                )
    except (LookupProblem, UnitError) as exc:
        return patient.profile, Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
    return profile_id, None


def _admit(library: DrugLibrary, state: KernelState, body: AdmitPatient) -> Verdict:
    profile_id, problem = _patient_problem(library, body.patient)
    if problem is not None:
        return problem
    if state.any_busy():
        return Verdict.refuse(
            Reason.ALREADY_INFUSING,
            "refused: an infusion is running; a new patient is admitted only when nothing "
            "infuses (its histories, caps and windows start afresh)",
        )
    paused = [name for name, c in state.channels.items() if c.pause is not None]
    if paused:  # its resume would restore this patient's rate to the next one
        return Verdict.refuse(
            Reason.CONTAINER_PAUSE,
            f"refused: channel {', '.join(paused)} is paused for a container change; a new "
            "patient is admitted only when nothing infuses or is paused",
        )
    if not body.confirm_new_patient:
        return Verdict.refuse(
            Reason.CONFIRMATION_REQUIRED,
            "refused until confirmed: a new patient starts fresh histories for every drug "
            "(every cap and window starts again); confirm only if this is another patient",
        )
    weight = f", {num(body.patient.weight_kg)} kg" if body.patient.weight_kg else ""
    return Verdict(True, Reason.ACCEPTED, f"new patient admitted: {profile_id}{weight}")


def _update_patient(library: DrugLibrary, state: KernelState, body: UpdatePatient) -> Verdict:
    patient = state.patient
    if patient is None:
        return Verdict.refuse(
            Reason.PATIENT_MISMATCH,
            "refused: there is no patient yet; admit one (or load a program, which admits "
            "its profile and weight)",
        )
    profile_id, problem = _patient_problem(library, body.patient)
    if problem is not None:
        return problem
    if body.patient.weight_kg is None and patient.weight_kg is not None:
        return Verdict.refuse(
            Reason.BAD_INPUT,
            f"refused: weight must be given: the patient's known weight "
            f"({num(patient.weight_kg)} kg) can be corrected, not forgotten",
        )
    if profile_id == patient.profile and body.patient.weight_kg == patient.weight_kg:
        return Verdict.refuse(
            Reason.BAD_INPUT, "refused: the patient already has that profile and weight"
        )
    if not body.confirm:
        return Verdict.refuse(
            Reason.CONFIRMATION_REQUIRED,
            "refused until confirmed: changing the patient's profile or weight changes which "
            "limits apply (the earlier ones keep applying until their windows pass)",
        )
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"patient updated: {profile_id}"
        + (f", {num(body.patient.weight_kg)} kg" if body.patient.weight_kg else "")
        + "; the limits in force before keep applying until their windows pass; re-program "
        "the loaded program for the new profile or weight",
    )


# --------------------------------------------------------------------------- S6 units


def _unit_check(unit_text: str, program: Program) -> Verdict | None:
    """The unit the request's number is in must be the program's: never converted here,
    so a weight-based figure is never taken for an absolute one (the 70x error)."""
    if isinstance(program, FluidProgram):
        if unit_text.strip() != "mL/h":
            return Verdict.refuse(
                Reason.DOSE_UNIT_MISMATCH,
                f"refused: {program.what} is run by its flow in mL/h, not in {unit_text}",
            )
        return None
    try:
        unit = parse_dose_unit(unit_text, "unit")
    except UnitError as exc:
        return Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
    if str(unit) != program.unit:
        kind = "weight-based" if unit.per_kg else "not weight-based"
        return Verdict.refuse(
            Reason.DOSE_UNIT_MISMATCH,
            f"refused: the dose is in {unit} ({kind}) but {program.what} is dosed in "
            f"{program.unit}; re-enter it in {program.unit}",
        )
    return None


# --------------------------------------------------------------------------- S1-S5, S7


def _dose_change(
    state: KernelState,
    channel: str,
    program: Program,
    dose_value: Decimal,
    confirm_soft: bool,
    now: Now,
    pump: PumpCapabilities,
    config: KernelConfig,
    *,
    start: bool,
) -> Verdict:
    c = state.channel(channel)
    if isinstance(program, FluidProgram):
        return _fluid_rate(c, channel, program, dose_value, pump, start=start)
    unit = program.unit
    # Bounded before any exact arithmetic: Fraction(1E+999999999) would take hours.
    if not dose_value.is_finite() or not (0 < dose_value <= DOSE_VALUE_MAX):
        return Verdict.refuse(
            Reason.BAD_INPUT,
            f"refused: dose must be a positive number of {unit}, at most {DOSE_VALUE_MAX}; "
            "use stop to stop",
        )
    dose = Fraction(dose_value)
    therapy = program.therapy
    exact = program.exact_rate(dose)
    rate = pump.pump_rate(exact)
    effective = program.dose(rate)
    extra = {"unit": unit, "rate_ml_h": rate, "dose": fraction_to_decimal(effective)}

    # S7: the pump's physical range with this syringe
    refusal = pump_range(pump, exact, rate, f"{num(dose)} {unit}", extra)
    if refusal is not None:
        return refusal

    # what the other channels give of the drug: every patient-level rule reads the total
    drug = program.drug
    others = state.others_amount_rate(drug, channel)
    context = total_context(state, drug, channel) if others else ""
    total_dose = dose + program.dose_of_amount_rate(others)

    # S1 hard max, S2 soft limits (checked on the order; the pump's rounded rate is lower)
    what = program.what + (
        f", summed over channels {_sharing(state, drug, channel)}" if others else ""
    )
    findings = limit_findings(therapy, total_dose, what, soft_confirmed=confirm_soft)
    for finding in findings:
        if finding.severity is Severity.REFUSE:
            return Verdict.refuse(finding.code, finding.message, findings=(finding,), **extra)
    for finding in findings:
        if finding.severity is Severity.CONFIRM:
            return Verdict.refuse(
                finding.code,
                f"refused until confirmed: {finding.message.removeprefix('needs confirmation: ')}",
                findings=(finding,),
                **extra,
            )

    # S1 (earlier limits still in force), S4, S5, S3: on the drug rate, under every set
    asked = exact * program.amount_per_ml + others  # drug per hour the order asks for
    given = Fraction(rate) * program.amount_per_ml + others  # and what the pumps will run
    current = c.current_amount_rate() + others
    refusal = judge_total(
        state,
        drug,
        channel,
        asked,
        given,
        current,
        now.clinical,
        config,
        start=start and not others,  # a start beside a running channel is a rise
        own_checked=True,
        context=context,
    )
    if refusal is not None:
        return Verdict.refuse(refusal.reason, refusal.message, **extra)

    actions: tuple[PumpAction, ...]
    if start:
        actions = (SetRate(rate, channel), StartPump(channel))
        if not c.interlock_enabled:
            actions = (SetInterlock(True, channel), *actions)
        verb = "start"
    else:
        actions = (SetRate(rate, channel),)
        verb = "rise" if asked > current else "fall" if asked < current else "same rate"
    warnings = tuple(f for f in findings if f.severity is Severity.WARN)
    total = ""
    if others:
        total = (
            f"; with channels {_givers(state, drug, but=channel)} the total is "
            f"{num(program.dose_of_amount_rate(given))} {unit}"
        )
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted ({verb}): {num(dose)} {unit} -> {num(rate)} mL/h "
        f"(delivers {num(effective)} {unit}){total}",
        actions=actions,
        findings=warnings,
        **extra,  # type: ignore[arg-type]
    )


def _givers(state: KernelState, drug: str, but: str) -> str:
    """The channels other than ``but`` that give ``drug`` now, for people."""
    return ", ".join(
        n for n, c in state.drug_channels(drug) if n != but and c.licensed_amount_rate() > 0
    )


def _sharing(state: KernelState, drug: str, channel: str) -> str:
    """``channel`` and the channels that give ``drug`` beside it, for people."""
    return ", ".join(
        n for n, c in state.drug_channels(drug) if n == channel or c.licensed_amount_rate() > 0
    )


def total_context(state: KernelState, drug: str, channel: str) -> str:
    """' (the total of channels A, B)': what a patient-level figure is, for people."""
    return f" (the total of channels {_sharing(state, drug, channel)})"


def judge_total(
    state: KernelState,
    drug: str,
    channel: str,
    asked: Fraction,
    given: Fraction,
    current: Fraction,
    t: float,
    config: KernelConfig,
    *,
    start: bool,
    own_checked: bool,
    resume_to: Fraction | None = None,
    context: str = "",
) -> Verdict | None:
    """The patient-level rules on a new total of ``drug`` (amount per hour): ``asked``
    (the order, before the pumps' rounding), ``given`` (what the pumps will run),
    ``current`` (what they give now). S1 under every limit set (the requesting
    channel's own set is skipped when ``own_checked``: the request path checked it with
    the soft limits), S4 start or rise, S5 wean, S3 cap on a start or a rise. A rise back
    to at most ``resume_to`` (what ran before: a relay or a container change restoring
    it) is not a titration, so S4 does not apply to it."""
    history = state.history_of(drug)
    caps: list[CumulativeCap] = []
    for index, limit_set in enumerate(
        limit_sets(state, channel, t) or drug_limit_sets(state, drug, t)
    ):
        restoring = resume_to is not None and asked <= resume_to
        refusal = _set_limits(
            history,
            limit_set,
            asked,
            given,
            current,
            t,
            start=start,
            own=own_checked and index == 0,
            restoring=restoring,
            context=context,
            licence_since=state.licence_since,
        )
        cap = limit_set.cap
        if refusal is None and cap is not None and cap not in caps:
            caps.append(cap)
            if start or given > current:
                refusal = _cap_limit(history, limit_set, cap, given, t, config, context)
        if refusal is not None:
            return refusal
    return None


def _set_limits(
    history: RateHistory,
    limits: LimitSet,
    asked: Fraction,
    given: Fraction,
    current: Fraction,
    t: float,
    *,
    start: bool,
    own: bool,
    restoring: bool = False,
    context: str = "",
    licence_since: float | None = None,
) -> Verdict | None:
    """S1 (for earlier sets: the program's own is checked with the soft limits), S4 and S5
    under one limit set; figures in the set's own unit. ``licence_since``: rates before
    it license no start (``KernelState.licence_since``)."""
    unit, note = limits.unit, context + limits.note
    dose = limits.dose(asked)
    if not own:
        hard = Fraction(limits.therapy.hard_max.value)
        if dose > hard:
            return Verdict.refuse(
                Reason.HARD_MAX,
                f"refused: {num(dose)} {unit} is above the hard maximum of {num(hard)} {unit}"
                f"{note}",
            )
    if restoring:
        pass
    elif start:
        titration = limits.therapy.titration
        titr_window = float(titration.window_min.value) * 60
        # a rate the pump ran on its own (stopped as over-rate) is no licence to start at
        # it, nor one that ran before a gap of unknown length; the lowest below stays
        # on the whole window (the stricter reading of a gap that may have been short)
        since = t - titr_window
        if licence_since is not None and licence_since > since:
            recent = (
                limits.dose(history.max_amount_rate(licence_since, t, exclude=frozenset({"pump"})))
                if licence_since <= t
                else Fraction(0)
            )
        else:
            recent = limits.dose(history.max_amount_rate(since, t, exclude=frozenset({"pump"})))
        lowest = history.min_running_amount_rate(t - titr_window, t)
        if lowest is None:  # nothing ran in the window: the library's start
            bound = max(Fraction(limits.therapy.max_start.value), recent)
            why = f"max start {num(limits.therapy.max_start.value)} {unit}"
        else:
            # a start soon after a stop is a rise from what ran: a stop and a start must
            # not step around the titration rule (at most the rate that ran, or the window
            # rise above the lowest dose of the window)
            base = limits.dose(lowest)
            rise = min(
                Fraction(titration.max_window_rise.value),
                Fraction(titration.max_window_rise_fraction.value) * base,
            )
            max_start = Fraction(limits.therapy.max_start.value)
            bound = max(recent, min(max_start, base + rise))
            why = (
                f"it ran in the last {num(titration.window_min.value)} min: at most the "
                f"highest dose then ({num(recent)} {unit}), or a window rise above the lowest "
                f"({num(base)} + {num(rise)} {unit}) within the max start ({num(max_start)} "
                f"{unit})"
            )
        if dose > bound:
            return Verdict.refuse(
                Reason.START_TOO_HIGH,
                f"refused: a start at {num(dose)} {unit} is above the largest allowed start, "
                f"{num(bound)} {unit} ({why}){note}",
            )
    elif asked > current:
        refusal = _rise_limits(history, limits, dose, limits.dose(current), t, note)
        if refusal is not None:
            return refusal
    if not start and asked < current:
        return _wean_limit(history, limits, limits.dose(given), t, note)
    return None


def pump_range(
    pump: PumpCapabilities,
    exact: Fraction,
    rate: Decimal,
    order: str,
    extra: dict[str, object],
) -> Verdict | None:
    """S7: the rate within what the pump runs with this syringe (and the range known)."""
    if pump.max_rate_ml_h <= 0:
        return Verdict.refuse(
            Reason.PUMP_COMMS,
            "refused: the pump's rate range is not known yet (the pump has not answered "
            "since the safety process started)",
            **extra,
        )
    if exact > Fraction(pump.max_rate_ml_h):
        return Verdict.refuse(
            Reason.PUMP_RANGE_HIGH,
            f"refused: {order} needs {num(exact)} mL/h, above the pump's "
            f"{num(pump.max_rate_ml_h)} mL/h with this syringe",
            **extra,
        )
    if rate < pump.min_rate_ml_h or rate <= 0:
        return Verdict.refuse(
            Reason.PUMP_RANGE_LOW,
            f"refused: {order} needs {num(exact)} mL/h, below the pump's minimum "
            f"{num(pump.min_rate_ml_h)} mL/h with this syringe (use a smaller syringe or a "
            "weaker concentration)",
            **extra,
        )
    return None


def _rise_limits(
    history: RateHistory,
    limits: LimitSet,
    dose: Fraction,
    current: Fraction,
    t: float,
    note: str,
) -> Verdict | None:
    titration = limits.therapy.titration
    unit = limits.unit
    rise = dose - current
    step_bound = min(
        Fraction(titration.max_step_rise.value),
        Fraction(titration.max_step_rise_fraction.value) * current,
    )
    if rise > step_bound:
        ratio = f"{num(dose / current, 3)}x" if current > 0 else "a rise from"
        return Verdict.refuse(
            Reason.STEP_RISE,
            f"refused: {num(dose)} {unit} is {ratio} the current {num(current)} {unit}; "
            f"the largest allowed rise now is {num(step_bound)} {unit} (to "
            f"{num(current + step_bound)} {unit}){note}",
        )
    window_s = float(titration.window_min.value) * 60
    base_amount = history.min_running_amount_rate(t - window_s, t)
    base = limits.dose(base_amount) if base_amount is not None else current
    window_bound = min(
        Fraction(titration.max_window_rise.value),
        Fraction(titration.max_window_rise_fraction.value) * base,
    )
    if dose - base > window_bound:
        return Verdict.refuse(
            Reason.WINDOW_RISE,
            f"refused: {num(dose)} {unit} rises {num(dose - base)} {unit} above the lowest dose "
            f"of the last {num(titration.window_min.value)} min ({num(base)} {unit}); at most "
            f"{num(window_bound)} {unit} per window, so at most {num(base + window_bound)} "
            f"{unit} now{note}",
        )
    return None


def _wean_limit(
    history: RateHistory, limits: LimitSet, effective: Fraction, t: float, note: str
) -> Verdict | None:
    wean = limits.therapy.wean
    if not wean.gradual_wean_only.value:
        return None
    assert wean.max_fall_fraction is not None and wean.window_min is not None
    unit = limits.unit
    window_s = float(wean.window_min.value) * 60
    highest = limits.dose(history.max_amount_rate(t - window_s, t))
    floor = (1 - Fraction(wean.max_fall_fraction.value)) * highest
    if effective < floor:
        pct = num(Fraction(wean.max_fall_fraction.value) * 100)
        return Verdict.refuse(
            Reason.WEAN_TOO_FAST,
            f"refused: {num(effective)} {unit} is a faster wean than allowed: at most {pct} % "
            f"below the highest dose of the last {num(wean.window_min.value)} min "
            f"({num(highest)} {unit}), so not below {num(floor)} {unit} now{note}",
        )
    return None


def _cap_limit(
    history: RateHistory,
    limits: LimitSet,
    cap: CumulativeCap,
    given: Fraction,
    t: float,
    config: KernelConfig,
    context: str = "",
) -> Verdict | None:
    """S3: a rise (or a start) must not reach a cap in force within the look-ahead."""
    window_s = float(cap.window_s)
    so_far = history.amount(t - window_s, t)
    ahead = float(given) * config.cap_lookahead_s / 3600.0
    if so_far + ahead > float(cap.base_amount):
        return Verdict.refuse(
            Reason.CUMULATIVE_CAP,
            f"refused: at this rate the cap of {num(cap.amount)} {cap.unit} per "
            f"{num(cap.window_h)} h would be reached within {config.cap_lookahead_s / 60:.0f} "
            f"min ({_amount(so_far, cap.unit.value)} given in the last {num(cap.window_h)} h)"
            f"{context}{limits.note}",
        )
    return None


def _fluid_rate(
    c: ChannelState,
    channel: str,
    program: FluidProgram,
    rate_value: Decimal,
    pump: PumpCapabilities,
    *,
    start: bool,
) -> Verdict:
    """A test fluid: the rate is the order. The fluid's rate limits (its maximum is S1's
    counterpart) and the pump's range (S7) apply; no dose, cap, titration or wean rule
    does, as there is no drug."""
    if not rate_value.is_finite() or not (0 < rate_value <= DOSE_VALUE_MAX):
        return Verdict.refuse(
            Reason.BAD_INPUT,
            f"refused: rate must be a positive number of mL/h, at most {DOSE_VALUE_MAX}",
        )
    exact = Fraction(rate_value)
    rate = pump.pump_rate(exact)
    extra: dict[str, object] = {"unit": "mL/h", "rate_ml_h": rate, "dose": rate}
    if exact > program.max_rate:
        return Verdict.refuse(
            Reason.HARD_MAX,
            f"refused: {num(exact)} mL/h is above the maximum {num(program.max_rate)} mL/h "
            f"of {program.what}",
            **extra,
        )
    if exact < program.min_rate:
        return Verdict.refuse(
            Reason.PUMP_RANGE_LOW,
            f"refused: {num(exact)} mL/h is below the minimum {num(program.min_rate)} mL/h "
            f"of {program.what}",
            **extra,
        )
    refusal = pump_range(pump, exact, rate, f"{num(exact)} mL/h", extra)
    if refusal is not None:
        return refusal
    actions: tuple[PumpAction, ...] = (SetRate(rate, channel),)
    if start:
        actions = (*actions, StartPump(channel))
        if not c.interlock_enabled:
            actions = (SetInterlock(True, channel), *actions)
    verb = "start" if start else "change"
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted ({verb}): {program.what} at {num(rate)} mL/h (rate limits only: no drug)",
        actions=actions,
        **extra,  # type: ignore[arg-type]
    )


def _stop(state: KernelState, channel: str, program: Program, t: float) -> Verdict:
    c = state.channel(channel)
    if not c.busy:
        return Verdict.refuse(Reason.NOT_INFUSING, "refused: not infusing" + _on(state, channel))
    drug = c.drug
    others = state.others_amount_rate(drug, channel) if drug is not None else Fraction(0)
    if drug is not None and others > 0:
        # one channel of several stops: the patient's total falls to what the others
        # give, and that is a fall like any other (S5)
        history = state.history_of(drug)
        context = total_context(state, drug, channel)
        for limits in limit_sets(state, channel, t):
            refusal = _wean_limit(history, limits, limits.dose(others), t, context + limits.note)
            if refusal is not None:
                return refusal
        rest = program.dose_of_amount_rate(others) if isinstance(program, ActiveProgram) else 0
        return Verdict(
            True,
            Reason.ACCEPTED,
            f"accepted: stop channel {channel} (channels {_givers(state, drug, channel)} "
            f"give {num(rest)} {program.unit})",
            actions=(StopPump(channel),),
        )
    current = c.current_amount_rate()
    for limits in limit_sets(state, channel, t):
        wean = limits.therapy.wean
        if not wean.gradual_wean_only.value:
            continue
        assert wean.stop_threshold is not None
        threshold = Fraction(wean.stop_threshold.value)
        dose = limits.dose(current)
        if dose > threshold:
            return Verdict.refuse(
                Reason.STOP_ABOVE_THRESHOLD,
                f"refused: {program.what} is weaned, never stopped abruptly: the current "
                f"{num(dose)} {limits.unit} is above the stop threshold "
                f"{num(threshold)} {limits.unit}{limits.note}; wean first (emergency stop "
                "stops at once)",
            )
    return Verdict(True, Reason.ACCEPTED, "accepted: stop", actions=(StopPump(channel),))


def _amount(base: float, unit: str) -> str:
    value = base / 1000.0 if unit == "mg" else base
    return f"{value:.3g} {unit}"


__all__ = ["Finding", "decide"]
