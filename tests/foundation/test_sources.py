"""Every source id the drug library uses is described in docs/sources.md, and every id
described there is one the library uses: a reviewer can look up each figure's source,
and the page names no source the library has dropped."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SOURCES_PAGE = REPO / "docs" / "sources.md"
#: a source is described under a heading of its own: ### `id`
SOURCE_HEADING = re.compile(r"^### `([^`]+)`\s*$", re.MULTILINE)


def used_ids(node: Any) -> set[str]:
    """Every ``source`` value anywhere in the library's figures."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "source" and isinstance(value, str):
                found.add(value)
            else:
                found |= used_ids(value)
    elif isinstance(node, list):
        for value in node:
            found |= used_ids(value)
    return found


def documented_ids(text: str) -> list[str]:
    return SOURCE_HEADING.findall(text)


def test_the_library_and_the_sources_page_name_the_same_sources(library_path: Path) -> None:
    data = tomllib.loads(library_path.read_text(encoding="utf-8"))
    used = used_ids(data["profiles"])
    declared = set(data["sources"])
    documented = documented_ids(SOURCES_PAGE.read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a source is described twice"
    assert used - set(documented) == set(), "used in the library, not in docs/sources.md"
    assert set(documented) - used == set(), "in docs/sources.md, used by no figure"
    assert declared == set(documented), "the library's [sources] and docs/sources.md differ"


def test_the_check_sees_a_missing_or_extra_source() -> None:
    page = "### `a`\ntext\n### `b`\n"
    assert documented_ids(page) == ["a", "b"]
    figures = {"p": {"d": [{"x": {"value": 1, "source": "a"}}, {"source": "c"}]}}
    assert used_ids(figures) == {"a", "c"}
