"""What the safety process tells a controller: a snapshot of the infusion and the outcome
of each request. Plain values shared by the process, the IPC messages and the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from safety.kernel.model import ProgramSpec, Verdict
from safety.kernel.state import KernelState


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


def history_points(state: KernelState) -> tuple[HistoryPoint, ...]:
    return tuple(
        HistoryPoint(s.start, s.rate_ml_h, _dec(s.amount_per_ml), s.cause)
        for s in state.history.segments
    )


def _dec(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).normalize()
