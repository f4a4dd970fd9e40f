"""Register maps: the example maps load, and a bad map fails naming the offending field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.modbus.register_map import (
    CONFIG_DIR_ENV,
    EXAMPLE_MAPS,
    Flag,
    PumpKind,
    RegisterMapError,
    Role,
    Table,
    Unit,
    default_map_path,
    load_register_map,
    parse_register_map,
    resolve_map_path,
)

BASE: dict[str, Any] = {
    "device": {"model": "test pump", "kind": "syringe", "rate_limits_ml_h": [0.1, 100.0]},
    "points": [
        {"name": "run", "role": "run", "table": "coil", "address": 0},
        {
            "name": "rate",
            "role": "rate_setpoint",
            "table": "holding",
            "address": 0,
            "type": "uint32",
            "scale": 0.001,
            "units": "mL/h",
        },
        {
            "name": "volume",
            "role": "infused_volume",
            "table": "input",
            "address": 0,
            "type": "float32",
            "units": "mL",
        },
        {
            "name": "alarms",
            "role": "alarm_bits",
            "table": "input",
            "address": 2,
            "bits": {"occlusion": 0, "empty": 1},
        },
    ],
}


def bad(mutate: Any) -> RegisterMapError:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(RegisterMapError) as info:
        parse_register_map(data, "test.toml")
    return info.value


def paths(err: RegisterMapError) -> list[str]:
    return [p for p, _ in err.problems]


def test_the_base_map_is_valid() -> None:
    m = parse_register_map(copy.deepcopy(BASE))
    assert m.require(Role.RATE_SETPOINT).end == 2
    assert m.flags() == {Flag.OCCLUSION, Flag.EMPTY}
    assert m.points_in(Table.INPUT)[0].name == "volume"


@pytest.mark.parametrize("kind", sorted(EXAMPLE_MAPS))
def test_example_maps_load_and_say_they_are_examples(kind: str) -> None:
    m = load_register_map(default_map_path(kind))
    assert m.device.example
    assert "EXAMPLE" in m.device.model
    assert m.device.kind is PumpKind(kind)
    for role in (Role.RUN, Role.RATE_SETPOINT, Role.INFUSED_VOLUME, Role.COMMS_TIMEOUT):
        assert m.point(role) is not None
    assert Flag.RUNNING in m.flags()
    assert {Flag.OCCLUSION, Flag.EMPTY, Flag.STALL, Flag.RESET} <= m.flags()


def test_peristaltic_example_follows_the_reference_facts() -> None:
    m = load_register_map(default_map_path("peristaltic"))
    assert (m.link.device_id, m.link.baud, m.link.parity) == (20, 19200, "E")
    rate = m.require(Role.RATE_SETPOINT)
    assert (rate.address, rate.type.value) == (1211, "float32")
    ack = m.require(Role.ACKNOWLEDGE_ALARMS)
    assert (ack.address, ack.trigger_value) == (1236, 0x5555)
    timeout = m.require(Role.COMMS_TIMEOUT)
    assert timeout.range == (0, 10000)
    assert timeout.units is Unit.MS
    assert m.require(Role.ALARM_BITS).type.value == "uint32"
    assert m.require(Role.RATE_ACTUAL).units is Unit.RPM


def test_rpm_converts_with_the_tubing_calibration() -> None:
    m = load_register_map(default_map_path("peristaltic"))  # 0.5 mL per revolution
    assert m.to_units(60.0, Unit.RPM) == pytest.approx(2.0)  # 60 mL/h = 1 mL/min = 2 rpm
    assert m.from_units(2.0, Unit.RPM) == pytest.approx(60.0)
    assert m.to_units(1.0, Unit.UL_MIN) == pytest.approx(1000.0 / 60.0)
    assert m.to_units(2.0, Unit.MS) == 2000.0


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: d["points"][0].update(colour="red"), "points[0].colour", "Extra inputs"),
        (lambda d: d["points"][1].update(units="mm"), "points[1].units", "rate_setpoint"),
        (lambda d: d["points"][1].update(table="input"), "points[1].table", "written by the host"),
        (lambda d: d["points"][1].update(type="uint64"), "points[1].type", "uint16"),
        (lambda d: d["points"][1].update(word_order="middle"), "points[1].word_order", "big"),
        (lambda d: d["points"][1].update(scale=0), "points[1].scale", "greater than"),
        (lambda d: d["points"][0].update(address=70000), "points[0].address", "65535"),
        (lambda d: d["points"][1].update(address=65535), "points[1].address", "passes 65535"),
        (lambda d: d["points"][2].update(address=1), "points[3].address", "overlaps points[2]"),
        (lambda d: d["points"][2].update(name="rate"), "points[2].name", "already used"),
        (lambda d: d["points"].pop(0), "points", "run point"),
        (lambda d: d["points"][3]["bits"].update(stall=16), "points[3].bits.stall", "0-15"),
        (lambda d: d["points"][3]["bits"].update(stall=0), "points[3].bits", "share one bit"),
        (lambda d: d["points"][3]["bits"].update(smoke=2), "points[3].bits.smoke", "Input should"),
        (lambda d: d["points"][3].update(bits={}), "points[3].bits", "at least one"),
        (lambda d: d["points"][0].update(type="uint32"), "points[0].type", "one bit"),
        (lambda d: d["points"][1].update(units="rpm"), "device.tubing_ml_per_rev", "rpm"),
        (lambda d: d["device"].pop("rate_limits_ml_h"), "device.rate_limits_ml_h", "rate_min"),
        (lambda d: d["device"].update(rate_limits_ml_h=[5, 1]), "device.rate_limits_ml_h", "min"),
        (lambda d: d["device"].update(kind="volumetric"), "device.kind", "syringe"),
        (lambda d: d.update(extra={}), "extra", "Extra inputs"),
        (
            lambda d: d["points"].append(
                {"name": "ack", "role": "acknowledge_alarms", "table": "holding", "address": 9}
            ),
            "points[4].trigger_value",
            "value that acts",
        ),
        (
            lambda d: d["points"].append(
                {"name": "run2", "role": "run", "table": "coil", "address": 5}
            ),
            "points[4].role",
            "one run point",
        ),
        (
            lambda d: d["points"].append(
                {
                    "name": "d",
                    "role": "syringe_diameter",
                    "table": "holding",
                    "address": 9,
                    "units": "mm",
                    "range": [10, 5],
                }
            ),
            "points[4].range",
            "min < max",
        ),
        (
            lambda d: d["points"].append(
                {
                    "name": "t",
                    "role": "comms_timeout",
                    "table": "holding",
                    "address": 9,
                    "units": "ms",
                    "range": [0, 1000],
                    "initial": 5000,
                }
            ),
            "points[4].initial",
            "outside range",
        ),
        (
            lambda d: d["points"].append(
                {
                    "name": "s",
                    "role": "status_bits",
                    "table": "discrete_input",
                    "address": 0,
                    "bits": {"running": 0, "stall": 1},
                }
            ),
            "points[4].bits",
            "exactly one condition",
        ),
        (
            lambda d: d["points"].append(
                {
                    "name": "o",
                    "role": "status_bits",
                    "table": "discrete_input",
                    "address": 1,
                    "bits": {"occlusion": 0},
                }
            ),
            "points[4].bits.occlusion",
            "already reported",
        ),
    ],
)
def test_a_bad_map_names_the_field(mutate: Any, path: str, words: str) -> None:
    err = bad(mutate)
    assert path in paths(err), f"{path!r} not in {paths(err)}"
    message = dict(err.problems)[path]
    assert words in message, message
    assert "test.toml" in str(err)
    assert path in str(err)


def test_a_peristaltic_drive_has_no_syringe() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["device"]["kind"] = "peristaltic"
        d["points"].append(
            {
                "name": "d",
                "role": "syringe_diameter",
                "table": "holding",
                "address": 9,
                "units": "mm",
            }
        )

    assert "points[4].role" in paths(bad(mutate))


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(RegisterMapError, match="no such file") as info:
        load_register_map(missing)
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\nmodel = 1\n")
    with pytest.raises(RegisterMapError) as info2:
        load_register_map(broken)
    assert paths(info2.value) == ["(toml)"]


def test_default_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_map_path(None) == default_map_path("syringe")
    assert resolve_map_path("peristaltic").name == "modbus_peristaltic.toml"
    assert resolve_map_path("my/map.toml") == Path("my/map.toml")
    with pytest.raises(ValueError, match="known: peristaltic, syringe"):
        default_map_path("gear")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    assert default_map_path("syringe") == tmp_path / "pumps" / "modbus_syringe.toml"


PRIME_VOLUME = {
    "name": "pv",
    "role": "prime_volume",
    "table": "holding",
    "address": 9,
    "type": "float32",
    "units": "mL",
}
PRIME = {"name": "pr", "role": "prime", "table": "coil", "address": 1}
PRIMING_BIT = {
    "name": "st",
    "role": "status_bits",
    "table": "discrete_input",
    "address": 0,
    "bits": {"priming": 0},
}


def test_a_prime_is_its_volume_its_trigger_and_a_priming_bit_together() -> None:
    whole = copy.deepcopy(BASE)
    whole["points"] += [PRIME_VOLUME, PRIME, PRIMING_BIT]
    regmap = parse_register_map(whole)
    assert regmap.point(Role.PRIME) is not None and regmap.point(Role.PRIME_VOLUME) is not None
    for missing in (PRIME, PRIME_VOLUME):
        err = bad(
            lambda d, m=missing: d["points"].extend(
                p for p in (PRIME_VOLUME, PRIME, PRIMING_BIT) if p is not m
            )
        )
        assert "prime and prime_volume come together" in dict(err.problems)["points"]
    err = bad(lambda d: d["points"].extend([PRIME_VOLUME, PRIME]))
    assert "needs a status bit 'priming'" in dict(err.problems)["points"]
    err = bad(lambda d: d["points"].extend([{**PRIME_VOLUME, "units": "mL/h"}, PRIME, PRIMING_BIT]))
    assert "points[4].units" in paths(err)
    err = bad(
        lambda d: d["points"].extend(
            [PRIME_VOLUME, {**PRIME, "table": "holding", "address": 20}, PRIMING_BIT]
        )
    )
    assert "needs the value that acts" in dict(err.problems)["points[5].trigger_value"]
