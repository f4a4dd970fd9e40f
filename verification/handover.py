"""A relay handover judged on what reached the patient, from both pumps' ground truth.

A handover is two pumps changing at nearly the same moment: the incoming one must start
delivering as the outgoing one stops, and on a real line their commands go out one after
the other. What matters to the patient is the sum of the two delivered flows, so this
module sums the channels' ground truth (``TruthSegment``s and boluses of each pump; what a
prime sent to waste, ``TruthWaste``, is never delivery) and compares it, one window at a
time, with the total the safety process had set (its journaled commands, whatever their
cause: an operator's, the relay's, a protective stop).

The figure is the one the issue's handover benchmark names: the worst deviation of the
delivered rate from the set rate in any 1-minute window, and the longest stretch during
which the delivered rate stayed below 90 % of it. Both are in mL/h of the channels'
solutions, which is a drug rate only when the channels hold the same concentration (as a
relay's standby must: ``safety.kernel.relay``); the limits themselves (hard max, cap, wean
on the drug total) are the oracle's, ``verification.ground_truth.check_channels``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment, delivered_volume
from safety.journal_read import handovers_recorded
from safety.kernel.model import (
    CommandIssued,
    Event,
    HandoverStarted,
    SetRate,
    StartPump,
    StopPump,
)

#: the window of the handover figure (s), as the benchmark and the issue name it
WINDOW_S = 60.0
#: "below" in the longest-interval figure: under this share of the set rate
LOW_SHARE = 0.9


@dataclass(frozen=True)
class Handover:
    """One handover as the safety journal tells it (clinical seconds)."""

    from_channel: str
    to_channel: str
    strategy: str
    rate_ml_h: float  # the outgoing channel's rate when it began: the rate handed over
    start: float
    end: float | None  # None: not ended in the journal
    outcome: str  # "done", "failed", "cancelled", or "" while under way


def handovers(events: Iterable[Event]) -> list[Handover]:
    """Every handover the journal records, in order (``handovers_recorded``)."""
    return [_handover(*recorded) for recorded in handovers_recorded(events)]


def _handover(started: HandoverStarted, end: float | None, outcome: str) -> Handover:
    return Handover(
        started.from_channel,
        started.to_channel,
        started.strategy,
        float(started.rate_ml_h),
        started.now.clinical,
        end,
        outcome,
    )


def summed_flow(truths: Mapping[str, Sequence[TruthEvent]]) -> list[TruthEvent]:
    """The channels' delivered flow, summed: one segment per instant at which any of
    them changed (changes of one instant are one change of the sum), and every bolus.
    Waste is dropped: a prime to waste never reached the patient."""
    changes: list[tuple[float, str, float]] = []
    boluses: list[TruthBolus] = []
    for name, events in truths.items():
        for e in events:
            if isinstance(e, TruthSegment):
                changes.append((e.start, name, e.rate_ml_h))
            elif isinstance(e, TruthBolus):
                boluses.append(e)
    changes.sort(key=lambda c: c[0])  # stable: one channel's records of an instant in order
    rates: dict[str, float] = {}
    out: list[TruthEvent] = []
    last: float | None = None
    for i, (t, name, rate) in enumerate(changes):
        rates[name] = rate
        if i + 1 < len(changes) and changes[i + 1][0] == t:
            continue  # the sum after every change of this instant
        total = sum(rates.values())
        if total != last:
            out.append(TruthSegment(t, total))
            last = total
    out += boluses
    out.sort(key=lambda e: e.start if isinstance(e, TruthSegment) else e.time)
    return out


def set_flow(events: Iterable[Event]) -> list[TruthSegment]:
    """The total rate the safety process had set over its channels (mL/h), from its
    journaled commands: each channel's set rate while it was told to run."""
    running: dict[str, bool] = {}
    rates: dict[str, float] = {}
    out: list[TruthSegment] = []
    for event in events:
        if not isinstance(event, CommandIssued):
            continue
        action = event.action
        if isinstance(action, SetRate):
            rates[action.channel] = float(action.rate_ml_h)
        elif isinstance(action, StartPump):
            running[action.channel] = True
        elif isinstance(action, StopPump):
            running[action.channel] = False
        else:
            continue
        total = sum(r for c, r in rates.items() if running.get(c, False))
        t = event.now.clinical
        if out and out[-1].start == t:
            out.pop()  # the commands of one instant are one change of the total
        if not out or out[-1].rate_ml_h != total:
            out.append(TruthSegment(t, total))
    return out


