"""The dashboard's web application (Starlette): one page, its assets, its data.

Routes, all read-only (GET only; there is no route that could change anything):

- ``/``: the page (``static/index.html``); ``/static/...``: its script and style, shipped
  in the package (no build step, no CDN: it works with no internet);
- ``/api/state``: the bench as JSON (``observe.view``), once;
- ``/events``: the same as server-sent events: a ``state`` event at once and after every
  change, a ``ping`` event every ``KEEPALIVE_S`` so the page can tell a silent server
  from a quiet bench. Each client always gets the *latest* state (nothing queues up behind a
  slow phone), computed once per change for every client.

Access: without a token the app is meant for 127.0.0.1 only (``observe.dashboard.serve``
refuses another address). With a token, every request needs it: ``?token=`` once (the
page then keeps it in an HttpOnly cookie), the cookie, or ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from observe.feed import BenchFeed, FeedState
from observe.view import ProgramCache, channel_view, journal_json, plot_series
from safety.library import DrugLibrary

#: seconds between SSE comments when nothing changes
KEEPALIVE_S = 5.0
#: journal lines on the page
JOURNAL_LINES = 60
COOKIE = "pumpctl_dashboard"

STATIC = resources.files("observe.dashboard") / "static"


class Model:
    """The page's data, rebuilt once per feed change and shared by every client."""

    def __init__(self, feed: BenchFeed, bench: str, library: DrugLibrary | None) -> None:
        self.feed = feed
        self.bench = bench
        self.programs = ProgramCache(library)
        self._version = -1
        self._data = b""
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changed = asyncio.Event()
        self.feed.add_listener(self._on_change)

    def _on_change(self, _state: FeedState) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()  # clients waiting on the old one wake up now

    def current(self) -> tuple[int, bytes]:
        state = self.feed.read()
        if state.version != self._version:
            self._version = state.version
            self._data = json.dumps(self.view(state), separators=(",", ":")).encode()
        return self._version, self._data

    def view(self, state: FeedState) -> dict[str, Any]:
        snap = state.snapshot
        channels: list[dict[str, Any]] = []
        plot: dict[str, Any] | None = None
        if snap is not None:
            program = self.programs.get(snap)
            channels.append(channel_view(snap, program))
            plot = plot_series(snap, program)
        return {
            "bench": self.bench,
            "now": time.time(),
            "link": {
                "live": state.live,
                "problem": state.problem,
                "stale_since": state.stale_since,
                "updated_at": state.updated_at,
                "connects": state.connects,
            },
            "clinical_time": snap.clinical_time if snap is not None else None,
            "library": snap.library_version if snap is not None else None,
            "channels": channels,
            "plots": [plot] if plot is not None else [],
            "journal": journal_json(list(state.journal)[-JOURNAL_LINES:]),
        }

    async def wait_change(self, timeout_s: float) -> None:
        event = self._changed
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


def create_app(
    feed: BenchFeed,
    *,
    bench: str,
    library: DrugLibrary | None = None,
    token: str | None = None,
) -> Starlette:
    model = Model(feed, bench, library)

    async def index(_request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    async def state(_request: Request) -> Response:
        return Response(model.current()[1], media_type="application/json")

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            sent = -1
            yield b"retry: 1000\n\n"
            while not await request.is_disconnected():
                version, data = model.current()
                if version != sent:
                    sent = version
                    yield b"event: state\ndata: " + data + b"\n\n"
                else:  # an event, not a comment: the page's EventSource sees it
                    yield b"event: ping\ndata: {}\n\n"
                await model.wait_change(KEEPALIVE_S)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def startup() -> None:
        model.attach_loop(asyncio.get_running_loop())

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/events", events),
            Route("/health", health),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ],
        on_startup=[startup],
    )
    app.state.model = model
    if token is not None:
        app.add_middleware(TokenGate, token=token)
    return app


class TokenGate:
    """Every request needs the token (query once -> cookie, cookie, or bearer)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response: Response | None = None
        query = request.query_params.get("token")
        if self._ok(query):
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        else:
            bearer = request.headers.get("authorization", "")
            given = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
            if not (self._ok(request.cookies.get(COOKIE)) or self._ok(given)):
                response = PlainTextResponse(
                    "this dashboard needs its access token: open it with ?token=...", 401
                )
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


Handler = Callable[[Request], Awaitable[Response]]

__all__ = ["KEEPALIVE_S", "Model", "TokenGate", "create_app"]
