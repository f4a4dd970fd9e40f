"""``pumpctl cohort``: the closed loop and a manual arm on a Monte Carlo cohort (issue 11).

N simulated patients x sensitivities (default 0.1, 0.2, 0.5, 1, 2, 5, 10x) x background
vasodilation (stable, wandering) x arm (closed loop, manual protocol), 60 simulated
minutes each, every run through the real safety code in one process on a virtual clock,
on every core. Prints a table (or ``--json``), writes ``cohort.json`` and the PNG plots
with ``--out DIR``. Deterministic: the same seed gives the same JSON on any number of
workers. Design and figures: docs/closed-loop.md.

Exit 0 when every run finished and no run broke a safety invariant on the delivered flow;
1 when a run failed or an invariant broke (both are named), or when ``--out`` could not be
written after the run (the results are printed all the same); 2 bad arguments, an
``--out`` that cannot be made or written checked before anything runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

from benchmarks import interrupt
from cli.commands.output import (
    EXIT_FAILED,
    EXIT_OK,
    SubParsers,
    bad_input,
    json_text,
    library_from_option,
    print_json,
)
from controller.journal_plot import PlotUnavailable
from firmware_bridge.patient.params import Condition
from verification.cohort.cohort import (
    ARMS,
    CONDITIONS,
    SENSITIVITIES,
    CohortResult,
    CohortSpec,
    default_workers,
    run_cohort,
)
from verification.cohort.report import plots, render_table
from verification.cohort.run import Arm, Design, Start

MAX_PATIENTS = 100_000
E = TypeVar("E", Condition, Arm)
MAX_WORKERS = 256


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "cohort",
        help="closed loop vs manual titration on a simulated patient cohort",
        description="Run the closed-loop norepinephrine controller and a manual-titration "
        "arm on N simulated patients at each sensitivity and vasodilation condition "
        "(docs/closed-loop.md). Every run goes through the real safety rules; the "
        "delivered flow of each is checked for violations.",
    )
    p.add_argument("--patients", type=int, default=20, metavar="N", help="per level (20)")
    p.add_argument(
        "--sensitivities",
        metavar="LIST",
        default=",".join(f"{s:g}" for s in SENSITIVITIES),
        help="comma-separated potency factors (default 0.1,0.2,0.5,1,2,5,10)",
    )
    p.add_argument(
        "--conditions",
        metavar="LIST",
        default=",".join(c.value for c in CONDITIONS),
        help="stable, wandering (default both)",
    )
    p.add_argument(
        "--arms",
        metavar="LIST",
        default=",".join(a.value for a in ARMS),
        help="closed_loop, manual (default both)",
    )
    p.add_argument(
        "--start",
        choices=[s.value for s in Start],
        default=Start.ONSET.value,
        help="onset: hypotensive, no drug yet (the published design); takeover: titrated "
        "to target first, then scored (default onset)",
    )
    p.add_argument("--minutes", type=float, default=60.0, help="scored minutes per run (60)")
    p.add_argument("--seed", default="1", help="population seed (default 1)")
    p.add_argument("--target", type=float, default=80.0, help="MAP target, mmHg (80)")
    p.add_argument("--band", type=float, default=5.0, help="+- band around it, mmHg (5)")
    p.add_argument("--start-dose", default="0.02", help="onset start, mcg/kg/min (0.02)")
    p.add_argument("--wander", type=float, help="wandering amplitude, +- mmHg (default 10)")
    p.add_argument("--workers", type=int, help=f"processes (default: cores, {default_workers()})")
    p.add_argument("--library", metavar="FILE", help="drug library (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="DIR", help="write cohort.json and the PNG plots to DIR")
    p.add_argument("--traces", action="store_true", help="include every run's trace in the JSON")
    p.set_defaults(handler=run_command)


def spec_from(args: argparse.Namespace) -> CohortSpec:
    if not (1 <= args.patients <= MAX_PATIENTS):
        bad_input(f"--patients must be 1-{MAX_PATIENTS}, got {args.patients}", "patients")
    if not (1.0 <= args.minutes <= 24 * 60.0):
        bad_input(f"--minutes must be 1-1440, got {args.minutes:g}", "minutes")
    if not (40.0 <= args.target <= 140.0):
        bad_input(f"--target must be 40-140 mmHg, got {args.target:g}", "target")
    if not (1.0 <= args.band <= 30.0):
        bad_input(f"--band must be 1-30 mmHg, got {args.band:g}", "band")
    if args.wander is not None and not (0.0 <= args.wander <= 40.0):
        bad_input(f"--wander must be 0-40 mmHg, got {args.wander:g}", "wander")
    try:
        start_dose = Decimal(args.start_dose)
    except InvalidOperation:
        bad_input(f"--start-dose must be a number, got {args.start_dose!r}", "start_dose")
    if not (start_dose.is_finite() and Decimal("0.005") <= start_dose <= Decimal("0.1")):
        bad_input(
            f"--start-dose must be 0.005-0.1 mcg/kg/min (the library's max start), got "
            f"{args.start_dose}",
            "start_dose",
        )
    if not (1 <= len(args.seed) <= 64):
        bad_input("--seed must be 1-64 characters", "seed")
    design = Design(
        seed=args.seed,
        minutes=args.minutes,
        start=Start(args.start),
        target_mmhg=args.target,
        band_mmhg=args.band,
        start_dose=start_dose,
        wander_mmhg=args.wander,
    )
    return CohortSpec(
        design,
        patients=args.patients,
        sensitivities=_sensitivities(args.sensitivities),
        conditions=_choices(args.conditions, Condition, "conditions"),
        arms=_choices(args.arms, Arm, "arms"),
    )


def _sensitivities(text: str) -> tuple[float, ...]:
    values: list[float] = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            bad_input(f"--sensitivities: {part!r} is not a number", "sensitivities")
        if not (0.01 <= value <= 100.0):
            bad_input(f"--sensitivities: each must be 0.01-100, got {part}", "sensitivities")
        if value not in values:
            values.append(value)
    return tuple(values)


def _choices(text: str, kind: type[E], name: str) -> tuple[E, ...]:
    out: list[E] = []
    for part in text.split(","):
        try:
            value = kind(part.strip())
        except ValueError:
            allowed = ", ".join(k.value for k in kind)
            bad_input(f"--{name}: {part!r} is not one of {allowed}", name)
        if value not in out:
            out.append(value)
    return tuple(out)


def run_command(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    workers = args.workers
    if workers is not None and not (1 <= workers <= MAX_WORKERS):
        bad_input(f"--workers must be 1-{MAX_WORKERS}, got {workers}", "workers")
    library = library_from_option(args.library)
    out_dir = Path(args.out).expanduser() if args.out else None
    if out_dir is not None:
        _prepare_out(out_dir)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"cohort: {done}/{total} runs", file=sys.stderr, flush=True)

    result = run_cohort(
        spec, library, workers=workers, progress=progress, check_interrupt=interrupt.check
    )
    body = result.to_json(traces=args.traces)
    unwritten = None if out_dir is None else _write_out(out_dir, result, body)
    if args.json:
        print_json(body)
    else:
        print(render_table(result))
    if unwritten is not None:
        # after the results, so that it is the last word and nothing printed is lost
        print(f"cohort: error: --out {out_dir}: {unwritten}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if result.failures or result.violations() else EXIT_OK


def _prepare_out(out_dir: Path) -> None:
    """Make ``out_dir`` and try a file in it before the cohort runs: finding out only when
    the results are written would come after minutes or hours of runs."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        bad_input(f"--out {out_dir}: exists and is not a directory", "out")
    except OSError as exc:
        bad_input(f"--out {out_dir}: cannot create the directory: {_reason(exc)}", "out")
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        bad_input(f"--out {out_dir}: cannot write in the directory: {_reason(exc)}", "out")


def _write_out(out_dir: Path, result: CohortResult, body: dict[str, object]) -> str | None:
    """Write ``cohort.json`` and the plots; what failed, or None. A failure is returned,
    not raised: the results are already computed and are still printed."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cohort.json").write_text(json_text(body, indent=1), encoding="utf-8")
    except OSError as exc:
        return f"cannot write cohort.json: {_reason(exc)}; the results are on stdout only"
    try:
        written = plots(result, out_dir)
    except PlotUnavailable as exc:
        print(f"cohort: no plots: {exc}", file=sys.stderr)
    except OSError as exc:
        return f"wrote cohort.json but not the plots: {_reason(exc)}"
    else:
        print(f"cohort: wrote {len(written)} plot(s) to {out_dir}", file=sys.stderr)
    return None


def _reason(exc: OSError) -> str:
    """The system's words without the path (the message names it already)."""
    return exc.strerror or str(exc)


__all__ = ["add_parser", "run_command", "spec_from"]
