"""A simulated patient on norepinephrine, on the pump's side of the wire.

``draw_patient`` gives a patient of the population (``params``: every figure with its
source); ``Patient`` attaches it to a ``SimulatedPump`` and makes the monitor's MAP
numerics from what that pump really delivered. docs/closed-loop.md describes the model.
"""

from firmware_bridge.patient.arterial import Artefact, ArtefactEvent, Reading, Status
from firmware_bridge.patient.disturbances import Bleed, Disturbances, FluidBolus
from firmware_bridge.patient.params import (
    FIGURES,
    SOURCES,
    Condition,
    LineSetup,
    PatientParameters,
    draw_patient,
    typical_patient,
)
from firmware_bridge.patient.patient import Patient, Scenario, no_artefacts

__all__ = [
    "FIGURES",
    "SOURCES",
    "Artefact",
    "ArtefactEvent",
    "Bleed",
    "Condition",
    "Disturbances",
    "FluidBolus",
    "LineSetup",
    "Patient",
    "PatientParameters",
    "Reading",
    "Scenario",
    "Status",
    "draw_patient",
    "no_artefacts",
    "typical_patient",
]
