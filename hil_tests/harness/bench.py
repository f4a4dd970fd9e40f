"""One hardware-in-the-loop bench: an emulated pump, the safety process, and controllers.

Real processes on real operating-system boundaries: the emulator
(``python -m firmware_bridge.emulators``) on a pty or a TCP port with its ground-truth log
and control socket, ``python -m safety`` owning it over the real driver, and controllers
over the authenticated socket (a ``Session`` in the test process, or a controller child
process when it must be killed). Emulator and safety process share one scaled clinical
clock (an origin on ``time.monotonic`` and a scale), so 30-minute wean windows and hours
of infusion pass in seconds; liveness timers (heartbeats, reply deadlines, the NE-1000
safe-mode watchdog) stay on the real clock.

Sockets, the pty link, the GPIO state and the key live in a short runtime directory under
``/dev/shm`` where there is one, else ``/tmp`` (a Unix socket path must fit in 107 bytes);
journals, the truth log and the config go to the case's ``tmp_path``. ``close()`` stops
every process and session the bench started and removes the runtime directory, whatever
state the case left them in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.connect import connect
from controller.session import Session
from drivers.gpio.simulated import read_sim_pins
from firmware_bridge.clock import ScaledClock
from firmware_bridge.emulators.control import ControlError, send_control
from firmware_bridge.emulators.truth_log import read_truth_log
from firmware_bridge.pump_model import TruthEvent, TruthSegment
from hil_tests.harness.processes import (
    PYTHON,
    Child,
    RawClient,
    ready_socket,
    safety_args,
    unattached_request,
    unit_niceness,
    wait_for,
    write_toml,
)
from hil_tests.harness.pumps import KINDS_BY_NAME, PumpKind
from safety.ipc.client import SafetyClient
from safety.ipc.messages import Reply
from safety.kernel.model import RequestBody
from safety.library import DrugLibrary, default_library_path, load_library
from verification.ground_truth import SafetyRecord, TruthReport, check_ground_truth

#: where the short runtime directories go, and their name prefix (the leftover check
#: looks for exactly these). RAM where there is some: the simulated GPIO rewrites its
#: state file (create, rename) at every heartbeat toggle, and on a disk whose journal is
#: busy such a rename waits for it, inside the safety process's one loop.
SHM = Path("/dev/shm")
RUNTIME_PARENT = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else Path("/tmp")
RUNTIME_PREFIX = "hil-"
#: every runtime directory any bench of this process created, in order
RUNTIME_DIRS: list[Path] = []

#: a journal entry and the pump acting on it may be this far apart on a real wire (real
#: seconds): journal fsync, the serial exchange, scheduling on a loaded 2-core machine.
#: Multiplied by the clock's speed-up it is the checker's ``tolerance_s``.
WIRE_SLACK_S = 0.5
#: the safety process runs at the niceness of its systemd unit, as in service (where this
#: process may set it: root); the emulators at the same, for they stand for hardware
#: beside the host, which the host's load never slows. What the cases judge on real time
#: then keeps the CPU when the machine is busy, as on a bench (the test process, like the
#: controller's unit, stays at 0; the test browser runs below: ``harness/browser.py``).
SAFETY_NICENESS = unit_niceness()
EMULATOR_NICENESS = SAFETY_NICENESS
#: bounds of the real-time waits of a bench (failures, never sleeps that make a case pass)
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class BenchSettings:
    """What a case may tune; the defaults suit most cases."""

    #: clinical seconds per real second (shared by the emulator and the safety process)
    speed: float = 600.0
    heartbeat_timeout_s: float = 2.0
    poll_period_s: float = 0.25
    keep_alive_period_s: float = 1.0
    #: the drivers' reply deadline (real s)
    reply_timeout_s: float = 0.5
    #: NE-1000 safe mode: the pump stops itself after this long without a valid packet
    safe_mode_timeout_s: int = 10
    syringe: str = "bd-plastipak-50ml"
    volume_ml: float | None = None
    #: more emulator options (``--mechanics typical``, ``--balance-pty``: an accuracy bench)
    emulator_args: tuple[str, ...] = ()


class HilBench:
    """An emulated pump with its safety process, and everything they need on disk."""

    def __init__(
        self,
        kind: PumpKind | str,
        artefacts: Path,
        settings: BenchSettings | None = None,
        library: DrugLibrary | None = None,
    ) -> None:
        self.kind = KINDS_BY_NAME[kind] if isinstance(kind, str) else kind
        self.settings = settings or BenchSettings()
        self.library = library or load_library()
        self.artefacts = artefacts
        artefacts.mkdir(parents=True, exist_ok=True)
        self.runtime = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX, dir=RUNTIME_PARENT))
        RUNTIME_DIRS.append(self.runtime)
        self.clock = ScaledClock.starting_now(self.settings.speed)
        self.children: list[Child] = []
        self.sessions: list[Session] = []
        self.links: list[SafetyClient] = []
        self.raws: list[RawClient] = []
        self.emulator: Child | None = None
        self.safety: Child | None = None
        self.safety_runs: list[Child] = []
        self.where = ""
        self.prior: list[TruthSegment] = []
        #: set by ``invariants()``: every case must judge the pump's truth at least once
        self.invariants_checked = False

    # ------------------------------------------------------------------ files
    @property
    def config(self) -> Path:
        return self.artefacts / "safety.toml"

    @property
    def safety_journal(self) -> Path:
        return self.artefacts / "safety-journal.sqlite"

    @property
    def controller_journal(self) -> Path:
        return self.artefacts / "controller-journal.sqlite"

    @property
    def truth_log(self) -> Path:
        return self.artefacts / "pump-truth.jsonl"

    @property
    def socket(self) -> Path:
        return self.runtime / "safety.sock"

    @property
    def key_file(self) -> Path:
        return self.runtime / "ipc.key"

    @property
    def control_socket(self) -> Path:
        return self.runtime / "emulator.sock"

    @property
    def gpio_dir(self) -> Path:
        return self.runtime / "gpio"

    @property
    def pty_link(self) -> Path:
        return self.runtime / "tty"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> HilBench:
        """Emulator, config, safety process: ready for a controller to connect."""
        self.start_emulator()
        self.write_config()
        self.start_safety()
        return self

    def start_emulator(self) -> str:
        args = [
            PYTHON,
            "-m",
            "firmware_bridge.emulators",
            *self.kind.emulator_args(link=str(self.pty_link)),
            *self.kind.container_args(self.settings.syringe),
            "--clock",
            self.clock.spec(),
            "--control",
            str(self.control_socket),
            "--truth-log",
            str(self.truth_log),
        ]
        if self.settings.volume_ml is not None:
            args += ["--volume", repr(self.settings.volume_ml)]
        args += self.settings.emulator_args
        # TMPDIR: the Modbus RTU emulator makes its pty folder there, inside the runtime dir
        self.emulator = self._spawn(
            args, env={"TMPDIR": str(self.runtime)}, niceness=EMULATOR_NICENESS
        )
        self.where = self.emulator.first_line(START_TIMEOUT_S)
        wait_for(self._control_answers, START_TIMEOUT_S, "the emulator's control channel")
        return self.where

    def _control_answers(self) -> bool:
        try:
            return bool(send_control(str(self.control_socket), {"query": "state"}).get("ok"))
        except ControlError:
            return False

    def write_config(self) -> Path:
        s = self.settings
        pump: dict[str, Any] = {
            "driver": self.kind.protocol,
            "options": self.kind.driver_options(
                self.where,
                reply_timeout_s=s.reply_timeout_s,
                safe_mode_timeout_s=s.safe_mode_timeout_s,
            ),
        }
        # a one-pump bench's [pump] holds a syringe; a bag is a channel's container
        pumps = (
            {"channels": {"A": {**pump, "container": self.kind.bag}}}
            if self.kind.bag is not None
            else {"pump": {**pump, "syringe": s.syringe}}
        )
        return write_toml(self.config, {**pumps, **self._process_tables()})

    def _process_tables(self) -> dict[str, Any]:
        """The safety config's tables that do not depend on the pumps: GPIO, timing,
        paths and the shared clinical clock."""
        s = self.settings
        return {
            "gpio": {"backend": "simulated", "state_dir": str(self.gpio_dir)},
            "timing": {
                "heartbeat_timeout_s": s.heartbeat_timeout_s,
                "poll_period_s": s.poll_period_s,
                "keep_alive_period_s": s.keep_alive_period_s,
            },
            "paths": {
                "journal": str(self.safety_journal),
                "socket": str(self.socket),
                "key_file": str(self.key_file),
                "library": str(default_library_path()),
            },
            "clock": {"clinical": self.clock.spec()},
        }

    def start_safety(self, wrapper: Sequence[str] = ()) -> Child:
        """``python -m safety`` on this bench's config; returns once it is ready.
        ``wrapper``: a command it runs under (``unshare --time ...``: a reboot's clocks)."""
        child = self._spawn([*wrapper, *safety_args(self.config)], niceness=SAFETY_NICENESS)
        self.safety = child
        self.safety_runs.append(child)
        ready_socket(child)
        return child

    def kill_safety(self) -> None:
        """SIGKILL: no clean-up of any kind (the kernel releases its journal lock)."""
        assert self.safety is not None
        self.safety.kill9()

    def pumpctl(self, *args: str) -> Child:
        """``pumpctl ARGS`` as a child process of this bench (stopped with it)."""
        return self._spawn([PYTHON, "-m", "cli.main", *args])

    def _spawn(
        self, args: list[str], env: dict[str, str] | None = None, *, niceness: int | None = None
    ) -> Child:
        child = Child(args, env=env, niceness=niceness)
        self.children.append(child)
        return child

    def close(self) -> None:
        """Stop everything this bench started, in reverse order; remove the runtime dir."""
        try:
            for session in reversed(self.sessions):
                with contextlib.suppress(Exception):
                    session.close(hang_up=True)
            for link in reversed(self.links):
                with contextlib.suppress(Exception):
                    link.close()
            for raw in self.raws:
                raw.close()
        finally:
            try:
                for child in reversed(self.children):
                    child.stop()
            finally:
                shutil.rmtree(self.runtime, ignore_errors=True)

    # ------------------------------------------------------------------ controllers
    def connect(self, name: str = "hil-controller", *, background: bool = True) -> Session:
        """A controller in this process: ``controller.connect.connect`` on the bench's
        config (attaches and re-syncs); ``background``: plan steps sent by a service thread."""
        session = connect(self.config, journal=self.controller_journal, name=name)
        self.sessions.append(session)
        if background:
            session.run_in_background(period_s=0.05)
        return session

    def monitor(self, name: str = "hil-monitor") -> SafetyClient:
        """An authenticated link that never attaches: reads snapshots, changes nothing."""
        link = SafetyClient(self.socket, key_file=self.key_file, name=name)
        self.links.append(link)
        return link

    def key(self) -> bytes:
        """The IPC key the safety process created (what an authorised client holds)."""
        return bytes.fromhex(self.key_file.read_text(encoding="ascii").strip())

    def raw(self, *, authenticate: bool = True, name: str = "hil-raw") -> RawClient:
        """A line-by-line protocol client, to send what a real controller never would."""
        raw = RawClient(self.socket)
        self.raws.append(raw)
        if authenticate:
            raw.authenticate(self.key(), name)
        return raw

    def unattached_request(self, body: RequestBody) -> Reply:
        """A request from an authenticated connection that holds no session."""
        return unattached_request(self.socket, self.key(), body)

    def controller_child(self, mode: str, *args: str, wrapper: Sequence[str] = ()) -> Child:
        """``python -m hil_tests.controller_child`` (a controller that can be killed);
        ``wrapper``: a command it runs under (``nsenter``: the safety process's clocks)."""
        return self._spawn(
            [
                *wrapper,
                PYTHON,
                "-m",
                "hil_tests.controller_child",
                str(self.config),
                str(self.controller_journal),
                mode,
                *args,
            ]
        )

    # ------------------------------------------------------------------ the pump side
    def fault(self, spec: str) -> None:
        """Switch a fault on the emulated pump or its wire (its control channel)."""
        reply = send_control(str(self.control_socket), {"fault": spec})
        assert reply.get("ok"), f"the emulator refused fault {spec!r}: {reply}"

    def pump(self) -> dict[str, Any]:
        """The pump's own state now (not the safety process's belief)."""
        reply = send_control(str(self.control_socket), {"query": "state"})
        state: dict[str, Any] = reply["pump"]
        return state

    def balance_port(self) -> str:
        """The pty of the balance the emulator serves beside the pump (``--balance-pty``),
        weighing what this pump delivers."""
        assert self.emulator is not None
        return self.emulator.wait_line("balance at ", START_TIMEOUT_S).removeprefix("balance at ")

    def frame_log(self) -> list[str]:
        """Every line the emulator logged after announcing where it serves, up to now (it
        logs a frame before it reads the next, so a reply seen is a reply logged)."""
        assert self.emulator is not None
        return list(self.emulator.lines[1:])

    def set_rates_executed(self) -> int:
        """Rate sets the pump received and executed so far (from its frame log)."""
        return self.kind.set_rates_executed(self.frame_log())

    def truth(self) -> list[TruthEvent]:
        """The emulator's ground-truth log: the flow that really reached the patient."""
        return read_truth_log(self.truth_log) if self.truth_log.exists() else []

    def gpio(self) -> dict[str, Any]:
        """The safety process's GPIO outputs (simulated backend)."""
        return read_sim_pins(self.gpio_dir)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Clinical time on the bench's shared clock."""
        return self.clock.now()

    def real_s(self, clinical_s: float) -> float:
        return self.clock.to_real_seconds(clinical_s)

    def wait_clinical(
        self, until: float, *, also: Callable[[], object] | None = None, slack_s: float = 10.0
    ) -> None:
        """Poll (20 ms) until the clinical clock reaches ``until``; fail if that takes more
        than its real duration plus ``slack_s`` (a stopped clock is a bug, not a wait)."""
        deadline = time.monotonic() + self.real_s(max(0.0, until - self.now())) + slack_s

        def reached() -> bool:
            if also is not None:
                also()
            return self.now() >= until

        wait_for(reached, deadline - time.monotonic(), f"clinical time {until:.0f} s")

    # ------------------------------------------------------------------ the invariants
    @property
    def tolerance_s(self) -> float:
        return WIRE_SLACK_S * self.settings.speed

    def invariants(self, record: SafetyRecord | None = None) -> TruthReport:
        """Every safety invariant, checked on the pump's ground truth with causes from the
        safety journal (``verification.ground_truth``); ``record``: the journal's record put
        on the pump's clock by the case (after a reboot the timelines differ)."""
        self.invariants_checked = True
        return check_ground_truth(
            self.truth(),
            self.library,
            record if record is not None else SafetyRecord.from_journal(self.safety_journal),
            prior=self.prior,
            until=self.now(),
            tolerance_s=self.tolerance_s,
        )

    def assert_invariants(self, record: SafetyRecord | None = None) -> TruthReport:
        """``invariants()``, failing with each violation in words."""
        report = self.invariants(record)
        assert report.ok, "invariants broken on the pump's ground truth:\n" + "\n".join(
            f"  {v.rule} at {v.time:.0f} s: {v.message}" for v in report.violations
        )
        return report

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self, lines: int = 40) -> str:
        """The tail of every process's output, for a failed case's report."""
        parts = [f"bench {self.kind} in {self.artefacts} (runtime {self.runtime})"]
        for child in self.children:
            role = " ".join(child.args[2:4])
            parts.append(f"--- {role} (pid {child.pid}) stdout:")
            parts += _tail(child.lines, lines)
            parts.append(f"--- {role} stderr:")
            parts += _tail(child.errors, lines)
        with contextlib.suppress(Exception):
            parts.append("--- truth:")
            parts += _tail([repr(e) for e in self.truth()], lines)
        with contextlib.suppress(Exception):
            parts.append(self._pump_now())
        return "\n".join(parts)

    def _pump_now(self) -> str:
        """The pump's own state at the report, and a word when its container ran empty:
        at 600x a 50 mL syringe at 15 mL/h lasts 20 real s, and a case slowed past that
        by a busy machine judges an empty pump (the dashboard case once did)."""
        pump = self.pump()
        said = (
            f"--- the pump now (clinical {self.now():.0f} s, {self.settings.speed:g}x): "
            f"running {pump['running']}, {pump['remaining_ml']:.3f} mL left, "
            f"alarms {pump['alarms']}"
        )
        if pump["remaining_ml"] <= 0:
            said += "\n  its container ran empty during the case: slow the bench's clock"
        return said


def _tail(lines: Sequence[str], n: int) -> list[str]:
    return [f"  {line}" for line in list(lines)[-n:]]
