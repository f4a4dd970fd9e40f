"""A simulated patient and its monitor, served beside an emulated pump in one process.

Why one process: the patient must receive exactly what the pump delivered. In the same
process it reads the pump model's own ground truth (the very object the pump's protocol
end drives), with no file or socket in between that could lag, drop or reorder it. The
emulator command line (``--patient SPEC --monitor-tcp HOST:PORT`` or ``--monitor-pty``)
builds one ``PatientMonitor``; it serves the monitor protocol on its own endpoint with the
same ``SerialLine`` as the pumps (frame log, wire faults), in a daemon thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from firmware_bridge.clock import Clock
from firmware_bridge.emulators.endpoints import Endpoint
from firmware_bridge.emulators.serial_line import SerialLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.monitor.emulator import MonitorSide
from firmware_bridge.patient.params import draw_patient
from firmware_bridge.patient.patient import Patient
from firmware_bridge.patient.spec import PatientSpec
from firmware_bridge.pump_model import SimulatedPump

JOIN_TIMEOUT_S = 5.0


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
        self.endpoint = endpoint
        self.wire = WireFaults()
        self.side = MonitorSide(lambda: self.patient.readings_until(clock.now()))
        self.line = SerialLine(self.side, endpoint, self.wire, log=log)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return self.endpoint.name

    def start(self) -> None:
        self.endpoint.open()
        self._thread = threading.Thread(
            target=self.line.serve, args=(self._stop,), daemon=True, name="monitor-emulator"
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
        self.endpoint.shutdown()
