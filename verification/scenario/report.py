"""A scenario's verdict for people (text) and for scripts (one JSON object)."""

from __future__ import annotations

from typing import Any

from controller.journal_timeline import format_time
from safety.journal_text import ProgramTracker, describe
from safety.kernel.model import (
    ContainerLoaded,
    ContainerPaused,
    ContainerResumed,
    HandoverEnded,
    HandoverStarted,
    HandoverStepped,
    StandbyArmed,
    StandbyDisarmed,
)
from verification.scenario.expect import Evaluation
from verification.scenario.loader import LoadedScenario
from verification.scenario.runner import RunResult

_RELAY = (
    StandbyArmed,
    StandbyDisarmed,
    HandoverStarted,
    HandoverStepped,
    HandoverEnded,
    ContainerLoaded,
    ContainerPaused,
    ContainerResumed,
)


def _truth_line(evaluation: Evaluation) -> list[str]:
    s = evaluation.truth.summary
    lines = [f"  note: {note}" for note in s.notes if "could not be judged" in note]
    dose = (
        f"max {s.max_dose:.4g} {s.dose_unit} ({s.max_rate_ml_h:g} mL/h)"
        if s.max_dose is not None
        else f"max {s.max_rate_ml_h:g} mL/h"
    )
    amount = f", {s.drug_amount:.4g} {s.amount_unit} of drug" if s.drug_amount is not None else ""
    bolus = f", {s.bolus_count} bolus(es) {s.bolus_ml:.3f} mL" if s.bolus_count else ""
    lines.append(f"  delivered: {dose}, {s.volume_ml:.2f} mL{amount}{bolus}")
    extra = []
    if s.above_soft_max_s:
        extra.append(f"{s.above_soft_max_s / 60:.1f} min above the soft max")
    if s.cap is not None and s.cap_peak is not None:
        unit = (s.cap or "").split(" per ")[0].split(" ")[-1]
        extra.append(f"at most {s.cap_peak:.6g} {unit} in any cap window ({s.cap})")
    causes = ", ".join(f"{k} {v}" for k, v in sorted(s.changes_by_cause.items()))
    if causes:
        extra.append(f"changes by cause: {causes}")
    if extra:
        lines.append("  " + "; ".join(extra))
    violations = evaluation.truth.violations
    if violations:
        for v in violations:
            lines.append(f"  VIOLATION {v.rule} at {format_time(v.time)}: {v.message}")
    else:
        where = "the drug total" if evaluation.channel_truths else "the pump's ground truth"
        lines.append(f"  invariants on {where}: all hold")
    for name, report in evaluation.channel_truths.items():
        c = report.summary
        lines.append(
            f"  channel {name}: delivered max {c.max_rate_ml_h:g} mL/h, {c.volume_ml:.2f} mL"
        )
    return lines


def _relay_events(
    loaded: LoadedScenario, run: RunResult, evaluation: Evaluation
) -> list[tuple[float, str]]:
    """What the safety process did on its own (relay handovers, container changes), in
    words, by time since the start: the runner cannot narrate them (the controller may be
    dead), the journal has them. Only on a bench of several pumps."""
    if len(loaded.scenario.channels) < 2:
        return []
    text = ProgramTracker()
    out = []
    for event in evaluation.journals.events:
        shown = describe(event, text)
        if isinstance(event, _RELAY) and event.now.clinical >= run.t0 - 1e-9:
            out.append((event.now.clinical - run.t0, shown))
    return out


def _relay_lines(loaded: LoadedScenario, run: RunResult, evaluation: Evaluation) -> list[str]:
    lines = [f"  [{format_time(t)}] {what}" for t, what in _relay_events(loaded, run, evaluation)]
    return ["relay (from the safety journal):", *lines] if lines else []


def text_report(loaded: LoadedScenario, run: RunResult, evaluation: Evaluation) -> str:
    lines = ["", *_relay_lines(loaded, run, evaluation)]
    if evaluation.channel_truths:
        names = ", ".join(evaluation.channel_truths)
        lines.append(f"ground truth (what the pumps delivered: the patient's total over {names}):")
    else:
        lines.append("ground truth (what the pump delivered):")
    lines += _truth_line(evaluation)
    lines.append("expectations:")
    for r in evaluation.results:
        mark = "PASS" if r.passed else "FAIL"
        lines.append(f"  {mark}  {r.name}: {r.detail}")
    total = len(evaluation.results)
    failed = evaluation.failed
    if failed:
        names = ", ".join(repr(r.name) for r in failed)
        lines.append(f"result: FAILED, {len(failed)} of {total} expectation(s): {names}")
    else:
        lines.append(f"result: PASSED, {total} of {total} expectation(s)")
    return "\n".join(lines)


def json_report(
    loaded: LoadedScenario,
    run: RunResult,
    evaluation: Evaluation,
    *,
    kept: bool,
    plot: str | None = None,
) -> dict[str, Any]:
    s = loaded.scenario
    return {
        "scenario": s.scenario.name,
        "file": str(loaded.path),
        "mode": run.mode,
        "pump": run.pump,
        "passed": evaluation.passed,
        "expectations": [r.to_json() for r in evaluation.results],
        "failed": [r.name for r in evaluation.failed],
        "actions": [a.to_json() for a in run.actions],
        "faults": [f.to_json() for f in run.faults],
        "timeline": [{"t_s": t, "time": format_time(t), "what": w} for t, w in run.timeline],
        "ground_truth": {
            "ok": evaluation.truth.ok,
            "violations": [v.to_json() for v in evaluation.truth.violations],
            "summary": evaluation.truth.summary.to_json(),
            # a bench of several pumps: the above is the drug total; each pump's own here
            "channels": {
                name: report.summary.to_json() for name, report in evaluation.channel_truths.items()
            },
        },
        "relay": [
            {"t_s": t, "time": format_time(t), "what": what}
            for t, what in _relay_events(loaded, run, evaluation)
        ],
        "journals": {
            "safety": str(run.safety_journal) if kept else None,
            "controller": str(run.controller_journal) if kept else None,
        },
        "plot": plot,
    }


__all__ = ["json_report", "text_report"]
