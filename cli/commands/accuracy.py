"""``pumpctl accuracy analyse|run``: a pump's accuracy the way IEC 60601-2-24 measures it.

``analyse FILE --rate R``: the start-up curve, mean flow error and trumpet curves from a
CSV of balance readings (``time_s,mass_g``); ``--json`` prints one object. ``run``: drives
a pump through the safety process with a test-fluid program while it records a balance
every 30 s, then analyses. Two benches:

- ``--config BENCH.toml --balance-port DEV``: a real bench. The pump is driven through the
  bench's RUNNING safety process (``controller.connect``: the authenticated socket; the
  run never opens a pump), the balance is read on its serial port (``drivers.balances``).
- neither: everything in this process on a virtual clock (the real kernel through the
  in-process link, a simulated pump with a realistic mechanism, the MT-SICS balance
  emulator on a pty, the real balance driver): a 2 h test in seconds.

Readings go to the CSV as they come; Ctrl-C (or SIGTERM) stops the pump through the
safety process and still writes the report of what was recorded (if it can be analysed).
Exit codes: 0 done, 1 the run failed (the reason and where the readings are on stderr),
2 bad input (the option or the file's line named), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from cli.commands.output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    CommandError,
    SubParsers,
    bad_input,
    library_from_option,
    print_json,
)
from controller.accuracy.analysis import WINDOWS_MIN, AnalysisError, Result, Settings, analyse
from controller.accuracy.readings import ReadingsError, ReadingsWriter, Row, read_csv
from controller.accuracy.report import markdown, plot, to_json, to_text
from controller.journal_plot import PlotUnavailable
from controller.logfile import log_to_file
from firmware_bridge.balance.water import water_density_g_ml
from safety.library import LookupProblem

if TYPE_CHECKING:
    from controller.accuracy.run import Recording
    from controller.session import Session
    from drivers.balances import Balance
    from safety.library import DrugLibrary

#: exit status of a run ended by Ctrl-C or SIGTERM (after the pump was stopped)
EXIT_INTERRUPTED = 130
DEFAULT_SYRINGE = "bd-plastipak-50ml"
DEFAULT_MECHANICS = "typical"
#: how long a stable reading (MT-SICS ``S``) may take on a real bench, default (s)
DEFAULT_STABLE_TIMEOUT_S = 20.0


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("accuracy", help="measure a pump's accuracy (IEC 60601-2-24 style)")
    s = p.add_subparsers(dest="accuracy_command", metavar="analyse|run")
    s.required = True
    a = s.add_parser("analyse", help="start-up and trumpet curves from balance readings (CSV)")
    a.add_argument("file", help="CSV with a header time_s,mass_g (other columns ignored)")
    _common(a)
    a.set_defaults(handler=run_analyse)
    r = s.add_parser(
        "run",
        help="drive a pump through the safety process and weigh it",
        description="With --config and --balance-port: a real bench, the pump driven "
        "through its running safety process, a balance on a serial port. Without: the "
        "whole test in this process on a virtual clock (emulated pump and balance).",
    )
    r.add_argument("--duration-min", type=float, default=120.0, help="default 120")
    r.add_argument("--interval-s", type=float, default=30.0, help="default 30")
    r.add_argument("--fluid", default="water", help="the library's test fluid (default water)")
    r.add_argument("--out", default="var/accuracy", help="folder for CSV, plots and report")
    bench = r.add_argument_group("a real bench")
    bench.add_argument(
        "--config", metavar="FILE", help="the bench config its safety process runs with"
    )
    bench.add_argument("--balance-port", metavar="DEV", help="the balance's serial port")
    bench.add_argument("--balance-driver", default="mtsics", help="balance protocol (mtsics)")
    bench.add_argument("--balance-baud", type=int, default=9600, help="default 9600")
    bench.add_argument(
        "--stable-timeout-s",
        type=float,
        default=DEFAULT_STABLE_TIMEOUT_S,
        help="longest wait for a stable reading before the balance is asked for an "
        f"immediate one (1-120 s, default {DEFAULT_STABLE_TIMEOUT_S:g})",
    )
    emulated = r.add_argument_group("the emulated bench (without --config)")
    emulated.add_argument("--syringe", help=f"default {DEFAULT_SYRINGE}")
    emulated.add_argument(
        "--mechanics", help=f"the emulated pump's mechanism (default {DEFAULT_MECHANICS})"
    )
    emulated.add_argument("--library", metavar="PATH", help="drug library (with [test_fluids])")
    _common(r)
    r.set_defaults(handler=run_run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, required=True, metavar="ML_H", help="set rate, mL/h")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--density", type=float, metavar="G_ML", help="fluid density, g/mL")
    g.add_argument("--temperature", type=float, metavar="C", help="water temperature (0-40 C)")
    p.add_argument("--evaporation", type=float, default=0.0, metavar="MG_MIN")
    p.add_argument(
        "--period",
        action="append",
        metavar="START-END",
        help="analysis period in minutes (repeatable; default 60-120, the second hour)",
    )
    p.add_argument("--allow-gaps", action="store_true", help="skip windows over missing readings")
    p.add_argument("--plots", metavar="DIR", help="write startup.png, trumpet.png, report.md")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _settings(args: argparse.Namespace) -> Settings:
    if args.temperature is not None:
        try:
            density = water_density_g_ml(args.temperature)
        except ValueError as exc:
            bad_input(f"--temperature: {exc}", "temperature")
    else:
        density = args.density if args.density is not None else water_density_g_ml(20.0)
    periods: list[tuple[float, float]] = []
    for text in args.period or ["60-120"]:
        start, sep, end = text.partition("-")
        try:
            periods.append((float(start), float(end)))
        except ValueError:
            bad_input(f"--period: expected START-END in minutes, got {text!r}", "period")
        if not sep:
            bad_input(f"--period: expected START-END in minutes, got {text!r}", "period")
    try:
        return Settings(
            rate_ml_h=args.rate,
            density_g_ml=density,
            evaporation_mg_min=args.evaporation,
            periods_min=tuple(periods),
            windows_min=WINDOWS_MIN,
            allow_gaps=args.allow_gaps,
        )
    except AnalysisError as exc:
        bad_input(str(exc), "settings")


def _report(
    result: Result,
    args: argparse.Namespace,
    context: dict[str, str],
    extra: Mapping[str, object] | None = None,
) -> None:
    figures = None
    if args.plots:
        out = Path(args.plots)
        try:
            figures = plot(result, out)
        except PlotUnavailable as exc:
            print(f"pumpctl: {exc}", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown(result, context=context, figures=figures))
    if args.json:
        print_json({**to_json(result), **(extra or {})})
    else:
        print(to_text(result))


# --------------------------------------------------------------------------- analyse


def run_analyse(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        readings = read_csv(args.file)
    except ReadingsError as exc:
        bad_input(str(exc), "file")
    try:
        result = analyse(readings.times_s, readings.masses_g, settings)
    except AnalysisError as exc:
        where = (
            f"{args.file}:{readings.line(exc.index)}: "
            if exc.index is not None
            else f"{args.file}: "
        )
        bad_input(where + str(exc), "file")
    _report(result, args, {"file": str(args.file), "rate": f"{args.rate:g} mL/h"})
    return 0


# --------------------------------------------------------------------------- run


@dataclass
class _Run:
    """What both benches hand the common recording: a session on the safety process, a
    balance, and the clinical clock's reading and waiting."""

    session: Session
    library: DrugLibrary
    balance: Balance
    now: Callable[[], float]
    wait: Callable[[float], None]
    context: dict[str, str]
    #: print every reading (a real bench: one a half minute) or every 20th
    every: int
    #: read stable weights (S); not on a virtual clock, where no time passes while the
    #: balance waits for stability (``controller.accuracy.run.read_weight``)
    wait_for_stable: bool = True


