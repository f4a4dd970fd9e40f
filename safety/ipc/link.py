"""The controller's one way to the safety process: ``SafetyLink``.

Two implementations with the same behaviour:

- ``safety.ipc.client.SafetyClient``: the real link, over the authenticated Unix socket
  to ``python -m safety``. Sends heartbeats from a supervised background thread.
- ``safety.ipc.local.LocalSafety``: the safety core in the same process, on virtual
  clocks, for the scenario runner and fast tests. Every request and outcome still goes
  through the JSON messages (validated both ways); only the socket is missing. Time
  moves only when the caller advances it; heartbeats are sent as time advances.

The contract (what the controller may rely on)
----------------------------------------------
``attach() -> Snapshot``
    Become the attached controller: a fresh session, sequence numbers restart at 1, any
    hold (S11) ends, and the snapshot is the state to re-sync from. Call it first, and
    again after ``SessionLost``. Raises ``ControllerBusy`` if another live controller
    is attached.
``heartbeat() -> bool``
    Tell the safety process this controller is alive; False when the session is no
    longer the attached one (the safety process has gone to hold: re-attach). The real
    client also sends these by itself; calling it is harmless.
``request(body, *, ttl_s=None) -> Outcome``
    Send one kernel request (``safety.kernel.model``: ``LoadProgram``,
    ``StartInfusion``, ``ChangeDose``, ``StopInfusion``, ``EmergencyStop``,
    ``AcknowledgeAlarms``). The link adds the session, the next sequence number and an
    expiry ``ttl_s`` seconds ahead on the liveness clock (S8). The ``Outcome`` says what
    the kernel decided (``outcome.verdict``: accepted, reason code, sentence) and what
    happened at the pump (``outcome.execution``), with the snapshot after it. A refusal
    is an ``Outcome``, not an exception. ``EmergencyStop`` works without ``attach``.
    Requests are sent one at a time, in call order (thread-safe).
``snapshot() -> Snapshot``
    The current state, without changing anything.
``subscribe(callback) -> unsubscribe``
    ``callback(notice)`` for every ``Notice``: status changes, newly raised alarms, loss
    of the session, and the link's health. A change this link's own request made comes
    in that request's outcome, not again as a status notice. The real client calls it on its own
    dispatcher thread (never the caller's); ``LocalSafety`` calls it synchronously. It
    must not block; an exception in it is logged and ignored.
``close()``
    Hang up. Closing while attached is a controller loss for the safety process: it
    holds the rate and alarms (S11), exactly as if this process had died.

Errors: everything raised is a ``SafetyLinkError``. ``SafetyUnavailable`` means the
safety process is gone, unresponsive or the link is closed: nothing further can be
assumed about the pump except that the safety process, if alive, holds the last
verified rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from safety.kernel.model import RequestBody
from safety.status import AlarmView, Outcome, Snapshot

#: default lifetime of a request on the liveness clock (S8: a later arrival is refused)
DEFAULT_TTL_S = 2.0


# --------------------------------------------------------------------------- notices


@dataclass(frozen=True)
class StatusChanged:
    """The safety process's state changed (rate, infused volume, alarms, mode...)."""

    snapshot: Snapshot


@dataclass(frozen=True)
class AlarmRaised:
    """A new alarm, once, as it is raised (its later state is in the snapshots)."""

    alarm: AlarmView


@dataclass(frozen=True)
class SessionLost:
    """The safety process no longer counts this link as the attached controller (it
    timed out our heartbeat, or another controller attached): it holds the rate and
    refuses changes until ``attach()`` is called again."""

    reason: str


@dataclass(frozen=True)
class LinkDown:
    """The safety process cannot be reached. ``final``: the connection is gone for good
    (the process died, the link was closed, the heartbeat thread failed); otherwise the
    process stopped answering and ``LinkRestored`` follows if it answers again."""

    reason: str
    final: bool


@dataclass(frozen=True)
class LinkRestored:
    """An unresponsive safety process answers again."""

    silent_for_s: float


Notice = StatusChanged | AlarmRaised | SessionLost | LinkDown | LinkRestored


# --------------------------------------------------------------------------- errors


class SafetyLinkError(Exception):
    """Base of every error a link raises."""


class SafetyUnavailable(SafetyLinkError):
    """The safety process is gone, not answering, or the link was closed."""


class SafetyStartFailed(SafetyUnavailable):
    """``start_safety_process``: the child exited (``exit_code``; 2: invalid config or
    library) or did not announce readiness in time (``exit_code`` None)."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class AuthenticationFailed(SafetyLinkError):
    """The key does not match the safety process's (or the server failed to prove it)."""


class NotAttached(SafetyLinkError):
    """A request that needs a session, before ``attach()``."""


class ControllerBusy(SafetyLinkError):
    """Another live controller is attached; it must close or time out first."""


class ProtocolFailure(SafetyLinkError):
    """The other side broke the protocol (the message says how); the link is closed."""


# --------------------------------------------------------------------------- the link


@runtime_checkable
class SafetyLink(Protocol):
    """See the module docstring for the full contract."""

    @property
    def session(self) -> str | None:
        """The session of the last ``attach()`` (None before)."""
        ...

    def attach(self) -> Snapshot: ...

    def heartbeat(self) -> bool: ...

    def request(self, body: RequestBody, *, ttl_s: float | None = None) -> Outcome: ...

    def snapshot(self) -> Snapshot: ...

    def subscribe(self, callback: Callable[[Notice], None]) -> Callable[[], None]: ...

    def close(self) -> None: ...


__all__ = [
    "DEFAULT_TTL_S",
    "AlarmRaised",
    "AuthenticationFailed",
    "ControllerBusy",
    "LinkDown",
    "LinkRestored",
    "NotAttached",
    "Notice",
    "ProtocolFailure",
    "SafetyLink",
    "SafetyLinkError",
    "SafetyStartFailed",
    "SafetyUnavailable",
    "SessionLost",
    "StatusChanged",
]
