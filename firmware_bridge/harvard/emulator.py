"""The pump side of the Harvard PHD ULTRA / Pump 11 Elite protocol over the simulated pump.

A ``WireHandler`` answering the way the manuals describe (facts in
``firmware_bridge.harvard.codec``), so that a host written from the Harvard or KD
Scientific manual works against it.

Behaviour and where it comes from:

- A command line ends with CR, LF or CR LF (the Legato manual's hosts send CR; public
  drivers send CR LF). Commands may carry ``NN:`` or ``NN`` before the command; a command
  for another address is ignored. A command with no address is answered (Legato: "if the
  USB port is used on a pump with a nonzero address, the pump address does not need to be
  used"); the reply still carries this pump's address prefix.
- Prompts: ``>``/``<`` while the motor runs, ``*`` after a stall, ``T*`` when the target
  volume was reached, ``:`` otherwise.
- Errors as two lines, ``Argument error: <arg>`` / ``Command error: <cmd>`` and an indented
  reason (``Out of range``, ``Unknown command``...), modelled on the KDS manual layout.

Our choices and the model mapping:

- A Harvard pump senses force, not pressure: an occlusion that pushes the force past its
  limit, an empty syringe (plunger at the end of travel, no limit switch on the PHD
  ULTRA) and a motor stall all show as the stall prompt ``*`` and the stall flag ``S``.
  They stay until the condition is gone and the pump is started again (on the real pump,
  also by touching the display).
- A power cycle has no Harvard alarm; the pump simply comes back idle.
- ``poll on`` ends every reply with XON after the prompt, ``poll off`` (the default) does
  not (Harvard Pump 33 DDS manual, POLL: "an XON character is output when the pump is
  ready for another command"); ``poll remote`` is accepted and treated as off.
- On a chain (``firmware_bridge.emulators.bus``) the pump at address 0 is the one wired to
  the computer and answers commands without an address (KD Scientific Legato manuals,
  pump chain commands: "the first pump in the chain ... must use address 0"); alone on its
  line a pump answers them whatever its address (the Legato's USB note).
- ``ver`` answers ``11 ELITE I/W Single 3.0.4`` (the form a Pump 11 Elite gives, seen in
  public code); ``status`` reports time in seconds and six flags (the Legato's sixth,
  target reached, included).
- ``irate`` reports the value and unit the host set, exactly; rates the model set on its
  own (e.g. after a syringe change) are shown in ml/hr. Limits (``irate lim``) are shown
  per minute, 4 significant digits, the minimum rounded up and the maximum down, so the
  displayed range never exceeds the real one.
- Diameters 0.1-50 mm, syringe volumes up to 140 mL, force 1-100 %.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal

from firmware_bridge.emulators.syringe_match import syringe_for_bore
from firmware_bridge.harvard.codec import (
    FL_PER_ML,
    ML_PER_HR,
    HarvardCodecError,
    HarvardCommand,
    HarvardReply,
    HarvardStatus,
    Prompt,
    Rate,
    display_rate,
    display_volume,
    encode_reply,
    parse_command,
    parse_decimal,
    parse_rate_unit,
    parse_volume,
    resolve_command,
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

VERSION = "11 ELITE I/W Single 3.0.4"
DIAMETER_RANGE_MM = (Decimal("0.1"), Decimal("50"))
MAX_SYRINGE_ML = Decimal(140)
MAX_LINE = 256
#: ends every reply while polling mode is on (``poll on``)
XON = b"\x11"
#: model alarms that a force-sensing Harvard pump reports as a stall
STALL_ALARMS = frozenset({PumpAlarm.STALL, PumpAlarm.OCCLUSION, PumpAlarm.EMPTY})

Lines = list[str]


class HarvardFramer:
    """Cuts the byte stream into command lines (CR, LF or CR LF) as every pump on a chain
    reads it."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._after_cr = False

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes, now: float) -> None:
        self._buffer += data

    def next_request(self) -> bytes | None:
        if self._after_cr and self._buffer:
            if self._buffer[0] == 0x0A:
                del self._buffer[0]  # the LF of a CR LF pair
            self._after_cr = False
        ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
        if not ends:
            if len(self._buffer) > MAX_LINE:
                self._buffer.clear()
            return None
        end = min(ends)
        request = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        self._after_cr = request.endswith(b"\r")
        return request

    def reset(self) -> None:
        self._buffer.clear()
        self._after_cr = False


