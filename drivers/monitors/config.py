"""Which MAP source a bench's closed loop reads: the ``[monitor]`` table of the bench config.

The bench has one config file (the safety process's, ``config/bench/*.toml``). Its
``[monitor]`` table belongs to the controller (``pumpctl run`` opens the source it names),
but the safety process validates the whole file before it starts (``python -m safety
--check``), so both read the table with this one parser: it lives here, beside the sources
it describes, where both rooms may import it (the safety process only checks the table;
it never opens a monitor).

Exactly one source::

    [monitor]
    wire = "tcp://127.0.0.1:5000"    # the monitor line protocol over TCP,
    # wire = "/dev/pts/3"            # or on a pty or serial port (an absolute path)
    # replay = "traces/map.csv"      # or a recorded trace (CSV), relative to the file

with the options of that source: ``reply_timeout_s`` and ``baud`` for ``wire``, ``speed``
for ``replay``. Every problem is a ``MonitorConfigError`` naming the field
(``monitor.wire``) and what is allowed; nothing is opened while checking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drivers.monitors.base import MapSource
from drivers.monitors.limits import (
    DEFAULT_BAUD,
    DEFAULT_REPLY_TIMEOUT_S,
    MAX_SPEED,
    REPLY_TIMEOUT_RANGE_S,
)

SOURCES = ("wire", "replay")
#: the options of each source (the table's other keys)
OPTIONS: dict[str, tuple[str, ...]] = {
    "wire": ("reply_timeout_s", "baud"),
    "replay": ("speed",),
}
#: the same ceiling as a pump line's (``drivers.lines.LineSpec.baud``)
MAX_BAUD = 4_000_000
MAX_PORT = 65535
_TCP = re.compile(r"tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(?P<port>[^\s/]*)")


class MonitorConfigError(ValueError):
    """The ``[monitor]`` table cannot be used; ``field`` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class MonitorSpec:
    """A checked ``[monitor]`` table: what to open, not an open source."""

    kind: Literal["wire", "replay"]
    #: wire: ``socket://HOST:PORT`` or a device path; replay: the file
    where: str
    reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S
    baud: int = DEFAULT_BAUD
    speed: float = 1.0

    def describe(self) -> str:
        """For people: where the MAP comes from."""
        if self.kind == "replay":
            speed = "" if self.speed == 1.0 else f" at {self.speed:g}x"
            return f"replay of {self.where}{speed}"
        return f"wire monitor at {self.where.replace('socket://', 'tcp://', 1)}"

    def source(self, clock: Callable[[], float]) -> MapSource:
        """The source (not opened). ``clock``: the clinical clock a replay plays on (a
        recorded trace is the patient's time, so it follows the bench's clinical clock)."""
        # imported here: the safety process checks this table and never builds a source
        # (its import footprint: drivers/monitors/limits.py)
        if self.kind == "replay":
            from drivers.monitors.replay import CsvReplay  # noqa: PLC0415

            return CsvReplay(self.where, clock, speed=self.speed)
        from drivers.monitors.wire import WireMonitor  # noqa: PLC0415

        return WireMonitor(self.where, reply_timeout_s=self.reply_timeout_s, baud=self.baud)


def parse_monitor(table: object, base: Path | None = None) -> MonitorSpec:
    """Check a ``[monitor]`` table. ``base``: the config file's directory, against which a
    relative replay file is resolved and then must exist (None: the shape alone is
    checked, as the safety process does)."""
    if not isinstance(table, Mapping):
        raise MonitorConfigError("monitor", "must be a table ([monitor])")
    given = [kind for kind in SOURCES if kind in table]
    if len(given) != 1:
        raise MonitorConfigError(
            "monitor",
            'give exactly one source: wire = "tcp://HOST:PORT" or a pty / serial path, '
            f'or replay = "FILE.csv" (got {", ".join(given) or "neither"})',
        )
    kind: Literal["wire", "replay"] = "wire" if given[0] == "wire" else "replay"
    allowed = (kind, *OPTIONS[kind])
    for key in table:
        if key not in allowed:
            other = next((k for k, opts in OPTIONS.items() if key in opts), None)
            why = f"applies to {other} only" if other else "is not a setting"
            raise MonitorConfigError(
                f"monitor.{key}", f"{why}; allowed with {kind}: {', '.join(allowed)}"
            )
    value = table[kind]
    if not isinstance(value, str) or not value.strip():
        raise MonitorConfigError(f"monitor.{kind}", "must be text: " + _FORMS[kind])
    if kind == "replay":
        return MonitorSpec("replay", _replay_file(value.strip(), base), speed=_speed(table))
    return MonitorSpec(
        "wire",
        _wire_port(value.strip()),
        reply_timeout_s=_number(table, "reply_timeout_s", DEFAULT_REPLY_TIMEOUT_S),
        baud=_baud(table),
    )


_FORMS = {
    "wire": '"tcp://HOST:PORT" (1-65535) or the absolute path of a pty or serial port',
    "replay": "the path of a CSV trace (docs/closed-loop.md, 'CSV replay format')",
}


def _wire_port(text: str) -> str:
    """``tcp://HOST:PORT`` -> pyserial's ``socket://HOST:PORT``; a device path as it is."""
    if "://" in text:
        match = _TCP.fullmatch(text)
        if match is None:
            raise MonitorConfigError("monitor.wire", f"{text!r}: use {_FORMS['wire']}")
        port = match.group("port")
        if not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
            raise MonitorConfigError(
                "monitor.wire", f"{text!r}: the TCP port must be 1-{MAX_PORT}, got {port!r}"
            )
        return f"socket://{match.group('host')}:{int(port)}"
    if not text.startswith("/"):
        raise MonitorConfigError("monitor.wire", f"{text!r}: use {_FORMS['wire']}")
    return text


def _replay_file(text: str, base: Path | None) -> str:
    path = Path(text).expanduser()
    if base is None:
        return str(path)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise MonitorConfigError(
            "monitor.replay", f"{path}: no such file (a relative path is relative to the config)"
        )
    return str(path)


def _number(table: Mapping[str, object], key: str, default: float) -> float:
    value = table.get(key, default)
    low, high = REPLY_TIMEOUT_RANGE_S
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and low <= value <= high)
    ):
        raise MonitorConfigError(f"monitor.{key}", f"must be {low:g}-{high:g} s, got {value!r}")
    return float(value)


def _baud(table: Mapping[str, object]) -> int:
    value = table.get("baud", DEFAULT_BAUD)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BAUD:
        raise MonitorConfigError(
            "monitor.baud", f"must be a whole number 1-{MAX_BAUD}, got {value!r}"
        )
    return value


def _speed(table: Mapping[str, object]) -> float:
    value = table.get("speed", 1.0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and 0 < value <= MAX_SPEED)
    ):
        raise MonitorConfigError(
            "monitor.speed", f"must be above 0 and at most {MAX_SPEED:g}, got {value!r}"
        )
    return float(value)
