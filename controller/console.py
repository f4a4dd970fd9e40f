"""The interactive operator console (``pumpctl run``): a plain line-based REPL over a
``Session``, testable by feeding it lines.

Every command prints what happened and then the status line (drug, dose and rate,
infused volume and drug, time until the syringe is empty, alarms with priority). Alarms
are printed the moment the session sees them. A change to a running infusion takes two
commands: ``titrate 12`` (or ``wean``, ``stop``) shows the plan; ``confirm`` executes it
(``confirm override`` when the plan crosses a soft limit). ``estop`` acts at once.

On a bench of several pumps (channels), a command acts on the console's channel (the
first one, or the one ``channel B`` selected) unless it names another with ``@B``
(``start 8 @B``); naming one moves the console to it, as the Python API does. The relay
(``standby B for A overlap``, ``disarm B``), priming (``prime 2 @B line-disconnected``)
and the container change (``container pause``, ``container 50``, ``container resume``)
have their own commands, and ``status`` lists every channel, every drug's total and any
handover under way. A one-pump bench looks exactly as it did before channels existed.

On a bench whose config names a MAP monitor (``[monitor]``), ``loop`` drives the closed
loop (``controller.closed_loop.service.LoopService``): ``loop engage target=80 min=0.02
max=0.5`` hands the running infusion over, ``loop take-over`` / ``loop hand-back`` move
control between the operator and the loop, ``loop disengage`` ends it, ``loop`` shows its
status. While the loop has control the console refuses the commands that would change the
dose under it (take over first); ``estop`` is never refused, and takes the loop over too.
The status line says the loop's state whenever it is engaged.

Bad input is answered with one line naming the field and what is allowed; nothing the
operator types produces a traceback (an unexpected internal error is logged and reported
in one line, and the console carries on).

On a terminal, ``run_with_status_bar`` keeps the live status in a bottom toolbar
(prompt_toolkit, the ``console`` extra), redrawn every second, so the live view and what
the operator is typing never share a line; alarms and answers print above the prompt.
Without a terminal (a script on stdin) or without prompt_toolkit, the plain ``cmdloop``
serves, and the live status is printed as lines between commands.
"""

from __future__ import annotations

import cmd
import contextlib
import logging
import math
import re
import shlex
import sys
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import IO, Any, get_args

from controller.alarm_desk import unknown_keys_text
from controller.closed_loop.loop import Decision
from controller.closed_loop.service import LOOP_ALARM_KEYS, LoopService, LoopState, LoopView
from controller.errors import BadInput, ControllerError
from controller.machine import State, Trigger
from controller.plan_executor import ConfirmationRequired, PendingChange, PlanChanged, StepResult
from controller.planner import format_duration
from controller.session import Session
from controller.status_line import alarm_text, bench_lines, channel_line, sorted_alarms
from safety.kernel.model import RelayStrategy
from safety.rules import num
from safety.status import AlarmView, ChannelView, HandoverView, Snapshot

log = logging.getLogger("controller.console")

BANNER = (
    "pumpctl operator console - research bench only, NOT a certified medical device.\n"
    "Type help for the commands. Changes to a running infusion need confirm; estop stops "
    "at once."
)

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0}
_RUNNING = (State.INFUSING, State.TITRATING, State.WEANING)
_STRATEGIES: tuple[str, ...] = get_args(RelayStrategy)
#: the words that say a prime's line is off the patient (what is pushed out is wasted)
_LINE_OFF = ("line-disconnected", "--line-disconnected")
#: ``loop`` sub-commands, each with the spellings an operator may type
_LOOP_WORDS = {
    "status": "status",
    "engage": "engage",
    "take-over": "take-over",
    "takeover": "take-over",
    "take_over": "take-over",
    "hand-back": "hand-back",
    "handback": "hand-back",
    "hand_back": "hand-back",
    "disengage": "disengage",
}
_LOOP_OPTIONS = ("target", "band", "min", "max")
#: the loop's modes in which it, not the operator, changes the dose
_LOOP_IN_CONTROL = (LoopState.RUNNING, LoopState.SUSPENDED)
#: the machine's triggers that send a dose request (start, a plan's steps, a stop)
_DOSE_TRIGGERS = (Trigger.START, Trigger.TITRATE_TO, Trigger.WEAN, Trigger.STOP)


