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
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

#: history older than this is dropped unless a longer window needs it: the host keeps as
#: long as the longest window of its library and of every limit still in force
#: (``DrugRecord.keep_s``), and the library bounds windows (``safety.library.sanity``)
KEEP_S = 26 * 3600.0


@dataclass(frozen=True)
class Bolus:
    """A drug amount counted at one instant rather than as a rate: delivery the process
    could not see as it happened (the pump's own counter, read after a gap, shows more
    than the verified rates explain)."""

    at: float  # clinical seconds
    amount: float  # base amount (mcg or units)
    why: str


@dataclass(frozen=True)
class Segment:
    start: float  # clinical seconds
    rate_ml_h: Decimal
    amount_per_ml: Fraction  # base amount (mcg or units) per mL of what ran
    cause: str = "command"  # "command", "pump" (the pump stopped itself), "safety", "estop"

    @cached_property
    def amount_per_h(self) -> Fraction:
        return Fraction(self.rate_ml_h) * self.amount_per_ml

    @cached_property
    def amount_per_h_f(self) -> float:
        """The same as a float: for sums (the cap's integral) and window look-ups."""
        return float(self.amount_per_h)


@dataclass(frozen=True)
class RateHistory:
    """Verified rates in time order, with look-up tables the window rules read.

    Every change (``with_rate``) makes a new history, and the kernel asks its windows on
    every decision, read-back and snapshot; a day of changes (1000 segments when a bench
    titrates every few seconds) must not be walked or re-summed each time. So ``with_rate``
    carries the tables forward: the segments' start times, their drug rates as floats (the
    window maximum and minimum are found among floats, then settled exactly) and the
    running totals of the drug given (the 24 h cap is two look-ups), each extended by the
    new segment and cut at the front where the history is pruned. A history built directly
    from segments (the planner's) computes them once, when first asked.
    """

    segments: tuple[Segment, ...] = ()
    boluses: tuple[Bolus, ...] = ()

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def with_amount(self, at: float, amount: float, why: str) -> RateHistory:
        """A bolus counted at ``at`` (never before the last one: time does not run back)."""
        if amount <= 0:
            return self
        last = self.boluses[-1].at if self.boluses else -math.inf
        bolus = Bolus(max(at, last), amount, why)
        history = RateHistory(self.segments, (*self.boluses, bolus))
        _carry_tables(self, history)
        return history

    def with_rate(
        self,
        t: float,
        rate_ml_h: Decimal,
        amount_per_ml: Fraction,
        cause: str = "command",
        keep_s: float = KEEP_S,
    ) -> RateHistory:
        """The rate from ``t`` on; segments stay in time order, pruned to ``keep_s``."""
        last = self.current
        if (
            last is not None
            and last.rate_ml_h == rate_ml_h
            and (rate_ml_h == 0 or last.amount_per_ml == amount_per_ml)
        ):
            return self
        # A segment that lasted 0 s is kept: it adds nothing to an amount, but the window
        # rules must see it (a start at 8 then rises at the same instant - a virtual or
        # coarse clock - would otherwise lose the 8 the titration window starts from).
        starts = self._starts
        end = bisect.bisect_right(starts, t)  # segments that started after t are dropped
        new = Segment(t, rate_ml_h, amount_per_ml, cause)
        # the last kept segment still in force at the horizon is kept whole
        first = max(0, min(end, bisect.bisect_right(starts, t - keep_s)) - 1)
        totals = self._totals
        if end:
            prior = self.segments[end - 1]
            total = totals[end - 1] + prior.amount_per_h_f * (t - prior.start) / 3600.0
        else:
            total = 0.0
        horizon = t - keep_s
        boluses = self.boluses
        if boluses and boluses[0].at < horizon:
            boluses = tuple(b for b in boluses if b.at >= horizon)
        history = RateHistory((*self.segments[first:end], new), boluses)
        cache = history.__dict__  # what cached_property reads: the tables, carried forward
        cache["_starts"] = (*starts[first:end], t)
        cache["_keys"] = (*self._keys[first:end], new.amount_per_h_f)
        cache["_running_keys"] = (*self._running_keys[first:end], _running_key(new))
        if first:  # totals relative to the first kept segment's start, as when built whole
            base = totals[first]
            cache["_totals"] = (*(x - base for x in totals[first:end]), total - base)
        else:
            cache["_totals"] = (*totals[:end], total)
        return history

    # ------------------------------------------------------------------ tables
    @cached_property
    def _starts(self) -> tuple[float, ...]:
        return tuple(s.start for s in self.segments)

    @cached_property
    def _keys(self) -> tuple[float, ...]:
        """Each segment's drug amount per hour as a float: float rounding keeps order
        (a <= b gives float(a) <= float(b)), so the extreme float marks the exact extreme,
        and only segments tied with it need an exact comparison."""
        return tuple(s.amount_per_h_f for s in self.segments)

    @cached_property
    def _running_keys(self) -> tuple[float, ...]:
        """The same, with +inf for a stopped segment (never the lowest running rate)."""
        return tuple(_running_key(s) for s in self.segments)

    @cached_property
    def _totals(self) -> tuple[float, ...]:
        """Amount given from the first segment's start to each segment's start: a 24 h cap
        window is two look-ups, not a walk over every segment of the day."""
        total = 0.0
        out = [0.0]
        for seg, following in itertools.pairwise(self.segments):
            total += seg.amount_per_h_f * (following.start - seg.start) / 3600.0
            out.append(total)
        return tuple(out[: len(self.segments)])

    def _window(self, since: float, until: float) -> tuple[int, int]:
        """Indices [lo, hi) of the segments in force at some instant of [since, until].

        Segment i is in force from its start to the next one's start. The one in force at
        ``since`` is the last to start at or before it (an earlier one ended by then, a
        0-second one at ``since`` included); every later one starting by ``until`` is in.
        """
        starts = self._starts
        lo = max(0, bisect.bisect_right(starts, since) - 1)
        hi = bisect.bisect_right(starts, until)
        return lo, max(lo, hi)

    def _spans(self, since: float, until: float) -> list[tuple[float, float, Segment]]:
        """(from, to, segment) for every segment in force at some instant of [since, until]."""
        lo, hi = self._window(since, until)
        segs = self.segments
        spans: list[tuple[float, float, Segment]] = []
        for i in range(lo, hi):
            seg = segs[i]
            end = segs[i + 1].start if i + 1 < len(segs) else math.inf
            spans.append((max(seg.start, since), min(end, until), seg))
        return spans

    # ------------------------------------------------------------------ windows
    def max_amount_rate(
        self, since: float, until: float, *, exclude: frozenset[str] = frozenset()
    ) -> Fraction:
        """Highest drug amount per hour in force at any instant of [since, until], leaving
        out segments whose cause is in ``exclude`` (e.g. rates the pump ran on its own)."""
        lo, hi = self._window(since, until)
        keys: Sequence[float] = self._keys[lo:hi]
        if exclude:
            segs = self.segments
            keys = [
                -math.inf if segs[i].cause in exclude else k
                for i, k in zip(range(lo, hi), keys, strict=True)
            ]
        if not keys:
            return Fraction(0)
        best = max(keys)
        if best == -math.inf:
            return Fraction(0)
        return self._settle(lo, keys, best, max)

    def min_running_amount_rate(self, since: float, until: float) -> Fraction | None:
        """Lowest non-zero amount per hour in [since, until]; None if never running."""
        lo, hi = self._window(since, until)
        keys = self._running_keys[lo:hi]
        best = min(keys, default=math.inf)
        if best == math.inf:
            return None
        return self._settle(lo, keys, best, min)

    def _settle(
        self,
        lo: int,
        keys: Sequence[float],
        best: float,
        pick: Callable[..., Segment],
    ) -> Fraction:
        """The exact extreme among the segments whose float key ties with ``best``."""
        segs = self.segments
        tied = [segs[lo + i] for i in itertools.compress(range(len(keys)), map(best.__eq__, keys))]
        if len(tied) == 1:
            return tied[0].amount_per_h
        if len(set(map(id, map(_PER_ML, tied)))) == 1:
            # one concentration: the drug rate is the pump rate times one constant >= 0
            return pick(tied, key=_RATE).amount_per_h
        return pick(tied, key=_AMOUNT).amount_per_h

    def amount(self, since: float, until: float) -> float:
        """Drug amount (base units) given in [since, until] (boluses in (since, until])."""
        if until <= since:
            return 0.0
        return max(0.0, self._given_by(until) - self._given_by(since))

    def _given_by(self, t: float) -> float:
        i = bisect.bisect_right(self._starts, t) - 1
        given = 0.0
        if i >= 0:
            seg = self.segments[i]
            given = self._totals[i] + seg.amount_per_h_f * (t - seg.start) / 3600.0
        if self.boluses:
            given += self._bolus_totals[bisect.bisect_right(self._bolus_times, t)]
        return given

    @cached_property
    def _bolus_times(self) -> tuple[float, ...]:
        return tuple(b.at for b in self.boluses)

    @cached_property
    def _bolus_totals(self) -> tuple[float, ...]:
        """Amount of the boluses before each index: [0, b0, b0 + b1, ...]."""
        return (0.0, *itertools.accumulate(b.amount for b in self.boluses))

    def volume_ml(self, since: float, until: float) -> float:
        total = 0.0
        for lo, hi, seg in self._spans(since, until):
            total += float(seg.rate_ml_h) * (hi - lo) / 3600.0
        return total


def _carry_tables(old: RateHistory, new: RateHistory) -> None:
    """The segment tables of ``old`` for ``new`` with the same segments (a bolus added)."""
    for name in ("_starts", "_keys", "_running_keys", "_totals"):
        if name in old.__dict__:
            new.__dict__[name] = old.__dict__[name]


def _running_key(segment: Segment) -> float:
    return segment.amount_per_h_f if segment.rate_ml_h > 0 else math.inf


_PER_ML = operator.attrgetter("amount_per_ml")
_RATE = operator.attrgetter("rate_ml_h")
_AMOUNT = operator.attrgetter("amount_per_h")
