"""The safety invariants, checked on what the pump really delivered (its ground truth).

Why a second check: the safety process judges every request and every read-back with its
own picture of the pump. A check that read that same picture would share its blind
spots (a lost acknowledgement, a pump that ran on after a lost stop, a bolus released by
a cleared occlusion). So this module looks at the simulated pump's own record of the flow
that reached the patient (``firmware_bridge.pump_model.GroundTruth``: ``SimulatedPump.truth``
in one process, or an emulator's ``--truth-log`` file) and asks, for the program in force
(library therapy, concentration, weight):

- ``hard_max``: the dose never went above the therapy's hard maximum (S1);
- ``cumulative_cap``: the drug given in any rolling cap window (boluses included) never
  went above the cap (S3);
- ``start_above_max_start``, ``step_rise``, ``window_rise``: every rise an operator's
  command caused stayed within the start and titration limits (S4);
- ``wean_too_fast``, ``stop_above_threshold``: every commanded fall of a gradual-wean
  drug stayed above the wean floor, and every commanded stop came from at or below the
  stop threshold (S5);
- ``protective_raise``, ``retry_above_set_rate``: the safety process's own actions
  (safety stop, emergency stop, read-back retry) never raised the flow above what an
  operator had set.

Which change had which cause comes from the safety journal: the ``command_issued`` event
journaled just before the change (with its ``cause``: ``command``, ``safety``, ``estop``,
``retry``, ``reconcile``); a change with no command is the pump's own doing (occlusion,
empty syringe, stall, power cycle) and is exempt from the titration and wean rules, as
are emergency stops and safety stops. The hard maximum and the cap apply to everything.

A restart is licensed by the rate the safety process *verified* running in the last
titration window (its read-backs, excluding rates it judged over-rate), as the kernel's
rule says (S4); the figure checked is still the delivered one.

Times are clinical seconds. ``tolerance_s`` absorbs the delay between the journal entry
and the pump acting on a real wire (0 on a virtual clock, where they coincide).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, TypeVar

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from safety.journal_read import ProgramsInForce, read_safety_events
from safety.kernel.model import (
    CommandIssued,
    Event,
    ProgramLoaded,
    ProgramSpec,
    ReadbackReceived,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
)
from safety.kernel.state import ActiveProgram
from safety.library import DrugLibrary
from safety.rules import num

#: relative slack for comparisons of figures computed along different paths (float truth)
REL_EPS = 1e-9
#: the kernel's read-back tolerance: a verified rate within this of the set one is "the set one"
READBACK_TOLERANCE = Decimal("0.0005")

#: causes of rate changes an operator's order made (checked against S4 and S5)
COMMANDED = frozenset({"command"})
#: causes of the safety process's own protective actions (may only lower the flow)
PROTECTIVE = frozenset({"safety", "estop"})
#: re-sends of a rate an operator already set (may never exceed it)
RESENDS = frozenset({"retry", "reconcile"})

RULES = (
    "hard_max",
    "cumulative_cap",
    "start_above_max_start",
    "step_rise",
    "window_rise",
    "wean_too_fast",
    "stop_above_threshold",
    "protective_raise",
    "retry_above_set_rate",
)
#: rule groups the scenario runner's expectations refer to
TITRATION_RULES = frozenset({"start_above_max_start", "step_rise", "window_rise"})
WEAN_RULES = frozenset({"wean_too_fast", "stop_above_threshold"})


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Command:
    """A pump command the safety process journaled, just before sending it."""

    time: float
    action: str  # "set_rate", "start_pump", "stop_pump", "set_interlock"
    cause: str
    rate_ml_h: Decimal | None = None
    enabled: bool | None = None  # set_interlock only


@dataclass(frozen=True)
class Verified:
    """From ``start`` the safety process read the pump back as running ``rate_ml_h``
    (0 when stopped); ``licensed``: a rate it had set, not one it judged over-rate."""

    start: float
    rate_ml_h: Decimal
    licensed: bool


@dataclass(frozen=True)
class SafetyRecord:
    """What the checks need from the safety journal: programs, commands, read-backs."""

    #: (when, the drug program loaded then; None for a test fluid, which has no drug)
    programs: tuple[tuple[float, ActiveProgram | None], ...] = ()
    commands: tuple[Command, ...] = ()
    verified: tuple[Verified, ...] = ()

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> SafetyRecord:
        programs: list[tuple[float, ActiveProgram | None]] = []
        commands: list[Command] = []
        verified: list[Verified] = []
        expected_rate = Decimal(0)
        expected_running = False
        for event in events:
            t = event.now.clinical
            if isinstance(event, ProgramLoaded):
                programs.append((t, ProgramsInForce.from_events([event]).programs[0]))
            elif isinstance(event, CommandIssued):
                action = event.action
                if isinstance(action, SetRate):
                    commands.append(Command(t, "set_rate", event.cause, action.rate_ml_h))
                    expected_rate = action.rate_ml_h
                elif isinstance(action, StartPump):
                    commands.append(Command(t, "start_pump", event.cause))
                    expected_running = True
                elif isinstance(action, StopPump):
                    commands.append(Command(t, "stop_pump", event.cause))
                    expected_running = False
                elif isinstance(action, SetInterlock):
                    commands.append(
                        Command(t, "set_interlock", event.cause, enabled=action.pump_enabled)
                    )
            elif isinstance(event, ReadbackReceived):
                reading = event.reading
                rate = reading.set_rate_ml_h if reading.running else Decimal(0)
                licensed = (
                    reading.running
                    and expected_running
                    and rate <= expected_rate * (1 + READBACK_TOLERANCE)
                )
                if not reading.running:
                    expected_running = False  # the pump stopped (by itself or as told)
                last = verified[-1] if verified else None
                if last is None or (last.rate_ml_h, last.licensed) != (rate, licensed):
                    verified.append(Verified(t, rate, licensed))
        return cls(tuple(programs), tuple(commands), tuple(verified))

    @classmethod
    def from_journal(cls, path: str | Path) -> SafetyRecord:
        """Read a safety journal (read-only: safe on a live one)."""
        return cls.from_events(read_safety_events(path))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which rule, when (clinical s), and what happened."""

    rule: str
    time: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "time_s": self.time, "message": self.message}


