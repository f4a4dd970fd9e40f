"""A restarted safety process stamps each pump's first reading with the time it came back.

At start the process connects to every channel in turn, and a connection can take a while:
an NE-1000 still in safe mode from the process that died answers only the third probe of
the driver's handshake (two basic-mode probes time out first, about 2 s of real time per
pump; minutes on a scaled clinical clock, found by ``hil_tests/test_channels.py``). A
reading stamped before the handshake counts the handshake's flow as drug nobody ordered:
a false high over-infusion alarm on every channel that runs, then a false under-infusion
one at the next reading, and a restart delivery check that compares the counter with too
short a span.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from safety.kernel.model import ProgramSpec, ReadbackReceived, Resumed
from tests.channels.support import ChannelBench

#: clinical seconds each pump's handshake takes in the restarted process
HANDSHAKE_S = {"A": 120.0, "B": 240.0}
#: how long the process was dead (the pumps ran on): an accuracy span of its own
DEAD_S = 300.0


def _slow_handshakes(bench: ChannelBench) -> list[tuple[str, float]]:
    """Each channel's connect takes its ``HANDSHAKE_S``; returns (channel, clock when its
    handshake ended), filled as the restarted process connects."""
    done: list[tuple[str, float]] = []
    for name, driver in bench.drivers.items():
        connect = driver.connect

        def slow(name: str = name, connect: Callable[[], None] = connect) -> None:
            connect()
            bench.clinical.advance(HANDSHAKE_S[name])
            bench.liveness.advance(1.0)
            done.append((name, bench.core.now().clinical))

        setattr(driver, "connect", slow)  # noqa: B010 - an instance's method, for this test
    return done


def test_a_restart_stamps_each_reading_after_its_pumps_handshake(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    bench = make_channels()
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 8).execution == "applied"
    assert bench.start_on("B", 2).execution == "applied"
    bench.advance(20 * 60, poll_every_s=30)
    assert not bench.core.state.alarms.annunciating(), bench.core.state.alarms

    handshakes = _slow_handshakes(bench)
    first = bench.journal.last_id()
    bench.clinical.advance(DEAD_S)
    bench.liveness.advance(DEAD_S)
    bench.restart(attach=False)
    events = [e for e in bench.events()[first:] if isinstance(e, Resumed | ReadbackReceived)]
    assert [n for n, _ in handshakes] == ["A", "B"]
    for name, ended in handshakes:
        mine = [e for e in events if e.channel == name]
        assert [type(e) for e in mine] == [Resumed, ReadbackReceived]
        for event in mine:
            assert event.now.clinical >= ended, (name, event.now.clinical, ended)

    bench.advance(10 * 60, poll_every_s=30)
    state = bench.core.state
    for name in ("A", "B"):
        for key in ("accuracy_over", "accuracy_under"):
            assert state.alarms.get(key, name) is None, state.alarms.get(key, name)
    assert bench.pumps["A"].snapshot().running and bench.ch("A").set_rate == Decimal("30.0")
