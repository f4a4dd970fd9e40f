"""What the drive's motion really pushes out of the line: slack, lead-screw ripple, bore
error and compliance, solved exactly on the clinical clock.

``SimulatedPump`` computes the flow an ideal mechanism would deliver (the set rate while
running, nothing while occluded, the rate reversed while withdrawing). A real syringe pump
does not deliver that at once, nor evenly:

- **slack**: between the drive and the plunger there is play (backlash of the drive nut,
  the plunger flange not yet touching the pusher, the stopper's first give). Until the
  drive has travelled ``slack_mm`` nothing leaves the syringe; at low rates that is the
  start-up delay users see. A purge at the syringe's top rate takes it up in a moment; a
  withdrawal or a syringe (re)load opens it again.
- **compliance**: the stopper, barrel and line store volume under pressure, so the flow
  out of the line follows the plunger with a first-order lag ``compliance_tau_s``; after a
  stop the stored volume drains (the after-flow observed after stopping a syringe pump).
- **ripple**: the lead screw turns once per ``screw_pitch_mm`` of travel and does not
  advance the plunger perfectly evenly within a turn; the flow carries a periodic ripple of
  relative amplitude ``ripple_fraction`` whose period is a screw turn.
- **bore error**: the real inner diameter differs from the one the pump was told by
  ``bore_error_fraction``; the volume per millimetre, and so the mean flow, is off by
  ``(1 + e)^2 - 1``.

Figures and their sources are in ``TYPICAL`` and docs/accuracy.md. The default of the pump
model is ``IDEAL`` (no slack, no lag, no ripple, no bore error): the safety suite's ground
truth checks ideal delivery unless a test asks for a real mechanism.

The equations are linear between events, so ``DeliveryLine`` solves them in closed form:
with the plunger's displaced volume ``y`` (in the volume units the pump believes in),
``p(y) = (1 + e)^2 y + c sin(2 pi y / L)`` (``L`` the volume of one screw turn, ``c``
chosen so the ripple of ``dp/dy`` is ``ripple_fraction``) is what the plunger really
pushes, and the delivered volume ``z`` obeys ``tau z' = p(y) - z``. Its ground truth is
written as piecewise-constant segments whose rates are the exact mean flow of each piece:
one segment per steady stretch, a grid of short ones (an eighth of ``tau``, a 24th of a
screw turn) while the flow varies. The delivered volume is exact at every segment end; a
transient is counted as over once it has fewer than ``TRANSIENT_EPS_ML`` left to deliver.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from firmware_bridge.syringes import Syringe

#: a transient with less than this volume still to come is over (1 nL)
TRANSIENT_EPS_ML = 1e-6 * 1e-3
#: segments per compliance time constant while a transient runs
STEPS_PER_TAU = 8
#: segments per screw turn while the ripple shows
STEPS_PER_TURN = 24
#: no grid segment is shorter than this (s)
MIN_STEP_S = 1e-3


class MechanicsSpecError(ValueError):
    """A mechanics description that does not parse; the message says what is allowed."""


@dataclass(frozen=True)
class Mechanics:
    """The imperfections of one pump with one syringe (see the module docstring)."""

    slack_mm: float = 0.0
    compliance_tau_s: float = 0.0
    ripple_fraction: float = 0.0
    screw_pitch_mm: float = 1.0
    bore_error_fraction: float = 0.0
    #: the slack is already taken up at power-up (a primed, purged syringe)
    primed: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("slack_mm", 0.0 <= self.slack_mm <= 5.0, "0-5 mm"),
            ("compliance_tau_s", 0.0 <= self.compliance_tau_s <= 3600.0, "0-3600 s"),
            ("ripple_fraction", 0.0 <= self.ripple_fraction <= 0.5, "0-0.5"),
            ("screw_pitch_mm", 0.05 <= self.screw_pitch_mm <= 20.0, "0.05-20 mm"),
            ("bore_error_fraction", -0.2 <= self.bore_error_fraction <= 0.2, "-0.2 to 0.2"),
        )
        for name, ok, allowed in checks:
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise MechanicsSpecError(f"{name} must be {allowed}, got {value}")

    @property
    def ideal(self) -> bool:
        return (
            self.slack_mm == 0.0
            and self.compliance_tau_s == 0.0
            and self.ripple_fraction == 0.0
            and self.bore_error_fraction == 0.0
        )

    @property
    def flow_factor(self) -> float:
        """Real volume per volume the pump believes it displaced."""
        return (1.0 + self.bore_error_fraction) ** 2

    def slack_ml(self, syringe: Syringe) -> float:
        return self.slack_mm * syringe.ml_per_mm

    def turn_ml(self, syringe: Syringe) -> float:
        """Volume the pump believes one screw turn displaces."""
        return self.screw_pitch_mm * syringe.ml_per_mm

    def startup_delay_s(self, syringe: Syringe, rate_ml_h: float) -> float:
        """The model's own start-up delay from an unprimed start at a constant rate: where
        the steady delivery line ``V(t) = Qreal (t - delay)`` crosses zero. The slack takes
        ``slack / rate``; the compliance lag adds ``tau``; the ripple has zero mean."""
        if rate_ml_h <= 0:
            raise ValueError(f"rate must be > 0 mL/h, got {rate_ml_h}")
        slack = 0.0 if self.primed else self.slack_ml(syringe)
        return slack / rate_ml_h * 3600.0 + self.compliance_tau_s

    def mean_flow_error(self) -> float:
        """The model's own mean flow error (fraction) once the start-up is over."""
        return self.flow_factor - 1.0


