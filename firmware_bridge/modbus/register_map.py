"""A Modbus pump's register map, loaded from TOML and validated before any byte is sent.

No two Modbus pumps share a map (docs/protocols.md, "Modbus pumps"), so the map is
data: each *point* says what it means (its ``role``), where it lives (``table`` and
``address``), how it is encoded (``type``, ``word_order``, ``scale``) and in which
``units``. The emulator serves the simulated pump through a map
and the host driver talks through the same map, so a map that validates here is one
both ends agree on. A bad map fails at load time with the path of the offending field
(``points[3].units: ...``), never halfway through an infusion.

Canonical units inside the project: mL/h for flow, mL for volume, mmHg for pressure,
seconds for time, mm for length. Conversion happens only at this edge.
"""

from __future__ import annotations

import enum
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from firmware_bridge.modbus.codec import (
    MAX_SCALE,
    MIN_SCALE,
    DataType,
    Encoding,
    WordOrder,
    quantize_rate,
)
from firmware_bridge.modbus.frames import MAX_OBJECT_LENGTH, BasicObject


class RegisterMapError(ValueError):
    """A register map that cannot be used; ``problems`` lists (field path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"register map {source} is invalid:\n{lines}")


class Table(enum.StrEnum):
    """The four Modbus data tables (Modbus Application Protocol v1.1b3, section 4.3)."""

    COIL = "coil"  # 1 bit, read/write (functions 1, 5, 15)
    DISCRETE_INPUT = "discrete_input"  # 1 bit, read-only (function 2)
    HOLDING = "holding"  # 16 bit, read/write (functions 3, 6, 16)
    INPUT = "input"  # 16 bit, read-only (function 4)

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)


class Role(enum.StrEnum):
    """What a point means to the pump."""

    RUN = "run"  # write on_value/True to start, off_value/False to stop; reads running
    RATE_SETPOINT = "rate_setpoint"
    RATE_ACTUAL = "rate_actual"
    RATE_MIN = "rate_min"  # the lowest set-point the pump accepts now (syringe-dependent)
    RATE_MAX = "rate_max"
    INFUSED_VOLUME = "infused_volume"
    STATUS_BITS = "status_bits"
    ALARM_BITS = "alarm_bits"
    COMMS_TIMEOUT = "comms_timeout"  # the pump stops when the master is silent this long
    CLEAR_COUNTERS = "clear_counters"  # write trigger_value / True: infused volume to 0
    ACKNOWLEDGE_ALARMS = "acknowledge_alarms"  # write trigger_value / True
    SYRINGE_DIAMETER = "syringe_diameter"
    PRESSURE = "pressure"
    FIRMWARE_VERSION = "firmware_version"
    #: a prime (purge): the volume to push out at the top rate, then the trigger that
    #: starts it (write trigger_value / True); the pump stops by itself when it is out
    PRIME_VOLUME = "prime_volume"
    PRIME = "prime"

    @property
    def writable(self) -> bool:
        return self in _WRITABLE_ROLES

    @property
    def read_only(self) -> bool:
        return self not in _WRITABLE_ROLES


_WRITABLE_ROLES = frozenset(
    {
        Role.RUN,
        Role.RATE_SETPOINT,
        Role.COMMS_TIMEOUT,
        Role.CLEAR_COUNTERS,
        Role.ACKNOWLEDGE_ALARMS,
        Role.SYRINGE_DIAMETER,
        Role.PRIME_VOLUME,
        Role.PRIME,
    }
)
_TRIGGER_ROLES = frozenset({Role.CLEAR_COUNTERS, Role.ACKNOWLEDGE_ALARMS, Role.PRIME})
_BITFIELD_ROLES = frozenset({Role.STATUS_BITS, Role.ALARM_BITS})
#: roles that appear at most once in a map
_SINGLE_ROLES = frozenset(Role) - _BITFIELD_ROLES


class Flag(enum.StrEnum):
    """Conditions a status or alarm bit reports."""

    RUNNING = "running"
    PRIMING = "priming"  # running a prime (purge), not the infusion
    OCCLUSION = "occlusion"  # downstream: overpressure
    EMPTY = "empty"  # syringe at the end of travel / supply empty
    NEAR_EMPTY = "near_empty"
    STALL = "stall"
    RESET = "reset"  # power interrupted
    COMMS_TIMEOUT = "comms_timeout"  # stopped because the master fell silent
    AIR_IN_LINE = "air_in_line"  # volumetric pumps: air at the sensor
    UPSTREAM_OCCLUSION = "upstream_occlusion"  # volumetric pumps: bag-to-pump line blocked
    DOOR_OPEN = "door_open"  # volumetric pumps: door open, flow stopped
    OTHER_ALARM = "other_alarm"


class Unit(enum.StrEnum):
    """The closed set of units a map may use."""

    ML_H = "mL/h"
    ML_MIN = "mL/min"
    UL_H = "uL/h"
    UL_MIN = "uL/min"
    L_H = "L/h"
    RPM = "rpm"  # needs device.tubing_ml_per_rev
    ML = "mL"
    UL = "uL"
    L = "L"
    MM = "mm"
    MS = "ms"
    S = "s"
    MMHG = "mmHg"
    KPA = "kPa"
    BAR = "bar"
    NONE = "none"


FLOW_UNITS = frozenset({Unit.ML_H, Unit.ML_MIN, Unit.UL_H, Unit.UL_MIN, Unit.L_H, Unit.RPM})
VOLUME_UNITS = frozenset({Unit.ML, Unit.UL, Unit.L})
TIME_UNITS = frozenset({Unit.MS, Unit.S})
PRESSURE_UNITS = frozenset({Unit.MMHG, Unit.KPA, Unit.BAR})

#: value in the unit = canonical value x factor (canonical: mL/h, mL, s, mmHg, mm)
_FACTORS: dict[Unit, float] = {
    Unit.ML_H: 1.0,
    Unit.ML_MIN: 1.0 / 60.0,
    Unit.UL_H: 1000.0,
    Unit.UL_MIN: 1000.0 / 60.0,
    Unit.L_H: 0.001,
    Unit.ML: 1.0,
    Unit.UL: 1000.0,
    Unit.L: 0.001,
    Unit.MM: 1.0,
    Unit.MS: 1000.0,
    Unit.S: 1.0,
    Unit.MMHG: 1.0,
    Unit.KPA: 0.133322387415,  # 1 mmHg = 133.322387415 Pa
    Unit.BAR: 0.00133322387415,
    Unit.NONE: 1.0,
}

_ROLE_UNITS: dict[Role, frozenset[Unit]] = {
    Role.RUN: frozenset({Unit.NONE}),
    Role.RATE_SETPOINT: FLOW_UNITS,
    Role.RATE_ACTUAL: FLOW_UNITS,
    Role.RATE_MIN: FLOW_UNITS,
    Role.RATE_MAX: FLOW_UNITS,
    Role.INFUSED_VOLUME: VOLUME_UNITS,
    Role.STATUS_BITS: frozenset({Unit.NONE}),
    Role.ALARM_BITS: frozenset({Unit.NONE}),
    Role.COMMS_TIMEOUT: TIME_UNITS,
    Role.CLEAR_COUNTERS: frozenset({Unit.NONE}),
    Role.ACKNOWLEDGE_ALARMS: frozenset({Unit.NONE}),
    Role.SYRINGE_DIAMETER: frozenset({Unit.MM}),
    Role.PRESSURE: PRESSURE_UNITS,
    Role.FIRMWARE_VERSION: frozenset({Unit.NONE}),
    Role.PRIME_VOLUME: VOLUME_UNITS,
    Role.PRIME: frozenset({Unit.NONE}),
}


class PumpKind(enum.StrEnum):
    SYRINGE = "syringe"
    PERISTALTIC = "peristaltic"


_FORBID = ConfigDict(extra="forbid", frozen=True)


class DeviceInfo(BaseModel):
    """``[device]``: what the map describes and where its facts come from."""

    model_config = _FORBID

    model: str = Field(min_length=1, max_length=120)
    kind: PumpKind
    #: true when the map is an illustration, not a vendor's published map
    example: bool = False
    source: str = ""
    #: firmware version the emulator reports through a firmware_version point
    firmware_version: float = Field(default=1.0, ge=0, le=655.35)
    #: peristaltic drives: volume per rotor revolution with the fitted tubing
    tubing_ml_per_rev: float | None = Field(default=None, gt=0, le=1000)
    #: rate range when the pump publishes none (no rate_min/rate_max points), mL/h
    rate_limits_ml_h: tuple[float, float] | None = None
    #: the device answers Read Device Identification (function 43, MEI type 14) with the
    #: three basic objects below; false: it refuses it with exception 01, as a device
    #: without it does (the driver then connects without a name to compare)
    identification: bool = True
    #: basic object 0x00, VendorName
    vendor_name: str = Field(default="pumpctl", max_length=MAX_OBJECT_LENGTH)
    #: basic object 0x01, ProductCode (default: ``model``)
    product_code: str | None = Field(default=None, max_length=MAX_OBJECT_LENGTH)
    #: basic object 0x02, MajorMinorRevision (default: ``firmware_version``, as "1.00")
    revision: str | None = Field(default=None, max_length=MAX_OBJECT_LENGTH)

    @field_validator("vendor_name", "product_code", "revision")
    @classmethod
    def _printable_ascii(cls, v: str | None) -> str | None:
        # the basic objects are ASCII strings (Modbus Application Protocol v1.1b3, 6.21)
        if v is not None and not all(" " <= c <= "~" for c in v):
            raise ValueError(f"must be printable ASCII, got {v!r}")
        return v

    def identification_objects(self) -> tuple[tuple[int, bytes], ...] | None:
        """The basic identification objects the device gives, in id order (None: it does
        not support identification)."""
        if not self.identification:
            return None
        product = self.model if self.product_code is None else self.product_code
        revision = f"{self.firmware_version:.2f}" if self.revision is None else self.revision
        return (
            (BasicObject.VENDOR_NAME, self.vendor_name.encode("ascii")),
            (BasicObject.PRODUCT_CODE, product.encode("ascii")),
            (BasicObject.MAJOR_MINOR_REVISION, revision.encode("ascii")),
        )

    @field_validator("rate_limits_ml_h")
    @classmethod
    def _limits_ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0 < v[0] < v[1] and math.isfinite(v[1])):
            raise ValueError(f"need 0 < min < max, got {list(v)}")
        return v


class LinkSettings(BaseModel):
    """``[link]``: the pump's factory serial settings and address (informational defaults)."""

    model_config = _FORBID

    device_id: int = Field(default=1, ge=1, le=247)
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "E"
    stop_bits: Literal[1, 2] = 1


