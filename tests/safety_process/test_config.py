"""The safety config: every bad field named with what is allowed; a bad file starts nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from hil_tests.harness.processes import PYTHON, REPO, write_toml
from safety.host.config import ConfigError, SafetyConfig, load_config, parse_config

MOCK = {"driver": "mock", "syringe": "bd-plastipak-50ml"}


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return dict(info.value.problems)


def test_shipped_configs_are_valid() -> None:
    for name in ("demo-safety.toml", "ne1000-safety.toml"):
        config = load_config(REPO / "config" / "bench" / name)
        assert isinstance(config, SafetyConfig)
    demo = load_config(REPO / "config" / "bench" / "demo-safety.toml")
    assert demo.pump is not None and demo.pump.driver == "mock"
    assert demo.gpio.backend == "simulated"
    assert demo.clock.clinical == "scaled:60"
    # relative to the config file, not the working directory
    assert demo.paths.library == str(REPO / "config" / "bench" / ".." / "drug_library.toml")


def test_minimal_config_takes_the_documented_defaults() -> None:
    config = parse_config({"pump": MOCK})
    assert config.timing.heartbeat_timeout_s == 2.0
    assert config.timing.poll_period_s == 1.0
    assert config.gpio.backend == "none"
    assert config.clock.clinical == "real"
    assert config.paths.library is None


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"pump": {**MOCK, "driver": "ne100"}}, "pump.driver", "'mock', 'ne1000', 'harvard'"),
        ({"pump": {**MOCK, "syringe": "bd-99ml"}}, "pump.syringe", "known syringes"),
        (
            {"pump": MOCK, "timing": {"heartbeat_timeout_s": 0}},
            "timing.heartbeat_timeout_s",
            "must be 0.2-30.0",
        ),
        (
            {"pump": MOCK, "timing": {"heartbeat_timeout_s": float("nan")}},
            "timing.heartbeat_timeout_s",
            "must be 0.2-30.0, got nan",
        ),
        ({"pump": MOCK, "timing": {"poll_period_s": 100}}, "timing.poll_period_s", "30"),
        (
            {"pump": MOCK, "timing": {"heartbeat_timout_s": 1}},
            "timing.heartbeat_timout_s",
            "allowed here: button_poll_s, heartbeat_timeout_s",
        ),
        ({"pump": MOCK, "gpio": {"backend": "pi"}}, "gpio.backend", "'none', 'simulated' or 'rpi'"),
        ({"pump": MOCK, "gpio": {"backend": "simulated"}}, "gpio", "needs state_dir"),
        (
            {"pump": MOCK, "gpio": {"backend": "rpi", "pins": {"alarm_pin": 40}}},
            "gpio.pins",
            "alarm_pin must be a BCM pin number 0-27",
        ),
        (
            {"pump": MOCK, "gpio": {"backend": "rpi", "pins": {"alarm_pn": 4}}},
            "gpio.pins",
            "unknown GPIO setting",
        ),
        ({"pump": MOCK, "clock": {"clinical": "fast"}}, "clock.clinical", "'real', 'scaled"),
        (
            {"pump": {**MOCK, "mock": {"faults": "occlusoin"}}},
            "pump.mock.faults",
            "unknown fault 'occlusoin'",
        ),
        (
            {"pump": {**MOCK, "mock": {"loaded_volume_ml": -1}}},
            "pump.mock.loaded_volume_ml",
            "must be more than 0 and at most 1000",
        ),
        ({"pump": {**MOCK, "options": {"port": "/dev/x"}}}, "pump", "[pump.mock]"),
        (
            {
                "pump": {
                    "driver": "ne1000",
                    "syringe": "bd-plastipak-50ml",
                    "options": {"port": "/dev/ttyUSB0", "adress": 1},
                }
            },
            "pump",
            "unknown option(s) 'adress'",
        ),
        (
            {
                "pump": {
                    "driver": "ne1000",
                    "syringe": "bd-plastipak-50ml",
                    "options": {"port": "/dev/ttyUSB0", "address": 120},
                }
            },
            "pump",
            "address must be 0-99",
        ),
        (
            {"pump": {"driver": "ne1000", "syringe": "bd-plastipak-50ml"}},
            "pump",
            # a port of its own or a shared line (drivers/lines.py): one of them is required
            "port= (a serial device) or line= (a shared line) is required",
        ),
        (
            {"pump": MOCK, "paths": {"socket": "/tmp/" + "s" * 120}},
            "paths.socket",
            "at most 107 bytes",
        ),
        (
            {"pump": MOCK, "pupm": {}},
            "pupm",
            "allowed here: channels, clock, dashboard, gpio, interlock, lines, monitor, "
            "paths, pump, relay, telemetry, timing, watchdog",
        ),
        ({"pump": MOCK, "watchdog": {"device": " "}}, "watchdog.device", "/dev/watchdog"),
        ({"pump": MOCK, "watchdog": {"devise": "/dev/watchdog"}}, "watchdog.devise", "device"),
        ({}, "(top level)", "no pump: give [pump] (a one-pump bench) or [channels.NAME]"),
    ],
)
def test_a_bad_field_is_named_with_what_is_allowed(
    raw: dict[str, Any], field: str, words: str
) -> None:
    found = problems(raw)
    assert field in found, found
    assert words in found[field]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {"pump": {**MOCK, "syringe": "x"}, "timing": {"poll_period_s": 0}, "clock": {"x": 1}}
    )
    assert set(found) == {"pump.syringe", "timing.poll_period_s", "clock.x"}


def test_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pump\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = write_toml(
        tmp_path / "sub" / "c.toml",
        {
            "pump": MOCK,
            "paths": {"journal": "j.sqlite", "socket": "s.sock", "key_file": "k"},
            "gpio": {"backend": "simulated", "state_dir": "gpio"},
        },
    )
    config = load_config(path)
    base = path.parent.resolve()
    assert config.paths.journal == str(base / "j.sqlite")
    assert config.paths.socket == str(base / "s.sock")
    assert config.paths.key_file == str(base / "k")
    assert config.gpio.state_dir == str(base / "gpio")


def test_overrides_replace_paths_and_are_checked() -> None:
    config = parse_config({"pump": MOCK}).with_overrides(socket="/tmp/x.sock", journal="/tmp/j")
    assert config.paths.socket == "/tmp/x.sock"
    assert config.paths.journal == "/tmp/j"
    with pytest.raises(ValueError, match="at most 107 bytes"):
        parse_config({"pump": MOCK}).with_overrides(socket="/" + "x" * 200)


@pytest.mark.hil
def test_the_process_refuses_a_bad_config_with_status_2_and_starts_nothing(
    tmp_path: Path,
) -> None:
    config = write_toml(
        tmp_path / "bad.toml",
        {
            "pump": {**MOCK, "syringe": "nope"},
            "timing": {"heartbeat_timeout_s": 600},
            "paths": {"journal": "j.sqlite", "socket": "s.sock", "key_file": "key"},
        },
    )
    done = subprocess.run(
        [PYTHON, "-m", "safety", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2
    assert "pump.syringe" in done.stderr
    assert "timing.heartbeat_timeout_s" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # never "ready"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # no journal, key, socket


@pytest.mark.hil
def test_check_mode_validates_without_starting(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "ok.toml",
        {"pump": MOCK, "paths": {"journal": "j.sqlite", "socket": "s.sock", "key_file": "key"}},
    )
    done = subprocess.run(
        [PYTHON, "-m", "safety", "--config", str(config), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.toml"]


@pytest.mark.parametrize(
    ("monitor", "field", "words"),
    [
        ({"wire": "tcp://h:70000"}, "monitor.wire", "the TCP port must be 1-65535, got '70000'"),
        ({"wire": "tcp://h:1", "speed": 2}, "monitor.speed", "applies to replay only"),
        ({}, "monitor", "give exactly one source"),
    ],
)
def test_a_monitor_problem_is_named_at_its_own_field(
    monitor: dict[str, Any], field: str, words: str
) -> None:
    """As docs/closed-loop.md quotes it (it read ``monitor: wire: ...``)."""
    found = problems({"pump": MOCK, "monitor": monitor})
    assert list(found) == [field] and words in found[field]


def test_check_mode_asks_for_the_replay_file_the_safety_process_itself_never_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safety.host.process import main  # the command's own entry, in process

    paths = {"journal": "j.sqlite", "socket": "s.sock", "key_file": "key"}
    config = write_toml(
        tmp_path / "loop.toml", {"pump": MOCK, "paths": paths, "monitor": {"replay": "t.csv"}}
    )
    assert parse_config({"pump": MOCK, "monitor": {"replay": "t.csv"}}).monitor  # starts
    assert main(["--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "monitor.replay" in err and "t.csv" in err and "Traceback" not in err
    (tmp_path / "t.csv").write_text("time_s,map_mmhg\n0,70\n", encoding="utf-8")
    assert main(["--config", str(config), "--check"]) == 0
    assert "valid" in capsys.readouterr().out
