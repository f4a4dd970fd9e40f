"""Priming and the patient line; the volumetric pump and its sensors (the pump model).

The figures of the start-up come from the mechanism itself (``Mechanics.startup_delay_s``,
``TYPICAL``: 0.25 mm of slack and a 30 s lag, landing in the published ranges of
docs/accuracy.md), so the tests check the model against its own stated physics.
"""

from __future__ import annotations

import json

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.truth_log import event_from_json, event_to_json
from firmware_bridge.faults import FaultSpecError, apply_fault
from firmware_bridge.mechanics import TYPICAL
from firmware_bridge.pump_model import (
    NotApplicable,
    PumpAlarm,
    RateOutOfRange,
    SimulatedPump,
    TruthSegment,
    TruthWaste,
)
from firmware_bridge.syringes import BAGS, SYRINGES, Bag, container_by_name

SYRINGE = SYRINGES["bd-plastipak-50ml"]
#: after a prime the compliance after-flow drains for a few lag time constants
AFTER_FLOW_S = 10 * TYPICAL.compliance_tau_s


def infuse(pump: SimulatedPump, clock: VirtualClock, rate: float, seconds: float) -> float:
    """Start at ``rate`` and return what reached the patient after ``seconds``."""
    before = pump.delivered_ml()
    pump.set_rate(rate)
    pump.start()
    clock.advance(seconds)
    return pump.delivered_ml() - before


# --------------------------------------------------------------------- start-up and priming
def test_an_unprimed_syringe_at_1_ml_h_delivers_late() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, SYRINGE, mechanics=TYPICAL)
    delay = TYPICAL.startup_delay_s(SYRINGE, 1.0)
    assert 8 * 60 < delay < 9.5 * 60  # slack 0.139 mL at 1 mL/h, plus the 30 s lag
    assert infuse(pump, clock, 1.0, 5 * 60) == 0.0  # five minutes: nothing yet
    clock.advance(20 * 60)
    steady = 1.0 * (25 * 60 - delay) / 3600
    assert pump.delivered_ml() == pytest.approx(steady, rel=0.02)


def test_a_primed_syringe_delivers_promptly_and_the_prime_is_never_delivered() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, SYRINGE, mechanics=TYPICAL, line_connected=False)
    pump.prime(1.0)
    assert pump.snapshot().priming
    clock.advance(AFTER_FLOW_S)
    snap = pump.snapshot()
    assert not snap.priming and not snap.running and not snap.target_reached
    assert snap.set_rate_ml_h == 0.0  # the rate before the prime is back
    pump.connect_line(True)
    wasted = pump.truth.wasted_ml()
    slack = TYPICAL.slack_ml(SYRINGE)
    assert wasted == pytest.approx(1.0 - slack, rel=1e-3)  # the drive first closed the slack
    assert pump.delivered_ml() == pytest.approx(0.0, abs=1e-9)
    # primed: only the 30 s lag is left of the start-up
    got = infuse(pump, clock, 1.0, 5 * 60)
    assert got == pytest.approx(1.0 * (5 * 60 - TYPICAL.compliance_tau_s) / 3600, rel=0.03)
    # the ground truth agrees: segments count the patient, the waste event never does
    assert pump.truth.delivered_ml(clock.now()) == pytest.approx(got, rel=1e-6)
    assert any(isinstance(e, TruthWaste) for e in pump.truth.events)


def test_priming_into_a_connected_line_is_a_bolus_to_the_patient() -> None:
    """The model is honest: the pump cannot know where its line goes."""
    clock = VirtualClock()
    pump = SimulatedPump(clock, SYRINGE)
    pump.prime(0.5)
    clock.advance(60.0)
    assert pump.delivered_ml() == pytest.approx(0.5)
    assert pump.truth.wasted_ml() == 0.0


def test_an_ideal_prime_to_waste_restores_rate_and_target() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, SYRINGE, line_connected=False)
    pump.set_rate(4.0)
    pump.set_target_volume(3.0)
    pump.prime(2.0)
    assert pump.snapshot().set_rate_ml_h == SYRINGE.max_rate_ml_h
    clock.advance(60.0)
    snap = pump.snapshot()
    assert snap.set_rate_ml_h == 4.0 and not snap.running
    assert snap.wasted_ml == pytest.approx(2.0)
    assert pump.truth.wasted_ml() == pytest.approx(2.0)
    assert pump.delivered_ml() == 0.0
    assert all(e.rate_ml_h == 0.0 for e in pump.truth.segments())
    pump.connect_line(True)
    got = infuse(pump, clock, 4.0, 3600.0)  # the target of 3 mL set before is kept
    assert got == pytest.approx(3.0)


def test_a_prime_refuses_a_running_pump_and_an_impossible_volume() -> None:
    pump = SimulatedPump(VirtualClock(), SYRINGE)
    with pytest.raises(RateOutOfRange, match="prime volume"):
        pump.prime(0.0)
    with pytest.raises(RateOutOfRange, match="prime volume"):
        pump.prime(SYRINGE.volume_ml + 0.001)
    pump.prime(SYRINGE.volume_ml)  # exactly the syringe: allowed
    pump.stop()
    pump.set_rate(1.0)
    pump.start()
    with pytest.raises(NotApplicable, match="while pumping"):
        pump.prime(1.0)


