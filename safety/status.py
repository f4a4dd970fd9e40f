"""What the safety process tells a controller: a snapshot of the infusion and the outcome
of each request. Plain values shared by the process, the IPC messages and the controller.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from safety.kernel.history import RateHistory, Segment
from safety.kernel.model import PatientSpec, ProgramSpec, Verdict
from safety.kernel.state import PriorLimits
from safety.units import fraction_to_decimal


@dataclass(frozen=True)
class AlarmView:
    key: str
    priority: str  # "high" | "medium" | "low"
    reason: str
    message: str
    raised_at: float
    active: bool
    acknowledged: bool


@dataclass(frozen=True)
class HistoryPoint:
    """From ``start`` (clinical s) the pump ran ``rate_ml_h`` carrying ``amount_per_ml``."""

    start: float
    rate_ml_h: Decimal
    amount_per_ml: Decimal
    cause: str


@dataclass(frozen=True)
class PatientView:
    """Whom the limits protect (S16): from ``since`` (clinical s) every history counts."""

    id: str
    spec: PatientSpec
    since: float
    how: str


@dataclass(frozen=True)
class Snapshot:
    clinical_time: float
    mode: str
    library_hash: str
    library_version: str
    program: ProgramSpec | None
    dose_unit: str | None
    running: bool
    rate_ml_h: Decimal  # verified set point
    dose: Decimal | None  # the dose that rate delivers, in dose_unit
    infused_ml: float | None  # pump's own counter since the program was loaded
    drug_given: Decimal | None  # infused_ml x concentration, in cap_unit (or mcg/units)
    amount_unit: str | None
    given_in_cap_window: Decimal | None
    cap_amount: Decimal | None
    cap_window_h: Decimal | None
    syringe: str
    syringe_volume_ml: float
    remaining_ml: float | None
    pump_min_ml_h: Decimal
    pump_max_ml_h: Decimal
    alarms: tuple[AlarmView, ...]
    session: str | None
    last_seq: int
    attached: bool
    hold: bool
    estopped: bool
    uncertain: bool
    comms_ok: bool
    history: tuple[HistoryPoint, ...]
    patient: PatientView | None = None
    #: why changes wait for the program to be loaded again (None: they do not)
    program_stale: str | None = None
    #: earlier limits of the loaded program's drug still in force beside its own
    priors: tuple[PriorLimits, ...] = ()

    @property
    def minutes_to_empty(self) -> float | None:
        if self.remaining_ml is None or not self.running or self.rate_ml_h <= 0:
            return None
        return self.remaining_ml / float(self.rate_ml_h) * 60.0


@dataclass(frozen=True)
class Outcome:
    """A verdict and what became of it at the pump."""

    verdict: Verdict
    execution: str  # "applied", "not executed", "uncertain: ...", "rejected by pump: ..."
    snapshot: Snapshot


class _PointsMemo:
    """The last history converted, by identity: a snapshot is taken after every journaled
    event, but the (immutable) history changes only when a verified rate changes, so the
    points are rebuilt only then; and then only the new segments are converted, the
    others' points (same segment objects: a change appends one and may prune the oldest)
    are reused, not up to 26 h of segments per change."""

    def __init__(self) -> None:
        self.history: RateHistory | None = None
        self.points: tuple[HistoryPoint, ...] = ()


_MEMO = _PointsMemo()
#: how far into the previous history its first surviving segment is looked for
_PRUNE_SCAN = 64


def history_points(history: RateHistory) -> tuple[HistoryPoint, ...]:
    memo = _MEMO
    if memo.history is history:
        return memo.points
    segs = history.segments
    reused = _reusable(memo, segs)
    points: list[HistoryPoint] = list(reused)
    per_ml: Fraction | None = None
    per_ml_dec = Decimal(0)
    for s in segs[len(reused) :]:
        if s.amount_per_ml is not per_ml:  # one conversion per program, not per segment
            per_ml, per_ml_dec = s.amount_per_ml, fraction_to_decimal(s.amount_per_ml)
        points.append(HistoryPoint(s.start, s.rate_ml_h, per_ml_dec, s.cause))
    result = tuple(points)
    memo.history, memo.points = history, result
    return result


def _reusable(memo: _PointsMemo, segs: tuple[Segment, ...]) -> tuple[HistoryPoint, ...]:
    """The memo's points for the longest run of ``segs`` (from its start) that are the very
    segment objects of the memo's history, in order; () when there is none."""
    if memo.history is None or not segs:
        return ()
    old = memo.history.segments
    first = segs[0]
    for k in range(min(len(old), _PRUNE_SCAN)):
        if old[k] is first:
            break
    else:
        return ()
    n = min(len(old) - k, len(segs))
    if all(map(operator.is_, segs[:n], old[k : k + n])):
        return memo.points[k : k + n]
    return ()
