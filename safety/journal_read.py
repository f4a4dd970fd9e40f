"""Reading a journal back, read-only: its entries, the safety journal's kernel events, and
the programs those events loaded.

One reader for everyone who looks at a journal after the fact (``pumpctl journal``, the
ground-truth oracle, the scenario runner, the demo, the tests): each file is opened with
SQLite's ``mode=ro`` (``safety.journal.open_readonly``), so a reader can never write, lock
or roll back the journal of a running process, and every way a file can fail to read is a
``JournalReadError`` naming the file (and the entry).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from safety.journal import open_readonly
from safety.kernel.codec import decode_event
from safety.kernel.model import (
    Event,
    HandoverEnded,
    HandoverStarted,
    ProgramLimits,
    ProgramLoaded,
    ProgramSpec,
)
from safety.kernel.state import ActiveProgram, load_program
from safety.library import DiluentError, DrugLibrary, LookupProblem
from safety.rules import RuleRefusal
from safety.units import UnitError


class JournalReadError(ValueError):
    """A journal that cannot be read, or an entry that is not what the file should hold;
    the message names the file (and the entry)."""


@dataclass(frozen=True)
class RawEntry:
    """One entry as stored, its payload parsed (a payload that is not a JSON object is
    kept under ``unparsed`` or ``value``, so a damaged entry can still be shown)."""

    id: int
    wall: float
    clinical: float
    liveness: float
    process: str
    kind: str
    payload: dict[str, Any]


_Row = tuple[int, float, float, float, str, str, str]


def _rows(path: str | Path) -> list[_Row]:
    try:
        db = open_readonly(path)
        try:
            rows: list[_Row] = db.execute(
                "SELECT id, wall, clinical, liveness, process, kind, payload FROM entries "
                "ORDER BY id"
            ).fetchall()
        finally:
            db.close()
    except Exception as exc:  # sqlite3.Error, or not a database at all
        raise JournalReadError(f"{path}: not a readable pumpctl journal ({exc})") from None
    return rows


def _entry(row: _Row) -> RawEntry:
    ident, wall, clinical, liveness, process, kind, payload = row
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        data = {"unparsed": payload}
    if not isinstance(data, dict):
        data = {"value": data}
    return RawEntry(ident, wall, clinical, liveness, process, kind, data)


def _event(path: str | Path, row: _Row) -> Event:
    ident, kind, payload = row[0], row[5], row[6]
    try:
        return decode_event(payload)
    except ValidationError:
        raise JournalReadError(
            f"{path}: entry {ident} ({kind}) is not a safety kernel event; is this a "
            "controller journal?"
        ) from None


def read_entries(path: str | Path) -> list[RawEntry]:
    """Every entry of one journal (either process's), oldest first."""
    return [_entry(row) for row in _rows(path)]


def read_safety_journal(path: str | Path) -> list[tuple[RawEntry, Event]]:
    """Every entry of a safety journal with its kernel event, oldest first."""
    return [(_entry(row), _event(path, row)) for row in _rows(path)]


def read_safety_events(path: str | Path) -> list[Event]:
    """Every kernel event of a safety journal, oldest first."""
    return [_event(path, row) for row in _rows(path)]


#: why a program spec may not be loaded under a given library
PROGRAM_PROBLEMS = (RuleRefusal, UnitError, DiluentError, LookupProblem)


def handovers_recorded(
    events: Iterable[Event],
) -> list[tuple[HandoverStarted, float | None, str]]:
    """Every relay handover the journal records, in order: how it began, when it ended
    (clinical s; None: not ended in the journal) and its outcome ("done", "failed",
    "cancelled"; "" while under way). One reading for the handover's judge and its plot."""
    out: list[tuple[HandoverStarted, float | None, str]] = []
    current: HandoverStarted | None = None
    for event in events:
        if isinstance(event, HandoverStarted):
            current = event
        elif isinstance(event, HandoverEnded) and current is not None:
            out.append((current, event.now.clinical, event.outcome))
            current = None
    if current is not None:
        out.append((current, None, ""))
    return out


class ProgramsInForce:
    """The drug programs a journal loaded, in order: what converts a rate to a dose at
    any instant after the fact. Each is rebuilt from its ``ProgramLoaded`` event alone
    (the event carries the limits it was loaded under), so no library is needed and a
    library changed since cannot hide a program. A test fluid carries no drug: it is
    ``None`` in force, as before the first program."""

    def __init__(self, loads: Iterable[tuple[float, ActiveProgram | None]]) -> None:
        """``loads``: (clinical time it was loaded, the program), in journal order."""
        self.times: list[float] = []
        self.programs: list[ActiveProgram | None] = []
        self.problems: list[str] = []
        for t, program in loads:
            self.times.append(t)
            self.programs.append(program)

    @classmethod
    def from_events(cls, events: Iterable[Event], channel: str | None = None) -> ProgramsInForce:
        """The programs ``events`` loaded (on ``channel`` only, when given)."""
        return cls(
            (
                e.now.clinical,
                ActiveProgram(e.spec, e.limits, e.now.clinical)
                if isinstance(e.limits, ProgramLimits)
                else None,
            )
            for e in events
            if isinstance(e, ProgramLoaded) and (channel is None or e.channel == channel)
        )

    @classmethod
    def of_spec(cls, library: DrugLibrary, spec: ProgramSpec) -> ProgramsInForce:
        """One program in force throughout (judging a record without a journal)."""
        try:
            program: ActiveProgram | None = load_program(library, spec, -math.inf)
            problem = None
        except PROGRAM_PROBLEMS as exc:
            program, problem = None, f"program {spec.drug} not in this library ({exc})"
        result = cls([(-math.inf, program)])
        if problem is not None:
            result.problems.append(problem)
        return result

    def at(self, t: float) -> ActiveProgram | None:
        """The program in force at ``t`` (the last one loaded at or before it)."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.programs[i] if i >= 0 else None

    def known(self) -> list[ActiveProgram]:
        """Every drug program, in order."""
        return [p for p in self.programs if p is not None]


__all__ = [
    "PROGRAM_PROBLEMS",
    "JournalReadError",
    "ProgramsInForce",
    "RawEntry",
    "read_entries",
    "read_safety_events",
    "read_safety_journal",
]
