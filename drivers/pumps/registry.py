"""Pump drivers by name, imported only when asked for (``drivers.loading``).

``load_driver("ne1000", port=...)`` imports that driver's module and no other, so a bench
on the mock needs neither pyserial nor pymodbus, and checks its options by name before
constructing it.

What each driver's pumps can hold (a syringe, a bag) is declared here too, by name
(``CONTAINER_KINDS``), so that a config check can refuse a bag on a syringe pump before
anything is imported or opened, instead of the driver refusing it at start where it reads
as an unreachable pump.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

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

ContainerKind = Literal["syringe", "bag"]

#: registry name -> the containers its pumps hold. Mirrors what each driver's
#: ``configure_syringe`` refuses (``refuse_bag`` in ne1000 and harvard; the mock builds a
#: volumetric pump for a bag); kept beside ``DRIVERS`` so that a new driver declares both.
#: A Modbus pump's kind is its register map's: see ``container_kinds``.
CONTAINER_KINDS: Mapping[str, frozenset[ContainerKind]] = {
    "mock": frozenset({"syringe", "bag"}),
    "ne1000": frozenset({"syringe"}),
    "harvard": frozenset({"syringe"}),
    "modbus": frozenset({"syringe", "bag"}),
}


def container_kinds(name: str, options: Mapping[str, object] | None = None) -> frozenset[str]:
    """What a pump of driver ``name`` with these constructor ``options`` holds.

    For ``modbus`` the register map decides, as ``ModbusDriver.configure_syringe`` does:
    a map with a syringe-diameter point (a syringe drive) holds syringes only. The map is
    read with ``firmware_bridge`` alone (no Modbus or serial library); a map that cannot
    be read leaves the declaration as it is, for the driver's own check to name.
    """
    try:
        declared: frozenset[str] = CONTAINER_KINDS[name]
    except KeyError:
        raise UnknownDriverError(
            f"unknown pump driver {name!r}; known drivers: {', '.join(known_drivers())}"
        ) from None
    if name != "modbus":
        return declared
    from firmware_bridge.modbus.register_map import (  # noqa: PLC0415 - modbus only
        Role,
        load_register_map,
        resolve_map_path,
    )

    map_path = (options or {}).get("map_path")
    try:
        register_map = load_register_map(
            resolve_map_path(map_path if isinstance(map_path, str) else None)
        )
    except (OSError, ValueError):
        return declared
    if register_map.point(Role.SYRINGE_DIAMETER) is not None:
        return frozenset({"syringe"})
    return declared


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