class Point(BaseModel):
    """One meaningful value in the pump's registers."""

    model_config = _FORBID

    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    role: Role
    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    type: DataType = DataType.UINT16
    word_order: WordOrder = WordOrder.BIG
    scale: float = Field(default=1.0, ge=MIN_SCALE, le=MAX_SCALE)
    units: Unit = Unit.NONE
    #: status/alarm bitfields: which bit (0 = least significant) reports which condition
    bits: dict[Flag, int] = Field(default_factory=dict)
    #: run as a holding register: the values meaning start and stop
    on_value: int | None = Field(default=None, ge=0, le=0xFFFF)
    off_value: int | None = Field(default=None, ge=0, le=0xFFFF)
    #: clear_counters / acknowledge_alarms as a holding register: the value that acts
    trigger_value: int | None = Field(default=None, ge=1, le=0xFFFF)
    #: writable settings: the values the pump accepts, in ``units``
    range: tuple[float, float] | None = None
    #: writable settings: the pump's power-up value (the emulator starts with it)
    initial: float | None = None
    description: str = ""

    @property
    def word_count(self) -> int:
        return 1 if self.table.is_bit else self.type.word_count

    @property
    def end(self) -> int:
        """One past the last address the point occupies."""
        return self.address + self.word_count

    @property
    def encoding(self) -> Encoding:
        return Encoding(self.type, self.word_order, self.scale)

    @property
    def run_on(self) -> int:
        return 1 if self.on_value is None else self.on_value

    @property
    def run_off(self) -> int:
        return 0 if self.off_value is None else self.off_value

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        problems = _point_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _point_problems(p: Point) -> list[str]:
    out: list[str] = []
    allowed_units = _ROLE_UNITS[p.role]
    if p.units not in allowed_units:
        out.append(
            f"units: role {p.role} needs one of {sorted(u.value for u in allowed_units)}, "
            f"got {p.units.value!r}"
        )
    if p.role.writable and not p.table.writable:
        out.append(f"table: role {p.role} is written by the host, so it cannot be a {p.table}")
    if p.table.is_bit:
        bit_roles = {Role.RUN, *_TRIGGER_ROLES} if p.table is Table.COIL else _BITFIELD_ROLES
        if p.role not in bit_roles:
            out.append(
                f"table: a {p.table} can only carry roles {sorted(r.value for r in bit_roles)}"
            )
        if p.type is not DataType.UINT16 or p.scale != 1.0 or p.word_order is not WordOrder.BIG:
            out.append(f"type: a {p.table} is one bit; leave type, scale and word_order unset")
        if p.role in _BITFIELD_ROLES and (len(p.bits) != 1 or set(p.bits.values()) != {0}):
            out.append(f"bits: a {p.table} reports exactly one condition, at bit 0")
    if p.address + p.word_count - 1 > 0xFFFF:
        out.append(f"address: {p.address} + {p.word_count} words passes 65535")
    if p.role in _BITFIELD_ROLES:
        if not p.table.is_bit:
            if p.type not in (DataType.UINT16, DataType.UINT32) or p.scale != 1.0:
                out.append("type: a bitfield is uint16 or uint32 with scale 1")
            width = 16 * p.type.word_count
            for flag, bit in p.bits.items():
                if not 0 <= bit < width:
                    out.append(f"bits.{flag.value}: bit {bit} outside 0-{width - 1}")
            if len(set(p.bits.values())) != len(p.bits):
                out.append("bits: two conditions share one bit")
        if not p.bits:
            out.append("bits: a status/alarm point must name at least one condition")
    elif p.bits:
        out.append(f"bits: only status_bits/alarm_bits points have bits, not {p.role}")
    if p.role is Role.RUN and not p.table.is_bit:
        if p.type is not DataType.UINT16 or p.scale != 1.0:
            out.append("type: a run register is uint16 with scale 1")
        if p.run_on == p.run_off:
            out.append("on_value: must differ from off_value")
    elif p.on_value is not None or p.off_value is not None:
        out.append("on_value: only a run holding register has on_value/off_value")
    if p.role in _TRIGGER_ROLES and p.table is Table.HOLDING:
        if p.trigger_value is None:
            out.append(f"trigger_value: a {p.role} holding register needs the value that acts")
        if p.type is not DataType.UINT16 or p.scale != 1.0:
            out.append("type: a command register is uint16 with scale 1")
    elif p.trigger_value is not None:
        out.append("trigger_value: only clear_counters/acknowledge_alarms/prime holding registers")
    if p.range is not None:
        lo, hi = p.range
        if p.role not in (Role.COMMS_TIMEOUT, Role.SYRINGE_DIAMETER):
            out.append("range: only comms_timeout and syringe_diameter take a range")
        elif not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            out.append(f"range: need 0 <= min < max, got {[lo, hi]}")
    if p.initial is not None:
        if p.role is not Role.COMMS_TIMEOUT:
            out.append("initial: only comms_timeout has a power-up value here")
        elif p.range is not None and not p.range[0] <= p.initial <= p.range[1]:
            out.append(f"initial: {p.initial} outside range {list(p.range)}")
    if p.role is Role.COMMS_TIMEOUT and not p.table.is_bit and p.type is DataType.FLOAT32:
        out.append("type: comms_timeout is an integer register")
    return out


