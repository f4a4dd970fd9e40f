"""``pumpctl telemetry``: publish the bench to an MQTT broker (observe/telemetry).

Watches the bench's safety process as an observer (it can never command: S17) and sends
its status (retained), newly raised alarms and safety-journal lines (QoS 1, numbered)
to the broker named in the config's ``[telemetry]`` section, through a durable outbox
beside the config: a broker outage of any length loses nothing. Runs until Ctrl-C or
SIGTERM. Exit 2 for a bad config or a config without ``[telemetry]``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from cli.commands.dashboard import missing
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
        "telemetry",
        help="publish the bench to an MQTT broker ([telemetry] in the bench config)",
        description="Publish the bench's status, alarms and safety-journal lines to the "
        "MQTT broker named in the config's [telemetry] section (schema: docs/telemetry.md). "
        "An observer: it can never command. Events wait in a durable outbox while the "
        "broker is away and are sent in order when it is back.",
    )
    p.add_argument("--config", metavar="FILE", help="bench config (default: as pumpctl run)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from observe.feed import BenchFeed  # noqa: PLC0415
        from observe.telemetry.outbox import Outbox  # noqa: PLC0415
        from observe.telemetry.publisher import BenchTelemetry, Publisher  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError("missing_dependency", missing(exc), EXIT_FAILED) from None
    path = args.config or str(default_config())
    try:
        config = load_observer_config(path)
    except ObserverConfigError as exc:
        bad_input(str(exc), exc.problems[0][0] if exc.problems else "config", code="bad_config")
    settings = config.telemetry
    if settings is None:
        bad_input(f"{path} has no [telemetry] section (bench name and broker)", "telemetry")
    password = None
    if settings.password_file:
        try:
            password = Path(settings.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            bad_input(f"telemetry.password_file: {exc.strerror or exc}", "telemetry.password_file")
    library = library_from_option(config.library)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    outbox = Outbox(settings.outbox or "telemetry-outbox.sqlite")
    feed = BenchFeed(config.socket, key_file=config.observer_key_file, name="pumpctl-telemetry")
    publisher = Publisher(settings, outbox, password=password)
    bridge = BenchTelemetry(feed, publisher, library)
    print(
        f"telemetry: bench {settings.bench} -> {settings.host}:{settings.port} "
        f"(outbox {outbox.path})",
        flush=True,
    )
    try:
        publisher.start()
        feed.start()
        bridge.start()
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
        feed.close()
        publisher.close()
        outbox.close()
        signal.signal(signal.SIGTERM, previous)
    print("telemetry stopped", file=sys.stderr)
    return EXIT_OK


__all__ = ["add_parser", "run"]
