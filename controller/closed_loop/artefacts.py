"""Which MAP samples the loop may act on.

An arterial line lies in recognisable ways (the patient simulator's ``arterial`` module
makes the same ones, and docs/closed-loop.md lists them): a flush reads the pressure bag
(about 300 mmHg) with no pulse, zeroing reads 0 with no pulse, a disconnected line reads
near 0 with no pulse, a damped line keeps a pressure but loses most of its pulse, and a
monitor without a waveform says so. Each sample is judged on its own and against the
recent valid ones:

- ``no_signal``: the monitor had no arterial waveform;
- ``implausible``: MAP outside ``plausible_mmhg`` (a flush, zeroing, a disconnect);
- ``no_pulse``: pulse pressure below ``min_pulse_pressure_mmhg`` (any of those three,
  also when the pressure looks ordinary);
- ``damped``: pulse pressure below ``damped_fraction`` x its running median;
- ``jump``: MAP more than ``max_jump_mmhg`` from the running median of the last valid
  samples within 30 s. Five jumps in a row that agree with each other (within 5 mmHg)
  are a real change of level, not an artefact: they are accepted and the median restarts.

The loop acts on the median of the valid samples of its period, never on one sample.
"""

from __future__ import annotations

import bisect
import enum
import statistics
from collections import deque

from controller.closed_loop.settings import LoopSettings
from drivers.monitors.base import MapSample

#: valid samples the running medians are taken over
MEDIAN_OF = 15
PULSE_MEDIAN_OF = 31
#: the jump check compares with valid samples at most this old (clinical s)
JUMP_MEMORY_S = 30.0
#: consecutive agreeing jumps that are a real change of level
JUMPS_TO_ACCEPT = 5
JUMP_AGREEMENT_MMHG = 5.0


class Verdict(enum.StrEnum):
    VALID = "valid"
    NO_SIGNAL = "no_signal"
    IMPLAUSIBLE = "implausible"
    NO_PULSE = "no_pulse"
    DAMPED = "damped"
    JUMP = "jump"


class SignalFilter:
    """Judges samples as they arrive (``now``: the controller's clinical time)."""

    def __init__(self, settings: LoopSettings) -> None:
        self.settings = settings
        self._maps = _RunningMedian(MEDIAN_OF)
        self._pulses = _RunningMedian(PULSE_MEDIAN_OF)
        self._window: deque[tuple[float, float]] = deque()  # (arrival, MAP) of valid ones
        self._jumps: list[float] = []
        self.last_valid_at: float | None = None
        self.last_verdict: Verdict | None = None
        self.counts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)

    def add(self, sample: MapSample, now: float) -> Verdict:
        verdict = self._judge(sample, now)
        self.counts[verdict] += 1
        self.last_verdict = verdict
        if verdict is Verdict.VALID:
            assert sample.map_mmhg is not None
            self._maps.append(sample.map_mmhg)
            pulse = sample.pulse_pressure_mmhg
            if pulse is not None:
                self._pulses.append(pulse)
            self._window.append((now, sample.map_mmhg))
            self.last_valid_at = now
        return verdict

    def median_since(self, since: float) -> tuple[float | None, int]:
        """Median of the valid MAPs that arrived after ``since``, and how many there were;
        older ones are forgotten."""
        window = self._window
        while window and window[0][0] <= since:
            window.popleft()
        if not window:
            return None, 0
        return statistics.median(m for _, m in window), len(window)

    def silent_for(self, now: float) -> float:
        """Clinical seconds since the last valid sample (inf: never one)."""
        return float("inf") if self.last_valid_at is None else now - self.last_valid_at

    def _judge(self, sample: MapSample, now: float) -> Verdict:
        s = self.settings
        value = sample.map_mmhg
        if value is None:
            return Verdict.NO_SIGNAL
        low, high = s.plausible_mmhg
        if not (low <= value <= high):
            return Verdict.IMPLAUSIBLE
        pulse = sample.pulse_pressure_mmhg
        if pulse is not None:
            if pulse < s.min_pulse_pressure_mmhg:
                return Verdict.NO_PULSE
            if len(self._pulses) >= 5 and pulse < s.damped_fraction * self._pulses.median():
                return Verdict.DAMPED
        recent = self.last_valid_at is not None and now - self.last_valid_at <= JUMP_MEMORY_S
        if recent and self._maps:
            reference = self._maps.median()
            if abs(value - reference) > s.max_jump_mmhg:
                self._jumps.append(value)
                if len(self._jumps) >= JUMPS_TO_ACCEPT and (
                    max(self._jumps[-JUMPS_TO_ACCEPT:]) - min(self._jumps[-JUMPS_TO_ACCEPT:])
                    <= JUMP_AGREEMENT_MMHG
                ):
                    self._jumps.clear()
                    self._maps.clear()
                    return Verdict.VALID
                return Verdict.JUMP
        self._jumps.clear()
        return Verdict.VALID


class _RunningMedian:
    """The last ``size`` values, kept also in order of size: each sample is judged against
    the median of the last ones, and re-sorting them for every sample cost more than the
    rest of the judgement. The same median as ``statistics.median`` of those values (the
    mean of the middle two of an even count)."""

    def __init__(self, size: int) -> None:
        self._arrived: deque[float] = deque()
        self._sorted: list[float] = []
        self._size = size

    def __len__(self) -> int:
        return len(self._arrived)

    def append(self, value: float) -> None:
        if len(self._arrived) == self._size:
            oldest = self._arrived.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._arrived.append(value)
        bisect.insort(self._sorted, value)

    def clear(self) -> None:
        self._arrived.clear()
        self._sorted.clear()

    def median(self) -> float:
        data = self._sorted
        i = len(data) // 2
        return data[i] if len(data) % 2 else (data[i - 1] + data[i]) / 2
