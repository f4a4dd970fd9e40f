"""The cohort runner and ``pumpctl cohort``: deterministic whatever the workers, every run
through the safety rules with its ground truth checked, bad input named."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

import cli.commands.cohort as cohort_command
from cli.main import main
from controller.errors import Refused
from controller.journal_plot import PlotUnavailable
from firmware_bridge.patient.params import Condition
from safety.library import DrugLibrary, load_library
from verification.cohort import report
from verification.cohort.cohort import CohortResult, CohortSpec, run_cohort
from verification.cohort.metrics import Performance
from verification.cohort.run import Arm, Design, RunResult, RunSpec, Start, run_one

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


# --------------------------------------------------------------------------- --out

#: the smallest cohort the command runs (2 runs of one simulated minute)
SMALL = ["cohort", "--patients", "1", "--sensitivities", "1", "--conditions", "stable",
         "--minutes", "1", "--workers", "1", "--seed", "out"]  # fmt: skip


def no_run(*_: object, **__: object) -> CohortResult:
    raise AssertionError("the cohort ran although --out could not be used")


@pytest.mark.parametrize("where", ["afile/sub", "afile/sub/deeper", "afile"])
def test_an_out_that_cannot_be_made_is_refused_before_the_run(
    tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.setattr(cohort_command, "run_cohort", no_run)
    out = tmp_path / where
    assert main([*SMALL, "--json", "--out", str(out)]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == "out"
    assert error["message"].startswith(f"--out {out}: ")
    assert main([*SMALL, "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert said.startswith(f"pumpctl: --out {out}: ") and "Traceback" not in said


def test_an_out_that_can_be_made_is_made_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit: a new directory two levels under an existing one is fine, and is there
    before the first run starts."""
    out = tmp_path / "new" / "deeper"
    there_before: list[bool] = []

    def no_runs(spec: CohortSpec, *_: object, **__: object) -> CohortResult:
        there_before.append(out.is_dir())
        return CohortResult(spec, [])

    monkeypatch.setattr(cohort_command, "run_cohort", no_runs)
    monkeypatch.setattr(cohort_command, "plots", lambda *_: [])
    assert main([*SMALL, "--out", str(out)]) == 0
    assert there_before == [True] and (out / "cohort.json").is_file()


@pytest.mark.parametrize("as_json", [True, False])
def test_a_write_failure_after_the_run_keeps_the_printed_results(
    tmp_path: Path, as_json: bool, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "results"

    def run_then_lose_the_directory(*args: object, **kwargs: object) -> CohortResult:
        result = run_cohort(*args, **kwargs)  # type: ignore[arg-type]
        out.rmdir()
        out.write_text("the directory was replaced while the cohort ran")
        return result

    monkeypatch.setattr(cohort_command, "run_cohort", run_then_lose_the_directory)
    code = main([*SMALL, *(["--json"] if as_json else []), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    if as_json:
        body = json.loads(captured.out)
        assert body["kind"] == "pumpctl-cohort" and len(body["runs"]) == 2
    else:
        assert "closed_loop" in captured.out and "manual" in captured.out
    assert f"cohort: error: --out {out}: cannot write cohort.json" in captured.err
    assert "Traceback" not in captured.err


def test_a_plot_that_cannot_be_written_keeps_cohort_json_and_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full_disk(*_: object) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cohort_command, "plots", full_disk)
    out = tmp_path / "results"
    assert main([*SMALL, "--json", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["kind"] == "pumpctl-cohort"
    assert json.loads((out / "cohort.json").read_text())["kind"] == "pumpctl-cohort"
    assert (
        f"cohort: error: --out {out}: wrote cohort.json but not the plots: No space left"
        in captured.err
    )


# --------------------------------------------------------------------------- the table


def a_run(index: int, requests: int, refusals: dict[str, int]) -> RunResult:
    figures = Performance(1, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0)
    return RunResult(
        RunSpec(index, 1.0, Condition.STABLE, Arm.MANUAL), figures, 1.0, requests,
        requests - sum(refusals.values()), refusals, 0, [], {},
    )  # fmt: skip


def test_the_table_shows_requests_and_refusals_per_run_as_its_heading_says() -> None:
    spec = CohortSpec(Design(seed="t"), patients=3, sensitivities=(1.0,),
                      conditions=(Condition.STABLE,), arms=(Arm.MANUAL,))  # fmt: skip
    runs = [a_run(0, 90, {}), a_run(1, 92, {"cap": 4}), a_run(2, 300, {"cap": 1, "step": 2})]
    result = CohortResult(spec, runs)
    table = report.render_table(result)
    heading = next(line for line in table.splitlines() if line.startswith("medians"))
    assert "per run" in heading and "viol" in heading
    row = next(line for line in table.splitlines() if "manual" in line).split()
    # req and refused: medians of the runs (92 requests, 3 refused), not totals (482, 7)
    assert row[-3:] == ["92", "3", "0"]
    # the JSON keeps its totals (documented: docs/closed-loop.md, CohortResult.summary)
    (summary,) = result.summary()
    assert summary["requests"] == 482 and summary["refusals"] == {"cap": 5, "step": 2}


def test_the_table_shows_a_half_when_the_median_falls_between_two_runs() -> None:
    spec = CohortSpec(Design(seed="t"), patients=2, sensitivities=(1.0,),
                      conditions=(Condition.STABLE,), arms=(Arm.MANUAL,))  # fmt: skip
    table = report.render_table(CohortResult(spec, [a_run(0, 90, {}), a_run(1, 91, {"cap": 1})]))
    row = next(line for line in table.splitlines() if "manual" in line).split()
    assert row[-3:] == ["90.5", "0.5", "0"]


def test_no_matplotlib_names_the_option_that_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    spec = CohortSpec(Design(seed="t"), patients=1, sensitivities=(1.0,))
    with pytest.raises(PlotUnavailable) as caught:
        report.plots(CohortResult(spec, []), Path("unused"))
    assert "--plots" not in str(caught.value) and "--out" in str(caught.value)


def test_a_ratio_the_manual_arm_cannot_give_says_why() -> None:
    """Manual 0 % in band: no ratio, and the table says the loop's own figure (a bare '-'
    read as "no data" when the loop had done better)."""
    spec = CohortSpec(Design(seed="t"), patients=1, sensitivities=(1.0,),
                      conditions=(Condition.STABLE,))  # fmt: skip
    none = Performance(1, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0)
    manual = replace(a_run(0, 5, {}), performance=none)
    loop = replace(a_run(0, 5, {}), spec=RunSpec(0, 1.0, Condition.STABLE, Arm.CLOSED_LOOP))
    table = report.render_table(CohortResult(spec, [loop, manual]))
    assert "1x stable          none: manual 0 %, closed loop 100.0 %" in table
    assert "x 1 sensitivity x" in table and "mcg/kg" in table
    both = report.render_table(CohortResult(spec, [replace(loop, performance=none), manual]))
    assert "1x stable          none: both 0 %" in both


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], (60.0, 100.0)),  # the band and 15 mmHg around it
        ([72.0, 91.0], (60.0, 100.0)),
        ([39.9, 140.1], (30.0, 150.0)),  # a trace outside the old fixed 40-140 is drawn
        ([float("nan"), 80.0], (60.0, 100.0)),
    ],
)
def test_the_map_panels_show_the_band_and_every_trace(
    values: list[float], expected: tuple[float, float]
) -> None:
    assert report._map_range(values, 75.0, 85.0) == expected