def run_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _check_run_options(args, settings)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        bad_input(f"--out: cannot create {out}: {exc.strerror or exc}", "out")
    bench = _real_bench if args.config else _emulated_bench
    started = time.monotonic()
    with _interrupts_stop_the_run(), log_to_file(out / "run.log"), bench(args) as run:
        try:
            run.library.test_fluid(args.fluid)
        except LookupProblem as exc:
            bad_input(f"--fluid: {exc}", "fluid")
        rec, failure, interrupted = _record(run, args, out / "readings.csv")
    run.context["real time"] = f"{time.monotonic() - started:.1f} s"
    return _finish(args, settings, rec, run.context, out, failure, interrupted)


def _check_run_options(args: argparse.Namespace, settings: Settings) -> None:
    """Every option checked before anything is opened, each error naming its option."""
    if not (1 <= args.interval_s <= 600):
        bad_input(f"--interval-s must be 1-600 s, got {args.interval_s:g}", "interval_s")
    if not (args.duration_min * 60 >= 3 * args.interval_s and args.duration_min <= 48 * 60):
        bad_input(
            f"--duration-min must cover 3 readings and at most 48 h (2880 min), got "
            f"{args.duration_min:g}",
            "duration_min",
        )
    for start, end in settings.periods_min:
        if end > args.duration_min:
            bad_input(
                f"--period {start:g}-{end:g} ends after the run: --duration-min is "
                f"{args.duration_min:g}",
                "period",
            )
    if bool(args.config) != bool(args.balance_port):
        missing = "--balance-port" if args.config else "--config"
        bad_input(
            f"a real bench needs both --config and --balance-port ({missing} is missing); "
            "without either the run is emulated in this process",
            missing.lstrip("-").replace("-", "_"),
        )
    if args.config:
        for option in ("syringe", "mechanics", "library"):
            if getattr(args, option) is not None:
                bad_input(
                    f"--{option} is for the emulated bench; a real bench's comes from its "
                    "safety process (its config)",
                    option,
                )
        if not (1 <= args.stable_timeout_s <= 120):
            bad_input(
                f"--stable-timeout-s must be 1-120 s, got {args.stable_timeout_s:g}",
                "stable_timeout_s",
            )


