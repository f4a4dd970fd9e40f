"""The cohort runner and ``pumpctl cohort``: deterministic whatever the workers, every run
through the safety rules with its ground truth checked, bad input named."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cli.main import main
from firmware_bridge.patient.params import Condition
from safety.library import DrugLibrary, load_library
from verification.cohort.cohort import CohortSpec, run_cohort
from verification.cohort.run import Arm, Design, RunSpec, Start, run_one

LIBRARY = load_library()
TINY = CohortSpec(
    Design(seed="t", minutes=8.0),
    patients=2,
    sensitivities=(0.5, 5.0),
    conditions=(Condition.WANDERING,),
)


@pytest.fixture(scope="module")
def library() -> DrugLibrary:
    return LIBRARY


@pytest.mark.hil  # the second worker is a forked process
def test_same_seed_same_json_on_one_or_two_workers(library: DrugLibrary) -> None:
    one = run_cohort(TINY, library, workers=1)
    two = run_cohort(TINY, library, workers=2)
    assert not one.failures and not two.failures
    assert json.dumps(one.to_json(traces=True)) == json.dumps(two.to_json(traces=True))
    assert len(one.results) == 2 * 2 * 2
    assert one.violations() == 0
    rows = one.summary()
    assert [(r["sensitivity"], r["arm"]) for r in rows] == [
        (0.5, "closed_loop"), (0.5, "manual"), (5.0, "closed_loop"), (5.0, "manual"),
    ]  # fmt: skip


def test_another_seed_gives_other_patients(library: DrugLibrary) -> None:
    a = run_cohort(replace(TINY, arms=(Arm.MANUAL,), sensitivities=(1.0,)), library, workers=1)
    spec_b = replace(TINY, design=replace(TINY.design, seed="u"), arms=(Arm.MANUAL,),
                     sensitivities=(1.0,))  # fmt: skip
    b = run_cohort(spec_b, library, workers=1)
    assert [r.patient for r in a.results] != [r.patient for r in b.results]


def test_takeover_starts_the_scored_hour_at_target(library: DrugLibrary) -> None:
    design = Design(seed="t", minutes=5.0, start=Start.TAKEOVER)
    result = run_one(design, RunSpec(0, 2.0, Condition.STABLE, Arm.CLOSED_LOOP), library)
    assert result.trace[0][1] == pytest.approx(80.0, abs=5.0)
    assert result.violations == []


def test_the_command_prints_a_table_and_writes_json(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cohort"  # type: ignore[operator]
    code = main([
        "cohort", "--patients", "1", "--sensitivities", "1", "--conditions", "stable",
        "--minutes", "5", "--workers", "1", "--out", str(out), "--seed", "cmd",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "closed_loop" in printed and "manual" in printed and "violations: 0" in printed
    body = json.loads((out / "cohort.json").read_text())
    assert body["kind"] == "pumpctl-cohort" and len(body["runs"]) == 2
    assert body["violations"] == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--patients", "0"], "patients"),
        (["--sensitivities", "1,fast"], "sensitivities"),
        (["--sensitivities", "1000"], "sensitivities"),
        (["--conditions", "calm"], "conditions"),
        (["--arms", "robot"], "arms"),
        (["--start-dose", "0.5"], "start_dose"),
        (["--minutes", "0"], "minutes"),
        (["--workers", "0"], "workers"),
        (["--target", "300"], "target"),
    ],
)
def test_bad_input_names_the_field(
    args: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cohort", "--json", *args]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == field
