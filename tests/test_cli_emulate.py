"""``pumpctl emulate`` is the emulator's own command line, reached through pumpctl."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main


def test_bad_protocol_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "foo"]) == 2
    assert "invalid choice: 'foo'" in capsys.readouterr().err


def test_help_is_the_emulator_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--help"]) == 0
    assert "--pty" in capsys.readouterr().out


@pytest.mark.hil
@pytest.mark.timeout(20)
def test_first_line_says_where_to_connect() -> None:
    script = Path(sys.executable).with_name("pumpctl")
    proc = subprocess.Popen(
        [str(script), "emulate", "ne1000", "--pty"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("/dev/pts/") and os.path.exists(first)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
