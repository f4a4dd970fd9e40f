"""``pumpctl fleet``: every bench on an MQTT broker as a tile, on one web page.

Subscribes to the broker's ``pumpctl/v1/+/#`` (observe/fleet) and serves the page at
``http://127.0.0.1:8766/`` by default: per bench its state, drug, dose, worst alarm and
the data's age, stale benches marked, each tile linking to the bench's own dashboard.
The first stdout line is ``fleet on URL``. Another address than loopback needs a token.
"""

from __future__ import annotations

import argparse
import sys

from cli.commands.dashboard import missing
from cli.commands.output import EXIT_FAILED, EXIT_OK, CommandError, SubParsers, bad_input

DEFAULT_PORT = 8766


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "fleet",
        help="one web page for every bench publishing to an MQTT broker (read-only)",
        description="Subscribe to the broker and show every bench's telemetry as a tile: "
        "state, drug, dose, worst alarm, data age; stale benches marked; a link to each "
        "bench's dashboard.",
    )
    p.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT (default %(default)s)")
    p.add_argument("--prefix", default="pumpctl", help="topic prefix (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="listen port (default %(default)s)"
    )
    p.add_argument("--token-file", metavar="FILE", help="access token file (mode 0600)")
    p.add_argument(
        "--client-id",
        help="MQTT client id of this view's persistent session (default pumpctl-fleet-HOST; "
        "two fleet views on one broker need two ids)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=15.0,
        metavar="S",
        help="a bench whose last status is older is stale (default %(default)s s)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from observe.dashboard.app import TokenGate  # noqa: PLC0415
        from observe.dashboard.serve import (  # noqa: PLC0415
            DashboardError,
            check_bind,
            load_token,
            serve_app,
        )
        from observe.fleet.app import create_app  # noqa: PLC0415
        from observe.fleet.model import FleetModel  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError("missing_dependency", missing(exc), EXIT_FAILED) from None
    host, _, port_text = args.broker.rpartition(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        bad_input(f"--broker {args.broker!r}: give HOST:PORT, port 1-65535", "broker")
    if not 0 <= args.port <= 65535:
        bad_input(f"--port must be 0-65535, got {args.port}", "port")
    if not 1.0 <= args.stale_after <= 3600:
        bad_input(f"--stale-after must be 1-3600 s, got {args.stale_after}", "stale_after")
    model = FleetModel(
        host,
        int(port_text),
        prefix=args.prefix,
        stale_after_s=args.stale_after,
        client_id=args.client_id,
    )
    try:
        token = load_token(args.token_file) if args.token_file else None
        check_bind(args.host, token)
        app = create_app(model)
        if token is not None:
            app.add_middleware(TokenGate, token=token)
        model.start()
        serve_app(
            app,
            host=args.host,
            port=args.port,
            announce=lambda url: print(f"fleet on {url}", flush=True),
        )
    except DashboardError as exc:
        bad_input(str(exc), exc.field)
    except KeyboardInterrupt:
        pass
    finally:
        model.close()
    print("fleet stopped", file=sys.stderr)
    return EXIT_OK


__all__ = ["add_parser", "run"]
