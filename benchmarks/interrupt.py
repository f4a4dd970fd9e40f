"""An interrupt that cannot be lost.

Ctrl-C and SIGTERM end a run by raising ``KeyboardInterrupt`` from the signal handler.
Python raises it wherever the main thread happens to be, and a few places swallow it
(C code that can only report an "exception ignored", e.g. inside a ``Decimal``
operation): the run then goes on as if nothing happened. So the handler also sets
``requested``, and every long loop of the benchmarks calls ``check()`` once per turn.
"""

from __future__ import annotations

import threading

requested = threading.Event()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if an interrupt was requested (and possibly lost)."""
    if requested.is_set():
        raise KeyboardInterrupt("interrupted")
