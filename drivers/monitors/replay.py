"""A recorded MAP trace played back from a CSV file, on a clock.

Format (docs/closed-loop.md): a header naming the columns, ``time_s`` and ``map_mmhg``
required, ``sys_mmhg``, ``dia_mmhg`` and ``hr_bpm`` optional, each once, in any order
(spaces around a name and a UTF-8 byte-order mark are ignored); one sample per row, as
many fields as the header, times strictly increasing, at least one sample; an empty
``map_mmhg`` is a sample with no signal. Lines starting with ``#`` and blank lines are
skipped. A bad file is refused whole on ``open`` with the file, the line and what was
expected named, never half-played.

Playback starts when the source is opened: the row at ``time_s = t`` is released when the
clock has moved ``(t - first time) / speed`` since then.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path

from drivers.monitors.base import MapSample, MonitorProtocolError, MonitorUnavailable
from drivers.monitors.limits import MAX_SPEED

REQUIRED = ("time_s", "map_mmhg")
OPTIONAL = ("sys_mmhg", "dia_mmhg", "hr_bpm")
MAX_ROWS = 10_000_000


class ReplayFileError(MonitorProtocolError):
    """The trace file is not a valid trace; the message names the line and column."""


def read_trace(path: str | os.PathLike[str]) -> list[tuple[float, MapSample]]:
    """(time, sample) for every row, checked.

    Each line is parsed on its own so that every message can name the file's own line
    number; a recorded trace has no quoted newlines, so nothing is lost by that. A row
    of the wrong width is refused rather than padded or cut: a short row would otherwise
    play as "no signal" and a long one would lose data without a word."""
    rows: list[tuple[float, MapSample]] = []
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first name
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayFileError(f"{path}: cannot read: {exc}") from None
    lines = (
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    )
    first = next(lines, None)
    if first is None:
        raise ReplayFileError(
            f"{path}: no header; expected a header line naming {', '.join(REQUIRED)} "
            f"(optional: {', '.join(OPTIONAL)}) and a row per sample"
        )
    header_line, header_text = first
    header = [name.strip() for name in _fields(path, header_line, header_text)]
    where = f"{path}: line {header_line}"
    for name in header:
        if header.count(name) > 1:
            raise ReplayFileError(
                f"{where}: column {name} appears twice in the header; each column once"
            )
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ReplayFileError(
            f"{where}: the header lacks {', '.join(missing)} (has {', '.join(header)})"
        )
    unknown = [repr(c) for c in header if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ReplayFileError(
            f"{where}: unknown column(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(REQUIRED + OPTIONAL)}"
        )
    last = -math.inf
    for seq, (number, line) in enumerate(lines):
        where = f"{path}: line {number}"
        if seq >= MAX_ROWS:
            raise ReplayFileError(f"{where}: more than {MAX_ROWS} rows")
        fields = _fields(path, number, line)
        if len(fields) != len(header):
            raise ReplayFileError(
                f"{where}: {len(fields)} fields, expected {len(header)} ({', '.join(header)})"
            )
        row = dict(zip(header, fields, strict=True))
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
    if not rows:
        raise ReplayFileError(
            f"{path}: line {header_line}: a header and no samples; expected at least one row "
            f"of {', '.join(header)}"
        )
    return rows


def _fields(path: str | os.PathLike[str], number: int, line: str) -> list[str]:
    """The CSV fields of one line; a line without quotes splits the same way, 7x faster
    (a trace can have millions of rows)."""
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise ReplayFileError(f"{path}: line {number}: not valid CSV: {exc}") from None


def _number(row: dict[str, str], column: str, where: str, low: float, high: float) -> float | None:
    text = row.get(column, "").strip()
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
        """The samples due by now; once the last has been given, ``MonitorUnavailable``
        saying the trace ended (a loop on it then says why it has no MAP, instead of only
        that it has none)."""
        if not self._rows:
            return []
        if self.finished:
            end = self._rows[-1][0]
            raise MonitorUnavailable(f"the replayed trace {self.path} ended (at {end:g} s)")
        played = (self._clock() - self._origin) * self._speed + self._rows[0][0]
        out: list[MapSample] = []
        while self._next < len(self._rows) and self._rows[self._next][0] <= played:
            out.append(self._rows[self._next][1])
            self._next += 1
        return out

    def close(self) -> None:
        self._rows = []
