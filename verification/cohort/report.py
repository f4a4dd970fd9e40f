"""A cohort for people: one table, and PNG plots.

The table has a row per sensitivity and condition, the closed loop beside the manual arm
(medians across patients, as the published studies report: the requests and refusals too,
per run), the in-band ratio of the two, and the ground-truth violations (all the
level's runs together: one is one too many, a median would hide it). The plots
(matplotlib, optional extra ``plot``; imported only here, with the non-interactive Agg
backend):

- ``map_<condition>.png``: every patient's physiological MAP over the scored hour, one
  panel per sensitivity, closed loop above and manual below, with the target band;
- ``dose_<condition>.png``: the doses, the same layout;
- ``metrics.png``: median time in band, MDAPE and wobble per sensitivity, both arms.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from controller.journal_plot import PlotUnavailable
from firmware_bridge.patient.params import Condition
from verification.cohort.cohort import CohortResult
from verification.cohort.metrics import cohort_medians
from verification.cohort.run import DOSE_UNIT, TRACE_EVERY_S, Arm, RunResult


def render_table(result: CohortResult) -> str:
    spec = result.spec
    d = spec.design
    lines = [
        f"cohort: {spec.patients} patient(s) x {len(spec.sensitivities)} "
        f"sensitivit{'ies' if len(spec.sensitivities) != 1 else 'y'} x "
        f"{len(spec.conditions)} condition(s) x {len(spec.arms)} arm(s), "
        f"{d.minutes:g} min each, start '{d.start.value}', target {d.target_mmhg:g} +- "
        f"{d.band_mmhg:g} mmHg, seed {d.seed}",
        f"{len(result.results)} runs in {result.real_s:.1f} s on {result.workers} worker(s); "
        f"ground-truth violations: {result.violations()}"
        + (f"; FAILED runs: {len(result.failures)}" if result.failures else ""),
        "medians across patients (req, refused: per run; MAP: the patient's physiological "
        f"pressure, every {d.monitor_period_s:g} s); in band, below and above are each their "
        "own median (they need not add to 100); drug: norepinephrine per kg over the run; "
        "viol: total over the level's runs",
        "",
        f"{'sens':>5} {'condition':<10} {'arm':<12} {'in band':>7} {'below':>6} {'above':>6} "
        f"{'<65':>5} {'<90%bl':>6} {'MDPE':>6} {'MDAPE':>6} {'wobble':>6} {'diverg':>7} "
        f"{'drug':>6} {'req':>5} {'refused':>7} {'viol':>4}",
        f"{'':>5} {'':<10} {'':<12} {'%':>7} {'%':>6} {'%':>6} {'%':>5} {'%':>6} {'%':>6} "
        f"{'%':>6} {'%':>6} {'%/h':>7} {'mcg/kg':>6}",
    ]
    for row in result.summary():
        m = row["median"]
        assert isinstance(m, dict)
        requests, refused = _per_run_medians(result, row)
        lines.append(
            f"{row['sensitivity']:>5g} {row['condition']:<10} {row['arm']:<12} "
            f"{m['in_band']:>7.1f} {m['below_band']:>6.1f} {m['above_band']:>6.1f} "
            f"{m['below_65']:>5.1f} {m['below_90pct_baseline']:>6.1f} {m['mdpe']:>6.2f} "
            f"{m['mdape']:>6.2f} {m['wobble']:>6.2f} {m['divergence']:>7.2f} "
            f"{row['drug_mcg_per_kg_median']:>6.2f} {requests:>5g} "
            f"{refused:>7g} {row['violations']:>4}"
        )
    ratios = result.ratio_to_manual()
    if ratios:
        lines += ["", "time in band, closed loop / manual (medians):"]
        for s in spec.sensitivities:
            for c in spec.conditions:
                key = f"{s:g}x {c.value}"
                if key in ratios:
                    lines.append(f"  {key:<18} {_ratio_text(ratios[key], result, s, c)}")
    for failure in result.failures[:10]:
        lines.append(f"FAILED {failure.spec}: {failure.error}")
    return "\n".join(lines)


def _ratio_text(value: float | None, result: CohortResult, s: float, c: Condition) -> str:
    """A ratio, or why there is none: the manual arm had 0 % in band (the loop's own
    figure then says how much better it did; a bare '-' read as "no data")."""
    if value is not None:
        return f"{value:.2f}"
    runs = result.group(s, c, Arm.CLOSED_LOOP)
    loop = cohort_medians(r.performance for r in runs)["in_band"]
    return "none: both 0 %" if loop == 0 else f"none: manual 0 %, closed loop {loop:.1f} %"


def _per_run_medians(result: CohortResult, row: dict[str, object]) -> tuple[float, float]:
    """The median across ``row``'s level of each run's requests, and of each run's
    refusals. The summary's (and the JSON's) figures are totals over the level's runs;
    under a "medians" heading they would grow with ``--patients`` and read as one run's."""
    sensitivity = float(str(row["sensitivity"]))
    group = result.group(sensitivity, Condition(str(row["condition"])), Arm(str(row["arm"])))
    return (
        statistics.median(r.requests for r in group),
        statistics.median(sum(r.refusals.values()) for r in group),
    )


