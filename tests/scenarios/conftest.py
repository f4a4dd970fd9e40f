"""Shared set-up for the scenario tests: the shipped files and a fast folder.

A one-process run journals to SQLite with ``synchronous=FULL``; on a disk most of a run's
time is spent syncing journals nobody keeps, so runs go to RAM (``/dev/shm``) when the
machine has it (the journals are still real files, read back by the verdicts)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "config" / "scenarios").glob("*.toml"))
_SHM = Path("/dev/shm")
_FAST = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pumpctl-test-scn-", dir=_FAST))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def scenario_text(name: str) -> str:
    return (REPO / "config" / "scenarios" / name).read_text(encoding="utf-8")
