"""A pump's accuracy from balance readings, the way IEC 60601-2-24 describes the test.

Pure: a list of (time, mass) readings and a few settings in, figures out. Definitions
(docs/accuracy.md gives the sources and the reasoning):

- volume ``V_i = (W_i - W_0 + E (t_i - t_0)) / d``: mass gained, corrected by the measured
  evaporation rate ``E``, over the density ``d``; time zero is the first reading, taken
  when the pump is started;
- flow of interval ``i``: ``Q_i = 60 (W_i - W_{i-1}) / (S d)`` mL/h (S in min), computed
  here with each interval's own length ``t_i - t_{i-1}`` so a jittered clock does no harm;
- the analysis period ``T2`` (the second hour by default): mean flow
  ``Qmean = (V(end) - V(start)) / T2`` (equal to the mean of its ``Q_i``) and mean flow
  error ``A = 100 (Qmean - r) / r``;
- trumpet: for each window ``P`` (2, 5, 11, 19, 31 min) every window of ``P/S`` intervals
  that fits in ``T2`` (``m = (T2 - P)/S + 1`` of them): ``Ep = 100 (mean flow in the
  window - r) / r`` (the standard's ``(S/P) sum 100 (Q_i - r)/r``: the sum telescopes);
  ``Ep(max)``, ``Ep(min)`` are their extremes. A window longer than a (short, non-standard)
  period is left out of that period's trumpet, and the notes say so;
- start-up delay: where the straight line fitted (least squares) to ``V(t)`` over ``T2``
  crosses zero: the dead time of the steady delivery. ``V = Qmean (t - delay)``, so the
  volume lost to the start-up is ``Qmean x delay``;
- time to first delivery: the first instant (interpolated) at which ``V`` reaches
  ``first_delivery_ml`` (default: 10 digits of a 0.1 mg balance, 1 uL of water);
- time to steady flow: the start of the first interval from which every later interval
  flow, averaged over ``steady_window_min`` (5 min), stays within ``steady_band`` (10 %)
  of ``Qmean``.

Irregular data are explicit: times must increase; an interval longer than 1.5 times the
median sampling interval is a gap (missing readings) and is refused, naming the reading
after it, unless ``allow_gaps`` (then windows that span a gap are skipped and said so).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

#: the standard's observation windows, minutes
WINDOWS_MIN: tuple[int, ...] = (2, 5, 11, 19, 31)
#: an interval this many times the sampling interval is a gap
GAP_FACTOR = 1.5
#: an interval this far from the sampling interval (fraction) is jitter we accept
JITTER = 0.2


class AnalysisError(ValueError):
    """Data the analysis cannot use; ``index`` is the 0-based reading it concerns."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Settings:
    rate_ml_h: float
    density_g_ml: float = 0.9982
    evaporation_mg_min: float = 0.0
    #: analysis periods, (start, end) in minutes from the first reading
    periods_min: tuple[tuple[float, float], ...] = ((60.0, 120.0),)
    windows_min: tuple[int, ...] = WINDOWS_MIN
    first_delivery_ml: float = 0.001
    steady_window_min: float = 5.0
    steady_band: float = 0.10
    allow_gaps: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.rate_ml_h <= 10_000):
            raise AnalysisError(f"rate must be > 0 and <= 10000 mL/h, got {self.rate_ml_h}")
        if not (0.5 <= self.density_g_ml <= 2.5):
            raise AnalysisError(f"density must be 0.5-2.5 g/mL, got {self.density_g_ml}")
        if not (0 <= self.evaporation_mg_min <= 100):
            raise AnalysisError(f"evaporation must be 0-100 mg/min, got {self.evaporation_mg_min}")
        for start, end in self.periods_min:
            if not (0 <= start < end):
                raise AnalysisError(f"analysis period {start}-{end} min is empty")


@dataclass(frozen=True)
class Trumpet:
    window_min: int
    max_pct: float
    min_pct: float
    windows: int