@dataclass(frozen=True)
class Change:
    """A change of the delivered flow and what caused it."""

    time: float
    from_ml_h: float
    to_ml_h: float
    from_dose: Fraction | None
    to_dose: Fraction | None
    unit: str | None
    cause: str  # a journaled command's cause, "pump" (no command), or "prior"
    kind: str  # "start", "rise", "fall", "stop"

    def to_json(self) -> dict[str, Any]:
        return {
            "time_s": self.time,
            "from_ml_h": self.from_ml_h,
            "to_ml_h": self.to_ml_h,
            "from_dose": None if self.from_dose is None else float(self.from_dose),
            "to_dose": None if self.to_dose is None else float(self.to_dose),
            "unit": self.unit,
            "cause": self.cause,
            "kind": self.kind,
        }


@dataclass
class TruthSummary:
    """Figures for people (and the scenario runner's expectations)."""

    start: float = 0.0
    end: float = 0.0
    program: str | None = None
    dose_unit: str | None = None
    max_rate_ml_h: float = 0.0
    max_rate_at: float | None = None
    max_dose: float | None = None
    max_dose_at: float | None = None
    volume_ml: float = 0.0
    bolus_count: int = 0
    bolus_ml: float = 0.0
    drug_amount: float | None = None  # in ``amount_unit``
    amount_unit: str | None = None
    running_s: float = 0.0
    above_soft_max_s: float = 0.0
    below_soft_min_s: float = 0.0  # running, but below the soft minimum
    cap: str | None = None  # e.g. "68 mg per 24 h"
    cap_peak: float | None = None  # highest amount in any cap window, in the cap's unit
    cap_peak_at: float | None = None  # end of that window
    changes_by_cause: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class TruthReport:
    violations: tuple[Violation, ...]
    summary: TruthSummary
    changes: tuple[Change, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self, rules: Iterable[str]) -> tuple[Violation, ...]:
        wanted = frozenset(rules)
        return tuple(v for v in self.violations if v.rule in wanted)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": [v.to_json() for v in self.violations],
            "summary": self.summary.to_json(),
            "changes": [c.to_json() for c in self.changes],
        }


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class _Seg:
    start: float
    end: float
    rate_ml_h: float
    cause: str


def _dose(program: ActiveProgram | None, rate_ml_h: float) -> Fraction | None:
    if program is None:
        return None
    return program.dose(Decimal(repr(rate_ml_h)))


