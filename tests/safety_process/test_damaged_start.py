"""No journal and no library makes ``python -m safety`` exit with a traceback (issue 9).

Each case starts the real process over something broken, waits for it to serve, and
asks it (as a read-only monitor) what it says: it supervises, raises a high alarm that
names the problem, keeps every damaged file, and never prints a traceback.
"""

from __future__ import annotations

import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hil_tests.harness.processes import Child, children, ready_socket, safety_args
from safety.ipc.client import SafetyClient
from safety.kernel.model import LoadProgram, ProgramSpec, StartInfusion
from safety.library import default_library_path
from safety.reasons import Reason
from tests.safety_process.test_process import MOCK_PUMP, config, monitor

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


def _serve(directory: Path, cfg: Path, kids: list[Child]) -> Child:
    child = Child(safety_args(cfg))
    kids.append(child)
    ready_socket(child)
    return child


def _no_traceback(child: Child) -> None:
    assert not any("Traceback" in line for line in child.errors), "\n".join(child.errors)


def _first_run(directory: Path, cfg: Path, spec: ProgramSpec) -> None:
    """A run that loads a program and infuses, then a clean shutdown."""
    with children() as kids:
        first = _serve(directory, cfg, kids)
        with SafetyClient(directory / "safety.sock", key_file=directory / "ipc.key") as ctl:
            ctl.attach()
            for body in (LoadProgram(spec), StartInfusion(Decimal(8))):
                assert ctl.request(body).verdict.accepted
        first.proc.terminate()
        assert first.proc.wait(10) == 0


def _alarm(directory: Path, key: str) -> Any:
    with monitor(directory) as mon:
        snap = mon.snapshot()
    found = [a for a in snap.alarms if a.key == key]
    assert found, [a.key for a in snap.alarms]
    return found[0], snap


def test_an_unreadable_journal_entry(short_dir: Path, spec: ProgramSpec) -> None:
    cfg = config(short_dir, MOCK_PUMP)
    _first_run(short_dir, cfg, spec)
    with sqlite3.connect(short_dir / "journal.sqlite") as db:
        db.execute(
            "INSERT INTO entries(wall, clinical, liveness, process, kind, payload)"
            " VALUES (0, 0, 0, 'safety', 'readback', '{\"kind\": \"readback\"}')"
        )
    with children() as kids:
        child = _serve(short_dir, cfg, kids)
        alarm, snap = _alarm(short_dir, "journal_damaged")
        assert alarm.priority == "high" and "cannot be read" in alarm.message
        assert snap.program == spec and snap.program_stale is not None
        _no_traceback(child)
    assert list(short_dir.glob("journal.sqlite.damaged-*"))


def test_bytes_that_are_not_a_journal(short_dir: Path, spec: ProgramSpec) -> None:
    cfg = config(short_dir, MOCK_PUMP)
    (short_dir / "journal.sqlite").write_bytes(b"\x00garbage" * 1000)
    with children() as kids:
        child = _serve(short_dir, cfg, kids)
        alarm, _ = _alarm(short_dir, "journal_damaged")
        assert "not a database" in alarm.message
        _no_traceback(child)
    kept = list(short_dir.glob("journal.sqlite.damaged-*"))
    assert kept and kept[0].read_bytes().startswith(b"\x00garbage")


@pytest.mark.parametrize(
    "library_text",
    ["not = [valid toml", 'schema = 1\nname = "x"\n'],
    ids=["not-toml", "not-a-library"],
)
def test_an_unusable_library_supervises_with_the_journaled_limits(
    short_dir: Path, spec: ProgramSpec, library_text: str
) -> None:
    library = short_dir / "library.toml"
    shutil.copy(default_library_path(), library)
    cfg = config(short_dir, MOCK_PUMP)
    text = cfg.read_text().replace("[paths]\n", f'[paths]\nlibrary = "{library}"\n', 1)
    cfg.write_text(text)
    _first_run(short_dir, cfg, spec)
    library.write_text(library_text)
    with children() as kids:
        child = _serve(short_dir, cfg, kids)
        alarm, snap = _alarm(short_dir, "library_unusable")
        assert alarm.priority == "high" and str(library) in alarm.message
        assert snap.program == spec  # the journal's program, with its journaled limits
        with SafetyClient(short_dir / "safety.sock", key_file=short_dir / "ipc.key") as ctl:
            ctl.attach()
            refused = ctl.request(LoadProgram(spec))
            assert refused.verdict.reason is Reason.LIBRARY_UNUSABLE
        _no_traceback(child)
