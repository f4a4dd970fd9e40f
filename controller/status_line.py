"""One line an operator can read at a glance: drug, dose and rate, what has gone in, when
the syringe runs out, and every alarm with its priority (highest first).

Pure formatting of a ``Snapshot`` (plus the controller's own state and alarms), shared by
the console and the Python API (``Session.status_line``).
"""

from __future__ import annotations

from collections.abc import Sequence

from safety.rules import num
from safety.status import AlarmView, Snapshot

_RANK = {"high": 3, "medium": 2, "low": 1}


def format_minutes(minutes: float) -> str:
    if minutes < 1:
        return "< 1 min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def sorted_alarms(alarms: Sequence[AlarmView]) -> list[AlarmView]:
    """Highest priority first, then the newest first."""
    return sorted(alarms, key=lambda a: (-_RANK.get(a.priority, 0), -a.raised_at))


def alarm_text(alarm: AlarmView) -> str:
    flags = []
    if alarm.acknowledged:
        flags.append("acknowledged")
    if not alarm.active:
        flags.append("condition gone")
    extra = f" [{', '.join(flags)}]" if flags else ""
    return f"{alarm.priority.upper()} {alarm.key}: {alarm.message}{extra}"


def status_line(
    snapshot: Snapshot,
    state: str,
    *,
    plan: str | None = None,
    controller_alarms: Sequence[AlarmView] = (),
) -> str:
    parts = [f"[{state}]"]
    spec = snapshot.program
    unit = snapshot.dose_unit or ""
    if spec is None:
        parts.append("no program")
    else:
        weight = f", {num(spec.weight_kg)} kg" if spec.weight_kg is not None else ""
        parts.append(f"{spec.drug} {spec.concentration}{weight}")
        if snapshot.running:
            dose = num(snapshot.dose) if snapshot.dose is not None else "?"
            parts.append(f"{dose} {unit} @ {num(snapshot.rate_ml_h)} mL/h")
        else:
            parts.append("not running")
        if snapshot.infused_ml is not None:
            given = ""
            if snapshot.drug_given is not None and snapshot.amount_unit:
                given = f" = {num(snapshot.drug_given, 4)} {snapshot.amount_unit}"
            parts.append(f"infused {snapshot.infused_ml:.2f} mL{given}")
    minutes = snapshot.minutes_to_empty
    if minutes is not None:
        parts.append(f"syringe empty in {format_minutes(minutes)}")
    elif snapshot.remaining_ml is not None:
        parts.append(f"syringe {snapshot.remaining_ml:.1f} mL left")
    if plan:
        parts.append(plan)
    if snapshot.hold:
        parts.append("SAFETY HOLD")
    if snapshot.uncertain:
        parts.append("DELIVERY UNCERTAIN")
    if not snapshot.comms_ok:
        parts.append("PUMP COMMS LOST")
    alarms = sorted_alarms([*snapshot.alarms, *controller_alarms])
    if alarms:
        shown = "; ".join(alarm_text(a) for a in alarms)
        parts.append(f"alarms: {shown}")
    else:
        parts.append("no alarms")
    return " | ".join(parts)
