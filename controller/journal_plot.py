"""Dose and rate over clinical time, as a PNG, with the therapy's limits and the alarms.

matplotlib is optional (``pip install pumpctl[plot]``): it is imported only when a plot
is drawn, with the non-interactive Agg backend (a bench computer has no display), and
its absence is a ``PlotUnavailable`` with a sentence saying how to get it, never an
ImportError traceback.

What is drawn comes from the safety journal: the rate the safety process *verified* by
read-back (a step line), the dose that rate delivers under the program loaded at the time,
the soft and hard limits of that program's therapy, and every alarm it raised (rebuilt by
replay, ``controller.journal_timeline.replay_safety``), coloured by priority. A scenario
run can add the pump's ground truth (what really reached the patient) as a second line.

On a bench of several pumps the journal's read-backs name their channel: each channel gets
its own line (its verified rate, and the dose it delivers under its own program), and the
dose panel adds the patient's total, the sum over the channels, which is what the limits
drawn there bind (S1 on the drug total). The ground truth may then be given per channel; its
line is the delivered total. A one-pump journal is drawn exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from controller.journal_timeline import AlarmMark
from firmware_bridge.pump_model import TruthEvent, TruthSegment
from safety.journal_read import ProgramsInForce
from safety.kernel.model import CommandIssued, Event, PrimePump, ReadbackReceived
from safety.library import DrugLibrary

PRIORITY_COLOURS = {"high": "tab:red", "medium": "tab:orange", "low": "tab:olive"}
#: one colour per channel on a bench of several pumps (none of the limits' or alarms')
CHANNEL_COLOURS = ("tab:cyan", "tab:pink", "tab:brown", "tab:gray", "tab:purple")


class PlotUnavailable(Exception):
    """No plot can be drawn here (matplotlib missing); the message says what to do."""


@dataclass
class PlotData:
    title: str
    unit: str | None = None
    rate: list[tuple[float, float]] = field(default_factory=list)  # (s, mL/h) steps
    dose: list[tuple[float, float]] = field(default_factory=list)  # (s, dose) steps
    truth_rate: list[tuple[float, float]] = field(default_factory=list)
    truth_dose: list[tuple[float, float]] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)  # soft_min, soft_max, hard_max
    alarms: list[AlarmMark] = field(default_factory=list)
    end: float | None = None
    #: a bench of several pumps: each channel's verified rate and dose steps (then
    #: ``rate`` is empty and ``dose`` is the patient's total over the channels)
    channel_rate: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    channel_dose: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: primes to waste (start, end, channel): shaded, their flow never counted as dose
    primes: list[tuple[float, float, str]] = field(default_factory=list)


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
    library: DrugLibrary,
    *,
    alarms: Sequence[AlarmMark] = (),
    truth: Sequence[TruthEvent] | Mapping[str, Sequence[TruthEvent]] = (),
    title: str = "pumpctl journal",
    end: float | None = None,
    channel: str | None = None,
) -> PlotData:
    """The series to draw, from the safety journal's events (and a ground truth: one
    pump's events, or each channel's by name). ``channel`` (a bench of several pumps):
    that channel's lines and alarms, beside the patient's total over every channel (the
    limits bind the total) and the bench's alarms."""
    channels = list(dict.fromkeys(e.channel for e in events if isinstance(e, ReadbackReceived)))
    if len(channels) > 1 or (isinstance(truth, Mapping) and len(truth) > 1):
        data = _bench_data(events, channels, alarms, truth, title, end)
        if channel is not None:
            _keep_channel(data, channel)
        return data
    if isinstance(truth, Mapping):
        truth = next(iter(truth.values()), [])
    programs = ProgramsInForce.from_events(events)

    def dose(t: float, rate: Decimal) -> float:
        program = programs.at(t)
        return float(program.dose(rate)) if program is not None else 0.0

    data = PlotData(title=title, alarms=[a for a in alarms if a.event == "raised"], end=end)
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
    alarms: Sequence[AlarmMark],
    truth: Sequence[TruthEvent] | Mapping[str, Sequence[TruthEvent]],
    title: str,
    end: float | None,
) -> PlotData:
    """A bench of several pumps: a line per channel, and the patient's total dose."""
    data = PlotData(title=title, alarms=[a for a in alarms if a.event == "raised"], end=end)
    truths = truth if isinstance(truth, Mapping) else {}
    names = list(dict.fromkeys([*channels, *truths]))
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
    delivered = []
    for name, events_of in truths.items():
        segments = [e for e in events_of if isinstance(e, TruthSegment)]
        delivered.append(
            [(e.start, dose(name, e.start, Decimal(repr(e.rate_ml_h)))) for e in segments]
        )
    data.truth_dose = sum_steps(delivered)
    data.primes = primes.done
    _limits(data, ProgramsInForce.from_events(events), title)
    return data


