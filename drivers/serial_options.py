"""The options every serial pump driver checks the same way, named in each error.

Both line-protocol families (NE-1000, Harvard) take an address 0-99, a baud rate from
their own list, a reply deadline and a settle time; one check keeps their messages and
bounds from drifting apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.lines import SharedLine


def check_serial_options(
    family: str,
    *,
    address: int,
    baud: int,
    baud_rates: Sequence[int],
    reply_timeout_s: float,
    settle_s: float,
) -> None:
    if not (0 <= address <= 99):
        raise ValueError(f"{family} address must be 0-99, got {address}")
    if baud not in baud_rates:
        raise ValueError(f"{family} baud must be one of {tuple(baud_rates)}, got {baud}")
    if not (0 < reply_timeout_s <= 30):
        raise ValueError(f"{family} reply_timeout_s must be > 0 and <= 30 s, got {reply_timeout_s}")
    if not (0 <= settle_s <= 1):
        raise ValueError(f"{family} settle_s must be 0-1 s, got {settle_s}")


def resolve_port(
    family: str,
    *,
    port: str | None,
    baud: int | None,
    line: SharedLine | None,
    default_baud: int,
) -> tuple[str, int]:
    """The port name and baud rate of a driver given either a port of its own or a shared
    line (``drivers.lines``): exactly one of them, and the baud is the line's on a line."""
    if line is not None:
        if port is not None:
            raise ValueError(f"{family}: give port= or line=, not both (line {line.name})")
        if baud is not None:
            raise ValueError(
                f"{family}: baud belongs to the line ({line.name}: {line.spec.baud}); "
                "leave it out when line= is given"
            )
        return line.name, line.spec.baud
    if port is None:
        raise ValueError(f"{family}: port= (a serial device) or line= (a shared line) is required")
    return port, default_baud if baud is None else baud


def serial_device(port: str | None, line: SharedLine | None) -> str:
    """The serial device a driver opens (its line's, on a shared line), as the config
    names it, or "" when it opens none: a TCP line, a network URL (``socket://``,
    ``rfc2217://``: an address, which no reboot gives to another adapter), or no port (a
    Modbus driver on TCP). pyserial's wrappers of a device (``spy://``, ``alt://``) give
    the device they wrap; ``hwgrep://`` (the first adapter that matches) is kept as it
    is. What ``PumpDriver.serial_port`` reports."""
    if line is not None:
        port = line.spec.port if line.spec.kind == "serial" else None
    if port is None or port.startswith(NETWORK_URLS):
        return ""
    if port.startswith(WRAPPER_URLS):
        return port.split("://", 1)[1].split("?", 1)[0]
    return port


#: pyserial URLs that name a network address, not a device
NETWORK_URLS = ("socket://", "rfc2217://")
#: pyserial URLs that wrap a device path (``spy:///dev/ttyUSB0?file=...``)
WRAPPER_URLS = ("spy://", "alt://")
