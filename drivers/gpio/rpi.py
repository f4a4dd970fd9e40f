"""GPIO on a Raspberry Pi through the RPi.GPIO API.

The module ``RPi.GPIO`` comes from either the original RPi.GPIO package (Pi 4 and older;
it cannot drive a Pi 5) or rpi-lgpio, a drop-in that provides the same module on every Pi
(the ``pi`` extra installs it). It is imported when this backend is opened, never before,
so a laptop or CI machine runs everything else without it.

Calls used, all in the documented RPi.GPIO API: ``setmode(BCM)`` (pins by Broadcom
number, the numbering in our config); ``setup(pin, OUT, initial=level)`` so an output
starts at its fail-safe level with no glitch through the other; ``setup(pin, IN,
pull_up_down=PUD_UP|PUD_DOWN|PUD_OFF)``; ``output``; ``input``; ``cleanup(pins)`` for
our pins only, leaving any other user's pins alone.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from drivers.gpio.base import GpioConfig, GpioError, GpioInterface, Pull
from firmware_bridge.clock import Clock

INSTALL_HINT = (
    "install rpi-lgpio (any Raspberry Pi, Pi 5 included: pip install 'pumpctl[pi]' or "
    "pip install rpi-lgpio) or RPi.GPIO (Pi 4 and older)"
)


class GpioUnavailable(GpioError, ImportError):
    """The RPi.GPIO module is missing or refuses to run on this machine."""


def import_rpi_gpio() -> ModuleType:
    """Import ``RPi.GPIO`` now, turning its failures into one actionable error."""
    try:
        return importlib.import_module("RPi.GPIO")  # optional: imported only on use
    except ImportError as exc:
        raise GpioUnavailable(
            f"GPIO backend 'rpi' needs the Python module RPi.GPIO, which is not installed; "
            f"{INSTALL_HINT}"
        ) from exc
    except RuntimeError as exc:  # RPi.GPIO raises this off a Pi or without /dev/gpiomem
        raise GpioUnavailable(
            f"GPIO backend 'rpi': RPi.GPIO cannot run here ({exc}); use backend "
            "'simulated' off the Pi, or check permissions on /dev/gpiomem or /dev/gpiochip*"
        ) from exc


class RpiGpio(GpioInterface):
    """Pins driven through ``RPi.GPIO`` (imported in ``open``)."""

    backend = "rpi"

    def __init__(self, config: GpioConfig | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self._gpio: Any = None

    def open(self) -> None:
        if self._gpio is None:
            self._gpio = import_rpi_gpio()
            self._gpio.setmode(self._gpio.BCM)
        super().open()

    def _setup_output(self, pin: int, level: bool) -> None:
        g = self._gpio
        g.setup(pin, g.OUT, initial=g.HIGH if level else g.LOW)

    def _setup_input(self, pin: int, pull: Pull) -> None:
        g = self._gpio
        pud = {Pull.UP: g.PUD_UP, Pull.DOWN: g.PUD_DOWN, Pull.OFF: g.PUD_OFF}[pull]
        g.setup(pin, g.IN, pull_up_down=pud)

    def _write(self, pin: int, level: bool) -> None:
        g = self._gpio
        g.output(pin, g.HIGH if level else g.LOW)

    def _read(self, pin: int) -> bool:
        return bool(self._gpio.input(pin))

    def _release(self, pins: tuple[int, ...]) -> None:
        self._gpio.cleanup(list(pins))
