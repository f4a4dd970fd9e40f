"""The telemetry outbox: every event is on disk, numbered, before it is sent.

SQLite (stdlib), WAL. An event (an alarm, a journal line) gets the next sequence number
of its stream in the same transaction that stores it, so numbers are never reused or
skipped, across restarts too. A row leaves the outbox only when the broker has
acknowledged it (MQTT QoS 1 PUBACK): an outage of any length only makes the outbox
longer, and it drains in order (by row id) when the broker is back.

``synchronous``: FULL (default) survives power loss; NORMAL survives a crash of the
publisher but may lose the last rows on power loss (the benchmark's 1,000 simulated
benches use it so that 1,000 fsyncs a second do not measure the disk instead).

A small ``meta`` table keeps the publisher's cursors (the last journal entry and the
alarms already put in), so a restarted publisher neither repeats nor skips.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Row:
    id: int
    topic: str
    payload: bytes


class Outbox:
    def __init__(
        self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS streams (name TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def put(
        self,
        stream: str,
        topic: str,
        build: Callable[[int], dict[str, Any]],
        meta: dict[str, str] | None = None,
    ) -> int:
        """Store ``build(seq)`` (the payload for the stream's next number) and ``meta``
        updates, in one transaction; return the number."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT seq FROM streams WHERE name = ?", (stream,)
                ).fetchone()
                seq = (row[0] if row else 0) + 1
                self._db.execute(
                    "INSERT OR REPLACE INTO streams(name, seq) VALUES (?, ?)", (stream, seq)
                )
                payload = json.dumps(build(seq), separators=(",", ":")).encode()
                self._db.execute(
                    "INSERT INTO outbox(topic, payload) VALUES (?, ?)", (topic, payload)
                )
                for key, value in (meta or {}).items():
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def next_seq(self, stream: str) -> int:
        """A number of ``stream`` for a message that is not stored (the status)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT seq FROM streams WHERE name = ?", (stream,)).fetchone()
            seq = (row[0] if row else 0) + 1
            self._db.execute(
                "INSERT OR REPLACE INTO streams(name, seq) VALUES (?, ?)", (stream, seq)
            )
            self._db.execute("COMMIT")
        return seq

    def pending(self, after_id: int = 0, limit: int = 100) -> list[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Row(i, t, bytes(p)) for i, t, p in rows]

    def ack(self, row_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """A cursor that goes with no event (the retained topics the publisher holds)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def now() -> float:
    """Wall-clock seconds for ``written_at``/``sent_at`` (people and latency figures on
    one machine; never used for a decision)."""
    return time.time()


__all__ = ["Outbox", "Row", "now"]
