"""``pumpctl accuracy analyse``: JSON keys, bad files named by line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("time_s,mass_g,note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_json_has_the_promised_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{i * 30},{0.9982 * 6 * i * 30 / 3600:.4f},x" for i in range(241)]
    f = _write(tmp_path / "r.csv", rows)
    args = ["accuracy", "analyse", str(f), "--rate", "6", "--density", "0.9982", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["trumpet"]) == {"2", "5", "11", "19", "31"}
    assert {"max_pct", "min_pct"} <= set(out["trumpet"]["2"])
    assert abs(out["mean_error_pct"]) < 0.01 and out["rate_ml_h"] == 6.0
    assert "startup_delay_min" in out


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (["0,0,a", "30,oops,b"], "r.csv:3: expected numbers"),
        (["0,0,a", "30,0.1,a", "30,0.2,a"], "r.csv:4: time 30 s does not come after"),
    ],
)
def test_bad_files_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[str], words: str
) -> None:
    f = _write(tmp_path / "r.csv", rows)
    assert main(["accuracy", "analyse", str(f), "--rate", "6"]) == 2
    assert words in capsys.readouterr().err
