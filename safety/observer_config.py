"""The bench config as its observers read it: the ``[telemetry]`` and ``[dashboard]``
sections, and the paths an observer needs (socket, observer key, journal, library).

Pure (pydantic and ``tomllib`` only) so that both sides can use it without breaking the
import rules: the safety process validates these sections with the rest of its file
(``safety.host.config.SafetyConfig``: a misspelt key fails ``python -m safety --check``
and the start, as everywhere in the file), and the observers (``observe``: dashboard,
telemetry publisher, fleet view), which may not import the safety host, load them here.
Every model refuses unknown keys (``extra="forbid"``); problems are reported by dotted
field path with the allowed range, as ``ObserverConfigError``.

Relative paths are resolved against the config file's directory, as the safety process
resolves its own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_SOCKET = "/run/pumpctl/safety.sock"
DEFAULT_JOURNAL = "/var/lib/pumpctl/safety-journal.sqlite"
DEFAULT_KEY_FILE = "/etc/pumpctl/ipc.key"
#: the observer key's file name, beside the controller's key unless configured
OBSERVER_KEY_NAME = "observer.key"
DEFAULT_DASHBOARD_PORT = 8765

_STRICT = ConfigDict(extra="forbid", frozen=True)
#: a bench name is one MQTT topic level and part of a file name: no wildcards, no slash
BENCH_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOPIC_PREFIX = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


class TelemetrySection(BaseModel):
    """``[telemetry]``: where the publisher (``pumpctl telemetry``) sends this bench."""

    model_config = _STRICT

    #: this bench's name on the broker (its topic level): letters, digits, ``_.-``
    bench: str = Field(pattern=BENCH_NAME)
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    #: TLS to the broker; ``ca_file`` None: the system's trusted authorities
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    #: a file holding the password (never the password itself in the config)
    password_file: str | None = None
    topic_prefix: str = Field(default="pumpctl", pattern=TOPIC_PREFIX)
    #: the durable outbox (SQLite); relative: beside the config file
    outbox: str = "telemetry-outbox.sqlite"
    #: the retained status is published again at least this often (data age on the fleet)
    status_period_s: float = Field(default=5.0, ge=0.5, le=300.0)
    keepalive_s: int = Field(default=30, ge=5, le=600)
    #: this bench's dashboard, linked from its fleet tile
    dashboard_url: str | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be a host name or address, without spaces")
        return value

    @field_validator("dashboard_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class DashboardSection(BaseModel):
    """``[dashboard]``: where ``pumpctl dashboard`` listens, and its access token."""

    model_config = _STRICT

    #: 127.0.0.1: this machine only. Any other address needs ``token_file``.
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_DASHBOARD_PORT, ge=1, le=65535)
    #: a file holding the access token (at least 16 characters)
    token_file: str | None = None


@dataclass(frozen=True)
class ObserverConfig:
    """What an observer process needs from the bench config (paths resolved)."""

    source: str
    socket: str
    observer_key_file: str
    journal: str
    library: str | None
    telemetry: TelemetrySection | None
    dashboard: DashboardSection


class ObserverConfigError(Exception):
    """The bench config cannot be used by an observer; the message names each field."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {path}: {message}" for path, message in problems)
        super().__init__(f"invalid bench config {source} ({len(problems)} problem(s)):\n{lines}")


def load_observer_config(path: str | Path) -> ObserverConfig:
    """Read the bench config file; validate what observers use; resolve its paths."""
    source = Path(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ObserverConfigError(str(source), [("(file)", exc.strerror or str(exc))]) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ObserverConfigError(str(source), [("(file)", f"not valid TOML: {exc}")]) from None
    return parse_observer_config(raw, str(source), base_dir=source.resolve().parent)


def parse_observer_config(
    raw: Mapping[str, Any], source: str = "<config>", *, base_dir: Path | None = None
) -> ObserverConfig:
    problems: list[tuple[str, str]] = []
    paths = raw.get("paths", {})
    if not isinstance(paths, Mapping):
        problems.append(("paths", "must be a table"))
        paths = {}

    def path_at(name: str, default: str | None) -> str | None:
        value = paths.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            problems.append((f"paths.{name}", "must be a path, not empty"))
            return default
        p = Path(value).expanduser()
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        return str(p)

    socket = path_at("socket", DEFAULT_SOCKET)
    key_file = path_at("key_file", DEFAULT_KEY_FILE)
    assert key_file is not None
    observer_key = path_at("observer_key_file", str(Path(key_file).with_name(OBSERVER_KEY_NAME)))
    journal = path_at("journal", DEFAULT_JOURNAL)
    library = path_at("library", None)
    telemetry: TelemetrySection | None = None
    dashboard = DashboardSection()
    for name in ("telemetry", "dashboard"):
        table = raw.get(name)
        if table is None:
            continue
        model = TelemetrySection if name == "telemetry" else DashboardSection
        try:
            value = model.model_validate(table)
        except ValidationError as exc:
            problems += [(f"{name}.{p}" if p else name, m) for p, m in field_problems(exc)]
            continue
        if isinstance(value, TelemetrySection):
            telemetry = _resolved_telemetry(value, base_dir)
        else:
            dashboard = _resolved_dashboard(value, base_dir)
    if problems:
        raise ObserverConfigError(source, problems)
    assert socket is not None and observer_key is not None and journal is not None
    return ObserverConfig(source, socket, observer_key, journal, library, telemetry, dashboard)


def _resolve(value: str | None, base_dir: Path | None) -> str | None:
    if value is None or base_dir is None:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base_dir / p)


def _resolved_telemetry(t: TelemetrySection, base_dir: Path | None) -> TelemetrySection:
    names = ("ca_file", "cert_file", "key_file", "password_file", "outbox")
    return t.model_copy(update={n: _resolve(getattr(t, n), base_dir) for n in names})


def _resolved_dashboard(d: DashboardSection, base_dir: Path | None) -> DashboardSection:
    return d.model_copy(update={"token_file": _resolve(d.token_file, base_dir)})


def field_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as (dotted field path, message naming what is allowed)."""
    out: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        elif error["type"] == "missing":
            message = "required setting is missing"
        out.append((loc, message))
    return out


__all__ = [
    "DEFAULT_DASHBOARD_PORT",
    "DEFAULT_JOURNAL",
    "DEFAULT_KEY_FILE",
    "DEFAULT_SOCKET",
    "OBSERVER_KEY_NAME",
    "DashboardSection",
    "ObserverConfig",
    "ObserverConfigError",
    "TelemetrySection",
    "field_problems",
    "load_observer_config",
    "parse_observer_config",
]
