"""Loading a device class by name, only when asked for (the python-can ``BACKENDS`` idea).

A bench that drives only the mock must not need pyserial or pymodbus installed, and a
broken optional library must not take down the safety process unless its device is the
one configured. So each family's table (pumps: ``drivers.pumps.registry``; GPIO backends:
``drivers.gpio``) holds *strings*; ``resolve`` imports the one module named and turns the
two ways that can fail into errors an operator can act on: a missing library names the
package to install, an unknown option names the option (``check_options``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

#: top-level module a driver may need -> what to install to get it
OPTIONAL_PACKAGES: Mapping[str, str] = {
    "serial": "pyserial",
    "pymodbus": "pymodbus[serial]>=3.16.1,<3.17",
    "RPi": "rpi-lgpio (any Raspberry Pi, Pi 5 included) or RPi.GPIO",
    "lgpio": "rpi-lgpio",
}


class DriverLoadError(Exception):
    """Base of the registry's errors: the message says what to do about it."""


class UnknownDriverError(DriverLoadError, LookupError):
    """No driver of that name; the message lists the known ones."""


class DriverUnavailableError(DriverLoadError, ImportError):
    """The driver needs a library that is not installed; the message names the package."""


class DriverOptionError(DriverLoadError, TypeError):
    """An option the driver's constructor does not take, or a required one left out."""


def resolve(target: str, *, kind: str, name: str) -> type[Any]:
    """Import ``"module:Attr"`` and return the attribute.

    ``kind`` and ``name`` only word the errors ("driver 'ne1000'", "GPIO backend 'rpi'").
    """
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise DriverUnavailableError(
                f"{kind} {name!r} is registered as {target!r}, but module {module_name!r} "
                "is not part of this installation"
            ) from exc
        top = missing.partition(".")[0]
        package = OPTIONAL_PACKAGES.get(top, top)
        raise DriverUnavailableError(
            f"{kind} {name!r} needs the Python module {missing!r}, which is not installed; "
            f"install {package} (e.g. pip install '{package.split(' ')[0]}')"
        ) from exc
    try:
        found: type[Any] = getattr(module, attr)
    except AttributeError:
        raise DriverUnavailableError(
            f"{kind} {name!r}: module {module_name!r} has no {attr!r}"
        ) from None
    return found


def check_options(cls: type[Any], options: Mapping[str, object], *, kind: str, name: str) -> None:
    """Report unknown and missing constructor options by name, before constructing.

    A misspelt option in a bench config (``baudrate`` for ``baud``) must fail loudly and
    say which names are accepted, not surface as Python's generic ``TypeError``.
    """
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DriverOptionError(
            f"{kind} {name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(accepted)) or 'none'}"
        )
    missing = sorted(
        n
        for n, p in params.items()
        if n in accepted and p.default is inspect.Parameter.empty and n not in options
    )
    if missing:
        raise DriverOptionError(
            f"{kind} {name!r}: missing required option(s) {', '.join(map(repr, missing))}"
        )
