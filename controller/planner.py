"""'Go to dose X' -> the steps the safety kernel will accept, and when.

The planner does not re-implement a single limit. It rebuilds a kernel state from the
safety process's snapshot (the program through ``program_check``, the verified rate
history, the running rate), then simulates forward in clinical time, asking the kernel's
own pure ``decide`` about every step it proposes, exactly as the safety process will
(S1-S5, S7 and S3 for rises). Its only own knowledge is *which* step to try next:

- a rise takes the largest step the titration rule allows now (S4: per step and per
  window, absolute and relative); when the window allows nothing more it waits until the
  lowest dose of the window has left it;
- a fall on a gradual-wean-only drug (S5, norepinephrine 25 % per 30 min) goes to the
  wean floor, ``(1 - f) x`` the highest dose of the window, plus a small margin so a pump
  that rounds down more coarsely than assumed can never break the rule; then it waits for
  the window to move on;
- a stop on such a drug weans to the stop threshold, then stops.

The simulation rounds rates with ``safety.pump_rounding.PumpResolution`` (rounded down, as every
driver does); the safety process rounds with the real driver, so every step is sent as a
dose and decided again there: a plan is a forecast, never a licence.

A target that can never be reached comes back as a plan with ``reachable`` False and a
sentence naming the limit and what *is* possible (``best``).
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction

from controller.errors import ControllerError
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.history import RateHistory, Segment
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    ChangeDose,
    Now,
    ProgramLimits,
    ProgramSpec,
    Request,
    RequestBody,
    RequestMeta,
    StopInfusion,
    Verdict,
)
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    evolve,
    limits_of,
    program_check,
    single_channel,
)
from safety.library import DiluentError, DrugLibrary, LookupProblem
from safety.pump_rounding import PumpResolution
from safety.reasons import Reason
from safety.rules import RuleRefusal, Severity, limit_findings, num
from safety.status import Snapshot
from safety.units import UnitError, fraction_to_decimal

#: decimal places of the figures a plan proposes (its doses are short figures anyway)
_PLACES = 9


class PlanError(ControllerError):
    """No plan can be made at all (nothing infusing, no program, hold...)."""

    def __init__(self, message: str, code: str = "cannot_plan", field: str | None = None):
        super().__init__(message, code=code, field=field)


class Unreachable(ControllerError):
    """The planner found no way to the target; the plan says which limit and what is
    possible (``plan.problem``, ``plan.best``)."""

    def __init__(self, plan: Plan) -> None:
        code = str(plan.code) if plan.code is not None else "unreachable"
        super().__init__(plan.problem or "target not reachable", code=code)
        self.plan = plan


@dataclass(frozen=True)
class PlannerSettings:
    """The planner's own choices (the limits themselves come from the library).

    *Project choices*, documented in docs/python-api.md: no reference fixes them.
    """

    #: at least this long (clinical s) between two changes, counted from the last change
    #: the safety process verified; never 0, so two changes never share one instant
    min_step_interval_s: float = 60.0
    #: a wean step goes this fraction above the wean floor (pump rounding head-room)
    wean_margin: Fraction = Fraction(1, 100)
    #: wait this long past the instant a window lets go of a dose (clock and float slack)
    window_slack_s: float = 1.0
    #: doses are proposed with this many significant digits (rounded toward the safe side)
    significant_digits: int = 3
    #: rates are rounded like this in the simulation (down)
    resolution: PumpResolution = field(default_factory=PumpResolution)
    #: give up beyond this (clinical s, steps): the target is then called unreachable
    horizon_s: float = 7 * 24 * 3600.0
    max_steps: int = 500

    def __post_init__(self) -> None:
        if not self.min_step_interval_s > 0:
            raise ValueError(f"min_step_interval_s must be > 0 s, got {self.min_step_interval_s}")
        if not (0 <= self.wean_margin < Fraction(1, 2)):
            raise ValueError(f"wean_margin must be within [0, 0.5), got {self.wean_margin}")
        if not (2 <= self.significant_digits <= 8):
            raise ValueError(
                f"significant_digits must be within [2, 8], got {self.significant_digits}"
            )


class PlanKind(enum.StrEnum):
    TITRATE = "titrate"
    WEAN = "wean"
    STOP = "stop"


class StepKind(enum.StrEnum):
    CHANGE = "change"
    STOP = "stop"


@dataclass(frozen=True)
class PlanStep:
    index: int  # 1-based
    at_s: float  # offset from the plan's start (clinical s)
    kind: StepKind
    dose: Decimal | None  # the dose to ask for (None for a stop)
    delivers: Decimal  # what the rounded pump rate delivers (0 for a stop)
    rate_ml_h: Decimal  # the rate the pump will run (0 for a stop)
    why: str  # what this step does, and which rule sizes it
    waits_for: str | None  # why it is not earlier (None: as soon as asked)
    confirm_soft_limits: bool = False  # crosses a soft limit: needs its own confirmation
    soft_findings: tuple[str, ...] = ()
    advisories: tuple[str, ...] = ()

    def request(self, unit: str | None = None, channel: str | None = None) -> RequestBody:
        """The kernel request that carries out this step (``unit``: the plan's dose unit,
        sent with the number so the safety process checks it; ``channel``: the plan's)."""
        if self.kind is StepKind.STOP:
            return StopInfusion(channel=channel)
        assert self.dose is not None
        return ChangeDose(
            self.dose, confirm_soft_limits=self.confirm_soft_limits, unit=unit, channel=channel
        )


@dataclass(frozen=True)
class Plan:
    kind: PlanKind
    what: str  # the program, for people
    unit: str
    start_dose: Decimal
    target: Decimal | None  # None for a stop
    created_at: float  # clinical time of the snapshot it was planned from
    steps: tuple[PlanStep, ...]
    reachable: bool
    code: Reason | None = None  # the limit that makes the target unreachable
    problem: str | None = None  # operator words: which limit, what IS possible
    best: Decimal | None = None  # the closest dose that is possible, when there is one
    warnings: tuple[str, ...] = ()
    #: the channel the plan is for (None: the bench's only one)
    channel: str | None = None

    @property
    def duration_s(self) -> float:
        return self.steps[-1].at_s if self.steps else 0.0

    @property
    def needs_soft_confirmation(self) -> bool:
        return any(s.confirm_soft_limits for s in self.steps)

    @property
    def soft_findings(self) -> tuple[str, ...]:
        out: list[str] = []
        for step in self.steps:
            out += [f for f in step.soft_findings if f not in out]
        return tuple(out)

    @property
    def ends_in_stop(self) -> bool:
        return bool(self.steps) and self.steps[-1].kind is StepKind.STOP

    def describe(self) -> str:
        """The plan as an operator reads it: steps, waits, total duration, problems."""
        unit = self.unit
        if self.kind is PlanKind.STOP:
            head = f"stop {self.what} from {num(self.start_dose)} {unit}"
        else:
            assert self.target is not None
            head = (
                f"{self.kind.value} {self.what} from {num(self.start_dose)} to "
                f"{num(self.target)} {unit}"
            )
        lines = [
            f"{head}: {len(self.steps)} step{'s' if len(self.steps) != 1 else ''} "
            f"over {format_duration(self.duration_s)}"
        ]
        for step in self.steps:
            if step.kind is StepKind.STOP:
                what = "stop"
            else:
                assert step.dose is not None
                what = f"{num(step.dose)} {unit} ({num(step.rate_ml_h)} mL/h)"
            line = f"  {step.index:>2}. +{format_duration(step.at_s):>8}  {what:<28} {step.why}"
            if step.waits_for:
                line += f"; {step.waits_for}"
            lines.append(line)
            lines += [f"        ! needs soft-limit confirmation: {f}" for f in step.soft_findings]
            lines += [f"        advisory: {a}" for a in step.advisories]
        lines += [f"  warning: {w}" for w in self.warnings]
        if not self.reachable:
            lines.append(f"  NOT REACHABLE: {self.problem}")
        elif self.needs_soft_confirmation:
            lines.append(
                "  this plan crosses a soft limit: confirming it needs its own soft-limit "
                "confirmation"
            )
        return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """h:mm:ss for people (clinical time)."""
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


# --------------------------------------------------------------------------- planning state


def pump_capabilities(
    snapshot: Snapshot, resolution: PumpResolution, channel: str | None = None
) -> PumpCapabilities:
    """A channel's pump range (the first's when ``channel`` is None) with
    ``resolution``'s rounding (down, like every driver)."""

    def quantize(rate: float) -> float:
        return float(resolution.round_down(Fraction(rate)))

    view = snapshot.channel(channel)
    if view is not None:
        return PumpCapabilities(view.pump_min_ml_h, view.pump_max_ml_h, quantize)
    return PumpCapabilities(snapshot.pump_min_ml_h, snapshot.pump_max_ml_h, quantize)


#: the library's judgement of the program specs seen: (library, limits) by spec
_LIMITS: dict[tuple[int, str, ProgramSpec], tuple[DrugLibrary, ProgramLimits]] = {}
_LIMITS_KEPT = 64


def _limits(library: DrugLibrary, spec: ProgramSpec) -> ProgramLimits:
    """What ``load_program`` holds a spec to (S6 checked, the library's limits), remembered
    by value: it depends on the library and the spec alone, both immutable, and a closed
    loop rebuilds its planning state from the same program at every decision. A refusal
    is raised each time, never remembered. The library object is kept with its entry, so
    its id cannot be another library's while the entry stands."""
    key = (id(library), library.content_hash, spec)
    found = _LIMITS.get(key)
    if found is not None and found[0] is library:
        return found[1]
    limits = limits_of(program_check(library, spec), library.content_hash)
    if len(_LIMITS) >= _LIMITS_KEPT:
        _LIMITS.clear()
    _LIMITS[key] = (library, limits)
    return limits


def program_of(library: DrugLibrary, spec: ProgramSpec, at: float) -> ActiveProgram:
    """The program ``spec`` with the library's limits, as the kernel holds it: its dose
    and rate conversions. Raises ``PlanError`` when the library refuses it."""
    try:
        return ActiveProgram(spec, _limits(library, spec), at)
    except RuleRefusal as exc:
        raise PlanError(exc.finding.message, code=exc.finding.code.value) from None
    except (UnitError, DiluentError, LookupProblem) as exc:
        raise PlanError(str(exc), code="bad_input") from None


def planning_state(
    library: DrugLibrary,
    snapshot: Snapshot,
    session: str = "plan",
    channel: str | None = None,
    *,
    now: float | None = None,
) -> tuple[KernelState, ActiveProgram]:
    """A kernel state equivalent, for deciding dose changes, to the safety process's own.

    Only what ``decide`` reads for a dose change is rebuilt: the channel's program (the
    bench's first channel when ``channel`` is None), the verified history of its drug
    (windows, cap) and its running rate; the link fields say 'attached' so the simulated
    requests pass S8. A plan moves one channel: when another channel gives the same drug
    at the same time (a relay handing over), the total is the safety process's to judge
    request by request, and no plan is made.

    ``now``: the clinical instant the state is for, when the snapshot is of an earlier
    one and the safety process's state has not changed since (``Session.current_state``).
    All of this is the state's except the earlier programs' limits still in force
    (``priors``), which only run out as time passes: those of the snapshot still in
    force at ``now`` are the ones a snapshot taken at ``now`` would show.
    """
    view = snapshot.channel(channel)
    if channel is not None and view is None:
        raise PlanError(f"there is no channel {channel!r}", code="unknown_channel")
    spec = view.program if view is not None else snapshot.program
    if spec is None:
        raise PlanError("no program is loaded; program first", code="no_program")
    if spec.library_hash != library.content_hash:
        raise PlanError(
            f"the safety process runs drug library {spec.library_hash[:19]}, this controller "
            f"has {library.content_hash[:19]}; load the same library file on both",
            code="library_hash_mismatch",
        )
    stale = view.program_stale if view is not None else snapshot.program_stale
    if stale is not None:
        raise PlanError(stale, code="program_needs_reprogramming")
    program = program_of(library, spec, snapshot.clinical_time if now is None else now)
    name = view.name if view is not None else DEFAULT_CHANNEL
    beside = [
        v.name
        for v in snapshot.channels
        if v.name != name and v.running and v.program is not None and v.program.drug == spec.drug
    ]
    if beside:
        raise PlanError(
            f"channel{'s' if len(beside) > 1 else ''} {', '.join(beside)} also give"
            f"{'' if len(beside) > 1 else 's'} {spec.drug}: a plan moves the drug on one "
            "channel; send single doses (the safety process judges the total)",
            code="drug_on_several_channels",
        )
    history = snapshot.history_of(spec.drug)
    segments = tuple(Segment(p.start, p.exact_amount(), p.cause) for p in history)
    priors = snapshot.priors
    if now is not None and now != snapshot.clinical_time:
        priors = tuple(p for p in priors if p.until > now)  # as ``priors_at(now)``
    record = DrugRecord(RateHistory(segments), program.limits, priors)
    running = view.running if view is not None else snapshot.running
    rate = view.rate_ml_h if view is not None else snapshot.rate_ml_h
    state = single_channel(
        program=program,
        drugs={program.drug: record},
        running=running,
        set_rate=rate,
        expected_running=running,
        expected_rate=rate,
        session=session,
        attached=True,
    )
    return state, program


# --------------------------------------------------------------------------- simulation


@dataclass
class _Sim:
    library: DrugLibrary
    state: KernelState
    program: ActiveProgram
    pump: PumpCapabilities
    config: KernelConfig
    seq: int = 0

    def ask(self, body: RequestBody, t: float) -> Verdict:
        self.seq += 1
        request = Request(RequestMeta(self.state.session or "plan", self.seq, math.inf), body)
        return decide(self.library, self.state, request, Now(t, 0.0), self.pump, self.config)

    def apply(self, verdict: Verdict, t: float) -> None:
        rate = verdict.rate_ml_h if verdict.rate_ml_h is not None else Decimal(0)
        running = verdict.rate_ml_h is not None
        amount = Fraction(rate) * self.program.amount_per_ml if running else Fraction(0)
        history = self.state.history.with_rate(t, amount, "command")
        self.state = evolve(
            self.state.with_history(history),
            running=running,
            set_rate=rate if running else self.state.set_rate,
            expected_running=running,
            expected_rate=rate if running else self.state.expected_rate,
        )

    def current(self) -> Fraction:
        return self.state.current_dose()

    def changes_rate(self, dose: Fraction) -> bool:
        """Would asking for ``dose`` change the rate the pump runs (after its rounding)?"""
        return self.pump.pump_rate(self.program.exact_rate(dose)) != self.state.set_rate

    def last_change(self) -> float | None:
        seg = self.state.history.current
        return seg.start if seg is not None else None

    def dose_of(self, seg: Segment) -> Fraction:
        return self.program.dose_of_amount_rate(seg.amount_per_h)

    def releases(self, t: float, window_s: float) -> list[tuple[float, Segment]]:
        """(instant a segment leaves a window of ``window_s``, segment) for the ended
        segments still in it at ``t``; the running segment never leaves."""
        segs = self.state.history.segments
        out: list[tuple[float, Segment]] = []
        for seg, following in itertools.pairwise(segs):
            leaves = following.start + window_s
            if leaves >= t:
                out.append((leaves, seg))
        return out


@dataclass
class _Builder:
    sim: _Sim
    settings: PlannerSettings
    t0: float
    unit: str
    steps: list[PlanStep] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    states: list[KernelState] = field(default_factory=list)

    def add(
        self,
        verdict: Verdict,
        t: float,
        kind: StepKind,
        dose: Fraction | None,
        why: str,
        waits_for: str | None,
        soft: tuple[str, ...],
    ) -> None:
        advisories = tuple(
            f.message.removeprefix("advisory: ")
            for f in verdict.findings
            if f.severity is Severity.WARN and f.code is Reason.ADVISORY
        )
        step = PlanStep(
            index=len(self.steps) + 1,
            at_s=t - self.t0,
            kind=kind,
            dose=fraction_to_decimal(dose, _PLACES) if dose is not None else None,
            delivers=verdict.dose if verdict.dose is not None else Decimal(0),
            rate_ml_h=verdict.rate_ml_h if verdict.rate_ml_h is not None else Decimal(0),
            why=why,
            waits_for=waits_for,
            confirm_soft_limits=bool(soft),
            soft_findings=soft,
            advisories=advisories,
        )
        self.states.append(self.sim.state)
        self.sim.apply(verdict, t)
        self.steps.append(step)
        self.times.append(t)


class _Unreachable(Exception):
    def __init__(self, code: Reason, problem: str, best: Fraction | None = None) -> None:
        super().__init__(problem)
        self.code = code
        self.problem = problem
        self.best = best


# --------------------------------------------------------------------------- public entry


def plan_titration(
    library: DrugLibrary,
    snapshot: Snapshot,
    target: Decimal,
    *,
    config: KernelConfig | None = None,
    settings: PlannerSettings | None = None,
    kind: PlanKind = PlanKind.TITRATE,
    channel: str | None = None,
) -> Plan:
    """Steps from the running dose to ``target`` (in the program's dose unit)."""
    return _plan(library, snapshot, target, config, settings, kind, channel)


def plan_wean(
    library: DrugLibrary,
    snapshot: Snapshot,
    target: Decimal | None = None,
    *,
    config: KernelConfig | None = None,
    settings: PlannerSettings | None = None,
    channel: str | None = None,
) -> Plan:
    """A gradual fall to ``target``; ``None`` or 0 means wean to the stop threshold, then
    stop (the same plan as ``plan_stop``)."""
    if target is None or target == 0:
        return plan_stop(library, snapshot, config=config, settings=settings, channel=channel)
    return _plan(library, snapshot, target, config, settings, PlanKind.WEAN, channel)


def plan_stop(
    library: DrugLibrary,
    snapshot: Snapshot,
    *,
    config: KernelConfig | None = None,
    settings: PlannerSettings | None = None,
    channel: str | None = None,
) -> Plan:
    """Stop; for a gradual-wean-only drug: wean to the stop threshold first (S5)."""
    return _plan(library, snapshot, None, config, settings, PlanKind.STOP, channel)


def make_plan(
    kind: PlanKind,
    library: DrugLibrary,
    snapshot: Snapshot,
    target: Decimal | None,
    *,
    config: KernelConfig | None = None,
    settings: PlannerSettings | None = None,
    channel: str | None = None,
) -> Plan:
    """The plan of ``kind`` to ``target`` (None for a stop) on ``channel``."""
    if kind is PlanKind.STOP:
        return plan_stop(library, snapshot, config=config, settings=settings, channel=channel)
    if kind is PlanKind.WEAN:
        return plan_wean(
            library, snapshot, target, config=config, settings=settings, channel=channel
        )
    assert target is not None
    return plan_titration(
        library, snapshot, target, config=config, settings=settings, channel=channel
    )


def _plan(
    library: DrugLibrary,
    snapshot: Snapshot,
    target: Decimal | None,
    config: KernelConfig | None,
    settings: PlannerSettings | None,
    kind: PlanKind,
    channel: str | None = None,
) -> Plan:
    config = config or KernelConfig()
    settings = settings or PlannerSettings()
    _check_plannable(snapshot, channel)
    state, program = planning_state(library, snapshot, channel=channel)
    unit = program.unit
    if target is not None and (not target.is_finite() or target <= 0):
        raise PlanError(
            f"dose must be a positive number of {unit}; use stop (or wean) to stop",
            code="bad_input",
            field="dose",
        )
    pump = pump_capabilities(snapshot, settings.resolution, channel)
    sim = _Sim(library, state, program, pump, config)
    t0 = snapshot.clinical_time
    start = sim.current()
    builder = _Builder(sim, settings, t0, unit)
    code: Reason | None = None
    problem: str | None = None
    best: Fraction | None = None
    try:
        if target is None:
            _stop(builder, program)
        else:
            goal = Fraction(target)
            _check_target(sim, program, goal)
            if goal > start:
                _rise(builder, program, goal)
            elif goal < start:
                _fall(builder, program, goal, "fall")
    except _Unreachable as exc:
        code, problem, best = exc.code, exc.problem, exc.best
    warnings = _cap_warnings(builder, config)
    return Plan(
        kind=kind,
        what=program.what,
        unit=unit,
        start_dose=fraction_to_decimal(start, _PLACES),
        target=target,
        created_at=t0,
        steps=tuple(builder.steps),
        reachable=problem is None,
        code=code,
        problem=problem,
        best=fraction_to_decimal(best, _PLACES) if best is not None else None,
        warnings=warnings,
        channel=channel,
    )


def _check_plannable(snapshot: Snapshot, channel: str | None = None) -> None:
    view = snapshot.channel(channel)
    program = view.program if view is not None else snapshot.program
    running = view.running if view is not None else snapshot.running
    uncertain = view.uncertain if view is not None else snapshot.uncertain
    if program is None:
        raise PlanError("no program is loaded; program and start first", code="no_program")
    if snapshot.estopped:
        raise PlanError(
            "emergency stop is active; acknowledge it and start again first",
            code="emergency_stopped",
        )
    if snapshot.hold:
        raise PlanError(
            "the safety process is holding the rate (controller link was lost); re-attach first",
            code="hold_controller_lost",
        )
    if uncertain:
        raise PlanError(
            "the last pump command's outcome is uncertain; wait for the safety process to "
            "reconcile it by read-back",
            code="delivery_uncertain",
        )
    if not running:
        raise PlanError("nothing is infusing; start first", code="not_infusing")


def _check_target(sim: _Sim, program: ActiveProgram, goal: Fraction) -> None:
    """Limits no waiting can ever satisfy: hard max (S1) and the pump's range (S7)."""
    unit = program.unit
    therapy = program.therapy
    pump = sim.pump
    high = program.dose(pump.max_rate_ml_h)
    low = program.dose(pump.min_rate_ml_h)
    hard = Fraction(therapy.hard_max.value)
    for finding in limit_findings(therapy, goal, program.what):
        if finding.severity is Severity.REFUSE:
            best = min(hard, high)
            raise _Unreachable(
                finding.code,
                f"{finding.message.removeprefix('refused: ')}; the highest dose possible is "
                f"{num(best)} {unit}",
                best,
            )
    exact = program.exact_rate(goal)
    if exact > Fraction(pump.max_rate_ml_h):
        raise _Unreachable(
            Reason.PUMP_RANGE_HIGH,
            f"{num(goal)} {unit} needs {num(exact)} mL/h, above the pump's "
            f"{num(pump.max_rate_ml_h)} mL/h with this syringe; the highest dose possible is "
            f"{num(high)} {unit} (or use a stronger concentration)",
            high,
        )
    if pump.pump_rate(exact) < pump.min_rate_ml_h:
        raise _Unreachable(
            Reason.PUMP_RANGE_LOW,
            f"{num(goal)} {unit} needs {num(exact)} mL/h, below the pump's minimum "
            f"{num(pump.min_rate_ml_h)} mL/h with this syringe; the lowest dose possible is "
            f"about {num(low)} {unit} (or stop; or use a weaker concentration)",
            _round(low, 6, up=True),
        )


# --------------------------------------------------------------------------- rises (S4)


def _rise(b: _Builder, program: ActiveProgram, goal: Fraction) -> None:
    sim, settings = b.sim, b.settings
    titration = program.therapy.titration
    unit = program.unit
    window_s = float(titration.window_min.value) * 60
    t, wait = _first_time(b)
    while True:
        _guard(b, t, goal)
        current = sim.current()
        if b.steps and b.steps[-1].dose == fraction_to_decimal(goal, _PLACES):
            return
        step_bound = min(
            Fraction(titration.max_step_rise.value),
            Fraction(titration.max_step_rise_fraction.value) * current,
        )
        low = sim.state.history.min_running_amount_rate(t - window_s, t)
        base = program.dose_of_amount_rate(low) if low is not None else current
        window_bound = min(
            Fraction(titration.max_window_rise.value),
            Fraction(titration.max_window_rise_fraction.value) * base,
        )
        ceiling = min(goal, current + step_bound, base + window_bound)
        dose = _rise_dose(ceiling, goal, current, settings.significant_digits)
        if dose != goal and not sim.changes_rate(dose):
            dose = current  # the pump's rounding would eat this rise: wait for more room
        if dose <= current:
            later = [
                leaves
                for leaves, seg in sim.releases(t, window_s)
                if sim.dose_of(seg) <= base and seg.amount_per_h > 0
            ]
            if not later:
                raise _Unreachable(
                    Reason.WINDOW_RISE,
                    f"no further rise is possible from {num(current)} {unit} (the titration "
                    "rule allows no step from here)",
                    current,
                )
            t = max(min(later) + settings.window_slack_s, t)
            wait = (
                f"waits for the titration window: at most +{num(window_bound)} {unit} per "
                f"{num(titration.window_min.value)} min above its lowest dose "
                f"({num(base)} {unit}) (S4)"
            )
            continue
        soft = _soft(program, dose)
        verdict = sim.ask(
            ChangeDose(fraction_to_decimal(dose, _PLACES), confirm_soft_limits=bool(soft)), t
        )
        if not verdict.accepted:
            _refused(verdict, sim, program, t)
        if dose == goal:
            why = f"rise to the target (+{num(dose - current)} {unit})"
        elif ceiling == current + step_bound:
            why = f"rise by the largest step allowed (+{num(dose - current)} {unit}, S4)"
        else:
            why = f"rise by what the titration window allows (+{num(dose - current)} {unit}, S4)"
        b.add(verdict, t, StepKind.CHANGE, dose, why, wait, soft)
        t += settings.min_step_interval_s
        wait = f"waits {format_duration(settings.min_step_interval_s)}: step spacing"


# --------------------------------------------------------------------------- falls (S5)


def _rise_dose(ceiling: Fraction, goal: Fraction, current: Fraction, digits: int) -> Fraction:
    """The dose to ask for under ``ceiling``: the target itself, or a short figure rounded
    down; ``current`` (no rise) when nothing above it fits."""
    if ceiling <= current:
        return current
    if ceiling == goal:
        return goal
    for places in (digits, digits + 2, digits + 4):
        dose = _round(ceiling, places, up=False)
        if dose > current:
            return dose
    return current


def _fall(b: _Builder, program: ActiveProgram, goal: Fraction, verb: str) -> None:
    sim, settings = b.sim, b.settings
    wean = program.therapy.wean
    unit = program.unit
    t, wait = _first_time(b)
    if not wean.gradual_wean_only.value:
        soft = _soft(program, goal)
        verdict = sim.ask(
            ChangeDose(fraction_to_decimal(goal, _PLACES), confirm_soft_limits=bool(soft)), t
        )
        if not verdict.accepted:
            _refused(verdict, sim, program, t)
        why = f"{verb} to the target in one step ({program.what} has no gradual-wean rule)"
        b.add(verdict, t, StepKind.CHANGE, goal, why, wait, soft)
        return
    assert wean.max_fall_fraction is not None and wean.window_min is not None
    fall = Fraction(wean.max_fall_fraction.value)
    window_s = float(wean.window_min.value) * 60
    pct = num(fall * 100)
    while True:
        _guard(b, t, goal)
        current = sim.current()
        if b.steps and b.steps[-1].dose == fraction_to_decimal(goal, _PLACES):
            return
        highest = program.dose_of_amount_rate(sim.state.history.max_amount_rate(t - window_s, t))
        floor = (1 - fall) * highest
        want = max(
            goal, _round(floor * (1 + settings.wean_margin), settings.significant_digits, up=True)
        )
        if want != goal and not sim.changes_rate(want):
            want = current  # the pump's rounding would eat this fall: wait for more room
        if want >= current:
            later = [
                leaves
                for leaves, seg in sim.releases(t, window_s)
                if sim.dose_of(seg) >= current and seg.amount_per_h > 0
            ]
            if not later:
                raise _Unreachable(
                    Reason.WEAN_TOO_FAST,
                    f"no further fall is possible from {num(current)} {unit} (the wean rule "
                    "allows no step from here)",
                    current,
                )
            t = max(min(later) + settings.window_slack_s, t)
            wait = (
                f"waits for the wean window: at most {pct} % below the highest dose of the "
                f"last {num(wean.window_min.value)} min ({num(highest)} {unit}) (S5)"
            )
            continue
        verdict = _ask_fall(sim, program, want, t, settings)
        if want == goal:
            why = f"{verb} to the target (-{num(current - want)} {unit})"
        else:
            why = f"{verb} by the largest wean step allowed (-{num(current - want)} {unit}, S5)"
        b.add(verdict, t, StepKind.CHANGE, want, why, wait, _soft(program, want))
        t += settings.min_step_interval_s
        wait = f"waits {format_duration(settings.min_step_interval_s)}: step spacing"


def _ask_fall(
    sim: _Sim, program: ActiveProgram, want: Fraction, t: float, settings: PlannerSettings
) -> Verdict:
    """A wean step; if rounding puts it a hair under the floor, nudge it up (never down)."""
    for _ in range(4):
        soft = _soft(program, want)
        verdict = sim.ask(
            ChangeDose(fraction_to_decimal(want, _PLACES), confirm_soft_limits=bool(soft)), t
        )
        if verdict.accepted or verdict.reason is not Reason.WEAN_TOO_FAST:
            break
        want = _round(want * (1 + settings.wean_margin), settings.significant_digits + 2, up=True)
    if not verdict.accepted:
        _refused(verdict, sim, program, t)
    return verdict


# --------------------------------------------------------------------------- stops


def _stop(b: _Builder, program: ActiveProgram) -> None:
    sim = b.sim
    wean = program.therapy.wean
    unit = program.unit
    if wean.gradual_wean_only.value:
        assert wean.stop_threshold is not None
        threshold = Fraction(wean.stop_threshold.value)
        if sim.current() > threshold:
            try:
                _check_target(sim, program, threshold)
            except _Unreachable as exc:
                raise _Unreachable(
                    exc.code,
                    f"cannot wean to the stop threshold ({num(threshold)} {unit}): "
                    f"{exc.problem}; only an emergency stop stops from here",
                    exc.best,
                ) from None
            _fall(b, program, threshold, "wean")
    if b.steps:
        t = b.times[-1] + b.settings.min_step_interval_s
        waits: str | None = f"waits {format_duration(b.settings.min_step_interval_s)}: step spacing"
    else:
        t, waits = b.t0, None
    verdict = sim.ask(StopInfusion(), t)
    if not verdict.accepted:
        _refused(verdict, sim, program, t)
    if wean.gradual_wean_only.value:
        assert wean.stop_threshold is not None
        why = f"stop: at or below the stop threshold ({num(wean.stop_threshold.value)} {unit})"
    else:
        why = f"stop ({program.what} has no gradual-wean rule)"
    b.add(verdict, t, StepKind.STOP, None, why, waits, ())


# --------------------------------------------------------------------------- helpers


def _first_time(b: _Builder) -> tuple[float, str | None]:
    """The first step waits for the spacing after the last verified change, if needed."""
    last = b.sim.last_change()
    spacing = b.settings.min_step_interval_s
    if last is not None and b.t0 < last + spacing:
        return last + spacing, (
            f"waits {format_duration(last + spacing - b.t0)}: step spacing after the last change"
        )
    return b.t0, None


def _guard(b: _Builder, t: float, goal: Fraction) -> None:
    if len(b.steps) >= b.settings.max_steps or t - b.t0 > b.settings.horizon_s:
        current = b.sim.current()
        raise _Unreachable(
            Reason.WINDOW_RISE if goal > current else Reason.WEAN_TOO_FAST,
            f"{num(goal)} {b.unit} is not reached within {len(b.steps)} steps and "
            f"{format_duration(t - b.t0)}; the plan gets to {num(current)} {b.unit}",
            current,
        )


def _soft(program: ActiveProgram, dose: Fraction) -> tuple[str, ...]:
    """S2 findings that need their own confirmation for this dose."""
    return tuple(
        f.message.removeprefix("needs confirmation: ")
        for f in limit_findings(program.therapy, dose, program.what)
        if f.severity is Severity.CONFIRM
    )


def _refused(verdict: Verdict, sim: _Sim, program: ActiveProgram, t: float) -> None:
    """A step the kernel refuses that waiting cannot fix: explain, and say what is possible."""
    unit = program.unit
    if verdict.reason is Reason.CUMULATIVE_CAP and program.cap is not None:
        cap = program.cap
        given = sim.state.history.amount(t - float(cap.window_s), t)
        headroom = max(0.0, float(cap.base_amount) - given)
        per_h = headroom * 3600.0 / sim.config.cap_lookahead_s
        best_rate = Fraction(per_h) / program.amount_per_ml
        best = program.dose(sim.pump.pump_rate(best_rate))
        raise _Unreachable(
            Reason.CUMULATIVE_CAP,
            f"{verdict.message.removeprefix('refused: ')}; the cap allows at most about "
            f"{num(best)} {unit} now",
            best,
        )
    raise _Unreachable(verdict.reason, verdict.message.removeprefix("refused: "))


def _cap_warnings(b: _Builder, config: KernelConfig) -> tuple[str, ...]:
    """S3 as time passes: would the safety process stop the pump at the cap during this
    plan, or within its warning horizon after it, at the final dose? That stop would be
    abrupt: the operator must know now.

    The planned history is sampled every ``_CAP_SAMPLE_S`` with the kernel's own guard
    rule (headroom below ``cap_guard_s`` of the running rate), counting the drug that
    leaves the rolling window as well as the drug that goes in."""
    program = b.sim.program
    cap = program.cap
    if cap is None:
        return ()
    history = b.sim.state.history
    window = float(cap.window_s)
    limit = float(cap.base_amount)
    end = (b.times[-1] if b.times else b.t0) + config.cap_warning_s
    t = b.t0
    while t <= end:
        seg = next((s for s in reversed(history.segments) if s.start <= t), None)
        per_s = float(seg.amount_per_h) / 3600.0 if seg is not None else 0.0
        if per_s > 0:
            headroom = limit - history.amount(t - window, t)
            if headroom <= per_s * config.cap_guard_s:
                shown = f"{num(cap.amount)} {cap.unit} per {num(cap.window_h)} h"
                return (
                    f"the cumulative cap ({shown}) would be reached at about "
                    f"+{format_duration(t - b.t0)}: the safety process would then stop the "
                    "pump at once (the cap is a hard limit; the stop would be abrupt)",
                )
        t += _CAP_SAMPLE_S
    return ()


#: resolution of the cap forecast (clinical s)
_CAP_SAMPLE_S = 60.0


def _round(value: Fraction, digits: int, *, up: bool) -> Fraction:
    """``value`` to ``digits`` significant digits, up or down (toward the safe side)."""
    if value <= 0:
        return Fraction(0)
    exponent = math.floor(math.log10(value.numerator) - math.log10(value.denominator))
    while Fraction(10) ** exponent > value:
        exponent -= 1
    while Fraction(10) ** (exponent + 1) <= value:
        exponent += 1
    quantum = Decimal(1).scaleb(exponent - digits + 1)
    exact = fraction_to_decimal(value, max(12, digits - exponent + 6))
    rounded = exact.quantize(quantum, rounding=ROUND_CEILING if up else ROUND_FLOOR)
    result = Fraction(rounded)
    if up and result < value:
        result += Fraction(quantum)
    if not up and result > value:
        result -= Fraction(quantum)
    return result
