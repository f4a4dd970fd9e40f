"""docs/python-api.md stays true: its runnable example runs, its transition table is the
machine's."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pytest

from controller.machine import INTERNAL_TRIGGERS, table_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def _between(text: str, start: str, end: str) -> str:
    assert start in text and end in text, f"markers {start!r}/{end!r} missing from {DOC}"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_runnable_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = _between(
        DOC.read_text(), "<!-- runnable example: start -->", "<!-- runnable example: end -->"
    )
    code = block.strip().removeprefix("```python").removesuffix("```")
    monkeypatch.chdir(tmp_path)  # its journal lands here
    out = io.StringIO()
    logging.getLogger("safety.ipc").setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    finally:
        logging.getLogger("safety.ipc").setLevel(logging.NOTSET)
    printed = out.getvalue()
    assert "titrate norepinephrine (Adult ICU, Standard (mcg/min)) from 6 to 8 mcg/min" in printed
    assert "stop: at or below the stop threshold (2 mcg/min)" in printed
    assert "alarms seen: none" in printed
    assert (tmp_path / "controller-journal.sqlite").exists()


def test_the_documented_transition_table_is_the_machines() -> None:
    block = _between(
        DOC.read_text(), "<!-- transition table: start -->", "<!-- transition table: end -->"
    )
    expected = table_markdown() + "\n\n" + table_markdown(INTERNAL_TRIGGERS)
    assert block.strip() == expected
