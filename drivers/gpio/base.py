"""The safety process's few wires to the outside world, and their fail-safe states.

Three outputs and one input, named by what they do, mapped to BCM pin numbers from config:

- **pump-enable relay**: lets the pump run (logical *enabled*) or cuts it (interlock,
  emergency stop, S12). A bench of several pumps whose interlock is per channel wires one
  relay per pump (``channel_enable_pins``, channel name -> pin), each with the same
  polarity and open/close levels as the bench's relay, so cutting one pump leaves the
  others' power alone.
- **alarm**: a sounder or lamp beside the pump, independent of any screen.
- **heartbeat**: toggled by the safety process while it is healthy; an external hardware
  watchdog (retriggerable monostable, or the pump's own enable input through one) acts
  when the toggling stops.
- **stop button** (input): debounced in software on the liveness clock, active-low with
  the internal pull-up by default (a button to ground is the usual wiring).

Fail-safe defaults, and why
---------------------------
The hazard that decides the relay is *abrupt withdrawal*: for a vasopressor, losing pump
power because the software restarted is itself the harm (S11: hold the last rate when
software dies). Whatever software does, the pin's state while no process drives it
(boot, crash, ``GPIO.cleanup()``) is decided by the wiring, not by code. Hence:

- ``relay_energised_enables_pump = False`` (default): wire the relay so that
  *de-energised = pump powered* (normally-closed contact in the pump's supply, or in its
  enable line) and energise it only to cut the pump. A rebooting Pi then leaves the pump
  running, and the pump's own alarms and the hardware watchdog stay in charge. Set it to
  True only for a bench where pump power must drop whenever software is not running
  (non-critical fluids), knowing a software restart stops the infusion.
- ``pump_enabled_at_open = True`` and ``pump_enabled_at_close = True``: starting or
  stopping the safety process does not by itself switch the pump; stopping an infusion
  is a pump command sent on purpose, and an interlock is an explicit
  ``set_pump_enabled(False)``.
- ``alarm_at_open = True``: until the safety process has read the pump back and
  reconciled its state, nobody has verified the infusion; the host clears the alarm
  once it has. ``alarm_at_close = True``: a pump without its safety process is
  unsupervised, and people nearby must know.
- heartbeat: driven low at open and left still at close, so the external watchdog sees
  the supervision stop.
- ``release_on_close = True``: close drives the close levels above, then releases the
  pins (``GPIO.cleanup``); from then on the wiring's unpowered state rules, which the
  relay choice above makes the safe one. Set False to keep driving the pins after the
  process ends: RPi.GPIO leaves the registers as they were, but the Linux gpiochip
  interface under rpi-lgpio returns released lines to their defaults when the process
  exits, crash included. Either way only the wiring is certain.

The stop button is polled, not edge-triggered: the host calls ``poll_stop()`` from its
loop. Polling keeps every button event on the caller's thread and in its journal order,
and works the same on RPi.GPIO, rpi-lgpio and the simulated backend, whose edge-callback
support differs. The host cannot sample while one of its exchanges lasts (a pump that does
not answer is waited on to its reply timeout, a restart connects each pump in turn for
seconds), so ``watch_stop_button`` also samples it from a thread of its own: that thread
only counts debounced presses; the host still learns of each from ``poll_stop``, on its
own thread, at its next look, and a press that began and ended inside an exchange is not
lost.
"""

from __future__ import annotations

import abc
import enum
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from drivers.gpio.debounce import Debouncer
from firmware_bridge.clock import Clock, MonotonicClock

#: BCM numbers reachable on the 40-pin header
BCM_PINS = range(28)

#: how long ``close`` waits for the button's sampling thread to end
_WATCH_JOIN_S = 2.0

log = logging.getLogger(__name__)


