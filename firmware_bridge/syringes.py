"""A small catalogue of common syringes and infusion bags, for the simulated pump and
for drivers.

A syringe pump drives a plunger (``Syringe``: a bore and a volume); a volumetric
(large-volume, peristaltic) pump draws from a container (``Bag``: a volume and the pump's
rate range with its administration set). Either is a ``Container``; a syringe change and a
bag change are the same operation on the pump model (``SimulatedPump.set_container`` /
``reload``).

Inner diameters are the figures pump vendors publish in their syringe tables (New Era
NE-1000 user manual, syringe diameter table). Minimum rates are the lowest rates at
which B. Braun states acceptable accuracy per syringe size (docs/sources.md, "Syringe
catalogue"). Maximum rates follow
from the simulated mechanism's top plunger speed (``MAX_PLUNGER_SPEED_MM_PER_MIN``, a
project figure close to NE-1000 class pumps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: top plunger speed of the simulated mechanism (project figure)
MAX_PLUNGER_SPEED_MM_PER_MIN = 60.0


@dataclass(frozen=True)
class Syringe:
    """A syringe as the pump sees it: a bore and a usable volume."""

    name: str
    inner_diameter_mm: float
    volume_ml: float
    min_rate_ml_h: float
    max_rate_ml_h: float

    def __post_init__(self) -> None:
        if not (0.1 <= self.inner_diameter_mm <= 50.0):
            raise ValueError(
                f"syringe {self.name!r}: inner diameter {self.inner_diameter_mm} mm "
                "outside 0.1-50 mm"
            )
        if not (0 < self.volume_ml <= 140):
            raise ValueError(f"syringe {self.name!r}: volume {self.volume_ml} mL outside 0-140 mL")
        if not (0 < self.min_rate_ml_h < self.max_rate_ml_h):
            raise ValueError(f"syringe {self.name!r}: need 0 < min rate < max rate")

    @property
    def plunger_area_mm2(self) -> float:
        return math.pi * (self.inner_diameter_mm / 2.0) ** 2

    @property
    def ml_per_mm(self) -> float:
        """Volume displaced per millimetre of plunger travel."""
        return self.plunger_area_mm2 / 1000.0

    @property
    def travel_mm(self) -> float:
        """Plunger travel from full to empty."""
        return self.volume_ml / self.ml_per_mm


@dataclass(frozen=True)
class Bag:
    """An infusion bag on a volumetric pump: a volume, and the rate range the pump runs
    with it (the pump's, not the bag's: a volumetric pump has no bore to scale by)."""

    name: str
    volume_ml: float
    min_rate_ml_h: float
    max_rate_ml_h: float

    def __post_init__(self) -> None:
        if not (0 < self.volume_ml <= 5000):
            raise ValueError(f"bag {self.name!r}: volume {self.volume_ml} mL outside 0-5000 mL")
        if not (0 < self.min_rate_ml_h < self.max_rate_ml_h):
            raise ValueError(f"bag {self.name!r}: need 0 < min rate < max rate")


Container = Syringe | Bag

#: the rate range of the simulated volumetric pump, mL/h (project choice: the range large-
#: volume pumps commonly state, e.g. 0.1-999 mL/h; a real pump's manual is the authority)
VOLUMETRIC_RATE_RANGE_ML_H = (0.1, 999.0)


def syringe_for_diameter(
    inner_diameter_mm: float, volume_ml: float = 50.0, name: str | None = None
) -> Syringe:
    """A syringe of any bore, with the range the simulated mechanism can drive."""
    area = math.pi * (inner_diameter_mm / 2.0) ** 2
    max_rate = area / 1000.0 * MAX_PLUNGER_SPEED_MM_PER_MIN * 60.0
    min_rate = max(0.001, round(max_rate / 20000.0, 4))
    return Syringe(
        name=name or f"custom-{inner_diameter_mm:g}mm",
        inner_diameter_mm=inner_diameter_mm,
        volume_ml=volume_ml,
        min_rate_ml_h=min_rate,
        max_rate_ml_h=round(max_rate, 1),
    )


def _catalogue_entry(name: str, diameter: float, volume: float, min_rate: float) -> Syringe:
    area = math.pi * (diameter / 2.0) ** 2
    max_rate = round(area / 1000.0 * MAX_PLUNGER_SPEED_MM_PER_MIN * 60.0, 1)
    return Syringe(name, diameter, volume, min_rate, max_rate)


#: name -> syringe. Diameters: New Era syringe table; minimum rates: B. Braun.
SYRINGES: dict[str, Syringe] = {
    s.name: s
    for s in (
        _catalogue_entry("bd-plastipak-60ml", 26.72, 60.0, 1.0),
        _catalogue_entry("bd-plastipak-50ml", 26.59, 50.0, 1.0),
        _catalogue_entry("bd-plastipak-30ml", 21.59, 30.0, 1.0),
        _catalogue_entry("bd-plastipak-20ml", 19.13, 20.0, 0.5),
        _catalogue_entry("bd-plastipak-10ml", 14.43, 10.0, 0.1),
        _catalogue_entry("bd-plastipak-5ml", 11.99, 5.0, 0.05),
        _catalogue_entry("terumo-50ml", 29.07, 50.0, 1.0),
        _catalogue_entry("terumo-20ml", 20.15, 20.0, 0.5),
    )
}

DEFAULT_SYRINGE = "bd-plastipak-50ml"

#: name -> bag. Volumes are the common bag sizes (250, 500, 1000 mL; the drug label's
#: standard norepinephrine dilution is 4 mg in 1000 mL); rate range: the volumetric
#: pump's (``VOLUMETRIC_RATE_RANGE_ML_H``, project choice).
BAGS: dict[str, Bag] = {
    b.name: b
    for b in (
        Bag("bag-250ml", 250.0, *VOLUMETRIC_RATE_RANGE_ML_H),
        Bag("bag-500ml", 500.0, *VOLUMETRIC_RATE_RANGE_ML_H),
        Bag("bag-1000ml", 1000.0, *VOLUMETRIC_RATE_RANGE_ML_H),
    )
}


def syringe_by_name(name: str) -> Syringe:
    try:
        return SYRINGES[name]
    except KeyError:
        known = ", ".join(sorted(SYRINGES))
        raise ValueError(f"unknown syringe {name!r}; known syringes: {known}") from None


def container_by_name(name: str) -> Container:
    """A syringe or a bag from the catalogue."""
    if name in BAGS:
        return BAGS[name]
    if name in SYRINGES:
        return SYRINGES[name]
    known = ", ".join(sorted([*SYRINGES, *BAGS]))
    raise ValueError(f"unknown syringe or bag {name!r}; known: {known}")
