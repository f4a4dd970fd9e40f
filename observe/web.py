"""What the two pages (dashboard, fleet) share: a change signal from a worker thread to
the event loop, and the server-sent-events stream that always sends the latest state.

``Changes``: worker threads call ``notify()``; coroutines ``wait(timeout)``. Each client
of ``sse_response`` sends the current state when its version moved, else a ``ping``
event every ``keepalive_s`` (an event, not a comment, so the page's EventSource sees
the server is alive). A slow client skips states; it never makes a queue grow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse


class Changes:
    def __init__(self, min_interval_s: float = 0.0) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        #: at most one wake-up per this many seconds (a fleet of 1,000 benches)
        self.min_interval_s = min_interval_s

    def bind(self) -> None:
        """In the event loop, once (the app's start-up)."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        assert self._event is not None
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        event = self._event
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
        if self.min_interval_s:
            await asyncio.sleep(self.min_interval_s)


def sse_response(
    request: Request,
    current: Callable[[], tuple[int, bytes]],
    changes: Changes,
    keepalive_s: float,
) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        sent = -1
        yield b"retry: 1000\n\n"
        while not await request.is_disconnected():
            version, data = current()
            if version != sent:
                sent = version
                yield b"event: state\ndata: " + data + b"\n\n"
            else:
                yield b"event: ping\ndata: {}\n\n"
            await changes.wait(keepalive_s)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["Changes", "sse_response"]
