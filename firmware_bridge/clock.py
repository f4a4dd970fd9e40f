"""The two clocks every room shares.

The *liveness* clock is the real monotonic clock: heartbeats, serial deadlines and
timeouts run on it and it is never scaled. The *clinical* clock drives dose integration,
titration and wean windows and 24-hour caps: real, scaled (a demo at 60x or more) or
virtual (tests, scenario runner). Neither is ever the wall clock, which can jump.

The clocks live here, in the lowest room, because the simulated pump, the safety process
and the controller must all agree on clinical time. A scaled clock is defined by an origin
on ``time.monotonic()`` (system-wide on Linux) and a scale, so several processes given the
same two numbers read the same clinical time.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the time in seconds on a monotonic scale."""

    def now(self) -> float: ...

    def to_real_seconds(self, clinical_seconds: float) -> float:
        """How long a real sleep lasts that spans ``clinical_seconds`` on this clock."""
        ...


class MonotonicClock:
    """The liveness clock, and the clinical clock of a real-time run."""

    def now(self) -> float:
        return time.monotonic()

    def to_real_seconds(self, clinical_seconds: float) -> float:
        return clinical_seconds


@dataclass(frozen=True)
class ScaledClock:
    """Clinical time running ``scale`` times faster than real time.

    ``origin_real`` is a ``time.monotonic()`` reading; clinical time at that instant is
    ``origin_clinical``. Pass both numbers to another process to share the clock.
    """

    scale: float
    origin_real: float
    origin_clinical: float = 0.0

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.scale < 1e7):
            raise ValueError(f"clock scale must be > 0 and < 1e7, got {self.scale}")

    @classmethod
    def starting_now(cls, scale: float, origin_clinical: float = 0.0) -> ScaledClock:
        return cls(scale=scale, origin_real=time.monotonic(), origin_clinical=origin_clinical)

    def now(self) -> float:
        return self.origin_clinical + (time.monotonic() - self.origin_real) * self.scale

    def to_real_seconds(self, clinical_seconds: float) -> float:
        return clinical_seconds / self.scale

    def spec(self) -> str:
        """A string another process turns back into this clock (see ``clock_from_spec``)."""
        return (
            f"scaled:{float(self.scale)!r}:{float(self.origin_real)!r}:"
            f"{float(self.origin_clinical)!r}"
        )


class VirtualClock:
    """A clock that moves only when told to: tests and the one-process scenario runner."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        # one attribute read is atomic: the lock only orders the writers (``advance``
        # reads and writes), and a simulated hour reads this clock thousands of times
        return self._now

    def to_real_seconds(self, clinical_seconds: float) -> float:
        return 0.0

    def advance(self, seconds: float) -> float:
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward; advance({seconds}) refused")
        with self._lock:
            self._now += seconds
            return self._now

    def advance_to(self, when: float) -> float:
        with self._lock:
            self._now = max(self._now, when)
            return self._now


@dataclass(frozen=True)
class OffsetClock:
    """Another clock shifted by a constant number of seconds.

    The patient's clinical timeline is the clock source the process was given (the
    monotonic clock, a scaled one) plus the offset that continues the journal's timeline
    across a reboot, when that source started again near zero (``safety.kernel.timeline``).
    A source that never runs backwards gives a timeline that never runs backwards.
    """

    inner: Clock
    offset: float

    def now(self) -> float:
        return self.inner.now() + self.offset

    def to_real_seconds(self, clinical_seconds: float) -> float:
        return self.inner.to_real_seconds(clinical_seconds)

    def spec(self) -> str:
        inner = clock_spec(self.inner)
        return inner if self.offset == 0 else f"offset:{float(self.offset)!r}:{inner}"


def clock_spec(clock: Clock) -> str:
    """The string ``clock_from_spec`` turns back into ``clock`` (``real`` for anything
    that reads the monotonic clock unscaled)."""
    if isinstance(clock, ScaledClock | OffsetClock):
        return clock.spec()
    if isinstance(clock, VirtualClock):
        return "virtual"
    return "real"


def clock_from_spec(spec: str) -> Clock:
    """Rebuild a clock from ``real``, ``scaled:SCALE:ORIGIN_REAL[:ORIGIN_CLINICAL]`` or
    ``offset:SECONDS:<another spec>``.

    Lets a parent process hand its clinical clock to children on the command line, and
    the safety process hand its patient timeline to its controller.
    """
    if spec in ("", "real", "monotonic"):
        return MonotonicClock()
    kind, _, rest = spec.partition(":")
    if kind == "offset":
        number, _, inner = rest.partition(":")
        try:
            offset = float(number)
        except ValueError:
            raise ValueError(f"clock spec {spec!r}: offset {number!r} is not a number") from None
        if not math.isfinite(offset):
            raise ValueError(f"clock spec {spec!r}: offset must be finite")
        return OffsetClock(clock_from_spec(inner), offset)
    if kind == "scaled":
        parts = rest.split(":")
        if len(parts) not in (1, 2, 3):
            raise ValueError(f"clock spec {spec!r}: expected scaled:SCALE[:ORIGIN[:CLINICAL]]")
        try:
            numbers = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"clock spec {spec!r}: not a number ({exc})") from None
        scale = numbers[0]
        origin = numbers[1] if len(numbers) > 1 else time.monotonic()
        clinical = numbers[2] if len(numbers) > 2 else 0.0
        return ScaledClock(scale=scale, origin_real=origin, origin_clinical=clinical)
    raise ValueError(
        f"clock spec {spec!r}: expected 'real', 'scaled:SCALE:ORIGIN' or 'offset:SECONDS:SPEC'"
    )
