"""Shared lines: several devices on one serial line or one TCP connection.

Lab pumps are chained: up to 100 NE-1000s on one RS-232 line, Harvard / KD Scientific
pump chains with addresses 00-99, Modbus devices 1-247 on one RS-485 line or behind one
TCP gateway. There is one port and one master, so the line, not each pump, owns the
port; every exchange (a command and its reply, never two interleaved) is serialised by
the line's lock, and a driver holds that lock across a set and its read-back as it does on
a port of its own. Deadlines are the transport's (``drivers.transport``): nothing here
waits without one.

A line is declared by data, so a bench config can say::

    [lines.bus1]
    kind = "serial"            # or "tcp"
    port = "/dev/ttyUSB0"      # for tcp: "HOST:PORT"
    baud = 19200
    parity = "N"

    [channels.A]
    driver = "ne1000"
    line = "bus1"
    address = 1

API, for whoever builds the drivers (the safety process, tests, benchmarks):

- ``LineSpec``: the line's settings (pydantic, frozen, unknown fields refused).
- ``open_line(spec)`` -> ``SharedLine`` (not opened yet; the first driver's ``connect``
  opens it). ``open_lines({"bus1": spec, ...})`` builds one per name. Build ONE
  ``SharedLine`` per physical line and hand the same object to every driver on it:
  ``Ne1000Driver(line=bus1, address=1)``, ``HarvardDriver(line=bus1, address=2)``,
  ``ModbusDriver(line=bus1, device_id=3, map_path=...)``
  (``load_driver("ne1000", line=bus1, address=1)`` does the same by name).
- A line carries one protocol family: the first driver claims it, a driver of another
  family on the same line is refused (``LineError``), and so is a second driver at an
  address already taken on it.
- Each byte-protocol driver talks through its own ``LineTransport`` (``line.transport_for``),
  a ``drivers.transport.Transport`` over the line's one port. Closing a driver detaches
  it; the port closes when the last driver has gone. A port lost under one driver, or
  missing when the first driver connected (an adapter plugged in later), is opened by
  whichever driver next needs it (one attempt at a time, bounded and paced:
  ``drivers.opening``), and every driver on the line then redoes its own handshake
  (``ensure_open`` tells each of them, once).
- Bytes that arrive unasked (an NE-1000 safe-mode alarm packet) are seen by every driver
  on the line: ``drain`` hands each driver what arrived since it last looked, and a driver
  that reads a frame addressed to another pump gives it back with ``post``.
- Modbus drivers share ``line.modbus_link()`` and pass their device id with each request.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.errors import DeviceDisconnected
from drivers.transport import Ambiguous, FrameEnd, SerialTransport, ToCome, Transport

if TYPE_CHECKING:  # the Modbus link is imported only when a Modbus driver asks for it
    from drivers.pumps.modbus_link import ModbusLink


class LineError(ValueError):
    """A line used in a way it cannot be (two protocol families, one address twice)."""


class LineSpec(BaseModel):
    """One physical line: a serial port, or a TCP serial server / Modbus TCP gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["serial", "tcp"]
    #: serial: the device (``/dev/ttyUSB0``, a pty, any pyserial URL); tcp: ``HOST:PORT``
    port: str = Field(min_length=1)
    baud: int = Field(default=19200, gt=0, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @model_validator(mode="after")
    def _port_fits_kind(self) -> LineSpec:
        if self.kind == "tcp":
            host, sep, number = self.port.rpartition(":")
            if not sep or not host or not number.isdigit() or not 1 <= int(number) <= 65535:
                raise ValueError(
                    f"port: a tcp line needs HOST:PORT (port 1-65535), got {self.port!r}"
                )
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        """For a tcp line: the host and the port number."""
        if self.kind != "tcp":
            raise LineError(f"line {self.port!r} is a serial line, it has no host")
        host, _, number = self.port.rpartition(":")
        return host.strip("[]"), int(number)

    @property
    def url(self) -> str:
        """What pyserial opens: the device, or ``socket://HOST:PORT``."""
        return self.port if self.kind == "serial" else f"socket://{self.port}"


#: after a reply timeout the line is drained until it has been quiet this long (a late
#: reply must not be taken for the next one's); a restart's bound on an NE-1000's safe-mode
#: timeout counts it (``safety.host.config.ne1000_safe_mode_floor_s``)
DIRTY_QUIET_S = 0.5


class SharedLine:
    """One port, one lock, any number of drivers (see the module docstring)."""

    def __init__(
        self,
        spec: LineSpec,
        *,
        transport: Transport | None = None,
        dirty_quiet_s: float = DIRTY_QUIET_S,
    ) -> None:
        self.spec = spec
        self._lock = threading.RLock()
        self._given_transport = transport
        self._dirty_quiet_s = dirty_quiet_s
        self._transport: Transport | None = transport
        self._protocol: str | None = None
        self._addresses: dict[int, object] = {}
        self._taps: list[LineTransport] = []
        self._attached = 0
        self._generation = 0
        self._modbus: ModbusLink | None = None

    # ------------------------------------------------------------------ reading
    @property
    def lock(self) -> AbstractContextManager[Any]:
        return self._lock

    @property
    def name(self) -> str:
        return self.spec.port

    @property
    def protocol(self) -> str | None:
        return self._protocol

    @property
    def addresses(self) -> frozenset[int]:
        return frozenset(self._addresses)

    @property
    def generation(self) -> int:
        """How many times the port was opened: a driver whose handshake is older redoes it."""
        return self._generation

    # ------------------------------------------------------------------ drivers
    def claim(self, protocol: str, address: int, owner: object) -> None:
        """Register ``owner`` (a driver) of ``protocol`` at ``address``; refuse a mixed line
        or an address another driver holds. Claiming again what one holds is harmless."""
        with self._lock:
            if self._protocol is not None and self._protocol != protocol:
                raise LineError(
                    f"line {self.name}: carries {self._protocol} pumps, cannot also carry a "
                    f"{protocol} pump"
                )
            holder = self._addresses.get(address)
            if holder is not None and holder is not owner:
                raise LineError(
                    f"line {self.name}: address {address} is already used by another "
                    f"{protocol} driver on this line"
                )
            self._protocol = protocol
            self._addresses[address] = owner

    def release(self, address: int, owner: object) -> None:
        """``owner`` closed: its address is free for another driver."""
        with self._lock:
            if self._addresses.get(address) is owner:
                del self._addresses[address]
            if not self._addresses:
                self._protocol = None

    def transport_for(self, name: str) -> LineTransport:
        """A ``Transport`` for one driver on this line (``name`` only words errors)."""
        with self._lock:
            tap = LineTransport(self, name)
            self._taps.append(tap)
            return tap

    def modbus_link(self, timeout_s: float) -> ModbusLink:
        """The line's one Modbus link (RTU on a serial line, MBAP on a tcp line)."""
        from drivers.pumps.modbus_link import RtuLink, TcpLink  # noqa: PLC0415

        with self._lock:
            if self._modbus is None:
                spec = self.spec
                if spec.kind == "tcp":
                    host, port = spec.host_port
                    self._modbus = TcpLink(host, port, 0, timeout_s)
                else:
                    self._modbus = RtuLink(
                        spec.port,
                        baud=spec.baud,
                        parity=spec.parity,
                        stop_bits=spec.stop_bits,
                        unit=0,
                        timeout_s=timeout_s,
                    )
            return self._modbus

    def attach_modbus(self) -> None:
        """A Modbus driver connects: open the link unless another driver already did. The
        driver counts as attached even when the link cannot be opened now: the link is
        wanted, and a later call opens it (``ModbusLink.reopen``)."""
        with self._lock:
            if self._modbus is None:
                raise LineError(f"line {self.name}: call modbus_link() first")
            self._attached += 1
            if not self._modbus.is_open:
                self._modbus.open()
                self._generation += 1

    def detach_modbus(self) -> None:
        """A Modbus driver closes: the link closes with the last one."""
        with self._lock:
            self._attached = max(0, self._attached - 1)
            if self._attached == 0 and self._modbus is not None:
                self._modbus.close()

    # ------------------------------------------------------------------ port
    def _port(self) -> Transport:
        if self._transport is None:
            spec = self.spec
            self._transport = SerialTransport(
                spec.url,
                baudrate=spec.baud,
                bytesize=spec.bytesize,
                parity=spec.parity,
                stopbits=spec.stop_bits,
                dirty_quiet_s=self._dirty_quiet_s,
            )
        return self._transport

    def _attach(self) -> None:
        """One more driver on the port, counted even when the port cannot be opened now
        (missing at start): it is wanted, and a later call opens it (``_ensure_open``)."""
        with self._lock:
            self._attached += 1
            self._ensure_open(deliberate=True)

    def _detach(self) -> None:
        with self._lock:
            self._attached = max(0, self._attached - 1)
            if self._attached == 0 and self._transport is not None:
                self._transport.close()

    def _ensure_open(self, *, deliberate: bool = False) -> None:
        """The port open: waited on to the end of the attempt when a driver connects
        (``deliberate``), else bounded and paced (``Transport.ensure_open``)."""
        with self._lock:
            port = self._port()
            if port.is_open:
                return
            if deliberate:
                port.open()
            else:
                port.ensure_open()
            self._generation += 1

    def _drain_into_taps(self) -> None:
        with self._lock:
            data = self._port().drain()
            if data:
                for tap in self._taps:
                    tap.inbox += data

    def _post(self, data: bytes, sender: LineTransport) -> None:
        with self._lock:
            for tap in self._taps:
                if tap is not sender:
                    tap.inbox += data

    def __repr__(self) -> str:
        return f"SharedLine({self.spec.kind} {self.name}, {self._protocol or 'unclaimed'})"


class LineTransport:
    """One driver's ``Transport`` on a ``SharedLine``: the line's lock and port, with this
    driver's own view of when the port was (re)opened and of unsolicited bytes."""

    def __init__(self, line: SharedLine, name: str) -> None:
        self.line = line
        self.name = name
        self.inbox = bytearray()
        self._attached = False
        self._seen_generation = 0

    @property
    def lock(self) -> AbstractContextManager[Any]:
        return self.line.lock

    @property
    def is_open(self) -> bool:
        return self._attached and self.line._port().is_open

    def open(self) -> None:
        with self.line.lock:
            if not self._attached:
                self._attached = True  # wanted, even if the port cannot be opened now
                self.line._attach()
            else:
                self.line._ensure_open(deliberate=True)
            self._seen_generation = self.line.generation
            self.inbox.clear()

    def close(self) -> None:
        with self.line.lock:
            if self._attached:
                self._attached = False
                self.line._detach()
            self.inbox.clear()

    def ensure_open(self) -> bool:
        with self.line.lock:
            if not self._attached:
                raise DeviceDisconnected(f"{self.name}: not connected; call connect() first")
            self.line._ensure_open()
            if self._seen_generation != self.line.generation:
                self._seen_generation = self.line.generation
                self.inbox.clear()
                return True
            return False

    def exchange(
        self,
        request: bytes,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        with self.line.lock:
            self._require()
            return self.line._port().exchange(
                request,
                frame_end=frame_end,
                timeout_s=timeout_s,
                settle_s=settle_s,
                ambiguous=ambiguous,
                to_come=to_come,
            )

    def read_frame(
        self,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        with self.line.lock:
            self._require()
            return self.line._port().read_frame(
                frame_end=frame_end,
                timeout_s=timeout_s,
                settle_s=settle_s,
                ambiguous=ambiguous,
                to_come=to_come,
            )

    def drain(self) -> bytes:
        """What arrived unasked since this driver last looked (every driver sees it all)."""
        with self.line.lock:
            self._require()
            self.line._drain_into_taps()
            data = bytes(self.inbox)
            self.inbox.clear()
            return data

    def post(self, data: bytes) -> None:
        """Give bytes this driver read but that belong to another pump to the others."""
        self.line._post(data, self)

    def _require(self) -> None:
        if not self._attached:
            raise DeviceDisconnected(f"{self.name}: not connected; call connect() first")


def open_line(
    spec: LineSpec | Mapping[str, object], *, transport: Transport | None = None
) -> SharedLine:
    """A ``SharedLine`` for ``spec`` (a ``LineSpec`` or its fields as a mapping).

    Nothing is opened yet: the first driver's ``connect`` opens the port. ``transport``
    stands in for the port (tests: ``drivers.testing.ScriptedTransport``).
    """
    checked = spec if isinstance(spec, LineSpec) else LineSpec.model_validate(dict(spec))
    return SharedLine(checked, transport=transport)


def open_lines(specs: Mapping[str, LineSpec | Mapping[str, object]]) -> dict[str, SharedLine]:
    """One ``SharedLine`` per named line of a config (``[lines.NAME]``)."""
    return {name: open_line(spec) for name, spec in specs.items()}


__all__ = ["LineError", "LineSpec", "LineTransport", "SharedLine", "open_line", "open_lines"]