@contextlib.contextmanager
def _interrupts_stop_the_run() -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run through its stop: the first one raises
    ``KeyboardInterrupt`` (the run sends the stop and keeps its readings); later ones only
    say so, so that they cannot cut the stop short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        print("pumpctl: stopping the pump through the safety process ...", file=sys.stderr)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record(
    run: _Run, args: argparse.Namespace, csv_path: Path
) -> tuple[Recording, str | None, bool]:
    """The recording, why it failed (None: it did not), whether it was interrupted."""
    from controller.accuracy.run import Recording, RunError, record_run  # noqa: PLC0415

    rec = Recording()

    def progress(i: int, n: int, row: Row) -> None:
        if i % run.every == 0 or i == n:
            flag = "" if row.stable else " (dynamic)"
            print(
                f"reading {i}/{n} at {row.time_s / 60:.1f} min: {row.mass_g:.4f} g{flag}",
                file=sys.stderr,
                flush=True,
            )

    failure: str | None = None
    interrupted = False
    with ReadingsWriter(csv_path) as writer:
        try:
            record_run(
                run.session,
                run.library,
                run.balance,
                rate_ml_h=args.rate,
                duration_s=args.duration_min * 60.0,
                interval_s=args.interval_s,
                now=run.now,
                wait=run.wait,
                fluid=args.fluid,
                stable=run.wait_for_stable,
                stable_timeout_s=args.stable_timeout_s,
                into=rec,
                on_row=writer.write,
                progress=progress,
            )
        except RunError as exc:
            failure = str(exc)
        except KeyboardInterrupt:
            interrupted = True
    return rec, failure, interrupted


def _finish(
    args: argparse.Namespace,
    settings: Settings,
    rec: Recording,
    context: dict[str, str],
    out: Path,
    failure: str | None,
    interrupted: bool,
) -> int:
    csv_path = out / "readings.csv"
    kept = f"{len(rec.rows)} reading(s) in {csv_path}"
    if rec.stop is not None and not rec.stopped:
        print(f"pumpctl: WARNING: {rec.stop}", file=sys.stderr)
    if failure is not None:
        stop = f"; {rec.stop}" if rec.stop else ""
        raise CommandError("run_failed", f"{failure}{stop}; {kept}", EXIT_FAILED)
    if interrupted:
        print(f"pumpctl: interrupted: {rec.stop or 'nothing was started'}; {kept}", file=sys.stderr)
    context["readings"] = (
        f"{csv_path} ({len(rec.rows)}, {rec.dynamic} not stable by the balance's flag)"
        if rec.dynamic
        else f"{csv_path} ({len(rec.rows)}, all stable)"
    )
    context["stop"] = rec.stop or "-"
    try:
        result = analyse([r.time_s for r in rec.rows], [r.mass_g for r in rec.rows], settings)
    except AnalysisError as exc:
        if interrupted:
            print(f"pumpctl: too short to analyse: {exc}", file=sys.stderr)
            return EXIT_INTERRUPTED
        raise CommandError("run_failed", f"{csv_path}: {exc}", EXIT_FAILED) from None
    if not args.plots:
        args.plots = str(out)
    extra = {
        "run": {
            "readings": len(rec.rows),
            "dynamic_readings": rec.dynamic,
            "csv": str(csv_path),
            "stop": rec.stop,
            "interrupted": interrupted,
        }
    }
    _report(result, args, context, extra)
    if not rec.stopped:
        return EXIT_FAILED
    return EXIT_INTERRUPTED if interrupted else 0


# --------------------------------------------------------------------------- the benches


