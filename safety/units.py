"""Clinical dose units: a closed set, parsed from what people type, never guessed.

Two design rules come from reported dosing errors (docs/sources.md, "Dose-error lessons"):

* Weight-based and non-weight-based doses are different types. ``DoseRate`` (mcg/min)
  and ``WeightBasedDoseRate`` (mcg/kg/min) cannot be passed for one another, and the
  only bridge is an explicit ``for_weight(BodyWeight)``: a 0.5 mcg/kg/min order can never
  be read as 0.5 mcg/min (the 70x error).
* Arithmetic is exact. Values typed by people are decimals; they are kept as ``Decimal``
  and converted with ``Fraction``, so 0.1 mcg/kg/min x 70 kg at 16 mcg/mL is exactly
  26.25 mL/h, and rounding to the pump's resolution (always DOWN, toward less drug;
  ``safety.pump_rounding``) is never thrown off by binary floating point.

The canonical internal flow unit is mL/h (``FlowRate``); doses are converted to it only
at the edges, through a ``Concentration``.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction

# --------------------------------------------------------------------------- errors


class UnitError(ValueError):
    """Input that is not a valid clinical quantity. ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


# --------------------------------------------------------------------------- bounds
# Absurd magnitudes are refused at parse time, before any limit check: these bounds
# are far outside any clinical value and only catch typing slips and garbage.

DOSE_VALUE_MAX = Decimal(100_000)
WEIGHT_MIN_KG = Decimal("0.2")
WEIGHT_MAX_KG = Decimal(500)
AMOUNT_MAX = Decimal(1_000_000)
VOLUME_MAX_ML = Decimal(10_000)
FLOW_MAX_ML_H = Decimal(10_000)
#: A non-zero number smaller than this is a slip (or an attempt to make exact arithmetic
#: on 10**-99999999 run for ever), never a clinical value.
MAGNITUDE_MIN = Decimal("1e-9")
#: More significant digits than this in typed text is a slip, not a clinical figure.
DIGITS_MAX = 20


