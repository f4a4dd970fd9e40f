"""A bench's state as plain JSON for people: the dashboard's data and the telemetry's
status payload (one wording, one set of field names: docs/telemetry.md).

``bench_view`` is the whole bench: a view per channel (``channel_view``), per drug
(``drug_view``: the patient's total over its channels, what the limits read), the
handover in progress and every alarm with its scope. A one-pump bench's only channel
keeps the label v1 consumers have always seen (``channel 1``); a bench of several names
its channels as the safety process does (``A``, ``B``: what the console's ``@B`` and an
alarm's scope say). Each channel also carries that name as ``id``.

Doses come from the safety process's snapshot; the plot's doses and the limit lines come
from the drug library, and only when the library is the one the safety process runs
(same content hash): a view never draws a limit the safety process does not enforce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from safety.journal_read import PROGRAM_PROBLEMS
from safety.journal_text import JournalLine
from safety.kernel.model import ProgramSpec
from safety.kernel.state import ActiveProgram, load_program
from safety.library import DrugLibrary
from safety.rules import num
from safety.status import AlarmView, ChannelView, DrugView, HandoverView, Snapshot
from safety.units import AmountUnit, UnitError, parse_concentration

#: priorities, most urgent first (IEC 60601-1-8: high, medium, low)
PRIORITIES = ("high", "medium", "low")
_RANK = {p: i for i, p in enumerate(PRIORITIES)}
#: how far back the plot goes, clinical hours
PLOT_HOURS = 6.0
#: the label of a one-pump bench's only channel (what telemetry v1 has always said)
SINGLE_CHANNEL_LABEL = "channel 1"
#: programs a ``ProgramCache`` keeps (a bench's channels, and a few it had before)
_PROGRAMS_KEPT = 16


@dataclass
class ProgramCache:
    """``load_program`` once per program spec (it parses and checks the library): one
    per channel's program, so a bench of several does not re-check on every change."""

    library: DrugLibrary | None
    programs: dict[ProgramSpec, ActiveProgram | None] = field(default_factory=dict)

    def get(self, snapshot: Snapshot) -> ActiveProgram | None:
        """The top-level (first or focused) channel's program, read with the library,
        or None when there is none or the library is not the safety process's."""
        spec = snapshot.program
        library = self.library
        if spec is None or library is None or library.content_hash != snapshot.library_hash:
            return None
        if spec not in self.programs:
            if len(self.programs) >= _PROGRAMS_KEPT:
                self.programs.clear()
            try:
                self.programs[spec] = load_program(library, spec, 0.0)
            except PROGRAM_PROBLEMS:
                self.programs[spec] = None
        return self.programs[spec]


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
        "scope": alarm.scope,
    }


def worst_alarm(alarms: tuple[AlarmView, ...]) -> AlarmView | None:
    """The most urgent alarm that needs a person: still active, or latched (its condition
    gone, not yet acknowledged: a pump that stopped by itself is such an alarm from its
    first reading). None: nothing needs a person."""
    needs = [a for a in alarms if a.active or not a.acknowledged]
    return sorted_alarms(tuple(needs))[0] if needs else None


def concerns(alarm: AlarmView, snapshot: Snapshot, channel: ChannelView) -> bool:
    """Whether ``alarm`` belongs on ``channel``'s card: a bench alarm, the channel's own,
    or one of its drug's. An alarm whose scope names nothing on the bench any more (a
    drug no channel gives now) goes to the first channel, so every alarm is shown."""
    scope = alarm.scope
    if scope in ("", channel.name):
        return True
    drug = channel.program.drug if channel.program is not None else None
    if drug is not None and scope == f"drug:{drug}":
        return True
    claimed = {c.name for c in snapshot.channels} | {
        f"drug:{c.program.drug}" for c in snapshot.channels if c.program is not None
    }
    return scope not in claimed and bool(snapshot.channels) and channel is snapshot.channels[0]


def channel_state(snapshot: Snapshot, channel: ChannelView | None) -> str:
    """The channel's state in the bench mode's words (``idle`` ... ``emergency_stopped``):
    the emergency stop and the hold are the bench's; the rest the channel's own. A
    one-pump bench's channel reads exactly the bench's mode."""
    if channel is None or len(snapshot.channels) <= 1:
        return snapshot.mode
    if snapshot.estopped:
        return "emergency_stopped"
    if snapshot.hold:
        return "hold"
    if channel.uncertain:
        return "uncertain"
    if channel.running:
        return "infusing"
    return "programmed" if channel.program is not None else "idle"