def parse_duration(text: str) -> float:
    """'30 s', '10 min', '2 h', '1.5h' -> seconds (clinical)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise BadInput("duration", f"{text.strip()!r}: give a number and a unit: s, min or h")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= 7 * 24 * 3600:
        raise BadInput("duration", f"{text.strip()!r} is outside (0 s, 7 days]")
    return seconds


class Console(cmd.Cmd):
    """``wait`` lets clinical time pass: ``advance(seconds)`` when given (virtual clocks),
    otherwise a real sleep while the session's service thread does the work.

    ``loop``: the bench's closed loop (None: no monitor configured). On a virtual clock
    ``wait`` services it between slices of ``loop.poll_s``; otherwise its own thread
    does (``LoopService.run_in_background``)."""

    def __init__(
        self,
        session: Session,
        *,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        advance: Callable[[float], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        echo: bool = False,
        loop: LoopService | None = None,
    ) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.use_rawinput = stdin is None
        self.session = session
        self._advance = advance
        self._sleep = sleep
        self._echo = echo
        self.loop = loop
        self._print_lock = threading.Lock()
        self._last_live: tuple[object, ...] | None = None
        self._unsubscribe = session.subscribe_alarms(self._on_alarm)
        self.stopped = False
        #: the channel the operator last saw the console on (a handover moves it)
        self._channel_seen = session.channel

    # ------------------------------------------------------------------ loop plumbing
    @property  # cmd.Cmd reads self.prompt before each line
    def prompt(self) -> str:
        snapshot = self.session.snapshot
        where = ""
        if snapshot is not None and len(snapshot.channels) > 1:
            where = f" @{self.session.channel or snapshot.channels[0].name}"
        return f"pumpctl [{self.session.state.value}{where}]> "

    @prompt.setter
    def prompt(self, value: str) -> None:
        pass  # the prompt always shows the current state

    def say(self, text: str) -> None:
        with self._print_lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def precmd(self, line: str) -> str:
        if self._echo and line != "EOF":
            self.say(line)
        return line

    def onecmd(self, line: str) -> bool:
        try:
            return bool(super().onecmd(line))
        except ControllerError as exc:
            self.say(f"error: {exc.message}")
        except Exception as exc:  # never a traceback at the operator
            log.exception("console command %r failed", line)
            self.say(f"internal error ({type(exc).__name__}: {exc}); nothing else was done")
        return False

    def postcmd(self, stop: bool, line: str) -> bool:
        word = line.strip().split(" ", 1)[0].lower()
        if word not in ("wait", ""):  # the operator's own command moved it, if anything
            self._channel_seen = self.session.channel
        if not stop and word not in ("", "help", "?", "status", "history", "plan", "EOF"):
            self._say_handover()
            self.show_status()
        return stop

    def _say_handover(self) -> None:
        """Say so when the console's channel changed without the operator: the safety
        process handed the infusion over and the session followed it."""
        now = self.session.channel
        if now == self._channel_seen:
            return
        before, self._channel_seen = self._channel_seen, now
        snapshot = self.session.snapshot
        first = snapshot.channels[0].name if snapshot is not None and snapshot.channels else ""
        self.say(
            f"the infusion was handed over from channel {before or first} to {now or first}: "
            f"the console now works on channel {now or first}"
        )

    def emptyline(self) -> bool:
        return False  # never repeat the last command

    def default(self, line: str) -> None:
        word = line.split(" ", 1)[0]
        self.say(f"error: unknown command {word!r}; type help for the list")

    def close(self) -> None:
        self._unsubscribe()

    # ------------------------------------------------------------------ output
    def show_status(self) -> None:
        if self.session.snapshot is None:
            return
        self.say(self._status_text())

    def _status_text(self) -> str:
        """The session's status line, with the loop's state while it is engaged."""
        return self.session.status_line(loop=self._loop_summary())

    def _loop_summary(self) -> str | None:
        if self.loop is None:
            return None
        view = self.loop.view
        if view.state is LoopState.OFF or view.settings is None:
            return None
        s = view.settings
        words = {
            LoopState.RUNNING: "loop running",
            LoopState.SUSPENDED: "loop SUSPENDED (rate held)",
            LoopState.MANUAL: "loop taken over (you have control)",
        }
        text = f"{words[view.state]}: MAP target {s.target_mmhg:g}+-{s.band_mmhg:g}"
        if view.map_mmhg is not None:
            text += f", now {view.map_mmhg:.0f}"
        return text + " mmHg"

    def live_tick(self) -> None:
        """Print the status line when something an operator watches has changed (called
        from a background thread in real time; cheap: no I/O)."""
        snapshot = self.session.snapshot
        if snapshot is None:
            return
        key = (
            self.session.state,
            snapshot.dose,
            snapshot.rate_ml_h,
            tuple((a.key, a.acknowledged, a.active) for a in self.session.alarms()),
            self.session.active_plan is not None,
            self.session.channel,
            tuple((c.name, c.role, c.running, c.rate_ml_h) for c in snapshot.channels),
            snapshot.handover,
            self.loop.view.state if self.loop is not None else None,
        )
        if key != self._last_live:
            self._last_live = key
            self._say_handover()
            self.show_status()

    def status_bar(self) -> str:
        """The bottom toolbar's text: the status line, or why there is none yet."""
        if self.session.snapshot is None:
            return "(no status from the safety process yet)"
        try:
            return self._status_text()
        except Exception as exc:  # the toolbar must never break the prompt
            return f"(status unavailable: {type(exc).__name__})"

    def _on_alarm(self, alarm: AlarmView) -> None:
        self.say(f"!! ALARM {alarm_text(alarm, scoped=self._several())}")

    def _show_pending(self, pending: PendingChange) -> None:
        self.say(pending.describe())
        extra = (
            " (this plan crosses a soft limit: confirm override)"
            if (pending.needs_soft_confirmation)
            else ""
        )
        self.say(f"type confirm to execute, cancel to drop it{extra}")

    def _show_results(self, results: tuple[StepResult, ...]) -> None:
        for result in results:
            verdict = result.outcome.verdict
            word = "accepted" if verdict.accepted else "REFUSED"
            self.say(f"step {result.step.index}: {word}: {verdict.message}")

    # ------------------------------------------------------------------ commands
    def do_program(self, arg: str) -> None:
        """program DRUG CONCENTRATION DILUENT [weight=KG] [therapy=T] [profile=P] [@CH]
        Load a program, e.g.: program norepinephrine 4 mg/250 mL D5W
        (the library must allow the drug, concentration and diluent). @CH: on channel CH
        of a bench of several pumps (the console moves to it)."""
        self._load(arg, reprogram=False)

    def do_reprogram(self, arg: str) -> None:
        """reprogram DRUG CONCENTRATION DILUENT [weight=KG] [therapy=T] [profile=P] [@CH]
        Change the program; while infusing only the same drug, concentration and diluent
        (after a patient update or a library change); anything else: stop first."""
        self._operator_has_control("reprogram")
        self._load(arg, reprogram=True)

    def do_patient(self, arg: str) -> None:
        """patient | patient new|update PROFILE [weight=KG] confirm
        Without arguments: who the limits protect. 'new' admits another patient: every
        drug's history starts afresh, so it needs 'confirm' and nothing may infuse.
        'update' corrects this patient's profile or weight (also 'confirm'); the limits
        in force before keep applying until their windows pass."""
        words = arg.split()
        if not words:
            patient = self.session.status().patient
            if patient is None:
                self.say("no patient yet: the first program admits one with its profile and weight")
                return
            shown = f", {num(patient.spec.weight_kg)} kg" if patient.spec.weight_kg else ""
            self.say(f"patient {patient.id}: {patient.spec.profile}{shown} ({patient.how})")
            return
        action, rest = words[0].lower(), words[1:]
        if action not in ("new", "update"):
            raise BadInput(
                "patient", f"{words[0]!r}: use 'patient', 'patient new ...' or 'patient update ...'"
            )
        confirm = bool(rest) and rest[-1].lower() == "confirm"
        if confirm:
            rest = rest[:-1]
        weight: str | None = None
        profile_words = []
        for word in rest:
            key, eq, value = word.partition("=")
            if eq and key.lower() == "weight":
                weight = value
            elif eq:
                raise BadInput("patient", f"unknown option {key!r}; allowed: weight")
            else:
                profile_words.append(word)
        if len(profile_words) != 1:
            raise BadInput(
                "patient", f"give one profile, e.g. patient {action} adult_icu weight=70 confirm"
            )
        act = self.session.admit_patient if action == "new" else self.session.update_patient
        outcome = act(profile_words[0], weight, confirm=confirm)
        self.say(outcome.verdict.message)

    def do_start(self, arg: str) -> None:
        """start DOSE [override] [@CH]   e.g. start 8   or   start 8 mcg/min @B
        Start at DOSE (in the program's dose unit). 'override' confirms a soft limit.
        Beside another channel giving the same drug, the start is a rise of the
        patient's total, judged as such."""
        self._operator_has_control("start")
        arg, channel = self._take_channel(arg, "start")
        dose, override = _dose_and_flag(arg, "start")
        outcome = self.session.start(dose, confirm_soft_limits=override, channel=channel)
        self.say(outcome.verdict.message)
        for finding in outcome.verdict.findings:
            self.say(f"  {finding.message}")

    def do_titrate(self, arg: str) -> None:
        """titrate DOSE [@CH]   e.g. titrate 12
        Plan the steps to DOSE (nothing is sent); then confirm (or cancel)."""
        self._operator_has_control("titrate")
        arg, channel = self._take_channel(arg, "titrate")
        dose, _ = _dose_and_flag(arg, "titrate", flag=None)
        self._show_pending(self.session.titrate_to(dose, channel=channel))

    def do_wean(self, arg: str) -> None:
        """wean [DOSE] [@CH]
        Plan a gradual fall to DOSE; without DOSE, wean to the stop threshold and stop.
        Then confirm (or cancel)."""
        self._operator_has_control("wean")
        arg, channel = self._take_channel(arg, "wean")
        dose = arg.strip() or None
        self._show_pending(self.session.wean(dose, channel=channel))

    def do_stop(self, arg: str) -> None:
        """stop [@CH]
        Plan the stop: a wean-only drug (norepinephrine) is weaned to its stop threshold
        first (on the patient's total: beside another channel of the drug, one channel
        may stop when the total stays within the rule). Then confirm (or cancel). estop
        stops at once."""
        self._operator_has_control("stop")
        arg, channel = self._take_channel(arg, "stop")
        _no_args(arg, "stop")
        self._show_pending(self.session.stop(channel=channel))

    def do_confirm(self, arg: str) -> None:
        """confirm [override]
        Execute the pending change. 'override' also confirms a soft-limit crossing."""
        self._operator_has_control("confirm")
        word = arg.strip().lower()
        if word not in ("", "override"):
            raise BadInput("confirm", f"{arg.strip()!r}: confirm takes nothing or 'override'")
        pending = self.session.pending
        if pending is None:
            self.say("nothing to confirm (plan a change with titrate, wean or stop)")
            return
        try:
            results = pending.confirm(soft_limits=word == "override")
        except PlanChanged as exc:
            self.say(exc.message)
            self.say("type confirm to execute the new plan, cancel to drop it")
            return
        except ConfirmationRequired as exc:
            self.say(f"not confirmed: {exc.message}")
            return
        self._show_results(results)
        plan = self.session.active_plan
        if plan is not None:
            self.say(
                f"plan running: {len(plan.steps)} steps over {format_duration(plan.duration_s)}"
            )

    def do_cancel(self, arg: str) -> None:
        """cancel
        Drop the pending change (nothing was sent)."""
        _no_args(arg, "cancel")
        if self.session.pending is None:
            self.say("nothing pending")
            return
        self.session.cancel_pending()
        self.say("pending change dropped")

    def do_estop(self, arg: str) -> None:
        """estop
        Emergency stop: the pump (every pump of the bench) stops now and is interlocked.
        Never refused. An engaged closed loop is taken over as well."""
        outcome = self.session.emergency_stop("console")
        self.say(outcome.verdict.message)
        if self.loop is not None and self.loop.view.state in _LOOP_IN_CONTROL:
            # after the stop, never before it: the loop's lock may wait for a step in flight
            with contextlib.suppress(ControllerError):  # taken over meanwhile (a failure)
                self.loop.take_over("emergency stop")
            self.say("closed loop taken over (emergency stop): it sends nothing more")

    def do_ack(self, arg: str) -> None:
        """ack [KEY ...]
        Acknowledge alarms (all of them, or the keys given). A key acknowledges that
        alarm on every channel; CHANNEL/KEY (e.g. B/pump:occlusion) on one. A key that
        names no alarm is answered with the keys that can be acknowledged; the others
        given with it are acknowledged."""
        keys = tuple(arg.split()) or None
        unknown = self.session.unknown_alarm_keys(keys) if keys is not None else ()
        known = tuple(k for k in keys or () if k not in unknown)
        if not unknown or not known:
            # every key known; or none, which the session refuses naming the known ones
            outcome = self.session.acknowledge(keys)
            self.say(
                outcome.verdict.message if outcome is not None else "controller alarms acknowledged"
            )
            return
        listed = self.session.acknowledgeable()
        outcome = self.session.acknowledge(known)
        said = outcome.verdict.message if outcome is not None else "controller alarms acknowledged"
        self.say(f"{said}: {', '.join(known)}")
        self.say(f"not acknowledged: {unknown_keys_text(unknown, listed)}")

    def do_resume(self, arg: str) -> None:
        """resume
        End a plan at the current dose, or leave hold by re-attaching to the safety
        process (never changes the rate)."""
        _no_args(arg, "resume")
        state = self.session.resume()
        self.say(f"now {state.value}")

    def do_status(self, arg: str) -> None:
        """status
        The status line, every alarm, and any pending or running plan. On a bench of
        several pumps also every channel (role, container left, time to empty, dose,
        rate), every drug (total dose, amount given and its cap, next handover) and any
        handover under way."""
        _no_args(arg, "status")
        snapshot = self.session.status()
        self.show_status()
        if len(snapshot.channels) > 1:
            self._show_bench(snapshot)
        for alarm in sorted_alarms(self.session.alarms()):
            self.say(f"  alarm: {alarm_text(alarm, scoped=self._several())}")
        if self.session.pending is not None:
            self.say("  pending (not confirmed):")
            self.say(_indent(self.session.pending.describe()))
        plan = self.session.active_plan
        if plan is not None:
            self.say("  running plan:")
            self.say(_indent(plan.describe()))
        if self.loop is not None and self.loop.view.state is not LoopState.OFF:
            for line in self._loop_lines(self.loop.view):
                self.say(f"  {line}")
        self.say(f"  allowed now: {self._allowed_now(snapshot)}")

    def _allowed_now(self, snapshot: Snapshot) -> str:
        """What the operator can do on the console's channel now, and why not more.

        The machine knows the infusion's state, not the relay's: the safety process
        refuses every dose request on a channel it is handing over (and on the others
        giving the same drug), on an armed standby, a priming channel and one paused for
        a container change, and a program on a standby or a priming channel (``_relay_busy``
        and ``_load_program`` in ``safety.kernel.decide``). Offering those would send the
        operator into a refusal; the relay's own commands are what is left to do."""
        allowed = [t.value for t in self.session.machine.allowed_triggers()]
        view = snapshot.channel(self.session.channel)
        refused: tuple[Trigger, ...] = ()
        more: list[str] = []
        why = ""
        handover = snapshot.handover
        if view is not None and handover is not None and _in_handover(snapshot, view, handover):
            refused = _DOSE_TRIGGERS
            why = (
                f"the safety process is handing the infusion over from channel "
                f"{handover.from_channel} to {handover.to_channel}: no dose change until it ends"
            )
        elif view is not None and view.role == "standby":
            refused = (*_DOSE_TRIGGERS, Trigger.PROGRAM, Trigger.REPROGRAM)
            more = [f"disarm {view.name}"]
            why = (
                f"channel {view.name} is armed as the standby of channel {view.standby_for}: "
                "it takes no orders until disarmed"
            )
        elif view is not None and view.role == "priming":
            refused = (*_DOSE_TRIGGERS, Trigger.PROGRAM, Trigger.REPROGRAM)
            why = f"channel {view.name} is priming to waste: no orders until the prime ends"
        elif view is not None and view.role == "paused":
            refused = _DOSE_TRIGGERS
            more = ["container VOLUME", "container resume"]
            why = (
                f"channel {view.name} is paused for a container change: say what the new one "
                "holds, then resume it"
            )
        words = [word for word in allowed if word not in refused] + more
        text = ", ".join(words) or "nothing"
        return f"{text} ({why})" if why else text

    def do_plan(self, arg: str) -> None:
        """plan DOSE | plan stop  [@CH]
        Show the plan to DOSE (or the stop plan) without changing anything."""
        arg, channel = self._take_channel(arg, "plan")
        if channel is not None:
            self.session.select_channel(channel)
        text = arg.strip()
        if not text:
            raise BadInput("dose", "give a dose (plan 12) or 'stop' (plan stop)")
        plan = self.session.plan(None if text.lower() == "stop" else text)
        self.say(plan.describe())

    def do_history(self, arg: str) -> None:
        """history [@CH]
        The rate history the safety process verified (clinical time before now): the
        patient's total of the channel's drug, as a rate of the channel's solution."""
        arg, channel = self._take_channel(arg, "history")
        _no_args(arg, "history")
        if channel is not None:
            self.session.select_channel(channel)
        points = self.session.history()
        snapshot = self.session.snapshot
        now = snapshot.clinical_time if snapshot is not None else 0.0
        if not points:
            self.say("no history yet")
            return
        for p in points:
            dose = f"{num(p.dose)} {p.unit}" if p.dose is not None else "-"
            ago = format_duration(now - p.start)
            self.say(f"  {'-' + ago:>10}  {num(p.rate_ml_h):>8} mL/h  {dose:<22} {p.cause}")

    def do_wait(self, arg: str) -> None:
        """wait DURATION   e.g. wait 10 min
        Let clinical time pass (planned steps are sent when due)."""
        seconds = parse_duration(arg)
        if self._advance is not None and self.loop is not None:
            # a virtual clock: the loop is read and decides between slices, as its
            # thread would do it in real time
            left = seconds
            while left > 1e-9:
                piece = min(left, self.loop.poll_s)
                self._advance(piece)
                self.session.service()
                self.loop.service()
                left -= piece
        elif self._advance is not None:
            self._advance(seconds)
        else:
            sleep = self._sleep or _sleep
            sleep(self.session.real_seconds(seconds))
        self.session.service()

    # ------------------------------------------------------------------ channels
    def do_channel(self, arg: str) -> None:
        """channel [CH]
        Without CH: the bench's channels and which one the console works on. With CH:
        work on channel CH from now on (not while a change is planned on this one)."""
        words = arg.split()
        if len(words) > 1:
            raise BadInput("channel", f"give one channel name, e.g. channel B (got {arg!r})")
        if not words:
            snapshot = self.session.status()
            self._show_bench(snapshot)
            return
        name = self._known_channel(words[0].removeprefix("@"))
        self._loop_keeps_channel(name)
        self.session.select_channel(name)
        self.say(f"working on channel {name}")

    def do_standby(self, arg: str) -> None:
        """standby CH for ACTIVE [quick|overlap]   e.g. standby B for A overlap
        Arm CH as the relief of ACTIVE: when ACTIVE's container nears empty the safety
        process hands the infusion over itself (with the controller dead, too). CH must
        hold the same drug at the same concentration and diluent, be primed and stand
        still. quick (default): start CH at ACTIVE's rate, then stop ACTIVE; overlap:
        start CH early and bring ACTIVE down as CH's flow comes up."""
        words = [w.removeprefix("@") for w in arg.split()]
        if len(words) not in (3, 4) or words[1].lower() != "for":
            raise BadInput(
                "standby",
                f"give: standby CHANNEL for ACTIVE [{'|'.join(_STRATEGIES)}], "
                "e.g. standby B for A overlap",
            )
        strategy = words[3].lower() if len(words) == 4 else "quick"
        if strategy not in _STRATEGIES:
            raise BadInput(
                "strategy", f"{words[3]!r} is not a relay strategy; one of {', '.join(_STRATEGIES)}"
            )
        standby, active = self._known_channel(words[0]), self._known_channel(words[2])
        if standby == active:
            raise BadInput("standby", f"channel {standby} cannot relieve itself")
        outcome = self.session.arm_standby(standby, active, strategy)  # type: ignore[arg-type]
        self.say(outcome.verdict.message)

    def do_disarm(self, arg: str) -> None:
        """disarm CH
        Channel CH is no longer a standby: no handover to it will happen."""
        words = arg.split()
        if len(words) != 1:
            raise BadInput("disarm", "give the standby channel, e.g. disarm B")
        name = self._known_channel(words[0].removeprefix("@"))
        self.say(self.session.disarm_standby(name).verdict.message)

    def do_newpump(self, arg: str) -> None:
        """newpump [CH]   e.g. newpump A
        The pump of channel CH (on a one-pump bench: its pump) was replaced on purpose:
        the next pump to name itself on its port is taken as the channel's own. Until then
        the safety process refuses a pump that names itself otherwise than the one it
        recorded (after an unplug, a restart or a reboot: ports may swap), and sends it
        nothing. On a bench of several pumps the channel is always named."""
        words = arg.split()
        names = self._channels()
        if len(words) > 1 or (not words and len(names) > 1):
            raise BadInput("newpump", "give the channel whose pump was replaced, e.g. newpump A")
        name = self._known_channel(words[0].removeprefix("@")) if words else None
        self.say(self.session.accept_pump(name).verdict.message)

    def do_prime(self, arg: str) -> None:
        """prime VOLUME [@CH] line-disconnected   e.g. prime 2 @B line-disconnected
        Purge VOLUME mL through a stopped channel to take up the pump's slack (an
        unprimed syringe can take many minutes to deliver at low rates). What it pushes
        out goes to waste: the line must NOT be connected to the patient, and the
        command says so with line-disconnected."""
        arg, channel = self._take_channel(arg, "prime")
        words = arg.split()
        disconnected = bool(words) and words[-1].lower() in _LINE_OFF
        if disconnected:
            words = words[:-1]
        if words and words[-1].lower() == "ml":
            words = words[:-1]
        if len(words) != 1:
            raise BadInput("prime", "give the volume in mL, e.g. prime 2 @B line-disconnected")
        volume = _volume(words[0], "volume")
        if not disconnected:
            raise BadInput(
                "prime",
                "a prime pushes drug out of the line: disconnect it from the patient and "
                f"say so: prime {words[0]}{f' @{channel}' if channel else ''} "
                "line-disconnected",
            )
        name = self._channel_or_focus(channel)
        outcome = self.session.prime(volume, name, confirm_line_disconnected=True)
        self.say(outcome.verdict.message)

    def do_container(self, arg: str) -> None:
        """container [@CH] | container pause [@CH] | container VOLUME [@CH]
        [concentration=C] | container resume [@CH]
        The container change on one pump (no standby): 'pause' stops the channel for a
        new syringe or bag (a bounded gap, alarmed when it runs over, counted by the wean
        rule); 'container 50' says the new one holds 50 mL (concentration="8 mg/250 mL"
        when its label differs from the program's: the channel must then be
        re-programmed); prime it (prime 2 line-disconnected), then 'resume' runs it again
        at the rate it ran before. Without a word: the channel's container."""
        arg, channel = self._take_channel(arg, "container")
        try:
            tokens = shlex.split(arg)
        except ValueError as exc:
            raise BadInput("container", f"cannot read the line: {exc}") from None
        name = self._channel_or_focus(channel)
        if not tokens:
            snapshot = self.session.status()
            view = snapshot.channel(name)
            if view is not None:
                self.say(channel_line(view, snapshot.clinical_time).strip())
            return
        word = tokens[0].lower()
        if word in ("pause", "resume"):
            if len(tokens) > 1:
                raise BadInput("container", f"container {word} takes only a channel (@B)")
            if word == "pause":
                outcome = self.session.pause_for_container_change(name)
            else:
                outcome = self.session.resume_after_container_change(name)
            self.say(outcome.verdict.message)
            return
        concentration: str | None = None
        words = []
        for token in tokens:
            key, eq, value = token.partition("=")
            if eq and key.lower() in ("concentration", "conc"):
                concentration = value.strip() or None
            elif eq:
                raise BadInput("container", f"unknown option {key!r}; allowed: concentration")
            else:
                words.append(token)
        if words and words[-1].lower() == "ml":
            words = words[:-1]
        if len(words) != 1:
            raise BadInput(
                "container",
                "use: container pause | container VOLUME [concentration=C] | container "
                "resume (each with an optional @CHANNEL)",
            )
        volume = _volume(words[0], "container volume")
        outcome = self.session.container_changed(volume, name, concentration)
        self.say(outcome.verdict.message)

    # ------------------------------------------------------------------ closed loop
    def do_loop(self, arg: str) -> None:
        """loop [status] | loop engage target=MMHG [band=MMHG] min=DOSE max=DOSE [override]
        | loop take-over | loop hand-back | loop disengage
        The closed loop on the bench's MAP monitor ([monitor] in the bench config).
        'engage' hands the running infusion to it (no plan pending or running): it keeps
        the MAP within target +- band (default 5 mmHg) with doses between min and max (in
        the program's dose unit), every change an ordinary request to the safety process;
        'override' lets it cross the therapy's soft limits (that is the confirmation each
        such request carries). 'take-over' gives you control at once (the loop sends
        nothing more); 'hand-back' returns it to the loop; 'disengage' ends the loop.
        Without a word: the loop's mode, last MAP, dose, last decision and alarms."""
        loop = self._require_loop()
        words = arg.split()
        action = _LOOP_WORDS.get(words[0].lower()) if words else "status"
        if action is None:
            raise BadInput(
                "loop",
                f"{words[0]!r}: use loop, loop engage ..., loop take-over, loop hand-back "
                "or loop disengage",
            )
        rest = words[1:]
        if action != "engage" and rest:
            raise BadInput("loop", f"loop {action} takes no arguments (got {' '.join(rest)!r})")
        if action == "status":
            for line in self._loop_lines(loop.view):
                self.say(line)
        elif action == "engage":
            self._loop_engage(loop, rest)
        elif action == "take-over":
            loop.take_over()
            self.say(
                "you have control: the loop sends nothing more (it keeps reading the MAP); "
                "use the ordinary commands, loop hand-back to give it back"
            )
        elif action == "hand-back":
            loop.hand_back()
            self.say("the loop has control again (it keeps what it learned of the patient)")
        else:
            loop.disengage()
            self.say("closed loop disengaged: the rate stays where it is; you have control")

    def _loop_engage(self, loop: LoopService, words: list[str]) -> None:
        override = any(word.lower() == "override" for word in words)
        words = [word for word in words if word.lower() != "override"]
        options: dict[str, str] = {}
        for word in words:
            key, eq, value = word.partition("=")
            key = key.lower()
            if not eq or key not in _LOOP_OPTIONS:
                raise BadInput(
                    "loop",
                    f"{word!r}: give target=MMHG [band=MMHG] min=DOSE max=DOSE [override], "
                    "e.g. loop engage target=80 band=5 min=0.02 max=0.5",
                )
            options[key] = value
        missing = [key for key in ("target", "min", "max") if key not in options]
        if missing:
            raise BadInput(
                missing[0],
                f"loop engage needs {', '.join(f'{m}=' for m in missing)} (e.g. loop engage "
                "target=80 band=5 min=0.02 max=0.5)",
            )
        snapshot = self.session.snapshot
        unit = (snapshot.dose_unit if snapshot is not None else None) or "the program's unit"
        target = _loop_number(options["target"], "target", "mmHg")
        band = _loop_number(options.get("band", "5"), "band", "mmHg")
        low = _loop_dose(options["min"], "min", unit)
        high = _loop_dose(options["max"], "max", unit)
        if not low < high:
            raise BadInput("min", f"min ({low}) must be below max ({high})")
        settings = loop.engage(
            target_mmhg=target,
            band_mmhg=band,
            dose_min=low,
            dose_max=high,
            soft_limits_confirmed=override,
        )
        lowest, highest = settings.band
        soft = "may cross" if override else "stays within"
        self.say(
            f"closed loop engaged: MAP target {settings.target_mmhg:g} mmHg (band "
            f"{lowest:g}-{highest:g}), dose {low}-{high} {unit}, {soft} the soft limits; "
            f"MAP from {loop.source_name}; a decision every {settings.period_s:g} s"
        )
        self.say("loop take-over gives you control at any moment")

    def _loop_lines(self, view: LoopView) -> list[str]:
        """The loop's status for people: mode, MAP, dose, last decision, alarms."""
        lines = []
        s = view.settings
        if view.state is LoopState.OFF or s is None:
            lines.append(
                "closed loop: off (loop engage target=MMHG min=DOSE max=DOSE hands it the "
                "running infusion)"
            )
        else:
            low, high = s.band
            mode = {
                LoopState.RUNNING: "running: it changes the dose",
                LoopState.SUSPENDED: "SUSPENDED: the rate is held",
                LoopState.MANUAL: "taken over: you have control (loop hand-back)",
            }[view.state]
            snapshot = self.session.snapshot
            unit = (snapshot.dose_unit if snapshot is not None else None) or ""
            lines.append(
                f"closed loop {mode}; target {s.target_mmhg:g} mmHg (band {low:g}-{high:g}), "
                f"dose {s.dose_min}-{s.dose_max} {unit}, soft limits "
                f"{'may be crossed' if s.soft_limits_confirmed else 'kept'}"
            )
        if view.suspended_why:
            lines.append(f"  suspended: {view.suspended_why}")
        if view.failure:
            lines.append(f"  stopped by an error: {view.failure}")
        if view.monitor_problem:
            what = "UNUSABLE" if view.monitor_unusable else "NOT connected"
            lines.append(f"  monitor {what}: {view.monitor_problem} (trying again)")
        elif view.map_mmhg is not None:
            lines.append(
                f"  MAP {view.map_mmhg:.1f} mmHg (median of {view.map_samples} valid samples "
                f"in the last {view.map_period_s:g} s) from {view.source}"
            )
        else:
            lines.append(f"  MAP: no valid sample in the last period from {view.source}")
        snapshot = self.session.snapshot
        if snapshot is not None and snapshot.running and snapshot.dose is not None:
            lines.append(
                f"  dose {num(snapshot.dose)} {snapshot.dose_unit or ''} @ "
                f"{num(snapshot.rate_ml_h)} mL/h"
            )
        decision = view.decision
        if decision is not None:
            ago = format_duration(max(0.0, self.session.clinical_now() - decision.time))
            lines.append(f"  last decision ({ago} ago): {_decision_text(decision)}")
        if view.requests:
            lines.append(
                f"  requests sent {view.requests}: {view.accepted} accepted, {view.refused} refused"
            )
        for alarm in sorted_alarms(self.session.alarms()):
            if alarm.key in LOOP_ALARM_KEYS:
                lines.append(f"  alarm: {alarm_text(alarm)}")
        return lines

    def _require_loop(self) -> LoopService:
        if self.loop is None:
            raise ControllerError(
                "no closed loop on this bench: name its MAP monitor in the bench config "
                '([monitor] wire = "tcp://HOST:PORT" or replay = "FILE.csv"; '
                "docs/closed-loop.md)",
                code="no_monitor",
            )
        return self.loop

    def _operator_has_control(self, command: str) -> None:
        """Refuse a dose change while the closed loop has control: two controllers of
        one infusion would undo each other (and the loop suspends under a plan)."""
        if self.loop is not None and self.loop.view.state in _LOOP_IN_CONTROL:
            raise ControllerError(
                f"the closed loop has control of this infusion: loop take-over first, then "
                f"{command} (estop acts at once)",
                code="loop_in_control",
            )

    def _loop_keeps_channel(self, name: str) -> None:
        """The loop works on the console's channel: moving the console would move it."""
        if self.loop is None or self.loop.view.state is LoopState.OFF:
            return
        current = self.session.channel or (self._channels() or [name])[0]
        if name != current:
            raise ControllerError(
                f"the closed loop works on channel {current}: loop disengage before working "
                f"on channel {name}",
                code="loop_in_control",
            )

    def do_quit(self, arg: str) -> bool:
        """quit
        Leave the console. A running infusion continues under the safety process."""
        if self.loop is not None and self.loop.view.state in _LOOP_IN_CONTROL:
            self.say("the closed loop stops with the console: the rate is held where it is")
        if self.session.state in _RUNNING:
            self.say(
                "leaving: the infusion continues at its verified rate under the safety "
                "process; run pumpctl run again to re-attach"
            )
        self.stopped = True
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:  # noqa: N802 - cmd.Cmd's name for end of input
        """Leave at the end of input (Ctrl-D)."""
        self.say("")
        return self.do_quit("")

    # ------------------------------------------------------------------ helpers
    def _load(self, arg: str, *, reprogram: bool) -> None:
        command = "reprogram" if reprogram else "program"
        try:
            tokens = shlex.split(arg)
        except ValueError as exc:
            raise BadInput(command, f"cannot read the line: {exc}") from None
        options = {}
        words = []
        channel = self._channel_of(tokens, command)
        tokens = [t for t in tokens if not t.startswith("@")]
        for token in tokens:
            key, eq, value = token.partition("=")
            if eq:
                options[key.strip().lower()] = value.strip()
            else:
                words.append(token)
        unknown = set(options) - {"weight", "therapy", "profile"}
        if unknown:
            raise BadInput(
                command, f"unknown option {sorted(unknown)[0]!r}; allowed: weight, therapy, profile"
            )
        if len(words) < 3:
            raise BadInput(
                command,
                "give DRUG CONCENTRATION DILUENT, e.g. program norepinephrine 4 mg/250 mL D5W "
                "[weight=70] [therapy=weight_based]",
            )
        drug, diluent, concentration = words[0], words[-1], " ".join(words[1:-1])
        load = self.session.reprogram if reprogram else self.session.program
        outcome = load(
            drug,
            concentration,
            diluent,
            weight_kg=options.get("weight"),
            therapy=options.get("therapy"),
            profile=options.get("profile"),
            channel=channel,
        )
        self.say(outcome.verdict.message)
        for finding in outcome.verdict.findings:
            self.say(f"  {finding.message}")

    def _several(self) -> bool:
        snapshot = self.session.snapshot
        return snapshot is not None and len(snapshot.channels) > 1

    def _channels(self) -> list[str]:
        snapshot = self.session.snapshot or self.session.status()
        return [view.name for view in snapshot.channels]

    def _known_channel(self, name: str) -> str:
        """``name`` when the bench has such a channel; otherwise an error listing them."""
        names = self._channels()
        if name not in names:
            raise BadInput(
                "channel", f"there is no channel {name!r}; channels: {', '.join(names) or 'none'}"
            )
        return name

    def _channel_or_focus(self, channel: str | None) -> str | None:
        """The channel named, else the console's (None: the bench's only one)."""
        if channel is not None:
            return channel
        if self.session.channel is not None:
            return self.session.channel
        names = self._channels()
        return names[0] if names else None

    def _channel_of(self, tokens: list[str], command: str) -> str | None:
        named = [t for t in tokens if t.startswith("@")]
        if not named:
            return None
        if len(named) > 1:
            raise BadInput("channel", f"{command} acts on one channel; got {' '.join(named)}")
        name = self._known_channel(named[0][1:])
        if command not in ("prime", "container"):  # these two leave the console's channel
            self._loop_keeps_channel(name)
        return name

    def _take_channel(self, arg: str, command: str) -> tuple[str, str | None]:
        """``arg`` without its ``@CH`` word, and the (known) channel it names."""
        tokens = arg.split()
        channel = self._channel_of(tokens, command)
        return " ".join(t for t in tokens if not t.startswith("@")), channel

    def _show_bench(self, snapshot: Snapshot) -> None:
        selected = self.session.channel or (snapshot.channels[0].name if snapshot.channels else "")
        for line in bench_lines(snapshot, selected):
            self.say(line)


