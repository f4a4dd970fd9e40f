"""Fixtures: short temporary directories (a Unix socket path must fit
in 107 bytes, which pytest's ``tmp_path`` does not promise), and a real ``SafetyServer``
over a real Unix socket, serving the mock pump from a background thread."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from drivers.pumps.mock import MockPumpDriver
from firmware_bridge.clock import MonotonicClock
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import syringe_by_name
from safety.host.core import HostTiming, SafetyCore
from safety.ipc.server import Limits, SafetyServer
from safety.journal import Journal
from safety.kernel.model import ProgramSpec
from safety.library import DrugLibrary
from safety.status import Snapshot

SYRINGE = "bd-plastipak-50ml"
#: journal kinds written by the timers alone, and the IPC server's record of a client it
#: hung up on (no decision, no action); anything else is a decision or an action
PASSIVE_KINDS = frozenset({"readback", "ticked", "client_dropped"})


@pytest.fixture
def spec(library: DrugLibrary) -> ProgramSpec:
    """Norepinephrine 4 mg/250 mL in D5W, mcg/min (the library's standard therapy)."""
    return ProgramSpec(
        library.content_hash, "norepinephrine", "adult_icu", "standard", "4 mg/250 mL", "D5W"
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sp-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class ServerRig:
    server: SafetyServer
    core: SafetyCore
    pump: SimulatedPump
    driver: MockPumpDriver
    journal: Journal
    socket_path: Path
    key: bytes
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)
    observer_key: bytes = b""

    def decisive_entries(self) -> list[tuple[int, str, str]]:
        """Journal entries other than the timers' read-backs: decisions, commands, alarms."""
        return [
            (e.id, e.kind, e.payload) for e in self.journal.entries() if e.kind not in PASSIVE_KINDS
        ]

    def pumps_at(self, rate_ml_h: float) -> bool:
        """The pump itself (not the safety process's belief) runs at ``rate_ml_h``."""
        snap = self.pump.snapshot()
        return snap.running and abs(snap.set_rate_ml_h - rate_ml_h) < 1e-9

    def held(self) -> Snapshot | None:
        """The safety process's snapshot if it is holding (S11), else None."""
        snap = self.core.snapshot()
        return snap if snap.hold else None


def make_server(
    directory: Path,
    library: DrugLibrary,
    *,
    heartbeat_timeout_s: float = 1.0,
    poll_period_s: float = 0.1,
    auth_timeout_s: float = 5.0,
    limits: Limits | None = None,
) -> ServerRig:
    clinical = MonotonicClock()
    liveness = MonotonicClock()
    pump = SimulatedPump(clinical, SYRINGE)
    driver = MockPumpDriver(pump=pump)
    journal = Journal(directory / "journal.sqlite", "safety")
    core = SafetyCore(
        library,
        driver,
        journal,
        clinical=clinical,
        liveness=liveness,
        syringe=syringe_by_name(SYRINGE),
        timing=HostTiming(
            poll_period_s=poll_period_s,
            keep_alive_period_s=1.0,
            heartbeat_timeout_s=heartbeat_timeout_s,
        ),
    )
    core.start()
    key = os.urandom(32)
    observer_key = os.urandom(32)
    server = SafetyServer(
        core,
        directory / "safety.sock",
        key,
        observer_key=observer_key,
        liveness=liveness,
        limits=limits,
        auth_timeout_s=auth_timeout_s,
    )
    server.open()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve()
        except BaseException as exc:  # surfaced by the fixture's teardown
            errors.append(exc)

    thread = threading.Thread(target=serve, name="safety-server", daemon=True)
    rig = ServerRig(
        server,
        core,
        pump,
        driver,
        journal,
        directory / "safety.sock",
        key,
        thread,
        errors,
        observer_key,
    )
    thread.start()
    return rig


def stop_server(rig: ServerRig) -> None:
    rig.server.request_stop()
    rig.thread.join(timeout=10)
    assert not rig.thread.is_alive(), "server thread did not stop"
    rig.server.close()
    rig.core.close()
    rig.journal.close()
    if rig.errors:
        raise rig.errors[0]


@pytest.fixture
def rig(short_dir: Path, library: DrugLibrary) -> Iterator[ServerRig]:
    server_rig = make_server(short_dir, library)
    try:
        yield server_rig
    finally:
        stop_server(server_rig)


DOSE_8 = Decimal(8)
DOSE_10 = Decimal(10)
