"""The safety kernel's vocabulary: requests, pump actions, verdicts, journal events.

Everything here is an immutable value that serialises to JSON (``safety.kernel.codec``),
so what the kernel decided can be journaled before it takes effect (S14) and replayed
after a crash to rebuild exactly the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from safety.library import BenchFluid, CumulativeCap, Therapy
from safety.reasons import Reason
from safety.rules import Finding

#: the name of a bench's only channel unless its config names it (a ``[pump]`` table)
DEFAULT_CHANNEL = "A"

#: relay strategies: start the standby at the active channel's rate and stop the active
#: one (``quick``), or hand the rate over in steps as the standby's flow comes up
#: (``overlap``)
RelayStrategy = Literal["quick", "overlap"]

# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class Now:
    """Both clocks at one instant: clinical for doses and windows, liveness for expiry."""

    clinical: float
    liveness: float


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ProgramSpec:
    """What the controller asks to infuse. The pump and syringe are the safety process's
    own configuration, never the controller's."""

    library_hash: str
    drug: str
    profile: str
    therapy: str
    concentration: str
    diluent: str
    weight_kg: Decimal | None = None
    #: True: ``drug`` names one of the library's ``[test_fluids]`` (water for an accuracy
    #: test), never a drug; profile, therapy, concentration and diluent stay empty, and
    #: the kernel applies the fluid's rate limits only (``state.FluidProgram``)
    test_fluid: bool = False


@dataclass(frozen=True)
class PatientSpec:
    """Who every limit protects: the care-area profile and the weight are part of the
    patient, not of a program (S16)."""

    profile: str
    weight_kg: Decimal | None = None


@dataclass(frozen=True)
class ProgramLimits:
    """The library's figures for one program, as they were when it was loaded.

    Journaled with the program (``ProgramLoaded``), so a replay never needs the library
    that made them: a library updated, damaged or gone between two runs can neither
    crash the replay nor erase what the patient's limits were, and the limits of an
    earlier program stay known for as long as they must keep applying (``PriorLimits``).
    """

    drug: str  # the library's drug id: histories are kept per patient and drug
    profile: str
    what: str  # "norepinephrine (Adult ICU, Standard (mcg/min))", for people
    therapy: Therapy
    cap: CumulativeCap | None
    weight_kg: Decimal | None
    library_hash: str
    kind: Literal["drug"] = "drug"


@dataclass(frozen=True)
class FluidLimits:
    """A test fluid's (water for an accuracy test) rate limits, journaled like a drug's:
    no drug, so no dose, cap, titration or wean rule, and no patient."""

    fluid: str
    what: str
    bench_fluid: BenchFluid
    library_hash: str
    kind: Literal["test_fluid"] = "test_fluid"


Limits = Annotated[ProgramLimits | FluidLimits, Field(discriminator="kind")]


@dataclass(frozen=True)
class RequestMeta:
    """S8: a session, a strictly increasing sequence number and an expiry (liveness s)."""

    session: str
    seq: int
    expires_at: float


@dataclass(frozen=True)
class LoadProgram:
    spec: ProgramSpec
    #: the channel to load; None: the bench's only channel (refused when it has several)
    channel: str | None = None
    kind: Literal["load_program"] = "load_program"


@dataclass(frozen=True)
class StartInfusion:
    """Start at ``dose``, a number in ``unit``. The unit travels with the number so the
    safety process checks it against the program itself (a mcg/kg/min figure can never
    be read as mcg/min); without it the number is taken in the program's dose unit."""

    dose: Decimal
    confirm_soft_limits: bool = False
    unit: str | None = None
    channel: str | None = None
    kind: Literal["start"] = "start"


@dataclass(frozen=True)
class ChangeDose:
    dose: Decimal
    confirm_soft_limits: bool = False
    unit: str | None = None
    channel: str | None = None
    kind: Literal["change_dose"] = "change_dose"


@dataclass(frozen=True)
class StopInfusion:
    channel: str | None = None
    kind: Literal["stop"] = "stop"


@dataclass(frozen=True)
class EmergencyStop:
    source: str = "api"  # "api" or "button"
    kind: Literal["emergency_stop"] = "emergency_stop"


@dataclass(frozen=True)
class AcknowledgeAlarms:
    keys: tuple[str, ...] | None = None  # None: all
    kind: Literal["acknowledge"] = "acknowledge"


