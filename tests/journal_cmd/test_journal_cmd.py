"""pumpctl journal show|export|plot on the journals of a short in-process session."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main
from controller.journal_timeline import CONTROLLER_NAME, SAFETY_NAME
from controller.session import Session
from safety.ipc.local import LocalSafety
from safety.library import DrugLibrary
from tests.conftest import shipped_library

LIBRARY: DrugLibrary = shipped_library()
_SHM = Path("/dev/shm")
_FAST = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Bench:
    dir: Path
    local: LocalSafety
    session: Session

    def drive(self, seconds: float) -> None:
        end = self.local.clinical.now() + seconds
        while self.local.clinical.now() < end:
            self.local.advance(min(10.0, end - self.local.clinical.now()))
            self.session.service()


@pytest.fixture
def bench() -> Iterator[Bench]:
    """Program, start 8, titrate to 10, an occlusion and its alarm, acknowledge, a 10x
    slip refused, an emergency stop. Both journals stay open (a live bench). In RAM when
    the machine has it: syncing every read-back to a disk is most of the time otherwise."""
    folder = Path(tempfile.mkdtemp(prefix="pumpctl-test-journal-", dir=_FAST))
    local = LocalSafety(library=LIBRARY, journal_path=folder / SAFETY_NAME)
    session = Session.open(
        local, LIBRARY, journal=folder / CONTROLLER_NAME, clinical=local.clinical
    )
    b = Bench(folder, local, session)
    session.program("norepinephrine", "4 mg/250 mL", "D5W")
    session.start(8)
    b.drive(120)
    session.titrate_to(10).confirm()
    b.drive(300)
    local.inject_faults("occlusion=on")
    b.drive(90)
    local.inject_faults("occlusion=off")
    session.acknowledge()
    session.start(10)
    b.drive(60)
    with pytest.raises(Exception, match="hard maximum"):
        session.titrate_to(100)
    session.emergency_stop()
    b.drive(30)
    yield b
    session.close(hang_up=False)
    local.close()
    shutil.rmtree(folder, ignore_errors=True)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["journal", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_merges_both_journals_in_time_order(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "show", "--dir", str(bench.dir))
    assert code == 0
    for expected in (
        "operator: start dose=8",  # controller: the action as entered
        "request start 8 -> accepted",  # safety: the verdict
        "command set_rate 30 mL/h (8 mcg/min) [command]",
        "request change_dose 10 -> accepted",
        "ALARM high pump:occlusion",  # rebuilt by replaying the safety journal
        "state infusing -> alarm",
        "alarms acknowledged: all",
        "plan titrate 10 -> 100: UNREACHABLE (hard_max_exceeded)",
        "REFUSED titrate_to: hard_max_exceeded",
        "EMERGENCY STOP (api)",
        "ALARM high estop",
    ):
        assert expected in out, expected
    lines = [line for line in out.splitlines() if line.startswith(" ") and "  safety  " in line]
    # read-backs are shown only when they change: far fewer than were journaled
    readbacks = [line for line in lines if "read-back:" in line]
    assert 3 <= len(readbacks) < 20
    # a request comes before its commands, a command before its read-back
    i = out.index("request start 8 -> accepted")
    assert i < out.index("command set_rate 30 mL/h") < out.index("read-back: running 30 mL/h")


def test_show_all_lists_every_entry(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    _, condensed, _ = _run(capsys, "show", "--dir", str(bench.dir))
    code, everything, _ = _run(capsys, "show", "--dir", str(bench.dir), "--all")
    assert code == 0 and len(everything.splitlines()) > 2 * len(condensed.splitlines())


def test_export_csv_has_every_entry_of_both_journals(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "export", "--dir", str(bench.dir), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "clinical_s", "time", "wall", "process", "id", "kind", "summary", "derived", "payload"
    ]  # fmt: skip
    safety = [r for r in rows if r["process"] == "safety" and r["derived"] == "false"]
    controller = [r for r in rows if r["process"] == "controller"]
    assert len(safety) == bench.local.journal.last_id()
    journal = bench.session.journal.journal
    assert journal is not None and len(controller) == journal.last_id()
    times = [float(r["clinical_s"]) for r in rows]
    assert times == sorted(times)
    derived = [r for r in rows if r["derived"] == "true"]
    assert {"alarm_raised", "alarm_cleared"} <= {r["kind"] for r in derived}
    occlusion = next(r for r in derived if "pump:occlusion" in r["summary"])
    assert json.loads(occlusion["payload"])["priority"] == "high"
    start = next(r for r in safety if r["summary"] == "request start 8 -> accepted")
    payload = json.loads(start["payload"])
    assert payload["body"] == {
        "kind": "start", "dose": "8", "unit": "mcg/min", "confirm_soft_limits": False,
        "channel": None,
    }  # fmt: skip


def test_export_jsonl_to_a_file(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "export" / "journal.jsonl"
    code, out, err = _run(
        capsys,
        "export",
        "--safety",
        str(bench.dir / SAFETY_NAME),
        "--controller",
        str(bench.dir / CONTROLLER_NAME),
        "--format",
        "jsonl",
        "--out",
        str(out_file),
    )
    assert code == 0 and out == "" and "rows written" in err
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert {r["process"] for r in records} == {"safety", "controller"}
    assert all(isinstance(r["payload"], dict) for r in records)
    kinds = {r["kind"] for r in records}
    assert {"request_decided", "command_issued", "readback", "action", "transition"} <= kinds
    estop = [r for r in records if r["kind"] == "emergency_stop_raised"]
    assert len(estop) == 1 and estop[0]["payload"]["source"] == "api"


def test_one_journal_alone(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "show", "--controller", str(bench.dir / CONTROLLER_NAME))
    assert code == 0 and "operator: start dose=8" in out
    assert "outcome start: accepted" in out  # without the safety journal, its copies show
    assert "  safety  " not in out


def test_plot_writes_a_png(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "plots" / "course.png"
    code, out, _ = _run(capsys, "plot", "--dir", str(bench.dir), "--out", str(png))
    assert code == 0 and str(png) in out
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_without_matplotlib_says_so_and_exits_2(
    bench: Bench,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if absent
    png = tmp_path / "course.png"
    code, _, err = _run(capsys, "plot", "--dir", str(bench.dir), "--out", str(png))
    assert code == 2 and "matplotlib" in err and "pip install" in err
    assert "Traceback" not in err and not png.exists()


def test_reading_a_live_journal_does_not_disturb_it(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read-only: the running bench goes on writing while and after it is read."""
    before = bench.local.journal.last_id()
    code, _, _ = _run(capsys, "export", "--dir", str(bench.dir), "--format", "jsonl")
    assert code == 0
    bench.session.acknowledge()
    bench.drive(30)
    assert bench.local.journal.last_id() > before
    code, out, _ = _run(capsys, "show", "--dir", str(bench.dir))
    assert code == 0 and out.rstrip().splitlines()[-1]


def test_missing_or_wrong_journals_exit_2(
    tmp_path: Path, bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "show", "--dir", str(tmp_path / "empty"))
    assert code == 2 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "show", "--dir", str(tmp_path / "empty"))
    assert code == 2 and SAFETY_NAME in err
    code, _, err = _run(capsys, "show")
    assert code == 2 and "--dir" in err
    code, _, err = _run(capsys, "show", "--safety", str(bench.dir / CONTROLLER_NAME))
    assert code == 2 and "is this a controller journal?" in err
    not_sqlite = tmp_path / "x.sqlite"
    not_sqlite.write_text("hello")
    code, _, err = _run(capsys, "show", "--safety", str(not_sqlite))
    assert code == 2 and "not a readable pumpctl journal" in err