@dataclass(frozen=True)
class Period:
    start_min: float
    end_min: float
    mean_flow_ml_h: float
    mean_error_pct: float
    trumpet: tuple[Trumpet, ...]
    skipped_windows: int = 0

    @property
    def windows_min(self) -> tuple[int, ...]:
        """The observation windows this period's trumpet has (those that fit in it)."""
        return tuple(t.window_min for t in self.trumpet)


@dataclass(frozen=True)
class Result:
    settings: Settings
    sampling_min: float
    duration_min: float
    times_min: tuple[float, ...]  # interval ends
    flows_ml_h: tuple[float, ...]  # Q_i, the start-up curve
    periods: tuple[Period, ...]
    startup_delay_min: float
    first_delivery_min: float | None
    steady_flow_min: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def main(self) -> Period:
        return self.periods[0]


def _sampling(times: Sequence[float]) -> float:
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2]


def analyse(times_s: Sequence[float], masses_g: Sequence[float], settings: Settings) -> Result:
    """The figures of one run (see the module docstring)."""
    n = len(times_s)
    if n != len(masses_g):
        raise AnalysisError("times and masses differ in length")
    if n < 3:
        raise AnalysisError(f"{n} readings: at least 3 are needed")
    for i in range(n):
        if not (math.isfinite(times_s[i]) and math.isfinite(masses_g[i])):
            raise AnalysisError("a reading is not a finite number", i)
        if i and times_s[i] <= times_s[i - 1]:
            raise AnalysisError(
                f"time {times_s[i]:g} s does not come after {times_s[i - 1]:g} s", i
            )
    t0 = times_s[0]
    t = [(x - t0) / 60.0 for x in times_s]  # minutes
    s = _sampling(t)
    notes: list[str] = []
    gaps: list[int] = []  # index i: the interval (i-1, i) is a gap
    for i in range(1, n):
        dt = t[i] - t[i - 1]
        if dt > GAP_FACTOR * s:
            if not settings.allow_gaps:
                raise AnalysisError(
                    f"readings missing before this one: {dt * 60:g} s after the previous "
                    f"reading, more than {GAP_FACTOR:g} x the sampling interval {s * 60:g} s",
                    i,
                )
            gaps.append(i)
    if gaps:
        notes.append(f"{len(gaps)} gap(s) in the readings; windows spanning them are skipped")
    d = settings.density_g_ml
    e = settings.evaporation_mg_min * 1e-3  # g/min
    w0 = masses_g[0]
    v = [(masses_g[i] - w0 + e * t[i]) / d for i in range(n)]  # mL
    flows = tuple(60.0 * (v[i] - v[i - 1]) / (t[i] - t[i - 1]) for i in range(1, n))
    duration = t[-1]

    periods = []
    for start, end in settings.periods_min:
        if end > duration + 1e-9:
            raise AnalysisError(
                f"the analysis period {start:g}-{end:g} min needs {end:g} min of readings; "
                f"this run has {duration:g} min"
            )
        period = _period(t, v, gaps, start, end, s, settings)
        left_out = [p for p in settings.windows_min if p not in period.windows_min]
        if not period.trumpet:
            raise AnalysisError(
                f"the analysis period {start:g}-{end:g} min is shorter than every "
                f"observation window ({', '.join(map(str, settings.windows_min))} min)"
            )
        if left_out:
            notes.append(
                f"the {', '.join(map(str, left_out))} min window(s) are longer than the "
                f"analysis period {start:g}-{end:g} min: left out of its trumpet"
            )
        periods.append(period)

    main = periods[0]
    i0 = _index_at(t, main.start_min)
    i1 = _index_at(t, main.end_min)
    delay = _line_intercept(t[i0 : i1 + 1], v[i0 : i1 + 1])
    first = _first_delivery(t, v, settings.first_delivery_ml)
    steady = _steady(t, v, main.mean_flow_ml_h, settings)
    return Result(
        settings=settings,
        sampling_min=s,
        duration_min=duration,
        times_min=tuple(t[1:]),
        flows_ml_h=flows,
        periods=tuple(periods),
        startup_delay_min=delay,
        first_delivery_min=first,
        steady_flow_min=steady,
        notes=tuple(notes),
    )


