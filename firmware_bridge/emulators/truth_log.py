"""The emulator's ground-truth log: the flow that really reached the patient, on disk.

``SimulatedPump`` reports every change of delivered flow (``TruthSegment``) and every
bolus released by a cleared occlusion (``TruthBolus``) to a sink. This module is that sink
for emulators running in their own process: one JSON object per line, flushed as each
event happens, so the hardware-in-the-loop suite can read the truth while the emulator is
still running, or after it was killed.

Line format (times on the pump's clinical clock, seconds):
``{"type": "segment", "start": 12.5, "rate_ml_h": 3.0}``,
``{"type": "bolus", "time": 40.0, "volume_ml": 0.2}`` and
``{"type": "waste", "time": 90.0, "volume_ml": 1.0}`` (primed to waste while the line was
not connected to the patient: never delivered).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import IO

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment, TruthWaste


class TruthLogError(ValueError):
    """A truth log line that is not a truth event; the message names the line."""


def event_to_json(event: TruthEvent) -> dict[str, object]:
    if isinstance(event, TruthSegment):
        return {"type": "segment", "start": event.start, "rate_ml_h": event.rate_ml_h}
    if isinstance(event, TruthWaste):
        return {"type": "waste", "time": event.time, "volume_ml": event.volume_ml}
    return {"type": "bolus", "time": event.time, "volume_ml": event.volume_ml}


def event_from_json(obj: object) -> TruthEvent:
    if not isinstance(obj, dict):
        raise TruthLogError(f"expected a JSON object, got {obj!r}")
    kind = obj.get("type")
    try:
        if kind == "segment":
            return TruthSegment(float(obj["start"]), float(obj["rate_ml_h"]))
        if kind == "bolus":
            return TruthBolus(float(obj["time"]), float(obj["volume_ml"]))
        if kind == "waste":
            return TruthWaste(float(obj["time"]), float(obj["volume_ml"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TruthLogError(f"{kind} event with a missing or bad field: {exc}") from None
    raise TruthLogError(f"unknown event type {kind!r}; expected 'segment', 'bolus' or 'waste'")


class TruthLogWriter:
    """A ``truth_sink`` for ``SimulatedPump`` writing JSON lines, flushed per event.

    ``fsync`` also forces each line to the disk (slower; for runs that simulate power loss
    of the bench machine itself).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8")

    def __call__(self, event: TruthEvent) -> None:
        line = json.dumps(event_to_json(event), separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> TruthLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_truth_log(path: str | os.PathLike[str]) -> list[TruthEvent]:
    """Every event in a truth log, in order.

    A last line that lacks its newline and does not parse is a write cut short (the
    emulator was killed in the middle of it) and is skipped; any other malformed line
    raises ``TruthLogError`` naming the file and line.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]
    events: list[TruthEvent] = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TruthLogError(f"{path}:{number}: not JSON ({exc.msg})") from None
        try:
            events.append(event_from_json(obj))
        except TruthLogError as exc:
            raise TruthLogError(f"{path}:{number}: {exc}") from None
    if tail.strip():
        with contextlib.suppress(json.JSONDecodeError, TruthLogError):  # a write cut short
            events.append(event_from_json(json.loads(tail)))
    return events