def channel_label(
    snapshot: Snapshot, channel: ChannelView | None, single: str = SINGLE_CHANNEL_LABEL
) -> str:
    """``single`` (``channel 1``, the v1 label) on a one-pump bench, else the channel's
    name."""
    if channel is None or len(snapshot.channels) <= 1:
        return single
    return channel.name


def channel_view(
    snapshot: Snapshot,
    program: ActiveProgram | None,
    *,
    name: str = SINGLE_CHANNEL_LABEL,
    channel: ChannelView | None = None,
    alarms: tuple[AlarmView, ...] | None = None,
    next_handover: tuple[float | None, str | None] = (None, None),
) -> dict[str, Any]:
    """One channel: what is infused, at what dose and rate, how much has gone in, its
    part in a relay. ``snapshot`` has the channel's figures at its top level (the bench's
    own for its first channel, ``Snapshot.focused`` for another); ``channel`` is its view
    (None: the snapshot's first); ``alarms`` those shown with it (None: every alarm)."""
    if channel is None:
        channel = snapshot.channel()
    spec = snapshot.program
    shown = snapshot.alarms if alarms is None else alarms
    worst = worst_alarm(shown)
    at, words = next_handover
    return {
        "name": name,
        "id": channel.name if channel is not None else None,
        "state": channel_state(snapshot, channel),
        "running": snapshot.running,
        "hold": snapshot.hold,
        "estopped": snapshot.estopped,
        "uncertain": channel.uncertain if channel is not None else snapshot.uncertain,
        "comms_ok": snapshot.comms_ok,
        "attached": snapshot.attached,
        "drug": spec.drug if spec else None,
        "concentration": spec.concentration if spec else None,
        "diluent": spec.diluent if spec else None,
        "profile": spec.profile if spec else None,
        "weight_kg": _f(spec.weight_kg) if spec and spec.weight_kg is not None else None,
        "dose": _f(snapshot.dose),
        "dose_unit": snapshot.dose_unit,
        "dose_text": _dose_text(snapshot.dose, snapshot.dose_unit),
        "rate_ml_h": _f(snapshot.rate_ml_h),
        "infused_ml": _f(snapshot.infused_ml, 3),
        "drug_given": _f(snapshot.drug_given),
        "amount_unit": snapshot.amount_unit,
        "given_in_cap_window": _f(snapshot.given_in_cap_window),
        "cap_amount": _f(snapshot.cap_amount),
        "cap_window_h": _f(snapshot.cap_window_h),
        "syringe": snapshot.syringe,
        "container_kind": channel.container_kind if channel is not None else None,
        "primed": channel.primed if channel is not None else None,
        "remaining_ml": _f(snapshot.remaining_ml, 3),
        "minutes_to_empty": _f(snapshot.minutes_to_empty, 1),
        "role": channel.role if channel is not None else "",
        "relay": channel.relay if channel is not None else "",
        "standby_for": channel.standby_for if channel is not None else None,
        "strategy": channel.strategy if channel is not None else None,
        "relieved_by": channel.relieved_by if channel is not None else None,
        "paused_until": channel.paused_until if channel is not None else None,
        # the controller's plan is not known to the safety process
        "plan": None,
        "next_handover": words,
        "next_handover_at": at,
        "alarms": [alarm_json(a) for a in sorted_alarms(shown)],
        "worst_alarm": worst.priority if worst else None,
        "limits": limits(program),
    }


def _dose_text(dose: Decimal | None, unit: str | None) -> str | None:
    return f"{num(dose)} {unit}" if dose is not None and unit else None


def next_handover(snapshot: Snapshot, drug: DrugView | None) -> tuple[float | None, str | None]:
    """When the relay next hands ``drug`` over (clinical s) and in words, from the
    safety process's own figures: the handover in progress, or the next one due."""
    if drug is None:
        return None, None
    going = snapshot.handover
    if going is not None and going.from_channel in drug.channels:
        return None, "now: " + handover_text(going)
    at = drug.next_handover_at
    if at is None:
        return None, None
    standby = next(
        (
            c
            for c in snapshot.channels
            if c.role == "standby" and c.standby_for in drug.channels and c.name in drug.channels
        ),
        None,
    )
    left = max(0.0, at - snapshot.clinical_time) / 60.0
    who = (
        f" (channel {standby.standby_for} to {standby.name}, {standby.strategy})" if standby else ""
    )
    return at, f"in about {left:.0f} min{who}"


