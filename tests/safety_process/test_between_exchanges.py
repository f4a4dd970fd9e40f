"""Several pumps on one line: a request that arrives while the safety process polls one
pump is served before the next pump's read-back, not after the whole round.

With four NE-1000s on one RS-232 line a round of read-backs takes tens of milliseconds; an
emergency stop that waited for it missed its goal (issue 14: every pump confirmed stopped
within 100 ms). The server lets waiting requests in between two pumps' exchanges; a
request's own read-backs are never interrupted, and a request served there is not served
into again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

import drivers.opening as drivers_opening
from drivers.errors import DeviceTimeout
from drivers.gpio.base import GpioConfig
from drivers.gpio.simulated import (
    SimulatedGpio,
    press_stop_button,
    read_sim_pins,
    release_stop_button,
)
from drivers.pumps.base import PumpDriver, PumpStatus, StopConfirmation
from drivers.pumps.mock import MockPumpDriver
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.clock import MonotonicClock, VirtualClock
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import syringe_by_name
from hil_tests.harness.processes import RawClient, wait_for
from safety.host.core import Channel, HostTiming, SafetyCore
from safety.ipc.messages import (
    Attach,
    Attached,
    Heartbeat,
    HeartbeatAck,
    Reply,
    RequestMessage,
    StatusNotice,
)
from safety.ipc.server import SafetyServer
from safety.journal import Journal
from safety.kernel.model import EmergencyStop, EmergencyStopRaised
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench, booted
from tests.kernel.support import norepi_standard
from tests.safety_process.conftest import SYRINGE

CHANNELS = ("A", "B", "C")


class LoggedDriver(MockPumpDriver):
    """A mock pump that writes each exchange into the bench's shared log; ``during_read``
    runs inside the next read-back (the moment a request lands while this pump talks)."""

    def __init__(self, name: str, log: list[str], *, pump: SimulatedPump) -> None:
        super().__init__(pump=pump)
        self.channel = name
        self.log = log
        self.during_read: list[object] = []

    def read_status(self) -> PumpStatus:
        status = super().read_status()
        self.log.append(f"read {self.channel}")
        while self.during_read:
            action = self.during_read.pop()
            assert callable(action)
            action()
        return status

    def stop(self) -> StopConfirmation | None:
        self.log.append(f"stop {self.channel}")
        return super().stop()


def _logged_drivers(log: list[str], names: tuple[str, ...] = CHANNELS) -> dict[str, LoggedDriver]:
    """A mock pump per channel, each writing its exchanges into ``log``."""
    clinical = MonotonicClock()
    return {name: LoggedDriver(name, log, pump=SimulatedPump(clinical, SYRINGE)) for name in names}


def _core_over(
    directory: Path,
    library: DrugLibrary,
    drivers: Mapping[str, PumpDriver],
    timing: HostTiming,
    *,
    liveness: VirtualClock | None = None,
    gpio: SimulatedGpio | None = None,
) -> SafetyCore:
    """A safety core over ``drivers`` (one channel each), started (liveness: the wall's
    monotonic clock unless given)."""
    core = SafetyCore(
        library,
        [Channel(name, d, syringe_by_name(SYRINGE)) for name, d in drivers.items()],
        Journal(directory / "journal.sqlite", "safety"),
        clinical=MonotonicClock(),
        liveness=liveness or MonotonicClock(),
        gpio=gpio,
        timing=timing,
    )
    core.start()
    return core


def _started_core(
    directory: Path, library: DrugLibrary, timing: HostTiming
) -> tuple[SafetyCore, dict[str, LoggedDriver], list[str]]:
    """A safety core over channels A, B, C (mock pumps writing to one log), started."""
    log: list[str] = []
    drivers = _logged_drivers(log)
    return _core_over(directory, library, drivers, timing), drivers, log


@pytest.fixture
def bench(
    short_dir: Path, library: DrugLibrary
) -> Iterator[tuple[SafetyServer, dict[str, LoggedDriver], list[str], bytes]]:
    core, drivers, log = _started_core(
        short_dir,
        library,
        HostTiming(poll_period_s=0.05, keep_alive_period_s=60.0, heartbeat_timeout_s=5.0),
    )
    key = os.urandom(32)
    server = SafetyServer(core, short_dir / "safety.sock", key)
    server.open()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve()
        except BaseException as exc:  # raised again below
            errors.append(exc)

    thread = threading.Thread(target=serve, name="safety-server", daemon=True)
    thread.start()
    try:
        yield server, drivers, log, key
    finally:
        server.request_stop()
        thread.join(timeout=10)
        server.close()
        core.close()
        core.journal.close()
    assert not errors, errors


@pytest.mark.timeout(30)
def test_an_emergency_stop_sent_during_one_pumps_read_back_stops_all_before_the_next_read(
    bench: tuple[SafetyServer, dict[str, LoggedDriver], list[str], bytes],
) -> None:
    server, drivers, log, key = bench
    raw = RawClient(server.path)
    raw.authenticate(key)
    raw.send(Attach(id=1))
    session = raw.read_until(Attached).session
    stop = RequestMessage(
        id=2,
        session=session,
        seq=1,
        expires_at=server.core.liveness.now() + 30,
        body=EmergencyStop(),
    )
    # the stop's bytes reach the socket while the poll timer is reading pump A: the server
    # thread itself sends them, so nothing depends on how the two threads are scheduled
    sent = threading.Event()

    def land() -> None:
        raw.send(stop)
        sent.set()
        log.append("estop sent")

    drivers["A"].during_read.append(land)
    reply = raw.read_until(Reply)
    assert reply.id == 2 and reply.outcome.verdict.accepted, reply
    assert sent.is_set()
    wait_for(lambda: log.count("read C") >= 3 or None, 5.0, "the round to end")
    at = log.index("estop sent")
    after = log[at + 1 :]
    # every pump's stop went out before the next pump of that round was read
    assert after[: len(CHANNELS)] == [f"stop {name}" for name in CHANNELS], log
    assert "read B" in after[len(CHANNELS) :], log
    raw.close()


def test_only_a_timers_round_lets_requests_in_and_never_into_itself(
    short_dir: Path, library: DrugLibrary
) -> None:
    core, _, log = _started_core(short_dir, library, HostTiming())
    calls: list[str] = []

    def let_in() -> None:
        calls.append(log[-1])
        core.poll()  # a request's own read-back of every channel: no hook inside it

    core.between_exchanges = let_in
    try:
        log.clear()
        core.poll()
        # between A and B, and between B and C; the nested round ran whole, unhooked
        assert calls == ["read A", "read B"], (calls, log)
        assert log.count("read A") == 3  # the outer round, and each nested one whole
        calls.clear()
        core.poll(1, list(CHANNELS))  # a request's read-backs (depth 1): never
        assert calls == []
    finally:
        core.close()
        core.journal.close()


@pytest.mark.timeout(30)
def test_a_request_waiting_when_the_timers_end_is_answered_before_their_status_is_pushed(
    short_dir: Path, library: DrugLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a round of read-backs the server answers what arrived during it first, then
    pushes the status the round changed: a command that waited behind a poll of another
    pump does not wait for the notices as well."""
    core, _, _ = _started_core(short_dir, library, HostTiming())
    key = os.urandom(32)
    server = SafetyServer(core, short_dir / "safety.sock", key)
    server.open()
    thread = threading.Thread(target=server.serve, name="safety-server", daemon=True)
    thread.start()
    raw = RawClient(server.path)
    try:
        raw.authenticate(key)
        raw.send(Attach(id=1))
        session = raw.read_until(Attached).session
        server.request_stop()
        thread.join(timeout=10)
        assert not thread.is_alive()
        server._stop = False  # the loop is this test's now, one ``_timers`` call
        server._push_notices()
        raw.sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            while True:  # what the attach left queued
                raw.read()
        raw.sock.settimeout(5.0)
        # the round's read-backs change the status, and a heartbeat arrives meanwhile
        monkeypatch.setattr("safety.ipc.dispatch.differs", lambda latest, pushed: True)
        monkeypatch.setattr("safety.ipc.snapshots.differs", lambda latest, held: True)
        service = core.service

        def round_with_a_request_landing() -> float:
            wait = service()
            server.dispatcher._changed()
            raw.send(Heartbeat(id=2, session=session))
            return wait

        monkeypatch.setattr(core, "service", round_with_a_request_landing)
        assert server._timers() == 0.0  # something was served: the timers look again
        first, second = raw.read(), raw.read()
        assert isinstance(first, HeartbeatAck) and first.id == 2, first
        assert isinstance(second, StatusNotice), second
    finally:
        raw.close()
        server.close()
        core.close()
        core.journal.close()


