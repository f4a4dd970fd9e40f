"""What the pump has been verified to run, over clinical time.

Windows (titration, wean, 24-hour cap) are questions about this history: the highest
dose in the last 30 minutes, the lowest running dose in the last 10, the drug given in
the last 24 hours. Each segment keeps the pump rate (mL/h, the pump's own decimal figure)
and the drug amount per mL it carried, so the history answers in drug amount per hour
and stays right across a change of concentration (a new syringe) - a re-program cannot
reset the 24-hour cap. Comparisons are exact (``Fraction``); integrals are floats and are
only ever compared with a margin.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

#: history older than this is dropped (longest window we ask about, with room)
KEEP_S = 26 * 3600.0


@dataclass(frozen=True)
class Segment:
    start: float  # clinical seconds
    rate_ml_h: Decimal
    amount_per_ml: Fraction  # base amount (mcg or units) per mL of what ran
    cause: str = "command"  # "command", "pump" (the pump stopped itself), "safety", "estop"

    @cached_property
    def amount_per_h(self) -> Fraction:
        return Fraction(self.rate_ml_h) * self.amount_per_ml


@dataclass(frozen=True)
class RateHistory:
    segments: tuple[Segment, ...] = ()

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def with_rate(
        self, t: float, rate_ml_h: Decimal, amount_per_ml: Fraction, cause: str = "command"
    ) -> RateHistory:
        """The rate from ``t`` on; segments stay in time order, pruned to ``KEEP_S``."""
        last = self.current
        if last is not None and last.rate_ml_h == rate_ml_h and (
            rate_ml_h == 0 or last.amount_per_ml == amount_per_ml
        ):
            return self
        # A segment that lasted 0 s is kept: it adds nothing to an amount, but the window
        # rules must see it (a start at 8 then rises at the same instant - a virtual or
        # coarse clock - would otherwise lose the 8 the titration window starts from).
        kept = [s for s in self.segments if s.start <= t]
        kept.append(Segment(t, rate_ml_h, amount_per_ml, cause))
        horizon = t - KEEP_S
        first = 0
        for i, seg in enumerate(kept):
            if seg.start <= horizon:
                first = i
        return RateHistory(tuple(kept[first:]))

    @cached_property
    def _starts(self) -> tuple[float, ...]:
        return tuple(s.start for s in self.segments)

    def _spans(self, since: float, until: float) -> list[tuple[float, float, Segment]]:
        """(from, to, segment) for every segment in force at some instant of [since, until]."""
        spans: list[tuple[float, float, Segment]] = []
        segs = self.segments
        # segments are in time order: the ones that ended before ``since`` are skipped by
        # bisection instead of being walked (up to 26 h of them for a 10-min window)
        first = max(0, bisect.bisect_right(self._starts, since) - 1)
        for i in range(first, len(segs)):
            seg = segs[i]
            if seg.start > until:
                break
            end = segs[i + 1].start if i + 1 < len(segs) else math.inf
            if end > since:
                spans.append((max(seg.start, since), min(end, until), seg))
        return spans

    def max_amount_rate(
        self, since: float, until: float, *, exclude: frozenset[str] = frozenset()
    ) -> Fraction:
        """Highest drug amount per hour in force at any instant of [since, until], leaving
        out segments whose cause is in ``exclude`` (e.g. rates the pump ran on its own)."""
        return max(
            (s.amount_per_h for _, _, s in self._spans(since, until) if s.cause not in exclude),
            default=Fraction(0),
        )

    def min_running_amount_rate(self, since: float, until: float) -> Fraction | None:
        """Lowest non-zero amount per hour in [since, until]; None if never running."""
        rates = [s.amount_per_h for _, _, s in self._spans(since, until) if s.rate_ml_h > 0]
        return min(rates, default=None)

    def amount(self, since: float, until: float) -> float:
        """Drug amount (base units) given in [since, until]."""
        if until <= since:
            return 0.0
        return max(0.0, self._given_by(until) - self._given_by(since))

    @cached_property
    def _given_at_starts(self) -> tuple[float, ...]:
        """Amount given from the first segment's start to each segment's start: a 24 h cap
        window is two look-ups, not a walk over every segment of the day."""
        total = 0.0
        out = [0.0]
        segs = self.segments
        for seg, following in itertools.pairwise(segs):
            total += float(seg.amount_per_h) * (following.start - seg.start) / 3600.0
            out.append(total)
        return tuple(out)

    def _given_by(self, t: float) -> float:
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0:
            return 0.0
        seg = self.segments[i]
        return self._given_at_starts[i] + float(seg.amount_per_h) * (t - seg.start) / 3600.0

    def volume_ml(self, since: float, until: float) -> float:
        total = 0.0
        for lo, hi, seg in self._spans(since, until):
            total += float(seg.rate_ml_h) * (hi - lo) / 3600.0
        return total
