"""Dose and rate over clinical time, as a PNG, with the therapy's limits and the alarms.

matplotlib is optional (``pip install pumpctl[plot]``): it is imported only when a plot
is drawn, with the non-interactive Agg backend (a bench computer has no display), and
its absence is a ``PlotUnavailable`` with a sentence saying how to get it, never an
ImportError traceback.

What is drawn comes from the safety journal: the rate the safety process *verified* by
read-back (a step line), the dose that rate delivers under the program loaded at the time,
the soft and hard limits of that program's therapy, every alarm it raised (rebuilt by
replay, ``controller.journal_timeline.replay_safety``) as a bar from raised to cleared in
an events strip under the panels, coloured by priority and named as ``journal show``
names it (``A/relay_no_standby``), and every relay handover (``RELAY A -> B (overlap, 4
steps, 30 mL/h)``) as a band over the panels and a bar in the strip. A scenario run or the
demo can add the pumps' ground truth (what really reached the patient) as the delivered
flow, in both panels.

On a bench of several pumps the journal's read-backs name their channel: each channel gets
its own line (its verified rate, and the dose it delivers under its own program), in a
colour fixed by its place in the bench (the same with ``--channel``), and the dose panel
adds the patient's total, the sum over the channels, which is what the limits drawn there
bind (S1 on the drug total): dashed, over the channel lines, so that both show. The ground
truth may then be given per channel; its line is the delivered total. A one-pump journal
has one verified rate and one dose line.

The dose axis is scaled to the doses, not to the hard maximum: a limit far above them
would squash the detail flat. The limits within reach (``LIMIT_REACH``) are drawn; the
others are listed in the legend as above the plot. Legends sit outside the panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from controller.journal_timeline import AlarmMark, journal_channels
from firmware_bridge.pump_model import TruthEvent, TruthSegment
from safety.journal_read import ProgramsInForce, handovers_recorded
from safety.journal_text import ProgramTracker, describe
from safety.kernel.model import (
    CommandIssued,
    Event,
    PrimePump,
    ReadbackReceived,
)

PRIORITY_COLOURS = {"high": "tab:red", "medium": "tab:orange", "low": "tab:olive"}
#: one colour per channel on a bench of several pumps, by the channel's place in the
#: bench (none of the limits', alarms' or the total's)
CHANNEL_COLOURS = ("tab:cyan", "tab:pink", "tab:brown", "tab:gray", "tab:purple")
#: a relay handover's band and bar
HANDOVER_COLOUR = "goldenrod"
#: a limit is drawn on the dose axis when it is at most this many times the highest dose
#: plotted; one further up is listed in the legend as above the plot
LIMIT_REACH = 1.5


class PlotUnavailable(Exception):
    """No plot can be drawn here (matplotlib missing); the message says what to do."""


@dataclass(frozen=True)
class AlarmSpan:
    """An alarm as the plot draws it: from the instant it was raised until it cleared
    (the replay's clear, or the controller journal's for its own alarms; ``until`` None:
    still active when the journal ends, or a controller journal written before clears
    were recorded)."""

    mark: AlarmMark
    until: float | None

    @property
    def time(self) -> float:
        return self.mark.time

    @property
    def scope(self) -> str:
        return self.mark.scope

    @property
    def priority(self) -> str:
        return self.mark.priority

    @property
    def ident(self) -> str:
        """The alarm as ``journal show`` names it: "A/relay_no_standby" on a channel."""
        return self.mark.ident


@dataclass(frozen=True)
class HandoverMark:
    """A relay handover from the safety journal (clinical s); ``end`` None: under way
    when the journal ends."""

    label: str  # as ``journal show`` words it: "RELAY A -> B (overlap, 4 steps, 30 mL/h)"
    from_channel: str
    to_channel: str
    start: float
    end: float | None
    outcome: str  # "done", "failed", "cancelled", or "" while under way


@dataclass
class PlotData:
    title: str
    unit: str | None = None
    rate: list[tuple[float, float]] = field(default_factory=list)  # (s, mL/h) steps
    dose: list[tuple[float, float]] = field(default_factory=list)  # (s, dose) steps
    #: the pumps' ground truth (on a bench: the sum over its channels), mL/h and dose
    truth_rate: list[tuple[float, float]] = field(default_factory=list)
    truth_dose: list[tuple[float, float]] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)  # soft_min, soft_max, hard_max
    alarms: list[AlarmSpan] = field(default_factory=list)
    end: float | None = None
    #: a bench of several pumps: each channel's verified rate and dose steps (then
    #: ``rate`` is empty and ``dose`` is the patient's total over the channels)
    channel_rate: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    channel_dose: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: every channel of the bench in its order, kept when one is picked: the colours
    channels: list[str] = field(default_factory=list)
    #: primes to waste (start, end, channel): shaded, their flow never counted as dose
    primes: list[tuple[float, float, str]] = field(default_factory=list)
    handovers: list[HandoverMark] = field(default_factory=list)


class _Primes:
    """Which read-backs show a prime (a purge to waste, S15), not an infusion: those of
    a channel from its prime command until a read-back shows it stopped."""

    def __init__(self) -> None:
        self.open: dict[str, float] = {}
        self.done: list[tuple[float, float, str]] = []

    def running(self, event: Event) -> bool:
        """Feed every event; True for a read-back taken while its channel primes."""
        if isinstance(event, CommandIssued) and isinstance(event.action, PrimePump):
            self.open.setdefault(event.action.channel, event.now.clinical)
        elif isinstance(event, ReadbackReceived) and event.channel in self.open:
            if event.reading.running:
                return True
            self.done.append((self.open.pop(event.channel), event.now.clinical, event.channel))
        return False


def sum_steps(series: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Step functions (value from each point's time on, 0 before the first) summed: one
    point wherever any of them changes (changes of one instant are one change)."""
    points = sorted((t, n, i) for n, steps in enumerate(series) for i, (t, _) in enumerate(steps))
    current = [0.0] * len(series)
    out: list[tuple[float, float]] = []
    for k, (t, n, i) in enumerate(points):
        current[n] = series[n][i][1]
        if k + 1 < len(points) and points[k + 1][0] == t:
            continue
        total = sum(current)
        if not out or out[-1][1] != total:
            out.append((t, total))
    return out


