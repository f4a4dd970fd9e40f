"""Rebuild the kernel's state from a journal after a restart (S14)."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from safety.journal import Journal
from safety.kernel.codec import decode_event
from safety.kernel.config import KernelConfig
from safety.kernel.reducer import apply
from safety.kernel.state import KernelState
from safety.library import DrugLibrary

log = logging.getLogger("safety")


class ReplayError(Exception):
    """The journal holds an entry this library or code cannot replay."""


def replay_journal(library: DrugLibrary, config: KernelConfig, journal: Journal) -> KernelState:
    state = KernelState()
    for entry in journal.entries():
        try:
            event = decode_event(entry.payload)
        except ValidationError as exc:
            raise ReplayError(
                f"journal entry {entry.id} ({entry.kind}) is not valid: {exc}"
            ) from exc
        state = apply(library, config, state, event)
    return state
