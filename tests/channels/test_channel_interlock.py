"""S12 with an interlock per channel: each channel's own pump-enable relay.

``interlock.scope = "channel"`` wires one relay per pump (``[gpio.pins]
channel_enable_pins``). An emergency stop cuts every channel's relay; a restart of one
channel re-enables its relay alone, so a pump still stopped after the emergency stop stays
without power until it too is started. The bench's shared relay is not what cuts here.
"""

from __future__ import annotations

from collections.abc import Callable

from safety.kernel.model import ProgramSpec
from tests.channels.support import ChannelBench


def test_an_emergency_stop_cuts_every_channels_relay_and_a_restart_enables_only_its_own(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    bench = make_channels(interlock_scope="channel", gpio=True)
    bench.boot()
    gpio = bench.gpio
    assert gpio is not None
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.start_on("A", 4).verdict.accepted
    assert bench.start_on("B", 1).verdict.accepted  # the total: a step of 25 %
    assert gpio.channel_enabled("A") and gpio.channel_enabled("B")

    outcome = bench.estop()
    assert outcome.verdict.accepted and outcome.execution == "applied"
    assert not gpio.channel_enabled("A") and not gpio.channel_enabled("B")
    assert gpio.pump_enabled  # the bench relay is not this bench's interlock
    assert [c.interlock_enabled for c in bench.core.state.channels.values()] == [False, False]

    assert bench.ack().verdict.accepted
    restart = bench.start_on("A", 4)
    assert restart.verdict.accepted and restart.execution == "applied", restart.verdict.message
    assert gpio.channel_enabled("A")
    assert not gpio.channel_enabled("B")  # B's pump stays cut until B is started
    assert bench.pumps["A"].snapshot().running and not bench.pumps["B"].snapshot().running
    assert bench.replayed() == bench.core.state
