"""The in-process pump: the simulated physics behind the ``PumpDriver`` interface.

The safety kernel's tests, the scenario runner and the demo need a pump that answers at
once, exactly and deterministically, yet fails the way a pump on a wire fails. So this
driver wraps the one ``SimulatedPump`` every emulator serves, and consults the same
``WireFaults`` switchboard an emulator's transport consults, once per request:

=================  ============================  ==========================================
wire fault         executed by the pump?         what the caller sees
=================  ============================  ==========================================
drop               no                            ``DeviceTimeout``
lose_ack           yes                           ``DeviceTimeout`` (outcome uncertain, S10)
corrupt            yes                           ``PumpChecksumError`` (outcome uncertain)
garbage            no                            ``PumpChecksumError`` (reply unframed)
silent             no                            ``DeviceTimeout``
delay >= deadline  yes                           ``DeviceTimeout`` (reply too late)
delay < deadline   yes                           normal reply; nothing sleeps in-process
disconnect         no                            ``DeviceDisconnected``; one reconnect attempt
                                                 on the next call (or ``connect()``)
=================  ============================  ==========================================

A set is two requests, the command and its read-back, each meeting the wire on its own,
as on a real port. Any error other than ``PumpRejected`` raised by ``set_rate``,
``configure_syringe``, ``start`` or ``stop`` therefore means the command may have taken
effect: reconcile with ``read_status`` before sending anything else (S10).

Rate resolution: the mock runs rates at 4 significant digits in mL/h, truncated toward
zero, the precision of an NE-1000 display ("at most 4 digits", docs/protocols.md). A
coarser grid than float makes the kernel's rounding checks (S1, S7) bite in tests run on
the mock, where a float-exact pump would hide them.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Generic, TypeVar

from drivers.errors import DeviceDisconnected, DeviceTimeout, DriverError
from drivers.pumps.base import (
    PumpAlarmError,
    PumpAlarmKind,
    PumpChecksumError,
    PumpDriver,
    PumpIdentity,
    PumpRejected,
    PumpStatus,
    RateRange,
    StopConfirmation,
)
from firmware_bridge.clock import Clock, MonotonicClock, clock_from_spec
from firmware_bridge.faults import ReplyAction, WireFaults, apply_faults
from firmware_bridge.pump_model import (
    DEFAULT_OCCLUSION_ALARM_MMHG,
    NotApplicable,
    PumpAlarm,
    PumpSnapshot,
    RateOutOfRange,
    SimulatedPump,
)
from firmware_bridge.syringes import DEFAULT_SYRINGE, Container

T = TypeVar("T")

#: significant digits the mock runs a rate at (NE-1000-like display precision)
RATE_SIGNIFICANT_DIGITS = 4
#: default reply deadline on the liveness clock; a wire delay at or beyond it is a timeout
DEFAULT_REPLY_TIMEOUT_S = 1.0

MOCK_MODEL = "pumpctl-mock"
MOCK_FIRMWARE = "pump_model-1"

_ALARM_MAP: dict[PumpAlarm, PumpAlarmKind] = {
    PumpAlarm.OCCLUSION: PumpAlarmKind.OCCLUSION,
    PumpAlarm.EMPTY: PumpAlarmKind.EMPTY,
    PumpAlarm.STALL: PumpAlarmKind.STALL,
    PumpAlarm.RESET: PumpAlarmKind.RESET,
    PumpAlarm.COMMS_TIMEOUT: PumpAlarmKind.COMMS_TIMEOUT,
    PumpAlarm.AIR_IN_LINE: PumpAlarmKind.AIR_IN_LINE,
    PumpAlarm.UPSTREAM_OCCLUSION: PumpAlarmKind.UPSTREAM_OCCLUSION,
    PumpAlarm.DOOR_OPEN: PumpAlarmKind.DOOR_OPEN,
}


class _Link(enum.Enum):
    CLOSED = "closed"  # never connected, or closed by the caller: no automatic reconnect
    UP = "up"
    DROPPED = "dropped"  # the wire went away under us: the next call reconnects once


def _round_sig(rate_ml_h: float, rounding: str) -> float:
    """``rate_ml_h`` on the 4-significant-digit grid, rounded in the given direction.

    Decimal on ``repr`` keeps the arithmetic exact: a float grid computed with ``10**k``
    would drift up past the request (0.1 * 3 > 0.3).
    """
    if rate_ml_h == 0.0:
        return 0.0
    exact = Decimal(repr(rate_ml_h))
    exponent = exact.adjusted() - (RATE_SIGNIFICANT_DIGITS - 1)
    return float(exact.quantize(Decimal(1).scaleb(exponent), rounding=rounding))


def _check_rate_value(rate_ml_h: float, field: str) -> None:
    if isinstance(rate_ml_h, bool) or not isinstance(rate_ml_h, int | float):
        raise TypeError(f"{field} must be a number of mL/h, got {type(rate_ml_h).__name__}")
    if not math.isfinite(rate_ml_h) or rate_ml_h < 0:
        raise ValueError(f"{field} must be a finite rate >= 0 mL/h, got {rate_ml_h!r}")


def map_alarms(snapshot: PumpSnapshot) -> frozenset[PumpAlarmKind]:
    """The model's latched alarms plus the near-empty warning, in the drivers' vocabulary."""
    kinds = {_ALARM_MAP[a] for a in snapshot.alarms}
    if snapshot.near_empty:
        kinds.add(PumpAlarmKind.NEAR_EMPTY)
    return frozenset(kinds)


class MockPumpDriver(PumpDriver):
    """``PumpDriver`` over an in-process ``SimulatedPump``, with the wire's failure modes.

    Pass a ``pump`` to share it with a test or scenario (ground truth, pump faults), or let
    the driver build one from ``clock``, ``syringe`` and ``loaded_volume_ml``. ``wire`` is
    the fault switchboard; one is created when none is given, so ``driver.wire`` always
    works. ``faults`` is applied once at construction (``"occlusion,lose_ack=2"``).
    """

    name = "mock"

    def __init__(
        self,
        *,
        pump: SimulatedPump | None = None,
        clock: Clock | str | None = None,
        syringe: Container | str | None = None,
        loaded_volume_ml: float | None = None,
        occlusion_alarm_mmhg: float | None = None,
        near_empty_ml: float | None = None,
        ignore_first_command_after_power_up: bool | None = None,
        wire: WireFaults | None = None,
        faults: str = "",
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        auto_reconnect: bool = True,
    ) -> None:
        if pump is not None:
            given = [
                n
                for n, v in (
                    ("clock", clock),
                    ("syringe", syringe),
                    ("loaded_volume_ml", loaded_volume_ml),
                    ("occlusion_alarm_mmhg", occlusion_alarm_mmhg),
                    ("near_empty_ml", near_empty_ml),
                    ("ignore_first_command_after_power_up", ignore_first_command_after_power_up),
                )
                if v is not None
            ]
            if given:
                raise ValueError(
                    f"mock driver: option(s) {', '.join(given)} configure a new simulated "
                    "pump and cannot be combined with pump="
                )
        else:
            the_clock = clock_from_spec(clock) if isinstance(clock, str) else clock
            pump = SimulatedPump(
                the_clock if the_clock is not None else MonotonicClock(),
                syringe if syringe is not None else DEFAULT_SYRINGE,
                loaded_volume_ml=loaded_volume_ml,
                occlusion_alarm_mmhg=(
                    DEFAULT_OCCLUSION_ALARM_MMHG
                    if occlusion_alarm_mmhg is None
                    else occlusion_alarm_mmhg
                ),
                near_empty_ml=near_empty_ml,
                ignore_first_command_after_power_up=bool(ignore_first_command_after_power_up),
            )
        if not (0.0 < reply_timeout_s <= 60.0):
            raise ValueError(f"reply_timeout_s must be > 0 and <= 60 s, got {reply_timeout_s}")
        self._pump = pump
        self._wire = wire if wire is not None else WireFaults()
        self._reply_timeout_s = reply_timeout_s
        self._auto_reconnect = auto_reconnect
        self._link = _Link.CLOSED
        self._lock = threading.RLock()  # one command (and its read-back) in flight
        if faults:
            apply_faults(faults, self._pump, self._wire)

    # ------------------------------------------------------------------ accessors
    @property
    def pump(self) -> SimulatedPump:
        """The physics behind the driver: ground truth and pump faults."""
        return self._pump

    @property
    def wire(self) -> WireFaults:
        """The fault switchboard consulted once per request."""
        return self._wire

    @property
    def connected(self) -> bool:
        return self._link is _Link.UP

    def inject_faults(self, specs: str) -> None:
        """Switch faults by name while running, e.g. ``"occlusion"`` or ``"drop=2"``."""
        apply_faults(specs, self._pump, self._wire)

    # ------------------------------------------------------------------ PumpDriver
    def connect(self) -> None:
        """Bring the link up with one query, as a real driver's hello.

        The hello also absorbs a first command the pump ignores after power-up.
        """
        with self._lock:
            self._link = _Link.UP
            try:
                self._transact("connect", lambda: None, query=True)
            except DriverError:
                if self._link is _Link.UP:
                    self._link = _Link.DROPPED
                raise

    def identify(self) -> PumpIdentity:
        return self._call(
            "identify", lambda: PumpIdentity(model=MOCK_MODEL, firmware=MOCK_FIRMWARE), query=True
        )

    def configure_syringe(self, syringe: Container) -> RateRange:
        """The syringe of a syringe pump, or the bag of a volumetric one (the mock serves
        either kind: ``syringe="bag-500ml"`` builds a volumetric pump)."""
        with self._lock:
            self._call("configure syringe", lambda: self._pump.set_container(syringe), query=False)
            loaded = self._call("read back syringe", lambda: self._pump.container, query=True)
            if loaded != syringe:
                raise DriverError(
                    f"mock pump: syringe read back as {loaded.name!r}, sent {syringe.name!r}"
                )
            return RateRange(
                min_ml_h=_round_sig(syringe.min_rate_ml_h, ROUND_CEILING),
                max_ml_h=_round_sig(syringe.max_rate_ml_h, ROUND_FLOOR),
            )

    def quantize_rate(self, rate_ml_h: float) -> float:
        """Truncate to 4 significant digits in mL/h: never above the request (S1, S7)."""
        _check_rate_value(rate_ml_h, "rate_ml_h")
        return _round_sig(float(rate_ml_h), ROUND_FLOOR)

    def set_rate(self, rate_ml_h: float) -> float:
        with self._lock:
            self.send_rate(rate_ml_h)
            return self._call(
                "read back rate", lambda: self._pump.snapshot().set_rate_ml_h, query=True
            )

    def send_rate(self, rate_ml_h: float) -> None:
        _check_rate_value(rate_ml_h, "rate_ml_h")
        quantized = self.quantize_rate(rate_ml_h)
        if quantized != rate_ml_h:
            raise ValueError(
                f"rate_ml_h {rate_ml_h!r} is not a rate this pump runs; quantize_rate gives "
                f"{quantized!r} (4 significant digits, rounded down)"
            )
        with self._lock:
            self._call("set rate", lambda: self._pump.set_rate(float(rate_ml_h)), query=False)

    def start(self) -> None:
        with self._lock:
            self._call("start", self._pump.start, query=False)
            snap = self._call("read back start", self._pump.snapshot, query=True)
            if not snap.running:
                alarms = map_alarms(snap)
                raise PumpAlarmError(
                    f"mock pump: not running after start (alarms: "
                    f"{', '.join(sorted(alarms)) or 'none'})",
                    alarms,
                )

    def stop(self) -> StopConfirmation | None:
        """Stop, then a status read (a second exchange on the simulated wire): never a
        confirmation from the stop's own reply, so the caller reads the pump back."""
        with self._lock:
            self._call("stop", self._pump.stop, query=False)
            snap = self._call("read back stop", self._pump.snapshot, query=True)
            if snap.running:
                raise DriverError("mock pump: still running after stop")
        return None

    def prime(self, volume_ml: float) -> float:
        """The simulated pump's own prime: its container's top rate, to ``volume_ml``."""
        _check_rate_value(volume_ml, "volume_ml")
        if volume_ml <= 0:
            raise ValueError(f"volume_ml must be above 0 mL, got {volume_ml!r}")
        with self._lock:
            self._call("prime", lambda: self._pump.prime(float(volume_ml)), query=False)
            snap = self._call("read back prime", self._pump.snapshot, query=True)
            if not snap.priming:
                alarms = map_alarms(snap)
                raise PumpAlarmError(
                    f"mock pump: not priming after prime (alarms: "
                    f"{', '.join(sorted(alarms)) or 'none'})",
                    alarms,
                )
            return float(volume_ml)

    def read_status(self) -> PumpStatus:
        snap = self._call("read status", self._pump.snapshot, query=True)
        return PumpStatus(
            priming=snap.priming,
            running=snap.running,
            set_rate_ml_h=snap.set_rate_ml_h,
            infused_ml=snap.infused_ml,
            alarms=map_alarms(snap),
            pressure_mmhg=snap.pressure_mmhg,
            raw=(
                f"t={snap.time!r} running={snap.running} dir={snap.direction} "
                f"rate={snap.set_rate_ml_h!r} infused={snap.infused_ml!r} "
                f"remaining={snap.remaining_ml!r} p={snap.pressure_mmhg!r} "
                f"alarms={','.join(sorted(snap.alarms))}"
            ),
        )

    def close(self) -> None:
        with self._lock:
            self._link = _Link.CLOSED

    # ------------------------------------------------------------------ internals
    def _call(self, what: str, op: Callable[[], T], *, query: bool) -> T:
        with self._lock:
            if self._link is _Link.CLOSED:
                raise DeviceDisconnected(f"mock pump: not connected ({what}); call connect() first")
            if self._link is _Link.DROPPED:
                if not self._auto_reconnect:
                    raise DeviceDisconnected(
                        f"mock pump: link dropped ({what}); call connect() to reconnect"
                    )
                self.connect()  # exactly one attempt; its error propagates
            return self._transact(what, op, query=query)

    def _transact(self, what: str, op: Callable[[], T], *, query: bool) -> T:
        """One request and its reply through the wire faults.

        An ignored query is asked once more (a query changes nothing); an ignored command
        is reported, never repeated: the caller decides.
        """
        wire = self._wire
        if wire.take_disconnect():
            self._link = _Link.DROPPED
            raise DeviceDisconnected(f"mock pump: link dropped during {what}; not executed")
        action = wire.next_action()
        if action is ReplyAction.DROP_REQUEST:
            raise DeviceTimeout(f"mock pump: no reply to {what} (request lost; not executed)")
        if action is ReplyAction.SILENT:
            raise DeviceTimeout(f"mock pump: no reply to {what} (pump silent)")
        if action is ReplyAction.GARBAGE:
            raise PumpChecksumError(f"mock pump: unframed garbage in reply to {what}")
        late = action is ReplyAction.NORMAL and wire.delay_s >= self._reply_timeout_s

        if self._pump.consume_ignored_command():
            if query and action is ReplyAction.NORMAL and not late:
                return self._transact(what, op, query=query)
            result: _Outcome[T] = _Outcome(
                error=PumpRejected(f"mock pump: {what} ignored after power-up", reason="ignored")
            )
        else:
            result = _Outcome.of(op)

        if action is ReplyAction.LOSE_ACK or late:
            cause = "acknowledgement lost" if not late else "reply later than the deadline"
            raise DeviceTimeout(
                f"mock pump: no reply to {what} ({cause}); it may have taken effect, "
                "read the status before the next command"
            )
        if action is ReplyAction.CORRUPT:
            raise PumpChecksumError(
                f"mock pump: corrupted reply to {what}; it may have taken effect, "
                "read the status before the next command"
            )
        return result.unwrap()


@dataclass(frozen=True)
class _Outcome(Generic[T]):
    """What the pump did with a request, held until the wire decides who hears of it."""

    value: T | None = None
    error: DriverError | None = None

    @classmethod
    def of(cls, op: Callable[[], T]) -> _Outcome[T]:
        try:
            return cls(value=op())
        except RateOutOfRange as exc:
            return cls(error=PumpRejected(f"mock pump: {exc}", reason="out of range"))
        except NotApplicable as exc:
            return cls(error=PumpRejected(f"mock pump: {exc}", reason=f"not applicable: {exc}"))

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None only when T admits None
