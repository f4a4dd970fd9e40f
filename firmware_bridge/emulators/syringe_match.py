"""Which syringe a pump holds once a host tells it only a bore diameter.

Both serial protocols configure a syringe by its inside diameter. When that diameter is
one of the catalogue's, the emulated pump takes the catalogue syringe (and so the same
rate range the host's syringe table states); otherwise it builds a syringe of that bore
with the simulated mechanism's range.
"""

from __future__ import annotations

from firmware_bridge.syringes import SYRINGES, Syringe, syringe_for_diameter

#: diameters closer than this are the same syringe (the NE-1000 field resolves 0.01 mm)
DIAMETER_TOLERANCE_MM = 0.005


def syringe_for_bore(diameter_mm: float, current: Syringe) -> Syringe:
    """The syringe the pump assumes for ``diameter_mm``, keeping ``current``'s volume when
    the bore is not in the catalogue."""
    if abs(diameter_mm - current.inner_diameter_mm) <= DIAMETER_TOLERANCE_MM:
        return current
    matches = [
        s
        for s in SYRINGES.values()
        if abs(s.inner_diameter_mm - diameter_mm) <= DIAMETER_TOLERANCE_MM
    ]
    if matches:
        same_volume = [s for s in matches if s.volume_ml == current.volume_ml]
        return (same_volume or matches)[0]
    return syringe_for_diameter(diameter_mm, volume_ml=current.volume_ml)
