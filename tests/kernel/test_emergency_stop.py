"""S12: emergency stop from the API or the GPIO button: stop now, interlock, alarm,
journaled; no restart until acknowledged. Never refused, whatever the state."""

from __future__ import annotations

from collections.abc import Callable

from drivers.gpio.simulated import press_stop_button, read_sim_pins, release_stop_button
from safety.alarms import Priority
from safety.kernel.model import (
    CommandIssued,
    EmergencyStop,
    EmergencyStopRaised,
    ProgramSpec,
    RequestDecided,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
)
from safety.kernel.state import Mode
from safety.reasons import Reason
from tests.kernel.support import Bench


def _gpio_bench(make_bench: Callable[..., Bench], std: ProgramSpec) -> Bench:
    bench = make_bench(gpio=True)
    bench.boot()
    assert bench.load(std).verdict.accepted
    assert bench.start(8).verdict.accepted
    assert bench.gpio is not None and bench.gpio.pump_enabled
    return bench


def _assert_emergency_stopped(bench: Bench, source: str) -> None:
    gpio = bench.gpio
    assert gpio is not None
    assert not bench.pump.snapshot().running and bench.truth_rate() == 0.0
    assert not gpio.pump_enabled  # the interlock relay cuts the pump
    pins = read_sim_pins(bench.gpio_dir)
    assert pins  # published for anyone outside to see
    state = bench.core.state
    assert state.estopped and state.mode is Mode.EMERGENCY_STOPPED
    alarm = state.alarms.get("estop")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.reason is Reason.EMERGENCY_STOPPED and source in alarm.message
    assert gpio.alarm_on
    # journaled in order: the request, the stop event, then the stop and the interlock
    events = bench.events()
    i = next(
        n
        for n, e in enumerate(events)
        if isinstance(e, RequestDecided) and isinstance(e.body, EmergencyStop)
    )
    raised = events[i + 1]
    assert isinstance(raised, EmergencyStopRaised) and raised.source == source
    commands = [e for e in events[i:] if isinstance(e, CommandIssued)]
    assert [(c.action, c.cause) for c in commands[:2]] == [
        (StopPump(), "estop"),
        (SetInterlock(False), "estop"),
    ]


def test_s12_emergency_stop_from_the_api(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = _gpio_bench(make_bench, std)
    out = bench.estop()
    assert out.verdict.accepted and out.verdict.reason is Reason.EMERGENCY_STOPPED
    _assert_emergency_stopped(bench, "api")


def test_s12_emergency_stop_from_the_gpio_button(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = _gpio_bench(make_bench, std)
    press_stop_button(bench.gpio_dir)
    for _ in range(10):  # 0.2 s of the host loop at 20 ms: past the 50 ms debounce
        bench.service(0.02)
    release_stop_button(bench.gpio_dir)
    _assert_emergency_stopped(bench, "button")


def test_s12_a_button_bounce_shorter_than_the_debounce_is_not_a_stop(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = _gpio_bench(make_bench, std)
    press_stop_button(bench.gpio_dir)
    bench.service(0.02)
    release_stop_button(bench.gpio_dir)
    for _ in range(5):
        bench.service(0.02)
    assert bench.pump.snapshot().running and not bench.core.state.estopped


def test_s12_emergency_stop_ignores_sequence_session_expiry_and_wean(infusing: Bench) -> None:
    """From the wrong session, with a used sequence number, long expired, above the
    stop threshold: an emergency stop is never refused."""
    out = infusing.send(EmergencyStop("api"), session="someone-else", seq=1, expires_at=0.0)
    assert out.verdict.accepted
    assert not infusing.pump.snapshot().running


def test_s12_emergency_stop_works_while_delivery_is_uncertain(infusing: Bench) -> None:
    infusing.wire.lose_ack_next(2)
    assert infusing.change(10).execution.startswith("uncertain")
    assert infusing.core.state.pending is not None
    out = infusing.estop()
    assert out.verdict.accepted
    assert not infusing.pump.snapshot().running


def test_s12_restart_refused_until_acknowledged(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = _gpio_bench(make_bench, std)
    assert bench.estop().verdict.accepted
    refused = bench.start(8)
    assert not refused.verdict.accepted
    assert refused.verdict.reason is Reason.EMERGENCY_STOPPED
    assert not bench.pump.snapshot().running
    assert bench.gpio is not None and not bench.gpio.pump_enabled

    assert bench.ack().verdict.accepted
    assert not bench.core.state.estopped
    out = bench.start(8)
    assert out.verdict.accepted, out.verdict.message
    # the interlock is released first, on the record, then the rate and the start
    last = bench.commands()[-3:]
    assert [c.action for c in last] == [
        SetInterlock(True),
        SetRate(last[1].action.rate_ml_h),  # type: ignore[union-attr]
        StartPump(),
    ]
    assert bench.gpio.pump_enabled and bench.pump.snapshot().running


def test_s12_acknowledging_other_alarms_does_not_release_the_stop(infusing: Bench) -> None:
    assert infusing.estop().verdict.accepted
    assert infusing.ack(("pump_comms",)).verdict.accepted
    assert infusing.core.state.estopped
    assert infusing.start(8).verdict.reason is Reason.EMERGENCY_STOPPED


def test_s12_lost_stop_command_still_cuts_the_interlock_and_stops_at_the_next_readback(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """The stop request is lost on the wire (and so is the read that follows): the relay
    does not depend on the pump's link and must be cut at once; and once the pump can
    be read again, a pump still running under an emergency stop is stopped."""
    bench = _gpio_bench(make_bench, std)
    bench.wire.drop_next(2)
    out = bench.estop()
    assert out.verdict.accepted
    assert bench.gpio is not None and not bench.gpio.pump_enabled
    bench.advance(5)
    assert not bench.pump.snapshot().running and bench.truth_rate() == 0.0
    assert bench.core.state.estopped and bench.core.state.mode is Mode.EMERGENCY_STOPPED


def test_s12_restart_with_a_lost_emergency_stop_stops_the_pump_at_the_first_poll(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """Found by the state machine: the stop is lost on the wire, then the safety process
    restarts. ``start()`` only reads (it never acts, so a restart cannot change a
    legitimate infusion): the pump runs on under the emergency stop until the first
    poll of the process's loop, which stops it. The relay stays cut throughout."""
    bench = _gpio_bench(make_bench, std)
    bench.wire.drop_next(2)
    assert bench.estop().verdict.accepted
    assert bench.gpio is not None and not bench.gpio.pump_enabled
    bench.core.close()
    bench.restart()
    assert bench.core.state.estopped
    assert bench.pump.snapshot().running  # the window: start() read it, did not act
    assert not bench.gpio.pump_enabled
    bench.service()  # the loop's first round
    assert not bench.pump.snapshot().running and bench.truth_rate() == 0.0
    stops = [c for c in bench.commands() if isinstance(c.action, StopPump)]
    assert [c.cause for c in stops][-1] == "safety"
