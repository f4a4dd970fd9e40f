"""The simulated pump seen through a register map: what a Modbus read returns and what a
Modbus write does.

Kept free of pymodbus so the mapping from registers to physics is testable on its own
and the emulator module only deals with the wire. Exception codes follow the Modbus
Application Protocol v1.1b3, section 7:

- an address no point occupies, a write to a read-only point, or a write that covers
  only part of a 32-bit value -> 02 ILLEGAL DATA ADDRESS;
- a value the pump refuses (rate out of range for the syringe, a wrong command value,
  NaN) -> 03 ILLEGAL DATA VALUE;
- a command that cannot be carried out in the pump's current state (start with no rate,
  an empty syringe or a blocked line; change the syringe while pumping) ->
  04 SERVER DEVICE FAILURE. The specification describes 04 as an unrecoverable error
  while performing the action; it is the usual choice of devices that refuse a command
  for their state, and 06 BUSY would invite the master to retry, which we never want.

Read Device Identification (function 43, MEI type 14) answers from the map's
``[device]`` table: the three basic objects by stream (read device id code 01, from the
object asked, "more follows" when they do not fit one reply) or one at a time (04; an
object it does not have -> 02 ILLEGAL DATA ADDRESS). A basic device refuses the regular
and extended streams and any other code with 03 ILLEGAL DATA VALUE (a project choice),
and a map with ``identification = false`` refuses the function itself with 01 ILLEGAL
FUNCTION, as a device without it does.

The comms-timeout watchdog runs on the liveness clock (``time.monotonic``), never on the
clinical clock: it supervises the real link, whatever speed the simulation runs at.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from firmware_bridge.modbus.codec import (
    CodecError,
    Rounding,
    decode,
    encode,
    encode_bitfield,
)
from firmware_bridge.modbus.frames import (
    BASIC_CONFORMITY,
    DeviceIdCode,
    DeviceIdReply,
    DeviceIdRequest,
    ExceptionCode,
    device_id_stream,
)
from firmware_bridge.modbus.register_map import Flag, Point, RegisterMap, Role, Table
from firmware_bridge.pump_model import (
    NotApplicable,
    PumpAlarm,
    PumpSnapshot,
    RateOutOfRange,
    SimulatedPump,
)
from firmware_bridge.syringes import SYRINGES, Syringe, syringe_for_diameter

#: which model alarm each flag reports
_ALARM_FLAGS: dict[Flag, PumpAlarm] = {
    Flag.OCCLUSION: PumpAlarm.OCCLUSION,
    Flag.EMPTY: PumpAlarm.EMPTY,
    Flag.STALL: PumpAlarm.STALL,
    Flag.RESET: PumpAlarm.RESET,
    Flag.COMMS_TIMEOUT: PumpAlarm.COMMS_TIMEOUT,
    Flag.AIR_IN_LINE: PumpAlarm.AIR_IN_LINE,
    Flag.UPSTREAM_OCCLUSION: PumpAlarm.UPSTREAM_OCCLUSION,
    Flag.DOOR_OPEN: PumpAlarm.DOOR_OPEN,
}


def flag_state(flag: Flag, snap: PumpSnapshot) -> bool:
    if flag is Flag.RUNNING:
        return snap.running
    if flag is Flag.PRIMING:
        return snap.priming
    if flag is Flag.NEAR_EMPTY:
        return snap.near_empty
    if flag is Flag.OTHER_ALARM:
        return False
    return _ALARM_FLAGS[flag] in snap.alarms


def syringe_from_diameter(diameter_mm: float, current: Syringe) -> Syringe:
    """The catalogue syringe with this bore, else a custom one of the current volume.

    The register carries only a diameter; matching the catalogue keeps the rate range
    the one the host expects for a known syringe.
    """
    for s in SYRINGES.values():
        if abs(s.inner_diameter_mm - diameter_mm) < 0.005:
            return s
    return syringe_for_diameter(diameter_mm, volume_ml=min(current.volume_ml, 140.0))


def _unique(points: Sequence[Point]) -> list[Point]:
    """Each point once, first-seen order (points hold a dict, so they are not hashable)."""
    seen: set[int] = set()
    out: list[Point] = []
    for p in points:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


class PumpRegisters:
    """Register tables of one simulated pump, computed from its snapshot on every read."""

    def __init__(
        self,
        pump: SimulatedPump,
        regmap: RegisterMap,
        *,
        liveness: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pump = pump
        self.map = regmap
        self._liveness = liveness
        self._lock = threading.Lock()
        timeout_point = regmap.point(Role.COMMS_TIMEOUT)
        self._timeout_s = 0.0
        if timeout_point is not None and timeout_point.initial:
            self._timeout_s = regmap.from_units(timeout_point.initial, timeout_point.units)
        self._last_request = liveness()
        self._watchdog_fired = False
        self._tables = {t: regmap.points_in(t) for t in Table}
        #: the volume the next prime pushes out (mL; 0: none written since power-up)
        self._prime_volume_ml = 0.0

    # ----------------------------------------------------------------- watchdog
    @property
    def comms_timeout_s(self) -> float:
        """0 when off."""
        with self._lock:
            return self._timeout_s

    def note_request(self) -> None:
        """A valid request for this pump arrived (and was executed): feed the watchdog."""
        with self._lock:
            self._last_request = self._liveness()
            self._watchdog_fired = False

    def check_watchdog(self) -> bool:
        """Stop the pump if the master fell silent longer than the comms timeout.

        Fires once per silence, only while the pump runs: the watchdog guards motion,
        and a latched alarm on an idle pump would only be noise.
        """
        with self._lock:
            if not self._timeout_s or self._watchdog_fired:
                return False
            if self._liveness() - self._last_request < self._timeout_s:
                return False
            if not self.pump.snapshot().running:
                return False
            self._watchdog_fired = True
        self.pump.raise_comms_timeout()
        return True

    # ----------------------------------------------------------------- reads
    def identification(self, request: DeviceIdRequest) -> DeviceIdReply | ExceptionCode:
        """The answer to a Read Device Identification request (see the module docstring)."""
        objects = self.map.device.identification_objects()
        if objects is None:
            return ExceptionCode.ILLEGAL_FUNCTION
        if request.code == DeviceIdCode.BASIC:
            return device_id_stream(request.code, BASIC_CONFORMITY, objects, request.object_id)
        if request.code == DeviceIdCode.SPECIFIC:
            wanted = tuple(o for o in objects if o[0] == request.object_id)
            if not wanted:
                return ExceptionCode.ILLEGAL_DATA_ADDRESS
            return DeviceIdReply(request.code, BASIC_CONFORMITY, False, 0, wanted)
        return ExceptionCode.ILLEGAL_DATA_VALUE

    def read_bits(self, table: Table, address: int, count: int) -> list[bool] | ExceptionCode:
        points = self._cover(table, address, count)
        if isinstance(points, ExceptionCode):
            return points
        snap = self.pump.snapshot()
        return [self._bit_value(p, snap) for p in points]

    def read_registers(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        points = self._cover(table, address, count)
        if isinstance(points, ExceptionCode):
            return points
        snap = self.pump.snapshot()
        words: dict[int, int] = {}
        for p in _unique(points):  # each point once, in address order
            for i, w in enumerate(self._words(p, snap)):
                words[p.address + i] = w
        return [words[a] for a in range(address, address + count)]

    def _cover(self, table: Table, address: int, count: int) -> list[Point] | ExceptionCode:
        """The point at each address of [address, address+count), or 02 if one is empty."""
        if count < 1 or address + count - 1 > 0xFFFF:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        out: list[Point] = []
        points = self._tables[table]
        for a in range(address, address + count):
            p = next((p for p in points if p.address <= a < p.end), None)
            if p is None:
                return ExceptionCode.ILLEGAL_DATA_ADDRESS
            out.append(p)
        return out

    def _bit_value(self, p: Point, snap: PumpSnapshot) -> bool:
        if p.role is Role.RUN:
            return snap.running
        if p.bits:
            (flag,) = p.bits
            return flag_state(flag, snap)
        return False  # command coils read as 0

    def _words(self, p: Point, snap: PumpSnapshot) -> tuple[int, ...]:
        enc = p.encoding
        m = self.map

        def number(canonical: float, rounding: Rounding = Rounding.NEAREST) -> tuple[int, ...]:
            return encode(m.to_units(canonical, p.units), enc, rounding, saturate=True)

        role = p.role
        if role is Role.RUN:
            return (p.run_on if snap.running else p.run_off,)
        if role is Role.RATE_SETPOINT:
            return number(snap.set_rate_ml_h)
        if role is Role.RATE_ACTUAL:
            return number(snap.plunger_rate_ml_h)
        if role is Role.RATE_MIN:  # published range rounded inward: never promise more
            return number(snap.container.min_rate_ml_h, Rounding.UP)
        if role is Role.RATE_MAX:
            return number(snap.container.max_rate_ml_h, Rounding.DOWN)
        if role is Role.INFUSED_VOLUME:
            return number(snap.infused_ml)
        if role is Role.PRESSURE:
            return number(snap.pressure_mmhg)
        if role is Role.SYRINGE_DIAMETER:
            return number(snap.syringe.inner_diameter_mm)
        if role is Role.COMMS_TIMEOUT:
            return number(self.comms_timeout_s)
        if role is Role.PRIME_VOLUME:
            return number(self._prime_volume_ml)
        if role is Role.FIRMWARE_VERSION:
            return encode(m.device.firmware_version, enc, Rounding.NEAREST, saturate=True)
        if role in (Role.STATUS_BITS, Role.ALARM_BITS):
            return encode_bitfield(
                (bit for flag, bit in p.bits.items() if flag_state(flag, snap)), enc
            )
        return (0,) * p.word_count  # command registers read as 0

    # ----------------------------------------------------------------- writes
    def write_bits(
        self, table: Table, address: int, values: Sequence[bool]
    ) -> ExceptionCode | None:
        if table is not Table.COIL:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        points = self._cover(table, address, len(values))
        if isinstance(points, ExceptionCode):
            return points
        for p, value in zip(points, values, strict=True):
            if result := self._act_bit(p, bool(value)):
                return result
        return None

    def _act_bit(self, p: Point, value: bool) -> ExceptionCode | None:
        if p.role is Role.RUN:
            return self._run(value)
        if p.role is Role.CLEAR_COUNTERS:
            if value:
                self.pump.clear_volumes()
            return None
        if p.role is Role.ACKNOWLEDGE_ALARMS:
            if value:
                self.pump.clear_alarms()
            return None
        if p.role is Role.PRIME:
            return self._prime() if value else None
        return ExceptionCode.ILLEGAL_DATA_ADDRESS

    def write_registers(
        self, table: Table, address: int, values: Sequence[int]
    ) -> ExceptionCode | None:
        """Apply a register write; every touched point must be writable and whole.

        Values are checked for every point before any is applied, so a bad value in a
        multi-point write changes nothing; a state refusal (04) part-way through leaves
        the earlier points applied, as on a device that acts point by point.
        """
        if table is not Table.HOLDING:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        points = self._cover(table, address, len(values))
        if isinstance(points, ExceptionCode):
            return points
        plan: list[tuple[Point, tuple[int, ...]]] = []
        for p in _unique(points):
            if p.role.read_only or p.address < address or p.end > address + len(values):
                return ExceptionCode.ILLEGAL_DATA_ADDRESS
            words = tuple(values[p.address - address : p.end - address])
            if not all(0 <= w <= 0xFFFF for w in words):
                return ExceptionCode.ILLEGAL_DATA_VALUE
            plan.append((p, words))
        checked: list[tuple[Point, float]] = []
        for p, words in plan:
            value = self._check_value(p, words)
            if isinstance(value, ExceptionCode):
                return value
            checked.append((p, value))
        for p, value in checked:
            if result := self._act_register(p, value):
                return result
        return None

    def _check_value(self, p: Point, words: tuple[int, ...]) -> float | ExceptionCode:
        if p.role is Role.RUN:
            if words[0] not in (p.run_on, p.run_off):
                return ExceptionCode.ILLEGAL_DATA_VALUE
            return float(words[0] == p.run_on)
        if p.role in (Role.CLEAR_COUNTERS, Role.ACKNOWLEDGE_ALARMS, Role.PRIME):
            return 1.0 if words[0] == p.trigger_value else ExceptionCode.ILLEGAL_DATA_VALUE
        try:
            value = decode(words, p.encoding)
        except CodecError:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        if p.range is not None and not p.range[0] <= value <= p.range[1]:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        return value

    def _act_register(self, p: Point, value: float) -> ExceptionCode | None:
        role = p.role
        if role is Role.RUN:
            return self._run(value == 1.0)
        if role is Role.CLEAR_COUNTERS:
            self.pump.clear_volumes()
            return None
        if role is Role.ACKNOWLEDGE_ALARMS:
            self.pump.clear_alarms()
            return None
        if role is Role.PRIME:
            return self._prime()
        canonical = self.map.from_units(value, p.units)
        if role is Role.PRIME_VOLUME:
            if not 0.0 < canonical <= self.pump.container.volume_ml:
                return ExceptionCode.ILLEGAL_DATA_VALUE
            self._prime_volume_ml = canonical
            return None
        if role is Role.RATE_SETPOINT:
            try:
                self.pump.set_rate(canonical)
            except RateOutOfRange:
                return ExceptionCode.ILLEGAL_DATA_VALUE
            return None
        if role is Role.COMMS_TIMEOUT:
            with self._lock:
                self._timeout_s = canonical
                self._last_request = self._liveness()
                self._watchdog_fired = False
            return None
        if role is Role.SYRINGE_DIAMETER:
            try:
                syringe = syringe_from_diameter(canonical, self.pump.syringe)
            except ValueError:
                return ExceptionCode.ILLEGAL_DATA_VALUE
            try:
                self.pump.set_syringe(syringe)
            except NotApplicable:
                return ExceptionCode.SERVER_DEVICE_FAILURE
            return None
        return ExceptionCode.ILLEGAL_DATA_ADDRESS

    def _prime(self) -> ExceptionCode | None:
        """Push out the prime volume last written at the container's top rate. Refused
        (04) while the pump runs, before a volume was written, or while an alarm stops it."""
        if self._prime_volume_ml <= 0.0:
            return ExceptionCode.SERVER_DEVICE_FAILURE
        try:
            self.pump.prime(self._prime_volume_ml)
        except (NotApplicable, RateOutOfRange):
            return ExceptionCode.SERVER_DEVICE_FAILURE
        return None

    def _run(self, on: bool) -> ExceptionCode | None:
        if not on:
            self.pump.stop()
            return None
        if self.pump.snapshot().running:
            return None  # already running: writing "run" again changes nothing
        try:
            self.pump.start()
        except NotApplicable:
            return ExceptionCode.SERVER_DEVICE_FAILURE
        return None
