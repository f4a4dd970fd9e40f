"""RateHistory's fast look-ups give the answers of a plain walk over every segment.

The windows are found by bisection and the 24 h amount from running totals (so a
decision does not walk a day of segments); this checks them against the definition:
each segment is in force from its start to the next one's start, the last one for ever.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from safety.kernel.history import FlowLog, RateHistory, Segment
from safety.status import history_points, new_memo

RATES = [Decimal(x) for x in ("0", "0.1", "1.5", "7.5", "30", "33.75")]
STRENGTHS = [Fraction(4), Fraction(16), Fraction(32)]


def _walk(history: RateHistory, since: float, until: float) -> list[tuple[float, float, Segment]]:
    segs = history.segments
    out = []
    for i, seg in enumerate(segs):
        end = segs[i + 1].start if i + 1 < len(segs) else math.inf
        if seg.start <= until and end > since:
            out.append((max(seg.start, since), min(end, until), seg))
    return out


changes = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(0.0, 7200.0)),  # 0: several changes at one instant
        st.sampled_from(RATES),
        st.sampled_from(STRENGTHS),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    changes=changes,
    since=st.floats(-3600.0, 200_000.0),
    length=st.one_of(st.just(0.0), st.floats(0.0, 90_000.0)),
)
def test_windows_and_amounts_match_a_walk_over_every_segment(
    changes: list[tuple[float, Decimal, Fraction]], since: float, length: float
) -> None:
    history = RateHistory()
    flow = FlowLog()
    rates: list[tuple[float, Decimal]] = []
    t = 0.0
    for gap, rate, strength in changes:
        t += gap
        history = history.with_rate(t, Fraction(rate) * strength)
        flow = flow.with_rate(t, rate)
        rates.append((t, rate))
    until = since + length
    spans = _walk(history, since, until)
    walked = sum(float(s.amount_per_h) * (hi - lo) / 3600.0 for lo, hi, s in spans)
    assert math.isclose(history.amount(since, until), walked, rel_tol=1e-9, abs_tol=1e-9)
    assert history.max_amount_rate(since, until) == max(
        (s.amount_per_h for _, _, s in spans), default=Fraction(0)
    )
    assert history.min_running_amount_rate(since, until) == min(
        (s.amount_per_h for _, _, s in spans if s.amount_per_h > 0), default=None
    )
    # a channel's own rates (its FlowLog) give the volume its counter should show
    volume = 0.0
    for i, (start, rate) in enumerate(rates):
        end = rates[i + 1][0] if i + 1 < len(rates) else math.inf
        lo, hi = max(start, since), min(end, until)
        if hi > lo:
            volume += float(rate) * (hi - lo) / 3600.0
    assert math.isclose(flow.volume_ml(since, until), volume, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 7200.0), st.sampled_from(RATES)), max_size=30),
)
def test_a_flow_log_keeps_the_points_up_to_each_new_rate_as_its_definition_says(
    sets: list[tuple[float, Decimal]],
) -> None:
    """A rate from ``t`` on drops the points that start after ``t`` (a read-back may date a
    rate earlier than one already logged) and keeps the log in time order; the same rate
    again adds nothing."""
    flow = FlowLog()
    points: list[tuple[float, Decimal]] = []
    for t, rate in sets:
        flow = flow.with_rate(t, rate)
        if not (points and points[-1][1] == rate):
            points = [p for p in points if p[0] <= t] + [(t, rate)]
        assert list(flow.points) == points
        assert [p[0] for p in flow.points] == sorted(p[0] for p in flow.points)


def test_what_a_day_of_history_keeps_is_lean() -> None:
    """The safety process keeps every rate change of the last 26 h, and a snapshot's
    point for each, within its 40 MB: segments and points carry no per-object dict, and
    a rate the drug ran at before is the same Decimal object in every point showing it."""
    history = RateHistory()
    for i in range(6):
        history = history.with_rate(60.0 * i, Fraction(480) if i % 2 else Fraction(240))
    assert not hasattr(history.segments[0], "__dict__")
    assert history.segments[1].amount_per_h_f == 480.0
    points = history_points(history, new_memo())
    assert not hasattr(points[0], "__dict__")
    assert points[1].amount_per_h is points[3].amount_per_h is points[5].amount_per_h
    assert points[0].amount_per_h is points[2].amount_per_h
