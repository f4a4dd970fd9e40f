"""The controller's picture of the patient: where the drug is, and how sensitive they are.

What the loop knows is what any bedside controller could know: the rate history the safety
process verified, the line it runs through (dead volume, carrier flow: bench settings),
population pharmacology from the literature, and the MAP. What it does not know (this
patient's clearance, volume, potency, and how vasodilated they are now) it estimates.

1. **Where the drug is** (``DrugModel``): the verified doses cross the line's dead volume
   (a transport delay of ``dead volume / total flow`` for each change), then a population
   one-compartment model (Beloeil 2005: V 8.84 L, CL 2 L/min) and an effect site (first
   order, 25 s mean delay, Joachim 2024). Its state is in *dose-equivalents*: ``u_e`` is
   the dose that, held for ever, would give today's effect-site level. The patient's own
   clearance differs from the population's; that difference is absorbed by the potency
   estimate below, and its transient part by the baseline estimate.
2. **How the patient responds** (``Estimator``): MAP = B + Emax / (1 + (D50 / u_e)^gamma),
   Emax and gamma from the population (98.7 mmHg, 1.8: PAS's Beloeil model), with two
   unknowns tracked by an extended Kalman filter: ``B`` the MAP without drug (it moves
   with vasodilation, bleeding, fluid: a random walk of ``q_baseline`` mmHg^2/min) and
   ``theta = ln D50`` (the dose for half the maximal effect: a slow random walk). Its prior
   spans the published robustness range (0.1x-10x around the population's D50 is
   +-2 SD). With no drug on board only ``B`` is observable; every change of dose teaches
   ``theta``.

The loop uses the estimates' uncertainty on purpose: it doses for a patient ``caution``
standard deviations *more* sensitive than the estimate (``LoopSettings.caution``), because
under the gradual-wean rule (S5: -25 % per 30 min) an overshoot lasts far longer than an
undershoot (S4 allows +50 % per 10 min).
"""

from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass

#: population figures the controller assumes (its own copy: it never reads the simulator)
POP_VOLUME_L = 8.84  # Beloeil 2005 via PAS
POP_CLEARANCE_L_MIN = 2.0  # Beloeil 2005 via PAS (SAPS II 30)
POP_EMAX_MMHG = 98.7  # PAS
POP_GAMMA = 1.8  # PAS
POP_C50_NG_ML = 70.4 / (1000.0 / 169.18)  # PAS's 70.4 read as nmol/L (docs/closed-loop.md)
POP_EFFECT_LAG_S = 25.0  # Joachim 2024
#: D50 spread of the prior: the published 0.1x-10x potency range times the clearance's
#: spread with severity (3 to 0.9 L/min, Beloeil) is +-2 SD
PRIOR_THETA_SD = math.log(30.0) / 2.0
#: MAP without the drug: a patient in vasodilatory shock (project prior: MAP < 65 is the
#: definition of hypotension the drug is for), wide
PRIOR_BASELINE_MMHG = 65.0
PRIOR_BASELINE_SD = 15.0
Q_BASELINE = 4.0  # mmHg^2 per min: vasodilation can move several mmHg in a minute
THETA_MEMORY_MIN = 60.0  # evidence on the sensitivity fades with this time constant
R_MEASUREMENT = 2.0  # mmHg^2: a median over a period of numerics
GRID = 61
GRID_SPAN_SD = 3.5


def population_d50(unit_per_ug_min: float) -> float:
    """D50 of the typical patient in the program's dose unit: the steady dose whose plasma
    level is C50 (C50 x CL), converted (``unit_per_ug_min``: dose units per ug/min; 1/kg
    for a weight-based dose)."""
    return POP_C50_NG_ML * POP_CLEARANCE_L_MIN * unit_per_ug_min


# --------------------------------------------------------------------------- drug model


@dataclass(frozen=True)
class Segment:
    """From ``start`` (clinical s) the pump ran ``rate_ml_h``, i.e. ``dose``."""

    start: float
    rate_ml_h: float
    dose: float