@contextlib.contextmanager
def _real_bench(args: argparse.Namespace) -> Iterator[_Run]:
    """The bench's running safety process (never started here: it owns the pump and must
    outlive this command) and a balance on its serial port."""
    from controller.bench_config import load_bench_config  # noqa: PLC0415
    from controller.connect import clinical_clock, connect  # noqa: PLC0415
    from controller.errors import ControllerError  # noqa: PLC0415
    from drivers.balances import BalanceError, load_balance  # noqa: PLC0415
    from drivers.loading import DriverLoadError  # noqa: PLC0415
    from safety.ipc.client import SafetyClient  # noqa: PLC0415

    try:
        bench = load_bench_config(args.config)
    except ControllerError as exc:
        raise CommandError(exc.code, exc.message, EXIT_BAD_INPUT, exc.field) from None
    try:
        balance = load_balance(
            args.balance_driver,
            port=args.balance_port,
            baud=args.balance_baud,
            stable_timeout_s=args.stable_timeout_s,
        )
    except DriverLoadError as exc:
        bad_input(f"--balance-driver: {exc}", "balance_driver")
    except ValueError as exc:
        field = "balance_baud" if "baud" in str(exc) else "balance_driver"
        bad_input(f"--{field.replace('_', '-')}: {exc}", field)
    try:
        balance.connect()
        identity = balance.identify()
    except BalanceError as exc:
        balance.close()
        raise CommandError(
            "balance_failed",
            f"the balance on {args.balance_port} ({args.balance_driver}, "
            f"{args.balance_baud} baud) does not answer: {exc}",
            EXIT_FAILED,
        ) from None
    try:
        try:
            session = connect(bench.path, name="pumpctl-accuracy")
        except ControllerError as exc:
            code = EXIT_BAD_INPUT if exc.code == "bad_config" else EXIT_FAILED
            raise CommandError(exc.code, exc.message, code, exc.field) from None
        try:
            link = session.link
            spec = link.info.clinical_clock if isinstance(link, SafetyClient) else "virtual"
            clock = clinical_clock(spec)
            if clock is None:
                raise CommandError(
                    "bad_config",
                    f"the safety process runs a clinical clock ({spec}) this command cannot follow",
                    EXIT_FAILED,
                )
            session.run_in_background()
            snapshot = session.status()
            context = {
                "bench": f"{bench.path} (safety process on {bench.socket})",
                "pump": f"driven through the safety process; clinical clock {spec}",
                "syringe": f"{snapshot.syringe} ({snapshot.syringe_volume_ml:g} mL)",
                "balance": f"{identity.model} (serial {identity.serial}, software "
                f"{identity.software}), {args.balance_driver} on {args.balance_port} at "
                f"{args.balance_baud} baud",
                **_settings_context(args),
            }
            yield _Run(
                session,
                session.library,
                balance,
                clock.now,
                lambda clinical_s: time.sleep(clock.to_real_seconds(clinical_s)),
                context,
                every=1,
            )
        finally:
            session.close()
    finally:
        balance.close()


@contextlib.contextmanager
def _emulated_bench(args: argparse.Namespace) -> Iterator[_Run]:
    """The real kernel in this process on a virtual clock, a pump with a mechanism, the
    balance emulator on a pty weighing that pump, the real MT-SICS driver reading it
    (``verification.accuracy``)."""
    # lazy: the emulated bench (pump model, balance emulator, kernel) loads only here
    from drivers.balances import BalanceError  # noqa: PLC0415
    from firmware_bridge.balance.physics import Bench  # noqa: PLC0415
    from firmware_bridge.mechanics import MechanicsSpecError, parse_mechanics  # noqa: PLC0415
    from verification.accuracy import emulated_bench  # noqa: PLC0415

    spec = args.mechanics or DEFAULT_MECHANICS
    try:
        mechanics = parse_mechanics(spec)
    except MechanicsSpecError as exc:
        bad_input(f"--mechanics: {exc}", "mechanics")
    library = library_from_option(args.library)
    syringe = args.syringe or DEFAULT_SYRINGE
    water = Bench(temperature_c=args.temperature or 20.0, evaporation_mg_min=args.evaporation)
    with contextlib.ExitStack() as stack:
        try:
            emulated = stack.enter_context(
                emulated_bench(library, syringe=syringe, mechanics=mechanics, bench=water)
            )
        except ValueError as exc:
            bad_input(f"--syringe: {exc}", "syringe")
        except BalanceError as exc:
            raise CommandError("balance_failed", str(exc), EXIT_FAILED) from None
        model = emulated.model_figures(args.rate)
        identity = emulated.identity
        context = {
            "pump": f"emulated (virtual clock), mechanism {spec}",
            "syringe": syringe,
            "balance": f"{identity.model} (serial {identity.serial}), MT-SICS emulator",
            **_settings_context(args),
            "model's own figures": f"start-up delay {model.startup_delay_min:.2f} min, "
            f"mean flow error {model.mean_error_pct:+.2f} %",
        }
        yield _Run(
            emulated.session,
            library,
            emulated.balance,
            emulated.now,
            emulated.wait,
            context,
            every=20,
            wait_for_stable=False,
        )


def _settings_context(args: argparse.Namespace) -> dict[str, str]:
    return {
        "test fluid": args.fluid,
        "rate": f"{args.rate:g} mL/h, readings every {args.interval_s:g} s for "
        f"{args.duration_min:g} min",
    }