def plot_data(
    events: Sequence[Event],
    *,
    alarms: Sequence[AlarmMark] = (),
    truth: Sequence[TruthEvent] | Mapping[str, Sequence[TruthEvent]] = (),
    title: str = "pumpctl journal",
    end: float | None = None,
    channel: str | None = None,
) -> PlotData:
    """The series to draw, from the safety journal's events (and a ground truth: one
    pump's events, or each channel's by name). ``alarms``: those raised and their clears
    (``Journals.alarms(cleared=True)``; without clears every alarm is drawn to the end).
    ``channel`` (a bench of several pumps): that channel's lines, alarms and handovers,
    beside the patient's total over every channel (the limits bind the total) and the
    bench's alarms."""
    channels = list(dict.fromkeys(e.channel for e in events if isinstance(e, ReadbackReceived)))
    if len(channels) > 1 or (isinstance(truth, Mapping) and len(truth) > 1):
        data = _bench_data(events, channels, truth, title, end)
    else:
        data = _pump_data(events, truth, title, end)
    data.alarms = alarm_spans(alarms)
    data.handovers = handover_marks(events)
    if channel is not None:
        _keep_channel(data, channel)
    return data


def _pump_data(
    events: Sequence[Event],
    truth: Sequence[TruthEvent] | Mapping[str, Sequence[TruthEvent]],
    title: str,
    end: float | None,
) -> PlotData:
    """One pump: its verified rate and dose, and its ground truth."""
    if isinstance(truth, Mapping):
        truth = next(iter(truth.values()), [])
    programs = ProgramsInForce.from_events(events)

    def dose(t: float, rate: Decimal) -> float:
        program = programs.at(t)
        return float(program.dose(rate)) if program is not None else 0.0

    data = PlotData(title=title, end=end)
    last: tuple[bool, Decimal] | None = None
    primes = _Primes()
    for event in events:
        priming = primes.running(event)
        if isinstance(event, ReadbackReceived):
            r = event.reading
            rate = r.set_rate_ml_h if r.running and not priming else Decimal(0)
            if last != (r.running, rate):
                last = (r.running, rate)
                t = event.now.clinical
                data.rate.append((t, float(rate)))
                data.dose.append((t, dose(t, rate)))
    for e in truth:
        if isinstance(e, TruthSegment):
            data.truth_rate.append((e.start, e.rate_ml_h))
            data.truth_dose.append((e.start, dose(e.start, Decimal(repr(e.rate_ml_h)))))
    data.primes = primes.done
    _limits(data, programs, title)
    return data


