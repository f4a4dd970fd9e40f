"""Where the controller finds its safety process: read from the bench's config file.

A bench has one config file, the safety process's (``config/bench/*.toml``, reference
``config/bench/demo-safety.toml``). The controller reads only what it needs from it:
``[paths]`` (socket, key file, drug library, the safety journal, beside which the
controller keeps its own), ``[clock]`` (the clinical clock) and ``[monitor]`` (the MAP
source of the closed loop, its own table: ``drivers.monitors.config``). The rest of the
file belongs to the safety process, which validates it in full (``python -m safety
--check``, the ``[monitor]`` table included); the controller does not import that
validator (``safety.host`` is the process's internals), so it checks its sections
itself, with the same rules: unknown keys are an error, relative paths are relative to
the config file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import ControllerError
from drivers.monitors.config import MonitorConfigError, MonitorSpec, parse_monitor
from firmware_bridge.clock import clock_from_spec

#: the embedded default bench (mock pump, simulated GPIO, 60x clock); $PUMPCTL_CONFIG wins
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "bench" / "demo-safety.toml"

#: the safety process's defaults, for a config that leaves [paths] out
_DEFAULT_PATHS = {
    "journal": "/var/lib/pumpctl/safety-journal.sqlite",
    "socket": "/run/pumpctl/safety.sock",
    "key_file": "/etc/pumpctl/ipc.key",
}
_PATH_KEYS = ("journal", "socket", "key_file", "library")
#: [paths] keys that are someone else's (the observers' key: never the controller's)
_OTHERS_PATH_KEYS = ("observer_key_file",)
CONTROLLER_JOURNAL_NAME = "controller-journal.sqlite"


class BenchConfigError(ControllerError):
    """The bench config cannot be used; the message names the file and the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, code="bad_config", field=field)


@dataclass(frozen=True)
class BenchConfig:
    """The paths and clock a controller needs to reach and follow its bench's safety
    process, read from the bench's config file (``path``)."""

    path: Path
    socket: Path
    key_file: Path
    library: Path | None  # None: the default library (config/drug_library.toml)
    safety_journal: Path
    clinical_clock: str  # as the safety process runs it ("real", "scaled:60", ...)
    #: the closed loop's MAP source (``[monitor]``); None: the bench has none
    monitor: MonitorSpec | None = None

    @property
    def controller_journal(self) -> Path:
        """The controller's own journal, next to the safety process's."""
        return self.safety_journal.parent / CONTROLLER_JOURNAL_NAME


def default_config() -> Path:
    override = os.environ.get("PUMPCTL_CONFIG")
    return Path(override) if override else DEFAULT_CONFIG


def load_bench_config(path: str | os.PathLike[str] | None = None) -> BenchConfig:
    """Read the bench from a safety config file (default: ``default_config()``)."""
    config = Path(path) if path is not None else default_config()
    try:
        with config.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise BenchConfigError(f"bench config {config}: no such file", "config") from None
    except OSError as exc:
        raise BenchConfigError(f"bench config {config}: {exc.strerror or exc}", "config") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchConfigError(f"bench config {config}: not valid TOML: {exc}", "config") from None
    paths = _section(data, "paths", config)
    clock = _section(data, "clock", config)
    for key in paths:
        if key not in _PATH_KEYS and key not in _OTHERS_PATH_KEYS:
            raise BenchConfigError(
                f"bench config {config}: paths.{key} is not a setting; allowed: "
                f"{', '.join(_PATH_KEYS)}",
                f"paths.{key}",
            )
    for key in clock:
        if key != "clinical":
            raise BenchConfigError(
                f"bench config {config}: clock.{key} is not a setting; allowed: clinical",
                f"clock.{key}",
            )
    base = config.resolve().parent
    resolved = {
        key: _path(paths.get(key, _DEFAULT_PATHS.get(key)), f"paths.{key}", base, config)
        for key in _PATH_KEYS
    }
    spec = clock.get("clinical", "real")
    if not isinstance(spec, str):
        raise BenchConfigError(
            f'bench config {config}: clock.clinical must be text such as "real" or "scaled:60"',
            "clock.clinical",
        )
    try:
        clock_from_spec(spec)
    except ValueError as exc:
        raise BenchConfigError(
            f"bench config {config}: clock.clinical: {exc}", "clock.clinical"
        ) from None
    monitor = None
    if "monitor" in data:
        try:
            monitor = parse_monitor(data["monitor"], base)
        except MonitorConfigError as exc:
            raise BenchConfigError(f"bench config {config}: {exc}", exc.field) from None
    socket, key_file, journal = resolved["socket"], resolved["key_file"], resolved["journal"]
    assert socket is not None and key_file is not None and journal is not None
    return BenchConfig(
        path=config,
        socket=socket,
        key_file=key_file,
        library=resolved["library"],
        safety_journal=journal,
        clinical_clock=spec,
        monitor=monitor,
    )


def _section(data: dict[str, Any], name: str, config: Path) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise BenchConfigError(f"bench config {config}: [{name}] must be a table", name)
    return section


def _path(value: object, field: str, base: Path, config: Path) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BenchConfigError(f"bench config {config}: {field} must be a path", field)
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
