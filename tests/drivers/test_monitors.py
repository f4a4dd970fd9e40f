"""MAP sources: the wire monitor byte by byte on a scripted transport, end to end on a pty
against the monitor emulator, the CSV replay, and the in-process simulated monitor."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.monitors import MapSample, MonitorProtocolError, MonitorUnavailable
from drivers.monitors.replay import CsvReplay, ReplayFileError, read_trace
from drivers.monitors.simulated import SimulatedMonitor
from drivers.monitors.wire import WireMonitor
from drivers.testing import DISCONNECT, ScriptedTransport, Step
from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.monitor.emulator import MonitorSide
from firmware_bridge.patient import LineSetup, Patient, Scenario, no_artefacts, typical_patient
from firmware_bridge.patient.arterial import Reading
from firmware_bridge.pump_model import SimulatedPump

HELLO = (b"HELLO*42\r\n", b"MONITOR 1 pumpctl-sim*44\r\n")
NONE = b"NONE*0A\r\n"


def monitor(steps: list[Step], **kwargs: object) -> tuple[WireMonitor, ScriptedTransport]:
    transport = ScriptedTransport(steps)
    source = WireMonitor("scripted", transport=transport, **kwargs)  # type: ignore[arg-type]
    return source, transport


def test_open_says_hello_and_first_poll_takes_the_newest_numeric() -> None:
    source, transport = monitor(
        [
            HELLO,
            (b"GET*56\r\n", b"MAP 42 84.000 78.2 108.3 63.3 95*6B\r\n"),
            (b"GET 42*70\r\n", b"NOSIG 43 86.000*4B\r\n"),
            (b"GET 43*71\r\n", NONE),
            (b"GET 43*71\r\n", NONE),
            (b"GET*56\r\n", b"NOSIG 43 86.000*4B\r\n"),  # idle: the newest is ours
        ]
    )
    source.open()
    assert source.model == "pumpctl-sim"
    assert source.poll() == [MapSample(42, 84.0, 78.2, 108.3, 63.3, 95)]
    assert source.poll() == [MapSample(43, 86.0, None)]
    assert source.poll() == []
    transport.assert_finished()


def test_a_restarted_monitor_is_followed() -> None:
    source, transport = monitor(
        [
            HELLO,
            (b"GET*56\r\n", b"NOSIG 43 86.000*4B\r\n"),
            (b"GET 43*71\r\n", NONE),
            (b"GET*56\r\n", b"NOSIG 2 4.000*44\r\n"),
            (b"GET 2*44\r\n", NONE),
            (b"GET*56\r\n", b"NOSIG 2 4.000*44\r\n"),
        ]
    )
    source.open()
    source.poll()
    assert source.poll() == [MapSample(2, 4.0, None)]
    assert source.poll() == []  # then it counts from the new numbering
    transport.assert_finished()


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (None, MonitorUnavailable, "no complete reply"),
        (DISCONNECT, MonitorUnavailable, "vanished"),
        (b"MAP 42 84.000 78.2 108.3 63.3 95*6C\r\n", MonitorUnavailable, "corrupted"),
        (b"ERR SYNTAX*6C\r\n", MonitorProtocolError, "ERR SYNTAX"),
        (b"MONITOR 1 pumpctl-sim*44\r\n", MonitorProtocolError, "expected a numeric"),
    ],
)
def test_poll_failures_are_typed(reply: object, error: type[Exception], match: str) -> None:
    source, _ = monitor([HELLO, (b"GET*56\r\n", reply)])  # type: ignore[list-item]
    source.open()
    with pytest.raises(error, match=match):
        source.poll()


def test_a_monitor_of_another_version_is_refused() -> None:
    source, _ = monitor([(b"HELLO*42\r\n", b"MONITOR 2 future*7B\r\n")])
    with pytest.raises(MonitorProtocolError, match="version 1"):
        source.open()


def test_a_lost_port_is_reopened_with_a_new_hello() -> None:
    source, transport = monitor([HELLO, (b"GET*56\r\n", DISCONNECT), HELLO, (b"GET*56\r\n", NONE)])
    source.open()
    with pytest.raises(MonitorUnavailable):
        source.poll()
    assert source.poll() == []
    assert transport.opens == 2
    transport.assert_finished()


def test_wire_monitor_on_a_pty_against_the_emulator() -> None:
    """The real transport and the real monitor side: what the patient measured arrives,
    rounded to 0.1 mmHg, every numeric once and in order."""
    clock = VirtualClock(0.0)
    pump = SimulatedPump(clock, "bd-plastipak-50ml")
    patient = Patient(
        typical_patient(),
        LineSetup(16.0),
        pump,
        seed=1,
        scenario=Scenario(artefact_rates=no_artefacts()),
    )
    with BackgroundLine(
        MonitorSide(lambda: patient.readings_until(clock.now())), WireFaults()
    ) as line:
        source = WireMonitor(line.where, reply_timeout_s=2.0)
        source.open()
        try:
            clock.advance(10.0)
            first = source.poll()
            clock.advance(30.0)
            later = source.poll()
        finally:
            source.close()
    assert [s.seq for s in first] == [5]  # the newest only, at connection
    assert [s.seq for s in later] == list(range(6, 21))
    assert all(s.map_mmhg is not None and 50 < s.map_mmhg < 100 for s in later)


# --------------------------------------------------------------------------- replay


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_replay_plays_on_the_clock(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# recorded on bench 3\ntime_s,map_mmhg,sys_mmhg,dia_mmhg,hr_bpm\n"
        "100,80.5,110,65,90\n102,,,,\n104,79.0,108,64,91\n",
    )
    clock = VirtualClock(0.0)
    replay = CsvReplay(path, clock.now, speed=2.0)
    replay.open()
    assert replay.poll() == [MapSample(0, 100.0, 80.5, 110.0, 65.0, 90)]
    clock.advance(1.0)  # 2 s of trace at 2x
    assert replay.poll() == [MapSample(1, 102.0, None)]
    clock.advance(10.0)
    assert [s.seq for s in replay.poll()] == [2]
    assert replay.finished
    with pytest.raises(MonitorUnavailable, match=r"trace .* ended \(at 104 s\)"):
        replay.poll()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time,map\n1,2\n", "lacks time_s, map_mmhg"),
        ("time_s,map_mmhg,colour\n1,2,red\n", "unknown column"),
        ("time_s,map_mmhg\n1,80\n1,81\n", "line 3: time_s 1 is not after 1"),
        ("time_s,map_mmhg\n# note\n1,80\nx,81\n", "line 4: time_s 'x' is not a number"),
        ("time_s,map_mmhg\n1,1200\n", "map_mmhg 1200 is outside 0-1000"),
        ("time_s,map_mmhg\n,80\n", "time_s is empty"),
    ],
)
def test_a_bad_trace_is_refused_whole_naming_the_line(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(ReplayFileError, match=match):
        read_trace(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # one field short, one field over: the row is refused, not read as no-signal/cut
        (
            "time_s,map_mmhg,hr_bpm\n1,80,70\n2,81\n",
            r"line 3: 2 fields, expected 3 \(time_s, map_mmhg, hr_bpm\)",
        ),
        (
            "time_s,map_mmhg,hr_bpm\n1,80,70\n2,81,70,9\n",
            r"line 3: 4 fields, expected 3 \(time_s, map_mmhg, hr_bpm\)",
        ),
        ("time_s,map_mmhg\n1,80,\n", r"line 2: 3 fields, expected 2"),
        ("time_s,map_mmhg,time_s\n1,80,2\n", r"line 1: column time_s appears twice in the header"),
        (
            "# exported\ntime_s, map_mmhg ,map_mmhg\n1,80,2\n",
            r"line 2: column map_mmhg appears twice",
        ),
        ("time_s,map_mmhg\n", r"line 1: a header and no samples; expected at least one row"),
        ("# only notes\ntime_s,map_mmhg\n# none yet\n\n", r"line 2: a header and no samples"),
        ("", r"no header; expected a header line naming time_s, map_mmhg"),
        ("# nothing\n\n", r"no header; expected"),
        ('time_s,map_mmhg\n1,"80\n', r"line 2: not valid CSV"),
    ],
)
def test_a_malformed_trace_is_refused_naming_file_and_line(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(ReplayFileError, match=match) as caught:
        read_trace(write(tmp_path, text))
    assert str(caught.value).startswith(f"{tmp_path / 'trace.csv'}: ")


def test_a_row_with_exactly_the_header_s_fields_and_one_sample_is_a_trace(tmp_path: Path) -> None:
    rows = read_trace(write(tmp_path, "time_s,map_mmhg,hr_bpm\n1,,\n"))
    assert rows == [(1.0, MapSample(0, 1.0, None))]


def test_an_excel_export_with_a_bom_and_padded_names_is_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftime_s, map_mmhg , hr_bpm\r\n1, 80.5 ,70\r\n2,,\r\n\r\n".encode())
    assert read_trace(path) == [
        (1.0, MapSample(0, 1.0, 80.5, None, None, 70)),
        (2.0, MapSample(1, 2.0, None)),
    ]


def test_a_missing_trace_file_is_a_replay_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayFileError, match="cannot read"):
        CsvReplay(tmp_path / "absent.csv", lambda: 0.0).open()


# --------------------------------------------------------------------------- in process


def test_simulated_monitor_gives_the_patient_numerics_and_the_truth_apart() -> None:
    clock = VirtualClock(0.0)
    pump = SimulatedPump(clock, "bd-plastipak-50ml")
    patient = Patient(typical_patient(), LineSetup(16.0), pump, seed=2)
    seen: list[Reading] = []
    source = SimulatedMonitor(patient, on_reading=seen.append)
    source.open()
    clock.advance(20.0)
    samples = source.poll()
    assert [s.seq for s in samples] == list(range(11))
    assert [r.seq for r in seen] == list(range(11))
    assert samples[3].map_mmhg == seen[3].map_mmhg
