"""``pumpctl accuracy run`` on a real-process bench: the NE-1000 emulator with a realistic
mechanism and an MT-SICS balance on a second pty weighing the same pump
(``--balance-pty``), ``python -m safety`` owning the pump, and ``pumpctl accuracy run
--config ... --balance-port ...`` as its own process, all on one scaled clinical clock.

What must hold: the readings are on disk, the analysis finds the pump model's own
start-up delay and mean flow error (loosely: real processes, a pty, a 60x clock), the
safety journal shows the test-fluid program and that the pump was driven only through it
(every command the pump executed is one the safety process journaled for the run's
orders), and Ctrl-C stops the pump through the safety process and keeps the readings.
"""

from __future__ import annotations

import csv
import json
import signal
from decimal import Decimal
from pathlib import Path

import pytest

from firmware_bridge.mechanics import parse_mechanics
from firmware_bridge.syringes import syringe_by_name
from hil_tests.conftest import MakeBench
from hil_tests.harness.bench import HilBench
from hil_tests.harness.processes import Child, wait_for
from safety.journal_read import read_safety_events
from safety.kernel.model import (
    CommandIssued,
    FluidLimits,
    LoadProgram,
    ProgramLoaded,
    RequestDecided,
    SetRate,
    StartInfusion,
    StartPump,
    StopInfusion,
    StopPump,
)

pytestmark = pytest.mark.hil

#: 60x: a 30 s interval is 0.5 s of real time, so a scheduling hiccup of a loaded 2-core
#: machine (tenths of a second) stays well inside the analysis's jitter allowance
SPEED = 60.0
RATE = 10.0
#: slack and lag (start-up delay) and a bore error (mean flow error) the run must find
MECHANICS = "typical,bore_error=0.01"
DURATION_MIN = 20
PERIOD = "5-20"


def _accuracy_bench(make_bench: MakeBench) -> HilBench:
    return make_bench(
        "ne1000", speed=SPEED, emulator_args=("--mechanics", MECHANICS, "--balance-pty")
    )


def _run(bench: HilBench, out: Path, *more: str) -> Child:
    return bench.pumpctl(
        "accuracy",
        "run",
        "--config",
        str(bench.config),
        "--balance-port",
        bench.balance_port(),
        "--rate",
        f"{RATE:g}",
        "--duration-min",
        str(DURATION_MIN),
        "--period",
        PERIOD,
        "--out",
        str(out),
        *more,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _orders_and_commands(bench: HilBench) -> tuple[list[RequestDecided], list[CommandIssued]]:
    events = list(read_safety_events(bench.safety_journal))
    decided = [e for e in events if isinstance(e, RequestDecided)]
    commands = [e for e in events if isinstance(e, CommandIssued)]
    loaded = [e for e in events if isinstance(e, ProgramLoaded)]
    assert len(loaded) == 1 and isinstance(loaded[0].limits, FluidLimits), loaded
    assert loaded[0].spec.test_fluid and loaded[0].spec.drug == "water"
    assert loaded[0].spec.concentration == "" and loaded[0].spec.weight_kg is None
    return decided, commands


@pytest.mark.timeout(120)
def test_a_run_through_the_safety_process_finds_the_pumps_own_figures(
    make_bench: MakeBench, tmp_path: Path
) -> None:
    bench = _accuracy_bench(make_bench)
    out = tmp_path / "accuracy"
    run = _run(bench, out, "--json")
    budget = bench.real_s(DURATION_MIN * 60) + 30
    assert run.wait(budget) == 0, run.stderr_text()

    # the readings: one every 30 s from the start, stable weights (S), rising
    rows = _rows(out / "readings.csv")
    assert len(rows) == DURATION_MIN * 2 + 1
    times = [float(r["time_s"]) for r in rows]
    masses = [float(r["mass_g"]) for r in rows]
    for i, t in enumerate(times):
        assert abs(t - 30 * i) < 15, (i, t)
    assert {r["command"] for r in rows} == {"S"} and all(r["stable"] == "1" for r in rows)
    assert masses[-1] > 0.9 * RATE * DURATION_MIN / 60  # about 3.3 g of water
    assert (out / "report.md").exists() and (out / "trumpet.png").exists()

    # the analysis against the pump model's own figures (a 60x clock on real processes:
    # the start is known to a few clinical seconds)
    result = json.loads(run.lines[-1])
    mechanics = parse_mechanics(MECHANICS)
    delay_min = mechanics.startup_delay_s(syringe_by_name("bd-plastipak-50ml"), RATE) / 60
    assert result["startup_delay_min"] == pytest.approx(delay_min, rel=0.15)
    assert result["mean_error_pct"] == pytest.approx(mechanics.mean_flow_error() * 100, abs=0.3)
    assert result["trumpet"]["2"]["max_pct"] >= result["trumpet"]["2"]["min_pct"]
    assert result["trumpet"]["31"] == {"max_pct": None, "min_pct": None, "windows": 0}
    assert result["run"]["readings"] == len(rows) and result["run"]["interrupted"] is False

    # the safety journal: the test fluid, and the run's three orders, all accepted
    decided, commands = _orders_and_commands(bench)
    bodies = [d.body for d in decided]
    assert [type(b) for b in bodies] == [LoadProgram, StartInfusion, StopInfusion]
    assert all(d.accepted for d in decided)
    start = bodies[1]
    assert isinstance(start, StartInfusion)
    assert start.dose == Decimal("10.0") and start.unit == "mL/h"
    assert len({d.session for d in decided}) == 1
    # ... every pump command came from those orders, and the pump executed no other
    actions = [c.action for c in commands]
    assert [type(a) for a in actions] == [SetRate, StartPump, StopPump]
    assert all(c.cause == "command" for c in commands)
    assert bench.set_rates_executed() == 1
    assert bench.pump()["running"] is False
    bench.assert_invariants()


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_pump_through_the_safety_process_and_keeps_the_readings(
    make_bench: MakeBench, tmp_path: Path
) -> None:
    bench = _accuracy_bench(make_bench)
    out = tmp_path / "accuracy"
    run = _run(bench, out)
    csv_path = out / "readings.csv"

    def readings() -> int:
        return len(_rows(csv_path)) if csv_path.exists() else 0

    wait_for(lambda: readings() >= 6, bench.real_s(6 * 30) + 20, "six readings")
    assert bench.pump()["running"] is True
    run.signal(signal.SIGINT)
    assert run.wait(30) == 130, run.stderr_text()
    assert "interrupted: stopped through the safety process" in run.stderr_text()
    kept = readings()
    assert kept >= 6 and f"{kept} reading(s) in {csv_path}" in run.stderr_text()
    assert bench.pump()["running"] is False

    decided, commands = _orders_and_commands(bench)
    assert [type(d.body) for d in decided] == [LoadProgram, StartInfusion, StopInfusion]
    assert all(d.accepted for d in decided)
    assert [type(c.action) for c in commands] == [SetRate, StartPump, StopPump]
    bench.assert_invariants()
