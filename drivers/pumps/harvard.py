"""Host driver for Harvard Apparatus PHD ULTRA / Pump 11 Elite (and KD Scientific Legato).

Protocol facts are in ``firmware_bridge.harvard.codec`` (for people: docs/protocols.md). How
this driver uses them:

- Every command carries the pump's address when it is nonzero (``NN:cmd``): on older pump
  chains a command without address makes every pump answer at once. The driver never
  sends a bare CR, which on those chains stops every pump: the throw-away query at
  connect (for pumps that ignore their first command) is an addressed ``ver``.
- A reply is complete when it ends with a prompt, and the driver takes it the moment its
  last byte arrives (so an exchange costs its wire time, not a quiet period after it).
  One ending is ambiguous: for a nonzero address ``<LF>NN:`` is both the idle prompt and
  the start of a text line. The driver knows how many lines the command answers on
  success (none for a set, one for a query; an error is two lines), so that ending ends
  the reply when the lines before it make a whole answer
  (``firmware_bridge.harvard.codec.reply_may_grow``); only a reply of an unexpected shape
  waits ``settle_s`` of quiet. (Before issue 14 every reply waited ``settle_s``: 130 ms
  for a rate set and a status read on a pty.)
- On a shared line (``line=``, a ``drivers.lines.SharedLine``: one pump chain) the driver
  is one of several; the chain's address 0 is the pump the computer is wired to, which
  answers commands without an address.
- The prompt and every line prefix must carry our address: a reply from another pump (the
  daisy-chain bug seen in a public driver) raises ``PumpChecksumError``.
- Every set is read back with the matching query and the read-back value is returned;
  sets are sent once (a lost reply is ``DeviceTimeout``: outcome uncertain), queries are
  retried at most once. ``Argument error`` / ``Out of range`` / ``Command error`` replies
  raise ``PumpRejected`` with the pump's own lines as the reason; nothing is clamped.
- Stall (prompt ``*``, status flag ``S``) is reported as ``PumpAlarmKind.STALL``: the pump
  senses force, so an occlusion or an empty syringe also shows as a stall.
- These pumps have no power-fail alarm: after a power interruption they come back idle.
  So when the driver started the pump and later finds it idle with neither a stall nor
  "target reached" to explain it, it reports ``PumpAlarmKind.RESET`` once (the other
  possible cause, a stop pressed on the pump's own screen, reads the same on the wire).

Rate quantization (our choice, documented because the safety kernel relies on it): rates
travel with at most 4 significant digits, rounded down, in ml/hr (ul/hr below 1 mL/h,
nl/hr below 1 uL/h). The pump's own resolution is finer (its status reports fL/s), so
the pump runs exactly the figure sent. The rule does not depend on the pump's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from drivers.errors import DeviceTimeout
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
from drivers.transport import SerialTransport, Transport
from firmware_bridge.harvard.codec import (
    ML_PER_HR,
    NL_PER_HR,
    UL_PER_HR,
    HarvardCodecError,
    HarvardCommand,
    HarvardReply,
    Prompt,
    Rate,
    decode_reply,
    encode_command,
    format_decimal,
    parse_rate,
    parse_rate_limits,
    parse_status,
    parse_volume,
    reply_end,
    reply_may_grow,
    round_significant,
    to_decimal,
)
from firmware_bridge.syringes import Container, Syringe

T = TypeVar("T")

BAUD_RATES = (9600, 19200, 38400, 57600, 115200)
SIGNIFICANT_DIGITS = 4
RUNNING_PROMPTS = frozenset({Prompt.INFUSING, Prompt.WITHDRAWING})


class HarvardDriver(PumpDriver):
    """A PHD ULTRA / Pump 11 Elite / Legato at one address, on a port of its own
    (``port``) or on a pump chain shared with other pumps (``line``)."""

    name = "harvard"

    def __init__(
        self,
        *,
        port: str | None = None,
        address: int = 0,
        baud: int | None = None,
        reply_timeout_s: float = 0.5,
        settle_s: float = 0.03,
        transport: Transport | None = None,
        line: SharedLine | None = None,
    ) -> None:
        port, baud = resolve_port("harvard", port=port, baud=baud, line=line, default_baud=115200)
        check_serial_options(
            "harvard",
            address=address,
            baud=baud,
            baud_rates=BAUD_RATES,
            reply_timeout_s=reply_timeout_s,
            settle_s=settle_s,
        )
        self.port = port
        self.address = address
        self.serial_port = serial_device(port, line)
        self._reply_timeout_s = reply_timeout_s
        self._settle_s = settle_s
        self.line = line
        if line is not None:
            line.claim(self.name, address, self)
        self._transport: Transport = transport or (
            line.transport_for(f"harvard {address} on {line.name}")
            if line is not None
            else SerialTransport(port, baudrate=baud, dirty_quiet_s=reply_timeout_s)
        )
        self._pending_alarms: set[PumpAlarmKind] = set()
        self._expect_running = False
        #: the rate line read before a prime, until the prime is undone
        self._rate_before_prime: str | None = None
        self._priming = False
        #: the pump's ``ver`` answer at the first connection (or the one the safety
        #: process recorded before a restart), compared at every reconnect
        self._name = PumpName("harvard")
        self.pump_name = self._name
        #: the last handshake ran to its end (see ``_ensure_link``)
        self._linked = False

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
            line = self._single_line(self._query(self._cmd("ver")), "ver")
        model, _, firmware = line.rpartition(" ")
        if not model:
            return PumpIdentity(model=line, firmware="", address=self.address)
        return PumpIdentity(model=model, firmware=firmware, address=self.address)

    def configure_syringe(self, syringe: Container) -> RateRange:
        """Bore, syringe volume and no target volume, each read back; the range is the
        pump's own answer to ``irate lim``."""
        refuse_bag(self.name, syringe)
        assert isinstance(syringe, Syringe)
        mm = syringe.inner_diameter_mm
        diameter = f"{mm:.4f}"
        volume = format_decimal(to_decimal(syringe.volume_ml))
        with self._transport.lock:
            self._ensure_link()
            self._command(self._cmd("diameter", diameter))
            self._check("diameter", "diameter", f"{diameter} mm", lambda b: _is_mm(b, mm))
            self._command(self._cmd("svolume", volume, "ml"))
            self._check("svolume", "syringe volume", f"{volume} ml", lambda b: _is_ml(b, volume))
            self._command(self._cmd("ctvolume"))
            self._check("tvolume", "target volume", "none", lambda b: b == "Target volume not set")
            limits = self._single_line(self._query(self._cmd("irate", "lim")), "irate lim")
        low, high = _parsed(parse_rate_limits, limits, "rate limits")
        return RateRange(min_ml_h=float(low.ml_h), max_ml_h=float(high.ml_h))

    def quantize_rate(self, rate_ml_h: float) -> float:
        _check_rate(rate_ml_h)
        return float(round_significant(to_decimal(rate_ml_h), SIGNIFICANT_DIGITS))

    def set_rate(self, rate_ml_h: float) -> float:
        with self._transport.lock:
            self.send_rate(rate_ml_h)
            back = self._single_line(self._query(self._cmd("irate")), "irate")
        return float(_parsed(parse_rate, back, "rate").ml_h)

    def send_rate(self, rate_ml_h: float) -> None:
        _check_rate(rate_ml_h)
        value = to_decimal(rate_ml_h)
        if round_significant(value, SIGNIFICANT_DIGITS) != value:
            raise ValueError(
                f"rate {rate_ml_h} mL/h has more than {SIGNIFICANT_DIGITS} significant digits; "
                f"quantize_rate gives {self.quantize_rate(rate_ml_h)} mL/h"
            )
        rate = _rate_for_wire(value)
        with self._transport.lock:
            self._ensure_link()
            self._undo_prime(restore_rate=False)
            self._command(self._cmd("irate", format_decimal(rate.value), rate.unit.text))

    def prime(self, volume_ml: float) -> float:
        """``irate max``, a target volume (``tvolume``), ``irun``: the pump runs at the
        syringe's top rate and stops when the target is reached (prompt ``T*``). The rate
        and the absence of a target are put back before the next ``set_rate``/``start``."""
        if not (isinstance(volume_ml, int | float) and math.isfinite(volume_ml) and volume_ml > 0):
            raise ValueError(f"volume_ml must be a finite number of mL above 0, got {volume_ml!r}")
        volume = round_significant(to_decimal(volume_ml), SIGNIFICANT_DIGITS)
        text = format_decimal(volume)
        with self._transport.lock:
            self._ensure_link()
            status = _parsed(
                parse_status,
                self._single_line(self._query(self._cmd("status")), "status"),
                "status",
            )
            if status.motor_running:
                raise PumpRejected("harvard: cannot prime while pumping", reason="running")
            if self._rate_before_prime is None:
                self._rate_before_prime = self._single_line(
                    self._query(self._cmd("irate")), "irate"
                )
            self._command(self._cmd("irate", "max"))
            self._command(self._cmd("tvolume", text, "ml"))
            self._check("tvolume", "target volume", f"{text} ml", lambda b: _is_ml(b, text))
            reply = self._command(self._cmd("irun"))
            if reply.prompt is not Prompt.INFUSING:
                raise PumpRejected(
                    f"harvard: irun (prime) acknowledged but the prompt is {reply.prompt.value!r}",
                    reason=f"did not prime (prompt {reply.prompt.value!r})",
                )
            self._priming = True
        return float(volume)

    def _undo_prime(self, *, restore_rate: bool) -> None:
        """Clear a prime's target volume (and put its rate back) before the infusion runs."""
        if self._rate_before_prime is None:
            return
        self._command(self._cmd("ctvolume"))
        self._check("tvolume", "target volume", "none", lambda b: b == "Target volume not set")
        if restore_rate:
            before = _parsed(parse_rate, self._rate_before_prime, "rate")
            self._command(self._cmd("irate", format_decimal(before.value), before.unit.text))
            self._check(
                "irate",
                "rate",
                before.text,
                lambda b: _parsed(parse_rate, b, "rate").ml_h == before.ml_h,
            )
        self._rate_before_prime = None
        self._priming = False

    def start(self) -> None:
        with self._transport.lock:
            self._ensure_link()
            self._undo_prime(restore_rate=True)
            reply = self._command(self._cmd("irun"))
        if reply.prompt is Prompt.STALLED:
            raise PumpAlarmError(
                "harvard: irun answered with the stall prompt '*'",
                frozenset({PumpAlarmKind.STALL}),
            )
        if reply.prompt is not Prompt.INFUSING:
            raise PumpRejected(
                f"harvard: irun acknowledged but the prompt is {reply.prompt.value!r}",
                reason=f"did not start (prompt {reply.prompt.value!r})",
            )
        self._expect_running = True

    def stop(self) -> StopConfirmation | None:
        """``stp``; the prompt ending its reply is the read-back. The idle prompt ``:`` is
        returned as the pump's confirmation; a stall (``*``) or a reached target (``T*``)
        is not running but was not stopped by this command, so it is not."""
        with self._transport.lock:
            self._ensure_link()
            self._expect_running = False
            reply = self._command(self._cmd("stp"))
        if reply.prompt in RUNNING_PROMPTS:
            raise PumpRejected(
                f"harvard: stp acknowledged but the prompt is {reply.prompt.value!r}",
                reason=f"still running (prompt {reply.prompt.value!r})",
            )
        if reply.prompt is Prompt.IDLE:
            where = f"{reply.address:02d}" if reply.address else ""
            return StopConfirmation(f"{where}{reply.prompt.value}")
        return None

    def read_status(self) -> PumpStatus:
        with self._transport.lock:
            self._ensure_link()
            status_reply = self._query(self._cmd("status"))
            line = self._single_line(status_reply, "status")
            status = _parsed(parse_status, line, "status")
            if status.infusing_direction:
                infused = status.volume_ml
            else:
                vol_line = self._single_line(self._query(self._cmd("ivolume")), "ivolume")
                infused = _parsed(parse_volume, vol_line, "volume").ml
            rate_line = self._single_line(self._query(self._cmd("irate")), "irate")
            rate = _parsed(parse_rate, rate_line, "rate").ml_h
            alarms = set(self._pending_alarms)
            self._pending_alarms.clear()
            running = status_reply.prompt in RUNNING_PROMPTS or status.motor_running
            if status.stalled:
                alarms.add(PumpAlarmKind.STALL)
            elif self._expect_running and not running and not status.target_reached:
                alarms.add(PumpAlarmKind.RESET)
            if not running:
                self._expect_running = False
            return PumpStatus(
                priming=self._priming and running,
                running=running,
                set_rate_ml_h=float(rate),
                infused_ml=float(infused),
                alarms=frozenset(alarms),
                pressure_mmhg=None,
                raw=f"{line} {status_reply.prompt.value} | {rate_line}",
            )

    def keep_alive(self) -> None:
        """One ``status`` query (never retried; the pump has no comms watchdog, this only
        proves the link and notes a stall for the next ``read_status``)."""
        with self._transport.lock:
            self._ensure_link()
            self._raise_for_error(self._transact(self._cmd("status")))

    def close(self) -> None:
        with self._transport.lock:
            self._transport.close()
            if self.line is not None:
                self.line.release(self.address, self)

    # ------------------------------------------------------------------ link
    def _handshake(self) -> None:
        """``ver``, asked again if unanswered (a pump fresh from power-up may ignore its
        first command). Its answer names the pump: kept at the first connection, compared
        after every reconnect (``AnotherPumpAnswers``)."""
        self._linked = False
        try:
            reply = self._transact(self._cmd("ver"))
        except DeviceTimeout:
            reply = self._transact(self._cmd("ver"))
        self._name.heard(" / ".join(reply.lines), f"at address {self.address} on {self.port}")
        self._linked = self._name.foreign is None

    def _ensure_link(self) -> None:
        """A fresh handshake after a reopen, again while the last one did not run to its
        end (``ver`` unanswered, another pump answering: until this channel's pump has
        named itself on the port, nothing else is sent), and when the name is to be asked
        again on a link that stayed up (``PumpName.expect`` since the last answer: a
        replacement accepted)."""
        reopened = self._transport.ensure_open()
        if reopened or not self._linked or self._name.must_ask:
            self._handshake()
        self._name.refuse_foreign()

    def _cmd(self, name: str, *args: str) -> HarvardCommand:
        return HarvardCommand(self.address or None, name, args)

    def _transact(self, command: HarvardCommand, expected_lines: int = 1) -> HarvardReply:
        """One request and its reply; no retry. ``expected_lines``: what the command
        answers on success (0 for a set), so its reply is taken as soon as it is whole."""
        self._transport.drain()  # stale bytes from a reply that came too late
        frame = self._transport.exchange(
            encode_command(command),
            frame_end=reply_end,
            timeout_s=self._reply_timeout_s,
            settle_s=self._settle_s,
            ambiguous=lambda frame: reply_may_grow(frame, expected_lines),
        )
        try:
            reply = decode_reply(frame)
        except HarvardCodecError as exc:
            raise PumpChecksumError(f"harvard: {exc}") from None
        if reply.address != self.address:
            raise PumpChecksumError(
                f"harvard: reply from pump {reply.address}, expected {self.address}"
            )
        if reply.prompt is Prompt.STALLED:
            self._pending_alarms.add(PumpAlarmKind.STALL)
        return reply

    def _command(self, command: HarvardCommand) -> HarvardReply:
        """A command that changes the pump: sent once, never retried."""
        reply = self._transact(command, expected_lines=0)
        self._raise_for_error(reply, command)
        return reply

    def _query(self, command: HarvardCommand) -> HarvardReply:
        """A pure query: retried once after a timeout or an unreadable reply."""
        try:
            reply = self._transact(command)
        except (DeviceTimeout, PumpChecksumError):
            reply = self._transact(command)
        self._raise_for_error(reply, command)
        return reply

    @staticmethod
    def _raise_for_error(reply: HarvardReply, command: HarvardCommand | None = None) -> None:
        reason = reply.error
        if reason is not None:
            what = command.text if command is not None else "command"
            raise PumpRejected(f"harvard: pump refused {what!r}: {reason}", reason=reason)

    def _check(self, name: str, word: str, expected: str, ok: Callable[[str], bool]) -> None:
        """Read a setting back (the query of the same command) and refuse a mismatch."""
        back = self._single_line(self._query(self._cmd(name)), name)
        if not ok(back):
            raise PumpRejected(
                f"harvard: {word} read back as {back!r}, expected {expected}",
                reason=f"{word} read back {back!r}",
            )

    @staticmethod
    def _single_line(reply: HarvardReply, what: str) -> str:
        if len(reply.lines) != 1:
            raise PumpChecksumError(
                f"harvard: expected one line in reply to {what!r}, got {list(reply.lines)!r}"
            )
        return reply.lines[0]


