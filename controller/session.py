"""The Python API for research scripts and the console: one ``Session`` per bench.

A session drives one infusion through the safety process, over a ``SafetyLink``
(``safety.ipc.link``): the real socket client, or an in-process link on virtual clocks.
It never talks to a pump. Every rule is decided by the safety process; the session
pre-checks and plans with the same pure kernel (``controller.planner``) so that what it
proposes is what the safety process will accept, and explains what it will not.

Typical use (see docs/python-api.md for a runnable example)::

    session = Session.open(link, library, journal="controller.sqlite")
    session.program("norepinephrine", "4 mg/250 mL", "D5W")
    session.start(8)
    change = session.titrate_to(12)         # step 1: a plan, nothing sent yet
    print(change.plan.describe())
    change.confirm()                          # step 2: execute (first step sent if due)
    while session.state is State.TITRATING:
        session.service()                     # sends each step when it is due
        ...                                   # (or session.run_in_background())

Rules the session keeps:

- two steps for every change to a running infusion (``titrate_to``, ``wean``, ``stop``
  return a ``PendingChange``; ``confirm()`` executes it); a plan that crosses a soft limit
  needs ``confirm(soft_limits=True)`` as well (S2). Both are journaled;
- ``emergency_stop`` is immediate and always attempted (S12);
- a plan step the safety process refuses is re-planned from its fresh state (a few times)
  or reported as a controller alarm; it is never forced or repeated blindly;
- a (re-)attach re-synchronises the machine from the safety process's snapshot and
  sends nothing: the rate is never changed by attaching;
- if the link to the safety process dies, the session raises its own high alarm, goes
  to hold and sends nothing more until ``resume()`` re-attaches.

The session is the API and the glue between three collaborators it drives: the link to
the safety process (``controller.session_link``: sending, attaching, notices), the plan
executor (``controller.plan_executor``: pending changes and running plans) and the state
machine (``controller.machine``), which it keeps in line with what the safety process
reports (``_reconcile``).

Threads: every public method takes the session's lock, so the service thread and an
operator thread can share a session. Link notices are queued by the link's thread and
handled on the next call; alarm callbacks run on the thread that handles them.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from controller.alarm_desk import (
    FAULT_KEY,
    LINK_LOST_KEY,
    OWN,
    PLAN_INTERRUPTED_KEY,
    PLAN_REFUSED_KEY,
    SESSION_LOST_KEY,
    AlarmCallback,
    AlarmDesk,
    alarm_names,
    blocks,
    names,
    unknown_keys_text,
)
from controller.errors import BadInput, ControllerError, Refused
from controller.inputs import Dose, Weight, dose_value, patient_weight, program_spec
from controller.machine import Facts, InfusionMachine, State, Trigger
from controller.plan_executor import (
    EndKind,
    PendingChange,
    PlanEnd,
    PlanExecutor,
    StepResult,
    unfinished_fall,
)
from controller.planner import (
    Plan,
    PlanKind,
    PlannerSettings,
    StepKind,
    format_duration,
    make_plan,
    program_of,
)
from controller.service_thread import ServiceThread
from controller.session_journal import SessionJournal
from controller.session_link import SessionLink
from controller.status_line import status_line
from firmware_bridge.clock import Clock, MonotonicClock
from safety.ipc.link import SafetyLink
from safety.journal import Journal, JournalError
from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    AcceptPump,
    AcknowledgeAlarms,
    AdmitPatient,
    ArmStandby,
    ContainerChanged,
    DisarmStandby,
    EmergencyStop,
    LoadProgram,
    PatientSpec,
    PauseForContainerChange,
    PrimeChannel,
    RelayStrategy,
    RequestBody,
    ResumeAfterContainerChange,
    StartInfusion,
    UpdatePatient,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.rules import num
from safety.status import AlarmView, Outcome, Snapshot
from safety.units import fraction_to_decimal

_PLAN_STATES = (State.TITRATING, State.WEANING)


class _Focus(enum.Enum):
    """An operator action about the session's channel (as it is when the action begins)."""

    FOCUS = "focus"


_FOCUS = _Focus.FOCUS


@dataclass(frozen=True)
class DosePoint:
    """From ``start`` (clinical s) the pump ran ``rate_ml_h``, delivering ``dose``."""

    start: float
    rate_ml_h: Decimal
    dose: Decimal | None
    unit: str | None
    cause: str


