"""Judging a scenario's expectations on what the run left behind.

Every verdict is taken from a record someone else can open: alarms from the safety
journal (rebuilt by replay, as the safety process rebuilds them) and the controller
journal (its own alarms); states from the same replay and the controller's journaled
state changes; delivery limits and the wean, titration and cap rules from the pump's
ground truth (``verification.ground_truth``); refusals from the outcome of each action.

On a bench of several pumps the rules and the limits are judged on the patient's total
of the drug, the channels' summed ground truth (``verification.channel_truth``), as the
safety process applies them; a limit expectation with ``channel`` reads that pump alone,
and a state expectation with ``channel`` that channel's figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from controller.journal_timeline import (
    AlarmMark,
    JournalFiles,
    Journals,
    format_time,
    load_journals,
    machine_states,
    state_at,
)
from safety.kernel.state import ChannelState, KernelState
from safety.library import DrugLibrary
from safety.rules import num
from verification.channel_truth import ChannelsError, ChannelsReport, check_drugs
from verification.ground_truth import (
    RULES,
    TITRATION_RULES,
    WEAN_RULES,
    SafetyRecord,
    TruthReport,
    TruthSummary,
    check_ground_truth,
)
from verification.handover import WINDOW_S, handovers, set_flow, summed_flow, window_figures
from verification.scenario.loader import LoadedScenario
from verification.scenario.model import (
    AlarmExpect,
    Expectation,
    FinalExpect,
    HandoverExpect,
    LimitExpect,
    OutcomeExpect,
    RuleExpect,
    StateExpect,
)
from verification.scenario.runner import RunResult

#: a dose or rate in a state expectation matches within this relative distance (the
#: pump's rounding: 8 mcg/min may run as 7.9987)
STATE_TOLERANCE = Decimal("0.01")

_RULE_GROUPS: dict[str, frozenset[str]] = {
    "wean_rule": WEAN_RULES,
    "titration_rule": TITRATION_RULES,
    "cap": frozenset({"cumulative_cap"}),
    "hard_max": frozenset({"hard_max"}),
    "invariants": frozenset(RULES),
}


@dataclass(frozen=True)
class ExpectationResult:
    index: int
    name: str
    type: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index + 1,
            "name": self.name,
            "type": self.type,
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass
class Evaluation:
    results: list[ExpectationResult]
    #: the pump's report; on a bench of several, the patient's total of the drug
    truth: TruthReport
    journals: Journals
    #: on a bench of several pumps, each channel's own report (by name)
    channel_truths: dict[str, TruthReport] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.passed]


def default_name(expect: Expectation) -> str:
    """A name for people when the file gives none."""
    if isinstance(expect, AlarmExpect):
        what = expect.key_text or expect.reason or f"{expect.priority} priority"
        text = f"{'no ' if expect.type == 'no_alarm' else ''}alarm {what}"
        if expect.priority and (expect.key is not None or expect.reason):
            text += f" ({expect.priority})"
        if expect.after is not None:
            text += (
                f" within {expect.within_s:g} s after {expect.after}"
                if expect.within_s is not None
                else f" after {expect.after}"
            )
        return text
    if isinstance(expect, OutcomeExpect):
        if expect.type == "accepted":
            return f"{expect.action} accepted"
        return f"{expect.action} refused" + (f" ({expect.code})" if expect.code else "")
    if isinstance(expect, LimitExpect):
        unit = "mL/h" if expect.type == "max_rate" else "(dose unit)"
        return f"{expect.type.replace('_', ' ')} <= {expect.value} {unit}"
    if isinstance(expect, HandoverExpect):
        times = "at least one handover" if expect.count is None else f"{expect.count} handover(s)"
        below = (
            f", below 90 % for at most {expect.max_below_s:g} s"
            if expect.max_below_s is not None
            else ""
        )
        return f"{times}, delivered within {expect.max_deviation_pct:g} % of the set total{below}"
    if isinstance(expect, RuleExpect):
        return {
            "wean_rule": "wean never faster than the rule",
            "titration_rule": "rises within the start and titration limits",
            "cap": "cumulative cap never exceeded",
            "hard_max": "never above the hard maximum",
            "invariants": "every safety invariant holds on the pump's ground truth",
        }[expect.type]
    where = f"at {format_time(expect.at)}" if isinstance(expect, StateExpect) else "at the end"
    fields = [
        f"{f}={getattr(expect, f)}"
        for f in ("state", "mode", "running", "dose", "rate_ml_h", "alarm")
        if getattr(expect, f) is not None
    ]
    return f"{where}: {', '.join(fields)}"


def evaluate(loaded: LoadedScenario, run: RunResult, library: DrugLibrary) -> Evaluation:
    s = loaded.scenario
    times = [run.t0 + e.at for e in s.expect if isinstance(e, StateExpect)] + [run.end]
    journals = load_journals(
        JournalFiles(run.safety_journal, run.controller_journal),
        library,
        at=times,
        safety_until_id=run.safety_last_id,
        controller_until_id=run.controller_last_id,
    )
    channel_truths: dict[str, TruthReport] = {}
    problem = ""
    drugs: list[str] = []
    if len(run.truths) > 1:
        try:
            by_drug = check_drugs(
                run.truths,
                library,
                journals.events,
                until=run.end,
                tolerance_s=run.tolerance_s,
            )
        except ChannelsError as exc:
            problem = f"the channels' delivery could not be judged drug by drug: {exc}"
            truth = TruthReport((), TruthSummary(notes=[problem]), ())
        else:
            drugs = list(by_drug)
            for checked in by_drug.values():
                channel_truths.update(checked.channels)
            truth = by_drug[drugs[0]].total if len(drugs) == 1 else _drugs_report(by_drug)
    else:
        record = SafetyRecord.from_events(journals.events)
        truth = check_ground_truth(
            run.truth,
            library,
            record,
            prior=run.prior_truth,
            until=run.end,
            tolerance_s=run.tolerance_s,
        )
    judge = _Judge(run, journals, truth, channel_truths, problem, drugs)
    results = []
    for i, expect in enumerate(s.expect):
        passed, detail = judge.check(expect)
        results.append(
            ExpectationResult(i, expect.name or default_name(expect), expect.type, passed, detail)
        )
    return Evaluation(results, truth, journals, channel_truths)


def _drugs_report(by_drug: dict[str, ChannelsReport]) -> TruthReport:
    """A bench of several drugs as one report for the rule expectations: every drug's
    violations (each named by its drug) and changes; no figures (a highest dose or rate
    over two drugs means nothing: a limit expectation names its channel)."""
    violations = sorted(
        (
            replace(v, message=f"{drug}: {v.message}")
            for drug, checked in by_drug.items()
            for v in checked.total.violations
        ),
        key=lambda v: v.time,
    )
    changes = sorted(
        (c for checked in by_drug.values() for c in checked.total.changes), key=lambda c: c.time
    )
    note = f"a bench of {len(by_drug)} drugs ({', '.join(by_drug)}): each judged on its own total"
    return TruthReport(tuple(violations), TruthSummary(notes=[note]), tuple(changes))


class _Judge:
    def __init__(
        self,
        run: RunResult,
        journals: Journals,
        truth: TruthReport,
        channel_truths: dict[str, TruthReport] | None = None,
        problem: str = "",
        drugs: list[str] | None = None,
    ) -> None:
        """``truth``: the pump's report, or on a bench of several the drug total's (of
        each drug: ``drugs``, when more than one); ``channel_truths``: each channel's own;
        ``problem``: why the total could not be judged (every ground-truth expectation
        then fails with it)."""
        self.run = run
        self.journals = journals
        self.truth = truth
        self.channel_truths = channel_truths or {}
        self.problem = problem
        self.drugs = drugs or []
        self.alarms = [a for a in journals.alarms() if a.time >= run.t0 - 1e-9]
        self.named = run.named()
        self.machine = machine_states(journals.controller)

    def rel(self, t: float) -> str:
        return format_time(t - self.run.t0)

    def check(self, expect: Expectation) -> tuple[bool, str]:
        if isinstance(expect, AlarmExpect):
            return self._alarm(expect)
        if isinstance(expect, OutcomeExpect):
            return self._outcome(expect)
        if isinstance(expect, LimitExpect):
            return self._limit(expect)
        if isinstance(expect, RuleExpect):
            return self._rules(expect)
        if isinstance(expect, StateExpect):
            return self._state(expect, self.run.t0 + expect.at)
        if isinstance(expect, HandoverExpect):
            return self._handover(expect)
        assert isinstance(expect, FinalExpect)
        return self._state(expect, self.run.end)

    # ------------------------------------------------------------------ alarms
    def _alarm(self, e: AlarmExpect) -> tuple[bool, str]:
        if e.after is not None:
            start = self.named[e.after]
            if e.within_s is not None:
                end = start + e.within_s
                window = f"within {e.within_s:g} s after {e.after!r} ({self.rel(start)})"
            else:
                end = self.run.end
                window = f"after {e.after!r} ({self.rel(start)})"
        else:
            start, end = self.run.t0, self.run.end
            window = "during the run"

        keys = e.keys

        def matches(a: AlarmMark) -> bool:
            return (
                (keys is None or a.key in keys)
                and (e.reason is None or a.reason == e.reason)
                and (e.priority is None or a.priority == e.priority)
            )

        found = [a for a in self.alarms if matches(a) and start - 1e-9 <= a.time <= end + 1e-9]
        what = " ".join(
            x for x in (e.key_text, f"reason {e.reason}" if e.reason else None, e.priority) if x
        )
        if e.type == "alarm":
            if found:
                a = found[0]
                delay = f", {a.time - start:.0f} s after {e.after!r}" if e.after else ""
                return (
                    True,
                    f"{a.key} ({a.priority}, {a.reason}) raised at {self.rel(a.time)}{delay}",
                )
            return False, f"no alarm {what} {window}; raised in that span: {self._seen(start, end)}"
        if found:
            a = found[0]
            return False, f"{a.key} ({a.priority}) was raised at {self.rel(a.time)}: {a.message}"
        return True, f"no alarm {what} {window}"

    def _seen(self, start: float, end: float) -> str:
        seen = [
            f"{a.key} ({a.priority}) at {self.rel(a.time)}"
            for a in self.alarms
            if start - 1e-9 <= a.time <= end + 1e-9
        ]
        return ", ".join(seen) if seen else "none"

    # ------------------------------------------------------------------ outcomes
    def _outcome(self, e: OutcomeExpect) -> tuple[bool, str]:
        record = next((a for a in self.run.actions if a.name == e.action), None)
        if record is None:
            return (
                False,
                f"action {e.action!r} never ran (it was after the end, or the run stopped)",
            )
        said = f"{record.code}: {record.message}"
        if e.type == "accepted":
            if record.accepted:
                return True, record.message
            return False, f"REFUSED {said}"
        if record.accepted:
            return False, f"it was accepted: {record.message}"
        if e.code is not None and record.code != e.code:
            return False, f"refused, but with {record.code!r}, not {e.code!r}: {record.message}"
        return True, f"refused {said}"

    # ------------------------------------------------------------------ ground truth
    def _limit(self, e: LimitExpect) -> tuple[bool, str]:
        if self.problem:
            return False, self.problem
        report = self.truth
        if e.channel is not None and self.channel_truths:
            report = self.channel_truths[e.channel]
        elif len(self.drugs) > 1:
            return False, (
                f"the bench gives {', '.join(self.drugs)}: a highest {e.type.split('_')[1]} "
                "over several drugs means nothing; name the channel"
            )
        summary = report.summary
        if e.type == "max_rate":
            highest = summary.max_rate_ml_h
            at = summary.max_rate_at
            ok = Fraction(repr(highest)) <= Fraction(e.value)
            where = f" at {self.rel(at)}" if at is not None else ""
            return ok, f"highest delivered rate {highest:g} mL/h{where} (limit {e.value} mL/h)"
        if summary.max_dose is None:
            return False, "no dose known: no program was loaded during the run"
        ok = Fraction(repr(summary.max_dose)) <= Fraction(e.value) * (1 + Fraction(1, 10**9))
        at = summary.max_dose_at
        where = f" at {self.rel(at)}" if at is not None else ""
        return ok, (
            f"highest delivered dose {num(Fraction(repr(summary.max_dose)), 5)} "
            f"{summary.dose_unit}{where} (limit {e.value} {summary.dose_unit})"
        )

    def _rules(self, e: RuleExpect) -> tuple[bool, str]:
        if self.problem:
            return False, self.problem
        broken = self.truth.by_rule(_RULE_GROUPS[e.type])
        if broken:
            shown = "; ".join(f"{v.rule} at {self.rel(v.time)}: {v.message}" for v in broken[:3])
            more = f" (+{len(broken) - 3} more)" if len(broken) > 3 else ""
            return False, shown + more
        summary = self.truth.summary
        if e.type == "cap" and summary.cap is not None and summary.cap_peak is not None:
            unit = summary.cap.split(" per ")[0].split(" ")[-1]
            return True, (
                f"at most {summary.cap_peak:.6g} {unit} in any window of the cap ({summary.cap})"
            )
        changes = [c for c in self.truth.changes if c.cause == "command"]
        where = (
            f"the drug total of channels {', '.join(self.channel_truths)}"
            if self.channel_truths
            else "the pump's ground truth"
        )
        return True, f"held on {where} ({len(changes)} commanded change(s) checked)"

    # ------------------------------------------------------------------ handovers
    def _handover(self, e: HandoverExpect) -> tuple[bool, str]:
        events = self.journals.events
        done = [h for h in handovers(events) if h.start >= self.run.t0 - 1e-9]
        if e.count is not None and len(done) != e.count:
            return False, f"{len(done)} handover(s), not {e.count}"
        if not done:
            return (
                (True, "no handover, as expected")
                if e.count == 0
                else (
                    False,
                    "no handover happened",
                )
            )
        delivered = summed_flow(self.run.truths)
        wanted = set_flow(events)
        problems, seen = [], []
        for h in done:
            what = f"{h.from_channel} -> {h.to_channel} ({h.strategy}) at {self.rel(h.start)}"
            if h.outcome != "done":
                problems.append(f"{what}: {h.outcome or 'not ended'}")
                continue
            end = min(self.run.end, (h.end if h.end is not None else self.run.end) + WINDOW_S)
            figures = window_figures(delivered, wanted, max(self.run.t0, h.start - WINDOW_S), end)
            pct = figures.worst * 100.0
            low = figures.longest_low_s
            text = f"{what}: worst 1-min window {pct:+.1f} %, below 90 % for {low:.0f} s"
            seen.append(text)
            if abs(pct) > e.max_deviation_pct:
                problems.append(f"{text} (limit {e.max_deviation_pct:g} %)")
            elif e.max_below_s is not None and figures.longest_low_s > e.max_below_s:
                problems.append(f"{text} (limit {e.max_below_s:g} s below 90 %)")
        if problems:
            return False, "; ".join(problems)
        return True, "; ".join(seen)

    # ------------------------------------------------------------------ states
    def _state(self, e: StateExpect | FinalExpect, t: float) -> tuple[bool, str]:
        replay = self.journals.replay
        state: KernelState | None = replay.states.get(t) if replay is not None else None
        problems: list[str] = []
        seen: list[str] = []
        if e.state is not None:
            machine = state_at(self.machine, t)
            seen.append(f"controller {machine}")
            if machine != e.state:
                problems.append(f"controller state {machine}, not {e.state}")
        if state is None:
            if any(getattr(e, f) is not None for f in ("mode", "running", "dose", "rate_ml_h")):
                problems.append("the safety journal could not be replayed")
        else:
            channel = _channel_state(state, e.channel)
            running = channel.running
            rate = channel.set_rate if running else Decimal(0)
            dose = channel.current_dose()
            unit = channel.program.unit if channel.program is not None else ""
            named = f"channel {e.channel} " if e.channel is not None else ""
            seen.append(
                f"safety {state.mode.value}, {named}"
                + (f"running {num(rate)} mL/h = {num(dose, 5)} {unit}" if running else "stopped")
            )
            if e.mode is not None and state.mode.value != e.mode:
                problems.append(f"safety mode {state.mode.value}, not {e.mode}")
            if e.running is not None and running != e.running:
                problems.append("running" if running else "not running")
            if e.dose is not None and not _close(Fraction(dose), e.dose):
                problems.append(f"dose {num(dose, 5)} {unit}, not {e.dose}")
            if e.rate_ml_h is not None and not _close(Fraction(rate), e.rate_ml_h):
                problems.append(f"rate {num(rate)} mL/h, not {e.rate_ml_h}")
            if e.alarm is not None and not e.alarm.startswith("controller:"):
                keys = [a.key for a in state.alarms.alarms]
                if e.alarm not in keys:
                    problems.append(
                        f"alarm {e.alarm} not present (present: {', '.join(keys) or 'none'})"
                    )
        if e.alarm is not None and e.alarm.startswith("controller:"):
            raised = [a for a in self.alarms if a.key == e.alarm and a.time <= t + 1e-9]
            if not raised:
                problems.append(f"the controller had not raised {e.alarm}")
        where = f"at {self.rel(t)}"
        if problems:
            return False, f"{where}: {'; '.join(problems)} ({'; '.join(seen)})"
        return True, f"{where}: {'; '.join(seen)}"


def _channel_state(state: KernelState, name: str | None) -> ChannelState:
    """The named channel (None: the bench's first, a one-pump bench's only one)."""
    if name is not None and name in state.channels:
        return state.channels[name]
    return next(iter(state.channels.values()))  # the loader checked names: the first


def _close(value: Fraction, expected: Decimal) -> bool:
    target = Fraction(expected)
    if target == 0:
        return value == 0
    return abs(value - target) <= abs(target) * Fraction(STATE_TOLERANCE)


__all__ = ["Evaluation", "ExpectationResult", "default_name", "evaluate"]
