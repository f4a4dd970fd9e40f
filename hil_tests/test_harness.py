"""The harness's own readers, on frame-log lines the emulators really print (no processes).

The fault cases count the rate sets that reached the pump from these logs ("never
repeated blindly", S10), so a reader that missed a set, or counted a query, would make
them prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from hil_tests.harness.machine import STALL_S, StallWatcher, Watch, read_pressure
from hil_tests.harness.processes import _Output, unit_niceness
from hil_tests.harness.pumps import HARVARD, MODBUS_RTU, MODBUS_TCP, NE1000
from hil_tests.harness.truth import changes_between, highest_between, last_rate, rate_at

NE1000_LOG = [
    "6692.141 ne1000 rx 02 08 30 52 41 54 38 cb 03 |..0RAT8..|",  # RAT? (CRC byte '8')
    "6692.141 ne1000 tx 02 0e 30 30 53 31 35 2e 30 30 4d 48 4b e5 03 |..00S15.00MHK..|",
    "5909.224 ne1000 rx 02 0f 30 52 41 54 31 35 2e 30 30 4d 48 a6 df 03 |..0RAT15.00MH...|",
    "6974.577 ne1000 tx 02 07 30 30 49 19 dd 03 |..00I...| [fault: executed, reply lost]",
    "6974.590 ne1000 rx 02 0f 30 52 41 54 31 35 2e 30 30 4d 48 a6 df 03 |..0RAT15.00MH...| "
    "[fault: dropped on the way in, not executed]",
]
HARVARD_LOG = [
    "5909.656 harvard rx 69 72 61 74 65 20 6c 69 6d 0d |irate lim.|",
    "5909.688 harvard rx 69 72 61 74 65 20 31 35 20 6d 6c 2f 68 72 0d |irate 15 ml/hr.|",
    "5909.719 harvard rx 69 72 61 74 65 0d |irate.|",
    "5909.720 harvard rx 30 37 3a 69 72 61 74 65 20 31 20 6d 6c 2f 68 72 0d |07:irate 1 ml/hr.|",
]
MODBUS_LOG = [
    "rx 00 05 00 00 00 0b 01 10 00 00 00 02 04 00 00 3a 98  dev=1 fc=0x10 "
    "WriteMultipleRegistersRequest address=0 count=2 registers=[0, 15000]",
    "tx 00 05 00 00 00 06 01 10 00 00 00 02  dev=1 fc=0x10 WriteMultipleRegistersResponse",
    "rx 00 02 00 00 00 06 01 06 00 02 0a 63  dev=1 fc=0x06 WriteSingleRegisterRequest "
    "address=2 registers=[2659]",
    "rx 00 06 00 00 00 06 01 03 00 00 00 02  dev=1 fc=0x03 ReadHoldingRegistersRequest "
    "address=0 count=2",
    "rx 01 10 00 00 00 02 04 00 00 3a 98 e0 a5  dev=1 fc=0x10 WriteMultipleRegistersRequest "
    "address=0 count=2 registers=[0, 15000]",
    "fault drop: not executed, no reply",
    "rx 01 10 00 00 00 02 04 00 00 49 3e 00 00  dev=1 fc=0x10 WriteMultipleRegistersRequest "
    "address=0 count=2 registers=[0, 18750]",
    "fault lose_ack: executed, reply 01 10 00 00 00 02 41 c8 discarded",
]


def test_ne1000_sets_are_told_from_queries_and_unexecuted_frames() -> None:
    assert NE1000.set_rates_executed(NE1000_LOG) == 1


def test_harvard_sets_are_told_from_queries_and_limits() -> None:
    assert HARVARD.set_rates_executed(HARVARD_LOG) == 2


def test_modbus_sets_are_writes_to_the_rate_register_that_were_executed() -> None:
    # the set, a diameter write (not a rate), a read, a dropped set, a set whose ack was lost
    assert MODBUS_TCP.set_rates_executed(MODBUS_LOG) == 2
    assert MODBUS_RTU.set_rates_executed(MODBUS_LOG) == 2


def test_pump_kinds_name_the_alarm_each_pump_reports() -> None:
    assert NE1000.alarm_for("occlusion") == "stall"
    assert HARVARD.alarm_for("empty") == "stall"
    assert MODBUS_TCP.alarm_for("occlusion") == "occlusion"
    assert all(k.alarm_for("power_cycle") == "reset" for k in (NE1000, HARVARD, MODBUS_TCP))


def test_truth_queries() -> None:
    truth: list[TruthEvent] = [
        TruthSegment(0.0, 0.0),
        TruthSegment(10.0, 15.0),
        TruthBolus(20.0, 0.2),
        TruthSegment(30.0, 11.25),
        TruthSegment(100.0, 0.0),
    ]
    assert rate_at(truth, 5.0) == 0.0 and rate_at(truth, 30.0) == 11.25
    assert [s.rate_ml_h for s in changes_between(truth, 10.0)] == [11.25, 0.0]
    assert changes_between(truth, 10.0, 99.0) == [TruthSegment(30.0, 11.25)]
    assert highest_between(truth, 20.0, 90.0) == 15.0  # in force at the window's start
    assert highest_between(truth, 31.0, 90.0) == 11.25
    assert last_rate(truth) == 0.0


PSI_CPU = "some avg10=1.00 avg60=0.50 avg300=0.20 total={}\nfull avg10=0 avg60=0 avg300=0 total=7\n"


def test_pressure_totals_are_read_in_seconds_and_missing_files_are_left_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "cpu").write_text(PSI_CPU.format(2_500_000))
    (tmp_path / "io").write_text("garbage\n")
    assert read_pressure(tmp_path) == {"cpu": 2.5}
    assert read_pressure(tmp_path / "absent") == {}


def test_a_wake_up_is_a_stall_only_past_the_threshold() -> None:
    watcher = StallWatcher()
    watcher.note(10.0, 10.0 + STALL_S)  # exactly at it: not a stall
    watcher.note(20.0, 20.0 + STALL_S + 0.01)
    assert [(s.at, round(s.length_s, 2)) for s in watcher.since(0.0)] == [(20.0, STALL_S + 0.01)]
    assert watcher.since(20.01) == []


def test_a_report_names_the_pressure_and_the_longest_stall(tmp_path: Path) -> None:
    (tmp_path / "cpu").write_text(PSI_CPU.format(1_000_000))
    watch = Watch(StallWatcher(), tmp_path)
    (tmp_path / "cpu").write_text(PSI_CPU.format(4_500_000))
    quiet = watch.report(now=watch.began + 10.0)
    assert "cpu 3.5 s" in quiet and "never kept from running" in quiet
    watch.watcher.note(watch.began + 2.0, watch.began + 4.5)
    watch.watcher.note(watch.began + 6.0, watch.began + 6.8)
    loud = watch.report(now=watch.began + 10.0)
    assert "2 time(s), the longest 2.50 s at 2.0 s into the case" in loud


def test_the_niceness_of_a_unit_is_read_from_its_nice_line(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nNice = -7\n")
    assert unit_niceness(unit) == -7
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    assert unit_niceness(unit) == 0
    assert unit_niceness() == -5  # the shipped safety unit's


def test_a_drained_output_holds_every_line_written_before_the_drain() -> None:
    """What a frame count right after a reply relies on (``HilBench.frame_log``): no
    reader thread here, so only ``drain`` can have read the pipe."""
    read, write = os.pipe()
    with os.fdopen(read, "rb") as stream:
        out = _Output(stream, follow=False)
        os.write(write, b"rx 01\r\ntx 02\npart")
        out.drain()
        assert out.lines == ["rx 01", "tx 02"]
        os.write(write, b"ial\n")
        os.close(write)
        out.drain()
        out.drain()  # after the end: nothing more, no error
        assert out.lines == ["rx 01", "tx 02", "partial"]
