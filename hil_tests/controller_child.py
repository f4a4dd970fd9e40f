"""The controller as its own process, for the cases that kill or stop it.

``python -m hil_tests.controller_child CONFIG JOURNAL infuse DOSE | resume [ORDER]``

The real controller: ``controller.connect.connect`` (the authenticated socket, the
library check, the shared clinical clock) and a ``Session`` with its service thread,
exactly as a research script or ``pumpctl run`` uses them. Modes:

- ``infuse DOSE``: program norepinephrine 8 mg/250 mL in D5W, start at DOSE mcg/min, print
  ``infusing <mL/h>``; then stay attached (heartbeats from the link's thread) until killed.
- ``resume [ORDER]``: attach to whatever runs (re-sync, never a rate change), print
  ``attached <state> <mL/h>``; acknowledge the alarms, print ``acknowledged <state>``;
  with ORDER (a DOSE to change to, ``start:DOSE`` or ``stop``), send it as it is
  (``Session.order``: decided by the safety process as sent) and print
  ``ordered <accepted> <reason> <mL/h>``; then stay attached until killed.

Alarms are printed as they arrive (``alarm <priority> <key>``), and so is a lost link
(``link down <why>``), so a case sees what the controller saw. One line per print,
flushed at once.
"""

from __future__ import annotations

import sys
import threading
from decimal import Decimal

from controller.connect import connect
from controller.session import Session
from safety.kernel.model import ChangeDose, RequestBody, StartInfusion, StopInfusion
from safety.status import AlarmView

_OUT = threading.Lock()
#: how often the main thread looks at the link while idling (real s)
WATCH_S = 0.05


def say(text: str) -> None:
    with _OUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def on_alarm(alarm: AlarmView) -> None:
    say(f"alarm {alarm.priority} {alarm.key}")


def idle(session: Session) -> None:
    """Stay attached until killed; report once if the link goes down."""
    reported = False
    stop = threading.Event()
    while not stop.wait(WATCH_S):
        if session.link_down is not None and not reported:
            reported = True
            say(f"link down {session.link_down}")


def order_of(text: str) -> RequestBody:
    if text == "stop":
        return StopInfusion()
    if text.startswith("start:"):
        return StartInfusion(Decimal(text.removeprefix("start:")))
    return ChangeDose(Decimal(text))


def main(argv: list[str]) -> int:
    usage = "usage: python -m hil_tests.controller_child CONFIG JOURNAL infuse DOSE|resume [ORDER]"
    if len(argv) not in (3, 4) or argv[2] not in ("infuse", "resume"):
        say(usage)
        return 2
    config, journal, mode = argv[:3]
    order = argv[3] if len(argv) == 4 else None
    if mode == "infuse" and order is None:
        say(usage)
        return 2
    session = connect(config, journal=journal, name=f"hil-controller-{mode}")
    session.subscribe_alarms(on_alarm)
    if mode == "infuse":
        assert order is not None
        session.program("norepinephrine", "8 mg/250 mL", "D5W")
        outcome = session.start(Decimal(order))
        say(f"infusing {outcome.snapshot.rate_ml_h}")
    else:
        snap = session.status()
        say(f"attached {session.state} {snap.rate_ml_h}")
        session.acknowledge()
        say(f"acknowledged {session.state}")
        if order is not None:
            outcome = session.order(order_of(order))
            verdict = outcome.verdict
            say(f"ordered {verdict.accepted} {verdict.reason} {outcome.snapshot.rate_ml_h}")
    session.run_in_background(period_s=0.05)
    idle(session)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
