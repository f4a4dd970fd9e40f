"""``modbus``: any Modbus pump, over TCP or RTU, driven through a register map.

The map (``config/pumps/*.toml``, see ``firmware_bridge.modbus.register_map`` and
docs/protocols.md) says where the run command, the rate set-point, the infused volume
and the status and alarm bits live; this driver only knows the roles. Rules it keeps for
the safety kernel:

- every set is read back and the read-back value is what ``set_rate`` returns;
- a Modbus exception reply -> ``PumpRejected`` with the exception's name as reason
  (03 ILLEGAL DATA VALUE is how a pump says "out of range"); nothing is clamped;
- a write is never repeated: a lost or corrupted acknowledgement raises ``DeviceTimeout``
  or ``PumpChecksumError``, both meaning *outcome uncertain* (S10); a read is repeated
  at most once;
- a lost connection raises ``DeviceDisconnected`` and the next call reopens it (one
  attempt at a time, waited on for a bounded time and paced after a failure:
  ``ModbusLink.reopen``); so does a port that could not be opened at ``connect`` (a pump
  plugged in or switched on after the safety process started);
- ``keep_alive()`` reads the status so the pump's comms timeout (if the map has one and
  it is armed) does not stop the pump while the host is alive;
- at every opening of the port (connect, reconnect, a shared line reopened by another
  driver), and at the next call after ``PumpName.expect`` (a replacement accepted, even
  on a link that stayed up: ``PumpName.must_ask``), the device is asked who it is (Read
  Device Identification, function 43/14, basic objects) before anything else:
  "VendorName ProductCode MajorMinorRevision" is its name (``PumpName``, as the NE-1000
  and Harvard drivers keep theirs: the first heard, or the one the safety process
  recorded before a restart). Another name there raises ``AnotherPumpAnswers`` (from
  ``connect`` too, as the other drivers) on every call, and nothing but the question is
  sent until the channel's device answers again. A device without identification
  (exception 01, 02 or 03) has no name and connects as ever, with nothing to compare;
  once a name is known, a device that gives none is another device;
- ``comms_timeout_s`` is written to the device (and read back) once per opening, after
  the name, by ``connect``, ``read_status``, ``keep_alive``, ``start`` and ``prime``,
  each of which tries again while it has not succeeded on the current opening and raises
  its failure (the safety process alarms on it as on any failed read). Never by
  ``stop``: a stop on a fresh opening is the name question, then the stop itself. Nor by
  a rate change: it makes no pump run (``start`` arms first), and on a running pump it
  may be the kernel lowering the rate, which arming must not hold up.

Framing and I/O are ours (``drivers.pumps.modbus_link`` over ``firmware_bridge.modbus.frames``)
rather than pymodbus' client, so each failure maps to one typed error; the emulator on
the other end is pymodbus, which keeps both ends honest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from drivers.errors import DeviceDisconnected, DeviceTimeout, DriverError
from drivers.lines import SharedLine
from drivers.pumps.base import (
    AnotherPumpAnswers,
    PumpAlarmError,
    PumpAlarmKind,
    PumpChecksumError,
    PumpDriver,
    PumpIdentity,
    PumpName,
    PumpRejected,
    PumpStatus,
    RateRange,
    StopConfirmation,
)
from drivers.pumps.modbus_link import ModbusLink, RtuLink, TcpLink
from drivers.serial_options import serial_device
from firmware_bridge.modbus.codec import (
    CodecError,
    Rounding,
    decode,
    decode_bitfield,
    encode,
)
from firmware_bridge.modbus.frames import (
    BasicObject,
    BitsReply,
    DeviceIdCode,
    DeviceIdReply,
    ExceptionCode,
    ExceptionReply,
    FrameError,
    FunctionCode,
    RegistersReply,
    Reply,
    WriteReply,
    device_id_request,
    parse_reply,
    read_request,
    write_coil_request,
    write_register_request,
    write_registers_request,
)
from firmware_bridge.modbus.register_map import (
    Flag,
    Point,
    RegisterMap,
    Role,
    Table,
    load_register_map,
    resolve_map_path,
)
from firmware_bridge.syringes import Container, Syringe

_READ_FC = {
    Table.COIL: FunctionCode.READ_COILS,
    Table.DISCRETE_INPUT: FunctionCode.READ_DISCRETE_INPUTS,
    Table.HOLDING: FunctionCode.READ_HOLDING_REGISTERS,
    Table.INPUT: FunctionCode.READ_INPUT_REGISTERS,
}
_MAX_SPAN = {Table.COIL: 2000, Table.DISCRETE_INPUT: 2000, Table.HOLDING: 125, Table.INPUT: 125}
_ALARM_KINDS: dict[Flag, PumpAlarmKind] = {
    Flag.OCCLUSION: PumpAlarmKind.OCCLUSION,
    Flag.EMPTY: PumpAlarmKind.EMPTY,
    Flag.NEAR_EMPTY: PumpAlarmKind.NEAR_EMPTY,
    Flag.STALL: PumpAlarmKind.STALL,
    Flag.RESET: PumpAlarmKind.RESET,
    Flag.COMMS_TIMEOUT: PumpAlarmKind.COMMS_TIMEOUT,
    Flag.AIR_IN_LINE: PumpAlarmKind.AIR_IN_LINE,
    Flag.UPSTREAM_OCCLUSION: PumpAlarmKind.UPSTREAM_OCCLUSION,
    Flag.DOOR_OPEN: PumpAlarmKind.DOOR_OPEN,
    Flag.OTHER_ALARM: PumpAlarmKind.OTHER,
}
_EXCEPTION_MEANING = {
    ExceptionCode.ILLEGAL_FUNCTION: "the pump does not support this function",
    ExceptionCode.ILLEGAL_DATA_ADDRESS: "no such register, or it cannot be written",
    ExceptionCode.ILLEGAL_DATA_VALUE: "value refused (out of range)",
    ExceptionCode.SERVER_DEVICE_FAILURE: "the pump cannot do this in its current state",
    ExceptionCode.SERVER_DEVICE_BUSY: "the pump is busy",
    ExceptionCode.GATEWAY_TARGET_NO_RESPONSE: "the gateway got no answer from that unit id",
}

#: the exceptions by which a device says it has no identification to give (01: not the
#: function; 02, 03: not that object or code): it has no name, and connects as ever
_NO_IDENTIFICATION = frozenset(
    {
        ExceptionCode.ILLEGAL_FUNCTION,
        ExceptionCode.ILLEGAL_DATA_ADDRESS,
        ExceptionCode.ILLEGAL_DATA_VALUE,
    }
)

_BASIC_IDS = frozenset(int(o) for o in BasicObject)

PointValue = tuple[int, ...] | bool


class ModbusDriver(PumpDriver):
    """A Modbus pump (TCP: ``host``/``port``; RTU: ``serial_port``; or one device id on a
    shared ``line``: ``drivers.lines``)."""

    name = "modbus"

    def __init__(
        self,
        *,
        map_path: str | None = None,
        host: str | None = None,
        port: int = 502,
        serial_port: str | None = None,
        baud: int | None = None,
        parity: str | None = None,
        stop_bits: int | None = None,
        device_id: int | None = None,
        timeout_s: float = 1.0,
        comms_timeout_s: float | None = None,
        line: SharedLine | None = None,
    ) -> None:
        """``map_path``: a TOML map, or "syringe"/"peristaltic" for the examples (default
        "syringe"). ``baud``, ``parity``, ``stop_bits``, ``device_id`` default to the
        map's ``[link]``. ``comms_timeout_s``: written to the pump's comms-timeout
        register once per opening of the port, on connect and then by the first periodic
        call, ``start`` or ``prime`` (never ``stop``) that finds it not written on the
        current opening (0 turns it off; None leaves the pump's setting). ``line``: a
        shared RTU line or TCP gateway (``drivers.lines.SharedLine``) instead of a port of
        its own; its settings are the line's, so host, serial_port, baud, parity and
        stop_bits are not given then, and ``device_id`` is required."""
        if line is not None:
            given = [
                n
                for n, v in (
                    ("host", host),
                    ("serial_port", serial_port),
                    ("baud", baud),
                    ("parity", parity),
                    ("stop_bits", stop_bits),
                )
                if v is not None
            ]
            if given:
                raise ValueError(
                    f"modbus: option(s) {', '.join(given)} belong to the line "
                    f"({line.name}); leave them out when line= is given"
                )
            if device_id is None:
                raise ValueError("modbus: device_id (1-247) is required on a shared line")
        elif (host is None) == (serial_port is None):
            raise ValueError(
                "ModbusDriver needs exactly one of host= (TCP), serial_port= (RTU) or line="
            )
        if not (math.isfinite(timeout_s) and 0.01 <= timeout_s <= 60):
            raise ValueError(f"timeout_s must be 0.01-60 s, got {timeout_s}")
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be 1-65535, got {port}")
        self.map: RegisterMap = load_register_map(resolve_map_path(map_path))
        link = self.map.link
        self.device_id = link.device_id if device_id is None else device_id
        if not 1 <= self.device_id <= 247:
            raise ValueError(f"device_id must be 1-247, got {self.device_id}")
        parity = (link.parity if parity is None else parity).upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be N, E or O, got {parity!r}")
        stop_bits = link.stop_bits if stop_bits is None else stop_bits
        if stop_bits not in (1, 2):
            raise ValueError(f"stop_bits must be 1 or 2, got {stop_bits}")
        baud = link.baud if baud is None else baud
        if baud <= 0:
            raise ValueError(f"baud must be positive, got {baud}")
        if comms_timeout_s is not None:
            self._check_comms_timeout(comms_timeout_s)
        self.comms_timeout_s = comms_timeout_s
        self.timeout_s = timeout_s
        self._line = line
        self.serial_port = serial_device(serial_port, line)
        self._link: ModbusLink
        if line is not None:
            line.claim("modbus", self.device_id, self)
            self._link = line.modbus_link(timeout_s)
        elif host is not None:
            self._link = TcpLink(host, port, self.device_id, timeout_s)
        else:
            assert serial_port is not None
            self._link = RtuLink(
                serial_port,
                baud=baud,
                parity=parity,
                stop_bits=stop_bits,
                unit=self.device_id,
                timeout_s=timeout_s,
            )
        self._lock: AbstractContextManager[Any] = threading.RLock() if line is None else line.lock
        self._connected = False
        #: the device's identification at the first connection (or the one the safety
        #: process recorded before a restart), compared at every opening of the port
        self._name = PumpName("modbus")
        self.pump_name = self._name
        #: the link's ``opens`` when this device last named itself as the channel's (None:
        #: not asked on this opening, or another device answered: ask before anything else)
        self._named_on: int | None = None
        #: the link's ``opens`` when the pump's comms timeout was last written and read
        #: back (None: not on this opening, or not since the device last named itself): a
        #: device that was power-cycled forgets it, and a replacement never had it
        self._armed_on: int | None = None

    # ================================================================ interface
    def connect(self) -> None:
        """Open the port, ask the device its name (``_ask_name``), arm its comms timeout
        (``_arm``), then read its status. Another device raises ``AnotherPumpAnswers``, as
        the NE-1000 and Harvard drivers do: it gets nothing more, and every call says so
        until the channel's own answers there (the link stays open: each call asks
        again). Any other failure is raised too, and the driver stays wanted: the next
        call opens, asks and arms again, as after a lost connection (the safety process
        connects once at start and then reads; a pump off at that moment must come back
        when it is switched on)."""
        with self._lock:
            attach = self._line is not None and not self._connected
            if attach:
                self._line.claim("modbus", self.device_id, self)  # type: ignore[union-attr]
            self._connected = True  # wanted from now on, even if the port is not there yet
            self._named_on = self._armed_on = None
            try:
                if attach:
                    self._line.attach_modbus()  # type: ignore[union-attr]
                elif not self._link.is_open:
                    self._link.open()
                self._ask_name()
                self._name.refuse_foreign()
                self._arm()
                self._read_points([self._status_point()])
            except AnotherPumpAnswers:
                raise
            except DriverError:
                if self._line is None:
                    self._link.close()  # the next call reopens, asks and arms again
                raise

    def identify(self) -> PumpIdentity:
        with self._lock:
            firmware = "unknown"
            p = self.map.point(Role.FIRMWARE_VERSION)
            if p is not None:
                firmware = f"{self._number(p, self._read_points([p])[p.name]):g}"
            return PumpIdentity(self.map.device.model, firmware, self.device_id)

    def configure_syringe(self, syringe: Container) -> RateRange:
        """Write the bore where the map has one (peristaltic drives have none: the drive's
        own range applies, and a bag is what they hold) and return the rate range the
        pump then reports."""
        with self._lock:
            p = self.map.point(Role.SYRINGE_DIAMETER)
            if p is not None and not isinstance(syringe, Syringe):
                raise PumpRejected(
                    f"modbus: {self.map.device.model!r} is a syringe pump; it cannot hold "
                    f"{syringe.name}",
                    reason="not a syringe",
                )
            if p is not None and isinstance(syringe, Syringe):
                words = self._words_exact(p, syringe.inner_diameter_mm, "syringe diameter")
                self._write_words(p, words)
                back = self._read_points([p])[p.name]
                if back != words:
                    got = self._number(p, back)
                    raise PumpRejected(
                        f"pump reports a {got:g} mm syringe after {syringe.inner_diameter_mm:g} "
                        "mm was written",
                        reason="diameter read-back mismatch",
                    )
            return self._rate_range()

    def quantize_rate(self, rate_ml_h: float) -> float:
        try:
            return self.map.quantize_rate(rate_ml_h)
        except CodecError as exc:
            raise ValueError(f"rate {rate_ml_h} mL/h: {exc}") from None

    def set_rate(self, rate_ml_h: float) -> float:
        with self._lock:
            self.send_rate(rate_ml_h)
            p = self.map.require(Role.RATE_SETPOINT)
            return self._number(p, self._read_points([p])[p.name])

    def send_rate(self, rate_ml_h: float) -> None:
        with self._lock:
            p = self.map.require(Role.RATE_SETPOINT)
            if not (math.isfinite(rate_ml_h) and rate_ml_h >= 0):
                raise ValueError(f"rate must be a finite number >= 0 mL/h, got {rate_ml_h}")
            words = self._words_exact(p, rate_ml_h, "rate")
            self._write_words(p, words)

    def start(self) -> None:
        """The pump's comms timeout armed first on this opening (``_arm``: a pump is never
        started with its watchdog off; a failure is raised and nothing is started), then
        the run register or coil written on and the running state read."""
        with self._lock:
            self._arm()
            try:
                self._write_run(True)
            except PumpRejected as exc:
                try:
                    alarms = self._alarms_now()
                except DriverError:
                    raise exc from None  # the refusal is the news; the alarm read failed
                if alarms:
                    raise PumpAlarmError(
                        f"start refused, pump alarms: {_names(alarms)}", alarms
                    ) from None
                raise exc from None
            if not self._running_now():
                alarms = self._alarms_now()
                if alarms:
                    raise PumpAlarmError(f"pump stopped at once, alarms: {_names(alarms)}", alarms)
                raise PumpRejected("pump reports it is not running after start", "not running")

    def stop(self) -> StopConfirmation | None:
        """The run register or coil written off, then the run state read. A write's reply
        only echoes the request (the register was written, not the motor stopped), and
        the read is an exchange of its own: no confirmation, the caller reads back.

        Never held up by arming (S12): on a fresh opening the device is asked its name
        (another device gets nothing), and the stop is the next thing sent; the comms
        timeout is written by the next ``read_status`` or ``keep_alive``."""
        with self._lock:
            self._write_run(False)
            if self._running_now():
                raise PumpRejected("pump reports it is still running after stop", "still running")
        return None

    def read_status(self) -> PumpStatus:
        """The pump's comms timeout armed first while it is not on this opening
        (``_arm``: its failure is raised, every call tries again), then the status."""
        with self._lock:
            self._arm()
            m = self.map
            rate_p = m.require(Role.RATE_SETPOINT)
            vol_p = m.require(Role.INFUSED_VOLUME)
            pressure_p = m.point(Role.PRESSURE)
            wanted = [rate_p, vol_p, *m.flag_points()]
            if Flag.RUNNING not in m.flags():
                wanted.append(m.require(Role.RUN))
            if pressure_p is not None:
                wanted.append(pressure_p)
            values = self._read_points(wanted)
            flags = self._flags(values)
            running = (
                flags[Flag.RUNNING]
                if Flag.RUNNING in flags
                else self._run_state(values[m.require(Role.RUN).name])
            )
            alarms = frozenset(
                _ALARM_KINDS[f] for f, on in flags.items() if on and f in _ALARM_KINDS
            )
            return PumpStatus(
                running=running,
                set_rate_ml_h=self._number(rate_p, values[rate_p.name]),
                infused_ml=self._number(vol_p, values[vol_p.name]),
                alarms=alarms,
                pressure_mmhg=(
                    None
                    if pressure_p is None
                    else self._number(pressure_p, values[pressure_p.name])
                ),
                raw=_raw_text(values),
                priming=flags.get(Flag.PRIMING, False) and running,
            )

    def prime(self, volume_ml: float) -> float:
        """The map's ``prime_volume`` written (rounded down in its units: never more than
        asked) and read back, then its ``prime`` trigger; the pump must then report its
        ``priming`` status bit (a map with a prime has one). The rate set-point is not
        touched: the pump primes at its top rate and stops by itself. A map without a
        prime: ``PumpRejected`` (prime not supported), as the base driver."""
        trigger, volume_p = self.map.point(Role.PRIME), self.map.point(Role.PRIME_VOLUME)
        if trigger is None or volume_p is None:
            return super().prime(volume_ml)
        if not (isinstance(volume_ml, int | float) and math.isfinite(volume_ml) and volume_ml > 0):
            raise ValueError(f"volume_ml must be a finite number of mL above 0, got {volume_ml!r}")
        with self._lock:
            self._arm()  # a prime runs the pump: never with its watchdog off
            if self._running_now():
                raise PumpRejected("modbus: cannot prime while pumping", reason="running")
            try:
                units = self.map.to_units(volume_ml, volume_p.units)
                words = encode(units, volume_p.encoding, Rounding.DOWN)
            except CodecError as exc:
                raise ValueError(f"prime volume {volume_ml!r} mL: {exc}") from None
            if self._number(volume_p, words) <= 0:
                raise ValueError(
                    f"prime volume {volume_ml!r} mL is below what register {volume_p.name} holds"
                )
            self._write_words(volume_p, words)
            back = self._read_points([volume_p])[volume_p.name]
            if back != words:
                raise PumpRejected(
                    f"pump reports a prime volume of {self._number(volume_p, back):g} mL after "
                    f"{volume_ml:g} mL was written",
                    reason="prime volume read-back mismatch",
                )
            self._trigger(trigger)
            status = self.read_status()
            if not status.priming:
                if status.alarms:
                    raise PumpAlarmError(
                        f"prime refused, pump alarms: {_names(status.alarms)}", status.alarms
                    )
                raise PumpRejected(
                    "modbus: prime triggered but the pump reports it is not priming",
                    reason="did not prime",
                )
            return self._number(volume_p, back)

    def keep_alive(self) -> None:
        """A status read; the comms timeout armed first while it is not on this opening
        (``_arm``: its failure is raised, every call tries again)."""
        with self._lock:
            self._arm()
            self._read_points([self._status_point()])

    def close(self) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            if self._line is None:
                self._link.close()
            elif was_connected:
                self._line.detach_modbus()
                self._line.release(self.device_id, self)

    # ================================================================ extras
    def clear_volume(self) -> None:
        """Infused volume back to 0 (maps with a clear_counters point)."""
        with self._lock:
            self._trigger(self.map.require(Role.CLEAR_COUNTERS))

    def acknowledge_alarms(self) -> None:
        """Clear latched alarms whose cause is gone (maps with an acknowledge point)."""
        with self._lock:
            self._trigger(self.map.require(Role.ACKNOWLEDGE_ALARMS))

    def read_comms_timeout(self) -> float:
        """The pump's comms timeout in seconds (0: off)."""
        with self._lock:
            p = self.map.require(Role.COMMS_TIMEOUT)
            return self._number(p, self._read_points([p])[p.name])

    def set_comms_timeout(self, seconds: float) -> float:
        """Arm (or with 0 disarm) the pump's comms timeout; returns the read-back."""
        with self._lock:
            self._check_comms_timeout(seconds)
            return self._write_comms_timeout(seconds)

    # ================================================================ internals
    def _status_point(self) -> Point:
        flag_points = self.map.flag_points()
        return flag_points[0] if flag_points else self.map.require(Role.RUN)

    def _check_comms_timeout(self, seconds: float) -> None:
        p = self.map.point(Role.COMMS_TIMEOUT)
        if p is None:
            raise ValueError(f"map {self.map.device.model!r} has no comms_timeout register")
        if p.range is not None:
            lo = self.map.from_units(p.range[0], p.units)
            hi = self.map.from_units(p.range[1], p.units)
            if not lo <= seconds <= hi:
                raise ValueError(f"comms timeout must be {lo:g}-{hi:g} s, got {seconds}")

    def _write_comms_timeout(self, seconds: float) -> float:
        p = self.map.require(Role.COMMS_TIMEOUT)
        words = self._words_exact(p, seconds, "comms timeout")
        self._write_words(p, words)
        back = self._read_points([p])[p.name]
        if back != words:
            raise PumpRejected(
                f"pump reports comms timeout {self._number(p, back):g} s after {seconds:g} s "
                "was written",
                reason="comms timeout read-back mismatch",
            )
        return self._number(p, back)

    def _words_exact(self, p: Point, canonical: float, what: str) -> tuple[int, ...]:
        try:
            return encode(self.map.to_units(canonical, p.units), p.encoding, Rounding.EXACT)
        except CodecError as exc:
            hint = ""
            if p.role is Role.RATE_SETPOINT:
                try:
                    hint = f"; quantize_rate() gives {self.map.quantize_rate(canonical)!r} mL/h"
                except CodecError:
                    hint = ""
            raise ValueError(
                f"{what} {canonical!r} is not a value register {p.name} holds exactly ({exc}){hint}"
            ) from None

    def _number(self, p: Point, value: PointValue) -> float:
        if isinstance(value, bool):
            return float(value)
        try:
            return self.map.from_units(decode(value, p.encoding), p.units)
        except CodecError as exc:
            raise PumpChecksumError(f"register {p.name} carries no valid value: {exc}") from None

    def _run_state(self, value: PointValue) -> bool:
        if isinstance(value, bool):
            return value
        return value[0] == self.map.require(Role.RUN).run_on

    def _flags(self, values: dict[str, PointValue]) -> dict[Flag, bool]:
        out: dict[Flag, bool] = {}
        for p in self.map.flag_points():
            if p.name not in values:
                continue
            v = values[p.name]
            if isinstance(v, bool):
                ((flag, _bit),) = p.bits.items()
                out[flag] = v
                continue
            try:
                set_bits = decode_bitfield(v, p.encoding)
            except CodecError as exc:
                raise PumpChecksumError(f"register {p.name}: {exc}") from None
            for flag, bit in p.bits.items():
                out[flag] = bit in set_bits
        return out

    def _alarms_now(self) -> frozenset[PumpAlarmKind]:
        values = self._read_points(self.map.flag_points())
        return frozenset(
            _ALARM_KINDS[f] for f, on in self._flags(values).items() if on and f in _ALARM_KINDS
        )

    def _running_now(self) -> bool:
        flag_point = next((p for p in self.map.flag_points() if Flag.RUNNING in p.bits), None)
        if flag_point is not None:
            return self._flags(self._read_points([flag_point]))[Flag.RUNNING]
        run = self.map.require(Role.RUN)
        return self._run_state(self._read_points([run])[run.name])

    def _rate_range(self) -> RateRange:
        lo_p, hi_p = self.map.point(Role.RATE_MIN), self.map.point(Role.RATE_MAX)
        if lo_p is not None and hi_p is not None:
            values = self._read_points([lo_p, hi_p])
            return RateRange(
                self._number(lo_p, values[lo_p.name]), self._number(hi_p, values[hi_p.name])
            )
        limits = self.map.device.rate_limits_ml_h
        assert limits is not None  # the map validator guarantees one or the other
        return RateRange(*limits)

    def _trigger(self, p: Point) -> None:
        if p.table is Table.COIL:
            self._write(p, write_coil_request(p.address, True))
        else:
            assert p.trigger_value is not None
            self._write(p, write_register_request(p.address, p.trigger_value))

    def _write_run(self, on: bool) -> None:
        p = self.map.require(Role.RUN)
        if p.table is Table.COIL:
            self._write(p, write_coil_request(p.address, on))
        else:
            self._write(p, write_register_request(p.address, p.run_on if on else p.run_off))

    def _write_words(self, p: Point, words: Sequence[int]) -> None:
        if len(words) == 1:
            self._write(p, write_register_request(p.address, words[0]))
        else:
            self._write(p, write_registers_request(p.address, list(words)))

    def _write(self, p: Point, pdu: bytes) -> None:
        """One write, never repeated: its acknowledgement failing leaves the outcome open."""
        reply = self._transact(pdu)
        if isinstance(reply, ExceptionReply):
            raise _rejected(f"write to {p.name}", reply)
        if not isinstance(reply, WriteReply):
            raise PumpChecksumError(f"write to {p.name}: unexpected reply {reply!r}")

    def _read_points(self, points: Sequence[Point]) -> dict[str, PointValue]:
        """Read the points with as few requests as contiguous addresses allow."""
        out: dict[str, PointValue] = {}
        for table, start, count, members in _spans(points):
            reply = self._read(table, start, count, members)
            for p in members:
                if isinstance(reply, BitsReply):
                    out[p.name] = reply.bits[p.address - start]
                elif isinstance(reply, RegistersReply):
                    out[p.name] = reply.words[p.address - start : p.end - start]
        return out

    def _read(self, table: Table, start: int, count: int, members: list[Point]) -> Reply:
        pdu = read_request(_READ_FC[table], start, count)
        try:
            reply = self._transact(pdu)
        except (DeviceTimeout, PumpChecksumError):
            reply = self._transact(pdu)  # a read may be repeated, once
        if isinstance(reply, ExceptionReply):
            names = ", ".join(p.name for p in members)
            raise _rejected(f"read of {names}", reply)
        return reply

    def _arm(self) -> None:
        """The pump's comms timeout (``comms_timeout_s``) written and read back, unless it
        was on the current opening since the device last named itself; marked only once
        read back, so a failure leaves it to the next call on the same opening (connect,
        ``read_status``, ``keep_alive``, ``start``, ``prime``), which raises it again if it
        fails again. The name is asked first, as before any exchange (``_transact``).
        Never called by ``stop``: arming must not hold up a stop."""
        if self.comms_timeout_s is None:
            return
        # named first: a reopen now, or a device asked anew, is not armed yet
        self._ensure_named()
        if self._armed_on == self._link.opens:
            return
        self._write_comms_timeout(self.comms_timeout_s)
        # the read-back, on the opening the link has now, shows the device holds it
        self._armed_on = self._link.opens

    def _ask_name(self) -> None:
        """Ask the device who it is (``_identification``) and compare (``PumpName``). A
        device asked anew is armed anew (``_arm``): after an accepted replacement it may
        be another device, which never had this comms timeout."""
        self._named_on = None
        self._armed_on = None
        where = f"at device id {self.device_id} on {self._link.where}"
        name, refusal = self._identification()
        if name is not None:
            self._name.heard(name, where)
        elif self._name.first is not None:
            # the channel's device named itself; one that cannot is another device
            self._name.heard(f"(no device identification: {refusal})", where)
        else:
            self._name.heard_no_name()  # nothing to compare, as ever
        if self._name.foreign is None:
            self._named_on = self._link.opens  # the opening the answer came on

    def _identification(self) -> tuple[str | None, str]:
        """The basic identification objects, "VendorName ProductCode MajorMinorRevision",
        read as one stream (asked again from the next object while "more follows", at
        most once per basic object: a device that never ends is refused, not followed);
        None, with the refusal, from a device without identification. A request is
        repeated once when its reply is lost or garbled, as any read."""
        objects: dict[int, bytes] = {}
        first = 0
        for _ in BasicObject:
            pdu = device_id_request(DeviceIdCode.BASIC, first)
            try:
                reply = self._transact(pdu, naming=True)
            except (DeviceTimeout, PumpChecksumError):
                reply = self._transact(pdu, naming=True)
            if isinstance(reply, ExceptionReply):
                if not objects and reply.code in _NO_IDENTIFICATION:
                    return None, reply.describe()
                raise _rejected("device identification", reply)
            if not isinstance(reply, DeviceIdReply):
                raise PumpChecksumError(f"device identification: unexpected reply {reply!r}")
            for object_id, value in reply.objects:
                if object_id in objects:
                    raise PumpChecksumError(
                        f"device identification: object {object_id:#04x} given twice"
                    )
                objects[object_id] = value
            if not reply.more_follows:
                break
            first = reply.next_object_id
            if first in objects or first not in _BASIC_IDS:
                raise PumpChecksumError(
                    f"device identification: more follows from object {first:#04x}, "
                    "which is no basic object still to come"
                )
        else:
            raise PumpChecksumError(
                f"device identification: still more to follow after {len(BasicObject)} replies"
            )
        parts = [
            objects[o].decode("ascii", "backslashreplace") for o in BasicObject if o in objects
        ]
        name = " ".join(parts)
        return (name, "") if name.strip() else (None, "no identification objects")

    def _transact(self, pdu: bytes, *, naming: bool = False) -> Reply:
        """One exchange; on a port (re)opened since the device last named itself, while
        another device answers, or after ``PumpName.expect`` (``must_ask``), the name is
        asked first (``naming``: this is that question) and another device gets nothing
        else. Nothing else is done first: arming is ``_arm``'s, never a stop's."""
        if naming:
            self._ensure_open()
        else:
            self._ensure_named()
        raw = self._link.transact(pdu, self.device_id, self.timeout_s)
        try:
            return parse_reply(pdu, raw)
        except FrameError as exc:
            raise PumpChecksumError(f"malformed reply {raw.hex(' ')}: {exc}") from None

    def _ensure_named(self) -> None:
        """The port open, and the device asked its name when the port was (re)opened since
        it last named itself as the channel's, while another device answers, or after
        ``PumpName.expect`` (``must_ask``); another device is refused
        (``AnotherPumpAnswers``)."""
        self._ensure_open()
        if self._named_on != self._link.opens or self._name.must_ask:
            self._ask_name()
        self._name.refuse_foreign()

    def _ensure_open(self) -> None:
        """This driver connected and not closed since (on a shared line the link may be
        open for another device's driver: that makes no call of this one's go out), and
        its port open: reopened if it was lost."""
        if not self._connected:
            raise DeviceDisconnected("not connected: call connect() first")
        if not self._link.is_open:
            self._link.reopen()  # its errors name the port and why


