"""Questions a case asks of the pump's ground truth (the emulator's truth log).

The truth is a list of ``TruthSegment`` (from ``start`` on, ``rate_ml_h`` reached the
patient) and ``TruthBolus`` events, on the bench's clinical clock. These helpers read it
the way the cases' assertions need: the rate at an instant, the changes in a span.
Assertions are made on this record, never on what the controller believes.
"""

from __future__ import annotations

from collections.abc import Sequence

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment


def segments(truth: Sequence[TruthEvent]) -> list[TruthSegment]:
    return [e for e in truth if isinstance(e, TruthSegment)]


def boluses(truth: Sequence[TruthEvent]) -> list[TruthBolus]:
    return [e for e in truth if isinstance(e, TruthBolus)]


def rate_at(truth: Sequence[TruthEvent], t: float) -> float:
    """The delivered rate (mL/h) at clinical time ``t`` (0 before the first record)."""
    rate = 0.0
    for seg in segments(truth):
        if seg.start > t:
            break
        rate = seg.rate_ml_h
    return rate


def last_rate(truth: Sequence[TruthEvent]) -> float:
    segs = segments(truth)
    return segs[-1].rate_ml_h if segs else 0.0


def changes_between(
    truth: Sequence[TruthEvent], since: float, until: float | None = None
) -> list[TruthSegment]:
    """Segments that began in ``(since, until]``: each one is a change of delivered flow."""
    return [s for s in segments(truth) if s.start > since and (until is None or s.start <= until)]


def highest_between(truth: Sequence[TruthEvent], since: float, until: float) -> float:
    """The highest rate delivered at any instant of ``(since, until)``."""
    segs = segments(truth)
    highest = rate_at(truth, since)
    for seg in segs:
        if since < seg.start < until:
            highest = max(highest, seg.rate_ml_h)
    return highest


def describe(truth: Sequence[TruthEvent]) -> str:
    """The truth in words, for assertion messages."""
    parts = []
    for e in truth:
        if isinstance(e, TruthSegment):
            parts.append(f"{e.start:.0f}s:{e.rate_ml_h:g}mL/h")
        else:
            parts.append(f"{e.time:.0f}s:bolus {e.volume_ml:g}mL")
    return ", ".join(parts)
