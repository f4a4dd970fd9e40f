"""``pumpctl demo``, the README's main job, end to end with real processes.

Runs the whole course (NE-1000 emulator on a pty, the safety process, the controller) at a
high clock speed and checks the run's own record: the invariants held on the pump's
ground truth, and the safety journal shows every rate change as a journaled command that
followed an accepted request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from safety.journal_read import read_safety_events
from safety.kernel.model import CommandIssued, RequestDecided, SetRate, StartPump, StopPump

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
    # the course: titrated to 12 mcg/min, never above; an occlusion alarm; weaned to stop
    assert summary["max_dose"] == 12.0 and summary["dose_unit"] == "mcg/min"
    assert any(a["priority"] == "high" for a in summary["alarms"])
    changes = summary["invariants"]["changes"]
    assert changes[-1]["kind"] == "stop" and changes[-1]["cause"] == "command"
    falls = [c for c in changes if c["kind"] == "fall" and c["cause"] == "command"]
    assert len(falls) >= 5  # a gradual wean, not an abrupt stop
    for name in ("safety_journal", "controller_journal", "truth_log"):
        assert Path(summary["files"][name]).exists()

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
