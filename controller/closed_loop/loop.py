"""The closed loop: norepinephrine titrated to a MAP target, through the safety process.

The loop is an operator with a faster eye, not a privileged one. Every change it makes is
an ordinary dose request sent through the session (``Session.order``: journaled, then
decided by the safety process with every rule: hard and soft limits, the titration step
and window limits, the gradual wean, the cap); it pre-checks each one with the kernel's
own pure rules (``limits``) so it rarely asks for what will be refused, and a refusal is
counted, journaled and answered by holding, never by retrying harder or going around.

Modes:

- ``manual``: the operator is in control (before ``engage``, after ``take_over``); the
  loop still reads and filters the MAP so that a hand-back starts from fresh data, and
  sends nothing;
- ``running``: one decision per ``period_s``;
- ``suspended``: the rate is held (nothing is sent) and a controller alarm is raised,
  because the MAP cannot be trusted (no valid sample for ``signal_loss_s``: artefact,
  no signal, monitor link down), because the infusion is not the loop's to change
  (not infusing, a plan or hold at the session, a safety alarm) or after
  ``refusals_to_suspend`` refusals in a row. It resumes by itself once the cause is gone
  (``recover_s`` of clean signal), and the alarm's condition is then marked gone (it
  stays latched until acknowledged).

Every mode change and every decision is journaled in the controller journal (kind
``loop``). The control law is in ``decide_dose``; the estimation in ``model``.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from controller.alarm_desk import OWN
from controller.closed_loop.artefacts import SignalFilter, Verdict
from controller.closed_loop.limits import Rules
from controller.closed_loop.model import DrugModel, Estimator, Segment, population_d50
from controller.closed_loop.settings import LoopSettingError, LoopSettings
from controller.errors import ControllerError
from controller.machine import State
from controller.session import Session
from drivers.monitors.base import MapSample, MapSource, MonitorError
from firmware_bridge.clock import Clock
from safety.kernel.model import ChangeDose, ProgramSpec
from safety.kernel.state import ActiveProgram
from safety.status import Snapshot

SUSPENDED_KEY = f"{OWN}closed_loop_suspended"
#: a decision's reason when the rules leave no change worth sending
NO_ROOM = "the rules leave no change worth sending now"
CEILING_KEY = f"{OWN}closed_loop_at_limit"
#: how much rate history the drug model replays when the loop engages (clinical s)
HISTORY_REPLAY_S = 4 * 3600.0
#: fewest valid samples in a period for a decision
MIN_SAMPLES = 3


class LoopMode(enum.StrEnum):
    MANUAL = "manual"
    RUNNING = "running"
    SUSPENDED = "suspended"


@dataclass
class LoopStats:
    decisions: int = 0
    requests: int = 0
    accepted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    precheck_drops: Counter[str] = field(default_factory=Counter)
    suspensions: int = 0
    monitor_errors: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "decisions": self.decisions,
            "requests": self.requests,
            "accepted": self.accepted,
            "refusals": dict(self.refusals),
            "precheck_drops": dict(self.precheck_drops),
            "suspensions": self.suspensions,
            "monitor_errors": self.monitor_errors,
        }


@dataclass(frozen=True)
class Decision:
    """What one period decided (also the journal entry)."""

    time: float
    map_mmhg: float | None
    samples: int
    current: float
    want: float | None
    sent: Decimal | None
    accepted: bool | None
    reason: str | None
    baseline: float | None
    d50: float | None
    d50_sd: float | None
    effect_site: float | None


class ClosedLoop:
    """Closed-loop titration of the running infusion of ``session`` to a MAP target."""

    def __init__(
        self,
        session: Session,
        source: MapSource,
        settings: LoopSettings,
        *,
        clock: Clock,
    ) -> None:
        self.session = session
        self.source = source
        self.settings = settings
        self.clock = clock
        self.filter = SignalFilter(settings)
        self.mode = LoopMode.MANUAL
        self.stats = LoopStats()
        self.suspended_why: str | None = None
        self.last_decision: Decision | None = None
        self._drug: DrugModel | None = None
        self._estimator: Estimator | None = None
        self._next_decision = -math.inf
        self._last_estimate_at: float | None = None
        self._medians: deque[tuple[float, float]] = deque()  # (time, MAP) of decisions
        self._refusals_in_row = 0
        self._last_invalid_at = -math.inf
        self._monitor_down_since: float | None = None
        self._monitor_error = ""  # the source's last error, for the operator
        self._below_at_ceiling_since: float | None = None
        self._seen_history = -math.inf
        self._program: ProgramSpec | None = None  # the program the loop was handed
        self._dose_per_amount_h = Fraction(0)
        self._amount_per_ml = Fraction(1)

    # ------------------------------------------------------------------ operator
    def engage(self, settings: LoopSettings | None = None) -> None:
        """Hand the running infusion to the loop (journaled with every setting). The
        session must be infusing with no plan pending or running.

        ``settings``: the operator's for this engagement (target, band, dose range, soft
        limits), in force from now on, the artefact filter's included; the samples it
        judged so far stay judged. Nothing changes when the hand-over is refused."""
        snapshot = self.session.status()
        self._require_infusing(snapshot)
        if settings is not None:
            rules = Rules(self.session.library, snapshot, self.session.kernel_config)
            _check_dose_range(settings, rules.program)
        previous = self.settings
        if settings is not None:
            self.settings = self.filter.settings = settings
        try:
            self._journal("engage", settings=self.settings.describe(), source=self.source.name)
            self._start_models(snapshot)
        except BaseException:
            self.settings = self.filter.settings = previous
            raise
        self._set_mode(LoopMode.RUNNING, "engaged by the operator")

    def take_over(self, why: str = "operator") -> None:
        """The operator takes control: the loop sends nothing more until ``hand_back``."""
        if self.mode is LoopMode.MANUAL:
            return
        self._set_mode(LoopMode.MANUAL, f"taken over: {why}")
        self.session.alarm_condition_gone(SUSPENDED_KEY)
        self.session.alarm_condition_gone(CEILING_KEY)

    def hand_back(self) -> None:
        """Give control back to the loop after a take-over (re-learns the dose it finds;
        keeps what it learned of the patient's sensitivity)."""
        snapshot = self.session.status()
        self._require_infusing(snapshot)
        estimator = self._estimator
        self._start_models(snapshot)
        if estimator is not None and self._estimator is not None:
            self._estimator.logw = list(estimator.logw)  # what it learned of the patient
            self._estimator._weights = None
        self._journal("hand_back")
        self._set_mode(LoopMode.RUNNING, "handed back by the operator")

    # ------------------------------------------------------------------ time
    def step(self) -> Decision | None:
        """Read the monitor; once per period, decide and (maybe) send one request.
        Call it at least as often as the monitor makes numerics."""
        now = self.clock.now()
        self._read(now)
        if self.mode is LoopMode.MANUAL or now < self._next_decision:
            return None
        self._next_decision = now + self.settings.period_s
        return self._decide(now)

    # ------------------------------------------------------------------ reading
    def _read(self, now: float) -> None:
        try:
            samples = self.source.poll()
        except MonitorError as exc:
            self.stats.monitor_errors += 1
            self._monitor_error = str(exc)
            if self._monitor_down_since is None:
                self._monitor_down_since = now
                self._journal("monitor_error", error=str(exc))
            self._last_invalid_at = now
            return
        if self._monitor_down_since is not None:
            self._journal("monitor_back", down_s=now - self._monitor_down_since)
            self._monitor_down_since = None
        for sample, arrived in zip(samples, arrivals(samples, now), strict=True):
            if self.filter.add(sample, arrived) is not Verdict.VALID:
                self._last_invalid_at = arrived

    # ------------------------------------------------------------------ deciding
    def _decide(self, now: float) -> Decision | None:
        s = self.settings
        self.stats.decisions += 1
        try:
            # the state as the link last told it, when it tells every change at once: its
            # stamp may be earlier, so the rules below are judged at the instant given
            snapshot, judged_at = self.session.current_state()
        except ControllerError as exc:
            self._suspend(now, f"the safety process cannot be asked ({exc.message})")
            return None
        problem = self._not_ours(snapshot)
        if problem is not None:
            self._suspend(now, problem)
            return None
        if self.filter.silent_for(now) > s.signal_loss_s:
            verdict = self.filter.last_verdict
            cause = (
                f"monitor link down ({self._monitor_error})"
                if self._monitor_down_since is not None
                else (
                    f"no valid MAP for over {s.signal_loss_s:g} s (last sample: "
                    f"{verdict.value if verdict else 'none'})"
                )
            )
            self._suspend(now, cause)
            return None
        if self.mode is LoopMode.SUSPENDED:
            if now - self._last_invalid_at < s.recover_s:
                return None
            self._resume(now)
        if snapshot.program != self._program:
            self._suspend(now, "the program changed under the loop: hand it over again")
            return None
        self._feed_history(snapshot)
        drug, estimator = self._drug, self._estimator
        assert drug is not None and estimator is not None
        drug.advance(now)
        median, n = self.filter.median_since(now - s.period_s)
        current = float(snapshot.dose or 0)
        if median is None or n < MIN_SAMPLES:
            return self._record(now, median, n, current, None, None, None, "too few samples")
        if self._last_estimate_at is not None:
            estimator.predict((now - self._last_estimate_at) / 60.0)
        self._last_estimate_at = now
        estimator.update(median, drug.effect)
        want = decide_dose(estimator, drug, s, current, median, self._trend(now, median))
        change = want is not None and abs(want - current) > s.min_change_fraction * current
        # the kernel's view costs more than the rest of a decision: it is built only when
        # a change is on the table, or when the ceiling watch needs the highest dose
        # allowed (MAP below the band and the loop wanting less than its own maximum)
        rules = (
            Rules(self.session.library, snapshot, self.session.kernel_config, now=judged_at)
            if want is not None and (change or (median < s.band[0] and want < float(s.dose_max)))
            else None
        )
        bounds = rules.bounds() if rules is not None else None
        self._ceiling_watch(now, median, want, None if bounds is None else float(bounds.highest))
        if want is None or rules is None or not change:
            return self._record(now, median, n, current, want, None, None, None)
        dose, precheck = rules.propose(
            Fraction(want),
            s.dose_min,
            s.dose_max,
            s.soft_limits_confirmed,
            bounds,
            running_rate=snapshot.rate_ml_h,
        )
        if dose is None:
            if precheck is not None:
                self.stats.precheck_drops[str(precheck.reason)] += 1
            return self._record(now, median, n, current, want, None, None, None)
        # clipped by the rules, the change may have shrunk to nothing worth sending: the
        # ordered dose a hair above the rate's rounded delivery, the pump's rate the same
        # (``propose`` leaves such a dose unchecked: no verdict)
        if abs(float(dose) - current) <= s.min_change_fraction * current or precheck is None:
            return self._record(now, median, n, current, want, None, None, NO_ROOM)
        self.stats.requests += 1
        outcome = self.session.order(
            ChangeDose(
                dose,
                confirm_soft_limits=rules.needs_soft_confirmation(dose),
                unit=rules.unit,
            )
        )
        accepted = outcome.verdict.accepted
        reason = str(outcome.verdict.reason)
        if accepted:
            self.stats.accepted += 1
            self._refusals_in_row = 0
        else:
            self.stats.refusals[reason] += 1
            self._refusals_in_row += 1
        decision = self._record(now, median, n, current, want, dose, accepted, reason)
        if self._refusals_in_row >= s.refusals_to_suspend:
            self._suspend(
                now,
                f"{self._refusals_in_row} requests in a row refused by the safety process "
                f"(last: {outcome.verdict.message})",
            )
        return decision

    def _record(
        self,
        now: float,
        median: float | None,
        n: int,
        current: float,
        want: float | None,
        sent: Decimal | None,
        accepted: bool | None,
        reason: str | None,
    ) -> Decision:
        est = self._estimator
        drug = self._drug
        baseline, theta, theta_sd = est.mean() if est else (None, None, None)
        decision = Decision(
            now,
            median,
            n,
            current,
            want,
            sent,
            accepted,
            reason,
            baseline,
            None if theta is None else math.exp(theta),
            theta_sd,
            drug.effect if drug else None,
        )
        self.last_decision = decision
        self._journal("decision", **_jsonable(decision))
        return decision

    # ------------------------------------------------------------------ models
    def _start_models(self, snapshot: Snapshot) -> None:
        rules = Rules(self.session.library, snapshot, self.session.kernel_config)
        program = rules.program
        s = self.settings
        self._program = snapshot.program
        self._dose_per_amount_h = program.dose_per_amount_h
        self._amount_per_ml = program.amount_per_ml
        # dose units per ug/min of drug: 1 for mcg/min, 1/weight for mcg/kg/min...
        unit_per_ug_min = float(program.dose_of_amount_rate(Fraction(60)))
        # mL/h per dose unit: dose = drug per hour x dose_per_amount_h, rate = drug per
        # hour / amount_per_ml
        ml_h_per_dose = float(1 / (program.dose_per_amount_h * program.amount_per_ml))
        self._drug = DrugModel(s.dead_volume_ml, s.carrier_ml_h, ml_h_per_dose)
        self._seen_history = -math.inf
        now = snapshot.clinical_time
        start = max(now - HISTORY_REPLAY_S, snapshot.history[0].start if snapshot.history else now)
        self._drug.advance(start)
        self._feed_history(snapshot)
        self._drug.advance(now)
        estimator = Estimator(population_d50(unit_per_ug_min))
        self._estimator = estimator
        self._last_estimate_at = None
        self._medians.clear()
        self._next_decision = -math.inf

    def _trend(self, now: float, median: float) -> float | None:
        """The MAP's change (mmHg/min) from the decision ``trend_span_s`` ago to this one
        (None: no decision that old since the models started, or only one from over twice
        the span ago, after a gap). Remembers this one for the next."""
        span = self.settings.trend_span_s
        medians = self._medians
        medians.append((now, median))
        # keep the newest decision at least a span old, and everything after it
        while len(medians) > 1 and medians[1][0] <= now - span + 1e-6:
            medians.popleft()
        then, before = medians[0]
        if then > now - span + 1e-6 or then < now - 2.0 * span:
            return None
        return (median - before) / (now - then) * 60.0

    def _feed_history(self, snapshot: Snapshot) -> None:
        drug = self._drug
        assert drug is not None
        for point in snapshot.history:
            if point.start <= self._seen_history:
                continue
            amount = point.exact_amount()
            dose = float(amount * self._dose_per_amount_h)
            rate = float(amount / self._amount_per_ml)  # the drug's total, as this solution
            drug.add(Segment(point.start, rate, dose))
            self._seen_history = point.start

    # ------------------------------------------------------------------ modes
    def _not_ours(self, snapshot: Snapshot) -> str | None:
        state = self.session.state
        if state is not State.INFUSING:
            return f"the infusion is not the loop's to change (controller state {state.value})"
        if not snapshot.running:
            return "the pump is not running"
        if snapshot.hold or snapshot.uncertain or snapshot.estopped:
            return "the safety process holds the rate (hold, uncertain command or stop)"
        for alarm in snapshot.alarms:
            if alarm.priority == "high" and alarm.active:
                return f"safety alarm {alarm.key}: {alarm.message}"
        return None

    def _require_infusing(self, snapshot: Snapshot) -> None:
        state = self.session.state
        if state is not State.INFUSING or not snapshot.running:
            raise ControllerError(
                f"the loop takes over a running infusion with no plan pending or running; "
                f"the controller is {state.value}"
                + ("" if snapshot.running else " and the pump is not running"),
                code="loop_not_infusing",
            )
        if self.session.pending is not None:
            raise ControllerError(
                "a change is pending confirmation: confirm or cancel it first",
                code="loop_not_infusing",
            )

    def _suspend(self, now: float, why: str) -> None:
        self._last_invalid_at = now
        if self.mode is LoopMode.SUSPENDED and self.suspended_why == why:
            return
        if self.mode is not LoopMode.SUSPENDED:
            self.stats.suspensions += 1
        self.suspended_why = why
        self._set_mode(LoopMode.SUSPENDED, why)
        dose = self.session.snapshot.dose if self.session.snapshot else None
        unit = self.session.snapshot.dose_unit if self.session.snapshot else ""
        self.session.raise_alarm(
            SUSPENDED_KEY,
            "medium",
            "closed_loop_suspended",
            f"closed loop suspended: {why}; the rate is held at {dose} {unit}; it resumes "
            "by itself when the cause is gone, or take over",
        )

    def _resume(self, now: float) -> None:
        why = self.suspended_why
        self.suspended_why = None
        self._refusals_in_row = 0
        self._set_mode(LoopMode.RUNNING, f"resumed (suspended for: {why})")
        self.session.alarm_condition_gone(SUSPENDED_KEY)

    def _set_mode(self, mode: LoopMode, why: str) -> None:
        before = self.mode
        self.mode = mode
        self._journal("mode", source=before.value, dest=mode.value, why=why)

    def _ceiling_watch(
        self, now: float, median: float, want: float | None, highest: float | None
    ) -> None:
        s = self.settings
        low, _ = s.band
        # ``highest`` None: not computed, as no dose below the loop's maximum was wanted
        stuck = (
            want is not None
            and want >= min(math.inf if highest is None else highest, float(s.dose_max))
            and median < low
        )
        if not stuck:
            self._below_at_ceiling_since = None
            self.session.alarm_condition_gone(CEILING_KEY)
            return
        if self._below_at_ceiling_since is None:
            self._below_at_ceiling_since = now
        elif now - self._below_at_ceiling_since >= s.ceiling_alarm_s:
            self.session.raise_alarm(
                CEILING_KEY,
                "medium",
                "closed_loop_at_limit",
                f"closed loop: MAP {median:.0f} mmHg below the band for "
                f"{(now - self._below_at_ceiling_since) / 60:.0f} min while every allowed rise "
                "is taken (the titration rule or the loop's maximum): consider a second agent "
                "or a wider dose range",
            )

    def _journal(self, event: str, **payload: object) -> None:
        self.session.journal.note("loop", event=event, mode=self.mode.value, **payload)


def decide_dose(
    estimator: Estimator,
    drug: DrugModel,
    settings: LoopSettings,
    current: float,
    measured: float,
    trend: float | None = None,
) -> float | None:
    """The dose to run now (program unit), before the safety rules clip it; None: hold.

    The steady dose for the target is read off the posterior (``Estimator.quantile_dose``);
    the dose to run now is the one that brings the effect site there ``horizon_s`` ahead,
    given what is already on its way through the line (``DrugModel.predict_effect``), at
    most twice and at least half that steady dose. A rise uses the cautious
    ``rise_quantile`` of the posterior (a patient more sensitive than the median); a fall
    uses its median. The measured MAP decides the direction, the model the size: a rise
    only while the MAP is more than ``deadband_mmhg`` below the target, a fall only while it
    is more than that above (no dithering inside the band: every fall lowers the
    titration window's base and every rise raises the wean window's top, so a change
    back and forth costs room in both directions). And no rise before the running dose
    has shown its effect (the effect site at ``settle_fraction`` of it): a start or a
    large step is watched before the next one, because a rise too many is undone only at
    the wean rule's pace. Nor while the MAP's ``trend`` (mmHg/min over the last
    ``trend_span_s``), carried ``trend_ahead_s`` ahead, reaches the dead band below the
    target: the dose running already brings it there (a nurse's "it is coming up, wait").
    That is what the model cannot tell yet for a patient far more sensitive than the
    population or slower to clear the drug, in the minutes after a start. The same trend
    brings a fall forward: with the MAP in the band or above and above the band
    ``trend_ahead_s`` ahead by its trend (on its way past it, or staying above it), the
    loop falls as far as the wean rule allows (0 here; the rules clip it), without
    waiting for the MAP to pass the target or for the model to agree, since each fall S5
    allows comes only once per its window."""
    s = settings
    free, gain = drug.predict_effect(s.horizon_s, current)

    def command(steady: float) -> float:
        if steady == 0.0:
            return 0.0
        if math.isinf(steady) or gain <= 1e-9:
            return math.inf
        return min(max((steady - free) / gain, 0.5 * steady), 2.0 * steady)

    settled = drug.effect >= s.settle_fraction * current
    cautious = command(
        estimator.quantile_dose(s.target_mmhg - s.rise_aim_below_mmhg, s.rise_quantile)
    )
    # the MAP ``trend_ahead_s`` from now if its trend goes on (None: no trend known)
    ahead = None if trend is None else measured + trend * s.trend_ahead_s / 60.0
    floor = s.target_mmhg - s.deadband_mmhg
    coming = ahead is not None and ahead >= floor
    if cautious > current and measured < floor and settled and not coming:
        return cautious
    neutral = command(estimator.quantile_dose(s.target_mmhg, 0.5))
    if neutral < current and measured > s.target_mmhg + s.deadband_mmhg:
        return neutral
    low, high = s.band
    if ahead is not None and measured >= low and ahead >= high:
        return 0.0  # shooting past the band: as far down as the wean rule allows, now
    return None


def arrivals(samples: list[MapSample], now: float) -> list[float]:
    """When each sample of a batch was made, on the controller's clock: the newest now,
    the others as far before it as the source's own times say (a batch read after a
    pause keeps its spacing, so an artefact's length is judged right)."""
    if not samples:
        return []
    last = samples[-1].time
    return [min(now, max(now - (last - s.time), now - 3600.0)) for s in samples]


def _jsonable(decision: Decision) -> dict[str, object]:
    return {
        "time": decision.time,
        "map": None if decision.map_mmhg is None else round(decision.map_mmhg, 2),
        "samples": decision.samples,
        "current": decision.current,
        "want": None if decision.want is None or math.isinf(decision.want) else decision.want,
        "sent": None if decision.sent is None else str(decision.sent),
        "accepted": decision.accepted,
        "reason": decision.reason,
        "baseline": decision.baseline,
        "d50": decision.d50,
        "d50_sd": decision.d50_sd,
        "effect_site": decision.effect_site,
    }


def _check_dose_range(settings: LoopSettings, program: ActiveProgram) -> None:
    """The loop's dose range is one the rules let it use: its top never above the hard
    maximum (S1), and beyond a soft limit (above the soft maximum, below the soft
    minimum) only when the operator confirmed crossing it (the loop would otherwise stop
    short of either end without saying why)."""
    therapy = program.therapy
    top = Fraction(settings.dose_max)
    hard = Fraction(therapy.hard_max.value)
    soft = Fraction(therapy.soft_max.value)
    unit = program.unit
    if top > hard:
        raise LoopSettingError(
            "dose_max",
            f"{settings.dose_max} {unit} is above the drug's hard maximum "
            f"({therapy.hard_max.value} {unit}): give at most {therapy.hard_max.value}",
        )
    if top > soft and not settings.soft_limits_confirmed:
        raise LoopSettingError(
            "dose_max",
            f"{settings.dose_max} {unit} is above the soft maximum ({therapy.soft_max.value} "
            f"{unit}): give at most {therapy.soft_max.value}, or confirm crossing the soft "
            "limits (override)",
        )
    if Fraction(settings.dose_min) < Fraction(therapy.soft_min.value) and not (
        settings.soft_limits_confirmed
    ):
        raise LoopSettingError(
            "dose_min",
            f"{settings.dose_min} {unit} is below the soft minimum ({therapy.soft_min.value} "
            f"{unit}): give at least {therapy.soft_min.value}, or confirm crossing the soft "
            "limits (override)",
        )