def _timeline(
    truth: Sequence[TruthEvent], prior: Sequence[TruthSegment], until: float
) -> list[_Seg]:
    raw: list[tuple[float, float, str]] = [(p.start, p.rate_ml_h, "prior") for p in prior]
    live = [e for e in truth if isinstance(e, TruthSegment)]
    handover = live[0].start if live else math.inf
    raw = [r for r in raw if r[0] < handover]
    raw += [(e.start, e.rate_ml_h, "live") for e in live]
    raw.sort(key=lambda r: r[0])  # stable: records of one instant keep their order
    # a record that lasted 0 s is kept: the change into it and out of it are both judged
    # (a start at 8 and a rise at the same instant must not look like a start at 10)
    merged = raw
    segs: list[_Seg] = []
    for i, (start, rate, origin) in enumerate(merged):
        end = merged[i + 1][0] if i + 1 < len(merged) else max(until, start)
        segs.append(_Seg(start, end, rate, origin))
    return segs


def _in_force(segs: Sequence[_Seg], since: float, until: float) -> list[_Seg]:
    return [s for s in segs if s.start <= until and s.end > since]


def check_ground_truth(
    truth: Sequence[TruthEvent],
    library: DrugLibrary,
    record: SafetyRecord | None = None,
    *,
    program: ProgramSpec | None = None,
    prior: Sequence[TruthSegment] = (),
    until: float | None = None,
    tolerance_s: float = 0.0,
) -> TruthReport:
    """Check the invariants on ``truth`` (events of one pump, in order).

    ``record``: the safety journal's programs, commands and read-backs (needed to tell an
    operator's change from the pump's own); without it every change counts as the
    pump's and only the hard maximum and the cap are checked. ``program``: the program
    to judge by (default: each one the journal loaded, from when it was loaded).
    ``prior``: delivery before this pump's record began (e.g. a seeded history), counted
    in the cap and in the windows but never judged itself. ``until``: end of the record
    (default: its last event).
    """
    record = record or SafetyRecord()
    programs = (
        ProgramsInForce.of_spec(library, program)
        if program is not None
        else ProgramsInForce(record.programs)
    )
    notes: list[str] = list(programs.problems)
    last_t = max([e.start if isinstance(e, TruthSegment) else e.time for e in truth] or [0.0])
    end = last_t if until is None else max(until, last_t)
    segs = _timeline(truth, prior, end)
    boluses = [e for e in truth if isinstance(e, TruthBolus)]
    violations: list[Violation] = []
    changes: list[Change] = []
    commands = sorted(record.commands, key=lambda c: c.time)
    command_times = [c.time for c in commands]

    def cause_of(before: _Seg, after: _Seg) -> tuple[str, Command | None]:
        if after.cause == "prior":
            return "prior", None
        t = after.start
        lo = bisect.bisect_left(command_times, t - tolerance_s - 1e-6)
        hi = bisect.bisect_right(command_times, t + 1e-6)
        window = commands[lo:hi]
        if after.rate_ml_h > 0 and before.rate_ml_h <= 0:
            wanted: tuple[str, ...] = ("start_pump", "set_rate")
        elif after.rate_ml_h > 0:
            wanted = ("set_rate",)
        else:
            wanted = ("stop_pump", "set_interlock")
        for kind in wanted:
            found = [c for c in window if c.action == kind and c.enabled is not True]
            if found:
                if kind == "set_rate":
                    exact = [
                        c
                        for c in found
                        if c.rate_ml_h is not None and float(c.rate_ml_h) == after.rate_ml_h
                    ]
                    found = exact or found
                return found[-1].cause, found[-1]
        return "pump", None

    # -- changes, attributed, and the rules on each
    for i in range(1, len(segs)):
        before, after = segs[i - 1], segs[i]
        if after.rate_ml_h == before.rate_ml_h:
            continue
        t = after.start
        cause, command = cause_of(before, after)
        prog = programs.at(t)
        d0, d1 = _dose(prog, before.rate_ml_h), _dose(prog, after.rate_ml_h)
        if after.rate_ml_h > before.rate_ml_h:
            kind = "start" if before.rate_ml_h <= 0 else "rise"
        else:
            kind = "stop" if after.rate_ml_h <= 0 else "fall"
        unit = prog.unit if prog is not None else None
        changes.append(Change(t, before.rate_ml_h, after.rate_ml_h, d0, d1, unit, cause, kind))
        if prog is None or d0 is None or d1 is None or cause in ("pump", "prior"):
            continue
        history = segs[:i]
        if cause in PROTECTIVE:
            if after.rate_ml_h > before.rate_ml_h:
                violations.append(
                    Violation(
                        "protective_raise",
                        t,
                        f"a {cause} action raised the flow from {before.rate_ml_h:g} to "
                        f"{after.rate_ml_h:g} mL/h",
                    )
                )
            continue
        if cause in RESENDS:
            set_rate = _last_set_rate(commands, t, tolerance_s)
            if set_rate is not None and Fraction(Decimal(repr(after.rate_ml_h))) > Fraction(
                set_rate
            ) * (1 + Fraction(READBACK_TOLERANCE)):
                violations.append(
                    Violation(
                        "retry_above_set_rate",
                        t,
                        f"a {cause} re-send ran {after.rate_ml_h:g} mL/h, above the "
                        f"{num(set_rate)} mL/h an operator set",
                    )
                )
            continue
        if cause not in COMMANDED:
            continue
        ref = command.time if command is not None else t
        if kind == "start" and command is not None and command.action == "set_rate":
            # a rise sent while the line was occluded (delivered 0, the plunger moving)
            kind = "rise"
            d0 = _dose(prog, _verified_rate(record.verified, ref))
            if d0 is None or d0 <= 0:
                kind = "start"
        violations += _rise_and_fall_rules(
            prog, kind, d0, d1, t, ref, history, record.verified, tolerance_s
        )

    # -- hard maximum, on every stretch of delivery
    for seg in segs:
        prog = programs.at(seg.start)
        dose = _dose(prog, seg.rate_ml_h)
        if prog is None or dose is None or seg.cause == "prior":
            continue
        hard = Fraction(prog.therapy.hard_max.value)
        if dose > hard * (1 + Fraction(REL_EPS)) and (seg.end > seg.start or seg.rate_ml_h > 0):
            violations.append(
                Violation(
                    "hard_max",
                    seg.start,
                    f"{seg.rate_ml_h:g} mL/h = {num(dose)} {prog.unit} delivered for "
                    f"{seg.end - seg.start:.0f} s, above the hard maximum {num(hard)} "
                    f"{prog.unit}",
                )
            )

    summary = _summary(segs, boluses, programs, changes, notes)
    cap_violation = _cap(segs, boluses, programs, end, summary)
    if cap_violation is not None:
        violations.append(cap_violation)
    violations.sort(key=lambda v: v.time)
    return TruthReport(tuple(violations), summary, tuple(changes))


