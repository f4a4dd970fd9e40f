"""``pumpctl demo``: a norepinephrine course on the emulated NE-1000, safety process and
all, on a scaled clinical clock (see ``cli/demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.commands.output import EXIT_FAILED, EXIT_OK, SubParsers, bad_input, json_text, print_json
from cli.demo.bench import DemoBench
from cli.demo.script import Timeline, run_course
from cli.demo.summary import summarise
from controller.errors import ControllerError


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "demo",
        help="run a demo infusion on two emulated NE-1000s with the safety process",
        description="Start two NE-1000 emulators at addresses 0 and 1 on one pty line and "
        "the safety process owning both (channels A and B), then run a norepinephrine "
        "course that outlives A's syringe: rescue start, refused orders, titration, an "
        "occlusion and its recovery, a relief syringe on B (a wrong strength refused, "
        "primed to waste, armed), the safety process's own handover from A to B, and a "
        "gradual wean to stop. The summary is checked on both pumps' delivered flow, "
        "summed. Writes the journals, the pumps' ground truth (and a plot when "
        "matplotlib is installed) to --out.",
    )
    p.add_argument("--out", default="var/demo", help="output folder (default var/demo)")
    p.add_argument(
        "--speed",
        type=float,
        default=300.0,
        help="clinical clock speed-up (default 300: about five hours in one minute)",
    )
    p.add_argument("--json", action="store_true", help="print only a JSON summary")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not (10.0 <= args.speed <= 2000.0):
        bad_input(f"--speed: {args.speed} is outside 10-2000", "speed")
    out_dir = Path(args.out).resolve()
    bench = DemoBench(out_dir, args.speed)
    timeline = Timeline(bench.clock.now, echo=not args.json)
    try:
        alarms = run_course(bench, timeline)
    except ControllerError as exc:
        if args.json:
            print_json({"error": {"code": exc.code, "message": exc.message}})
        else:
            print(f"pumpctl demo: FAILED: {exc.message}")
            print(f"  logs and journals in {out_dir}")
        return EXIT_FAILED
    summary = summarise(out_dir, args.speed, alarms, timeline.lines)
    (out_dir / "summary.json").write_text(json_text(summary, indent=2), encoding="utf-8")
    if args.json:
        print_json(summary)
    else:
        print()
        for line in summary["report"]:
            print(line)
    return EXIT_OK if summary["ok"] else EXIT_FAILED
