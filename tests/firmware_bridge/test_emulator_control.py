"""The emulator control channel (JSON lines on a Unix socket) and the ground-truth log."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.control import (
    ControlChannel,
    ControlError,
    ControlServer,
    send_control,
)
from firmware_bridge.emulators.truth_log import TruthLogError, TruthLogWriter, read_truth_log
from firmware_bridge.faults import WireFaults
from firmware_bridge.pump_model import (
    NotApplicable,
    PumpAlarm,
    SimulatedPump,
    TruthBolus,
    TruthSegment,
    delivered_volume,
)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths must stay under 108 bytes: pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ctl", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------- control channel
def test_control_answers_faults_and_queries() -> None:
    pump = SimulatedPump(VirtualClock())
    wire = WireFaults()
    channel = ControlChannel(pump, wire)
    assert channel.answer({"fault": "occlusion=on"}) == {"ok": True}
    assert channel.answer({"faults": "delay=0.2,drop=2"}) == {"ok": True}
    assert wire.state().delay_s == 0.2 and wire.state().drop_next == 2
    state = channel.answer({"query": "state"})
    assert state["ok"] is True
    assert state["wire"] == {
        "drop_next": 2, "lose_ack_next": 0, "corrupt_next": 0,
        "delay_s": 0.2, "garbage": False, "silent": False,
    }  # fmt: skip
    pump_state = state["pump"]
    assert isinstance(pump_state, dict) and pump_state["running"] is False
    json.dumps(state)  # all of it is plain JSON


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"fault": "melt"}, "unknown fault 'melt'"),
        ({"fault": "delay=fast"}, "delay"),
        ({"fault": 3}, "must be a string"),
        ({"query": "everything"}, "unknown query"),
        ({"hello": 1}, "expected a 'fault'"),
        (["fault"], "JSON object"),
    ],
)
def test_control_refuses_bad_messages_with_a_reason(message: object, words: str) -> None:
    answer = ControlChannel(SimulatedPump(VirtualClock()), WireFaults()).answer(message)
    assert answer["ok"] is False
    assert words in str(answer["error"])


def test_wire_faults_need_a_wire() -> None:
    answer = ControlChannel(SimulatedPump(VirtualClock()), None).answer({"fault": "drop"})
    assert answer == {"ok": False, "error": "fault 'drop' acts on a wire, and this pump has none"}


def test_control_server_round_trip(short_dir: Path) -> None:
    pump = SimulatedPump(VirtualClock())
    path = str(short_dir / "c.sock")
    with ControlServer(path, ControlChannel(pump, WireFaults())):
        assert send_control(path, {"fault": "stall"}) == {"ok": True}
        pump.set_rate(10.0)
        with pytest.raises(NotApplicable):
            pump.start()
        state = send_control(path, {"query": "state"})
        assert state["pump"]["alarms"] == ["stall"]  # a stalled pump does not start
        assert PumpAlarm.STALL in pump.snapshot().alarms
        # several messages on one connection, and a line that is not JSON
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            sock.sendall(b'{"fault": "clear"}\nnot json\n')
            answers = b""
            while answers.count(b"\n") < 2:
                answers += sock.recv(4096)
        first, second = (json.loads(line) for line in answers.splitlines())
        assert first == {"ok": True} and second["ok"] is False
    assert not Path(path).exists()


def test_send_control_reports_an_absent_emulator(short_dir: Path) -> None:
    with pytest.raises(ControlError, match="control channel"):
        send_control(str(short_dir / "nobody.sock"), {"query": "state"})


def test_a_socket_path_too_long_is_refused_clearly() -> None:
    with pytest.raises(ControlError, match="at most 107"):
        ControlServer("/tmp/" + "x" * 200, ControlChannel(None, None))


# --------------------------------------------------------------------- truth log
def test_truth_log_records_what_reached_the_patient(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    clock = VirtualClock()
    with TruthLogWriter(path) as writer:
        pump = SimulatedPump(clock, truth_sink=writer)
        pump.set_rate(60.0)
        pump.start()
        clock.advance(60.0)
        # the file is complete after every event, while the pump still runs
        assert read_truth_log(path) == pump.truth.events
        pump.set_occlusion(True)
        clock.advance(120.0)
        pump.set_occlusion(False)
        clock.advance(10.0)
        pump.stop()
    events = read_truth_log(path)
    assert events == pump.truth.events
    assert any(isinstance(e, TruthBolus) for e in events)
    assert delivered_volume(events, clock.now()) == pytest.approx(
        pump.truth.delivered_ml(clock.now()), rel=1e-12
    )


def test_truth_log_skips_a_line_cut_short_but_not_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text(
        '{"type":"segment","start":0.0,"rate_ml_h":0.0}\n'
        '{"type":"segment","start":5.0,"rate_ml_h":3.0}\n'
        '{"type":"segm'
    )
    assert read_truth_log(path) == [TruthSegment(0.0, 0.0), TruthSegment(5.0, 3.0)]
    path.write_text('{"type":"segment","start":0.0}\n{"type":"bolus","time":1,"volume_ml":0.1}\n')
    with pytest.raises(TruthLogError, match=r"truth.jsonl:1: segment event"):
        read_truth_log(path)
    path.write_text("not json\n")
    with pytest.raises(TruthLogError, match=r":1: not JSON"):
        read_truth_log(path)
