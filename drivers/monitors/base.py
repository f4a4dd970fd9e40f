"""Where a closed loop gets the blood pressure: one interface for every MAP source.

A ``MapSource`` yields MAP samples in order: a simulated monitor over a wire
(``wire.WireMonitor``), the in-process simulated patient (``simulated``), a recorded trace
(``replay.CsvReplay``); a real patient monitor's data export is one more implementation of
the same three methods (its protocol's own module beside these). None of them can deliver
or stop a drug: the controller may use them (ARCHITECTURE.md), and the safety process
never sees them.

A sample carries what the monitor said, not a judgement: a flush that reads 300 mmHg is a
valid sample of a wrong pressure. Telling artefacts from blood pressure is the
controller's job (``controller.closed_loop.artefacts``). A sample with no signal has
``map_mmhg`` None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class MonitorError(Exception):
    """Base of every error a MAP source raises."""


class MonitorUnavailable(MonitorError):
    """The source cannot be read now (link down, no reply, file gone); the caller treats
    it as signal loss and may poll again later."""


class MonitorProtocolError(MonitorError):
    """The source answered something that is not its protocol (wrong version, garbage)."""


@dataclass(frozen=True)
class MapSample:
    """One MAP numeric. ``time`` is the source's own clock (clinical s for the simulated
    monitor, the file's time column for a replay); ``seq`` increases by one per numeric
    the source made (a gap means numerics were missed)."""

    seq: int
    time: float
    map_mmhg: float | None  # None: the monitor has no arterial signal
    sys_mmhg: float | None = None
    dia_mmhg: float | None = None
    hr_bpm: int | None = None

    def __post_init__(self) -> None:
        for name, value in (
            ("map_mmhg", self.map_mmhg),
            ("sys_mmhg", self.sys_mmhg),
            ("dia_mmhg", self.dia_mmhg),
        ):
            if value is not None and not (0 <= value <= 1000):  # NaN fails, inf is > 1000
                raise ValueError(f"{name} must be 0-1000 mmHg, got {value!r}")

    @property
    def has_signal(self) -> bool:
        return self.map_mmhg is not None

    @property
    def pulse_pressure_mmhg(self) -> float | None:
        if self.sys_mmhg is None or self.dia_mmhg is None:
            return None
        return self.sys_mmhg - self.dia_mmhg


class MapSource(Protocol):
    """A source of MAP samples."""

    @property
    def name(self) -> str:
        """For people and the journal: what and where (``monitor tcp 127.0.0.1:5000``)."""
        ...

    def open(self) -> None:
        """Connect (and check the source speaks what we expect); raises ``MonitorError``."""
        ...

    def poll(self) -> list[MapSample]:
        """The samples made since the last poll, oldest first ([] when none are new).
        Raises ``MonitorUnavailable`` when the source cannot be read now."""
        ...

    def close(self) -> None: ...