def run_with_status_bar(
    console: Console,
    intro: str | None,
    *,
    refresh_s: float = 1.0,
    input_: Any = None,
    output: Any = None,
) -> bool:
    """The console on a terminal with the status in a bottom toolbar; False (nothing
    done) when prompt_toolkit is not installed. ``input_``/``output``: prompt_toolkit's
    (tests give a pipe and a dummy output)."""
    try:
        from prompt_toolkit import PromptSession  # noqa: PLC0415 - optional (console extra)
        from prompt_toolkit.patch_stdout import patch_stdout  # noqa: PLC0415
    except ImportError:
        return False
    prompt: PromptSession[str] = PromptSession(
        bottom_toolbar=console.status_bar,
        refresh_interval=refresh_s,
        input=input_,
        output=output,
    )
    with patch_stdout(raw=True):
        console.stdout = sys.stdout  # the patched stream: prints land above the prompt
        if intro:
            console.say(intro)
        while not console.stopped:
            try:
                line = prompt.prompt(console.prompt)
            except KeyboardInterrupt:
                console.say("(interrupted: type estop to stop the pump, quit to leave)")
                continue
            except EOFError:
                line = "EOF"
            line = console.precmd(line)
            stop = console.onecmd(line)
            if console.postcmd(stop, line):
                break
    return True


