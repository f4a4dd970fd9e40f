"""GPIO for the safety process: pump-enable relay, alarm, watchdog heartbeat, stop button.

``open_gpio("rpi")`` on a Raspberry Pi, ``open_gpio("simulated", state_dir=...)``
anywhere else. Backends are imported by name when chosen, so ``RPi.GPIO`` is needed only
on the Pi. The fail-safe states are documented in ``drivers.gpio.base``.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.gpio.base import GpioConfig, GpioConfigError, GpioError, GpioInterface, Pull
from drivers.loading import DriverLoadError, check_options, resolve

#: backend name -> "module:Class"
GPIO_BACKENDS: Mapping[str, str] = {
    "rpi": "drivers.gpio.rpi:RpiGpio",
    "simulated": "drivers.gpio.simulated:SimulatedGpio",
}

__all__ = [
    "GPIO_BACKENDS",
    "GpioConfig",
    "GpioConfigError",
    "GpioError",
    "GpioInterface",
    "Pull",
    "open_gpio",
]


def open_gpio(backend: str, **options: object) -> GpioInterface:
    """Build the backend, drive the fail-safe open levels, return it open.

    ``config`` may be a ``GpioConfig`` or a mapping of its fields (a TOML table).
    """
    try:
        target = GPIO_BACKENDS[backend]
    except KeyError:
        raise GpioConfigError(
            f"unknown GPIO backend {backend!r}; known: {', '.join(sorted(GPIO_BACKENDS))}"
        ) from None
    try:
        cls = resolve(target, kind="GPIO backend", name=backend)
        check_options(cls, options, kind="GPIO backend", name=backend)
    except DriverLoadError as exc:
        raise GpioError(str(exc)) from exc
    config = options.get("config")
    if isinstance(config, Mapping):
        options = {**options, "config": GpioConfig.from_mapping(config)}
    gpio: GpioInterface = cls(**options)
    gpio.open()
    return gpio
