"""The shipped example of a bench of two channels (``config/bench/two-channels-example.toml``,
documented in docs/safety.md) is a valid safety config and says what its comments say."""

from __future__ import annotations

from pathlib import Path

from safety.host.config import load_config
from safety.host.process import kernel_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "bench" / "two-channels-example.toml"

#: a restarted safety process shakes hands with each NE-1000 left in safe mode in about
#: 2 s (hil_tests/test_channels.py); the pumps' own timeout must outlast every handshake
HANDSHAKE_S_PER_PUMP = 2.0


def test_the_two_channel_example_is_two_pumps_on_one_line() -> None:
    config = load_config(EXAMPLE)
    channels = config.channel_configs()
    assert list(channels) == ["A", "B"]
    assert {c.line for c in channels.values()} == {"bus"}
    assert [c.options["address"] for c in channels.values()] == [0, 1]
    assert {c.container for c in channels.values()} == {"bd-plastipak-50ml"}
    assert config.lines["bus"].kind == "serial" and config.interlock.scope == "bench"
    for channel in channels.values():
        timeout = channel.options["safe_mode_timeout_s"]
        assert isinstance(timeout, int)
        assert timeout > HANDSHAKE_S_PER_PUMP * len(channels) + config.timing.keep_alive_period_s
    kernel = kernel_config(config)
    assert kernel.handover_before_empty_s == 5 * 60 and kernel.warn_before_empty_s == 30 * 60
    assert kernel.overlap_steps == 4 and kernel.overlap_step_s == 60
    assert kernel.max_container_pause_s == 3 * 60
