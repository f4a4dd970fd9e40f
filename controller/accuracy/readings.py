"""Balance readings as CSV: ``time_s,mass_g`` (other columns ignored), what ``accuracy
run`` writes and ``accuracy analyse`` reads, so a commercial analyser's export can be
compared. Every problem names its line; a spreadsheet's byte-order mark, CR LF line ends
and blank lines are fine (each reading keeps the number of the line it came from)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

#: what ``accuracy run`` writes: the two columns the analysis needs, then the balance's
#: stability flag (1 stable, 0 dynamic) and the MT-SICS command that read the weight
HEADER = ("time_s", "mass_g", "stable", "command")


@dataclass(frozen=True)
class Row:
    """One reading: seconds since the start, net grams, the balance's stability flag and
    the command that read it (``S`` or ``SI``)."""

    time_s: float
    mass_g: float
    stable: bool
    command: str


class ReadingsError(ValueError):
    """A file that is not a readings CSV; the message names the line."""


@dataclass(frozen=True)
class Readings:
    """The readings of one file, with the file line each came from."""

    times_s: list[float]
    masses_g: list[float]
    lines: list[int]

    def line(self, index: int) -> int:
        """The file line of reading ``index`` (0-based)."""
        return self.lines[index]


def read_csv(path: str | Path) -> Readings:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ReadingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = _line_of_byte(exc)
        raise ReadingsError(f"{path}:{line}: not UTF-8 text") from None
    numbered = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), start=1)]
    numbered = [(n, row) for n, row in numbered if row and any(c.strip() for c in row)]
    if not numbered:
        raise ReadingsError(f"{path}: empty; expected a header time_s,mass_g")
    header_line, header_row = numbered[0]
    header = [h.strip() for h in header_row]
    try:
        ti, mi = header.index("time_s"), header.index("mass_g")
    except ValueError:
        raise ReadingsError(
            f"{path}:{header_line}: header {','.join(header)!r} lacks time_s and mass_g"
        ) from None
    times: list[float] = []
    masses: list[float] = []
    lines: list[int] = []
    for number, row in numbered[1:]:
        try:
            t, m = float(row[ti]), float(row[mi])
        except (IndexError, ValueError):
            raise ReadingsError(
                f"{path}:{number}: expected numbers in time_s and mass_g, got {','.join(row)!r}"
            ) from None
        if not (math.isfinite(t) and math.isfinite(m)):
            raise ReadingsError(f"{path}:{number}: time_s and mass_g must be finite numbers")
        times.append(t)
        masses.append(m)
        lines.append(number)
    return Readings(times, masses, lines)


def _line_of_byte(exc: UnicodeDecodeError) -> int:
    """The line (1-based) of the first byte that is not UTF-8."""
    return bytes(exc.object[: exc.start]).count(b"\n") + 1


class ReadingsWriter:
    """Writes readings as they come, one flushed line each: a run that is interrupted,
    or a controller that dies, leaves every reading taken so far on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] = self.path.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(HEADER)
        self._file.flush()

    def write(self, row: Row) -> None:
        self._csv.writerow([f"{row.time_s:.3f}", f"{row.mass_g:.4f}", int(row.stable), row.command])
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ReadingsWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "HEADER",
    "Readings",
    "ReadingsError",
    "ReadingsWriter",
    "Row",
    "read_csv",
]
