"""The handover figures (``verification.handover``) as properties: the summed flow
delivers exactly what the channels delivered, and the worst 1-minute window found at the
breakpoints is the worst of any window (checked against a sweep of every window end on
the grid the changes lie on, where the extremes must lie)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from firmware_bridge.pump_model import TruthEvent, TruthSegment, delivered_volume
from safety.kernel.model import Event, HandoverEnded, HandoverStarted, Now
from verification.handover import handovers, summed_flow, window_figures

RATES = st.sampled_from([0.0, 1.0, 5.625, 11.25, 16.87, 22.5, 45.0])


@st.composite
def flows(draw: st.DrawFn, horizon: float = 600.0) -> list[TruthEvent]:
    """One pump's truth: a stopped start, then changes at whole or half seconds."""
    times = sorted(draw(st.lists(st.integers(0, int(horizon * 2)), max_size=8)))
    events: list[TruthEvent] = [TruthSegment(0.0, 0.0)]
    events += [TruthSegment(t / 2, draw(RATES)) for t in times]
    return events


@settings(max_examples=150, deadline=None)
@given(a=flows(), b=flows(), until=st.sampled_from([60.0, 300.0, 700.0]))
def test_the_summed_flow_delivers_what_the_channels_delivered(
    a: list[TruthEvent], b: list[TruthEvent], until: float
) -> None:
    total = summed_flow({"A": a, "B": b})
    expected = delivered_volume(a, until) + delivered_volume(b, until)
    assert abs(delivered_volume(total, until) - expected) < 1e-9


@settings(max_examples=60, deadline=None)
@given(got=flows(), wanted=flows())
@example(  # a set flow that stops and restarts at one instant was never unset
    got=[TruthSegment(0.0, 0.0), TruthSegment(0.0, 1.0)],
    wanted=[
        TruthSegment(0.0, 0.0),
        TruthSegment(46.0, 5.625),
        TruthSegment(97.0, 0.0),
        TruthSegment(97.0, 1.0),
    ],
)
def test_the_worst_window_is_found_at_the_breakpoints(
    got: list[TruthEvent], wanted: list[TruthEvent]
) -> None:
    set_total = [e for e in wanted if isinstance(e, TruthSegment)]
    figures = window_figures(got, set_total, 0.0, 700.0)
    worst = 0.0
    for half in range(120, 1401):  # every window end on the changes' half-second grid
        end = half / 2
        want = delivered_volume(list(set_total), end, end - 60.0)
        # a rate set throughout the window: its volume is the window's at its lowest rate
        set_throughout = (
            all(_rate(set_total, end - 60.0 + k * 0.5) > 0 for k in range(0, 120))
            and _rate(set_total, end - 1e-9) > 0
        )
        if set_throughout:
            deviation = delivered_volume(got, end, end - 60.0) / want - 1.0
            worst = max(worst, abs(deviation))
    assert abs(abs(figures.worst) - worst) < 1e-9
    if figures.worst_at is not None:  # and the window it names has that deviation
        end = figures.worst_at
        want = delivered_volume(list(set_total), end, end - 60.0)
        got_there = delivered_volume(got, end, end - 60.0) / want - 1.0
        assert abs(got_there - figures.worst) < 1e-9


def _rate(segments: list[TruthSegment], t: float) -> float:
    rate = 0.0
    for s in segments:
        if s.start <= t:
            rate = s.rate_ml_h
    return rate


def test_handovers_are_read_from_the_journal() -> None:
    events: list[Event] = [
        HandoverStarted("A", "B", "overlap", 4, Decimal("22.5"), "A empties", Now(100, 0)),
        HandoverEnded("done", "handed over", Now(340, 0)),
        HandoverStarted("B", "A", "quick", 1, Decimal("22.5"), "B empties", Now(9000, 0)),
    ]
    first, second = handovers(events)
    assert (first.from_channel, first.to_channel, first.start, first.end) == ("A", "B", 100, 340)
    assert first.outcome == "done" and first.rate_ml_h == 22.5
    assert (second.strategy, second.end, second.outcome) == ("quick", None, "")