def _watched_core(
    directory: Path, library: DrugLibrary, drivers: Mapping[str, PumpDriver]
) -> tuple[SafetyCore, SimulatedGpio, VirtualClock]:
    """A started core over ``drivers`` with a simulated GPIO (no debounce: one sample of a
    press is a press) on a virtual liveness clock the drivers' reads can move."""
    liveness = VirtualClock()
    gpio = SimulatedGpio(GpioConfig(debounce_ms=0), state_dir=directory / "gpio", clock=liveness)
    gpio.open()
    timing = HostTiming(keep_alive_period_s=60.0)
    core = _core_over(directory, library, drivers, timing, liveness=liveness, gpio=gpio)
    return core, gpio, liveness


def test_the_stop_button_is_read_between_two_pumps_read_backs(
    short_dir: Path, library: DrugLibrary
) -> None:
    """A press during pump A's read-back (a slow one: the button poll falls due while it
    lasts) stops every pump before pump B is read, not at the end of the round; the
    watchdog's heartbeat pin is fed there too. Without the button and the feed between
    exchanges, a round of pumps that do not answer holds both up for a reply timeout each
    (``SafetyCore._watch``)."""
    log: list[str] = []
    drivers = _logged_drivers(log)
    core, gpio, liveness = _watched_core(short_dir, library, drivers)
    try:
        core.poll()
        toggles = read_sim_pins(gpio.state_dir)["heartbeat_toggles"]
        log.clear()

        def slow_read_with_a_press() -> None:
            liveness.advance(HostTiming().watchdog_toggle_s)  # both fall due meanwhile
            press_stop_button(gpio.state_dir)
            log.append("pressed")

        drivers["A"].during_read.append(slow_read_with_a_press)
        core.poll()
        assert log[: 2 + len(CHANNELS)] == [
            "read A",
            "pressed",
            *(f"stop {name}" for name in CHANNELS),
        ], log
        assert "read B" in log[2 + len(CHANNELS) :], log
        assert core.state.estopped
        assert read_sim_pins(gpio.state_dir)["heartbeat_toggles"] == toggles + 1
    finally:
        release_stop_button(gpio.state_dir)
        core.close()
        core.journal.close()
        gpio.close()


