"""The pump side of the NE-1000 protocol, serving the one simulated pump.

A ``WireHandler``: the serial line feeds it bytes and it answers the way an NE-1000 does
(facts in ``firmware_bridge.ne1000.codec``), so that a host written from the New Era
manual, not from our driver, works against it.

Behaviour worth knowing, with its source:

- Addresses 0-99; the pump answers only commands carrying its own address (NE-1000
  manual, ``*ADR``: "the pump will only respond to commands with the set address"). A
  command without an address counts as address 0.
- Safe mode (``SAF n``, n = 1-255 s; ``SAF0`` back to basic): CRC-checked packets; a packet
  that fails its length, ETX or CRC check is answered ``?COM``; a gap over 0.5 s between
  bytes discards a partial packet; basic commands are ignored; if no valid packet for this
  pump arrives within n seconds of the liveness clock the pump raises the comms-timeout
  alarm and stops (``SimulatedPump.raise_comms_timeout``). New alarms are sent unasked as auto-alarm
  packets; an auto-alarm does not acknowledge the alarm (manual: "An alarm message sent
  automatically in the Safe Mode will not clear the alarm condition").
- Alarms must be acknowledged before data changes (manual: "the alarm status being sent in
  response to any valid RS-232 command" acknowledges it). So while an unacknowledged alarm
  exists, the next command addressed to the pump is answered with the alarm reply and is
  NOT executed; the command after it is executed normally.
- Units cannot change while pumping (``RAT`` with another unit while running -> ``?NA``).
- Volume units follow the diameter (<= 14.00 mm uL, above mL) until ``VOL UL|ML`` sets them.

- A safe-mode packet is recognised in basic mode too (an STX first, where a basic command
  never has one): the manual's way back to basic mode is the packet ``SAF0``, which a host
  that does not know the pump's mode sends regardless, and public clients written against
  real pumps send every ``SAF`` as a packet.
- The reply to ``SAF n`` comes in the framing of the mode it switches to: ``SAF0`` is
  answered in basic framing, ``SAF n`` (n > 0) in safe framing, whichever framing the
  command came in (what those clients expect from real pumps). The new mode applies from
  the next command on.

Our choices where the manual is silent or the pump has no equivalent:

- Any other valid packet that arrives in basic mode is executed and answered in safe
  framing (it passed its CRC); the pump stays in basic mode.
- Several pumps on one line (``firmware_bridge.emulators.bus``): each hears every
  request and only the addressed one answers. A damaged packet is answered ``?COM`` by
  the pump whose address its (unchecked) data starts with; when that cannot be read,
  only a pump alone on its line answers (on a chain nobody knows it was meant for them).
- The NE-1000 has no occlusion or syringe-empty sensor code of its own. An occlusion that
  builds pressure until the motor can no longer push, an empty syringe (plunger at the end
  of travel) and a motor stall all reach the host as ``A?S`` (motor stalled): that is what
  the real mechanism would report. ``A?R`` is the power-cycle reset, ``A?T`` the safe-mode
  comms timeout. When several alarms are pending they are reported one per reply in the
  order R, T, S.
- Commands of the real set that this model does not implement (programs, I/O, buzzer...)
  answer ``?NA``; unknown commands answer ``?``. A malformed number answers ``?OOR`` when
  it is made of digits and points, ``?`` otherwise.
- Numbers in replies always carry their decimal point (``6000.``): public clients written
  against real pumps parse every reply number as digits, a point and digits.
- A volume beyond the 4-digit field (over 9999 in the current unit) is reported as 9999.
- ``PUR`` runs at the syringe's maximum rate with status ``X`` and restores the previous
  rate when it stops.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from decimal import Decimal

from firmware_bridge.emulators.syringe_match import syringe_for_bore
from firmware_bridge.ne1000.codec import (
    KNOWN_COMMANDS_2,
    KNOWN_COMMANDS_3,
    ML_H_PER_RATE_UNIT,
    ML_PER_VOLUME_UNIT,
    Ne1000Alarm,
    Ne1000CodecError,
    Ne1000Command,
    Ne1000Error,
    Ne1000Reply,
    Ne1000Status,
    RateChoice,
    RateUnit,
    VolumeUnit,
    decode_safe_packet,
    display_number,
    encode_basic_reply,
    encode_reply,
    encode_safe_packet,
    floor_to_field,
    parse_command,
    parse_number,
    rate_in_unit,
    safe_packet_end,
    to_decimal,
)
from firmware_bridge.pump_model import (
    Direction,
    NotApplicable,
    PumpAlarm,
    PumpSnapshot,
    RateOutOfRange,
    SimulatedPump,
)

STX = 0x02
CR = 0x0D
#: firmware string answered to VER (manual: "NE<model>V<n>.<n>")
FIRMWARE = "NE1000V3.928"
#: a gap longer than this between bytes discards a partial safe-mode packet (manual)
SAFE_MODE_BYTE_GAP_S = 0.5
#: NE-1000 diameter range (mm) accepted by DIA
DIAMETER_RANGE_MM = (Decimal("0.1"), Decimal("50.0"))
#: at and below this diameter (mm) volumes are in uL (manual, DIA)
UL_DIAMETER_LIMIT_MM = 14.0
MAX_BASIC_LINE = 256

#: how each physical alarm of the model reaches the host (see module docstring)
ALARM_CODES: dict[PumpAlarm, Ne1000Alarm] = {
    PumpAlarm.RESET: Ne1000Alarm.RESET,
    PumpAlarm.COMMS_TIMEOUT: Ne1000Alarm.COMMS_TIMEOUT,
    PumpAlarm.STALL: Ne1000Alarm.STALL,
    PumpAlarm.OCCLUSION: Ne1000Alarm.STALL,
    PumpAlarm.EMPTY: Ne1000Alarm.STALL,
}
ALARM_PRIORITY: tuple[Ne1000Alarm, ...] = (
    Ne1000Alarm.RESET,
    Ne1000Alarm.COMMS_TIMEOUT,
    Ne1000Alarm.STALL,
)

_NUMERIC = re.compile(r"^[0-9.]+$")
_RAT_ARG = re.compile(r"^([0-9.]*)(UM|MM|UH|MH)?$")


class Ne1000Framer:
    """Cuts the byte stream into requests as every NE-1000 on the line reads it: a packet
    when an STX comes first (its length byte says where it ends; a gap over 0.5 s inside it
    discards it), a basic command line up to CR otherwise."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._last_byte_at: float | None = None
        self.discarded_partials = 0

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes, now: float) -> None:
        if (
            self._buffer[:1] == bytes([STX])
            and self._last_byte_at is not None
            and now - self._last_byte_at > SAFE_MODE_BYTE_GAP_S
        ):
            self._buffer.clear()
            self.discarded_partials += 1
        self._buffer += data
        self._last_byte_at = now

    def next_request(self) -> bytes | None:
        buffer = self._buffer
        stx = buffer.find(STX)
        cr = buffer.find(CR)
        if stx >= 0 and (cr < 0 or stx < cr):
            del buffer[:stx]  # noise before a packet
            end = safe_packet_end(bytes(buffer))
        else:
            end = None if cr < 0 else cr + 1
            if end is None and len(buffer) > MAX_BASIC_LINE:
                buffer.clear()
        if end is None:
            return None
        request = bytes(buffer[:end])
        del buffer[:end]
        return request

    def reset(self) -> None:
        self._buffer.clear()
        self._last_byte_at = None


