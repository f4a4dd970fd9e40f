"""``pumpctl demo``: a norepinephrine course that outlives its syringe, narrated.

Rescue start at 8 mcg/min on channel A, orders the safety rules refuse (saline diluent,
a 10x slip), a planned titration to 12 mcg/min; a downstream occlusion with its alarm and
the recovery; a relief syringe on channel B (the wrong concentration refused for a
standby, the right one primed to waste and armed); the safety process's own handover from
A to B before A's part-used syringe empties (overlap: B brought up as A is brought down,
step by step); then a stop that the rules turn into a gradual wean (25 % per 30 min)
before B stops. The relief is armed after the occlusion, and A's syringe holds enough that
the handover comes well after it (about 20 minutes of the clinical clock), so the order of
the story does not depend on how fast the real processes answer.

Everything goes through the real safety process over its socket, and the pumps are two
NE-1000 emulators at two addresses on one pty line, so the real serial path is exercised.
The summary checks the invariants on the pumps' own ground truth (both pumps' delivered
drug, summed), not on what the controller believes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from cli.demo.bench import DemoBench
from controller.connect import connect
from controller.errors import ControllerError, Refused
from controller.machine import State
from controller.planner import Unreachable
from controller.session import Session
from safety.kernel.model import ChangeDose, RelayStrategy
from safety.status import AlarmView

DRUG = "norepinephrine"
CONCENTRATION = "8 mg/250 mL"  # 32 mcg/mL: a full 50 mL syringe lasts about 2 h at 12 mcg/min
#: what the nurse first picks for the relief syringe: refused as a standby
OTHER_CONCENTRATION = "4 mg/250 mL"
DILUENT = "D5W"
#: the relief channel's prime, to waste with its line not yet connected (mL)
PRIME_ML = "2"
#: the relay strategy: B brought up in steps as A comes down (the smoother of the two)
STRATEGY: RelayStrategy = "overlap"


@dataclass
class Timeline:
    """What happened, in clinical time, printed as it happens."""

    clock: Callable[[], float]
    echo: bool = True
    lines: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        t = self.clock()
        with self._lock:
            self.lines.append((t, text))
            if self.echo:
                print(f"{_hhmm(t)}  {text}", flush=True)


def _hhmm(seconds: float) -> str:
    minutes = int(max(0.0, seconds) // 60)
    return f"[{minutes // 60:d}:{minutes % 60:02d}]"


class DemoScript:
    def __init__(self, bench: DemoBench, session: Session, timeline: Timeline) -> None:
        self.bench = bench
        self.session = session
        self.timeline = timeline
        self.alarms_seen: list[AlarmView] = []

    # time ----------------------------------------------------------------------------
    def clinical(self) -> float:
        return self.bench.clock.now()

    def wait_clinical(self, minutes: float) -> None:
        end = self.clinical() + minutes * 60.0
        while (left := end - self.clinical()) > 0:
            time.sleep(min(0.2, self.bench.clock.to_real_seconds(left)))
            self._check_link()

    def wait_for(self, what: str, condition: Callable[[], bool], real_timeout_s: float) -> None:
        deadline = time.monotonic() + real_timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise ControllerError(f"demo: gave up waiting for {what}", code="demo_failed")
            self._check_link()
            time.sleep(0.05)

    def _check_link(self) -> None:
        if self.session.link_down:
            raise ControllerError(
                f"demo: the safety link went down: {self.session.link_down}", code="demo_failed"
            )

    # the course --------------------------------------------------------------------
    def run(self) -> None:
        say = self.timeline.say
        s = self.session
        s.subscribe_alarms(self._on_alarm)

        say(f"program {DRUG} {CONCENTRATION} in NS (saline) ...")
        try:
            outcome = s.program(DRUG, CONCENTRATION, "NS")
            say(f"  unexpected: {outcome.verdict.message}")
        except ControllerError as exc:
            say(f"  REFUSED: {exc.message.removeprefix('refused: ')}")
        outcome = s.program(DRUG, CONCENTRATION, DILUENT)
        say(f"program {DRUG} {CONCENTRATION} in {DILUENT}: {outcome.verdict.message}")

        outcome = s.start("8 mcg/min")
        say(f"start 8 mcg/min (rescue dose): {outcome.verdict.message}")
        self.wait_clinical(5)

        say("order 80 mcg/min (a 10x slip for 8) ...")
        try:
            s.titrate_to("80 mcg/min")
        except Unreachable as exc:
            say(f"  REFUSED by the planner: {exc.message}")
        say("the same slip sent straight to the safety process, bypassing the planner ...")
        outcome = s.order(ChangeDose(Decimal(80)))
        verdict = outcome.verdict
        say(f"  REFUSED by the safety process ({verdict.reason}): {verdict.message}")
        outcome = s.order(ChangeDose(Decimal("8.8")))
        say(f"a 10 % rise sent the same way: {outcome.verdict.message}")
        say("order 0.1 mcg/kg/min (a weight-based dose for a mcg/min program) ...")
        try:
            s.titrate_to("0.1 mcg/kg/min")
        except ControllerError as exc:
            say(f"  REFUSED: {exc.message.removeprefix('refused: ')}")

        change = s.titrate_to("12 mcg/min")
        say("titrate to 12 mcg/min: the plan (step 1 of 2, nothing sent yet):")
        for line in change.describe().splitlines():
            say(f"    {line}")
        change.confirm()
        say("  confirmed (step 2 of 2)")
        self.wait_for("the titration to finish", lambda: s.state is not State.TITRATING, 30.0)
        say(f"titration done: {s.status_line()}")
        self.wait_clinical(5)

        say("FAULT: downstream occlusion (the line is clamped; an NE-1000 reports it as a stall)")
        self.bench.fault("occlusion=on", channel="A")
        self.wait_for(
            "the occlusion alarm",
            lambda: s.state is State.ALARM and not s.status().running,
            30.0,
        )
        say(f"  pump stopped by the occlusion: {s.status_line()}")
        self.wait_clinical(3)
        say("the nurse clears the occlusion and acknowledges the alarms")
        self.bench.fault("occlusion=off", channel="A")
        s.acknowledge()
        self.wait_for("the alarm state to end", lambda: s.state is not State.ALARM, 15.0)
        dose = Decimal(12)
        outcome = s.start(dose)
        say(f"restart at {dose} mcg/min: {outcome.verdict.message}")
        self.set_up_relief()
        self.watch_handover()
        self.wait_clinical(3)

        say("stop the norepinephrine (a vasopressor is weaned, never stopped abruptly):")
        change = s.stop()
        for line in change.describe().splitlines():
            say(f"    {line}")
        change.confirm()
        self.wait_for(
            "the wean to finish", lambda: s.state is State.STOPPED, self._plan_real_s(change)
        )
        say(f"stopped: {s.status_line()}")

    def set_up_relief(self) -> None:
        """Channel B becomes A's standby: the same drug, concentration and diluent (the
        wrong strength is refused), primed to waste with its line not yet connected."""
        say = self.timeline.say
        s = self.session
        say(f"relief syringe on channel B: {DRUG} {OTHER_CONCENTRATION} in {DILUENT} ...")
        s.program(DRUG, OTHER_CONCENTRATION, DILUENT, channel="B")
        try:
            outcome = s.arm_standby("B", "A", STRATEGY)
            say(f"  unexpected: {outcome.verdict.message}")
        except Refused as exc:
            verdict = exc.outcome.verdict
            say(f"  arm B as A's standby: REFUSED ({verdict.reason}): {verdict.message}")
        outcome = s.reprogram(DRUG, CONCENTRATION, DILUENT, channel="B")
        say(f"channel B re-loaded with {CONCENTRATION}: {outcome.verdict.message}")
        self.bench.fault("patient_line=off", channel="B")
        outcome = s.prime(PRIME_ML, "B", confirm_line_disconnected=True)
        say(f"prime B with {PRIME_ML} mL, line not connected: {outcome.verdict.message}")
        self.wait_for("channel B's prime", lambda: self._primed("B"), 30.0)
        self.bench.fault("patient_line=on", channel="B")
        say("  primed (to waste); B's line is connected to the patient")
        outcome = s.arm_standby("B", "A", STRATEGY)
        say(f"arm B as A's standby ({STRATEGY}): {outcome.verdict.message}")
        s.select_channel("A")
        say(f"back on channel A: {s.status_line()}")

    def _primed(self, channel: str) -> bool:
        view = self.session.status().channel(channel)
        return view is not None and view.primed and view.role != "priming"

    def watch_handover(self) -> None:
        """Narrate the safety process's handover from A to B as it happens, and wait
        until the session has followed the infusion to B."""
        say = self.timeline.say
        s = self.session
        view = s.status().channel("A")
        minutes = view.minutes_to_empty if view is not None else None
        if minutes is not None:
            say(f"channel A's syringe empties in about {minutes:.0f} min; B stands by")
        seen: tuple[int, int] | None = None

        def handed_over() -> bool:
            nonlocal seen
            snapshot = s.status()
            handover = snapshot.handover
            if handover is not None and (handover.step, handover.steps) != seen:
                seen = (handover.step, handover.steps)
                a = snapshot.channel(handover.from_channel)
                b = snapshot.channel(handover.to_channel)
                rates = (
                    f"{handover.from_channel} {a.rate_ml_h} mL/h, "
                    f"{handover.to_channel} {b.rate_ml_h} mL/h"
                    if a is not None and b is not None
                    else ""
                )
                say(
                    f"  HANDOVER ({handover.strategy}) step {handover.step}/{handover.steps} "
                    f"by the safety process: {rates}"
                )
            return s.channel == "B" and s.state is State.INFUSING and snapshot.handover is None

        self.wait_for(
            "the handover to channel B", handed_over, self.bench.clock.to_real_seconds(3600) + 30
        )
        say(f"handed over: {s.status_line()}")

    def _plan_real_s(self, change: object) -> float:
        plan = getattr(change, "plan", None)
        total = float(getattr(plan, "duration_s", 6 * 3600.0)) if plan is not None else 6 * 3600.0
        return self.bench.clock.to_real_seconds(total) * 1.5 + 30.0

    def _on_alarm(self, alarm: AlarmView) -> None:
        self.alarms_seen.append(alarm)
        self.timeline.say(f"  ALARM ({alarm.priority}) {alarm.key}: {alarm.message}")


def run_course(bench: DemoBench, timeline: Timeline) -> list[AlarmView]:
    """Start the processes, run the course, always tear everything down."""
    session: Session | None = None
    thread = None
    try:
        bench.prepare()
        pty = bench.start_pump()
        timeline.say(f"NE-1000 emulator serving on {pty} (clinical clock x{bench.speed:g})")
        bench.write_safety_config()
        child = bench.start_safety()
        timeline.say(f"safety process ready (pid {child.pid}); it alone owns the pump")
        session = connect(bench.config, journal=bench.controller_journal, name="pumpctl-demo")
        thread = session.run_in_background(period_s=0.05)
        script = DemoScript(bench, session, timeline)
        script.run()
        return script.alarms_seen
    finally:
        if thread is not None:
            thread.stop()
        if session is not None:
            session.close(hang_up=True)
        bench.close()
