"""The closed loop from the operator console (``loop`` commands), over the in-process
safety process and a simulated patient's monitor, the clinical clock driven by the
console's ``wait`` (no real time passes)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from controller.closed_loop.loop import SUSPENDED_KEY, LoopMode
from controller.closed_loop.service import FAILED_KEY, LoopService, LoopState
from controller.console import Console
from controller.machine import State
from controller.session import Session
from drivers.monitors import MapSample, MonitorUnavailable
from drivers.monitors.config import parse_monitor
from drivers.monitors.replay import CsvReplay
from drivers.monitors.simulated import SimulatedMonitor
from firmware_bridge.clock import VirtualClock
from firmware_bridge.patient import LineSetup, Patient, Scenario, draw_patient, no_artefacts
from safety.ipc.local import LocalSafety
from safety.library import DrugLibrary
from safety.timing import HostTiming
from tests.controller.conftest import drive
from tests.controller.test_console import output_of

PROGRAM = "program norepinephrine 4 mg/250 mL D5W weight=70 therapy=weight_based"
ENGAGE = "loop engage target=80 band=5 min=0.02 max=0.5 override"


@dataclass
class LoopBench:
    local: LocalSafety
    session: Session
    loop: LoopService

    def console(self, script: str, *, loop: bool = True) -> str:
        """Run ``script`` in a console (a new one each time, on the same bench)."""
        out = io.StringIO()
        console = Console(
            self.session,
            stdin=io.StringIO(script),
            stdout=out,
            advance=lambda seconds: drive(self.local, self.session, seconds, step=5.0),
            echo=True,
            loop=self.loop if loop else None,
        )
        console.cmdloop("console test")
        console.close()
        text = out.getvalue()
        assert "Traceback" not in text
        return text

    def requests(self) -> list[str]:
        store = self.session.journal.journal
        assert store is not None
        return [json.loads(e.payload)["body"]["kind"] for e in store.entries(kinds=["request"])]

    def loop_events(self, event: str) -> list[dict[str, object]]:
        store = self.session.journal.journal
        assert store is not None
        entries = [json.loads(e.payload) for e in store.entries(kinds=["loop"])]
        return [e for e in entries if e["event"] == event]


@pytest.fixture
def bench(library: DrugLibrary) -> Iterator[LoopBench]:
    local = LocalSafety(
        library=library,
        timing=HostTiming(poll_period_s=60, keep_alive_period_s=60, heartbeat_timeout_s=600),
    )
    session = Session.open(local, library, clinical=local.clinical)
    patient = Patient(
        draw_patient("console-loop", 1, 1.0),
        LineSetup(16.0),
        local.pump,
        seed="console-loop",
        scenario=Scenario(artefact_rates=no_artefacts()),
    )
    loop = LoopService(session, SimulatedMonitor(patient), clock=local.clinical)
    assert loop.open() is None
    yield LoopBench(local, session, loop)
    loop.close()
    session.close()
    local.close()


def _infusing(bench: LoopBench) -> None:
    bench.console(f"{PROGRAM}\nstart 0.05\nwait 1 min\nquit\n")
    assert bench.session.state is State.INFUSING


@pytest.mark.timeout(30)
def test_engage_the_loop_changes_the_dose_then_take_over_and_hand_back(
    bench: LoopBench,
) -> None:
    _infusing(bench)
    out = bench.console(f"{ENGAGE}\nwait 10 min\nloop\nquit\n")
    engage = output_of(out, ENGAGE)
    assert "closed loop engaged: MAP target 80 mmHg (band 75-85)" in engage
    assert "dose 0.02-0.5 mcg/kg/min, may cross the soft limits" in engage
    assert "loop running: MAP target 80+-5" in engage  # the status line says who doses
    # the loop decided a change and sent it as an ordinary request, accepted
    assert bench.loop.loop.stats.accepted >= 1
    assert bench.requests() == [
        "load_program",
        "start",
        *["change_dose"] * bench.loop.view.requests,
    ]
    assert bench.session.status().dose != Decimal("0.049981")
    status = output_of(out, "loop")
    assert "closed loop running: it changes the dose" in status
    assert "MAP " in status and "valid samples in the last 30 s" in status
    assert "last decision" in status and "requests sent" in status

    # the operator takes over: the loop sends nothing more; the ordinary commands work
    sent = bench.loop.view.requests
    dose = bench.session.status().dose
    assert dose is not None
    wanted = (dose * Decimal("1.1")).quantize(Decimal("0.0001"))
    titrate = f"titrate {wanted}"
    out = bench.console(f"{titrate}\nloop take-over\n{titrate}\nconfirm\nwait 15 min\nquit\n")
    assert "the closed loop has control of this infusion: loop take-over first" in output_of(
        out, titrate
    )
    assert "you have control" in output_of(out, "loop take-over")
    assert "loop taken over (you have control)" in output_of(out, "loop take-over")
    assert bench.loop.view.requests == sent  # nothing from the loop while taken over
    now = bench.session.status().dose
    assert now is not None and abs(now - wanted) <= Decimal("0.01") * wanted  # the operator's

    # and hands back: the loop decides again
    decided = len(bench.loop_events("decision"))
    out = bench.console("loop hand-back\nwait 10 min\nquit\n")
    assert "the loop has control again" in output_of(out, "loop hand-back")
    assert bench.loop.view.state is LoopState.RUNNING
    modes = [e["dest"] for e in bench.loop_events("mode")]
    assert modes[:3] == ["running", "manual", "running"]
    assert bench.loop_events("engage") and bench.loop_events("hand_back")
    assert len(bench.loop_events("decision")) > decided


def test_disengage_ends_the_loop(bench: LoopBench) -> None:
    _infusing(bench)
    out = bench.console(f"{ENGAGE}\nloop disengage\nloop\nloop hand-back\ntitrate 0.06\nquit\n")
    assert "closed loop disengaged" in output_of(out, "loop disengage")
    assert "closed loop: off" in output_of(out, "loop")
    assert "the loop is not engaged" in output_of(out, "loop hand-back")
    assert "PENDING titrate" in output_of(out, "titrate 0.06")  # the operator's again
    assert "loop running" not in output_of(out, "loop disengage")
    assert bench.loop_events("disengage")


def test_loop_commands_name_what_is_wrong(bench: LoopBench) -> None:
    script = "\n".join(
        [
            "loop take-over",
            PROGRAM,
            "wait 1 min",
            ENGAGE,  # nothing runs yet
            "start 0.05",
            "wait 1 min",
            "loop frobnicate",
            "loop engage",
            "loop engage target=80",
            "loop engage target=abc min=0.02 max=0.5",
            "loop engage target=200 min=0.02 max=0.5",
            "loop engage target=80 band=0.5 min=0.02 max=0.5",
            "loop engage target=80 min=0.5 max=0.02",
            "loop engage target=80 min=-1 max=0.5",
            "loop engage target=80 min=0.02 max=0.5 colour=red",
            "loop engage target=80 min=0.02 max=0.5 override extra",
            "loop status now",
            "titrate 0.1",
            "loop engage target=80 min=0.02 max=0.5",  # the pending change is in the way
            "cancel",
            "loop engage target=80 min=0.02 max=1.5 override",
            "loop engage target=80 min=0.02 max=0.6",
            "loop engage target=80 min=0.02 max=0.4",
            "loop engage target=85 min=0.02 max=0.5",  # engaged already
            "loop hand-back",
            "quit",
        ]
    )
    out = bench.console(script)
    assert "error: the loop is not engaged" in output_of(out, "loop take-over")
    assert "the loop takes over a running infusion" in output_of(out, ENGAGE)
    assert "error: loop: 'frobnicate': use loop" in out
    assert "error: target: loop engage needs target=, min=, max=" in output_of(out, "loop engage")
    assert "error: min: loop engage needs min=, max=" in output_of(out, "loop engage target=80")
    assert "'abc' is not a number of mmHg" in out
    assert "error: target: must be within 40-140, got 200" in out
    assert "error: band: must be within 1-30, got 0.5" in out
    assert "error: min: min (0.5) must be below max (0.02)" in out
    assert "error: min: '-1': a dose of the loop's range is above 0 (mcg/kg/min)" in out
    assert "'colour=red': give target=MMHG" in out
    assert "error: loop: 'extra': give target=MMHG" in output_of(
        out, "loop engage target=80 min=0.02 max=0.5 override extra"
    )
    assert "loop status takes no arguments" in out
    assert "a change is pending confirmation" in out
    assert (
        "error: max: 1.5 mcg/kg/min is above the drug's hard maximum (1.0 mcg/kg/min): give "
        "at most 1.0"
    ) in output_of(out, "loop engage target=80 min=0.02 max=1.5 override")
    assert "or confirm crossing the soft limits (override)" in output_of(
        out, "loop engage target=80 min=0.02 max=0.6"
    )
    assert "stays within the soft limits" in output_of(
        out, "loop engage target=80 min=0.02 max=0.4"
    )
    assert "take-over first to change its settings" in out
    assert "the loop has control already (running)" in output_of(out, "loop hand-back")
    assert out.count("closed loop engaged") == 1


def test_a_bench_without_a_monitor_says_how_to_name_one(bench: LoopBench) -> None:
    out = bench.console("loop\nhelp loop\nquit\n", loop=False)
    assert "no closed loop on this bench: name its MAP monitor in the bench config" in out
    assert "loop engage target=MMHG [band=MMHG] min=DOSE max=DOSE [override]" in out


def test_estop_takes_the_loop_over(bench: LoopBench) -> None:
    _infusing(bench)
    out = bench.console(f"{ENGAGE}\nestop\nwait 2 min\nquit\n")
    assert "closed loop taken over (emergency stop)" in output_of(out, "estop")
    assert bench.loop.view.state is LoopState.MANUAL
    assert bench.session.state is State.EMERGENCY_STOPPED


def test_a_failure_of_the_loop_is_an_alarm_and_the_rate_is_held(
    bench: LoopBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    _infusing(bench)
    bench.console(f"{ENGAGE}\nquit\n")

    def broken() -> None:
        raise RuntimeError("model diverged")

    monkeypatch.setattr(bench.loop.loop, "step", broken)
    rate = bench.session.status().rate_ml_h
    out = bench.console("wait 2 min\nloop\nquit\n")
    assert "!! ALARM MEDIUM controller:closed_loop_failed: closed loop stopped by an error" in out
    assert "RuntimeError: model diverged" in output_of(out, "loop")
    assert bench.loop.view.state is LoopState.MANUAL
    assert bench.session.status().rate_ml_h == rate
    monkeypatch.undo()
    out = bench.console("loop hand-back\nwait 1 min\nquit\n")
    assert "the loop has control again" in out  # from a fresh read of the monitor
    alarm = next(a for a in bench.session.alarms() if a.key == FAILED_KEY)
    assert not alarm.active  # its condition is gone; latched until acknowledged


def test_a_monitor_that_is_not_there_yet_is_tried_again(
    library: DrugLibrary, local: LocalSafety, session: Session
) -> None:
    class Late:
        """A monitor that answers from its third attempt on, and then with no signal."""

        name = "late monitor"
        attempts = 0

        def open(self) -> None:
            self.attempts += 1
            if self.attempts < 3:
                raise MonitorUnavailable("connection refused")

        def poll(self) -> list[MapSample]:
            return [MapSample(0, local.clinical.now(), None)]

        def close(self) -> None:
            pass

    liveness = VirtualClock()
    source = Late()
    loop = LoopService(session, source, clock=local.clinical, liveness=liveness)
    assert loop.open() == "late monitor: connection refused"
    out = io.StringIO()
    console = Console(session, stdin=io.StringIO(""), stdout=out, loop=loop)
    console.onecmd("loop")
    assert "monitor NOT connected: late monitor: connection refused" in out.getvalue()
    loop.service()  # too soon: not tried
    assert source.attempts == 1
    liveness.advance(5.0)
    loop.service()
    assert source.attempts == 2
    liveness.advance(5.0)
    loop.service()
    assert source.attempts == 3 and loop.view.monitor_problem is None
    session.program(
        "norepinephrine", "4 mg/250 mL", "D5W", weight_kg=Decimal(70), therapy="weight_based"
    )
    session.start(Decimal("0.05"))
    console.onecmd(ENGAGE)
    assert "no valid MAP from late monitor yet (last sample: no_signal)" in out.getvalue()
    assert loop.view.state is LoopState.OFF
    console.close()
    loop.close()


def test_a_malformed_replay_file_is_reported_as_unusable_not_as_a_cable(
    session: Session, local: LocalSafety, tmp_path: Path
) -> None:
    """A replay file with a bad row is the data's problem: the console says the monitor is
    unusable (with the file's line), not that it is not connected; it is read again so
    that a corrected file is picked up."""
    trace = tmp_path / "map.csv"
    trace.write_text("time_s,map_mmhg\n0,80\n1,eighty\n", encoding="utf-8")
    loop = LoopService(session, CsvReplay(trace, local.clinical.now), clock=local.clinical)
    problem = loop.open()
    assert problem is not None and "map_mmhg 'eighty' is not a number" in problem
    assert loop.view.monitor_unusable
    out = io.StringIO()
    console = Console(session, stdin=io.StringIO(""), stdout=out, loop=loop)
    console.onecmd("loop")
    assert "monitor UNUSABLE: " in out.getvalue()
    assert "NOT connected" not in out.getvalue()
    console.close()
    loop.close()


def test_closing_the_console_stops_the_loop_and_says_so(bench: LoopBench) -> None:
    _infusing(bench)
    out = bench.console(f"{ENGAGE}\nquit\n")
    assert "the closed loop stops with the console" in output_of(out, "quit")
    bench.loop.close()
    assert bench.loop.loop.mode is LoopMode.MANUAL
    assert (
        bench.loop_events("mode")[-1]["why"] == "taken over: the console closed: the rate is held"
    )
    assert bench.session.state is State.INFUSING  # the infusion goes on at its rate


def test_the_status_bar_shows_a_suspended_loop(bench: LoopBench) -> None:
    _infusing(bench)
    bench.console(f"{ENGAGE}\nquit\n")

    class Silent:
        name = "silent"

        def open(self) -> None:
            pass

        def poll(self) -> list[MapSample]:
            raise MonitorUnavailable("cable out")

        def close(self) -> None:
            pass

    bench.loop.loop.source = Silent()
    out = bench.console("wait 2 min\nstatus\nquit\n")
    assert f"!! ALARM MEDIUM {SUSPENDED_KEY}" in out
    console = Console(bench.session, stdin=io.StringIO(""), stdout=io.StringIO(), loop=bench.loop)
    assert "loop SUSPENDED (rate held)" in console.status_bar()
    status = output_of(out, "status")
    assert "closed loop SUSPENDED: the rate is held" in status
    assert "suspended: monitor link down" in status
    console.close()


def test_a_replayed_trace_is_read_on_the_clinical_clock(
    local: LocalSafety, session: Session, tmp_path: Path
) -> None:
    """The bench config's replay source, as pumpctl run builds it: the trace's rows come
    out as the clinical clock reaches them, and the loop's status shows their median."""
    trace = tmp_path / "map.csv"
    rows = "\n".join(f"{2 * i},{70 + i % 3},{95 + i % 3},{57 + i % 3},88" for i in range(60))
    trace.write_text(f"# a recorded trace\ntime_s,map_mmhg,sys_mmhg,dia_mmhg,hr_bpm\n{rows}\n")
    spec = parse_monitor({"replay": "map.csv"}, tmp_path)
    loop = LoopService(session, spec.source(session.clinical_now), clock=local.clinical)
    assert loop.open() is None
    out = io.StringIO()
    console = Console(
        session,
        stdin=io.StringIO("loop\nwait 1 min\nloop status\nquit\n"),
        stdout=out,
        advance=lambda seconds: drive(local, session, seconds, step=5.0),
        echo=True,
        loop=loop,
    )
    console.cmdloop("console test")
    console.close()
    loop.close()
    text = out.getvalue()
    assert "MAP: no valid sample" in output_of(text, "loop")
    status = output_of(text, "loop status")
    assert "MAP 71.0 mmHg (median of 15 valid samples in the last 30 s)" in status
    assert f"from replay of {trace}" in status
