"""The simulated patient's monitor in this process: no wire, the same numerics.

For one-process runs (cohorts, tests) on a virtual clock. It returns exactly what the
wire monitor would carry for the same patient and pump history (the numerics are made on
the patient's fixed grid; ``wire`` adds only the rounding to 0.1 mmHg and the transport),
so a controller cannot tell them apart. ``on_reading`` sees each reading with the truth
behind it (the physiological MAP, the artefact): for metrics, never for control.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.monitors.base import MapSample
from firmware_bridge.patient.arterial import Reading
from firmware_bridge.patient.patient import Patient


def sample_of(reading: Reading) -> MapSample:
    return MapSample(
        reading.seq,
        reading.time,
        _capped(reading.map_mmhg),
        _capped(reading.sys_mmhg),
        _capped(reading.dia_mmhg),
        reading.hr_bpm,
    )


def _capped(value: float | None) -> float | None:
    return None if value is None else min(1000.0, value)


class SimulatedMonitor:
    """A ``MapSource`` reading ``patient`` at its pump's clinical now."""

    def __init__(
        self, patient: Patient, *, on_reading: Callable[[Reading], None] | None = None
    ) -> None:
        self.patient = patient
        self._on_reading = on_reading
        self._open = False

    @property
    def name(self) -> str:
        return f"simulated monitor (patient {self.patient.index}, seed {self.patient.seed})"

    def open(self) -> None:
        self._open = True

    def poll(self) -> list[MapSample]:
        readings = self.patient.readings_until(self.patient.pump.clock.now())
        if self._on_reading is not None:
            for reading in readings:
                self._on_reading(reading)
        return [sample_of(r) for r in readings]

    def close(self) -> None:
        self._open = False