@pytest.mark.timeout(60)
def test_a_port_slow_to_open_holds_no_round_of_read_backs(
    short_dir: Path, library: DrugLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pump B behind a serial server reached over ``socket://``: its connection drops and
    the server answers no connection request any more (a connect then waits 5 s, pyserial's
    own timeout). Every round still reads A and C: B's reopen is left to its own thread
    after the bounded wait, one attempt for all the rounds, and B stays in its comms
    alarm (``drivers.opening``)."""
    monkeypatch.setattr(drivers_opening, "WAIT_S", 0.05)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # one queued connection, then the host drops every request
    port = int(listener.getsockname()[1])
    log: list[str] = []
    logged = _logged_drivers(log, ("A", "C"))
    drivers: dict[str, PumpDriver] = {
        "A": logged["A"],
        "B": Ne1000Driver(port=f"socket://127.0.0.1:{port}", reply_timeout_s=0.1),
        "C": logged["C"],
    }
    core, gpio, _ = _watched_core(short_dir, library, drivers)  # B: connected, never answers
    filler: socket.socket | None = None
    try:
        assert not core.state.channel("B").comms_ok
        served, _ = listener.accept()
        served.close()  # the server drops B's connection...
        filler = socket.create_connection(("127.0.0.1", port), timeout=1.0)  # ...and its slot
        for _ in range(3):  # the drop found, then two rounds with B's port opening
            log.clear()
            core.poll()
            assert log == ["read A", "read C"], log
        ours = f"open socket://127.0.0.1:{port}"
        opening = [t.name for t in threading.enumerate() if t.name == ours]
        assert opening == [ours]  # one attempt, still going
        assert not core.state.channel("B").comms_ok
        alarm = core.state.alarms.get("pump_comms", "B")
        assert alarm is not None and alarm.active
    finally:
        core.close()
        core.journal.close()
        gpio.close()
        listener.close()
        if filler is not None:
            filler.close()


def test_a_channel_stopped_between_two_keep_alives_gets_none(
    tmp_path: Path, library: DrugLibrary
) -> None:
    """Keep-alives are a timer's exchanges too, with requests and the stop button served
    between them: a channel an emergency stop (here a request; the button alike) stopped
    while another channel was kept alive gets no keep-alive after its stop (for a Modbus
    pump that would write its comms timeout right after S12)."""
    with booted(ChannelBench(tmp_path / "bench", library, ("A", "B"))) as bench:
        program = norepi_standard(bench.library)
        for channel, dose in (("A", "4"), ("B", "1")):  # the sum within a step's limit
            assert bench.load_on(channel, program).verdict.accepted
            assert bench.start_on(channel, dose).verdict.accepted
        # polls rare, keep-alives due at every service pass
        core = bench.core
        core.timing = replace(core.timing, poll_period_s=30.0, keep_alive_period_s=1.0)
        bench.service()  # the poll due under the old period: every channel read
        kept_alive: list[str] = []
        for name, driver in bench.drivers.items():
            original = driver.keep_alive

            def logged(name: str = name, original: Callable[[], None] = original) -> None:
                kept_alive.append(name)
                original()

            driver.keep_alive = logged  # type: ignore[method-assign]
        stops: list[str] = []

        def stop_once() -> None:
            if not stops:
                stops.append("api")
                core.emergency_stop("api")

        core.between_exchanges = stop_once
        bench.service(1.5)
        assert stops == ["api"] and core.state.estopped
        assert kept_alive == ["A"], kept_alive


#: the channels of the restart cases below
RESTARTED = ("A", "B", "C", "D")


@contextlib.contextmanager
def _restart_bench(tmp_path: Path, library: DrugLibrary) -> Iterator[ChannelBench]:
    """Channels A-D with a simulated GPIO; A runs at 4 and B at 1 mcg/min (the sum within
    a step's limit), C and D are idle: the bench a restart case restarts."""
    with booted(ChannelBench(tmp_path / "bench", library, RESTARTED, gpio=True)) as bench:
        program = norepi_standard(bench.library)
        for channel, dose in (("A", "4"), ("B", "1")):
            assert bench.load_on(channel, program).verdict.accepted
            assert bench.start_on(channel, dose).verdict.accepted
        yield bench


def test_a_restart_keeps_the_channels_it_read_alive_while_it_connects_the_next(
    tmp_path: Path, library: DrugLibrary
) -> None:
    """A restart connects the channels one after another. A's pump does not answer (its
    connection fails after 3.5 s of probes), C's takes 5 s: B, read at this start and
    running, is kept alive before D is connected, not only once every channel is, so a
    pump whose own link watchdog (an NE-1000 in safe mode, a Modbus comms timeout) is
    shorter than the sum of the others' connections does not stop itself; the watchdog's
    heartbeat pin is fed there too. A, running before the restart but not answering now,
    gets no keep-alive: for an NE-1000 that is a whole handshake again, seconds more for
    the others to wait."""
    channels = RESTARTED
    with _restart_bench(tmp_path, library) as bench:
        log: list[str] = []
        toggles: dict[str, int] = {}
        drivers = bench.drivers

        def connect(name: str, connect: Callable[[], None]) -> Callable[[], None]:
            def logged() -> None:
                log.append(f"connect {name}")
                toggles[name] = read_sim_pins(bench.gpio_dir)["heartbeat_toggles"]
                if name == "A":
                    bench.liveness.advance(3.5)
                    raise DeviceTimeout("no reply to any probe")
                if name == "C":
                    bench.liveness.advance(5.0)
                connect()

            return logged

        def keep_alive(name: str, keep_alive: Callable[[], None]) -> Callable[[], None]:
            def logged() -> None:
                log.append(f"keep-alive {name}")
                keep_alive()

            return logged

        for name in channels:
            driver = drivers[name]
            driver.connect = connect(name, driver.connect)  # type: ignore[method-assign]
            driver.keep_alive = keep_alive(name, driver.keep_alive)  # type: ignore[method-assign]
        bench.restart()
        assert log == ["connect A", "connect B", "connect C", "keep-alive B", "connect D"], log
        assert toggles["D"] > toggles["C"]  # fed after C's 5 s
        assert bench.pumps["B"].snapshot().running


def test_a_press_while_a_restart_connects_stops_every_pump_before_the_next_connection(
    tmp_path: Path, library: DrugLibrary
) -> None:
    """The stop button is pressed and released while a restart connects pump C (a press
    all of it inside one connection: the GPIO's own sampling thread counted it,
    ``watch_stop_button``). The emergency stop happens before D is connected, not once
    every channel is: the pumps read so far are stopped and the interlock is cut. D, not
    connected yet, counts as silent: its stop goes out after the relay (whatever the
    journal said of its link before the restart), fails at once (its driver is not
    linked), and is reconciled by the reading of its connection (S10), which clears its
    comms alarm; the loop's first read-back stops it if it runs (S12 holds until
    acknowledged)."""
    channels = RESTARTED
    with _restart_bench(tmp_path, library) as bench:
        gpio = bench.gpio
        assert gpio is not None
        log: list[str] = []
        drivers = bench.drivers

        def press_and_release() -> None:
            """What the sampling thread sees of a 100 ms press while C connects."""
            press_stop_button(bench.gpio_dir)
            gpio.stop_pressed()
            bench.liveness.advance(0.1)  # held past the 50 ms debounce
            gpio.stop_pressed()
            release_stop_button(bench.gpio_dir)
            bench.liveness.advance(0.1)
            gpio.stop_pressed()

        def connect(name: str, connect: Callable[[], None]) -> Callable[[], None]:
            def logged() -> None:
                log.append(f"connect {name}")
                connect()
                if name == "C":
                    press_and_release()

            return logged

        def stop(name: str, stop: Callable[[], object]) -> Callable[[], object]:
            def logged() -> object:
                log.append(f"stop {name}")
                return stop()

            return logged

        for name in channels:
            driver = drivers[name]
            driver.close()  # a new process: no pump linked before its connection
            driver.connect = connect(name, driver.connect)  # type: ignore[method-assign]
            driver.stop = stop(name, driver.stop)  # type: ignore[method-assign, assignment]
        set_relay = gpio.set_pump_enabled

        def relay(enabled: bool, channel: str | None = None) -> None:
            log.append(f"relay {'on' if enabled else 'off'}")
            set_relay(enabled, channel)

        gpio.set_pump_enabled = relay  # type: ignore[method-assign]
        bench.restart()
        assert log == [
            "connect A",
            "connect B",
            "connect C",
            "stop A",
            "stop B",
            "stop C",
            "relay off",
            "stop D",
            "connect D",
        ], log
        core = bench.core
        assert core.state.estopped
        assert not bench.pumps["A"].snapshot().running
        assert not bench.pumps["B"].snapshot().running
        assert read_sim_pins(bench.gpio_dir)["pump_enabled"] is False
        raised = [e for e in bench.events() if isinstance(e, EmergencyStopRaised)]
        assert [e.source for e in raised] == ["button"]
        d = core.state.channel("D")
        assert d.comms_ok and d.pending is None  # read, and reconciled, by its connection
        bench.service()
        for name in channels:
            assert not bench.pumps[name].snapshot().running
        active = [(a.key, a.scope) for a in core.alarm_views() if a.active]
        assert ("delivery_uncertain", "D") not in active, active
        assert ("pump_comms", "D") not in active, active
