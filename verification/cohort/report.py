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

import statistics
from pathlib import Path

from controller.journal_plot import PlotUnavailable
from firmware_bridge.patient.params import Condition
from verification.cohort.cohort import CohortResult
from verification.cohort.run import Arm


def render_table(result: CohortResult) -> str:
    spec = result.spec
    d = spec.design
    lines = [
        f"cohort: {spec.patients} patient(s) x {len(spec.sensitivities)} sensitivities x "
        f"{len(spec.conditions)} condition(s) x {len(spec.arms)} arm(s), "
        f"{d.minutes:g} min each, start '{d.start.value}', target {d.target_mmhg:g} +- "
        f"{d.band_mmhg:g} mmHg, seed {d.seed}",
        f"{len(result.results)} runs in {result.real_s:.1f} s on {result.workers} worker(s); "
        f"ground-truth violations: {result.violations()}"
        + (f"; FAILED runs: {len(result.failures)}" if result.failures else ""),
        "medians across patients (req, refused: per run; MAP: the patient's physiological "
        "pressure, every 2 s); viol: total over the level's runs",
        "",
        f"{'sens':>5} {'condition':<10} {'arm':<12} {'in band':>7} {'below':>6} {'above':>6} "
        f"{'<65':>5} {'<90%bl':>6} {'MDPE':>6} {'MDAPE':>6} {'wobble':>6} {'diverg':>7} "
        f"{'drug':>6} {'req':>5} {'refused':>7} {'viol':>4}",
        f"{'':>5} {'':<10} {'':<12} {'%':>7} {'%':>6} {'%':>6} {'%':>5} {'%':>6} {'%':>6} "
        f"{'%':>6} {'%':>6} {'%/h':>7} {'ug/kg':>6}",
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
        lines += [
            f"  {key:<18} {'-' if value is None else f'{value:.2f}'}"
            for key, value in ratios.items()
        ]
    for failure in result.failures[:10]:
        lines.append(f"FAILED {failure.spec}: {failure.error}")
    return "\n".join(lines)


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
    except ImportError:
        raise PlotUnavailable(
            "plots need matplotlib: pip install 'pumpctl[plot]' (--out writes cohort.json "
            "without them)"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = result.spec
    d = spec.design
    low, high = d.target_mmhg - d.band_mmhg, d.target_mmhg + d.band_mmhg
    written: list[Path] = []
    for condition in spec.conditions:
        for what, index, ylabel in (("map", 1, "MAP (mmHg)"), ("dose", 2, "mcg/kg/min")):
            fig, axes = plt.subplots(
                len(spec.arms),
                len(spec.sensitivities),
                figsize=(2.4 * len(spec.sensitivities), 2.4 * len(spec.arms)),
                sharex=True,
                sharey="row" if what == "map" else False,
                squeeze=False,
            )
            for row, arm in enumerate(spec.arms):
                for col, s in enumerate(spec.sensitivities):
                    ax = axes[row][col]
                    for run in result.group(s, condition, arm):
                        xs = [p[0] for p in run.trace]
                        ys = [p[index] for p in run.trace]
                        ax.plot(xs, ys, linewidth=0.4, alpha=0.35, color="tab:blue")
                    if what == "map":
                        ax.axhspan(low, high, color="tab:green", alpha=0.15)
                        ax.set_ylim(40, 140)
                    else:
                        ax.set_yscale("log")
                    ax.set_title(f"{s:g}x {arm.value}", fontsize=8)
                    ax.tick_params(labelsize=6)
                    if col == 0:
                        ax.set_ylabel(ylabel, fontsize=7)
                    if row == len(spec.arms) - 1:
                        ax.set_xlabel("min", fontsize=7)
            fig.suptitle(
                f"{what.upper()} per sensitivity, {condition.value} vasodilation, start "
                f"'{d.start.value}' ({spec.patients} patients, seed {d.seed})",
                fontsize=9,
            )
            fig.tight_layout()
            path = out_dir / f"{what}_{condition.value}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    written.append(_metrics_plot(result, out_dir, plt))
    return written


def _metrics_plot(result: CohortResult, out_dir: Path, plt: object) -> Path:
    spec = result.spec
    rows = result.summary()
    figure_names = (
        ("in_band", "time in band (%)"),
        ("mdape", "MDAPE (%)"),
        ("wobble", "wobble (%)"),
    )
    fig, axes = plt.subplots(  # type: ignore[attr-defined]
        len(spec.conditions), len(figure_names), figsize=(12, 3.2 * len(spec.conditions)),
        squeeze=False,
    )  # fmt: skip
    for r, condition in enumerate(spec.conditions):
        for c, (key, label) in enumerate(figure_names):
            ax = axes[r][c]
            for arm, style in ((Arm.CLOSED_LOOP, "o-"), (Arm.MANUAL, "s--")):
                xs, ys = [], []
                for row in rows:
                    if row["condition"] == condition.value and row["arm"] == arm.value:
                        median = row["median"]
                        assert isinstance(median, dict)
                        xs.append(float(str(row["sensitivity"])))
                        ys.append(median[key])
                if xs:
                    ax.plot(xs, ys, style, label=arm.value)
            ax.set_xscale("log")
            ax.set_xticks(list(spec.sensitivities))
            ax.set_xticklabels([f"{s:g}x" for s in spec.sensitivities], fontsize=7)
            ax.set_title(f"{label}, {condition.value}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if key == "in_band":
                ax.set_ylim(0, 100)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "metrics.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)  # type: ignore[attr-defined]
    return path
