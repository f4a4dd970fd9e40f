"""Host driver for New Era NE-1000 family pumps (RS-232), basic and safe mode.

Protocol facts are in ``firmware_bridge.ne1000.codec`` (for people: docs/protocols.md). How
this driver uses them:

Connecting. A pump may ignore the first command after power-up, and may still be in safe
mode from an earlier session (safe mode survives power cycles). ``connect`` therefore
sends a throw-away status query, twice in the framing of the mode the driver is configured
for, then twice in the other; whichever mode answers is the pump's. (The configured mode
first: a pump set to safe mode stays in it through a power cycle and through our own
restart, and drops basic-mode bytes.) The pump then names itself (``VER``): the name is
kept at the first connection (or preset by the safety process from its journal, across
its restarts: ``PumpName.expect``) and compared after every reconnect, before anything is
set; another pump answering there raises ``AnotherPumpAnswers`` on every call until this
channel's pump is back, and a handshake cut short (the name unanswered, say) is done
again at the next call before anything else is sent. An ``expect`` while the link is up
(a replacement accepted) makes the next call shake hands again too. The link is then brought to the
configured mode (``SAF n`` or ``SAF0``) and that setting read back.

Sets and read-back. Every value set is read back with a query and the read-back value is
what the driver returns. A set is sent exactly once: a lost reply raises ``DeviceTimeout``
(outcome uncertain, the caller reconciles with ``read_status``), a corrupted one
``PumpChecksumError``; neither is retried. Pure queries are retried at most once. For RUN and
STP the status character in the pump's reply is the read-back; a reply to STP showing
``S`` (stopped) is returned as the pump's own confirmation (``StopConfirmation``), which
the emergency stop counts before any read-back.

Refusals. ``?OOR`` -> ``PumpRejected(reason="out of range (?OOR)")``, ``?NA`` -> not
applicable now, ``?`` -> unknown command; values are never clamped. ``?COM`` (the pump
received a corrupted packet) raises ``PumpChecksumError``.

Alarms. An alarm reply (``A?R``, ``A?S``, ``A?T``...) means the command was not executed;
for a set it raises ``PumpAlarmError``. Every alarm seen, including safe-mode auto-alarm
packets that arrive unasked, is kept until the next ``read_status``, which reports it in
``PumpStatus.alarms`` (the pump forgets an alarm once it has been answered, so the driver
must remember it). The NE-1000 reports occlusion, empty syringe and motor stall alike as
``A?S``: the driver reports ``STALL``, never guesses which.

Rate quantization (``quantize_rate``). The pump holds a rate in 4 digits in one of four
units (UM, MM, UH, MH), and a unit cannot change while the pump runs. So:
- while the driver knows the pump to be running, the only unit is the one in use, and the
  rate is the largest figure in that unit at or below the request (if the request is
  beyond that unit's 9999, the result is 9999 of it: stop to change units);
- otherwise the unit is chosen by ``firmware_bridge.ne1000.codec.choose_rate`` (mL/h when
  that loses at most 0.1 %, else the closest), rounded down.
``set_rate`` accepts only rates that ``quantize_rate`` leaves unchanged (its own output
always is: the choice is idempotent); anything else is a ``ValueError``, never silently
rounded.

The reply to ``SAF``. A pump may answer ``SAF n`` in the framing of the mode it switches
to (``SAF0`` in basic framing, ``SAF n`` in safe framing; public clients written against
real pumps expect exactly that) or in the framing the command came in (what this
project's emulator did before). The driver accepts either for ``SAF`` and only for it:
every other reply must come in the link's framing, or it is a ``PumpChecksumError`` (a
basic reply on a safe link would bypass the CRC). Every reply is cut with a framing
detector that recognises both (``any_reply_end``), so a reply in an unexpected framing
is reported at once instead of waiting out the deadline for a length byte that lies.

Shared line. ``line=`` (a ``drivers.lines.SharedLine``) puts the driver at ``address`` on
a line that other NE-1000s share (one RS-232 chain); the line's port, baud and lock are
used instead of a port of its own. Every command carries the address and every reply's
address is checked, so a wrong pump answering is an error, never a value. A safe-mode
alarm packet from another pump that crosses our exchange is handed back to the line for
its own driver (``post``) and our reply is read after it.

Keep-alive. In safe mode the pump stops itself when no valid packet arrives within
``safe_mode_timeout_s``: the safety process must call ``keep_alive`` (a status query)
well within that time. The driver starts no thread of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from drivers.errors import DeviceTimeout, DriverError
from drivers.lines import SharedLine
from drivers.pumps.base import (
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
    refuse_bag,
)
from drivers.serial_options import check_serial_options, resolve_port, serial_device
from drivers.transport import FrameEnd, SerialTransport, Transport
from firmware_bridge.ne1000.codec import (
    RATE_UNIT_PREFERENCE,
    Ne1000Alarm,
    Ne1000CodecError,
    Ne1000Command,
    Ne1000Error,
    Ne1000Reply,
    Ne1000Status,
    RateUnit,
    any_reply_end,
    choose_rate,
    decode_any_reply,
    encode_basic_command,
    encode_command,
    encode_safe_packet,
    floor_to_field,
    format_number,
    parse_dispensed,
    parse_number,
    parse_rate,
    reply_bytes_to_come,
)
from firmware_bridge.syringes import Container, Syringe

BAUD_RATES = (300, 1200, 2400, 9600, 19200)
#: alarm packets of other pumps skipped before our reply, at most (one per pump and alarm)
MAX_CROSSING_PACKETS = 8
RUNNING = frozenset({Ne1000Status.INFUSING, Ne1000Status.WITHDRAWING, Ne1000Status.PURGING})
ALARM_KINDS: dict[Ne1000Alarm, PumpAlarmKind] = {
    Ne1000Alarm.RESET: PumpAlarmKind.RESET,
    Ne1000Alarm.STALL: PumpAlarmKind.STALL,
    Ne1000Alarm.COMMS_TIMEOUT: PumpAlarmKind.COMMS_TIMEOUT,
    Ne1000Alarm.PROGRAM_ERROR: PumpAlarmKind.PROGRAM_ERROR,
    Ne1000Alarm.PHASE_OUT_OF_RANGE: PumpAlarmKind.PROGRAM_ERROR,
}
ERROR_REASONS: dict[Ne1000Error, str] = {
    Ne1000Error.UNKNOWN_COMMAND: "unknown command (?)",
    Ne1000Error.NOT_APPLICABLE: "not applicable now (?NA)",
    Ne1000Error.OUT_OF_RANGE: "out of range (?OOR)",
    Ne1000Error.INVALID_PACKET: "invalid packet (?COM)",
    Ne1000Error.IGNORED: "ignored (?IGN)",
}


class Ne1000Driver(PumpDriver):
    """An NE-1000 family pump at one address, on a port of its own (``port``) or on a
    line shared with other NE-1000s (``line``)."""

    name = "ne1000"

    def __init__(
        self,
        *,
        port: str | None = None,
        address: int = 0,
        baud: int | None = None,
        safe_mode_timeout_s: int | None = None,
        reply_timeout_s: float = 0.5,
        settle_s: float = 0.05,
        transport: Transport | None = None,
        line: SharedLine | None = None,
    ) -> None:
        port, baud = resolve_port("ne1000", port=port, baud=baud, line=line, default_baud=19200)
        check_serial_options(
            "ne1000",
            address=address,
            baud=baud,
            baud_rates=BAUD_RATES,
            reply_timeout_s=reply_timeout_s,
            settle_s=settle_s,
        )
        if safe_mode_timeout_s is not None and not (1 <= safe_mode_timeout_s <= 255):
            raise ValueError(
                f"ne1000 safe_mode_timeout_s must be 1-255 s (or None for basic mode), "
                f"got {safe_mode_timeout_s}"
            )
        self.port = port
        self.address = address
        self.serial_port = serial_device(port, line)
        self.safe_mode_timeout_s = safe_mode_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._settle_s = settle_s
        self.line = line
        if line is not None:
            line.claim(self.name, address, self)
        self._transport: Transport = transport or (
            line.transport_for(f"ne1000 {address} on {line.name}")
            if line is not None
            else SerialTransport(port, baudrate=baud, dirty_quiet_s=reply_timeout_s)
        )
        self._safe = False
        self._unit: RateUnit | None = None
        self._running = False
        #: a prime left a volume to dispense on the pump (cleared before the next RUN)
        self._volume_target = False
        self._pending_alarms: set[PumpAlarmKind] = set()
        #: alarms announced by an auto-alarm packet and not yet answered by a reply: the
        #: pump sends one such packet per new alarm, so the next alarm reply with the same
        #: code is the answer to our request, not a second packet crossing it
        self._announced: set[Ne1000Alarm] = set()
        #: the pump's ``VER`` answer at the first connection (or the one the safety
        #: process recorded before a restart), compared at every reconnect
        self._name = PumpName("ne1000")
        self.pump_name = self._name
        #: the last handshake ran to its end (a fresh link, or one that failed half-way,
        #: is shaken hands with again before anything else is sent on it)
        self._linked = False
        #: the last handshake heard this channel's pump name itself (whatever failed after)
        self._named = False

    # ------------------------------------------------------------------ PumpDriver
    def connect(self) -> None:
        with self._transport.lock:
            if self.line is not None:
                self.line.claim(self.name, self.address, self)
            self._transport.open()
            self._handshake()

    def identify(self) -> PumpIdentity:
        with self._transport.lock:
            self._ensure_link()
            data = self._query(self._cmd("VER")).data
        model, sep, firmware = data.partition("V")
        if not sep:
            return PumpIdentity(model=data, firmware="", address=self.address)
        return PumpIdentity(model=model, firmware=firmware, address=self.address)

    def configure_syringe(self, syringe: Container) -> RateRange:
        """Set the bore, mL volume units, continuous pumping and infusion; read each back.

        The NE-1000 has no query for its rate limits: the range returned is the syringe's,
        and the pump stays the authority (``?OOR``) when a rate is set.
        """
        refuse_bag(self.name, syringe)
        assert isinstance(syringe, Syringe)
        diameter = floor_to_field(syringe.inner_diameter_mm)
        text = format_number(diameter)
        with self._transport.lock:
            self._ensure_link()
            self._command(self._cmd("DIA", text))
            self._check("DIA", "diameter", f"{text} mm", lambda b: _number_or_none(b) == diameter)
            self._command(self._cmd("VOL", "ML"))
            self._command(self._cmd("VOL", "0"))
            self._check("VOL", "volume", "0 mL", _no_volume_to_dispense)
            self._command(self._cmd("DIR", "INF"))
            self._check("DIR", "direction", "INF", lambda b: b == "INF")
            self._read_rate()
        return RateRange(min_ml_h=syringe.min_rate_ml_h, max_ml_h=syringe.max_rate_ml_h)

    def quantize_rate(self, rate_ml_h: float) -> float:
        _check_rate(rate_ml_h)
        return float(choose_rate(rate_ml_h, self._allowed_units()).ml_h)

    def set_rate(self, rate_ml_h: float) -> float:
        with self._transport.lock:
            self.send_rate(rate_ml_h)
            return self._read_rate()

    def send_rate(self, rate_ml_h: float) -> None:
        _check_rate(rate_ml_h)
        units = self._allowed_units()
        choice = choose_rate(rate_ml_h, units)
        if float(choice.ml_h) != rate_ml_h:
            raise ValueError(
                f"rate {rate_ml_h} mL/h is not a rate this NE-1000 runs as sent "
                f"(units allowed now: {', '.join(u.value for u in units)}); "
                f"quantize_rate gives {float(choice.ml_h)} mL/h"
            )
        with self._transport.lock:
            self._ensure_link()
            self._command(self._cmd("RAT", choice.text))

    def prime(self, volume_ml: float) -> float:
        """``VOL`` (mL) set and read back, then ``PUR``: the pump purges at the syringe's top
        rate and stops when the volume is out (status ``X`` meanwhile). The volume to
        dispense is set back to 0 (continuous) before the next ``RUN``."""
        if not (isinstance(volume_ml, int | float) and math.isfinite(volume_ml) and volume_ml > 0):
            raise ValueError(f"volume_ml must be a finite number of mL above 0, got {volume_ml!r}")
        volume = floor_to_field(min(volume_ml, 9999))
        if volume <= 0:
            raise ValueError(f"volume_ml {volume_ml!r} is below what the pump's field holds")
        text = format_number(volume)
        with self._transport.lock:
            self._ensure_link()
            if self._running:
                raise PumpRejected("ne1000: cannot prime while pumping", reason="running")
            self._command(self._cmd("VOL", "ML"))
            self._command(self._cmd("VOL", text))
            self._volume_target = True
            self._check("VOL", "volume", f"{text} mL", lambda b: _volume_is(b, volume))
            reply = self._command(self._cmd("PUR"))
            self._running = reply.status in RUNNING
            if reply.status is not Ne1000Status.PURGING:
                raise PumpRejected(
                    f"ne1000: PUR acknowledged but the pump reports status {reply.status}",
                    reason=f"did not prime (status {reply.status})",
                )
        return float(volume)

    def start(self) -> None:
        with self._transport.lock:
            self._ensure_link()
            if self._volume_target:  # left by a prime: pump continuously again
                self._command(self._cmd("VOL", "0"))
                self._check("VOL", "volume", "0 mL", _no_volume_to_dispense)
                self._volume_target = False
            reply = self._command(self._cmd("RUN"))
            self._running = reply.status in RUNNING
            if not self._running:
                raise PumpRejected(
                    f"ne1000: RUN acknowledged but the pump reports status {reply.status}",
                    reason=f"did not start (status {reply.status})",
                )

    def stop(self) -> StopConfirmation | None:
        """``STP``; the status character in its reply is the read-back. ``S`` (stopped) is
        returned as the pump's confirmation; ``P``, ``T`` and ``U`` (paused, a pause phase,
        a trigger wait: not pumping now, but a pause phase ends by itself) are not."""
        with self._transport.lock:
            either = False
            try:
                self._ensure_link()
            except DriverError:
                if not self._named:
                    raise  # no pump named itself as this channel's here: nothing is sent
                # the channel's own pump answered and named itself; what failed is the rest
                # of the handshake (its safe-mode setting, the rate read): the stop goes
                # out all the same (S12), in whichever framing the pump answers
                either = True
            reply = self._command(self._cmd("STP"), either_framing=either)
            self._running = reply.status in RUNNING
            if self._running:
                raise PumpRejected(
                    f"ne1000: STP acknowledged but the pump reports status {reply.status}",
                    reason=f"still running (status {reply.status})",
                )
            if reply.status is Ne1000Status.STOPPED:
                return StopConfirmation(f"{reply.address:02d}{reply.status.value}")
            return None

    def read_status(self) -> PumpStatus:
        with self._transport.lock:
            self._ensure_link()
            rate_reply = self._query(self._cmd("RAT"))
            rate = self._rate_from(rate_reply)
            dis_reply = self._query(self._cmd("DIS"))
            try:
                dispensed = parse_dispensed(dis_reply.data)
            except Ne1000CodecError as exc:
                raise PumpChecksumError(f"ne1000: unreadable DIS reply: {exc}") from None
            self._running = dis_reply.status in RUNNING
            alarms = frozenset(self._pending_alarms)
            self._pending_alarms.clear()
            return PumpStatus(
                priming=dis_reply.status is Ne1000Status.PURGING,
                running=self._running,
                set_rate_ml_h=rate,
                infused_ml=float(dispensed.infused_ml),
                alarms=alarms,
                pressure_mmhg=None,
                raw=f"{rate_reply.text} {dis_reply.text}",
            )

    def keep_alive(self) -> None:
        """One status query (never retried: the next call is the retry)."""
        with self._transport.lock:
            self._ensure_link()
            reply = self._transact(self._cmd(""))
            if reply.alarm is not None:
                raise PumpAlarmError(
                    f"ne1000: pump reports alarm A?{reply.alarm.value}",
                    frozenset({ALARM_KINDS[reply.alarm]}),
                )
            if reply.status is not None:
                self._running = reply.status in RUNNING

    def close(self) -> None:
        with self._transport.lock:
            self._transport.close()
            if self.line is not None:
                self.line.release(self.address, self)

    # ------------------------------------------------------------------ link
    @property
    def safe_mode(self) -> bool:
        """True while the link speaks safe-mode packets."""
        return self._safe

    def _handshake(self) -> None:
        self._linked = False
        self._named = False
        self._announced.clear()  # a new link (or a pump that restarted) announces afresh
        found = False
        garbled: PumpChecksumError | None = None
        # the mode it is most likely in first: a pump set to safe mode stays in it through
        # a power cycle and through our own restart, and drops basic-mode bytes, so a
        # safety process restarting over a running pump would otherwise spend two reply
        # deadlines of the pump's safe-mode watchdog on basic probes
        first = bool(self.safe_mode_timeout_s)
        for safe in (first, first, not first, not first):
            self._safe = safe
            try:
                self._transact(self._cmd(""))
            except DeviceTimeout:
                continue
            except PumpChecksumError as exc:
                garbled = exc
                continue
            found = True
            break
        if not found:
            self._safe = False
            if garbled is not None:  # something answered, but not as this pump
                raise garbled
            raise DeviceTimeout(
                f"ne1000: no pump answered at address {self.address} on {self.port} "
                "in basic or safe mode"
            )
        # asked before anything is set: a pump that is not this channel's gets nothing
        self._name.heard(
            self._query(self._cmd("VER")).data, f"at address {self.address} on {self.port}"
        )
        if self._name.foreign is not None:
            return
        self._named = True  # this channel's pump, on this link (``stop`` relies on it)
        want = self.safe_mode_timeout_s or 0
        if want:
            current = self._read_saf() if self._safe else 0
            if current != want:
                self._command(self._cmd("SAF", str(want)), either_framing=True)
                self._safe = True
                self._check("SAF", "safe-mode timeout", str(want), lambda b: b == str(want))
        elif self._safe:
            self._command(self._cmd("SAF", "0"), either_framing=True)
            self._safe = False
            self._check("SAF", "safe-mode timeout", "0", lambda b: b == "0")
        self._read_rate()
        self._linked = True

    def _read_saf(self) -> int | None:
        data = self._query(self._cmd("SAF")).data
        return int(data) if data.isascii() and data.isdigit() else None

    def _check(self, name: str, word: str, expected: str, ok: Callable[[str], bool]) -> None:
        """Read a setting back (the query of the same command) and refuse a mismatch."""
        back = self._query(self._cmd(name)).data
        if not ok(back):
            raise PumpRejected(
                f"ne1000: {word} read back as {back!r}, expected {expected}",
                reason=f"{word} read back {back!r}",
            )

    def _ensure_link(self) -> None:
        """Reopen a vanished port (once) and redo the handshake on the fresh link; again
        while the last one did not run to its end (a name unanswered, another pump
        answering: until this channel's pump has named itself, nothing else is sent), and
        when the name is to be asked again on a link that stayed up (``PumpName.expect``
        since the last answer: a replacement accepted; the pump that names itself then is
        brought to the configured mode as at a connection)."""
        reopened = self._transport.ensure_open()
        if reopened or not self._linked or self._name.must_ask:
            self._handshake()
        self._name.refuse_foreign()

    def _cmd(self, name: str, argument: str = "") -> Ne1000Command:
        return Ne1000Command(self.address, name, argument)

    def _frame_end(self) -> FrameEnd:
        # both framings are recognised whatever the link's mode: a reply in the other one
        # is then reported at once (``_decode``), never waited on until the deadline
        return any_reply_end

    def _encode(self, command: Ne1000Command) -> bytes:
        if self._safe:
            return encode_safe_packet(encode_command(command))
        return encode_basic_command(command)

    def _decode(self, frame: bytes, *, either_framing: bool = False) -> Ne1000Reply:
        reply = self._parse(frame, either_framing=either_framing)
        if reply.address != self.address:
            raise PumpChecksumError(
                f"ne1000: reply from address {reply.address}, expected {self.address}"
            )
        return reply

    def _parse(self, frame: bytes, *, either_framing: bool = False) -> Ne1000Reply:
        try:
            reply, safe = decode_any_reply(frame)
        except Ne1000CodecError as exc:
            raise PumpChecksumError(f"ne1000: {exc}") from None
        if safe != self._safe and not either_framing:
            raise PumpChecksumError(
                f"ne1000: reply in {'safe' if safe else 'basic'} framing while the link is in "
                f"{'safe' if self._safe else 'basic'} mode: {frame.hex(' ')}"
            )
        return reply

    def _absorb(self, data: bytes) -> None:
        """Read alarms out of bytes that arrived unasked (safe-mode auto-alarm packets)."""
        frame_end = self._frame_end()
        while data:
            end = frame_end(data)
            if end is None:
                return
            frame, data = data[:end], data[end:]
            try:
                reply = self._decode(frame)
            except PumpChecksumError:
                continue
            if reply.alarm is not None:
                self._note_alarm(reply.alarm)
                self._announced.add(reply.alarm)

    def _note_alarm(self, alarm: Ne1000Alarm) -> None:
        self._pending_alarms.add(ALARM_KINDS[alarm])
        self._running = False

    def _transact(self, command: Ne1000Command, *, either_framing: bool = False) -> Ne1000Reply:
        """One request and its reply; no retry, no error mapping beyond framing."""
        self._absorb(self._transport.drain())
        frame_end = self._frame_end()
        frame = self._transport.exchange(
            self._encode(command),
            frame_end=frame_end,
            timeout_s=self._reply_timeout_s,
            to_come=reply_bytes_to_come,
        )
        frame = self._skip_other_pumps(frame)
        reply = self._decode(frame, either_framing=either_framing)
        if reply.alarm is not None and self._safe and reply.alarm not in self._announced:
            # an auto-alarm packet may have crossed our request: if a second packet
            # follows at once, that one is the reply. (Not when that alarm was announced
            # already: then this is the pump's answer, and waiting for a packet that will
            # not come would leave the line "dirty" and cost the next exchange a timeout.)
            try:
                follow = self._transport.read_frame(
                    frame_end=frame_end, timeout_s=self._settle_s, to_come=reply_bytes_to_come
                )
            except DeviceTimeout:
                follow = b""
            if follow:
                self._note_alarm(reply.alarm)
                reply = self._decode(follow)
        if reply.alarm is not None:
            self._note_alarm(reply.alarm)
            self._announced.discard(reply.alarm)  # answered: the pump acknowledges it
        else:
            self._announced.clear()  # a plain answer: no alarm is waiting to be answered
        return reply

    def _skip_other_pumps(self, frame: bytes) -> bytes:
        """On a shared line in safe mode, another pump's alarm packet may arrive just before
        our reply: give it to its driver and read ours after it (a few at most)."""
        post = getattr(self._transport, "post", None)
        for _ in range(MAX_CROSSING_PACKETS):
            if post is None or not self._safe:
                return frame
            try:
                other = self._parse(frame)
            except PumpChecksumError:
                return frame
            if other.address == self.address or other.alarm is None:
                return frame
            post(frame)
            frame = self._transport.read_frame(
                frame_end=self._frame_end(),
                timeout_s=self._reply_timeout_s,
                to_come=reply_bytes_to_come,
            )
        return frame

    def _command(self, command: Ne1000Command, *, either_framing: bool = False) -> Ne1000Reply:
        """A command that changes the pump: sent once, never retried."""
        reply = self._transact(command, either_framing=either_framing)
        if reply.alarm is not None:
            raise PumpAlarmError(
                f"ne1000: {command.text!r} not executed, pump reports alarm A?{reply.alarm.value}",
                frozenset({ALARM_KINDS[reply.alarm]}),
            )
        self._raise_for_error(command, reply)
        return reply

    def _query(self, command: Ne1000Command) -> Ne1000Reply:
        """A pure query: one retry after a timeout, a corrupted reply or an alarm reply
        (the alarm is then acknowledged and remembered for ``read_status``)."""
        for attempt in (1, 2):
            try:
                reply = self._transact(command)
            except (DeviceTimeout, PumpChecksumError):
                if attempt == 2:
                    raise
                continue
            if reply.alarm is not None:
                if attempt == 2:
                    raise PumpAlarmError(
                        f"ne1000: {command.text!r} answered with alarm A?{reply.alarm.value}",
                        frozenset({ALARM_KINDS[reply.alarm]}),
                    )
                continue
            if reply.error is Ne1000Error.INVALID_PACKET and attempt == 1:
                continue
            self._raise_for_error(command, reply)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_error(self, command: Ne1000Command, reply: Ne1000Reply) -> None:
        if reply.error is None:
            return
        reason = ERROR_REASONS[reply.error]
        if reply.error is Ne1000Error.INVALID_PACKET:
            raise PumpChecksumError(f"ne1000: pump received {command.text!r} corrupted (?COM)")
        raise PumpRejected(f"ne1000: pump refused {command.text!r}: {reason}", reason=reason)

    # ------------------------------------------------------------------ rates
    def _allowed_units(self) -> tuple[RateUnit, ...]:
        if self._running and self._unit is not None:
            return (self._unit,)
        return RATE_UNIT_PREFERENCE

    def _read_rate(self) -> float:
        return self._rate_from(self._query(self._cmd("RAT")))

    def _rate_from(self, reply: Ne1000Reply) -> float:
        try:
            choice = parse_rate(reply.data)
        except Ne1000CodecError as exc:
            raise PumpChecksumError(f"ne1000: unreadable RAT reply: {exc}") from None
        self._unit = choice.unit
        if reply.status is not None:
            self._running = reply.status in RUNNING
        return float(choice.ml_h)


def _check_rate(rate_ml_h: float) -> None:
    if not (isinstance(rate_ml_h, int | float) and math.isfinite(rate_ml_h) and rate_ml_h > 0):
        raise ValueError(f"rate must be a finite number of mL/h above 0, got {rate_ml_h!r}")


def _volume_is(back: str, volume: object) -> bool:
    """``VOL`` read back as ``volume`` in mL."""
    return back.endswith("ML") and _number_or_none(back[:-2]) == volume


def _no_volume_to_dispense(back: str) -> bool:
    """``VOL`` read back as 0 in mL: the pump pumps continuously."""
    return back.endswith("ML") and _number_or_none(back[:-2]) == 0


def _number_or_none(text: str) -> object:
    try:
        return parse_number(text)
    except Ne1000CodecError:
        return None
