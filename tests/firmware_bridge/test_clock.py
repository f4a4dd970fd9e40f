"""The clinical and liveness clocks, and the spec string that hands a clock to a child."""

from __future__ import annotations

import math
import time

import pytest

from firmware_bridge.clock import (
    Clock,
    MonotonicClock,
    ScaledClock,
    VirtualClock,
    clock_from_spec,
)


def test_virtual_clock_moves_only_when_told() -> None:
    clock = VirtualClock(start=5.0)
    assert clock.now() == 5.0
    assert clock.now() == 5.0
    assert clock.advance(2.5) == 7.5
    assert clock.advance_to(10.0) == 10.0
    assert clock.advance_to(3.0) == 10.0  # never backwards
    assert clock.to_real_seconds(3600.0) == 0.0
    assert isinstance(clock, Clock)


@pytest.mark.parametrize("bad", [-1.0, -1e-9, math.nan])
def test_virtual_clock_refuses_to_go_back(bad: float) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(bad)
    assert clock.now() == 0.0


def test_monotonic_clock_is_real_time() -> None:
    clock = MonotonicClock()
    before = time.monotonic()
    reading = clock.now()
    after = time.monotonic()
    assert before <= reading <= after
    assert clock.to_real_seconds(2.0) == 2.0
    assert isinstance(clock, Clock)


def test_scaled_clock_runs_scale_times_faster() -> None:
    origin = time.monotonic() - 10.0  # ten real seconds ago
    clock = ScaledClock(scale=60.0, origin_real=origin, origin_clinical=100.0)
    before = time.monotonic()
    reading = clock.now()
    after = time.monotonic()
    assert 100.0 + (before - origin) * 60.0 <= reading <= 100.0 + (after - origin) * 60.0
    assert clock.to_real_seconds(60.0) == 1.0
    assert isinstance(clock, Clock)


def test_scaled_clock_starting_now_reads_its_origin() -> None:
    clock = ScaledClock.starting_now(1.0, origin_clinical=50.0)
    assert 50.0 <= clock.now() < 50.0 + 60.0  # bounded, not a speed assertion


@pytest.mark.parametrize("scale", [0.0, -1.0, 1e7, math.nan, math.inf])
def test_scaled_clock_refuses_bad_scales(scale: float) -> None:
    with pytest.raises(ValueError, match="clock scale must be > 0 and < 1e7"):
        ScaledClock(scale=scale, origin_real=0.0)


def test_spec_round_trip_gives_the_same_clock() -> None:
    clock = ScaledClock(scale=60.0, origin_real=1234.5, origin_clinical=7.25)
    again = clock_from_spec(clock.spec())
    assert again == clock


@pytest.mark.parametrize("spec", ["", "real", "monotonic"])
def test_real_specs(spec: str) -> None:
    assert isinstance(clock_from_spec(spec), MonotonicClock)


def test_partial_scaled_specs() -> None:
    before = time.monotonic()
    c1 = clock_from_spec("scaled:30")
    after = time.monotonic()
    assert isinstance(c1, ScaledClock)
    assert c1.scale == 30.0
    assert before <= c1.origin_real <= after
    assert c1.origin_clinical == 0.0
    c2 = clock_from_spec("scaled:2:100")
    assert c2 == ScaledClock(scale=2.0, origin_real=100.0, origin_clinical=0.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("virtual", "expected 'real', 'scaled:SCALE:ORIGIN'"),
        ("scaled:", "not a number"),
        ("scaled:fast", "not a number"),
        ("scaled:1:2:3:4", "expected scaled:SCALE[:ORIGIN[:CLINICAL]]"),
        ("scaled:0:1", "clock scale must be > 0"),
        ("scaled:-60:1", "clock scale must be > 0"),
    ],
)
def test_bad_specs_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        clock_from_spec(spec)
    assert message in str(info.value)
    assert repr(spec) in str(info.value) or "clock scale" in str(info.value)
