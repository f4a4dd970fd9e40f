"""The safety journal's events in words: one human line per event.

Pure (kernel values in, text out), so the one wording serves every reader: ``pumpctl
journal show`` (``controller.journal_timeline``) and the safety process's journal stream to
its observers (the dashboard's and the telemetry's journal tail). A dose beside a rate
needs the program in force at that entry on its channel: ``ProgramTracker`` follows the
``ProgramLoaded`` events as they pass. On a bench of several channels (its
``BenchConfigured`` says so) every channel's line starts with the channel's name.

``JournalTail`` is the stream form: it drops what a person watching a bench does not
want line by line (the timers' ``ticked`` entries, and read-backs that say nothing new:
same running state, rate and pump alarms as the previous one), and turns the rest into
``JournalLine`` values (entry id, kind, clinical time, text).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from safety.journal_read import ProgramsInForce
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    AcknowledgeAlarms,
    AdmitPatient,
    AlarmsAcknowledged,
    ArmStandby,
    BenchConfigured,
    ChangeDose,
    ClientDropped,
    CommandFailed,
    CommandIssued,
    CommsFailed,
    ContainerChanged,
    ContainerLoaded,
    ContainerPaused,
    ContainerResumed,
    ControllerAttached,
    ControllerLost,
    EmergencyStop,
    EmergencyStopRaised,
    Event,
    HandoverEnded,
    HandoverStarted,
    HandoverStepped,
    JournalRecovered,
    LibraryChecked,
    LoadProgram,
    PatientAdmitted,
    PatientSpec,
    PatientUpdated,
    PrimeChannel,
    PrimePump,
    ProgramLoaded,
    ProgramSpec,
    PumpAction,
    PumpNamed,
    PumpReading,
    ReadbackReceived,
    RequestBody,
    RequestDecided,
    Resumed,
    SetInterlock,
    SetRate,
    StandbyArmed,
    StandbyDisarmed,
    StartInfusion,
    StopConfirmed,
    Ticked,
    TimelineResumed,
    UpdatePatient,
)
from safety.kernel.state import ActiveProgram
from safety.rules import num


@dataclass(frozen=True)
class JournalLine:
    """One safety-journal entry as an observer sees it."""

    id: int  # the journal entry's id (increasing: a reader can tell what it missed)
    kind: str  # the event kind, e.g. "request_decided"
    clinical: float  # clinical time of the entry, s
    text: str  # the human line


class ProgramTracker:
    """The program in force on each channel as events pass, to word a rate as a dose too.
    Each program comes from its own event (which carries its limits): no library is
    needed. ``current`` is the program loaded last, on any channel."""

    def __init__(self, current: ActiveProgram | None = None) -> None:
        self.current = current
        self.programs: dict[str, ActiveProgram | None] = {}
        if current is not None:
            self.programs[DEFAULT_CHANNEL] = current
        #: the bench has several channels: lines name theirs
        self.several = False

    def load(self, event: ProgramLoaded) -> None:
        self.current = ProgramsInForce.from_events([event]).programs[0]
        self.programs[event.channel] = self.current

    def dose(self, rate: Decimal, channel: str | None = None) -> str:
        """`` (8 mcg/min)`` for a rate under the channel's program; empty if none."""
        program = self.current if channel is None else self.programs.get(channel)
        if program is None:
            return ""
        return f" ({num(program.dose(rate), 4)} {program.unit})"

    def on(self, channel: str) -> str:
        """ "B: " before a channel's line on a bench of several ("" on one pump)."""
        return f"{channel}: " if self.several else ""


def spec_text(s: ProgramSpec) -> str:
    weight = f", {num(s.weight_kg)} kg" if s.weight_kg is not None else ""
    return f"{s.drug} {s.profile}/{s.therapy} {s.concentration} in {s.diluent}{weight}"


