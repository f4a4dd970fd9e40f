"""Snapshots on one connection: the rate history sent as a change, not in full.

A snapshot carries the verified rate history (up to 26 h of segments: 1000 points is
88 kB of JSON), and every reply to a request and every status notice carries a snapshot.
Sent in full each time, the history alone cost the controller more to decode than the
whole command took at the safety process. Between two snapshots on one connection the
history changes little: a rate change appends a point, the 26 h horizon drops the oldest.

So a client that asks for it (``Hello.history_delta``, granted in ``Welcome``) receives
``Reply`` and ``StatusNotice`` with the snapshot's ``history`` empty on the wire and a
``history_delta`` beside it: drop ``drop`` points from the front of the history of the
previous snapshot on this connection, append ``append``; ``length``, ``first`` and
``last`` check the result. ``Attached``, ``SnapshotReply`` and ``Subscribed`` always
carry the history in full, and so does the first snapshot on a connection: each sets the
base again on both sides. A client that cannot reconstruct (its base lost, the check
fails: a bug on one side) never guesses: it asks for a full snapshot (``GetSnapshot``).
What the controller's code receives is always a full ``Snapshot``: the delta exists only
between ``SnapshotSender.encode`` and ``SnapshotReceiver.receive``.

Both ends keep their state per connection, and the socket delivers in order, so the two
always agree on the base. ``SafetyServer`` and ``LocalSafety`` both send through a
``SnapshotSender``, ``SafetyClient`` and ``LocalSafety`` receive through a
``SnapshotReceiver``: the in-process link exercises the same reconstruction.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import operator
from dataclasses import replace

from safety.ipc.framing import MAX_SERVER_BYTES, encode
from safety.ipc.messages import (
    Attached,
    HistoryDelta,
    Reply,
    ServerMessage,
    SnapshotReply,
    StatusNotice,
    Subscribed,
)
from safety.status import HistoryPoint, Snapshot

log = logging.getLogger("safety.ipc")

History = tuple[HistoryPoint, ...]
_START = operator.attrgetter("start")


class HistoryOutOfStep(Exception):
    """A delta that does not fit the history this end holds. ``message`` is the message
    as received (its snapshot's history empty): everything but the history is good."""

    def __init__(self, message: ServerMessage, why: str) -> None:
        super().__init__(why)
        self.message = message
        self.why = why


def snapshot_of(message: ServerMessage) -> Snapshot | None:
    """The snapshot a message carries, if any."""
    if isinstance(message, Reply):
        return message.outcome.snapshot
    if isinstance(message, Attached | SnapshotReply | Subscribed | StatusNotice):
        return message.snapshot
    return None


def with_snapshot(
    message: ServerMessage, snapshot: Snapshot, delta: HistoryDelta | None
) -> ServerMessage:
    """The same message carrying ``snapshot`` (and ``delta``), not validated again: both
    were validated (received) or built by this process (sent)."""
    if isinstance(message, Reply):
        outcome = replace(message.outcome, snapshot=snapshot)
        return message.model_copy(update={"outcome": outcome, "history_delta": delta})
    if isinstance(message, StatusNotice):
        return message.model_copy(update={"snapshot": snapshot, "history_delta": delta})
    assert delta is None, f"{message.type!r} always carries its history in full"
    return message.model_copy(update={"snapshot": snapshot})


_COMPARED = tuple(f.name for f in dataclasses.fields(Snapshot) if f.name != "clinical_time")


def differs(a: Snapshot, b: Snapshot) -> bool:
    """Changed beyond the clinical clock's passing (which alone is no news)."""
    return a is not b and any(getattr(a, name) != getattr(b, name) for name in _COMPARED)


class SnapshotSender:
    """The safety process's end of one connection."""

    def __init__(self) -> None:
        #: the peer asked for deltas (``Hello.history_delta``)
        self.delta = False
        self._history: History | None = None  # the history the peer holds, once sent

    def encode(self, message: ServerMessage, max_bytes: int = MAX_SERVER_BYTES) -> bytes:
        """The line to send (``FrameError`` if too long: then nothing is remembered)."""
        snapshot = snapshot_of(message)
        if snapshot is None:
            return encode(message, max_bytes)
        history = snapshot.history
        base = self._history
        if self.delta and base is not None and isinstance(message, Reply | StatusNotice):
            wire = with_snapshot(
                message, replace(snapshot, history=()), delta_between(base, history)
            )
            data = encode(wire, max_bytes)
        else:
            data = encode(message, max_bytes)
        self._history = history
        return data


class SnapshotReceiver:
    """A client's end of one connection: full snapshots out, whatever came in."""

    def __init__(self) -> None:
        self._history: History | None = None  # None: unknown (nothing yet, or out of step)

    @property
    def in_step(self) -> bool:
        return self._history is not None

    def forget(self) -> None:
        """Lose the base (tests; a client that knows it missed something)."""
        self._history = None

    def receive(self, message: ServerMessage) -> ServerMessage:
        """``message`` with its snapshot's full history; ``HistoryOutOfStep`` if its
        delta does not fit (the base is then unknown until a full history arrives)."""
        snapshot = snapshot_of(message)
        if snapshot is None:
            return message
        delta = message.history_delta if isinstance(message, Reply | StatusNotice) else None
        if delta is None:
            self._history = snapshot.history
            return message
        base = self._history
        if base is None:
            raise HistoryOutOfStep(message, "no history to apply a delta to")
        if snapshot.history:
            self._history = None
            raise HistoryOutOfStep(message, "a history delta beside a non-empty history")
        history = apply_delta(base, delta)
        if history is None:
            self._history = None
            raise HistoryOutOfStep(
                message,
                f"the history delta (drop {delta.drop}, append {len(delta.append)}, length "
                f"{delta.length}) does not fit the {len(base)} points held",
            )
        self._history = history
        return with_snapshot(message, replace(snapshot, history=history), None)


def delta_between(base: History, history: History) -> HistoryDelta:
    """The change from ``base`` to ``history``: the fewest points dropped from the front
    such that what is left of ``base`` starts ``history``; the rest of it appended."""
    drop = _overlap(base, history)
    kept = len(base) - drop
    return HistoryDelta(
        drop=drop,
        append=history[kept:],
        length=len(history),
        first=history[0] if history else None,
        last=history[-1] if history else None,
    )


def apply_delta(base: History, delta: HistoryDelta) -> History | None:
    """``base`` changed by ``delta``; None if the result fails the delta's check."""
    if delta.drop > len(base):
        return None
    history = base[delta.drop :] + delta.append
    if len(history) != delta.length:
        return None
    if history:
        if history[0] != delta.first or history[-1] != delta.last:
            return None
    elif delta.first is not None or delta.last is not None:
        return None
    return history


def _overlap(base: History, history: History) -> int:
    """Points to drop from ``base``'s front so that the rest is a prefix of ``history``.

    Histories are in time order, so the first point of ``history`` is looked for by its
    start (bisection, then every point with that start); each candidate is checked by
    comparing whole runs (C speed, and the same objects compare at once). None fits:
    drop everything, and the delta carries the whole history.
    """
    if history is base:
        return 0
    if not history:
        return len(base)
    head = history[0]
    k = bisect.bisect_left(base, head.start, key=_START)
    while k < len(base) and base[k].start == head.start:
        kept = len(base) - k
        if kept <= len(history) and base[k:] == history[:kept]:
            return k
        k += 1
    return len(base)


__all__ = [
    "HistoryOutOfStep",
    "SnapshotReceiver",
    "SnapshotSender",
    "apply_delta",
    "delta_between",
    "differs",
    "snapshot_of",
    "with_snapshot",
]
