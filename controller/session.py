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

Threads: every public method takes the session's lock, so a background runner and an
operator thread can share a session. Link notices are queued by the link's thread and
handled on the next call; alarm callbacks run on the thread that handles them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from controller.alarm_desk import (
    FAULT_KEY,
    LINK_LOST_KEY,
    OWN,
    PLAN_REFUSED_KEY,
    SESSION_LOST_KEY,
    AlarmCallback,
    AlarmDesk,
    blocks,
)
from controller.errors import (
    BadInput,
    ConfirmationRequired,
    ControllerError,
    LinkUnavailable,
    PlanChanged,
    Refused,
    Unreachable,
)
from controller.inputs import Dose, Weight, dose_value, program_spec
from controller.machine import Facts, InfusionMachine, State, Trigger
from controller.planner import (
    Plan,
    PlanKind,
    PlannerSettings,
    PlanStep,
    StepKind,
    format_duration,
    plan_stop,
    plan_titration,
    plan_wean,
    planning_state,
)
from controller.runner import Runner
from controller.session_journal import SessionJournal, to_jsonable
from controller.status_line import status_line
from firmware_bridge.clock import Clock, MonotonicClock
from safety.ipc.link import (
    ControllerBusy,
    LinkDown,
    LinkRestored,
    NotAttached,
    Notice,
    SafetyLink,
    SafetyLinkError,
    SessionLost,
    StatusChanged,
)
from safety.journal import Journal, JournalError
from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    AcknowledgeAlarms,
    EmergencyStop,
    LoadProgram,
    RequestBody,
    StartInfusion,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.rules import num
from safety.status import AlarmView, HistoryPoint, Outcome, Snapshot
from safety.units import (
    fraction_to_decimal,
)

log = logging.getLogger("controller.session")

#: a refused plan step is re-planned from the fresh state at most this often in a row
MAX_REPLANS = 3

#: refusals a fresh plan can get around (timing, sequence); anything else is reported
_REPLANNABLE = frozenset(
    {
        Reason.STEP_RISE,
        Reason.WINDOW_RISE,
        Reason.WEAN_TOO_FAST,
        Reason.STOP_ABOVE_THRESHOLD,
        Reason.CUMULATIVE_CAP,
        Reason.EXPIRED,
        Reason.STALE_SEQUENCE,
    }
)
#: refusals that mean the safety process no longer takes orders from this session
_HOLDING = frozenset({Reason.HOLD, Reason.NOT_ATTACHED, Reason.DELIVERY_UNCERTAIN})

_PLAN_STATES = (State.TITRATING, State.WEANING)


@dataclass(frozen=True)
class StepResult:
    """A plan step that was sent, and what the safety process made of it."""

    step: PlanStep
    outcome: Outcome

    @property
    def accepted(self) -> bool:
        return self.outcome.verdict.accepted


@dataclass(frozen=True)
class DosePoint:
    """From ``start`` (clinical s) the pump ran ``rate_ml_h``, delivering ``dose``."""

    start: float
    rate_ml_h: Decimal
    dose: Decimal | None
    unit: str | None
    cause: str


@dataclass
class _ActivePlan:
    plan: Plan
    trigger: Trigger
    soft_confirmed: bool
    next: int = 0  # index of the next step to send
    delay_s: float = 0.0  # steps sent late push the later ones back by as much
    replans: int = 0

    def due_at(self, step: PlanStep) -> float:
        return self.plan.created_at + step.at_s + self.delay_s

    @property
    def done(self) -> bool:
        return self.next >= len(self.plan.steps)


