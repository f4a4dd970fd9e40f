"""Every scenario shipped in config/scenarios passes, on the virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.library import DrugLibrary
from tests.scenarios.conftest import SHIPPED
from verification.scenario import load_scenario, run_scenario


def test_the_examples_the_docs_promise_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {
        "rescue-occlusion-wean",
        "occlusion-recovery",
        "refused-orders",
        "weight-based-slip",
        "controller-death-hold",
        "controller-hang-hold",
        "lost-ack-reconciled",
        "cap-24h",
        "emergency-stop",
        "safety-restart",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_passes(path: Path, library: DrugLibrary, run_dir: Path) -> None:
    run, evaluation = run_scenario(path, run_dir, library=library)
    failed = [f"{r.name}: {r.detail}" for r in evaluation.failed]
    assert evaluation.passed, failed
    assert evaluation.truth.ok, evaluation.truth.violations
    assert len(evaluation.results) == len(load_scenario(path).scenario.expect)
    # every action ran, at its time (a one-process run is exact)
    scenario = load_scenario(path).scenario
    assert [a.planned_s for a in run.actions] == [a.at for a in scenario.action]
    assert all(a.at_s == a.planned_s for a in run.actions)
    assert run.mode == "virtual" and run.end == run.t0 + scenario.duration_s
