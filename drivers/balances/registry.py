"""Balance drivers by name, imported only when asked for (as ``drivers.pumps.registry`` does for
pumps): a bench without a balance needs none of their libraries."""

from __future__ import annotations

from collections.abc import Mapping

from drivers.balances.base import Balance
from drivers.loading import DriverUnavailableError, UnknownDriverError, check_options, resolve

#: registry name -> "module:Class" (Sartorius and Ohaus protocols can follow here)
BALANCES: Mapping[str, str] = {
    "mtsics": "drivers.balances.mtsics:MtSicsBalance",
}


def known_balances() -> tuple[str, ...]:
    return tuple(sorted(BALANCES))


def balance_class(name: str) -> type[Balance]:
    try:
        target = BALANCES[name]
    except KeyError:
        raise UnknownDriverError(
            f"unknown balance driver {name!r}; known: {', '.join(known_balances())}"
        ) from None
    cls = resolve(target, kind="balance driver", name=name)
    if not (isinstance(cls, type) and issubclass(cls, Balance)):
        raise DriverUnavailableError(f"balance driver {name!r}: {target!r} is not a Balance")
    return cls


def load_balance(name: str, **options: object) -> Balance:
    """A new, not yet connected, balance: ``load_balance("mtsics", port="/dev/ttyUSB1")``."""
    cls = balance_class(name)
    check_options(cls, options, kind="balance driver", name=name)
    return cls(**options)
