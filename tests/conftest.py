"""Fixtures every test shares: the shipped drug library, an environment that cannot
change what a test sees behind its back, and the rule that a test which starts a process
is marked ``hil`` (so ``-m "not hil"`` is the quick in-process set).

``hil_tests/conftest.py`` imports the library and the environment, so both suites run on
the same library and the same clean environment.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import drivers.opening
from safety.library import DrugLibrary, load_library
from safety.library.loader import DEFAULT_LIBRARY_PATH

# Hypothesis's per-example deadline and its "generation is slow" health check are
# wall-clock checks: tests assert behaviour, never speed, and on the shared 2-core machine
# with two pytest workers one slow example is load, not a defect. Every property test runs
# without them (the profile, not each test).
settings.register_profile("pumpctl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pumpctl")

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


@pytest.fixture(autouse=True)
def processes_only_in_hil(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a process without the ``hil`` marker fails, naming the rule."""
    if request.node.get_closest_marker("hil") is not None:
        return

    def refuse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail(
            f"{request.node.nodeid} starts a process: mark it @pytest.mark.hil", pytrace=False
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)


@pytest.fixture(scope="session")
def library() -> DrugLibrary:
    return shipped_library()


@pytest.fixture(scope="session")
def library_path() -> Path:
    return DEFAULT_LIBRARY_PATH


@pytest.fixture(scope="session")
def library_text(library_path: Path) -> str:
    return library_path.read_text(encoding="utf-8")


@pytest.fixture
def prompt_reopening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports reopened without the pause after a failed attempt, and waited on long enough
    that a loaded machine never fails an open of a local pty (``drivers.opening``): for
    tests of what happens once a port appears, not of the pacing (its own tests)."""
    monkeypatch.setattr(drivers.opening, "RETRY_S", 0.0)
    monkeypatch.setattr(drivers.opening, "WAIT_S", 10.0)