class HarvardPumpSide:
    """A PHD ULTRA / Pump 11 Elite answering at one address, driving ``pump``."""

    protocol = "harvard"

    def __init__(
        self, pump: SimulatedPump, *, address: int = 0, baud: int = 115200, version: str = VERSION
    ) -> None:
        if not (0 <= address <= 99):
            raise ValueError(f"Harvard address must be 0-99, got {address}")
        self._pump = pump
        self.address = address
        self._baud = baud
        self._version = version
        self._framer = HarvardFramer()
        #: False once the pump is one of a chain (``emulators.bus``): then only address 0
        #: answers a command without an address
        self.alone_on_line = True
        #: ``poll on``: every reply ends with XON after its prompt (Harvard Pump 33 DDS
        #: manual, POLL); off by default
        self.poll_mode = False
        self._rates: dict[Direction, Rate | None] = {
            Direction.INFUSE: None,
            Direction.WITHDRAW: None,
        }
        self._target_ml: Decimal | None = None
        self._force = 100
        self._offsets = {Direction.INFUSE: 0.0, Direction.WITHDRAW: 0.0}
        self._run_started: float | None = None
        self._run_seconds = 0
        self.commands = 0

    # ------------------------------------------------------------------ WireHandler
    def feed(self, data: bytes, now: float) -> None:
        self._framer.feed(data, now)

    def next_request(self) -> bytes | None:
        return self._framer.next_request()

    def handle(self, request: bytes, now: float) -> bytes | None:
        try:
            command = parse_command(request)
        except HarvardCodecError:
            if not (self.alone_on_line or self.address == 0):
                return None
            if self._pump.consume_ignored_command():
                return None
            word = request.strip(b"\r\n").decode("latin-1")[:32]
            return self._reply([f"Command error: {word}", "   Unknown command"])
        if command.address is not None and command.address != self.address:
            return None
        if command.address is None and not (self.alone_on_line or self.address == 0):
            return None  # on a chain, a command without an address is pump 0's
        if self._pump.consume_ignored_command():
            return None
        self.commands += 1
        return self._reply(self._execute(command))

    def poll(self, now: float) -> bytes | None:
        return None

    def reset_link(self) -> None:
        self._framer.reset()

    def describe(self) -> dict[str, object]:
        infuse, withdraw = self._rates[Direction.INFUSE], self._rates[Direction.WITHDRAW]
        return {
            "protocol": self.protocol,
            "address": self.address,
            "baud": self._baud,
            "infuse_rate": None if infuse is None else infuse.text,
            "withdraw_rate": None if withdraw is None else withdraw.text,
            "target_ml": None if self._target_ml is None else str(self._target_ml),
            "commands": self.commands,
            "poll": self.poll_mode,
        }

    # ------------------------------------------------------------------ execution
    def _reply(self, lines: Lines) -> bytes:
        reply = encode_reply(HarvardReply(self.address, tuple(lines), self._prompt()))
        return reply + XON if self.poll_mode else reply

    def _execute(self, command: HarvardCommand) -> Lines:
        if not command.name:
            return []
        name = resolve_command(command.name)
        if name is None:
            return [f"Command error: {command.name}", "   Unknown command"]
        table: dict[str, Callable[[tuple[str, ...]], Lines]] = {
            "ver": self._ver,
            "version": self._ver,
            "address": self._address,
            "baud": self._baud_cmd,
            "poll": self._poll,
            "nvram": self._accept,
            "irate": lambda a: self._rate(Direction.INFUSE, a),
            "wrate": lambda a: self._rate(Direction.WITHDRAW, a),
            "crate": self._crate,
            "ivolume": lambda a: self._volume(Direction.INFUSE, a),
            "wvolume": lambda a: self._volume(Direction.WITHDRAW, a),
            "civolume": lambda a: self._clear(a, (Direction.INFUSE,)),
            "cwvolume": lambda a: self._clear(a, (Direction.WITHDRAW,)),
            "cvolume": lambda a: self._clear(a, (Direction.INFUSE, Direction.WITHDRAW)),
            "tvolume": self._tvolume,
            "ctvolume": self._ctvolume,
            "svolume": self._svolume,
            "diameter": self._diameter,
            "force": self._force_cmd,
            "irun": lambda a: self._run(a, Direction.INFUSE),
            "wrun": lambda a: self._run(a, Direction.WITHDRAW),
            "run": lambda a: self._run(a, None),
            "rrun": lambda a: self._run(a, "reverse"),
            "stp": self._stp,
            "status": self._status,
        }
        return table[name](command.args)

    def _ver(self, args: tuple[str, ...]) -> Lines:
        return [self._version]

    def _address(self, args: tuple[str, ...]) -> Lines:
        if args:
            return ["Command error: address", "   Not applicable"]
        return [f"Pump address is {self.address}"]

    def _baud_cmd(self, args: tuple[str, ...]) -> Lines:
        if args:
            return ["Command error: baud", "   Not applicable"]
        return [str(self._baud)]

    def _accept(self, args: tuple[str, ...]) -> Lines:
        return []

    def _poll(self, args: tuple[str, ...]) -> Lines:
        if not args:
            return ["On" if self.poll_mode else "Off"]
        word = args[0].lower()
        if word not in ("on", "off", "remote") or len(args) > 1:
            return [f"Argument error: {' '.join(args)}", "   Expected on, off or remote"]
        self.poll_mode = word == "on"
        return []

    def _rate(self, direction: Direction, args: tuple[str, ...]) -> Lines:
        snap = self._pump.snapshot()
        syringe = snap.syringe
        if not args:
            return [self._rate_text(direction, snap)]
        word = args[0].lower()
        if word == "lim" and len(args) == 1:
            low = display_rate(syringe.min_rate_ml_h, up=True)
            high = display_rate(syringe.max_rate_ml_h)
            return [f"{low.text} to {high.text}"]
        if word in ("min", "max") and len(args) == 1:
            limit = syringe.min_rate_ml_h if word == "min" else syringe.max_rate_ml_h
            rate = Rate(to_decimal(limit), ML_PER_HR)
        else:
            if len(args) != 2:
                return [f"Argument error: {' '.join(args)}", "   Expected <rate> <units>"]
            try:
                value = parse_decimal(args[0])
            except HarvardCodecError:
                return [f"Argument error: {args[0]}", "   Invalid number"]
            try:
                unit = parse_rate_unit(args[1])
            except HarvardCodecError:
                return [f"Argument error: {args[1]}", "   Invalid units"]
            rate = Rate(value, unit)
        ml_h = float(rate.ml_h)
        if not (syringe.min_rate_ml_h <= ml_h <= syringe.max_rate_ml_h):
            return [f"Argument error: {' '.join(args)}", "   Out of range"]
        if snap.direction is direction:
            try:
                self._pump.set_rate(ml_h)
            except RateOutOfRange:
                return [f"Argument error: {' '.join(args)}", "   Out of range"]
        self._rates[direction] = rate
        return []

    def _rate_text(self, direction: Direction, snap: PumpSnapshot) -> str:
        rate = self._rates[direction]
        if rate is not None and (
            snap.direction is not direction or float(rate.ml_h) == snap.set_rate_ml_h
        ):
            return rate.text
        if snap.direction is direction:
            return Rate(to_decimal(snap.set_rate_ml_h), ML_PER_HR).text
        return "0 ml/hr"

    def _crate(self, args: tuple[str, ...]) -> Lines:
        snap = self._pump.snapshot()
        if not snap.running:
            return ["0 ml/hr"]
        return [self._rate_text(snap.direction, snap)]

    def _volume(self, direction: Direction, args: tuple[str, ...]) -> Lines:
        if args:
            return [f"Argument error: {' '.join(args)}", "   Not applicable"]
        return [display_volume(self._counted_ml(direction, self._pump.snapshot())).text]

    def _counted_ml(self, direction: Direction, snap: PumpSnapshot) -> float:
        total = snap.infused_ml if direction is Direction.INFUSE else snap.withdrawn_ml
        return max(0.0, total - self._offsets[direction])

    def _clear(self, args: tuple[str, ...], directions: tuple[Direction, ...]) -> Lines:
        snap = self._pump.snapshot()
        for direction in directions:
            self._offsets[direction] = (
                snap.infused_ml if direction is Direction.INFUSE else snap.withdrawn_ml
            )
        return []

    def _tvolume(self, args: tuple[str, ...]) -> Lines:
        if not args:
            if self._target_ml is None:
                return ["Target volume not set"]
            return [display_volume(self._target_ml).text]
        try:
            volume = parse_volume(" ".join(args))
        except HarvardCodecError:
            return [f"Argument error: {' '.join(args)}", "   Expected <volume> <units>"]
        syringe = self._pump.syringe
        if not (0 < volume.ml <= to_decimal(syringe.volume_ml)):
            return [f"Argument error: {' '.join(args)}", "   Out of range"]
        self._pump.set_target_volume(float(volume.ml))
        self._target_ml = volume.ml
        return []

    def _ctvolume(self, args: tuple[str, ...]) -> Lines:
        self._pump.set_target_volume(None)
        self._target_ml = None
        return []

    def _svolume(self, args: tuple[str, ...]) -> Lines:
        syringe = self._pump.syringe
        if not args:
            return [display_volume(syringe.volume_ml).text]
        try:
            volume = parse_volume(" ".join(args))
        except HarvardCodecError:
            return [f"Argument error: {' '.join(args)}", "   Expected <volume> <units>"]
        if not (0 < volume.ml <= MAX_SYRINGE_ML):
            return [f"Argument error: {' '.join(args)}", "   Out of range"]
        try:
            self._pump.set_syringe(dataclasses.replace(syringe, volume_ml=float(volume.ml)))
        except NotApplicable as exc:
            return ["Command error: svolume", f"   {exc}"]
        return []

    def _diameter(self, args: tuple[str, ...]) -> Lines:
        syringe = self._pump.syringe
        if not args:
            return [f"{syringe.inner_diameter_mm:.4f} mm"]
        if len(args) > 2 or (len(args) == 2 and args[1].lower() != "mm"):
            return [f"Argument error: {' '.join(args)}", "   Expected <diameter> [mm]"]
        try:
            value = parse_decimal(args[0])
        except HarvardCodecError:
            return [f"Argument error: {args[0]}", "   Invalid number"]
        low, high = DIAMETER_RANGE_MM
        if not (low <= value <= high):
            return [f"Argument error: {args[0]}", "   Out of range"]
        try:
            self._pump.set_syringe(syringe_for_bore(float(value), syringe))
        except NotApplicable as exc:
            return ["Command error: diameter", f"   {exc}"]
        return []

    def _force_cmd(self, args: tuple[str, ...]) -> Lines:
        if not args:
            return [f"{self._force}%"]
        text = args[0].rstrip("%")
        if not (text.isascii() and text.isdigit()) or not (1 <= int(text) <= 100):
            return [f"Argument error: {args[0]}", "   Out of range"]
        self._force = int(text)
        return []

    def _run(self, args: tuple[str, ...], which: Direction | str | None) -> Lines:
        snap = self._pump.snapshot()
        if which == "reverse":
            direction = (
                Direction.WITHDRAW if snap.direction is Direction.INFUSE else Direction.INFUSE
            )
        elif isinstance(which, Direction):
            direction = which
        else:
            direction = snap.direction
        rate = self._rates[direction]
        if snap.running and snap.direction is direction:
            return []
        if rate is None:
            return [f"Command error: {'irun' if direction is Direction.INFUSE else 'wrun'}",
                    "   Rate not set"]  # fmt: skip
        try:
            self._pump.set_direction(direction)
            self._pump.set_rate(float(rate.ml_h))
            self._pump.start()
        except RateOutOfRange:
            return ["Command error: run", "   Out of range"]
        except NotApplicable as exc:
            if self._stalled(self._pump.snapshot()):
                return []  # the motor tried and stalled: the prompt says so
            return ["Command error: run", f"   {exc}"]
        self._run_started = self._pump.snapshot().time
        return []

    def _stp(self, args: tuple[str, ...]) -> Lines:
        self._pump.stop()
        return []

    def _status(self, args: tuple[str, ...]) -> Lines:
        snap = self._pump.snapshot()
        direction = snap.direction
        rate_fl_s = 0
        if snap.running:
            rate_fl_s = int(Decimal(repr(snap.plunger_rate_ml_h)) * FL_PER_ML / 3600)
        if self._run_started is not None:
            elapsed = max(0, int(snap.time - self._run_started))
            self._run_seconds = elapsed
            if not snap.running:
                self._run_started = None
        volume_fl = int(Decimal(repr(self._counted_ml(direction, snap))) * FL_PER_ML)
        letter = "i" if direction is Direction.INFUSE else "w"
        flags = (
            (letter.upper() if snap.running else letter)
            + "."
            + ("S" if self._stalled(snap) else ".")
            + "."
            + letter.upper()
            + ("T" if snap.target_reached else ".")
        )
        return [HarvardStatus(rate_fl_s, self._run_seconds, volume_fl, flags).text]

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _stalled(snap: PumpSnapshot) -> bool:
        return bool(snap.alarms & STALL_ALARMS)

    def _prompt(self) -> Prompt:
        snap = self._pump.snapshot()
        if snap.running:
            return Prompt.INFUSING if snap.direction is Direction.INFUSE else Prompt.WITHDRAWING
        if self._stalled(snap):
            return Prompt.STALLED
        if snap.target_reached:
            return Prompt.TARGET_REACHED
        return Prompt.IDLE
