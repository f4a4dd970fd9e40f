"""Fault injection, switchable while an emulator or the mock driver runs.

Two kinds: *wire* faults act on the bytes between host and pump (lost, late, corrupted,
garbage, silence, disconnect) and *pump* faults act on the physics (occlusion, empty
syringe, stall, power cycle; and on a volumetric pump: air in the line, upstream
occlusion, an open door). ``patient_line=off|on`` is not a fault but the line's state:
disconnected from the patient (priming to waste) or connected. All are named by short
strings so the same words work on the command line (``--faults occlusion,delay=0.2``), on
an emulator's control channel and in scenario files.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from firmware_bridge.pump_model import NotApplicable, SimulatedPump


class ReplyAction(enum.Enum):
    """What the wire does with one request and its reply."""

    NORMAL = "normal"
    DROP_REQUEST = "drop_request"  # lost on the way in: not executed, no reply
    LOSE_ACK = "lose_ack"  # executed, reply lost
    CORRUPT = "corrupt"  # executed, one byte of the reply flipped
    GARBAGE = "garbage"  # not executed, random bytes come back
    SILENT = "silent"  # not executed, nothing comes back


@dataclass(frozen=True)
class WireFaultState:
    drop_next: int
    lose_ack_next: int
    corrupt_next: int
    delay_s: float
    garbage: bool
    silent: bool
    disconnect_requested: bool


WIRE_FAULTS = ("drop", "lose_ack", "corrupt", "delay", "garbage", "silent", "disconnect")
PUMP_FAULTS = (
    "occlusion",
    "stall",
    "empty",
    "power_cycle",
    "air_in_line",
    "upstream_occlusion",
    "door_open",
    "patient_line",
)
ALL_FAULTS = WIRE_FAULTS + PUMP_FAULTS


class FaultSpecError(ValueError):
    """A fault name or value that does not parse; the message lists what is allowed."""


class WireFaults:
    """Thread-safe switchboard consulted once per request by a transport."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drop_next = 0
        self._lose_ack_next = 0
        self._corrupt_next = 0
        self._delay_s = 0.0
        self._garbage = False
        self._silent = False
        self._disconnect = False

    def state(self) -> WireFaultState:
        with self._lock:
            return WireFaultState(
                self._drop_next,
                self._lose_ack_next,
                self._corrupt_next,
                self._delay_s,
                self._garbage,
                self._silent,
                self._disconnect,
            )

    def drop_next(self, n: int = 1) -> None:
        with self._lock:
            self._drop_next += _count(n, "drop")

    def lose_ack_next(self, n: int = 1) -> None:
        with self._lock:
            self._lose_ack_next += _count(n, "lose_ack")

    def corrupt_next(self, n: int = 1) -> None:
        with self._lock:
            self._corrupt_next += _count(n, "corrupt")

    def set_delay(self, seconds: float) -> None:
        if not (0.0 <= seconds <= 60.0):
            raise FaultSpecError(f"delay must be 0-60 s, got {seconds}")
        with self._lock:
            self._delay_s = seconds

    def set_garbage(self, on: bool) -> None:
        with self._lock:
            self._garbage = on

    def set_silent(self, on: bool) -> None:
        with self._lock:
            self._silent = on

    def request_disconnect(self) -> None:
        with self._lock:
            self._disconnect = True

    def take_disconnect(self) -> bool:
        """True once after a disconnect was requested; the transport then closes."""
        with self._lock:
            requested, self._disconnect = self._disconnect, False
            return requested

    @property
    def delay_s(self) -> float:
        with self._lock:
            return self._delay_s

    def next_action(self) -> ReplyAction:
        """Consume the fault that applies to the request just received."""
        with self._lock:
            if self._silent:
                return ReplyAction.SILENT
            if self._garbage:
                return ReplyAction.GARBAGE
            if self._drop_next:
                self._drop_next -= 1
                return ReplyAction.DROP_REQUEST
            if self._lose_ack_next:
                self._lose_ack_next -= 1
                return ReplyAction.LOSE_ACK
            if self._corrupt_next:
                self._corrupt_next -= 1
                return ReplyAction.CORRUPT
            return ReplyAction.NORMAL

    def clear(self) -> None:
        with self._lock:
            self._drop_next = self._lose_ack_next = self._corrupt_next = 0
            self._delay_s = 0.0
            self._garbage = self._silent = self._disconnect = False


