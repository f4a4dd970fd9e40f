"""The fleet page (Starlette): ``/`` the tiles, ``/api/fleet`` JSON, ``/events`` SSE,
``/api/stats`` totals and latency percentiles (``?reset=1`` starts a new sample).

Read-only, like the dashboard; a tile links to its bench's own dashboard (the URL the
bench publishes in its status). The page is redrawn at most ``REDRAW_S`` apart however
many benches publish, so a thousand of them do not turn into a thousand redraws a second.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from observe.fleet.model import FleetModel
from observe.web import Changes, sse_response

REDRAW_S = 0.5
KEEPALIVE_S = 5.0
STATIC = resources.files("observe.fleet") / "static"


def create_app(model: FleetModel) -> Starlette:
    changes = Changes(min_interval_s=REDRAW_S)
    model.add_listener(changes.notify)
    cache: dict[str, tuple[int, bytes]] = {}

    def current() -> tuple[int, bytes]:
        version = model.version
        hit = cache.get("v")
        if hit is None or hit[0] != version:
            hit = (version, json.dumps(model.view(), separators=(",", ":")).encode())
            cache["v"] = hit
        return hit

    async def index(_request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    async def fleet(_request: Request) -> Response:
        return Response(json.dumps(model.view()), media_type="application/json")

    async def stats(request: Request) -> Response:
        reset = request.query_params.get("reset") == "1"
        return Response(json.dumps(model.stats(reset)), media_type="application/json")

    async def events(request: Request) -> Response:
        return sse_response(request, current, changes, KEEPALIVE_S)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        changes.bind()  # in the event loop, once
        yield

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/fleet", fleet),
            Route("/api/stats", stats),
            Route("/events", events),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ],
        lifespan=lifespan,
    )


__all__ = ["create_app"]
