"""The drug library's shape, as pydantic models that refuse unknown fields.

Structure follows smart-pump dose error reduction libraries (e.g. BD Alaris Guardrails):
care-area profile -> drug -> therapy, each therapy with one dose unit, allowed
concentrations and diluents, soft and hard limits, start dose, titration step limits and
a wean rule; a cumulative cap per drug. Every figure is a ``Figure`` that carries its
source. Structural checks live here; checks that relate figures to each other (order of
limits, the 1000x mg/mcg slip) live in ``sanity.py`` so each problem can be reported
with its exact field path.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from safety.library.diluents import Diluent, DiluentError, parse_diluent
from safety.units import (
    AmountUnit,
    BodyWeight,
    Concentration,
    DoseRateUnit,
    UnitError,
    parse_concentration,
    parse_dose_unit,
)

NonEmpty = Annotated[str, Field(min_length=1)]

#: No library figure is smaller (other than 0) or larger than this; outside it a number is
#: a slip, and 1e-99999999 would make the exact (Fraction) sanity checks run for ever.
_MAGNITUDE = (Decimal("1e-9"), Decimal("1e9"))


def _sane_magnitude(value: Decimal) -> Decimal:
    low, high = _MAGNITUDE
    if value.is_finite() and value != 0 and not (low <= abs(value) <= high):
        raise ValueError(f"{value} is outside the plausible magnitude {low:f} to {high:f}")
    return value


Number = Annotated[Decimal, AfterValidator(_sane_magnitude)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Figure(_Strict):
    """A number with the document it comes from."""

    value: Number
    source: NonEmpty
    note: str | None = None

    @field_validator("value")
    @classmethod
    def _finite_non_negative(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError(f"must be a finite number >= 0, got {value}")
        return value


class FlagFigure(_Strict):
    """A yes/no rule with the document it comes from."""

    value: bool
    source: NonEmpty
    note: str | None = None


class WeightRange(_Strict):
    min: Number
    max: Number
    source: NonEmpty
    note: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> WeightRange:
        if not (Decimal(0) < self.min < self.max):
            raise ValueError(f"need 0 < min < max, got min={self.min} max={self.max}")
        return self


class SourceInfo(_Strict):
    title: NonEmpty


class WeightRule(_Strict):
    """A concentration that scales with weight, e.g. the Rule of 6: 0.6 mg/kg in 100 mL."""

    mg_per_kg: Number = Field(gt=0)
    volume_ml: Number = Field(gt=0)

    def concentration_for(self, weight: BodyWeight) -> Concentration:
        return Concentration(self.mg_per_kg * weight.kg, AmountUnit.MG, self.volume_ml)


#: A weight-rule concentration prepared by hand is accepted within this relative distance.
WEIGHT_RULE_TOLERANCE = Fraction(2, 100)


class ConcentrationEntry(_Strict):
    strength: str | None = None
    rule: WeightRule | None = None
    name: str | None = None
    diluents: list[Diluent] = Field(min_length=1)
    source: NonEmpty
    note: str | None = None

    @field_validator("strength")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_concentration(value, "strength")
            except UnitError as exc:
                raise ValueError(exc.detail) from None
        return value

    @field_validator("diluents", mode="before")
    @classmethod
    def _diluent_names(cls, value: object) -> object:
        if isinstance(value, list):
            try:
                return [parse_diluent(v) if isinstance(v, str) else v for v in value]
            except DiluentError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ConcentrationEntry:
        if (self.strength is None) == (self.rule is None):
            raise ValueError("give exactly one of 'strength' (e.g. '4 mg/250 mL') or 'rule'")
        return self

    @property
    def label(self) -> str:
        if self.strength is not None:
            return self.strength
        assert self.rule is not None
        rule = f"{self.rule.mg_per_kg} mg/kg in {self.rule.volume_ml} mL"
        return f"{self.name} ({rule})" if self.name else rule

    def concentration(self, weight: BodyWeight | None) -> Concentration | None:
        """The strength for this patient; a weight rule needs the weight (None without)."""
        if self.strength is not None:
            return parse_concentration(self.strength)
        assert self.rule is not None
        return None if weight is None else self.rule.concentration_for(weight)

    def matches(self, given: Concentration, weight: BodyWeight | None) -> bool:
        expected = self.concentration(weight)
        if expected is None:
            return False
        tolerance = Fraction(0) if self.rule is None else WEIGHT_RULE_TOLERANCE
        return expected.same_strength(given, tolerance)


class Titration(_Strict):
    """How fast a dose may rise: per step and per window, absolute (dose unit) and relative.

    A rise must respect BOTH the absolute and the relative bound, so a 10x slip never
    passes as one titration, at any dose.
    """

    max_step_rise: Figure
    max_step_rise_fraction: Figure
    window_min: Figure
    max_window_rise: Figure
    max_window_rise_fraction: Figure


class Wean(_Strict):
    """How fast a dose may fall (S5): rate(t) >= (1 - f) x max rate over the last window."""

    gradual_wean_only: FlagFigure
    max_fall_fraction: Figure | None = None
    window_min: Figure | None = None
    stop_threshold: Figure | None = None

    @model_validator(mode="after")
    def _complete_when_gradual(self) -> Wean:
        if self.gradual_wean_only.value:
            missing = [
                name
                for name in ("max_fall_fraction", "window_min", "stop_threshold")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"gradual_wean_only needs {', '.join(missing)}")
        return self


class Therapy(_Strict):
    display_name: NonEmpty
    dose_unit: NonEmpty
    explicit_selection_only: bool = False
    advisory: str = ""
    default_start: Figure
    max_start: Figure
    soft_min: Figure
    soft_max: Figure
    hard_max: Figure
    warn_above: Figure | None = None
    concentrations: list[ConcentrationEntry] = Field(min_length=1)
    titration: Titration
    wean: Wean

    @field_validator("dose_unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        try:
            return str(parse_dose_unit(value, "dose_unit"))
        except UnitError as exc:
            raise ValueError(exc.detail) from None

    @property
    def unit(self) -> DoseRateUnit:
        return parse_dose_unit(self.dose_unit)

    @property
    def weight_based(self) -> bool:
        return self.unit.per_kg

    def allowed_concentration(
        self, given: Concentration, weight: BodyWeight | None
    ) -> ConcentrationEntry | None:
        for entry in self.concentrations:
            if entry.matches(given, weight):
                return entry
        return None


class CumulativeCap(_Strict):
    """At most ``amount`` ``unit`` of the drug in any rolling window of ``window_h`` hours."""

    amount: Number = Field(gt=0)
    unit: AmountUnit
    window_h: Number = Field(gt=0)
    source: NonEmpty
    note: str | None = None

    @property
    def base_amount(self) -> Fraction:
        return _base_amount(self.amount, self.unit)

    @property
    def window_s(self) -> Fraction:
        return _window_s(self.window_h)


# The kernel asks a cap for these on every read-back and deadline, tens of thousands of
# times a simulated day; exact arithmetic from the Decimal each time is most of their
# cost. Cached on the values themselves (not on the model, whose ``model_copy`` would
# carry a cached value over to a copy with other values): never stale.
@lru_cache(maxsize=256)
def _base_amount(amount: Decimal, unit: AmountUnit) -> Fraction:
    return Fraction(amount) * unit.base_factor


@lru_cache(maxsize=256)
def _window_s(window_h: Decimal) -> Fraction:
    return Fraction(window_h) * 3600


class Drug(_Strict):
    display_name: NonEmpty
    aliases: list[str] = Field(default_factory=list)
    default_therapy: NonEmpty
    advisory: str = ""
    cumulative_cap: CumulativeCap | None = None
    therapies: dict[str, Therapy] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_exists(self) -> Drug:
        if self.default_therapy not in self.therapies:
            known = ", ".join(self.therapies)
            raise ValueError(f"default_therapy {self.default_therapy!r} is not one of: {known}")
        return self


class BenchFluid(_Strict):
    """A test fluid (water for an accuracy test): no drug, so no dose, cap, titration or
    wean rules; only the rates a pump may run it at. Kept in its own table
    (``[test_fluids.NAME]``), never among a profile's drugs, and loaded only by a program
    that says it is a test fluid, so it can never be taken for a drug or a drug for it."""

    display_name: NonEmpty
    #: its "dose" is the flow itself; the field is fixed so nobody reads a drug unit into it
    dose_unit: NonEmpty = "mL/h"
    min_rate_ml_h: Figure
    max_rate_ml_h: Figure
    density_g_ml: Figure | None = None
    advisory: str = ""

    @field_validator("dose_unit")
    @classmethod
    def _volume_flow(cls, value: str) -> str:
        if value != "mL/h":
            raise ValueError(f"a test fluid is dosed in mL/h (its flow), not {value!r}")
        return value


class Profile(_Strict):
    display_name: NonEmpty
    weight_kg: WeightRange
    reference_weight_kg: Figure
    drugs: dict[str, Drug] = Field(min_length=1)


class DrugLibraryModel(_Strict):
    schema_: int = Field(alias="schema", ge=1, le=1)
    name: NonEmpty
    version: NonEmpty
    status: NonEmpty
    sources: dict[str, SourceInfo] = Field(min_length=1)
    profiles: dict[str, Profile] = Field(min_length=1)
    #: fluids for bench tests (no drug): rate limits only; none unless the library says so
    test_fluids: dict[str, BenchFluid] = Field(default_factory=dict)