#: an ideal mechanism: what the pump believes is what reaches the line
IDEAL = Mechanics()

#: a realistic syringe driver (project figures, each landing inside published ranges):
#: - slack 0.25 mm of travel: a BD 50 mL syringe (0.555 mL/mm) at 1 mL/h first delivers
#:   after 8.3 min (Neff 2001, Paediatr Anaesth 11:561: 6.75-57.2 min, unprimed, 1 mL/h);
#:   at 0.1 mL/h the start-up takes 84 min (Neff 2007, EJA 24:602: 74.5 +- 26.6 min, 50 mL
#:   syringe); a 10 mL syringe at 1 mL/h takes 3 min (Neff 2007: 3.6 min);
#: - compliance lag 30 s: after a stop at 6 mL/h about 0.05 mL flows on, over 2-3 min
#:   (Rooke & Bowdle 1994, Anesth Analg 78:150): Q x tau = 0.05 mL at 6 mL/h;
#: - ripple 2 % over a 1 mm lead-screw turn (project figure; short-window trumpet widths of
#:   a few per cent are what syringe pumps show);
#: - no bore error (the syringe table's diameter is taken as right).
TYPICAL = Mechanics(
    slack_mm=0.25,
    compliance_tau_s=30.0,
    ripple_fraction=0.02,
    screw_pitch_mm=1.0,
    bore_error_fraction=0.0,
)

PROFILES: dict[str, Mechanics] = {"ideal": IDEAL, "typical": TYPICAL}

_SPEC_NAMES = {
    "slack_mm": "slack_mm",
    "slack": "slack_mm",
    "tau_s": "compliance_tau_s",
    "compliance_tau_s": "compliance_tau_s",
    "tau": "compliance_tau_s",
    "ripple": "ripple_fraction",
    "ripple_fraction": "ripple_fraction",
    "pitch_mm": "screw_pitch_mm",
    "screw_pitch_mm": "screw_pitch_mm",
    "bore_error": "bore_error_fraction",
    "bore_error_fraction": "bore_error_fraction",
}


def parse_mechanics(spec: str) -> Mechanics:
    """``"typical"``, ``"ideal"``, or a profile and/or ``name=value`` changes, comma
    separated: ``"typical,bore_error=0.0075,primed"``, ``"slack_mm=0.3,tau_s=20"``."""
    result = IDEAL
    changes: dict[str, float | bool] = {}
    for raw in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = raw.partition("=")
        key = name.strip().lower().replace("-", "_")
        if not sep:
            if key in PROFILES:
                result = PROFILES[key]
                continue
            if key == "primed":
                changes["primed"] = True
                continue
            raise MechanicsSpecError(
                f"unknown mechanics {key!r}; profiles: {', '.join(PROFILES)}; or name=value "
                f"with name in {', '.join(sorted(set(_SPEC_NAMES)))}, or 'primed'"
            )
        if key == "primed":
            changes["primed"] = value.strip().lower() in ("1", "on", "true", "yes")
            continue
        field = _SPEC_NAMES.get(key)
        if field is None:
            raise MechanicsSpecError(
                f"unknown mechanics parameter {key!r}; known: {', '.join(sorted(_SPEC_NAMES))}"
            )
        try:
            changes[field] = float(value)
        except ValueError:
            raise MechanicsSpecError(f"{key}: expected a number, got {value.strip()!r}") from None
    known = {f.name for f in fields(Mechanics)}
    assert set(changes) <= known
    return replace(result, **changes)  # type: ignore[arg-type]


