"""``emulate ne1000|harvard|modbus --patient SPEC --monitor-tcp HOST:PORT``: the command
line's checks."""

from __future__ import annotations

import pytest

from firmware_bridge.emulators.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ne1000", "--monitor-tcp", "127.0.0.1:0"], "the monitor needs a --patient"),
        (["ne1000", "--monitor-pty"], "the monitor needs a --patient"),
        (["modbus", "--patient", "seed=1", "--addresses", "1,2"], "one patient on one pump"),
        (["ne1000", "--patient", "colour=red"], "--patient: patient spec: unknown key"),
        (
            ["ne1000", "--patient", "seed=1", "--monitor-tcp", "nowhere"],
            "--monitor-tcp: expected HOST:PORT",
        ),
        (["harvard", "--patient", "sensitivity=0"], "sensitivity must be 0.01-100"),
    ],
)
def test_bad_patient_arguments_exit_2_naming_the_option(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err