def handover_text(handover: HandoverView) -> str:
    return (
        f"channel {handover.from_channel} to {handover.to_channel} ({handover.strategy}, "
        f"step {handover.step}/{handover.steps})"
    )


def handover_view(snapshot: Snapshot) -> dict[str, Any] | None:
    """The relay handover in progress (None: none)."""
    h = snapshot.handover
    if h is None:
        return None
    return {
        "from_channel": h.from_channel,
        "to_channel": h.to_channel,
        "strategy": h.strategy,
        "step": h.step,
        "steps": h.steps,
        "started_at": h.started_at,
        "next_step_at": h.next_step_at,
        "text": handover_text(h),
    }


def drug_view(snapshot: Snapshot, drug: DrugView) -> dict[str, Any]:
    """One drug for the patient: the total over its channels (what S1 and S3 read)."""
    at, words = next_handover(snapshot, drug)
    worst = worst_alarm(tuple(a for a in snapshot.alarms if a.scope == f"drug:{drug.drug}"))
    return {
        "drug": drug.drug,
        "what": drug.what,
        "channels": list(drug.channels),
        "dose": _f(drug.dose),
        "dose_unit": drug.dose_unit,
        "dose_text": _dose_text(drug.dose, drug.dose_unit),
        "amount_per_h": _f(_in_unit(drug.amount_per_h, drug.amount_unit)),
        "amount_unit": drug.amount_unit,
        "given": _f(drug.given),
        "given_in_cap_window": _f(drug.given_in_cap_window),
        "cap_amount": _f(drug.cap_amount),
        "cap_window_h": _f(drug.cap_window_h),
        "next_handover": words,
        "next_handover_at": at,
        "worst_alarm": worst.priority if worst else None,
    }


def _in_unit(amount_per_h: Decimal, unit: str | None) -> Fraction | None:
    """A base amount (mcg or units) per hour in ``unit`` per hour (mg: / 1000)."""
    try:
        factor = AmountUnit(unit).base_factor if unit is not None else Fraction(1)
    except ValueError:
        return None
    return Fraction(amount_per_h) / factor


def bench_view(
    snapshot: Snapshot, programs: ProgramCache, *, single_label: str = SINGLE_CHANNEL_LABEL
) -> dict[str, Any]:
    """Every channel, every drug, the handover in progress and every alarm (with its
    scope), plus a plot per channel (its drug's total): the dashboard's and the
    telemetry status's data. A snapshot without channel views (an older safety process)
    reads as one channel from its top-level fields."""
    channels: list[dict[str, Any]] = []
    plots: list[dict[str, Any]] = []
    views: tuple[ChannelView | None, ...] = snapshot.channels or (None,)
    for view in views:
        focused = snapshot.focused(view.name) if view is not None else snapshot
        program = programs.get(focused)
        drug = snapshot.drug(view.program.drug) if view and view.program is not None else None
        if view is None or len(snapshot.channels) <= 1:
            shown = snapshot.alarms
        else:
            shown = tuple(a for a in snapshot.alarms if concerns(a, snapshot, view))
        channels.append(
            channel_view(
                focused,
                program,
                name=channel_label(snapshot, view, single_label),
                channel=view,
                alarms=shown,
                next_handover=next_handover(snapshot, drug),
            )
        )
        plots.append(plot_series(focused, program))
    return {
        "channels": channels,
        "plots": plots,
        "drugs": [drug_view(snapshot, d) for d in snapshot.drugs],
        "handover": handover_view(snapshot),
        "alarms": [alarm_json(a) for a in sorted_alarms(snapshot.alarms)],
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
    "SINGLE_CHANNEL_LABEL",
    "ProgramCache",
    "alarm_json",
    "bench_view",
    "channel_label",
    "channel_state",
    "channel_view",
    "concerns",
    "drug_view",
    "handover_view",
    "journal_json",
    "limits",
    "next_handover",
    "plot_series",
    "sorted_alarms",
    "worst_alarm",
]
