"""Run the dashboard: the bind-address rule, the token file, uvicorn.

Bound to 127.0.0.1 by default. Any other address (the lab's network, a phone on the
Wi-Fi) needs an access token: a file of at least ``MIN_TOKEN_CHARS`` characters, readable
by its owner only (like the IPC keys). Without one the dashboard refuses to start and
says so: a page that shows a patient's infusion is not left open on a network.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from observe.dashboard.app import create_app
from observe.feed import BenchFeed
from safety.library import DrugLibrary

MIN_TOKEN_CHARS = 16


class DashboardError(Exception):
    """The dashboard cannot start as configured; ``field`` names the setting."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(path: str) -> str:
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DashboardError(f"token file {p}: {exc.strerror or exc}", "token_file") from None
    except UnicodeDecodeError:
        raise DashboardError(f"token file {p}: not UTF-8 text", "token_file") from None
    if mode & 0o077:
        raise DashboardError(
            f"token file {p} has mode {stat.S_IMODE(mode):04o}; it must be readable by its "
            f"owner only: chmod 600 {p}",
            "token_file",
        )
    if len(text) < MIN_TOKEN_CHARS or any(c.isspace() for c in text):
        raise DashboardError(
            f"token file {p}: the token must be at least {MIN_TOKEN_CHARS} characters "
            "without spaces",
            "token_file",
        )
    return text


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and token is None:
        raise DashboardError(
            f"--host {host} would show this bench to the network without any access "
            "control; configure an access token ([dashboard] token_file or --token-file), "
            "or keep the default 127.0.0.1",
            "host",
        )


def serve(
    feed: BenchFeed,
    *,
    host: str,
    port: int,
    bench: str,
    library: DrugLibrary | None,
    token: str | None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C, SIGTERM)."""
    check_bind(host, token)
    app = create_app(feed, bench=bench, library=library, token=token)
    serve_app(app, host=host, port=port, announce=announce)


def serve_app(
    app: ASGIApp, *, host: str, port: int, announce: Callable[[str], None] | None = None
) -> None:
    """Serve ``app`` (uvicorn) until interrupted. The socket is bound before ``announce``
    gets the address (port 0: a free port, the one chosen announced), so whoever reads
    it can connect at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DashboardError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", "port"
        ) from None
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level=os.environ.get("PUMPCTL_WEB_LOG", "warning"),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    if announce is not None:
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{shown}:{port}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["DashboardError", "check_bind", "is_loopback", "load_token", "serve", "serve_app"]