def to_decimal(value: object, field: str) -> Decimal:
    """A finite decimal from text, int, float or Decimal; a clear error otherwise."""
    if isinstance(value, bool):
        raise UnitError(field, f"expected a number, got {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise UnitError(field, f"must be a finite number, got {value!r}")
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise UnitError(field, "is empty")
        if "," in text:
            # "0,1" is 0.1 in half of Europe and 1 when the comma is dropped as a
            # thousands separator: a 10x dose either way. Never guess.
            raise UnitError(
                field,
                f"{value!r}: a comma is ambiguous (decimal comma or thousands separator?); "
                "write a point for decimals and no separators, e.g. 0.1 or 1000",
            )
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise UnitError(field, f"{value!r} is not a number") from None
        if len(result.as_tuple().digits) > DIGITS_MAX:
            raise UnitError(field, f"{value!r} has more than {DIGITS_MAX} significant digits")
    else:
        raise UnitError(field, f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise UnitError(field, f"must be a finite number, got {value!r}")
    if result != 0 and result.copy_abs() < MAGNITUDE_MIN:  # abs() would overflow 1e999999999
        raise UnitError(field, f"{value!r} is absurdly small (below {MAGNITUDE_MIN:f}); a slip?")
    return result


def check_range(
    value: Decimal, field: str, low: Decimal, high: Decimal, *, low_inclusive: bool = False
) -> Decimal:
    """``value`` within (low, high] (or [low, high]); the error names both bounds."""
    below = value < low if low_inclusive else value <= low
    if below or value > high:
        bracket = "[" if low_inclusive else "("
        raise UnitError(field, f"{value} is outside the allowed range {bracket}{low}, {high}]")
    return value


# --------------------------------------------------------------------------- unit vocabulary


class Dimension(enum.StrEnum):
    """What a drug amount is measured in; mass and units never convert into each other."""

    MASS = "mass"
    UNITS = "units"


class AmountUnit(enum.StrEnum):
    MCG = "mcg"
    MG = "mg"
    UNITS = "units"

    @property
    def dimension(self) -> Dimension:
        return Dimension.UNITS if self is AmountUnit.UNITS else Dimension.MASS

    @property
    def base_factor(self) -> Fraction:
        """Size in the base amount of its dimension (mcg, or units)."""
        return Fraction(1000) if self is AmountUnit.MG else Fraction(1)


class TimeUnit(enum.StrEnum):
    MIN = "min"
    H = "h"

    @property
    def per_hour(self) -> Fraction:
        """How many of this unit fit in an hour."""
        return Fraction(60) if self is TimeUnit.MIN else Fraction(1)


@dataclass(frozen=True)
class DoseRateUnit:
    amount: AmountUnit
    per_kg: bool
    time: TimeUnit

    def __str__(self) -> str:
        return f"{self.amount}/kg/{self.time}" if self.per_kg else f"{self.amount}/{self.time}"

    @property
    def dimension(self) -> Dimension:
        return self.amount.dimension

    def factor_to_base_per_hour(self) -> Fraction:
        """Multiply a value in this unit to get base amount per hour (per kg if per_kg)."""
        return self.amount.base_factor * self.time.per_hour


def _u(amount: AmountUnit, per_kg: bool, time: TimeUnit) -> DoseRateUnit:
    return DoseRateUnit(amount, per_kg, time)


#: The closed set of dose-rate units. Nothing outside it is accepted anywhere.
DOSE_RATE_UNITS: dict[str, DoseRateUnit] = {
    str(u): u
    for u in (
        _u(AmountUnit.MCG, False, TimeUnit.MIN),
        _u(AmountUnit.MCG, True, TimeUnit.MIN),
        _u(AmountUnit.MCG, True, TimeUnit.H),
        _u(AmountUnit.MG, False, TimeUnit.MIN),
        _u(AmountUnit.MG, False, TimeUnit.H),
        _u(AmountUnit.MG, True, TimeUnit.H),
        _u(AmountUnit.UNITS, False, TimeUnit.MIN),
        _u(AmountUnit.UNITS, False, TimeUnit.H),
        _u(AmountUnit.UNITS, True, TimeUnit.H),
    )
}
FLOW_UNIT = "mL/h"
SUPPORTED_UNITS_TEXT = ", ".join([*DOSE_RATE_UNITS, FLOW_UNIT])

_AMOUNT_ALIASES: dict[str, AmountUnit] = {
    "mcg": AmountUnit.MCG,
    "ug": AmountUnit.MCG,
    "µg": AmountUnit.MCG,  # micro sign
    "μg": AmountUnit.MCG,  # Greek mu
    "microgram": AmountUnit.MCG,
    "micrograms": AmountUnit.MCG,
    "mg": AmountUnit.MG,
    "milligram": AmountUnit.MG,
    "milligrams": AmountUnit.MG,
    "units": AmountUnit.UNITS,
    "unit": AmountUnit.UNITS,
}
# ISMP lists these as error-prone: "U" is read as 0 or 4, "IU" as IV or 10.
_ERROR_PRONE_AMOUNTS = {"u": "units", "iu": "units", "cc": "mL"}
_TIME_ALIASES: dict[str, TimeUnit] = {
    "min": TimeUnit.MIN,
    "mins": TimeUnit.MIN,
    "minute": TimeUnit.MIN,
    "minutes": TimeUnit.MIN,
    "h": TimeUnit.H,
    "hr": TimeUnit.H,
    "hrs": TimeUnit.H,
    "hour": TimeUnit.H,
    "hours": TimeUnit.H,
}
_VOLUME_ALIASES: dict[str, Fraction] = {"ml": Fraction(1), "l": Fraction(1000)}
_WEIGHT_ALIASES = {"kg"}


def _amount_unit(token: str, field: str) -> AmountUnit:
    key = token.strip().lower()
    if key in _AMOUNT_ALIASES:
        return _AMOUNT_ALIASES[key]
    if key in _ERROR_PRONE_AMOUNTS:
        raise UnitError(
            field,
            f"{token!r} is an error-prone abbreviation; write {_ERROR_PRONE_AMOUNTS[key]!r}",
        )
    raise UnitError(field, f"unknown amount unit {token!r}; use mcg, mg or units")


def parse_dose_unit(text: str, field: str = "dose unit") -> DoseRateUnit:
    """One of the closed set of dose-rate units, from what people type.

    Accepts aliases (ug, µg, mcg; h, hr) and spaces; refuses anything ambiguous with a
    message naming what is missing ("mg/kg" has no time base).

    Remembered by value (the text and field in, a frozen unit out; a refusal is not
    remembered and is raised again): a library therapy's unit is read from its text on
    every kernel decision and every snapshot, hundreds of times a simulated hour.
    """
    return _dose_unit_memo(text, field)


def _parse_dose_unit(text: str, field: str) -> DoseRateUnit:
    raw = text.strip()
    if not raw:
        raise UnitError(field, "is empty")
    parts = [p.strip() for p in raw.split("/")]
    if any(not p for p in parts):
        raise UnitError(field, f"{text!r} has an empty part; expected e.g. mcg/kg/min")
    lowered = [p.lower() for p in parts]
    if lowered[0] in _VOLUME_ALIASES:
        raise UnitError(field, f"{text!r} is a flow rate, not a dose; a dose is e.g. mcg/min")
    amount = _amount_unit(parts[0], field)
    rest = lowered[1:]
    if not rest:
        raise UnitError(field, f"{text!r} is an amount, not a rate: add a time base (/min or /h)")
    per_kg = False
    if rest[0] in _WEIGHT_ALIASES:
        per_kg = True
        rest = rest[1:]
        if not rest:
            examples = [u for u in DOSE_RATE_UNITS if u.startswith(f"{amount}/kg/")]
            raise UnitError(
                field,
                f"{text!r} has no time base: a dose rate needs /min or /h "
                f"(e.g. {' or '.join(examples)})",
            )
    if len(rest) == 2 and rest[1] in _WEIGHT_ALIASES:
        raise UnitError(field, f"{text!r}: write the weight before the time, e.g. mcg/kg/min")
    if len(rest) != 1:
        raise UnitError(
            field,
            f"{text!r} is not a dose-rate unit; write it as amount[/kg]/time, e.g. mcg/kg/min",
        )
    if rest[0] in _WEIGHT_ALIASES:
        raise UnitError(field, f"{text!r}: write the weight before the time, e.g. mcg/kg/min")
    if rest[0] not in _TIME_ALIASES:
        raise UnitError(field, f"{text!r}: unknown time unit {parts[-1]!r}; use min or h")
    unit = DoseRateUnit(amount, per_kg, _TIME_ALIASES[rest[0]])
    if str(unit) not in DOSE_RATE_UNITS:
        raise UnitError(
            field, f"{unit} is not a supported dose unit; supported: {SUPPORTED_UNITS_TEXT}"
        )
    return unit


# --------------------------------------------------------------------------- quantities


@dataclass(frozen=True)
class BodyWeight:
    kg: Decimal

    def __post_init__(self) -> None:
        check_range(self.kg, "weight", WEIGHT_MIN_KG, WEIGHT_MAX_KG, low_inclusive=True)

    @classmethod
    def parse(cls, value: object, field: str = "weight") -> BodyWeight:
        if isinstance(value, str):
            text = value.strip()
            match = re.fullmatch(r"(.*?)\s*kg", text, flags=re.IGNORECASE)
            if match:
                text = match.group(1)
            number = to_decimal(text, field)
        else:
            number = to_decimal(value, field)
        check_range(number, field, WEIGHT_MIN_KG, WEIGHT_MAX_KG, low_inclusive=True)
        return cls(number)

    def __str__(self) -> str:
        return f"{_fmt(self.kg)} kg"


@dataclass(frozen=True)
class FlowRate:
    """Volume per time in the canonical unit, mL/h."""

    ml_per_h: Decimal

    def __post_init__(self) -> None:
        check_range(self.ml_per_h, "rate", Decimal(0), FLOW_MAX_ML_H, low_inclusive=True)

    @property
    def exact(self) -> Fraction:
        return Fraction(self.ml_per_h)

    def __str__(self) -> str:
        return f"{_fmt(self.ml_per_h)} mL/h"


@dataclass(frozen=True)
class _Dose:
    value: Decimal
    unit: DoseRateUnit

    def __post_init__(self) -> None:
        check_range(self.value, "dose", Decimal(0), DOSE_VALUE_MAX, low_inclusive=True)

    def __str__(self) -> str:
        return f"{_fmt(self.value)} {self.unit}"

    def _converted(self, unit: DoseRateUnit) -> Decimal:
        if unit.dimension is not self.unit.dimension:
            raise UnitError(
                "dose unit", f"cannot convert {self.unit} ({self.unit.dimension}) to {unit}"
            )
        if unit.per_kg is not self.unit.per_kg:
            raise UnitError("dose unit", f"cannot convert {self.unit} to {unit} without a weight")
        exact = (
            Fraction(self.value)
            * self.unit.factor_to_base_per_hour()
            / unit.factor_to_base_per_hour()
        )
        return fraction_to_decimal(exact)


@dataclass(frozen=True)
class DoseRate(_Dose):
    """A dose rate NOT normalised to weight (mcg/min, mg/h, units/min...)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unit.per_kg:
            raise TypeError(f"{self.unit} is weight-based: use WeightBasedDoseRate")

    def to(self, unit: DoseRateUnit) -> DoseRate:
        return DoseRate(self._converted(unit), unit)

    def base_per_hour(self) -> Fraction:
        """Exact base amount (mcg or units) per hour."""
        return Fraction(self.value) * self.unit.factor_to_base_per_hour()

    def per_weight(self, weight: BodyWeight, unit: DoseRateUnit) -> WeightBasedDoseRate:
        """Express this dose per kg of ``weight``, in the weight-based ``unit``."""
        if not unit.per_kg or unit.dimension is not self.unit.dimension:
            raise UnitError("dose unit", f"{unit} is not a weight-based unit of {self.unit}")
        exact = self.base_per_hour() / Fraction(weight.kg) / unit.factor_to_base_per_hour()
        return WeightBasedDoseRate(fraction_to_decimal(exact), unit)


@dataclass(frozen=True)
class WeightBasedDoseRate(_Dose):
    """A dose rate per kg of body weight (mcg/kg/min...). Needs a weight to mean a rate."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.unit.per_kg:
            raise TypeError(f"{self.unit} is not weight-based: use DoseRate")

    def to(self, unit: DoseRateUnit) -> WeightBasedDoseRate:
        return WeightBasedDoseRate(self._converted(unit), unit)

    def for_weight(self, weight: BodyWeight) -> DoseRate:
        """The absolute dose for this patient: the one explicit bridge between the types."""
        per_h = Fraction(self.value) * self.unit.factor_to_base_per_hour() * Fraction(weight.kg)
        unit = absolute_unit_for(self.unit)
        return DoseRate(fraction_to_decimal(per_h / unit.factor_to_base_per_hour()), unit)


AnyDoseRate = DoseRate | WeightBasedDoseRate


def absolute_unit_for(unit: DoseRateUnit) -> DoseRateUnit:
    """The non-weight-based unit a weight-based one turns into: same amount and time base
    when the closed set has it (mcg/kg/min -> mcg/min, mg/kg/h -> mg/h); otherwise the
    same time base in the larger amount (mcg/kg/h -> mg/h), because dividing by 1000
    keeps a decimal exact where dividing by 60 (mcg/min) would round it, possibly up."""
    if not unit.per_kg:
        return unit
    amounts = [unit.amount, *(a for a in AmountUnit if a.dimension is unit.dimension)]
    candidates = [DoseRateUnit(a, False, unit.time) for a in amounts]
    candidates += [DoseRateUnit(unit.amount, False, t) for t in TimeUnit]
    for candidate in candidates:
        if str(candidate) in DOSE_RATE_UNITS:
            return candidate
    raise UnitError("dose unit", f"{unit} has no absolute counterpart")  # pragma: no cover


def weight_unit_for(unit: DoseRateUnit) -> DoseRateUnit:
    """The weight-based unit of the same amount (mcg/min -> mcg/kg/min, mg/h -> mg/kg/h)."""
    if unit.per_kg:
        return unit
    for time in (unit.time, TimeUnit.H, TimeUnit.MIN):
        candidate = DoseRateUnit(unit.amount, True, time)
        if str(candidate) in DOSE_RATE_UNITS:
            return candidate
    raise UnitError("dose unit", f"{unit} has no weight-based counterpart")  # pragma: no cover


def make_dose(value: object, unit: DoseRateUnit, field: str = "dose") -> AnyDoseRate:
    number = to_decimal(value, field)
    check_range(number, field, Decimal(0), DOSE_VALUE_MAX, low_inclusive=True)
    return WeightBasedDoseRate(number, unit) if unit.per_kg else DoseRate(number, unit)


_QUANTITY = re.compile(r"^\s*([-+]?[0-9.,eE+-]*[0-9.])\s*(.*?)\s*$")


def _split_quantity(text: str, field: str) -> tuple[str, str]:
    if not text or not text.strip():
        raise UnitError(field, "is empty")
    match = _QUANTITY.match(text)
    if not match or not match.group(1):
        raise UnitError(field, f"{text!r} does not start with a number")
    return match.group(1), match.group(2)


def parse_dose(text: str, field: str = "dose") -> AnyDoseRate:
    """``"0.1 mcg/kg/min"`` -> WeightBasedDoseRate; ``"8 mcg/min"`` -> DoseRate."""
    number, unit_text = _split_quantity(text, field)
    if not unit_text:
        raise UnitError(field, f"{text!r} has no unit; supported: {SUPPORTED_UNITS_TEXT}")
    value = to_decimal(number, field)
    if value < 0:
        raise UnitError(field, f"{text!r} is negative")
    unit = parse_dose_unit(unit_text, f"{field} unit")
    return make_dose(value, unit, field)


def parse_flow(text: str, field: str = "rate") -> FlowRate:
    """``"26.25 mL/h"`` (also mL/hr, ml/h) -> FlowRate."""
    number, unit_text = _split_quantity(text, field)
    value = to_decimal(number, field)
    unit = unit_text.replace(" ", "").lower()
    if unit not in ("ml/h", "ml/hr", "ml/hour"):
        raise UnitError(field, f"{text!r}: a pump rate is given in mL/h, e.g. '26.25 mL/h'")
    check_range(value, field, Decimal(0), FLOW_MAX_ML_H)
    return FlowRate(value)


# --------------------------------------------------------------------------- concentration


@dataclass(frozen=True)
class Concentration:
    """Drug amount per volume, as a label says it: 4 mg in 250 mL."""

    amount: Decimal
    amount_unit: AmountUnit
    volume_ml: Decimal

    def __post_init__(self) -> None:
        check_range(self.amount, "concentration amount", Decimal(0), AMOUNT_MAX)
        check_range(self.volume_ml, "concentration volume", Decimal(0), VOLUME_MAX_ML)

    @property
    def dimension(self) -> Dimension:
        return self.amount_unit.dimension

    def base_per_ml(self) -> Fraction:
        """Exact base amount (mcg or units) per mL."""
        return Fraction(self.amount) * self.amount_unit.base_factor / Fraction(self.volume_ml)

    def same_strength(self, other: Concentration, rel_tol: Fraction = Fraction(0)) -> bool:
        if self.dimension is not other.dimension:
            return False
        a, b = self.base_per_ml(), other.base_per_ml()
        return abs(a - b) <= rel_tol * max(a, b)

    def per_ml_text(self) -> str:
        per = self.base_per_ml()
        unit = "mcg" if self.dimension is Dimension.MASS else "units"
        return f"{_fmt(fraction_to_decimal(per))} {unit}/mL"

    def __str__(self) -> str:
        if self.volume_ml == 1:
            return f"{_fmt(self.amount)} {self.amount_unit}/mL"
        return f"{_fmt(self.amount)} {self.amount_unit}/{_fmt(self.volume_ml)} mL"


_CONC = re.compile(
    r"^\s*(?P<amount>[0-9.,]+)\s*(?P<aunit>[a-zA-Zµμ]+)\s*(?:/|\bin\b|per)\s*"
    r"(?P<volume>[0-9.,]*)\s*(?P<vunit>[a-zA-Z]+)\s*$",
    flags=re.IGNORECASE,
)


def parse_concentration(text: str, field: str = "concentration") -> Concentration:
    """``"4 mg/250 mL"``, ``"4 mg in 250 mL"``, ``"16 mcg/mL"``, ``"20 units/100 mL"``.

    Remembered by value, as ``parse_dose_unit`` is (a program's label is read on every
    kernel decision and snapshot); a ``Concentration`` is frozen, Decimals are immutable.
    """
    return _concentration_memo(text, field)


def _parse_concentration(text: str, field: str) -> Concentration:
    if not text or not text.strip():
        raise UnitError(field, "is empty")
    match = _CONC.match(text)
    if not match:
        raise UnitError(
            field, f"{text!r} is not a concentration; write e.g. '4 mg/250 mL' or '16 mcg/mL'"
        )
    amount = to_decimal(match.group("amount"), f"{field} amount")
    amount_unit = _amount_unit(match.group("aunit"), f"{field} amount unit")
    vunit = match.group("vunit").lower()
    if vunit in _ERROR_PRONE_AMOUNTS:
        raise UnitError(field, f"{match.group('vunit')!r} is error-prone; write 'mL'")
    if vunit not in _VOLUME_ALIASES:
        raise UnitError(field, f"unknown volume unit {match.group('vunit')!r}; use mL or L")
    volume_text = match.group("volume")
    volume = to_decimal(volume_text, f"{field} volume") if volume_text else Decimal(1)
    volume_ml = volume * Decimal(_VOLUME_ALIASES[vunit].numerator)
    check_range(amount, f"{field} amount", Decimal(0), AMOUNT_MAX)
    check_range(volume_ml, f"{field} volume", Decimal(0), VOLUME_MAX_ML)
    return Concentration(amount, amount_unit, volume_ml)


_dose_unit_memo = functools.lru_cache(maxsize=256)(_parse_dose_unit)
_concentration_memo = functools.lru_cache(maxsize=256)(_parse_concentration)


# --------------------------------------------------------------------------- conversion


def fraction_to_decimal(value: Fraction, places: int = 12) -> Decimal:
    """A Decimal close to ``value`` for display and storage (12 places, half-even).

    Rounded with integer arithmetic, so any magnitude works: a Decimal context's 28
    digits would otherwise fail for values of 1e16 and above. The result is in plain form
    (``plain``): trailing zeros dropped, never an exponent.
    """
    scaled, rest = divmod(value.numerator * 10**places, value.denominator)
    twice = 2 * rest
    if twice > value.denominator or (twice == value.denominator and scaled % 2):
        scaled += 1  # half to even
    if scaled == 0:
        return Decimal(0)
    while places and scaled % 10 == 0:
        scaled //= 10
        places -= 1
    return Decimal(f"{scaled}E-{places}") if places else Decimal(scaled)


def plain(value: Decimal) -> Decimal:
    """Trailing zeros dropped, and never an exponent form such as 1E+3."""
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, len(value.as_tuple().digits) + 1)
        normal = value.normalize()
        exponent = normal.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            ctx.prec += exponent
            return normal.quantize(Decimal(1))
        return normal


def dose_to_flow(dose: DoseRate, concentration: Concentration) -> Fraction:
    """Exact mL/h that delivers ``dose`` from ``concentration``."""
    if not isinstance(dose, DoseRate):
        # The type checker already refuses this; data from outside (IPC, JSON) is not
        # type-checked, so the 70x mcg/kg/min-as-mcg/min error is refused here too.
        raise TypeError(f"{dose.unit} is weight-based: convert it with for_weight() first")
    _same_dimension(dose.unit, concentration)
    return dose.base_per_hour() / concentration.base_per_ml()


def flow_to_dose(ml_per_h: Fraction, concentration: Concentration, unit: DoseRateUnit) -> Fraction:
    """Exact dose value, in the non-weight-based ``unit``, delivered at ``ml_per_h``."""
    if unit.per_kg:
        raise TypeError("flow_to_dose gives an absolute dose; divide by weight explicitly")
    _same_dimension(unit, concentration)
    return ml_per_h * concentration.base_per_ml() / unit.factor_to_base_per_hour()


def flow_to_weight_dose(
    ml_per_h: Fraction, concentration: Concentration, unit: DoseRateUnit, weight: BodyWeight
) -> Fraction:
    """Exact dose value, in the weight-based ``unit``, for ``weight``."""
    if not unit.per_kg:
        raise TypeError("flow_to_weight_dose needs a weight-based unit")
    _same_dimension(unit, concentration)
    return (
        ml_per_h
        * concentration.base_per_ml()
        / Fraction(weight.kg)
        / unit.factor_to_base_per_hour()
    )


def dose_value_at_flow(
    ml_per_h: Fraction,
    concentration: Concentration,
    unit: DoseRateUnit,
    weight: BodyWeight | None,
) -> Fraction:
    """The dose, in ``unit``, that a flow delivers; a weight-based unit needs the weight."""
    if unit.per_kg:
        if weight is None:
            raise UnitError("weight", f"a dose in {unit} needs the patient's weight (kg)")
        return flow_to_weight_dose(ml_per_h, concentration, unit, weight)
    return flow_to_dose(ml_per_h, concentration, unit)


def absolute_dose(dose: AnyDoseRate, weight: BodyWeight | None) -> DoseRate:
    """The absolute dose; a weight-based dose needs the weight, named in the error."""
    if isinstance(dose, WeightBasedDoseRate):
        if weight is None:
            raise UnitError("weight", f"a dose in {dose.unit} needs the patient's weight (kg)")
        return dose.for_weight(weight)
    return dose


def _same_dimension(unit: DoseRateUnit, concentration: Concentration) -> None:
    if unit.dimension is not concentration.dimension:
        raise UnitError(
            "concentration",
            f"a dose in {unit} cannot come from a concentration in {concentration.amount_unit}",
        )


def _fmt(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 26.25, 120, 0.0001."""
    return format(plain(value), "f")


format_decimal = _fmt