def _in_handover(snapshot: Snapshot, view: ChannelView, handover: HandoverView) -> bool:
    """Does the handover under way bind ``view``'s channel: one of its two, or another
    giving the same drug (the patient's total moves step by step)?"""
    if view.name in (handover.from_channel, handover.to_channel) or view.role == "handing over":
        return True
    target = snapshot.channel(handover.to_channel)
    drug = target.program.drug if target is not None and target.program is not None else None
    return drug is not None and view.program is not None and view.program.drug == drug


def _dose_and_flag(arg: str, command: str, flag: str | None = "override") -> tuple[str, bool]:
    words = arg.split()
    override = bool(words) and flag is not None and words[-1].lower() == flag
    if override:
        words = words[:-1]
    if not words:
        raise BadInput("dose", f"{command} needs a dose, e.g. {command} 8 (or 8 mcg/min)")
    return " ".join(words), override


def _volume(text: str, field: str) -> Decimal:
    """A volume in mL: a positive number (the safety process judges its range)."""
    try:
        volume = Decimal(text.lower().removesuffix("ml"))
    except InvalidOperation:
        raise BadInput(field, f"{text!r} is not a volume: give mL, e.g. 2 or 2.5") from None
    if not volume.is_finite() or volume <= 0:
        raise BadInput(field, f"{text!r}: a volume is a number of mL above 0")
    return volume


