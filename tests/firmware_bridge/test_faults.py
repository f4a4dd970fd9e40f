"""Every fault name the command line, the control channel and scenario files accept."""

from __future__ import annotations

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.faults import (
    ALL_FAULTS,
    FaultSpecError,
    ReplyAction,
    WireFaults,
    apply_fault,
    apply_faults,
)
from firmware_bridge.pump_model import PumpAlarm, SimulatedPump


@pytest.fixture
def pump() -> SimulatedPump:
    p = SimulatedPump(VirtualClock())
    p.set_rate(10.0)
    p.start()
    return p


@pytest.fixture
def wire() -> WireFaults:
    return WireFaults()


@pytest.mark.parametrize(
    ("spec", "field", "value"),
    [
        ("drop", "drop_next", 1),
        ("drop=3", "drop_next", 3),
        ("lose_ack", "lose_ack_next", 1),
        ("lose_ack=2", "lose_ack_next", 2),
        ("Lose-Ack = 2", "lose_ack_next", 2),
        ("corrupt", "corrupt_next", 1),
        ("corrupt=4", "corrupt_next", 4),
        ("delay=0.2", "delay_s", 0.2),
        ("delay", "delay_s", 0.0),
        ("garbage", "garbage", True),
        ("garbage=on", "garbage", True),
        ("silent", "silent", True),
        ("silent=yes", "silent", True),
        ("disconnect", "disconnect_requested", True),
    ],
)
def test_wire_fault_specs(
    spec: str, field: str, value: object, pump: SimulatedPump, wire: WireFaults
) -> None:
    apply_fault(spec, pump, wire)
    assert getattr(wire.state(), field) == value


@pytest.mark.parametrize("off", ["off", "0", "false", "no", "OFF"])
def test_flags_switch_off(off: str, wire: WireFaults) -> None:
    apply_faults("garbage,silent", None, wire)
    apply_faults(f"garbage={off},silent={off}", None, wire)
    state = wire.state()
    assert not state.garbage
    assert not state.silent


def test_counts_accumulate(wire: WireFaults) -> None:
    apply_faults("drop=2,drop", None, wire)
    assert wire.state().drop_next == 3


def test_occlusion_and_stall_specs(pump: SimulatedPump) -> None:
    apply_fault("occlusion", pump, None)
    assert pump.snapshot().delivered_rate_ml_h == 0.0
    apply_fault("occlusion=off", pump, None)
    assert pump.snapshot().delivered_rate_ml_h == 10.0
    apply_fault("stall=on", pump, None)
    assert PumpAlarm.STALL in pump.snapshot().alarms
    assert not pump.snapshot().running


def test_empty_spec(pump: SimulatedPump) -> None:
    apply_fault("empty=2.5", pump, None)
    snap = pump.snapshot()
    assert snap.remaining_ml == 2.5
    assert snap.running
    apply_fault("empty", pump, None)
    snap = pump.snapshot()
    assert snap.remaining_ml == 0.0
    assert PumpAlarm.EMPTY in snap.alarms
    assert not snap.running


def test_power_cycle_spec(pump: SimulatedPump) -> None:
    apply_fault("power_cycle", pump, None)
    snap = pump.snapshot()
    assert PumpAlarm.RESET in snap.alarms
    assert not snap.running


def test_clear_switches_everything_off(pump: SimulatedPump, wire: WireFaults) -> None:
    apply_faults("drop=2, lose_ack, corrupt, delay=1, garbage, silent, disconnect", pump, wire)
    apply_faults("occlusion,stall", pump, wire)
    apply_fault("clear", pump, wire)
    state = wire.state()
    assert (state.drop_next, state.lose_ack_next, state.corrupt_next) == (0, 0, 0)
    assert state.delay_s == 0.0
    assert not (state.garbage or state.silent or state.disconnect_requested)
    assert pump.snapshot().delivered_rate_ml_h == 0.0  # stalled pump stopped; not occluded
    pump.start()
    assert pump.snapshot().delivered_rate_ml_h == 10.0


def test_empty_list_and_blank_items_do_nothing(wire: WireFaults) -> None:
    apply_faults("", None, wire)
    apply_faults(" , ,", None, wire)
    assert wire.next_action() is ReplyAction.NORMAL


def test_every_known_fault_name_parses(pump: SimulatedPump, wire: WireFaults) -> None:
    volumetric_only = ("air_in_line", "upstream_occlusion", "door_open")
    bag_pump = SimulatedPump(VirtualClock(), "bag-500ml")
    for name in ALL_FAULTS:
        if name == "patient_line":
            apply_fault("patient_line=off", pump, wire)
        elif name in volumetric_only:
            apply_fault(name, bag_pump, wire)
        else:
            apply_fault(name, pump, wire)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode", "unknown fault 'explode'; known: drop, lose_ack"),
        ("drop=abc", "drop: bad value 'abc'"),
        ("drop=-1", "drop: count must be 0-1000, got -1"),
        ("lose_ack=1001", "lose_ack: count must be 0-1000"),
        ("corrupt=1.5", "corrupt: bad value '1.5'"),
        ("delay=100", "delay must be 0-60 s, got 100"),
        ("delay=-1", "delay must be 0-60 s"),
        ("delay=nan", "delay must be 0-60 s"),
        ("delay=soon", "delay: bad value 'soon'"),
        ("garbage=maybe", "garbage: expected on/off, got 'maybe'"),
        ("occlusion=2", "occlusion: expected on/off, got '2'"),
        ("empty=lots", "empty: remaining volume must be mL, got 'lots'"),
    ],
)
def test_bad_specs_say_what_is_allowed(
    spec: str, message: str, pump: SimulatedPump, wire: WireFaults
) -> None:
    with pytest.raises(FaultSpecError) as info:
        apply_fault(spec, pump, wire)
    assert message in str(info.value)


def test_wire_fault_without_a_wire_is_refused(pump: SimulatedPump) -> None:
    with pytest.raises(FaultSpecError, match="acts on a wire"):
        apply_fault("drop", pump, None)


def test_pump_fault_without_a_pump_is_refused(wire: WireFaults) -> None:
    with pytest.raises(FaultSpecError, match="needs a simulated pump"):
        apply_fault("occlusion", None, wire)


def test_next_action_priority_and_consumption(wire: WireFaults) -> None:
    wire.drop_next()
    wire.lose_ack_next()
    wire.corrupt_next()
    assert [wire.next_action() for _ in range(4)] == [
        ReplyAction.DROP_REQUEST,
        ReplyAction.LOSE_ACK,
        ReplyAction.CORRUPT,
        ReplyAction.NORMAL,
    ]
    wire.drop_next()
    wire.set_garbage(True)
    assert wire.next_action() is ReplyAction.GARBAGE  # garbage wins, drop kept
    wire.set_silent(True)
    assert wire.next_action() is ReplyAction.SILENT
    wire.set_silent(False)
    wire.set_garbage(False)
    assert wire.next_action() is ReplyAction.DROP_REQUEST


def test_disconnect_is_taken_once(wire: WireFaults) -> None:
    wire.request_disconnect()
    assert wire.take_disconnect()
    assert not wire.take_disconnect()
