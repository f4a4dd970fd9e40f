"""The safety journal's bounded page cache: a memory setting, never a durability one."""

from __future__ import annotations

from pathlib import Path

from safety.host.process import JOURNAL_CACHE_KIB
from safety.journal import Journal


def test_the_cache_bound_is_set_and_wal_full_sync_stay(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", "safety", cache_kib=JOURNAL_CACHE_KIB)
    try:
        db = journal._db
        assert db.execute("PRAGMA cache_size").fetchone() == (-JOURNAL_CACHE_KIB,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        # more pages than the cache holds (one transaction: one flush, a quick test)
        ids = journal.append_many([("probe", "x" * 200, float(i), 0.0) for i in range(3000)])
        ids.append(journal.append("probe", "{}", 3000.0, 0.0))
    finally:
        journal.close()
    again = Journal(tmp_path / "j.sqlite", "safety")
    try:
        assert [e.id for e in again.entries()] == ids  # every entry, in order, after reopening
    finally:
        again.close()


def test_without_a_bound_sqlite_keeps_its_default(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", "controller")
    try:
        assert journal._db.execute("PRAGMA cache_size").fetchone() == (-2000,)
    finally:
        journal.close()
