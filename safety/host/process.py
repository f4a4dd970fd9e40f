"""``python -m safety``: the safety process, from config file to serving socket.

Start-up, in order, each step refusing to go on if it fails:

1. the config (``safety.host.config``): invalid -> message naming each field, exit 2,
   nothing opened;
2. an exclusive lock beside the journal (``<journal>.lock``, ``flock``): a second safety
   process on the same journal (and so the same pump) exits 1 instead of fighting the
   first for the pump; the kernel releases the lock when a process dies, kill -9 included;
3. the drug library (invalid -> exit 2), the IPC key (created mode 0600 if missing),
   the journal, the pump driver (from the registry), the GPIO backend, the hardware
   watchdog device if one is configured (``[watchdog] device``: opening arms it);
4. ``SafetyCore.start()``: replay the journal, read the pump, resume supervision without
   sending the pump anything that changes its rate (a pump that does not answer is an
   alarm, not a reason to exit: supervision and the GPIO alarm keep running);
5. the socket; then readiness is announced twice: ``READY=1`` to systemd (Type=notify)
   and the line ``ready <socket path>`` on stdout, flushed, for a parent process
   (``pumpctl``) that starts this one as a child and waits for that line.

Shutdown (SIGTERM, SIGINT): clients are told and disconnected, the driver's port is
closed, the GPIO pins go to their documented close levels (alarm on: a pump without its
safety process is unsupervised), the journal is closed; exit 0. **The pump is never
stopped on shutdown**: stopping a vasopressor abruptly is itself a hazard (S11), so a
running infusion continues at its last verified rate, the heartbeat pin stops toggling
(an external watchdog circuit sees it) and the alarm stays on. A watchdog *device* is
disarmed on this deliberate shutdown (magic close), so stopping the service does not
reset the board; after a crash it stays armed. Stopping the pump is an operator's
command, sent on purpose.

Exit status: 0 clean shutdown; 1 a runtime failure (lock held, socket in use, pump,
GPIO or watchdog device set-up error, journal failure while serving); 2 invalid config or library.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import IO

from drivers.gpio import GpioError, GpioInterface, open_gpio
from drivers.lines import LineError, open_lines
from drivers.loading import DriverLoadError
from drivers.pumps.base import PumpDriver
from drivers.pumps.registry import load_driver
from firmware_bridge.clock import Clock, MonotonicClock, clock_from_spec, clock_spec
from firmware_bridge.syringes import container_by_name
from safety.host.config import ConfigError, SafetyConfig, load_config, monitor_problems
from safety.host.core import Channel, HostTiming, SafetyCore, open_journal
from safety.host.sdnotify import SystemdNotifier
from safety.host.watchdog_device import WatchdogDevice, WatchdogDeviceError
from safety.ipc.auth import KeyFileError, load_or_create_key
from safety.ipc.server import SafetyServer, ServerError
from safety.journal import JournalError
from safety.kernel.config import KernelConfig
from safety.library import DrugLibrary, LibraryError, load_library
from safety.start_up import freeze_start_up

log = logging.getLogger("safety")

#: SQLite page cache of the journal: appends need only its last pages (SQLite's default,
#: 2000 KiB, would fill with pages never read again as the journal grows: memory goal)
JOURNAL_CACHE_KIB = 256

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class StartupError(Exception):
    """A start-up step failed; ``status`` is the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config).with_overrides(
            socket=_abs(args.socket), journal=_abs(args.journal), key_file=_abs(args.key_file)
        )
    except ConfigError as exc:
        print(f"pumpctl-safety: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:  # an override that does not fit
        print(f"pumpctl-safety: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        # the controller's parts too, with the files they name (the closed loop's replay)
        problems = monitor_problems(config.monitor, Path(args.config).resolve().parent)
        if problems:
            print(f"pumpctl-safety: {ConfigError(args.config, problems)}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"config {args.config} is valid")
        return EXIT_OK
    _setup_logging(args.log_level)
    try:
        return run(config, ready_stream=sys.stdout)
    except StartupError as exc:
        log.critical("%s", exc)
        print(f"pumpctl-safety: {exc}", file=sys.stderr)
        return exc.status


def run(config: SafetyConfig, *, ready_stream: IO[str] | None = None) -> int:
    """Start, serve until SIGTERM/SIGINT, shut down. Raises ``StartupError``."""
    paths = config.paths
    notifier = SystemdNotifier()
    with _exclusive_lock(Path(paths.journal + ".lock")), contextlib.ExitStack() as stack:
        library: DrugLibrary | None = None
        library_problem = None
        try:
            library = load_library(paths.library)
        except LibraryError as exc:
            # Not a reason to leave the pump unsupervised: the running program's limits
            # are in the journal. New programs are refused until a usable library.
            library_problem = str(exc)
            log.critical("drug library unusable, supervising with journaled limits: %s", exc)
        try:
            key = load_or_create_key(paths.key_file)
            observer_key = load_or_create_key(paths.observer_key)
        except KeyFileError as exc:
            raise StartupError(str(exc)) from None
        if observer_key == key:
            raise StartupError(
                f"{paths.observer_key} holds the same key as {paths.key_file}: an "
                "observer could command the pump (S17); delete the observer key file to "
                "have a new one made"
            )
        try:
            # unreadable as a database: its readable part salvaged, the file set aside
            # (never deleted) and a new one started; the core raises the alarm
            journal, damaged_journal = open_journal(
                paths.journal, "safety", cache_kib=JOURNAL_CACHE_KIB
            )
        except JournalError as exc:
            raise StartupError(str(exc)) from None
        clinical = clock_from_spec(config.clock.clinical)
        liveness = MonotonicClock()
        channels = _channels(config, clinical)
        gpio = _gpio(config, liveness)
        if gpio is not None:
            stack.callback(gpio.close)
        shutdown = _Shutdown()
        watchdog_device = _watchdog_device(config)
        if watchdog_device is not None:
            # disarmed only on a deliberate shutdown; a crash leaves it armed (see module)
            stack.callback(lambda: watchdog_device.close(disarm=shutdown.deliberate))
        t = config.timing
        core = SafetyCore(
            library,
            channels,
            journal,
            clinical=clinical,
            liveness=liveness,
            interlock_scope=config.interlock.scope,
            config=kernel_config(config),
            gpio=gpio,
            watchdog_device=watchdog_device,
            library_problem=library_problem,
            damaged_journal=damaged_journal,
            timing=HostTiming(
                poll_period_s=t.poll_period_s,
                keep_alive_period_s=t.keep_alive_period_s,
                heartbeat_timeout_s=t.heartbeat_timeout_s,
                watchdog_toggle_s=t.watchdog_toggle_s,
                button_poll_s=t.button_poll_s,
            ),
        )
        stack.callback(core.close)

        def close_journal() -> None:  # the core's: start() renews a damaged one
            core.journal.close()

        stack.callback(close_journal)
        try:
            core.start()
        except JournalError as exc:
            raise StartupError(f"cannot resume from the journal: {exc}") from None
        snap = core.snapshot()
        log.info(
            "supervision resumed: mode %s, %s mL/h, %d alarm(s), library %s",
            snap.mode,
            snap.rate_ml_h,
            len(snap.alarms),
            snap.library_hash[:19],
        )
        server = SafetyServer(
            core,
            paths.socket,
            key,
            observer_key=observer_key,
            clinical_clock=clock_spec(core.clinical),
            liveness=liveness,
            tick=notifier.tick,
        )
        try:
            server.open()
        except ServerError as exc:
            raise StartupError(str(exc)) from None
        stack.callback(server.close)
        freeze_start_up()  # before serving: see safety.start_up
        previous = _install_signals(server)
        stack.callback(_restore_signals, previous)
        notifier.ready(f"serving on {paths.socket}")
        if ready_stream is not None:
            try:
                print(f"ready {paths.socket}", file=ready_stream, flush=True)
            except OSError as exc:  # a parent that stopped listening: serve all the same
                log.warning("could not announce readiness on stdout: %s", exc)
        log.info("ready on %s (pid %d)", paths.socket, os.getpid())
        try:
            server.serve()
        except JournalError as exc:
            log.critical("journal failure, nothing may take effect without it: %s", exc)
            return EXIT_FAILURE
        except Exception:
            # a bug: stop serving (systemd restarts us; the restart replays the journal),
            # after the ExitStack has closed the pump port and set the GPIO alarm
            log.critical("the safety process failed; shutting down", exc_info=True)
            return EXIT_FAILURE
        notifier.stopping()
        shutdown.deliberate = True
        log.info("shutting down on request; the pump is left as it is (never stopped here)")
    return EXIT_OK


# --------------------------------------------------------------------------- pieces


def _channels(config: SafetyConfig, clinical: Clock) -> list[Channel]:
    """One driver per channel, those on a shared line sharing its one ``SharedLine``."""
    lines = open_lines(config.lines)  # opens nothing: the first driver's connect does
    channels: list[Channel] = []
    for name, channel in config.channel_configs().items():
        container = container_by_name(channel.container)
        try:
            driver: PumpDriver
            if channel.driver == "mock":
                # imported only for a mock channel: the simulated pump and its physics
                # (about 2 MB resident) have no place in a process on real pumps
                from drivers.pumps.mock import MockPumpDriver  # noqa: PLC0415

                options = channel.mock.model_dump() if channel.mock is not None else {}
                driver = MockPumpDriver(clock=clinical, syringe=container, **options)
            elif channel.line is not None:
                driver = load_driver(channel.driver, line=lines[channel.line], **channel.options)
            else:
                driver = load_driver(channel.driver, **channel.options)
        except (DriverLoadError, LineError, ValueError, TypeError) as exc:
            where = f"channel {name}'s " if len(config.channel_configs()) > 1 else ""
            raise StartupError(
                f"{where}pump driver {channel.driver!r}: {exc}", EXIT_CONFIG
            ) from None
        channels.append(Channel(name, driver, container, channel.loaded_ml, channel.driver))
    return channels


def kernel_config(config: SafetyConfig) -> KernelConfig:
    """The kernel's tuning from the config's ``[relay]`` (the rest keeps its defaults)."""
    relay = config.relay
    return KernelConfig(
        handover_before_empty_s=relay.handover_before_empty_min * 60.0,
        warn_before_empty_s=relay.warn_before_empty_min * 60.0,
        overlap_steps=relay.overlap_steps,
        overlap_step_s=relay.overlap_step_min * 60.0,
        max_container_pause_s=relay.max_container_pause_min * 60.0,
        max_prime_ml=Decimal(repr(relay.max_prime_ml)),
    )


class _Shutdown:
    """Set once the server has stopped on request (not by an exception)."""

    deliberate = False


def _watchdog_device(config: SafetyConfig) -> WatchdogDevice | None:
    if config.watchdog.device is None:
        return None
    try:
        return WatchdogDevice(config.watchdog.device)
    except WatchdogDeviceError as exc:
        raise StartupError(str(exc)) from None


def _gpio(config: SafetyConfig, liveness: Clock) -> GpioInterface | None:
    section = config.gpio
    if section.backend == "none":
        return None
    options: dict[str, object] = {"config": section.pins, "clock": liveness}
    if section.backend == "simulated":
        options["state_dir"] = section.state_dir
    try:
        gpio = open_gpio(section.backend, **options)
    except GpioError as exc:
        raise StartupError(f"GPIO backend {section.backend!r}: {exc}") from None
    # sampled in a thread of its own too, from before the restart connects the pumps: a
    # press while the loop waits on a pump is counted, and acted on at the loop's next
    # look (``GpioInterface.watch_stop_button``, ``SafetyCore._watch``)
    gpio.watch_stop_button(config.timing.button_poll_s)
    return gpio


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(f"lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise StartupError(
                f"another safety process (pid {holder}) holds {path}: only one process may "
                "own this journal and its pump"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _install_signals(server: SafetyServer) -> dict[int, object]:
    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        server.request_stop()

    previous: dict[int, object] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, stop)
    with contextlib.suppress(AttributeError, ValueError):
        previous[signal.SIGPIPE] = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return previous


def _restore_signals(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        with contextlib.suppress(TypeError, ValueError):
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own help layout, with the terminal measured without ``shutil``.

    argparse imports ``shutil`` for ``get_terminal_size`` whenever a parser is built (not
    only for ``--help``); ``shutil`` imports ``zlib``, ``bz2`` and ``lzma``: 0.65 MB of the
    safety process's resident memory (goal 40 MB) for a width. The width is found as
    ``shutil.get_terminal_size`` finds it (``COLUMNS``, then the terminal on stdout, then
    80), two columns narrower, as argparse makes it.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def terminal_columns(fallback: int = 80) -> int:
    """``shutil.get_terminal_size(...).columns``, without importing ``shutil``."""
    with contextlib.suppress(KeyError, ValueError):
        columns = int(os.environ["COLUMNS"])
        if columns > 0:
            return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return fallback
    return columns or fallback


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m safety",
        formatter_class=_HelpFormatter,
        description=(
            "The pumpctl safety process: owns the pump and the GPIO interlock, checks every "
            "command against the drug library, supervises the controller."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="safety config (TOML)")
    p.add_argument("--socket", metavar="PATH", help="override paths.socket")
    p.add_argument("--journal", metavar="PATH", help="override paths.journal")
    p.add_argument("--key-file", metavar="PATH", help="override paths.key_file")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (stderr)",
    )
    return p


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "StartupError",
    "main",
    "run",
    "terminal_columns",
]
