"""``pumpctl accuracy analyse|run``: a pump's accuracy the way IEC 60601-2-24 measures it.

``analyse FILE --rate R``: the start-up curve, mean flow error and trumpet curves from a
CSV of balance readings (``time_s,mass_g``); ``--json`` prints one object. ``run``: drives
a pump through the safety process with a test-fluid program while it records a balance
every 30 s, then analyses; ``--emulate`` (the default without ``--config``) runs it all in
this process on a virtual clock (the real kernel, a simulated pump with a realistic
mechanism, the MT-SICS balance emulator on a pty, the real balance driver).
Exit codes: 0 done, 1 the run failed, 2 bad input (the file's line named).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.commands.output import (
    EXIT_FAILED,
    CommandError,
    SubParsers,
    bad_input,
    library_from_option,
    print_json,
)
from controller.accuracy.analysis import WINDOWS_MIN, AnalysisError, Result, Settings, analyse
from controller.accuracy.readings import ReadingsError, line_of, read_csv, write_csv
from controller.accuracy.report import markdown, plot, to_json, to_text
from controller.journal_plot import PlotUnavailable
from firmware_bridge.balance.water import water_density_g_ml


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("accuracy", help="measure a pump's accuracy (IEC 60601-2-24 style)")
    s = p.add_subparsers(dest="accuracy_command", metavar="analyse|run")
    s.required = True
    a = s.add_parser("analyse", help="start-up and trumpet curves from balance readings (CSV)")
    a.add_argument("file", help="CSV with a header time_s,mass_g (other columns ignored)")
    _common(a)
    a.set_defaults(handler=run_analyse)
    r = s.add_parser("run", help="drive a pump through the safety process and weigh it")
    r.add_argument("--duration-min", type=float, default=120.0, help="default 120")
    r.add_argument("--interval-s", type=float, default=30.0, help="default 30")
    r.add_argument("--syringe", default="bd-plastipak-50ml")
    r.add_argument("--mechanics", default="typical", help="emulated pump's mechanism")
    r.add_argument("--out", default="var/accuracy", help="folder for CSV, plots and report")
    r.add_argument("--library", metavar="PATH", help="drug library (with [test_fluids])")
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


def _report(result: Result, args: argparse.Namespace, context: dict[str, str]) -> int:
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
        print_json(to_json(result))
    else:
        print(to_text(result))
    return 0


def run_analyse(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        times, masses = read_csv(args.file)
    except ReadingsError as exc:
        bad_input(str(exc), "file")
    try:
        result = analyse(times, masses, settings)
    except AnalysisError as exc:
        where = f"{args.file}:{line_of(exc.index)}: " if exc.index is not None else f"{args.file}: "
        bad_input(where + str(exc), "file")
    return _report(result, args, {"file": str(args.file), "rate": f"{args.rate:g} mL/h"})


def run_run(args: argparse.Namespace) -> int:
    # lazy: the emulated bench (pump model, balance emulator, kernel) loads only here
    from controller.accuracy.run import RunError, record_run  # noqa: PLC0415
    from drivers.balances import BalanceError  # noqa: PLC0415
    from drivers.balances.mtsics import MtSicsBalance  # noqa: PLC0415
    from firmware_bridge.balance.emulator import MtSicsBalanceSide  # noqa: PLC0415
    from firmware_bridge.balance.physics import BalanceModel, Bench  # noqa: PLC0415
    from firmware_bridge.emulators.background import BackgroundLine  # noqa: PLC0415
    from firmware_bridge.faults import WireFaults  # noqa: PLC0415
    from firmware_bridge.mechanics import MechanicsSpecError, parse_mechanics  # noqa: PLC0415
    from safety.ipc.local import LocalSafety  # noqa: PLC0415

    settings = _settings(args)
    if not (1 <= args.interval_s <= 600):
        bad_input(f"--interval-s must be 1-600 s, got {args.interval_s}", "interval_s")
    if not (args.duration_min * 60 >= 3 * args.interval_s and args.duration_min <= 48 * 60):
        bad_input("--duration-min must cover 3 readings and at most 48 h", "duration_min")
    try:
        mechanics = parse_mechanics(args.mechanics)
    except MechanicsSpecError as exc:
        bad_input(f"--mechanics: {exc}", "mechanics")
    library = library_from_option(args.library)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        link = LocalSafety(library=library, syringe=args.syringe, mechanics=mechanics)
    except ValueError as exc:
        bad_input(f"--syringe: {exc}", "syringe")
    with link:
        link.attach()
        link.advance(5.0)
        bench = Bench(temperature_c=args.temperature or 20.0, evaporation_mg_min=args.evaporation)
        model = BalanceModel(link.clinical, link.pump, bench=bench)
        with BackgroundLine(MtSicsBalanceSide(model), WireFaults()) as line:
            balance = MtSicsBalance(port=line.where, reply_timeout_s=2.0)
            try:
                balance.connect()
                identity = balance.identify()

                def progress(i: int, n: int, grams: float) -> None:
                    if i % 20 == 0 or i == n:
                        print(f"reading {i}/{n}: {grams:.4f} g", file=sys.stderr)

                rec = record_run(
                    link,
                    library,
                    balance,
                    rate_ml_h=args.rate,
                    duration_s=args.duration_min * 60.0,
                    interval_s=args.interval_s,
                    now=link.clinical.now,
                    wait=link.advance,
                    progress=progress,
                )
            except (RunError, BalanceError) as exc:
                raise CommandError("run_failed", str(exc), EXIT_FAILED) from None
            finally:
                balance.close()
    csv_path = out / "readings.csv"
    write_csv(csv_path, rec.rows)
    try:
        result = analyse([r[0] for r in rec.rows], [r[1] for r in rec.rows], settings)
    except AnalysisError as exc:
        raise CommandError("run_failed", f"{csv_path}: {exc}", EXIT_FAILED) from None
    if not args.plots:
        args.plots = str(out)
    context = {
        "pump": f"emulated (virtual clock), mechanism {args.mechanics}",
        "syringe": args.syringe,
        "balance": f"{identity.model} (serial {identity.serial}), MT-SICS",
        "rate": f"{args.rate:g} mL/h, readings every {args.interval_s:g} s for "
        f"{args.duration_min:g} min",
        "model's own figures": f"start-up delay "
        f"{mechanics.startup_delay_s(link.pump.syringe, args.rate) / 60:.2f} min, mean flow "
        f"error {mechanics.mean_flow_error() * 100:+.2f} %",
        "readings": str(csv_path),
        "real time": f"{time.monotonic() - started:.1f} s",
    }
    return _report(result, args, context)
