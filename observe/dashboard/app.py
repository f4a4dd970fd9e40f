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
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from observe.feed import BenchFeed, FeedState
from observe.view import ProgramCache, bench_view, journal_json
from observe.web import Changes, sse_response
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
        self.changes = Changes()
        self._version = -1
        self._data = b""
        feed.add_listener(lambda _state: self.changes.notify())

    def current(self) -> tuple[int, bytes]:
        state = self.feed.read()
        if state.version != self._version:
            self._version = state.version
            self._data = json.dumps(self.view(state), separators=(",", ":")).encode()
        return self._version, self._data

    def view(self, state: FeedState) -> dict[str, Any]:
        """The page's data: the bench (``observe.view.bench_view``: channels, drugs,
        handover, alarms, plots), the link's health and the journal's tail."""
        snap = state.snapshot
        bench: dict[str, Any] = {
            "channels": [],
            "plots": [],
            "drugs": [],
            "handover": None,
            "alarms": [],
        }
        if snap is not None:
            bench = bench_view(snap, self.programs)
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
            **bench,
            "journal": journal_json(list(state.journal)[-JOURNAL_LINES:]),
        }


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
        return sse_response(request, model.current, model.changes, KEEPALIVE_S)

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        model.changes.bind()  # in the event loop, once
        yield

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/events", events),
            Route("/health", health),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ],
        lifespan=lifespan,
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