def _index_at(t: Sequence[float], minute: float) -> int:
    """The reading at ``minute`` (the nearest one; readings are within jitter of it)."""
    i = bisect.bisect_left(t, minute)
    if i == len(t):
        return len(t) - 1
    if i > 0 and minute - t[i - 1] < t[i] - minute:
        return i - 1
    return i


def _period(
    t: Sequence[float],
    v: Sequence[float],
    gaps: Sequence[int],
    start: float,
    end: float,
    s: float,
    settings: Settings,
) -> Period:
    r = settings.rate_ml_h
    i0, i1 = _index_at(t, start), _index_at(t, end)
    if i1 - i0 < 1:
        raise AnalysisError(f"the analysis period {start:g}-{end:g} min holds no interval")
    mean = 60.0 * (v[i1] - v[i0]) / (t[i1] - t[i0])
    trumpets = []
    skipped = 0
    for p in settings.windows_min:
        k = max(1, round(p / s))
        if k > i1 - i0:
            continue  # longer than the period: left out (``Result.notes`` says which)
        errors = []
        for j in range(i0, i1 - k + 1):
            if any(j < g <= j + k for g in gaps):
                skipped += 1
                continue
            q = 60.0 * (v[j + k] - v[j]) / (t[j + k] - t[j])
            errors.append(100.0 * (q - r) / r)
        if not errors:
            raise AnalysisError(
                f"every {p} min window in the analysis period {start:g}-{end:g} min spans "
                "a gap in the readings"
            )
        trumpets.append(Trumpet(p, max(errors), min(errors), len(errors)))
    return Period(start, end, mean, 100.0 * (mean - r) / r, tuple(trumpets), skipped)


def _line_intercept(t: Sequence[float], v: Sequence[float]) -> float:
    """Least-squares line through (t, V); where it crosses V = 0 (minutes)."""
    n = len(t)
    mt = sum(t) / n
    mv = sum(v) / n
    sxx = sum((x - mt) ** 2 for x in t)
    sxy = sum((x - mt) * (y - mv) for x, y in zip(t, v, strict=True))
    slope = sxy / sxx
    if slope <= 0:
        raise AnalysisError("nothing was delivered in the analysis period (no start-up delay)")
    return mt - mv / slope


def _first_delivery(t: Sequence[float], v: Sequence[float], threshold: float) -> float | None:
    for i in range(1, len(t)):
        if v[i] >= threshold:
            if v[i - 1] >= threshold:
                return t[i - 1]
            frac = (threshold - v[i - 1]) / (v[i] - v[i - 1])
            return t[i - 1] + frac * (t[i] - t[i - 1])
    return None


def _steady(
    t: Sequence[float], v: Sequence[float], mean: float, settings: Settings
) -> float | None:
    """Start of the first reading after which every window of ``steady_window_min`` has a
    mean flow within the band around ``mean``."""
    if mean <= 0:
        return None
    band = settings.steady_band * mean
    w = settings.steady_window_min
    n = len(t)
    ok_from: int | None = None
    for j in range(n - 1, -1, -1):
        k = bisect.bisect_left(t, t[j] + w, lo=j)
        if k >= n:
            continue  # the window runs past the end: not judged
        q = 60.0 * (v[k] - v[j]) / (t[k] - t[j])
        if abs(q - mean) > band:
            break
        ok_from = j
    return None if ok_from is None else t[ok_from]


__all__ = [
    "WINDOWS_MIN",
    "AnalysisError",
    "Period",
    "Result",
    "Settings",
    "Trumpet",
    "analyse",
]
