"""GPIO: debounce on an injected clock, fail-safe levels, the simulated backend seen from
another process, and the RPi.GPIO backend against a fake ``RPi.GPIO`` module."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from drivers.gpio import GpioConfig, GpioConfigError, GpioError, Pull, open_gpio
from drivers.gpio.debounce import DebounceEdge, Debouncer
from drivers.gpio.rpi import GpioUnavailable, RpiGpio
from drivers.gpio.simulated import (
    SimulatedGpio,
    press_stop_button,
    read_sim_pins,
    release_stop_button,
)
from firmware_bridge.clock import VirtualClock
from hil_tests.harness.processes import wait_for

REPO = Path(__file__).resolve().parents[2]
PUMP, ALARM, BEAT, STOP = 17, 27, 22, 23  # the default BCM map


# --------------------------------------------------------------------- debounce
def test_debounce_needs_a_stable_input_for_the_whole_time() -> None:
    d = Debouncer(0.05)
    assert d.update(False, 0.000) is None
    # contact bounce on press: no edge until it has held for 50 ms
    for t, raw in [(0.001, True), (0.003, False), (0.004, True), (0.006, False), (0.007, True)]:
        assert d.update(raw, t) is None
    assert d.update(True, 0.056) is None  # 49 ms after the last bounce
    assert d.update(True, 0.057) == DebounceEdge(active=True, time=0.057)
    assert d.active
    assert d.update(True, 1.0) is None  # one edge per change
    assert d.update(False, 1.01) is None
    assert d.update(False, 1.06) == DebounceEdge(active=False, time=1.06)
    assert not d.active


def test_a_spike_shorter_than_the_debounce_is_noise() -> None:
    d = Debouncer(0.05)
    d.update(False, 0.0)
    assert d.update(True, 0.1) is None
    assert d.update(False, 0.14) is None
    assert d.update(False, 1.0) is None
    assert not d.active


def test_zero_debounce_follows_the_input() -> None:
    d = Debouncer(0.0)
    assert d.update(True, 0.0) == DebounceEdge(True, 0.0)


@pytest.mark.parametrize("bad", [-0.001, 1.001, float("nan")])
def test_debounce_range(bad: float) -> None:
    with pytest.raises(ValueError, match="debounce must be 0-1000 ms"):
        Debouncer(bad)


# --------------------------------------------------------------------- simulated backend
@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=100.0)


@pytest.fixture
def sim(tmp_path: Path, clock: VirtualClock) -> SimulatedGpio:
    gpio = open_gpio("simulated", state_dir=tmp_path, clock=clock)
    assert isinstance(gpio, SimulatedGpio)
    return gpio


def levels(state_dir: Path) -> dict[int, Any]:
    return {int(pin): v["level"] for pin, v in read_sim_pins(state_dir)["pins"].items()}


def test_fail_safe_levels_at_open(sim: SimulatedGpio, tmp_path: Path) -> None:
    state = read_sim_pins(tmp_path)
    assert state["open"] is True
    assert state["pump_enabled"] is True  # a restart does not cut the pump
    assert state["alarm_on"] is True  # unverified until the host clears it
    # default wiring: relay energised = pump cut, so "enabled" is the de-energised level
    assert levels(tmp_path) == {PUMP: False, ALARM: True, BEAT: False, STOP: True}
    assert state["pins"][str(STOP)] == {"mode": "in", "pull": "up", "level": True}


def test_outputs_follow_their_functions(sim: SimulatedGpio, tmp_path: Path) -> None:
    sim.set_pump_enabled(False)  # interlock: energise the cut-off relay
    sim.set_alarm(False)
    assert sim.toggle_heartbeat() is True
    assert levels(tmp_path)[PUMP] is True
    assert levels(tmp_path)[ALARM] is False
    assert levels(tmp_path)[BEAT] is True
    assert sim.toggle_heartbeat() is False
    assert sim.toggle_heartbeat() is True
    assert read_sim_pins(tmp_path)["heartbeat_toggles"] == 3


def test_close_drives_close_levels_then_releases(sim: SimulatedGpio, tmp_path: Path) -> None:
    sim.set_pump_enabled(False)
    sim.set_alarm(False)
    sim.close()
    state = read_sim_pins(tmp_path)
    assert state["open"] is False
    assert state["pump_enabled"] is True
    assert state["alarm_on"] is True
    assert all(v["mode"] == "released" for v in state["pins"].values())
    with pytest.raises(GpioError, match="closed"):
        sim.set_alarm(False)
    sim.close()  # idempotent


def test_close_without_release_keeps_driving(tmp_path: Path, clock: VirtualClock) -> None:
    config = GpioConfig(release_on_close=False, alarm_at_close=False)
    gpio = open_gpio("simulated", state_dir=tmp_path, clock=clock, config=config)
    gpio.close()
    assert levels(tmp_path) == {PUMP: False, ALARM: False, BEAT: False, STOP: True}


def test_polarity_and_wiring_options(tmp_path: Path, clock: VirtualClock) -> None:
    config = {
        "relay_energised_enables_pump": True,
        "relay_active_high": False,
        "alarm_active_high": False,
        "alarm_at_open": False,
        "stop_button_active_low": False,
        "stop_button_pull": "down",
        "pump_enable_pin": 5,
    }
    gpio = open_gpio("simulated", state_dir=tmp_path, clock=clock, config=config)
    # enabled -> relay energised -> active-low driver: pin low
    assert levels(tmp_path) == {5: False, ALARM: True, BEAT: False, STOP: False}
    gpio.set_pump_enabled(False)
    assert levels(tmp_path)[5] is True
    press_stop_button(tmp_path)
    gpio.poll_stop()
    assert levels(tmp_path)[STOP] is True  # active-high button


def test_stop_button_press_is_debounced_and_counted_once(
    sim: SimulatedGpio, tmp_path: Path, clock: VirtualClock
) -> None:
    assert not sim.poll_stop()
    press_stop_button(tmp_path)
    assert not sim.poll_stop()  # first sample of the press
    clock.advance(0.049)
    assert not sim.poll_stop()
    assert not sim.stop_pressed()
    clock.advance(0.001)  # 50 ms stable
    assert sim.poll_stop()
    assert not sim.poll_stop()  # once per press
    assert sim.stop_pressed()
    state = read_sim_pins(tmp_path)
    assert state["stop_pressed"] is True
    assert state["stop_press_count"] == 1
    release_stop_button(tmp_path)
    sim.poll_stop()
    clock.advance(0.05)
    assert not sim.poll_stop()
    assert not sim.stop_pressed()
    press_stop_button(tmp_path)
    sim.poll_stop()
    clock.advance(0.06)
    assert sim.poll_stop()
    assert sim.stop_press_count == 2


def test_a_press_counted_meanwhile_is_reported_by_the_next_poll(
    sim: SimulatedGpio, tmp_path: Path, clock: VirtualClock
) -> None:
    """A press the host's own polls never saw (it began and ended while the host was busy;
    another sampler counted it: ``watch_stop_button``'s thread, or a ``stop_pressed``
    look) is reported by the next ``poll_stop``, once."""
    press_stop_button(tmp_path)
    sim.stop_pressed()
    clock.advance(0.05)
    assert sim.stop_pressed()  # counted here, not by poll_stop
    release_stop_button(tmp_path)
    sim.stop_pressed()
    clock.advance(0.05)
    assert not sim.stop_pressed()
    assert sim.stop_press_count == 1
    assert sim.poll_stop()  # released by now, and still reported
    assert not sim.poll_stop()  # once


def test_the_watching_thread_counts_a_press_the_host_never_polls(tmp_path: Path) -> None:
    """Real time (a short, bounded wait): the thread samples every 5 ms, so a press the
    host never polled during is counted; ``poll_stop`` reports it once; ``close`` ends
    the thread."""
    gpio = SimulatedGpio(GpioConfig(debounce_ms=10), state_dir=tmp_path)
    gpio.open()
    try:
        gpio.watch_stop_button(0.005)
        press_stop_button(tmp_path)
        wait_for(lambda: gpio.stop_press_count == 1, 5.0, "the press counted by the thread")
        release_stop_button(tmp_path)
        assert gpio.poll_stop()
        assert not gpio.poll_stop()
        with pytest.raises(GpioError, match="already watched"):
            gpio.watch_stop_button(0.005)
    finally:
        gpio.close()
    assert not [t for t in threading.enumerate() if t.name == "stop-button"]


@pytest.mark.parametrize("period", [0.0, -0.01, 1.001, math.nan])
def test_the_button_sampling_period_is_checked(sim: SimulatedGpio, period: float) -> None:
    with pytest.raises(GpioConfigError, match="period must be 0-1 s"):
        sim.watch_stop_button(period)


def test_the_button_is_watched_only_while_open(tmp_path: Path) -> None:
    gpio = SimulatedGpio(state_dir=tmp_path)
    with pytest.raises(GpioError, match="not open"):
        gpio.watch_stop_button(0.02)
    gpio.open()
    gpio.watch_stop_button(1.0)  # at the limit
    gpio.close()
    assert not [t for t in threading.enumerate() if t.name == "stop-button"]


def test_a_bouncing_button_makes_one_press(
    sim: SimulatedGpio, tmp_path: Path, clock: VirtualClock
) -> None:
    presses = 0
    for _ in range(5):  # 5 ms bounces
        press_stop_button(tmp_path)
        presses += sim.poll_stop()
        clock.advance(0.005)
        release_stop_button(tmp_path)
        presses += sim.poll_stop()
        clock.advance(0.005)
    press_stop_button(tmp_path)
    for _ in range(20):
        presses += sim.poll_stop()
        clock.advance(0.005)
    assert presses == 1


def test_use_before_open_is_refused(tmp_path: Path) -> None:
    gpio = SimulatedGpio(state_dir=tmp_path)
    with pytest.raises(GpioError, match=r"not open; call open\(\) first"):
        gpio.set_alarm(True)
    gpio.open()
    with pytest.raises(GpioError, match="already open"):
        gpio.open()


@pytest.mark.hil
def test_another_process_sees_the_pins_and_presses_the_button(
    sim: SimulatedGpio, tmp_path: Path, clock: VirtualClock
) -> None:
    sim.set_pump_enabled(False)
    sim.toggle_heartbeat()
    code = f"""
        import json, os
        from drivers.gpio.simulated import read_sim_pins, press_stop_button
        state = read_sim_pins({str(tmp_path)!r})
        seen = {{k: state[k] for k in ("pid", "pump_enabled", "heartbeat_level")}}
        print(json.dumps({{**seen, "reader": os.getpid()}}))
        press_stop_button({str(tmp_path)!r})
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["pump_enabled"] is False
    assert seen["heartbeat_level"] is True
    assert seen["pid"] == os.getpid() != seen["reader"]  # written here, read over there
    sim.poll_stop()
    clock.advance(0.05)
    assert sim.poll_stop()  # the other process's press arrived