def plots(result: CohortResult, out_dir: Path) -> list[Path]:
    """Draw the plots into ``out_dir``; the files written."""
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency, only for plots

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415
    except ImportError:
        raise PlotUnavailable(
            "plots need matplotlib: pip install 'pumpctl[plot]' (--out writes cohort.json "
            "without them)"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = result.spec
    d = spec.design
    low, high = d.target_mmhg - d.band_mmhg, d.target_mmhg + d.band_mmhg
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    written: list[Path] = []
    for condition in spec.conditions:
        groups = {
            (arm, s): result.group(s, condition, arm)
            for arm in spec.arms
            for s in spec.sensitivities
        }
        for what, index in (("map", 1), ("dose", 2)):
            columns = len(spec.sensitivities)
            fig, axes = plt.subplots(
                len(spec.arms),
                columns,
                figsize=(max(2.6 * columns, 8.0), 2.5 * len(spec.arms) + 0.9),
                sharex=True,
                sharey=True,  # one scale: the arms and the levels compare by eye
                squeeze=False,
            )
            values = [p[index] for runs in groups.values() for r in runs for p in r.trace]
            for row, arm in enumerate(spec.arms):
                for col, s in enumerate(spec.sensitivities):
                    ax = axes[row][col]
                    runs = groups[(arm, s)]
                    _traces(ax, runs, index, steps=what == "dose")
                    if what == "map":
                        ax.axhspan(
                            low, high, color="tab:green", alpha=0.15,
                            label=f"target {d.target_mmhg:g} +- {d.band_mmhg:g} mmHg",
                        )  # fmt: skip
                    ax.set_title(f"{s:g}x, {_ARM_NAMES[arm]} ({len(runs)})", fontsize=8)
                    ax.tick_params(labelsize=7)
                    ax.grid(True, alpha=0.25)
                    if row == len(spec.arms) - 1:
                        ax.set_xlabel(f"min since {_ZERO[d.start.value]}", fontsize=7)
            first = axes[0][0]
            if what == "map":
                first.set_ylim(*_map_range(values, low, high))
                label = "physiological MAP (mmHg)"
            else:
                first.set_yscale("log")  # 0.1x needs a hundred times the dose of 10x
                first.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 3.0, 5.0)))
                first.yaxis.set_major_formatter(plain)
                first.yaxis.set_minor_formatter(NullFormatter())
                label = f"norepinephrine set dose ({DOSE_UNIT})"
            for row in range(len(spec.arms)):
                axes[row][0].set_ylabel(label, fontsize=7)
            if first.get_legend_handles_labels()[0]:
                first.legend(fontsize=6, loc="lower right")
            fig.suptitle(
                f"{_TITLES[what]}, {condition.value} vasodilation\n{_design_line(result)}; "
                f"a point every {TRACE_EVERY_S:g} s",
                fontsize=9,
            )
            fig.tight_layout()
            path = out_dir / f"{what}_{condition.value}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    written.append(_metrics_plot(result, out_dir, plt, NullFormatter()))
    return written


_TITLES = {"map": "MAP per sensitivity", "dose": "Dose per sensitivity"}
_ARM_NAMES = {Arm.CLOSED_LOOP: "closed loop", Arm.MANUAL: "manual"}
#: what minute 0 of a run's scored hour is, per start design
_ZERO = {"onset": "the infusion's start", "takeover": "the hand-over at target"}


