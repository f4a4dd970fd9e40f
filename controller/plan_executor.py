"""Carrying out a plan: pending until confirmed, then each step sent when it falls due.

The session (``controller.session``) drives a ``PlanExecutor``: it asks it to propose a
change (a ``PendingChange``, nothing sent), to re-check it at confirmation, to start it,
and, on every ``service``, to send the steps that are due. The executor keeps the one
pending change and the one running plan, journals what becomes of them, and re-plans a
refused step from the safety process's fresh state when the refusal is one a new plan can
get around (timing, sequence; a few times in a row at most). It never touches the state
machine or the alarms: when a plan ends, for good or not, it says how (``PlanEnd``) and
the session turns that into a trigger and, if needed, an alarm.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from controller.errors import ControllerError
from controller.machine import Trigger
from controller.planner import Plan, PlanKind, PlanStep, Unreachable, format_duration
from controller.session_journal import SessionJournal, to_jsonable
from controller.session_link import LinkUnavailable
from safety.journal import JournalEntry
from safety.kernel.model import RequestBody
from safety.reasons import Reason
from safety.rules import num
from safety.status import Outcome, Snapshot

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

MakePlan = Callable[[PlanKind, Decimal | None, Snapshot], Plan]


class ConfirmationRequired(ControllerError):
    """A soft-limit crossing needs its own explicit confirmation (S2)."""

    def __init__(self, message: str, findings: tuple[str, ...]) -> None:
        super().__init__(message, code="soft_limit_confirmation_required")
        self.findings = findings


class PlanChanged(ControllerError):
    """At confirmation the fresh plan differs from the one shown: ``pending`` carries the
    new plan, to review and confirm in its turn."""

    def __init__(self, pending: PendingChange) -> None:
        super().__init__(
            "the situation changed since this plan was made; review the new plan and "
            "confirm it:\n" + pending.plan.describe(),
            code="plan_changed",
        )
        self.pending = pending


@dataclass(frozen=True)
class StepResult:
    """A plan step that was sent, and what the safety process made of it."""

    step: PlanStep
    outcome: Outcome

    @property
    def accepted(self) -> bool:
        return self.outcome.verdict.accepted


Confirm = Callable[["PendingChange", bool], tuple[StepResult, ...]]


class PendingChange:
    """A planned change to a running infusion, waiting for the operator's confirmation.

    Nothing has been sent. ``confirm()`` re-plans from the safety process's fresh state
    and executes only if the plan is unchanged (otherwise ``PlanChanged`` carries the new
    one to review); ``confirm(soft_limits=True)`` is needed when the plan crosses a soft
    limit. Any other operator action supersedes a pending change.
    """

    def __init__(
        self,
        plan: Plan,
        trigger: Trigger,
        confirm: Confirm,
        cancel: Callable[[PendingChange], None],
    ) -> None:
        self.plan = plan
        self.trigger = trigger
        self._confirm = confirm
        self._cancel = cancel

    @property
    def needs_soft_confirmation(self) -> bool:
        return self.plan.needs_soft_confirmation

    def describe(self) -> str:
        return self.plan.describe()

    def confirm(self, *, soft_limits: bool = False) -> tuple[StepResult, ...]:
        """Execute: the steps already due are sent now, the rest by ``Session.service``."""
        return self._confirm(self, soft_limits)

    def cancel(self) -> None:
        self._cancel(self)

    def __repr__(self) -> str:
        return f"PendingChange({self.trigger.value}, {len(self.plan.steps)} steps)"


class EndKind(enum.Enum):
    DONE = "done"  # every step sent and carried out
    UNCERTAIN = "uncertain"  # S10: a command's outcome is unknown; hold until reconciled
    NOT_OBEYED = "not_obeyed"  # the safety process no longer takes orders from us
    REFUSED = "refused"  # a step refused and no new plan gets around it
    NOT_CARRIED_OUT = "not_carried_out"  # accepted, but the pump did not do it


@dataclass(frozen=True)
class PlanEnd:
    """How a running plan ended: the session fires the trigger and raises the alarm."""

    kind: EndKind
    message: str = ""
    reason: str = ""  # the alarm's reason code (REFUSED, NOT_CARRIED_OUT)


@dataclass(frozen=True)
class Interrupted:
    """A fall (a wean, or a wean and stop) cut short by a lost link or session, or by the
    controller's own restart: the dose stays at the step it reached. It must come back to
    the operator, re-planned from where it stopped, ready to confirm: a wean left half-way
    is a dose nobody chose."""

    kind: PlanKind
    target: Decimal | None
    unit: str
    trigger: Trigger
    steps_total: int
    steps_done: int
    why: str

    @classmethod
    def of(cls, plan: Plan, trigger: Trigger, steps_done: int, why: str) -> Interrupted:
        return cls(plan.kind, plan.target, plan.unit, trigger, len(plan.steps), steps_done, why)

    def describe(self) -> str:
        goal = "to the stop" if self.target is None else f"to {num(self.target)} {self.unit}"
        return (
            f"the {self.kind.value} {goal} was interrupted after step {self.steps_done} of "
            f"{self.steps_total} ({self.why})"
        )


def unfinished_fall(entries: list[JournalEntry]) -> Interrupted | None:
    """From a controller journal: a confirmed fall that neither finished nor was
    cancelled nor already noted as interrupted (the controller died while carrying it
    out), as the controller that starts next finds it."""
    confirmed: dict[str, Any] | None = None
    sent = 0
    falls = {k.value for k in _FALLS}
    for entry in entries:
        if entry.kind in ("confirm", "interrupted"):
            # a confirmed fall, or one a lost link cut short (and not yet decided again)
            data = entry.data()
            plan = data.get("plan") or {}
            if plan.get("kind") in falls:
                confirmed = data
                sent = int(data.get("steps_done", 0))
            elif entry.kind == "confirm":
                confirmed = None
        elif entry.kind == "cancel":
            confirmed = None
        elif entry.kind == "request" and confirmed is not None:
            body = entry.data().get("body") or {}
            sent += body.get("kind") in ("change_dose", "stop")
    if confirmed is None:
        return None
    plan = confirmed["plan"]
    target = plan.get("target")
    return Interrupted(
        PlanKind(plan["kind"]),
        Decimal(target) if target is not None else None,
        str(plan.get("unit", "")),
        Trigger(confirmed.get("trigger", Trigger.WEAN.value)),
        len(plan.get("steps") or []),
        sent,
        "the controller stopped while carrying it out",
    )


#: plans that lower the dose: interrupted, they come back to the operator
_FALLS = frozenset({PlanKind.WEAN, PlanKind.STOP})


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


class PlanExecutor:
    """The session's one pending change and one running plan."""

    def __init__(self, journal: SessionJournal, make_plan: MakePlan, confirm: Confirm) -> None:
        """``make_plan`` plans from a snapshot (re-planning a refused step);
        ``confirm`` is what a ``PendingChange.confirm()`` calls (the session's flow)."""
        self._journal = journal
        self._make_plan = make_plan
        self._confirm = confirm
        self.pending: PendingChange | None = None
        self._active: _ActivePlan | None = None
        #: a fall cut short by a lost link or session, not yet offered again
        self.interrupted: Interrupted | None = None

    @property
    def active(self) -> Plan | None:
        active = self._active
        return active.plan if active is not None else None

    # ------------------------------------------------------------------ pending changes
    def propose(self, plan: Plan, trigger: Trigger) -> PendingChange:
        """Step 1 of a change: journal the plan and hold it for confirmation."""
        self._journal.write("plan", trigger=trigger, plan=plan_record(plan))
        if not plan.reachable:
            raise Unreachable(plan)
        if not plan.steps:
            raise ControllerError(
                f"nothing to do: the dose is already {num(plan.start_dose)} {plan.unit}",
                code="no_change",
            )
        self.drop_pending(self.pending, "superseded by a new change")
        pending = self._pending_change(plan, trigger)
        self.pending = pending
        return pending

    def drop_pending(self, pending: PendingChange | None, why: str) -> None:
        if pending is not None and self.pending is pending:
            self.pending = None
            self._journal.note("cancel", why=why, pending=plan_record(pending.plan))

    def check_confirmable(self, pending: PendingChange, soft_limits: bool) -> None:
        """Still the pending change, and any soft-limit crossing confirmed (S2)."""
        if self.pending is not pending:
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

    def confirmed(self, pending: PendingChange, snapshot: Snapshot, soft_limits: bool) -> Plan:
        """Re-plan ``pending`` from ``snapshot``: the plan to carry out, journaled as
        confirmed; ``Unreachable`` or ``PlanChanged`` (a new pending change) otherwise."""
        plan = pending.plan
        fresh = self._make_plan(plan.kind, plan.target, snapshot)
        if not fresh.reachable:
            self.pending = None
            raise Unreachable(fresh)
        if _signature(fresh) != _signature(plan):
            changed = self._pending_change(fresh, pending.trigger)
            self.pending = changed
            self._journal.write("plan", trigger=pending.trigger, plan=plan_record(fresh))
            raise PlanChanged(changed)
        self._journal.write(
            "confirm",
            trigger=pending.trigger,
            soft_limits=soft_limits,
            soft_findings=fresh.soft_findings,
            plan=plan_record(fresh),
        )
        self.pending = None
        return fresh

    def _pending_change(self, plan: Plan, trigger: Trigger) -> PendingChange:
        return PendingChange(
            plan,
            trigger,
            self._confirm,
            lambda p: self.drop_pending(p, "cancelled by the operator"),
        )

    # ------------------------------------------------------------------ running plans
    def start(self, plan: Plan, trigger: Trigger, soft_confirmed: bool) -> None:
        self._active = _ActivePlan(plan, trigger, soft_confirmed)

    def cancel(self, why: str) -> None:
        active = self._active
        if active is not None:
            self._active = None
            self._journal.note("cancel", why=why, plan=plan_record(active.plan))

    def interrupt(self, why: str) -> Interrupted | None:
        """The running plan stops because the link or the session was lost. A fall that
        had steps left is kept (``interrupted``) to be offered again; returned if so."""
        active = self._active
        if active is None:
            return None
        self.cancel(why)
        if active.plan.kind not in _FALLS or active.done:
            return None
        self.interrupted = Interrupted.of(active.plan, active.trigger, active.next, why)
        self._journal.note(
            "interrupted", why=why, steps_done=active.next, plan=plan_record(active.plan)
        )
        return self.interrupted

    def offer_again(self, snapshot: Snapshot) -> PendingChange | None:
        """The interrupted fall, re-planned from ``snapshot`` to the same goal, pending
        the operator's confirmation (None when there is nothing left to do)."""
        interrupted = self.interrupted
        if interrupted is None:
            return None
        self.interrupted = None
        plan = self._make_plan(interrupted.kind, interrupted.target, snapshot)
        if not plan.reachable or not plan.steps:
            self._journal.note("cancel", why="interrupted: nothing left to re-plan")
            return None
        return self.propose(plan, interrupted.trigger)

    def run_due(
        self,
        send: Callable[[RequestBody], Outcome],
        now: Callable[[], float],
        snapshot: Callable[[], Snapshot],
        running: Callable[[], bool],
    ) -> tuple[list[StepResult], PlanEnd | None]:
        """Send every step that is due, in order; stop at the first that is not.

        ``running`` says whether the machine is still in a plan state (a notice handled
        while sending can end it). Returns the steps sent and, when the plan ended, how."""
        results: list[StepResult] = []
        end: PlanEnd | None = None
        while self._active is not None and running():
            active = self._active
            if active.done:
                return results, self._finish()
            step = active.plan.steps[active.next]
            t = now()
            due = active.due_at(step)
            if t < due:
                break
            try:
                outcome = send(step.request(active.plan.unit))
            except LinkUnavailable:
                break
            results.append(StepResult(step, outcome))
            if not outcome.verdict.accepted:
                end = self._step_refused(active, step, outcome, snapshot)
                break
            active.delay_s += max(0.0, t - due)
            active.next += 1
            active.replans = 0
            if outcome.execution.startswith(("rejected", "failed")):
                end = self._step_failed(step, outcome)
                break
            if outcome.execution != "applied":
                break  # uncertain: the next service re-syncs (hold if still uncertain)
        if end is None and self._active is not None and self._active.done and running():
            end = self._finish()
        return results, end

    def _finish(self) -> PlanEnd:
        self.cancel("plan complete")
        return PlanEnd(EndKind.DONE)

    def _step_refused(
        self,
        active: _ActivePlan,
        step: PlanStep,
        outcome: Outcome,
        snapshot: Callable[[], Snapshot],
    ) -> PlanEnd | None:
        verdict = outcome.verdict
        if verdict.reason is Reason.DELIVERY_UNCERTAIN:
            # S10: the safety process reconciles by read-back; nothing is sent meanwhile
            self.cancel(f"step {step.index} refused: {verdict.message}")
            return PlanEnd(EndKind.UNCERTAIN)
        if verdict.reason in _HOLDING:
            return PlanEnd(EndKind.NOT_OBEYED, verdict.message)
        explanation = verdict.message
        if verdict.reason in _REPLANNABLE and active.replans < MAX_REPLANS:
            try:
                fresh = self._make_plan(active.plan.kind, active.plan.target, snapshot())
            except ControllerError as exc:
                explanation = f"{verdict.message}; no new plan: {exc.message}"
            else:
                allowed = not fresh.needs_soft_confirmation or active.soft_confirmed
                if fresh.reachable and fresh.steps and allowed:
                    self._journal.note(
                        "plan",
                        trigger=active.trigger,
                        replanned_after=verdict.reason,
                        plan=plan_record(fresh),
                    )
                    self._active = _ActivePlan(
                        fresh, active.trigger, active.soft_confirmed, replans=active.replans + 1
                    )
                    return None
                if not fresh.reachable:
                    explanation = f"{verdict.message}; {fresh.problem}"
                elif not allowed:
                    explanation = (
                        f"{verdict.message}; the new plan crosses a soft limit that was not "
                        "confirmed"
                    )
        current = snapshot().dose
        unit = active.plan.unit
        shown = "stop" if step.dose is None else f"{num(step.dose)} {unit}"
        self.cancel(f"step {step.index} refused: {verdict.message}")
        return PlanEnd(
            EndKind.REFUSED,
            f"plan step {step.index} ({shown}) refused by the safety process: {explanation}; "
            f"the plan is stopped, the dose stays at "
            f"{num(current) if current is not None else '?'} {unit}",
            str(verdict.reason),
        )

    def _step_failed(self, step: PlanStep, outcome: Outcome) -> PlanEnd:
        """Accepted by the safety process but not carried out by the pump."""
        self.cancel(f"step {step.index}: {outcome.execution}")
        return PlanEnd(
            EndKind.NOT_CARRIED_OUT,
            f"plan step {step.index} was not carried out ({outcome.execution}); the plan is "
            "stopped; check the pump, acknowledge, and plan again",
            "pump_alarm",
        )

    # ------------------------------------------------------------------ reading
    def next_due_in(self, now: float) -> float | None:
        """Clinical seconds until the next step (None: nothing planned)."""
        active = self._active
        if active is None or active.done:
            return None
        return max(0.0, active.due_at(active.plan.steps[active.next]) - now)

    def progress(self, now: Callable[[], float]) -> str | None:
        """The plan's part of the status line."""
        active = self._active
        pending = self.pending
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
        wait = format_duration(max(0.0, active.due_at(step) - now()))
        return f"{goal}: step {step.index}/{len(plan.steps)} ({what}) in {wait}"


def _signature(plan: Plan) -> tuple[tuple[str, Decimal | None, bool], ...]:
    return tuple((s.kind.value, s.dose, s.confirm_soft_limits) for s in plan.steps)


def plan_record(plan: Plan) -> dict[str, object]:
    """A plan as the controller journal keeps it."""
    record: dict[str, object] = to_jsonable(plan)
    record["duration_s"] = plan.duration_s
    return record