def _count(n: int, name: str) -> int:
    if not (0 <= n <= 1000):
        raise FaultSpecError(f"{name}: count must be 0-1000, got {n}")
    return n


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("on", "1", "true", "yes"):
        return True
    if value.lower() in ("off", "0", "false", "no"):
        return False
    raise FaultSpecError(f"{name}: expected on/off, got {value!r}")


def apply_fault(spec: str, pump: SimulatedPump | None, wire: WireFaults | None) -> None:
    """Apply one fault given as ``name`` or ``name=value``.

    Wire faults: ``drop[=N]``, ``lose_ack[=N]``, ``corrupt[=N]``, ``delay=SECONDS``,
    ``garbage[=on|off]``, ``silent[=on|off]``, ``disconnect``. Pump faults:
    ``occlusion[=on|off]``, ``stall[=on|off]``, ``empty[=REMAINING_ML]``, ``power_cycle``;
    volumetric pumps only: ``air_in_line[=on|off]``, ``upstream_occlusion[=on|off]``,
    ``door_open[=on|off]``; the line: ``patient_line=off|on``.
    ``clear`` switches every wire fault off and clears occlusion and stall.
    """
    name, sep, raw = spec.strip().partition("=")
    name = name.strip().lower().replace("-", "_")
    value = raw.strip() if sep else None
    if name == "clear":
        if wire is not None:
            wire.clear()
        if pump is not None:
            pump.set_occlusion(False)
            pump.set_stall(False)
            if pump.kind == "volumetric":
                pump.set_air_in_line(False)
                pump.set_upstream_occlusion(False)
                pump.set_door_open(False)
        return
    if name not in ALL_FAULTS:
        raise FaultSpecError(f"unknown fault {name!r}; known: {', '.join(ALL_FAULTS)}, clear")
    if name in WIRE_FAULTS:
        if wire is None:
            raise FaultSpecError(f"fault {name!r} acts on a wire, and this pump has none")
        _apply_wire(name, value, wire)
        return
    if pump is None:
        raise FaultSpecError(f"fault {name!r} needs a simulated pump")
    _apply_pump(name, value, pump)


def _apply_wire(name: str, value: str | None, wire: WireFaults) -> None:
    try:
        if name == "drop":
            wire.drop_next(int(value) if value else 1)
        elif name == "lose_ack":
            wire.lose_ack_next(int(value) if value else 1)
        elif name == "corrupt":
            wire.corrupt_next(int(value) if value else 1)
        elif name == "delay":
            wire.set_delay(float(value) if value else 0.0)
        elif name == "garbage":
            wire.set_garbage(_flag(value, name))
        elif name == "silent":
            wire.set_silent(_flag(value, name))
        elif name == "disconnect":
            wire.request_disconnect()
    except ValueError as exc:
        if isinstance(exc, FaultSpecError):
            raise
        raise FaultSpecError(f"{name}: bad value {value!r}") from None


def _apply_pump(name: str, value: str | None, pump: SimulatedPump) -> None:
    try:
        _apply_pump_fault(name, value, pump)
    except NotApplicable as exc:
        raise FaultSpecError(f"{name}: {exc}") from None


def _apply_pump_fault(name: str, value: str | None, pump: SimulatedPump) -> None:
    if name == "air_in_line":
        pump.set_air_in_line(_flag(value, name))
    elif name == "upstream_occlusion":
        pump.set_upstream_occlusion(_flag(value, name))
    elif name == "door_open":
        pump.set_door_open(_flag(value, name))
    elif name == "patient_line":
        if value is None:
            raise FaultSpecError("patient_line: say on (connected) or off (to waste)")
        pump.connect_line(_flag(value, name))
    elif name == "occlusion":
        pump.set_occlusion(_flag(value, name))
    elif name == "stall":
        pump.set_stall(_flag(value, name))
    elif name == "empty":
        try:
            remaining = float(value) if value else 0.0
        except ValueError:
            raise FaultSpecError(f"empty: remaining volume must be mL, got {value!r}") from None
        pump.empty_syringe(remaining)
    elif name == "power_cycle":
        pump.power_cycle()


def apply_faults(specs: str, pump: SimulatedPump | None, wire: WireFaults | None) -> None:
    """Apply a comma-separated list, e.g. ``"occlusion,delay=0.2"``."""
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        apply_fault(spec, pump, wire)
