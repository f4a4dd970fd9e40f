"""A bench's state as plain JSON for people: the dashboard's data and the telemetry's
status payload (one wording, one set of field names: docs/telemetry.md).

Channels are a list (today a bench has one pump: ``channel 1``), so a page or a fleet
tile written against this shape shows every channel when a bench has more.

Doses come from the safety process's snapshot; the plot's doses and the limit lines come
from the drug library, and only when the library is the one the safety process runs
(same content hash): a view never draws a limit the safety process does not enforce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from safety.journal_read import PROGRAM_PROBLEMS
from safety.journal_text import JournalLine
from safety.kernel.model import ProgramSpec
from safety.kernel.state import ActiveProgram, load_program
from safety.library import DrugLibrary
from safety.rules import num
from safety.status import AlarmView, Snapshot
from safety.units import UnitError, parse_concentration

#: priorities, most urgent first (IEC 60601-1-8: high, medium, low)
PRIORITIES = ("high", "medium", "low")
_RANK = {p: i for i, p in enumerate(PRIORITIES)}
#: how far back the plot goes, clinical hours
PLOT_HOURS = 6.0


@dataclass
class ProgramCache:
    """``program_check`` once per program spec (it parses and checks the library)."""

    library: DrugLibrary | None
    spec: ProgramSpec | None = None
    program: ActiveProgram | None = None

    def get(self, snapshot: Snapshot) -> ActiveProgram | None:
        spec = snapshot.program
        library = self.library
        if spec is None or library is None or library.content_hash != snapshot.library_hash:
            return None
        if spec != self.spec:
            self.spec = spec
            try:
                self.program = load_program(library, spec, 0.0)
            except PROGRAM_PROBLEMS:
                self.program = None
        return self.program


def _f(value: Decimal | float | Fraction | None, digits: int = 4) -> float | None:
    if value is None:
        return None
    result = round(float(value), digits)
    return result if math.isfinite(result) else None


def sorted_alarms(alarms: tuple[AlarmView, ...]) -> list[AlarmView]:
    """Most urgent first, then the newest."""
    return sorted(alarms, key=lambda a: (_RANK.get(a.priority, 9), -a.raised_at))


def alarm_json(alarm: AlarmView) -> dict[str, Any]:
    return {
        "key": alarm.key,
        "priority": alarm.priority,
        "reason": alarm.reason,
        "message": alarm.message,
        "raised_at": alarm.raised_at,
        "active": alarm.active,
        "acknowledged": alarm.acknowledged,
    }


def worst_alarm(alarms: tuple[AlarmView, ...]) -> AlarmView | None:
    """The most urgent alarm still active (None: nothing needs a person)."""
    active = [a for a in alarms if a.active]
    return sorted_alarms(tuple(active))[0] if active else None


def channel_view(
    snapshot: Snapshot, program: ActiveProgram | None, *, name: str = "channel 1"
) -> dict[str, Any]:
    """One channel: what is infused, at what dose and rate, how much has gone in."""
    spec = snapshot.program
    worst = worst_alarm(snapshot.alarms)
    return {
        "name": name,
        "state": snapshot.mode,
        "running": snapshot.running,
        "hold": snapshot.hold,
        "estopped": snapshot.estopped,
        "uncertain": snapshot.uncertain,
        "comms_ok": snapshot.comms_ok,
        "attached": snapshot.attached,
        "drug": spec.drug if spec else None,
        "concentration": spec.concentration if spec else None,
        "diluent": spec.diluent if spec else None,
        "profile": spec.profile if spec else None,
        "weight_kg": _f(spec.weight_kg) if spec and spec.weight_kg is not None else None,
        "dose": _f(snapshot.dose),
        "dose_unit": snapshot.dose_unit,
        "dose_text": (
            f"{num(snapshot.dose)} {snapshot.dose_unit}"
            if snapshot.dose is not None and snapshot.dose_unit
            else None
        ),
        "rate_ml_h": _f(snapshot.rate_ml_h),
        "infused_ml": _f(snapshot.infused_ml, 3),
        "drug_given": _f(snapshot.drug_given),
        "amount_unit": snapshot.amount_unit,
        "given_in_cap_window": _f(snapshot.given_in_cap_window),
        "cap_amount": _f(snapshot.cap_amount),
        "cap_window_h": _f(snapshot.cap_window_h),
        "syringe": snapshot.syringe,
        "remaining_ml": _f(snapshot.remaining_ml, 3),
        "minutes_to_empty": _f(snapshot.minutes_to_empty, 1),
        # not known to the safety process; filled where a view knows them
        "plan": None,
        "next_handover": None,
        "alarms": [alarm_json(a) for a in sorted_alarms(snapshot.alarms)],
        "worst_alarm": worst.priority if worst else None,
        "limits": limits(program),
    }


def limits(program: ActiveProgram | None) -> dict[str, Any] | None:
    """The therapy's dose limits in its dose unit (S1 hard max, S2 soft limits)."""
    if program is None:
        return None
    t = program.therapy
    return {
        "unit": t.dose_unit,
        "hard_max": _f(t.hard_max.value),
        "soft_max": _f(t.soft_max.value),
        "soft_min": _f(t.soft_min.value),
    }


def plot_series(
    snapshot: Snapshot, program: ActiveProgram | None, hours: float = PLOT_HOURS
) -> dict[str, Any]:
    """Rate (mL/h) and dose over the last ``hours`` as steps: ``t`` in clinical hours
    relative to now (<= 0). A step's dose is its rate x its own concentration, in the
    current program's dose unit (None without a program the library can read)."""
    now = snapshot.clinical_time
    start = now - hours * 3600.0
    per_amount = program.dose_per_amount_h if program is not None else None
    per_ml = _per_ml(snapshot)
    points: list[list[float | None]] = []
    history = snapshot.history
    for i, p in enumerate(history):
        end = history[i + 1].start if i + 1 < len(history) else now
        if end < start:
            continue
        t = max(p.start, start)
        amount = p.exact_amount()
        dose = _f(amount * per_amount) if per_amount is not None else None
        # the drug's total as a rate of the program's solution (its label, no library)
        rate = _f(amount / per_ml) if per_ml else None
        points.append([round((t - now) / 3600.0, 5), rate, dose])
    if points:
        points.append([0.0, points[-1][1], points[-1][2]])
    return {"hours": hours, "points": points}


def _per_ml(snapshot: Snapshot) -> Fraction | None:
    """The drug amount per mL of the first channel's program, from its label alone."""
    if snapshot.program is None or snapshot.program.test_fluid:
        return None
    try:
        return parse_concentration(snapshot.program.concentration).base_per_ml()
    except UnitError:
        return None


def journal_json(lines: list[JournalLine] | tuple[JournalLine, ...]) -> list[dict[str, Any]]:
    return [{"id": x.id, "kind": x.kind, "clinical": x.clinical, "text": x.text} for x in lines]


__all__ = [
    "PLOT_HOURS",
    "PRIORITIES",
    "ProgramCache",
    "alarm_json",
    "channel_view",
    "journal_json",
    "limits",
    "plot_series",
    "sorted_alarms",
    "worst_alarm",
]
