"""The pump seen through a register map: reads follow the physics, writes act on it, and
refusals become the Modbus exception a real device would send."""

from __future__ import annotations

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.modbus.codec import DataType, Encoding, WordOrder, decode, encode
from firmware_bridge.modbus.device import PumpRegisters
from firmware_bridge.modbus.frames import ExceptionCode
from firmware_bridge.modbus.register_map import Table, default_map_path, load_register_map
from firmware_bridge.pump_model import PumpAlarm, SimulatedPump
from firmware_bridge.syringes import syringe_by_name

HR, IR, COIL, DI = Table.HOLDING, Table.INPUT, Table.COIL, Table.DISCRETE_INPUT
ADDR, VALUE, FAILURE = (
    ExceptionCode.ILLEGAL_DATA_ADDRESS,
    ExceptionCode.ILLEGAL_DATA_VALUE,
    ExceptionCode.SERVER_DEVICE_FAILURE,
)


class FakeLiveness:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def syringe_regs(
    liveness: FakeLiveness | None = None,
) -> tuple[PumpRegisters, SimulatedPump, VirtualClock]:
    clock = VirtualClock()
    pump = SimulatedPump(clock, "bd-plastipak-50ml")
    regmap = load_register_map(default_map_path("syringe"))
    regs = PumpRegisters(pump, regmap, liveness=liveness or FakeLiveness())
    return regs, pump, clock


def u32(value: float, scale: float = 0.001) -> list[int]:
    return list(encode(value, Encoding(DataType.UINT32, scale=scale)))


def test_rate_write_sets_the_pump_and_reads_back() -> None:
    regs, pump, _ = syringe_regs()
    assert regs.write_registers(HR, 0, u32(12.345)) is None
    assert pump.snapshot().set_rate_ml_h == 12.345
    assert regs.read_registers(HR, 0, 2) == u32(12.345)


def test_running_infusion_shows_in_every_register() -> None:
    regs, pump, clock = syringe_regs()
    regs.write_registers(HR, 0, u32(60.0))
    assert regs.write_bits(COIL, 0, [True]) is None
    clock.advance(600.0)
    assert regs.read_bits(COIL, 0, 1) == [True]
    assert regs.read_bits(DI, 0, 1) == [True]
    words = regs.read_registers(IR, 0, 4)
    assert not isinstance(words, ExceptionCode)
    assert decode(words[0:2], Encoding(DataType.UINT32, scale=0.001)) == 60.0  # rate actual
    infused_ul = decode(words[2:4], Encoding(DataType.UINT32, scale=0.01))
    assert infused_ul == pytest.approx(10_000.0, abs=0.01)  # 10 mL in uL
    assert regs.write_bits(COIL, 0, [False]) is None
    assert not pump.snapshot().running


def test_gaps_and_read_only_points_are_illegal_addresses() -> None:
    regs, _, _ = syringe_regs()
    assert regs.read_registers(HR, 4, 1) == ADDR  # nothing at HR 4
    assert regs.read_registers(HR, 3, 2) == ADDR  # runs into the gap
    assert regs.read_bits(DI, 1, 1) == ADDR
    assert regs.write_registers(IR, 0, [1]) == ADDR  # input registers are read-only
    assert regs.write_bits(DI, 0, [True]) == ADDR


def test_half_of_a_32_bit_value_cannot_be_written() -> None:
    regs, pump, _ = syringe_regs()
    regs.write_registers(HR, 0, u32(10.0))
    assert regs.write_registers(HR, 1, [5000]) == ADDR
    assert regs.write_registers(HR, 0, [0]) == ADDR
    assert pump.snapshot().set_rate_ml_h == 10.0


def test_out_of_range_rate_is_an_illegal_value_and_changes_nothing() -> None:
    regs, pump, _ = syringe_regs()
    regs.write_registers(HR, 0, u32(10.0))
    assert regs.write_registers(HR, 0, u32(5000.0)) == VALUE
    assert regs.write_registers(HR, 0, u32(0.5)) == VALUE  # below the syringe minimum
    assert pump.snapshot().set_rate_ml_h == 10.0


def test_a_bad_value_in_a_multi_point_write_applies_nothing() -> None:
    regs, pump, _ = syringe_regs()
    # HR 0-1 rate, HR 2 diameter (bad: 60 mm, outside 0.1-50), HR 3 comms timeout
    assert regs.write_registers(HR, 0, [*u32(10.0), 6000, 500]) == VALUE
    assert pump.snapshot().set_rate_ml_h == 0.0
    assert regs.comms_timeout_s == 0.0


def test_start_refused_in_the_wrong_state_is_a_device_failure() -> None:
    regs, pump, _ = syringe_regs()
    assert regs.write_bits(COIL, 0, [True]) == FAILURE  # no rate set
    regs.write_registers(HR, 0, u32(10.0))
    pump.empty_syringe(0.0)
    assert regs.write_bits(COIL, 0, [True]) == FAILURE
    alarms = regs.read_registers(IR, 4, 1)
    assert alarms == [0b110]  # empty (bit 1) and near-empty (bit 2)


