"""One interface for every laboratory balance on a serial line, and its typed errors.

A balance cannot deliver or stop a drug, so the controller may use it directly (an
accuracy test reads it every 30 s). MT-SICS (Mettler Toledo) is the first protocol;
Sartorius (SBI) and Ohaus balances can follow behind the same interface
(``drivers.balances.registry``). Every error carries the balance's own reason.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from decimal import Decimal


class BalanceError(Exception):
    """Base of every balance error; the message says what the balance answered."""


class BalanceTimeout(BalanceError):
    """No complete answer within the deadline."""


class BalanceDisconnected(BalanceError):
    """The port is gone (or could not be opened)."""


class BalanceNotReady(BalanceError):
    """Understood but not carried out now: busy, or no stability within its time-out."""


class BalanceOverload(BalanceError):
    """The load is above the weighing range."""


class BalanceUnderload(BalanceError):
    """The load is below the weighing range (the pan is not in place)."""


class BalanceRejected(BalanceError):
    """A command or parameter the balance refused (syntax, logical or parameter error)."""


class BalanceProtocolError(BalanceError):
    """An answer that is not what the protocol allows for the command sent."""


@dataclass(frozen=True)
class BalanceIdentity:
    model: str
    serial: str
    software: str
    capacity_g: Decimal | None = None


@dataclass(frozen=True)
class WeightReading:
    """A net weight as the balance showed it, and whether it called it stable."""

    grams: Decimal
    stable: bool
    unit: str = "g"


class Balance(abc.ABC):
    """A balance on one port. Methods block at most for their deadline, never longer."""

    name: str = "balance"

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the port and make sure a balance of this protocol answers."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def identify(self) -> BalanceIdentity: ...

    @abc.abstractmethod
    def read_stable(self, timeout_s: float | None = None) -> WeightReading:
        """The next stable net weight (the balance waits for stability)."""

    @abc.abstractmethod
    def read_immediate(self) -> WeightReading:
        """The net weight now, stable or not (``stable`` says which)."""

    @abc.abstractmethod
    def zero(self, *, immediate: bool = False) -> None:
        """Set zero (waiting for stability unless ``immediate``)."""

    @abc.abstractmethod
    def tare(self, *, immediate: bool = False) -> Decimal:
        """Tare the load on the pan; returns the tare (g)."""

    @abc.abstractmethod
    def tare_value(self) -> Decimal: ...

    @abc.abstractmethod
    def clear_tare(self) -> None: ...

    def __enter__(self) -> Balance:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
