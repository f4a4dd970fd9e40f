"""How each pump family rounds a rate: the figure ``pumpctl calc`` reports as what the
pump will really run.

The safety process itself asks its connected driver (``PumpDriver.quantize_rate``); the
calculator has no pump, so it uses the same codec rules the drivers use, by family. Every
rule rounds DOWN (toward less drug) and never returns more than it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from firmware_bridge.harvard.codec import round_significant
from firmware_bridge.ne1000.codec import choose_rate
from safety.units import PumpResolution, fraction_to_decimal, plain

#: Harvard Apparatus / KD Scientific: rates are sent with 4 significant digits
HARVARD_DIGITS = 4


class RateRounding(Protocol):
    def round_down(self, ml_per_h: Fraction) -> Decimal: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class CodecRounding:
    """A pump family's own rule from its codec, made exact: a decimal form of the rate
    that float or 12-place rounding pushed above it is stepped back down."""

    name: str
    rule: Callable[[Decimal], Decimal]
    words: str

    def round_down(self, ml_per_h: Fraction) -> Decimal:
        if ml_per_h <= 0:
            return Decimal(0)
        candidate = fraction_to_decimal(ml_per_h, 15)
        for _ in range(4):
            result = self.rule(candidate)
            if Fraction(result) <= ml_per_h:
                return plain(result)
            candidate -= Decimal(1).scaleb(-15)
        return Decimal(0)  # pragma: no cover - each step lowers the candidate

    def describe(self) -> str:
        return self.words


def _ne1000(value: Decimal) -> Decimal:
    return choose_rate(value).ml_h


def _harvard(value: Decimal) -> Decimal:
    return round_significant(value, HARVARD_DIGITS)


ROUNDINGS: dict[str, RateRounding] = {
    "generic": PumpResolution(),
    "ne1000": CodecRounding(
        "ne1000",
        _ne1000,
        "down to what an NE-1000 runs (4 digits, in the best of uL/min, mL/min, uL/h, mL/h)",
    ),
    "harvard": CodecRounding(
        "harvard", _harvard, "down to 4 significant digits (Harvard / KD Scientific)"
    ),
    "mock": PumpResolution(significant_digits=4, smallest_step_ml_h=Decimal(0)),
}


def rounding_for(pump: str) -> RateRounding:
    try:
        return ROUNDINGS[pump]
    except KeyError:
        raise ValueError(
            f"pump: unknown pump family {pump!r}; known: {', '.join(ROUNDINGS)}"
        ) from None
