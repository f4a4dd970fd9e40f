"""An accuracy run on virtual clocks: a session on the real kernel (in-process link), the
MT-SICS driver over a pty to the balance emulator weighing the pump the safety core owns,
a pump with known slack and lag. The analysis must find the model's own start-up delay
and mean flow error (within 5 %); however the run ends (a refusal, a pump that stops,
Ctrl-C) the pump is stopped through the safety process and the readings are kept. The
stable-weight reading and its fallback are byte-exact against a scripted balance."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from controller.accuracy.analysis import Settings, analyse
from controller.accuracy.readings import Row
from controller.accuracy.run import Recording, RunError, read_weight, record_run
from drivers.balances import BalanceTimeout
from drivers.balances.mtsics import MtSicsBalance
from drivers.testing import ScriptedTransport
from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import BalanceModel, Bench, ConstantFlow
from firmware_bridge.balance.water import water_density_g_ml
from firmware_bridge.clock import ScaledClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.mechanics import Mechanics
from safety.library import DrugLibrary
from verification.accuracy import EmulatedBench, emulated_bench


def run(
    r: EmulatedBench,
    library: DrugLibrary,
    *,
    rate_ml_h: float = 5.0,
    duration_s: float = 7200.0,
    wait: Callable[[float], None] | None = None,
    **more: Any,
) -> Recording:
    """A run on the rig's virtual clock: immediate readings (no time passes while a
    balance would wait for stability)."""
    return record_run(
        r.session,
        library,
        r.balance,
        rate_ml_h=rate_ml_h,
        duration_s=duration_s,
        interval_s=30.0,
        now=r.now,
        wait=wait or r.wait,
        stable=False,
        **more,
    )


def test_run_measures_the_models_own_figures(library: DrugLibrary) -> None:
    mechanics = Mechanics(slack_mm=0.25, compliance_tau_s=30.0, bore_error_fraction=0.0075)
    seen: list[Row] = []
    with emulated_bench(
        library, mechanics=mechanics, bench=Bench(seed=3, evaporation_mg_min=0.02)
    ) as r:
        rec = run(r, library, on_row=seen.append)
        assert not r.link.pump.snapshot().running  # stopped through the safety process
        assert rec.stopped and rec.stop == "stopped through the safety process"
        model = r.model_figures(5.0)
    assert seen == rec.rows and len(rec.rows) == 241
    assert [row.command for row in rec.rows] == ["SI"] * 241
    times = [row.time_s for row in rec.rows]
    assert times == [30.0 * i for i in range(241)]  # a virtual clock: exactly on time
    result = analyse(
        times,
        [row.mass_g for row in rec.rows],
        Settings(rate_ml_h=5.0, density_g_ml=water_density_g_ml(20.0), evaporation_mg_min=0.02),
    )
    assert model.startup_delay_min == pytest.approx(0.25 * 0.555 / 5 * 60 + 0.5, rel=0.01)
    assert model.mean_error_pct == pytest.approx(1.505625)  # 1.0075^2 - 1
    assert result.startup_delay_min == pytest.approx(model.startup_delay_min, rel=0.05)
    assert result.main.mean_error_pct == pytest.approx(model.mean_error_pct, rel=0.05)


def test_a_rate_above_the_fluid_limit_is_refused_by_the_safety_process(
    library: DrugLibrary,
) -> None:
    with emulated_bench(library) as r:
        rec = Recording()
        with pytest.raises(RunError, match=r"refused to start at 5000 mL/h: refused: 5000 mL/h"):
            run(r, library, rate_ml_h=5000.0, duration_s=60, into=rec)
        assert not r.link.pump.snapshot().running
    assert rec.started_at is None and rec.rows == []
    assert rec.stopped and rec.stop == "the pump was not running"


def test_a_pump_that_stops_during_the_run_ends_it_with_the_reason(library: DrugLibrary) -> None:
    with emulated_bench(library) as r:
        rec = Recording()

        def occlude_at_five(i: int, n: int, row: Row) -> None:
            if i == 5:
                r.link.inject_faults("occlusion")

        with pytest.raises(RunError) as info:
            run(r, library, duration_s=1200.0, into=rec, progress=occlude_at_five)
        assert not r.link.pump.snapshot().running
    # the pressure builds up until the pump alarms; the run ends at the next reading
    match = re.fullmatch(
        r"after reading (\d+): the pump is no longer running \(pump:occlusion: .*\)",
        str(info.value),
    )
    assert match is not None, info.value
    assert 5 < int(match.group(1)) < 40 and len(rec.rows) == int(match.group(1)) + 1
    assert rec.stop == "the pump was not running" and rec.stopped


def test_ctrl_c_stops_the_pump_through_the_safety_process_and_keeps_the_readings(
    library: DrugLibrary,
) -> None:
    with emulated_bench(library) as r:
        rec = Recording()
        waits = 0

        def wait(seconds: float) -> None:
            nonlocal waits
            waits += 1
            if waits == 4:
                raise KeyboardInterrupt
            r.link.advance(seconds)

        with pytest.raises(KeyboardInterrupt):
            run(r, library, duration_s=600.0, into=rec, wait=wait)
        assert not r.link.pump.snapshot().running
    assert len(rec.rows) == 4 and rec.stop == "stopped through the safety process"


def test_a_balance_that_fails_ends_the_run_naming_the_step(library: DrugLibrary) -> None:
    with emulated_bench(library) as r:
        r.scale.apply_fault("pan_off")
        with pytest.raises(RunError, match=r"the balance failed \(taring the beaker\): .* T -"):
            run(r, library, duration_s=600.0)
        r.scale.apply_fault("clear")
        rec = Recording()

        def overload_at_two(i: int, n: int, row: Row) -> None:
            if i == 2:
                r.scale.apply_fault("overload")

        with pytest.raises(RunError, match=r"the balance failed \(reading 3\): mtsics SI: S \+"):
            run(r, library, duration_s=600.0, into=rec, progress=overload_at_two)
        assert not r.link.pump.snapshot().running
    assert len(rec.rows) == 3 and rec.stopped


# --------------------------------------------------------------------- one reading
HELLO = (b"@\r\n", b'I4 A "0123456789"\r\n')


def _scripted(steps: list[tuple[bytes, bytes | None]]) -> tuple[MtSicsBalance, ScriptedTransport]:
    transport = ScriptedTransport([HELLO, *steps])
    balance = MtSicsBalance(port="scripted", transport=transport)
    balance.connect()
    return balance, transport


def _clock(*readings: float) -> Callable[[], float]:
    """A clock that reads exactly these times, one per call (and fails on one more)."""
    times = iter(readings)
    return lambda: next(times)


def test_a_stable_weight_is_timed_when_it_arrives() -> None:
    balance, transport = _scripted([(b"S\r\n", b"S S      1.2345 g\r\n")])
    reading = read_weight(balance, _clock(100.0), stable=True)
    assert reading == (100.0, 1.2345, True, "S")
    transport.assert_finished()


def test_no_stability_in_time_falls_back_to_an_immediate_dynamic_reading() -> None:
    balance, transport = _scripted([(b"S\r\n", b"S I\r\n"), (b"SI\r\n", b"S D      1.2346 g\r\n")])
    reading = read_weight(balance, _clock(100.0, 102.0), stable=True)
    assert reading == (101.0, 1.2346, False, "SI")  # the middle of the SI exchange
    transport.assert_finished()


def test_immediate_readings_only_on_a_virtual_clock() -> None:
    balance, transport = _scripted([(b"SI\r\n", b"S S      0.0001 g\r\n")])
    assert read_weight(balance, _clock(5.0, 5.0), stable=False) == (
        5.0,
        0.0001,
        True,
        "SI",
    )
    transport.assert_finished()


def test_a_balance_that_does_not_answer_is_not_taken_for_an_unstable_one() -> None:
    balance, transport = _scripted([(b"S\r\n", None)])
    with pytest.raises(BalanceTimeout, match="mtsics S"):
        read_weight(balance, _clock(1.0), stable=True)
    transport.assert_finished()


def test_against_the_emulator_a_balance_without_stability_gives_dynamic_readings() -> None:
    """The fallback end to end: the emulator waits for stability on its own clock (100x:
    its 10 s time-out passes in 0.1 s), answers ``S I``, and the reading is taken with
    ``SI``, flagged dynamic; once the fault is gone ``S`` answers stable."""
    clock = ScaledClock.starting_now(100.0)
    scale = BalanceModel(clock, ConstantFlow(clock, 5.0))
    with BackgroundLine(MtSicsBalanceSide(scale), WireFaults()) as line:
        balance = MtSicsBalance(port=line.where, reply_timeout_s=2.0, stable_timeout_s=5.0)
        balance.connect()
        try:
            scale.apply_fault("no_stability")
            at, grams, stable, command = read_weight(balance, clock.now)
            assert (stable, command) == (False, "SI") and grams > 0
            scale.apply_fault("no_stability=off")
            clock_before = clock.now()
            at, grams, stable, command = read_weight(balance, clock.now)
            assert (stable, command) == (True, "S") and at >= clock_before
        finally:
            balance.close()
