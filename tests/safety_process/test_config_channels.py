"""The safety config's channel tables and numbers: each mistake named in plain words.

A channel's name, the container its pump can hold, a number given as text or as a
fraction where a whole number belongs: each is refused by ``python -m safety --check``
with the field and what is allowed, never pydantic's own wording (``String should match
pattern``, ``Input should be a valid integer``). Each rule is tested at its limit: the
last value allowed and the first one refused.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest

from drivers.pumps.registry import CONTAINER_KINDS, DRIVERS
from safety.host.config import ChannelConfig, ConfigError, SafetyConfig, parse_config

MOCK = {"driver": "mock", "container": "bd-plastipak-50ml"}
ONE_PUMP = {"driver": "mock", "syringe": "bd-plastipak-50ml"}
BUS = {"kind": "serial", "port": "/dev/ttyUSB7", "baud": 19200}


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return dict(info.value.problems)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["A", "b", "B_2-x", "A" * 16])
def test_a_channel_name_within_the_rule_is_taken(name: str) -> None:
    assert list(parse_config({"channels": {name: MOCK}}).channels) == [name]


@pytest.mark.parametrize("name", ["1B", "_B", "-B", "A b", "A" * 17, "B\n"])
def test_a_channel_name_outside_the_rule_is_named_in_plain_words(name: str) -> None:
    found = problems({"channels": {name: MOCK}})
    assert list(found) == [f"channels.{name}"], found
    assert found[f"channels.{name}"] == (
        f"channel name {name!r} must start with a letter, followed by letters, digits, "
        "'_' or '-' only, 16 characters at most"
    )


# --------------------------------------------------------------------------- containers


@pytest.mark.parametrize(
    ("driver", "options"),
    [
        ("ne1000", {"port": "/dev/ttyUSB0"}),
        ("harvard", {"port": "/dev/ttyUSB0"}),
        ("modbus", {"host": "127.0.0.1", "map_path": "syringe"}),
    ],
)
def test_a_bag_on_a_syringe_pump_is_refused_naming_what_fits(
    driver: str, options: dict[str, Any]
) -> None:
    channel = {"driver": driver, "container": "bag-500ml", "options": options}
    found = problems({"channels": {"A": channel}})
    message = found["channels.A"]
    assert message.startswith(
        f"driver {driver!r} drives a syringe pump: it cannot hold container 'bag-500ml', a bag"
    ), message
    assert "give one of: bd-plastipak-60ml, bd-plastipak-50ml" in message
    assert "bag-" not in message.partition("give one of")[2]
    # the same pump with a syringe is a good channel
    assert parse_config({"channels": {"A": {**channel, "container": "bd-plastipak-50ml"}}})


def test_a_bag_on_a_syringe_pump_of_a_shared_line_is_refused_too() -> None:
    channel = {"driver": "ne1000", "container": "bag-1000ml", "line": "bus"}
    found = problems({"lines": {"bus": BUS}, "channels": {"A": {**channel, "options": {}}}})
    assert "driver 'ne1000' drives a syringe pump" in found["channels.A"], found


@pytest.mark.parametrize(
    ("driver", "options"),
    [("mock", {}), ("modbus", {"host": "127.0.0.1", "map_path": "peristaltic"})],
)
def test_a_bag_on_a_pump_that_holds_one_is_taken(driver: str, options: dict[str, Any]) -> None:
    channel: dict[str, Any] = {"driver": driver, "container": "bag-500ml"}
    if options:
        channel["options"] = options
    config = parse_config({"channels": {"A": channel}})
    assert config.channels["A"].container == "bag-500ml"


def test_every_driver_declares_what_its_pumps_hold() -> None:
    """A new driver without a declaration would pass any container at --check time."""
    allowed = typing.get_args(ChannelConfig.model_fields["driver"].annotation)
    assert set(CONTAINER_KINDS) == set(DRIVERS) == set(allowed)
    assert all(kinds and kinds <= {"syringe", "bag"} for kinds in CONTAINER_KINDS.values())


# --------------------------------------------------------------------------- loaded volume


def test_a_one_pump_benchs_mock_volume_is_held_to_its_syringe() -> None:
    """At most what the syringe holds: past it, the start built channel A and failed with a
    traceback."""
    full = parse_config({"pump": {**ONE_PUMP, "mock": {"loaded_volume_ml": 50}}})
    assert full.channel_configs()["A"].loaded_ml == 50
    found = problems({"pump": {**ONE_PUMP, "mock": {"loaded_volume_ml": 50.5}}})
    assert found["pump"] == (
        "mock.loaded_volume_ml must be at most 50 mL (what bd-plastipak-50ml holds), got 50.5"
    )


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (
            {"pump": ONE_PUMP, "relay": {"overlap_steps": 21}},
            "relay.overlap_steps",
            "must be 2-20, got 21",
        ),
        (
            {"pump": ONE_PUMP, "relay": {"overlap_steps": 2.5}},
            "relay.overlap_steps",
            "must be a whole number 2-20, got 2.5",
        ),
        (
            {"pump": ONE_PUMP, "relay": {"overlap_steps": "3"}},
            "relay.overlap_steps",
            "must be a whole number 2-20, got '3' (text: write the number without quotes)",
        ),
        (
            {"pump": ONE_PUMP, "relay": {"overlap_steps": True}},
            "relay.overlap_steps",
            "must be a whole number 2-20, got True",
        ),
        (
            {"pump": ONE_PUMP, "relay": {"max_prime_ml": 50.1}},
            "relay.max_prime_ml",
            "must be more than 0.0 and at most 50.0, got 50.1",
        ),
        (
            {"pump": ONE_PUMP, "relay": {"max_prime_ml": "5"}},
            "relay.max_prime_ml",
            "must be a number more than 0.0 and at most 50.0, got '5' "
            "(text: write the number without quotes)",
        ),
        (
            {"channels": {"A": {**MOCK, "loaded_ml": 0}}},
            "channels.A.loaded_ml",
            "must be more than 0 and at most 5000, got 0",
        ),
        (
            {"channels": {"A": {**MOCK, "loaded_ml": "20"}}},
            "channels.A.loaded_ml",
            "must be a number more than 0 and at most 5000, got '20' "
            "(text: write the number without quotes)",
        ),
        (
            {"pump": ONE_PUMP, "timing": {"heartbeat_timeout_s": "2"}},
            "timing.heartbeat_timeout_s",
            "must be a number 0.2-30.0, got '2' (text: write the number without quotes)",
        ),
        (
            {"lines": {"bus": {**BUS, "baud": 0}}, "channels": {"A": MOCK}},
            "lines.bus.baud",
            "must be more than 0 and at most 4000000, got 0",
        ),
    ],
)
def test_a_bad_number_is_named_with_its_range(
    raw: dict[str, Any], field: str, message: str
) -> None:
    found = problems(raw)
    assert found.get(field) == message, found


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("relay", "overlap_steps", 20),
        ("relay", "overlap_steps", 2),
        ("relay", "max_prime_ml", 50),
        ("relay", "max_prime_ml", 50.0),
        ("timing", "heartbeat_timeout_s", 2),  # a whole number where a number belongs
    ],
)
def test_a_number_at_its_limit_is_taken(section: str, key: str, value: float) -> None:
    config = parse_config({"pump": ONE_PUMP, section: {key: value}})
    assert getattr(getattr(config, section), key) == value


def test_no_problem_is_worded_by_pydantic() -> None:
    """Everything this file refuses, at once: paths and messages are the config's own."""
    found = problems(
        {
            "channels": {"1B": MOCK, "A": {**MOCK, "loaded_ml": "5"}},
            "relay": {"overlap_steps": 2.5, "max_prime_ml": "5"},
        }
    )
    assert set(found) == {
        "channels.1B",
        "channels.A.loaded_ml",
        "relay.overlap_steps",
        "relay.max_prime_ml",
    }
    assert not [m for m in found.values() if "Input should" in m or "should match" in m]


def test_the_config_models_refuse_text_for_numbers_when_built_in_python_too() -> None:
    """Strict on the models themselves, not only in ``parse_config``."""
    with pytest.raises(ValueError, match="valid number"):
        SafetyConfig.model_validate({"pump": ONE_PUMP, "relay": {"max_prime_ml": "5"}})
