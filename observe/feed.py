"""One bench's safety process, watched: an ``ObserverClient`` kept connected.

``BenchFeed`` runs one thread. It connects as an observer (the observer key), keeps the
latest snapshot and the journal's tail, and when the link goes (the safety process
stopped, restarts, or stops answering) it marks the data stale and tries again with
growing pauses (``BACKOFF_S``: 0.2 s, doubling, at most 5 s), so a view recovers by
itself within seconds of the safety process coming back, without hammering a socket
that is not there.

Listeners (``add_listener``) are called on the feed's threads after every change; they
must be quick (the dashboard only wakes its event loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from safety.ipc.auth import KeyFileError, load_key
from safety.ipc.link import AlarmRaised, LinkDown, LinkRestored, SafetyLinkError, StatusChanged
from safety.ipc.observer import JournalLines, ObserverClient, ObserverNotice
from safety.journal_text import JournalLine
from safety.status import Snapshot

log = logging.getLogger("observe.feed")

#: pauses between reconnection attempts: the first, the factor, the longest
BACKOFF_S = (0.2, 2.0, 5.0)
#: journal lines a feed keeps
JOURNAL_KEEP = 200


@dataclass
class FeedState:
    """What a view shows. ``live`` False: the data is stale since ``stale_since``."""

    snapshot: Snapshot | None = None
    journal: deque[JournalLine] = field(default_factory=lambda: deque(maxlen=JOURNAL_KEEP))
    live: bool = False
    problem: str = "not connected yet"
    stale_since: float | None = None  # time.time()
    updated_at: float = 0.0  # time.time() of the last change
    version: int = 0
    connects: int = 0


class BenchFeed:
    def __init__(
        self,
        socket_path: str,
        *,
        key_file: str | None = None,
        key: bytes | None = None,
        name: str = "pumpctl-observer",
    ) -> None:
        self.socket_path = socket_path
        self._key_file = key_file
        self._key = key
        self.name = name
        self.state = FeedState(stale_since=time.time())
        self._lock = threading.Lock()
        self._listeners: list[Callable[[FeedState], None]] = []
        self._stop = threading.Event()
        self._client: ObserverClient | None = None
        self._gone = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-feed", daemon=True)

    # ------------------------------------------------------------------ use
    def add_listener(self, listener: Callable[[FeedState], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> BenchFeed:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._gone.set()
        client = self._client
        if client is not None:
            client.close()
        self._thread.join(timeout=5.0)

    def read(self) -> FeedState:
        """A consistent copy of the state."""
        with self._lock:
            s = self.state
            return FeedState(
                s.snapshot,
                deque(s.journal, maxlen=JOURNAL_KEEP),
                s.live,
                s.problem,
                s.stale_since,
                s.updated_at,
                s.version,
                s.connects,
            )

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        pause = BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                key = self._key if self._key is not None else load_key(self._key_file or "")
                client = ObserverClient(self.socket_path, key=key, name=self.name)
            except (SafetyLinkError, KeyFileError, OSError) as exc:
                self._stale(str(exc))
                self._stop.wait(pause)
                pause = min(pause * BACKOFF_S[1], BACKOFF_S[2])
                continue
            pause = BACKOFF_S[0]
            self._gone.clear()
            self._client = client
            with self._lock:
                self.state.connects += 1
                self.state.journal.clear()  # the subscription sends the tail again
            self._update(snapshot=client.snapshot, live=True, problem="")
            client.start(self._notice)
            self._gone.wait()
            client.close()
            self._client = None

    def _notice(self, notice: ObserverNotice) -> None:
        if isinstance(notice, StatusChanged):
            self._update(snapshot=notice.snapshot)
        elif isinstance(notice, JournalLines):
            with self._lock:
                last = self.state.journal[-1].id if self.state.journal else 0
                self.state.journal.extend(line for line in notice.lines if line.id > last)
            self._update()
        elif isinstance(notice, AlarmRaised):
            self._update()  # the status notice right after it carries the alarm
        elif isinstance(notice, LinkRestored):
            self._update(live=True, problem="")
        elif isinstance(notice, LinkDown):
            self._stale(notice.reason)
            if notice.final:
                self._gone.set()

    def _stale(self, problem: str) -> None:
        with self._lock:
            if self.state.live or self.state.stale_since is None:
                self.state.stale_since = time.time()
        self._update(live=False, problem=problem)

    def _update(
        self,
        *,
        snapshot: Snapshot | None = None,
        live: bool | None = None,
        problem: str | None = None,
    ) -> None:
        with self._lock:
            s = self.state
            if snapshot is not None:
                s.snapshot = snapshot
            if live is not None:
                if live:
                    s.stale_since = None
                s.live = live
            if problem is not None:
                s.problem = problem
            s.updated_at = time.time()
            s.version += 1
            state = s
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("a feed listener failed")


__all__ = ["BACKOFF_S", "BenchFeed", "FeedState"]
