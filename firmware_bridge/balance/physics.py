"""A laboratory balance weighing a beaker that a simulated pump fills.

What it weighs is the fluid the pump really delivered (``SimulatedPump.delivered_ml``, the
same ground truth the safety suite checks), turned into mass with the density of water at
the bench temperature, less what evaporated, plus the beaker. What it shows is that load
less its zero and tare, with reading noise, rounded to its readability (0.1 mg by default).

Stability: a real balance calls a reading stable when it stays within a small band for a
moment. Here a reading is dynamic while the balance settles after a disturbance (a bump,
a zero, a tare: ``settle_s``), and while the load changes faster than ``stable_drift_g_s``
(a fast flow into the beaker never looks stable). Faults: ``no_stability`` (never stable,
as on a draughty bench), ``overload`` (a load beyond capacity), ``pan_off`` (the pan
lifted: underload), ``bump`` (the beaker knocked: a decaying oscillation of the reading).

Deterministic for a seed: the noise of a reading is a function of the seed and the instant
of the reading (to the millisecond), not of how many readings came before, so two runs
that read at the same instants read the same numbers. All times are on the clinical clock
the pump runs on (physical time of the simulated bench).
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from firmware_bridge.balance.codec import quantize
from firmware_bridge.balance.water import water_density_g_ml
from firmware_bridge.clock import Clock

#: how long a bump's oscillation lasts before the reading settles (clinical s)
BUMP_DURATION_S = 3.0
BUMP_FREQUENCY_HZ = 3.0
#: the load's rate of change is judged over this window (clinical s)
DRIFT_WINDOW_S = 5.0


class FluidSource(Protocol):
    """Where the fluid in the beaker comes from (``SimulatedPump`` is one)."""

    def delivered_ml(self) -> float:
        """Volume delivered so far, up to the shared clock's now."""
        ...


@dataclass(frozen=True)
class BalanceSpec:
    """The balance's identity and metrology (a 220 g / 0.1 mg analytical balance)."""

    model: str = "PUMPCTL-SIM220"
    serial: str = "0000000001"
    software: str = "1.00 pumpctl"
    capacity_g: float = 220.0
    resolution_g: Decimal = Decimal("0.0001")
    #: standard deviation of one reading, g (about one digit)
    noise_sd_g: float = 0.0001
    #: zero may be set only within this distance of the power-up zero, g (2 % of capacity)
    zero_range_g: float = 4.4
    #: settling time after a disturbance, clinical s
    settle_s: float = 2.0
    #: a load changing faster than this is never stable, g/s
    stable_drift_g_s: float = 0.02
    #: ``S``, ``Z`` and ``T`` wait this long for stability before answering "I", clinical s
    stable_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.capacity_g <= 100_000):
            raise ValueError(f"capacity must be 0-100000 g, got {self.capacity_g}")
        if not (Decimal("0.000001") <= self.resolution_g <= Decimal(10)):
            raise ValueError(f"resolution must be 1e-6 to 10 g, got {self.resolution_g}")
        if not (0 <= self.noise_sd_g <= 1):
            raise ValueError(f"noise must be 0-1 g, got {self.noise_sd_g}")


@dataclass(frozen=True)
class Bench:
    """The setting around the balance: beaker, water temperature, evaporation."""

    beaker_g: float = 60.0
    temperature_c: float = 20.0
    #: mass lost by evaporation, mg/min (an oil layer on the water keeps it small)
    evaporation_mg_min: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.beaker_g <= 10_000):
            raise ValueError(f"beaker must be 0-10000 g, got {self.beaker_g}")
        water_density_g_ml(self.temperature_c)  # raises outside 0-40 C
        if not (0 <= self.evaporation_mg_min <= 100):
            raise ValueError(f"evaporation must be 0-100 mg/min, got {self.evaporation_mg_min}")


@dataclass(frozen=True)
class Reading:
    """What the balance shows at one instant: the net mass (rounded to its readability),
    or an overload / underload, and whether it is stable."""

    time: float
    net_g: Decimal
    stable: bool
    overload: bool = False
    underload: bool = False


