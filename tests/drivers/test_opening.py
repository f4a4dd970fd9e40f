"""Reopening a port without stalling the caller (``drivers.opening``): one attempt at a time,
waited on for a bounded time, paced after a failure; a deliberate opening waits and
ignores the pause; a cancelled attempt's port is closed, never handed out.

The port here is a token and the attempt a function the test holds or releases, on a
virtual clock for the pause: nothing waits on the wall clock but the bounded wait itself,
and an attempt the test holds is released before the test ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import drivers.opening
from drivers.errors import DeviceDisconnected
from drivers.opening import Opener
from drivers.transport import SerialTransport
from firmware_bridge.clock import VirtualClock

pytestmark = pytest.mark.timeout(30)

WAIT_S = 0.05  # the bounded wait: a held attempt costs a call this long
RETRY_S = 1.0
LONG_S = 10.0  # how long the test itself waits for a released attempt to end


class Attempts:
    """The function an ``Opener`` calls: each call is one attempt, counted; it returns a
    new port token, fails when ``fail`` says why, and blocks while ``held``."""

    def __init__(self) -> None:
        self.calls = 0
        #: attempts running at once, now and at most
        self.running = 0
        self.most_running = 0
        self.fail = ""
        self.held = threading.Event()
        self.held.set()  # not held
        self.started = threading.Event()
        self.closed: list[str] = []
        #: the ports closed when each attempt began (an attempt must find the ports of
        #: the cancelled ones before it closed: a serial port is opened for exclusive use)
        self.closed_at_start: list[list[str]] = []

    def open_port(self) -> str:
        self.calls += 1
        call = self.calls
        self.closed_at_start.append(list(self.closed))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.started.set()
        try:
            assert self.held.wait(LONG_S), "the test never released the attempt"
            if self.fail:
                raise DeviceDisconnected(self.fail)
            return f"port {call}"
        finally:
            self.running -= 1

    def close_port(self, port: str) -> None:
        self.closed.append(port)

    def hold(self) -> None:
        self.held.clear()
        self.started.clear()

    def release(self) -> None:
        self.held.set()


@pytest.fixture
def attempts() -> Iterator[Attempts]:
    a = Attempts()
    yield a
    a.release()  # never leave an attempt's thread blocked


def opener(attempts: Attempts, clock: VirtualClock) -> Opener[str]:
    return Opener(
        attempts.open_port,
        attempts.close_port,
        what="ttyUSB0",
        wait_s=WAIT_S,
        retry_s=RETRY_S,
        clock=clock.now,
    )


def until(done: Callable[[], object], what: str) -> None:
    """Wait (bounded) until the attempt's own thread has done ``what``."""
    pause = threading.Event()
    deadline = time.monotonic() + LONG_S
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {LONG_S} s"
        pause.wait(0.001)


def ended(o: Opener[str]) -> None:
    until(lambda: not o.in_flight, "the attempt ended")


def test_a_quick_open_is_taken_in_the_same_call(attempts: Attempts) -> None:
    o = opener(attempts, VirtualClock())
    assert o.reopen() == "port 1"
    assert not o.in_flight
    assert o.reopen() == "port 2"  # every call that needs the port makes one attempt
    assert attempts.calls == 2


def test_a_slow_open_holds_the_call_no_longer_than_the_wait_and_is_taken_later(
    attempts: Attempts,
) -> None:
    """The attempt is held: the call fails at once (after the bounded wait), naming why;
    a second call starts no second attempt; the released attempt's port is handed to the
    next call, once."""
    o = opener(attempts, VirtualClock())
    attempts.hold()
    with pytest.raises(
        DeviceDisconnected, match=r"ttyUSB0: still opening, 0\.00 s since the attempt started"
    ):
        o.reopen()
    assert attempts.started.is_set() and o.in_flight
    with pytest.raises(DeviceDisconnected, match="still opening"):
        o.reopen()
    assert attempts.calls == 1  # one attempt in flight, never one per call
    attempts.release()
    ended(o)
    assert o.reopen() == "port 1"  # taken by the next call, without a new attempt
    assert attempts.calls == 1
    assert attempts.closed == []


