"""A recorded MAP trace played back from a CSV file, on a clock.

Format (docs/closed-loop.md): a header naming the columns, ``time_s`` and ``map_mmhg``
required, ``sys_mmhg``, ``dia_mmhg`` and ``hr_bpm`` optional, in any order; one sample per
row, times strictly increasing; an empty ``map_mmhg`` is a sample with no signal. Lines
starting with ``#`` are comments. A bad file is refused whole on ``open`` with the line and
the column named, never half-played.

Playback starts when the source is opened: the row at ``time_s = t`` is released when the
clock has moved ``(t - first time) / speed`` since then.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path

from drivers.monitors.base import MapSample, MonitorProtocolError
from drivers.monitors.limits import MAX_SPEED

REQUIRED = ("time_s", "map_mmhg")
OPTIONAL = ("sys_mmhg", "dia_mmhg", "hr_bpm")
MAX_ROWS = 10_000_000


class ReplayFileError(MonitorProtocolError):
    """The trace file is not a valid trace; the message names the line and column."""


def read_trace(path: str | os.PathLike[str]) -> list[tuple[float, MapSample]]:
    """(time, sample) for every row, checked."""
    rows: list[tuple[float, MapSample]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayFileError(f"{path}: cannot read: {exc}") from None
    kept = [
        (number, line)
        for number, line in enumerate(text.splitlines(keepends=True), start=1)
        if not line.lstrip().startswith("#")
    ]
    reader = csv.DictReader(line for _, line in kept)
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ReplayFileError(f"{path}: the header lacks {', '.join(missing)} (has {header})")
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ReplayFileError(
            f"{path}: unknown column(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(REQUIRED + OPTIONAL)}"
        )
    last = -math.inf
    for seq, row in enumerate(reader):
        where = f"{path}: line {kept[reader.line_num - 1][0]}"
        if seq >= MAX_ROWS:
            raise ReplayFileError(f"{where}: more than {MAX_ROWS} rows")
        t = _number(row, "time_s", where, -1e12, 1e12)
        if t is None:
            raise ReplayFileError(f"{where}: time_s is empty")
        if t <= last:
            raise ReplayFileError(f"{where}: time_s {t:g} is not after {last:g}")
        last = t
        hr = _number(row, "hr_bpm", where, 0, 400)
        sample = MapSample(
            seq,
            t,
            _number(row, "map_mmhg", where, 0, 1000),
            _number(row, "sys_mmhg", where, 0, 1000),
            _number(row, "dia_mmhg", where, 0, 1000),
            None if hr is None else round(hr),
        )
        rows.append((t, sample))
    return rows


def _number(
    row: dict[str, str | None], column: str, where: str, low: float, high: float
) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReplayFileError(f"{where}: {column} {text!r} is not a number") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ReplayFileError(f"{where}: {column} {value:g} is outside {low:g}-{high:g}")
    return value


class CsvReplay:
    """A ``MapSource`` playing a trace file on ``clock`` (a callable giving seconds)."""

    def __init__(
        self, path: str | os.PathLike[str], clock: Callable[[], float], *, speed: float = 1.0
    ) -> None:
        if not (0 < speed <= MAX_SPEED):
            raise ValueError(f"replay speed must be > 0 and <= {MAX_SPEED:g}, got {speed}")
        self.path = Path(path)
        self._clock = clock
        self._speed = speed
        self._rows: list[tuple[float, MapSample]] = []
        self._next = 0
        self._origin = 0.0

    @property
    def name(self) -> str:
        return f"replay of {self.path}"

    @property
    def finished(self) -> bool:
        return self._next >= len(self._rows)

    def open(self) -> None:
        self._rows = read_trace(self.path)
        self._next = 0
        self._origin = self._clock()

    def poll(self) -> list[MapSample]:
        if not self._rows:
            return []
        played = (self._clock() - self._origin) * self._speed + self._rows[0][0]
        out: list[MapSample] = []
        while self._next < len(self._rows) and self._rows[self._next][0] <= played:
            out.append(self._rows[self._next][1])
            self._next += 1
        return out

    def close(self) -> None:
        self._rows = []
