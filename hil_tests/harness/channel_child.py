"""A controller process that sets up a bench of several channels, then stays attached
until it is killed (the relay cases kill it with SIGKILL).

``python -m hil_tests.harness.channel_child CONFIG JOURNAL STEP...``

The real controller (``controller.connect.connect`` and a ``Session``), so what the
safety process sees is what a research script or the console would send. Steps, in order
(norepinephrine 8 mg/250 mL in D5W, adult ICU, standard therapy, mcg/min):

- ``program:CH``: load the program on channel CH;
- ``start:CH:DOSE``: start CH at DOSE mcg/min;
- ``prime:CH:ML``: prime CH with ML mL (the case has taken CH's line off the patient);
- ``primed:CH``: wait (bounded) until the safety process reports CH primed;
- ``arm:CH:FOR:STRATEGY``: arm CH as the standby of FOR (``quick`` or ``overlap``).

Each step prints one line (``<step> <accepted> <reason>``); a refused step prints
``refused <step> <reason> <message>`` and exits 1. After the last, ``ready``, then the
service thread sends heartbeats until the process is killed.
"""

from __future__ import annotations

import sys
import threading
import time
from decimal import Decimal
from typing import cast

from controller.connect import connect
from controller.errors import ControllerError
from controller.session import Session
from safety.kernel.model import RelayStrategy
from safety.status import Outcome

DRUG, STRENGTH, DILUENT = "norepinephrine", "8 mg/250 mL", "D5W"
#: how long ``primed:CH`` may wait (real s)
PRIMED_WAIT_S = 10.0


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _run(session: Session, step: str) -> Outcome | None:
    word, *args = step.split(":")
    if word == "program":
        return session.program(DRUG, STRENGTH, DILUENT, channel=args[0])
    if word == "start":
        return session.start(Decimal(args[1]), channel=args[0])
    if word == "prime":
        return session.prime(args[1], args[0], confirm_line_disconnected=True)
    if word == "primed":
        deadline = time.monotonic() + PRIMED_WAIT_S
        while time.monotonic() < deadline:
            view = session.status().channel(args[0])
            if view is not None and view.primed and view.role != "priming":
                return None
            time.sleep(0.02)
        raise ControllerError(f"channel {args[0]} not primed after {PRIMED_WAIT_S} s")
    if word == "arm":
        return session.arm_standby(args[0], args[1], cast(RelayStrategy, args[2]))
    raise ControllerError(f"unknown step {step!r}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        say("usage: python -m hil_tests.harness.channel_child CONFIG JOURNAL STEP...")
        return 2
    config, journal, *steps = argv
    session = connect(config, journal=journal, name="hil-channel-controller")
    for step in steps:
        try:
            outcome = _run(session, step)
        except ControllerError as exc:
            say(f"refused {step} {getattr(exc, 'code', '')} {exc}")
            return 1
        if outcome is None:
            say(f"{step} True done")
            continue
        verdict = outcome.verdict
        if not verdict.accepted:
            say(f"refused {step} {verdict.reason} {verdict.message}")
            return 1
        say(f"{step} True {verdict.reason} {outcome.execution}")
    say("ready")
    session.run_in_background(period_s=0.05)
    threading.Event().wait()  # until killed
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