@dataclass(frozen=True)
class WindowFigures:
    """The delivered flow against the set flow over a stretch of time."""

    #: worst relative deviation (delivered / set - 1) of any window, signed; 0 if none
    worst: float
    #: end of that window (clinical s), None when no window had a set flow
    worst_at: float | None
    #: the longest interval during which the delivered rate was below LOW_SHARE of the set
    longest_low_s: float
    windows: int  # how many window positions were judged (the distinct extremes)


def window_figures(
    delivered: Sequence[TruthEvent],
    wanted: Sequence[TruthSegment],
    since: float,
    until: float,
    window_s: float = WINDOW_S,
) -> WindowFigures:
    """Compare each ``window_s`` window ending in [since + window_s, until] of the
    delivered flow with the set one, where a rate was set throughout the window (a window
    reaching back before the infusion began has no set dose to deviate from). Both flows
    are piecewise constant, so a window's ratio is monotone between the instants where an
    edge of the window meets a change: those instants (and the ends) are the only ones
    judged, exactly."""
    events = list(delivered)
    wanted_events: list[TruthEvent] = list(wanted)
    edges = {since + window_s, until}
    for e in events:
        t = e.start if isinstance(e, TruthSegment) else e.time
        edges.update((t, t + window_s))
    for w in wanted:
        edges.update((w.start, w.start + window_s))
    worst, worst_at, judged = 0.0, None, 0
    starts = [w.start for w in wanted]
    for end in sorted(x for x in edges if since + window_s <= x <= until):
        if not _set_throughout(wanted, starts, end - window_s, end):
            continue
        want = delivered_volume(wanted_events, end, end - window_s)
        got = delivered_volume(events, end, end - window_s)
        deviation = got / want - 1.0
        judged += 1
        if worst_at is None or abs(deviation) > abs(worst):
            worst, worst_at = deviation, end
    return WindowFigures(worst, worst_at, _longest_low(events, wanted, since, until), judged)


def _set_throughout(
    wanted: Sequence[TruthSegment], starts: Sequence[float], since: float, until: float
) -> bool:
    """Whether a positive rate was set at every instant of [since, until]."""
    first = bisect.bisect_right(starts, since) - 1
    if first < 0:
        return False
    last = bisect.bisect_left(starts, until)  # a change at ``until`` itself is after it
    # a record followed by another at its own instant lasted no time: it set nothing
    return all(
        w.rate_ml_h > 0
        for i, w in enumerate(wanted[first:last], start=first)
        if i + 1 >= len(wanted) or wanted[i + 1].start > w.start
    )


def _rate_at(segments: Sequence[TruthSegment], starts: Sequence[float], t: float) -> float:
    i = bisect.bisect_right(starts, t) - 1
    return segments[i].rate_ml_h if i >= 0 else 0.0


def _longest_low(
    delivered: Sequence[TruthEvent], wanted: Sequence[TruthSegment], since: float, until: float
) -> float:
    """The longest interval within [since, until] where the delivered rate was below
    LOW_SHARE of a positive set rate (boluses do not lift it: a rate is a rate)."""
    got = [e for e in delivered if isinstance(e, TruthSegment)]
    got_starts = [s.start for s in got]
    want_starts = [w.start for w in wanted]
    cuts = sorted({since, until, *(t for t in got_starts + want_starts if since < t < until)})
    longest = run = 0.0
    for a, b in itertools.pairwise(cuts):
        want = _rate_at(wanted, want_starts, a)
        low = want > 0 and _rate_at(got, got_starts, a) < LOW_SHARE * want
        run = run + (b - a) if low else 0.0
        longest = max(longest, run)
    return longest


__all__ = [
    "LOW_SHARE",
    "WINDOW_S",
    "Handover",
    "WindowFigures",
    "handovers",
    "set_flow",
    "summed_flow",
    "window_figures",
]
