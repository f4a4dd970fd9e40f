"""The host side of every pump: one interface, typed errors, typed status.

The safety process talks to any pump through ``PumpDriver`` and nothing else, so the
same kernel and the same tests serve the in-process mock, an NE-1000 on a serial port, a
Harvard pump and a Modbus drive. Drivers never clamp a value the pump refused and never
retry a set blindly: a set whose acknowledgement was lost raises ``DeviceTimeout``
(``drivers.errors``, shared with every device on a line) and the caller must reconcile
with a status read (invariant S10).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from drivers.errors import DriverError
from firmware_bridge.syringes import Syringe


class PumpRejected(DriverError):
    """The pump refused the command; ``reason`` is the pump's own word (e.g. out of range)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PumpChecksumError(DriverError):
    """A reply arrived but failed its integrity check (CRC, framing)."""


class PumpAlarmError(DriverError):
    """The pump answered with an alarm instead of doing what was asked."""

    def __init__(self, message: str, alarms: frozenset[PumpAlarmKind]) -> None:
        super().__init__(message)
        self.alarms = alarms


class PumpAlarmKind(enum.StrEnum):
    """Pump-side alarms, in one vocabulary for every protocol."""

    OCCLUSION = "occlusion"
    EMPTY = "empty"
    NEAR_EMPTY = "near_empty"
    STALL = "stall"
    RESET = "reset"
    COMMS_TIMEOUT = "comms_timeout"
    PROGRAM_ERROR = "program_error"
    OTHER = "other"


@dataclass(frozen=True)
class PumpIdentity:
    model: str
    firmware: str
    address: int | None = None


@dataclass(frozen=True)
class RateRange:
    """What the pump accepts with the configured syringe, in mL/h."""

    min_ml_h: float
    max_ml_h: float


@dataclass(frozen=True)
class PumpStatus:
    """One reading of the pump, as the pump reports it (never as we believe it)."""

    running: bool
    set_rate_ml_h: float
    infused_ml: float
    alarms: frozenset[PumpAlarmKind]
    pressure_mmhg: float | None = None
    raw: str = ""


class PumpDriver(abc.ABC):
    """A pump reached over one port. One command in flight at a time; every read has a
    deadline; every set is read back before it returns."""

    #: the registry name: "mock", "ne1000", "harvard", "modbus"
    name: str = ""

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the port and bring the pump to a known protocol state."""

    @abc.abstractmethod
    def identify(self) -> PumpIdentity: ...

    @abc.abstractmethod
    def configure_syringe(self, syringe: Syringe) -> RateRange:
        """Tell the pump which syringe is loaded; return the rate range it then accepts."""

    @abc.abstractmethod
    def quantize_rate(self, rate_ml_h: float) -> float:
        """The rate this pump really runs when asked for ``rate_ml_h``, rounded DOWN.

        Pure, no I/O: the safety kernel checks the limits against this figure (S1, S7).
        """

    @abc.abstractmethod
    def set_rate(self, rate_ml_h: float) -> float:
        """Send a rate, read it back, return the rate the pump reports.

        ``rate_ml_h`` must already be quantized; a value the pump would round is an error,
        never silently changed. Raises ``PumpRejected`` when the pump refuses it and
        ``DeviceTimeout`` when the acknowledgement is lost (outcome uncertain).
        """

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def read_status(self) -> PumpStatus: ...

    def keep_alive(self) -> None:  # noqa: B027 - optional hook with a default
        """Keep a supervised link alive (NE-1000 safe mode); nothing by default."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> PumpDriver:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
