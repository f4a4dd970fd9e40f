"""``pumpctl demo``, the README's main job, end to end with real processes.

Runs the whole course (two NE-1000 emulators at two addresses on one pty, the safety
process, the controller) at a high clock speed and checks the run's own record: the
invariants held on the pumps' summed ground truth, the safety process handed the infusion
over from A to B by itself (within +-10 % of the set dose in every 1-minute window of the
delivered drug), and the safety journal shows every operator's rate change as a journaled
command that followed an accepted request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from safety.journal_read import read_safety_events
from safety.kernel.model import (
    CommandIssued,
    HandoverEnded,
    HandoverStarted,
    RequestDecided,
    SetRate,
    StartPump,
    StopPump,
)

#: real processes: part of the hardware-in-the-loop set (``-m hil``)
pytestmark = pytest.mark.hil


@pytest.mark.timeout(180)
def test_demo_runs_and_its_journal_shows_every_rate_change_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--json", "--speed", "900", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["invariants"]["ok"]
    assert summary["invariants"]["violations"] == []
    # the course: titrated to 12 mcg/min; above it only while an overlap step's commands
    # reach the two pumps one after the other (B up a quarter before A comes down)
    assert 12.0 <= summary["max_dose"] <= 12.0 * 1.25 * 1.001  # the pumps round to 0.01 mL/h
    assert summary["dose_unit"] == "mcg/min"
    # one handover, A to B, by the safety process, judged on the delivered flow
    [handover] = summary["handovers"]
    assert (handover["from"], handover["to"], handover["outcome"]) == ("A", "B", "done")
    assert handover["ok"] and abs(handover["worst_deviation"]) <= 0.10
    assert handover["dose"] == 12.0
    # B's prime went to waste, never to the patient; both pumps delivered
    assert summary["channels"]["B"]["wasted_ml"] > 1.9
    assert summary["channels"]["A"]["volume_ml"] > 5 and summary["channels"]["B"]["volume_ml"] > 5
    assert any(a["priority"] == "high" for a in summary["alarms"])
    changes = summary["invariants"]["changes"]
    assert changes[-1]["kind"] == "stop" and changes[-1]["cause"] == "command"
    falls = [c for c in changes if c["kind"] == "fall" and c["cause"] == "command"]
    assert len(falls) >= 5  # a gradual wean, not an abrupt stop
    for name in ("safety_journal", "controller_journal"):
        assert Path(summary["files"][name]).exists()
    assert sorted(summary["files"]["truth_logs"]) == ["A", "B"]
    assert all(Path(p).exists() for p in summary["files"]["truth_logs"].values())

    # every commanded set in the safety journal follows an accepted request (S14 order)
    events = read_safety_events(out / "safety-journal.sqlite")
    last_decision: RequestDecided | None = None
    commanded = 0
    for event in events:
        if isinstance(event, RequestDecided):
            last_decision = event
        elif isinstance(event, CommandIssued) and event.cause == "command":
            assert isinstance(event.action, SetRate | StartPump | StopPump)
            assert last_decision is not None and last_decision.accepted
            commanded += 1
    assert commanded >= len([c for c in changes if c["cause"] == "command"])
    # and at least one order was refused by the safety process itself (the 10x slip)
    assert any(isinstance(e, RequestDecided) and not e.accepted for e in events)
    # the handover's commands are the safety process's own, journaled before they went out
    started = [e for e in events if isinstance(e, HandoverStarted)]
    ended = [e for e in events if isinstance(e, HandoverEnded)]
    assert [(e.from_channel, e.to_channel) for e in started] == [("A", "B")]
    assert [e.outcome for e in ended] == ["done"]
    relay = [e for e in events if isinstance(e, CommandIssued) and e.cause == "relay"]
    assert {e.action.channel for e in relay} == {"A", "B"}
    assert all(started[0].now.clinical <= e.now.clinical <= ended[0].now.clinical for e in relay)
