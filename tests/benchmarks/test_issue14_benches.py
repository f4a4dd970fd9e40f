"""The issue-14 benchmarks' plumbing and judging, on tiny counts: behaviour, never speed.

- Handover quality: the judge reads the ground truth exactly (a known gap gives its known
  window and interval), and a chain of handovers runs, with an unprimed standby showing
  the start-up dip a primed one does not.
- The 24 h simulation with real handovers: a short course hands over, refills and arms
  again, with no failed handover, and ends as the one-pump course does.
- Four pumps on one line: the generated safety config is one line and four channels at
  their addresses, for each protocol; and (``hil``: real processes) a quick run of the
  latency, emergency-stop and memory sections produces each figure with its goal.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from benchmarks import four_pumps, handover, lines, simulation, suite
from firmware_bridge.clock import VirtualClock
from firmware_bridge.pump_model import SimulatedPump
from safety.host.config import load_config
from safety.library import DrugLibrary

# --------------------------------------------------------------------------- handover


def test_the_judge_finds_a_known_gap_between_two_pumps_exactly() -> None:
    """A at 6 mL/h until 600 s; B at 6 mL/h from 630 s: the worst 1-minute window holds
    30 s of flow (50 %), the rate is below 90 % for exactly 30 s."""
    clock = VirtualClock(0.0)
    a, b = SimulatedPump(clock), SimulatedPump(clock)
    a.set_rate(6.0)
    a.start()
    clock.advance(600.0)
    a.stop()
    clock.advance(30.0)
    b.set_rate(6.0)
    b.start()
    clock.advance(600.0)
    a.snapshot(), b.snapshot()  # the truth is written up to now
    figures = handover.judge([a, b], 6.0, 300.0, 1200.0)
    assert figures.worst == pytest.approx(-0.5)
    assert figures.longest_low_s == pytest.approx(30.0)


def test_an_overlap_shows_as_a_window_above_the_set_dose() -> None:
    clock = VirtualClock(0.0)
    a, b = SimulatedPump(clock), SimulatedPump(clock)
    for pump in (a, b):
        pump.set_rate(6.0)
    a.start()
    clock.advance(300.0)
    b.start()
    clock.advance(20.0)  # both run for 20 s: one window holds 80 s worth of flow
    a.stop()
    clock.advance(300.0)
    a.snapshot(), b.snapshot()
    figures = handover.judge([a, b], 6.0, 100.0, 600.0)
    assert figures.worst == pytest.approx(80.0 / 60.0 - 1.0)
    assert figures.longest_low_s == 0.0


def test_the_dose_of_a_rate_is_the_programs_at_four_digits() -> None:
    assert handover.dose_for(1.0) == Decimal("0.5333")
    assert handover.dose_for(20.0) == Decimal("10.67")
    assert handover.syringe_for(1.0) == "bd-plastipak-10ml"
    assert handover.syringe_for(5.0) == "bd-plastipak-50ml"


@pytest.mark.timeout(120)
def test_a_chain_of_handovers_runs_and_an_unprimed_standby_starts_late(
    library: DrugLibrary,
) -> None:
    primed = handover.run_condition(library, handover.Condition(20.0, "quick", True), 2)
    unprimed = handover.run_condition(library, handover.Condition(20.0, "quick", False), 1)
    assert len(primed.samples) == 2 and primed.failures == 0
    assert len(unprimed.samples) == 1 and unprimed.failures == 0
    # the slack of an unprimed syringe leaves the patient short; a primed one does not
    assert all(s.longest_low_s == 0.0 for s in primed.samples)
    assert unprimed.samples[0].longest_low_s > 0.0
    assert unprimed.samples[0].worst_window_dev < min(s.worst_window_dev for s in primed.samples)
    assert primed.simulated_s > 0 and primed.real_s > 0


@pytest.mark.timeout(120)
def test_the_overlap_strategy_hands_over_in_steps(library: DrugLibrary) -> None:
    result = handover.run_condition(library, handover.Condition(20.0, "overlap", True), 1)
    assert result.failures == 0
    # the overlap's 4 steps of at least a minute each
    assert result.samples[0].duration_s >= 3 * 60.0


# --------------------------------------------------------------------------- simulation


@pytest.mark.timeout(120)
def test_a_course_on_two_channels_hands_over_instead_of_refilling(library: DrugLibrary) -> None:
    """2 h at 8 then 12 mcg/min (30, then 45 mL/h): the first 50 mL syringe empties
    within the course, so the safety process hands over to the primed B and A is given
    a new syringe."""
    result = simulation.simulate_course(2.0, simulation.SimTiming(), library, relay=True)
    assert result.handovers >= 1 and result.failed_handovers == 0
    assert result.refills >= 1
    assert result.final_state == "infusing"
    one = simulation.simulate_course(2.0, simulation.SimTiming(), library)
    assert one.handovers == 0 and one.final_state == "infusing"


# --------------------------------------------------------------------------- four pumps


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("protocol", four_pumps.PROTOCOLS)
def test_the_line_config_is_four_channels_on_one_line(protocol: str, short_dir: Path) -> None:
    path = four_pumps.write_line_config(short_dir, protocol, "/dev/ttyUSB7")
    config = load_config(path)
    assert list(config.lines) == ["L"]
    assert config.lines["L"].baud == lines.BAUD[protocol]
    channels = config.channel_configs()
    assert list(channels) == list(four_pumps.CHANNELS)
    key = "device_id" if protocol == "modbus" else "address"
    addresses = [int(a) for a in lines.ADDRESSES[protocol].split(",")]
    assert [c.options[key] for c in channels.values()] == addresses
    assert all(c.line == "L" and c.driver == protocol for c in channels.values())


def test_the_four_channels_give_four_drugs(library: DrugLibrary) -> None:
    drugs = {d.spec(library).drug for d in four_pumps.CHANNEL_DRUGS.values()}
    assert len(drugs) == len(four_pumps.CHANNELS)


@pytest.mark.hil
@pytest.mark.timeout(240)
def test_the_four_pump_sections_report_each_figure_with_its_goal(
    library: DrugLibrary, short_dir: Path
) -> None:
    settings = suite.Settings.quick_run(
        only=("latency4", "estop4", "memory4"),
        line4_commands=4,
        line4_bare_repetitions=2,
        estops=2,
        estop_bare_repetitions=2,
        harvard_repetitions=2,
        work_dir=short_dir,
    )
    report = suite.run(settings)
    figures = {f.key: f for f in report.figures}
    assert set(figures) == {
        "latency4.ne1000",
        "latency4.harvard",
        "latency4.modbus",
        "estop4.ne1000",
        "memory.safety_4ch",
    }
    for key, figure in figures.items():
        assert figure.error is None, (key, figure.error)
        assert figure.value is not None and figure.value > 0, key
        assert figure.goal.source == "issue 14", key
    assert figures["estop4.ne1000"].stats["n"] == 2
    assert figures["estop4.ne1000"].stats["bare p50 ms"] > 0
    assert figures["latency4.ne1000"].stats["n"] == 4
    for paced in ("latency4.ne1000", "latency4.harvard"):
        assert figures[paced].stats["bare p50 ms"] > 0, paced
        assert figures[paced].stats["own wire ms"] > 0, paced
    assert "baseline: one NE-1000 channel MB" in figures["memory.safety_4ch"].stats
    assert any(c.key == "latency4.harvard_client" for c in report.context)
    assert list(short_dir.iterdir()) == []
