"""What moves the blood pressure besides the drug: vasodilation, bleeding, fluid.

Each disturbance is a MAP offset (mmHg, negative lowers it) that is a closed-form function
of time, so the patient can ask for it at any instant without stepping:

- background vasodilation, ``stable`` (constant) or ``wandering``: at random instants
  (dwell uniform between two bounds) a new level is drawn uniform within +-amplitude of
  the patient's own, and the vasodilation approaches it exponentially (time constant
  ``wander_tau_s``): the "wandering" condition of the published robustness simulation;
- a bleed: ``ml_per_min`` for ``duration_s``; MAP falls in proportion to the volume lost;
- a fluid bolus: ``volume_ml`` over ``duration_s``; the volume still in the vessels
  raises MAP in proportion, and leaves them with ``fluid_redistribution_s``.

Times are seconds from the start of the scenario.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from firmware_bridge.patient.params import Condition, fig, rng


@dataclass(frozen=True)
class Bleed:
    start_s: float
    ml_per_min: float
    duration_s: float

    def __post_init__(self) -> None:
        _check("bleed", self.start_s, self.duration_s)
        if not (math.isfinite(self.ml_per_min) and 0 <= self.ml_per_min <= 1000):
            raise ValueError(f"bleed rate must be 0-1000 mL/min, got {self.ml_per_min!r}")

    def lost_ml(self, t: float) -> float:
        return self.ml_per_min / 60.0 * min(max(t - self.start_s, 0.0), self.duration_s)


@dataclass(frozen=True)
class FluidBolus:
    start_s: float
    volume_ml: float
    duration_s: float

    def __post_init__(self) -> None:
        _check("fluid bolus", self.start_s, self.duration_s)
        if not (math.isfinite(self.volume_ml) and 0 <= self.volume_ml <= 5000):
            raise ValueError(f"fluid bolus volume must be 0-5000 mL, got {self.volume_ml!r}")
        if self.duration_s <= 0:
            raise ValueError("fluid bolus duration must be > 0 s")

    def intravascular_ml(self, t: float, tau_s: float) -> float:
        """Volume of this bolus still in the vessels at ``t`` (closed form of
        ``dx/dt = rate - x / tau``)."""
        if t <= self.start_s:
            return 0.0
        rate = self.volume_ml / self.duration_s
        end = self.start_s + self.duration_s
        if t <= end:
            return rate * tau_s * (1.0 - math.exp(-(t - self.start_s) / tau_s))
        peak = rate * tau_s * (1.0 - math.exp(-self.duration_s / tau_s))
        return peak * math.exp(-(t - end) / tau_s)


def _check(what: str, start_s: float, duration_s: float) -> None:
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"{what} start must be >= 0 s, got {start_s!r}")
    if not (math.isfinite(duration_s) and 0 <= duration_s <= 24 * 3600):
        raise ValueError(f"{what} duration must be 0-86400 s, got {duration_s!r}")


@dataclass(frozen=True)
class Disturbances:
    """Every scheduled disturbance of one scenario (besides the background)."""

    bleeds: tuple[Bleed, ...] = ()
    fluids: tuple[FluidBolus, ...] = ()
    fluid_tau_s: float = field(default_factory=lambda: fig("fluid_redistribution_s"))

    def offset_mmhg(self, t: float) -> float:
        if not (self.bleeds or self.fluids):  # most scenarios: asked at every numeric
            return 0.0
        lost = sum(b.lost_ml(t) for b in self.bleeds)
        given = sum(f.intravascular_ml(t, self.fluid_tau_s) for f in self.fluids)
        return -fig("bleed_mmhg_per_ml") * lost + fig("fluid_mmhg_per_ml") * given


class Vasodilation:
    """Background vasodilation (mmHg of MAP fall) over time; deterministic by seed."""

    def __init__(
        self,
        condition: Condition,
        start_mmhg: float,
        seed: int | str,
        index: int,
        *,
        amplitude_mmhg: float | None = None,
        dwell_s: tuple[float, float] | None = None,
        tau_s: float | None = None,
    ) -> None:
        self.condition = condition
        self.start_mmhg = start_mmhg
        self.amplitude = fig("wander_amplitude_mmhg") if amplitude_mmhg is None else amplitude_mmhg
        self.dwell = dwell_s or (fig("wander_dwell_min_s"), fig("wander_dwell_max_s"))
        self.tau = fig("wander_tau_s") if tau_s is None else tau_s
        if not (self.amplitude >= 0 and self.tau > 0 and 0 < self.dwell[0] <= self.dwell[1]):
            raise ValueError("wandering needs amplitude >= 0, tau > 0 and 0 < dwell min <= max")
        self._rng = rng(seed, "wander", index)
        #: the wandering begins this long after the start (before it: the start level);
        #: may be set once, before any later instant was asked for
        self.wander_start_s = 0.0
        # jump instants, the level aimed at from each, and the value at each instant
        self._times: list[float] = [0.0]
        self._levels: list[float] = [start_mmhg]
        self._values: list[float] = [start_mmhg]

    def mmhg(self, t: float) -> float:
        """The vasodilation at ``t`` s from the start (never negative)."""
        t -= self.wander_start_s
        if self.condition is Condition.STABLE or t <= 0:
            return self.start_mmhg
        while self._times[-1] < t:
            self._next_jump()
        i = bisect.bisect_right(self._times, t) - 1
        return self._approach(i, t)

    def _approach(self, i: int, t: float) -> float:
        level = self._levels[i]
        return level + (self._values[i] - level) * math.exp(-(t - self._times[i]) / self.tau)

    def _next_jump(self) -> None:
        r = self._rng
        when = self._times[-1] + r.uniform(*self.dwell)
        value = self._approach(len(self._times) - 1, when)
        low = max(0.0, self.start_mmhg - self.amplitude)
        level = r.uniform(low, self.start_mmhg + self.amplitude)
        self._times.append(when)
        self._levels.append(level)
        self._values.append(value)
