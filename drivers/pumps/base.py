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
from firmware_bridge.syringes import Bag, Container


class PumpRejected(DriverError):
    """The pump refused the command; ``reason`` is the pump's own word (e.g. out of range)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AnotherPumpAnswers(DriverError):
    """The pump on the port names itself otherwise than the channel's pump (another adapter
    now has the port's name, or another pump was plugged in; after a reconnect, or after a
    restart or a reboot of the safety process that had recorded the channel's pump's
    name): nothing it reports is this channel's, and nothing is sent to it. ``other``:
    the name it gave (the safety process tells a swap of ports from a replacement by it)."""

    def __init__(self, message: str, other: str = "") -> None:
        super().__init__(message)
        self.other = other


class PumpName:
    """What the channel's pump calls itself, compared with what the pump on the port calls
    itself at every (re)connection: a port's name can reach another adapter after an
    unplug or a reboot (docs/protocols.md), and nothing another pump says is this
    channel's. Two pumps of one model and firmware name themselves alike: by-id port names
    are the answer to that, not this check.

    The expected name is the first one heard, unless the owner presets it (``expect``)
    before the driver's first connection: the safety process does so with the name it
    recorded for the channel in its journal, so that after its own restart, or a reboot
    that swapped ``/dev/ttyUSB0`` and ``/dev/ttyUSB1``, another pump is refused exactly as
    after a reconnect, instead of being taken as the channel's by a driver that has never
    heard its own pump. It calls ``expect(None)`` when the operator accepted a replacement,
    possibly while the driver's link is up: the next call of the driver asks the pump on
    the port its name first (``must_ask``), and that name is the channel's."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        #: the name the channel's pump gave (None: none yet, the next one heard is taken)
        self.first: str | None = None
        #: ``first`` came from ``expect`` (the owner's record), not from this driver's ears
        self.recorded = False
        #: what a person should do when another pump answers (the owner's words)
        self.remedy = ""
        #: why the last name heard differed from the first (None: it did not)
        self.foreign: str | None = None
        #: the name that other pump gave ("": none differed)
        self.other = ""
        #: the pump was asked and gave no name (``heard_no_name``): nothing can tell it
        #: from another pump of its kind (the owner warns where that matters)
        self.nameless = False
        self._must_ask = True

    @property
    def must_ask(self) -> bool:
        """The pump on the port is to be asked its name before anything else is sent to
        it, whatever the state of the link: nothing heard yet, or ``expect`` since the last
        answer. Set by ``expect``, cleared by the answer (``heard``, ``heard_no_name``).
        Every driver checks it before each exchange, so an ``expect`` while the link is up
        (a replacement accepted while the channel's pump was only silent for a moment) is
        followed by the name question at the next call, never by a link that goes on
        unasked and a name that is never recorded."""
        return self._must_ask

    def expect(self, name: str | None, remedy: str = "") -> None:
        """Take ``name`` as the channel's pump's (None: none, so the next pump to name
        itself is taken as the channel's: an accepted replacement), before a connection or
        while connected. ``remedy`` ends the refusal's message, saying what to do. Forgets
        any refusal, and marks the name as to be asked (``must_ask``): the driver asks the
        pump on the port again (NE-1000, Harvard: a whole handshake) before anything else
        is sent, even on a link that stayed up."""
        self.first = name
        self.recorded = name is not None
        self.remedy = remedy
        self.foreign = None
        self.other = ""
        self.nameless = False
        self._must_ask = True

    def heard(self, named: str, where: str) -> None:
        """Keep the first name (unless one is expected); any later one must equal it
        (``where``: the address and port, for the message). The question is answered
        (``must_ask`` cleared), by this channel's pump or by another."""
        self._must_ask = False
        self.nameless = False
        if self.first is None:
            self.first = named
            self.recorded = False
        if named == self.first:
            self.foreign, self.other = None, ""
            self.recorded = False  # heard from the pump itself from now on
            return
        self.other = named
        when = (
            "as this channel's pump did before the safety process restarted"
            if self.recorded
            else "as when connected"
        )
        self.foreign = (
            f"{self.driver}: {'' if self.recorded else 'after the reconnect '}the pump "
            f"{where} names itself {named!r}, not {self.first!r} {when}: another pump "
            "answers there" + (f"; {self.remedy}" if self.remedy else "")
        )

    def heard_no_name(self) -> None:
        """The pump was asked and has no name to give (a Modbus device without
        identification) while none is expected: nothing to compare, the question is
        answered all the same (``must_ask`` cleared). Where a name is expected, a pump
        that gives none is another pump: that is ``heard`` with what it said instead."""
        self._must_ask = False
        self.nameless = True

    def refuse_foreign(self) -> None:
        """Raise ``AnotherPumpAnswers`` while the last name heard was not the first: what
        that pump says is not this channel's, and nothing is to be sent to it."""
        if self.foreign is not None:
            raise AnotherPumpAnswers(self.foreign, self.other)


class PumpChecksumError(DriverError):
    """A reply arrived but failed its integrity check (CRC, framing)."""


class PumpAlarmError(DriverError):
    """The pump answered with an alarm instead of doing what was asked."""

    def __init__(self, message: str, alarms: frozenset[PumpAlarmKind]) -> None:
        super().__init__(message)
        self.alarms = alarms