def test_after_a_failure_calls_fail_at_once_until_the_pause_has_run_exactly(
    attempts: Attempts,
) -> None:
    """At the limit: the pause runs from the failed attempt's start (a slow failure does
    not push the next attempt past the next poll). One step short of it a call fails at
    once with the last reason (no attempt); exactly at it, a new attempt is made."""
    clock = VirtualClock()
    o = opener(attempts, clock)
    attempts.fail = "cannot open ttyUSB0: no such file"
    attempts.hold()
    with pytest.raises(DeviceDisconnected, match="still opening"):
        o.reopen()
    clock.advance(0.3)  # the attempt takes 0.3 s to fail
    attempts.release()
    ended(o)
    with pytest.raises(DeviceDisconnected, match=rf"\(next attempt in {RETRY_S - 0.3:.1f} s\)"):
        o.reopen()
    clock.advance(RETRY_S - 0.3 - 0.001)
    with pytest.raises(DeviceDisconnected, match=r"no such file \(next attempt in 0\.0 s\)"):
        o.reopen()
    assert attempts.calls == 1
    clock.advance(0.001)
    with pytest.raises(DeviceDisconnected, match=r"no such file$"):
        o.reopen()
    assert attempts.calls == 2
    attempts.fail = ""
    clock.advance(RETRY_S)
    assert o.reopen() == "port 3"


def test_a_call_that_finds_an_attempt_in_flight_does_not_wait_for_it(
    attempts: Attempts,
) -> None:
    """Only the call that started the attempt waits for it: with several drivers on one
    silent line, a round costs one wait, not one per driver. The first caller waits (a
    long wait here); a second call fails at once, and only then is the attempt released,
    so the first caller gets the port only if the second did not wait too."""
    o: Opener[str] = Opener(attempts.open_port, attempts.close_port, what="ttyUSB0", wait_s=LONG_S)
    attempts.hold()
    taken: list[str] = []
    first = threading.Thread(target=lambda: taken.append(o.reopen()), daemon=True)
    first.start()
    assert attempts.started.wait(LONG_S)
    with pytest.raises(DeviceDisconnected, match="still opening"):
        o.reopen()
    attempts.release()
    first.join(LONG_S)
    assert taken == ["port 1"]
    assert attempts.calls == 1


def test_a_deliberate_open_ignores_the_pause_and_waits_for_its_attempt(
    attempts: Attempts,
) -> None:
    """``connect`` asks now: it makes an attempt inside the pause, and waits for it to end
    however long it takes (its own timeouts bound it)."""
    o = opener(attempts, VirtualClock())
    attempts.fail = "refused"
    with pytest.raises(DeviceDisconnected, match="refused"):
        o.reopen()
    attempts.fail = ""
    attempts.hold()
    taken: list[str] = []
    caller = threading.Thread(target=lambda: taken.append(o.open_now()), daemon=True)
    caller.start()
    assert attempts.started.wait(LONG_S)
    caller.join(WAIT_S * 4)
    assert caller.is_alive() and not taken  # still waiting, past the bounded wait
    attempts.release()
    caller.join(LONG_S)
    assert taken == ["port 2"]


def test_a_cancelled_attempt_closes_what_it_opens_and_hands_nothing_out(
    attempts: Attempts,
) -> None:
    """The owner closed the port while an attempt was in flight: the port that attempt
    opens is closed, and the next call makes an attempt of its own (the pause forgotten)."""
    o = opener(attempts, VirtualClock())
    attempts.hold()
    with pytest.raises(DeviceDisconnected, match="still opening"):
        o.reopen()
    o.cancel()
    assert o.in_flight  # the cancelled attempt has not ended: it may hold the port
    attempts.release()
    until(lambda: attempts.closed, "the cancelled attempt's port closed")
    assert attempts.closed == ["port 1"]
    assert o.reopen() == "port 2"


