"""Reply pacing (``emulate --pace-baud N``): the schedule a paced reply is written on.

Time is a fake clock that moves only when the line waits, so each byte's write instant is
known exactly; nothing here depends on how fast the test machine is.
"""

from __future__ import annotations

import threading

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.cli import main
from firmware_bridge.emulators.pacing import Pacer
from firmware_bridge.emulators.serial_line import SerialLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.ne1000.emulator import Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump


class FakeTime:
    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


class ClockedStop(threading.Event):
    """A stop event whose waits move the fake clock instead of sleeping."""

    def __init__(self, clock: FakeTime, *, stop_after_waits: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.waits = 0
        self._stop_after = stop_after_waits

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None and timeout > 0
        self.clock.t += timeout
        self.waits += 1
        if self._stop_after is not None and self.waits >= self._stop_after:
            self.set()
        return self.is_set()


class RecordingEndpoint:
    """Hands the line one request, records every write with the fake clock's time."""

    def __init__(self, clock: FakeTime, request: bytes) -> None:
        self.clock = clock
        self.inbox = request
        self.writes: list[tuple[float, bytes]] = []

    @property
    def name(self) -> str:
        return "fake"

    @property
    def is_open(self) -> bool:
        return True

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, timeout_s: float) -> bytes:
        data, self.inbox = self.inbox, b""
        return data

    def write(self, data: bytes) -> None:
        self.writes.append((self.clock(), data))

    def shutdown(self) -> None:
        pass


def test_each_byte_leaves_when_its_stop_bit_ends_after_the_request_arrived() -> None:
    clock = FakeTime(100.0)
    pacer = Pacer(1000, clock=clock)  # 10 ms per 8N1 character
    writes: list[tuple[float, bytes]] = []
    done = pacer.send(
        lambda b: writes.append((clock(), b)),
        b"abc",
        request_bytes=4,
        received_at=100.0,
        stop=ClockedStop(clock),
    )
    assert done
    # request: 4 characters = 40 ms; then one character every 10 ms
    assert [b for _, b in writes] == [b"a", b"b", b"c"]
    assert [round(t, 9) for t, _ in writes] == [100.05, 100.06, 100.07]
    assert pacer.wire_time(7) == pytest.approx(0.07)


def test_a_late_start_is_not_stretched_by_the_request_time_already_past() -> None:
    clock = FakeTime(10.0)
    pacer = Pacer(1000, clock=clock)
    writes: list[float] = []
    pacer.send(
        lambda b: writes.append(clock()),
        b"xy",
        request_bytes=2,
        received_at=9.0,  # the request finished arriving long ago
        stop=ClockedStop(clock),
    )
    assert [round(t, 9) for t in writes] == [10.01, 10.02]


def test_a_late_wake_up_delays_one_byte_not_every_later_one() -> None:
    clock = FakeTime(0.0)
    pacer = Pacer(1000, clock=clock)
    writes: list[float] = []

    def write(b: bytes) -> None:
        writes.append(clock())
        if len(writes) == 1:
            clock.t += 0.025  # the thread was descheduled after the first byte

    pacer.send(write, b"abcd", request_bytes=0, received_at=0.0, stop=ClockedStop(clock))
    # byte 2 is late (due 0.02, written 0.035); bytes 3 and 4 are back on the schedule
    assert [round(t, 9) for t in writes] == [0.01, 0.035, 0.035, 0.04]


def test_stop_ends_a_paced_reply_part_way() -> None:
    clock = FakeTime(0.0)
    pacer = Pacer(1000, clock=clock)
    sent: list[bytes] = []
    done = pacer.send(
        sent.append,
        b"abcdef",
        request_bytes=0,
        received_at=0.0,
        stop=ClockedStop(clock, stop_after_waits=3),
    )
    assert not done
    assert sent == [b"a", b"b"]


@pytest.mark.parametrize("baud", [0, 49, 1_000_001])
def test_a_baud_out_of_range_is_refused_with_the_range(baud: int) -> None:
    with pytest.raises(ValueError, match="50-1000000"):
        Pacer(baud)


def _served(pace_baud: int | None) -> list[tuple[float, bytes]]:
    clock = FakeTime(50.0)
    endpoint = RecordingEndpoint(clock, b"0VER\r")
    handler = Ne1000PumpSide(SimulatedPump(VirtualClock()))
    line = SerialLine(handler, endpoint, WireFaults(), clock=clock, pace_baud=pace_baud)
    line.step(ClockedStop(clock))
    return endpoint.writes


def test_the_serial_line_paces_the_same_reply_it_sends_unpaced() -> None:
    unpaced = _served(None)
    paced = _served(19200)
    reply = b"".join(b for _, b in unpaced)
    assert len(unpaced) == 1 and reply.startswith(b"\x0200S") and reply.endswith(b"\x03")
    assert b"".join(b for _, b in paced) == reply
    assert len(paced) == len(reply)  # one write per character
    char_s = 10 / 19200
    first_due = 50.0 + 5 * char_s + char_s  # 5-byte request, then the first character
    assert paced[0][0] == pytest.approx(first_due)
    assert paced[-1][0] == pytest.approx(50.0 + (5 + len(reply)) * char_s)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["modbus", "--pace-baud", "19200"], "--pace-baud: only the ne1000 and harvard"),
        (["ne1000", "--pace-baud", "10"], "--pace-baud: must be 50-1000000 bits/s, got 10"),
    ],
)
def test_bad_pacing_arguments_exit_2_naming_the_option(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err
