"""``pumpctl bench``: how fast the stack is, each figure beside its goal (issue 6).

Figures, not a test: the exit status is 0 whether or not a figure meets its goal (the
table and the JSON say which do); 1 only when a figure could not be measured at all, 2
for bad arguments, 130 on Ctrl-C. Every process, pty, socket and file the run made is
gone when it returns, interrupted or not. Progress goes to stderr; with ``--json``
stdout carries one JSON object and nothing else. Measured figures and the machine they
came from: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from benchmarks import interrupt as interrupt_flag
from benchmarks.report import render_table
from benchmarks.suite import BENCHMARKS, OPT_IN, Settings, run
from cli.commands.output import EXIT_FAILED, EXIT_OK, SubParsers, bad_input, print_json

MAX_COMMANDS = 1_000_000


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "bench",
        help="measure command latency, overheads, liveness, simulation speed and memory",
        description="Run the benchmarks of issue 6 on this machine and print each figure "
        "with its goal (figures, not pass/fail: exit 0 either way; 1 if a figure could not "
        "be measured). Takes a few minutes; --quick is a smoke run of a few seconds.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--quick", action="store_true", help="few repetitions: checks the plumbing, not speed"
    )
    p.add_argument(
        "--commands",
        type=int,
        metavar="N",
        help="commands per latency path (default 1000; 20 with --quick)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS + OPT_IN,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS + OPT_IN)}",
    )
    p.add_argument(
        "--observe",
        action="store_true",
        help="also the heavy observer benchmarks (a few minutes): the dashboard with 5 "
        "clients and a 1,000-bench fleet through one Mosquitto with a 30 s outage",
    )
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where the run's journals, sockets and logs go (default: the system temp "
        "directory); its disk's flush time is part of every command's latency",
    )
    p.add_argument("--keep", action="store_true", help="keep the run's directory (logs) afterwards")
    p.add_argument(
        "--cohort",
        action="store_true",
        help="closed loop: the published cohort size (7 x 250 patients, about 15 min on 2 "
        "cores) instead of the reduced one; alone it runs only the closed_loop benchmark",
    )
    p.set_defaults(handler=run_command)


def settings_from(args: argparse.Namespace) -> Settings:
    changes: dict[str, object] = {}
    if args.commands is not None:
        if not (1 <= args.commands <= MAX_COMMANDS):
            bad_input(f"--commands must be 1-{MAX_COMMANDS}, got {args.commands}", "commands")
        changes["commands"] = args.commands
    if args.only:
        changes["only"] = tuple(name for name in BENCHMARKS + OPT_IN if name in args.only)
    elif getattr(args, "cohort", False):
        changes["only"] = ("closed_loop",)
    if getattr(args, "observe", False):
        base = changes.get("only", BENCHMARKS)
        assert isinstance(base, tuple)
        changes["only"] = (*base, *(n for n in OPT_IN if n not in base))
    if getattr(args, "cohort", False):
        changes["cohort"] = True
    if args.work_dir is not None:
        work_dir = Path(args.work_dir).expanduser()
        if work_dir.exists() and not work_dir.is_dir():
            bad_input(f"--work-dir {work_dir} is not a directory", "work_dir")
        changes["work_dir"] = work_dir
    changes["keep"] = bool(args.keep)
    return Settings.quick_run(**changes) if args.quick else Settings.full(**changes)


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    def progress(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    with _sigterm_as_interrupt():
        report = run(settings, progress)
    if args.json:
        print_json(report.to_json())
    else:
        print(render_table(report))
    return EXIT_FAILED if any(f.met is None for f in report.figures) else EXIT_OK


#: after an interrupt, the clean-up (every child stopped, the directory removed) gets this
#: long; past it the run prints every thread's stack to stderr and exits (status 1)
#: rather than hang: the stack says where, and the next run's clean-up finds the strays
CLEANUP_BACKSTOP_S = 30.0


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C: through the clean-up, not around it.
    Each of them (Ctrl-C too) arms a backstop, so an interrupted run can never hang."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        interrupt_flag.requested.set()  # in case the exception below is swallowed
        faulthandler.dump_traceback_later(CLEANUP_BACKSTOP_S, exit=True)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    interrupt_flag.requested.clear()
    try:
        yield
    finally:  # the run's own clean-up is done by now
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["add_parser", "run_command", "settings_from"]