class Ne1000PumpSide:
    """An NE-1000 answering on one line at one address, driving ``pump``."""

    protocol = "ne1000"

    def __init__(self, pump: SimulatedPump, *, address: int = 0, firmware: str = FIRMWARE) -> None:
        if not (0 <= address <= 99):
            raise ValueError(f"NE-1000 address must be 0-99, got {address}")
        self._pump = pump
        self.address = address
        self._firmware = firmware
        self._safe_timeout_s = 0
        self._framer = Ne1000Framer()
        #: False once the pump shares its line with others (``emulators.bus``)
        self.alone_on_line = True
        self._unit = RateUnit.ML_PER_H
        self._rate: RateChoice | None = None
        self._volume_unit: VolumeUnit | None = None
        self._target = Decimal(0)
        self._infused_offset_ml = 0.0
        self._withdrawn_offset_ml = 0.0
        self._acknowledged: set[Ne1000Alarm] = set()
        self._auto_sent: set[Ne1000Alarm] = set()
        self._last_valid_at: float | None = None
        self._watchdog_fired = False
        self._purging = False
        self._rate_before_purge: float | None = None
        self.invalid_packets = 0

    # ------------------------------------------------------------------ WireHandler
    @property
    def safe_mode(self) -> bool:
        return self._safe_timeout_s > 0

    @property
    def discarded_partials(self) -> int:
        return self._framer.discarded_partials

    def feed(self, data: bytes, now: float) -> None:
        self._framer.feed(data, now)

    def next_request(self) -> bytes | None:
        return self._framer.next_request()

    def handle(self, request: bytes, now: float) -> bytes | None:
        arrived_safe = request[:1] == bytes([STX])
        if arrived_safe:
            try:
                data = decode_safe_packet(request)
            except Ne1000CodecError:
                return self._invalid_packet(request)
        elif self.safe_mode:
            return None  # basic commands are ignored in safe mode
        else:
            data = request.rstrip(b"\r")
        command = parse_command(data)
        if command.effective_address != self.address:
            return None
        if arrived_safe and self.safe_mode:
            self._last_valid_at = now
            self._watchdog_fired = False
        if self._pump.consume_ignored_command():
            return None
        reply, after = self._execute(command, now)
        safe_reply = arrived_safe
        if command.name == "SAF" and command.argument.isdigit() and reply.error is None:
            safe_reply = int(command.argument) > 0  # framed as the mode it switches to
        frame = encode_safe_packet(encode_reply(reply)) if safe_reply else encode_basic_reply(reply)
        if after is not None:
            after()
        return frame

    def _invalid_packet(self, request: bytes) -> bytes | None:
        """``?COM`` for a damaged packet, from the pump it was (probably) meant for."""
        data = request[2:-3]
        digits = bytes(b for b in data[:2] if 0x30 <= b <= 0x39)
        meant = int(digits) if digits and data[: len(digits)] == digits else None
        if meant is None and not self.alone_on_line:
            return None
        if meant is not None and meant != self.address:
            return None
        self.invalid_packets += 1
        reply = Ne1000Reply(
            self.address, self._status(self._pump.snapshot()), error=Ne1000Error.INVALID_PACKET
        )
        return encode_safe_packet(encode_reply(reply))

    def poll(self, now: float) -> bytes | None:
        if not self.safe_mode:
            return None
        if (
            not self._watchdog_fired
            and self._last_valid_at is not None
            and now - self._last_valid_at > self._safe_timeout_s
        ):
            self._watchdog_fired = True
            self._pump.raise_comms_timeout()
        if self._framer.pending:
            return None  # never talk over a request that is arriving
        codes = self._alarm_codes(self._pump.snapshot())
        self._auto_sent &= codes
        for code in ALARM_PRIORITY:
            if code in codes and code not in self._auto_sent and code not in self._acknowledged:
                self._auto_sent.add(code)
                return encode_safe_packet(encode_reply(Ne1000Reply(self.address, alarm=code)))
        return None

    def reset_link(self) -> None:
        self._framer.reset()

    def describe(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "address": self.address,
            "mode": "safe" if self.safe_mode else "basic",
            "safe_timeout_s": self._safe_timeout_s,
            "rate_unit": self._unit.value,
            "volume_unit": self._volume_units(self._pump.snapshot()).value,
            "watchdog_fired": self._watchdog_fired,
            "acknowledged_alarms": sorted(a.value for a in self._acknowledged),
            "discarded_partials": self.discarded_partials,
            "invalid_packets": self.invalid_packets,
        }

    # ------------------------------------------------------------------ execution
    def _execute(
        self, command: Ne1000Command, now: float
    ) -> tuple[Ne1000Reply, Callable[[], None] | None]:
        snap = self._settle_purge(self._pump.snapshot())
        codes = self._alarm_codes(snap)
        self._acknowledged &= codes
        pending = [c for c in ALARM_PRIORITY if c in codes and c not in self._acknowledged]
        if pending:
            self._acknowledged.add(pending[0])
            return Ne1000Reply(self.address, alarm=pending[0]), None

        name, arg = command.name, command.argument
        if name == "SAF":
            return self._saf(arg, snap, now)
        handlers: dict[str, Callable[[str, PumpSnapshot], Ne1000Reply]] = {
            "": self._status_query,
            "VER": self._ver,
            "DIA": self._dia,
            "RAT": self._rat,
            "VOL": self._vol,
            "DIR": self._dir,
            "RUN": self._run,
            "STP": self._stp,
            "PUR": self._pur,
            "DIS": self._dis,
            "CLD": self._cld,
        }
        handler = handlers.get(name)
        if handler is not None:
            return handler(arg, snap), None
        if name in KNOWN_COMMANDS_3 or name in KNOWN_COMMANDS_2:
            return self._error(Ne1000Error.NOT_APPLICABLE), None
        return self._error(Ne1000Error.UNKNOWN_COMMAND), None

    def _status_query(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if arg:
            return self._error(Ne1000Error.UNKNOWN_COMMAND)
        return self._ok()

    def _ver(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if arg:
            return self._error(Ne1000Error.NOT_APPLICABLE)
        return self._ok(self._firmware)

    def _dia(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if not arg:
            return self._ok(display_number(to_decimal(snap.syringe.inner_diameter_mm)))
        value = self._number(arg)
        if isinstance(value, Ne1000Reply):
            return value
        low, high = DIAMETER_RANGE_MM
        if not (low <= value <= high):
            return self._error(Ne1000Error.OUT_OF_RANGE)
        try:
            self._pump.set_syringe(syringe_for_bore(float(value), snap.syringe))
        except NotApplicable:
            return self._error(Ne1000Error.NOT_APPLICABLE)
        self._volume_unit = None
        self._rate = None
        return self._ok()

    def _rat(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if not arg:
            return self._ok(self._rate_text(snap))
        m = _RAT_ARG.match(arg)
        if m is None or not m.group(1):
            return self._error(Ne1000Error.UNKNOWN_COMMAND)
        value = self._number(m.group(1))
        if isinstance(value, Ne1000Reply):
            return value
        unit = RateUnit(m.group(2)) if m.group(2) else self._unit
        if unit is not self._unit and snap.running:
            return self._error(Ne1000Error.NOT_APPLICABLE)
        try:
            self._pump.set_rate(float(value * ML_H_PER_RATE_UNIT[unit]))
        except RateOutOfRange:
            return self._error(Ne1000Error.OUT_OF_RANGE)
        self._unit = unit
        self._rate = RateChoice(value, unit)
        return self._ok()

    def _vol(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        units = self._volume_units(snap)
        if not arg:
            return self._ok(f"{display_number(self._target)}{units.value}")
        if arg in ("UL", "ML"):
            self._volume_unit = VolumeUnit(arg)
            return self._ok()
        value = self._number(arg)
        if isinstance(value, Ne1000Reply):
            return value
        try:
            self._pump.set_target_volume(float(value * ML_PER_VOLUME_UNIT[units]) or None)
        except RateOutOfRange:
            return self._error(Ne1000Error.OUT_OF_RANGE)
        self._target = value
        return self._ok()

    def _dir(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if not arg:
            return self._ok("INF" if snap.direction is Direction.INFUSE else "WDR")
        if arg == "INF":
            direction = Direction.INFUSE
        elif arg == "WDR":
            direction = Direction.WITHDRAW
        elif arg == "REV":
            direction = (
                Direction.WITHDRAW if snap.direction is Direction.INFUSE else Direction.INFUSE
            )
        elif arg == "STK":
            return self._error(Ne1000Error.NOT_APPLICABLE)
        else:
            return self._error(Ne1000Error.UNKNOWN_COMMAND)
        self._pump.set_direction(direction)
        return self._ok()

    def _run(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if snap.running:
            return self._ok()
        try:
            self._pump.start()
        except NotApplicable:
            return self._refusal_or_alarm()
        return self._ok()

    def _stp(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        self._pump.stop()
        self._settle_purge(self._pump.snapshot())
        return self._ok()

    def _pur(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if snap.running:
            return self._error(Ne1000Error.NOT_APPLICABLE)
        previous = snap.set_rate_ml_h
        try:
            self._pump.set_rate(snap.syringe.max_rate_ml_h)
            self._pump.start()
        except NotApplicable:
            if previous > 0:
                self._pump.set_rate(previous)
            return self._refusal_or_alarm()
        self._purging = True
        self._rate_before_purge = previous
        return self._ok()

    def _dis(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if arg:
            return self._error(Ne1000Error.NOT_APPLICABLE)
        units = self._volume_units(snap)
        per = float(ML_PER_VOLUME_UNIT[units])
        infused = _field_or_max(max(0.0, snap.infused_ml - self._infused_offset_ml) / per)
        withdrawn = _field_or_max(max(0.0, snap.withdrawn_ml - self._withdrawn_offset_ml) / per)
        return self._ok(f"I{display_number(infused)}W{display_number(withdrawn)}{units.value}")

    def _cld(self, arg: str, snap: PumpSnapshot) -> Ne1000Reply:
        if arg == "INF":
            self._infused_offset_ml = snap.infused_ml
        elif arg == "WDR":
            self._withdrawn_offset_ml = snap.withdrawn_ml
        else:
            return self._error(Ne1000Error.UNKNOWN_COMMAND)
        return self._ok()

    def _saf(
        self, arg: str, snap: PumpSnapshot, now: float
    ) -> tuple[Ne1000Reply, Callable[[], None] | None]:
        if not arg:
            return self._ok(str(self._safe_timeout_s)), None
        if not (arg.isascii() and arg.isdigit()):
            return self._error(Ne1000Error.UNKNOWN_COMMAND), None
        seconds = int(arg)
        if not (0 <= seconds <= 255):
            return self._error(Ne1000Error.OUT_OF_RANGE), None

        def switch() -> None:
            self._safe_timeout_s = seconds
            self._last_valid_at = now if seconds else None
            self._watchdog_fired = False
            self._auto_sent.clear()

        return self._ok(), switch

    # ------------------------------------------------------------------ helpers
    def _ok(self, data: str = "") -> Ne1000Reply:
        return Ne1000Reply(self.address, self._status(self._pump.snapshot()), data=data)

    def _error(self, error: Ne1000Error) -> Ne1000Reply:
        return Ne1000Reply(self.address, self._status(self._pump.snapshot()), error=error)

    def _refusal_or_alarm(self) -> Ne1000Reply:
        """A start the model refused: report the alarm it raised, else ``?NA``."""
        codes = self._alarm_codes(self._pump.snapshot())
        self._acknowledged &= codes
        for code in ALARM_PRIORITY:
            if code in codes and code not in self._acknowledged:
                self._acknowledged.add(code)
                return Ne1000Reply(self.address, alarm=code)
        return self._error(Ne1000Error.NOT_APPLICABLE)

    def _number(self, text: str) -> Decimal | Ne1000Reply:
        try:
            return parse_number(text)
        except Ne1000CodecError:
            kind = Ne1000Error.OUT_OF_RANGE if _NUMERIC.match(text) else Ne1000Error.UNKNOWN_COMMAND
            return self._error(kind)

    def _status(self, snap: PumpSnapshot) -> Ne1000Status:
        if not snap.running:
            return Ne1000Status.STOPPED
        if self._purging:
            return Ne1000Status.PURGING
        if snap.direction is Direction.WITHDRAW:
            return Ne1000Status.WITHDRAWING
        return Ne1000Status.INFUSING

    def _settle_purge(self, snap: PumpSnapshot) -> PumpSnapshot:
        """A purge that ended (stop, alarm, empty) gives the previous rate back."""
        if self._purging and not snap.running:
            self._purging = False
            if self._rate_before_purge:
                with contextlib.suppress(RateOutOfRange):
                    self._pump.set_rate(self._rate_before_purge)
            self._rate_before_purge = None
            return self._pump.snapshot()
        return snap

    def _rate_text(self, snap: PumpSnapshot) -> str:
        if self._rate is not None and float(self._rate.ml_h) == snap.set_rate_ml_h:
            return _rate_display(self._rate)
        # the model changed the rate on its own (syringe change, purge): report it in the
        # unit in use, rounded down like every figure the pump shows
        return _rate_display(rate_in_unit(snap.set_rate_ml_h, self._unit))

    def _volume_units(self, snap: PumpSnapshot) -> VolumeUnit:
        if self._volume_unit is not None:
            return self._volume_unit
        if snap.syringe.inner_diameter_mm <= UL_DIAMETER_LIMIT_MM:
            return VolumeUnit.UL
        return VolumeUnit.ML

    @staticmethod
    def _alarm_codes(snap: PumpSnapshot) -> set[Ne1000Alarm]:
        return {ALARM_CODES[a] for a in snap.alarms if a in ALARM_CODES}


def _rate_display(choice: RateChoice) -> str:
    return f"{display_number(choice.value)}{choice.unit.value}"


def _field_or_max(value: float) -> Decimal:
    d = to_decimal(value)
    return Decimal(9999) if d > 9999 else floor_to_field(d)
