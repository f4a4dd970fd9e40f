"""An accuracy run: a pump driven THROUGH the safety process at a set rate with a
test-fluid program, a balance read every ``interval_s``, readings written as they come.

The three requests (load the test fluid, start, stop) go through the session's link like
any operator order, and the safety process decides them (rate limits only: no drug). Time
is whatever ``wait`` makes it: a real (or scaled) sleep on a bench, ``LocalSafety.advance``
on a virtual clock in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from drivers.balances import Balance, BalanceError
from safety.ipc.link import SafetyLink
from safety.kernel.model import LoadProgram, ProgramSpec, StartInfusion, StopInfusion
from safety.library import DrugLibrary


class RunError(RuntimeError):
    """The run could not go on; the message says why (a refusal, a balance that failed)."""


@dataclass
class Recording:
    rows: list[tuple[float, float, bool]] = field(default_factory=list)
    started_at: float = 0.0


def test_fluid_spec(library: DrugLibrary, fluid: str = "water") -> ProgramSpec:
    fid, _ = library.test_fluid(fluid)
    return ProgramSpec(library.content_hash, fid, "", "", "", "", test_fluid=True)


def record_run(
    link: SafetyLink,
    library: DrugLibrary,
    balance: Balance,
    *,
    rate_ml_h: float,
    duration_s: float,
    interval_s: float,
    now: Callable[[], float],
    wait: Callable[[float], None],
    fluid: str = "water",
    progress: Callable[[int, int, float], None] = lambda i, n, grams: None,
    on_row: Callable[[tuple[float, float, bool]], None] = lambda row: None,
) -> Recording:
    """Load, tare, start, read every ``interval_s`` until ``duration_s``, stop. Readings
    are timed from the start's acceptance (time zero), each at the middle of its exchange."""
    outcome = link.request(LoadProgram(test_fluid_spec(library, fluid)))
    if not outcome.verdict.accepted:
        raise RunError(f"the safety process refused the test fluid: {outcome.verdict.message}")
    try:
        balance.tare()
    except BalanceError as exc:
        raise RunError(f"the balance could not tare: {exc}") from None
    rec = Recording()
    first = balance.read_immediate()
    started = link.request(StartInfusion(Decimal(repr(rate_ml_h)), unit="mL/h"))
    if not started.verdict.accepted:
        raise RunError(f"the safety process refused the start: {started.verdict.message}")
    rec.started_at = now()
    row0 = (0.0, float(first.grams), first.stable)
    rec.rows.append(row0)
    on_row(row0)
    samples = int(duration_s // interval_s)
    try:
        for i in range(1, samples + 1):
            due = rec.started_at + i * interval_s
            wait(max(0.0, due - now()))
            before = now()
            try:
                reading = balance.read_immediate()
            except BalanceError as exc:
                raise RunError(f"reading {i}: {exc}") from None
            at = (before + now()) / 2.0 - rec.started_at
            row = (at, float(reading.grams), reading.stable)
            rec.rows.append(row)
            on_row(row)
            progress(i, samples, float(reading.grams))
    finally:
        link.request(StopInfusion())
    return rec
