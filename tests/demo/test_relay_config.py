"""The shipped two-pump relay bench config is valid, and says what the demo's bench is:
two NE-1000s at their addresses on one line, channels A and B, the relay's figures."""

from __future__ import annotations

from pathlib import Path

from safety.host.config import load_config
from safety.host.process import kernel_config

REPO = Path(__file__).resolve().parents[2]


def test_the_relay_bench_config_is_two_ne1000s_on_one_line() -> None:
    config = load_config(REPO / "config" / "bench" / "ne1000-relay-safety.toml")
    channels = config.channel_configs()
    assert list(channels) == ["A", "B"]
    assert {c.line for c in channels.values()} == {"bus"}
    assert [c.options["address"] for c in channels.values()] == [0, 1]
    assert config.lines["bus"].port == "/dev/ttyUSB0"
    assert config.interlock.scope == "bench"
    kernel = kernel_config(config)
    assert kernel.handover_before_empty_s == 300.0
    assert kernel.overlap_steps == 4 and kernel.overlap_step_s == 60.0