def body_text(body: RequestBody) -> str:
    channel = getattr(body, "channel", None)
    at = f" @{channel}" if isinstance(channel, str) else ""
    if isinstance(body, LoadProgram):
        return f"load_program{at} {spec_text(body.spec)}"
    if isinstance(body, StartInfusion | ChangeDose):
        soft = " (soft limits confirmed)" if body.confirm_soft_limits else ""
        return f"{body.kind}{at} {num(body.dose)}{soft}"
    if isinstance(body, ArmStandby):
        return f"arm_standby {body.channel} for {body.for_channel} ({body.strategy})"
    if isinstance(body, PrimeChannel):
        return f"prime{at} {num(body.volume_ml)} mL"
    if isinstance(body, ContainerChanged):
        label = f" of {body.concentration}" if body.concentration else ""
        return f"container_changed{at} {num(body.volume_ml)} mL{label}"
    if isinstance(body, EmergencyStop):
        return f"emergency_stop ({body.source})"
    if isinstance(body, AcknowledgeAlarms):
        return "acknowledge " + ("all" if body.keys is None else ", ".join(body.keys))
    if isinstance(body, AdmitPatient | UpdatePatient):
        return f"{body.kind} {patient_text(body.patient)}"
    return body.kind + at


def patient_text(patient: PatientSpec) -> str:
    weight = f", {num(patient.weight_kg)} kg" if patient.weight_kg is not None else ""
    return f"{patient.profile}{weight}"


def action_text(action: PumpAction, programs: ProgramTracker) -> str:
    on = programs.on(action.channel)
    if isinstance(action, SetRate):
        dose = programs.dose(action.rate_ml_h, action.channel)
        return f"{on}set_rate {num(action.rate_ml_h)} mL/h{dose}"
    if isinstance(action, SetInterlock):
        return f"{on}interlock " + (
            "closed (pump enabled)" if action.pump_enabled else "OPEN (pump cut)"
        )
    if isinstance(action, PrimePump):
        return f"{on}prime {num(action.volume_ml)} mL (to waste)"
    return on + action.kind


def describe(event: Event, programs: ProgramTracker) -> str:
    """The line for ``event`` (a ``ProgramLoaded`` also updates ``programs``)."""
    if isinstance(event, ProgramLoaded):
        programs.load(event)
        return f"{programs.on(event.channel)}program loaded: {spec_text(event.spec)}"
    if isinstance(event, RequestDecided):
        verdict = "accepted" if event.accepted else f"REFUSED {event.reason}"
        return f"request {body_text(event.body)} -> {verdict}"
    if isinstance(event, CommandIssued):
        return f"command {action_text(event.action, programs)} [{event.cause}]"
    if isinstance(event, CommandFailed):
        action = action_text(event.action, programs)
        return f"command FAILED {action}: {event.failure}: {event.detail}"
    if isinstance(event, ReadbackReceived):
        r = event.reading
        state = (
            f"running {num(r.set_rate_ml_h)} mL/h{programs.dose(r.set_rate_ml_h, event.channel)}"
            if r.running
            else "stopped"
        )
        alarms = f" [pump: {', '.join(r.alarms)}]" if r.alarms else ""
        return f"{programs.on(event.channel)}read-back: {state}{alarms}"
    if isinstance(event, StopConfirmed):
        return f"{programs.on(event.channel)}stop confirmed by the pump's reply ({event.reply})"
    if isinstance(event, CommsFailed):
        return f"{programs.on(event.channel)}pump comms FAILED: {event.detail}"
    if isinstance(event, ControllerAttached):
        return f"controller attached (session {event.session})"
    if isinstance(event, ControllerLost):
        return f"controller LOST ({event.why})"
    if isinstance(event, EmergencyStopRaised):
        return f"EMERGENCY STOP ({event.source})"
    if isinstance(event, AlarmsAcknowledged):
        keys = "all" if event.keys is None else ", ".join(event.keys)
        return f"alarms acknowledged: {keys}"
    if isinstance(event, Ticked):
        return "tick"
    if isinstance(event, ClientDropped):
        return f"IPC {event.role} dropped: {event.why} ({event.client})"
    if isinstance(event, PatientAdmitted):
        return f"patient {event.patient_id} ({event.how}): {patient_text(event.patient)}"
    if isinstance(event, PatientUpdated):
        return f"patient updated ({event.how}): {patient_text(event.patient)}"
    if isinstance(event, LibraryChecked):
        if event.status == "ok":
            return f"drug library {event.library_hash[:19]}: in step with the journal"
        return f"drug library {event.status.upper()}: {event.detail}"
    if isinstance(event, TimelineResumed):
        if not event.discontinuity:
            return f"clinical timeline: {event.basis}"
        return f"clinical timeline resumed: {event.credited_s:.0f} s credited ({event.basis})"
    if isinstance(event, JournalRecovered):
        return (
            f"JOURNAL DAMAGED ({event.detail}): {event.entries_kept} entries kept, the "
            f"damaged file kept as {event.damaged_file}"
        )
    if isinstance(event, PumpNamed):
        on = programs.on(event.channel)
        if event.nameless:
            return (
                f"{on}the channel's pump gives no name: nothing tells it from another pump "
                "of its kind"
            )
        if not event.name:
            return f"{on}pump replacement accepted: the next pump to name itself is the channel's"
        return f"{on}the channel's pump names itself {event.name!r} (compared at every connection)"
    relay = _relay_text(event, programs)
    if relay is not None:
        return relay
    assert isinstance(event, Resumed)
    on = programs.on(event.channel)
    if event.reading is None:
        return f"{on}safety process started: pump not reachable ({event.detail})"
    r = event.reading
    pump = f"running {num(r.set_rate_ml_h)} mL/h" if r.running else "stopped"
    return f"{on}safety process started (journal replayed): pump {pump}"