def _limits(data: PlotData, programs: ProgramsInForce, title: str) -> None:
    """The last program's unit and therapy limits, and the title naming it."""
    known = programs.known()
    if known:
        program = known[-1]
        therapy = program.therapy
        data.unit = program.unit
        data.title = f"{title}: {program.what}"
        data.limits = {
            "soft min": float(Fraction(therapy.soft_min.value)),
            "soft max": float(Fraction(therapy.soft_max.value)),
            "hard max": float(Fraction(therapy.hard_max.value)),
        }


def _bench_data(
    events: Sequence[Event],
    channels: list[str],
    truth: Sequence[TruthEvent] | Mapping[str, Sequence[TruthEvent]],
    title: str,
    end: float | None,
) -> PlotData:
    """A bench of several pumps: a line per channel, the patient's total dose, and the
    delivered total (the channels' ground truth summed, in mL/h and as a dose)."""
    data = PlotData(title=title, end=end)
    truths = truth if isinstance(truth, Mapping) else {}
    names = list(dict.fromkeys([*channels, *truths]))
    data.channels = list(dict.fromkeys([*journal_channels(events), *names]))
    programs = {name: ProgramsInForce.from_events(events, name) for name in names}

    def dose(name: str, t: float, rate: Decimal) -> float:
        program = programs[name].at(t)
        return float(program.dose(rate)) if program is not None else 0.0

    last: dict[str, tuple[bool, Decimal]] = {}
    primes = _Primes()
    for event in events:
        priming = primes.running(event)
        if isinstance(event, ReadbackReceived):
            name, r = event.channel, event.reading
            rate = r.set_rate_ml_h if r.running and not priming else Decimal(0)
            if last.get(name) != (r.running, rate):
                last[name] = (r.running, rate)
                t = event.now.clinical
                data.channel_rate.setdefault(name, []).append((t, float(rate)))
                data.channel_dose.setdefault(name, []).append((t, dose(name, t, rate)))
    data.dose = sum_steps([data.channel_dose[n] for n in names if n in data.channel_dose])
    flows, doses = [], []
    for name, events_of in truths.items():
        segments = [e for e in events_of if isinstance(e, TruthSegment)]
        flows.append([(e.start, e.rate_ml_h) for e in segments])
        doses.append([(e.start, dose(name, e.start, Decimal(repr(e.rate_ml_h)))) for e in segments])
    data.truth_rate = sum_steps(flows)
    data.truth_dose = sum_steps(doses)
    data.primes = primes.done
    _limits(data, ProgramsInForce.from_events(events), title)
    return data


def alarm_spans(alarms: Sequence[AlarmMark]) -> list[AlarmSpan]:
    """Each alarm raised in ``alarms`` with the instant it cleared: the first clear of
    the same alarm (scope and key) at or after it among ``alarms`` (``Journals.alarms(
    cleared=True)``, the clears ``journal show`` lists); none: still active."""
    cleared: dict[str, list[float]] = {}
    for mark in alarms:
        if mark.event == "cleared":
            cleared.setdefault(mark.ident, []).append(mark.time)
    spans: list[AlarmSpan] = []
    for mark in alarms:
        if mark.event != "raised":
            continue
        ends = [t for t in cleared.get(mark.ident, []) if t >= mark.time]
        spans.append(AlarmSpan(mark, min(ends) if ends else None))
    return spans


