"""The bench config's ``[monitor]`` table: the closed loop's MAP source, read by the
controller (``load_bench_config``) and checked by the safety process (``--check``) with
one parser. Each field at its limit and one step past it; every problem names the field."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from controller.bench_config import BenchConfigError, load_bench_config
from drivers.monitors.config import MonitorConfigError, MonitorSpec, parse_monitor
from drivers.monitors.replay import CsvReplay
from drivers.monitors.wire import WireMonitor
from safety.host.config import ConfigError, parse_config


def _bench(tmp_path: Path, monitor: str) -> Path:
    config = tmp_path / "bench.toml"
    config.write_text(f'[clock]\nclinical = "scaled:60"\n\n[monitor]\n{monitor}\n')
    return config


def test_a_bench_without_a_monitor_has_none(tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text('[clock]\nclinical = "real"\n')
    assert load_bench_config(config).monitor is None


def test_the_wire_monitor_on_tcp(tmp_path: Path) -> None:
    bench = load_bench_config(_bench(tmp_path, 'wire = "tcp://127.0.0.1:5000"'))
    spec = bench.monitor
    assert spec == MonitorSpec("wire", "socket://127.0.0.1:5000")
    assert spec.describe() == "wire monitor at tcp://127.0.0.1:5000"
    source = spec.source(lambda: 0.0)  # built, not opened
    assert isinstance(source, WireMonitor) and source.port == "socket://127.0.0.1:5000"


def test_the_wire_monitor_on_a_pty_with_its_options(tmp_path: Path) -> None:
    bench = load_bench_config(
        _bench(tmp_path, 'wire = "/dev/pts/7"\nreply_timeout_s = 1.5\nbaud = 9600')
    )
    assert bench.monitor == MonitorSpec("wire", "/dev/pts/7", reply_timeout_s=1.5, baud=9600)


def test_a_replay_file_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    trace = tmp_path / "traces" / "map.csv"
    trace.write_text("time_s,map_mmhg\n0,80\n")
    bench = load_bench_config(_bench(tmp_path, 'replay = "traces/map.csv"\nspeed = 10'))
    spec = bench.monitor
    assert spec is not None and spec.kind == "replay" and spec.speed == 10.0
    assert Path(spec.where) == tmp_path.resolve() / "traces" / "map.csv"
    assert spec.describe().endswith("map.csv at 10x")
    assert isinstance(spec.source(lambda: 0.0), CsvReplay)


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("wire", {"wire": "tcp://h:1"}, {"wire": "tcp://h:0"}),
        ("wire", {"wire": "tcp://h:65535"}, {"wire": "tcp://h:65536"}),
        ("reply_timeout_s", {"reply_timeout_s": 0.01}, {"reply_timeout_s": 0.0099}),
        ("reply_timeout_s", {"reply_timeout_s": 30}, {"reply_timeout_s": 30.01}),
        ("baud", {"baud": 1}, {"baud": 0}),
        ("baud", {"baud": 4_000_000}, {"baud": 4_000_001}),
        ("speed", {"speed": 1e6}, {"speed": 1.000001e6}),
        ("speed", {"speed": 1e-9}, {"speed": 0}),
    ],
)
def test_each_range_at_its_limit_and_one_past(
    field: str, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    base: dict[str, Any] = {"replay": "t.csv"} if field == "speed" else {"wire": "/dev/pts/1"}
    parse_monitor({**base, **good})
    with pytest.raises(MonitorConfigError) as info:
        parse_monitor({**base, **bad})
    assert info.value.field == f"monitor.{field}"
    assert "must be" in info.value.message


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        ({}, "monitor", "give exactly one source"),
        ({"wire": "tcp://h:1", "replay": "t.csv"}, "monitor", "got wire, replay"),
        ({"wire": "/dev/pts/1", "speed": 2}, "monitor.speed", "applies to replay only"),
        ({"replay": "t.csv", "baud": 9600}, "monitor.baud", "applies to wire only"),
        ({"wire": "/dev/pts/1", "colour": "red"}, "monitor.colour", "is not a setting"),
        ({"wire": ""}, "monitor.wire", "must be text"),
        ({"wire": 5000}, "monitor.wire", "must be text"),
        ({"wire": "pts/1"}, "monitor.wire", "absolute path"),
        ({"wire": "udp://h:1"}, "monitor.wire", "tcp://HOST:PORT"),
        ({"wire": "tcp://:5000"}, "monitor.wire", "tcp://HOST:PORT"),
        ({"wire": "tcp://h:port"}, "monitor.wire", "port must be 1-65535"),
        ({"wire": "/dev/pts/1", "reply_timeout_s": "1"}, "monitor.reply_timeout_s", "0.01-30"),
        ({"wire": "/dev/pts/1", "baud": 9600.0}, "monitor.baud", "whole number"),
        ({"wire": "/dev/pts/1", "baud": True}, "monitor.baud", "whole number"),
        ({"replay": "t.csv", "speed": float("inf")}, "monitor.speed", "above 0"),
    ],
)
def test_each_bad_table_names_its_field(table: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(MonitorConfigError) as info:
        parse_monitor(table)
    assert info.value.field == field
    assert words in str(info.value)


def test_the_controller_reports_the_field_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(BenchConfigError) as info:
        load_bench_config(_bench(tmp_path, 'wire = "tcp://127.0.0.1:70000"'))
    assert info.value.field == "monitor.wire"
    assert str(tmp_path / "bench.toml") in info.value.message
    assert "TCP port must be 1-65535" in info.value.message
    with pytest.raises(BenchConfigError) as info:
        load_bench_config(_bench(tmp_path, 'replay = "missing.csv"'))
    assert info.value.field == "monitor.replay" and "no such file" in info.value.message
    config = tmp_path / "bench.toml"
    config.write_text('monitor = "tcp://127.0.0.1:5000"\n')
    with pytest.raises(BenchConfigError) as info:
        load_bench_config(config)
    assert info.value.field == "monitor" and "must be a table" in info.value.message


def test_the_safety_process_accepts_the_table_and_checks_it() -> None:
    pump = {"driver": "mock", "syringe": "bd-plastipak-50ml"}
    config = parse_config({"pump": pump, "monitor": {"wire": "tcp://127.0.0.1:5000"}})
    assert config.monitor == {"wire": "tcp://127.0.0.1:5000"}
    with pytest.raises(ConfigError) as info:
        parse_config({"pump": pump, "monitor": {"wire": "tcp://127.0.0.1:5000", "speed": 2}})
    problems = dict(info.value.problems)
    assert "applies to replay only" in problems["monitor.speed"]  # the field's own path


def test_pumpctl_run_refuses_a_bad_monitor_with_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _bench(tmp_path, 'wire = "tcp://127.0.0.1:0"')
    monkeypatch.setattr("sys.stdin", io.StringIO("quit\n"))
    assert main(["run", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "monitor.wire" in err and "TCP port must be 1-65535" in err
    assert "Traceback" not in err
