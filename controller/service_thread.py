"""The service thread: ``Session.service`` on a thread, for real-time benches.

A script on a virtual clock (``LocalSafety``) calls ``service()`` itself between
``advance`` calls; a bench on a real or scaled clock lets this thread do it, so planned
steps go out when they fall due while the operator types.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Protocol

from controller.errors import ControllerError

log = logging.getLogger("controller.service_thread")


class Serviced(Protocol):
    """What the thread needs of a session (``controller.session.Session``)."""

    def service(self) -> float | None: ...

    def real_seconds(self, clinical_s: float) -> float: ...

    def raise_fault(self, message: str) -> None: ...


class ServiceThread:
    """Calls ``Session.service`` on a background thread (real-time benches).

    Waits at most ``period_s`` real seconds between calls, less when a step falls due or
    a notice arrives. An unexpected error is logged and raised as a controller alarm; the
    thread keeps going (a dead thread would silently stop a plan, which holds the dose:
    safe, but the operator must know)."""

    def __init__(self, session: Serviced, period_s: float = 0.25) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self._session = session
        self._period = period_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controller-service", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self._period
            try:
                due = self._session.service()
                if due is not None:
                    wait = min(wait, self._session.real_seconds(due))
            except ControllerError as exc:
                log.warning("service thread: %s", exc.message)
            except Exception as exc:
                log.exception("service thread: unexpected error")
                with contextlib.suppress(Exception):
                    self._session.raise_fault(f"service thread: {exc!r}")
                wait = max(wait, 1.0)
            self._wake.wait(max(0.001, wait))
            self._wake.clear()
