"""Fixtures every test shares: the shipped drug library, and an environment that cannot
change what a test sees behind its back.

``hil_tests/conftest.py`` imports the same two, so both suites run on the same library
and the same clean environment.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from safety.library import DrugLibrary, load_library
from safety.library.loader import DEFAULT_LIBRARY_PATH

#: variables that would silently change what the code under test reads: another drug
#: library or bench config, or a systemd notify socket and watchdog the test never set up
ENVIRONMENT_OVERRIDES = ("PUMPCTL_LIBRARY", "PUMPCTL_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")


@functools.cache
def shipped_library() -> DrugLibrary:
    """The shipped library, parsed once (for module-level use, e.g. hypothesis strategies)."""
    return load_library(DEFAULT_LIBRARY_PATH)


@pytest.fixture(autouse=True)
def shipped_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts without the overrides (a test that wants one sets it itself)."""
    for name in ENVIRONMENT_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(scope="session")
def library() -> DrugLibrary:
    return shipped_library()


@pytest.fixture(scope="session")
def library_path() -> Path:
    return DEFAULT_LIBRARY_PATH


@pytest.fixture(scope="session")
def library_text(library_path: Path) -> str:
    return library_path.read_text(encoding="utf-8")
