"""What the operator sets when handing an infusion to the closed loop, and the loop's own
tuning. Every field is checked with a message naming it and its allowed range."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from decimal import Decimal


class LoopSettingError(ValueError):
    """A setting outside its range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class LoopSettings:
    """The operator's part: target, band, the dose range the loop may use and whether it
    may cross the therapy's soft limits (S2 still asks for a confirmation in every request
    that crosses one: this is that confirmation, given once, journaled at hand-over). The
    hard maximum (S1) and every step and wean rule (S4, S5) stay as they are.

    The bench's part: the line between pump and vein (the controller's model of the
    transport delay). The loop's tuning: periods and artefact thresholds (project
    choices, docs/closed-loop.md)."""

    target_mmhg: float = 80.0
    band_mmhg: float = 5.0  # in band: |MAP - target| <= band
    dose_min: Decimal = Decimal("0.005")  # in the program's dose unit
    dose_max: Decimal = Decimal("1.0")
    soft_limits_confirmed: bool = False
    # the bench's line (for the transport delay in the controller's model)
    dead_volume_ml: float = 0.5
    carrier_ml_h: float = 5.0
    # tuning
    period_s: float = 30.0  # one control decision per period
    min_change_fraction: float = 0.03  # smaller changes are not sent
    rise_quantile: float = 0.25  # a rise is sized on this quantile of the needed dose
    settle_fraction: float = 0.3  # no rise before the effect site holds this x the dose
    rise_aim_below_mmhg: float = 0.0  # a rise aims this far below the target
    deadband_mmhg: float = 1.5  # no change while the MAP is within this of the target
    horizon_s: float = 480.0  # the effect the dose is chosen for, this far ahead
    trend_span_s: float = 120.0  # the MAP's trend is read over this span
    trend_ahead_s: float = 300.0  # that trend this far ahead: holds a rise, hastens a fall
    # signal
    signal_loss_s: float = 20.0  # no valid sample this long: suspend and alarm
    recover_s: float = 30.0  # clean signal this long after a suspension: resume
    min_pulse_pressure_mmhg: float = 12.0
    damped_fraction: float = 0.45  # pulse pressure below this x its running median: damped
    plausible_mmhg: tuple[float, float] = (25.0, 200.0)
    max_jump_mmhg: float = 25.0  # from the running median, in one sample
    refusals_to_suspend: int = 3  # consecutive refusals before the loop suspends
    ceiling_alarm_s: float = 600.0  # at its maximum and below the band this long: alarm

    def __post_init__(self) -> None:
        checks: dict[str, tuple[float, float]] = {
            "target_mmhg": (40.0, 140.0),
            "band_mmhg": (1.0, 30.0),
            "dead_volume_ml": (0.0, 20.0),
            "carrier_ml_h": (0.0, 500.0),
            "period_s": (5.0, 600.0),
            "min_change_fraction": (0.0, 0.5),
            "rise_quantile": (0.01, 0.5),
            "settle_fraction": (0.0, 1.0),
            "rise_aim_below_mmhg": (0.0, 10.0),
            "deadband_mmhg": (0.0, 10.0),
            "horizon_s": (60.0, 3600.0),
            "trend_span_s": (30.0, 1800.0),
            "trend_ahead_s": (0.0, 3600.0),
            "signal_loss_s": (2.0, 600.0),
            "recover_s": (0.0, 600.0),
            "min_pulse_pressure_mmhg": (0.0, 60.0),
            "damped_fraction": (0.0, 1.0),
            "max_jump_mmhg": (5.0, 200.0),
            "refusals_to_suspend": (1, 100),
            "ceiling_alarm_s": (60.0, 7200.0),
        }
        for name, (low, high) in checks.items():
            value = float(getattr(self, name))
            if not (math.isfinite(value) and low <= value <= high):
                raise LoopSettingError(name, f"must be within {low:g}-{high:g}, got {value:g}")
        if not (Decimal(0) < self.dose_min < self.dose_max):
            raise LoopSettingError(
                "dose_min", f"need 0 < dose_min < dose_max, got {self.dose_min} and {self.dose_max}"
            )
        low, high = self.plausible_mmhg
        if not (0 <= low < high <= 400):
            raise LoopSettingError(
                "plausible_mmhg", f"need 0 <= low < high <= 400, got {low, high}"
            )

    @property
    def band(self) -> tuple[float, float]:
        return (self.target_mmhg - self.band_mmhg, self.target_mmhg + self.band_mmhg)

    def describe(self) -> dict[str, object]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
