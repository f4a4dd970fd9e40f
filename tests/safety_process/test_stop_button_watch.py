"""The safety process samples its stop button from a thread of its own as soon as its GPIO
is open, so a press while the loop waits on a pump (a reply timeout, a restart's
connections) is counted and acted on at the loop's next look
(``GpioInterface.watch_stop_button``; the core's side: ``test_between_exchanges.py``)."""

from __future__ import annotations

import threading
from pathlib import Path

from drivers.gpio.simulated import press_stop_button, release_stop_button
from firmware_bridge.clock import MonotonicClock
from hil_tests.harness.processes import wait_for
from safety.host import process
from safety.host.config import parse_config


def test_the_process_watches_the_stop_button_from_the_moment_its_gpio_opens(
    tmp_path: Path,
) -> None:
    config = parse_config(
        {
            "pump": {"driver": "mock", "syringe": "bd-plastipak-50ml"},
            "gpio": {"backend": "simulated", "state_dir": str(tmp_path / "gpio")},
            "timing": {"button_poll_s": 0.005},
        }
    )
    gpio = process._gpio(config, MonotonicClock())
    assert gpio is not None
    try:
        assert [t.name for t in threading.enumerate() if t.name == "stop-button"]
        press_stop_button(tmp_path / "gpio")  # nobody polls: only the thread samples
        wait_for(lambda: gpio.stop_press_count == 1, 5.0, "the press counted by the thread")
        release_stop_button(tmp_path / "gpio")
        assert gpio.poll_stop()
    finally:
        gpio.close()
    assert not [t for t in threading.enumerate() if t.name == "stop-button"]
