"""A clone can follow every pointer: nothing in the tree points outside it (the reference
notes the project was built from are not part of a clone; their facts live in docs/),
and every relative link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: how the project's own working notes were once cited; a clone has none of them
OUTSIDE = re.compile(
    r"\.\./shared|shared/(?:reference|seeds)|pump-protocols\.md|clinical-safety\.md"
)
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".service", ".txt", ".cfg", ""}
#: what a checkout holds that is not the project's own text
SKIPPED_DIRS = {"build", "var", "__pycache__"}


def project_files() -> list[Path]:
    """The project's text files (not the virtual env, caches, build or run output)."""
    found = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if any(p.startswith(".") or p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            found.append(path)
    return found


def test_nothing_points_outside_the_tree() -> None:
    this = Path(__file__).resolve()
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in project_files()
        if path.resolve() != this
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines())
        if OUTSIDE.search(line)
    ]
    assert not found, "points outside the tree:\n" + "\n".join(found)


PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_leads_somewhere(page: str) -> None:
    path = REPO / page
    links = MARKDOWN_LINK.findall(path.read_text(encoding="utf-8"))
    broken = [link for link in links if "://" not in link and not (path.parent / link).exists()]
    assert not broken, f"{page}: links to nothing: {broken}"