def _loop_number(text: str, field: str, unit: str) -> float:
    try:
        value = float(text.lower().removesuffix(unit.lower()))
    except ValueError:
        raise BadInput(field, f"{text!r} is not a number of {unit}") from None
    if not math.isfinite(value):
        raise BadInput(field, f"{text!r} is not a number of {unit}")
    return value


def _loop_dose(text: str, field: str, unit: str) -> Decimal:
    """A dose of the loop's range, in the program's dose unit (the loop's settings check
    the range)."""
    try:
        dose = Decimal(text)
    except InvalidOperation:
        raise BadInput(field, f"{text!r} is not a dose: give a number in {unit}") from None
    if not dose.is_finite() or dose <= 0:
        raise BadInput(field, f"{text!r}: a dose of the loop's range is above 0 ({unit})")
    return dose


def _decision_text(decision: Decision) -> str:
    """One decision of the loop, for people."""
    seen = "no valid MAP" if decision.map_mmhg is None else f"MAP {decision.map_mmhg:.1f}"
    if decision.reason == "too few samples" and decision.sent is None:
        return f"{seen} from {decision.samples} valid sample(s): too few, the rate is held"
    if decision.sent is not None:
        word = "accepted" if decision.accepted else f"REFUSED ({decision.reason})"
        return f"{seen} mmHg -> dose {num(decision.sent)} sent: {word}"
    if decision.want is None:
        return f"{seen} mmHg: no change needed"
    return f"{seen} mmHg: no change sent (too small, or outside the loop's range or the rules)"


def _no_args(arg: str, command: str) -> None:
    if arg.strip():
        raise BadInput(command, f"{command} takes no arguments (got {arg.strip()!r})")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _sleep(seconds: float) -> None:
    threading.Event().wait(max(0.0, seconds))


__all__ = ["BANNER", "Console", "parse_duration", "run_with_status_bar"]
