"""The emulator releases everything it made on the way out, each resource even if another
will not be released (a thread that does not stop), says which, without a traceback, and
ends with exit code 1.

In this process: ``emulate ne1000`` with a truth log, the patient's monitor on TCP and a
control channel, its serving loop replaced by an immediate return (as if stopped: the
real loop also shuts its endpoint down on the way out, and the release's shutdown is then
a second, harmless one), and the control channel made to fail after closing: it is
released first (the reverse order of making), so everything after it is what must still
happen.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.emulators import cli
from firmware_bridge.emulators.control import ControlServer
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.emulators.patient_monitor import PatientMonitor
from firmware_bridge.emulators.serial_line import SerialLine
from firmware_bridge.emulators.truth_log import TruthLogWriter

pytestmark = pytest.mark.timeout(30)


def test_a_resource_that_will_not_be_released_keeps_none_of_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    released: list[str] = []

    def spy(cls: type, name: str, tag: str) -> None:
        original = getattr(cls, name)

        def call(self: object) -> None:
            released.append(tag)
            original(self)

        monkeypatch.setattr(cls, name, call)

    close = ControlServer.close

    def will_not_close(self: ControlServer) -> None:
        released.append("control")
        close(self)  # nothing left behind in this process; then the failure
        raise RuntimeError("its thread did not stop within 5 s")

    monkeypatch.setattr(SerialLine, "serve", lambda self, stop: None)
    monkeypatch.setattr(ControlServer, "close", will_not_close)
    spy(PatientMonitor, "stop", "monitor")
    spy(PtyEndpoint, "shutdown", "pty")
    spy(TruthLogWriter, "close", "truth")
    args = ["ne1000", "--pty", "--link", str(tmp_path / "pump.tty")]
    args += ["--truth-log", str(tmp_path / "truth.jsonl"), "--control", str(tmp_path / "c.sock")]
    args += ["--patient", "seed=1", "--monitor-tcp", "127.0.0.1:0"]

    assert cli.main(args) == 1  # served as asked, but something was left behind

    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "emulate: error: the control channel at " in err
    assert "was not released cleanly: its thread did not stop" in err
    # the reverse order of making: control channel, monitor, the pty, the truth log
    assert released[:2] == ["control", "monitor"]
    assert "pty" in released and released[-1] == "truth"
    assert not (tmp_path / "pump.tty").exists()  # the pty's link went with it
