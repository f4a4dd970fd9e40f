"""The density of water against temperature, for turning a weighed mass into a volume.

Tanaka, Girard, Davis, Peuto, Bignell, "Recommended table for the density of water between
0 C and 40 C based on recent determinations", Metrologia 38 (2001) 301-309 (the CIPM
formula for air-free standard mean ocean water): 998.2067 kg/m3 at 20 C, 997.0470 at 25 C.
Tap or distilled water saturated with air is lighter by about 0.003 kg/m3 and the isotope
mix matters less than that; both are far below a balance's reading noise over a test.
"""

from __future__ import annotations

_A1 = -3.983035  # C
_A2 = 301.797  # C
_A3 = 522528.9  # C^2
_A4 = 69.34881  # C
_A5 = 999.974950  # kg/m3

#: the formula's stated range
MIN_C = 0.0
MAX_C = 40.0


def water_density_g_ml(temperature_c: float) -> float:
    """Density of water at ``temperature_c`` (0-40 C), g/mL."""
    if not (MIN_C <= temperature_c <= MAX_C):
        raise ValueError(
            f"water temperature must be {MIN_C:g}-{MAX_C:g} C for the density formula, "
            f"got {temperature_c}"
        )
    t = temperature_c
    kg_m3 = _A5 * (1.0 - (t + _A1) ** 2 * (t + _A2) / (_A3 * (t + _A4)))
    return kg_m3 / 1000.0


__all__ = ["MAX_C", "MIN_C", "water_density_g_ml"]
