"""What the controller tells an operator or a script when it will not (or cannot) act.

The base (``ControllerError``) and the two errors raised all over the operator side (bad
input, a refusal by the safety process) live here; every other error class lives with
what raises it: ``Unreachable`` and ``PlanError`` with the planner, ``ConfirmationRequired``
and ``PlanChanged`` with the plan executor, ``LinkUnavailable`` with the session's link,
``TransitionRefused`` with the state machine, ``BenchConfigError`` with the bench config.

Every error carries a sentence for people, a machine-readable ``code`` (a
``safety.reasons.Reason`` value when the safety kernel refused, otherwise one of the
controller's own codes) and, for bad input, the ``field`` at fault. None of them is ever
shown as a traceback by the console or the CLI.
"""

from __future__ import annotations

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
