"""``emulate``: bad arguments exit 2 with one line; a real run prints where to connect
first, serves a driver, answers its control channel, logs the truth, stops on SIGTERM."""

from __future__ import annotations

import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.emulators.cli import main
from firmware_bridge.emulators.control import send_control
from firmware_bridge.emulators.truth_log import read_truth_log
from hil_tests.harness.processes import PYTHON, Child, wait_for

STARTUP_S = 20.0  # a bounded wait for the child's first line, not a timing requirement
#: the patient case's clock: clinical seconds per real second
PATIENT_SPEED = 600.0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["ne1000", "--address", "100"], "--address: ne1000 addresses are 0-99"),
        (["modbus", "--address", "0"], "--address: modbus addresses are 1-247"),
        (["ne1000", "--baud", "7"], "--baud: ne1000 supports 300, 1200, 2400, 9600, 19200"),
        (["harvard", "--map", "x.toml"], "--map: only the modbus emulator"),
        (["ne1000", "--tcp", "localhost:1", "--link", "/tmp/x"], "--link: only with --pty"),
        (["ne1000", "--tcp", "nonsense"], "--tcp: expected HOST:PORT"),
        (["ne1000", "--syringe", "nope"], "--syringe: unknown syringe 'nope'"),
        (["ne1000", "--diameter", "0"], "--diameter: must be 0.1-50 mm"),
        (["ne1000", "--clock", "weird"], "--clock: clock spec 'weird'"),
        (["ne1000", "--faults", "melt"], "--faults: unknown fault 'melt'"),
        (["ne1000", "--volume", "999"], "--volume: loaded volume 999.0 mL outside"),
        (["ne1000", "--pty", "--tcp", "h:1"], "not allowed with argument"),
        (["ne1000", "--address", "x"], "invalid int value: 'x'"),
        (["ne1000", "--addresses", "0,x"], "--addresses: expected numbers separated by commas"),
        (["ne1000", "--address", "1", "--addresses", "1"], "each pump on a line needs its own"),
        (["harvard", "--addresses", "1,100"], "--address: harvard addresses are 0-99"),
        (["ne1000", "--addresses", "0,1", "--balance-pty"], "--balance-pty: weighs one pump"),
        (["ne1000", "--container", "bag-500ml"], "--container: the ne1000 emulator is a syringe"),
        (["modbus", "--container", "bag-5ml"], "--container: unknown bag 'bag-5ml'"),
        (["modbus", "--container", "bag-500ml"], "--container: the map"),
        (["modbus", "--container", "bag-500ml", "--syringe", "x"], "not allowed with argument"),
        # the monitor period: refused here, before the pty is served (it was a traceback)
        (
            ["ne1000", "--pty", "--patient", "period=0"],
            "--patient: patient spec: period must be 0.1-60 s, got '0'",
        ),
        (
            ["ne1000", "--pty", "--patient", "period=0.0999"],
            "period must be 0.1-60 s, got '0.0999'",
        ),
        (
            ["ne1000", "--pty", "--patient", "period=60.001"],
            "period must be 0.1-60 s, got '60.001'",
        ),
        (["ne1000", "--pty", "--patient", "period=nan"], "period must be 0.1-60 s, got 'nan'"),
        (["ne1000", "--pty", "--patient", "drug=0"], "drug strength must be above 0 and at most"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emulate: error: ")
    assert words in lines[0]


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--help"]) == 0
    assert "ne1000" in capsys.readouterr().out


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="emu", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def emulator(*args: str) -> Child:
    """The emulator as a separate process, as the HIL suite runs it (its harness's child:
    stdout lines collected as they come, stopped with SIGTERM, reaped)."""
    return Child([PYTHON, "-m", "firmware_bridge.emulators", *args])


def exit_code(child: Child) -> int:
    """Stop the child (SIGTERM: an emulator's normal end) and return its exit status."""
    child.stop()
    return child.proc.returncode


@pytest.mark.hil
def test_ne1000_on_a_pty_end_to_end(short_dir: Path) -> None:
    control = str(short_dir / "c.sock")
    truth = short_dir / "truth.jsonl"
    child = emulator(
        "ne1000", "--pty", "--address", "4", "--syringe", "bd-plastipak-20ml",
        "--control", control, "--truth-log", str(truth), "--ignore-first-command",
    )  # fmt: skip
    try:
        where = child.first_line(STARTUP_S)
        assert where.startswith("/dev/")  # the first line is the pty, nothing else
        assert child.wait_line("control", STARTUP_S) == f"control channel at {control}"
        driver = Ne1000Driver(port=where, address=4, reply_timeout_s=0.5)
        driver.connect()  # the first command is ignored: the throw-away query covers it
        assert driver.identify().model == "NE1000"
        driver.set_rate(driver.quantize_rate(30.0))
        driver.start()
        state = send_control(control, {"query": "state"})
        assert state["pump"]["running"] is True
        assert state["pump"]["syringe"]["name"] == "bd-plastipak-20ml"
        assert state["wire"]["protocol"]["address"] == 4
        assert send_control(control, {"fault": "stall"}) == {"ok": True}
        with pytest.raises(Exception, match="A\\?S"):
            driver.set_rate(driver.quantize_rate(20.0))
        driver.close()
        frames = wait_for(
            lambda: [f for f in child.lines[2:] if " ne1000 " in f] or None, STARTUP_S, "frames"
        )
        assert all("|" in f for f in frames)  # frames are logged, bytes and text
    finally:
        assert exit_code(child) == 0
    rates = [getattr(e, "rate_ml_h", None) for e in read_truth_log(truth)]
    assert 30.0 in rates and rates[-1] == 0.0  # ran, then stopped by the stall


@pytest.mark.hil
def test_harvard_on_tcp_end_to_end() -> None:
    child = emulator("harvard", "--tcp", "127.0.0.1:0", "--address", "2")
    try:
        where = child.first_line(STARTUP_S)
        host, port = where.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        driver = HarvardDriver(port=f"socket://{where}", address=2, reply_timeout_s=0.5)
        driver.connect()
        assert driver.identify().firmware == "3.0.4"
        driver.close()
    finally:
        assert exit_code(child) == 0


@pytest.mark.hil
def test_modbus_dispatch_prints_where_to_connect_first() -> None:
    pytest.importorskip("firmware_bridge.modbus.emulator")
    child = emulator("modbus", "--tcp", "127.0.0.1:0")
    try:
        host, port = child.first_line(STARTUP_S).rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
    finally:
        assert exit_code(child) == 0


@pytest.mark.hil
def test_two_ne1000_on_one_pty_with_truth_logs_and_one_control_channel(short_dir: Path) -> None:
    from drivers.lines import LineSpec, open_line

    control = str(short_dir / "c.sock")
    truth_dir = short_dir / "truth"
    child = emulator(
        "ne1000", "--pty", "--addresses", "3,5", "--control", control,
        "--truth-log", str(truth_dir),
    )  # fmt: skip
    try:
        where = child.first_line(STARTUP_S)
        assert child.wait_line("control", STARTUP_S) == f"control channel at {control}"
        line = open_line(LineSpec(kind="serial", port=where, baud=19200))
        three = Ne1000Driver(line=line, address=3, reply_timeout_s=0.5)
        five = Ne1000Driver(line=line, address=5, reply_timeout_s=0.5)
        three.connect()
        five.connect()
        three.set_rate(three.quantize_rate(12.0))
        three.start()
        state = send_control(control, {"query": "state"})
        assert state["pumps"]["3"]["running"] is True
        assert state["pumps"]["5"]["running"] is False
        assert send_control(control, {"address": 5, "fault": "stall"}) == {"ok": True}
        refused = send_control(control, {"fault": "stall"})
        assert refused["ok"] is False and "address" in refused["error"]
        assert send_control(control, {"address": 3, "query": "state"})["pump"]["running"]
        three.close()
        five.close()
    finally:
        assert exit_code(child) == 0
    rates = [getattr(e, "rate_ml_h", None) for e in read_truth_log(truth_dir / "pump-3.jsonl")]
    assert 12.0 in rates
    quiet = [getattr(e, "rate_ml_h", None) for e in read_truth_log(truth_dir / "pump-5.jsonl")]
    assert set(quiet) == {0.0}


@pytest.mark.hil
def test_modbus_volumetric_pumps_on_one_tcp_server() -> None:
    pytest.importorskip("firmware_bridge.modbus.emulator")
    from drivers.pumps.modbus import ModbusDriver
    from firmware_bridge.syringes import BAGS

    child = emulator(
        "modbus", "--tcp", "127.0.0.1:0", "--map", "peristaltic", "--container", "bag-500ml",
        "--addresses", "20,21",
    )  # fmt: skip
    try:
        host, port = child.first_line(STARTUP_S).rsplit(":", 1)
        for unit in (20, 21):
            driver = ModbusDriver(map_path="peristaltic", host=host, port=int(port), device_id=unit)
            driver.connect()
            assert driver.configure_syringe(BAGS["bag-500ml"]).max_ml_h == 999.0
            driver.close()
    finally:
        assert exit_code(child) == 0


@pytest.mark.hil
def test_a_patient_beside_a_modbus_volumetric_pump_responds_to_its_flow() -> None:
    """The closed loop on a bag and a volumetric pump: ``--patient`` beside the Modbus
    emulator as beside the serial ones. The monitor's announcement comes after the
    server's (the first line stays where to connect), and the patient's MAP rises on the
    flow this pump delivers. The pump is driven by a public Modbus client (pymodbus), not
    our driver. Judged on clinical time: the monitor's stamps, and the pump's start read
    off the emulator's own scaled clock after it, so a slow start on a busy machine
    shortens nothing."""
    pytest.importorskip("firmware_bridge.modbus.emulator")
    from pymodbus.client import ModbusTcpClient

    from drivers.monitors.wire import WireMonitor

    origin = time.monotonic()
    child = emulator(
        "modbus", "--tcp", "127.0.0.1:0", "--map", "peristaltic", "--container", "bag-500ml",
        "--clock", f"scaled:{PATIENT_SPEED:g}:{origin}",
        "--patient", "seed=modbus,artefacts=none", "--monitor-tcp", "127.0.0.1:0",
    )  # fmt: skip
    monitor: WireMonitor | None = None
    client: ModbusTcpClient | None = None
    try:
        host, port = child.first_line(STARTUP_S).rsplit(":", 1)
        where = child.wait_line("monitor at", STARTUP_S)
        assert child.lines.index(where) == 1, child.lines[:3]  # the server's address first
        assert where.startswith("monitor at 127.0.0.1:"), where
        monitor = WireMonitor(f"socket://{where.removeprefix('monitor at ')}")
        monitor.open()
        seen: list[tuple[float, float]] = []

        def read_until(clinical_s: float) -> None:
            deadline = time.monotonic() + STARTUP_S
            while not seen or seen[-1][0] < clinical_s:
                assert time.monotonic() < deadline, f"no MAP up to {clinical_s} s: {seen[-3:]}"
                assert monitor is not None
                seen.extend((s.time, s.map_mmhg) for s in monitor.poll() if s.map_mmhg)
                time.sleep(0.02)  # a poll period of the client, not a wait for an outcome

        read_until(0.0)
        started = seen[-1][0]
        read_until(started + 300.0)
        before = [m for t, m in seen if t >= started]
        client = ModbusTcpClient(host, port=int(port), timeout=2)
        assert client.connect()  # type: ignore[no-untyped-call]
        # the peristaltic map (unit 20): 60 mL/h, float32 big-endian words, in holding
        # registers 1211-1212 (16 mcg/min of 16 mcg/mL), then the run coil 0
        rate = list(struct.unpack(">HH", struct.pack(">f", 60.0)))
        assert not client.write_registers(1211, rate, device_id=20).isError()
        assert not client.write_coil(0, True, device_id=20).isError()
        state = client.read_holding_registers(1200, count=1, device_id=20).registers[0]
        assert state & 0b1  # running
        on = (time.monotonic() - origin) * PATIENT_SPEED  # the emulator's clinical time, now
        read_until(on + 1800.0)
        after = [m for t, m in seen if t >= on + 1500.0]
        rise = sum(after) / len(after) - sum(before) / len(before)
        assert rise > 10.0, f"MAP rose {rise:.1f} mmHg in 30 min of 16 mcg/min"
    finally:
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
        if monitor is not None:
            monitor.close()
        assert exit_code(child) == 0
