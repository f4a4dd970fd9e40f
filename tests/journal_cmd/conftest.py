"""A bench of two pumps whose journals the journal commands read: built once for the
package, in process, on the virtual clock (a real one would take minutes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.journal_timeline import CONTROLLER_NAME, SAFETY_NAME
from controller.session import Session
from safety.ipc.local import LocalChannel, LocalSafety
from tests.conftest import shipped_library

LIBRARY = shipped_library()
_SHM = Path("/dev/shm")
_FAST = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None


@dataclass
class Relay:
    dir: Path
    local: LocalSafety
    session: Session

    def drive(self, seconds: float) -> None:
        end = self.local.clinical.now() + seconds
        while end - self.local.clinical.now() > 1e-6:
            self.local.advance(min(30.0, end - self.local.clinical.now()))
            self.session.service()


@contextlib.contextmanager
def relay_bench(loaded_a_ml: float, run_on_s: float, prefix: str) -> Iterator[Relay]:
    """A (``loaded_a_ml``) at 8 mcg/min; B loaded, power-cycled (its reset alarm
    acknowledged), primed to waste and armed (quick); then ``run_on_s`` more seconds."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_FAST))
    local = LocalSafety(
        library=LIBRARY,
        channels=(LocalChannel("A", loaded_volume_ml=loaded_a_ml), LocalChannel("B")),
        journal_path=folder / SAFETY_NAME,
    )
    session = Session.open(
        local, LIBRARY, journal=folder / CONTROLLER_NAME, clinical=local.clinical
    )
    r = Relay(folder, local, session)
    try:
        session.program("norepinephrine", "4 mg/250 mL", "D5W")
        session.start(8)
        session.program("norepinephrine", "4 mg/250 mL", "D5W", channel="B")
        local.inject_faults("power_cycle", "B")
        r.drive(30)
        session.acknowledge()
        local.pumps["B"].connect_line(False)  # what the confirmation says: prime to waste
        session.prime("2", confirm_line_disconnected=True)
        r.drive(60)
        local.pumps["B"].connect_line(True)
        session.arm_standby("B", "A")
        r.drive(run_on_s)
        yield r
    finally:
        session.close(hang_up=False)
        local.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def relay() -> Iterator[Relay]:
    """A with 3 mL hands over to B at 1:30, and the run goes on to 7:30 with no alarm
    after 0:00 and no change after the handover: the journal's end is far from both,
    which is what a plot must still reach."""
    with relay_bench(3.0, 6 * 60, "pumpctl-test-journal-relay-") as r:
        yield r