class RegisterMap(BaseModel):
    """A whole map: ``[device]``, ``[link]`` and a list of ``[[points]]``."""

    model_config = _FORBID

    device: DeviceInfo
    link: LinkSettings = LinkSettings()
    points: list[Point] = Field(min_length=1)

    @model_validator(mode="after")
    def _whole_map(self) -> RegisterMap:
        problems = _map_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ----------------------------------------------------------------- lookups
    def point(self, role: Role) -> Point | None:
        """The single point with ``role`` (bitfield roles: the first one), or None."""
        return next((p for p in self.points if p.role is role), None)

    def require(self, role: Role) -> Point:
        p = self.point(role)
        if p is None:
            raise KeyError(f"register map {self.device.model!r} has no {role} point")
        return p

    def points_in(self, table: Table) -> list[Point]:
        return sorted((p for p in self.points if p.table is table), key=lambda p: p.address)

    def flag_points(self) -> list[Point]:
        return [p for p in self.points if p.role in _BITFIELD_ROLES]

    def flags(self) -> frozenset[Flag]:
        return frozenset(f for p in self.flag_points() for f in p.bits)

    # ----------------------------------------------------------------- units
    def to_units(self, canonical: float, unit: Unit) -> float:
        """Canonical (mL/h, mL, s, mmHg, mm) -> ``unit``."""
        if unit is Unit.RPM:
            return canonical / 60.0 / self._ml_per_rev()
        return canonical * _FACTORS[unit]

    def from_units(self, value: float, unit: Unit) -> float:
        """``unit`` -> canonical (mL/h, mL, s, mmHg, mm)."""
        if unit is Unit.RPM:
            return value * 60.0 * self._ml_per_rev()
        return value / _FACTORS[unit]

    def quantize_rate(self, rate_ml_h: float) -> float:
        """What the rate set-point really holds for ``rate_ml_h`` (rounded down), mL/h."""
        p = self.require(Role.RATE_SETPOINT)
        return quantize_rate(
            rate_ml_h,
            p.encoding,
            lambda v: self.to_units(v, p.units),
            lambda v: self.from_units(v, p.units),
        )

    def _ml_per_rev(self) -> float:
        if self.device.tubing_ml_per_rev is None:  # excluded by validation
            raise ValueError("rpm needs device.tubing_ml_per_rev")
        return self.device.tubing_ml_per_rev


