"""What the controller tells an operator or a script when it will not (or cannot) act.

Every error carries a sentence for people, a machine-readable ``code`` (a
``safety.reasons.Reason`` value when the safety kernel refused, otherwise one of the
controller's own codes) and, for bad input, the ``field`` at fault. None of them is ever
shown as a traceback by the console or the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.planner import Plan
    from controller.session import PendingChange
    from safety.status import Outcome


class ControllerError(Exception):
    """Something the operator (or a script) asked for cannot be done; the message says why."""

    def __init__(self, message: str, code: str = "refused", field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


class BadInput(ControllerError):
    """A value that is not what the field takes; ``field`` names it, the message the range."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", code="bad_input", field=field)


class Refused(ControllerError):
    """The safety process refused the request; ``outcome`` has its verdict (reason code,
    sentence, findings) and the snapshot after it."""

    def __init__(self, outcome: Outcome) -> None:
        verdict = outcome.verdict
        super().__init__(verdict.message, code=verdict.reason.value)
        self.outcome = outcome


class Unreachable(ControllerError):
    """The planner found no way to the target; the plan says which limit and what is
    possible (``plan.problem``, ``plan.best``)."""

    def __init__(self, plan: Plan) -> None:
        code = str(plan.code) if plan.code is not None else "unreachable"
        super().__init__(plan.problem or "target not reachable", code=code)
        self.plan = plan


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


class LinkUnavailable(ControllerError):
    """The safety process cannot be reached: the controller holds and sends nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="safety_link_lost")
