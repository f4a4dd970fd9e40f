"""A bench of several channels: the kernel test bench (``tests.kernel.support.Bench``)
with one simulated pump per channel, each behind its own guarded mock driver (every
command checked against the journal first, S14), all on the same virtual clocks.

The ground truth is per channel (``pumps[name].truth``); the patient's drug is their sum
(``truth_total_rate``), which is what a relay handover is judged on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from drivers.gpio.base import GpioConfig
from drivers.pumps.mock import MockPumpDriver
from firmware_bridge.faults import WireFaults
from firmware_bridge.pump_model import TruthSegment
from firmware_bridge.syringes import syringe_by_name
from safety.host.core import Channel, SafetyCore
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.model import (
    ArmStandby,
    ChangeDose,
    CommandIssued,
    ContainerChanged,
    DisarmStandby,
    Event,
    HandoverEnded,
    HandoverStarted,
    HandoverStepped,
    LoadProgram,
    PauseForContainerChange,
    PrimeChannel,
    PrimePump,
    ProgramSpec,
    RelayStrategy,
    ResumeAfterContainerChange,
    StartInfusion,
    StopInfusion,
)
from safety.kernel.state import ChannelState
from safety.library import DrugLibrary
from safety.status import Outcome
from tests.kernel.support import (
    DEFAULT_SYRINGE,
    Bench,
    GuardedMockDriver,
    JournalGuard,
    TracingPump,
)


class ChannelDriver(GuardedMockDriver):
    """The guarded mock driver of one channel. A prime runs with the simulated pump's
    line off the patient (to waste, as the safety process's prime request requires); the
    line is connected again before the channel next runs."""

    def __init__(self, guard: JournalGuard, *, pump: TracingPump, **kwargs: Any) -> None:
        super().__init__(guard, pump=pump, **kwargs)
        self.primes: list[float] = []

    def prime(self, volume_ml: float) -> float:
        def send() -> float:
            self.tracing.connect_line(False)
            self.primes.append(volume_ml)
            return MockPumpDriver.prime(self, volume_ml)

        return self._command(PrimePump(Decimal(repr(volume_ml)), self.channel), send)

    def send_rate(self, rate_ml_h: float) -> None:
        self.tracing.connect_line(True)
        super().send_rate(rate_ml_h)

    def start(self) -> None:
        self.tracing.connect_line(True)
        super().start()


class ChannelBench(Bench):
    """A ``Bench`` whose safety process owns ``names`` (the first is the kernel bench's
    own pump, ``bench.pump``); ``loaded_ml`` says what each syringe holds at start."""

    def __init__(
        self,
        root: Path,
        library: DrugLibrary,
        names: tuple[str, ...] = ("A", "B"),
        *,
        syringe: str = DEFAULT_SYRINGE,
        loaded_ml: dict[str, float] | None = None,
        actual_ml: dict[str, float] | None = None,
        config: KernelConfig | None = None,
        interlock_scope: str = "bench",
        gpio: bool = False,
    ) -> None:
        self.names = names
        #: what the safety process is told each syringe holds (None: full)...
        self.loaded_ml = dict(loaded_ml or {})
        #: ... and what the simulated pump really holds (default: the same)
        self.actual_ml = {**self.loaded_ml, **(actual_ml or {})}
        self.interlock_scope = interlock_scope
        self.pumps: dict[str, TracingPump] = {}
        self.drivers: dict[str, ChannelDriver] = {}
        #: a per-channel interlock wires a relay per channel (BCM 5, 6, ...)
        relays = {n: 5 + i for i, n in enumerate(names)} if interlock_scope == "channel" else {}
        super().__init__(
            root,
            library,
            syringe=syringe,
            config=config,
            gpio=gpio,
            gpio_config=GpioConfig(channel_enable_pins=relays),
        )

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        if not self.drivers:  # the first pump, built by Bench: made a channel driver
            first = self.names[0]
            volume = self.actual_ml.get(first)
            self.pump = TracingPump(self.clinical, self.syringe, loaded_volume_ml=volume)
            self.driver = ChannelDriver(self.guard, pump=self.pump, wire=self.wire)
            self.driver.channel = first
            self.pumps[first] = self.pump
            self.drivers[first] = self.driver
            for name in self.names[1:]:
                pump = TracingPump(
                    self.clinical, self.syringe, loaded_volume_ml=self.actual_ml.get(name)
                )
                driver = ChannelDriver(self.guard, pump=pump, wire=WireFaults())
                driver.channel = name
                self.pumps[name] = pump
                self.drivers[name] = driver
        channels = [
            Channel(name, self.drivers[name], syringe_by_name(self.syringe.name),
                    self.loaded_ml.get(name), "mock")
            for name in self.names
        ]  # fmt: skip
        return self._core_of(channels, library)

    def _core_of(self, channels: list[Channel], library: DrugLibrary | None) -> SafetyCore:
        """The safety core over ``channels``, on this bench's journal, clocks, GPIO and
        config: what a bench of other drivers (real ones on an emulated line) builds too."""
        return SafetyCore(
            library or self.library,
            channels,
            self.journal,
            clinical=self.source,
            liveness=self.process_liveness,
            interlock_scope=self.interlock_scope,
            gpio=self.gpio,
            config=self.config,
            evidence=self.evidence,
        )

    def shut(self) -> None:
        """Let go of the pumps (the core closes its drivers); a bench over emulators stops
        them too."""
        self.core.close()

    # ------------------------------------------------------------------ requests
    def load_on(self, channel: str, spec: ProgramSpec) -> Outcome:
        return self.send(LoadProgram(spec, channel=channel))

    def start_on(
        self, channel: str, dose: Decimal | str | int, *, confirm: bool = False
    ) -> Outcome:
        return self.send(StartInfusion(Decimal(dose), confirm_soft_limits=confirm, channel=channel))

    def change_on(
        self, channel: str, dose: Decimal | str | int, *, confirm: bool = False
    ) -> Outcome:
        return self.send(ChangeDose(Decimal(dose), confirm_soft_limits=confirm, channel=channel))

    def stop_on(self, channel: str) -> Outcome:
        return self.send(StopInfusion(channel=channel))

    def prime(self, channel: str, volume: str = "2", *, confirm: bool = True) -> Outcome:
        return self.send(PrimeChannel(channel, Decimal(volume), confirm))

    def prime_done(self, channel: str, volume: str = "2") -> None:
        """Prime ``channel`` and let the prime run out."""
        outcome = self.prime(channel, volume)
        assert outcome.verdict.accepted, outcome.verdict.message
        self.advance(60, poll_every_s=5)
        assert self.core.state.channel(channel).container.primed

    def arm(self, channel: str, for_channel: str, strategy: RelayStrategy = "quick") -> Outcome:
        return self.send(ArmStandby(channel, for_channel, strategy))

    def disarm(self, channel: str) -> Outcome:
        return self.send(DisarmStandby(channel))

    def pause(self, channel: str | None = None) -> Outcome:
        return self.send(PauseForContainerChange(channel))

    def container_changed(
        self, volume: str, channel: str | None = None, concentration: str | None = None
    ) -> Outcome:
        return self.send(ContainerChanged(Decimal(volume), channel, concentration))

    def resume(self, channel: str | None = None) -> Outcome:
        return self.send(ResumeAfterContainerChange(channel))

    # ------------------------------------------------------------------ reading
    def relay_events(self) -> list[Event]:
        """The handover's journal: its start, steps, end and the relay's commands."""
        return [
            e
            for e in self.events()
            if isinstance(e, HandoverStarted | HandoverStepped | HandoverEnded)
            or (isinstance(e, CommandIssued) and e.cause == "relay")
        ]

    def ch(self, name: str) -> ChannelState:
        return self.core.state.channel(name)

    def caps(self, name: str) -> PumpCapabilities:
        return self.core.channels[name].pump

    def _quiescent(self) -> bool:
        state = self.core.state
        return (
            all(
                not self.pumps[n].snapshot().running
                and not state.channel(n).busy
                and state.channel(n).pending is None
                and state.channel(n).comms_ok
                and state.channel(n).priming is None
                for n in self.names
            )
            and state.handover is None
            and not any(
                c.pause is not None or c.standby is not None for c in state.channels.values()
            )
        )

    def truth_total_rate(self, spec_per_ml: Fraction, t: float) -> Fraction:
        """The drug rate (amount per hour) all channels deliver at ``t`` (ground truth)."""
        total = Fraction(0)
        for pump in self.pumps.values():
            rate = _rate_at(pump.truth.segments(), t)
            total += Fraction(repr(rate)) * spec_per_ml
        return total


def _rate_at(segments: list[TruthSegment], t: float) -> float:
    rate = 0.0
    for seg in segments:
        if seg.start <= t:
            rate = seg.rate_ml_h
        else:
            break
    return rate


ChannelBenchT = TypeVar("ChannelBenchT", bound=ChannelBench)


@contextlib.contextmanager
def booted(bench: ChannelBenchT) -> Iterator[ChannelBenchT]:
    """A fixture's body for a bench over emulated pumps: booted, and on the way out shut
    (the core, then its emulators), its journal and GPIO closed, whatever happened."""
    try:
        bench.boot()
        yield bench
    finally:
        with contextlib.suppress(Exception):
            bench.shut()
        bench.journal.close()
        if bench.gpio is not None:
            bench.gpio.close()
