"""The demo's closing report: figures and invariant checks on the pumps' ground truth.

Judged on what the two emulated pumps really delivered (their truth logs), summed into the
patient's total of the drug, with causes from the safety journal, never on what the
controller believes: the oracle the scenario runner and the hardware-in-the-loop suite
use (``verification.ground_truth``), on the total (``verification.channel_truth``). The
handover gets its own figures on the same summed flow (``verification.handover``): the
worst deviation of the delivered drug rate from the set dose in any 1-minute window
(goal: within +-10 %), and the longest stretch below 90 % of it. The plot, ``demo.png``,
is the one ``pumpctl journal plot`` draws for the run's journals (``demo_plot_data``):
the channels apart, with the delivered flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from cli.demo.bench import truth_log_paths
from controller.journal_plot import PlotData, PlotUnavailable, plot, plot_data
from controller.journal_timeline import JournalFiles, Journals, load_journals
from firmware_bridge.emulators.truth_log import read_truth_log
from firmware_bridge.pump_model import TruthEvent, TruthWaste
from safety.journal_read import ProgramsInForce, read_safety_events
from safety.kernel.model import Event, RequestDecided
from safety.library import load_library
from safety.status import AlarmView
from verification.channel_truth import CHANNEL_RULES, check_channels
from verification.handover import (
    LOW_SHARE,
    WINDOW_S,
    handovers,
    set_flow,
    summed_flow,
    window_figures,
)

#: journal entry and pump action may be this far apart on a real wire (real seconds);
#: multiplied by the clock speed-up to clinical seconds
WIRE_SLACK_S = 0.5
#: the handover's goal: every 1-minute window of the delivered drug within this of the set
#: dose (issue 14)
HANDOVER_BAND = 0.10
#: the handover is judged from a window before it begins until this long after it ends
#: (clinical s): the incoming pump's flow must have settled by then
HANDOVER_AFTER_S = 300.0


def summarise(
    out_dir: Path,
    speed: float,
    alarms: list[AlarmView],
    timeline: list[tuple[float, str]],
    truth_logs: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """The report of a finished run in ``out_dir`` (``truth_logs``: each channel's
    ground truth, by default where ``DemoBench`` puts them)."""
    if truth_logs is None:
        truth_logs = truth_log_paths(out_dir)
    library = load_library()
    truths = {name: read_truth_log(path) for name, path in truth_logs.items()}
    truth = summed_flow(truths)
    safety_journal = out_dir / "safety-journal.sqlite"
    events = read_safety_events(safety_journal)
    checked = check_channels(truths, library, events, tolerance_s=WIRE_SLACK_S * speed)
    report = checked.total
    s = report.summary
    relays = handover_figures(events, truth, ProgramsInForce.from_events(events))
    handed_over = bool(relays) and all(h["ok"] for h in relays)
    decided = [e for e in events if isinstance(e, RequestDecided)]
    accepted = sum(1 for e in decided if e.accepted)
    commanded = [c for c in report.changes if c.cause == "command"]
    relayed = [c for c in report.changes if c.cause == "relay"]
    unexplained = [
        c for c in report.changes if c.cause not in ("command", "safety", "estop", "relay")
    ]

    plot_path: str | None = None
    plot_note = ""
    try:
        journals = load_journals(
            JournalFiles(safety_journal, out_dir / "controller-journal.sqlite"), library
        )
        plot_path = str(plot(demo_plot_data(journals, truths), out_dir / "demo.png"))
    except PlotUnavailable as exc:
        plot_note = str(exc)

    unit = s.dose_unit or ""
    lines = [
        "summary (checked on the emulated pumps' own ground truth, summed)",
        f"  program        {s.program}",
        f"  max dose       {_n(float(s.max_dose or 0))} {unit} ({_n(s.max_rate_ml_h)} mL/h)",
        f"  drug given     {_n(s.drug_amount or 0)} {s.amount_unit or ''} in "
        f"{_n(s.volume_ml)} mL over {s.running_s / 3600:.2f} h of flow",
        f"  cap            {s.cap}: peak {_n(s.cap_peak or 0)} in any window",
        f"  boluses        {s.bolus_count} ({_n(s.bolus_ml)} mL, released occlusion)",
        f"  requests       {len(decided)} decided by the safety process, {accepted} accepted",
        f"  rate changes   {len(report.changes)} on the pump: "
        + ", ".join(f"{n} {cause}" for cause, n in sorted(s.changes_by_cause.items())),
        f"  alarms         {len(alarms)}: "
        + ", ".join(sorted({f"{a.priority} {a.key}" for a in alarms})),
    ]
    for h in relays:
        lines += [
            f"  handover       {h['from']} -> {h['to']} ({h['strategy']}) at "
            f"{h['start_s'] / 60:.1f}-{h['end_s'] / 60:.1f} min, {h['outcome']}, "
            f"{_n(h['dose'])} {unit} handed over",
            f"                 worst {WINDOW_S / 60:g}-min window of the delivered drug "
            f"{h['worst_deviation'] * 100:+.1f} % of the set dose "
            f"({'within' if h['ok'] else 'OUTSIDE'} +-{HANDOVER_BAND * 100:g} %); longest "
            f"below {LOW_SHARE * 100:g} %: {h['longest_low_s']:.0f} s",
        ]
    if not relays:
        lines.append("  handover       NONE: the course did not hand over")
    hard_max = [v for v in report.violations if v.rule == "hard_max"]
    wean = [v for v in report.violations if v.rule in ("wean_too_fast", "stop_above_threshold")]
    caps = [v for v in report.violations if v.rule == "cumulative_cap"]
    lines += [
        f"  on the total   hard max: {'held' if not hard_max else 'BROKEN'} (peak "
        f"{_n(float(s.max_dose or 0))} {unit}); cap: {'held' if not caps else 'BROKEN'} "
        f"({_n(s.cap_peak or 0)} of {s.cap}); wean: "
        + ("every fall within the rule" if not wean else f"{len(wean)} fall(s) too fast"),
    ]
    if report.ok:
        lines.append(
            "  invariants     OK: hard max, 24 h cap, titration steps and gradual wean all "
            "held on the delivered drug, both pumps summed"
        )
    else:
        lines.append(f"  invariants     {len(report.violations)} VIOLATION(S):")
        lines += [
            f"    - {v.rule} at {v.time / 60:.1f} min: {v.message}" for v in report.violations
        ]
    lines.append(
        f"  journal        every one of the {len(commanded)} commanded rate changes follows a "
        "journaled, accepted request"
        + (
            f"; the {len(relayed)} relay changes are the safety process's own handover steps"
            if relayed
            else ""
        )
        + (
            "; the other changes are the pump's own (occlusion)"
            if unexplained
            else "; no other changes"
        )
    )
    lines.append(f"  files          {out_dir}")
    lines.append(f"  plot           {plot_path or plot_note}")
    return {
        "ok": report.ok and handed_over,
        "max_dose": float(s.max_dose or 0),
        "dose_unit": unit,
        "max_rate_ml_h": s.max_rate_ml_h,
        "total_drug": float(s.drug_amount or 0),
        "amount_unit": s.amount_unit,
        "volume_ml": s.volume_ml,
        "alarms": [
            {"key": a.key, "priority": a.priority, "message": a.message, "at_s": a.raised_at}
            for a in alarms
        ],
        "requests": {"decided": len(decided), "accepted": accepted},
        "invariants": report.to_json(),
        "handovers": relays,
        "channels": {
            name: {
                "volume_ml": r.summary.volume_ml,
                "wasted_ml": sum(e.volume_ml for e in truths[name] if isinstance(e, TruthWaste)),
                "violations": [v.to_json() for v in r.violations if v.rule in CHANNEL_RULES],
            }
            for name, r in checked.channels.items()
        },
        "files": {
            "safety_journal": str(safety_journal),
            "controller_journal": str(out_dir / "controller-journal.sqlite"),
            "truth_logs": {name: str(path) for name, path in truth_logs.items()},
            "plot": plot_path,
        },
        "timeline": [{"at_s": t, "text": text} for t, text in timeline],
        "report": lines,
    }


def demo_plot_data(journals: Journals, truths: Mapping[str, Sequence[TruthEvent]]) -> PlotData:
    """What ``demo.png`` draws: what ``pumpctl journal plot`` draws for the run's journals
    (each channel, the patient's total, the prime, the handover, the alarms), with each
    pump's ground truth as the delivered flow. The checks above judge the summed flow;
    the plot keeps the channels apart, so that the handover shows as A coming down while
    B comes up."""
    return plot_data(
        journals.events,
        alarms=journals.alarms(cleared=True),
        truth=truths,
        title="pumpctl demo",
        end=journals.end,
    )


def handover_figures(
    events: list[Event], delivered: list[TruthEvent], programs: ProgramsInForce
) -> list[dict[str, Any]]:
    """Each handover the journal records, judged on the summed delivered flow against
    the total the safety process had set (both in mL/h of one concentration, as a relay
    requires), from a window before it began until ``HANDOVER_AFTER_S`` after it ended."""
    wanted = set_flow(events)
    out: list[dict[str, Any]] = []
    for h in handovers(events):
        end = h.end if h.end is not None else h.start
        figures = window_figures(delivered, wanted, h.start - WINDOW_S, end + HANDOVER_AFTER_S)
        program = programs.at(h.start)
        dose = float(program.dose(Decimal(repr(h.rate_ml_h)))) if program is not None else 0.0
        out.append(
            {
                "from": h.from_channel,
                "to": h.to_channel,
                "strategy": h.strategy,
                "outcome": h.outcome or "under way",
                "start_s": h.start,
                "end_s": end,
                "rate_ml_h": h.rate_ml_h,
                "dose": dose,
                "worst_deviation": figures.worst,
                "worst_window_end_s": figures.worst_at,
                "longest_low_s": figures.longest_low_s,
                "ok": h.outcome == "done" and abs(figures.worst) <= HANDOVER_BAND,
            }
        )
    return out


def _n(value: float) -> str:
    return f"{value:.4g}"