def _relay_text(event: Event, programs: ProgramTracker) -> str | None:
    """The bench's channels, relay handovers and container changes (S15), in words."""
    if isinstance(event, BenchConfigured):
        programs.several = len(event.channels) > 1
        channels = ", ".join(
            f"{c.name} ({c.driver}, {c.container} {c.loaded_ml:g} mL)" for c in event.channels
        )
        return f"bench: channel{'s' if programs.several else ''} {channels}; interlock per " + (
            "bench" if event.interlock_scope == "bench" else "channel"
        )
    if isinstance(event, StandbyArmed):
        return f"{event.channel} armed as the standby of {event.for_channel} ({event.strategy})"
    if isinstance(event, StandbyDisarmed):
        return f"{event.channel} disarmed ({event.why})"
    if isinstance(event, ContainerLoaded):
        label = f", labelled {event.concentration}: re-program" if event.concentration else ""
        return (
            f"{programs.on(event.channel)}new container {event.container}, "
            f"{event.volume_ml:g} mL{label}"
        )
    if isinstance(event, ContainerPaused):
        return (
            f"{programs.on(event.channel)}paused for a container change (was "
            f"{num(event.rate_ml_h)} mL/h; at most {event.max_s / 60:.0f} min)"
        )
    if isinstance(event, ContainerResumed):
        return f"{programs.on(event.channel)}resumed after the container change"
    if isinstance(event, HandoverStarted):
        return (
            f"RELAY {event.from_channel} -> {event.to_channel} ({event.strategy}, "
            f"{event.steps} step{'s' if event.steps != 1 else ''}, "
            f"{num(event.rate_ml_h)} mL/h): {event.why}"
        )
    if isinstance(event, HandoverStepped):
        return f"relay step {event.step} done"
    if isinstance(event, HandoverEnded):
        word = "done" if event.outcome == "done" else event.outcome.upper()
        return f"relay {word}: {event.detail}"
    return None


def reading_key(reading: PumpReading) -> tuple[object, ...]:
    """What makes a read-back news: another running state, rate or set of pump alarms."""
    return (reading.running, reading.set_rate_ml_h, reading.alarms)


class JournalTail:
    """Journal entries in, the lines worth showing out (see the module docstring)."""

    def __init__(self, programs: ProgramTracker) -> None:
        self.programs = programs
        self._last_reading: tuple[object, ...] | None = None

    def line(self, entry_id: int, event: Event) -> JournalLine | None:
        """The line for one entry, or None when it is not news."""
        if isinstance(event, Ticked):
            return None
        if isinstance(event, ReadbackReceived):
            key = reading_key(event.reading)
            if key == self._last_reading:
                return None
            self._last_reading = key
        return JournalLine(entry_id, event.kind, event.now.clinical, describe(event, self.programs))


__all__ = [
    "JournalLine",
    "JournalTail",
    "ProgramTracker",
    "action_text",
    "body_text",
    "describe",
    "reading_key",
    "spec_text",
]