def _design_line(result: CohortResult) -> str:
    spec = result.spec
    d = spec.design
    return (
        f"start '{d.start.value}', {spec.patients} patient{'s' if spec.patients != 1 else ''} "
        f"per level, {d.minutes:g} min, seed {d.seed}"
    )


def _traces(ax: Any, runs: list[RunResult], index: int, *, steps: bool) -> None:
    """Each patient faintly (fainter as there are more), the median and the
    interquartile range across patients bold: what a cohort did, and its spread.
    ``steps``: a dose holds until the next point (no slope between two settings)."""
    if not runs:
        return
    alpha = max(0.06, min(0.6, 3.0 / len(runs)))
    drawstyle = "steps-post" if steps else "default"
    for run in runs:
        ax.plot(
            [p[0] for p in run.trace], [p[index] for p in run.trace],
            linewidth=0.6, alpha=alpha, color="tab:blue", drawstyle=drawstyle,
        )  # fmt: skip
    length = min(len(r.trace) for r in runs)
    if len(runs) < 3 or length == 0:
        return
    xs = [runs[0].trace[i][0] for i in range(length)]
    quartiles = [
        statistics.quantiles([r.trace[i][index] for r in runs], n=4, method="inclusive")
        for i in range(length)
    ]
    ax.fill_between(
        xs, [q[0] for q in quartiles], [q[2] for q in quartiles],
        color="tab:orange", alpha=0.25, linewidth=0, label="interquartile range",
        step="post" if steps else None,
    )  # fmt: skip
    ax.plot(
        xs, [q[1] for q in quartiles],
        color="tab:orange", linewidth=1.4, label="median", drawstyle=drawstyle,
    )  # fmt: skip


def _map_range(values: list[float], low: float, high: float) -> tuple[float, float]:
    """The band with room around it, and every drawn MAP: nothing is clipped."""
    finite = [v for v in values if math.isfinite(v)]
    bottom = min([low - 15.0, *finite])
    top = max([high + 15.0, *finite])
    return (max(0.0, math.floor(bottom / 10.0) * 10.0), math.ceil(top / 10.0) * 10.0)


def _metrics_plot(result: CohortResult, out_dir: Path, plt: Any, no_labels: Any) -> Path:
    spec = result.spec
    rows = result.summary()
    figure_names = (
        ("in_band", "time in band (%)"),
        ("mdape", "MDAPE (%)"),
        ("wobble", "wobble (%)"),
    )
    fig, axes = plt.subplots(
        len(spec.conditions), len(figure_names), figsize=(12, 3.2 * len(spec.conditions) + 0.6),
        squeeze=False,
    )  # fmt: skip
    arms = (
        (Arm.CLOSED_LOOP, {"marker": "o", "linestyle": "-"}),
        (Arm.MANUAL, {"marker": "s", "linestyle": "--", "markerfacecolor": "none"}),
    )
    for r, condition in enumerate(spec.conditions):
        for c, (key, label) in enumerate(figure_names):
            ax = axes[r][c]
            for arm, style in arms:
                xs, ys = [], []
                for row in rows:
                    if row["condition"] == condition.value and row["arm"] == arm.value:
                        median = row["median"]
                        assert isinstance(median, dict)
                        xs.append(float(str(row["sensitivity"])))
                        ys.append(median[key])
                if xs:
                    ax.plot(xs, ys, label=_ARM_NAMES[arm], markersize=6, **style)
            ax.set_xscale("log")
            ax.set_xticks(list(spec.sensitivities))
            ax.set_xticklabels([f"{s:g}x" for s in spec.sensitivities], fontsize=7)
            ax.xaxis.set_minor_formatter(no_labels)  # the log axis's own labels overprint
            ax.tick_params(axis="x", which="minor", length=0)
            ax.set_xlabel("drug sensitivity (x the population's)", fontsize=7)
            ax.set_title(f"{label}, {condition.value}", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.set_ylim(0, 100 if key == "in_band" else None)
            ax.legend(fontsize=7)
    d = spec.design
    fig.suptitle(
        f"Medians across patients: {_design_line(result)}; target {d.target_mmhg:g} +- "
        f"{d.band_mmhg:g} mmHg",
        fontsize=9,
    )
    fig.tight_layout()
    path = out_dir / "metrics.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
