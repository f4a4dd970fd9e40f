"""Host driver for Mettler Toledo balances speaking MT-SICS (levels 0 and 1).

Protocol facts are in ``firmware_bridge.balance.codec``. How this driver uses them:

- ``connect`` opens the port and sends ``@`` (cancel): it ends whatever the balance was
  doing (a waiting ``S``, a ``SIR`` stream left running by another program) and its answer,
  the serial number, proves an MT-SICS balance is there.
- Each command is one exchange on ``drivers.transport`` under its lock, with a deadline:
  ``reply_timeout_s`` for commands answered at once, ``stable_timeout_s`` for those the
  balance answers only once stable (``S``, ``Z``, ``T``). A line of another command's (a
  stray repeat of ``SIR``, a print-key transmission) is skipped, at most
  ``MAX_STRAY_LINES`` of them; after a timeout the transport discards late bytes before
  the next exchange, so a late answer is never taken for the next one's.
- Answers map to typed errors with the balance's reason: ``I`` -> ``BalanceNotReady``,
  ``+`` / ``-`` -> ``BalanceOverload`` / ``BalanceUnderload``, ``L`` and ``ES`` / ``ET`` /
  ``EL`` -> ``BalanceRejected``; anything else unexpected -> ``BalanceProtocolError``.
- Weights are returned as ``Decimal`` exactly as printed (the balance's readability), in
  grams; a balance set to another unit is refused rather than converted.
"""

from __future__ import annotations

from decimal import Decimal

from drivers.balances.base import (
    Balance,
    BalanceDisconnected,
    BalanceIdentity,
    BalanceNotReady,
    BalanceOverload,
    BalanceProtocolError,
    BalanceRejected,
    BalanceTimeout,
    BalanceUnderload,
    WeightReading,
)
from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.transport import SerialTransport, Transport
from firmware_bridge.balance.codec import (
    MtSicsCodecError,
    Reply,
    decode_reply,
    encode_command,
    line_end,
    parse_value,
    reply_id,
)

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400)
#: lines of other commands skipped while looking for an answer
MAX_STRAY_LINES = 20

_GENERAL = {
    "ES": "syntax error: the balance did not recognise the command",
    "ET": "transmission error: a faulty byte reached the balance (check baud and parity)",
    "EL": "logical error: the balance cannot carry out this command",
}
_STATUS = {
    "I": "not executable now (busy, or no stability within the balance's time-out)",
    "L": "a parameter is wrong or not allowed",
    "+": "overload: the load is above the weighing range",
    "-": "underload: the load is below the weighing range (is the pan in place?)",
}


