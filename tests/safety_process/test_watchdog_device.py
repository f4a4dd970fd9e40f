"""The hardware watchdog device (``[watchdog] device``): fed while the loop runs,
disarmed only by a deliberate shutdown.

A regular file stands in for ``/dev/watchdog``: every write the process makes to it is
there to read (a feed is a NUL byte, the magic close a "V").
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from drivers.pumps.mock import MockPumpDriver
from firmware_bridge.clock import VirtualClock
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import syringe_by_name
from hil_tests.harness.processes import Child, children, ready_socket, safety_args, wait_for
from safety.host.core import SafetyCore
from safety.host.watchdog_device import FEED, MAGIC_CLOSE, WatchdogDevice, WatchdogDeviceError
from safety.journal import Journal
from safety.library import DrugLibrary
from safety.timing import HostTiming
from tests.safety_process.test_process import MOCK_PUMP, config


def fed(device: Path) -> int:
    return device.read_bytes().count(FEED)


def test_feeding_and_a_deliberate_close(tmp_path: Path) -> None:
    path = tmp_path / "watchdog"
    path.touch()
    device = WatchdogDevice(str(path))
    device.feed()
    device.feed()
    device.close(disarm=True)
    assert path.read_bytes() == FEED + FEED + MAGIC_CLOSE
    device.feed()  # after close: nothing, no error
    assert path.read_bytes() == FEED + FEED + MAGIC_CLOSE


def test_a_close_that_is_not_deliberate_leaves_it_armed(tmp_path: Path) -> None:
    path = tmp_path / "watchdog"
    path.touch()
    device = WatchdogDevice(str(path))
    device.feed()
    device.close(disarm=False)
    assert path.read_bytes() == FEED


def test_a_missing_device_names_the_setting_and_the_cause(tmp_path: Path) -> None:
    with pytest.raises(WatchdogDeviceError, match=r"\[watchdog\] device .*no such device"):
        WatchdogDevice(str(tmp_path / "absent"))


class CountingFeeder:
    def __init__(self) -> None:
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1


def test_the_core_feeds_on_the_toggle_period_of_the_liveness_clock(
    tmp_path: Path, library: DrugLibrary
) -> None:
    """Fed only by the loop's ``service``: a loop that stops turning stops feeding."""
    clinical, liveness = VirtualClock(0.0), VirtualClock(100.0)
    syringe = syringe_by_name("bd-plastipak-50ml")
    feeder = CountingFeeder()
    core = SafetyCore(
        library,
        MockPumpDriver(pump=SimulatedPump(clinical, syringe)),
        Journal(tmp_path / "j.sqlite", "safety"),
        clinical=clinical,
        liveness=liveness,
        syringe=syringe,
        watchdog_device=feeder,
        timing=HostTiming(watchdog_toggle_s=0.5),
    )
    core.start()
    for _ in range(20):  # 10 s of a healthy loop, serviced when it asks to be
        wait = core.service()
        assert wait <= 0.5
        liveness.advance(0.5)
        clinical.advance(0.5)
    assert 19 <= feeder.feeds <= 21
    liveness.advance(30.0)  # the loop hangs: time passes, nobody calls service()
    assert 19 <= feeder.feeds <= 21
    core.close()


@pytest.mark.hil
@pytest.mark.timeout(60)
def test_the_process_feeds_it_and_disarms_it_only_on_a_deliberate_stop(short_dir: Path) -> None:
    device = short_dir / "watchdog"
    device.touch()
    cfg = config(
        short_dir,
        MOCK_PUMP,
        watchdog={"device": str(device)},
    )
    with children() as kids:
        safety = Child(safety_args(cfg))
        kids.append(safety)
        ready_socket(safety)
        wait_for(lambda: fed(device) >= 3 or None, 10.0, "three feeds")
        safety.signal(signal.SIGTERM)
        assert safety.proc.wait(timeout=15) == 0
    assert device.read_bytes().endswith(MAGIC_CLOSE)


@pytest.mark.hil
@pytest.mark.timeout(60)
def test_a_killed_process_leaves_it_armed(short_dir: Path) -> None:
    device = short_dir / "watchdog"
    device.touch()
    with children() as kids:
        safety = Child(safety_args(config(short_dir, MOCK_PUMP, watchdog={"device": str(device)})))
        kids.append(safety)
        ready_socket(safety)
        wait_for(lambda: fed(device) >= 3 or None, 10.0, "three feeds")
        safety.kill9()
    assert MAGIC_CLOSE not in device.read_bytes()


@pytest.mark.hil
@pytest.mark.timeout(60)
def test_a_device_that_cannot_be_opened_stops_the_start_with_its_reason(short_dir: Path) -> None:
    cfg = config(short_dir, MOCK_PUMP, watchdog={"device": str(short_dir / "absent")})
    with children() as kids:
        safety = Child(safety_args(cfg))
        kids.append(safety)
        assert safety.proc.wait(timeout=30) == 1
        safety.stop()
        assert "[watchdog] device" in safety.stderr_text()
        assert "no such device" in safety.stderr_text()
