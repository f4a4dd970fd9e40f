"""A controller process for the liveness benchmarks: attach, infuse, report, wait.

    python -m benchmarks.controller_child CONFIG JOURNAL

It is an ordinary controller: ``controller.connect.connect`` (the socket client, the
library hash check, attach and re-sync), a ``Session`` and its service thread. It
acknowledges whatever a previous controller's death left latched, starts norepinephrine
at 8 mcg/min if nothing runs yet, and prints, flushed:

    ready <pid>              attached, infusing, every alarm acknowledged
    alarm <key> <t>          each alarm the session reports, t = time.monotonic()

``time.monotonic()`` is CLOCK_MONOTONIC on Linux, one clock for every process on the
machine, so the benchmark can subtract its own reading (taken just before it killed the
safety process) from ``t``. Then it waits, doing nothing but what its threads do
(heartbeats, the service thread), until it is killed or stopped; SIGTERM ends it cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

from controller.connect import connect
from safety.status import AlarmView


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.controller_child CONFIG JOURNAL")
        return 2
    config, journal = argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    done = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    session = connect(config, journal=journal, name="pumpctl-bench-controller")

    def on_alarm(alarm: AlarmView) -> None:
        print(f"alarm {alarm.key} {time.monotonic():.6f}", flush=True)

    session.subscribe_alarms(on_alarm)
    session.acknowledge()
    snapshot = session.status()
    if not snapshot.running:
        if snapshot.program is None:
            session.program("norepinephrine", "4 mg/250 mL", "D5W")
        session.start("8 mcg/min")
    session.run_in_background()
    print(f"ready {os.getpid()}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        session.close()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(main(sys.argv[1:]))
