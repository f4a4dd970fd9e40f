"""RateHistory's look-up tables, carried forward change by change, give the answers of
tables built whole from the segments, and of a plain walk over every segment.

``with_rate`` extends the start times, float keys and running totals of the previous
history instead of rebuilding them (a day of 1000 changes must not be re-summed on every
change), prunes them with the segments at the 26 h horizon, and cuts them where a change
drops segments that started later. Each of those paths is driven here: long gaps (prunes),
changes at one instant, and changes earlier than the last one.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from safety.kernel.history import KEEP_S, RateHistory
from verification.ground_truth import in_force

RATES = [Decimal(x) for x in ("0", "0.1", "1.5", "7.5", "30", "33.75")]
STRENGTHS = [Fraction(4), Fraction(16), Fraction(32), Fraction(1, 3)]


step = st.tuples(
    st.one_of(  # the time from the previous change
        st.just(0.0),  # several changes at one instant
        st.floats(0.0, 7200.0),
        st.floats(KEEP_S / 2, 2 * KEEP_S),  # prunes at the horizon
        st.floats(-7200.0, 0.0),  # earlier than the last change: later segments dropped
    ),
    st.sampled_from(RATES),
    st.sampled_from(STRENGTHS),
    st.sampled_from(["command", "pump", "safety"]),
)


def _build(changes: list[tuple[float, Decimal, Fraction, str]]) -> RateHistory:
    history = RateHistory()
    t = 0.0
    for gap, rate, strength, cause in changes:
        t += gap
        history = history.with_rate(t, Fraction(rate) * strength, cause)
    return history


@settings(max_examples=400, deadline=None)
@given(
    changes=st.lists(step, max_size=40),
    since=st.floats(-3600.0, 400_000.0),
    length=st.one_of(st.just(0.0), st.floats(0.0, 120_000.0)),
)
def test_carried_tables_answer_as_tables_built_whole_and_as_a_walk(
    changes: list[tuple[float, Decimal, Fraction, str]], since: float, length: float
) -> None:
    carried = _build(changes)
    # its tables computed from the segments
    whole = RateHistory(carried.segments, carried.boluses, carried.before)
    assert carried == whole
    assert carried._starts == whole._starts
    assert carried._keys == whole._keys
    assert carried._running_keys == whole._running_keys
    assert len(carried._totals) == len(whole._totals) == len(carried.segments)
    for a, b in zip(carried._totals, whole._totals, strict=True):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)

    until = since + length
    walked = in_force(carried.segments, since, until)
    for history in (carried, whole):
        assert history.max_amount_rate(since, until) == max(
            (s.amount_per_h for s in walked), default=Fraction(0)
        )
        assert history.max_amount_rate(since, until, exclude=frozenset({"pump"})) == max(
            (s.amount_per_h for s in walked if s.cause != "pump"), default=Fraction(0)
        )
        assert history.min_running_amount_rate(since, until) == min(
            (s.amount_per_h for s in walked if s.amount_per_h > 0), default=None
        )
    assert math.isclose(
        carried.amount(since, until), whole.amount(since, until), rel_tol=1e-9, abs_tol=1e-6
    )


def test_changes_earlier_than_the_last_drop_the_later_segments_and_their_totals() -> None:
    h = RateHistory().with_rate(0.0, Fraction(Decimal(10)) * Fraction(1))
    h = h.with_rate(3600.0, Fraction(Decimal(20)) * Fraction(1))
    h = h.with_rate(7200.0, Fraction(Decimal(30)) * Fraction(1))
    back = h.with_rate(5400.0, Fraction(Decimal(5)) * Fraction(1))
    assert [s.start for s in back.segments] == [0.0, 3600.0, 5400.0]
    # 10/h for 1 h, 20/h for 0.5 h, then 5/h for 0.5 h
    assert math.isclose(back.amount(0.0, 7200.0), 10 + 10 + 2.5)
    assert back.max_amount_rate(0.0, 7200.0) == Fraction(20)


def test_the_horizon_prunes_all_but_the_segment_in_force_at_it() -> None:
    h = RateHistory()
    for i in range(10):
        h = h.with_rate(i * 60.0, Fraction(Decimal(i + 1)) * Fraction(1))
    late = 9 * 60.0 + KEEP_S + 30.0  # the horizon falls inside the last segment
    pruned = h.with_rate(late, Fraction(Decimal(2)) * Fraction(1))
    assert [s.start for s in pruned.segments] == [9 * 60.0, late]
    # 10/h from the horizon to the change: the whole window before it
    assert math.isclose(pruned.amount(late - KEEP_S, late), 10 * KEEP_S / 3600.0)


def test_float_ties_are_settled_exactly_within_one_concentration() -> None:
    """Two pump rates a float cannot tell apart: the higher one is still the maximum."""
    low, high = Decimal("30"), Decimal("30.0000000000000000000001")
    assert float(low) == float(high)
    per_ml = Fraction(16)
    h = (
        RateHistory()
        .with_rate(0.0, Fraction(high) * per_ml)
        .with_rate(60.0, Fraction(low) * per_ml)
    )
    h = h.with_rate(120.0, Fraction(Decimal("30.00000000000000000000005")) * per_ml)
    assert h.max_amount_rate(0.0, 180.0) == Fraction(high) * per_ml
    assert h.min_running_amount_rate(0.0, 180.0) == Fraction(low) * per_ml


def test_float_ties_are_settled_exactly_across_concentrations() -> None:
    """The same float drug rate from different concentrations: compared as fractions."""
    a = Fraction(10**30 + 1, 10**30)
    b = Fraction(1)
    assert float(a) == float(b) and a > b
    h = (
        RateHistory()
        .with_rate(0.0, Fraction(Decimal(1)) * b)
        .with_rate(60.0, Fraction(Decimal(1)) * a)
    )
    h = h.with_rate(120.0, Fraction(Decimal(1)) * Fraction(1))
    assert h.max_amount_rate(0.0, 180.0) == a
    assert h.min_running_amount_rate(0.0, 180.0) == b