def handover_marks(events: Sequence[Event]) -> list[HandoverMark]:
    """Every relay handover the safety journal records (``handovers_recorded``),
    labelled with ``journal show``'s words (``describe``) up to its reason."""
    return [
        HandoverMark(
            describe(started, ProgramTracker()).partition(": ")[0],
            started.from_channel,
            started.to_channel,
            started.now.clinical,
            end,
            outcome,
        )
        for started, end, outcome in handovers_recorded(events)
    ]


def _keep_channel(data: PlotData, channel: str) -> None:
    """One channel's lines, primes, alarms and handovers (and the bench's alarms, scope
    "" or a drug's); the total dose and the delivered total stay the patient's, and the
    bench's channel order (the colours) stays whole."""
    others = (set(data.channel_rate) | set(data.channel_dose) | set(data.channels)) - {channel}
    data.channel_rate = {n: v for n, v in data.channel_rate.items() if n == channel}
    data.channel_dose = {n: v for n, v in data.channel_dose.items() if n == channel}
    data.primes = [p for p in data.primes if p[2] == channel]
    data.alarms = [a for a in data.alarms if a.scope not in others]
    data.handovers = [h for h in data.handovers if channel in (h.from_channel, h.to_channel)]
    data.title = f"{data.title} (channel {channel}; total: every channel)"


def channel_colour(data: PlotData, name: str) -> str:
    """A channel's colour, by its place in the bench (``data.channels``), not in the
    lines drawn: B is drawn in B's colour with or without A."""
    order = data.channels if name in data.channels else [*data.channels, name]
    return CHANNEL_COLOURS[order.index(name) % len(CHANNEL_COLOURS)]


def time_range(data: PlotData) -> tuple[float, float]:
    """The first and last instant the plot shows: every line's points (each channel's
    too), the primes, the alarms (raised and cleared), the handovers and the run's end.
    Each line is held to the last of these, so one left out makes a line stop early or
    be drawn back in time."""
    lines = (
        data.rate,
        data.dose,
        data.truth_rate,
        data.truth_dose,
        *data.channel_rate.values(),
        *data.channel_dose.values(),
    )
    xs = [t for series in lines for t, _ in series]
    xs += [t for start, stop, _ in data.primes for t in (start, stop)]
    xs += [t for a in data.alarms for t in (a.time, a.until) if t is not None]
    xs += [t for h in data.handovers for t in (h.start, h.end) if t is not None]
    if data.end is not None:
        xs.append(data.end)
    return (min(xs), max(xs)) if xs else (0.0, 0.0)


def drawn_steps(series: Sequence[tuple[float, float]], end: float) -> list[tuple[float, float]]:
    """The corners a step line is drawn through: its points, then its last value held
    until ``end`` (the axis's end), never back to an instant before its last change."""
    corners = list(series)
    if corners and end > corners[-1][0]:
        corners.append((end, corners[-1][1]))
    return corners


@dataclass(frozen=True)
class DoseAxis:
    """The dose panel's scale: ``top`` (None: matplotlib's own, nothing to scale to),
    the limits drawn as lines, and those above the plot (listed in the legend)."""

    top: float | None
    drawn: dict[str, float]
    above: dict[str, float]


def dose_axis(data: PlotData) -> DoseAxis:
    """Scaled to the doses plotted (verified, each channel's, delivered), with the limits
    within ``LIMIT_REACH`` of the highest: a hard maximum four times the dose would
    squash the titration steps into the bottom quarter."""
    series = (data.dose, data.truth_dose, *data.channel_dose.values())
    highest = max((v for s in series for _, v in s), default=0.0)
    if highest <= 0:
        return DoseAxis(None, dict(data.limits), {})
    drawn = {n: v for n, v in data.limits.items() if v <= highest * LIMIT_REACH}
    above = {n: v for n, v in data.limits.items() if n not in drawn}
    return DoseAxis(max(highest, *drawn.values()) * 1.12, drawn, above)