def test_syringe_change_while_running_is_a_device_failure() -> None:
    regs, pump, _ = syringe_regs()
    regs.write_registers(HR, 0, u32(10.0))
    regs.write_bits(COIL, 0, [True])
    assert regs.write_registers(HR, 2, [1443]) == FAILURE
    regs.write_bits(COIL, 0, [False])
    assert regs.write_registers(HR, 2, [1443]) is None
    assert pump.syringe == syringe_by_name("bd-plastipak-10ml")  # catalogue match by bore
    assert regs.read_registers(HR, 2, 1) == [1443]
    # the published range follows the syringe, rounded inward
    rng = regs.read_registers(IR, 5, 4)
    assert not isinstance(rng, ExceptionCode)
    enc = Encoding(DataType.UINT32, scale=0.001)
    assert decode(rng[0:2], enc) >= pump.syringe.min_rate_ml_h
    assert decode(rng[2:4], enc) <= pump.syringe.max_rate_ml_h


def test_an_unknown_bore_makes_a_custom_syringe() -> None:
    regs, pump, _ = syringe_regs()
    assert regs.write_registers(HR, 2, [2000]) is None  # 20.00 mm: not in the catalogue
    assert pump.syringe.inner_diameter_mm == 20.0
    assert pump.syringe.volume_ml == 50.0


def test_command_coils_act_and_read_zero() -> None:
    regs, pump, clock = syringe_regs()
    regs.write_registers(HR, 0, u32(60.0))
    regs.write_bits(COIL, 0, [True])
    clock.advance(60.0)
    assert pump.snapshot().infused_ml > 0
    assert regs.write_bits(COIL, 1, [True]) is None  # clear volume
    assert pump.snapshot().infused_ml == 0.0
    assert regs.read_bits(COIL, 1, 2) == [False, False]
    pump.power_cycle()
    assert PumpAlarm.RESET in pump.snapshot().alarms
    assert regs.write_bits(COIL, 2, [True]) is None  # acknowledge alarms
    assert PumpAlarm.RESET not in pump.snapshot().alarms


def test_comms_timeout_stops_a_running_pump_once_on_the_liveness_clock() -> None:
    live = FakeLiveness()
    regs, pump, clock = syringe_regs(live)
    regs.write_registers(HR, 0, u32(10.0))
    regs.write_bits(COIL, 0, [True])
    assert regs.write_registers(HR, 3, [2000]) is None  # 2000 ms
    assert regs.comms_timeout_s == 2.0
    clock.advance(3600.0)  # clinical time does not matter
    assert not regs.check_watchdog()
    live.t += 1.9
    assert not regs.check_watchdog()
    regs.note_request()
    live.t += 1.9
    assert not regs.check_watchdog()
    live.t += 0.2
    assert regs.check_watchdog()
    snap = pump.snapshot()
    assert not snap.running
    assert PumpAlarm.COMMS_TIMEOUT in snap.alarms
    assert not regs.check_watchdog()  # once per silence
    assert regs.read_registers(IR, 4, 1) == [1 << 5]


def test_comms_timeout_leaves_an_idle_pump_alone_and_zero_turns_it_off() -> None:
    live = FakeLiveness()
    regs, pump, _ = syringe_regs(live)
    regs.write_registers(HR, 3, [500])
    live.t += 10.0
    assert not regs.check_watchdog()
    assert not pump.snapshot().alarms
    regs.write_registers(HR, 3, [0])
    regs.write_registers(HR, 0, u32(10.0))
    regs.write_bits(COIL, 0, [True])
    live.t += 100.0
    assert not regs.check_watchdog()
    assert pump.snapshot().running
    assert regs.write_registers(HR, 3, [60001]) == VALUE  # outside the map's range


def test_peristaltic_map_float32_rpm_and_uint32_bitfields() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    regs = PumpRegisters(pump, load_register_map(default_map_path("peristaltic")))
    f32 = Encoding(DataType.FLOAT32)
    assert regs.write_registers(HR, 1211, list(encode(60.0, f32))) is None
    assert regs.write_bits(COIL, 0, [True]) is None
    clock.advance(1800.0)
    speed = regs.read_registers(HR, 1213, 2)  # rpm x100, low word first; 0.5 mL/rev
    assert speed == list(encode(2.0, Encoding(DataType.UINT32, WordOrder.LITTLE, 0.01)))
    volume = regs.read_registers(HR, 1215, 2)
    assert not isinstance(volume, ExceptionCode)
    assert decode(volume, f32) == pytest.approx(30.0)
    assert regs.read_registers(HR, 1200, 1) == [0b01]  # running
    pump.set_stall(True)
    assert regs.read_registers(HR, 1201, 2) == [0, 0b100]  # stall is bit 2 of a uint32
    assert regs.write_registers(HR, 1236, [0x1234]) == VALUE  # wrong magic value
    pump.set_stall(False)
    assert regs.write_registers(HR, 1236, [0x5555]) is None
    assert regs.read_registers(HR, 1201, 2) == [0, 0]
    assert regs.write_registers(HR, 1200, [1]) == ADDR  # the status word is read-only here
    nan = [0x7FC0, 0x0000]
    assert regs.write_registers(HR, 1211, nan) == VALUE
