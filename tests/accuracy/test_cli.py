"""``pumpctl accuracy analyse|run``: the JSON contract, bad files named by line and bad
options named by option (exit 2), a real bench's errors before anything moves (exit 1),
and a short emulated run end to end."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from controller.accuracy.readings import HEADER, read_csv
from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import BalanceModel, ConstantFlow
from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.faults import WireFaults

WINDOWS = ("2", "5", "11", "19", "31")


def _write(path: Path, rows: list[str], header: str = "time_s,mass_g,note") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _steady(rate: float = 6.0, n: int = 241, note: str = "x") -> list[str]:
    return [f"{i * 30},{0.9982 * rate * i * 30 / 3600:.4f},{note}" for i in range(n)]


def _analyse(path: Path, *more: str) -> list[str]:
    return ["accuracy", "analyse", str(path), "--rate", "6", "--density", "0.9982", *more]


def test_json_has_the_promised_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _write(tmp_path / "r.csv", _steady())
    assert main([*_analyse(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rate_ml_h"] == 6.0
    for key in ("mean_error_pct", "startup_delay_min"):
        assert isinstance(out[key], float) and math.isfinite(out[key]), key
    assert abs(out["mean_error_pct"]) < 0.01 and abs(out["startup_delay_min"]) < 0.01
    assert tuple(out["trumpet"]) == WINDOWS
    for p in WINDOWS:
        entry = out["trumpet"][p]
        assert isinstance(entry["max_pct"], float) and isinstance(entry["min_pct"], float), p
        assert entry["min_pct"] <= entry["max_pct"]
        assert entry["windows"] == (60 - int(p)) * 2 + 1  # m = (T2 - P)/S + 1
    assert out["periods"][0]["start_min"] == 60.0 and out["periods"][0]["end_min"] == 120.0


def test_a_short_period_keeps_every_window_key_with_null_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = _write(tmp_path / "r.csv", _steady(n=41))
    assert main([*_analyse(f), "--period", "5-20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert tuple(out["trumpet"]) == WINDOWS
    assert isinstance(out["trumpet"]["11"]["max_pct"], float)
    for p in ("19", "31"):
        assert out["trumpet"][p] == {"max_pct": None, "min_pct": None, "windows": 0}
    assert any("19, 31 min window(s) are longer" in n for n in out["notes"])


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (["0,0,a", "30,oops,b"], "r.csv:3: expected numbers"),
        (["0,0,a", "30,0.1,a", "30,0.2,a"], "r.csv:4: time 30 s does not come after"),
        (["0,0,a", "30", "60,0.2,a"], "r.csv:3: expected numbers in time_s and mass_g"),
        (["0,0,a", "30,inf,a", "60,0.2,a"], "r.csv:3: time_s and mass_g must be finite"),
        # blank lines do not shift the line named
        (["0,0,a", "", "", "30,0.1,a", "", "30,0.2,a"], "r.csv:7: time 30 s does not come"),
        # a gap: two readings missing before line 6
        (["0,0,a", "30,0.1,a", "60,0.2,a", "90,0.3,a", "180,0.6,a"], "r.csv:6: readings missing"),
    ],
)
def test_bad_files_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[str], words: str
) -> None:
    f = _write(tmp_path / "r.csv", rows)
    assert main(["accuracy", "analyse", str(f), "--rate", "6"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_bad_headers_and_encodings_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = _write(tmp_path / "r.csv", ["0,0"], header="seconds,grams")
    assert main(["accuracy", "analyse", str(f), "--rate", "6"]) == 2
    assert "r.csv:1: header 'seconds,grams' lacks time_s and mass_g" in capsys.readouterr().err
    f.write_bytes(b"time_s,mass_g\n0,0\n30,\xff\n")
    assert main(["accuracy", "analyse", str(f), "--rate", "6"]) == 2
    assert "r.csv:3: not UTF-8 text" in capsys.readouterr().err
    f.write_text("")
    assert main(["accuracy", "analyse", str(f), "--rate", "6"]) == 2
    assert "r.csv: empty" in capsys.readouterr().err
    assert main(["accuracy", "analyse", str(tmp_path / "none.csv"), "--rate", "6", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == "file" and "cannot read" in error["message"]


def test_a_spreadsheets_export_is_read(tmp_path: Path) -> None:
    """A byte-order mark, CR LF line ends, quoted fields and columns in another order."""
    lines = ['"mass_g","time_s"'] + [
        f'"{0.9982 * 6 * i * 30 / 3600:.4f}","{i * 30}"' for i in range(5)
    ]
    f = tmp_path / "export.csv"
    f.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    readings = read_csv(f)
    assert readings.times_s == [0.0, 30.0, 60.0, 90.0, 120.0]
    assert readings.lines == [2, 3, 4, 5, 6] and readings.masses_g[1] == 0.0499


# --------------------------------------------------------------------- run: bad options


@pytest.mark.parametrize(
    ("more", "field", "words"),
    [
        (["--interval-s", "0.5"], "interval_s", "--interval-s must be 1-600 s, got 0.5"),
        (["--interval-s", "601"], "interval_s", "--interval-s must be 1-600 s, got 601"),
        (["--duration-min", "1.4"], "duration_min", "--duration-min must cover 3 readings"),
        (["--duration-min", "2881"], "duration_min", "at most 48 h (2880 min), got 2881"),
        (["--duration-min", "60"], "period", "--period 60-120 ends after the run"),
        (["--duration-min", "30", "--period", "5-31"], "period", "--period 5-31 ends after"),
        (["--period", "5"], "period", "--period: expected START-END in minutes, got '5'"),
        (["--temperature", "41"], "temperature", "--temperature"),
        (["--config", "x.toml"], "balance_port", "(--balance-port is missing)"),
        (["--balance-port", "/dev/null"], "config", "(--config is missing)"),
        (["--mechanics", "wobbly"], "mechanics", "--mechanics: unknown mechanics 'wobbly'"),
        (["--syringe", "nope"], "syringe", "--syringe"),
        (["--fluid", "saline"], "fluid", "--fluid: test_fluid: 'saline' is not a test fluid"),
    ],
)
def test_bad_run_options_are_named_before_anything_starts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    more: list[str],
    field: str,
    words: str,
) -> None:
    args = ["accuracy", "run", "--rate", "5", "--out", str(tmp_path / "out"), "--json", *more]
    assert main(args) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == field and words in error["message"], error
    assert not (tmp_path / "out" / "readings.csv").exists()


def _bench_config(tmp_path: Path) -> Path:
    """A bench whose safety process is not running (its key file exists: it ran once)."""
    key = tmp_path / "ipc.key"
    key.write_text("00" * 32)
    key.chmod(0o600)
    config = tmp_path / "safety.toml"
    config.write_text(
        f'[paths]\njournal = "{tmp_path}/j.sqlite"\nsocket = "{tmp_path}/s.sock"\n'
        f'key_file = "{key}"\n'
    )
    return config


@pytest.mark.parametrize(
    ("more", "field", "words"),
    [
        (["--syringe", "bd-plastipak-10ml"], "syringe", "--syringe is for the emulated bench"),
        (["--library", "x.toml"], "library", "--library is for the emulated bench"),
        (["--stable-timeout-s", "0.5"], "stable_timeout_s", "must be 1-120 s, got 0.5"),
        (["--balance-baud", "1234"], "balance_baud", "mtsics baud must be one of"),
        (["--balance-driver", "sbi"], "balance_driver", "unknown balance driver 'sbi'"),
    ],
)
def test_bad_real_bench_options_are_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    more: list[str],
    field: str,
    words: str,
) -> None:
    config = _bench_config(tmp_path)
    args = ["accuracy", "run", "--rate", "5", "--config", str(config), "--balance-port"]
    args += [str(tmp_path / "tty"), "--out", str(tmp_path / "out"), "--json", *more]
    assert main(args) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == field and words in error["message"], error


def test_a_bench_config_that_is_not_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "safety.toml"
    config.write_text("[paths]\nsockett = 1\n")
    args = ["accuracy", "run", "--rate", "5", "--config", str(config), "--balance-port", "x"]
    assert main([*args, "--out", str(tmp_path / "out"), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == "paths.sockett"


@contextlib.contextmanager
def _balance_on_a_pty() -> Iterator[str]:
    clock = VirtualClock(0.0)
    model = BalanceModel(clock, ConstantFlow(clock, 0.0))
    with BackgroundLine(MtSicsBalanceSide(model), WireFaults()) as line:
        yield line.where


def test_a_real_bench_fails_clearly_before_anything_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _bench_config(tmp_path)
    base = ["accuracy", "run", "--rate", "5", "--config", str(config), "--out", str(tmp_path)]
    # no balance on the port
    assert main([*base, "--balance-port", str(tmp_path / "no-tty")]) == 1
    err = capsys.readouterr().err
    assert f"the balance on {tmp_path / 'no-tty'} (mtsics, 9600 baud) does not answer" in err
    # a balance, but no safety process answering on the bench's socket
    with _balance_on_a_pty() as port:
        assert main([*base, "--balance-port", port]) == 1
    err = capsys.readouterr().err
    assert f"no safety process answers on {tmp_path / 's.sock'}" in err
    assert not (tmp_path / "readings.csv").exists()


# --------------------------------------------------------------------- run: emulated


def test_a_short_emulated_run_writes_readings_plots_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["accuracy", "run", "--rate", "10", "--duration-min", "20", "--period", "5-20"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["run"] == {
        "readings": 41,
        "dynamic_readings": result["run"]["dynamic_readings"],
        "csv": str(out / "readings.csv"),
        "stop": "stopped through the safety process",
        "interrupted": False,
    }
    # typical mechanics: slack 0.25 mm of a 50 mL syringe (0.555 mL/mm) at 10 mL/h + 30 s
    assert result["startup_delay_min"] == pytest.approx(0.25 * 0.555 / 10 * 60 + 0.5, rel=0.05)
    assert "reading 20/40 at 10.0 min" in captured.err
    text = (out / "readings.csv").read_text().splitlines()
    assert tuple(text[0].split(",")) == HEADER and len(text) == 42
    report = (out / "report.md").read_text()
    assert "model's own figures: start-up delay 1.33 min" in report
    assert "stop: stopped through the safety process" in report
