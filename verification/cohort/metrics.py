"""How well a MAP was held: Varvel's performance errors and the clinical figures.

Pure functions of a sampled MAP (regular grid: every sample weighs the same time). For
samples ``j`` of one run with target ``T``, ``PE_j = 100 (MAP_j - T) / T`` (Varvel 1992):

- ``mdpe`` = median PE (bias), ``mdape`` = median |PE| (inaccuracy),
- ``wobble`` = median |PE - MDPE| (oscillation around the bias),
- ``divergence`` = least-squares slope of |PE| against time, in % per hour (negative: the
  error shrinks over the run, the controller converges);

and the share of time in the band (|MAP - T| <= band, the edge included), below the band,
above it, hypotensive (MAP < 65 mmHg) and below 90 % of the patient's own baseline MAP.
A cohort figure is the median over runs (``cohort_medians``), as the published studies
report them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

HYPOTENSION_MMHG = 65.0
BASELINE_FRACTION = 0.9


@dataclass(frozen=True)
class Performance:
    n: int
    mdpe: float  # %
    mdape: float  # %
    wobble: float  # %
    divergence: float  # % per hour
    in_band: float  # % of time
    below_band: float
    above_band: float
    below_65: float
    below_90pct_baseline: float

    def to_json(self) -> dict[str, float | int]:
        """The figures as JSON numbers: ``n`` (a count of samples) stays an integer."""
        return {k: v if k == "n" else float(v) for k, v in asdict(self).items()}


def performance(
    times_s: Sequence[float],
    maps: Sequence[float],
    target: float,
    band: float,
    baseline: float,
) -> Performance:
    """Figures of one run; ``times_s`` and ``maps`` of equal length, at least one sample."""
    if len(times_s) != len(maps) or not maps:
        raise ValueError("performance needs as many times as MAP values, and at least one")
    if not (target > 0 and band >= 0 and baseline > 0):
        raise ValueError("performance needs target > 0, band >= 0 and baseline > 0")
    pe = [100.0 * (m - target) / target for m in maps]
    ape = [abs(p) for p in pe]
    mdpe = statistics.median(pe)
    n = len(maps)

    def share(count: int) -> float:
        return 100.0 * count / n

    return Performance(
        n=n,
        mdpe=mdpe,
        mdape=statistics.median(ape),
        wobble=statistics.median(abs(p - mdpe) for p in pe),
        divergence=slope_per_hour(times_s, ape),
        in_band=share(sum(1 for m in maps if abs(m - target) <= band)),
        below_band=share(sum(1 for m in maps if m < target - band)),
        above_band=share(sum(1 for m in maps if m > target + band)),
        below_65=share(sum(1 for m in maps if m < HYPOTENSION_MMHG)),
        below_90pct_baseline=share(sum(1 for m in maps if m < BASELINE_FRACTION * baseline)),
    )


def slope_per_hour(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against time, per hour (0 for < 2 distinct times)."""
    n = len(times_s)
    if n < 2:
        return 0.0
    hours = [t / 3600.0 for t in times_s]
    mean_t = math.fsum(hours) / n
    mean_v = math.fsum(values) / n
    sxx = math.fsum((t - mean_t) ** 2 for t in hours)
    if sxx <= 0:
        return 0.0
    sxy = math.fsum((t - mean_t) * (v - mean_v) for t, v in zip(hours, values, strict=True))
    return sxy / sxx


def cohort_medians(runs: Iterable[Performance]) -> dict[str, float]:
    """Median of each figure across runs (the published population figures)."""
    items = list(runs)
    if not items:
        return {}
    keys = [k for k in asdict(items[0]) if k != "n"]
    return {k: statistics.median(getattr(r, k) for r in items) for k in keys}