class Pull(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    OFF = "off"


class GpioError(Exception):
    """A GPIO backend could not be set up or used; the message says why and what to do."""


class GpioConfigError(GpioError, ValueError):
    """A pin map or option outside what the hardware allows; names the field."""


@dataclass(frozen=True)
class GpioConfig:
    """Pin map (BCM numbers) and polarity; the defaults are documented in the module."""

    pump_enable_pin: int = 17
    alarm_pin: int = 27
    heartbeat_pin: int = 22
    stop_button_pin: int = 23
    relay_energised_enables_pump: bool = False
    relay_active_high: bool = True  # level that energises the relay driver
    alarm_active_high: bool = True
    stop_button_active_low: bool = True
    stop_button_pull: Pull = Pull.UP
    debounce_ms: float = 50.0
    pump_enabled_at_open: bool = True
    pump_enabled_at_close: bool = True
    alarm_at_open: bool = True
    alarm_at_close: bool = True
    release_on_close: bool = True
    #: one pump-enable relay per channel (an interlock per channel): channel name -> pin
    channel_enable_pins: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.channel_enable_pins, Mapping):
            raise GpioConfigError(
                "channel_enable_pins must be a table of channel name = BCM pin, "
                f"got {self.channel_enable_pins!r}"
            )
        pins = {
            "pump_enable_pin": self.pump_enable_pin,
            "alarm_pin": self.alarm_pin,
            "heartbeat_pin": self.heartbeat_pin,
            "stop_button_pin": self.stop_button_pin,
        }
        for channel, pin in self.channel_enable_pins.items():
            if not isinstance(channel, str) or not channel:
                raise GpioConfigError(
                    f"channel_enable_pins: a channel name must be text, got {channel!r}"
                )
            pins[f"channel_enable_pins.{channel}"] = pin
        for field_name, pin in pins.items():
            if isinstance(pin, bool) or not isinstance(pin, int) or pin not in BCM_PINS:
                raise GpioConfigError(f"{field_name} must be a BCM pin number 0-27, got {pin!r}")
        by_pin: dict[int, str] = {}
        for field_name, pin in pins.items():
            if pin in by_pin:
                raise GpioConfigError(
                    f"{field_name} and {by_pin[pin]} both use BCM pin {pin}; "
                    "each function needs its own pin"
                )
            by_pin[pin] = field_name
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise GpioConfigError(f"{f.name} must be true or false, got {value!r}")
        if isinstance(self.debounce_ms, bool) or not isinstance(self.debounce_ms, int | float):
            raise GpioConfigError(f"debounce_ms must be a number of ms, got {self.debounce_ms!r}")
        if not (0.0 <= self.debounce_ms <= 1000.0):
            raise GpioConfigError(f"debounce_ms must be 0-1000 ms, got {self.debounce_ms}")
        try:
            Pull(self.stop_button_pull)
        except ValueError:
            raise GpioConfigError(
                f"stop_button_pull must be one of up, down, off; got {self.stop_button_pull!r}"
            ) from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> GpioConfig:
        """Build from a config table (TOML), naming any key that is not a field."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GpioConfigError(
                f"unknown GPIO setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        values = dict(data)
        if "stop_button_pull" in values:
            raw = values["stop_button_pull"]
            try:
                values["stop_button_pull"] = Pull(str(raw))
            except ValueError:
                raise GpioConfigError(
                    f"stop_button_pull must be one of up, down, off; got {raw!r}"
                ) from None
        return cls(**values)  # type: ignore[arg-type]  # each field validated above


class GpioInterface(abc.ABC):
    """Outputs by function, a debounced stop button, fail-safe open and close.

    Backends implement the five pin primitives; everything that decides a level lives
    here, so the simulated backend and the Pi behave alike. Thread-safe.
    """

    backend: str = ""

    def __init__(self, config: GpioConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config if config is not None else GpioConfig()
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._lock = threading.RLock()
        self._opened = False
        self._closed = False
        self._pump_enabled = self.config.pump_enabled_at_open
        self._channel_enabled = dict.fromkeys(
            self.config.channel_enable_pins, self.config.pump_enabled_at_open
        )
        self._alarm = self.config.alarm_at_open
        self._heartbeat = False
        self._debouncer = Debouncer(self.config.debounce_ms / 1000.0)
        self._stop_presses = 0
        #: presses ``poll_stop`` has reported (``_stop_presses`` counts them all)
        self._presses_reported = 0
        self._watcher: threading.Thread | None = None
        self._watch_ended = threading.Event()

    # ------------------------------------------------------------ backend primitives
    @abc.abstractmethod
    def _setup_output(self, pin: int, level: bool) -> None:
        """Make ``pin`` an output already at ``level`` (no glitch through the other level)."""

    @abc.abstractmethod
    def _setup_input(self, pin: int, pull: Pull) -> None: ...

    @abc.abstractmethod
    def _write(self, pin: int, level: bool) -> None: ...

    @abc.abstractmethod
    def _read(self, pin: int) -> bool: ...

    @abc.abstractmethod
    def _release(self, pins: tuple[int, ...]) -> None:
        """Give the pins back (inputs, no drive)."""

    # ------------------------------------------------------------ life cycle
    def open(self) -> None:
        """Claim the pins and drive the fail-safe open levels."""
        c = self.config
        with self._lock:
            if self._opened:
                raise GpioError(f"GPIO backend {self.backend!r} is already open")
            self._opened = True
            self._setup_output(c.pump_enable_pin, self._relay_level(self._pump_enabled))
            for channel, pin in c.channel_enable_pins.items():
                self._setup_output(pin, self._relay_level(self._channel_enabled[channel]))
            self._setup_output(c.alarm_pin, self._alarm_level(self._alarm))
            self._setup_output(c.heartbeat_pin, False)
            self._setup_input(c.stop_button_pin, Pull(c.stop_button_pull))
            self._debouncer = Debouncer(c.debounce_ms / 1000.0, initial=self._raw_stop())

    def close(self) -> None:
        """Drive the close levels, then release the pins if configured. Idempotent."""
        c = self.config
        self._watch_ended.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(_WATCH_JOIN_S)  # outside the lock: the thread samples under it
        with self._lock:
            if self._closed or not self._opened:
                self._closed = True
                return
            self._closed = True
            self._pump_enabled = c.pump_enabled_at_close
            self._alarm = c.alarm_at_close
            self._write(c.pump_enable_pin, self._relay_level(self._pump_enabled))
            for channel, pin in c.channel_enable_pins.items():
                self._channel_enabled[channel] = c.pump_enabled_at_close
                self._write(pin, self._relay_level(c.pump_enabled_at_close))
            self._write(c.alarm_pin, self._alarm_level(self._alarm))
            if c.release_on_close:
                channel_pins = tuple(c.channel_enable_pins.values())
                self._release(
                    (
                        c.pump_enable_pin,
                        *channel_pins,
                        c.alarm_pin,
                        c.heartbeat_pin,
                        c.stop_button_pin,
                    )
                )

    def __enter__(self) -> GpioInterface:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ outputs
    @property
    def pump_enabled(self) -> bool:
        return self._pump_enabled

    @property
    def alarm_on(self) -> bool:
        return self._alarm

    @property
    def heartbeat_level(self) -> bool:
        return self._heartbeat

    def channel_enabled(self, channel: str) -> bool:
        """The logical state of one channel's own relay (``channel_enable_pins``)."""
        return self._channel_enabled[self._channel_pin(channel)[0]]

    def set_pump_enabled(self, enabled: bool, channel: str | None = None) -> None:
        """False is the interlock: the relay cuts the pump. ``channel`` None: the bench's
        relay (every pump); a name: that channel's own relay, which must be configured
        (an interlock meant for one pump never falls back to cutting them all)."""
        with self._lock:
            self._check_open()
            if channel is None:
                self._pump_enabled = enabled
                self._write(self.config.pump_enable_pin, self._relay_level(enabled))
                return
            name, pin = self._channel_pin(channel)
            self._channel_enabled[name] = enabled
            self._write(pin, self._relay_level(enabled))

    def set_alarm(self, on: bool) -> None:
        with self._lock:
            self._check_open()
            self._alarm = on
            self._write(self.config.alarm_pin, self._alarm_level(on))

    def toggle_heartbeat(self) -> bool:
        """Flip the heartbeat pin; return its new level. Call only while healthy."""
        with self._lock:
            self._check_open()
            self._heartbeat = not self._heartbeat
            self._write(self.config.heartbeat_pin, self._heartbeat)
            return self._heartbeat

    # ------------------------------------------------------------ stop button
    def stop_pressed(self) -> bool:
        """The debounced button state now (samples the pin)."""
        with self._lock:
            self._sample()
            return self._debouncer.active

    def poll_stop(self) -> bool:
        """Sample the button; True once for the debounced presses not reported yet (one
        True for several since the last call: one emergency stop).

        Presses counted meanwhile, by ``watch_stop_button``'s thread or by a
        ``stop_pressed`` sample, are reported here too. Call from the host's loop at
        least every ``debounce_ms / 2`` so a held press is seen within about
        ``debounce_ms`` plus one loop.
        """
        with self._lock:
            self._sample()
            pressed = self._stop_presses > self._presses_reported
            self._presses_reported = self._stop_presses
            return pressed

    def watch_stop_button(self, period_s: float) -> None:
        """From now until ``close``, sample the button every ``period_s`` (real time) in a
        thread of its own, so that a press is counted even while the host is busy in a
        long exchange; the host learns of it from its next ``poll_stop``. Once per
        backend; only after ``open``."""
        if not 0.0 < period_s <= 1.0:
            raise GpioConfigError(f"button sampling period must be 0-1 s, got {period_s!r}")
        with self._lock:
            self._check_open()
            if self._watcher is not None:
                raise GpioError("the stop button is already watched")
            self._watcher = threading.Thread(
                target=self._watch_button, args=(period_s,), name="stop-button", daemon=True
            )
            self._watcher.start()

    def _watch_button(self, period_s: float) -> None:
        """The sampling thread: a sample every period until ``close``. A pin that cannot be
        read is logged once and tried again (the host's own samples report it too); no
        error ends the thread: GPIO libraries raise their own kinds (RPi.GPIO's
        ``RuntimeError``, lgpio's ``error``), and a thread that died on one would leave
        the button unwatched with nothing but a line on stderr."""
        failing = False
        while not self._watch_ended.wait(period_s):
            with self._lock:
                if self._closed:
                    return
                try:
                    self._sample()
                except Exception as exc:  # every kind: see the docstring
                    if not failing:
                        log.error("stop button: cannot sample it: %s: %s", type(exc).__name__, exc)
                    failing = True
                else:
                    failing = False

    @property
    def stop_press_count(self) -> int:
        return self._stop_presses

    # ------------------------------------------------------------ internals
    def _sample(self) -> None:
        self._check_open()
        edge = self._debouncer.update(self._raw_stop(), self._clock.now())
        if edge is not None:
            if edge.active:
                self._stop_presses += 1
            self._state_changed()

    def _state_changed(self) -> None:  # noqa: B027 - optional hook, nothing by default
        """Hook: the debounced button changed (the simulated backend publishes it)."""

    def _raw_stop(self) -> bool:
        level = self._read(self.config.stop_button_pin)
        return not level if self.config.stop_button_active_low else level

    def _channel_pin(self, channel: str) -> tuple[str, int]:
        pins = self.config.channel_enable_pins
        if channel not in pins:
            known = ", ".join(sorted(pins)) or "none"
            raise GpioError(
                f"no pump-enable relay for channel {channel!r} (channel_enable_pins has: {known})"
            )
        return channel, pins[channel]

    def _relay_level(self, enabled: bool) -> bool:
        c = self.config
        energised = enabled if c.relay_energised_enables_pump else not enabled
        return energised if c.relay_active_high else not energised

    def _alarm_level(self, on: bool) -> bool:
        return on if self.config.alarm_active_high else not on

    def _check_open(self) -> None:
        if not self._opened:
            raise GpioError(f"GPIO backend {self.backend!r} is not open; call open() first")
        if self._closed:
            raise GpioError(f"GPIO backend {self.backend!r} is closed")
