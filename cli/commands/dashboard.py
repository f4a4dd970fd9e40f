"""``pumpctl dashboard``: the bench on a web page, read-only (observe/dashboard).

Attaches to the bench's safety process as an *observer* (the observer key, never the
controller's: it cannot command, S17) and serves one page at ``http://127.0.0.1:8765/``
by default. The first stdout line is ``dashboard on URL``. Exit 0 on Ctrl-C, 2 for a bad
config or an address that would need a token and has none.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.commands.output import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    SubParsers,
    bad_input,
    library_from_option,
)
from controller.bench_config import default_config
from safety.observer_config import ObserverConfigError, load_observer_config


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve a read-only web page of the bench (observer: cannot command)",
        description="Watch the bench's safety process as an observer and serve its state "
        "on a web page: per channel the drug, dose, rate, volume and drug given, time to "
        "empty, state, alarms in IEC 60601-1-8 colours, a plot of dose and rate with the "
        "limits, and the safety journal's tail. Nothing on the page can change an infusion. "
        "Bound to 127.0.0.1 unless [dashboard] host (or --host) says otherwise, which "
        "needs an access token.",
    )
    p.add_argument("--config", metavar="FILE", help="bench config (default: as pumpctl run)")
    p.add_argument("--host", help="listen address (default [dashboard] host, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default [dashboard] port, else 8765)")
    p.add_argument("--token-file", metavar="FILE", help="access token file (mode 0600)")
    p.add_argument("--bench-name", help="name shown on the page (default: the config's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:  # the web stack is the observe extra's; pumpctl itself starts without it
        from observe.dashboard.serve import DashboardError, load_token, serve  # noqa: PLC0415
        from observe.feed import BenchFeed  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError("missing_dependency", missing(exc), EXIT_FAILED) from None
    path = args.config or str(default_config())
    try:
        config = load_observer_config(path)
    except ObserverConfigError as exc:
        field = exc.problems[0][0] if exc.problems else "config"
        bad_input(str(exc), field, code="bad_config")
    section = config.dashboard
    host = args.host or section.host
    port = section.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        bad_input(f"--port must be 0-65535, got {port}", "port")
    token_file = args.token_file or section.token_file
    library = library_from_option(config.library)
    bench = args.bench_name or (
        config.telemetry.bench if config.telemetry else default_name(config.source)
    )
    feed = BenchFeed(config.socket, key_file=config.observer_key_file, name="pumpctl-dashboard")
    try:
        token = load_token(token_file) if token_file else None
        feed.start()
        serve(
            feed,
            host=host,
            port=port,
            bench=bench,
            library=library,
            token=token,
            announce=lambda url: print(f"dashboard on {url}", flush=True),
        )
    except DashboardError as exc:
        bad_input(str(exc), exc.field)
    except KeyboardInterrupt:
        pass
    finally:
        feed.close()
    print("dashboard stopped", file=sys.stderr)
    return EXIT_OK


def missing(exc: ImportError) -> str:
    return (
        f"this command needs the observe extra ({exc.name or exc} is not installed): "
        "pip install 'pumpctl[observe]'"
    )


def default_name(source: str) -> str:
    """A bench without [telemetry] is named after its config file."""
    return Path(source).stem


__all__ = ["add_parser", "default_name", "missing", "run"]