class DrugModel:
    """Dose-equivalents in the plasma and at the effect site, from verified segments.

    The line is plug flow: what the pump pushes at ``s`` reaches the vein once the dead
    volume has been pushed after it, by whatever flows from then on (pump and carrier).
    So a segment's arrival depends on the segments after it, not on its own rate: a
    start after minutes of carrier alone arrives after ``dead volume / (start's flow +
    carrier)``, not after the carrier alone's longer transit. Arrivals still in the line
    are worked out again with each new segment, the last one assumed to run on."""

    def __init__(self, dead_volume_ml: float, carrier_ml_h: float, ml_h_per_dose: float) -> None:
        """``ml_h_per_dose``: the pump rate (mL/h) of one unit of the program's dose."""
        self.dead_volume_ml = dead_volume_ml
        self.carrier_ml_h = carrier_ml_h
        self.ml_h_per_dose = ml_h_per_dose
        self.k = POP_CLEARANCE_L_MIN / POP_VOLUME_L / 60.0  # per s
        self.ke0 = 1.0 / POP_EFFECT_LAG_S  # per s
        self.plasma = 0.0
        self.effect = 0.0
        self.t: float | None = None
        self._starts: list[float] = []
        self._rates: list[float] = []  # mL/h of drug solution
        self._arrivals: list[float] = []  # when each segment's fluid reaches the vein
        self._doses: list[float] = []

    def delay_s(self, rate_ml_h: float) -> float:
        """Transit of the whole line at a constant pump rate (and the carrier)."""
        total = rate_ml_h + self.carrier_ml_h
        if self.dead_volume_ml <= 0:
            return 0.0
        return math.inf if total <= 0 else self.dead_volume_ml / total * 3600.0

    def add(self, segment: Segment) -> None:
        """A segment of the verified history (in order; repeats are ignored)."""
        if self._starts and segment.start <= self._starts[-1]:
            return
        self._starts.append(segment.start)
        self._rates.append(segment.rate_ml_h)
        self._doses.append(segment.dose)
        self._arrivals.append(math.inf)
        # the new flow pushes every segment whose fluid had not reached the vein by its start
        i = len(self._arrivals) - 1
        while i > 0 and self._arrivals[i - 1] > segment.start:
            i -= 1
        for j in range(i, len(self._arrivals)):
            self._arrivals[j] = self._arrival(j)

    def _arrival(self, i: int) -> float:
        """When the fluid pushed at segment ``i``'s start reaches the vein."""
        left = self.dead_volume_ml
        if left <= 0:
            return self._starts[i]
        for j in range(i, len(self._starts)):
            flow = (self._rates[j] + self.carrier_ml_h) / 3600.0  # mL/s
            end = self._starts[j + 1] if j + 1 < len(self._starts) else math.inf
            if flow <= 0:
                continue
            if flow * (end - self._starts[j]) >= left:
                return self._starts[j] + left / flow
            left -= flow * (end - self._starts[j])
        return math.inf

    def vein_dose(self, t: float) -> float:
        i = bisect.bisect_right(self._arrivals, t) - 1
        return self._doses[i] if i >= 0 else 0.0

    def advance(self, t: float) -> None:
        if self.t is None:
            self.t = t
            return
        while self.t < t:
            i = bisect.bisect_right(self._arrivals, self.t)
            nxt = self._arrivals[i] if i < len(self._arrivals) else math.inf
            end = min(t, nxt)
            self._run(end - self.t, self.vein_dose(self.t))
            self.t = end

    def _run(self, seconds: float, dose: float) -> None:
        self.plasma, self.effect = _step(self.plasma, self.effect, dose, seconds, self.k, self.ke0)

    def predict_effect(self, horizon_s: float, dose_now: float) -> tuple[float, float]:
        """(free, gain): the effect-site dose-equivalent ``horizon_s`` from now is
        ``free + gain x d`` if dose ``d`` runs from now on (the fluid already in the line
        still arrives first)."""
        assert self.t is not None
        now = self.t
        delay = self.delay_s(dose_now * self.ml_h_per_dose)
        switch = now + min(delay, horizon_s)
        # free response: what is on its way, then nothing
        p, e, t = self.plasma, self.effect, now
        points = [a for a in self._arrivals if now < a < switch]
        for a in [*points, switch]:
            p, e = _step(p, e, self.vein_dose(t), a - t, self.k, self.ke0)
            t = a
        free_p, free_e = _step(p, e, 0.0, now + horizon_s - t, self.k, self.ke0)
        # unit dose from the switch on, from an empty patient
        _, gain = _step(0.0, 0.0, 1.0, now + horizon_s - switch, self.k, self.ke0)
        del free_p
        return free_e, gain


def _step(
    plasma: float, effect: float, dose: float, seconds: float, k: float, ke0: float
) -> tuple[float, float]:
    """Closed form of one compartment + effect site over a constant input (dose-equivalent
    units: the steady state of a dose is the dose)."""
    if seconds <= 0:
        return plasma, effect
    x0, y0 = plasma - dose, effect - dose
    ek, ee = math.exp(-k * seconds), math.exp(-ke0 * seconds)
    diff = ke0 - k
    cross = x0 * ke0 * (ek - ee) / diff if abs(diff) > 1e-12 else x0 * ke0 * seconds * ee
    return dose + x0 * ek, dose + y0 * ee + cross


# --------------------------------------------------------------------------- estimator