def _last_set_rate(commands: Sequence[Command], t: float, tolerance_s: float) -> Decimal | None:
    rate = None
    for c in commands:
        if c.time > t + 1e-6:
            break
        if c.action == "set_rate" and c.cause == "command":
            rate = c.rate_ml_h
    return rate


def _verified_rate(verified: Sequence[Verified], t: float) -> float:
    rate = 0.0
    for v in verified:
        if v.start > t:
            break
        rate = float(v.rate_ml_h)
    return rate


def _rise_and_fall_rules(
    prog: ActiveProgram,
    kind: str,
    d0: Fraction | None,
    d1: Fraction,
    t: float,
    ref: float,
    history: Sequence[_Seg],
    verified: Sequence[Verified],
    tolerance_s: float,
) -> list[Violation]:
    therapy = prog.therapy
    unit = prog.unit
    titration, wean = therapy.titration, therapy.wean
    slack = 1 + Fraction(REL_EPS)
    out: list[Violation] = []
    if kind == "start":
        window = float(titration.window_min.value) * 60
        licensed = [
            prog.dose(v.rate_ml_h)
            for v in in_force(verified, ref - window, ref)
            if v.licensed and v.rate_ml_h > 0
        ]
        bound = max([Fraction(therapy.max_start.value), *licensed])
        if d1 > bound * slack:
            out.append(
                Violation(
                    "start_above_max_start",
                    t,
                    f"started at {num(d1)} {unit}, above the largest allowed start "
                    f"{num(bound)} {unit} (max start {num(therapy.max_start.value)}, or the "
                    "rate verified running in the last titration window)",
                )
            )
        return out
    assert d0 is not None
    if kind == "rise":
        step = min(
            Fraction(titration.max_step_rise.value),
            Fraction(titration.max_step_rise_fraction.value) * d0,
        )
        if d1 - d0 > step * slack:
            out.append(
                Violation(
                    "step_rise",
                    t,
                    f"rose {num(d0)} -> {num(d1)} {unit} (+{num(d1 - d0)}) in one step; at "
                    f"most +{num(step)} {unit}",
                )
            )
        window = float(titration.window_min.value) * 60
        running = [
            _dose_f(prog, s.rate_ml_h)
            for s in _in_force(history, t - window + tolerance_s, t)
            if s.rate_ml_h > 0
        ]
        base = min(running, default=d0)
        bound = min(
            Fraction(titration.max_window_rise.value),
            Fraction(titration.max_window_rise_fraction.value) * base,
        )
        if d1 - base > bound * slack:
            out.append(
                Violation(
                    "window_rise",
                    t,
                    f"rose to {num(d1)} {unit}, +{num(d1 - base)} over the lowest dose of the "
                    f"last {num(titration.window_min.value)} min ({num(base)} {unit}); at most "
                    f"+{num(bound)} {unit} per window",
                )
            )
        return out
    if not wean.gradual_wean_only.value:
        return out
    assert wean.max_fall_fraction is not None and wean.window_min is not None
    assert wean.stop_threshold is not None
    if kind == "stop":
        threshold = Fraction(wean.stop_threshold.value)
        if d0 > threshold * slack:
            out.append(
                Violation(
                    "stop_above_threshold",
                    t,
                    f"stopped from {num(d0)} {unit}, above the stop threshold "
                    f"{num(threshold)} {unit} (a gradual-wean drug is weaned first)",
                )
            )
        return out
    window = float(wean.window_min.value) * 60
    highest = max(
        (_dose_f(prog, s.rate_ml_h) for s in _in_force(history, t - window + tolerance_s, t)),
        default=d0,
    )
    floor = (1 - Fraction(wean.max_fall_fraction.value)) * highest
    if d1 * slack < floor:
        pct = num(Fraction(wean.max_fall_fraction.value) * 100)
        out.append(
            Violation(
                "wean_too_fast",
                t,
                f"fell to {num(d1)} {unit}: more than {pct} % below the highest dose of the "
                f"last {num(wean.window_min.value)} min ({num(highest)} {unit}); the floor "
                f"was {num(floor)} {unit}",
            )
        )
    return out


