"""The journal's last word on time (``Replayed.mark``), read from a replayed journal: the
newest clinical time, the liveness of the last entry, the wall clock carried on from the
newest ``TimelineResumed`` by the monotonic clock (the journal's own wall column is for
people), and that resumption's boot, source, offset and synchronisation; and what a
journal without one leaves (nothing to continue from but its own times).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.journal import Journal
from safety.kernel.codec import encode_event
from safety.kernel.config import KernelConfig
from safety.kernel.model import AlarmsAcknowledged, Event, Now, TimelineResumed
from safety.kernel.replay import replay_journal
from safety.kernel.timeline import TimelineMark


def _journal(tmp_path: Path, events: list[Event]) -> Journal:
    journal = Journal(tmp_path / "j.sqlite", "safety")
    journal.append_many([(e.kind, encode_event(e), e.now.clinical, e.now.liveness) for e in events])
    return journal


def _resumed(now: Now, *, boot: str, source: str, offset: float, wall: float) -> TimelineResumed:
    return TimelineResumed(
        previous_clinical=None,
        credited_s=0.0,
        offset=offset,
        basis="test",
        conservative=False,
        discontinuity=False,
        boot_id=boot,
        source=source,
        wall=wall,
        wall_synced=True,
        now=now,
    )


def test_the_mark_carries_the_newest_resumption_on_by_the_monotonic_clock(
    tmp_path: Path,
) -> None:
    events: list[Event] = [
        _resumed(Now(0.0, 100.0), boot="boot-1", source="real", offset=-100.0, wall=5000.0),
        AlarmsAcknowledged(None, Now(50.0, 150.0)),
        _resumed(Now(60.0, 10.0), boot="boot-2", source="scaled:10", offset=40.0, wall=9000.0),
        AlarmsAcknowledged(None, Now(90.0, 13.0)),
        AlarmsAcknowledged(None, Now(80.0, 17.0)),  # clinical never runs back: max is kept
    ]
    journal = _journal(tmp_path, events)
    try:
        replayed = replay_journal(KernelConfig(), journal)
        assert replayed.damage is None and len(replayed.good) == 5
        assert replayed.mark() == TimelineMark(
            clinical=90.0,
            liveness=17.0,
            wall=9000.0 + (17.0 - 10.0),
            boot_id="boot-2",
            source="scaled:10",
            offset=40.0,
            wall_synced=True,
        )
    finally:
        journal.close()


def test_a_journal_without_a_resumption_marks_its_own_last_entry(tmp_path: Path) -> None:
    events: list[Event] = [
        AlarmsAcknowledged(None, Now(5.0, 7.0)),
        AlarmsAcknowledged(None, Now(6.0, 8.0)),
    ]
    journal = _journal(tmp_path, events)
    try:
        replayed = replay_journal(KernelConfig(), journal)
        mark = replayed.mark()
        assert mark is not None
        assert (mark.clinical, mark.liveness) == (6.0, 8.0)
        assert mark.wall == replayed.good[-1].wall
        assert (mark.boot_id, mark.source, mark.offset, mark.wall_synced) == (None, "", 0.0, None)
    finally:
        journal.close()


def test_an_empty_journal_has_no_mark(tmp_path: Path) -> None:
    journal = _journal(tmp_path, [])
    try:
        assert replay_journal(KernelConfig(), journal).mark() is None
    finally:
        journal.close()


def test_an_entry_this_version_cannot_read_names_where_and_why(tmp_path: Path) -> None:
    journal = _journal(tmp_path, [AlarmsAcknowledged(None, Now(1.0, 1.0))])
    try:
        journal.append_many([("alarms_acknowledged", '{"kind": "alarms_acknowledged"}', 2.0, 2.0)])
        replayed = replay_journal(KernelConfig(), journal)
        assert len(replayed.good) == 1
        assert replayed.damage == (
            "entry 2 (alarms_acknowledged) cannot be read by this version: "
            "alarms_acknowledged.keys: Field required"
        )
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("[]", "Input should be an object"),
        ("{}", "Unable to extract tag using discriminator 'kind'"),
    ],
)
def test_a_payload_that_is_no_event_at_all_is_named_as_the_payload(
    tmp_path: Path, payload: str, why: str
) -> None:
    journal = _journal(tmp_path, [])
    try:
        journal.append_many([("x", payload, 1.0, 1.0)])
        damage = replay_journal(KernelConfig(), journal).damage
        assert damage == f"entry 1 (x) cannot be read by this version: payload: {why}"
    finally:
        journal.close()
