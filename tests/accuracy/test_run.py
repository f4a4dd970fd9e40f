"""An accuracy run on virtual clocks: the real kernel (in-process link), the MT-SICS
driver over a pty to the balance emulator weighing the pump the safety core owns, a pump
with known slack and lag. The analysis must find the model's own start-up delay and mean
flow error (within 5 %)."""

from __future__ import annotations

import pytest

from controller.accuracy.analysis import Settings, analyse
from controller.accuracy.run import RunError, record_run
from controller.session import Session
from drivers.balances.mtsics import MtSicsBalance
from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import BalanceModel, BalanceSpec, Bench
from firmware_bridge.balance.water import water_density_g_ml
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.mechanics import Mechanics
from safety.ipc.local import LocalSafety
from safety.library import load_library


def test_run_measures_the_models_own_figures() -> None:
    library = load_library()
    mechanics = Mechanics(slack_mm=0.25, compliance_tau_s=30.0, bore_error_fraction=0.0075)
    with LocalSafety(library=library, mechanics=mechanics) as link:
        session = Session.open(link, library, clinical=link.clinical, liveness=link.liveness)
        link.advance(5.0)
        model = BalanceModel(
            link.clinical,
            link.pump,
            spec=BalanceSpec(),
            bench=Bench(seed=3, evaporation_mg_min=0.02),
        )
        with BackgroundLine(MtSicsBalanceSide(model), WireFaults()) as line:
            balance = MtSicsBalance(port=line.where, reply_timeout_s=2.0)
            balance.connect()
            try:
                rec = record_run(
                    session,
                    library,
                    balance,
                    rate_ml_h=5.0,
                    duration_s=7200.0,
                    interval_s=30.0,
                    now=link.clinical.now,
                    wait=link.advance,
                    stable=False,
                )
            finally:
                balance.close()
        assert not link.pump.snapshot().running  # stopped through the safety process
        assert rec.stopped and rec.stop == "stopped through the safety process"
    times = [r.time_s for r in rec.rows]
    masses = [r.mass_g for r in rec.rows]
    result = analyse(
        times,
        masses,
        Settings(rate_ml_h=5.0, density_g_ml=water_density_g_ml(20.0), evaporation_mg_min=0.02),
    )
    syringe = link.pump.syringe
    expected_delay = mechanics.startup_delay_s(syringe, 5.0) / 60.0
    expected_error = mechanics.mean_flow_error() * 100
    assert result.startup_delay_min == pytest.approx(expected_delay, rel=0.05)
    assert result.main.mean_error_pct == pytest.approx(expected_error, rel=0.05)
    assert len(rec.rows) == 241


def test_a_rate_above_the_fluid_limit_is_refused_by_the_safety_process() -> None:
    library = load_library()
    with LocalSafety(library=library) as link:
        session = Session.open(link, library, clinical=link.clinical, liveness=link.liveness)
        model = BalanceModel(link.clinical, link.pump)
        with BackgroundLine(MtSicsBalanceSide(model), WireFaults()) as line:
            balance = MtSicsBalance(port=line.where)
            balance.connect()
            link.advance(5.0)
            with pytest.raises(RunError, match="refused to start at 5000 mL/h"):
                record_run(
                    session,
                    library,
                    balance,
                    rate_ml_h=5000.0,
                    duration_s=60,
                    interval_s=30,
                    now=link.clinical.now,
                    wait=link.advance,
                    stable=False,
                )
            balance.close()
        assert not link.pump.snapshot().running
