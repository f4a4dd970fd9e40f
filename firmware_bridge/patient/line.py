"""The line between the pump and the vein: plug flow through a dead volume.

What the pump pushes does not reach the vein at once: the line and catheter hold a dead
volume that the flow must push out first, so a change of rate reaches the vein after
``dead volume / total flow``: minutes at the low flows of a concentrated vasopressor
(and a carrier infusion joining the line shortens it). The model is exact plug flow: the
line holds parcels of fluid (volume, drug strength) in order; the pump's drug flow and the
carrier enter at the pump end, the same volume leaves at the vein end. Between two
changes of flow everything is constant, so the drug reaching the vein is a sequence of
constant rates, each computed, not sampled.

A bolus (the pump's ground truth records one when an occlusion is released) pushes its
volume through at once: the fluid it displaces reaches the vein at that instant.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

#: parcels thinner than this (mL) are merged into their neighbour (float dust)
_MIN_PARCEL_ML = 1e-12


@dataclass(frozen=True)
class Piece:
    """For ``minutes``, drug reached the vein at ``ug_per_min``."""

    minutes: float
    ug_per_min: float


class InfusionLine:
    """Plug flow of the drug line; ``dead_volume_ml`` 0 means the pump feeds the vein."""

    def __init__(
        self, drug_ug_per_ml: float, dead_volume_ml: float, carrier_ml_h: float, prime: float
    ) -> None:
        self.drug_ug_per_ml = drug_ug_per_ml
        self.dead_volume_ml = dead_volume_ml
        self.carrier_ml_h = carrier_ml_h
        # front (vein end) first: [volume mL, strength ug/mL]
        self._parcels: deque[list[float]] = deque()
        if dead_volume_ml > 0:
            self._parcels.append([dead_volume_ml, prime])

    @property
    def drug_in_line_ug(self) -> float:
        return sum(v * c for v, c in self._parcels)

    def transit_min(self, drug_ml_h: float) -> float:
        """Time for a change at the pump to reach the vein at this drug flow (inf: none)."""
        total = drug_ml_h + self.carrier_ml_h
        if self.dead_volume_ml <= 0:
            return 0.0
        return float("inf") if total <= 0 else self.dead_volume_ml / total * 60.0

    def flow(self, minutes: float, drug_ml_h: float) -> Iterator[Piece]:
        """Run ``minutes`` at a constant pump flow: the pieces of drug rate at the vein."""
        if minutes <= 0:
            return
        drug_ml_h = max(0.0, drug_ml_h)
        total_ml_min = (drug_ml_h + self.carrier_ml_h) / 60.0
        if total_ml_min <= 0:
            yield Piece(minutes, 0.0)
            return
        inflow_strength = self.drug_ug_per_ml * drug_ml_h / 60.0 / total_ml_min
        if self.dead_volume_ml <= 0:
            yield Piece(minutes, inflow_strength * total_ml_min)
            return
        left = minutes
        parcels = self._parcels
        while left > 0:
            front = parcels[0] if parcels else None
            if front is None or (len(parcels) == 1 and front[1] == inflow_strength):
                # the whole line already carries the inflow's strength
                yield Piece(left, inflow_strength * total_ml_min)
                self._push(total_ml_min * left, inflow_strength)
                self._drop(total_ml_min * left)
                return
            out_min = front[0] / total_ml_min
            if out_min >= left:
                yield Piece(left, front[1] * total_ml_min)
                moved = total_ml_min * left
                self._push(moved, inflow_strength)
                self._drop(moved)
                return
            yield Piece(out_min, front[1] * total_ml_min)
            self._push(front[0], inflow_strength)
            parcels.popleft()
            left -= out_min

    def bolus(self, volume_ml: float) -> float:
        """``volume_ml`` of the syringe's fluid pushed through at once: the drug (ug)
        that reaches the vein at this instant."""
        if volume_ml <= 0:
            return 0.0
        if self.dead_volume_ml <= 0:
            return volume_ml * self.drug_ug_per_ml
        self._push(volume_ml, self.drug_ug_per_ml)
        return self._drop(volume_ml)

    # ------------------------------------------------------------------ internals
    def _push(self, volume_ml: float, strength: float) -> None:
        parcels = self._parcels
        if parcels and parcels[-1][1] == strength:
            parcels[-1][0] += volume_ml
        else:
            parcels.append([volume_ml, strength])

    def _drop(self, volume_ml: float) -> float:
        """Take ``volume_ml`` out at the vein end; the drug it carried (ug)."""
        parcels = self._parcels
        drug = 0.0
        left = volume_ml
        while left > _MIN_PARCEL_ML and parcels:
            front = parcels[0]
            if front[0] <= left + _MIN_PARCEL_ML:
                drug += front[0] * front[1]
                left -= front[0]
                parcels.popleft()
            else:
                drug += left * front[1]
                front[0] -= left
                left = 0.0
        # keep the line's volume exact despite rounding
        held = sum(v for v, _ in parcels)
        if parcels and abs(held - self.dead_volume_ml) > 0:
            parcels[-1][0] += self.dead_volume_ml - held
            if parcels[-1][0] <= _MIN_PARCEL_ML:
                parcels.pop()
        return drug
