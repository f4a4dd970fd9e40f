"""GPIO without a Pi: pin states in a JSON file that any other process can read.

The hardware-in-the-loop suite and the demo run the safety process as a real process and
need to see what it does to its pins (did the interlock cut the pump? is the alarm on? is
the heartbeat still toggling?) and to press its stop button from outside. A directory
holds two small files, each written whole to a temporary file and renamed over the old
one (``os.replace``), so a reader never sees half a file:

- ``pins.json``, written by the backend on every output change and every debounced
  button change: pin modes and levels, the logical state of each function, the
  heartbeat toggle count, the writer's pid.
- ``inputs.json``, written by the outside world (``press_stop_button`` /
  ``release_stop_button``): whether the stop button is held down. Separate from
  ``pins.json`` so the two writers never overwrite each other's state.

The button is polled (see ``drivers.gpio.base``): each poll reads ``inputs.json``. A press
is *held* until released, as a finger holds a real button, so the debounce sees it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from drivers.gpio.base import GpioConfig, GpioError, GpioInterface, Pull
from firmware_bridge.clock import Clock

PINS_FILE = "pins.json"
INPUTS_FILE = "inputs.json"


def _state_dir(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.parent if p.name in (PINS_FILE, INPUTS_FILE) else p


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise GpioError(f"simulated GPIO file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GpioError(f"simulated GPIO file {path} must hold a JSON object")
    return data


def read_sim_pins(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The published pin state (``{}`` before the backend first opened)."""
    return _read_json(_state_dir(path) / PINS_FILE)


def press_stop_button(path: str | os.PathLike[str]) -> None:
    """Hold the simulated stop button down (until ``release_stop_button``)."""
    _set_stop_button(path, pressed=True)


def release_stop_button(path: str | os.PathLike[str]) -> None:
    _set_stop_button(path, pressed=False)


def _set_stop_button(path: str | os.PathLike[str], *, pressed: bool) -> None:
    d = _state_dir(path)
    d.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(d / INPUTS_FILE, {"stop_button_pressed": pressed})


class SimulatedGpio(GpioInterface):
    """Pins in ``state_dir``; observable with ``read_sim_pins(state_dir)``."""

    backend = "simulated"

    def __init__(
        self,
        config: GpioConfig | None = None,
        *,
        state_dir: str | os.PathLike[str],
        clock: Clock | None = None,
    ) -> None:
        super().__init__(config, clock=clock)
        self.state_dir = Path(state_dir)
        self._pins: dict[int, dict[str, Any]] = {}
        self._toggles = 0

    @property
    def pins_path(self) -> Path:
        return self.state_dir / PINS_FILE

    # ------------------------------------------------------------ primitives
    def _setup_output(self, pin: int, level: bool) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._pins[pin] = {"mode": "out", "level": level}
        self._publish()

    def _setup_input(self, pin: int, pull: Pull) -> None:
        self._pins[pin] = {"mode": "in", "pull": str(pull), "level": self._input_level()}
        self._publish()

    def _write(self, pin: int, level: bool) -> None:
        if self._pins.get(pin, {}).get("mode") != "out":
            raise GpioError(f"simulated GPIO: BCM pin {pin} is not set up as an output")
        if pin == self.config.heartbeat_pin and level != self._pins[pin]["level"]:
            self._toggles += 1
        self._pins[pin]["level"] = level
        self._publish()

    def _read(self, pin: int) -> bool:
        entry = self._pins.get(pin)
        if entry is None or entry.get("mode") != "in":
            raise GpioError(f"simulated GPIO: BCM pin {pin} is not set up as an input")
        level = self._input_level()
        if level != entry["level"]:
            entry["level"] = level
            self._publish()
        return level

    def _release(self, pins: tuple[int, ...]) -> None:
        for pin in pins:
            self._pins[pin] = {"mode": "released", "level": None}
        self._publish()

    def _state_changed(self) -> None:
        self._publish()

    # ------------------------------------------------------------ internals
    def _input_level(self) -> bool:
        """Electrical level of the stop pin: the active level while the button is held."""
        pressed = bool(_read_json(self.state_dir / INPUTS_FILE).get("stop_button_pressed"))
        active_level = not self.config.stop_button_active_low
        return active_level if pressed else not active_level

    def _publish(self) -> None:
        c = self.config
        by_function = {
            "pump_enable": c.pump_enable_pin,
            "alarm": c.alarm_pin,
            "heartbeat": c.heartbeat_pin,
            "stop_button": c.stop_button_pin,
        }
        state: dict[str, Any] = {
            "backend": self.backend,
            "pid": os.getpid(),
            "open": self._opened and not self._closed,
            "pins": {str(pin): dict(v) for pin, v in sorted(self._pins.items())},
            "functions": {name: pin for name, pin in by_function.items()},
            "pump_enabled": self._pump_enabled,
            "channel_enable_pins": dict(c.channel_enable_pins),
            "channel_enabled": dict(self._channel_enabled),
            "alarm_on": self._alarm,
            "heartbeat_level": self._heartbeat,
            "heartbeat_toggles": self._toggles,
            "stop_pressed": self._debouncer.active,
            "stop_press_count": self._stop_presses,
        }
        _write_json_atomic(self.pins_path, state)