@dataclass
class _Faults:
    no_stability: bool = False
    overload: bool = False
    pan_off: bool = False
    bump_at: float | None = None
    bump_g: float = 0.0


BALANCE_FAULTS = ("no_stability", "overload", "pan_off", "bump")


class BalanceFaultError(ValueError):
    """A balance fault that does not parse; the message lists the known ones."""


class BalanceModel:
    """The balance's physics. Thread-safe: the serial thread and the control channel."""

    def __init__(
        self,
        clock: Clock,
        source: FluidSource,
        *,
        spec: BalanceSpec | None = None,
        bench: Bench | None = None,
    ) -> None:
        self.spec = spec or BalanceSpec()
        self.bench = bench or Bench()
        self._clock = clock
        self._source = source
        self._lock = threading.RLock()
        self._t0 = clock.now()
        self._v0 = source.delivered_ml()
        self._density = water_density_g_ml(self.bench.temperature_c)
        self._zero = 0.0  # gross load read as zero
        self._tare = 0.0
        self._settled_at = self._t0  # when the last disturbance settles
        self._faults = _Faults()
        self._history: deque[tuple[float, float]] = deque(maxlen=16)

    # ------------------------------------------------------------------ physics
    @property
    def density_g_ml(self) -> float:
        return self._density

    @property
    def tare_g(self) -> float:
        return self._tare

    def water_g(self, t: float | None = None) -> float:
        """Mass of water in the beaker now: delivered x density - evaporated."""
        with self._lock:
            now = self._clock.now() if t is None else t
            volume = self._source.delivered_ml() - self._v0
            evaporated = self.bench.evaporation_mg_min * 1e-3 * (now - self._t0) / 60.0
            return volume * self._density - evaporated

    def _load(self, now: float) -> float:
        """The load on the pan, without the shaking of a bump."""
        if self._faults.pan_off:
            return -200.0  # the pan and beaker lifted off: far below zero
        load = self.bench.beaker_g + self.water_g(now)
        if self._faults.overload:
            load += self.spec.capacity_g
        return load

    def _gross(self, now: float) -> float:
        load = self._load(now)
        f = self._faults
        if f.bump_at is not None and f.bump_at <= now < f.bump_at + BUMP_DURATION_S:
            s = now - f.bump_at
            decay = math.exp(-s / (BUMP_DURATION_S / 4))
            load += f.bump_g * decay * math.cos(2 * math.pi * BUMP_FREQUENCY_HZ * s)
        return load

    def _noise(self, now: float) -> float:
        sd = self.spec.noise_sd_g
        if sd == 0:
            return 0.0
        rng = random.Random(f"{self.bench.seed}:{round(now * 1000)}")
        return rng.gauss(0.0, sd)

    def _drift_g_s(self, now: float) -> float:
        """How fast the load changes (g/s), from the loads seen over the last few seconds
        (a bump's shaking is judged by the settling time, not here)."""
        load = self._load(now)
        history = self._history
        while history and now - history[0][0] > DRIFT_WINDOW_S:
            history.popleft()
        rate = 0.0
        if history and now - history[0][0] >= 0.05:
            t, g = history[0]
            rate = (load - g) / (now - t)
        if not history or now - history[-1][0] >= 0.05:
            history.append((now, load))
        return abs(rate)

    def read(self) -> Reading:
        """The reading now (consumes no state other than the drift estimate)."""
        with self._lock:
            now = self._clock.now()
            gross = self._gross(now)
            spec = self.spec
            overload = gross > spec.capacity_g + 9 * float(spec.resolution_g)
            underload = self._faults.pan_off
            drift = self._drift_g_s(now)
            stable = (
                not self._faults.no_stability
                and not overload
                and not underload
                and now >= self._settled_at
                and drift <= spec.stable_drift_g_s
            )
            net = gross - self._zero - self._tare + self._noise(now)
            return Reading(now, quantize(net, spec.resolution_g), stable, overload, underload)

    # ------------------------------------------------------------------ zero and tare
    def zero(self) -> str:
        """Make the current load read zero (clears the tare). ``"A"`` done, ``"+"`` /
        ``"-"`` outside the zero range (a beaker on the pan is tared, not zeroed)."""
        with self._lock:
            now = self._clock.now()
            gross = self._gross(now)
            if self._faults.pan_off or gross < -self.spec.zero_range_g:
                return "-"
            if gross > self.spec.zero_range_g:
                return "+"
            self._zero, self._tare = gross, 0.0
            self._settled_at = now + self.spec.settle_s
            return "A"

    def tare(self) -> tuple[str, float]:
        """Take the current net load as the tare: (``"S"`` done or ``"+"``/``"-"``, tare)."""
        with self._lock:
            now = self._clock.now()
            gross = self._gross(now)
            if self._faults.pan_off:
                return "-", self._tare
            if gross > self.spec.capacity_g:
                return "+", self._tare
            value = gross - self._zero
            if value < 0:
                return "-", self._tare
            self._tare = value
            self._settled_at = now + self.spec.settle_s
            return "S", self._tare

    def set_tare(self, value_g: float) -> bool:
        """A preset tare (``TA value g``); False outside 0-capacity."""
        with self._lock:
            if not (0 <= value_g <= self.spec.capacity_g):
                return False
            self._tare = value_g
            return True

    def clear_tare(self) -> None:
        with self._lock:
            self._tare = 0.0

    def reset(self) -> None:
        """``@``: the state after switching on, without a new zero: the tare is cleared."""
        with self._lock:
            self._tare = 0.0

    # ------------------------------------------------------------------ faults
    def apply_fault(self, spec: str) -> None:
        """``no_stability[=on|off]``, ``overload[=on|off]``, ``pan_off[=on|off]``,
        ``bump[=GRAMS]`` (default 0.5 g), ``clear`` (all off)."""
        name, sep, raw = spec.strip().partition("=")
        name = name.strip().lower().replace("-", "_")
        value = raw.strip() if sep else None
        with self._lock:
            f = self._faults
            if name == "clear":
                self._faults = _Faults()
                return
            if name == "bump":
                try:
                    grams = float(value) if value else 0.5
                except ValueError:
                    raise BalanceFaultError(f"bump: expected grams, got {value!r}") from None
                if not (0 < grams <= 100):
                    raise BalanceFaultError(f"bump: must be 0-100 g, got {grams}")
                now = self._clock.now()
                f.bump_at, f.bump_g = now, grams
                self._settled_at = max(self._settled_at, now + BUMP_DURATION_S)
                return
            if name not in BALANCE_FAULTS:
                known = ", ".join(BALANCE_FAULTS)
                raise BalanceFaultError(f"unknown balance fault {name!r}; known: {known}, clear")
            on = _flag(value, name)
            setattr(f, name, on)
            if not on:
                self._settled_at = max(self._settled_at, self._clock.now() + self.spec.settle_s)

    def apply_faults(self, specs: str) -> None:
        for spec in filter(None, (s.strip() for s in specs.split(","))):
            self.apply_fault(spec)

    def describe(self) -> dict[str, object]:
        with self._lock:
            f = self._faults
            return {
                "model": self.spec.model,
                "water_g": self.water_g(),
                "density_g_ml": self._density,
                "zero_g": self._zero,
                "tare_g": self._tare,
                "faults": {
                    "no_stability": f.no_stability,
                    "overload": f.overload,
                    "pan_off": f.pan_off,
                    "bump_at": f.bump_at,
                },
            }


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("on", "1", "true", "yes"):
        return True
    if value.lower() in ("off", "0", "false", "no"):
        return False
    raise BalanceFaultError(f"{name}: expected on/off, got {value!r}")


@dataclass
class ConstantFlow:
    """A fluid source for tests and a stand-alone balance: ``rate_ml_h`` from ``t0`` on."""

    clock: Clock
    rate_ml_h: float
    t0: float = field(default=0.0)

    def delivered_ml(self) -> float:
        return max(0.0, self.clock.now() - self.t0) * self.rate_ml_h / 3600.0


__all__ = [
    "BALANCE_FAULTS",
    "BalanceFaultError",
    "BalanceModel",
    "BalanceSpec",
    "Bench",
    "ConstantFlow",
    "FluidSource",
    "Reading",
]