def _rejected(what: str, reply: ExceptionReply) -> PumpRejected:
    try:
        meaning = _EXCEPTION_MEANING.get(ExceptionCode(reply.code), "")
    except ValueError:
        meaning = ""
    reason = reply.describe() + (f": {meaning}" if meaning else "")
    return PumpRejected(f"{what} refused by the pump: {reason}", reason)


def _names(alarms: frozenset[PumpAlarmKind]) -> str:
    return ", ".join(sorted(a.value for a in alarms))


def _raw_text(values: dict[str, PointValue]) -> str:
    parts = []
    for name, v in values.items():
        parts.append(f"{name}={int(v)}" if isinstance(v, bool) else f"{name}={list(v)}")
    return " ".join(parts)


def _spans(points: Sequence[Point]) -> list[tuple[Table, int, int, list[Point]]]:
    """Group points into runs of contiguous addresses per table (gaps may be illegal)."""
    spans: list[tuple[Table, int, int, list[Point]]] = []
    for table in Table:
        mine = sorted((p for p in points if p.table is table), key=lambda p: p.address)
        seen: set[str] = set()
        for p in mine:
            if p.name in seen:
                continue
            seen.add(p.name)
            if spans and spans[-1][0] is table:
                t, start, count, members = spans[-1]
                end = start + count
                if p.address <= end and max(end, p.end) - start <= _MAX_SPAN[table]:
                    spans[-1] = (t, start, max(end, p.end) - start, [*members, p])
                    continue
            spans.append((table, p.address, p.word_count, [p]))
    return spans
