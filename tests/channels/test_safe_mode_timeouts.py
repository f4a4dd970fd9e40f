"""Every shipped bench config gives its NE-1000s a safe-mode timeout that outlasts a
restart of the safety process.

A restarted safety process shakes hands with the channels in turn. An NE-1000 left in
safe mode answers the driver's first probe (a safe-mode packet, when the driver is set for
safe mode); the bound here is the worst case, every probe's reply lost before the last:
about four reply timeouts per pump (2 s at the default 0.5 s; what every restart cost
when the driver probed basic mode first). A pump whose own timeout runs out first stops
itself: an abrupt stop of a vasopressor. So the timeout must exceed the handshakes of
every pump on its line plus a keep-alive period (docs/safety.md, "A bench of several
channels")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from safety.host.config import load_config

BENCHES = sorted((Path(__file__).resolve().parents[2] / "config" / "bench").glob("*.toml"))
#: reply timeouts one NE-1000 handshake may wait out, at worst, for a pump in safe mode
PROBE_TIMEOUTS = 4
DEFAULT_REPLY_TIMEOUT_S = 0.5


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_an_ne1000s_safe_mode_timeout_outlasts_a_restarts_handshakes(path: Path) -> None:
    config = load_config(path)
    channels = config.channel_configs()
    on_line = Counter(c.line for c in channels.values() if c.line is not None)
    for name, channel in channels.items():
        timeout = channel.options.get("safe_mode_timeout_s")
        if channel.driver != "ne1000" or timeout is None:
            continue
        reply = channel.options.get("reply_timeout_s", DEFAULT_REPLY_TIMEOUT_S)
        assert isinstance(timeout, int) and isinstance(reply, int | float)
        pumps = on_line[channel.line] if channel.line is not None else 1
        handshakes = PROBE_TIMEOUTS * reply * pumps
        assert timeout > handshakes + config.timing.keep_alive_period_s, (
            f"{path.name}: channel {name}'s safe_mode_timeout_s {timeout} s does not outlast "
            f"{pumps} handshake(s) of {PROBE_TIMEOUTS * reply:g} s and a keep-alive period"
        )