@dataclass(frozen=True)
class AdmitPatient:
    """A new patient: the only request that starts fresh histories (S16), so it must be
    confirmed, and only when nothing is infusing."""

    patient: PatientSpec
    confirm_new_patient: bool = False
    kind: Literal["admit_patient"] = "admit_patient"


@dataclass(frozen=True)
class UpdatePatient:
    """The same patient's profile or weight, corrected: its own confirmed action. The
    limits in force before stay in force beside the new ones until their windows pass."""

    patient: PatientSpec
    confirm: bool = False
    kind: Literal["update_patient"] = "update_patient"


@dataclass(frozen=True)
class ArmStandby:
    """Make ``channel`` the relief of ``for_channel``: when ``for_channel``'s container
    nears empty, the safety process itself hands the infusion over (relay). Refused
    unless ``channel`` holds the same drug at the same concentration and diluent, is
    primed and stands still (S15)."""

    channel: str
    for_channel: str
    strategy: RelayStrategy = "quick"
    kind: Literal["arm_standby"] = "arm_standby"


@dataclass(frozen=True)
class DisarmStandby:
    channel: str
    kind: Literal["disarm_standby"] = "disarm_standby"


@dataclass(frozen=True)
class PrimeChannel:
    """Purge ``volume_ml`` through a stopped channel's line to take up the pump's slack
    (``PumpDriver.prime``). The line must not be connected to the patient: what a prime
    pushes out goes to waste, so the request says so (``confirm_line_disconnected``)."""

    channel: str
    volume_ml: Decimal
    confirm_line_disconnected: bool = False
    kind: Literal["prime"] = "prime"


@dataclass(frozen=True)
class PauseForContainerChange:
    """Stop ``channel`` for a new syringe or bag: a gap that is explicit, bounded (the
    safety process's ``max_container_pause_s``, alarmed when exceeded) and journaled, the
    one way a gradual-wean drug may pause above its stop threshold (S15)."""

    channel: str | None = None
    kind: Literal["pause_for_container_change"] = "pause_for_container_change"


@dataclass(frozen=True)
class ContainerChanged:
    """A new syringe or bag is in ``channel``, holding ``volume_ml``. ``concentration``
    (what its label says; None: the program's) must be the program's: another one needs
    a re-program. Nothing resets the drug's history. The container is of the kind the
    channel is configured with (another syringe size is a change of the safety process's
    config: the pump's range depends on it)."""

    volume_ml: Decimal
    channel: str | None = None
    concentration: str | None = None
    kind: Literal["container_changed"] = "container_changed"


@dataclass(frozen=True)
class ResumeAfterContainerChange:
    """Run the paused channel again at the rate it ran before the pause."""

    channel: str | None = None
    kind: Literal["resume_after_container_change"] = "resume_after_container_change"


@dataclass(frozen=True)
class AcceptPump:
    """The operator replaced the channel's pump on purpose: the pump that names itself
    next on the channel's port is taken as the channel's own (its name recorded in place
    of the old one, ``PumpNamed``). Without it, a pump that names itself otherwise than
    the one recorded is refused, after a reconnect and after a restart or a reboot alike
    (``drivers.pumps.base.PumpName``): ports may swap, and a remembered infusion must
    never be driven onto another pump."""

    channel: str | None = None
    kind: Literal["accept_pump"] = "accept_pump"


