"""The simulated patient, driven by what the simulated pump really delivered.

``Patient`` reads the pump's ground truth (``SimulatedPump.truth``: the flow that reached
the line, and any bolus released by a cleared occlusion), never a controller's wish:
whatever the safety process, a driver or a fault did, the patient gets exactly what the
pump pushed. The drug then crosses the line's dead volume (``line``), mixes into the
plasma and reaches the effect site (``pkpd``); the MAP is the patient's own pressure less
the vasodilation, plus the disturbances and the drug's effect; the arterial line turns it
into the monitor's numerics (``arterial``).

Everything is deterministic for a given seed and patient index: the same pump history
gives the same readings to the last bit, in any process, whatever the polling pattern
(numerics are made on a fixed grid, one random draw each, in order).

The monitor's grid: a numeric every ``period_s`` from the patient's start. ``readings_until
(t)`` returns the numerics due up to ``t`` that were not returned before; the physiology
is integrated exactly between the pump's changes of flow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from firmware_bridge.patient.arterial import (
    Artefact,
    ArtefactEvent,
    ArtefactSchedule,
    ArterialLine,
    Reading,
)
from firmware_bridge.patient.disturbances import Disturbances, Vasodilation
from firmware_bridge.patient.line import InfusionLine
from firmware_bridge.patient.params import Condition, LineSetup, PatientParameters
from firmware_bridge.patient.pkpd import Pharmacokinetics
from firmware_bridge.pump_model import SimulatedPump, TruthBolus, TruthSegment

#: the lowest MAP the model reports (a patient, not a number line)
MAP_FLOOR_MMHG = 15.0
#: the monitor's default numeric period
DEFAULT_PERIOD_S = 2.0


@dataclass(frozen=True)
class Scenario:
    """What happens to the patient besides the drug."""

    condition: Condition = Condition.STABLE
    disturbances: Disturbances = field(default_factory=Disturbances)
    #: artefact arrival rates per hour (None: the defaults of ``params``; {} for none)
    artefact_rates: tuple[tuple[Artefact, float], ...] | None = None
    artefacts: tuple[ArtefactEvent, ...] = ()  # scripted ones, beside the drawn ones
    wander_amplitude_mmhg: float | None = None  # None: the default of ``params``

    def rates(self) -> dict[Artefact, float] | None:
        return None if self.artefact_rates is None else dict(self.artefact_rates)


def no_artefacts() -> tuple[tuple[Artefact, float], ...]:
    return tuple((kind, 0.0) for kind in Artefact)


class Patient:
    """One patient attached to one simulated pump. Thread-safe (an emulator's monitor
    thread reads it while the pump's serial thread changes the pump)."""

    def __init__(
        self,
        params: PatientParameters,
        line: LineSetup,
        pump: SimulatedPump,
        *,
        seed: int | str,
        index: int = 0,
        scenario: Scenario | None = None,
        period_s: float = DEFAULT_PERIOD_S,
    ) -> None:
        self.params = params
        self.setup = line
        self.pump = pump
        self.seed = seed
        self.index = index
        self.scenario = scenario or Scenario()
        self._lock = threading.Lock()
        self.start = pump.clock.now()
        self.line = InfusionLine(
            line.drug_ug_per_ml, line.dead_volume_ml, line.carrier_ml_h, line.prime_ug_per_ml
        )
        self.pk = Pharmacokinetics(params)
        self.vasodilation = Vasodilation(
            self.scenario.condition,
            params.vasodilation_mmhg,
            seed,
            index,
            amplitude_mmhg=self.scenario.wander_amplitude_mmhg,
        )
        self.arterial = ArterialLine(
            params,
            seed,
            index,
            period_s,
            ArtefactSchedule(seed, index, self.scenario.rates(), self.scenario.artefacts),
        )
        self.period_s = period_s
        self._t = self.start  # physiology integrated up to here
        self._flow_ml_h = 0.0  # delivered flow in force at _t
        self._consumed = 0  # ground-truth events already applied
        self._next_seq = 0
        self.drug_to_vein_ug = 0.0  # everything that left the line into the vein
        self.drug_from_pump_ug = 0.0  # everything the pump pushed into the line
        self._catch_up_truth(self.start)

    # ------------------------------------------------------------------ reading
    @property
    def now(self) -> float:
        """Clinical time the physiology has been integrated to."""
        return self._t

    def readings_until(self, t: float) -> list[Reading]:
        """The numerics due at or before ``t`` not yet returned, in order (none before
        the pump's clock gets there: the pump's future is not known)."""
        with self._lock:
            t = min(t, self._pump_now())
            out: list[Reading] = []
            while True:
                when = self.start + self._next_seq * self.period_s
                if when > t + 1e-9:
                    return out
                self._advance(when)
                out.append(
                    self.arterial.read(self._next_seq, when, when - self.start, self._map(when))
                )
                self._next_seq += 1

    def true_map(self, t: float) -> float:
        """The physiological MAP at ``t`` (>= the last reading's time; advances)."""
        with self._lock:
            self._advance(min(t, self._pump_now()))
            return self._map(self._t)

    def effect_site_ng_ml(self) -> float:
        return self.pk.effect

    def vasodilation_mmhg(self, t: float) -> float:
        return self.vasodilation.mmhg(t - self.start)

    # ------------------------------------------------------------------ internals
    def _pump_now(self) -> float:
        return self.pump.snapshot().time  # integrates the pump to its clock's now

    def _map(self, t: float) -> float:
        since = t - self.start
        value = (
            self.params.map_pre_mmhg
            - self.vasodilation.mmhg(since)
            + self.scenario.disturbances.offset_mmhg(since)
            + self.params.effect_mmhg(self.pk.effect)
        )
        return max(MAP_FLOOR_MMHG, value)

    def _advance(self, until: float) -> None:
        if until <= self._t:
            return
        events = self.pump.truth.events
        while self._consumed < len(events):
            event = events[self._consumed]
            when = event.start if isinstance(event, TruthSegment) else event.time
            if when > until:
                break
            self._run(when)
            if isinstance(event, TruthSegment):
                self._flow_ml_h = max(0.0, event.rate_ml_h)
            elif isinstance(event, TruthBolus):
                self._bolus(event)
            # TruthWaste: it went to waste (a prime), never into the patient
            self._consumed += 1
        self._run(until)

    def _catch_up_truth(self, t: float) -> None:
        """At attach: the flow in force now; what happened before is not replayed."""
        events = self.pump.truth.events
        while self._consumed < len(events):
            event = events[self._consumed]
            when = event.start if isinstance(event, TruthSegment) else event.time
            if when > t:
                break
            if isinstance(event, TruthSegment):
                self._flow_ml_h = max(0.0, event.rate_ml_h)
            self._consumed += 1

    def _run(self, until: float) -> None:
        minutes = (until - self._t) / 60.0
        if minutes <= 0:
            return
        self.drug_from_pump_ug += self._flow_ml_h / 60.0 * minutes * self.setup.drug_ug_per_ml
        for piece in self.line.flow(minutes, self._flow_ml_h):
            self.pk.run(piece.minutes, piece.ug_per_min)
            self.drug_to_vein_ug += piece.minutes * piece.ug_per_min
        self._t = until

    def _bolus(self, event: TruthBolus) -> None:
        if event.volume_ml <= 0:
            return
        self.drug_from_pump_ug += event.volume_ml * self.setup.drug_ug_per_ml
        ug = self.line.bolus(event.volume_ml)
        self.pk.bolus(ug)
        self.drug_to_vein_ug += ug