def test_stopping_a_prime_ends_it_and_records_the_waste_so_far() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, SYRINGE, line_connected=False)
    pump.prime(5.0)
    clock.advance(3.6)  # 2 mL at the 50 mL syringe's top rate (about 2000 mL/h)
    pump.stop()
    snap = pump.snapshot()
    assert not snap.priming
    assert 0.0 < snap.wasted_ml < 5.0
    assert pump.truth.wasted_ml() == pytest.approx(snap.wasted_ml)


def test_the_patient_line_switches_over_the_control_words() -> None:
    pump = SimulatedPump(VirtualClock(), SYRINGE)
    apply_fault("patient_line=off", pump, None)
    assert not pump.line_connected
    apply_fault("patient_line=on", pump, None)
    assert pump.line_connected
    with pytest.raises(FaultSpecError, match="patient_line"):
        apply_fault("patient_line", pump, None)


def test_waste_events_survive_the_truth_log() -> None:
    event = TruthWaste(12.5, 1.25)
    line = json.dumps(event_to_json(event))
    assert event_from_json(json.loads(line)) == event


# --------------------------------------------------------------------- volumetric pump
def bag_pump(clock: VirtualClock, name: str = "bag-500ml") -> SimulatedPump:
    return SimulatedPump(clock, BAGS[name])


def test_the_catalogue_has_bags_with_a_volumetric_range() -> None:
    for name, volume in (("bag-250ml", 250.0), ("bag-500ml", 500.0), ("bag-1000ml", 1000.0)):
        bag = container_by_name(name)
        assert isinstance(bag, Bag) and bag.volume_ml == volume
        assert (bag.min_rate_ml_h, bag.max_rate_ml_h) == (0.1, 999.0)
    with pytest.raises(ValueError, match="bag-2000ml"):
        container_by_name("bag-2000ml")


def test_a_volumetric_pump_runs_a_bag_at_150_ml_h() -> None:
    clock = VirtualClock()
    pump = bag_pump(clock, "bag-1000ml")
    snap = pump.snapshot()
    assert snap.kind == "volumetric" and snap.container.name == "bag-1000ml"
    with pytest.raises(NotApplicable, match="no syringe"):
        _ = pump.syringe
    assert infuse(pump, clock, 150.0, 3600.0) == pytest.approx(150.0)
    assert pump.snapshot().remaining_ml == pytest.approx(850.0)
    pump.set_rate(999.0)  # the top of the range, exactly
    with pytest.raises(RateOutOfRange, match=r"outside 0\.1-999\.0"):
        pump.set_rate(999.001)


@pytest.mark.parametrize(
    ("fault", "alarm"),
    [
        ("air_in_line", PumpAlarm.AIR_IN_LINE),
        ("upstream_occlusion", PumpAlarm.UPSTREAM_OCCLUSION),
        ("door_open", PumpAlarm.DOOR_OPEN),
    ],
)
def test_each_sensor_stops_flow_with_its_alarm_and_blocks_a_start(
    fault: str, alarm: PumpAlarm
) -> None:
    clock = VirtualClock()
    pump = bag_pump(clock)
    infuse(pump, clock, 120.0, 60.0)
    apply_fault(fault, pump, None)
    stopped_at = clock.now()
    snap = pump.snapshot()
    assert not snap.running and alarm in snap.alarms
    assert pump.truth.last_segment() == TruthSegment(stopped_at, 0.0)
    before = pump.delivered_ml()
    clock.advance(600.0)
    assert pump.delivered_ml() == before  # nothing flows: no free flow, no drip
    with pytest.raises(NotApplicable):
        pump.start()
    apply_fault(f"{fault}=off", pump, None)
    pump.start()
    assert pump.snapshot().running and alarm not in pump.snapshot().alarms


def test_an_open_door_is_reported_as_such_in_the_snapshot() -> None:
    pump = bag_pump(VirtualClock())
    pump.set_door_open(True)
    assert pump.snapshot().door_open


def test_a_syringe_pump_has_no_volumetric_sensors() -> None:
    pump = SimulatedPump(VirtualClock(), SYRINGE)
    for fault in ("air_in_line", "upstream_occlusion", "door_open"):
        with pytest.raises(FaultSpecError, match="no sensor"):
            apply_fault(fault, pump, None)


def test_a_bag_change_is_a_container_change() -> None:
    clock = VirtualClock()
    pump = bag_pump(clock, "bag-250ml")
    infuse(pump, clock, 200.0, 3600.0)
    pump.stop()
    assert pump.snapshot().remaining_ml == pytest.approx(50.0)
    pump.set_container(BAGS["bag-1000ml"])
    pump.reload()
    assert pump.snapshot().remaining_ml == 1000.0
    with pytest.raises(NotApplicable, match="cannot hold"):
        pump.set_container(SYRINGE)
    with pytest.raises(ValueError, match="mechanics"):
        SimulatedPump(clock, BAGS["bag-500ml"], mechanics=TYPICAL)


def test_a_bag_running_dry_raises_the_empty_alarm() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock, BAGS["bag-250ml"], loaded_volume_ml=10.0)
    infuse(pump, clock, 120.0, 3600.0)
    snap = pump.snapshot()
    assert not snap.running and PumpAlarm.EMPTY in snap.alarms
    assert pump.delivered_ml() == pytest.approx(10.0)
