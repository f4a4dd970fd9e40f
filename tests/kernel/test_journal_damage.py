"""A damaged journal: keep what is readable, never delete it, start held with an alarm.

Whatever the journal holds (an entry this version cannot read, a torn or truncated
file, bytes that are not a database at all), the safety core starts, keeps the file
beside the new one, replays what it could read, and refuses changes until the program
is loaded again. The process-level cases (``python -m safety`` exiting cleanly) are in
tests/safety_process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from safety.alarms import Priority
from safety.host.core import open_journal
from safety.journal import Journal
from safety.kernel.model import JournalRecovered, ProgramSpec
from safety.reasons import Reason
from tests.kernel.support import Bench


def _running_bench(make_bench: Callable[..., Bench], std: ProgramSpec) -> Bench:
    bench = make_bench()
    bench.boot()
    assert bench.load(std).verdict.accepted
    assert bench.start(8).verdict.accepted
    bench.advance(120)
    return bench


def _reopen(bench: Bench) -> None:
    """kill -9 and a new process: a fresh connection to the same file."""
    path = bench.journal.path
    bench.journal.close()
    bench.journal = Journal(path, "safety")
    bench.guard.journal = bench.journal


def _damaged_files(bench: Bench) -> list[Path]:
    return sorted(bench.journal.path.parent.glob(bench.journal.path.name + ".damaged-*"))


def _kept_and_held(bench: Bench, entries_before: int) -> JournalRecovered:
    recovered = [e for e in bench.events() if isinstance(e, JournalRecovered)]
    assert len(recovered) == 1
    alarm = bench.core.state.alarms.get("journal_damaged")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert bench.change(10).verdict.reason is Reason.PROGRAM_STALE
    assert bench.truth_rate() == 30.0  # the pump runs on, supervised
    aside = _damaged_files(bench)
    assert aside and aside[0].stat().st_size > 0  # never deleted
    assert recovered[0].entries_kept <= entries_before
    return recovered[0]


def test_an_entry_this_version_cannot_read_ends_the_replay_there(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = _running_bench(make_bench, std)
    before = bench.journal.last_id()
    bench.journal.append("readback", '{"kind": "readback", "reading": "garbage"}', 1.0, 1.0)
    bench.journal.append("readback", "not json at all", 2.0, 2.0)
    _reopen(bench)
    bench.restart()
    recovered = _kept_and_held(bench, before)
    assert recovered.entries_kept == before
    assert f"entry {before + 1}" in recovered.detail
    # the program survives (its limits were journaled): re-program in place, go on
    assert bench.load(std).verdict.accepted
    assert bench.change(10).verdict.accepted


def test_a_truncated_file_keeps_its_readable_part(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = _running_bench(make_bench, std)
    bench.advance(45 * 60, poll_every_s=5)  # enough pages that a cut leaves a readable front
    path = bench.journal.path
    bench.journal.close()
    with sqlite3.connect(path) as db:  # fold the WAL in, so the file alone holds it
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size * 2 // 3)
    bench.journal, damaged = open_journal(path, "safety")  # as python -m safety opens it
    assert damaged is not None and "malformed" in damaged[1]
    bench.guard.journal = bench.journal
    bench.core = bench._new_core()
    bench.core._damaged_journal = damaged
    bench.core.start()
    bench._started()
    bench.attach()
    recovered = [e for e in bench.events() if isinstance(e, JournalRecovered)]
    assert len(recovered) == 1 and recovered[0].entries_kept > 10
    assert recovered[0].damaged_file == str(_damaged_files(bench)[0])
    alarm = bench.core.state.alarms.get("journal_damaged")
    assert alarm is not None and alarm.priority is Priority.HIGH
    # the salvaged front held the program: it is known, and held until re-programmed
    assert bench.core.state.program is not None
    assert bench.change(10).verdict.reason is Reason.PROGRAM_STALE
    assert bench.truth_rate() == 30.0


def test_bytes_that_are_not_a_database_are_set_aside_by_the_process(tmp_path: Path) -> None:
    """The file cannot even be opened as SQLite: the process (safety.host.process) sets it
    aside before it creates a new journal; here, that it is refused as damage."""
    from safety.journal import JournalDamaged, set_aside

    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not a database, " * 200)
    try:
        Journal(path, "safety")
    except JournalDamaged as exc:
        assert "not a database" in str(exc)
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("damage not reported")
    aside = set_aside(path)
    assert not path.exists() and aside.read_bytes().startswith(b"this is not")
    fresh = Journal(path, "safety")
    assert fresh.last_id() == 0
    fresh.close()
