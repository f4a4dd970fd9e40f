"""The arterial line and the monitor's MAP numeric: noise, breathing and artefacts.

The monitor reports a MAP numeric every ``period_s``: the mean of the beats in that
period. Beat-to-beat variation is independent between beats, so that mean carries noise of
SD ``beat_noise / sqrt(beats)``; it is drawn directly (the same distribution as averaging
each beat, at a fraction of the cost). Breathing swings the pressure sinusoidally.

Artefacts are what a closed loop must never act on. Each kind arrives as a Poisson process
(rate per hour, from ``params``) or from a script, lasts a drawn time, and replaces or
distorts the reading:

- ``flush``: the line is flushed from the pressure bag: about 300 mmHg, no pulse;
- ``zeroing``: the transducer is opened to air to zero it: 0 mmHg, no pulse;
- ``damping``: an air bubble or a clot: the pulse pressure collapses and the mean reads low;
- ``disconnect``: the line is open at a connector: near 0 mmHg, no pulse;
- ``no_signal``: the monitor has no arterial waveform (cable out): it says so.

The physiological MAP (what the patient really has) travels with each reading for the
metrics and the tests; it never goes on the wire.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass

from firmware_bridge.patient.params import PatientParameters, fig, rng


class Artefact(enum.StrEnum):
    FLUSH = "flush"
    ZEROING = "zeroing"
    DAMPING = "damping"
    DISCONNECT = "disconnect"
    NO_SIGNAL = "no_signal"


#: when two overlap, the one earlier here shows
PRECEDENCE = (
    Artefact.NO_SIGNAL,
    Artefact.DISCONNECT,
    Artefact.ZEROING,
    Artefact.FLUSH,
    Artefact.DAMPING,
)

_RANK = {kind: i for i, kind in enumerate(PRECEDENCE)}

#: duration bounds (s), drawn uniform
DURATION_S: dict[Artefact, tuple[float, float]] = {
    Artefact.FLUSH: (3.0, 8.0),
    Artefact.ZEROING: (10.0, 30.0),
    Artefact.DAMPING: (60.0, 300.0),
    Artefact.DISCONNECT: (30.0, 120.0),
    Artefact.NO_SIGNAL: (30.0, 180.0),
}

RATE_FIGURE: dict[Artefact, str] = {
    Artefact.FLUSH: "flush_per_h",
    Artefact.ZEROING: "zeroing_per_h",
    Artefact.DAMPING: "damping_per_h",
    Artefact.DISCONNECT: "disconnect_per_h",
    Artefact.NO_SIGNAL: "no_signal_per_h",
}


def default_rates() -> dict[Artefact, float]:
    return {kind: fig(name) for kind, name in RATE_FIGURE.items()}


@dataclass(frozen=True)
class ArtefactEvent:
    kind: Artefact
    start_s: float  # from the start of the scenario
    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"artefact start must be at least 0 s (finite), got {self.start_s!r}")
        if not (math.isfinite(self.duration_s) and 0 < self.duration_s <= 24 * 3600):
            raise ValueError(
                f"artefact duration must be above 0 and at most 86400 s, got {self.duration_s!r}"
            )

    def covers(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s


class Status(enum.StrEnum):
    OK = "ok"
    NO_SIGNAL = "nosig"


@dataclass(frozen=True)
class Reading:
    """One MAP numeric of the monitor, and the truth behind it."""

    seq: int
    time: float  # clinical s
    status: Status
    map_mmhg: float | None  # None when there is no signal
    sys_mmhg: float | None
    dia_mmhg: float | None
    hr_bpm: int | None
    true_map_mmhg: float  # physiological MAP (never on the wire)
    artefact: Artefact | None  # what distorted it (never on the wire)


class ArtefactSchedule:
    """Poisson arrivals of each kind (its own random stream), plus scripted events."""

    def __init__(
        self,
        seed: int | str,
        index: int,
        rates_per_h: dict[Artefact, float] | None = None,
        scripted: tuple[ArtefactEvent, ...] = (),
    ) -> None:
        rates = default_rates() if rates_per_h is None else rates_per_h
        for kind, rate in rates.items():
            if not (math.isfinite(rate) and 0 <= rate <= 3600):
                raise ValueError(f"artefact rate of {kind} must be 0-3600 /h, got {rate!r}")
        self._rates = {k: rates.get(k, 0.0) for k in Artefact}
        self._rngs = {k: rng(seed, "artefact", k.value, index) for k in Artefact}
        self._events: dict[Artefact, list[ArtefactEvent]] = {k: [] for k in Artefact}
        self._starts: dict[Artefact, list[float]] = {k: [] for k in Artefact}
        self._horizon: dict[Artefact, float] = dict.fromkeys(Artefact, 0.0)
        self._scripted = tuple(sorted(scripted, key=lambda e: e.start_s))

    def active(self, t: float) -> ArtefactEvent | None:
        found: ArtefactEvent | None = None
        for event in self._scripted:
            if event.start_s > t:
                break
            if event.covers(t) and (found is None or _RANK[event.kind] < _RANK[found.kind]):
                found = event
        # only a kind that takes precedence over the scripted one can hide it
        for kind in PRECEDENCE[: len(PRECEDENCE) if found is None else _RANK[found.kind]]:
            drawn = self._random_at(kind, t)
            if drawn is not None:
                return drawn
        return found

    def events_until(self, t: float) -> list[ArtefactEvent]:
        """Every event that starts before ``t`` (scripted and drawn), by start."""
        for kind in Artefact:
            self._extend(kind, t)
        drawn = [e for kind in Artefact for e in self._events[kind] if e.start_s < t]
        scripted = [e for e in self._scripted if e.start_s < t]
        return sorted(drawn + scripted, key=lambda e: (e.start_s, e.kind.value))

    def _random_at(self, kind: Artefact, t: float) -> ArtefactEvent | None:
        if self._rates[kind] <= 0:
            return None
        if self._horizon[kind] <= t:  # asked once per numeric per kind: drawn far enough
            self._extend(kind, t)
        starts = self._starts[kind]
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0:
            event = self._events[kind][i]
            if event.covers(t):
                return event
        return None

    def _extend(self, kind: Artefact, t: float) -> None:
        rate = self._rates[kind]
        if rate <= 0:
            return
        r = self._rngs[kind]
        while self._horizon[kind] <= t:
            start = self._horizon[kind] + r.expovariate(rate / 3600.0)
            duration = r.uniform(*DURATION_S[kind])
            self._events[kind].append(ArtefactEvent(kind, start, duration))
            self._starts[kind].append(start)
            self._horizon[kind] = start + duration  # one of a kind at a time


class ArterialLine:
    """Turns the physiological MAP into the monitor's numerics."""

    def __init__(
        self,
        params: PatientParameters,
        seed: int | str,
        index: int,
        period_s: float,
        schedule: ArtefactSchedule,
    ) -> None:
        if not (0.1 <= period_s <= 60.0):
            raise ValueError(f"monitor period must be 0.1-60 s, got {period_s!r}")
        self.period_s = period_s
        self.params = params
        self.schedule = schedule
        beats = max(1.0, params.heart_rate_bpm * period_s / 60.0)
        self._sd = fig("beat_noise_mmhg") / math.sqrt(beats)
        self._resp_amp = fig("resp_amplitude_mmhg")
        self._resp_w = 2.0 * math.pi * fig("resp_rate_per_min") / 60.0
        self._rng = rng(seed, "monitor", index)
        self._phase = self._rng.uniform(0.0, 2.0 * math.pi)
        self._hr = params.heart_rate_bpm

    def read(self, seq: int, time: float, since_start_s: float, true_map: float) -> Reading:
        """The numeric for ``time``; draws its noise whatever the artefact, so the noise
        stream (hence every later reading) does not depend on the artefacts."""
        r = self._rng
        noise = r.gauss(0.0, self._sd)
        jitter = r.uniform(-1.0, 1.0)
        hr = round(self._hr + 2.0 * jitter)
        measured = true_map + noise + self._resp_amp * math.sin(self._resp_w * time + self._phase)
        pp = self.params.pulse_pressure_mmhg * max(0.4, min(1.6, measured / 80.0))
        event = self.schedule.active(since_start_s)
        kind = event.kind if event is not None else None
        if kind is Artefact.NO_SIGNAL:
            return Reading(seq, time, Status.NO_SIGNAL, None, None, None, None, true_map, kind)
        if kind is Artefact.FLUSH:
            measured, pp = fig("flush_mmhg") + 5.0 * jitter, 1.0
        elif kind is Artefact.ZEROING:
            measured, pp = 0.0, 0.0
        elif kind is Artefact.DISCONNECT:
            measured, pp = 2.0 + 2.0 * jitter, 0.5
        elif kind is Artefact.DAMPING:
            measured, pp = measured - 5.0 + 2.0 * jitter, pp * 0.25
        measured = max(0.0, measured)
        sys = measured + 2.0 * pp / 3.0
        dia = max(0.0, measured - pp / 3.0)
        return Reading(seq, time, Status.OK, measured, sys, dia, hr, true_map, kind)
