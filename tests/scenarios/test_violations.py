"""Scenarios with a deliberate violation fail, and name the expectation that failed.

Two kinds: copies of shipped scenarios whose expectations claim what did not happen (run
through the command line: exit 1, the name in the report and in --json), and runs whose
ground truth is doctored afterwards (a pump that delivered above the hard maximum, a wean
step that fell too far, a rise too large, a bolus past the cap): the rule expectations
judge the doctored truth and fail by name."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from safety.library import DrugLibrary
from tests.scenarios.conftest import REPO, scenario_text
from verification.scenario import RunResult, load_scenario, run_scenario
from verification.scenario.expect import Evaluation, evaluate


def _variant(tmp_path: Path, source: str, old: str, new: str) -> Path:
    text = scenario_text(source)
    assert old in text, f"{source} no longer contains {old!r}"
    path = tmp_path / f"broken-{source}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


# (source, text replaced, replacement, name of the expectation that must fail)
VARIANTS = [
    (
        "refused-orders.toml",
        'action = "10x slip"\ncode = "hard_max_exceeded"',
        'action = "10x slip"\ncode = "step_rise_too_large"',
        "10x slip refused (step_rise_too_large)",
    ),
    (
        "refused-orders.toml",
        'type = "accepted"\naction = "start"',
        'type = "refused"\naction = "start"',
        "start refused",
    ),
    (
        "occlusion-recovery.toml",
        'after = "clamp"\nwithin_s = 60',
        'after = "clamp"\nwithin_s = 5',
        "occlusion alarm, high priority, within a minute",
    ),
    (
        "occlusion-recovery.toml",
        'type = "max_dose"\nvalue = 10',
        'type = "max_dose"\nvalue = 9.5',
        "max dose <= 9.5 (dose unit)",
    ),
    (
        "occlusion-recovery.toml",
        'type = "final"\nstate = "infusing"\ndose = 10',
        'type = "final"\nstate = "infusing"\ndose = 8',
        "at the end: state=infusing, dose=8",
    ),
    (
        "controller-death-hold.toml",
        'name = "the pump was never stopped"\ntype = "no_alarm"\nkey = "pump_stopped"',
        'name = "the pump was never stopped"\ntype = "no_alarm"\nkey = "controller_lost"',
        "the pump was never stopped",
    ),
    (
        "controller-death-hold.toml",
        'at = 12\nmode = "hold"',
        'at = 12\nmode = "infusing"',
        "holding 8 mcg/min while no controller is attached",
    ),
    (
        "weight-based-slip.toml",
        '[[expect]]\ntype = "titration_rule"',
        '[[expect]]\ntype = "max_rate"\nvalue = 20',
        "max rate <= 20 mL/h",
    ),
]


@pytest.mark.parametrize(("source", "old", "new", "name"), VARIANTS, ids=lambda v: str(v)[:30])
def test_violating_copy_exits_1_and_names_the_expectation(
    source: str,
    old: str,
    new: str,
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _variant(tmp_path, source, old, new)
    assert main(["scenario", "run", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {name}:" in out
    assert "result: FAILED, 1 of " in out and repr(name) in out.splitlines()[-1]
    # and the same as JSON
    assert main(["scenario", "run", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["failed"] == [name]
    failed = [e for e in report["expectations"] if not e["passed"]]
    assert [e["name"] for e in failed] == [name] and failed[0]["detail"]


def test_the_unbroken_originals_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    for source in sorted({v[0] for v in VARIANTS}):
        path = REPO / "config" / "scenarios" / source
        assert main(["scenario", "run", str(path), "--json"]) == 0, source
        assert json.loads(capsys.readouterr().out)["passed"] is True


# --------------------------------------------------------------------------- doctored truth


@dataclasses.dataclass
class _Run:
    path: Path
    run: RunResult
    evaluation: Evaluation


@pytest.fixture(scope="module")
def wean_run(tmp_path_factory: pytest.TempPathFactory, library: DrugLibrary) -> Iterator[_Run]:
    """rescue-occlusion-wean, with every ground-truth rule asked for."""
    text = scenario_text("rescue-occlusion-wean.toml")
    for rule in ("titration_rule", "cap", "hard_max"):
        text += f'\n[[expect]]\ntype = "{rule}"\n'
    path = tmp_path_factory.mktemp("wean") / "wean.toml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path_factory.mktemp("wean-run")
    run, evaluation = run_scenario(path, out, library=library)
    assert evaluation.passed, [r.detail for r in evaluation.failed]
    yield _Run(path, run, evaluation)


def _judge(w: _Run, library: DrugLibrary, truth: list[TruthEvent]) -> list[str]:
    doctored = dataclasses.replace(w.run, truth=truth)
    return [r.name for r in evaluate(load_scenario(w.path), doctored, library).failed]


def _segments(w: _Run) -> list[TruthSegment]:
    return [e for e in w.run.truth if isinstance(e, TruthSegment)]


def test_a_pump_above_the_hard_max_fails_the_hard_max_and_invariants(
    wean_run: _Run, library: DrugLibrary
) -> None:
    t = wean_run.run.t0 + 60 * 60
    truth = sorted(
        [*wean_run.run.truth, TruthSegment(t, 200.0), TruthSegment(t + 30, 28.42)],
        key=lambda e: e.start if isinstance(e, TruthSegment) else e.time,
    )
    failed = _judge(wean_run, library, truth)
    assert "never above the hard maximum" in failed
    assert "every safety invariant holds on the pump's ground truth" in failed
    assert "max dose <= 10 (dose unit)" in failed


def test_a_wean_step_that_fell_too_far_fails_the_wean_rule(
    wean_run: _Run, library: DrugLibrary
) -> None:
    """The pump went to 4 mcg/min when the first wean step (from 10) was commanded (and
    the next step, back up to 5.75, is then a rise too large: both are reported)."""
    first_fall = next(
        c for c in wean_run.evaluation.truth.changes if c.kind == "fall" and c.cause == "command"
    )
    truth = [
        TruthSegment(e.start, 15.0)
        if isinstance(e, TruthSegment) and e.start == first_fall.time
        else e
        for e in wean_run.run.truth
    ]
    failed = _judge(wean_run, library, truth)
    assert "wean never faster than the rule" in failed
    assert "every safety invariant holds on the pump's ground truth" in failed
    assert "cumulative cap never exceeded" not in failed


def test_a_rise_larger_than_commanded_fails_the_titration_rule(
    wean_run: _Run, library: DrugLibrary
) -> None:
    rise = next(c for c in wean_run.evaluation.truth.changes if c.kind == "rise")
    truth = [
        TruthSegment(e.start, 60.0) if isinstance(e, TruthSegment) and e.start == rise.time else e
        for e in wean_run.run.truth
    ]
    failed = _judge(wean_run, library, truth)
    assert "rises within the start and titration limits" in failed
    assert "max dose <= 10 (dose unit)" in failed


def test_a_bolus_past_the_cap_fails_the_cap(wean_run: _Run, library: DrugLibrary) -> None:
    bolus = TruthBolus(wean_run.run.t0 + 30 * 60, 4300.0)  # 68.8 mg at 16 mcg/mL
    failed = _judge(wean_run, library, [*wean_run.run.truth, bolus])
    assert "cumulative cap never exceeded" in failed
    assert "never above the hard maximum" not in failed
