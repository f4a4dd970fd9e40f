"""The closed loop with real processes: one emulator process serving a pump and the
patient's monitor on TCP (the patient reads that very pump's delivered flow), the safety
process owning the pump, and the closed-loop controller in this process reading the
monitor over the wire and sending every change through the safety process. A scaled
clinical clock (60x) makes 20 minutes pass in about 20 seconds. The pump is an NE-1000
syringe pump on a pty (4 mg/250 mL), and, in a second run, a volumetric pump: the example
Modbus peristaltic drive over TCP with a bag of the label's standard dilution (4 mg/1000
mL, 4 mcg/mL: four times the volume for the same dose, on the same patient).

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
from hil_tests.harness.pumps import MODBUS_VOLUMETRIC, NE1000, PumpKind
from hil_tests.harness.truth import changes_between, segments
from safety.host.config import load_config
from safety.journal import open_readonly

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

SPEED = 60.0
FLUSH_AT_S, NO_SIGNAL_AT_S, NO_SIGNAL_S = 240.0, 540.0, 100.0
#: the patient's time 0 and the pump's first truth entry, the monitor's sample times and the
#: controller journal's: the same scaled clock, read a few milliseconds apart
TIMESTAMP_SLACK_S = 2.0
PATIENT = (
    f"seed=hil,index=3,sensitivity=2,condition=stable,artefacts=none,"
    f"artefact=flush@{FLUSH_AT_S:g}:6,artefact=no_signal@{NO_SIGNAL_AT_S:g}:{NO_SIGNAL_S:g}"
)


@dataclass(frozen=True)
class Infusion:
    """A pump and what it holds: the program's concentration and the patient's line (the
    same figure in mcg/mL, for the drug that reaches the vein)."""

    pump: PumpKind
    concentration: str
    ug_per_ml: float


INFUSIONS = [
    pytest.param(Infusion(NE1000, "4 mg/250 mL", 16.0), id="ne1000-syringe"),
    pytest.param(Infusion(MODBUS_VOLUMETRIC, "4 mg/1000 mL", 4.0), id="modbus-volumetric-bag"),
]


@dataclass(frozen=True)
class WithPatient(PumpKind):
    """A pump kind whose emulator also serves a patient and the monitor on TCP."""

    patient: str = ""

    def emulator_args(self, *, link: str) -> list[str]:
        return [
            *super().emulator_args(link=link),
            "--patient",
            self.patient,
            "--monitor-tcp",
            "127.0.0.1:0",
        ]


@pytest.mark.parametrize("infusion", INFUSIONS)
def test_closed_loop_through_the_safety_process_on_real_processes(
    make_bench: MakeBench, infusion: Infusion
) -> None:
    base = infusion.pump
    kind = WithPatient(
        **{f.name: getattr(base, f.name) for f in fields(base)},
        patient=f"{PATIENT},drug={infusion.ug_per_ml:g}",
    )
    bench = make_bench(kind, speed=SPEED)
    assert bench.emulator is not None
    where = bench.emulator.wait_line("monitor at").removeprefix("monitor at ").strip()
    session = bench.connect()
    session.program(
        "norepinephrine",
        infusion.concentration,
        "D5W",
        weight_kg=Decimal(70),
        therapy="weight_based",
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
        bench.wait_clinical(origin + 60.0, also=loop.step)  # watch before anything runs
        first_map = loop.filter.median_since(origin)[0]
        session.start(Decimal("0.05"))
        loop.engage()
        bench.wait_clinical(origin + 20 * 60.0, also=loop.step)
    finally:
        source.close()
    report = bench.assert_invariants()
    assert loop.mode is LoopMode.RUNNING
    assert loop.stats.suspensions == 1  # the flush alone suspended nothing
    assert loop.stats.requests > 0 and not loop.stats.refusals
    assert loop.stats.accepted == loop.stats.requests
    last_map = loop.filter.median_since(bench.now() - 120.0)[0]
    assert first_map is not None and last_map is not None and last_map > first_map + 3
    assert set(report.summary.changes_by_cause) <= {"command"}
    # the controller journal has the loop's story; judged on its clinical times, not on
    # when this process happened to look (at 60x a busy machine moves that by minutes)
    loop_entries = [
        (t, p) for kind, t, p in _journal_entries(bench.controller_journal) if kind == "loop"
    ]
    events = [p["event"] for _, p in loop_entries]
    assert events[0] == "engage" and "decision" in events
    # the patient's time 0 is its emulator's start, when the pump's truth log begins
    patient_start = segments(bench.truth())[0].start
    # the start dose ran at the container's concentration: 0.05 mcg/kg/min x 70 kg
    started = next(s for s in segments(bench.truth()) if s.rate_ml_h > 0)
    assert started.rate_ml_h == pytest.approx(0.05 * 70 * 60 / infusion.ug_per_ml, rel=1e-3)
    modes = [(t - patient_start, p.get("dest")) for t, p in loop_entries if p["event"] == "mode"]
    assert [dest for _, dest in modes] == ["running", "suspended", "running"]
    (suspended, _), (resumed, _) = modes[1], modes[2]
    settings = loop.settings
    # suspended once the signal had been gone signal_loss_s (seen at the next read)
    assert (
        NO_SIGNAL_AT_S + settings.signal_loss_s - TIMESTAMP_SLACK_S
        <= suspended
        < NO_SIGNAL_AT_S + NO_SIGNAL_S
    )
    # resumed only after the signal was back and clean for recover_s
    assert resumed >= NO_SIGNAL_AT_S + NO_SIGNAL_S + settings.recover_s - TIMESTAMP_SLACK_S
    # nothing sent while suspended: the pump's delivered flow did not change meanwhile
    assert changes_between(bench.truth(), patient_start + suspended, patient_start + resumed) == []
    # the suspension's alarm, medium, latched until acknowledged
    alarm = next(a for a in session.alarms() if a.key == SUSPENDED_KEY)
    assert alarm.priority == "medium"


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
    loop = [p for kind, _, p in entries if kind == "loop"]
    assert [p["dest"] for p in loop if p["event"] == "mode"][:3] == ["running", "manual", "running"]
    # the loop's own changes: ordinary requests after the hand-over, accepted
    engaged = next(i for i, (_, _, p) in enumerate(entries) if p.get("event") == "engage")
    changes = [p for kind, _, p in entries[engaged:] if kind == "request"]
    assert changes and all(p["body"]["kind"] == "change_dose" for p in changes)
    sent = [p for p in loop if p["event"] == "decision" and p["sent"] is not None]
    assert sent and all(p["accepted"] for p in sent)


def _journal_entries(path: Path) -> list[tuple[str, float, dict[str, Any]]]:
    """The controller journal's entries in order, as (kind, clinical time, payload)."""
    db = open_readonly(path)
    try:
        rows = db.execute("SELECT kind, clinical, payload FROM entries ORDER BY id").fetchall()
    finally:
        db.close()
    return [(kind, clinical, json.loads(payload)) for kind, clinical, payload in rows]
