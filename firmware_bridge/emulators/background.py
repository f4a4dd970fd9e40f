"""A serial emulator run by a background thread, for tests and one-process benches.

The command line (``cli``) serves a pump in its own process; tests that want the driver
and the pump in one process (so they can drive the pump's ``VirtualClock`` and inject
faults directly) use this instead. Leaving the ``with`` block stops the thread and closes
the pty, whatever happened inside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from firmware_bridge.emulators.endpoints import Endpoint, PtyEndpoint
from firmware_bridge.emulators.handler import WireHandler
from firmware_bridge.emulators.serial_line import SerialLine
from firmware_bridge.faults import WireFaults

JOIN_TIMEOUT_S = 5.0


class BackgroundLine:
    """``SerialLine`` over ``endpoint`` (a new pty by default) served by a daemon thread."""

    def __init__(
        self,
        handler: WireHandler,
        wire: WireFaults,
        *,
        endpoint: Endpoint | None = None,
        log: Callable[[str], None] | None = None,
        reopen_after_s: float | None = 0.2,
    ) -> None:
        self.endpoint: Endpoint = endpoint or PtyEndpoint()
        self.lines: list[str] = []
        self.line = SerialLine(
            handler,
            self.endpoint,
            wire,
            log=log or self.lines.append,
            reopen_after_s=reopen_after_s,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        """The path (or host:port) a driver opens."""
        return self.endpoint.name

    def start(self) -> None:
        self.endpoint.open()
        self._thread = threading.Thread(
            target=self.line.serve, args=(self._stop,), daemon=True, name="serial-emulator"
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                raise RuntimeError("serial emulator thread did not stop within 5 s")
        self.endpoint.shutdown()

    def __enter__(self) -> BackgroundLine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
