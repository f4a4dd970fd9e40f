"""An append-only journal in SQLite, written before anything takes effect (S14).

One journal per process (safety, controller). WAL mode with ``synchronous=FULL``: a
committed entry is on disk when ``append`` returns, so it survives kill -9 and power loss;
a torn last transaction is rolled back by SQLite on the next open, never half-applied.
Both processes use this store; what they write in it is their own business.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class JournalEntry:
    id: int
    wall: float  # time.time(), for people only; never used for decisions
    clinical: float
    liveness: float
    process: str
    kind: str
    payload: str

    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.payload)
        return loaded


class JournalError(Exception):
    """The journal cannot be opened or written; nothing may take effect without it."""


class JournalDamaged(JournalError):
    """The file is not a readable SQLite database (corrupt, truncated, not a database):
    unlike a missing permission or a full disk, setting it aside and starting a new one
    helps (``set_aside``)."""


#: SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGE_CODES = frozenset({11, 26})


def _is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _DAMAGE_CODES


def _error(path: Path, what: str, exc: sqlite3.Error) -> JournalError:
    kind = JournalDamaged if _is_damage(exc) else JournalError
    return kind(f"journal {path}: {what}{exc}")


class Journal:
    def __init__(self, path: str | Path, process: str, *, cache_kib: int | None = None) -> None:
        """``cache_kib`` bounds SQLite's page cache (default: SQLite's 2000 KiB). Appends
        touch only the last pages and a replay reads once in order, so a small cache
        costs no speed; the safety process keeps its memory low with it."""
        self.path = Path(path)
        self.process = process
        self.cache_kib = cache_kib
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if cache_kib is not None:
                self._db.execute(f"PRAGMA cache_size=-{max(64, int(cache_kib))}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " wall REAL NOT NULL, clinical REAL NOT NULL, liveness REAL NOT NULL,"
                " process TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        except sqlite3.Error as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise _error(self.path, "", exc) from None

    def append(self, kind: str, payload: str, clinical: float, liveness: float) -> int:
        return self.append_many([(kind, payload, clinical, liveness)])[-1]

    def append_many(self, rows: Sequence[tuple[str, str, float, float]]) -> list[int]:
        """Write entries in one durable transaction; return their ids."""
        wall = time.time()
        ids: list[int] = []
        # one row is its own transaction (autocommit: durable when the statement ends, the
        # same one fsync), without the two statements around it that a batch needs
        batch = len(rows) > 1
        with self._lock:
            try:
                if batch:
                    self._db.execute("BEGIN IMMEDIATE")
                for kind, payload, clinical, liveness in rows:
                    cur = self._db.execute(
                        "INSERT INTO entries(wall, clinical, liveness, process, kind, payload)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (wall, clinical, liveness, self.process, kind, payload),
                    )
                    ids.append(int(cur.lastrowid or 0))
                if batch:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise _error(self.path, "write failed: ", exc) from None
        return ids

    def append_entries(self, entries: Sequence[JournalEntry]) -> None:
        """Copy entries from another journal as they were (their times and process), in one
        transaction: what a damaged journal's readable part becomes (``set_aside``)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO entries(wall, clinical, liveness, process, kind, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (e.wall, e.clinical, e.liveness, e.process, e.kind, e.payload)
                        for e in entries
                    ],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise _error(self.path, "copy failed: ", exc) from None

    def read_all(self) -> tuple[list[JournalEntry], str | None]:
        """Every entry in order, as far as the file can be read: a damaged page ends the
        read (with why) instead of losing what came before it."""
        out: list[JournalEntry] = []
        with self._lock:
            try:
                cursor = self._db.execute(
                    "SELECT id, wall, clinical, liveness, process, kind, payload FROM entries"
                    " ORDER BY id"
                )
                while rows := cursor.fetchmany(512):
                    out.extend(JournalEntry(*row) for row in rows)
            except sqlite3.Error as exc:
                if not _is_damage(exc):
                    raise _error(self.path, "read failed: ", exc) from None
                return out, f"unreadable after entry {out[-1].id if out else 0}: {exc}"
        return out, None

    def entries(
        self, since_id: int = 0, kinds: Sequence[str] | None = None
    ) -> Iterator[JournalEntry]:
        query = (
            "SELECT id, wall, clinical, liveness, process, kind, payload FROM entries WHERE id > ?"
        )
        params: list[object] = [since_id]
        if kinds:
            query += f" AND kind IN ({','.join('?' * len(kinds))})"
            params += list(kinds)
        query += " ORDER BY id"
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        for row in rows:
            yield JournalEntry(*row)

    def last_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()
        return int(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def salvage(path: str | Path) -> tuple[list[JournalEntry], str | None]:
    """Every entry a damaged file still gives, in order, and why the read stopped (None:
    it did not). The file itself is never written (it is about to be set aside as it is).

    A file cut short (a torn write, a full disk) still names its old length in its
    header, and SQLite then refuses it whole; a copy whose header says "compute the
    length from the file" gives back every row before the first lost page.
    """
    path = Path(path)
    best, why = _read_rows(path)
    if why is None:
        return best, None
    # imported here, on this rare path: tempfile brings shutil and with it zlib, bz2 and
    # lzma (about 0.5 MB resident), which a safety process has no other use for
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "salvage.sqlite"
        try:
            _copy_without_length(path, copy)
        except (OSError, ValueError):
            return best, why
        rows, why_copy = _read_rows(copy)
    if len(rows) > len(best):
        return rows, why_copy
    return best, why


def _read_rows(path: Path) -> tuple[list[JournalEntry], str | None]:
    out: list[JournalEntry] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return out, str(exc)
    try:
        cursor = db.execute(
            "SELECT id, wall, clinical, liveness, process, kind, payload FROM entries ORDER BY id"
        )
        while rows := cursor.fetchmany(64):
            out.extend(JournalEntry(*row) for row in rows)
    except sqlite3.Error as exc:
        return out, str(exc)
    finally:
        db.close()
    return out, None


def _copy_without_length(source: Path, target: Path) -> None:
    """A copy cut to whole pages whose header length is marked stale (SQLite file format:
    page size at byte 16, change counter at 24, 'version valid for' at 92)."""
    data = bytearray(source.read_bytes())
    if len(data) < 100 or not data.startswith(b"SQLite format 3\x00"):
        raise ValueError("not an SQLite file")
    page = int.from_bytes(data[16:18], "big")
    page = 65536 if page == 1 else page
    del data[len(data) // page * page :]
    counter = int.from_bytes(data[24:28], "big")
    data[92:96] = ((counter + 1) & 0xFFFFFFFF).to_bytes(4, "big")
    target.write_bytes(bytes(data))


def set_aside(path: str | Path) -> Path:
    """Rename a damaged journal (and its WAL and shared-memory files) out of the way,
    never deleting anything: ``<name>.damaged-<UTC time>``; returns the new name."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    if path.exists():
        path.rename(target)
    return target


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """For readers (journal show/export) that must never write or lock a live journal."""
    return sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
