"""A minimal controller process for the real-process tests: it holds a ``SafetyClient``.

``python -m tests.safety_process.controller_child SOCKET KEY_FILE MODE``

- ``infuse``: attach, load norepinephrine 4 mg/250 mL, start at 8 mcg/min, print
  ``infusing <session>``, then idle while the link's heartbeat thread keeps the session.
- ``titrate``: the same, then step the dose between 8 and 10 mcg/min for ever, printing
  ``step <n>`` after each accepted step (the test kills the safety process under it).

Every notice that matters is printed too (``session lost``, ``link down ...``), so the
test can see what the controller saw. Stdout is flushed per line.
"""

from __future__ import annotations

import sys
import threading
from decimal import Decimal

from safety.ipc.client import SafetyClient
from safety.ipc.link import LinkDown, Notice, SafetyLinkError, SessionLost
from safety.kernel.model import ChangeDose, LoadProgram, ProgramSpec, StartInfusion
from safety.library import load_library

_OUT = threading.Lock()


def say(text: str) -> None:
    """One whole line per call: the dispatcher thread and the main thread both report."""
    with _OUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def on_notice(notice: Notice) -> None:
    if isinstance(notice, SessionLost):
        say("session lost")
    elif isinstance(notice, LinkDown):
        say(f"link down final={notice.final} {notice.reason}")


def main(argv: list[str]) -> int:
    socket_path, key_file, mode = argv
    library = load_library()
    spec = ProgramSpec(
        library.content_hash, "norepinephrine", "adult_icu", "standard", "4 mg/250 mL", "D5W"
    )
    client = SafetyClient(socket_path, key_file=key_file, name=f"test-controller-{mode}")
    client.subscribe(on_notice)
    client.attach()
    for body in (LoadProgram(spec), StartInfusion(Decimal(8))):
        outcome = client.request(body)
        if not outcome.verdict.accepted:
            say(f"refused {outcome.verdict.message}")
            return 1
    say(f"infusing {client.session}")
    if mode == "infuse":
        threading.Event().wait()  # until killed
        return 0
    n = 0
    try:
        while True:
            n += 1
            dose = Decimal(10) if n % 2 else Decimal(8)
            outcome = client.request(ChangeDose(dose))
            say(f"step {n} {outcome.verdict.reason}")
    except SafetyLinkError as exc:
        say(f"stopped: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