class PumpAlarmKind(enum.StrEnum):
    """Pump-side alarms, in one vocabulary for every protocol.

    ``OCCLUSION`` is a downstream occlusion (pump to patient), on any pump. The last three
    are a volumetric pump's sensors: air in the line, an occlusion between the container
    and the pump (flow stops: nothing to draw), and an open door (flow stops: free-flow
    protection)."""

    OCCLUSION = "occlusion"
    EMPTY = "empty"
    NEAR_EMPTY = "near_empty"
    STALL = "stall"
    RESET = "reset"
    COMMS_TIMEOUT = "comms_timeout"
    PROGRAM_ERROR = "program_error"
    AIR_IN_LINE = "air_in_line"
    UPSTREAM_OCCLUSION = "upstream_occlusion"
    DOOR_OPEN = "door_open"
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
    #: the pump is running a prime (purge) started by ``PumpDriver.prime``
    priming: bool = False


@dataclass(frozen=True)
class StopConfirmation:
    """The pump's own word, in its reply to the stop command itself, that it stopped.

    Where a protocol's reply to a stop carries the pump's state (NE-1000: the status
    character ``S``; Harvard: the idle prompt ``:``), that reply is a confirmation from
    the pump, and the emergency stop (S12) counts the pump stopped on it instead of
    waiting for a read-back of rate and volumes; the next read-back still verifies."""

    #: the reply's state as the pump sent it, for the journal (``"00S"``, ``"07:"``)
    reply: str


class PumpDriver(abc.ABC):
    """A pump reached over one port. One command in flight at a time; every read has a
    deadline; every set is read back before it returns."""

    #: the registry name: "mock", "ne1000", "harvard", "modbus"
    name: str = ""
    #: the pump's own name, kept and compared at every connection (``PumpName``); None
    #: for a driver whose pumps are not asked their name (mock; a Modbus driver keeps one
    #: that stays empty for a device without identification)
    pump_name: PumpName | None = None
    #: the serial device the pump is reached through, as the config names it (its line's,
    #: on a shared line): ``/dev/ttyUSB0`` may reach another adapter after a reboot, a
    #: ``/dev/serial/by-id/`` link follows its adapter. "": none (in-process; a network
    #: address, which names no adapter). The safety process journals it with the bench
    #: (``ChannelConfigured.serial_port``) to warn when two pumps it cannot tell apart by
    #: their names sit behind ports that may swap
    serial_port: str = ""

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the port and bring the pump to a known protocol state."""

    @abc.abstractmethod
    def identify(self) -> PumpIdentity: ...

    @abc.abstractmethod
    def configure_syringe(self, syringe: Container) -> RateRange:
        """Tell the pump which syringe is loaded (on a volumetric pump: which bag); return
        the rate range it then accepts. A container the pump cannot hold (a bag on a
        syringe pump) is refused with ``PumpRejected``."""

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
    def send_rate(self, rate_ml_h: float) -> None:
        """``set_rate`` without its read-back: the rate is sent and the pump's
        acknowledgement checked, with the same errors.

        For a caller that reads the pump's whole status right after (the safety core: its
        S9 read-back compares the set rate it reads with the one it sent): reading the rate
        here too would be one more exchange on a shared line for every change, telling
        nothing the read-back does not.
        """

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> StopConfirmation | None:
        """Stop the pump. A reply that shows it still running raises ``PumpRejected``; a lost
        one ``DeviceTimeout`` (outcome uncertain, never repeated here: S10).

        Returns a ``StopConfirmation`` when the stop's own reply shows the pump stopped
        (and only then: a reply that says nothing of the pump's state, or a state that is
        not plainly stopped, returns None, and the caller reads the pump back to know).
        """

    @abc.abstractmethod
    def read_status(self) -> PumpStatus: ...

    def keep_alive(self) -> None:  # noqa: B027 - optional hook with a default
        """Keep a supervised link alive (NE-1000 safe mode); nothing by default."""

    def prime(self, volume_ml: float) -> float:
        """Prime (purge) the line: run at the pump's top rate until ``volume_ml`` is out.

        Contract:
        - the line is NOT connected to the patient: the caller (the safety process) makes
          sure of it, on a standby channel or after a syringe or bag change, before the
          line is connected. The pump cannot know; a prime into a connected line is a
          bolus of ``volume_ml`` at the top rate. The emulated pumps record a prime into
          a disconnected line as waste in their ground truth, never as delivered;
        - it takes up the mechanism's slack, so the next start delivers promptly;
        - it starts the prime and returns at once, with the volume the pump will prime
          (after its own rounding, never above ``volume_ml``); the pump stops by itself
          when the volume is out. ``read_status`` reports ``running`` and ``priming``
          while it runs; ``stop`` ends it early;
        - the rate and target volume the infusion runs with are left as they were:
          restored by the pump, or by the driver before the next ``set_rate``/``start``;
        - ``PumpRejected`` (reason ``prime not supported``) on a pump that has no way to
          prime, ``PumpRejected`` too while it runs, and ``ValueError`` for a volume that
          is not a positive number.
        """
        raise PumpRejected(
            f"{self.name}: this pump has no prime (purge) command", reason="prime not supported"
        )

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> PumpDriver:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refuse_bag(driver: str, container: Container) -> None:
    """A syringe pump's driver handed a bag: refused, naming both."""
    if isinstance(container, Bag):
        raise PumpRejected(
            f"{driver}: a syringe pump cannot hold {container.name} (a bag for a volumetric pump)",
            reason="not a syringe",
        )
