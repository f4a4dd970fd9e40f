"""A patient from one line of text, for the emulator's command line.

``seed=7,index=3,sensitivity=0.5,condition=wandering,drug=16,dead=0.5,carrier=5,period=2``
(``period``: the monitor's, 0.1-60 s) plus any number of scripted events:
``artefact=KIND@START:DURATION`` (seconds from the start),
``bleed=START:ML_PER_MIN:DURATION``, ``fluid=START:VOLUME_ML:DURATION``, and
``artefacts=none|default`` (the random artefacts). Every key is optional; a bad one is a
``ValueError`` naming it and what it accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from firmware_bridge.patient.arterial import Artefact, ArtefactEvent
from firmware_bridge.patient.disturbances import Bleed, Disturbances, FluidBolus
from firmware_bridge.patient.params import Condition, LineSetup, fig
from firmware_bridge.patient.patient import DEFAULT_PERIOD_S, Scenario, no_artefacts

#: the strength of 4 mg in 250 mL (the library's weight-based norepinephrine)
DEFAULT_DRUG_UG_PER_ML = 16.0
#: the monitor's period (s): the range ``ArterialLine`` takes, checked here so that a bad
#: one is a usage error before anything is served, not a traceback after the pty is out
MIN_PERIOD_S = 0.1
MAX_PERIOD_S = 60.0


@dataclass(frozen=True)
class PatientSpec:
    seed: str = "1"
    index: int = 0
    sensitivity: float = 1.0
    line: LineSetup = field(default_factory=lambda: LineSetup(DEFAULT_DRUG_UG_PER_ML))
    scenario: Scenario = field(default_factory=Scenario)
    period_s: float = DEFAULT_PERIOD_S


def parse_patient_spec(text: str) -> PatientSpec:
    values: dict[str, str] = {}
    artefacts: list[ArtefactEvent] = []
    bleeds: list[Bleed] = []
    fluids: list[FluidBolus] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"patient spec: {part!r} is not KEY=VALUE")
        if key == "artefact":
            artefacts.append(_artefact(value))
        elif key == "bleed":
            a, b, c = _three(key, value)
            bleeds.append(Bleed(a, b, c))
        elif key == "fluid":
            a, b, c = _three(key, value)
            fluids.append(FluidBolus(a, b, c))
        elif key in _KEYS:
            values[key] = value
        else:
            known = ", ".join([*_KEYS, "artefact", "bleed", "fluid"])
            raise ValueError(f"patient spec: unknown key {key!r}; known: {known}")
    try:
        condition = Condition(values.get("condition", "stable"))
    except ValueError:
        raise ValueError("patient spec: condition must be stable or wandering") from None
    random_artefacts = values.get("artefacts", "default")
    if random_artefacts not in ("none", "default"):
        raise ValueError("patient spec: artefacts must be none or default")
    drug = _float("drug", values, DEFAULT_DRUG_UG_PER_ML)
    dead = _float("dead", values, fig("dead_volume_ml"))
    carrier = _float("carrier", values, fig("carrier_ml_h"))
    try:
        line = LineSetup(drug_ug_per_ml=drug, dead_volume_ml=dead, carrier_ml_h=carrier)
    except ValueError as exc:
        raise ValueError(f"patient spec: {exc}") from None
    period_s = _float("period", values, DEFAULT_PERIOD_S)
    if not (math.isfinite(period_s) and MIN_PERIOD_S <= period_s <= MAX_PERIOD_S):
        raise ValueError(
            f"patient spec: period must be {MIN_PERIOD_S:g}-{MAX_PERIOD_S:g} s, got "
            f"{values['period']!r}"
        )
    index = values.get("index", "0")
    if not index.isdigit() or int(index) > 10**6:
        raise ValueError("patient spec: index must be an integer 0-1000000")
    sensitivity = _float("sensitivity", values, 1.0)
    if not (0.01 <= sensitivity <= 100):
        raise ValueError("patient spec: sensitivity must be 0.01-100")
    return PatientSpec(
        seed=values.get("seed", "1"),
        index=int(index),
        sensitivity=sensitivity,
        line=line,
        scenario=Scenario(
            condition=condition,
            disturbances=Disturbances(tuple(bleeds), tuple(fluids)),
            artefact_rates=no_artefacts() if random_artefacts == "none" else None,
            artefacts=tuple(artefacts),
        ),
        period_s=period_s,
    )


_KEYS = (
    "seed",
    "index",
    "sensitivity",
    "condition",
    "drug",
    "dead",
    "carrier",
    "period",
    "artefacts",
)


def _float(key: str, values: dict[str, str], default: float) -> float:
    if key not in values:
        return default
    try:
        return float(values[key])
    except ValueError:
        raise ValueError(f"patient spec: {key} must be a number, got {values[key]!r}") from None


def _three(key: str, value: str) -> tuple[float, float, float]:
    parts = value.split(":")
    try:
        a, b, c = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"patient spec: {key} must be START:AMOUNT:DURATION numbers") from None
    return a, b, c


def _artefact(value: str) -> ArtefactEvent:
    """Each part checked on its own, so the message names the part that is wrong and what
    it accepts rather than Python's words for a failed conversion."""
    kind_text, at, rest = value.partition("@")
    start_text, colon, duration_text = rest.partition(":")
    kinds = ", ".join(k.value for k in Artefact)
    if not at or not colon:
        raise ValueError(f"patient spec: artefact must be KIND@START:DURATION ({kinds})")
    where = f"patient spec: artefact {value!r}"
    try:
        kind = Artefact(kind_text)
    except ValueError:
        raise ValueError(f"{where}: kind {kind_text!r} is not one of {kinds}") from None
    start = _seconds(where, "START", start_text)
    duration = _seconds(where, "DURATION", duration_text)
    try:
        return ArtefactEvent(kind, start, duration)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _seconds(where: str, part: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {part} {text!r} is not a number (seconds)") from None