class PendingChange:
    """A planned change to a running infusion, waiting for the operator's confirmation.

    Nothing has been sent. ``confirm()`` re-plans from the safety process's fresh state
    and executes only if the plan is unchanged (otherwise ``PlanChanged`` carries the new
    one to review); ``confirm(soft_limits=True)`` is needed when the plan crosses a soft
    limit. Any other operator action supersedes a pending change.
    """

    def __init__(self, session: Session, plan: Plan, trigger: Trigger) -> None:
        self._session = session
        self.plan = plan
        self.trigger = trigger

    @property
    def needs_soft_confirmation(self) -> bool:
        return self.plan.needs_soft_confirmation

    def describe(self) -> str:
        return self.plan.describe()

    def confirm(self, *, soft_limits: bool = False) -> tuple[StepResult, ...]:
        """Execute: the steps already due are sent now, the rest by ``Session.service``."""
        return self._session._confirm(self, soft_limits)

    def cancel(self) -> None:
        self._session._drop_pending(self, "cancelled by the operator")

    def __repr__(self) -> str:
        return f"PendingChange({self.trigger.value}, {len(self.plan.steps)} steps)"


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
    ) -> None:
        """Wrap ``link``; nothing is sent and nothing attached until ``attach()``.

        ``journal``: the controller journal (a path, or an open ``Journal`` with
        ``process="controller"``); default an in-memory one, so every action is still
        journaled, but nothing is kept after the process ends.
        ``clinical``: the clinical clock shared with the safety process; without it the
        session reads clinical time from the safety process's snapshots.
        ``kernel_config``: the safety process's kernel settings, if not the defaults (the
        planner must use the same ones).
        """
        self.library = library
        self.kernel_config = kernel_config or KernelConfig()
        self.planner = planner or PlannerSettings()
        self.machine = InfusionMachine()
        self._link = link
        self._clinical = clinical
        self._liveness = liveness or MonotonicClock()
        self._lock = threading.RLock()
        self._notices: deque[Notice] = deque()
        self._snapshot: Snapshot | None = None
        self._pending: PendingChange | None = None
        self._active: _ActivePlan | None = None
        self._link_down: str | None = None
        self._runner: Runner | None = None
        if journal is None:
            journal = ":memory:"  # always journaled; pass a path to keep it
        store = (
            Journal(journal, process="controller") if isinstance(journal, str | Path) else journal
        )
        self.journal = SessionJournal(store, self._clinical_stamp, self._liveness.now)
        self._alarms = AlarmDesk(self.journal, self._clinical_stamp)
        self._unsubscribe = link.subscribe(self._on_notice)

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
        )
        try:
            session.attach()
        except BaseException:
            session.close(hang_up=False)
            raise
        return session

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, *, hang_up: bool = True) -> None:
        """Stop the runner, unsubscribe, close the link (the safety process then holds
        the rate: S11) and the journal."""
        runner = self._runner
        if runner is not None:
            runner.stop()
        with self._lock:
            with contextlib.suppress(Exception):
                self._unsubscribe()
            if hang_up:
                with contextlib.suppress(SafetyLinkError):
                    self._link.close()
            self.journal.close()

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def pending(self) -> PendingChange | None:
        return self._pending

    @property
    def active_plan(self) -> Plan | None:
        active = self._active
        return active.plan if active is not None else None

    @property
    def link(self) -> SafetyLink:
        return self._link

    @property
    def link_down(self) -> str | None:
        """Why the safety link is down (None while it is up)."""
        return self._link_down

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot seen (no I/O); ``status()`` asks for a fresh one."""
        return self._snapshot

    def status(self) -> Snapshot:
        """The safety process's current state (asks it; falls back to the last one seen
        when the link is down)."""
        with self._lock:
            self._drain()
            if self._link_down is None:
                try:
                    self._take(self._link.snapshot())
                except SafetyLinkError as exc:
                    self._link_failure(str(exc))
            self._reconcile()
            return self._require_snapshot()

    def history(self) -> tuple[DosePoint, ...]:
        """The verified rate history (what the safety process has read back), with doses."""
        snapshot = self.status()
        program = None
        if snapshot.program is not None:
            with contextlib.suppress(ControllerError):
                program = planning_state(self.library, snapshot)[1]
        points: list[DosePoint] = []
        for p in snapshot.history:
            dose = None
            if program is not None:
                value = program.dose_of_amount_rate(
                    Fraction(p.rate_ml_h) * Fraction(p.amount_per_ml)
                )
                dose = fraction_to_decimal(value, 6)
            points.append(DosePoint(p.start, p.rate_ml_h, dose, snapshot.dose_unit, p.cause))
        return tuple(points)

    def raw_history(self) -> tuple[HistoryPoint, ...]:
        return self.status().history

    def alarms(self) -> tuple[AlarmView, ...]:
        """Every alarm: the safety process's (from the last snapshot) and the controller's."""
        with self._lock:
            snapshot = self._snapshot
            safety = snapshot.alarms if snapshot is not None else ()
            return (*safety, *self._alarms.own)

    def status_line(self) -> str:
        """One line for people (from the last snapshot: call ``status()`` to refresh)."""
        with self._lock:
            return status_line(
                self._require_snapshot(),
                self.state.value,
                plan=self._plan_progress(),
                controller_alarms=self._alarms.own,
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
            self._drain()
            state = self.state
            if state in _PLAN_STATES:
                self.machine.check(Trigger.RESUME)
                self._cancel_plan("resumed: the dose stays where it is")
                self._fire(Trigger.RESUME, self._facts(self._require_snapshot()))
                return self.state
            self.machine.check(Trigger.RESUME)
            if link is not None and link is not self._link:
                with contextlib.suppress(Exception):
                    self._unsubscribe()
                with contextlib.suppress(SafetyLinkError):
                    self._link.close()
                self._link = link
                self._unsubscribe = link.subscribe(self._on_notice)
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
    ) -> Outcome:
        """Load a program (S6: the library must allow drug, concentration and diluent)."""
        return self._load(
            Trigger.PROGRAM, drug, concentration, diluent, weight_kg, profile, therapy
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
    ) -> Outcome:
        """Change the program (drug, concentration...). Only when not infusing: a running
        infusion must be stopped (weaned, for a wean-only drug) first."""
        return self._load(
            Trigger.REPROGRAM, drug, concentration, diluent, weight_kg, profile, therapy
        )

    def start(self, dose: Dose, *, confirm_soft_limits: bool = False) -> Outcome:
        """Start at ``dose`` (a number in the program's dose unit, or text with its unit).

        A start above the therapy's max start is refused (S4); a dose outside the soft
        limits needs ``confirm_soft_limits=True`` (S2), which is journaled."""
        with (
            self._lock,
            self._operator("start", dose=str(dose), confirm_soft_limits=confirm_soft_limits),
        ):
            self._drain()
            self.machine.check(Trigger.START)
            snapshot = self._fresh()
            value = dose_value(dose, snapshot)
            outcome = self._send(
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
            snapshot = self._fresh()
            if dose is None:
                return self._make_plan(PlanKind.STOP, None, snapshot)
            value = dose_value(dose, snapshot)
            return self._make_plan(PlanKind.TITRATE, value, snapshot)

    def titrate_to(self, dose: Dose) -> PendingChange:
        """Step 1 of a titration: the plan to ``dose``, pending confirmation."""
        with self._lock, self._operator("titrate_to", dose=str(dose)):
            self._drain()
            self.machine.check(Trigger.TITRATE_TO)
            snapshot = self._fresh()
            value = dose_value(dose, snapshot)
            plan = self._make_plan(PlanKind.TITRATE, value, snapshot)
            return self._new_pending(plan, Trigger.TITRATE_TO)

    def wean(self, dose: Dose | None = None) -> PendingChange:
        """Step 1 of a gradual fall to ``dose``; None weans to the stop threshold and then
        stops (like ``stop`` on a wean-only drug)."""
        with self._lock, self._operator("wean", dose=None if dose is None else str(dose)):
            self._drain()
            self.machine.check(Trigger.WEAN)
            snapshot = self._fresh()
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
            return self._new_pending(plan, Trigger.WEAN)

    def stop(self) -> PendingChange:
        """Step 1 of a stop: for a gradual-wean-only drug a wean to its stop threshold, then
        the stop; otherwise the stop itself. ``emergency_stop`` stops at once."""
        with self._lock, self._operator("stop"):
            self._drain()
            self.machine.check(Trigger.STOP)
            snapshot = self._fresh()
            plan = self._make_plan(PlanKind.STOP, None, snapshot)
            return self._new_pending(plan, Trigger.STOP)

    def order(self, body: RequestBody) -> Outcome:
        """Send one request exactly as given, without planning or pre-checking it.

        For research scripts, scenario files and demonstrations: the safety process
        still decides it with every rule, and a refusal comes back as the outcome (not
        raised). The session's machine then follows the safety process's snapshot."""
        with self._lock, self._operator("order", request=body.kind):
            self._drain()
            outcome = self._send(body)
            self._reconcile()
            return outcome

    def emergency_stop(self, source: str = "api") -> Outcome:
        """Stop now and interlock (S12). Never refused by the safety process; always
        attempted, even when the link looks down."""
        with self._lock, self._operator("emergency_stop", source=source):
            self._drain()
            self._cancel_plan("emergency stop")
            self._drop_pending(self._pending, "emergency stop")
            outcome = self._send(EmergencyStop(source), force=True)
            self._fire(Trigger.EMERGENCY_STOP, self._facts(outcome.snapshot))
            self._reconcile()
            return outcome

    def acknowledge(self, keys: tuple[str, ...] | None = None) -> Outcome | None:
        """Acknowledge alarms (all, or the given keys; controller alarms included).

        Returns the safety process's outcome (None when only controller alarms were
        named)."""
        with self._lock, self._operator("acknowledge", keys=keys):
            self._drain()
            self.machine.check(Trigger.ACKNOWLEDGE)
            safety_keys = None if keys is None else tuple(k for k in keys if not k.startswith(OWN))
            outcome = None
            if safety_keys is None or safety_keys:
                outcome = self._send(AcknowledgeAlarms(safety_keys))
                if not outcome.verdict.accepted:
                    raise Refused(outcome)
            self._alarms.acknowledge(keys)
            snapshot = self._require_snapshot()
            self._alarms.remember(snapshot)
            self._fire(Trigger.ACKNOWLEDGE, self._facts(snapshot))
            self._reconcile()
            return outcome

    def cancel_pending(self) -> None:
        with self._lock:
            self._drop_pending(self._pending, "cancelled by the operator")

    # ------------------------------------------------------------------ time
    def service(self) -> float | None:
        """Handle link notices, re-sync with the safety process, send the plan steps that
        are due. Returns clinical seconds until the next step (None: nothing planned).
        Call it often (a script's loop, or ``run_in_background``)."""
        with self._lock:
            self._drain()
            if self._link_down is not None or self.state is State.HOLD:
                return None
            try:
                self._take(self._link.snapshot())
            except SafetyLinkError as exc:
                self._link_failure(str(exc))
                return None
            self._reconcile()
            self._run_due()
            self._reconcile()
            return self._next_due_in()

    def run_in_background(self, period_s: float = 0.25) -> Runner:
        """A thread calling ``service()`` at least every ``period_s`` real seconds (and
        when a step falls due); stop it with ``Runner.stop()`` or ``close()``."""
        with self._lock:
            if self._runner is not None and self._runner.alive:
                return self._runner
            self._runner = Runner(self, period_s)
            self._runner.start()
            return self._runner

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
        """A controller fault (e.g. in the background runner): a medium alarm, journaled."""
        with self._lock:
            self._alarms.raise_own(FAULT_KEY, "medium", "controller_fault", message)

    def real_seconds(self, clinical_s: float) -> float:
        """How long, in real time, ``clinical_s`` clinical seconds last on this bench."""
        return self._clinical.to_real_seconds(clinical_s) if self._clinical else clinical_s

    # ================================================================== internals
    # ------------------------------------------------------------------ plans
    def _make_plan(self, kind: PlanKind, target: Decimal | None, snapshot: Snapshot) -> Plan:
        config, settings = self.kernel_config, self.planner
        if kind is PlanKind.STOP:
            plan = plan_stop(self.library, snapshot, config=config, settings=settings)
        elif kind is PlanKind.WEAN:
            plan = plan_wean(self.library, snapshot, target, config=config, settings=settings)
        else:
            assert target is not None
            plan = plan_titration(self.library, snapshot, target, config=config, settings=settings)
        return plan

    def _new_pending(self, plan: Plan, trigger: Trigger) -> PendingChange:
        self.journal.write("plan", trigger=trigger, plan=_plan_record(plan))
        if not plan.reachable:
            raise Unreachable(plan)
        if not plan.steps:
            raise ControllerError(
                f"nothing to do: the dose is already {num(plan.start_dose)} {plan.unit}",
                code="no_change",
            )
        self._drop_pending(self._pending, "superseded by a new change")
        pending = PendingChange(self, plan, trigger)
        self._pending = pending
        return pending

    def _confirm(self, pending: PendingChange, soft_limits: bool) -> tuple[StepResult, ...]:
        with (
            self._lock,
            self._operator("confirm", trigger=pending.trigger, soft_limits=soft_limits),
        ):
            self._drain()
            if self._pending is not pending:
                raise ControllerError(
                    "this change is no longer pending (another action came first); plan it again",
                    code="stale_change",
                )
            plan = pending.plan
            if plan.needs_soft_confirmation and not soft_limits:
                findings = plan.soft_findings
                raise ConfirmationRequired(
                    "this plan crosses a soft limit and needs its own confirmation: "
                    + "; ".join(findings)
                    + " (confirm with the soft-limit override: confirm(soft_limits=True), "
                    "console: confirm override)",
                    findings,
                )
            self.machine.check(pending.trigger)
            snapshot = self._fresh()
            fresh = self._make_plan(plan.kind, plan.target, snapshot)
            if not fresh.reachable:
                self._pending = None
                raise Unreachable(fresh)
            if _signature(fresh) != _signature(plan):
                changed = PendingChange(self, fresh, pending.trigger)
                self._pending = changed
                self.journal.write("plan", trigger=pending.trigger, plan=_plan_record(fresh))
                raise PlanChanged(changed)
            self.journal.write(
                "confirm",
                trigger=pending.trigger,
                soft_limits=soft_limits,
                soft_findings=fresh.soft_findings,
                plan=_plan_record(fresh),
            )
            self._pending = None
            wean_first = any(s.kind is StepKind.CHANGE for s in fresh.steps)
            if pending.trigger is Trigger.STOP and not wean_first:
                step = fresh.steps[0]
                outcome = self._send(step.request(fresh.unit))
                if not outcome.verdict.accepted:
                    raise Refused(outcome)
                self._fire(Trigger.STOP, self._facts(outcome.snapshot))
                self._reconcile()
                return (StepResult(step, outcome),)
            self._fire(pending.trigger, self._facts(snapshot, wean_before_stop=True))
            self._active = _ActivePlan(fresh, pending.trigger, soft_limits)
            results = self._run_due()
            self._reconcile()
            return tuple(results)

    def _run_due(self) -> list[StepResult]:
        """Send every step that is due, in order; stop at the first that is not."""
        results: list[StepResult] = []
        while self._active is not None and self.state in _PLAN_STATES:
            active = self._active
            if active.done:
                self._finish_plan()
                break
            step = active.plan.steps[active.next]
            now = self._now()
            due = active.due_at(step)
            if now < due:
                break
            try:
                outcome = self._send(step.request(active.plan.unit))
            except LinkUnavailable:
                break
            results.append(StepResult(step, outcome))
            if not outcome.verdict.accepted:
                self._step_refused(active, step, outcome)
                break
            active.delay_s += max(0.0, now - due)
            active.next += 1
            active.replans = 0
            if outcome.execution.startswith(("rejected", "failed")):
                self._step_failed(step, outcome)
                break
            if outcome.execution != "applied":
                break  # uncertain: the next service re-syncs (hold if still uncertain)
        if self._active is not None and self._active.done and self.state in _PLAN_STATES:
            self._finish_plan()
        return results

    def _finish_plan(self) -> None:
        active = self._active
        self._active = None
        if active is not None:
            self.journal.note("cancel", why="plan complete", plan=_plan_record(active.plan))
        self._fire(Trigger.PLAN_DONE, self._facts(self._require_snapshot()))

    def _step_refused(self, active: _ActivePlan, step: PlanStep, outcome: Outcome) -> None:
        verdict = outcome.verdict
        if verdict.reason is Reason.DELIVERY_UNCERTAIN:
            # S10: the safety process reconciles by read-back; nothing is sent meanwhile
            self._cancel_plan(f"step {step.index} refused: {verdict.message}")
            self._fire(Trigger.SAFETY_HOLD)
            return
        if verdict.reason in _HOLDING:
            self._session_lost(verdict.message)
            return
        explanation = verdict.message
        if verdict.reason in _REPLANNABLE and active.replans < MAX_REPLANS:
            try:
                fresh = self._make_plan(
                    active.plan.kind, active.plan.target, self._require_snapshot()
                )
            except ControllerError as exc:
                explanation = f"{verdict.message}; no new plan: {exc.message}"
            else:
                allowed = not fresh.needs_soft_confirmation or active.soft_confirmed
                if fresh.reachable and fresh.steps and allowed:
                    self.journal.note(
                        "plan",
                        trigger=active.trigger,
                        replanned_after=verdict.reason,
                        plan=_plan_record(fresh),
                    )
                    self._active = _ActivePlan(
                        fresh, active.trigger, active.soft_confirmed, replans=active.replans + 1
                    )
                    return
                if not fresh.reachable:
                    explanation = f"{verdict.message}; {fresh.problem}"
                elif not allowed:
                    explanation = (
                        f"{verdict.message}; the new plan crosses a soft limit that was not "
                        "confirmed"
                    )
        current = self._require_snapshot().dose
        unit = active.plan.unit
        shown = "stop" if step.dose is None else f"{num(step.dose)} {unit}"
        self._cancel_plan(f"step {step.index} refused: {verdict.message}")
        self._alarms.raise_own(
            PLAN_REFUSED_KEY,
            "medium",
            str(verdict.reason),
            f"plan step {step.index} ({shown}) refused by the safety process: {explanation}; "
            f"the plan is stopped, the dose stays at "
            f"{num(current) if current is not None else '?'} {unit}",
        )
        if self.machine.allowed(Trigger.ALARM_RAISED):
            self._fire(Trigger.ALARM_RAISED, self._facts(self._require_snapshot()))

    def _step_failed(self, step: PlanStep, outcome: Outcome) -> None:
        """Accepted by the safety process but not carried out by the pump."""
        self._cancel_plan(f"step {step.index}: {outcome.execution}")
        self._alarms.raise_own(
            PLAN_REFUSED_KEY,
            "medium",
            "pump_alarm",
            f"plan step {step.index} was not carried out ({outcome.execution}); the plan is "
            "stopped; check the pump, acknowledge, and plan again",
        )
        if self.machine.allowed(Trigger.ALARM_RAISED):
            self._fire(Trigger.ALARM_RAISED, self._facts(self._require_snapshot()))

    def _cancel_plan(self, why: str) -> None:
        active = self._active
        if active is not None:
            self._active = None
            self.journal.note("cancel", why=why, plan=_plan_record(active.plan))

    def _drop_pending(self, pending: PendingChange | None, why: str) -> None:
        if pending is not None and self._pending is pending:
            self._pending = None
            self.journal.note("cancel", why=why, pending=_plan_record(pending.plan))

    def _next_due_in(self) -> float | None:
        active = self._active
        if active is None or active.done:
            return None
        return max(0.0, active.due_at(active.plan.steps[active.next]) - self._now())

    def _plan_progress(self) -> str | None:
        active = self._active
        pending = self._pending
        if active is None and pending is not None:
            plan = pending.plan
            goal = "stop" if plan.target is None else f"{plan.kind.value} to {num(plan.target)}"
            return f"PENDING {goal}: confirm or cancel"
        if active is None:
            return None
        plan = active.plan
        goal = "stopping" if plan.target is None else f"{plan.kind.value} to {num(plan.target)}"
        if active.done:
            return f"{goal}: done"
        step = plan.steps[active.next]
        what = "stop" if step.dose is None else f"{num(step.dose)} {plan.unit}"
        wait = format_duration(max(0.0, active.due_at(step) - self._now()))
        return f"{goal}: step {step.index}/{len(plan.steps)} ({what}) in {wait}"

    # ------------------------------------------------------------------ sending
    def _send(self, body: RequestBody, *, force: bool = False) -> Outcome:
        """Journal, send, journal the outcome. Only an emergency stop is sent (``force``)
        while the link is down."""
        if self._link_down is not None and not force:
            raise LinkUnavailable(
                f"the safety link is down ({self._link_down}); nothing is sent: the safety "
                "process, if alive, holds the last verified rate. resume to re-attach"
            )
        try:
            self.journal.write("request", body=body)
        except JournalError as exc:
            raise ControllerError(
                f"the controller journal cannot be written ({exc}); nothing was sent",
                code="journal_failed",
            ) from None
        try:
            outcome = self._link.request(body)
        except NotAttached as exc:
            self._session_lost(str(exc))
            raise ControllerError(
                f"the safety process does not know this session ({exc}); nothing was sent; "
                "resume to re-attach",
                code="session_lost",
            ) from None
        except SafetyLinkError as exc:
            self._link_failure(f"{type(exc).__name__}: {exc}")
            hint = " (use the hardware stop button)" if isinstance(body, EmergencyStop) else ""
            raise LinkUnavailable(
                f"the safety process cannot be reached ({exc}); nothing more is sent{hint}"
            ) from None
        self._drain()  # notices raised during the request are older than its outcome
        self._snapshot = outcome.snapshot
        verdict = outcome.verdict
        self.journal.note(
            "outcome",
            request=body.kind,
            accepted=verdict.accepted,
            reason=verdict.reason,
            message=verdict.message,
            execution=outcome.execution,
            dose=verdict.dose,
            unit=verdict.unit,
            rate_ml_h=verdict.rate_ml_h,
            findings=[f.message for f in verdict.findings],
        )
        return outcome

    def _attach(self) -> Snapshot:
        try:
            snapshot = self._link.attach()
        except ControllerBusy as exc:  # the link works; another controller holds the pump
            raise ControllerError(
                f"another controller is attached to the safety process ({exc}); it must "
                "quit (or be lost) first",
                code="controller_busy",
            ) from None
        except SafetyLinkError as exc:
            self._link_failure(
                f"{type(exc).__name__}: {exc}", raise_alarm=self._snapshot is not None
            )
            raise LinkUnavailable(f"cannot attach to the safety process: {exc}") from None
        if snapshot.library_hash != self.library.content_hash:
            raise ControllerError(
                f"the safety process runs drug library {snapshot.library_hash[:19]} "
                f"(version {snapshot.library_version}), this controller has "
                f"{self.library.content_hash[:19]} (version {self.library.version}); use the "
                "same library file on both",
                code=str(Reason.LIBRARY_MISMATCH),
            )
        self._link_down = None
        self._snapshot = snapshot
        for key in (LINK_LOST_KEY, SESSION_LOST_KEY):
            self._alarms.condition_gone(key)
        self.journal.note(
            "attached",
            session=self._link.session,
            mode=snapshot.mode,
            program=snapshot.program,
            running=snapshot.running,
            rate_ml_h=snapshot.rate_ml_h,
            dose=snapshot.dose,
            alarms=[a.key for a in snapshot.alarms],
        )
        return snapshot

    def _fresh(self) -> Snapshot:
        if self._link_down is not None:
            raise LinkUnavailable(
                f"the safety link is down ({self._link_down}); resume to re-attach"
            )
        try:
            self._take(self._link.snapshot())
        except SafetyLinkError as exc:
            self._link_failure(f"{type(exc).__name__}: {exc}")
            raise LinkUnavailable(f"the safety process cannot be reached ({exc})") from None
        return self._require_snapshot()

    def _take(self, snapshot: Snapshot) -> None:
        current = self._snapshot
        if current is None or (snapshot.clinical_time, snapshot.last_seq) >= (
            current.clinical_time,
            current.last_seq,
        ):
            self._snapshot = snapshot

    def _require_snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise ControllerError(
                "not attached to the safety process yet; attach first", code="not_attached"
            )
        return self._snapshot

    # ------------------------------------------------------------------ notices, re-sync
    def _on_notice(self, notice: Notice) -> None:
        """Called on the link's thread: queue only (no lock, no I/O, cannot block)."""
        self._notices.append(notice)
        runner = self._runner
        if runner is not None:
            runner.wake()

    def _drain(self) -> None:
        while self._notices:
            notice = self._notices.popleft()
            if isinstance(notice, StatusChanged):
                self._take(notice.snapshot)
            elif isinstance(notice, SessionLost):
                self.journal.note("notice", what="session lost", reason=notice.reason)
                self._session_lost(notice.reason)
            elif isinstance(notice, LinkDown):
                self.journal.note(
                    "notice", what="link down", reason=notice.reason, final=notice.final
                )
                self._link_failure(notice.reason)
            elif isinstance(notice, LinkRestored):
                self.journal.note("notice", what="link restored", silent_s=notice.silent_for_s)
                # still on hold: only the operator's resume re-attaches and re-syncs
                self._alarms.condition_gone(LINK_LOST_KEY)
            # AlarmRaised: the snapshot that follows shows it; alarms are handled there

    def _session_lost(self, why: str) -> None:
        """The safety process no longer takes orders from this session (it missed our
        heartbeats, restarted, or another controller attached): hold, alarm, send nothing
        more until ``resume`` re-attaches."""
        if self._link_down is not None or self.state is State.HOLD:
            return
        self._cancel_plan(f"session lost: {why}")
        self._drop_pending(self._pending, "session lost")
        self._alarms.raise_own(
            SESSION_LOST_KEY,
            "high",
            str(Reason.HOLD),
            f"the safety process no longer takes orders from this controller ({why}): it "
            "holds the last verified rate; nothing more is sent; resume to re-attach",
        )
        self._fire(Trigger.SAFETY_HOLD)

    def _link_failure(self, reason: str, *, raise_alarm: bool = True) -> None:
        """The safety process is unreachable: own high alarm, hold, send nothing more."""
        if self._link_down is not None:
            return
        self._link_down = reason
        self._cancel_plan(f"safety link lost: {reason}")
        self._drop_pending(self._pending, "safety link lost")
        if raise_alarm:
            self._alarms.raise_own(
                LINK_LOST_KEY,
                "high",
                str(Reason.PUMP_COMMS),
                f"safety link lost ({reason}): the controller holds and sends nothing; the "
                "safety process, if alive, holds the last verified rate",
            )
        self._fire(Trigger.LINK_LOST)

    def _reconcile(self) -> None:
        """Bring the machine in line with what the safety process reports."""
        snapshot = self._snapshot
        if snapshot is None or self._link_down is not None:
            return
        fresh_alarms = self._alarms.news(snapshot)
        state = self.state
        if state is State.HOLD:
            return  # only resume leaves hold
        if snapshot.hold:
            self._session_lost("it is holding: it lost this controller, or it restarted")
            return
        if snapshot.uncertain:
            self._cancel_plan("the safety process has an uncertain command (S10)")
            self._fire(Trigger.SAFETY_HOLD)
            return
        ours = self._link.session
        if not snapshot.attached or (ours is not None and snapshot.session != ours):
            why = "it restarted" if not snapshot.attached else "another controller attached"
            self._session_lost(why)
            return
        if snapshot.estopped and state is not State.EMERGENCY_STOPPED:
            self._cancel_plan("emergency stop (at the safety process)")
            self._drop_pending(self._pending, "emergency stop")
            self._fire(Trigger.RESYNC, self._facts(snapshot))
            return
        blocking = [a for a in fresh_alarms if blocks(a)]
        if blocking and self.machine.allowed(Trigger.ALARM_RAISED):
            self._cancel_plan("alarm: " + ", ".join(a.key for a in blocking))
            self._fire(Trigger.ALARM_RAISED, self._facts(snapshot))
            return
        if state in (State.INFUSING, *_PLAN_STATES) and not snapshot.running:
            self._cancel_plan("the pump is not running")
            self._fire(Trigger.RESYNC, self._facts(snapshot))

    def _facts(self, snapshot: Snapshot, *, wean_before_stop: bool = False) -> Facts:
        alarms = (*snapshot.alarms, *self._alarms.own)
        return Facts(
            program=snapshot.program is not None,
            running=snapshot.running,
            has_run=any(p.rate_ml_h > 0 for p in snapshot.history),
            estopped=snapshot.estopped,
            hold=snapshot.hold or snapshot.uncertain or self._link_down is not None,
            alarm=any(not a.acknowledged and blocks(a) for a in alarms),
            wean_before_stop=wean_before_stop,
        )

    def _fire(self, trigger: Trigger, facts: Facts | None = None) -> None:
        """Fire a trigger already known to be allowed; journal the change and any fault."""
        if not self.machine.allowed(trigger):
            return
        change = self.machine.fire(trigger, facts)
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
    ) -> Outcome:
        with (
            self._lock,
            self._operator(
                trigger.value,
                drug=drug,
                concentration=concentration,
                diluent=diluent,
                weight_kg=None if weight_kg is None else str(weight_kg),
                profile=profile,
                therapy=therapy,
            ),
        ):
            self._drain()
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
            outcome = self._send(LoadProgram(spec))
            if not outcome.verdict.accepted:
                raise Refused(outcome)
            self._drop_pending(self._pending, "program changed")
            self._fire(trigger, self._facts(outcome.snapshot))
            self._reconcile()
            return outcome

    @contextlib.contextmanager
    def _operator(self, action: str, **args: object) -> Iterator[None]:
        """Journal an operator action before it is checked; journal any refusal of it."""
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
        return self._require_snapshot().clinical_time

    def _clinical_stamp(self) -> float:
        if self._clinical is not None:
            return self._clinical.now()
        snapshot = self._snapshot
        return snapshot.clinical_time if snapshot is not None else 0.0


def _signature(plan: Plan) -> tuple[tuple[str, Decimal | None, bool], ...]:
    return tuple((s.kind.value, s.dose, s.confirm_soft_limits) for s in plan.steps)


def _plan_record(plan: Plan) -> dict[str, object]:
    record: dict[str, object] = to_jsonable(plan)
    record["duration_s"] = plan.duration_s
    return record
