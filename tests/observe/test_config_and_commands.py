"""The observers' config sections and the commands' refusals: bad input names its field
(exit 2), a network address without a token is refused before anything listens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.main import main
from observe.dashboard.serve import DashboardError, check_bind, is_loopback, load_token
from safety.observer_config import ObserverConfigError, parse_observer_config


def test_the_observer_view_of_the_bench_config(tmp_path: Path) -> None:
    raw = {
        "pump": {"driver": "mock"},  # the safety process's: not read here
        "paths": {"socket": "run/s.sock", "key_file": "keys/ipc.key"},
        "telemetry": {"bench": "rig-3", "host": "broker.lab", "outbox": "out.sqlite"},
        "dashboard": {"port": 9000, "token_file": "token"},
    }
    config = parse_observer_config(raw, base_dir=tmp_path)
    assert config.socket == str(tmp_path / "run/s.sock")
    assert config.observer_key_file == str(tmp_path / "keys/observer.key")  # beside the key
    assert config.telemetry is not None and config.telemetry.bench == "rig-3"
    assert config.telemetry.outbox == str(tmp_path / "out.sqlite")
    assert config.dashboard.port == 9000 and config.dashboard.token_file == str(tmp_path / "token")


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        ({"telemetry": {"bench": "a/b"}}, "telemetry.bench", "pattern"),
        ({"telemetry": {"bench": "a", "port": 0}}, "telemetry.port", "greater than or equal"),
        ({"telemetry": {"bench": "a", "port": 65536}}, "telemetry.port", "less than or equal"),
        ({"telemetry": {"bench": "a", "brokr": "x"}}, "telemetry.brokr", "unknown setting"),
        ({"telemetry": {"host": "x"}}, "telemetry.bench", "missing"),
        ({"telemetry": {"bench": "a", "topic_prefix": "a/#"}}, "telemetry.topic_prefix", "pattern"),
        ({"telemetry": {"bench": "a", "status_period_s": 0.4}}, "telemetry.status_period_s", "0.5"),
        ({"dashboard": {"port": 70000}}, "dashboard.port", "less than or equal"),
        ({"dashboard": {"hots": "x"}}, "dashboard.hots", "unknown setting"),
    ],
)
def test_a_bad_setting_is_named(table: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ObserverConfigError) as info:
        parse_observer_config(table)
    problems = dict(info.value.problems)
    assert field in problems and words in problems[field], problems


def test_at_the_port_limits() -> None:
    assert parse_observer_config({"dashboard": {"port": 65535}}).dashboard.port == 65535
    assert parse_observer_config({"dashboard": {"port": 1}}).dashboard.port == 1


def test_the_safety_process_refuses_the_same_mistakes() -> None:
    from safety.host.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "pump": {"driver": "mock", "syringe": "bd-plastipak-50ml"},
                "telemetry": {"bench": "a", "brokr": "x"},
            }
        )
    assert "telemetry.brokr" in dict(info.value.problems)
    with pytest.raises(ConfigError, match="observer_key_file must differ"):
        parse_config(
            {
                "pump": {"driver": "mock", "syringe": "bd-plastipak-50ml"},
                "paths": {"key_file": "/k/ipc.key", "observer_key_file": "/k/ipc.key"},
            }
        )


# --------------------------------------------------------------------------- bind and token


def test_only_loopback_goes_without_a_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    check_bind("127.0.0.1", None)
    with pytest.raises(DashboardError, match="access token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "x" * 16)


def test_a_token_file_must_be_private_and_long_enough(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a" * 15 + "\n")
    os.chmod(token, 0o600)
    with pytest.raises(DashboardError, match="at least 16"):
        load_token(str(token))
    token.write_text("a" * 16 + "\n")
    assert load_token(str(token)) == "a" * 16
    os.chmod(token, 0o644)
    with pytest.raises(DashboardError, match="chmod 600"):
        load_token(str(token))


def _bench_config(tmp_path: Path) -> Path:
    config = tmp_path / "bench.toml"
    config.write_text(
        '[pump]\ndriver = "mock"\nsyringe = "bd-plastipak-50ml"\n'
        f'[paths]\nsocket = "{tmp_path}/s.sock"\nkey_file = "{tmp_path}/ipc.key"\n'
    )
    return config


def test_the_dashboard_refuses_the_network_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dashboard", "--config", str(_bench_config(tmp_path)), "--host", "0.0.0.0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0" in err and "access token" in err and "Traceback" not in err


def test_telemetry_needs_its_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telemetry", "--config", str(_bench_config(tmp_path))]) == 2
    assert "no [telemetry] section" in capsys.readouterr().err


def test_the_fleet_refuses_a_bad_broker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "--broker", "nohost"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert main(["fleet", "--broker", "h:70000"]) == 2