def test_an_attempt_after_a_cancel_waits_for_the_cancelled_one_to_end(
    attempts: Attempts,
) -> None:
    """The owner closed the port and opens it again while the cancelled attempt still
    runs: the new attempt starts only once the old one has ended and closed what it
    opened, so the two never hold the port at once (a serial port is opened for exclusive
    use: the second would fail with "busy")."""
    o = opener(attempts, VirtualClock())
    attempts.hold()
    with pytest.raises(DeviceDisconnected, match="still opening"):
        o.reopen()
    o.cancel()
    taken: list[str] = []
    caller = threading.Thread(target=lambda: taken.append(o.open_now()), daemon=True)
    caller.start()
    caller.join(WAIT_S)
    assert attempts.calls == 1  # the new attempt waits for the cancelled one
    attempts.release()
    caller.join(LONG_S)
    assert taken == ["port 2"]
    assert attempts.closed == ["port 1"]
    assert attempts.most_running == 1
    assert attempts.closed_at_start == [[], ["port 1"]]  # closed before the next began


def test_a_port_opened_and_not_taken_is_closed_by_cancel(attempts: Attempts) -> None:
    o = opener(attempts, VirtualClock())
    attempts.hold()
    with pytest.raises(DeviceDisconnected):
        o.reopen()
    attempts.release()
    ended(o)
    o.cancel()
    assert attempts.closed == ["port 1"]


def test_whatever_the_attempt_raises_is_the_reason(attempts: Attempts) -> None:
    def broken() -> str:
        raise ValueError("bad baud rate")

    o: Opener[str] = Opener(broken, attempts.close_port, what="ttyUSB0", wait_s=1.0)
    with pytest.raises(DeviceDisconnected, match="ttyUSB0: cannot open: bad baud rate"):
        o.reopen()


# ------------------------------------------------------------------ a real network port
@pytest.fixture
def unanswering() -> Iterator[tuple[socket.socket, int]]:
    """A TCP listener that never accepts: once its one queued connection is taken, the
    host drops every further connection request, and a client's ``connect`` waits for its
    own timeout (pyserial's ``socket://``: 5 s), as with a serial server switched off."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    try:
        yield listener, int(listener.getsockname()[1])
    finally:
        listener.close()


def test_a_network_port_that_stops_answering_holds_a_call_no_longer_than_the_wait(
    unanswering: tuple[socket.socket, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serial server reached over ``socket://``: its connection drops, and it answers no
    more connection requests. The call that finds the port lost fails after the bounded
    wait, saying the port is still opening, while the attempt goes on without it; the next
    call starts no second attempt."""
    monkeypatch.setattr(drivers.opening, "WAIT_S", WAIT_S)
    listener, port = unanswering
    t = SerialTransport(f"socket://127.0.0.1:{port}", baudrate=19200)
    t.open()  # queued by the host: the listener's one slot
    try:
        served, _ = listener.accept()
        served.close()  # the server drops the connection...
        filler = socket.create_connection(("127.0.0.1", port), timeout=1.0)  # ...and its slot
        try:
            with pytest.raises(DeviceDisconnected, match="vanished"):
                t.exchange(b"0\r", frame_end=lambda b: None, timeout_s=1.0)
            with pytest.raises(DeviceDisconnected, match="still opening"):
                t.ensure_open()
            assert t._opener.in_flight  # the attempt goes on; nothing waited for it
            with pytest.raises(DeviceDisconnected, match="still opening"):
                t.ensure_open()
            ours = f"open socket://127.0.0.1:{port}"
            assert [th.name for th in threading.enumerate() if th.name == ours] == [ours]
        finally:
            filler.close()
    finally:
        t.close()
