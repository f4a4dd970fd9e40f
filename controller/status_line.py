"""One line an operator can read at a glance: drug, dose and rate, what has gone in, when
the syringe (or bag) runs out, and every alarm with its priority (highest first).

Pure formatting of a ``Snapshot`` (plus the controller's own state and alarms), shared by
the console and the Python API (``Session.status_line``). On a bench of several pumps the
line also names the channel it describes and any handover under way, and
``bench_lines`` gives the console's per-channel and per-drug table; a one-pump bench's
line is exactly what it was before channels existed.
"""

from __future__ import annotations

from collections.abc import Sequence

from safety.rules import num
from safety.status import AlarmView, ChannelView, DrugView, HandoverView, Snapshot

_RANK = {"high": 3, "medium": 2, "low": 1}


def format_minutes(minutes: float) -> str:
    if minutes < 1:
        return "< 1 min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def sorted_alarms(alarms: Sequence[AlarmView]) -> list[AlarmView]:
    """Highest priority first, then the newest first."""
    return sorted(alarms, key=lambda a: (-_RANK.get(a.priority, 0), -a.raised_at))


def alarm_text(alarm: AlarmView, *, scoped: bool = False) -> str:
    """``scoped``: name the alarm's scope (its channel or drug) as well, on a bench of
    several pumps, where "pump:occlusion" alone does not say which pump."""
    flags = []
    if alarm.acknowledged:
        flags.append("acknowledged")
    if not alarm.active:
        flags.append("condition gone")
    extra = f" [{', '.join(flags)}]" if flags else ""
    name = alarm.ident if scoped else alarm.key
    return f"{alarm.priority.upper()} {name}: {alarm.message}{extra}"


def status_line(
    snapshot: Snapshot,
    state: str,
    *,
    plan: str | None = None,
    controller_alarms: Sequence[AlarmView] = (),
    channel: str | None = None,
    loop: str | None = None,
) -> str:
    """``channel``: the channel the (focused) snapshot's top-level figures describe,
    named on the line when the bench has several (None: the first). ``loop``: the closed
    loop's state when one is engaged (who changes the dose is part of the glance)."""
    parts = [f"[{state}]"]
    if len(snapshot.channels) > 1:
        parts.append(f"channel {channel or snapshot.channels[0].name}")
    view = snapshot.channel(channel)
    # a prime runs the pump to waste: its rate is no dose, nor a time to empty
    priming = view is not None and view.role == "priming"
    spec = snapshot.program
    unit = snapshot.dose_unit or ""
    if spec is None:
        parts.append("no program")
    else:
        weight = f", {num(spec.weight_kg)} kg" if spec.weight_kg is not None else ""
        parts.append(f"{spec.drug} {spec.concentration}{weight}")
        if view is not None and priming:
            parts.append(f"{view.relay or 'priming'} (not to the patient)")
        elif snapshot.running:
            dose = num(snapshot.dose) if snapshot.dose is not None else "?"
            parts.append(f"{dose} {unit} @ {num(snapshot.rate_ml_h)} mL/h")
        else:
            parts.append("not running")
        if snapshot.infused_ml is not None:
            given = ""
            if snapshot.drug_given is not None and snapshot.amount_unit:
                given = f" = {num(snapshot.drug_given, 4)} {snapshot.amount_unit}"
            parts.append(f"infused {snapshot.infused_ml:.2f} mL{given}")
    # the container as the channel's table names it: a bag is no syringe
    kind = view.container_kind if view is not None else "syringe"
    minutes = None if priming else snapshot.minutes_to_empty
    if minutes is not None:
        parts.append(f"{kind} empty in {format_minutes(minutes)}")
    elif snapshot.remaining_ml is not None:
        parts.append(f"{kind} {snapshot.remaining_ml:.1f} mL left")
    if plan:
        parts.append(plan)
    if loop:
        parts.append(loop)
    if snapshot.handover is not None:
        parts.append(handover_text(snapshot.handover, snapshot.clinical_time))
    if snapshot.hold:
        parts.append("SAFETY HOLD")
    if snapshot.uncertain:
        parts.append("DELIVERY UNCERTAIN")
    if not snapshot.comms_ok:
        parts.append("PUMP COMMS LOST")
    alarms = sorted_alarms([*snapshot.alarms, *controller_alarms])
    if alarms:
        scoped = len(snapshot.channels) > 1
        shown = "; ".join(alarm_text(a, scoped=scoped) for a in alarms)
        parts.append(f"alarms: {shown}")
    else:
        parts.append("no alarms")
    return " | ".join(parts)


