"""The closed loop with real processes: one emulator process serving an NE-1000 on a pty and
the patient's monitor on TCP (the patient reads that very pump's delivered flow), the
safety process owning the pump, and the closed-loop controller in this process reading the
monitor over the wire and sending every change through the safety process. A scaled
clinical clock (60x) makes 20 minutes pass in about 20 seconds.

The patient has a flush of the arterial line (ignored: not one decision acts on it) and a
monitor without signal for 100 s (the loop suspends, holds the rate, raises its alarm,
resumes by itself). Judged on the pump's ground truth: every safety invariant held; and
on the controller journal: the loop's hand-over, suspension and decisions are there.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from controller.closed_loop.loop import SUSPENDED_KEY, ClosedLoop, LoopMode
from controller.closed_loop.settings import LoopSettings
from drivers.monitors.wire import WireMonitor
from hil_tests.conftest import MakeBench
from hil_tests.harness.pumps import NE1000, PumpKind
from safety.host.config import load_config
from safety.journal import open_readonly

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

SPEED = 60.0
FLUSH_AT_S, NO_SIGNAL_AT_S, NO_SIGNAL_S = 240.0, 540.0, 100.0
PATIENT = (
    f"seed=hil,index=3,sensitivity=2,condition=stable,artefacts=none,"
    f"artefact=flush@{FLUSH_AT_S:g}:6,artefact=no_signal@{NO_SIGNAL_AT_S:g}:{NO_SIGNAL_S:g}"
)


@dataclass(frozen=True)
class WithPatient(PumpKind):
    """The NE-1000 kind, its emulator also serving a patient and the monitor on TCP."""

    patient: str = ""

    def emulator_args(self, *, link: str) -> list[str]:
        return [
            *super().emulator_args(link=link),
            "--patient",
            self.patient,
            "--monitor-tcp",
            "127.0.0.1:0",
        ]


def test_closed_loop_through_the_safety_process_on_real_processes(
    make_bench: MakeBench,
) -> None:
    kind = WithPatient(**{f.name: getattr(NE1000, f.name) for f in fields(NE1000)}, patient=PATIENT)
    bench = make_bench(kind, speed=SPEED)
    assert bench.emulator is not None
    where = bench.emulator.wait_line("monitor at").removeprefix("monitor at ").strip()
    session = bench.connect()
    session.program(
        "norepinephrine", "4 mg/250 mL", "D5W", weight_kg=Decimal(70), therapy="weight_based"
    )
    source = WireMonitor(f"socket://{where}", reply_timeout_s=1.0)
    source.open()
    loop = ClosedLoop(
        session,
        source,
        LoopSettings(soft_limits_confirmed=True, dead_volume_ml=0.5, carrier_ml_h=5.0),
        clock=bench.clock,
    )
    try:
        origin = bench.now()  # the patient's start is the emulator's, within a second
        suspended_seen = False

        def step() -> None:
            nonlocal suspended_seen
            loop.step()
            suspended_seen |= loop.mode is LoopMode.SUSPENDED

        bench.wait_clinical(origin + 60.0, also=step)  # watch before anything runs
        first_map = loop.filter.median_since(origin)[0]
        session.start(Decimal("0.05"))
        loop.engage()
        bench.wait_clinical(origin + NO_SIGNAL_AT_S + NO_SIGNAL_S / 2, also=step)
        assert loop.mode is LoopMode.SUSPENDED, loop.suspended_why
        alarm = next(a for a in session.alarms() if a.key == SUSPENDED_KEY)
        assert alarm.active and alarm.priority == "medium"
        held = session.status().rate_ml_h
        bench.wait_clinical(origin + NO_SIGNAL_AT_S + NO_SIGNAL_S - 10.0, also=step)
        assert session.status().rate_ml_h == held  # nothing sent while suspended
        bench.wait_clinical(origin + 20 * 60.0, also=step)
    finally:
        source.close()
    report = bench.assert_invariants()
    assert suspended_seen
    assert loop.mode is LoopMode.RUNNING  # type: ignore[comparison-overlap]
    assert loop.stats.suspensions == 1  # the flush alone suspended nothing
    assert loop.stats.requests > 0 and not loop.stats.refusals
    assert loop.stats.accepted == loop.stats.requests
    last_map = loop.filter.median_since(bench.now() - 120.0)[0]
    assert first_map is not None and last_map is not None and last_map > first_map + 3
    assert set(report.summary.changes_by_cause) <= {"command"}
    # the controller journal has the loop's story
    loop_entries = [p for kind, p in _journal_entries(bench.controller_journal) if kind == "loop"]
    events = [p["event"] for p in loop_entries]
    assert events[0] == "engage" and "decision" in events
    modes = [p.get("dest") for p in loop_entries if p["event"] == "mode"]
    assert modes == ["running", "suspended", "running"]


CONSOLE_PATIENT = "seed=hil,index=3,sensitivity=1,condition=stable,artefacts=none"
CONSOLE_ENGAGE = "loop engage target=90 band=5 min=0.02 max=0.5 override"


def test_the_operator_console_runs_the_closed_loop_on_real_processes(
    make_bench: MakeBench,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``pumpctl run`` (in this process, as test_run_command runs it) on a bench whose
    config names the emulator's monitor: the console engages the loop, the loop's thread
    reads the MAP over TCP and changes the dose through the safety process, the operator
    takes over and hands back. The console's ``wait`` is real time at 60x."""
    kind = WithPatient(
        **{f.name: getattr(NE1000, f.name) for f in fields(NE1000)}, patient=CONSOLE_PATIENT
    )
    bench = make_bench(kind, speed=SPEED)
    assert bench.emulator is not None
    where = bench.emulator.wait_line("monitor at").removeprefix("monitor at ").strip()
    config = tmp_path / "console.toml"
    config.write_text(f'{bench.config.read_text()}\n[monitor]\nwire = "tcp://{where}"\n')
    assert load_config(config).monitor == {"wire": f"tcp://{where}"}  # what --check says
    script = "\n".join(
        [
            "program norepinephrine 4 mg/250 mL D5W weight=70 therapy=weight_based",
            "start 0.05",
            "wait 1 min",
            CONSOLE_ENGAGE,
            "wait 8 min",
            "loop",
            "loop take-over",
            "wait 1 min",
            "loop hand-back",
            "wait 1 min",
            "loop status",
            "quit",
        ]
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    args = ["run", "--config", str(config), "--no-start", "--quiet"]
    assert main([*args, "--journal", str(bench.controller_journal)]) == 0
    out = capsys.readouterr().out
    print(out)  # shown with a failure: the console's whole transcript
    assert "Traceback" not in out
    assert f"closed loop available: MAP from wire monitor at tcp://{where}" in out
    assert "closed loop engaged: MAP target 90 mmHg (band 85-95)" in out
    assert "loop running: MAP target 90+-5" in out  # the status line
    assert "you have control" in out and "the loop has control again" in out
    assert "closed loop running: it changes the dose" in out.split("> loop status", 1)[1]
    report = bench.assert_invariants()
    assert set(report.summary.changes_by_cause) <= {"command"}
    entries = _journal_entries(bench.controller_journal)
    loop = [p for kind, p in entries if kind == "loop"]
    assert [p["dest"] for p in loop if p["event"] == "mode"][:3] == ["running", "manual", "running"]
    # the loop's own changes: ordinary requests after the hand-over, accepted
    engaged = next(i for i, (kind, p) in enumerate(entries) if p.get("event") == "engage")
    changes = [p for kind, p in entries[engaged:] if kind == "request"]
    assert changes and all(p["body"]["kind"] == "change_dose" for p in changes)
    sent = [p for p in loop if p["event"] == "decision" and p["sent"] is not None]
    assert sent and all(p["accepted"] for p in sent)


def _journal_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The controller journal's entries in order, as (kind, payload)."""
    db = open_readonly(path)
    try:
        rows = db.execute("SELECT kind, payload FROM entries ORDER BY id").fetchall()
    finally:
        db.close()
    return [(kind, json.loads(payload)) for kind, payload in rows]
