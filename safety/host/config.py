"""The safety process's configuration: one TOML file, validated before anything starts.

A safety process that starts with a wrong pump port, an unknown syringe or a heartbeat
timeout of an hour is worse than one that refuses to start, so every field is checked
here (pydantic, ``extra="forbid"``: a misspelt key is an error, never silently ignored),
and the driver's own options are checked against the driver's constructor
(``drivers.loading.check_options``) before the port is opened. ``load_config`` turns
every problem into ``ConfigError``, whose message names each field by its dotted path
and says what is allowed; ``python -m safety`` prints it and exits with status 2.

The ``[monitor]`` table belongs to the controller (the MAP source of its closed loop);
it is checked here with the controller's own parser (``drivers.monitors.config``, which
opens nothing), so a mistake in it fails ``--check`` too.

The ``[telemetry]`` and ``[dashboard]`` sections belong to the observers (the telemetry
publisher, the dashboard); their models live in the pure ``safety.observer_config`` so
those processes can read them without the safety host, and are validated here too, so a
mistake in them fails ``python -m safety --check`` like any other.

Relative paths in the file (library, journal, socket, key files, GPIO state dir, driver
``map_path``) are resolved against the directory of the config file, so a unit file
that runs with ``/`` as its working directory finds the same files as a shell in the
repository. The reference for every field is ``config/bench/demo-safety.toml``.
"""

from __future__ import annotations

import inspect
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from drivers.gpio import GpioConfig, GpioConfigError
from drivers.lines import DIRTY_QUIET_S, LineError, LineSpec, open_line
from drivers.loading import DriverLoadError
from drivers.monitors.config import MonitorConfigError, parse_monitor
from drivers.pumps.registry import container_kinds, driver_class, load_driver
from firmware_bridge.clock import VirtualClock, clock_from_spec
from firmware_bridge.syringes import BAGS, SYRINGES, Bag, container_by_name, syringe_by_name
from safety.host.channel_names import check_channel_name
from safety.kernel.model import DEFAULT_CHANNEL
from safety.observer_config import (
    DEFAULT_JOURNAL,
    DEFAULT_KEY_FILE,
    DEFAULT_SOCKET,
    OBSERVER_KEY_NAME,
    DashboardSection,
    TelemetrySection,
)

#: Unix socket paths longer than this do not fit ``sockaddr_un`` on Linux
MAX_SOCKET_PATH = 107
#: reply timeouts one NE-1000 handshake may wait out, at worst, for a pump left in safe
#: mode (every probe's reply lost before the last; docs/safety.md, "Restart timing with
#: NE-1000s in safe mode")
NE1000_PROBE_TIMEOUTS = 4
#: the NE-1000's own bound on ``SAF n`` (docs/protocols.md)
NE1000_MAX_SAFE_MODE_S = 255

#: ``extra="forbid"``: a misspelt key is an error; ``strict``: a number is a TOML number,
#: never text that looks like one (``max_prime_ml = "5"`` is a mistake to name, as the
#: hand-written parts, ``[gpio.pins]`` and ``[monitor]``, already treat it), and a whole
#: number stays whole (``overlap_steps = 2.5`` is refused, not rounded)
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)

_DriverOptionsT = TypeVar("_DriverOptionsT", bound="_DriverOptions")


