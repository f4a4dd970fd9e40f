"""The demo's closing report: figures and invariant checks on the pump's ground truth.

Judged on what the emulated pump really delivered (its truth log), with causes from the
safety journal, never on what the controller believes: the same check the scenario
runner and the hardware-in-the-loop suite use (``verification.ground_truth``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.journal_plot import PlotUnavailable, plot, plot_data
from controller.journal_timeline import JournalFiles, load_journals
from firmware_bridge.emulators.truth_log import read_truth_log
from safety.journal_read import read_safety_events
from safety.kernel.model import RequestDecided
from safety.library import load_library
from safety.status import AlarmView
from verification.ground_truth import SafetyRecord, check_ground_truth

#: journal entry and pump action may be this far apart on a real wire (real seconds);
#: multiplied by the clock speed-up to clinical seconds
WIRE_SLACK_S = 0.5


def summarise(
    out_dir: Path, speed: float, alarms: list[AlarmView], timeline: list[tuple[float, str]]
) -> dict[str, Any]:
    library = load_library()
    truth = read_truth_log(out_dir / "pump-truth.jsonl")
    safety_journal = out_dir / "safety-journal.sqlite"
    events = read_safety_events(safety_journal)
    record = SafetyRecord.from_events(events)
    report = check_ground_truth(truth, library, record, tolerance_s=WIRE_SLACK_S * speed)
    s = report.summary
    decided = [e for e in events if isinstance(e, RequestDecided)]
    accepted = sum(1 for e in decided if e.accepted)
    commanded = [c for c in report.changes if c.cause == "command"]
    unexplained = [c for c in report.changes if c.cause not in ("command", "safety", "estop")]

    plot_path: str | None = None
    plot_note = ""
    try:
        journals = load_journals(
            JournalFiles(safety_journal, out_dir / "controller-journal.sqlite"), library
        )
        data = plot_data(
            journals.events,
            library,
            alarms=journals.alarms(),
            truth=truth,
            title="pumpctl demo",
        )
        plot_path = str(plot(data, out_dir / "demo.png"))
    except PlotUnavailable as exc:
        plot_note = str(exc)

    unit = s.dose_unit or ""
    lines = [
        "summary (checked on the emulated pump's own ground truth)",
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
    if report.ok:
        lines.append(
            "  invariants     OK: hard max, 24 h cap, titration steps and gradual wean all "
            "held on the delivered flow"
        )
    else:
        lines.append(f"  invariants     {len(report.violations)} VIOLATION(S):")
        lines += [
            f"    - {v.rule} at {v.time / 60:.1f} min: {v.message}" for v in report.violations
        ]
    lines.append(
        f"  journal        every one of the {len(commanded)} commanded rate changes follows a "
        "journaled, accepted request; "
        + (
            "the other changes are the pump's own (occlusion)"
            if unexplained
            else "no other changes"
        )
    )
    lines.append(f"  files          {out_dir}")
    lines.append(f"  plot           {plot_path or plot_note}")
    return {
        "ok": report.ok,
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
        "files": {
            "safety_journal": str(safety_journal),
            "controller_journal": str(out_dir / "controller-journal.sqlite"),
            "truth_log": str(out_dir / "pump-truth.jsonl"),
            "plot": plot_path,
        },
        "timeline": [{"at_s": t, "text": text} for t, text in timeline],
        "report": lines,
    }


def _n(value: float) -> str:
    return f"{value:.4g}"
