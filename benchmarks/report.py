"""What a benchmark run reports: figures with their goals, context, and the host.

Figures are measurements, not verdicts: ``met`` says whether a figure reached its goal on
this machine in this run, for the reader; nothing fails because of it (a test suite that
asserted wall-clock speed would fail on a busy CI host and prove nothing). A *figure*
always has the goal issue 6 set for it; *context* holds measurements that explain the
figures (the durable journal's commit time, latency as the rate history grows, the
emulator's pacing accuracy) and have no goal of their own.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Op = Literal["<=", ">="]


@dataclass(frozen=True)
class Goal:
    op: Op
    value: float
    unit: str
    source: str = "issue 6"

    def met_by(self, value: float) -> bool:
        return value <= self.value if self.op == "<=" else value >= self.value

    def describe(self) -> str:
        return f"{self.op} {_num(self.value)} {self.unit}".strip()


@dataclass(frozen=True)
class Figure:
    """One measured figure and its goal. ``value`` is what the goal is judged on
    (``judged_on`` says which statistic); ``stats`` holds the others (p50, max, n...)."""

    key: str
    title: str
    value: float | None
    unit: str
    goal: Goal
    judged_on: str
    stats: dict[str, float] = field(default_factory=dict)
    note: str = ""
    error: str | None = None  # the measurement could not be made; why

    @property
    def met(self) -> bool | None:
        if self.value is None or self.error is not None:
            return None
        return self.goal.met_by(self.value)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = {**asdict(self.goal), "text": self.goal.describe()}
        data["met"] = self.met
        return data


@dataclass(frozen=True)
class Context:
    """A measurement that explains figures; no goal."""

    key: str
    title: str
    value: float | None
    unit: str
    stats: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    host: dict[str, Any]
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    context: list[Context] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "pumpctl-bench",
            "host": self.host,
            "settings": self.settings,
            "figures": [f.to_json() for f in self.figures],
            "context": [c.to_json() for c in self.context],
            "summary": {
                "figures": len(self.figures),
                "met": sum(1 for f in self.figures if f.met is True),
                "missed": [f.key for f in self.figures if f.met is False],
                "not_measured": [f.key for f in self.figures if f.met is None],
            },
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile, nearest-rank (a value that was really observed)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and n of samples in seconds, as milliseconds."""
    ms = [s * 1000.0 for s in samples_s]
    return {
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "n": float(len(ms)),
    }


def median_max_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in samples_s]
    return {"median": statistics.median(ms), "max": max(ms), "n": float(len(ms))}


# --------------------------------------------------------------------------- rendering


def render_table(report: Report) -> str:
    m = report.host
    lines = [
        "pumpctl bench: measured figures and their goals (figures, not pass/fail tests)",
        f"host: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPU(s), "
        f"{m.get('kernel', '?')}, Python {m.get('python', '?')}; "
        f"journal on {m.get('work_dir_fs', '?')}",
    ]
    if m.get("bytecode"):
        lines.append(str(m["bytecode"]))
    others = m.get("other_processes_cpu_cores")
    start = m.get("load_average_at_start")
    if others is not None and start:
        lines.append(
            f"other processes used {others:.2f} CPU(s) on average during the run; "
            f"load average {start[0]:.2f} at its start"
        )
    lines.append("")
    rows = [("figure", "measured", "goal", "met")]
    for f in report.figures:
        rows.append((f.title, _measured(f), f.goal.describe(), _met(f.met)))
    lines += _table(rows)
    details = [f for f in report.figures if f.stats or f.note or f.error]
    if details:
        lines += ["", "details:"]
        for f in details:
            parts = [f"judged on {f.judged_on}"]
            if f.stats:
                parts.append(_stats(f.stats, f.unit))
            if f.error:
                parts.append(f"NOT MEASURED: {f.error}")
            if f.note:
                parts.append(f.note)
            lines.append(f"  {f.title}: " + "; ".join(parts))
    if report.context:
        lines += ["", "context (no goal):"]
        for c in report.context:
            value = "-" if c.value is None else f"{_num(c.value)} {c.unit}".strip()
            extra = f" ({_stats(c.stats, c.unit)})" if c.stats else ""
            note = f"; {c.note}" if c.note else ""
            lines.append(f"  {c.title}: {value}{extra}{note}")
    if report.notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in report.notes]
    return "\n".join(lines)


def _measured(f: Figure) -> str:
    if f.value is None:
        return "not measured"
    return f"{_num(f.value)} {f.unit}".strip()


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def _stats(stats: dict[str, float], unit: str) -> str:
    """``p50 2.10, p99 4.00, n=1000 (ms)``; a name that carries its own unit ("wire ms")
    keeps it, and then no common unit is added."""
    parts = []
    own_units = False
    for name, value in stats.items():
        if name == "n" or name.startswith("n_"):
            parts.append(f"{name}={int(value)}")
            continue
        own_units = own_units or name.endswith((" ms", " s", " MB", " ratio")) or "/" in name
        parts.append(f"{name} {_num(value)}")
    common = unit and not own_units and any(k != "n" and not k.startswith("n_") for k in stats)
    return ", ".join(parts) + (f" ({unit})" if common else "")


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for i, row in enumerate(rows):
        out.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _num(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


__all__ = [
    "Context",
    "Figure",
    "Goal",
    "Report",
    "median_max_ms",
    "percentile",
    "render_table",
    "summary_ms",
]
