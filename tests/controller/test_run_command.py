"""``pumpctl run`` for real: a safety process started as a child (``python -m safety``),
the authenticated socket, a 600x clinical clock, commands on stdin.

Real processes, so real (short, bounded) waits: the child's start-up and ``wait``
commands of a fraction of a second. Every child started here is stopped by its pid."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.commands import run as run_module
from cli.main import main
from controller import connect as connect_module
from controller.bench_config import BenchConfigError, load_bench_config
from controller.connect import connect, start_safety
from controller.machine import State
from safety.ipc.launch import SafetyChild
from safety.library import default_library_path

CONFIG = """\
[pump]
driver = "mock"
syringe = "bd-plastipak-50ml"

[gpio]
backend = "none"

[timing]
heartbeat_timeout_s = 2.0
poll_period_s = 0.2

[paths]
journal = "state/safety-journal.sqlite"
socket = "state/safety.sock"
key_file = "state/ipc.key"
library = "{library}"

[clock]
clinical = "scaled:600"
"""


@pytest.fixture
def bench_config(tmp_path: Path) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(CONFIG.format(library=default_library_path().resolve()))
    return path


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SafetyChild]]:
    """Every safety process started through ``start_safety``, stopped at the end."""
    started: list[SafetyChild] = []

    def recording(*args: object, **kwargs: object) -> SafetyChild:
        child = start_safety(*args, **kwargs)  # type: ignore[arg-type]
        started.append(child)
        return child

    monkeypatch.setattr(run_module, "start_safety", recording)
    yield started
    for child in started:
        if child.alive():
            child.stop(timeout_s=10)
        if child.alive():
            child.process.kill()
            child.process.wait(5)


def _run(monkeypatch: pytest.MonkeyPatch, config: Path, script: str, *extra: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    return main(["run", "--config", str(config), "--quiet", *extra])


@pytest.mark.hil
def test_run_starts_the_safety_process_and_drives_an_infusion(
    bench_config: Path,
    children: list[SafetyChild],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = "\n".join(
        [
            "program norepinephrine 4 mg/250 mL D5W",
            "start 8",
            "wait 1 min",
            "titrate 10",
            "confirm",
            "status",
            "quit",
        ]
    )
    assert _run(monkeypatch, bench_config, script) == 0
    out = capsys.readouterr().out
    assert "starting one" in out and "safety process started" in out
    assert "accepted (start): 8 mcg/min -> 30 mL/h" in out
    assert "step 1: accepted" in out
    assert "10 mcg/min @ 37.5 mL/h" in out
    assert "Traceback" not in out
    # quitting while infusing leaves the safety process running: the pump stays supervised
    assert "keeps running and supervising the bench (the infusion is infusing)" in out
    assert len(children) == 1 and children[0].alive()

    # a second console attaches to it and re-syncs without touching the rate
    script = "\n".join(["status", "ack", "estop", "wait 2 s", "ack", "quit"])
    assert _run(monkeypatch, bench_config, script, "--no-start") == 0
    out = capsys.readouterr().out
    assert "starting one" not in out
    status = out.split("> status", 1)[1]
    assert "[alarm]" in status and "controller_lost" in status
    assert "10 mcg/min @ 37.5 mL/h" in status  # the rate it was left at
    assert "emergency stop (console)" in out
    assert "pumpctl [stopped]>" in out


@pytest.mark.hil
def test_run_stops_the_safety_process_it_started_when_nothing_runs(
    bench_config: Path,
    children: list[SafetyChild],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(monkeypatch, bench_config, "status\nquit\n") == 0
    out = capsys.readouterr().out
    assert "safety process stopped (status 0)" in out
    assert len(children) == 1 and not children[0].alive()


def test_no_start_without_a_safety_process_fails_cleanly(
    bench_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, bench_config, "quit\n", "--no-start") == 1
    err = capsys.readouterr().err
    assert "no safety process has run" in err and "Traceback" not in err


def test_a_bad_config_names_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[paths]\nsockett = "x"\n')
    assert _run(monkeypatch, config, "quit\n") == 2
    assert "paths.sockett is not a setting" in capsys.readouterr().err
    assert _run(monkeypatch, tmp_path / "missing.toml", "quit\n") == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.hil
def test_connect_for_scripts(bench_config: Path, tmp_path: Path) -> None:
    child = start_safety(bench_config)
    try:
        with connect(bench_config) as session:
            assert session.state is State.IDLE
            session.program("norepinephrine", "4 mg/250 mL", "D5W")
            assert session.status().program is not None
        journal = load_bench_config(bench_config).controller_journal
        assert journal.exists() and journal.parent == tmp_path / "state"
    finally:
        assert child.stop() == 0


def test_bench_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    config = tmp_path / "sub" / "b.toml"
    config.parent.mkdir()
    config.write_text('[paths]\nsocket = "s.sock"\n[clock]\nclinical = "scaled:60"\n')
    bench = load_bench_config(config)
    assert bench.socket == config.parent.resolve() / "s.sock"
    assert bench.key_file == Path("/etc/pumpctl/ipc.key")  # the safety process's default
    assert bench.library is None and bench.clinical_clock == "scaled:60"
    config.write_text('[clock]\nclinical = "warp:9"\n')
    with pytest.raises(BenchConfigError) as info:
        load_bench_config(config)
    assert info.value.field == "clock.clinical"
    config.write_text("[paths\n")
    with pytest.raises(BenchConfigError, match="not valid TOML"):
        load_bench_config(config)
    assert connect_module.READY_TIMEOUT_S > 0
