"""``pumpctl bench``: the plumbing, never the speed.

A ``--quick`` run on a handful of commands must produce every figure of issue 6 with its
goal, measured (a number, and whether it met the goal), plus the context figures and the
machine; it must leave no process, socket or directory behind, also when interrupted.
Nothing here looks at how large a figure is: that depends on the machine, not the code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.host import PROJECT_PACKAGES
from benchmarks.processes import parse_frame
from benchmarks.report import Context, Figure, Goal, Report, percentile, render_table
from cli.main import main

FIGURES = {
    "latency.mock",
    "latency.ne1000",
    "latency.modbus",
    "overhead.wire",
    "liveness.controller_kill",
    "liveness.controller_stop",
    "liveness.safety_kill",
    "simulation.speed",
    "startup.safety",
    "memory.safety",
    "memory.controller",
    # issue 11: the closed loop's reduced cohort
    *(f"closed_loop.in_band.{s}x.{c}" for s in ("0.1", "0.2", "0.5", "1", "2", "5", "10")
      for c in ("stable", "wandering")),
    "closed_loop.mdape_worst",
    "closed_loop.wobble_worst",
    "closed_loop.violations",
    "closed_loop.cohort_speed",
    # issue 13: accuracy analysis speed and agreement with the pump model on the emulator
    "accuracy.analysis_24h",
    "accuracy.startup_delay_agreement",
    "accuracy.mean_error_agreement",
    # issue 14: pumps on one line, driver level
    "lines.ne1000",
    "lines.harvard",
    "lines.modbus",
    "lines.harvard_pair",
    # issue 14: four channels on one line through the safety process, relay handovers
    "latency4.ne1000",
    "latency4.harvard",
    "latency4.modbus",
    "estop4.ne1000",
    "memory.safety_4ch",
    "handover.primed_best",
}  # fmt: skip
CONTEXT = {
    "overhead.bare_pyserial",
    "overhead.pacing_floor",
    "startup.restart",
    "simulation.bench_timing",
    "journal.commit",
    "accuracy.report_24h",
    "accuracy.emulated_run",
    "simulation.one_pump",
    "latency4.harvard_client",
    *(f"handover.20.{s}.{p}" for s in ("quick", "overlap") for p in ("primed", "unprimed")),
}
#: a bounded wait for a child to finish; not a requirement on its speed
RUN_LIMIT_S = 210.0


@pytest.fixture
def work_dir() -> Iterator[Path]:
    # short: the run's Unix sockets live under it (107-byte limit)
    path = Path(tempfile.mkdtemp(prefix="pb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PUMPCTL_LIBRARY", None)
    env.pop("PUMPCTL_CONFIG", None)
    return env


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the run's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "bench", *args]


@pytest.mark.hil
@pytest.mark.timeout(300)
def test_a_quick_run_reports_every_figure_with_its_goal_and_cleans_up(work_dir: Path) -> None:
    done = subprocess.run(
        _bench("--quick", "--json", "--commands", "5", "--work-dir", str(work_dir)),
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # stdout is one JSON object and nothing else
    assert report["kind"] == "pumpctl-bench"
    assert report["settings"]["quick"] is True and report["settings"]["commands"] == 5
    host = report["host"]
    for key in ("cpu_model", "cpus", "kernel", "python", "work_dir_fs", "bytecode"):
        assert host[key], key
    # every child reads the project's bytecode, written before the first one started
    assert host["bytecode"].startswith("project bytecode written"), host["bytecode"]

    figures = {f["key"]: f for f in report["figures"]}
    assert set(figures) == FIGURES
    for key, figure in figures.items():
        goal = figure["goal"]
        assert goal["op"] in ("<=", ">=") and isinstance(goal["value"], float), key
        assert goal["unit"] and goal["text"].startswith(goal["op"]), key
        assert figure["error"] is None, (key, figure["error"])
        # a share of time or a count of violations may be 0; a time or a size may not
        least = (
            0.0
            if key.startswith(("closed_loop.in_band", "closed_loop.violations", "handover."))
            else 1e-12
        )
        assert isinstance(figure["value"], float) and figure["value"] >= least, key
        assert figure["met"] is (figure["value"] <= goal["value"] if goal["op"] == "<=" else
                                 figure["value"] >= goal["value"]), key  # fmt: skip
        assert figure["judged_on"], key
    # the sample sizes asked for were used
    assert figures["latency.mock"]["stats"]["n"] == 5
    assert figures["latency.ne1000"]["stats"]["p50"] <= figures["latency.ne1000"]["stats"]["max"]
    assert figures["liveness.controller_stop"]["goal"]["value"] == 1.0 * 1000 + 50
    assert report["summary"]["figures"] == len(FIGURES)
    assert report["summary"]["not_measured"] == []

    context = {c["key"]: c for c in report["context"]}
    assert set(context) >= CONTEXT
    for key in CONTEXT:
        assert isinstance(context[key]["value"], float), (key, context[key]["note"])

    # nothing left: no directory in the work dir, no process naming it
    assert list(work_dir.iterdir()) == []
    assert _processes_mentioning(str(work_dir)) == []


@pytest.mark.hil
@pytest.mark.timeout(120)
def test_ctrl_c_ends_the_run_and_leaves_nothing_behind(work_dir: Path) -> None:
    bench = subprocess.Popen(
        _bench("--quick", "--only", "latency", "--commands", "100000", "--work-dir", str(work_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        # wait (bounded) until a safety process of the run is serving, then interrupt
        deadline = time.monotonic() + 60
        while not list(work_dir.glob("pumpctl-bench-*/*/safety.sock")):
            assert bench.poll() is None, bench.communicate()[1]
            assert time.monotonic() < deadline, "the run never started a safety process"
            time.sleep(0.05)
        assert _processes_mentioning(str(work_dir)), "its safety process should be running"
        bench.send_signal(signal.SIGINT)
        _, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert bench.returncode == 130, err
    assert list(work_dir.iterdir()) == []
    assert _processes_mentioning(str(work_dir)) == []


def test_bad_arguments_are_one_line_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--commands", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "pumpctl: --commands must be 1-1000000, got 0"
    assert main(["bench", "--json", "--only", "nothing"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["code"] == "usage" and "--only" in out["error"]["message"]


def test_the_table_shows_each_figure_with_its_goal_and_whether_it_met_it() -> None:
    report = Report(
        {"cpu_model": "Test CPU", "cpus": 2, "kernel": "Linux 6", "python": "3.11"},
        {},
        figures=[
            Figure("a", "figure a", 5.0, "ms", Goal("<=", 10.0, "ms"), "p99", {"p50": 2.0}),
            Figure("b", "figure b", 20.0, "x", Goal(">=", 50.0, "x"), "one run"),
            Figure("c", "figure c", None, "s", Goal("<=", 1.0, "s"), "max", error="no child"),
        ],
        context=[Context("k", "context k", 1.5, "x", note="why")],
    )
    text = render_table(report)
    lines = text.splitlines()
    row = {
        f"figure {n}": next(line for line in lines if line.startswith(f"figure {n}")) for n in "abc"
    }
    assert row["figure a"].split()[-1] == "yes" and "<= 10.0 ms" in row["figure a"]
    assert row["figure b"].split()[-1] == "NO" and ">= 50.0 x" in row["figure b"]
    assert "not measured" in row["figure c"] and row["figure c"].split()[-1] == "-"
    assert "NOT MEASURED: no child" in text
    assert "context k: 1.50 x; why" in text
    assert "Test CPU, 2 CPU(s), Linux 6, Python 3.11" in text
    data = report.to_json()
    assert data["summary"] == {"figures": 3, "met": 1, "missed": ["b"], "not_measured": ["c"]}
    assert [f["met"] for f in data["figures"]] == [True, False, None]


def test_emulator_frame_lines_are_read_back_as_bytes() -> None:
    frame = parse_frame("5197.706 ne1000 rx 02 08 30 52 41 54 38 cb 03 |..0RAT8..|")
    assert frame is not None
    assert (frame.at, frame.direction, frame.data) == (5197.706, "rx", b"\x02\x080RAT8\xcb\x03")
    spaced = parse_frame("1.000 ne1000 tx 30 20 7c |0 || [fault: one byte corrupted]")
    assert spaced is not None and spaced.data == b"0 |"
    for other in ("1.0 ne1000 open line back at /dev/pts/3", "/dev/pts/3", "", "x y rx zz"):
        assert parse_frame(other) is None


def test_percentiles_are_observed_values_by_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([7.0], 50) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_bytecode_written_before_a_run_covers_every_package_the_project_installs() -> None:
    """``compile_project`` names the project's packages itself (an installed copy has no
    ``pyproject.toml`` to read): the two lists must stay one, or a package added later
    would be compiled at every start of a bench's children again."""
    setup = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    include = setup["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(PROJECT_PACKAGES) == sorted(p.rstrip("*") for p in include)
