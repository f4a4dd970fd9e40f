"""A read-back is traffic the pump's link watchdog counts (NE-1000 safe mode, a Modbus
comms timeout), so the safety process sends a keep-alive only into a silence: polled
every second, a pump that must hear from it every 2 s gets no extra exchange on the line
(which the other pumps on it share); polled every 10 s, it gets one in each 2 s without a
read."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from safety.host.core import HostTiming
from safety.kernel.model import ProgramSpec
from tests.channels.support import ChannelBench


@pytest.mark.parametrize(("poll_s", "expected"), [(1.0, 0), (10.0, 24)])
def test_a_keep_alive_fills_only_a_silence(
    make_channels: Callable[..., ChannelBench],
    std: ProgramSpec,
    monkeypatch: pytest.MonkeyPatch,
    poll_s: float,
    expected: int,
) -> None:
    bench = make_channels()
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted
    assert bench.start_on("A", 8).execution == "applied"
    bench.core.timing = HostTiming(poll_period_s=poll_s, keep_alive_period_s=2.0)
    sent: list[float] = []
    to_stopped: list[float] = []
    monkeypatch.setattr(bench.drivers["A"], "keep_alive", lambda: sent.append(bench.liveness.now()))
    monkeypatch.setattr(
        bench.drivers["B"], "keep_alive", lambda: to_stopped.append(bench.liveness.now())
    )
    bench.service(10.0)  # the new timing's first poll
    sent.clear()
    for _ in range(120):
        bench.service(0.5)
    assert len(sent) == expected, sent
    assert not bench.drivers["B"].pump.snapshot().running
    assert to_stopped == []  # a stopped pump needs none
