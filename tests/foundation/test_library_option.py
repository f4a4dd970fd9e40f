"""Every command with ``--library`` reports an unusable library the same way: exit 2,
code invalid_library, the file and the problem named; never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main

COMMANDS = {
    "calc": ["calc", "norepinephrine", "--dose", "8 mcg/min", "--concentration", "16 mcg/mL"],
    "library show": ["library", "show"],
    "journal show": ["journal", "show", "--dir", "."],
    "scenario run": ["scenario", "run", "config/scenarios/occlusion-recovery.toml"],
}


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_a_bad_library_is_one_clear_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "library.toml"
    bad.write_text("schema = 1\nname = \n", encoding="utf-8")
    code = main([*COMMANDS[command], "--library", str(bad), "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out + err
    error = json.loads(out)["error"]
    assert error["code"] == "invalid_library" and error["field"] == "library"
    assert str(bad) in error["message"] and "line 2" in error["message"]
