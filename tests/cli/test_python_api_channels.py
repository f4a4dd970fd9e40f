"""docs/python-api.md's relay example runs and prints what the text says it prints."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def test_the_relay_example_hands_over_without_a_controller() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- relay example: start -->" in text, "the relay example markers are gone"
    block = text.split("<!-- relay example: start -->", 1)[1]
    block = block.split("<!-- relay example: end -->", 1)[0]
    code = block.strip().removeprefix("```python").removesuffix("```")
    out = io.StringIO()
    logging.getLogger("safety.ipc").setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    finally:
        logging.getLogger("safety.ipc").setLevel(logging.NOTSET)
    printed = out.getvalue().splitlines()
    assert printed == ["[('A', 'relieved', '0'), ('B', 'active', '30.0')]", "total 8 mcg/min"]
    assert f"It prints `{printed[0]}` and `{printed[1]}`" in " ".join(text.split())