def _map_problems(m: RegisterMap) -> list[str]:
    out: list[str] = []
    names: dict[str, int] = {}
    for i, p in enumerate(m.points):
        if p.name in names:
            out.append(f"points[{i}].name: {p.name!r} already used by points[{names[p.name]}]")
        names.setdefault(p.name, i)
    roles: dict[Role, int] = {}
    for i, p in enumerate(m.points):
        if p.role in _SINGLE_ROLES and p.role in roles:
            out.append(
                f"points[{i}].role: a map has one {p.role} point, already points[{roles[p.role]}]"
            )
        roles.setdefault(p.role, i)
    for table in Table:
        placed = sorted(((p.address, p.end, i) for i, p in enumerate(m.points) if p.table is table))
        reach, owner = -1, -1  # furthest end so far and the point that reaches it
        for a1, end1, i1 in placed:
            if a1 < reach:
                out.append(
                    f"points[{i1}].address: {table} {a1} overlaps points[{owner}] "
                    f"({m.points[owner].name})"
                )
            if end1 > reach:
                reach, owner = end1, i1
    for role in (Role.RUN, Role.RATE_SETPOINT, Role.INFUSED_VOLUME):
        if role not in roles:
            out.append(f"points: a map needs a {role} point")
    has_min, has_max = Role.RATE_MIN in roles, Role.RATE_MAX in roles
    if has_min != has_max:
        out.append("points: rate_min and rate_max come together")
    if (Role.PRIME in roles) != (Role.PRIME_VOLUME in roles):
        out.append("points: prime and prime_volume come together (the volume, then the trigger)")
    if Role.PRIME in roles and not any(Flag.PRIMING in p.bits for p in m.points):
        out.append(
            "points: a map with a prime needs a status bit 'priming' (a prime's flow must "
            "never read as the infusion's)"
        )
    if not has_min and m.device.rate_limits_ml_h is None:
        out.append("device.rate_limits_ml_h: needed when the pump publishes no rate_min/rate_max")
    uses_rpm = [i for i, p in enumerate(m.points) if p.units is Unit.RPM]
    if uses_rpm and m.device.tubing_ml_per_rev is None:
        out.append(
            f"device.tubing_ml_per_rev: points[{uses_rpm[0]}] is in rpm, so the map needs "
            "the tubing calibration (mL per revolution)"
        )
    if m.device.kind is PumpKind.PERISTALTIC and Role.SYRINGE_DIAMETER in roles:
        out.append(
            f"points[{roles[Role.SYRINGE_DIAMETER]}].role: a peristaltic drive has no syringe"
        )
    seen_flags: dict[Flag, str] = {}
    for i, p in enumerate(m.points):
        for flag in p.bits:
            if flag in seen_flags:
                out.append(f"points[{i}].bits.{flag.value}: already reported by {seen_flags[flag]}")
            seen_flags.setdefault(flag, f"points[{i}] ({p.name})")
    return out


