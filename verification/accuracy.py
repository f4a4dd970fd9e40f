"""The emulated accuracy bench: everything an accuracy run needs, in one process, on a
virtual clock, and the pump model's own figures to hold its measurement against.

The same code as a real bench, except the processes and the wire to the pump: a
``Session`` on the real kernel through the in-process link (``LocalSafety``: every message
encoded and decoded), the simulated pump with a mechanism (``firmware_bridge.mechanics``),
the MT-SICS balance emulator on a real pty weighing that very pump
(``firmware_bridge.balance``), and the real balance driver reading it. Used by ``pumpctl
accuracy run`` without ``--config``, by the accuracy benchmark and by the tests.

On a virtual clock no time passes while a balance would wait for stability, so runs on
this bench read immediate weights (``record_run(..., stable=False)``). The safety core
polls the pump, and the link heartbeats, every ``TIMING.poll_period_s`` of simulated time
(a real bench: every second): the read-backs are judged as always, they only come less
often, and a 2 h test takes a few seconds instead of twenty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from controller.session import Session
from drivers.balances import BalanceIdentity
from drivers.balances.mtsics import MtSicsBalance
from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import BalanceModel, BalanceSpec, Bench
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.mechanics import Mechanics
from safety.ipc.local import LocalSafety
from safety.library import DrugLibrary
from safety.timing import HostTiming

#: the balance driver's reply deadline on this bench (real s: a loaded machine's pty)
REPLY_TIMEOUT_S = 2.0
#: the safety core's periods on this bench's virtual liveness clock (see above)
TIMING = HostTiming(poll_period_s=5.0, keep_alive_period_s=5.0, heartbeat_timeout_s=20.0)


@dataclass(frozen=True)
class ModelFigures:
    """What the pump model itself says a test must find (``Mechanics``' closed forms)."""

    startup_delay_min: float
    mean_error_pct: float


@dataclass
class EmulatedBench:
    link: LocalSafety
    session: Session
    balance: MtSicsBalance
    identity: BalanceIdentity
    scale: BalanceModel
    mechanics: Mechanics

    def now(self) -> float:
        return self.link.clinical.now()

    def wait(self, seconds: float) -> None:
        self.link.advance(seconds)

    def delivered_ml(self) -> float:
        """What the pump really delivered so far (its ground truth, not the balance's)."""
        return self.link.pump.delivered_ml()

    def model_figures(self, rate_ml_h: float) -> ModelFigures:
        syringe = self.link.pump.syringe
        return ModelFigures(
            self.mechanics.startup_delay_s(syringe, rate_ml_h) / 60.0,
            self.mechanics.mean_flow_error() * 100.0,
        )


@contextlib.contextmanager
def emulated_bench(
    library: DrugLibrary,
    *,
    syringe: str = "bd-plastipak-50ml",
    mechanics: Mechanics | None = None,
    bench: Bench | None = None,
    spec: BalanceSpec | None = None,
) -> Iterator[EmulatedBench]:
    """Start the bench (the session attached, the balance connected and identified);
    everything is closed on leaving. A bad ``syringe`` raises ``ValueError``."""
    mechanics = mechanics or Mechanics()
    with LocalSafety(library=library, syringe=syringe, mechanics=mechanics, timing=TIMING) as link:
        session = Session.open(link, library, clinical=link.clinical, liveness=link.liveness)
        try:
            link.advance(5.0)
            scale = BalanceModel(link.clinical, link.pump, spec=spec, bench=bench)
            with BackgroundLine(MtSicsBalanceSide(scale), WireFaults()) as line:
                balance = MtSicsBalance(port=line.where, reply_timeout_s=REPLY_TIMEOUT_S)
                balance.connect()
                try:
                    identity = balance.identify()
                    yield EmulatedBench(link, session, balance, identity, scale, mechanics)
                finally:
                    balance.close()
        finally:
            session.close()


__all__ = ["EmulatedBench", "ModelFigures", "emulated_bench"]
