"""An interrupt swallowed on its way (Python raises ``KeyboardInterrupt`` from the signal
handler wherever the main thread is, and some C code can only print "exception ignored")
still ends the benchmark run: the handler leaves a flag every long loop checks."""

from __future__ import annotations

import contextlib
import os
import signal
from types import SimpleNamespace
from typing import cast

import pytest

from benchmarks import interrupt
from benchmarks.latency import Bench, send_one
from cli.commands.bench import _sigterm_as_interrupt


def test_a_swallowed_interrupt_is_still_seen_by_the_next_command() -> None:
    sent: list[object] = []
    fake = SimpleNamespace(
        next_dose=lambda: 9,
        client=SimpleNamespace(request=sent.append),
        commands=0,
    )
    with _sigterm_as_interrupt():
        with contextlib.suppress(KeyboardInterrupt):  # swallowed, as some C code does
            os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            send_one(cast(Bench, fake))
    assert sent == []  # nothing more was sent to the safety process


def test_a_new_run_starts_without_the_last_ones_interrupt() -> None:
    interrupt.requested.set()
    with _sigterm_as_interrupt():
        interrupt.check()  # cleared on entry: no raise