def _event_rows(data: PlotData) -> list[str]:
    """The events strip's rows, top to bottom: each handover, then each alarm (one row
    per alarm, its raisings in order of the first)."""
    rows = [
        f"{h.label}: {h.outcome or 'under way'}".replace(" (", "\n(", 1) for h in data.handovers
    ]
    return rows + list(dict.fromkeys(a.ident for a in data.alarms))


def plot(data: PlotData, out: str | Path) -> Path:
    """Draw ``data`` to ``out`` (PNG). Raises ``PlotUnavailable`` without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional, and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.lines import Line2D  # noqa: PLC0415
    except ImportError:
        raise PlotUnavailable(
            "plotting needs matplotlib, which is not installed: pip install 'pumpctl[plot]' "
            "(or pip install matplotlib); the journal itself is complete without it"
        ) from None
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    start, end = time_range(data)
    scale, label = (
        (3600.0, "clinical time (h)") if end - start > 3 * 3600 else (60.0, "clinical time (min)")
    )

    def steps(series: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
        corners = drawn_steps(series, end)
        return [t / scale for t, _ in corners], [v for _, v in corners]

    def channel_lines(
        ax: Any, lines: Mapping[str, Sequence[tuple[float, float]]], lw: float, suffix: str
    ) -> None:
        """Each channel's line in its bench colour, under the dashed total."""
        for name, series in sorted(lines.items()):
            ax.step(
                *steps(series),
                where="post",
                color=channel_colour(data, name),
                lw=lw,
                zorder=3,
                label=f"channel {name}{suffix}",
            )

    rows = _event_rows(data)
    ratios = [3.0, 2.2] + ([0.35 + 0.28 * len(rows)] if rows else [])
    fig, axes = plt.subplots(
        len(ratios),
        1,
        sharex=True,
        figsize=(12, 6.5 + (0.3 * len(rows) if rows else 0)),
        height_ratios=ratios,
        layout="constrained",
    )
    ax_dose, ax_rate = axes[0], axes[1]
    try:
        unit = data.unit or "dose"
        several = bool(data.channel_dose) or bool(data.channels)
        truth_style: dict[str, Any] = {
            "where": "post",
            "color": "0.55",
            "lw": 5,
            "alpha": 0.45,
            "zorder": 1,
            "label": "delivered total (pump truth)" if several else "delivered (pump truth)",
        }
        if data.truth_dose:
            ax_dose.step(*steps(data.truth_dose), **truth_style)
        channel_lines(ax_dose, data.channel_dose, 1.8, "")
        if several:  # dashed over the channels: each shows through where it is the total
            ax_dose.step(
                *steps(data.dose),
                where="post",
                color="tab:blue",
                lw=1.3,
                ls=(0, (4, 3)),
                zorder=4,
                label="verified total dose",
            )
        else:
            ax_dose.step(
                *steps(data.dose), where="post", color="tab:blue", lw=1.6, zorder=3,
                label="verified dose",
            )  # fmt: skip
        styles = {
            "soft min": ("tab:green", ":"),
            "soft max": ("tab:orange", "--"),
            "hard max": ("tab:red", "-"),
        }
        scaled = dose_axis(data)
        for name, value in scaled.drawn.items():
            colour, style = styles.get(name, ("0.4", ":"))
            ax_dose.axhline(value, color=colour, ls=style, lw=1, label=f"{name} {value:g} {unit}")
        above = [
            Line2D([], [], color=styles.get(n, ("0.4", ":"))[0], ls=styles.get(n, ("0.4", ":"))[1],
                   lw=1, label=f"{n} {v:g} {unit} (above the plot)")
            for n, v in scaled.above.items()
        ]  # fmt: skip
        ax_dose.set_ylim(0, scaled.top)
        ax_dose.set_ylabel(unit)
        ax_dose.set_title(data.title, fontsize=10)
        if data.truth_rate:
            ax_rate.step(*steps(data.truth_rate), **truth_style)
        if data.rate or not several:
            ax_rate.step(
                *steps(data.rate), where="post", color="tab:purple", lw=1.6, zorder=3,
                label="verified rate",
            )  # fmt: skip
        channel_lines(ax_rate, data.channel_rate, 1.6, " verified rate")
        ax_rate.set_ylabel("mL/h")
        ax_rate.set_ylim(bottom=0)
        for n, (p_start, p_stop, p_channel) in enumerate(data.primes):
            for ax in (ax_dose, ax_rate):
                ax.axvspan(
                    p_start / scale,
                    max(p_stop, p_start + scale / 200) / scale,
                    color="0.85",
                    zorder=0,
                    label=f"prime to waste ({p_channel})" if ax is ax_rate and n == 0 else None,
                )
        for n, h in enumerate(data.handovers):
            h_end = h.end if h.end is not None else end
            for ax in (ax_dose, ax_rate):
                ax.axvspan(
                    h.start / scale,
                    max(h_end, h.start + scale / 200) / scale,
                    color=HANDOVER_COLOUR,
                    alpha=0.22,
                    zorder=0,
                    label="relay handover" if ax is ax_rate and n == 0 else None,
                )
        seen: set[str] = set()
        for alarm in data.alarms:  # where each was raised, over the data; named below
            colour = PRIORITY_COLOURS.get(alarm.priority, "0.3")
            tag = f"{alarm.priority} alarm raised"
            for ax in (ax_dose, ax_rate):
                ax.axvline(
                    alarm.time / scale,
                    color=colour,
                    lw=0.8,
                    alpha=0.6,
                    zorder=2,
                    label=tag if ax is ax_rate and tag not in seen else None,
                )
            seen.add(tag)
        if rows:
            _events_strip(axes[2], data, rows, scale, end)
        for ax in (ax_dose, ax_rate):
            ax.grid(True, alpha=0.3)
        ax_dose.legend(
            handles=[*ax_dose.get_legend_handles_labels()[0], *above],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
        ax_rate.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        axes[-1].set_xlabel(label)
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


def _events_strip(ax: Any, data: PlotData, rows: list[str], scale: float, end: float) -> None:
    """The events under the panels, one row each, named on the left: a bar from raised to
    cleared (coloured by priority), an arrow at the right edge for one still active when
    the journal ends, a diamond for one raised and cleared at once; a handover's bar from
    its start to its end."""
    index = {row: n for n, row in enumerate(rows)}
    colours: dict[int, str] = {}
    height = 0.56

    def bar(row: int, t0: float, t1: float | None, colour: str) -> None:
        stop = t1 if t1 is not None else end
        if stop - t0 < scale / 200:  # an instant: visible, not a hairline
            ax.plot([t0 / scale], [row], marker="D", ms=4, color=colour)
        else:
            ax.broken_barh([(t0 / scale, (stop - t0) / scale)], (row - height / 2, height),
                           color=colour, alpha=0.8)  # fmt: skip
        if t1 is None:
            ax.plot([end / scale], [row], marker=">", ms=6, color=colour, clip_on=False)

    for n, h in enumerate(data.handovers):
        bar(n, h.start, h.end, HANDOVER_COLOUR)
        colours[n] = "0.2"
    for alarm in data.alarms:
        row = index[alarm.ident]
        colour = PRIORITY_COLOURS.get(alarm.priority, "0.3")
        bar(row, alarm.time, alarm.until, colour)
        colours[row] = colour
    still = {index[a.ident] for a in data.alarms if a.until is None}
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"{row} (active at end)" if n in still else row for n, row in enumerate(rows)],
        fontsize=7,
    )
    for n, tick in enumerate(ax.get_yticklabels()):
        tick.set_color(colours.get(n, "0.2"))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="y", length=0)


__all__ = [
    "AlarmSpan",
    "DoseAxis",
    "HandoverMark",
    "PlotData",
    "PlotUnavailable",
    "alarm_spans",
    "channel_colour",
    "dose_axis",
    "drawn_steps",
    "handover_marks",
    "plot",
    "plot_data",
    "sum_steps",
    "time_range",
]