def _dose_f(prog: ActiveProgram, rate_ml_h: float) -> Fraction:
    return prog.dose(Decimal(repr(rate_ml_h)))


class _Started(Protocol):
    @property
    def start(self) -> float: ...


S = TypeVar("S", bound=_Started)


def in_force(changes: Sequence[S], since: float, until: float) -> list[S]:
    """The changes in force at some instant of [since, until], each lasting until the
    next one starts (the kernel's rule, by a plain walk: the reference that oracles and
    property tests compare against, never the kernel's own look-up)."""
    out = []
    for i, change in enumerate(changes):
        end = changes[i + 1].start if i + 1 < len(changes) else math.inf
        if change.start <= until and end > since:
            out.append(change)
    return out


def _amount_unit(prog: ActiveProgram) -> tuple[str, Fraction]:
    """The unit drug amounts are shown in (the cap's, else mcg or units) and its size."""
    cap = prog.cap
    if cap is not None:
        return cap.unit.value, cap.unit.base_factor
    units = prog.therapy.unit.amount.value == "units"
    return ("units" if units else "mcg"), Fraction(1)


def _summary(
    segs: Sequence[_Seg],
    boluses: Sequence[TruthBolus],
    programs: ProgramsInForce,
    changes: Sequence[Change],
    notes: list[str],
) -> TruthSummary:
    s = TruthSummary(notes=notes)
    live = [x for x in segs if x.cause != "prior"]
    if live:
        s.start, s.end = live[0].start, live[-1].end
    amount = Fraction(0)
    amount_known = True
    last = None
    for seg in live:
        span = seg.end - seg.start
        volume = seg.rate_ml_h * span / 3600.0
        s.volume_ml += volume
        if seg.rate_ml_h > s.max_rate_ml_h:
            s.max_rate_ml_h, s.max_rate_at = seg.rate_ml_h, seg.start
        if seg.rate_ml_h > 0:
            s.running_s += span
        prog = programs.at(seg.start)
        if prog is None:
            amount_known = amount_known and seg.rate_ml_h == 0
            continue
        last = prog
        amount += Fraction(Decimal(repr(volume))) * prog.amount_per_ml
        dose = prog.dose(Decimal(repr(seg.rate_ml_h)))
        if s.max_dose is None or float(dose) > s.max_dose:
            s.max_dose, s.max_dose_at = float(dose), seg.start
        therapy = prog.therapy
        if dose > Fraction(therapy.soft_max.value):
            s.above_soft_max_s += span
        if 0 < dose < Fraction(therapy.soft_min.value):
            s.below_soft_min_s += span
    for b in boluses:
        s.bolus_count += 1
        s.bolus_ml += b.volume_ml
        s.volume_ml += b.volume_ml
        prog = programs.at(b.time)
        if prog is not None:
            amount += Fraction(Decimal(repr(b.volume_ml))) * prog.amount_per_ml
    if last is None:
        progs = programs.known()
        last = progs[-1] if progs else None
    if last is not None:
        s.program = last.what
        s.dose_unit = last.unit
        unit, factor = _amount_unit(last)
        s.amount_unit = unit
        s.drug_amount = float(amount / factor) if amount_known else None
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.cause] = counts.get(c.cause, 0) + 1
    s.changes_by_cause = counts
    return s


