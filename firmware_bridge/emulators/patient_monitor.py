"""A simulated patient and its monitor, served beside an emulated pump in one process.

Why one process: the patient must receive exactly what the pump delivered. In the same
process it reads the pump model's own ground truth (the very object the pump's protocol
end drives), with no file or socket in between that could lag, drop or reorder it. The
emulator command line (``--patient SPEC --monitor-tcp HOST:PORT`` or ``--monitor-pty``)
builds one ``PatientMonitor``; it serves the monitor protocol on its own endpoint with the
same ``SerialLine`` as the pumps (frame log, wire faults), in a daemon thread.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.clock import Clock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.endpoints import Endpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.monitor.emulator import MonitorSide
from firmware_bridge.patient.params import draw_patient
from firmware_bridge.patient.patient import Patient
from firmware_bridge.patient.spec import PatientSpec
from firmware_bridge.pump_model import SimulatedPump


class PatientMonitor:
    """Patient ``spec`` on ``pump``, its monitor served on ``endpoint``."""

    def __init__(
        self,
        spec: PatientSpec,
        pump: SimulatedPump,
        clock: Clock,
        endpoint: Endpoint,
        *,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        params = draw_patient(spec.seed, spec.index, spec.sensitivity)
        self.patient = Patient(
            params,
            spec.line,
            pump,
            seed=spec.seed,
            index=spec.index,
            scenario=spec.scenario,
            period_s=spec.period_s,
        )
        self.wire = WireFaults()
        self.side = MonitorSide(lambda: self.patient.readings_until(clock.now()))
        # the balance's and the serial pumps' own server: a daemon thread on the endpoint
        self.served = BackgroundLine(
            self.side, self.wire, endpoint=endpoint, log=log, reopen_after_s=0.5
        )

    @property
    def where(self) -> str:
        return self.served.where

    def start(self) -> None:
        self.served.start()

    def stop(self) -> None:
        self.served.stop()
