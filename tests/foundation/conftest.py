"""Shared fixtures: the shipped library, its text, and an environment that cannot point
the default library somewhere else behind a test's back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from safety.library import DrugLibrary, load_library
from safety.library.loader import DEFAULT_LIBRARY_PATH


@pytest.fixture(autouse=True)
def _shipped_library_by_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``PUMPCTL_LIBRARY`` would silently swap the library every test relies on."""
    monkeypatch.delenv("PUMPCTL_LIBRARY", raising=False)
    yield


@pytest.fixture(scope="session")
def library_path() -> Path:
    return DEFAULT_LIBRARY_PATH


@pytest.fixture(scope="session")
def library_text(library_path: Path) -> str:
    return library_path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def library(library_path: Path) -> DrugLibrary:
    return load_library(library_path)