def _cap(
    segs: Sequence[_Seg],
    boluses: Sequence[TruthBolus],
    programs: ProgramsInForce,
    end: float,
    summary: TruthSummary,
) -> Violation | None:
    """S3 on the truth: the largest amount in any window, found at the instants where the
    window's edges meet a change (the amount is piecewise linear in between)."""
    caps = [p for p in programs.known() if p.cap is not None]
    if not caps:
        return None
    prog = caps[-1]
    cap = prog.cap
    assert cap is not None
    window = float(cap.window_s)
    limit = float(cap.base_amount)
    drug = prog.drug

    def per_ml(t: float) -> float:
        p = programs.at(t)
        if p is None or p.drug != drug:
            return 0.0
        return float(p.amount_per_ml)

    # cumulative amount at each segment start (prefix integral)
    starts = [s.start for s in segs]
    cumulative = [0.0]
    for s in segs:
        cumulative.append(
            cumulative[-1] + s.rate_ml_h * (s.end - s.start) / 3600.0 * per_ml(s.start)
        )
    bolus_times = sorted(b.time for b in boluses)
    bolus_cum = [0.0]
    for b in sorted(boluses, key=lambda b: b.time):
        bolus_cum.append(bolus_cum[-1] + b.volume_ml * per_ml(b.time))

    def given_until(t: float) -> float:
        i = bisect.bisect_right(starts, t) - 1
        if i < 0:
            base = 0.0
        else:
            s = segs[i]
            base = cumulative[i] + s.rate_ml_h * (min(t, s.end) - s.start) / 3600.0 * per_ml(
                s.start
            )
        return base + bolus_cum[bisect.bisect_right(bolus_times, t)]

    def given_before(t: float) -> float:  # boluses exactly at t belong to the window
        i = bisect.bisect_right(starts, t) - 1
        base = 0.0
        if i >= 0:
            s = segs[i]
            base = cumulative[i] + s.rate_ml_h * (min(t, s.end) - s.start) / 3600.0 * per_ml(
                s.start
            )
        return base + bolus_cum[bisect.bisect_left(bolus_times, t)]

    ends = {end}
    for s in segs:
        ends.update((s.start, s.start + window, s.end, s.end + window))
    for t in bolus_times:
        ends.update((t, t + window))
    peak, peak_at = 0.0, None
    for t in sorted(e for e in ends if e <= end):
        amount = given_until(t) - given_before(t - window)
        if amount > peak:
            peak, peak_at = amount, t
    factor = float(cap.unit.base_factor)
    summary.cap = f"{num(cap.amount)} {cap.unit} per {num(cap.window_h)} h"
    summary.cap_peak = peak / factor
    summary.cap_peak_at = peak_at
    if peak > limit * (1 + REL_EPS):
        assert peak_at is not None
        return Violation(
            "cumulative_cap",
            peak_at,
            f"{peak / factor:.4g} {cap.unit} of {drug} given in the {num(cap.window_h)} h "
            f"before {peak_at:.0f} s, above the cap of {num(cap.amount)} {cap.unit}",
        )
    return None


__all__ = [
    "RULES",
    "TITRATION_RULES",
    "WEAN_RULES",
    "Change",
    "Command",
    "SafetyRecord",
    "TruthReport",
    "TruthSummary",
    "Verified",
    "Violation",
    "check_ground_truth",
]
