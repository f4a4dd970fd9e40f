"""The controller's own journal: every operator action, plan, confirmation, request,
outcome, state change and alarm seen, in the shared append-only store.

It uses ``safety.journal.Journal`` (SQLite, WAL, ``synchronous=FULL``) with
``process="controller"``; the safety process keeps its own. ``pumpctl journal`` merges
the two by time. Each entry's ``kind`` is one of ``KINDS`` and its payload a JSON object;
figures are written as strings (Decimal) so nothing is rounded on the way.

An entry is written *before* the action it records is carried out (a request before it
is sent, a confirmation before the first step), so the journal shows what the operator
asked even if the process dies half-way.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Callable
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
    """Writes the controller's entries; ``clinical`` and ``liveness`` time-stamp them."""

    def __init__(
        self,
        journal: Journal | None,
        clinical: Callable[[], float],
        liveness: Callable[[], float],
    ) -> None:
        self.journal = journal
        self._clinical = clinical
        self._liveness = liveness

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
