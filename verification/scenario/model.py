"""The scenario file's shape: pydantic models that refuse unknown fields.

A scenario is data, not a script: a bench set-up, timed operator actions, timed injected
faults and expectations, so that a reviewer can read what is claimed and a test can run
it. Every table refuses keys it does not know (``extra="forbid"``): a misspelt
expectation must never pass by checking nothing. Documented in docs/scenarios.md.

Channels: a bench of several pumps lists them in ``[[channels]]`` (name, container,
loaded volume); steps and state expectations then say which one they mean with
``channel``. Without ``[[channels]]`` the bench is one pump, channel A, exactly as
before: every existing file means what it meant.

Times: ``at`` is clinical time since the scenario began, in minutes (a number), or a
text with its unit: ``"90 s"``, ``"2.5 min"``, ``"4 h"``, ``"1:30:00"`` (h:mm:ss).
Durations that end in ``_s`` are seconds.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import ALL_FAULTS, FaultSpecError, WireFaults, apply_fault
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import container_by_name, syringe_by_name
from safety.host.channel_names import check_channel_name
from safety.kernel.model import DEFAULT_CHANNEL

#: longest scenario, clinical (7 days: a cap needs a day of history, and some slack)
MAX_DURATION_S = 7 * 24 * 3600.0
#: earliest seeded history (a cap window is at most a day or two)
MAX_PRIOR_S = 3 * 24 * 3600.0

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0}
_WITH_UNIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(s|sec|min|m|h|hr)\s*$")
_CLOCK = re.compile(r"^\s*(-?)(\d+):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?\s*$")


def clinical_seconds(value: object) -> float:
    """Minutes (a number) or text with a unit -> seconds. Raises ValueError for people."""
    if isinstance(value, bool):
        raise ValueError("a time is minutes (a number) or text such as '90 s', '4 h', '1:30:00'")
    if isinstance(value, int | float):
        seconds = float(value) * 60.0
    elif isinstance(value, str):
        m = _WITH_UNIT.match(value)
        c = _CLOCK.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
        elif c:
            sign = -1.0 if c.group(1) else 1.0
            seconds = sign * (
                int(c.group(2)) * 3600 + int(c.group(3)) * 60 + float(c.group(4) or 0)
            )
        else:
            raise ValueError(
                f"{value!r} is not a time: give minutes (a number) or text such as '90 s', "
                "'2.5 min', '4 h', '1:30:00'"
            )
    else:
        raise ValueError("a time is minutes (a number) or text such as '90 s', '4 h', '1:30:00'")
    if math.isnan(seconds) or abs(seconds) > MAX_DURATION_S:
        raise ValueError(f"{value!r} is outside +-7 days")
    return seconds


def _dose_text(value: object) -> object:
    """A dose: a number (in the program's unit) or text with its unit ('8 mcg/min')."""
    if isinstance(value, bool):
        raise ValueError("a dose is a number or text with a unit such as '8 mcg/min'")
    if isinstance(value, int | float):
        try:
            return str(Decimal(repr(value)))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a dose") from None
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("a dose cannot be empty")
        return value.strip()
    raise ValueError("a dose is a number or text with a unit such as '8 mcg/min'")


Time = Annotated[float, BeforeValidator(clinical_seconds)]
DoseText = Annotated[str, BeforeValidator(_dose_text)]
Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f]+$")]
#: a channel's name: what the safety config's [channels.NAME] and the console's @NAME say,
#: so the safety config's own rule (``safety.host.channel_names``): a scenario must not run
#: a bench its safety config would refuse ("1B")
ChannelName = Annotated[str, AfterValidator(check_channel_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- header, bench


class ScenarioInfo(_Strict):
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    duration: Time

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the duration must be after time 0")
        return value


PumpKind = Literal["ne1000", "harvard", "modbus"]


class BenchSpec(_Strict):
    """The program every ``program`` action loads unless it says otherwise, the pump."""

    drug: str = Field(min_length=1)
    concentration: str = Field(min_length=1)
    diluent: str = Field(min_length=1)
    profile: str | None = None
    therapy: str | None = None
    weight_kg: Decimal | None = Field(default=None, gt=0, le=500)
    syringe: str = "bd-plastipak-50ml"
    loaded_ml: float | None = Field(default=None, gt=0, le=1000)
    pump: PumpKind = "ne1000"  # --real only: which emulator and driver
    speed: float = Field(default=60.0, ge=1.0, le=3600.0)  # --real only: clinical x real
    poll_s: float | None = Field(default=None, ge=0.05, le=30.0)  # read-back period (liveness)

    @field_validator("syringe")
    @classmethod
    def _known_syringe(cls, value: str) -> str:
        syringe_by_name(value)  # ValueError lists the catalogue
        return value


class ChannelSpec(_Strict):
    """One pump of a bench of several: its container (a syringe or a bag, by catalogue
    name; default the bench's ``syringe``) and what it holds at the start (default full).
    ``pump``: the emulator and driver of a --real run (the one-process run serves every
    channel from the mock driver)."""

    name: ChannelName
    container: str | None = None
    loaded_ml: float | None = Field(default=None, gt=0, le=5000)
    pump: PumpKind | None = None

    @field_validator("container")
    @classmethod
    def _known_container(cls, value: str | None) -> str | None:
        if value is not None:
            container_by_name(value)  # ValueError lists the catalogue
        return value


class Prior(_Strict):
    """Delivery before the scenario began, journaled as a previous safety process would
    have (for windows and the 24 h cap; the pump starts stopped)."""

    from_: Time = Field(alias="from")
    until: Time
    dose: Decimal = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Prior:
        if not (-MAX_PRIOR_S <= self.from_ < self.until <= 0):
            raise ValueError(
                "a prior run lies before the scenario: need -3 days <= from < until <= 0"
            )
        return self


# --------------------------------------------------------------------------- actions


class _Action(_Strict):
    at: Time
    name: Name | None = None
    #: the channel the step acts on (None: the session's, the first unless a step named
    #: another: naming one moves the session to it, as in the console)
    channel: ChannelName | None = None

    @field_validator("at")
    @classmethod
    def _not_before_start(cls, value: float) -> float:
        if value < 0:
            raise ValueError("an action happens at or after time 0")
        return value


class ProgramAction(_Action):
    do: Literal["program", "reprogram"]
    drug: str | None = None
    concentration: str | None = None
    diluent: str | None = None
    profile: str | None = None
    therapy: str | None = None
    weight_kg: Decimal | None = Field(default=None, gt=0, le=500)


class StartAction(_Action):
    do: Literal["start"]
    dose: DoseText
    confirm_soft_limits: bool = False


class TitrateAction(_Action):
    do: Literal["titrate_to"]
    dose: DoseText
    confirm: bool = True  # step 2 right away; false leaves it pending (see "confirm")
    soft_limits: bool = False  # the soft-limit override at confirmation


class WeanAction(_Action):
    do: Literal["wean"]
    dose: DoseText | None = None  # none: wean to the stop threshold, then stop
    confirm: bool = True
    soft_limits: bool = False


class StopAction(_Action):
    do: Literal["stop"]
    confirm: bool = True
    soft_limits: bool = False


class ConfirmAction(_Action):
    do: Literal["confirm"]
    soft_limits: bool = False

    @model_validator(mode="after")
    def _no_channel(self) -> ConfirmAction:
        if self.channel is not None:
            raise ValueError("confirm executes the pending change: it takes no channel")
        return self


class SimpleAction(_Action):
    do: Literal["cancel", "emergency_stop", "resume"]

    @model_validator(mode="after")
    def _no_channel(self) -> SimpleAction:
        if self.channel is not None:
            what = "the whole bench" if self.do == "emergency_stop" else "the session"
            raise ValueError(f"{self.do} acts on {what}: it takes no channel")
        return self


class AcknowledgeAction(_Action):
    do: Literal["acknowledge"]
    keys: list[str] | None = None

    @model_validator(mode="after")
    def _bench_wide(self) -> AcknowledgeAction:
        if self.channel is not None:
            raise ValueError(
                "acknowledge takes keys, not a channel (CHANNEL/KEY names one channel's alarm)"
            )
        return self


RelayWord = Literal["quick", "overlap"]


class ArmStandbyAction(_Action):
    """``channel`` becomes the relief of ``for_channel``: the safety process hands the
    infusion over itself when ``for_channel``'s container nears empty."""

    do: Literal["arm_standby"]
    channel: ChannelName
    for_channel: ChannelName
    strategy: RelayWord = "quick"

    @model_validator(mode="after")
    def _two_channels(self) -> ArmStandbyAction:
        if self.channel == self.for_channel:
            raise ValueError(f"channel {self.channel} cannot relieve itself: for_channel")
        return self


class DisarmStandbyAction(_Action):
    do: Literal["disarm_standby"]
    channel: ChannelName


class PrimeAction(_Action):
    """Purge ``volume_ml`` through a stopped channel to take up its slack. The line must
    be off the patient (what a prime pushes out is wasted): ``line_disconnected = true``
    says so; without it the safety process refuses."""

    do: Literal["prime"]
    volume_ml: Decimal = Field(gt=0, le=100)
    line_disconnected: bool = False


class ContainerPauseAction(_Action):
    """Stop the channel for a new syringe or bag (bounded, alarmed past its bound)."""

    do: Literal["pause_for_container_change", "resume_after_container_change"]


class ContainerChangedAction(_Action):
    """The new container holds ``volume_ml``; ``concentration``: its label, when it is
    not the program's (the channel must then be re-programmed)."""

    do: Literal["container_changed"]
    volume_ml: Decimal = Field(gt=0, le=5000)
    concentration: str | None = Field(default=None, min_length=1)


RawKind = Literal["start", "change_dose", "stop", "acknowledge", "emergency_stop"]


class RequestAction(_Action):
    """A raw request the planner would never send (a 10x slip as one change), straight to
    the safety process over the controller's link, to show what it refuses."""

    do: Literal["request"]
    request: RawKind
    dose: Decimal | None = Field(default=None, gt=0)
    #: the unit sent with the dose (default: none, i.e. the program's); a different one
    #: shows the safety process refusing a unit swap on its own
    unit: str | None = None
    confirm_soft_limits: bool = False
    keys: list[str] | None = None

    @model_validator(mode="after")
    def _dose_when_needed(self) -> RequestAction:
        if self.request in ("start", "change_dose") and self.dose is None:
            raise ValueError(f"a {self.request} request needs dose (in the program's unit)")
        if self.request not in ("start", "change_dose") and self.dose is not None:
            raise ValueError(f"a {self.request} request takes no dose")
        return self


Action = Annotated[
    ProgramAction
    | StartAction
    | TitrateAction
    | WeanAction
    | StopAction
    | ConfirmAction
    | SimpleAction
    | AcknowledgeAction
    | RequestAction
    | ArmStandbyAction
    | DisarmStandbyAction
    | PrimeAction
    | ContainerPauseAction
    | ContainerChangedAction,
    Field(discriminator="do"),
]
ACTIONS = (
    "program",
    "reprogram",
    "start",
    "titrate_to",
    "wean",
    "stop",
    "confirm",
    "cancel",
    "emergency_stop",
    "acknowledge",
    "resume",
    "request",
    "arm_standby",
    "disarm_standby",
    "prime",
    "pause_for_container_change",
    "container_changed",
    "resume_after_container_change",
)


# --------------------------------------------------------------------------- faults

#: faults of the processes, not of the pump or its wire
PROCESS_FAULTS = ("kill_controller", "heartbeat_gap", "kill_safety", "stop_button")
#: the ones a real-process run (--real) cannot make
ONE_PROCESS_ONLY = ("heartbeat_gap", "stop_button")

_SCRATCH_CLOCK = VirtualClock()


class Fault(_Strict):
    at: Time
    name: Name | None = None
    fault: str
    restart_after_s: float | None = Field(default=None, ge=0, le=24 * 3600)
    duration_s: float | None = Field(default=None, gt=0, le=24 * 3600)
    #: a pump or wire fault on this channel's pump (None: the first channel's)
    channel: ChannelName | None = None

    @field_validator("at")
    @classmethod
    def _not_before_start(cls, value: float) -> float:
        if value < 0:
            raise ValueError("a fault happens at or after time 0")
        return value

    @field_validator("fault")
    @classmethod
    def _known(cls, value: str) -> str:
        word = value.strip()
        if word in PROCESS_FAULTS:
            return word
        try:  # on a throw-away pump and wire: only the spelling is checked
            apply_fault(word, SimulatedPump(_SCRATCH_CLOCK), WireFaults())
        except FaultSpecError as exc:
            raise ValueError(f"{exc}; or a process fault: {', '.join(PROCESS_FAULTS)}") from None
        return word

    @model_validator(mode="after")
    def _parameters(self) -> Fault:
        if self.duration_s is not None and self.fault != "heartbeat_gap":
            raise ValueError("duration_s belongs to a heartbeat_gap fault only")
        if self.fault == "heartbeat_gap" and self.duration_s is None:
            raise ValueError("a heartbeat_gap needs duration_s (how long the heartbeats stop)")
        if self.restart_after_s is not None and self.fault not in (
            "kill_controller",
            "kill_safety",
        ):
            raise ValueError("restart_after_s belongs to kill_controller and kill_safety only")
        if self.channel is not None and self.fault in PROCESS_FAULTS:
            raise ValueError(f"{self.fault} is a process fault: it takes no channel")
        return self

    @property
    def kind(self) -> str:
        """ "process", "pump" or "wire"."""
        if self.fault in PROCESS_FAULTS:
            return "process"
        word = self.fault.partition("=")[0].strip().lower().replace("-", "_")
        return "pump" if word in ("occlusion", "stall", "empty", "power_cycle", "clear") else "wire"


assert set(ALL_FAULTS) >= {"occlusion", "lose_ack"}  # the words documented here exist


# --------------------------------------------------------------------------- expectations


class _Expect(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=120)


class AlarmExpect(_Expect):
    """An alarm (by key or reason, optionally priority) is raised, within ``within_s`` of
    the action or fault named by ``after`` (any time in the run without ``after``)."""

    type: Literal["alarm", "no_alarm"]
    key: str | list[str] | None = None  # a list: any one of these keys
    reason: str | None = None
    priority: Literal["high", "medium", "low"] | None = None
    after: str | None = None
    within_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)

    @model_validator(mode="after")
    def _what(self) -> AlarmExpect:
        if self.key is None and self.reason is None and self.priority is None:
            raise ValueError("say which alarm: key, reason and/or priority")
        if self.within_s is not None and self.after is None:
            raise ValueError("within_s counts from an action or fault: give after = its name")
        if isinstance(self.key, list) and not self.key:
            raise ValueError("key: give one alarm key, or a list of at least one")
        return self

    @property
    def keys(self) -> tuple[str, ...] | None:
        if self.key is None:
            return None
        return (self.key,) if isinstance(self.key, str) else tuple(self.key)

    @property
    def key_text(self) -> str | None:
        keys = self.keys
        return None if keys is None else " or ".join(keys)


class OutcomeExpect(_Expect):
    """The action named ``action`` was refused (with reason ``code``, if given), or
    accepted."""

    type: Literal["refused", "accepted"]
    action: str
    code: str | None = None

    @model_validator(mode="after")
    def _code_for_refusals(self) -> OutcomeExpect:
        if self.type == "accepted" and self.code is not None:
            raise ValueError("code belongs to a 'refused' expectation")
        return self


class LimitExpect(_Expect):
    """On the pump's ground truth: the delivered rate (mL/h) or dose never above a figure.
    On a bench of several pumps: the patient's total of the drug (the channels' summed
    delivered flow), or one pump's with ``channel``."""

    type: Literal["max_rate", "max_dose"]
    value: Decimal = Field(gt=0)
    channel: ChannelName | None = None


class RuleExpect(_Expect):
    """On the pump's ground truth: a group of the safety invariants held all along
    (``invariants``: every one of them)."""

    type: Literal["wean_rule", "titration_rule", "cap", "hard_max", "invariants"]


class HandoverExpect(_Expect):
    """The relay handed the infusion over (``count`` times; default at least once), each
    handover done, and what reached the patient held to the total the safety process had
    set: in every 1-minute window from a minute before each handover to a minute after,
    within ``max_deviation_pct``; below 90 % of it for at most ``max_below_s`` at a time
    (when given). Judged on the pumps' summed ground truth (``verification.handover``)."""

    type: Literal["handover"]
    count: int | None = Field(default=None, ge=0, le=1000)
    max_deviation_pct: float = Field(default=10.0, gt=0, le=100)
    max_below_s: float | None = Field(default=None, ge=0, le=24 * 3600)


class _StateFields(_Expect):
    state: str | None = None  # the controller's machine state
    mode: str | None = None  # the safety process's mode
    running: bool | None = None
    dose: Decimal | None = Field(default=None, ge=0)
    rate_ml_h: Decimal | None = Field(default=None, ge=0)
    alarm: str | None = None  # this alarm key is present (raised, not yet cleared)
    #: the channel whose running, dose and rate are checked (None: the first); the
    #: controller's state is the session's, whichever channel it works on
    channel: ChannelName | None = None

    @model_validator(mode="after")
    def _something(self) -> _StateFields:
        fields = ("state", "mode", "running", "dose", "rate_ml_h", "alarm")
        if all(getattr(self, f) is None for f in fields):
            raise ValueError(f"say what to check: one or more of {', '.join(fields)}")
        return self


class StateExpect(_StateFields):
    """What the controller and the safety process report at a moment."""

    type: Literal["state"]
    at: Time

    @field_validator("at")
    @classmethod
    def _in_run(cls, value: float) -> float:
        if value < 0:
            raise ValueError("a state is checked at or after time 0")
        return value


class FinalExpect(_StateFields):
    """What the controller and the safety process report when the scenario ends."""

    type: Literal["final"]


Expectation = Annotated[
    AlarmExpect
    | OutcomeExpect
    | LimitExpect
    | RuleExpect
    | StateExpect
    | FinalExpect
    | HandoverExpect,
    Field(discriminator="type"),
]
EXPECTATIONS = (
    "alarm",
    "no_alarm",
    "refused",
    "accepted",
    "max_rate",
    "max_dose",
    "wean_rule",
    "titration_rule",
    "cap",
    "hard_max",
    "invariants",
    "state",
    "final",
    "handover",
)


# --------------------------------------------------------------------------- the file


class Scenario(_Strict):
    scenario: ScenarioInfo
    bench: BenchSpec
    channels: list[ChannelSpec] = Field(default_factory=list)
    prior: list[Prior] = Field(default_factory=list)
    action: list[Action] = Field(default_factory=list)
    fault: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(min_length=1)

    @property
    def duration_s(self) -> float:
        return self.scenario.duration

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The bench's channels: those listed, or the one pump's (A)."""
        return tuple(c.name for c in self.channels) or (DEFAULT_CHANNEL,)