class Session:
    """One operator's (or script's) control of one infusion, through the safety process."""

    def __init__(
        self,
        link: SafetyLink,
        library: DrugLibrary,
        *,
        journal: Journal | str | Path | None = None,
        clinical: Clock | None = None,
        liveness: Clock | None = None,
        kernel_config: KernelConfig | None = None,
        planner: PlannerSettings | None = None,
        channel: str | None = None,
    ) -> None:
        """Wrap ``link``; nothing is sent and nothing attached until ``attach()``.

        ``journal``: the controller journal (a path, or an open ``Journal`` with
        ``process="controller"``); default an in-memory one, so every action is still
        journaled, but nothing is kept after the process ends.
        ``clinical``: the clinical clock shared with the safety process; without it the
        session reads clinical time from the safety process's snapshots.
        ``kernel_config``: the safety process's kernel settings, if not the defaults (the
        planner must use the same ones).
        ``channel``: on a bench of several pumps, the channel this session works on (its
        machine, plans and doses are that channel's; default the first). Operations that
        name another channel move the session to it (``select_channel``).
        """
        self.library = library
        self.kernel_config = kernel_config or KernelConfig()
        self.planner = planner or PlannerSettings()
        self.machine = InfusionMachine()
        self._clinical = clinical
        self._liveness = liveness or MonotonicClock()
        self._lock = threading.RLock()
        self._service_thread: ServiceThread | None = None
        if journal is None:
            journal = ":memory:"  # always journaled; pass a path to keep it
        store = (
            Journal(journal, process="controller") if isinstance(journal, str | Path) else journal
        )
        self.journal = SessionJournal(
            store, self._clinical_stamp, self._liveness.now, self._journal_channel
        )
        self._alarms = AlarmDesk(self.journal, self._clinical_stamp)
        self._executor = PlanExecutor(self.journal, self._make_plan, self._confirm)
        #: the interrupted wean offered again (its alarm stands until it is decided)
        self._offered: PendingChange | None = None
        #: the standby last seen armed for each channel: the safety process may hand over
        #: and the emptied channel get its new container (which forgets ``relieved_by``)
        #: between two services of this session
        self._standby_of: dict[str, str] = {}
        self._link = SessionLink(link, library, self.journal, _LinkEvents(self), self._wake)
        self._link.focus = channel

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(
        cls,
        link: SafetyLink,
        library: DrugLibrary,
        *,
        journal: Journal | str | Path | None = None,
        clinical: Clock | None = None,
        liveness: Clock | None = None,
        kernel_config: KernelConfig | None = None,
        planner: PlannerSettings | None = None,
        channel: str | None = None,
    ) -> Session:
        """A session attached to the safety process and re-synchronised from it."""
        session = cls(
            link,
            library,
            journal=journal,
            clinical=clinical,
            liveness=liveness,
            kernel_config=kernel_config,
            planner=planner,
            channel=channel,
        )
        try:
            session.attach()
            session._pick_up_an_unfinished_wean()
        except BaseException:
            session.close(hang_up=False)
            raise
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, *, hang_up: bool = True) -> None:
        """Stop the service thread, unsubscribe, close the link (the safety process then holds
        the rate: S11) and the journal."""
        thread = self._service_thread
        if thread is not None:
            thread.stop()
        with self._lock:
            self._link.close(hang_up=hang_up)
            self.journal.close()

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def pending(self) -> PendingChange | None:
        return self._executor.pending

    @property
    def active_plan(self) -> Plan | None:
        return self._executor.active

    @property
    def link(self) -> SafetyLink:
        return self._link.safety_link

    @property
    def link_down(self) -> str | None:
        """Why the safety link is down (None while it is up)."""
        return self._link.down

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot seen (no I/O), focused on the session's channel: its
        top-level figures are that channel's; ``status()`` asks for a fresh one."""
        return self._link.snapshot

    @property
    def channel(self) -> str | None:
        """The channel this session works on (None: the bench's first, or only, one)."""
        return self._link.focus

    def select_channel(self, channel: str | None) -> Snapshot:
        """Work on ``channel`` from now on (None: the bench's first): the machine follows
        its infusion, plans and doses go to it. Not while a change is planned, pending or
        under way on the current one."""
        with self._lock, self._operator("select_channel", about=channel, channel=channel):
            self._link.drain()
            self._use(channel)
            return self._link.require_snapshot()

    def status(self) -> Snapshot:
        """The safety process's current state (asks it; falls back to the last one seen
        when the link is down)."""
        with self._lock:
            self._link.drain()
            if self._link.down is None:
                self._link.refresh()
            self._reconcile()
            return self._link.require_snapshot()

    def current_state(self) -> tuple[Snapshot, float]:
        """The safety process's state now, and the clinical instant to judge it at:
        without asking the safety process when the link has already said everything.

        A link that delivers the notice of every change during the call that made it
        (``synchronous_notices``: the in-process link) leaves nothing unsaid once the
        queued notices are handled: the last snapshot seen is the state now, and asking
        would build, send and validate it again. Its stamp may be earlier than now, so
        the instant returned is this session's clinical clock's now; a caller judges
        the rules at it (``planning_state(now=...)``) and reads only what the safety
        process's events change: figures that move with the clock alone (what a cap
        window holds, the earlier limits still in force, a pause's time left) are as of
        the stamp. Over a socket a notice may still be on its way, and without a
        clinical clock the instant is unknown: then this asks, as ``status()`` does,
        and the instant is the fresh snapshot's own."""
        with self._lock:
            self._link.drain()
            pushed = bool(getattr(self._link.safety_link, "synchronous_notices", False))
            held = self._link.snapshot
            if not pushed or held is None or self._link.down is not None or self._clinical is None:
                fresh = self.status()
                return fresh, fresh.clinical_time
            self._reconcile()
            held = self._link.require_snapshot()
            return held, max(self._clinical.now(), held.clinical_time)

    def history(self) -> tuple[DosePoint, ...]:
        """The verified rate history (what the safety process has read back), with doses."""
        snapshot = self.status()
        # only the program's conversions: not a plan's state, which another channel giving
        # the same drug (a relay, a handover) makes impossible
        view = snapshot.channel(self.channel)
        spec = view.program if view is not None else snapshot.program
        program = None
        if spec is not None:
            with contextlib.suppress(ControllerError):
                program = program_of(self.library, spec, snapshot.clinical_time)
        points: list[DosePoint] = []
        for p in snapshot.history:
            dose = None
            rate = Decimal(0)
            if program is not None:
                amount = p.exact_amount()
                dose = fraction_to_decimal(program.dose_of_amount_rate(amount), 6)
                # the drug's total as a rate of this program's solution
                rate = fraction_to_decimal(amount / program.amount_per_ml, 6)
            points.append(DosePoint(p.start, rate, dose, snapshot.dose_unit, p.cause))
        return tuple(points)

    def alarms(self) -> tuple[AlarmView, ...]:
        """Every alarm: the safety process's (from the last snapshot) and the controller's."""
        with self._lock:
            snapshot = self._link.snapshot
            safety = snapshot.alarms if snapshot is not None else ()
            return (*safety, *self._alarms.own)

    def status_line(self, *, loop: str | None = None) -> str:
        """One line for people (from the last snapshot: call ``status()`` to refresh).
        ``loop``: the closed loop's state, shown beside the plan's progress."""
        with self._lock:
            return status_line(
                self._link.require_snapshot(),
                self.state.value,
                plan=self._executor.progress(self._now),
                controller_alarms=self._alarms.own,
                channel=self._link.focus,
                loop=loop,
            )

    def subscribe_alarms(self, callback: AlarmCallback) -> Callable[[], None]:
        """``callback(alarm)`` once for every alarm newly raised (safety process or
        controller; a controller alarm's key starts with ``controller:``) and again when
        an acknowledged alarm annunciates again. Must not block; exceptions are logged."""
        with self._lock:
            self._alarms.subscribe(callback)

        def unsubscribe() -> None:
            with self._lock:
                self._alarms.unsubscribe(callback)

        return unsubscribe

    # ------------------------------------------------------------------ link life
    def attach(self) -> Snapshot:
        """(Re-)attach and re-synchronise the machine from the snapshot. Sends nothing to
        the pump: the rate is whatever the safety process verified."""
        with self._lock:
            snapshot = self._attach()
            self._fire(Trigger.RESYNC, self._facts(snapshot))
            self._reconcile()
            return snapshot

    def resume(self, link: SafetyLink | None = None) -> State:
        """Leave a plan at the current dose (titrating, weaning), or leave hold by
        re-attaching (optionally over a new ``link``, e.g. after the safety process was
        restarted) and re-synchronising. Never changes the rate."""
        with self._lock, self._operator("resume"):
            self._link.drain()
            state = self.state
            if state in _PLAN_STATES:
                self.machine.check(Trigger.RESUME)
                self._executor.cancel("resumed: the dose stays where it is")
                self._fire(Trigger.RESUME, self._facts(self._link.require_snapshot()))
                return self.state
            self.machine.check(Trigger.RESUME)
            if link is not None:
                self._link.replace(link)
            snapshot = self._attach()
            self._fire(Trigger.RESUME, self._facts(snapshot))
            self._reconcile()
            return self.state

    # ------------------------------------------------------------------ operator actions
    def program(
        self,
        drug: str,
        concentration: str,
        diluent: str,
        *,
        weight_kg: Weight | None = None,
        profile: str | None = None,
        therapy: str | None = None,
        channel: str | None = None,
    ) -> Outcome:
        """Load a program (S6: the library must allow drug, concentration and diluent)
        on the session's channel (``channel``: move to that one first)."""
        return self._load(
            Trigger.PROGRAM, drug, concentration, diluent, weight_kg, profile, therapy, channel
        )

    def reprogram(
        self,
        drug: str,
        concentration: str,
        diluent: str,
        *,
        weight_kg: Weight | None = None,
        profile: str | None = None,
        therapy: str | None = None,
        channel: str | None = None,
    ) -> Outcome:
        """Change the program (drug, concentration...). Only when not infusing: a running
        infusion must be stopped (weaned, for a wean-only drug) first."""
        return self._load(
            Trigger.REPROGRAM, drug, concentration, diluent, weight_kg, profile, therapy, channel
        )

    def start(
        self, dose: Dose, *, confirm_soft_limits: bool = False, channel: str | None = None
    ) -> Outcome:
        """Start at ``dose`` (a number in the program's dose unit, or text with its unit).

        A start above the therapy's max start is refused (S4); a dose outside the soft
        limits needs ``confirm_soft_limits=True`` (S2), which is journaled. Beside another
        channel giving the same drug, the start is a rise of the patient's total."""
        with (
            self._lock,
            self._operator(
                "start",
                about=self._target(channel),
                dose=str(dose),
                confirm_soft_limits=confirm_soft_limits,
            ),
        ):
            self._link.drain()
            self._use(channel)
            self.machine.check(Trigger.START)
            snapshot = self._link.fresh()
            value = dose_value(dose, snapshot)
            outcome = self._link.send(
                StartInfusion(
                    value, confirm_soft_limits=confirm_soft_limits, unit=snapshot.dose_unit
                )
            )
            if not outcome.verdict.accepted:
                raise Refused(outcome)
            self._fire(Trigger.START, self._facts(outcome.snapshot))
            self._reconcile()
            return outcome

    def plan(self, dose: Dose | None) -> Plan:
        """Preview: the plan to ``dose`` (None: the stop plan). Changes nothing."""
        with self._lock:
            snapshot = self._link.fresh()
            if dose is None:
                return self._make_plan(PlanKind.STOP, None, snapshot)
            value = dose_value(dose, snapshot)
            return self._make_plan(PlanKind.TITRATE, value, snapshot)

    def titrate_to(self, dose: Dose, *, channel: str | None = None) -> PendingChange:
        """Step 1 of a titration: the plan to ``dose``, pending confirmation."""
        with self._lock, self._operator("titrate_to", about=self._target(channel), dose=str(dose)):
            self._link.drain()
            self._use(channel)
            self.machine.check(Trigger.TITRATE_TO)
            snapshot = self._link.fresh()
            value = dose_value(dose, snapshot)
            plan = self._make_plan(PlanKind.TITRATE, value, snapshot)
            return self._executor.propose(plan, Trigger.TITRATE_TO)

    def wean(self, dose: Dose | None = None, *, channel: str | None = None) -> PendingChange:
        """Step 1 of a gradual fall to ``dose``; None weans to the stop threshold and then
        stops (like ``stop`` on a wean-only drug)."""
        with (
            self._lock,
            self._operator(
                "wean", about=self._target(channel), dose=None if dose is None else str(dose)
            ),
        ):
            self._link.drain()
            self._use(channel)
            self.machine.check(Trigger.WEAN)
            snapshot = self._link.fresh()
            if dose is None:
                plan = self._make_plan(PlanKind.STOP, None, snapshot)
            else:
                value = dose_value(dose, snapshot)
                current = snapshot.dose or Decimal(0)
                if value >= current:
                    raise BadInput(
                        "dose",
                        f"a wean lowers the dose: {num(value)} {snapshot.dose_unit} is not below "
                        f"the current {num(current)} {snapshot.dose_unit}; use titrate to rise",
                    )
                plan = self._make_plan(PlanKind.WEAN, value, snapshot)
            return self._executor.propose(plan, Trigger.WEAN)

    def stop(self, *, channel: str | None = None) -> PendingChange:
        """Step 1 of a stop: for a gradual-wean-only drug a wean to its stop threshold, then
        the stop; otherwise the stop itself. ``emergency_stop`` stops at once (every
        channel). Beside another channel of the same drug, stopping one is a fall of the
        patient's total, judged by the wean rule."""
        with self._lock, self._operator("stop", about=self._target(channel)):
            self._link.drain()
            self._use(channel)
            self.machine.check(Trigger.STOP)
            snapshot = self._link.fresh()
            plan = self._make_plan(PlanKind.STOP, None, snapshot)
            return self._executor.propose(plan, Trigger.STOP)

    def admit_patient(
        self, profile: str, weight_kg: Weight | None = None, *, confirm: bool = False
    ) -> Outcome:
        """A new patient (S16): the only thing that starts fresh histories, so it must be
        confirmed (``confirm=True``) and nothing may infuse. Clears the program."""
        return self._patient(AdmitPatient, profile, weight_kg, confirm)

    def update_patient(
        self, profile: str, weight_kg: Weight | None = None, *, confirm: bool = False
    ) -> Outcome:
        """Correct this patient's profile or weight (confirmed). The limits in force before
        keep applying until their windows pass; a running program must then be loaded
        again for the new profile or weight (``reprogram`` with the same solution)."""
        return self._patient(UpdatePatient, profile, weight_kg, confirm)

    def _patient(
        self,
        kind: type[AdmitPatient] | type[UpdatePatient],
        profile: str,
        weight_kg: Weight | None,
        confirm: bool,
    ) -> Outcome:
        action = "admit_patient" if kind is AdmitPatient else "update_patient"
        weight = None if weight_kg is None else str(weight_kg)
        with (
            self._lock,
            # the patient is the bench's: every channel's limits protect them
            self._operator(action, about=None, profile=profile, weight_kg=weight, confirm=confirm),
        ):
            self._link.drain()
            patient = PatientSpec(profile, patient_weight(weight_kg))
            body: AdmitPatient | UpdatePatient = (
                AdmitPatient(patient, confirm_new_patient=confirm)
                if kind is AdmitPatient
                else UpdatePatient(patient, confirm=confirm)
            )
            outcome = self._link.send(body)
            if not outcome.verdict.accepted:
                raise Refused(outcome)
            self._executor.drop_pending(self._executor.pending, "the patient changed")
            self._fire(Trigger.RESYNC, self._facts(outcome.snapshot))
            self._reconcile()
            return outcome

    def order(self, body: RequestBody) -> Outcome:
        """Send one request exactly as given, without planning or pre-checking it.

        For research scripts, scenario files and demonstrations: the safety process
        still decides it with every rule, and a refusal comes back as the outcome (not
        raised). The session's machine then follows the safety process's snapshot."""
        named = getattr(body, "channel", None)
        # a request about a channel is that channel's (named, else the session's); one
        # that has none (an emergency stop, an acknowledgement, a patient) the bench's
        about = (named or self._link.focus) if hasattr(body, "channel") else None
        with self._lock, self._operator("order", about=about, request=body.kind):
            self._link.drain()
            outcome = self._link.send(body)
            self._reconcile()
            return outcome

    # ------------------------------------------------------------------ relay (S15)
    def arm_standby(
        self, channel: str, for_channel: str, strategy: RelayStrategy = "quick"
    ) -> Outcome:
        """Make ``channel`` (loaded with the same drug, concentration and diluent, primed,
        standing still) the relief of ``for_channel``: the safety process hands the
        infusion over itself when ``for_channel``'s container nears empty."""
        body = ArmStandby(channel, for_channel, strategy)
        return self._order(
            "arm_standby", body, channel=channel, for_channel=for_channel, strategy=strategy
        )

    def disarm_standby(self, channel: str) -> Outcome:
        return self._order("disarm_standby", DisarmStandby(channel), channel=channel)

    def accept_pump(self, channel: str | None = None) -> Outcome:
        """The pump of ``channel`` was replaced on purpose: the safety process takes the
        next pump to name itself on the channel's port as its own, in place of the one
        it recorded (which it otherwise refuses, across restarts too)."""
        return self._order("accept_pump", AcceptPump(channel), channel=channel)

    def prime(
        self, volume_ml: Decimal | str | float, channel: str | None = None, *,
        confirm_line_disconnected: bool = False,
    ) -> Outcome:  # fmt: skip
        """Purge ``volume_ml`` through a stopped channel's line to take up its slack. The
        line must NOT be connected to the patient (``confirm_line_disconnected``)."""
        name = channel or self._link.focus or self._first_channel()
        body = PrimeChannel(name, Decimal(str(volume_ml)), confirm_line_disconnected)
        return self._order(
            "prime", body, channel=name, volume_ml=str(volume_ml),
            confirm_line_disconnected=confirm_line_disconnected,
        )  # fmt: skip

    def pause_for_container_change(self, channel: str | None = None) -> Outcome:
        """Stop ``channel`` for a new syringe or bag: bounded, alarmed past its bound."""
        body = PauseForContainerChange(channel)
        return self._order("pause_for_container_change", body, channel=self._target(channel))

    def container_changed(
        self,
        volume_ml: Decimal | str | float,
        channel: str | None = None,
        concentration: str | None = None,
    ) -> Outcome:
        """A new container holding ``volume_ml`` is in (``concentration``: its label, when
        it is not the program's: the channel must then be re-programmed)."""
        body = ContainerChanged(Decimal(str(volume_ml)), channel, concentration)
        return self._order(
            "container_changed", body, channel=self._target(channel), volume_ml=str(volume_ml),
            concentration=concentration,
        )  # fmt: skip

    def resume_after_container_change(self, channel: str | None = None) -> Outcome:
        """Run the paused channel again at the drug rate it ran before the pause."""
        body = ResumeAfterContainerChange(channel)
        return self._order("resume_after_container_change", body, channel=self._target(channel))

    def _first_channel(self) -> str:
        snapshot = self._link.require_snapshot()
        return snapshot.channels[0].name if snapshot.channels else DEFAULT_CHANNEL

    def emergency_stop(self, source: str = "api") -> Outcome:
        """Stop now and interlock (S12). Never refused by the safety process; always
        attempted, even when the link looks down."""
        # every channel stops: the bench's entry
        with self._lock, self._operator("emergency_stop", about=None, source=source):
            self._link.drain()
            self._executor.cancel("emergency stop")
            self._executor.drop_pending(self._executor.pending, "emergency stop")
            outcome = self._link.send(EmergencyStop(source), force=True)
            self._fire(Trigger.EMERGENCY_STOP, self._facts(outcome.snapshot))
            self._reconcile()
            return outcome

    def acknowledge(self, keys: tuple[str, ...] | None = None) -> Outcome | None:
        """Acknowledge alarms (all, or the given keys; controller alarms included).

        A key that names no alarm now is refused (``BadInput`` on ``keys``, naming it and
        the alarms that can be acknowledged), and nothing is acknowledged: the safety
        process would accept it and acknowledge nothing, which reads as done
        (``unknown_alarm_keys`` tells them apart beforehand). Returns the safety
        process's outcome (None when only controller alarms were named)."""
        # the bench's: one key may acknowledge an alarm on every channel
        with self._lock, self._operator("acknowledge", about=None, keys=keys):
            self._link.drain()
            self.machine.check(Trigger.ACKNOWLEDGE)
            if keys is not None:
                unknown = self._unknown_keys(keys)
                if unknown:
                    raise BadInput(
                        "keys",
                        f"{unknown_keys_text(unknown, self._acknowledgeable())}; nothing "
                        "was acknowledged",
                    )
            safety_keys = None if keys is None else tuple(k for k in keys if not k.startswith(OWN))
            outcome = None
            if safety_keys is None or safety_keys:
                outcome = self._link.send(AcknowledgeAlarms(safety_keys))
                if not outcome.verdict.accepted:
                    raise Refused(outcome)
            self._alarms.acknowledge(keys)
            snapshot = self._link.require_snapshot()
            self._alarms.remember(snapshot)
            self._fire(Trigger.ACKNOWLEDGE, self._facts(snapshot))
            self._reconcile()
            return outcome

    def acknowledgeable(self) -> tuple[str, ...]:
        """How ``acknowledge`` can name each alarm now (on a bench of several pumps a
        safety alarm as "channel/key"; the key alone acknowledges it on every channel)."""
        with self._lock:
            self._link.drain()
            return self._acknowledgeable()

    def unknown_alarm_keys(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``keys`` that name no alarm now: what ``acknowledge`` refuses."""
        with self._lock:
            self._link.drain()
            return self._unknown_keys(keys)

    def _acknowledgeable(self) -> tuple[str, ...]:
        snapshot = self._link.snapshot
        safety = snapshot.alarms if snapshot is not None else ()
        scoped = snapshot is not None and len(snapshot.channels) > 1
        return (*alarm_names(safety, scoped=scoped), *alarm_names(self._alarms.own, scoped=False))

    def _unknown_keys(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Judged on the safety process's alarms as they are now (asked afresh): one it
        raised since the last snapshot this session saw is known, and is announced and
        journaled as news first (an acknowledgement then must not hide it)."""
        asks = self._link.down is None and any(not k.startswith(OWN) for k in keys)
        if asks and self._link.refresh():
            self._reconcile()
        snapshot = self._link.snapshot
        safety = snapshot.alarms if snapshot is not None else ()
        return tuple(
            k
            for k in keys
            if not (self._alarms.get(k) is not None if k.startswith(OWN) else names(k, safety))
        )

    def cancel_pending(self) -> None:
        with self._lock:
            self._executor.drop_pending(self._executor.pending, "cancelled by the operator")

    # ------------------------------------------------------------------ time
    def service(self) -> float | None:
        """Handle link notices, re-sync with the safety process, send the plan steps that
        are due. Returns clinical seconds until the next step (None: nothing planned).
        Call it often (a script's loop, or ``run_in_background``)."""
        with self._lock:
            self._link.drain()
            if self._link.down is not None or self.state is State.HOLD:
                return None
            if not self._link.refresh():
                return None
            self._reconcile()
            self._run_due()
            self._reconcile()
            return self._executor.next_due_in(self._now())

    def run_in_background(self, period_s: float = 0.25) -> ServiceThread:
        """A thread calling ``service()`` at least every ``period_s`` real seconds (and
        when a step falls due); stop it with ``ServiceThread.stop()`` or ``close()``."""
        with self._lock:
            if self._service_thread is not None and self._service_thread.alive:
                return self._service_thread
            self._service_thread = ServiceThread(self, period_s)
            self._service_thread.start()
            return self._service_thread

    def raise_alarm(self, key: str, priority: str, reason: str, message: str) -> None:
        """A controller alarm raised by a collaborator of the session (the closed loop):
        journaled, announced to the subscribers, latched until its condition is gone
        (``alarm_condition_gone``) and it is acknowledged. ``key`` must start with
        ``controller:``; a medium or low one does not stop plans."""
        if not key.startswith(OWN) or priority not in ("high", "medium", "low"):
            raise ValueError(f"controller alarm key must start with {OWN!r} and priority be "
                             f"high, medium or low; got {key!r}, {priority!r}")  # fmt: skip
        with self._lock:
            self._alarms.raise_own(key, priority, reason, message)

    def alarm_condition_gone(self, key: str) -> None:
        with self._lock:
            self._alarms.condition_gone(key)

    def raise_fault(self, message: str) -> None:
        """A controller fault (e.g. in the service thread): a medium alarm, journaled."""
        with self._lock:
            self._alarms.raise_own(FAULT_KEY, "medium", "controller_fault", message)

    def clinical_now(self) -> float:
        """The patient's clinical time now: the bench's clinical clock when the session
        follows one, else the last snapshot's (for collaborators on the same timeline,
        such as the closed loop the console runs)."""
        with self._lock:
            return self._clinical_stamp()

    def real_seconds(self, clinical_s: float) -> float:
        """How long, in real time, ``clinical_s`` clinical seconds last on this bench."""
        return self._clinical.to_real_seconds(clinical_s) if self._clinical else clinical_s

    # ================================================================== internals
    # ------------------------------------------------------------------ channels
    def _use(self, channel: str | None) -> None:
        """Move the session to ``channel`` (see ``select_channel``); nothing when it is
        the one in use or None."""
        if channel is None or channel == self._link.focus:
            return
        snapshot = self._link.fresh()
        names = [view.name for view in snapshot.channels]
        if channel not in names:
            raise BadInput(
                "channel", f"there is no channel {channel!r} (channels: {', '.join(names)})"
            )
        if channel == (self._link.focus or names[0]):
            return
        if self.state in _PLAN_STATES or self._executor.pending is not None:
            raise ControllerError(
                f"a change is planned on channel {self._link.focus or names[0]}: finish, "
                "resume or cancel it before working on another channel",
                code="channel_busy",
            )
        before = self._link.focus or names[0]
        # the move concerns two channels: the bench's entry, so that either channel's
        # reader sees where the session went (and what follows is no longer theirs)
        self.journal.note("notice", what="working on channel", from_channel=before, to=channel)
        self._link.focus = channel
        self._link.refresh()
        self._fire(Trigger.RESYNC, self._facts(self._link.require_snapshot()))
        self._reconcile()

    def _target(self, channel: str | None) -> str | None:
        """The channel an action naming ``channel`` (None: the session's) is for."""
        return channel or self._link.focus

    def _journal_channel(self) -> str | None:
        """The channel the journal's entries are about when nothing names one: the
        session's (None before the link exists, and on a one-pump bench)."""
        link: SessionLink | None = getattr(self, "_link", None)
        return None if link is None else link.focus

    def _order(
        self, action: str, body: RequestBody, *, channel: str | None, **args: object
    ) -> Outcome:
        """A relay or container-change request, refused as an error when refused."""
        with self._lock, self._operator(action, about=channel, channel=channel, **args):
            self._link.drain()
            outcome = self._link.send(body)
            if not outcome.verdict.accepted:
                raise Refused(outcome)
            if self.state not in _PLAN_STATES:
                self._fire(Trigger.RESYNC, self._facts(outcome.snapshot))
            # else a plan runs on this channel (an order on another one: a prime, a new
            # container, a standby): settling would drop the machine to infusing under
            # the plan, whose next step then stays due and never goes; ``_reconcile``
            # ends the plan if the order stopped this channel
            self._reconcile()
            return outcome

    # ------------------------------------------------------------------ plans
    def _make_plan(self, kind: PlanKind, target: Decimal | None, snapshot: Snapshot) -> Plan:
        return make_plan(
            kind,
            self.library,
            snapshot,
            target,
            config=self.kernel_config,
            settings=self.planner,
            channel=self._link.focus,
        )

    def _confirm(self, pending: PendingChange, soft_limits: bool) -> tuple[StepResult, ...]:
        """Step 2 of a change (``PendingChange.confirm``): re-plan from the fresh state,
        then carry it out: a plain stop at once, anything else step by step."""
        with (
            self._lock,
            self._operator("confirm", trigger=pending.trigger, soft_limits=soft_limits),
        ):
            self._link.drain()
            self._executor.check_confirmable(pending, soft_limits)
            self.machine.check(pending.trigger)
            snapshot = self._link.fresh()
            plan = self._executor.confirmed(pending, snapshot, soft_limits)
            wean_first = any(s.kind is StepKind.CHANGE for s in plan.steps)
            if pending.trigger is Trigger.STOP and not wean_first:
                step = plan.steps[0]
                outcome = self._link.send(step.request(plan.unit))
                if not outcome.verdict.accepted:
                    raise Refused(outcome)
                self._fire(Trigger.STOP, self._facts(outcome.snapshot))
                self._reconcile()
                return (StepResult(step, outcome),)
            self._fire(pending.trigger, self._facts(snapshot, wean_before_stop=True))
            self._executor.start(plan, pending.trigger, soft_limits)
            results = self._run_due()
            self._reconcile()
            return tuple(results)

    def _run_due(self) -> list[StepResult]:
        """Let the executor send the steps that are due; act on how the plan ended."""
        results, end = self._executor.run_due(
            self._link.send,
            self._now,
            self._link.require_snapshot,
            lambda: self.state in _PLAN_STATES,
        )
        if end is not None:
            self._plan_ended(end)
        return results

    def _plan_ended(self, end: PlanEnd) -> None:
        if end.kind is EndKind.DONE:
            self._fire(Trigger.PLAN_DONE, self._facts(self._link.require_snapshot()))
        elif end.kind is EndKind.UNCERTAIN:
            self._fire(Trigger.SAFETY_HOLD)
        elif end.kind is EndKind.NOT_OBEYED:
            self._session_lost(end.message)
        else:  # refused, or not carried out by the pump: the operator must look
            self._alarms.raise_own(PLAN_REFUSED_KEY, "medium", end.reason, end.message)
            if self.machine.allowed(Trigger.ALARM_RAISED):
                self._fire(Trigger.ALARM_RAISED, self._facts(self._link.require_snapshot()))

    # ------------------------------------------------------------------ the link
    def _attach(self) -> Snapshot:
        snapshot = self._link.attach()
        for key in (LINK_LOST_KEY, SESSION_LOST_KEY):
            self._alarms.condition_gone(key)
        return snapshot

    def _wake(self) -> None:
        """A notice arrived (on the link's thread): let the service thread handle it."""
        thread = self._service_thread
        if thread is not None:
            thread.wake()

    def _session_lost(self, why: str) -> None:
        """The safety process no longer takes orders from this session (it missed our
        heartbeats, restarted, or another controller attached): hold, alarm, send nothing
        more until ``resume`` re-attaches."""
        if self._link.down is not None or self.state is State.HOLD:
            return
        self._interrupt(f"session lost: {why}")
        self._executor.drop_pending(self._executor.pending, "session lost")
        with self.journal.about(None):  # the whole bench is held
            self._alarms.raise_own(
                SESSION_LOST_KEY,
                "high",
                str(Reason.HOLD),
                f"the safety process no longer takes orders from this controller ({why}): "
                "it holds the last verified rate; nothing more is sent; resume to re-attach",
            )
        self._fire(Trigger.SAFETY_HOLD)

    def _link_failed(self, reason: str, *, raise_alarm: bool) -> None:
        """The safety process is unreachable: own high alarm, hold, send nothing more."""
        self._interrupt(f"safety link lost: {reason}")
        self._executor.drop_pending(self._executor.pending, "safety link lost")
        if raise_alarm:
            with self.journal.about(None):  # the link is the bench's
                self._alarms.raise_own(
                    LINK_LOST_KEY,
                    "high",
                    str(Reason.PUMP_COMMS),
                    f"safety link lost ({reason}): the controller holds and sends nothing; "
                    "the safety process, if alive, holds the last verified rate",
                )
        self._fire(Trigger.LINK_LOST)

    def _interrupt(self, why: str) -> None:
        """Stop the running plan; a wean it cuts short is announced at once and offered
        again, re-planned, once the session takes orders again (``_offer_again``)."""
        interrupted = self._executor.interrupt(why)
        if interrupted is not None:
            self._alarms.raise_own(
                PLAN_INTERRUPTED_KEY,
                "medium",
                "plan_interrupted",
                f"{interrupted.describe()}: the dose stays at the step it reached; once the "
                "safety process takes orders again (resume), the rest is re-planned for you "
                "to confirm",
            )

    def _pick_up_an_unfinished_wean(self) -> None:
        """A wean the previous controller on this journal was carrying out when it died:
        announced, and offered again like one a lost link cut short."""
        journal = self.journal.journal
        if journal is None:
            return
        entries, _ = journal.read_all()
        interrupted = unfinished_fall(entries)
        if interrupted is None:
            return
        self._executor.interrupted = interrupted
        self.journal.note("notice", what="unfinished wean found", why=interrupted.why)
        self._alarms.raise_own(
            PLAN_INTERRUPTED_KEY, "medium", "plan_interrupted", interrupted.describe()
        )
        self._offer_again()

    def _offer_again(self) -> None:
        """The interrupted wean back to the operator, re-planned from the fresh state and
        pending confirmation; its alarm stands until that change is confirmed or dropped."""
        offered = self._offered
        if offered is not None and self._executor.pending is not offered:
            self._offered = None
            self._alarms.condition_gone(PLAN_INTERRUPTED_KEY)
        interrupted = self._executor.interrupted
        snapshot = self._link.snapshot
        if (
            interrupted is None
            or snapshot is None
            or self._link.down is not None
            or self.state is State.HOLD
            or snapshot.hold
            or snapshot.uncertain
            or not snapshot.attached
            or not snapshot.running
        ):
            return
        try:
            pending = self._executor.offer_again(snapshot)
        except ControllerError as exc:
            pending = None
            why = exc.message
        else:
            why = "nothing is left to do"
        if pending is None:
            self._alarms.raise_own(
                PLAN_INTERRUPTED_KEY,
                "medium",
                "plan_interrupted",
                f"{interrupted.describe()}; it cannot be planned again ({why}): plan it anew",
            )
            self._alarms.condition_gone(PLAN_INTERRUPTED_KEY)
            return
        self._offered = pending
        plan = pending.plan
        self._alarms.raise_own(
            PLAN_INTERRUPTED_KEY,
            "medium",
            "plan_interrupted",
            f"{interrupted.describe()}: the rest is re-planned, {len(plan.steps)} step(s) over "
            f"{format_duration(plan.duration_s)}, pending: confirm it or cancel it",
        )

    # ------------------------------------------------------------------ re-sync
    def _reconcile(self) -> None:
        """Bring the machine in line with what the safety process reports, then bring
        back an interrupted wean if the session takes orders again."""
        self._follow_safety()
        self._offer_again()

    def _follow_safety(self) -> None:
        snapshot = self._link.snapshot
        if snapshot is None or self._link.down is not None:
            return
        snapshot = self._follow_relay(snapshot)
        fresh_alarms = self._alarms.news(snapshot)
        state = self.state
        if state is State.HOLD:
            return  # only resume leaves hold
        if snapshot.hold:
            self._session_lost("it is holding: it lost this controller, or it restarted")
            return
        if snapshot.uncertain:
            self._executor.cancel("the safety process has an uncertain command (S10)")
            self._fire(Trigger.SAFETY_HOLD)
            return
        ours = self._link.session
        if not snapshot.attached or (ours is not None and snapshot.session != ours):
            why = "it restarted" if not snapshot.attached else "another controller attached"
            self._session_lost(why)
            return
        if snapshot.estopped and state is not State.EMERGENCY_STOPPED:
            self._executor.cancel("emergency stop (at the safety process)")
            self._executor.drop_pending(self._executor.pending, "emergency stop")
            self._fire(Trigger.RESYNC, self._facts(snapshot))
            return
        blocking = [a for a in fresh_alarms if blocks(a)]
        if blocking and self.machine.allowed(Trigger.ALARM_RAISED):
            self._executor.cancel("alarm: " + ", ".join(a.key for a in blocking))
            self._fire(Trigger.ALARM_RAISED, self._facts(snapshot))
            return
        if state in (State.INFUSING, *_PLAN_STATES) and not snapshot.running:
            self._executor.cancel("the pump is not running")
            self._fire(Trigger.RESYNC, self._facts(snapshot))

    def _follow_relay(self, snapshot: Snapshot) -> Snapshot:
        """The safety process handed this session's infusion over to another channel
        (S15): the session follows it there (a plan was cut short by the handover)."""
        for other in snapshot.channels:
            if other.role == "standby" and other.standby_for is not None:
                self._standby_of[other.standby_for] = other.name
        for active, standby in list(self._standby_of.items()):
            seen = snapshot.channel(standby)
            if seen is None or (seen.role != "standby" and not seen.running):
                del self._standby_of[active]  # disarmed: no handover to follow
        view = snapshot.channel(self._link.focus)
        if view is None or view.running:
            return snapshot
        relief = view.relieved_by or self._standby_of.get(view.name)
        if relief is None:
            return snapshot
        target = snapshot.channel(relief)
        if target is None or not target.running:
            return snapshot
        self._standby_of.pop(view.name, None)
        self._executor.cancel(f"handed over from channel {view.name} to {relief}")
        # a handover concerns both channels: the bench's entry
        self.journal.note("notice", what="channel handed over", from_channel=view.name, to=relief)
        self._link.focus = relief
        self._link.refresh()
        followed = self._link.require_snapshot()
        self._fire(Trigger.RESYNC, self._facts(followed))  # the machine follows it too
        return followed

    def _facts(self, snapshot: Snapshot, *, wean_before_stop: bool = False) -> Facts:
        alarms = (*snapshot.alarms, *self._alarms.own)
        # a prime runs the pump to waste, not to the patient: no infusion to follow
        view = snapshot.channel(self._link.focus)
        priming = view is not None and view.role == "priming"
        return Facts(
            program=snapshot.program is not None,
            running=snapshot.running and not priming,
            has_run=any(p.amount_per_h > 0 for p in snapshot.history),
            estopped=snapshot.estopped,
            hold=snapshot.hold or snapshot.uncertain or self._link.down is not None,
            alarm=any(not a.acknowledged and blocks(a) for a in alarms),
            wean_before_stop=wean_before_stop,
        )

    def _fire(self, trigger: Trigger, facts: Facts | None = None) -> None:
        """Fire a trigger already known to be allowed; journal the change and any fault."""
        if not self.machine.allowed(trigger):
            return
        change = self.machine.fire(trigger, facts)
        # the machine follows the session's channel, whatever an action is about
        with self.journal.about(self._link.focus):
            self.journal.note(
                "transition",
                trigger=change.trigger,
                source=change.source,
                dest=change.dest,
                faults=change.faults,
            )
        if change.faults:
            self._alarms.raise_own(
                FAULT_KEY,
                "medium",
                "controller_fault",
                f"controller fault during {trigger.value}: {'; '.join(change.faults)}",
            )

    # ------------------------------------------------------------------ input
    def _load(
        self,
        trigger: Trigger,
        drug: str,
        concentration: str,
        diluent: str,
        weight_kg: Weight | None,
        profile: str | None,
        therapy: str | None,
        channel: str | None,
    ) -> Outcome:
        with (
            self._lock,
            self._operator(
                trigger.value,
                about=self._target(channel),
                drug=drug,
                concentration=concentration,
                diluent=diluent,
                weight_kg=None if weight_kg is None else str(weight_kg),
                profile=profile,
                therapy=therapy,
            ),
        ):
            self._link.drain()
            self._use(channel)
            self.machine.check(trigger)
            spec = program_spec(
                self.library,
                drug,
                concentration,
                diluent,
                weight_kg=weight_kg,
                profile=profile,
                therapy=therapy,
            )
            outcome = self._link.send(LoadProgram(spec))
            if not outcome.verdict.accepted:
                raise Refused(outcome)
            self._executor.drop_pending(self._executor.pending, "program changed")
            self._fire(trigger, self._facts(outcome.snapshot))
            self._reconcile()
            return outcome

    @contextlib.contextmanager
    def _operator(
        self, action: str, *, about: str | _Focus | None = _FOCUS, **args: object
    ) -> Iterator[None]:
        """Journal an operator action before it is checked; journal any refusal of it.

        ``about``: the channel the action is for (None: the bench; by default the
        session's), which the action's entries name: the session may still be on
        another channel when the action is journaled, and moves only once it is."""
        channel = self._link.focus if about is _FOCUS else about
        with self.journal.about(channel):
            try:
                self.journal.write("action", action=action, state=self.state, **args)
            except JournalError as exc:
                raise ControllerError(
                    f"the controller journal cannot be written ({exc}); nothing was done",
                    code="journal_failed",
                ) from None
            try:
                yield
            except ControllerError as exc:
                self.journal.note(
                    "error", action=action, code=exc.code, field=exc.field, message=exc.message
                )
                raise

    # ------------------------------------------------------------------ time
    def _now(self) -> float:
        if self._clinical is not None:
            return self._clinical.now()
        return self._link.require_snapshot().clinical_time

    def _clinical_stamp(self) -> float:
        if self._clinical is not None:
            return self._clinical.now()
        snapshot = self._link.snapshot
        return snapshot.clinical_time if snapshot is not None else 0.0


class _LinkEvents:
    """What the session's link tells the session (``controller.session_link.LinkEvents``);
    called under the session's lock, from within a link call or ``drain``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def link_failed(self, reason: str, *, raise_alarm: bool) -> None:
        self._session._link_failed(reason, raise_alarm=raise_alarm)

    def session_lost(self, why: str) -> None:
        self._session._session_lost(why)

    def link_restored(self) -> None:
        # still on hold: only the operator's resume re-attaches and re-syncs
        self._session._alarms.condition_gone(LINK_LOST_KEY)
