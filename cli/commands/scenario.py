"""``pumpctl scenario run FILE``: run a declarative scenario and judge its expectations.

A scenario (TOML, docs/scenarios.md) sets up a bench, carries out timed operator actions,
injects pump, wire and process faults, and states expectations (an alarm within N s of a
fault, an order refused with a given reason, a rate never above a figure, the wean rule
held on the pump's ground truth...). By default it runs in this process on virtual
clocks (the real safety core, in seconds, reproducibly); ``--real`` runs the emulator,
the safety process and this controller as real processes on a scaled clock.

Exit status: 0 every expectation holds, 1 one failed (it is named) or the run could not
go on, 2 a bad file (every problem with its line) or bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from cli.commands.output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    SubParsers,
    library_from_option,
    print_json,
)
from controller.journal_plot import PlotUnavailable, plot, plot_data
from controller.logfile import log_to_file
from verification.scenario import (
    ScenarioFileError,
    ScenarioRunError,
    load_scenario,
    run_scenario,
)
from verification.scenario.report import json_report, text_report


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "scenario",
        help="run a declarative scenario (bench, actions, faults, expectations)",
        description="Run scenario files (docs/scenarios.md; examples in config/scenarios/).",
    )
    ssub = p.add_subparsers(dest="scenario_command", metavar="ACTION")
    ssub.required = True
    run = ssub.add_parser(
        "run",
        help="run one scenario and judge its expectations",
        description="Exit 0 when every expectation holds, 1 when one fails (named), 2 for a "
        "bad file (the error names the line).",
    )
    run.add_argument("file", metavar="FILE", help="the scenario (TOML)")
    run.add_argument("--json", action="store_true", help="one JSON object with every verdict")
    run.add_argument(
        "--real",
        action="store_true",
        help="real processes: emulator on a pty/TCP, safety process, scaled clinical clock",
    )
    run.add_argument("--out", metavar="DIR", help="keep the run's journals (and logs) in DIR")
    run.add_argument(
        "--plot", metavar="FILE.png", help="draw dose and rate over time (needs matplotlib)"
    )
    run.add_argument("--library", metavar="FILE", help="drug library (default: the bench's)")
    run.add_argument("--quiet", action="store_true", help="no live timeline, only the verdicts")
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    library = library_from_option(args.library)
    try:
        loaded = load_scenario(args.file)
    except ScenarioFileError as exc:
        return _bad_file(exc, args.json)
    name = loaded.scenario.scenario.name
    echo = None
    if not args.json:
        print(f"scenario: {name} ({args.file})")
        for line in loaded.scenario.scenario.description.strip().splitlines():
            print(f"  {line}")
        print("timeline (clinical time since the start):")
        if not args.quiet:
            echo = print
    keep = args.out is not None
    holder = None
    if keep:
        out_dir = Path(args.out)
    else:
        holder = tempfile.TemporaryDirectory(prefix="pumpctl-scenario-", dir=_scratch())
        out_dir = Path(holder.name)
    try:
        try:
            with log_to_file(out_dir / "scenario.log"):
                run, evaluation = run_scenario(
                    loaded, out_dir, real=args.real, library=library, echo=echo
                )
        except ScenarioFileError as exc:
            return _bad_file(exc, args.json)
        except ScenarioRunError as exc:
            if args.json:
                print_json({"error": {"code": "scenario_not_run", "message": str(exc)}})
            else:
                print(f"pumpctl: scenario {name!r} could not run: {exc}", file=sys.stderr)
            return EXIT_FAILED
        plotted = None
        if args.plot:
            data = plot_data(
                evaluation.journals.events,
                alarms=evaluation.journals.alarms(cleared=True),
                truth=run.truths if len(run.truths) > 1 else [*run.prior_truth, *run.truth],
                title=f"scenario {name}",
                end=run.end,
            )
            try:
                plotted = str(plot(data, args.plot))
            except (PlotUnavailable, OSError) as exc:
                print(f"pumpctl: no plot: {exc}", file=sys.stderr)
        if args.json:
            print_json(json_report(loaded, run, evaluation, kept=keep, plot=plotted))
        else:
            print(text_report(loaded, run, evaluation))
            if keep:
                print(f"journals kept in {out_dir} (pumpctl journal show --dir {out_dir})")
            if plotted:
                print(f"plot written to {plotted}")
        return EXIT_OK if evaluation.passed else EXIT_FAILED
    finally:
        if holder is not None:
            holder.cleanup()


def _scratch() -> str | None:
    """A RAM-backed folder for a run nobody keeps: its journals are thrown away, and
    syncing them to a disk would take most of the run's time."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _bad_file(exc: ScenarioFileError, as_json: bool) -> int:
    if as_json:
        print_json(
            {
                "error": {
                    "code": "bad_scenario",
                    "message": str(exc),
                    "problems": exc.to_json(),
                }
            }
        )
    else:
        print(f"pumpctl: bad scenario file:\n{exc}", file=sys.stderr)
    return EXIT_BAD_INPUT
