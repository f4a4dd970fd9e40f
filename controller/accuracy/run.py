"""An accuracy run: a pump driven THROUGH the safety process at a set rate with a
test-fluid program, a balance read every ``interval_s``, each reading handed on as it
comes (the command writes it to the CSV at once, so an interrupted run keeps them).

Every order (load the test fluid, start, stop) is a ``Session.order``: journaled by the
controller, decided by the safety process with its rules (a test fluid has rate limits
only: no drug), exactly as on any bench; the run never talks to a pump. Time is whatever
``now`` and ``wait`` make it: the bench's clinical clock and a (scaled) sleep on a real
bench, ``LocalSafety.advance`` on a virtual clock in process.

A reading is the balance's stable weight (MT-SICS ``S``: the balance answers once the
weight is stable). When the balance says it found no stability within its own time-out
(``S I``) the weight is taken at once instead (``SI``) and kept with the balance's own
flag, normally dynamic, so the CSV says which readings were not stable. A stable reading
is timed when its answer arrives (the balance sends it as soon as it is stable); an
immediate one at the middle of its exchange. Time zero is the start's acceptance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from controller.accuracy.readings import Row
from controller.errors import ControllerError
from controller.session import Session
from drivers.balances import Balance, BalanceError, BalanceNotReady
from safety.kernel.model import LoadProgram, ProgramSpec, StartInfusion, StopInfusion
from safety.library import DrugLibrary
from safety.reasons import Reason


class RunError(RuntimeError):
    """The run could not go on; the message says why (a refusal, a balance that failed,
    a pump that stopped)."""


@dataclass
class Recording:
    """What a run recorded, filled in as it goes (so an interrupted run still has it)."""

    rows: list[Row] = field(default_factory=list)
    #: clinical time of the start's acceptance (None: the pump was never started)
    started_at: float | None = None
    #: how the stop went, in words (None: not attempted yet)
    stop: str | None = None
    #: True once the safety process has accepted the stop (or nothing ran)
    stopped: bool = False

    @property
    def dynamic(self) -> int:
        """Readings the balance did not call stable."""
        return sum(1 for r in self.rows if not r.stable)


def test_fluid_spec(library: DrugLibrary, fluid: str = "water") -> ProgramSpec:
    """The program of a library's test fluid: no drug, no concentration, no patient."""
    fid, _ = library.test_fluid(fluid)
    return ProgramSpec(library.content_hash, fid, "", "", "", "", test_fluid=True)


def read_weight(
    balance: Balance,
    now: Callable[[], float],
    *,
    stable: bool = True,
    stable_timeout_s: float | None = None,
) -> tuple[float, float, bool, str]:
    """(clinical time, grams, stable, command): ``S``, or ``SI`` when the balance found no
    stability in time (see the module docstring). ``stable=False``: ``SI`` only, for a
    bench on a virtual clock, where no time passes while a balance waits for stability."""
    if stable:
        try:
            reading = balance.read_stable(stable_timeout_s)
            return now(), float(reading.grams), reading.stable, "S"
        except BalanceNotReady:
            pass
    before = now()
    reading = balance.read_immediate()
    return (before + now()) / 2.0, float(reading.grams), reading.stable, "SI"


def record_run(
    session: Session,
    library: DrugLibrary,
    balance: Balance,
    *,
    rate_ml_h: float,
    duration_s: float,
    interval_s: float,
    now: Callable[[], float],
    wait: Callable[[float], None],
    fluid: str = "water",
    stable: bool = True,
    stable_timeout_s: float | None = None,
    into: Recording | None = None,
    on_row: Callable[[Row], None] = lambda row: None,
    progress: Callable[[int, int, Row], None] = lambda i, n, row: None,
) -> Recording:
    """Load the test fluid, tare, start, read every ``interval_s`` until ``duration_s``,
    stop. The stop is sent however the run ends (an error, Ctrl-C); ``into`` keeps what
    was recorded for the caller in every case."""
    rec = into if into is not None else Recording()
    _order(session, LoadProgram(test_fluid_spec(library, fluid)), "load the test fluid")
    read = functools.partial(
        read_weight, balance, now, stable=stable, stable_timeout_s=stable_timeout_s
    )
    first = _read(balance, read, "before the start", tare=True)
    try:  # from the start on: a start accepted as Ctrl-C arrives is stopped too
        start = StartInfusion(Decimal(repr(rate_ml_h)), unit="mL/h")
        _order(session, start, f"start at {rate_ml_h:g} mL/h")
        rec.started_at = t0 = now()
        _keep(rec, Row(0.0, first[1], first[2], first[3]), on_row)
        samples = int(duration_s // interval_s)
        for i in range(1, samples + 1):
            wait(max(0.0, t0 + i * interval_s - now()))
            at, grams, steady, command = _read(balance, read, f"reading {i}")
            row = Row(at - t0, grams, steady, command)
            _keep(rec, row, on_row)
            progress(i, samples, row)
            _check_running(session, i)
    finally:
        _stop(session, rec)
    return rec


def _keep(rec: Recording, row: Row, on_row: Callable[[Row], None]) -> None:
    rec.rows.append(row)
    on_row(row)


def _read(
    balance: Balance,
    read: Callable[[], tuple[float, float, bool, str]],
    what: str,
    *,
    tare: bool = False,
) -> tuple[float, float, bool, str]:
    try:
        if tare:
            balance.tare()
        return read()
    except BalanceError as exc:
        step = "taring the beaker" if tare else what
        raise RunError(f"the balance failed ({step}): {exc}") from None


def _order(session: Session, body: LoadProgram | StartInfusion, what: str) -> None:
    try:
        outcome = session.order(body)
    except ControllerError as exc:
        raise RunError(f"could not {what}: {exc.message}") from None
    if not outcome.verdict.accepted:
        raise RunError(f"the safety process refused to {what}: {outcome.verdict.message}")


def _check_running(session: Session, i: int) -> None:
    """A pump the safety process stopped (an alarm, the stop button) ends the run: the
    readings after it would weigh nothing and look like a pump that under-delivers."""
    try:
        snapshot = session.status()
    except ControllerError as exc:
        raise RunError(
            f"after reading {i}: the safety process cannot be asked: {exc.message}"
        ) from None
    if not snapshot.running:
        alarms = "; ".join(f"{a.key}: {a.message}" for a in snapshot.alarms) or "no alarm"
        raise RunError(f"after reading {i}: the pump is no longer running ({alarms})")


def _stop(session: Session, rec: Recording) -> None:
    try:
        outcome = session.order(StopInfusion())
    except ControllerError as exc:
        rec.stop = (
            f"the stop could not be sent ({exc.message}): the pump may still run; stop it "
            "at the pump or with 'pumpctl run'"
        )
        return
    verdict = outcome.verdict
    if verdict.accepted:
        rec.stop, rec.stopped = "stopped through the safety process", True
    elif verdict.reason == Reason.NOT_INFUSING:
        rec.stop, rec.stopped = "the pump was not running", True
    else:
        rec.stop = f"the safety process refused the stop: {verdict.message}"


__all__ = [
    "Recording",
    "RunError",
    "read_weight",
    "record_run",
    "test_fluid_spec",
]
