"""An NE-1000's safe-mode timeout outlasts a restart of the safety process, on every
config: the shipped ones and any a user writes.

A restarted safety process shakes hands with the channels in turn. An NE-1000 left in
safe mode answers the driver's first probe (a safe-mode packet, when the driver is set for
safe mode); the bound is the worst case, every probe's reply lost before the last:
about four reply timeouts per pump, and after each lost probe a drain of the line until
it has been quiet (the reply timeout on a port of its own, 0.5 s on a shared line): 3.5 s
at the default 0.5 s. A pump whose own timeout runs out first stops
itself: an abrupt stop of a vasopressor. So the timeout must exceed the handshakes of
every pump on its line plus a keep-alive period (docs/safety.md, "A bench of several
channels"). The rule lives in the config's validation (``safe_mode_problems``), so
``python -m safety --check`` refuses a config that breaks it; these tests use that one
implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from safety.host.config import (
    ConfigError,
    load_config,
    ne1000_safe_mode_floor_s,
    parse_config,
    safe_mode_problems,
)

BENCHES = sorted((Path(__file__).resolve().parents[2] / "config" / "bench").glob("*.toml"))
BUS = {"kind": "serial", "port": "/dev/ttyUSB7", "baud": 19200}
FIELD = "channels.{}.options.safe_mode_timeout_s"


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_every_shipped_bench_keeps_the_bound(path: Path) -> None:
    config = load_config(path)  # refused here if it did not
    assert safe_mode_problems(config) == []


def _two_on_a_line(timeout: float, **more: Any) -> dict[str, Any]:
    options = {"safe_mode_timeout_s": timeout, **more}
    return {
        "lines": {"bus": BUS},
        "channels": {
            name: {
                "driver": "ne1000",
                "container": "bd-plastipak-50ml",
                "line": "bus",
                "options": {"address": address, **options},
            }
            for address, name in enumerate("AB")
        },
    }


def _problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return dict(info.value.problems)


def test_the_bound_is_four_reply_timeouts_and_three_drains_per_pump_and_a_keep_alive() -> None:
    assert ne1000_safe_mode_floor_s(0.5, 2, 2.0, 0.5) == 9.0
    assert ne1000_safe_mode_floor_s(0.5, 1, 2.0, 0.5) == 5.5
    assert ne1000_safe_mode_floor_s(0.25, 4, 1.0, 0.5) == 11.0
    assert ne1000_safe_mode_floor_s(1.0, 1, 2.0, 1.0) == 9.0


def test_two_pumps_on_one_line_at_the_bound() -> None:
    """Two NE-1000s on a line, default reply timeout 0.5 s, the line's drain 0.5 s and
    keep-alive 2 s: more than 2 x (4 x 0.5 + 3 x 0.5) + 2 = 9 s. 10 is taken; 9 (exactly
    the bound) and 3 (the reported case) are refused, each pump named with the field, the
    value and the bound."""
    assert parse_config(_two_on_a_line(10)).channels["B"].options["safe_mode_timeout_s"] == 10
    for timeout in (9, 3):
        found = _problems(_two_on_a_line(timeout))
        assert set(found) == {FIELD.format("A"), FIELD.format("B")}, found
        message = found[FIELD.format("A")]
        assert message.startswith(f"must be more than 9 s (and at most 255), got {timeout}: ")
        assert (
            "4 x reply_timeout_s (0.5 s) and 3 drains of the line (0.5 s) on each of the 2 "
            "NE-1000s on line 'bus'" in message
        )
        assert "timing.keep_alive_period_s (2 s)" in message


def test_the_bound_follows_the_reply_timeout_and_the_keep_alive_period() -> None:
    """reply 0.25 s, keep-alive 1 s: more than 2 x (4 x 0.25 + 3 x 0.5) + 1 = 6 s."""
    fast = {"timing": {"keep_alive_period_s": 1.0}}
    assert parse_config({**_two_on_a_line(7, reply_timeout_s=0.25), **fast})
    found = _problems({**_two_on_a_line(6, reply_timeout_s=0.25), **fast})
    assert found[FIELD.format("B")].startswith("must be more than 6 s (and at most 255), got 6")


def test_one_pump_on_its_own_port_at_the_bound() -> None:
    """``[pump]``: one handshake (4 x 0.5 s, and 3 drains of the port's own reply timeout,
    0.5 s) and a keep-alive (2 s): more than 5.5 s."""

    def pump(timeout: float) -> dict[str, Any]:
        options = {"port": "/dev/ttyUSB0", "safe_mode_timeout_s": timeout}
        return {"pump": {"driver": "ne1000", "syringe": "bd-plastipak-50ml", "options": options}}

    assert parse_config(pump(6)).pump is not None
    found = _problems(pump(5.5))
    assert list(found) == ["pump.options.safe_mode_timeout_s"], found
    assert (
        "must be more than 5.5 s (and at most 255), got 5.5: "
        in found["pump.options.safe_mode_timeout_s"]
    )
    assert "on the pump" in found["pump.options.safe_mode_timeout_s"]


def test_basic_mode_has_no_timeout_to_check() -> None:
    raw = _two_on_a_line(7)
    for channel in raw["channels"].values():
        del channel["options"]["safe_mode_timeout_s"]
    assert parse_config(raw)
