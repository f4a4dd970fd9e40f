"""What the patient has been verified to receive of one drug, over clinical time.

Windows (titration, wean, 24-hour cap) are questions about this history: the highest
dose in the last 30 minutes, the lowest running dose in the last 10, the drug given in
the last 24 hours. Each segment keeps the drug amount per hour (mcg/h or units/h) the
patient received from its start: the sum over every channel giving the drug of the
verified pump rate times the amount per mL it carried. So the history stays right across
a change of concentration (a new syringe), a second pump and a relay handover: a
re-program cannot reset the 24-hour cap, and a second channel cannot double a dose or
stop a vasopressor unseen. Comparisons are exact (``Fraction``); integrals are floats and
are only ever compared with a margin.

A channel's own pump rates since its last reading (for the accuracy check of its volume
counter) are its ``FlowLog``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Segment:
    """Slotted: a history keeps every change of the last 26 h (a bench titrating every
    few seconds, thousands), in a process with a memory budget."""

    start: float  # clinical seconds
    #: base amount (mcg or units) per hour, summed over every channel giving the drug
    amount_per_h: Fraction
    #: "command", "pump" (the pump ran or stopped on its own), "safety", "estop", "relay",
    #: "container_change"
    cause: str = "command"
    #: the same as a float: for sums (the cap's integral) and window look-ups
    amount_per_h_f: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount_per_h_f", float(self.amount_per_h))


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
    #: amount given before the first kept segment (pruned segments and boluses), so the
    #: total since the patient's first dose is known however long the course
    before: float = 0.0

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def with_amount(self, at: float, amount: float, why: str) -> RateHistory:
        """A bolus counted at ``at`` (never before the last one: time does not run back)."""
        if amount <= 0:
            return self
        last = self.boluses[-1].at if self.boluses else -math.inf
        bolus = Bolus(max(at, last), amount, why)
        history = RateHistory(self.segments, (*self.boluses, bolus), self.before)
        _carry_tables(self, history)
        return history

    def with_rate(
        self,
        t: float,
        amount_per_h: Fraction,
        cause: str = "command",
        keep_s: float = KEEP_S,
    ) -> RateHistory:
        """The drug rate from ``t`` on; segments stay in time order, pruned to ``keep_s``."""
        last = self.current
        if last is not None and last.amount_per_h == amount_per_h:
            return self
        # A segment that lasted 0 s is kept: it adds nothing to an amount, but the window
        # rules must see it (a start at 8 then rises at the same instant - a virtual or
        # coarse clock - would otherwise lose the 8 the titration window starts from).
        starts = self._starts
        end = bisect.bisect_right(starts, t)  # segments that started after t are dropped
        new = Segment(t, amount_per_h, cause)
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
        before = self.before + (totals[first] if first else 0.0)
        if boluses and boluses[0].at < horizon:
            before += sum(b.amount for b in boluses if b.at < horizon)
            boluses = tuple(b for b in boluses if b.at >= horizon)
        history = RateHistory((*self.segments[first:end], new), boluses, before)
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
        return pick(tied, key=_AMOUNT).amount_per_h

    def amount(self, since: float, until: float) -> float:
        """Drug amount (base units) given in [since, until] (boluses in (since, until])."""
        if until <= since:
            return 0.0
        return max(0.0, self._given_by(until) - self._given_by(since))

    def given_total(self, t: float) -> float:
        """Drug amount given from the first segment ever recorded up to ``t`` (pruned
        history included): for people, never for a limit (a limit reads its window)."""
        return self.before + self._given_by(t)

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


@dataclass(frozen=True)
class FlowLog:
    """One channel's verified pump rate (mL/h) since its last reading, as (start, rate)
    points: what its volume counter should have counted (S13 accuracy), whatever the
    other channels of its drug did meanwhile."""

    points: tuple[tuple[float, Decimal], ...] = ()

    def with_rate(self, t: float, rate_ml_h: Decimal) -> FlowLog:
        """The rate from ``t`` on (points that started after ``t`` are dropped)."""
        points = self.points
        if points and points[-1][1] == rate_ml_h:
            return self
        if points and points[-1][0] > t:  # the points are in time order: else none to drop
            points = tuple(p for p in points if p[0] <= t)
        return FlowLog((*points, (t, rate_ml_h)))

    def since(self, t: float) -> FlowLog:
        """Only what is needed from ``t`` on: the point in force at ``t`` and later ones."""
        points = self.points
        i = bisect.bisect_right([p[0] for p in points], t) - 1
        return self if i <= 0 else FlowLog(points[i:])

    def volume_ml(self, since: float, until: float) -> float:
        total = 0.0
        points = self.points
        for i, (start, rate) in enumerate(points):
            end = points[i + 1][0] if i + 1 < len(points) else math.inf
            lo, hi = max(start, since), min(end, until)
            if hi > lo:
                total += float(rate) * (hi - lo) / 3600.0
        return total


def _carry_tables(old: RateHistory, new: RateHistory) -> None:
    """The segment tables of ``old`` for ``new`` with the same segments (a bolus added)."""
    for name in ("_starts", "_keys", "_running_keys", "_totals"):
        if name in old.__dict__:
            new.__dict__[name] = old.__dict__[name]


def _running_key(segment: Segment) -> float:
    return segment.amount_per_h_f if segment.amount_per_h > 0 else math.inf


_AMOUNT = operator.attrgetter("amount_per_h")