def test_a_target_at_the_top_of_its_range_keeps_its_band_in_view() -> None:
    assert report._map_range([], 130.0, 150.0) == (110.0, 170.0)


def test_a_runs_trace_starts_at_what_the_arm_was_handed(library: DrugLibrary) -> None:
    design = Design(seed="t", minutes=2.0)
    result = run_one(design, RunSpec(0, 1.0, Condition.STABLE, Arm.CLOSED_LOOP), library)
    start = result.trace[0]
    assert start[0] == 0.0 and start[2] == float(design.start_dose)
    assert [round(p[0] * 60.0) for p in result.trace] == [0, 30, 60, 90, 120]


def test_the_design_in_the_json_names_the_wandering_amplitude_in_force() -> None:
    assert Design().to_json()["wander_mmhg"] == 10.0  # the patient model's default
    assert Design(wander_mmhg=3.0).to_json()["wander_mmhg"] == 3.0
    assert Design().to_json()["dose_unit"] == "mcg/kg/min"


def test_the_plots_are_drawn_for_a_small_cohort(library: DrugLibrary, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    spec = replace(TINY, design=replace(TINY.design, minutes=2.0), patients=3)
    written = report.plots(run_cohort(spec, library, workers=1), tmp_path)
    assert sorted(p.name for p in written) == [
        "dose_wandering.png", "map_wandering.png", "metrics.png",
    ]  # fmt: skip
    assert all(p.stat().st_size > 10_000 for p in written)


@pytest.mark.parametrize("start", ["0.02", "0.019", "0.005"])
def test_a_start_at_and_below_the_soft_minimum_runs_when_the_protocol_confirms_its_range(
    library: DrugLibrary, start: str
) -> None:
    """``--start-dose`` takes 0.005-0.1; below the library's soft minimum (0.02) the start
    is one the protocol's confirmed dose range covers, as it covers the arms' changes."""
    design = Design(seed="t", minutes=1.0, start_dose=Decimal(start))
    result = run_one(design, RunSpec(0, 1.0, Condition.STABLE, Arm.CLOSED_LOOP), library)
    given = result.trace[0][2]  # what the pump runs: its rate rounded down, never above
    assert float(start) * 0.999 <= given <= float(start)
    assert result.violations == []


def test_a_start_below_the_soft_minimum_is_refused_without_the_protocols_confirmation(
    library: DrugLibrary,
) -> None:
    design = Design(seed="t", minutes=1.0, start_dose=Decimal("0.019"), soft_limits_confirmed=False)
    with pytest.raises(Refused, match=r"below the soft minimum of 0\.02"):
        run_one(design, RunSpec(0, 1.0, Condition.STABLE, Arm.CLOSED_LOOP), library)
