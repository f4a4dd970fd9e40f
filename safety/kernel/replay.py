"""Rebuild the kernel's state from a journal after a restart (S14, S16).

A replay needs no library (every program carries its limits) and never raises on what
the journal holds: it folds every entry it can read and decode, and stops at the first
one it cannot, saying which and why. The host then keeps that readable part and sets
the rest aside (``safety.journal.set_aside``), never deleting it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from safety.journal import Journal, JournalEntry
from safety.kernel.codec import decode_event
from safety.kernel.config import KernelConfig
from safety.kernel.model import TimelineResumed
from safety.kernel.reducer import apply
from safety.kernel.state import KernelState
from safety.kernel.timeline import TimelineMark

log = logging.getLogger("safety")


@dataclass(frozen=True)
class Replayed:
    state: KernelState
    #: the entries folded into ``state``, in order
    good: list[JournalEntry]
    #: why the journal could not be read whole (None: it was)
    damage: str | None
    #: the newest ``TimelineResumed``, for where the timeline continues
    timeline: TimelineResumed | None

    def mark(self) -> TimelineMark | None:
        """The journal's last word on time (None for a journal with no entry)."""
        if not self.good:
            return None
        last = self.good[-1]
        timeline = self.timeline
        # the wall clock as the process last knew it: the one read when the timeline last
        # resumed, carried on by the monotonic clock (the journal's own wall column is
        # for people, never for decisions)
        wall = last.wall
        if timeline is not None:
            wall = timeline.wall + (last.liveness - timeline.now.liveness)
        return TimelineMark(
            clinical=max(e.clinical for e in self.good),
            liveness=last.liveness,
            wall=wall,
            boot_id=timeline.boot_id if timeline is not None else None,
            source=timeline.source if timeline is not None else "",
            offset=timeline.offset if timeline is not None else 0.0,
            wall_synced=timeline.wall_synced if timeline is not None else None,
        )


def replay_journal(config: KernelConfig, journal: Journal) -> Replayed:
    entries, damage = journal.read_all()
    state = KernelState()
    timeline: TimelineResumed | None = None
    good: list[JournalEntry] = []
    for entry in entries:
        try:
            event = decode_event(entry.payload)
        except ValidationError as exc:
            errors = exc.errors()
            where, why = "payload", str(exc)
            if errors:
                where = ".".join(str(part) for part in errors[0]["loc"]) or where
                why = errors[0]["msg"]
            damage = (
                f"entry {entry.id} ({entry.kind}) cannot be read by this version: {where}: {why}"
            )
            break
        try:
            state = apply(config, state, event)
        except Exception as exc:  # the reducer is total; a bug must not lose the journal
            log.exception("replaying journal entry %d", entry.id)
            damage = f"entry {entry.id} ({entry.kind}) could not be replayed: {exc!r}"
            break
        if isinstance(event, TimelineResumed):
            timeline = event
        good.append(entry)
    return Replayed(state, good, damage, timeline)