def _keep_channel(data: PlotData, channel: str) -> None:
    """One channel's lines, primes and alarms (and the bench's, scope "" or a drug's);
    the total dose stays the patient's."""
    others = (set(data.channel_rate) | set(data.channel_dose)) - {channel}
    data.channel_rate = {n: v for n, v in data.channel_rate.items() if n == channel}
    data.channel_dose = {n: v for n, v in data.channel_dose.items() if n == channel}
    data.primes = [p for p in data.primes if p[2] == channel]
    data.alarms = [a for a in data.alarms if a.scope not in others]
    data.title = f"{data.title} (channel {channel}; total: every channel)"


def time_range(data: PlotData) -> tuple[float, float]:
    """The first and last instant the plot shows: every line's points (each channel's
    too), the primes, the alarms and the run's end. Each line is held to the last of
    these, so one left out makes a line stop early or be drawn back in time."""
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
    xs += [a.time for a in data.alarms]
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


def plot(data: PlotData, out: str | Path) -> Path:
    """Draw ``data`` to ``out`` (PNG). Raises ``PlotUnavailable`` without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional, and slow to import

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
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

    fig, (ax_dose, ax_rate) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    try:
        unit = data.unit or "dose"
        if data.truth_dose:
            x, y = steps(data.truth_dose)
            ax_dose.step(
                x, y, where="post", color="0.6", lw=3, alpha=0.6, label="delivered (pump truth)"
            )
        several = bool(data.channel_dose)
        for n, (name, series) in enumerate(sorted(data.channel_dose.items())):
            x, y = steps(series)
            colour = CHANNEL_COLOURS[n % len(CHANNEL_COLOURS)]
            ax_dose.step(x, y, where="post", color=colour, lw=1.0, label=f"channel {name}")
        x, y = steps(data.dose)
        ax_dose.step(
            x,
            y,
            where="post",
            color="tab:blue",
            lw=2.0 if several else 1.6,
            label="verified total dose" if several else "verified dose",
        )
        styles = {
            "soft min": ("tab:green", ":"),
            "soft max": ("tab:orange", "--"),
            "hard max": ("tab:red", "-"),
        }
        for name, value in data.limits.items():
            colour, style = styles.get(name, ("0.4", ":"))
            ax_dose.axhline(value, color=colour, ls=style, lw=1, label=f"{name} {value:g} {unit}")
        ax_dose.set_ylabel(unit)
        ax_dose.set_title(data.title, fontsize=10)
        if data.truth_rate:
            x, y = steps(data.truth_rate)
            ax_rate.step(
                x, y, where="post", color="0.6", lw=3, alpha=0.6, label="delivered (pump truth)"
            )
        if data.rate or not several:
            x, y = steps(data.rate)
            ax_rate.step(x, y, where="post", color="tab:purple", lw=1.6, label="verified rate")
        for n, (name, series) in enumerate(sorted(data.channel_rate.items())):
            x, y = steps(series)
            colour = CHANNEL_COLOURS[n % len(CHANNEL_COLOURS)]
            ax_rate.step(
                x, y, where="post", color=colour, lw=1.4, label=f"channel {name} verified rate"
            )
        ax_rate.set_ylabel("mL/h")
        ax_rate.set_xlabel(label)
        for n, (start, stop, _channel) in enumerate(data.primes):
            for ax in (ax_dose, ax_rate):
                ax.axvspan(
                    start / scale,
                    max(stop, start + scale / 200) / scale,
                    color="0.85",
                    label=("prime to waste" if n == 0 else None) if ax is ax_rate else None,
                )
        seen: set[str] = set()
        groups: dict[float, list[AlarmMark]] = {}
        for alarm in data.alarms:  # alarms of one instant share one label
            groups.setdefault(round(alarm.time / scale, 3), []).append(alarm)
        rank = {"high": 3, "medium": 2, "low": 1}
        for at, marks in sorted(groups.items()):
            worst = max(marks, key=lambda a: rank.get(a.priority, 0))
            colour = PRIORITY_COLOURS.get(worst.priority, "0.3")
            tag = f"{worst.priority} alarm"
            for ax in (ax_dose, ax_rate):
                ax.axvline(
                    at,
                    color=colour,
                    lw=0.8,
                    alpha=0.7,
                    label=tag if ax is ax_rate and tag not in seen else None,
                )
            seen.add(tag)
            ax_dose.annotate(
                ", ".join(dict.fromkeys(a.key for a in marks)),
                (at, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=6,
                color=colour,
            )
        for ax in (ax_dose, ax_rate):
            ax.grid(True, alpha=0.3)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


__all__ = [
    "PlotData",
    "PlotUnavailable",
    "drawn_steps",
    "plot",
    "plot_data",
    "sum_steps",
    "time_range",
]
