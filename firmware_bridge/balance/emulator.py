"""The balance's end of an MT-SICS line, serving ``BalanceModel`` (a ``WireHandler``).

How it answers (facts in ``codec``; our choices where a manual leaves room):

- ``S``, ``Z`` and ``T`` need a stable reading. When the balance is not stable the answer
  waits, as a real balance's does, until it is (then the weight / ``Z A`` / ``T S``) or
  until ``stable_timeout_s`` of the balance's clock has passed (then ``S I``, ``Z I``,
  ``T I``). Commands that arrive meanwhile are queued and answered in order afterwards;
  ``@`` cancels at once, queue included. Such a late answer leaves through ``poll`` (the
  serial line's path for bytes sent unasked), so wire faults that act on a reply (lost,
  corrupted) do not act on it.
- ``SI`` answers at once: ``S S`` stable, ``S D`` dynamic. ``SIR`` answers like ``SI``
  and then repeats every ``sir_period_s`` (real seconds) until any other command arrives.
- ``ZI`` and ``TI`` act at once and say whether the balance was stable (``S``) or not
  (``D``). ``TA`` queries the tare (``TA A value g``) or presets it (``TA value g``; a
  unit other than grams or a value outside 0-capacity is ``TA L``); ``TAC`` clears it.
- Overload answers ``+``, a lifted pan ``-``, for every weight, zero and tare command.
- ``@`` cancels, clears the tare and answers ``I4 A "serial"``.
- ``I0`` lists every implemented command, one line each (``I0 B`` ... ``I0 A`` last);
  ``I1`` says levels 0 and 1; ``I2`` type, capacity and unit; ``I3`` software; ``I4``
  serial number.
- ``ES`` for what is not a command; ``ET`` for a line with a byte that cannot have come
  through intact (non-ASCII or a control character) or longer than 256 bytes; ``EL`` for a
  command of the MT-SICS set that this balance does not carry out (display text,
  adjustment...), or parameters on a command that takes none.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from firmware_bridge.balance.codec import (
    IMPLEMENTED,
    KNOWN_NOT_IMPLEMENTED,
    LEVEL0,
    MAX_LINE,
    Command,
    MtSicsCodecError,
    error_reply,
    line_end,
    list_reply,
    parse_command,
    status_reply,
    text_reply,
    weight_reply,
)
from firmware_bridge.balance.physics import BalanceModel, Reading

#: SIR repeats this often (real seconds): about ten readings a second
SIR_PERIOD_S = 0.1
#: MT-SICS versions this balance reports for levels 0 and 1
SICS_VERSIONS = ("1.00", "1.00")

_NO_ARGS = frozenset({"@", "I0", "I1", "I2", "I3", "I4", "S", "SI", "SIR", "Z", "ZI", "T", "TI"})
_NEEDS_STABLE = frozenset({"S", "Z", "T"})


class MtSicsBalanceSide:
    """An MT-SICS balance on one line."""

    protocol = "mt-sics"

    def __init__(
        self,
        model: BalanceModel,
        *,
        sir_period_s: float = SIR_PERIOD_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self._buffer = bytearray()
        self._sir_period_s = sir_period_s
        self._sir_next: float | None = None
        self._monotonic = monotonic
        self._waiting: tuple[Command, float] | None = None  # command, deadline (clinical)
        self._queue: deque[Command | bytes] = deque()
        self.requests = 0

    # ------------------------------------------------------------------ WireHandler
    def feed(self, data: bytes, now: float) -> None:
        self._buffer += data
        if line_end(bytes(self._buffer)) is None and len(self._buffer) > MAX_LINE + 2:
            # an overrun line: answered ET once its end arrives; keep only the tail
            del self._buffer[: len(self._buffer) - (MAX_LINE + 2)]
            self._buffer[:0] = b"\x00"

    def next_request(self) -> bytes | None:
        end = line_end(bytes(self._buffer))
        if end is None:
            return None
        request = bytes(self._buffer[:end])
        del self._buffer[:end]
        return request

    def handle(self, request: bytes, now: float) -> bytes | None:
        self.requests += 1
        self._sir_next = None  # any command ends a SIR stream
        try:
            command = parse_command(request)
        except MtSicsCodecError as exc:
            return self._later_or_now(error_reply(exc.code))
        if command.name == "@":
            self._waiting = None
            self._queue.clear()
            return self._execute(command)
        if self._waiting is not None or self._queue:
            self._queue.append(command)
            return None
        return self._execute(command)

    def poll(self, now: float) -> bytes | None:
        out = bytearray()
        if self._waiting is not None:
            command, deadline = self._waiting
            reading = self.model.read()
            if reading.stable or reading.overload or reading.underload:
                self._waiting = None
                out += self._answer_stable(command, reading)
            elif reading.time >= deadline:
                self._waiting = None
                out += status_reply(command.name, "I")
        while self._waiting is None and self._queue:
            item = self._queue.popleft()
            reply = item if isinstance(item, bytes) else self._execute(item)
            if reply is not None:
                out += reply
        if self._sir_next is not None and now >= self._sir_next:
            self._sir_next = now + self._sir_period_s
            out += self._weight("S", self.model.read(), immediate=True)
        return bytes(out) or None

    def reset_link(self) -> None:
        self._buffer.clear()
        self._sir_next = None

    def describe(self) -> dict[str, object]:
        return {
            "balance": self.model.describe(),
            "waiting": None if self._waiting is None else self._waiting[0].name,
            "queued": len(self._queue),
            "sir": self._sir_next is not None,
        }

    # ------------------------------------------------------------------ commands
    def _later_or_now(self, reply: bytes) -> bytes | None:
        if self._waiting is not None or self._queue:
            self._queue.append(reply)
            return None
        return reply

    def _execute(self, command: Command) -> bytes | None:
        name, args = command.name, command.args
        if name not in IMPLEMENTED:
            return error_reply("EL" if name in KNOWN_NOT_IMPLEMENTED else "ES")
        if name in _NO_ARGS and args:
            return error_reply("EL")
        spec = self.model.spec
        if name == "@":
            self.model.reset()
            return text_reply("I4", "A", spec.serial)
        if name == "I0":
            names = list(IMPLEMENTED)
            lines = b"".join(
                list_reply("I0", "B" if i < len(names) - 1 else "A", 0 if n in LEVEL0 else 1, n)
                for i, n in enumerate(names)
            )
            return lines
        if name == "I1":
            return text_reply("I1", "A", "01", *SICS_VERSIONS, "", "")
        if name == "I2":
            capacity = f"{Decimal(repr(spec.capacity_g)).quantize(spec.resolution_g):f}"
            return text_reply("I2", "A", f"{spec.model} {capacity} g")
        if name == "I3":
            return text_reply("I3", "A", spec.software)
        if name == "I4":
            return text_reply("I4", "A", spec.serial)
        if name in ("SI", "SIR"):
            if name == "SIR":
                self._sir_next = self._monotonic() + self._sir_period_s
            return self._weight("S", self.model.read(), immediate=True)
        if name in _NEEDS_STABLE:
            reading = self.model.read()
            if reading.stable or reading.overload or reading.underload:
                return self._answer_stable(command, reading)
            self._waiting = (command, reading.time + spec.stable_timeout_s)
            return None
        if name == "ZI":
            reading = self.model.read()
            result = self.model.zero()
            return status_reply("ZI", ("S" if reading.stable else "D") if result == "A" else result)
        if name == "TI":
            reading = self.model.read()
            status, tare = self.model.tare()
            if status != "S":
                return status_reply("TI", status)
            return weight_reply("TI", "S" if reading.stable else "D", tare, "g", spec.resolution_g)
        if name == "TA":
            return self._tare_value(args)
        assert name == "TAC"
        if args:
            return error_reply("EL")
        self.model.clear_tare()
        return status_reply("TAC", "A")

    def _answer_stable(self, command: Command, reading: Reading) -> bytes:
        name = command.name
        if name == "S":
            return self._weight("S", reading, immediate=False)
        if reading.overload:
            return status_reply(name, "+")
        if reading.underload:
            return status_reply(name, "-")
        if name == "Z":
            return status_reply("Z", self.model.zero())
        status, tare = self.model.tare()
        if status != "S":
            return status_reply("T", status)
        return weight_reply("T", "S", tare, "g", self.model.spec.resolution_g)

    def _weight(self, ident: str, reading: Reading, *, immediate: bool) -> bytes:
        if reading.overload:
            return status_reply(ident, "+")
        if reading.underload:
            return status_reply(ident, "-")
        status = "S" if reading.stable or not immediate else "D"
        return weight_reply(ident, status, reading.net_g, "g", self.model.spec.resolution_g)

    def _tare_value(self, args: tuple[str, ...]) -> bytes:
        spec = self.model.spec
        if not args:
            return weight_reply("TA", "A", self.model.tare_g, "g", spec.resolution_g)
        if len(args) != 2 or args[1] != "g":
            return status_reply("TA", "L")
        try:
            value = Decimal(args[0])
        except InvalidOperation:
            return status_reply("TA", "L")
        if not value.is_finite() or not self.model.set_tare(float(value)):
            return status_reply("TA", "L")
        return weight_reply("TA", "A", self.model.tare_g, "g", spec.resolution_g)


__all__ = ["SIR_PERIOD_S", "MtSicsBalanceSide"]
