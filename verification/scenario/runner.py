"""Running a scenario: timed actions and faults on a bench, a timeline of what happened.

The runner only *does* things and writes down what it saw; whether the scenario's
expectations hold is decided afterwards (``verification.scenario.expect``) from what the
run left behind: the two journals, the pump's ground truth and the outcome of each
action. So the verdict rests on the same records a reviewer can open with
``pumpctl journal show``, not on the runner's own impressions.

Order at one instant: faults first (the world changes), then the operator's actions, each
kind in file order. A fault's follow-up (a controller or safety process restarted after
``restart_after_s``, heartbeats back after ``duration_s``) is scheduled like any event.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from controller.errors import ControllerError
from controller.journal_timeline import format_time
from controller.plan_executor import PendingChange, StepResult
from firmware_bridge.pump_model import TruthEvent, TruthSegment
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    EmergencyStop,
    RequestBody,
    StartInfusion,
    StopInfusion,
)
from safety.library import DrugLibrary
from safety.status import AlarmView
from verification.scenario.bench import (
    BenchError,
    RealBench,
    ScenarioBench,
    VirtualBench,
)
from verification.scenario.loader import LoadedScenario
from verification.scenario.model import (
    AcknowledgeAction,
    Action,
    ArmStandbyAction,
    ConfirmAction,
    ContainerChangedAction,
    ContainerPauseAction,
    DisarmStandbyAction,
    Fault,
    PrimeAction,
    ProgramAction,
    RequestAction,
    SimpleAction,
    StartAction,
    StopAction,
    TitrateAction,
    WeanAction,
)

Echo = Callable[[str], None]


@dataclass
class ActionRecord:
    """One operator action and what became of it."""

    index: int
    name: str | None
    do: str
    planned_s: float  # from time zero
    at_s: float  # when it was carried out
    accepted: bool = False
    code: str = ""
    message: str = ""
    plan: str = ""  # the plan shown for a change (step 1 of 2)

    def label(self) -> str:
        return self.name or f"action #{self.index + 1} ({self.do})"

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass
class FaultRecord:
    index: int
    name: str | None
    fault: str
    planned_s: float
    at_s: float
    ok: bool = True
    message: str = ""

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass
class RunResult:
    """Everything a run left behind for the expectations to be judged on."""

    mode: str  # "virtual" or "real"
    t0: float  # clinical time of the scenario's time zero
    end: float  # clinical time the run ended
    out_dir: Path
    safety_journal: Path
    controller_journal: Path
    safety_last_id: int
    controller_last_id: int
    tolerance_s: float
    truth: list[TruthEvent]
    prior_truth: list[TruthSegment]
    #: each channel's ground truth by name (``truth`` is the first's)
    truths: dict[str, list[TruthEvent]] = field(default_factory=dict)
    actions: list[ActionRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    pump: str = ""
    #: real runs: where the emulator served, the processes started and the folder for
    #: sockets (all gone when the run returns)
    where: str = ""
    processes: list[int] = field(default_factory=list)
    runtime_dir: str | None = None

    def named(self) -> dict[str, float]:
        """Clinical time (absolute) at which each named action or fault happened."""
        times: dict[str, float] = {}
        for a in self.actions:
            if a.name:
                times[a.name] = self.t0 + a.at_s
        for f in self.faults:
            if f.name:
                times[f.name] = self.t0 + f.at_s
        return times


class ScenarioRunError(Exception):
    """The run could not go on (the bench failed); the message says where."""


class Runner:
    def __init__(
        self,
        loaded: LoadedScenario,
        library: DrugLibrary,
        out_dir: Path,
        *,
        real: bool = False,
        echo: Echo | None = None,
    ) -> None:
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.library = library
        self.out_dir = out_dir
        self.real = real
        self.echo = echo
        self.timeline: list[tuple[float, str]] = []
        self.actions: list[ActionRecord] = []
        self.faults: list[FaultRecord] = []
        kind = RealBench if real else VirtualBench
        self.bench: ScenarioBench = kind(
            self.scenario.bench, library, out_dir, self._alarm, self.scenario.channels
        )
        self._queue: list[tuple[float, int, int, Callable[[], None]]] = []
        self._order = itertools.count()

    # ------------------------------------------------------------------ narration
    def _rel(self) -> float:
        return self.bench.now() - self.bench.t0

    def say(self, text: str) -> None:
        t = self._rel()
        self.timeline.append((t, text))
        if self.echo is not None:
            self.echo(f"  [{format_time(t)}] {text}")

    def _alarm(self, alarm: AlarmView) -> None:
        self.say(f"ALARM ({alarm.priority}) {alarm.key}: {alarm.message}")

    # ------------------------------------------------------------------ schedule
    def _push(self, at_s: float, rank: int, what: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at_s, rank, next(self._order), what))

    def run(self) -> RunResult:
        s = self.scenario
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            try:
                self.bench.setup(s.prior)
            except (BenchError, ControllerError) as exc:
                raise ScenarioRunError(f"the bench could not be set up: {exc}") from None
            if isinstance(self.bench, RealBench):
                self.say(
                    f"real processes: {s.bench.pump} emulator on {self.bench.where}, safety "
                    f"process pid {self.bench.safety.pid if self.bench.safety else '?'}, "
                    f"clinical clock x{s.bench.speed:g}"
                )
            else:
                self.say("one process: the safety core in-process (LocalSafety), virtual clocks")
            if s.prior:
                self.say(
                    f"history: {len(s.prior)} earlier run(s) journaled, from "
                    f"{format_time(s.prior[0].from_)} to {format_time(s.prior[-1].until)}"
                )
            for i, fault in enumerate(s.fault):
                self._push(fault.at, 0, functools.partial(self._fault, i, fault))
            for i, action in enumerate(s.action):
                self._push(action.at, 1, functools.partial(self._action, i, action))
            while self._queue:
                at_s, _, _, what = heapq.heappop(self._queue)
                if at_s > s.duration_s:
                    break
                self.bench.wait_until(self.bench.t0 + at_s)
                what()
            self.bench.wait_until(self.bench.t0 + s.duration_s)
            session = self.bench.session
            if session is not None and session.link_down is None:
                try:
                    session.status()
                    self.say(f"end: {session.status_line()}")
                except ControllerError as exc:
                    self.say(f"end: status not available: {exc.message}")
            else:
                self.say("end: no controller attached")
            safety_last, controller_last = self.bench.journal_marks()
            end = self.bench.now()
            truths = self.bench.truths()
        finally:
            self.bench.close()
        if isinstance(self.bench, RealBench):
            truths = self.bench.truths()  # the emulator has flushed every line by now
        truth = next(iter(truths.values()))
        return RunResult(
            mode="real" if self.real else "virtual",
            t0=self.bench.t0,
            end=end,
            out_dir=self.out_dir,
            safety_journal=self.bench.safety_journal,
            controller_journal=self.bench.controller_journal,
            safety_last_id=safety_last,
            controller_last_id=controller_last,
            tolerance_s=self.bench.tolerance_s,
            truth=truth,
            prior_truth=self.bench.prior_truth,
            truths=truths,
            actions=self.actions,
            faults=self.faults,
            timeline=self.timeline,
            pump=s.bench.pump if self.real else "mock",
            where=getattr(self.bench, "where", ""),
            processes=list(getattr(self.bench, "pids", [])),
            runtime_dir=str(getattr(self.bench, "runtime", "")) or None,
        )

    # ------------------------------------------------------------------ faults
    def _fault(self, index: int, fault: Fault) -> None:
        record = FaultRecord(index, fault.name, fault.fault, fault.at, self._rel())
        self.faults.append(record)
        label = f" ({fault.name})" if fault.name else ""
        if fault.channel is not None:
            label += f" on channel {fault.channel}"
        try:
            self._make_fault(fault)
        except (BenchError, ControllerError, OSError, ValueError) as exc:
            record.ok = False
            record.message = str(exc)
            self.say(f"FAULT {fault.fault}{label} could not be made: {exc}")
            return
        record.message = "made"
        self.say(f"FAULT {fault.fault}{label}")

    def _make_fault(self, fault: Fault) -> None:
        bench = self.bench
        word = fault.fault
        now = self._rel()
        if word == "kill_controller":
            bench.kill_controller()
            if fault.restart_after_s is not None:
                self._push(now + fault.restart_after_s, 0, self._restart_controller)
        elif word == "kill_safety":
            bench.kill_safety()
            self._push(now + (fault.restart_after_s or 0.0), 0, self._restart_safety)
        elif word == "heartbeat_gap":
            assert fault.duration_s is not None
            bench.heartbeat_gap(True)
            self._push(now + fault.duration_s, 0, self._heartbeats_back)
        elif word == "stop_button":
            bench.stop_button()
        else:
            bench.pump_fault(word, fault.channel)

    def _restart_controller(self) -> None:
        try:
            self.bench.restart_controller()
        except (BenchError, ControllerError) as exc:
            self.say(f"the controller could not restart: {exc}")
            return
        session = self.bench.session
        state = session.state.value if session is not None else "?"
        self.say(f"controller restarted: attached and re-synchronised, [{state}]")

    def _restart_safety(self) -> None:
        try:
            self.bench.restart_safety()
        except (BenchError, ControllerError) as exc:
            raise ScenarioRunError(f"the safety process could not restart: {exc}") from None
        self.say("safety process restarted (journal replayed, pump left as it was)")

    def _heartbeats_back(self) -> None:
        self.bench.heartbeat_gap(False)
        self.say("controller heartbeats resume")

    # ------------------------------------------------------------------ actions
    def _action(self, index: int, action: Action) -> None:
        record = ActionRecord(index, action.name, action.do, action.at, self._rel())
        self.actions.append(record)
        try:
            self._do(action, record)
        except ControllerError as exc:
            record.accepted = False
            record.code = exc.code
            record.message = exc.message
        label = f" ({action.name})" if action.name else ""
        verdict = "done" if record.accepted else f"REFUSED [{record.code}]"
        self.say(f"{_describe(action)}{label}: {verdict}: {record.message}")
        if record.plan:
            for line in record.plan.splitlines():
                self.say(f"    {line}")

    def _do(self, action: Action, record: ActionRecord) -> None:
        bench = self.bench
        if isinstance(action, RequestAction):
            outcome = bench.raw_request(_raw_body(action, action.channel))
            record.accepted = outcome.verdict.accepted
            record.code = str(outcome.verdict.reason)
            record.message = outcome.verdict.message
            return
        if isinstance(action, SimpleAction) and action.do == "resume":
            state = bench.resume()
            record.accepted, record.code = True, "accepted"
            record.message = f"re-attached and re-synchronised: [{state.value}]"
            return
        session = bench.require_session()
        if isinstance(action, ProgramAction):
            spec = self.scenario.bench
            load = session.program if action.do == "program" else session.reprogram
            outcome = load(
                action.drug or spec.drug,
                action.concentration or spec.concentration,
                action.diluent or spec.diluent,
                weight_kg=action.weight_kg if action.weight_kg is not None else spec.weight_kg,
                profile=action.profile or spec.profile,
                therapy=action.therapy or spec.therapy,
                channel=action.channel,
            )
            _accepted(record, outcome.verdict.message)
        elif isinstance(action, StartAction):
            outcome = session.start(
                _dose(action.dose),
                confirm_soft_limits=action.confirm_soft_limits,
                channel=action.channel,
            )
            _accepted(record, outcome.verdict.message)
        elif isinstance(action, TitrateAction | WeanAction | StopAction):
            channel = action.channel
            if isinstance(action, TitrateAction):
                pending = session.titrate_to(_dose(action.dose), channel=channel)
            elif isinstance(action, WeanAction):
                dose = None if action.dose is None else _dose(action.dose)
                pending = session.wean(dose, channel=channel)
            else:
                pending = session.stop(channel=channel)
            record.plan = pending.describe()
            if action.confirm:
                self._confirm(pending, action.soft_limits, record)
            else:
                _accepted(record, "planned; waiting for confirmation (nothing sent)")
        elif isinstance(action, ConfirmAction):
            waiting = session.pending
            if waiting is None:
                raise ControllerError("nothing is pending confirmation", code="nothing_pending")
            self._confirm(waiting, action.soft_limits, record)
        elif isinstance(action, ArmStandbyAction):
            outcome = session.arm_standby(action.channel, action.for_channel, action.strategy)
            _accepted(record, outcome.verdict.message)
        elif isinstance(action, DisarmStandbyAction):
            _accepted(record, session.disarm_standby(action.channel).verdict.message)
        elif isinstance(action, PrimeAction):
            if action.line_disconnected:
                bench.line_off_for_prime(self._channel(action.channel), float(action.volume_ml))
            try:
                outcome = session.prime(
                    action.volume_ml,
                    action.channel,
                    confirm_line_disconnected=action.line_disconnected,
                )
            except ControllerError:
                bench.line_back(self._channel(action.channel))  # no prime: back on at once
                raise
            _accepted(record, outcome.verdict.message)
        elif isinstance(action, ContainerPauseAction):
            if action.do == "pause_for_container_change":
                outcome = session.pause_for_container_change(self._channel(action.channel))
            else:
                outcome = session.resume_after_container_change(self._channel(action.channel))
            _accepted(record, outcome.verdict.message)
        elif isinstance(action, ContainerChangedAction):
            bench.load_container(self._channel(action.channel), float(action.volume_ml))
            outcome = session.container_changed(
                action.volume_ml, self._channel(action.channel), action.concentration
            )
            _accepted(record, outcome.verdict.message)
        elif isinstance(action, AcknowledgeAction):
            keys = tuple(action.keys) if action.keys else None
            result = session.acknowledge(keys)
            _accepted(record, result.verdict.message if result is not None else "acknowledged")
        else:
            assert isinstance(action, SimpleAction)
            if action.do == "cancel":
                session.cancel_pending()
                _accepted(record, "pending change cancelled")
            else:
                outcome = session.emergency_stop("api")
                _accepted(record, outcome.verdict.message)

    def _channel(self, channel: str | None) -> str | None:
        """The channel named, else the session's (None: the bench's only one)."""
        if channel is not None:
            return channel
        session = self.bench.session
        if session is not None and session.channel is not None:
            return session.channel
        names = self.scenario.channel_names
        return names[0] if len(self.scenario.channels) > 1 else None

    def _confirm(self, pending: PendingChange, soft: bool, record: ActionRecord) -> None:
        results: tuple[StepResult, ...] = pending.confirm(soft_limits=soft)
        refused = [r for r in results if not r.accepted]
        if refused:
            verdict = refused[0].outcome.verdict
            record.accepted, record.code, record.message = (
                False,
                str(verdict.reason),
                (f"confirmed, but step {refused[0].step.index} was refused: {verdict.message}"),
            )
            return
        sent = len(results)
        total = len(pending.plan.steps)
        _accepted(record, f"confirmed: {sent} of {total} step(s) sent, the rest when due")


def _accepted(record: ActionRecord, message: str) -> None:
    record.accepted, record.code, record.message = True, "accepted", message


def _dose(text: str) -> str | Decimal:
    """A plain number stays exact; text with a unit goes to the session as it is."""
    try:
        return Decimal(text)
    except ArithmeticError:
        return text


def _raw_body(action: RequestAction, channel: str | None = None) -> RequestBody:
    if action.request == "start":
        assert action.dose is not None
        return StartInfusion(
            action.dose,
            confirm_soft_limits=action.confirm_soft_limits,
            unit=action.unit,
            channel=channel,
        )
    if action.request == "change_dose":
        assert action.dose is not None
        return ChangeDose(
            action.dose,
            confirm_soft_limits=action.confirm_soft_limits,
            unit=action.unit,
            channel=channel,
        )
    if action.request == "stop":
        return StopInfusion(channel=channel)
    if action.request == "acknowledge":
        return AcknowledgeAlarms(tuple(action.keys) if action.keys else None)
    return EmergencyStop("api")


def _describe(action: Action) -> str:
    text = _what(action)
    if action.channel is not None and not isinstance(action, ArmStandbyAction):
        text += f" on channel {action.channel}"
    return text


def _what(action: Action) -> str:
    if isinstance(action, ArmStandbyAction):
        return f"arm standby {action.channel} for {action.for_channel} ({action.strategy})"
    if isinstance(action, PrimeAction):
        return f"prime {action.volume_ml} mL"
    if isinstance(action, ContainerChangedAction):
        conc = f" at {action.concentration}" if action.concentration else ""
        return f"container changed: {action.volume_ml} mL{conc}"
    if isinstance(action, ProgramAction):
        bits = [v for v in (action.drug, action.concentration, action.diluent, action.therapy) if v]
        return f"{action.do} {' '.join(bits)}".rstrip()
    if isinstance(action, StartAction):
        return f"start {action.dose}"
    if isinstance(action, TitrateAction):
        return f"titrate_to {action.dose}"
    if isinstance(action, WeanAction):
        return f"wean to {action.dose or 'stop'}"
    if isinstance(action, RequestAction):
        dose = f" {action.dose}" if action.dose is not None else ""
        return f"raw request {action.request}{dose}"
    if isinstance(action, AcknowledgeAction):
        return "acknowledge " + (", ".join(action.keys) if action.keys else "all")
    return action.do


__all__ = ["ActionRecord", "FaultRecord", "RunResult", "Runner", "ScenarioRunError"]
