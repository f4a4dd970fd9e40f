"""``pumpctl run --channel`` on a bench of two mock pumps, with a real safety process
(started as a child; real, short, bounded waits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.ipc.launch import SafetyChild
from safety.library import default_library_path
from tests.controller.test_run_command import CONFIG, _run, children

__all__ = ["children"]  # the fixture, shared

TWO = CONFIG.replace(
    '[pump]\ndriver = "mock"\nsyringe = "bd-plastipak-50ml"\n',
    '[channels.A]\ndriver = "mock"\ncontainer = "bd-plastipak-50ml"\n\n'
    '[channels.B]\ndriver = "mock"\ncontainer = "bd-plastipak-50ml"\n',
)


@pytest.fixture
def two_pumps(tmp_path: Path) -> Path:
    assert "[channels.B]" in TWO
    path = tmp_path / "bench.toml"
    path.write_text(TWO.format(library=default_library_path().resolve()))
    return path


@pytest.mark.hil
def test_run_on_a_named_channel(
    two_pumps: Path,
    children: list[SafetyChild],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = "program norepinephrine 4 mg/250 mL D5W\nstatus\nquit\n"
    assert _run(monkeypatch, two_pumps, script, "--channel", "B") == 0
    out = capsys.readouterr().out
    assert "pumpctl [idle @B]>" in out and "| channel B |" in out
    status = out.split("> status", 1)[1]
    assert "* B " in status and "norepinephrine 4 mg/250 mL" in status.split("* B ", 1)[1]
    # an unknown channel: exit 2, naming the channels, no traceback, nothing left running
    assert _run(monkeypatch, two_pumps, "quit\n", "--channel", "C") == 2
    err = capsys.readouterr().err
    assert "there is no channel 'C' (channels: A, B)" in err and "Traceback" not in err
    assert len(children) == 2 and not any(child.alive() for child in children)


@pytest.mark.hil
def test_quitting_on_an_idle_channel_keeps_the_safety_process_for_a_running_one(
    two_pumps: Path,
    children: list[SafetyChild],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A runs; the console moves to B (idle) and quits: the safety process it started
    stays and supervises A (it was stopped: the check looked at B alone)."""
    script = "\n".join(
        [
            "program norepinephrine 4 mg/250 mL D5W",
            "start 8",
            "program norepinephrine 4 mg/250 mL D5W @B",
            "quit",
        ]
    )
    assert _run(monkeypatch, two_pumps, script) == 0
    out = capsys.readouterr().out
    assert "pumpctl [programmed @B]>" in out  # the console was on B, whose pump is idle
    assert "keeps running and supervising the bench (channel A's pump is running)" in out
    assert "safety process stopped" not in out
    assert len(children) == 1 and children[0].alive()
