"""The session's end of the safety link: send (journaled), attach, follow the snapshots.

A ``Session`` talks to the safety process only through this object. It wraps the
``SafetyLink`` (``safety.ipc.link``: the socket client, or an in-process link) and keeps
what the session knows of the far side: the newest snapshot, whether the link is down and
why, and the link's notices, queued on the link's own thread and handled on the session's.

It journals its own traffic (a request before it is sent, each outcome, every attach and
notice) and decides nothing about the infusion: when the link fails, or the safety process
stops taking orders from this session, it tells the session (``LinkEvents``), which holds,
raises its alarm and cancels its plans.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Protocol

from controller.errors import ControllerError
from controller.session_journal import SessionJournal
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
from safety.journal import JournalError
from safety.kernel.model import EmergencyStop, RequestBody
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import Outcome, Snapshot


class LinkUnavailable(ControllerError):
    """The safety process cannot be reached: the controller holds and sends nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="safety_link_lost")


class LinkEvents(Protocol):
    """What the session does when the link tells it something it must act on."""

    def link_failed(self, reason: str, *, raise_alarm: bool) -> None:
        """The safety process is unreachable (the link is already marked down)."""

    def session_lost(self, why: str) -> None:
        """The safety process no longer takes orders from this session."""

    def link_restored(self) -> None:
        """The link works again (the session stays on hold until it re-attaches)."""


