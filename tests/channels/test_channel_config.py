"""The safety config of a bench of several channels: lines, channels, interlock, relay.

A ``[pump]`` table alone is the one-pump bench of today (channel A); ``[channels.NAME]``
tables list several pumps, each on a port of its own or on a shared ``[lines.NAME]`` at
its address. Every mistake is named by its field, with what is allowed.
"""

from __future__ import annotations

from typing import Any

import pytest

from safety.host.config import ConfigError, parse_config
from safety.host.process import kernel_config

MOCK = {"driver": "mock", "container": "bd-plastipak-50ml"}
BUS = {"kind": "serial", "port": "/dev/ttyUSB7", "baud": 19200}


def _ne(address: int, line: str = "bus") -> dict[str, Any]:
    return {
        "driver": "ne1000",
        "container": "bd-plastipak-50ml",
        "line": line,
        "options": {"address": address},
    }


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return dict(info.value.problems)


def test_a_pump_table_is_channel_a_with_its_loaded_volume() -> None:
    config = parse_config(
        {
            "pump": {
                "driver": "mock",
                "syringe": "bd-plastipak-50ml",
                "mock": {"loaded_volume_ml": 20},
            }
        }
    )
    channels = config.channel_configs()
    assert list(channels) == ["A"]
    assert channels["A"].container == "bd-plastipak-50ml" and channels["A"].loaded_ml == 20
    assert config.interlock.scope == "bench"


def test_channels_keep_their_order_and_share_a_line_at_their_addresses() -> None:
    config = parse_config(
        {"lines": {"bus": BUS}, "channels": {"B": _ne(1), "A": _ne(0), "C": MOCK}}
    )
    assert list(config.channel_configs()) == ["B", "A", "C"]
    assert config.channels["A"].line == "bus"


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (
            {"pump": {"driver": "mock", "syringe": "bd-plastipak-50ml"}, "channels": {"A": MOCK}},
            "(top level)",
            "[pump] and [channels] both given",
        ),
        (
            {"lines": {"bus": BUS}, "channels": {"A": _ne(0), "B": _ne(0)}},
            "(top level)",
            "channels.B: driver 'ne1000' on line 'bus': line /dev/ttyUSB7: address 0 is already",
        ),
        (
            {"lines": {"bus": BUS}, "channels": {"A": _ne(0, "bus2")}},
            "(top level)",
            "channels.A.line: no line 'bus2' (lines: bus)",
        ),
        (
            {"lines": {"bus": BUS, "spare": BUS}, "channels": {"A": _ne(0)}},
            "(top level)",
            "lines.spare is used by no channel",
        ),
        (
            {"lines": {"bus": BUS}, "channels": {"A": {**MOCK, "line": "bus"}}},
            "channels.A",
            "driver 'mock' is in-process: it is on no line",
        ),
        (
            {"channels": {"A": {**MOCK, "loaded_ml": 50.5}}},
            "channels.A",
            "loaded_ml must be at most 50 mL (what bd-plastipak-50ml holds), got 50.5",
        ),
        ({"channels": {"A b": MOCK}}, "channels.A b", "must start with a letter"),
        ({"channels": {"A": {**MOCK, "container": "bag-2l"}}}, "channels.A.container", "bag"),
        (
            {"channels": {"A": MOCK}, "relay": {"warn_before_empty_min": 5}},
            "relay",
            "warn_before_empty_min (5) must be more than handover_before_empty_min (5)",
        ),
        (
            {"channels": {"A": MOCK}, "relay": {"overlap_steps": 1}},
            "relay.overlap_steps",
            "must be 2-20, got 1",
        ),
        ({"channels": {"A": MOCK}, "interlock": {"scope": "pump"}}, "interlock.scope", "'bench'"),
    ],
)
def test_a_bad_bench_is_named_with_what_is_allowed(
    raw: dict[str, Any], field: str, words: str
) -> None:
    found = problems(raw)
    assert field in found, found
    assert words in found[field], found[field]


def test_the_relay_section_sets_the_kernels_figures() -> None:
    config = parse_config(
        {
            "channels": {"A": MOCK, "B": MOCK},
            "relay": {"handover_before_empty_min": 2, "overlap_step_min": 0.5, "max_prime_ml": 3},
        }
    )
    kernel = kernel_config(config)
    assert kernel.handover_before_empty_s == 120.0
    assert kernel.overlap_step_s == 30.0
    assert str(kernel.max_prime_ml) == "3.0"
    assert kernel.warn_before_empty_s == 30 * 60.0  # the default


SIM_GPIO = {"backend": "simulated", "state_dir": "/tmp/gpio"}


def test_a_per_channel_interlock_needs_a_relay_for_every_channel() -> None:
    both = {"channels": {"A": MOCK, "B": MOCK}, "interlock": {"scope": "channel"}}
    found = problems({**both, "gpio": SIM_GPIO})
    (words,) = found.values()
    assert "gpio.pins.channel_enable_pins: no pin for channel(s) A, B" in words
    assert 'interlock.scope = "channel" needs one pump-enable relay per channel (A, B)' in words
    one_short = {**SIM_GPIO, "pins": {"channel_enable_pins": {"A": 5, "X": 6}}}
    (words,) = problems({**both, "gpio": one_short}).values()
    assert "no pin for channel(s) B; no channel(s) X" in words
    config = parse_config(
        {**both, "gpio": {**SIM_GPIO, "pins": {"channel_enable_pins": {"A": 5, "B": 6}}}}
    )
    assert config.interlock.scope == "channel"
    # without GPIO the kernel keeps the interlock state per channel; no relay to wire
    assert parse_config(both).interlock.scope == "channel"


def test_channel_relays_are_refused_where_the_interlock_is_the_benchs() -> None:
    pins = {**SIM_GPIO, "pins": {"channel_enable_pins": {"A": 5, "B": 6}}}
    (words,) = problems({"channels": {"A": MOCK, "B": MOCK}, "gpio": pins}).values()
    assert 'gpio.pins.channel_enable_pins applies with interlock.scope = "channel"' in words
    assert "(scope is 'bench', backend 'simulated')" in words