class Estimator:
    """Posterior over (B, theta = ln D50) on a grid of theta, each with its own Kalman
    filter on B (given theta the measurement is linear in B: a Rao-Blackwellised grid
    filter). Why not an extended Kalman filter: with little drug on board the MAP hardly
    depends on theta where the prior puts it, so a linearised filter learns nothing and
    pins every change on B; the grid weighs every sensitivity by how well it explains
    the whole history. ``GRID`` points over +-``GRID_SPAN_SD`` prior SDs."""

    def __init__(
        self, d50_prior: float, *, baseline_prior: float = PRIOR_BASELINE_MMHG,
        emax: float = POP_EMAX_MMHG,
    ) -> None:  # fmt: skip
        self.emax = emax
        self.gamma = POP_GAMMA
        center = math.log(d50_prior)
        sd = PRIOR_THETA_SD
        self.thetas = [
            center + sd * GRID_SPAN_SD * (2.0 * i / (GRID - 1) - 1.0) for i in range(GRID)
        ]
        self.logw = [-0.5 * ((th - center) / sd) ** 2 for th in self.thetas]
        self.b_mean = [baseline_prior] * GRID
        self.b_var = [PRIOR_BASELINE_SD**2] * GRID
        self._weights: list[float] | None = None

    # ------------------------------------------------------------------ model
    def effect(self, u_e: float, theta: float) -> float:
        """Predicted MAP rise at effect-site dose-equivalent ``u_e``."""
        if u_e <= 0:
            return 0.0
        z = self.gamma * (math.log(u_e) - theta)
        if z < -50:
            return 0.0
        return self.emax / (1.0 + math.exp(-z))

    def weights(self) -> list[float]:
        if self._weights is None:
            top = max(self.logw)
            w = [math.exp(lw - top) for lw in self.logw]
            total = math.fsum(w)
            self._weights = [x / total for x in w]
        return self._weights

    # ------------------------------------------------------------------ filtering
    def predict(self, minutes: float) -> None:
        add = Q_BASELINE * minutes
        self.b_var = [v + add for v in self.b_var]
        keep = math.exp(-minutes / THETA_MEMORY_MIN)  # old evidence on theta fades
        self.logw = [lw * keep for lw in self.logw]
        self._weights = None

    def update(self, measured: float, u_e: float) -> None:
        """Fold one measured MAP in."""
        r = R_MEASUREMENT
        # ``effect(u_e, th)`` for every theta of the grid, with the logarithm of ``u_e``
        # taken once instead of per grid point (the same operations, the same floats)
        log_u = math.log(u_e) if u_e > 0 else 0.0
        gamma, emax = self.gamma, self.emax
        for i, th in enumerate(self.thetas):
            e = 0.0
            if u_e > 0:
                z = gamma * (log_u - th)
                if not z < -50:  # as ``effect`` has it
                    e = emax / (1.0 + math.exp(-z))
            v = self.b_var[i]
            innovation = measured - self.b_mean[i] - e
            s = v + r
            # Student-t (4 d.o.f.) likelihood: a disturbance the model missed must not
            # condemn a sensitivity for good
            self.logw[i] -= 2.5 * math.log1p(innovation * innovation / (4.0 * s)) + 0.5 * math.log(
                s
            )
            k = v / s
            self.b_mean[i] += k * innovation
            self.b_var[i] = v * (1.0 - k)
        top = max(self.logw)
        self.logw = [max(lw - top, -700.0) for lw in self.logw]
        self._weights = None

    # ------------------------------------------------------------------ summaries
    def quantile_dose(self, target: float, q: float) -> float:
        """The weighted ``q`` quantile over the grid of the steady dose-equivalent that
        gives ``target`` (0: none needed, inf: none can)."""
        # per grid point, the steady dose that gives ``target`` on that point's baseline
        # (the Emax model solved for the dose; none needed: 0; beyond 97 % of Emax: inf),
        # in one loop: twice per decision over 61 points
        emax, gamma, ceiling = self.emax, self.gamma, 0.97 * self.emax
        pairs: list[tuple[float, float]] = []
        for b, th, w in zip(self.b_mean, self.thetas, self.weights(), strict=True):
            need = target - b
            if need <= 0:
                dose = 0.0
            elif need >= ceiling:
                dose = math.inf
            else:
                dose = math.exp(th + math.log(need / (emax - need)) / gamma)
            pairs.append((dose, w))
        pairs.sort()
        acc = 0.0
        for dose, w in pairs:
            acc += w
            if acc >= q:
                return dose
        return pairs[-1][0]

    def mean(self) -> tuple[float, float, float]:
        """Posterior mean of B, of theta, and the SD of theta."""
        w = self.weights()
        # the same products summed as exactly; ``map`` over the two lists spares a
        # generator frame per point (journaled at every decision)
        b = math.fsum(map(operator.mul, w, self.b_mean))
        th = math.fsum(map(operator.mul, w, self.thetas))
        var = math.fsum([wi * (ti - th) ** 2 for wi, ti in zip(w, self.thetas, strict=True)])
        return b, th, math.sqrt(var)