# --------------------------------------------------------------------------- channels


def _in(seconds: float) -> str:
    return format_minutes(max(0.0, seconds) / 60.0)


def channel_line(view: ChannelView, now: float, *, selected: bool = False) -> str:
    """One channel: role, program, dose and rate, container left and time to empty."""
    mark = "*" if selected else " "
    role = view.role or "idle"
    if view.standby_for:
        role += f" for {view.standby_for}"
        if view.strategy:
            role += f" ({view.strategy})"
    bits = [f"{mark} {view.name:<3} {role:<22}"]
    spec = view.program
    if spec is None:
        bits.append("no program")
    else:
        bits.append(f"{spec.drug} {spec.concentration}")
        if view.role == "priming":
            bits.append("to waste, not to the patient")
        elif view.running:
            dose = num(view.dose) if view.dose is not None else "?"
            bits.append(f"{dose} {view.dose_unit or ''} @ {num(view.rate_ml_h)} mL/h")
        else:
            bits.append("not running")
    left = (
        f"{view.container_kind} {view.remaining_ml:.1f} of {view.container_volume_ml:g} mL"
        if view.remaining_ml is not None
        else f"{view.container_kind} {view.container_volume_ml:g} mL"
    )
    minutes = view.minutes_to_empty if view.role != "priming" else None
    if minutes is not None:
        left += f", empty in {format_minutes(minutes)}"
    bits.append(left)
    bits.append("primed" if view.primed else "not primed")
    if view.paused_until is not None:
        bits.append(f"paused for a container change, resume within {_in(view.paused_until - now)}")
    if view.relieved_by:
        bits.append(f"handed over to {view.relieved_by}")
    if view.relay:
        bits.append(view.relay)
    if view.uncertain:
        bits.append("DELIVERY UNCERTAIN")
    if not view.comms_ok:
        bits.append("PUMP COMMS LOST")
    return " | ".join(bits)


def drug_line(view: DrugView, now: float) -> str:
    """One drug: the patient's total dose, what has been given and its cap, the next
    handover."""
    unit = view.dose_unit or ""
    dose = num(view.dose) if view.dose is not None else "?"
    bits = [f"  {view.drug}: total {dose} {unit} on {', '.join(view.channels) or 'no channel'}"]
    amount = view.amount_unit or ""
    if view.given is not None:
        bits.append(f"given {num(view.given, 4)} {amount}")
    if view.cap_amount is not None and view.given_in_cap_window is not None:
        window = f" in {num(view.cap_window_h)} h" if view.cap_window_h is not None else ""
        bits.append(
            f"cap {num(view.given_in_cap_window, 4)} of {num(view.cap_amount)} {amount}{window}"
        )
    if view.next_handover_at is not None:
        bits.append(f"next handover in {_in(view.next_handover_at - now)}")
    return " | ".join(bits)


def handover_text(handover: HandoverView, now: float) -> str:
    """A handover under way: from, to, strategy, step and the next one."""
    text = (
        f"HANDOVER {handover.from_channel} -> {handover.to_channel} ({handover.strategy}), "
        f"step {handover.step} of {handover.steps}"
    )
    if handover.next_step_at is not None:
        text += f", next in {_in(handover.next_step_at - now)}"
    return text


def bench_lines(snapshot: Snapshot, selected: str | None = None) -> list[str]:
    """The console's table of a bench: every channel (``selected`` marked with *),
    every drug's total, and any handover under way."""
    now = snapshot.clinical_time
    lines = ["channels:"]
    lines += [
        "  " + channel_line(view, now, selected=view.name == selected) for view in snapshot.channels
    ]
    if snapshot.drugs:
        lines.append("drugs (the patient's totals):")
        lines += [drug_line(view, now) for view in snapshot.drugs]
    if snapshot.handover is not None:
        lines.append("  " + handover_text(snapshot.handover, now))
    return lines
