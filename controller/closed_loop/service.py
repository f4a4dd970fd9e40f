"""The closed loop kept going beside the operator console (``pumpctl run``).

``ClosedLoop`` decides when it is stepped; something must step it on its period while the
operator types, reads the status or takes a break. ``LoopService`` does that the way the
session's plans are serviced: on a real or scaled clock a ``ServiceThread`` calls
``service()`` (one monitor read, and a decision when one is due); on a virtual clock the
console's ``wait`` calls it between slices of clinical time. It adds what an operator at a
console needs around the loop and nothing the loop decides:

- the bench's MAP source is read from the start (``open``), so the loop has fresh,
  filtered MAP when it is engaged, and the status shows the MAP before it is; a monitor
  that cannot be opened yet is tried again every few seconds;
- ``engage`` sets the operator's part of the settings (target, band, dose range, soft
  limits) on the bench's part (the line, the tuning), and refuses to hand the infusion
  over while there is no valid MAP (the loop would only suspend and alarm);
- ``take_over``, ``hand_back`` and ``disengage`` (the loop stops for good: ``engage``
  again to restart it) take the same lock as a step, so once ``take_over`` returns no
  decision of the loop is in flight and none follows;
- a step that fails unexpectedly never reaches the operator as a traceback and never
  stops the console: the loop is taken over (it sends nothing more, the rate is held) and
  a medium controller alarm says so (``closed_loop_failed``); ``hand_back`` retries;
- ``view`` is the last published state, read without waiting for a step in flight (the
  console's status bar is redrawn every second and must never block).

Every order still goes through ``Session.order`` inside ``ClosedLoop``: the safety process
decides each one. Nothing here sends anything to it.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import threading
from dataclasses import dataclass, replace
from decimal import Decimal

from controller.alarm_desk import OWN
from controller.closed_loop.loop import CEILING_KEY, SUSPENDED_KEY, ClosedLoop, Decision, LoopMode
from controller.closed_loop.settings import LoopSettingError, LoopSettings
from controller.errors import BadInput, ControllerError
from controller.service_thread import ServiceThread
from controller.session import Session
from drivers.monitors.base import MapSource, MonitorProtocolError
from firmware_bridge.clock import Clock, MonotonicClock

log = logging.getLogger("controller.closed_loop.service")

FAILED_KEY = f"{OWN}closed_loop_failed"
#: the controller alarms that are the loop's (the console lists them with its status)
LOOP_ALARM_KEYS = (SUSPENDED_KEY, CEILING_KEY, FAILED_KEY)
#: clinical seconds between two reads of the monitor (it keeps 64 numerics, one every
#: 2 s: a read every 5 s misses none, and a decision is at most this late)
POLL_S = 5.0
#: real seconds between two attempts to open a monitor that could not be opened
REOPEN_S = 5.0


class LoopState(enum.StrEnum):
    """The loop as the operator sees it: ``off`` before ``engage`` and after
    ``disengage``; otherwise the loop's mode (``manual``: taken over, hand-back possible)."""

    OFF = "off"
    RUNNING = "running"
    SUSPENDED = "suspended"
    MANUAL = "manual"


@dataclass(frozen=True)
class LoopView:
    """What the console shows of the loop (published after each step and command)."""

    state: LoopState
    source: str
    #: why the monitor is not being read (cannot be opened), None while it is
    monitor_problem: str | None
    #: the problem is the source's data (a malformed replay file, a peer that does not
    #: speak the protocol), not its link: no cable will fix it (still tried again)
    monitor_unusable: bool
    #: the settings in force (None while off)
    settings: LoopSettings | None
    #: median of the valid MAP samples of the last period (``map_period_s``), and how
    #: many there were
    map_mmhg: float | None
    map_samples: int
    map_period_s: float
    decision: Decision | None
    suspended_why: str | None
    #: the error that stopped the loop (it was taken over), until a hand-back or engage
    failure: str | None
    requests: int
    accepted: int
    refused: int


