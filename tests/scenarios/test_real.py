"""One scenario with real processes (--real): the NE-1000 emulator on a pty, the safety
process owning it over the real serial path, this controller over the socket, on a scaled
clock. Bounded by pytest-timeout; every process, pty and socket is gone afterwards."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cli.main import main
from safety.library import DrugLibrary
from tests.scenarios.conftest import REPO
from verification.scenario import run_scenario


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.hil
@pytest.mark.timeout(120)
def test_occlusion_recovery_with_real_processes(library: DrugLibrary, run_dir: Path) -> None:
    path = REPO / "config" / "scenarios" / "occlusion-recovery.toml"
    run, evaluation = run_scenario(path, run_dir, real=True, library=library)
    assert run.mode == "real" and run.pump == "ne1000"
    assert evaluation.passed, [f"{r.name}: {r.detail}" for r in evaluation.failed]
    # the NE-1000 reports the occlusion as a stall (its protocol has no occlusion code)
    occlusion = next(r for r in evaluation.results if r.type == "alarm")
    assert "pump:stall" in occlusion.detail
    # the verdicts came from the real processes' records
    assert (run_dir / "pump-truth.jsonl").stat().st_size > 0
    assert run.safety_last_id > 0 and run.controller_last_id > 0
    assert evaluation.truth.changes and evaluation.truth.summary.bolus_count == 1
    # and nothing is left behind
    assert len(run.processes) == 2 and all(_gone(pid) for pid in run.processes)
    # the emulator's pty was on /dev/pts (its number may already serve another process on
    # a shared machine: the processes being gone is what says it was closed)
    assert run.where.startswith("/dev/pts/")
    assert run.runtime_dir is not None and not os.path.exists(run.runtime_dir)


@pytest.mark.hil
@pytest.mark.timeout(60)
def test_a_bench_that_cannot_start_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator cannot start (its interpreter exits at once): exit 1, a sentence."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    path = REPO / "config" / "scenarios" / "occlusion-recovery.toml"
    code = main(["scenario", "run", str(path), "--real", "--json", "--out", str(tmp_path)])
    assert code == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "scenario_not_run"
    assert "the ne1000 emulator did not start" in error["message"]
