"""The controller's own journal: every operator action, plan, confirmation, request,
outcome, state change and alarm seen, in the shared append-only store.

It uses ``safety.journal.Journal`` (SQLite, WAL, ``synchronous=FULL``) with
``process="controller"``; the safety process keeps its own. ``pumpctl journal`` merges
the two by time. Each entry's ``kind`` is one of ``KINDS`` and its payload a JSON object;
figures are written as strings (Decimal) so nothing is rounded on the way.

An entry is written *before* the action it records is carried out (a request before it
is sent, a confirmation before the first step), so the journal shows what the operator
asked even if the process dies half-way.

On a bench of several pumps every entry about one channel names it (``channel`` in its
payload), so that a reader can keep one channel's entries (``pumpctl journal show
--channel B``) without B's actions passing for A's. The channel is the one the payload
names, else the one a request's body or a safety alarm's scope names, else the one the
writer is working ``about`` (an operator action on channel B while the session works on
A), else the session's channel. Entries about the bench (an attach, the link's health,
the patient, an emergency stop, a handover between two channels) name none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from safety.journal import Journal, JournalError

log = logging.getLogger("controller.journal")
#: one encoder for every entry (``json.dumps`` with options builds one per call)
_ENCODER = json.JSONEncoder(sort_keys=True)

KINDS = (
    "attached",  # (re-)attached to the safety process: session and the state re-synced
    "action",  # an operator action as entered (before any check)
    "plan",  # a plan made for an action (steps, duration, reachability)
    "confirm",  # the operator confirmed a pending change (and any soft-limit override)
    "cancel",  # a pending change or a running plan was abandoned, and why
    "interrupted",  # a wean cut short by a lost link or session: it will be offered again
    "request",  # a kernel request about to be sent
    "outcome",  # the safety process's verdict and what happened at the pump
    "transition",  # the machine's state change (and any callback fault)
    "alarm",  # an alarm seen (safety process) or raised (controller)
    "notice",  # link health: session lost, link down, restored
    "error",  # an operator error or a refused input
    "loop",  # the closed loop: hand-over, take-over, suspension, each decision
)


_PLAIN = frozenset((str, int, float, bool))
#: kinds that concern the bench, not one channel, unless the payload names one
_BENCH_KINDS = frozenset(("attached", "notice"))


def to_jsonable(value: object) -> Any:
    """Dataclasses, enums, Decimals and tuples -> plain JSON values (Decimal as text).

    Plain values (exactly str, int, float, bool or None: not an enum, which is also a str
    or an int) are looked at first: they are most of every entry, and each of the
    checks below costs more than this one."""
    if value is None or type(value) in _PLAIN:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class SessionJournal:
    """Writes the controller's entries; ``clinical`` and ``liveness`` time-stamp them;
    ``channel`` tells the channel the session works on (None: a one-pump bench's)."""

    def __init__(
        self,
        journal: Journal | None,
        clinical: Callable[[], float],
        liveness: Callable[[], float],
        channel: Callable[[], str | None] | None = None,
    ) -> None:
        self.journal = journal
        self._clinical = clinical
        self._liveness = liveness
        self._channel = channel
        # per thread: the closed loop's thread journals while an operator's action on
        # another channel is under way, and its entries are its own channel's
        self._local = threading.local()

    @contextlib.contextmanager
    def about(self, channel: str | None) -> Iterator[None]:
        """Entries written inside (on this thread) concern ``channel`` (None: the bench)
        unless they name their own: an action on another channel than the session's,
        with its requests, outcome and refusal, is that channel's."""
        stack: list[str | None] = self._local.__dict__.setdefault("about", [])
        stack.append(channel)
        try:
            yield
        finally:
            stack.pop()

    def channel_of(self, kind: str, payload: dict[str, object]) -> str | None:
        """The channel an entry of ``kind`` with ``payload`` concerns (None: the bench)."""
        named = payload.get("channel")
        if isinstance(named, str):
            return named
        if kind == "request":
            body = getattr(payload.get("body"), "channel", None)
            if isinstance(body, str):
                return body
        if kind == "alarm" and payload.get("source") == "safety":
            # the safety process's alarm names its scope: a channel, a drug or the bench
            scope = getattr(payload.get("alarm"), "scope", "")
            return scope if isinstance(scope, str) and scope and ":" not in scope else None
        if kind in _BENCH_KINDS:
            return None
        stack: list[str | None] = self._local.__dict__.get("about", [])
        if stack:
            return stack[-1]
        return self._channel() if self._channel is not None else None

    @classmethod
    def open(
        cls, path: str | Path, clinical: Callable[[], float], liveness: Callable[[], float]
    ) -> SessionJournal:
        return cls(Journal(path, process="controller"), clinical, liveness)

    def write(self, kind: str, **payload: object) -> int | None:
        """Append one entry. Raises ``JournalError`` when the entry cannot be made durable:
        an action that cannot be journaled must not be carried out."""
        if kind not in KINDS:
            raise ValueError(f"journal kind {kind!r} is not one of {', '.join(KINDS)}")
        if self.journal is None:
            return None
        channel = self.channel_of(kind, payload)
        if channel is not None:
            payload["channel"] = channel
        text = _ENCODER.encode(to_jsonable(payload))
        return self.journal.append(kind, text, self._clinical(), self._liveness())

    def note(self, kind: str, **payload: object) -> None:
        """Append an entry about something that already happened (an alarm seen, a state
        change): a journal failure is logged, never raised, so it cannot hide the event
        itself from the operator."""
        try:
            self.write(kind, **payload)
        except (JournalError, OSError) as exc:
            log.error("controller journal: could not record %s: %s", kind, exc)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