class SessionLink:
    """One session's use of one ``SafetyLink`` (replaceable on resume)."""

    def __init__(
        self,
        link: SafetyLink,
        library: DrugLibrary,
        journal: SessionJournal,
        events: LinkEvents,
        wake: Callable[[], None],
    ) -> None:
        """``wake`` is called on the link's thread when a notice arrives: it must not
        block (the session wakes its service thread with it)."""
        self._link = link
        self._library = library
        self._journal = journal
        self._events = events
        self._wake = wake
        self._notices: deque[Notice] = deque()
        self.snapshot: Snapshot | None = None
        #: why the link is down (None while it is up)
        self.down: str | None = None
        #: the channel the session works on (None: the bench's first, or only, one):
        #: every snapshot is seen focused on it, every request names it
        self.focus: str | None = None
        self._unsubscribe = link.subscribe(self._on_notice)

    @property
    def safety_link(self) -> SafetyLink:
        return self._link

    @property
    def session(self) -> str | None:
        """The safety process's id for this session (None before the first attach)."""
        return self._link.session

    def replace(self, link: SafetyLink) -> None:
        """Use ``link`` from now on (resume over a new link): the old one is closed."""
        if link is self._link:
            return
        with contextlib.suppress(Exception):
            self._unsubscribe()
        with contextlib.suppress(SafetyLinkError):
            self._link.close()
        self._link = link
        self._unsubscribe = link.subscribe(self._on_notice)

    def close(self, *, hang_up: bool) -> None:
        with contextlib.suppress(Exception):
            self._unsubscribe()
        if hang_up:
            with contextlib.suppress(SafetyLinkError):
                self._link.close()

    # ------------------------------------------------------------------ sending
    def send(self, body: RequestBody, *, force: bool = False) -> Outcome:
        """Journal, send, journal the outcome. Only an emergency stop is sent (``force``)
        while the link is down. A request for a channel that names none is for the
        session's channel (``focus``)."""
        if self.focus is not None and getattr(body, "channel", "") is None:
            body = dataclasses.replace(body, channel=self.focus)  # type: ignore[arg-type]
        if self.down is not None and not force:
            raise LinkUnavailable(
                f"the safety link is down ({self.down}); nothing is sent: the safety "
                "process, if alive, holds the last verified rate. resume to re-attach"
            )
        try:
            self._journal.write("request", body=body)
        except JournalError as exc:
            raise ControllerError(
                f"the controller journal cannot be written ({exc}); nothing was sent",
                code="journal_failed",
            ) from None
        try:
            outcome = self._link.request(body)
        except NotAttached as exc:
            self._events.session_lost(str(exc))
            raise ControllerError(
                f"the safety process does not know this session ({exc}); nothing was sent; "
                "resume to re-attach",
                code="session_lost",
            ) from None
        except SafetyLinkError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            hint = " (use the hardware stop button)" if isinstance(body, EmergencyStop) else ""
            raise LinkUnavailable(
                f"the safety process cannot be reached ({exc}); nothing more is sent{hint}"
            ) from None
        self.drain()  # notices raised during the request are older than its outcome
        outcome = dataclasses.replace(outcome, snapshot=outcome.snapshot.focused(self.focus))
        self.snapshot = outcome.snapshot
        verdict = outcome.verdict
        self._journal.note(
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

    def attach(self) -> Snapshot:
        """(Re-)attach; the link is up again once this returns."""
        try:
            snapshot = self._link.attach()
        except ControllerBusy as exc:  # the link works; another controller holds the pump
            raise ControllerError(
                f"another controller is attached to the safety process ({exc}); it must "
                "quit (or be lost) first",
                code="controller_busy",
            ) from None
        except SafetyLinkError as exc:
            self.fail(f"{type(exc).__name__}: {exc}", raise_alarm=self.snapshot is not None)
            raise LinkUnavailable(f"cannot attach to the safety process: {exc}") from None
        library = self._library
        if snapshot.library_hash != library.content_hash:
            raise ControllerError(
                f"the safety process runs drug library {snapshot.library_hash[:19]} "
                f"(version {snapshot.library_version}), this controller has "
                f"{library.content_hash[:19]} (version {library.version}); use the "
                "same library file on both",
                code=str(Reason.LIBRARY_MISMATCH),
            )
        self.down = None
        if self.focus is None and len(snapshot.channels) > 1:
            self.focus = snapshot.channels[0].name  # a bench of several: name the channel
        snapshot = snapshot.focused(self.focus)
        self.snapshot = snapshot
        self._journal.note(
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

    # ------------------------------------------------------------------ snapshots
    def refresh(self) -> bool:
        """Ask for a fresh snapshot; False (and the link marked down) when it fails."""
        try:
            self.take(self._link.snapshot())
        except SafetyLinkError as exc:
            self.fail(str(exc))
            return False
        return True

    def fresh(self) -> Snapshot:
        """A fresh snapshot, or ``LinkUnavailable``."""
        if self.down is not None:
            raise LinkUnavailable(f"the safety link is down ({self.down}); resume to re-attach")
        try:
            self.take(self._link.snapshot())
        except SafetyLinkError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            raise LinkUnavailable(f"the safety process cannot be reached ({exc})") from None
        return self.require_snapshot()

    def take(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` (seen focused on the session's channel) unless an older one:
        notices and replies may cross."""
        snapshot = snapshot.focused(self.focus)
        current = self.snapshot
        if current is None or (snapshot.clinical_time, snapshot.last_seq) >= (
            current.clinical_time,
            current.last_seq,
        ):
            self.snapshot = snapshot

    def require_snapshot(self) -> Snapshot:
        if self.snapshot is None:
            raise ControllerError(
                "not attached to the safety process yet; attach first", code="not_attached"
            )
        return self.snapshot

    # ------------------------------------------------------------------ failures, notices
    def fail(self, reason: str, *, raise_alarm: bool = True) -> None:
        """Mark the link down (once) and tell the session."""
        if self.down is not None:
            return
        self.down = reason
        self._events.link_failed(reason, raise_alarm=raise_alarm)

    def _on_notice(self, notice: Notice) -> None:
        """Called on the link's thread: queue only (no lock, no I/O, cannot block)."""
        self._notices.append(notice)
        self._wake()

    def drain(self) -> None:
        """Handle the queued notices (on the session's thread, under its lock)."""
        while self._notices:
            notice = self._notices.popleft()
            if isinstance(notice, StatusChanged):
                self.take(notice.snapshot)
            elif isinstance(notice, SessionLost):
                self._journal.note("notice", what="session lost", reason=notice.reason)
                self._events.session_lost(notice.reason)
            elif isinstance(notice, LinkDown):
                self._journal.note(
                    "notice", what="link down", reason=notice.reason, final=notice.final
                )
                self.fail(notice.reason)
            elif isinstance(notice, LinkRestored):
                self._journal.note("notice", what="link restored", silent_s=notice.silent_for_s)
                self._events.link_restored()
            # AlarmRaised: the snapshot that follows shows it; alarms are handled there