def _parsed(parse: Callable[[str], T], line: str, what: str) -> T:
    """A reply line through its codec parser; an unreadable one is a corrupted reply."""
    try:
        return parse(line)
    except HarvardCodecError as exc:
        raise PumpChecksumError(f"harvard: unreadable {what} {line!r}: {exc}") from None


def _is_mm(back: str, mm: float) -> bool:
    """``diameter`` read back as the bore sent (to the 4 decimals sent), in mm."""
    number, _, unit = back.partition(" ")
    value = _float(number)
    return unit.strip() == "mm" and value is not None and abs(value - mm) <= 5e-5


def _is_ml(back: str, volume: str) -> bool:
    """``svolume`` read back as the syringe volume sent."""
    try:
        return parse_volume(back).ml == Decimal(volume)
    except HarvardCodecError:
        return False


def _rate_for_wire(ml_h: Decimal) -> Rate:
    """ml/hr, or ul/hr / nl/hr for small rates, so the figure stays >= 1."""
    for unit in (ML_PER_HR, UL_PER_HR, NL_PER_HR):
        value = ml_h / unit.ml_h_per_unit
        if value >= 1:
            return Rate(value, unit)
    return Rate(ml_h / NL_PER_HR.ml_h_per_unit, NL_PER_HR)


def _float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_rate(rate_ml_h: float) -> None:
    if not (isinstance(rate_ml_h, int | float) and math.isfinite(rate_ml_h) and rate_ml_h > 0):
        raise ValueError(f"rate must be a finite number of mL/h above 0, got {rate_ml_h!r}")
