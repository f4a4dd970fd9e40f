"""Pump drivers by name, imported only when asked for (``drivers.loading``).

``load_driver("ne1000", port=...)`` imports that driver's module and no other, so a bench
on the mock needs neither pyserial nor pymodbus, and checks its options by name before
constructing it.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.loading import (
    DriverUnavailableError,
    UnknownDriverError,
    check_options,
    resolve,
)
from drivers.pumps.base import PumpDriver

#: registry name -> "module:Class"
DRIVERS: Mapping[str, str] = {
    "mock": "drivers.pumps.mock:MockPumpDriver",
    "ne1000": "drivers.pumps.ne1000:Ne1000Driver",
    "harvard": "drivers.pumps.harvard:HarvardDriver",
    "modbus": "drivers.pumps.modbus:ModbusDriver",
}


def known_drivers() -> tuple[str, ...]:
    return tuple(sorted(DRIVERS))


def driver_class(name: str) -> type[PumpDriver]:
    """The class registered under ``name``, importing its module (and only that one)."""
    try:
        target = DRIVERS[name]
    except KeyError:
        raise UnknownDriverError(
            f"unknown pump driver {name!r}; known drivers: {', '.join(known_drivers())}"
        ) from None
    cls = resolve(target, kind="driver", name=name)
    if not (isinstance(cls, type) and issubclass(cls, PumpDriver)):
        raise DriverUnavailableError(f"driver {name!r}: {target!r} is not a PumpDriver")
    return cls


def load_driver(name: str, **options: object) -> PumpDriver:
    """A new, not yet connected, driver: ``load_driver("ne1000", port="/dev/ttyUSB0")``."""
    cls = driver_class(name)
    check_options(cls, options, kind="driver", name=name)
    return cls(**options)