def test_read_before_anything_is_written(tmp_path: Path) -> None:
    assert read_sim_pins(tmp_path / "nothing") == {}


def test_a_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pins.json").write_text("{half", encoding="utf-8")
    with pytest.raises(GpioError, match="not valid JSON"):
        read_sim_pins(tmp_path)


# --------------------------------------------------------------------- config, factory
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alarm_pin": 28}, "alarm_pin must be a BCM pin number 0-27, got 28"),
        ({"heartbeat_pin": -1}, "heartbeat_pin must be a BCM pin number 0-27, got -1"),
        ({"stop_button_pin": True}, "stop_button_pin must be a BCM pin number"),
        ({"alarm_pin": 17}, "alarm_pin and pump_enable_pin both use BCM pin 17"),
        ({"debounce_ms": 5000.0}, "debounce_ms must be 0-1000 ms, got 5000.0"),
        ({"stop_button_pull": "sideways"}, "stop_button_pull must be one of up, down, off"),
        ({"debounce_ms": "fast"}, "debounce_ms must be a number of ms, got 'fast'"),
        ({"relay_energised_enables_pump": "yes"}, "relay_energised_enables_pump must be true"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(GpioConfigError) as info:
        GpioConfig(**kwargs)
    assert message in str(info.value)


def test_config_from_mapping() -> None:
    config = GpioConfig.from_mapping({"stop_button_pull": "off", "debounce_ms": 20})
    assert config.stop_button_pull is Pull.OFF
    assert config.debounce_ms == 20
    with pytest.raises(GpioConfigError, match=r"unknown GPIO setting\(s\) relay_pin; known:"):
        GpioConfig.from_mapping({"relay_pin": 4})


def test_factory_errors(tmp_path: Path) -> None:
    with pytest.raises(GpioConfigError, match="unknown GPIO backend 'gpiozero'; known: rpi, sim"):
        open_gpio("gpiozero")
    with pytest.raises(GpioError, match=r"GPIO backend 'simulated': unknown option\(s\) 'pins'"):
        open_gpio("simulated", state_dir=tmp_path, pins={})
    with pytest.raises(GpioError, match=r"missing required option\(s\) 'state_dir'"):
        open_gpio("simulated")


# --------------------------------------------------------------------- RPi.GPIO backend
class FakeGpioModule(types.ModuleType):
    """Stands in for ``RPi.GPIO``: records every call, reads inputs from ``inputs``."""

    BCM, BOARD = 11, 10
    OUT, IN = 0, 1
    HIGH, LOW = 1, 0
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.calls: list[tuple[Any, ...]] = []
        self.inputs: dict[int, int] = {}

    def setmode(self, mode: int) -> None:
        self.calls.append(("setmode", mode))

    def setup(self, pin: int, direction: int, **kw: int) -> None:
        self.calls.append(("setup", pin, direction, kw))

    def output(self, pin: int, level: int) -> None:
        self.calls.append(("output", pin, level))

    def input(self, pin: int) -> int:
        self.calls.append(("input", pin))
        return self.inputs.get(pin, self.HIGH)

    def cleanup(self, pins: list[int] | None = None) -> None:
        self.calls.append(("cleanup", pins))


@pytest.fixture
def fake_rpi(monkeypatch: pytest.MonkeyPatch) -> FakeGpioModule:
    fake = FakeGpioModule()
    package = types.ModuleType("RPi")
    package.GPIO = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    return fake


def test_rpi_backend_makes_exactly_the_documented_calls(
    fake_rpi: FakeGpioModule, clock: VirtualClock
) -> None:
    g = fake_rpi
    gpio = open_gpio("rpi", clock=clock)
    assert isinstance(gpio, RpiGpio)
    assert g.calls == [
        ("setmode", g.BCM),
        ("setup", PUMP, g.OUT, {"initial": g.LOW}),
        ("setup", ALARM, g.OUT, {"initial": g.HIGH}),
        ("setup", BEAT, g.OUT, {"initial": g.LOW}),
        ("setup", STOP, g.IN, {"pull_up_down": g.PUD_UP}),
        ("input", STOP),
    ]
    g.calls.clear()
    gpio.set_pump_enabled(False)
    gpio.set_alarm(False)
    gpio.toggle_heartbeat()
    gpio.toggle_heartbeat()
    g.inputs[STOP] = g.LOW  # active-low button pressed
    assert not gpio.poll_stop()
    clock.advance(0.05)
    assert gpio.poll_stop()
    gpio.close()
    assert g.calls == [
        ("output", PUMP, g.HIGH),
        ("output", ALARM, g.LOW),
        ("output", BEAT, g.HIGH),
        ("output", BEAT, g.LOW),
        ("input", STOP),
        ("input", STOP),
        ("output", PUMP, g.LOW),
        ("output", ALARM, g.HIGH),
        ("cleanup", [PUMP, ALARM, BEAT, STOP]),
    ]


def test_rpi_backend_pull_options(fake_rpi: FakeGpioModule, clock: VirtualClock) -> None:
    g = fake_rpi
    open_gpio("rpi", clock=clock, config={"stop_button_pull": "off", "stop_button_pin": 4})
    assert ("setup", 4, g.IN, {"pull_up_down": g.PUD_OFF}) in g.calls


def test_rpi_backend_without_the_module_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)
    monkeypatch.delitem(sys.modules, "RPi.GPIO", raising=False)
    gpio = RpiGpio()  # constructing imports nothing
    with pytest.raises(GpioUnavailable) as info:
        gpio.open()
    assert "needs the Python module RPi.GPIO" in str(info.value)
    assert "rpi-lgpio" in str(info.value)


def test_rpi_backend_off_a_pi_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "RPi"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "GPIO.py").write_text(
        "raise RuntimeError('This module can only be run on a Raspberry Pi!')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "RPi", raising=False)
    monkeypatch.delitem(sys.modules, "RPi.GPIO", raising=False)
    with pytest.raises(GpioUnavailable, match=r"cannot run here \(This module can only be run"):
        open_gpio("rpi")


# --------------------------------------------------------------------- a relay per channel
def test_each_channel_has_its_own_relay(tmp_path: Path, clock: VirtualClock) -> None:
    config = GpioConfig(channel_enable_pins={"A": 5, "B": 6})
    gpio = open_gpio("simulated", state_dir=tmp_path, clock=clock, config=config)
    # open: every relay at the enabled (de-energised) level, as the bench's
    assert levels(tmp_path) == {
        PUMP: False,
        5: False,
        6: False,
        ALARM: True,
        BEAT: False,
        STOP: True,
    }
    gpio.set_pump_enabled(False, "A")  # cut A alone
    assert levels(tmp_path)[5] is True and levels(tmp_path)[6] is False
    assert levels(tmp_path)[PUMP] is False
    assert not gpio.channel_enabled("A") and gpio.channel_enabled("B") and gpio.pump_enabled
    state = read_sim_pins(tmp_path)
    assert state["channel_enabled"] == {"A": False, "B": True}
    assert state["channel_enable_pins"] == {"A": 5, "B": 6}
    with pytest.raises(
        GpioError, match=r"no pump-enable relay for channel 'C' \(channel_enable_pins has: A, B\)"
    ):
        gpio.set_pump_enabled(False, "C")
    gpio.close()  # the close level on every relay, then released
    state = read_sim_pins(tmp_path)
    assert state["channel_enabled"] == {"A": True, "B": True}
    assert state["pins"]["5"]["mode"] == state["pins"]["6"]["mode"] == "released"


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ({"A": 28}, "channel_enable_pins.A must be a BCM pin number 0-27, got 28"),
        ({"A": True}, "channel_enable_pins.A must be a BCM pin number 0-27, got True"),
        ({"A": 17}, "channel_enable_pins.A and pump_enable_pin both use BCM pin 17"),
        ({"A": 5, "B": 5}, "channel_enable_pins.B and channel_enable_pins.A both use BCM pin 5"),
        ({"": 5}, "channel_enable_pins: a channel name must be text, got ''"),
        ([5, 6], "channel_enable_pins must be a table of channel name = BCM pin"),
    ],
)
def test_a_bad_channel_relay_names_the_field(pins: Any, message: str) -> None:
    with pytest.raises(GpioConfigError) as info:
        GpioConfig(channel_enable_pins=pins)
    assert message in str(info.value)


def test_the_watching_thread_outlives_an_error_of_the_gpio_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RPi.GPIO raises ``RuntimeError`` (lgpio its own ``error``): one such error while
    sampling is logged and the thread samples on; a press after it is still counted."""
    gpio = SimulatedGpio(GpioConfig(debounce_ms=10), state_dir=tmp_path)
    gpio.open()
    real_read = gpio._read
    failures = [RuntimeError("Failed to read edge detection"), OSError("bus error")]

    def flaky(pin: int) -> bool:
        if failures:
            raise failures.pop(0)
        return real_read(pin)

    monkeypatch.setattr(gpio, "_read", flaky)
    try:
        gpio.watch_stop_button(0.005)
        wait_for(lambda: not failures, 5.0, "both errors met by the thread")
        press_stop_button(tmp_path)
        wait_for(lambda: gpio.stop_press_count == 1, 5.0, "the press counted after the errors")
        release_stop_button(tmp_path)
        assert gpio.poll_stop()
    finally:
        gpio.close()