# ---------------------------------------------------------------------- loading
def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":  # pydantic marks a bad dict key this way; the key names it
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(map)"


def parse_register_map(data: dict[str, Any], source: str = "<data>") -> RegisterMap:
    """Validate a map already parsed from TOML; errors name each offending field."""
    try:
        return RegisterMap.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for err in exc.errors():
            msg = str(err["msg"])
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            base = _format_loc(tuple(err["loc"]))
            # cross-field checks name their own sub-path first ("units: ..."), one per "; "
            for part in msg.split("; "):
                head, sep, rest = part.partition(": ")
                if sep and _looks_like_path(head):
                    if base == "(map)":
                        problems.append((head, rest))
                    else:
                        problems.append((f"{base}.{head}", rest))
                else:
                    problems.append((base, part))
        raise RegisterMapError(source, problems) from None


def _looks_like_path(text: str) -> bool:
    return bool(text) and " " not in text and (text[0].isalpha())


def load_register_map(path: str | os.PathLike[str]) -> RegisterMap:
    """Read and validate a TOML register map."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise RegisterMapError(str(p), [("(file)", "no such file")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise RegisterMapError(str(p), [("(toml)", str(exc))]) from None
    return parse_register_map(data, str(p))


# ---------------------------------------------------------------------- default maps
#: the example maps shipped in config/pumps, by short name
EXAMPLE_MAPS = {"syringe": "modbus_syringe.toml", "peristaltic": "modbus_peristaltic.toml"}
CONFIG_DIR_ENV = "PUMPCTL_CONFIG_DIR"


def config_dir() -> Path:
    """``config/`` of this checkout, or ``$PUMPCTL_CONFIG_DIR`` when set."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "config"


def default_map_path(kind: str = "syringe") -> Path:
    """Where the example map of ``kind`` ("syringe" or "peristaltic") lives."""
    try:
        name = EXAMPLE_MAPS[kind]
    except KeyError:
        raise ValueError(
            f"unknown example map {kind!r}; known: {', '.join(sorted(EXAMPLE_MAPS))}"
        ) from None
    return config_dir() / "pumps" / name


def resolve_map_path(map_path: str | os.PathLike[str] | None) -> Path:
    """A map path as given on a command line: None -> the syringe example; a short name
    ("syringe", "peristaltic") -> that example; anything else is a file path."""
    if map_path is None:
        return default_map_path("syringe")
    text = os.fspath(map_path)
    if text in EXAMPLE_MAPS:
        return default_map_path(text)
    return Path(text)
