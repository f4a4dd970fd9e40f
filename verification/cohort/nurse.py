"""The manual-titration arm: a nurse following a written protocol, through the same rules.

What the closed loop is compared with in the trials: a person who looks at the monitor
every few minutes and changes the dose by a written protocol. Here she looks every
``check_min`` minutes (uniform 5-15 min, drawn per patient: a busy unit), reads the MAP as
she would from the screen (the median of the last minute's numerics, ignoring the
obvious artefacts a nurse ignores: the loop's own artefact filter), and follows
``Protocol``: fixed steps up or down outside the band, larger ones far outside it. She
uses the same pump and the same safety process as the loop: if her step is more than the
titration or wean rule allows now, she enters what the pump offers instead (the largest
rise, the smallest fall); every change is an ordinary request, counted and journaled.

The protocol's figures are the project's (a typical ICU order: "titrate by 0.02-0.05
mcg/kg/min every 5-15 min to the MAP goal"); docs/closed-loop.md lists them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from controller.closed_loop.artefacts import SignalFilter
from controller.closed_loop.limits import Rules
from controller.closed_loop.settings import LoopSettings
from controller.session import Session
from drivers.monitors.base import MapSource, MonitorError
from firmware_bridge.clock import Clock
from safety.kernel.model import ChangeDose

#: how far back she looks on the screen (clinical s)
LOOK_BACK_S = 60.0
#: when the screen shows nothing usable she looks again this much later
RETRY_S = 60.0


@dataclass(frozen=True)
class Protocol:
    """Steps in the program's dose unit (defaults: mcg/kg/min)."""

    small_step: Decimal = Decimal("0.02")
    large_step: Decimal = Decimal("0.05")
    check_min: tuple[float, float] = (5.0, 15.0)


@dataclass
class NurseStats:
    checks: int = 0
    requests: int = 0
    accepted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    limited_by_rules: int = 0  # her step was more than the rules allowed: she took less

    def to_json(self) -> dict[str, object]:
        return {
            "checks": self.checks,
            "requests": self.requests,
            "accepted": self.accepted,
            "refusals": dict(self.refusals),
            "limited_by_rules": self.limited_by_rules,
        }


class Nurse:
    def __init__(
        self,
        session: Session,
        source: MapSource,
        settings: LoopSettings,
        rng: random.Random,
        *,
        clock: Clock,
        protocol: Protocol | None = None,
    ) -> None:
        self.session = session
        self.source = source
        self.settings = settings
        self.rng = rng
        self.clock = clock
        self.protocol = protocol or Protocol()
        self.filter = SignalFilter(settings)
        self.stats = NurseStats()
        self._next_check: float | None = None

    def begin(self) -> None:
        """She takes charge now; first look after one protocol interval."""
        self._next_check = self.clock.now() + self._interval()

    def step(self) -> None:
        now = self.clock.now()
        try:
            samples = self.source.poll()
        except MonitorError:
            samples = []
        for sample in samples:
            self.filter.add(sample, now)
        if self._next_check is None or now < self._next_check:
            return
        self.stats.checks += 1
        median, n = self.filter.median_since(now - LOOK_BACK_S)
        if median is None or n < 3:
            self._next_check = now + RETRY_S
            return
        self._next_check = now + self._interval()
        step = self._step_for(median)
        if step == 0:
            return
        snapshot = self.session.status()
        if not snapshot.running:
            return
        rules = Rules(self.session.library, snapshot, self.session.kernel_config)
        current = rules.state.current_dose()
        want = max(Fraction(0), current + Fraction(step))
        dose, _ = rules.propose(
            want,
            self.settings.dose_min,
            self.settings.dose_max,
            self.settings.soft_limits_confirmed,
        )
        if dose is None:
            return
        if Fraction(dose) != want and Fraction(dose) != Fraction(self.settings.dose_min):
            self.stats.limited_by_rules += 1
        self.stats.requests += 1
        outcome = self.session.order(
            ChangeDose(
                dose, confirm_soft_limits=rules.needs_soft_confirmation(dose), unit=rules.unit
            )
        )
        if outcome.verdict.accepted:
            self.stats.accepted += 1
        else:
            self.stats.refusals[str(outcome.verdict.reason)] += 1

    def _step_for(self, mmhg: float) -> Decimal:
        s, p = self.settings, self.protocol
        error = mmhg - s.target_mmhg
        if error < -2 * s.band_mmhg:
            return p.large_step
        if error < -s.band_mmhg:
            return p.small_step
        if error > 2 * s.band_mmhg:
            return -2 * p.small_step
        if error > s.band_mmhg:
            return -p.small_step
        return Decimal(0)

    def _interval(self) -> float:
        low, high = self.protocol.check_min
        return self.rng.uniform(low, high) * 60.0
