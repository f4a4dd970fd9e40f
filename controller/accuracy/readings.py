"""Balance readings as CSV: ``time_s,mass_g`` (other columns ignored), what ``accuracy
run`` writes and ``accuracy analyse`` reads, so a commercial analyser's export can be
compared. Every problem names its line."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path


class ReadingsError(ValueError):
    """A file that is not a readings CSV; the message names the line."""


def read_csv(path: str | Path) -> tuple[list[float], list[float]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReadingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReadingsError(f"{path}: not UTF-8 text") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ReadingsError(f"{path}: empty; expected a header time_s,mass_g")
    header = [h.strip() for h in rows[0]]
    try:
        ti, mi = header.index("time_s"), header.index("mass_g")
    except ValueError:
        raise ReadingsError(
            f"{path}:1: header {','.join(header)!r} lacks time_s and mass_g"
        ) from None
    times: list[float] = []
    masses: list[float] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
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
    return times, masses


def line_of(index: int) -> int:
    """The file line of reading ``index`` (0-based) in a file written by ``write_csv``
    or any file without blank lines: the header is line 1."""
    return index + 2


def write_csv(path: str | Path, rows: Sequence[tuple[float, float, bool]]) -> None:
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time_s", "mass_g", "stable"])
        for t, m, stable in rows:
            w.writerow([f"{t:.3f}", f"{m:.4f}", int(stable)])