class ConfigError(Exception):
    """The config cannot be used. ``problems`` holds one ``(field path, message)`` each."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {path}: {message}" for path, message in self.problems)
        super().__init__(
            f"invalid safety config {source} ({len(self.problems)} problem(s)):\n{lines}"
        )


# --------------------------------------------------------------------------- pump


class MockPumpOptions(BaseModel):
    """The in-process simulated pump (``drivers.pumps.mock``): for demos and tests only."""

    model_config = _STRICT

    loaded_volume_ml: float | None = Field(default=None, gt=0, le=1000)
    faults: str = ""
    occlusion_alarm_mmhg: float | None = Field(default=None, gt=0, le=2000)
    near_empty_ml: float | None = Field(default=None, ge=0, le=1000)
    ignore_first_command_after_power_up: bool | None = None
    reply_timeout_s: float = Field(default=1.0, gt=0, le=60)

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: str) -> str:
        # imported here: the simulated pump is needed only to check a mock's faults, and
        # a safety process on real pumps should not carry it (memory goal, issue 14)
        from firmware_bridge.faults import FaultSpecError, WireFaults, apply_faults  # noqa: PLC0415
        from firmware_bridge.pump_model import SimulatedPump  # noqa: PLC0415

        try:  # on a throw-away pump: only the spelling is being checked
            apply_faults(value, SimulatedPump(VirtualClock()), WireFaults())
        except FaultSpecError as exc:
            raise ValueError(str(exc)) from None
        return value


class _DriverOptions(BaseModel):
    """Which driver, with which options (shared by ``[pump]`` and ``[channels.NAME]``)."""

    model_config = _STRICT

    driver: Literal["mock", "ne1000", "harvard", "modbus"]
    #: options for the ``mock`` driver (a table ``[pump.mock]``)
    mock: MockPumpOptions | None = None
    #: constructor options of a real driver (``[pump.options]``), e.g. port, address, baud
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def _check_driver(self, table: str, line: str | None = None) -> None:
        if self.driver == "mock":
            if self.options:
                raise ValueError(
                    f"driver 'mock' takes its options from [{table}.mock] "
                    "(loaded_volume_ml, faults, occlusion_alarm_mmhg, near_empty_ml, "
                    f"ignore_first_command_after_power_up, reply_timeout_s), not [{table}.options]"
                )
            if line is not None:
                raise ValueError("driver 'mock' is in-process: it is on no line")
            return
        if self.mock is not None:
            raise ValueError(f"[{table}.mock] applies only to driver 'mock', not {self.driver!r}")
        if line is not None:
            return  # checked with its line (SafetyConfig), where the line's settings are
        try:  # constructing opens nothing; it checks option names and values
            load_driver(self.driver, **self.options)
        except (DriverLoadError, ValueError, TypeError) as exc:
            raise ValueError(f"[{table}.options] for driver {self.driver!r}: {exc}") from None


class PumpConfig(_DriverOptions):
    """A one-pump bench: which pump, on which port, with which syringe (channel ``A``)."""

    syringe: str

    @field_validator("syringe")
    @classmethod
    def _known_syringe(cls, value: str) -> str:
        syringe_by_name(value)  # ValueError names the known syringes
        return value

    @model_validator(mode="after")
    def _options_fit_driver(self) -> PumpConfig:
        self._check_driver("pump")
        loaded = self.mock.loaded_volume_ml if self.mock is not None else None
        if loaded is not None:
            # checked here, not first at start: the one-pump bench becomes channel A
            # (``channel_configs``), whose own check would fail there as a traceback
            _check_loaded("mock.loaded_volume_ml", loaded, self.syringe)
        return self


def _check_loaded(field: str, loaded_ml: float, container: str) -> None:
    """A container cannot start with more than it holds (the simulated pump refuses it at
    start; on a real pump every volume the safety process predicts would be wrong)."""
    volume = container_by_name(container).volume_ml
    if loaded_ml > volume:
        raise ValueError(
            f"{field} must be at most {volume:g} mL (what {container} holds), got {loaded_ml:g}"
        )


def _check_container_fits(driver: str, options: Mapping[str, object], container: str) -> None:
    """A bag on a syringe pump (or a syringe where the pump holds bags only) is a mistake
    of the config, so it is named here: at start the driver's refusal reads as a pump
    that cannot be reached, warned about every poll."""
    held = container_kinds(driver, options)
    kind = "bag" if isinstance(container_by_name(container), Bag) else "syringe"
    if kind in held:
        return
    pump = "a syringe pump" if held == {"syringe"} else "a volumetric pump"
    fitting = [*(SYRINGES if "syringe" in held else ()), *(BAGS if "bag" in held else ())]
    raise ValueError(
        f"driver {driver!r} drives {pump}: it cannot hold container {container!r}, a "
        f"{kind}; give one of: {', '.join(fitting)}"
    )


class ChannelConfig(_DriverOptions):
    """One channel of a bench of several: a pump (on a line of its own through
    ``options``, or on a shared ``line`` at its address), the container it holds."""

    #: the syringe or bag loaded, by catalogue name (``firmware_bridge.syringes``)
    container: str
    #: what the container holds when the bench starts (default: full)
    loaded_ml: float | None = Field(default=None, gt=0, le=5000)
    #: a shared line (``[lines.NAME]``); the pump's address goes in ``options``
    #: (``address`` for ne1000 and harvard, ``device_id`` for modbus)
    line: str | None = None

    @field_validator("container")
    @classmethod
    def _known_container(cls, value: str) -> str:
        container_by_name(value)  # ValueError names the known syringes and bags
        return value

    @model_validator(mode="after")
    def _fits(self) -> ChannelConfig:
        self._check_driver("channels.NAME", self.line)
        _check_container_fits(self.driver, self.options, self.container)
        if self.loaded_ml is not None:
            _check_loaded("loaded_ml", self.loaded_ml, self.container)
        return self


class InterlockSection(BaseModel):
    """S12: "bench": one pump-enable relay for every pump (``[gpio.pins]
    pump_enable_pin``); "channel": the kernel keeps an interlock state per channel, an
    emergency stop cuts each, and each channel has its own relay (``[gpio.pins]
    channel_enable_pins``, one pin per channel, checked by ``SafetyConfig``)."""

    model_config = _STRICT

    scope: Literal["bench", "channel"] = "bench"


class RelaySection(BaseModel):
    """S15: relay handovers and container changes, on the clinical clock (the kernel's
    ``KernelConfig`` fields of the same meaning)."""

    model_config = _STRICT

    #: a standby takes over when the active container would empty within this
    handover_before_empty_min: float = Field(default=5.0, ge=0.5, le=120.0)
    #: medium alarm when a container would empty within this with no standby armed
    warn_before_empty_min: float = Field(default=30.0, ge=1.0, le=600.0)
    #: an overlap handover: its steps, each at least this long
    overlap_steps: int = Field(default=4, ge=2, le=20)
    overlap_step_min: float = Field(default=1.0, ge=0.1, le=30.0)
    #: a container change may pause a channel at most this long (alarmed past it)
    max_container_pause_min: float = Field(default=3.0, ge=0.5, le=30.0)
    #: the largest prime a request may ask for
    max_prime_ml: float = Field(default=5.0, gt=0.0, le=50.0)

    @model_validator(mode="after")
    def _warn_before_handover(self) -> RelaySection:
        if self.warn_before_empty_min <= self.handover_before_empty_min:
            raise ValueError(
                f"warn_before_empty_min ({self.warn_before_empty_min:g}) must be more than "
                f"handover_before_empty_min ({self.handover_before_empty_min:g}): the warning "
                "comes first"
            )
        return self


# --------------------------------------------------------------------------- gpio


class GpioSection(BaseModel):
    """The interlock outputs and the stop button (``drivers.gpio``)."""

    model_config = _STRICT

    backend: Literal["none", "simulated", "rpi"] = "none"
    #: simulated backend only: the directory holding pins.json / inputs.json
    state_dir: str | None = None
    #: pin map and polarity: the fields of ``drivers.gpio.GpioConfig``
    pins: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pins")
    @classmethod
    def _valid_pins(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            GpioConfig.from_mapping(value)
        except GpioConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _state_dir_for_simulated(self) -> GpioSection:
        if self.backend == "simulated" and not self.state_dir:
            raise ValueError("backend 'simulated' needs state_dir (a directory for pins.json)")
        if self.backend != "simulated" and self.state_dir is not None:
            raise ValueError(f"state_dir applies only to backend 'simulated', not {self.backend!r}")
        if self.backend == "none" and self.pins:
            raise ValueError("pins apply to a GPIO backend; backend is 'none'")
        return self


# --------------------------------------------------------------------------- watchdog


class WatchdogSection(BaseModel):
    """The Linux hardware watchdog device, fed while the loop runs (optional)."""

    model_config = _STRICT

    #: e.g. "/dev/watchdog"; unset: no device (the GPIO heartbeat pin may still be used)
    device: str | None = None

    @field_validator("device")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a device path such as /dev/watchdog, not empty")
        return value


# --------------------------------------------------------------------------- timing


class TimingSection(BaseModel):
    """Periods and timeouts on the liveness clock (real seconds, never scaled)."""

    model_config = _STRICT

    #: S11: controller silent this long -> hold the last verified rate and alarm
    heartbeat_timeout_s: float = Field(default=2.0, ge=0.2, le=30.0)
    #: how often the pump is read back and reconciled
    poll_period_s: float = Field(default=1.0, ge=0.05, le=30.0)
    #: NE-1000 safe-mode keep-alive while infusing; below the pump's SAF timeout
    keep_alive_period_s: float = Field(default=2.0, ge=0.1, le=120.0)
    #: half period of the hardware-watchdog heartbeat pin
    watchdog_toggle_s: float = Field(default=0.25, ge=0.01, le=10.0)
    #: stop-button sampling period, of the loop and of the button's own thread (keep
    #: below half the debounce time)
    button_poll_s: float = Field(default=0.02, ge=0.005, le=1.0)

    @model_validator(mode="after")
    def _poll_within_heartbeat(self) -> TimingSection:
        if self.poll_period_s > self.heartbeat_timeout_s * 5:
            raise ValueError(
                f"poll_period_s ({self.poll_period_s}) must be at most 5x heartbeat_timeout_s "
                f"({self.heartbeat_timeout_s}); a pump read that rarely is not supervision"
            )
        return self


# --------------------------------------------------------------------------- paths


class PathsSection(BaseModel):
    """Where the process keeps its journal, socket and key."""

    model_config = _STRICT

    journal: str = DEFAULT_JOURNAL
    socket: str = DEFAULT_SOCKET
    key_file: str = DEFAULT_KEY_FILE
    #: the observers' own key (dashboard, telemetry): read-only access (S17); unset:
    #: ``observer.key`` beside ``key_file``
    observer_key_file: str = ""
    #: the drug library; unset: config/drug_library.toml (or $PUMPCTL_LIBRARY)
    library: str | None = None

    @field_validator("journal", "socket", "key_file", "library")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a path, not empty")
        return value

    @property
    def observer_key(self) -> str:
        """The observer key file in force (configured, or beside ``key_file``)."""
        return self.observer_key_file or str(Path(self.key_file).with_name(OBSERVER_KEY_NAME))

    @model_validator(mode="after")
    def _two_keys(self) -> PathsSection:
        if Path(self.key_file) == Path(self.observer_key):
            raise ValueError(
                "observer_key_file must differ from key_file: an observer holding the "
                "controller's key could command the pump (S17)"
            )
        return self


class ClockSection(BaseModel):
    model_config = _STRICT

    #: "real", or "scaled:SCALE[:ORIGIN_MONOTONIC[:ORIGIN_CLINICAL]]" (demo: "scaled:60")
    clinical: str = "real"

    @field_validator("clinical")
    @classmethod
    def _valid_spec(cls, value: str) -> str:
        clock_from_spec(value)  # ValueError names the accepted forms
        return value


class SafetyConfig(BaseModel):
    """The whole file. Sections: pump (a one-pump bench) or lines and channels (a bench of
    several), interlock, relay, gpio, watchdog, timing, paths, clock."""

    model_config = _STRICT

    pump: PumpConfig | None = None
    #: shared lines (``drivers.lines.LineSpec``), by name
    lines: dict[str, LineSpec] = Field(default_factory=dict)
    #: the channels, in the order given; each name as ``safety.host.channel_names`` allows
    #: (the scenarios check theirs with the same rule)
    channels: dict[Annotated[str, AfterValidator(check_channel_name)], ChannelConfig] = Field(
        default_factory=dict
    )
    interlock: InterlockSection = Field(default_factory=InterlockSection)
    relay: RelaySection = Field(default_factory=RelaySection)
    gpio: GpioSection = Field(default_factory=GpioSection)
    watchdog: WatchdogSection = Field(default_factory=WatchdogSection)
    timing: TimingSection = Field(default_factory=TimingSection)
    paths: PathsSection = Field(default_factory=PathsSection)
    clock: ClockSection = Field(default_factory=ClockSection)
    #: the observers' sections (``safety.observer_config``), unused by this process
    telemetry: TelemetrySection | None = None
    dashboard: DashboardSection = Field(default_factory=DashboardSection)
    #: the controller's MAP source (``drivers.monitors.config``), unused by this process
    monitor: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_bench(self) -> SafetyConfig:
        if self.pump is None and not self.channels:
            raise ValueError(
                "no pump: give [pump] (a one-pump bench) or [channels.NAME] tables (several)"
            )
        if self.pump is not None and self.channels:
            raise ValueError(
                "[pump] and [channels] both given: a one-pump bench is [pump] alone (its "
                "channel is A); a bench of several lists every pump under [channels]"
            )
        for name, channel in self.channels.items():
            if channel.line is not None and channel.line not in self.lines:
                known = ", ".join(sorted(self.lines)) or "none"
                raise ValueError(f"channels.{name}.line: no line {channel.line!r} (lines: {known})")
        self._interlock_relays()
        used = {c.line for c in self.channels.values() if c.line is not None}
        for name in sorted(set(self.lines) - used):
            raise ValueError(f"lines.{name} is used by no channel")
        shared = {name: open_line(spec) for name, spec in self.lines.items()}  # opens nothing
        for name, channel in self.channels.items():
            if channel.line is None:
                continue
            try:  # on the line, as the process will build it: addresses, one protocol
                load_driver(channel.driver, line=shared[channel.line], **channel.options)
            except (DriverLoadError, LineError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"channels.{name}: driver {channel.driver!r} on line {channel.line!r}: {exc}"
                ) from None
        return self

    def _interlock_relays(self) -> None:
        """A per-channel interlock on real (or simulated) GPIO needs a relay for every
        channel: one shared by all would cut or re-enable every pump for one of them."""
        pins = self.gpio.pins.get("channel_enable_pins") or {}
        names = list(self.channels) if self.channels else [DEFAULT_CHANNEL]
        where = "gpio.pins.channel_enable_pins"
        if self.interlock.scope == "bench" or self.gpio.backend == "none":
            if pins:
                raise ValueError(
                    f'{where} applies with interlock.scope = "channel" and a GPIO backend '
                    f"(scope is {self.interlock.scope!r}, backend {self.gpio.backend!r})"
                )
            return
        missing = [n for n in names if n not in pins]
        unknown = sorted(set(pins) - set(names))
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"no pin for channel(s) {', '.join(missing)}")
            if unknown:
                problems.append(f"no channel(s) {', '.join(unknown)}")
            raise ValueError(
                f'{where}: {"; ".join(problems)}: interlock.scope = "channel" needs one '
                f"pump-enable relay per channel ({', '.join(names)})"
            )

    def channel_configs(self) -> dict[str, ChannelConfig]:
        """Every channel, in order: a ``[pump]`` is channel ``A``."""
        if self.pump is None:
            return dict(self.channels)
        pump = self.pump
        loaded = pump.mock.loaded_volume_ml if pump.mock is not None else None
        return {
            DEFAULT_CHANNEL: ChannelConfig(
                driver=pump.driver,
                mock=pump.mock,
                options=pump.options,
                container=pump.syringe,
                loaded_ml=loaded,
            )
        }

    def with_overrides(
        self,
        *,
        socket: str | None = None,
        journal: str | None = None,
        key_file: str | None = None,
    ) -> SafetyConfig:
        """Command-line overrides of the paths (already absolute or relative to cwd)."""
        paths = self.paths.model_copy(
            update={
                k: v
                for k, v in (("socket", socket), ("journal", journal), ("key_file", key_file))
                if v is not None
            }
        )
        result = self.model_copy(update={"paths": paths})
        _check_socket_length(result.paths.socket, "paths.socket")
        return result


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path) -> SafetyConfig:
    """Read, validate and resolve a config file; raise ``ConfigError`` naming each field."""
    source = Path(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(source), [("(file)", exc.strerror or str(exc))]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(source), [("(file)", f"not UTF-8 text: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(source), [("(file)", f"not valid TOML: {exc}")]) from None
    return parse_config(raw, str(source), base_dir=source.resolve().parent)


def parse_config(
    raw: Mapping[str, Any], source: str = "<config>", *, base_dir: Path | None = None
) -> SafetyConfig:
    """Validate an already-decoded table; resolve relative paths against ``base_dir``."""
    monitor = monitor_problems(raw.get("monitor"))
    try:
        config = SafetyConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = _problems(exc)
        if not any(path.startswith("monitor") for path, _ in problems):
            problems += monitor
        raise ConfigError(source, problems) from None
    if monitor:
        raise ConfigError(source, monitor)
    if base_dir is not None:
        config = _resolved(config, base_dir)
    try:
        _check_socket_length(config.paths.socket, "paths.socket")
    except ValueError as exc:
        raise ConfigError(source, [("paths.socket", str(exc))]) from None
    problems = safe_mode_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def monitor_problems(table: object, base_dir: Path | None = None) -> list[tuple[str, str]]:
    """The controller's ``[monitor]`` table, checked with its own parser, each problem at
    its field (``monitor.wire``). With ``base_dir`` a replay file must exist too: what
    ``--check`` asks of the bench; the safety process itself never reads the file, so
    its start does not depend on it."""
    if table is None:
        return []
    try:
        parse_monitor(table, base_dir)
    except MonitorConfigError as exc:
        return [(exc.field, exc.message)]
    return []


def ne1000_safe_mode_floor_s(
    reply_timeout_s: float, pumps_on_line: int, keep_alive_period_s: float, drain_s: float
) -> float:
    """What an NE-1000's safe-mode timeout must be more than.

    A restarted safety process shakes hands with the pumps of a line in turn, at worst
    ``NE1000_PROBE_TIMEOUTS`` reply timeouts each and, after each lost probe, a drain of
    the line until it has been quiet for ``drain_s`` (the reply timeout on a port of the
    pump's own, ``drivers.lines.DIRTY_QUIET_S`` on a shared line: a late reply must not be
    taken for the next probe's): the last of them hears nothing until
    the others' handshakes are done, and is then kept alive within a keep-alive period
    (between the next channels' connections too: ``SafetyCore._between_connections``). A
    pump whose own timeout runs out first stops itself, an abrupt withdrawal of a
    vasopressor. Channels on other lines that connect before it are not counted (their
    drivers' worst connection times are not modelled): a bench that mixes a slow network
    line with NE-1000s in safe mode needs a margin of its own.
    """
    handshake = NE1000_PROBE_TIMEOUTS * reply_timeout_s + (NE1000_PROBE_TIMEOUTS - 1) * drain_s
    return handshake * pumps_on_line + keep_alive_period_s


def safe_mode_problems(config: SafetyConfig) -> list[tuple[str, str]]:
    """Every NE-1000 in safe mode whose timeout does not outlast a restart's handshakes
    (``ne1000_safe_mode_floor_s``), as ``(field path, message)``.

    Checked after the models, where the whole bench is known: the bound depends on how
    many pumps share the channel's line and on ``[timing] keep_alive_period_s``.
    """
    tables: dict[str, _DriverOptions] = (
        {"pump": config.pump} if config.pump is not None else {}
    ) | {f"channels.{name}": channel for name, channel in config.channels.items()}
    on_line = Counter(c.line for c in config.channels.values() if c.line is not None)
    keep_alive = config.timing.keep_alive_period_s
    problems: list[tuple[str, str]] = []
    for table, pump in tables.items():
        timeout = pump.options.get("safe_mode_timeout_s")
        if pump.driver != "ne1000" or not _is_number(timeout):
            continue  # basic mode (no timeout), or a value the driver's own check named
        reply = pump.options.get("reply_timeout_s", _ne1000_default_reply_timeout_s())
        if not _is_number(reply):
            continue
        line = pump.line if isinstance(pump, ChannelConfig) else None
        pumps = on_line[line] if line is not None else 1
        drain = DIRTY_QUIET_S if line is not None else float(reply)
        floor = ne1000_safe_mode_floor_s(float(reply), pumps, keep_alive, drain)
        if float(timeout) > floor:
            continue
        where = f"each of the {pumps} NE-1000s on line {line!r}" if line else "the pump"
        problems.append(
            (
                f"{table}.options.safe_mode_timeout_s",
                f"must be more than {floor:g} s (and at most {NE1000_MAX_SAFE_MODE_S}), "
                f"got {timeout!r}: a restart may spend {NE1000_PROBE_TIMEOUTS} x "
                f"reply_timeout_s ({float(reply):g} s) and {NE1000_PROBE_TIMEOUTS - 1} "
                f"drains of the line ({drain:g} s) on {where}, then one "
                f"timing.keep_alive_period_s ({keep_alive:g} s) before the next packet; a pump "
                "whose own timeout runs out first stops itself",
            )
        )
    return problems


def _is_number(value: object) -> TypeGuard[int | float]:
    """A number of the driver's options (a bool is an int to Python, not to a config)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ne1000_default_reply_timeout_s() -> float:
    """The driver's own default, read from its signature so the two cannot drift (the
    module is imported already: the options were checked against this constructor)."""
    default = inspect.signature(driver_class("ne1000")).parameters["reply_timeout_s"].default
    return float(default)


def _resolved(config: SafetyConfig, base: Path) -> SafetyConfig:
    def resolve(value: str) -> str:
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (base / p))

    paths = config.paths.model_copy(
        update={
            "journal": resolve(config.paths.journal),
            "socket": resolve(config.paths.socket),
            "key_file": resolve(config.paths.key_file),
            "observer_key_file": (
                resolve(config.paths.observer_key_file) if config.paths.observer_key_file else ""
            ),
            "library": resolve(config.paths.library) if config.paths.library else None,
        }
    )
    gpio = config.gpio
    if gpio.state_dir is not None:
        gpio = gpio.model_copy(update={"state_dir": resolve(gpio.state_dir)})

    def resolved_map(table: _DriverOptionsT) -> _DriverOptionsT:
        map_path = table.options.get("map_path")
        if isinstance(map_path, str) and ("/" in map_path or map_path.endswith(".toml")):
            options = {**table.options, "map_path": resolve(map_path)}
            return table.model_copy(update={"options": options})
        return table

    pump = resolved_map(config.pump) if config.pump is not None else None
    channels = {name: resolved_map(c) for name, c in config.channels.items()}
    return config.model_copy(
        update={"paths": paths, "gpio": gpio, "pump": pump, "channels": channels}
    )


def _check_socket_length(path: str, field: str) -> None:
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ValueError(
            f"{field} is {len(path.encode())} bytes long; a Unix socket path must be at most "
            f"{MAX_SOCKET_PATH} bytes: choose a shorter path"
        )


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as (dotted field path, message with the allowed values)."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        # "[key]": pydantic's step for a table's key (``[channels.1B]``); the key itself
        # is already the step before it, and names the table
        loc = [str(part) for part in error["loc"] if part != "[key]"]
        path = ".".join(loc) or "(top level)"
        message = str(error["msg"])
        kind = error["type"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if kind in _NUMBER_ERRORS:
            message = _number_message(kind, loc, error.get("input"))
        elif kind == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            message = "unknown setting"
            if allowed:
                message += f"; allowed here: {', '.join(allowed)}"
        elif kind == "missing":
            message = "required setting is missing"
        elif kind in _RANGE_ERRORS:
            bounds = _range_at(loc)
            if bounds:
                message = f"must be {bounds}, got {error.get('input')!r}"
        problems.append((path, message))
    return problems


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
#: a number of the wrong type (strict: text, a bool, a fraction for a whole number)
_NUMBER_ERRORS = frozenset(
    {"int_type", "int_from_float", "int_parsing", "float_type", "float_parsing"}
)


def _number_message(kind: str, loc: Sequence[str], given: object) -> str:
    """'must be a whole number 2-20, got 2.5': what pydantic says ("Input should be a
    valid integer") with the field's range, and why text is refused."""
    whole = kind.startswith("int")
    what = "a whole number" if whole else "a number"
    bounds = _range_at(loc)
    message = f"must be {what}{' ' + bounds if bounds else ''}, got {given!r}"
    if isinstance(given, str):
        message += " (text: write the number without quotes)"
    return message


def _fields_at(loc: Sequence[str]) -> list[str]:
    """The field names the model at ``loc`` accepts (for 'unknown setting' messages)."""
    model = _model_at(loc)
    return sorted(model.model_fields) if model is not None else []


def _model_at(loc: Sequence[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = SafetyConfig
    parts = iter(loc)
    for part in parts:
        if model is None:
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        # ``channels.A.loaded_ml``: the step after a table of tables is a table's name
        if _is_table_of_tables(field.annotation) and next(parts, None) is None:
            return None
        model = _model_in(field.annotation)
    return model


def _is_table_of_tables(annotation: object) -> bool:
    """``dict[str, SomeModel]`` (``channels``, ``lines``), perhaps inside ``| None``."""
    if getattr(annotation, "__origin__", None) is dict:
        return True
    return any(_is_table_of_tables(arg) for arg in getattr(annotation, "__args__", ()))


def _range_at(loc: Sequence[str]) -> str:
    """'0.2-30.0', or in words ('more than 0 and at most 1000'), from the bounds declared
    on the field at ``loc``: an author reads the range, not pydantic's operators."""
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model is not None and loc else None
    if field is None:
        return ""
    bounds: dict[str, object] = {}
    for bound in field.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            value = getattr(bound, attr, None)
            if value is not None:
                bounds[attr] = value
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}-{bounds['le']}"
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[attr]} {value}" for attr, value in bounds.items())


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


__all__ = [
    "ChannelConfig",
    "ClockSection",
    "ConfigError",
    "DashboardSection",
    "GpioSection",
    "InterlockSection",
    "MockPumpOptions",
    "PathsSection",
    "PumpConfig",
    "RelaySection",
    "SafetyConfig",
    "TelemetrySection",
    "TimingSection",
    "load_config",
    "parse_config",
]
