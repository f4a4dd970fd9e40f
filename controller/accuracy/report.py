"""The accuracy figures for people: JSON, a text table, PNG plots and a Markdown report.

Plots follow the usual layout of pump test reports: the start-up curve (flow of every
interval against time, with the set rate) and the trumpet curve (Ep max and min against
the window P, with the mean flow error). matplotlib is optional and imported only here,
as ``controller.journal_plot`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.accuracy.analysis import Period, Result
from controller.journal_plot import PlotUnavailable


def _trumpet(period: Period, windows: tuple[int, ...], counts: bool) -> dict[str, Any]:
    """Every window asked for, by its minutes as text; one that did not fit in the period
    has null figures (the keys stay: readers can rely on them)."""
    found = {t.window_min: t for t in period.trumpet}
    out: dict[str, Any] = {}
    for p in windows:
        t = found.get(p)
        entry: dict[str, Any] = {
            "max_pct": None if t is None else t.max_pct,
            "min_pct": None if t is None else t.min_pct,
        }
        if counts:
            entry["windows"] = 0 if t is None else t.windows
        out[str(p)] = entry
    return out


def to_json(result: Result) -> dict[str, Any]:
    """One object: ``rate_ml_h``, ``mean_error_pct``, ``startup_delay_min`` and ``trumpet``
    (``"2"`` ... ``"31"``, each ``max_pct`` and ``min_pct``) for the first analysis period,
    the other figures, and every period's own error and trumpet under ``periods``."""
    main = result.main
    windows = result.settings.windows_min
    return {
        "rate_ml_h": result.settings.rate_ml_h,
        "density_g_ml": result.settings.density_g_ml,
        "evaporation_mg_min": result.settings.evaporation_mg_min,
        "sampling_s": round(result.sampling_min * 60.0, 6),
        "duration_min": result.duration_min,
        "mean_flow_ml_h": main.mean_flow_ml_h,
        "mean_error_pct": main.mean_error_pct,
        "startup_delay_min": result.startup_delay_min,
        "first_delivery_min": result.first_delivery_min,
        "steady_flow_min": result.steady_flow_min,
        "trumpet": _trumpet(main, windows, counts=True),
        "periods": [
            {
                "start_min": p.start_min,
                "end_min": p.end_min,
                "mean_error_pct": p.mean_error_pct,
                "trumpet": _trumpet(p, windows, counts=False),
                "skipped_windows": p.skipped_windows,
            }
            for p in result.periods
        ],
        "notes": list(result.notes),
    }


def _minutes(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} min"


def to_text(result: Result) -> str:
    main = result.main
    st = result.settings
    lines = [
        f"rate            {st.rate_ml_h:g} mL/h  (density {st.density_g_ml:g} g/mL, "
        f"evaporation {st.evaporation_mg_min:g} mg/min)",
        f"readings        every {result.sampling_min * 60:g} s for {result.duration_min:.1f} min",
        f"mean flow       {main.mean_flow_ml_h:.4g} mL/h over "
        f"{main.start_min:g}-{main.end_min:g} min: error {main.mean_error_pct:+.2f} %",
        f"start-up delay  {result.startup_delay_min:.2f} min "
        "(zero crossing of the steady delivery)",
        f"first delivery  {_minutes(result.first_delivery_min)}",
        f"steady flow     {_minutes(result.steady_flow_min)}",
        "trumpet         P (min)   Ep max %   Ep min %",
    ]
    for p in result.periods:
        if p is not main:
            lines.append(
                f"  period {p.start_min:g}-{p.end_min:g} min: error {p.mean_error_pct:+.2f} %"
            )
        for t in p.trumpet:
            lines.append(
                f"                {t.window_min:>7} {t.max_pct:>+10.2f} {t.min_pct:>+10.2f}"
            )
    lines += [f"note            {n}" for n in result.notes]
    return "\n".join(lines)


def plot(result: Result, out_dir: Path) -> tuple[Path, Path]:
    """Start-up curve and trumpet curve as PNGs in ``out_dir``."""
    try:
        import matplotlib  # noqa: PLC0415 - optional, and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise PlotUnavailable(
            "plotting needs matplotlib, which is not installed: pip install 'pumpctl[plot]'"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    r = result.settings.rate_ml_h
    startup = out_dir / "startup.png"
    fig, ax = plt.subplots(figsize=(9, 4.5))
    try:
        ax.step(
            result.times_min,
            result.flows_ml_h,
            where="pre",
            color="tab:blue",
            lw=1,
            label="flow per interval",
        )
        ax.axhline(r, color="tab:red", lw=1, ls="--", label=f"set rate {r:g} mL/h")
        main = result.main
        ax.axvspan(main.start_min, main.end_min, color="0.9", label="analysis period")
        ax.set_xlabel("time (min)")
        ax.set_ylabel("flow (mL/h)")
        ax.set_title("start-up curve")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(startup, dpi=110)
    finally:
        plt.close(fig)
    trumpet = out_dir / "trumpet.png"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for p in result.periods:
            xs = [t.window_min for t in p.trumpet]
            label = f"{p.start_min:g}-{p.end_min:g} min"
            ax.plot(xs, [t.max_pct for t in p.trumpet], "o-", label=f"Ep max ({label})")
            ax.plot(xs, [t.min_pct for t in p.trumpet], "o-", label=f"Ep min ({label})")
        ax.axhline(
            result.main.mean_error_pct,
            color="k",
            lw=1,
            ls="--",
            label=f"mean error A {result.main.mean_error_pct:+.2f} %",
        )
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_xlabel("observation window P (min)")
        ax.set_ylabel("flow error (%)")
        ax.set_title("trumpet curve")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(trumpet, dpi=110)
    finally:
        plt.close(fig)
    return startup, trumpet


def markdown(result: Result, *, context: dict[str, str], figures: tuple[Path, Path] | None) -> str:
    """A report: the settings, the pump and syringe (``context``), the figures."""
    lines = ["# Pump accuracy report", "", "## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += ["", "## Figures", "", "```", to_text(result), "```", ""]
    if figures is not None:
        lines += [
            f"![start-up curve]({figures[0].name})",
            "",
            f"![trumpet curve]({figures[1].name})",
            "",
        ]
    lines += [
        "Method: IEC 60601-2-24 style gravimetric test; formulas and definitions in "
        "docs/accuracy.md of pumpctl.",
        "",
    ]
    return "\n".join(lines)