class MtSicsBalance(Balance):
    """A Mettler Toledo (MT-SICS) balance on one serial port."""

    name = "mtsics"

    def __init__(
        self,
        *,
        port: str,
        baud: int = 9600,
        reply_timeout_s: float = 1.0,
        stable_timeout_s: float = 20.0,
        transport: Transport | None = None,
    ) -> None:
        if baud not in BAUD_RATES:
            raise ValueError(f"mtsics baud must be one of {BAUD_RATES}, got {baud}")
        if not (0 < reply_timeout_s <= 30):
            raise ValueError(
                f"mtsics reply_timeout_s must be > 0 and <= 30 s, got {reply_timeout_s}"
            )
        if not (0 < stable_timeout_s <= 120):
            raise ValueError(
                f"mtsics stable_timeout_s must be > 0 and <= 120 s, got {stable_timeout_s}"
            )
        self.port = port
        self._reply_timeout_s = reply_timeout_s
        self._stable_timeout_s = stable_timeout_s
        self._transport: Transport = transport or SerialTransport(
            port, baudrate=baud, dirty_quiet_s=reply_timeout_s
        )

    # ------------------------------------------------------------------ Balance
    def connect(self) -> None:
        with self._transport.lock:
            try:
                self._transport.open()
            except DeviceDisconnected as exc:
                raise BalanceDisconnected(str(exc)) from None
            self._ask("@")

    def close(self) -> None:
        self._transport.close()

    def identify(self) -> BalanceIdentity:
        with self._transport.lock:
            balance_data = self._text(self._ask("I2"))
            software = self._text(self._ask("I3"))
            serial = self._text(self._ask("I4"))
        parts = balance_data.split()
        capacity: Decimal | None = None
        model = balance_data
        if len(parts) >= 3 and parts[-1] == "g":
            try:
                capacity = parse_value(parts[-2])
                model = " ".join(parts[:-2])
            except MtSicsCodecError:
                pass
        return BalanceIdentity(model=model, serial=serial, software=software, capacity_g=capacity)

    def read_stable(self, timeout_s: float | None = None) -> WeightReading:
        reply = self._ask("S", timeout_s=timeout_s or self._stable_timeout_s)
        return self._weight(reply, "S")

    def read_immediate(self) -> WeightReading:
        return self._weight(self._ask("SI"), "SI")

    def zero(self, *, immediate: bool = False) -> None:
        command = "ZI" if immediate else "Z"
        reply = self._ask(command, timeout_s=None if immediate else self._stable_timeout_s)
        if reply.status not in (("S", "D") if immediate else ("A",)):
            raise BalanceProtocolError(f"{command}: unexpected answer {_show(reply)}")

    def tare(self, *, immediate: bool = False) -> Decimal:
        command = "TI" if immediate else "T"
        reply = self._ask(command, timeout_s=None if immediate else self._stable_timeout_s)
        return self._weight(reply, command).grams

    def tare_value(self) -> Decimal:
        reply = self._ask("TA")
        if reply.status != "A":
            raise BalanceProtocolError(f"TA: unexpected answer {_show(reply)}")
        return self._grams(reply, "TA")

    def clear_tare(self) -> None:
        reply = self._ask("TAC")
        if reply.status != "A":
            raise BalanceProtocolError(f"TAC: unexpected answer {_show(reply)}")

    # ------------------------------------------------------------------ internals
    def _ask(self, command: str, *args: str, timeout_s: float | None = None) -> Reply:
        """Send one command and return its answer (status A, B, S or D); every other
        status and every general error raises with the balance's reason."""
        deadline = timeout_s or self._reply_timeout_s
        expected = reply_id(command)
        request = encode_command(command, *args)
        with self._transport.lock:
            try:
                if not self._transport.is_open:
                    self._transport.ensure_open()
                line = self._transport.exchange(request, frame_end=line_end, timeout_s=deadline)
                for _ in range(MAX_STRAY_LINES):
                    reply = self._decode(line, command)
                    if reply.is_general_error or reply.id == expected:
                        return self._check(reply, command)
                    line = self._transport.read_frame(frame_end=line_end, timeout_s=deadline)
            except DeviceTimeout as exc:
                raise BalanceTimeout(f"mtsics {command}: {exc}") from None
            except DeviceDisconnected as exc:
                raise BalanceDisconnected(f"mtsics {command}: {exc}") from None
        raise BalanceProtocolError(
            f"mtsics {command}: no answer among {MAX_STRAY_LINES} lines of other commands"
        )

    @staticmethod
    def _decode(line: bytes, command: str) -> Reply:
        try:
            return decode_reply(line)
        except MtSicsCodecError as exc:
            raise BalanceProtocolError(
                f"mtsics {command}: unreadable answer {line!r}: {exc}"
            ) from None

    @staticmethod
    def _check(reply: Reply, command: str) -> Reply:
        if reply.is_general_error:
            raise BalanceRejected(f"mtsics {command}: {reply.id}: {_GENERAL[reply.id]}")
        status = reply.status or ""
        reason = _STATUS.get(status)
        if reason is not None:
            text = f"mtsics {command}: {reply.id} {status}: {reason}"
            if status == "I":
                raise BalanceNotReady(text)
            if status == "+":
                raise BalanceOverload(text)
            if status == "-":
                raise BalanceUnderload(text)
            raise BalanceRejected(text)
        return reply

    def _weight(self, reply: Reply, command: str) -> WeightReading:
        if reply.status not in ("S", "D"):
            raise BalanceProtocolError(f"mtsics {command}: unexpected answer {_show(reply)}")
        return WeightReading(self._grams(reply, command), reply.status == "S")

    @staticmethod
    def _grams(reply: Reply, command: str) -> Decimal:
        try:
            value, unit = reply.weight()
        except MtSicsCodecError as exc:
            raise BalanceProtocolError(f"mtsics {command}: {exc}") from None
        if unit != "g":
            raise BalanceProtocolError(
                f"mtsics {command}: the balance weighs in {unit!r}; set its unit to g"
            )
        return value

    @staticmethod
    def _text(reply: Reply) -> str:
        if reply.status != "A" or not reply.fields:
            raise BalanceProtocolError(f"mtsics: unexpected answer {_show(reply)}")
        return reply.fields[0]


def _show(reply: Reply) -> str:
    return " ".join(filter(None, (reply.id, reply.status, *reply.fields)))


__all__ = ["BAUD_RATES", "MtSicsBalance"]