def format_mechanics(m: Mechanics) -> str:
    """The spec that ``parse_mechanics`` turns back into ``m``."""
    text = (
        f"slack_mm={m.slack_mm:g},tau_s={m.compliance_tau_s:g},ripple={m.ripple_fraction:g},"
        f"pitch_mm={m.screw_pitch_mm:g},bore_error={m.bore_error_fraction:g}"
    )
    return text + (",primed" if m.primed else "")


@dataclass(frozen=True)
class _Regime:
    """What the line does from now until ``end`` (clinical s) at the current input."""

    steady: bool
    rate_ml_h: float  # the steady rate (only meaningful when steady)
    end: float
    step_s: float  # grid step while varying


class DeliveryLine:
    """The mechanism between the ideal flow and the line, with its own ground truth.

    ``record`` receives the truth events (``SimulatedPump`` passes its ``GroundTruth``'s
    ``record``); they are imported lazily to keep this module free of the pump model.
    Times are clinical seconds; rates mL/h; volumes mL. Not thread-safe on its own: the
    pump model calls it under its lock.
    """

    def __init__(
        self,
        mechanics: Mechanics,
        syringe: Syringe,
        t0: float,
        record_segment: Callable[[float, float], None],
        record_bolus: Callable[[float, float], None],
    ) -> None:
        self.mechanics = mechanics
        self._record_segment = record_segment
        self._record_bolus = record_bolus
        self._t = t0
        self._u = 0.0  # ideal flow in, mL/h
        self._y = 0.0  # plunger displacement, in the pump's belief (mL)
        self._z = 0.0  # delivered through the line (mL), boluses excluded
        self._boluses = 0.0
        self._syringe = syringe
        self._slack = mechanics.slack_ml(syringe)
        self._gap = 0.0 if mechanics.primed else self._slack
        self._turn = mechanics.turn_ml(syringe)
        self._steady_open = False
        self._seg_t = t0
        self._seg_z = 0.0

    # ------------------------------------------------------------------ reading
    @property
    def gap_ml(self) -> float:
        """Slack still to be taken up before the drive pushes (mL)."""
        return self._gap

    def delivered_ml(self, now: float) -> float:
        """Exact volume delivered since ``t0`` (boluses included), up to ``now``."""
        self.advance(now)
        return self._z + self._boluses

    # ------------------------------------------------------------------ inputs
    def set_input(self, t: float, rate_ml_h: float) -> None:
        """The ideal flow changes to ``rate_ml_h`` at ``t``."""
        self.advance(t)
        self._close(t)
        self._u = rate_ml_h
        self._steady_open = False

    def bolus(self, t: float, volume_ml: float) -> None:
        """A volume released at once (a cleared occlusion): passes straight through."""
        self.advance(t)
        self._close(t)
        self._boluses += volume_ml
        self._record_bolus(t, volume_ml)
        self._steady_open = False

    def reload(self, syringe: Syringe | None = None) -> None:
        """A syringe was (re)loaded by hand: the slack is open again."""
        if syringe is not None:
            self._syringe = syringe
            self._slack = self.mechanics.slack_ml(syringe)
            self._turn = self.mechanics.turn_ml(syringe)
        self._gap = self._slack

    # ------------------------------------------------------------------ time
    def advance(self, now: float) -> None:
        """Move to ``now``, recording every segment that ends on the way."""
        while now > self._t:
            regime = self._regime()
            if regime.steady:
                if not self._steady_open:
                    self._close(self._t)
                    self._record_segment(self._t, regime.rate_ml_h)
                    self._steady_open = True
                t_next = min(now, regime.end)
                self._evolve(t_next - self._t)
                if t_next >= regime.end:
                    self._steady_open = False
                    self._seg_t, self._seg_z = self._t, self._z
                continue
            if self._steady_open:
                self._steady_open = False
                self._seg_t, self._seg_z = self._t, self._z
            seg_end = min(self._seg_t + regime.step_s, regime.end)
            if seg_end <= self._t:  # float noise at a boundary
                seg_end = min(self._t + MIN_STEP_S, regime.end)
            t_next = min(now, seg_end)
            self._evolve(t_next - self._t)
            if t_next >= seg_end:
                self._close(self._t)

    # ------------------------------------------------------------------ internals
    def _close(self, t: float) -> None:
        """Record the varying segment that runs from ``_seg_t`` to ``t`` (if any)."""
        if not self._steady_open and t > self._seg_t:
            rate = (self._z - self._seg_z) / (t - self._seg_t) * 3600.0
            self._record_segment(self._seg_t, rate)
        self._seg_t, self._seg_z = t, self._z

    def _in_slack(self) -> bool:
        return (self._u > 0 and self._gap > 0) or (self._u < 0 and self._gap < self._slack)

    def _p(self, y: float) -> float:
        m = self.mechanics
        p = m.flow_factor * y
        if m.ripple_fraction and self._turn > 0:
            k = 2.0 * math.pi / self._turn
            p += m.ripple_fraction / k * math.sin(k * y)
        return p

    def _particular(self, s: float) -> float:
        """The forced response at ``s`` seconds from now (plunger moving at the input)."""
        m = self.mechanics
        v = self._u / 3600.0
        tau = m.compliance_tau_s
        base = m.flow_factor * (self._y + v * (s - tau))
        if not (m.ripple_fraction and self._turn > 0):
            return base
        k = 2.0 * math.pi / self._turn
        c = m.ripple_fraction / k
        w = k * v
        phase = k * self._y + w * s
        return base + c * (math.sin(phase) - w * tau * math.cos(phase)) / (1.0 + (w * tau) ** 2)

    def _moving(self) -> bool:
        return self._u != 0.0 and not self._in_slack()

    def _target(self, s: float) -> float:
        return self._particular(s) if self._moving() else self._p(self._y)

    def _regime(self) -> _Regime:
        m = self.mechanics
        tau = m.compliance_tau_s
        end = math.inf
        if self._in_slack():
            room = self._gap if self._u > 0 else self._slack - self._gap
            end = self._t + room / abs(self._u) * 3600.0
        moving = self._moving()
        rippling = moving and m.ripple_fraction > 0 and self._turn > 0
        amplitude = abs(self._z - self._target(0.0)) if tau > 0 else 0.0
        step = math.inf
        if amplitude > TRANSIENT_EPS_ML:
            step = tau / STEPS_PER_TAU
            # ends once half the threshold is left, so the next look finds it steady
            end = min(end, self._t + tau * math.log(2.0 * amplitude / TRANSIENT_EPS_ML))
        if rippling:
            period = self._turn / (abs(self._u) / 3600.0)
            step = min(step, period / STEPS_PER_TURN)
        if math.isinf(step):
            rate = m.flow_factor * self._u if moving else 0.0
            return _Regime(True, rate, end, math.inf)
        return _Regime(False, 0.0, end, max(step, MIN_STEP_S))

    def _evolve(self, dt: float) -> None:
        if dt <= 0:
            return
        tau = self.mechanics.compliance_tau_s
        if self._moving():
            target_now = self._particular(0.0)
            target_then = self._particular(dt)
            z = target_then
            if tau > 0:
                z += (self._z - target_now) * math.exp(-dt / tau)
            self._y += self._u / 3600.0 * dt
        else:
            if self._in_slack():
                moved = abs(self._u) / 3600.0 * dt
                if self._u > 0:
                    self._gap = max(0.0, self._gap - moved)
                else:
                    self._gap = min(self._slack, self._gap + moved)
                if self._gap < 1e-12:  # contact reached: no float dust left in the gap
                    self._gap = 0.0
                elif self._slack - self._gap < 1e-12:
                    self._gap = self._slack
            target = self._p(self._y)
            z = target + (self._z - target) * math.exp(-dt / tau) if tau > 0 else target
        self._z = z
        self._t += dt


__all__ = [
    "IDEAL",
    "PROFILES",
    "TYPICAL",
    "DeliveryLine",
    "Mechanics",
    "MechanicsSpecError",
    "format_mechanics",
    "parse_mechanics",
]