RequestBody = Annotated[
    LoadProgram
    | StartInfusion
    | ChangeDose
    | StopInfusion
    | EmergencyStop
    | AcknowledgeAlarms
    | AdmitPatient
    | UpdatePatient
    | ArmStandby
    | DisarmStandby
    | PrimeChannel
    | PauseForContainerChange
    | ContainerChanged
    | ResumeAfterContainerChange
    | AcceptPump,
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class Request:
    meta: RequestMeta | None  # None only for the local stop button
    body: RequestBody


# --------------------------------------------------------------------------- pump actions


@dataclass(frozen=True)
class SetRate:
    rate_ml_h: Decimal
    channel: str = DEFAULT_CHANNEL
    kind: Literal["set_rate"] = "set_rate"


@dataclass(frozen=True)
class StartPump:
    channel: str = DEFAULT_CHANNEL
    kind: Literal["start_pump"] = "start_pump"


@dataclass(frozen=True)
class StopPump:
    channel: str = DEFAULT_CHANNEL
    kind: Literal["stop_pump"] = "stop_pump"


@dataclass(frozen=True)
class SetInterlock:
    """The GPIO pump-enable relay: False cuts the pump (S12). With one relay for the
    bench (``interlock_scope`` "bench") it cuts every pump, whatever ``channel`` says."""

    pump_enabled: bool
    channel: str = DEFAULT_CHANNEL
    kind: Literal["set_interlock"] = "set_interlock"


@dataclass(frozen=True)
class PrimePump:
    """Purge ``volume_ml`` at the pump's top rate (``PumpDriver.prime``): to waste."""

    volume_ml: Decimal
    channel: str = DEFAULT_CHANNEL
    kind: Literal["prime_pump"] = "prime_pump"


PumpAction = Annotated[
    SetRate | StartPump | StopPump | SetInterlock | PrimePump, Field(discriminator="kind")
]


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: Reason
    message: str
    actions: tuple[PumpAction, ...] = ()
    findings: tuple[Finding, ...] = ()
    dose: Decimal | None = None  # what the rate to send delivers, in ``unit``
    unit: str | None = None
    rate_ml_h: Decimal | None = None  # the exact rate to send, as the pump will run it

    @classmethod
    def refuse(cls, reason: Reason, message: str, **extra: object) -> Verdict:
        return cls(False, reason, message, **extra)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- readback


@dataclass(frozen=True)
class PumpReading:
    """One status read of the pump, in the kernel's terms (from drivers.pumps.base.PumpStatus)."""

    running: bool
    set_rate_ml_h: Decimal
    infused_ml: float
    alarms: tuple[str, ...] = ()  # drivers.pumps.base.PumpAlarmKind values
    pressure_mmhg: float | None = None


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ProgramLoaded:
    spec: ProgramSpec
    limits: Limits
    infused_baseline_ml: float
    now: Now
    channel: str = DEFAULT_CHANNEL
    kind: Literal["program_loaded"] = "program_loaded"


@dataclass(frozen=True)
class PatientAdmitted:
    """A patient's histories start here: ``how`` is "admitted" (an operator's confirmed
    new patient) or "first program" (a journal with no patient yet took the first
    program's profile and weight)."""

    patient_id: str
    patient: PatientSpec
    how: str
    now: Now
    kind: Literal["patient_admitted"] = "patient_admitted"


@dataclass(frozen=True)
class PatientUpdated:
    patient: PatientSpec
    how: str  # "confirmed" (an operator's correction) or "first weight" (from a program)
    now: Now
    kind: Literal["patient_updated"] = "patient_updated"


@dataclass(frozen=True)
class LibraryChecked:
    """The drug library this run has, against the journal's: ``ok``; ``changed`` (the
    loaded program was made with another library: ``detail`` names what no longer
    matches); or ``unusable`` (it could not be loaded: ``detail`` says why). In both of
    the latter the pump is supervised at its rate with the limits journaled with its
    program, and changes wait for a re-program under a usable library."""

    status: Literal["ok", "changed", "unusable"]
    detail: str
    library_hash: str
    now: Now
    #: the channels whose programs are affected ("changed"); empty: every loaded one
    channels: tuple[str, ...] = ()
    kind: Literal["library_checked"] = "library_checked"


@dataclass(frozen=True)
class TimelineResumed:
    """Where the patient's clinical timeline continues after a (re)start, and why.

    ``offset`` is added to the process's clock source to give clinical time; ``credited_s``
    is the clinical time counted for the gap since the journal's last entry, from the
    evidence named in ``basis``; ``conservative`` says that evidence was only a lower
    bound (the real gap may be longer: limits then count the shorter one, so nothing
    ages out of a window because of time the process did not see).
    """

    previous_clinical: float | None
    credited_s: float
    offset: float
    basis: str
    conservative: bool
    discontinuity: bool
    boot_id: str | None
    source: str
    wall: float
    wall_synced: bool | None
    now: Now
    kind: Literal["timeline_resumed"] = "timeline_resumed"


@dataclass(frozen=True)
class JournalRecovered:
    """The journal could not be read whole: what was readable was kept and replayed, the
    damaged file kept beside it, never deleted."""

    damaged_file: str
    entries_kept: int
    detail: str
    now: Now
    kind: Literal["journal_recovered"] = "journal_recovered"


@dataclass(frozen=True)
class RequestDecided:
    session: str | None
    seq: int | None
    body: RequestBody
    accepted: bool
    reason: Reason
    now: Now
    kind: Literal["request_decided"] = "request_decided"


@dataclass(frozen=True)
class CommandIssued:
    action: PumpAction
    cause: str  # "command" (operator), "safety" (kernel), "estop", "retry", "reconcile"
    now: Now
    kind: Literal["command_issued"] = "command_issued"


@dataclass(frozen=True)
class CommandFailed:
    action: PumpAction
    failure: str  # "timeout" (outcome uncertain), "rejected", "error", "disconnected"
    detail: str
    now: Now
    kind: Literal["command_failed"] = "command_failed"


@dataclass(frozen=True)
class ReadbackReceived:
    reading: PumpReading
    now: Now
    channel: str = DEFAULT_CHANNEL
    kind: Literal["readback"] = "readback"


@dataclass(frozen=True)
class StopConfirmed:
    """The pump's own reply to a stop command showed it stopped (NE-1000 status ``S``,
    Harvard idle prompt ``:``; ``drivers.pumps.base.StopConfirmation``): the channel
    counts as stopped from here. Journaled by the emergency stop (S12), which stops every
    pump before it reads any back; the channel's next read-back still verifies its rate,
    volumes and alarms."""

    channel: str
    reply: str  # the reply's state as the pump sent it ("00S")
    now: Now
    kind: Literal["stop_confirmed"] = "stop_confirmed"


@dataclass(frozen=True)
class CommsFailed:
    detail: str
    now: Now
    channel: str = DEFAULT_CHANNEL
    #: the name another pump on the channel's port gave ("": none, or the link is down):
    #: a replacement is judged on it (``AcceptPump``: not another channel's own pump)
    other_pump: str = ""
    kind: Literal["comms_failed"] = "comms_failed"


@dataclass(frozen=True)
class ControllerAttached:
    session: str
    now: Now
    kind: Literal["controller_attached"] = "controller_attached"


@dataclass(frozen=True)
class ControllerLost:
    why: str  # "eof", "heartbeat timeout"
    now: Now
    kind: Literal["controller_lost"] = "controller_lost"


@dataclass(frozen=True)
class EmergencyStopRaised:
    source: str
    now: Now
    kind: Literal["emergency_stop_raised"] = "emergency_stop_raised"


@dataclass(frozen=True)
class AlarmsAcknowledged:
    keys: tuple[str, ...] | None
    now: Now
    kind: Literal["alarms_acknowledged"] = "alarms_acknowledged"


@dataclass(frozen=True)
class Ticked:
    now: Now
    kind: Literal["ticked"] = "ticked"


@dataclass(frozen=True)
class Resumed:
    """The safety process restarted and read the pump: supervision resumes (no action)."""

    reading: PumpReading | None
    now: Now
    detail: str = ""
    channel: str = DEFAULT_CHANNEL
    kind: Literal["resumed"] = "resumed"


@dataclass(frozen=True)
class PumpNamed:
    """What the pump on a channel's port called itself when the channel's driver first
    heard it (NE-1000 ``VER``, Harvard ``ver``, a Modbus device's identification), recorded
    so that a later run presets it on the channel's fresh driver before it connects
    (``PumpName.expect``): after a
    restart or a reboot, a pump that names itself otherwise is refused as after a
    reconnect. ``name`` "": the operator accepted a replacement (``AcceptPump``), so the
    next pump to name itself is the channel's, and the old pump's infusion ends with it
    (``observe.pump_replaced``). ``nameless``: the pump was asked and gives no name (a
    Modbus device without identification; ``name`` ""): nothing is preset and nothing
    compared, and two such pumps of one kind behind ports a reboot may swap are warned
    about (``observe.pump_names_alike``). A mock pump is never asked; a journal without
    any of these behaves as before they existed."""

    channel: str
    name: str
    now: Now
    nameless: bool = False
    kind: Literal["pump_named"] = "pump_named"


@dataclass(frozen=True)
class ClientDropped:
    """The safety process hung up on an authenticated IPC connection (it did not read
    its messages, stalled mid-line, an observer tried to command...). Changes no state:
    it is on record for the people who review a run (S17); an attached controller's loss
    is journaled besides, as ``ControllerLost``."""

    client: str  # "client #3 [pid 1234 uid 1000] (pumpctl-dashboard)"
    role: str  # "controller" or "observer"
    why: str
    now: Now
    kind: Literal["client_dropped"] = "client_dropped"


@dataclass(frozen=True)
class ChannelConfigured:
    """One channel as the safety process's config declares it."""

    name: str
    driver: str  # "mock", "ne1000", "harvard", "modbus"
    container: str  # the syringe's (or bag's) catalogue name
    container_kind: Literal["syringe", "bag"]
    volume_ml: float  # what the container holds when full
    loaded_ml: float  # what it held when the bench was set up (when the journal knows none)
    #: the serial device its pump is reached through (``PumpDriver.serial_port``; its
    #: line's, on a shared line; "": none, or a journal written before it was recorded):
    #: two channels whose pumps name themselves alike behind ports that may swap at a
    #: reboot are warned about (``observe.pump_names_alike``)
    serial_port: str = ""


@dataclass(frozen=True)
class BenchConfigured:
    """The channels this run owns, journaled at every start before any of their events:
    a replay knows each channel and its container from the journal alone. A channel the
    journal knew with the same container keeps what it knew (its volume used, whether
    primed); one no longer configured is dropped (alarmed if it was running)."""

    channels: tuple[ChannelConfigured, ...]
    interlock_scope: Literal["bench", "channel"]
    now: Now
    kind: Literal["bench_configured"] = "bench_configured"


@dataclass(frozen=True)
class StandbyArmed:
    channel: str
    for_channel: str
    strategy: RelayStrategy
    now: Now
    kind: Literal["standby_armed"] = "standby_armed"


@dataclass(frozen=True)
class StandbyDisarmed:
    channel: str
    why: str
    now: Now
    kind: Literal["standby_disarmed"] = "standby_disarmed"


@dataclass(frozen=True)
class ContainerLoaded:
    """A new syringe or bag in ``channel``: its volume counts from here; not primed."""

    channel: str
    container: str
    volume_ml: float
    now: Now
    #: the concentration its label names when it is not the program's (a re-program is
    #: then needed); None: the program's
    concentration: str | None = None
    kind: Literal["container_loaded"] = "container_loaded"


@dataclass(frozen=True)
class ContainerPaused:
    """``channel`` stopped for a container change at ``rate_ml_h``, for at most ``max_s``."""

    channel: str
    rate_ml_h: Decimal
    max_s: float
    now: Now
    #: the program's concentration at the pause: a re-program for the new container's
    #: resumes the same drug rate, not the same pump rate
    concentration: str = ""
    kind: Literal["container_paused"] = "container_paused"


@dataclass(frozen=True)
class ContainerResumed:
    channel: str
    now: Now
    kind: Literal["container_resumed"] = "container_resumed"


@dataclass(frozen=True)
class HandoverStarted:
    """The safety process hands ``drug`` over from ``from_channel`` to ``to_channel``."""

    from_channel: str
    to_channel: str
    strategy: RelayStrategy
    steps: int
    #: the outgoing channel's verified rate when the handover began: the rate handed over
    rate_ml_h: Decimal
    why: str
    now: Now
    kind: Literal["handover_started"] = "handover_started"


@dataclass(frozen=True)
class HandoverStepped:
    """One step of an overlap handover done (``step`` of the handover's ``steps``);
    ``counter_ml`` is the incoming channel's volume counter at that instant."""

    step: int
    counter_ml: float | None
    now: Now
    kind: Literal["handover_stepped"] = "handover_stepped"


@dataclass(frozen=True)
class HandoverEnded:
    outcome: Literal["done", "failed", "cancelled"]
    detail: str
    now: Now
    kind: Literal["handover_ended"] = "handover_ended"


Event = Annotated[
    ProgramLoaded
    | RequestDecided
    | CommandIssued
    | CommandFailed
    | ReadbackReceived
    | StopConfirmed
    | CommsFailed
    | ControllerAttached
    | ControllerLost
    | EmergencyStopRaised
    | AlarmsAcknowledged
    | Ticked
    | Resumed
    | PatientAdmitted
    | PatientUpdated
    | LibraryChecked
    | TimelineResumed
    | JournalRecovered
    | ClientDropped
    | BenchConfigured
    | StandbyArmed
    | StandbyDisarmed
    | ContainerLoaded
    | ContainerPaused
    | ContainerResumed
    | HandoverStarted
    | HandoverStepped
    | HandoverEnded
    | PumpNamed,
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class Reaction:
    """What the kernel wants done after observing the pump: actions and why."""

    actions: tuple[PumpAction, ...] = ()
    cause: str = "safety"
    messages: tuple[str, ...] = field(default_factory=tuple)
