"""Software debounce for the stop button, on the liveness clock.

A mechanical contact bounces for a few milliseconds on press and release; without a
debounce one press is several, and a noise spike is a press. The rule here is the usual
"stable for T": the debounced state follows the raw input only once the raw input has
held its new value for ``debounce_s`` without interruption. It runs on the liveness
clock (real monotonic time, never scaled): a 60x demo clock must not shorten a 50 ms
debounce to under a millisecond. Pure, fed by samples, so tests drive it with a
``VirtualClock`` and never sleep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: readings that differ by less than this are the same instant (float subtraction of two
#: clock readings can land a hair short of a threshold the inputs meet exactly)
_CLOCK_EPSILON_S = 1e-9


@dataclass(frozen=True)
class DebounceEdge:
    """The debounced input changed to ``active`` at ``time`` (when it became stable)."""

    active: bool
    time: float


class Debouncer:
    """Debounced view of one boolean input fed by ``update(raw, now)`` samples.

    Latency from a clean press to the reported edge is ``debounce_s`` plus at most one
    polling interval; a press shorter than ``debounce_s`` is treated as noise.
    """

    def __init__(self, debounce_s: float, *, initial: bool = False) -> None:
        if not (math.isfinite(debounce_s) and 0.0 <= debounce_s <= 1.0):
            raise ValueError(f"debounce must be 0-1000 ms, got {debounce_s * 1000.0:g} ms")
        self._debounce_s = debounce_s
        self._stable = initial
        self._candidate = initial
        self._candidate_since: float | None = None

    @property
    def active(self) -> bool:
        """The debounced state."""
        return self._stable

    def update(self, raw: bool, now: float) -> DebounceEdge | None:
        """Feed one sample; return the edge when the debounced state changes."""
        if raw != self._candidate or self._candidate_since is None:
            self._candidate = raw
            self._candidate_since = now
        held = now - self._candidate_since
        if self._candidate != self._stable and held >= self._debounce_s - _CLOCK_EPSILON_S:
            self._stable = self._candidate
            return DebounceEdge(active=self._stable, time=now)
        return None
