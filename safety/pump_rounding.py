"""How a pump rounds a rate, in one place: a generic resolution (``PumpResolution``:
significant digits and a smallest step) and each pump family's own rule.

The safety process itself asks its connected driver (``PumpDriver.quantize_rate``); what
has no pump uses these: ``pumpctl calc`` (the figure it reports as what the pump will
really run, by family), the planner's simulation (``PumpResolution``). Every rule rounds
DOWN (toward less drug) and never returns more than it was given.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from firmware_bridge.harvard.codec import round_significant
from firmware_bridge.ne1000.codec import choose_rate
from safety.units import fraction_to_decimal, plain

#: Harvard Apparatus / KD Scientific: rates are sent with 4 significant digits
HARVARD_DIGITS = 4


@dataclass(frozen=True)
class PumpResolution:
    """How finely a pump can set its rate: significant digits and a smallest step (mL/h).

    The default, 4 significant digits and at most 3 decimals in mL/h, is the NE-1000
    family's number format (docs/protocols.md).
    """

    significant_digits: int = 4
    smallest_step_ml_h: Decimal = Decimal("0.001")

    def describe(self) -> str:
        step = self.smallest_step_ml_h
        extra = f", steps of at least {step} mL/h" if step else ""
        return f"down to {self.significant_digits} significant digits{extra}"

    def round_down(self, ml_per_h: Fraction) -> Decimal:
        """The largest representable rate not above ``ml_per_h``: toward less drug."""
        if ml_per_h <= 0:
            return Decimal(0)
        step = self.step_at(ml_per_h)
        steps = math.floor(ml_per_h / step)
        return fraction_to_decimal(steps * step)

    def step_at(self, ml_per_h: Fraction) -> Fraction:
        """The rounding step in force at this rate (for reporting the rounding bound)."""
        if ml_per_h <= 0:
            return Fraction(self.smallest_step_ml_h)
        return max(
            _power_of_ten(_decimal_exponent(ml_per_h) - self.significant_digits + 1),
            Fraction(self.smallest_step_ml_h),
        )


def _decimal_exponent(value: Fraction) -> int:
    """floor(log10(value)) for value > 0, exactly (float log10 is off near powers of ten)."""
    exponent = math.floor(math.log10(value.numerator) - math.log10(value.denominator))
    while _power_of_ten(exponent) > value:
        exponent -= 1
    while _power_of_ten(exponent + 1) <= value:
        exponent += 1
    return exponent


@functools.lru_cache(maxsize=64)
def _power_of_ten(exponent: int) -> Fraction:
    """10 ** exponent, exactly: a planner or a closed loop rounds a rate at every decision,
    and the power is most of that cost; a few exponents cover every pump's range."""
    return Fraction(10) ** exponent


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
