"""What the safety rules allow the loop to ask for, now.

The loop sizes a change the way the planner sizes a plan step (``controller.planner``:
the titration rule S4 per step and per window, absolute and relative; the wean rule S5 as
``(1 - f)`` x the highest dose of its window, with a 1 % margin for the pump's rounding),
reading the limits from the same library therapy, then asks the kernel's own pure
``decide`` about the exact request before sending it, on a kernel state rebuilt from the
safety process's snapshot (``planning_state``). A proposal ``decide`` refuses is nudged
toward the running dose a few times, then dropped: the loop never sends what it already
knows will be refused, and the safety process decides again anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction

from controller.planner import PlannerSettings, planning_state, pump_capabilities
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.model import ChangeDose, Now, Request, RequestMeta, Verdict
from safety.kernel.state import ActiveProgram, KernelState
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import Snapshot
from safety.units import plain

#: a fall goes this fraction above the wean floor (the planner's margin)
WEAN_MARGIN = Fraction(1, 100)
#: doses are asked for with this many significant digits (the planner's)
DIGITS = 3
#: nudges toward the running dose before a refused proposal is dropped
NUDGES = 3


@dataclass(frozen=True)
class Bounds:
    """Doses (program unit) a change may go to now, and why."""

    current: Fraction
    highest: Fraction  # S4 (and S1); the running dose when no rise is allowed
    lowest: Fraction  # S5; 0 when the drug has no gradual-wean rule
    window_base: Fraction  # the lowest dose of the titration window


class Rules:
    """The kernel's view of one snapshot, for sizing and checking the loop's changes."""

    def __init__(
        self,
        library: DrugLibrary,
        snapshot: Snapshot,
        config: KernelConfig | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """``now``: the clinical instant to judge at, when ``snapshot`` is of an earlier
        one and nothing changed since (``planning_state``); default its own instant."""
        self.library = library
        self.snapshot = snapshot
        self.config = config or KernelConfig()
        self.now = snapshot.clinical_time if now is None else now
        self.state: KernelState
        self.program: ActiveProgram
        self.state, self.program = planning_state(library, snapshot, session="loop", now=now)
        self.pump: PumpCapabilities = pump_capabilities(snapshot, PlannerSettings().resolution)
        self.unit = self.program.unit

    def bounds(self) -> Bounds:
        therapy = self.program.therapy
        t = self.now
        current = self.state.current_dose()
        history = self.state.history
        titration = therapy.titration
        window_s = float(titration.window_min.value) * 60.0
        low_amount = history.min_running_amount_rate(t - window_s, t)
        base = self.program.dose_of_amount_rate(low_amount) if low_amount is not None else current
        step = min(
            Fraction(titration.max_step_rise.value),
            Fraction(titration.max_step_rise_fraction.value) * current,
        )
        window = min(
            Fraction(titration.max_window_rise.value),
            Fraction(titration.max_window_rise_fraction.value) * base,
        )
        highest = min(current + step, base + window, Fraction(therapy.hard_max.value))
        lowest = Fraction(0)
        wean = therapy.wean
        if wean.gradual_wean_only.value:
            assert wean.max_fall_fraction is not None and wean.window_min is not None
            wean_s = float(wean.window_min.value) * 60.0
            top = self.program.dose_of_amount_rate(history.max_amount_rate(t - wean_s, t))
            floor = (1 - Fraction(wean.max_fall_fraction.value)) * top
            lowest = min(current, floor * (1 + WEAN_MARGIN))
        return Bounds(current, max(highest, current), lowest, base)

    def check(self, dose: Decimal, soft_confirmed: bool) -> Verdict:
        """The kernel's verdict on ``ChangeDose(dose)`` now (pure; nothing is sent)."""
        request = Request(
            RequestMeta("loop", self.state.last_seq + 1, math.inf),
            ChangeDose(dose, confirm_soft_limits=soft_confirmed, unit=self.unit),
        )
        now = Now(self.now, 0.0)
        return decide(self.library, self.state, request, now, self.pump, self.config)

    def rate_of(self, dose: Decimal) -> Decimal:
        """The rate (mL/h) the pump would run for ``dose``: the kernel's own conversion
        and the pump's rounding, as ``decide`` makes them."""
        return self.pump.pump_rate(self.program.exact_rate(Fraction(dose)))

    def needs_soft_confirmation(self, dose: Decimal) -> bool:
        therapy = self.program.therapy
        value = Fraction(dose)
        return value > Fraction(therapy.soft_max.value) or (
            0 < value < Fraction(therapy.soft_min.value)
        )

    def propose(
        self,
        want: Fraction,
        dose_min: Decimal,
        dose_max: Decimal,
        soft_confirmed: bool,
        bounds: Bounds | None = None,
        *,
        running_rate: Decimal | None = None,
    ) -> tuple[Decimal | None, Verdict | None]:
        """The dose to ask for (None: no change worth sending) and the kernel's verdict
        on it. ``want`` is clipped to the loop's range and to what the rules allow now
        (``bounds``, computed if not given), rounded toward the running dose, and checked.
        A dose the pump would run at ``running_rate`` (mL/h, when given) changes nothing
        at the patient: it is returned unchecked (verdict None), as the kernel's check
        costs more than the rest of a decision and most of the loop's small changes end
        there."""
        b = bounds or self.bounds()
        value = min(max(want, Fraction(dose_min)), Fraction(dose_max))
        rise = value > b.current
        value = min(value, b.highest) if rise else max(value, b.lowest)
        dose = _round(value, up=not rise)
        if (rise and Fraction(dose) <= b.current) or (not rise and Fraction(dose) >= b.current):
            return None, None
        verdict: Verdict | None = None
        for nudge in range(NUDGES):
            soft = self.needs_soft_confirmation(dose)
            if soft and not soft_confirmed:
                return None, None  # the operator did not allow crossing this soft limit
            if nudge == 0 and running_rate is not None and self.rate_of(dose) == running_rate:
                return dose, None
            verdict = self.check(dose, soft)
            if verdict.accepted:
                return dose, verdict
            if verdict.reason in (Reason.STEP_RISE, Reason.WINDOW_RISE, Reason.CUMULATIVE_CAP):
                dose = _round(Fraction(dose) * Fraction(99, 100), up=False)
                if Fraction(dose) <= b.current:
                    break
            elif verdict.reason is Reason.WEAN_TOO_FAST:
                dose = _round(Fraction(dose) * Fraction(101, 100), up=True)
                if Fraction(dose) >= b.current:
                    break
            else:
                break
        return None, verdict


def _round(value: Fraction, *, up: bool) -> Decimal:
    """``value`` with ``DIGITS`` significant digits, rounded up or down."""
    if value <= 0:
        return Decimal(0)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    quantum = Decimal(1).scaleb(exact.adjusted() - DIGITS + 1)
    return plain(exact.quantize(quantum, rounding=ROUND_CEILING if up else ROUND_FLOOR))
