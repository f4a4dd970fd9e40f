"""The snapshot's history points, converted incrementally, equal a conversion from scratch.

``status.history_points`` keeps the points of the last history it converted and reuses
those of the segments a new history shares with it (the same objects: a change appends
one and may prune the oldest), converting only the rest. Whatever order histories come
in (several cores in one process, unrelated histories), the points must be those of a
fresh conversion.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from safety import status
from safety.kernel.history import KEEP_S, RateHistory
from safety.status import HistoryPoint, history_points


def _fresh(history: RateHistory) -> tuple[HistoryPoint, ...]:
    status._MEMO.history = None
    return history_points(history)


step = st.tuples(
    st.one_of(st.just(0.0), st.floats(0.0, 3600.0), st.floats(KEEP_S / 4, KEEP_S)),
    st.sampled_from([Decimal(x) for x in ("0", "1.5", "30", "33.75")]),
    st.sampled_from([Fraction(16), Fraction(32), Fraction(1, 3)]),
    st.booleans(),  # convert this history now (else skip it: several changes between)
    st.integers(0, 3),  # which of several independent histories this change goes to
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=60))
def test_incremental_points_equal_a_fresh_conversion(
    steps: list[tuple[float, Decimal, Fraction, bool, int]],
) -> None:
    histories = [RateHistory() for _ in range(4)]
    clocks = [0.0] * 4
    for gap, rate, per_ml, convert, which in steps:
        clocks[which] += gap
        histories[which] = histories[which].with_rate(clocks[which], Fraction(rate) * per_ml)
        if convert:
            points = history_points(histories[which])
            assert points == _fresh(histories[which])
            # and the same again (the memo's identity hit)
            assert history_points(histories[which]) == points


def test_points_carry_the_start_the_drug_rate_and_the_cause() -> None:
    h = (
        RateHistory()
        .with_rate(0.0, Fraction(Decimal(30)) * Fraction(16))
        .with_rate(60.0, Fraction(Decimal("37.5")) * Fraction(16), "safety")
    )
    assert _fresh(h) == (
        HistoryPoint(0.0, Decimal(480), "command"),
        HistoryPoint(60.0, Decimal(600), "safety"),
    )