class _SessionClock:
    """The session's clinical clock as a ``Clock`` (the loop and the session must share
    one timeline: the loop compares its times with the safety process's history)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def now(self) -> float:
        return self._session.clinical_now()

    def to_real_seconds(self, clinical_seconds: float) -> float:
        return self._session.real_seconds(clinical_seconds)


class LoopService:
    """One ``ClosedLoop`` on ``session`` reading ``source``, serviced beside a console.

    ``settings``: the bench's part (line, tuning); the operator's part is given to
    ``engage``. ``clock``: the clinical clock (default the session's)."""

    def __init__(
        self,
        session: Session,
        source: MapSource,
        *,
        settings: LoopSettings | None = None,
        clock: Clock | None = None,
        liveness: Clock | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        self.session = session
        self.clock = clock or _SessionClock(session)
        self.poll_s = poll_s
        self.loop = ClosedLoop(session, source, settings or LoopSettings(), clock=self.clock)
        self._bench_settings = self.loop.settings
        self._liveness = liveness or MonotonicClock()
        self._lock = threading.Lock()
        self._engaged = False
        self._opened = False
        self._problem: str | None = None
        self._problem_is_data = False
        self._failure: str | None = None
        self._next_open = -math.inf
        self._thread: ServiceThread | None = None
        self._view = self._make_view()

    # ------------------------------------------------------------------ reading
    @property
    def view(self) -> LoopView:
        return self._view

    @property
    def source_name(self) -> str:
        return self.loop.source.name

    # ------------------------------------------------------------------ life
    def open(self) -> str | None:
        """Open the monitor; None when it is open, else why not (tried again later)."""
        with self._lock:
            self._open()
            self._publish()
            return self._problem

    def run_in_background(self, period_s: float = 1.0) -> ServiceThread:
        """A thread calling ``service()`` (real and scaled clocks): at least every
        ``period_s`` real seconds, and every ``poll_s`` clinical seconds."""
        with self._lock:
            if self._thread is None or not self._thread.alive:
                self._thread = ServiceThread(self, period_s)
                self._thread.start()
            return self._thread

    def close(self) -> None:
        """Stop servicing and close the monitor. An engaged loop stops with the console
        (journaled as a take-over): the infusion continues at its verified rate."""
        thread = self._thread
        if thread is not None:
            thread.stop()
        with self._lock:
            if self._engaged and self.loop.mode is not LoopMode.MANUAL:
                with contextlib.suppress(Exception):
                    self.loop.take_over("the console closed: the rate is held")
            with contextlib.suppress(Exception):
                self.loop.source.close()
            self._opened = False

    # ------------------------------------------------------------------ time
    def service(self) -> float | None:
        """One read of the monitor and, when due, one decision. Returns clinical seconds
        until the next call is wanted. Never raises: a failure of the loop takes it over
        with an alarm."""
        with self._lock:
            if not self._opened:
                if self._liveness.now() >= self._next_open:
                    self._open()
                if not self._opened:
                    self._publish()
                    return self.poll_s
            try:
                self.loop.step()
            except Exception as exc:
                self._fail(exc)
            self._publish()
            return self.poll_s

    def real_seconds(self, clinical_s: float) -> float:
        return self.session.real_seconds(clinical_s)

    def raise_fault(self, message: str) -> None:
        self.session.raise_fault(f"closed loop: {message}")

    # ------------------------------------------------------------------ operator
    def engage(
        self,
        *,
        target_mmhg: float,
        band_mmhg: float,
        dose_min: Decimal,
        dose_max: Decimal,
        soft_limits_confirmed: bool,
    ) -> LoopSettings:
        """Hand the running infusion to the loop with the operator's settings (off or
        taken over: a new engage starts the loop's models afresh)."""
        with self._lock:
            if self._engaged and self.loop.mode is not LoopMode.MANUAL:
                raise ControllerError(
                    f"the loop is engaged ({self.loop.mode.value}): loop take-over first to "
                    "change its settings",
                    code="loop_engaged",
                )
            try:
                settings = replace(
                    self._bench_settings,
                    target_mmhg=target_mmhg,
                    band_mmhg=band_mmhg,
                    dose_min=dose_min,
                    dose_max=dose_max,
                    soft_limits_confirmed=soft_limits_confirmed,
                )
                self._require_map(settings)
                self.loop.engage(settings)
            except LoopSettingError as exc:
                message = str(exc).removeprefix(f"{exc.field}: ")
                raise BadInput(_operator_word(exc.field), message) from None
            self._engaged = True
            self._recovered()
            self._publish()
            return settings

    def take_over(self, why: str = "operator at the console") -> None:
        """The operator has control: once this returns the loop sends nothing more."""
        with self._lock:
            self._require_engaged()
            if self.loop.mode is LoopMode.MANUAL:
                raise ControllerError(
                    "the loop is taken over already: you have control (loop hand-back "
                    "gives it back)",
                    code="loop_manual",
                )
            self.loop.take_over(why)
            self._publish()

    def hand_back(self) -> None:
        """Give control back to the loop (it keeps what it learned of the patient)."""
        with self._lock:
            self._require_engaged()
            if self.loop.mode is not LoopMode.MANUAL:
                raise ControllerError(
                    f"the loop has control already ({self.loop.mode.value})", code="loop_engaged"
                )
            self._require_map(self.loop.settings)
            self.loop.hand_back()
            self._recovered()
            self._publish()

    def disengage(self) -> None:
        """Stop the loop (the rate stays as it is); ``engage`` starts it again."""
        with self._lock:
            self._require_engaged()
            if self.loop.mode is not LoopMode.MANUAL:
                self.loop.take_over("disengaged by the operator")
            self._engaged = False
            self.session.journal.note("loop", event="disengage", mode=self.loop.mode.value)
            self._recovered()
            self._publish()

    # ------------------------------------------------------------------ internals
    def _open(self) -> None:
        try:
            self.loop.source.open()
        except Exception as exc:  # a monitor that is not there yet is no traceback
            self._problem = f"{self.loop.source.name}: {exc}"
            self._problem_is_data = isinstance(exc, MonitorProtocolError)
            self._next_open = self._liveness.now() + REOPEN_S
            self._opened = False
            return
        if self._problem is not None:
            self.session.journal.note("loop", event="monitor_open", source=self.source_name)
        self._problem = None
        self._opened = True

    def _fail(self, exc: Exception) -> None:
        why = exc.message if isinstance(exc, ControllerError) else f"{type(exc).__name__}: {exc}"
        if why != self._failure:
            log.error("closed loop step failed: %s", why, exc_info=exc)
        self._failure = why
        if self.loop.mode is LoopMode.MANUAL:
            return  # nothing was the loop's to hold
        try:
            self.loop.take_over(f"the loop failed: {why}")
        except Exception:
            log.exception("closed loop: taking over after a failure failed too")
            self.loop.mode = LoopMode.MANUAL  # it must send nothing more, whatever broke
        with contextlib.suppress(Exception):
            self.session.raise_alarm(
                FAILED_KEY,
                "medium",
                "closed_loop_failed",
                f"closed loop stopped by an error ({why}): it sends nothing more and the "
                "rate is held; you have control (loop hand-back to try again)",
            )

    def _recovered(self) -> None:
        self._failure = None
        self.session.alarm_condition_gone(FAILED_KEY)

    def _require_engaged(self) -> None:
        if not self._engaged:
            raise ControllerError(
                "the loop is not engaged (loop engage target=MMHG min=DOSE max=DOSE)",
                code="loop_off",
            )

    def _require_map(self, settings: LoopSettings) -> None:
        """Valid MAP now, read now: the last read may be a few clinical seconds old (on a
        scaled clock the signal-loss time is a fraction of a real second)."""
        if not self._opened:
            what = "unusable" if self._problem_is_data else "not connected"
            raise ControllerError(
                f"the monitor is {what} ({self._problem}); the loop needs its MAP",
                code="loop_no_monitor",
            )
        try:
            if self.loop.mode is LoopMode.MANUAL:  # a step then reads and decides nothing
                self.loop.step()
        except Exception as exc:
            raise ControllerError(
                f"the monitor cannot be read ({type(exc).__name__}: {exc})",
                code="loop_no_map",
            ) from None
        silent = self.loop.filter.silent_for(self.clock.now())
        if silent > settings.signal_loss_s:
            last = self.loop.filter.last_verdict
            seen = f"for {silent:.0f} s" if math.isfinite(silent) else "yet"
            raise ControllerError(
                f"no valid MAP from {self.source_name} {seen} (last sample: "
                f"{last.value if last else 'none'}); the loop would only suspend: check the "
                "monitor (loop status)",
                code="loop_no_map",
            )

    def _publish(self) -> None:
        self._view = self._make_view()

    def _make_view(self) -> LoopView:
        loop = self.loop
        period = loop.settings.period_s
        median, samples = loop.filter.median_since(self.clock.now() - period)
        state = LoopState(loop.mode.value) if self._engaged else LoopState.OFF
        return LoopView(
            state=state,
            source=self.source_name,
            monitor_problem=self._problem,
            monitor_unusable=self._problem is not None and self._problem_is_data,
            settings=loop.settings if self._engaged else None,
            map_mmhg=median,
            map_samples=samples,
            map_period_s=period,
            decision=loop.last_decision if self._engaged else None,
            suspended_why=loop.suspended_why if state is LoopState.SUSPENDED else None,
            failure=self._failure,
            requests=loop.stats.requests,
            accepted=loop.stats.accepted,
            refused=sum(loop.stats.refusals.values()),
        )


_OPERATOR_WORDS = {
    "target_mmhg": "target",
    "band_mmhg": "band",
    "dose_min": "min",
    "dose_max": "max",
}


def _operator_word(field: str) -> str:
    """The console's word for a setting (``target`` for ``target_mmhg``)."""
    return _OPERATOR_WORDS.get(field, field)


__all__ = ["FAILED_KEY", "LOOP_ALARM_KEYS", "LoopService", "LoopState", "LoopView"]
