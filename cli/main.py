"""The ``pumpctl`` command line: one entry point, one module per sub-command.

Every command reports bad input as a one-line error naming the field (exit 2), never a
traceback; ``--json`` turns any report, including errors, into one JSON object.
"""

from __future__ import annotations

import argparse
import sys

from cli.commands import accuracy as accuracy_cmd
from cli.commands import bench as bench_cmd
from cli.commands import (
    calc,
    cohort,
    dashboard,
    demo,
    emulate,
    fleet,
    library_cmd,
    run,
    telemetry,
)
from cli.commands import journal as journal_cmd
from cli.commands import scenario as scenario_cmd
from cli.commands.output import EXIT_BAD_INPUT, CommandError, report_error, stdout_may_close


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors can be JSON too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandError("usage", f"{self.prog}: {message}", EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pumpctl",
        description="Research-bench syringe pump controller with an independent safety "
        "process. NOT a certified medical device.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    demo.add_parser(sub)
    calc.add_parser(sub)
    library_cmd.add_parser(sub)
    run.add_parser(sub)
    emulate.add_parser(sub)
    scenario_cmd.add_parser(sub)
    journal_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    accuracy_cmd.add_parser(sub)
    dashboard.add_parser(sub)
    telemetry.add_parser(sub)
    fleet.add_parser(sub)
    cohort.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_list
    if args_list[:1] == ["emulate"]:
        # every argument belongs to the emulator, --help included (argparse's REMAINDER
        # would take a leading option for pumpctl's own)
        return emulate.run(argparse.Namespace(args=args_list[1:]))
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        # every command's output may be piped to a reader that quits early (``| head``)
        result: int = stdout_may_close(args.handler)(args)
        return result
    except CommandError as exc:
        return report_error(exc, as_json)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
