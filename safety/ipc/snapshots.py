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
``last`` check the result. A bench of several drugs carries each other drug's history in
its drug view (``Snapshot.drugs``), up to 26 h each too: each travels the same way, its
view's ``history`` empty and its delta under the drug's name in ``drug_history_deltas``,
once the connection's previous snapshot had that drug (a drug new to the connection
comes in full). ``Attached``, ``SnapshotReply`` and ``Subscribed`` always
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
    message: ServerMessage,
    snapshot: Snapshot,
    delta: HistoryDelta | None,
    drug_deltas: dict[str, HistoryDelta] | None = None,
) -> ServerMessage:
    """The same message carrying ``snapshot`` (and the deltas), not validated again: all
    were validated (received) or built by this process (sent)."""
    if isinstance(message, Reply):
        outcome = replace(message.outcome, snapshot=snapshot)
        return message.model_copy(
            update={"outcome": outcome, "history_delta": delta, "drug_history_deltas": drug_deltas}
        )
    if isinstance(message, StatusNotice):
        return message.model_copy(
            update={
                "snapshot": snapshot,
                "history_delta": delta,
                "drug_history_deltas": drug_deltas,
            }
        )
    assert delta is None and not drug_deltas, f"{message.type!r} always carries its history in full"
    return message.model_copy(update={"snapshot": snapshot})


#: where a history sits in a snapshot: ``None`` the top level (the first channel's drug),
#: a drug's name its drug view
Slot = str | None


def histories_of(snapshot: Snapshot) -> dict[Slot, History]:
    """Every history a snapshot carries, by where it sits."""
    out: dict[Slot, History] = {None: snapshot.history}
    for view in snapshot.drugs:
        out[view.drug] = view.history
    return out


def with_histories(snapshot: Snapshot, histories: dict[Slot, History]) -> Snapshot:
    """``snapshot`` with the histories of the slots named (the others as they are)."""
    drugs = tuple(
        replace(view, history=histories[view.drug]) if view.drug in histories else view
        for view in snapshot.drugs
    )
    return replace(snapshot, history=histories.get(None, snapshot.history), drugs=drugs)


_COMPARED = tuple(f.name for f in dataclasses.fields(Snapshot) if f.name != "clinical_time")


def differs(a: Snapshot, b: Snapshot) -> bool:
    """Changed beyond the clinical clock's passing (which alone is no news)."""
    return a is not b and any(getattr(a, name) != getattr(b, name) for name in _COMPARED)


class SnapshotSender:
    """The safety process's end of one connection."""

    def __init__(self) -> None:
        #: the peer asked for deltas (``Hello.history_delta``)
        self.delta = False
        #: the histories the peer holds, once a snapshot was sent
        self._histories: dict[Slot, History] | None = None
        #: the last snapshot sent (in any message: a reply's outcome, a status notice)
        self._last: Snapshot | None = None

    def holds(self, snapshot: Snapshot) -> bool:
        """The peer was last sent this state: a status notice of it would tell it nothing
        (the push right after a request's reply shows the state the reply did)."""
        return self._last is not None and not differs(snapshot, self._last)

    def encode(self, message: ServerMessage, max_bytes: int = MAX_SERVER_BYTES) -> bytes:
        """The line to send (``FrameError`` if too long: then nothing is remembered)."""
        snapshot = snapshot_of(message)
        if snapshot is None:
            return encode(message, max_bytes)
        histories = histories_of(snapshot)
        base = self._histories
        if self.delta and base is not None and isinstance(message, Reply | StatusNotice):
            # the top level always as a delta; a drug's when the peer holds its history
            # (and there is something to say: both empty needs no delta)
            top = delta_between(base[None], histories[None])
            deltas = {
                view.drug: delta_between(base[view.drug], view.history)
                for view in snapshot.drugs
                if view.drug in base and (view.history or base[view.drug])
            }
            emptied = with_histories(snapshot, {None: (), **dict.fromkeys(deltas, ())})
            data = encode(with_snapshot(message, emptied, top, deltas or None), max_bytes)
        else:
            data = encode(message, max_bytes)
        self._histories = histories
        self._last = snapshot
        return data


class SnapshotReceiver:
    """A client's end of one connection: full snapshots out, whatever came in."""

    def __init__(self) -> None:
        #: the histories of the last snapshot; None: unknown (nothing yet, or out of step)
        self._histories: dict[Slot, History] | None = None

    @property
    def in_step(self) -> bool:
        return self._histories is not None

    def forget(self) -> None:
        """Lose the base (tests; a client that knows it missed something)."""
        self._histories = None

    def receive(self, message: ServerMessage) -> ServerMessage:
        """``message`` with its snapshot's full histories; ``HistoryOutOfStep`` if a
        delta does not fit (the base is then unknown until full histories arrive)."""
        snapshot = snapshot_of(message)
        if snapshot is None:
            return message
        top, drug_deltas = None, None
        if isinstance(message, Reply | StatusNotice):
            top, drug_deltas = message.history_delta, message.drug_history_deltas
        histories = histories_of(snapshot)
        if top is None and not drug_deltas:
            self._histories = histories
            return message
        try:
            rebuilt = self._rebuilt(histories, top, drug_deltas or {})
        except _OutOfStep as exc:
            self._histories = None
            raise HistoryOutOfStep(message, str(exc)) from None
        self._histories = {**histories, **rebuilt}
        return with_snapshot(message, with_histories(snapshot, rebuilt), None)

    def _rebuilt(
        self,
        histories: dict[Slot, History],
        top: HistoryDelta | None,
        drug_deltas: dict[str, HistoryDelta],
    ) -> dict[Slot, History]:
        """The histories that came as deltas, applied to this end's base (the others
        came in full: they are as received)."""
        base = self._histories
        if base is None:
            raise _OutOfStep("no history to apply a delta to")
        strays = sorted(set(drug_deltas) - set(histories))
        if strays:
            raise _OutOfStep(f"a history delta for {', '.join(strays)}, not in the snapshot")
        rebuilt: dict[Slot, History] = {}
        for slot, history in histories.items():
            delta = top if slot is None else drug_deltas.get(slot)
            if delta is None:
                continue  # came in full
            name = "the history" if slot is None else f"the history of {slot}"
            held = base.get(slot)
            if held is None:
                raise _OutOfStep(f"no base for {name} delta")
            if history:
                raise _OutOfStep(f"{name} delta beside a non-empty history")
            applied = apply_delta(held, delta)
            if applied is None:
                raise _OutOfStep(
                    f"{name} delta (drop {delta.drop}, append {len(delta.append)}, length "
                    f"{delta.length}) does not fit the {len(held)} points held"
                )
            rebuilt[slot] = applied
        return rebuilt


class _OutOfStep(Exception):
    """Why a message's deltas do not fit (``SnapshotReceiver._rebuilt``)."""


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
