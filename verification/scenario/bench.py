"""Where a scenario runs: the safety process, the pump and a controller session.

Two benches with one interface, so a scenario file means the same thing on both:

- ``VirtualBench`` (default): everything in this process on virtual clocks. The safety
  process is ``safety.ipc.local.LocalSafety`` (the real safety core and message
  dispatcher, over the mock driver serving the one simulated pump, or one per channel
  of a bench of several); time moves only when
  the runner says, so a day of clinical time takes seconds and every run is
  reproducible. Process faults use LocalSafety's hooks: ``kill_controller`` (the socket's
  EOF), ``stop_heartbeats`` (a hung controller), ``restart`` (a safety process restart:
  journal replay, on the same pump), the stop button.
- ``RealBench`` (``--real``): real processes on a scaled clinical clock: an emulator
  (NE-1000, Harvard or Modbus) on a pty or TCP port, ``python -m safety`` owning it
  over the real serial path, and this controller over the authenticated socket. A bench
  of several pumps is one NE-1000 or Harvard emulator serving a pump per channel at
  addresses 0, 1, ... on one pty line (``[lines.bus]``, ``[channels.NAME]``), as several
  pumps daisy-chained on one RS-232 line. A killed
  controller is its socket closed without a word (what the safety process sees of a
  ``kill -9``); a killed safety process is really SIGKILLed, and restarted on the same
  journal.

Both write the same files in the run's folder: ``safety-journal.sqlite``,
``controller-journal.sqlite`` (and, for ``--real``, ``pump-truth.jsonl`` and the logs).
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from pathlib import Path

from controller.bench_config import load_bench_config
from controller.connect import connect, open_link, start_safety
from controller.errors import ControllerError
from controller.inputs import program_spec
from controller.journal_timeline import CONTROLLER_NAME, SAFETY_NAME
from controller.machine import State
from controller.session import Session
from firmware_bridge.clock import Clock, ScaledClock, VirtualClock, clock_spec
from firmware_bridge.emulators.control import send_control
from firmware_bridge.emulators.truth_log import read_truth_log
from firmware_bridge.pump_model import TruthEvent, TruthSegment
from safety.clock_evidence import timeline_started
from safety.ipc.launch import SafetyChild
from safety.ipc.local import LIVENESS_START, LocalChannel, LocalSafety
from safety.journal import Journal, open_readonly
from safety.kernel.codec import encode_event
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    CommandIssued,
    Event,
    Now,
    PatientAdmitted,
    PatientSpec,
    ProgramLoaded,
    ProgramSpec,
    PumpReading,
    ReadbackReceived,
    RequestBody,
    SetRate,
    StartPump,
    StopPump,
)
from safety.kernel.state import load_program
from safety.library import DrugLibrary, default_library_path
from safety.status import AlarmView, Outcome
from safety.timing import HostTiming
from verification.scenario.model import BenchSpec, ChannelSpec, Prior

#: one-process runs: the safety process reads the pump back this often (s) by default;
#: the real default (1 s) would spend most of a long run polling an unchanging pump
VIRTUAL_POLL_S = 5.0
#: one-process runs: the controller heartbeat timeout (S11), and so a heartbeat every
#: quarter of it; the real default (2 s) would step a day-long run 170 000 times
VIRTUAL_HEARTBEAT_TIMEOUT_S = 10.0
#: real runs: read-back period (real s)
REAL_POLL_S = 0.25
#: longest clinical step between two looks at the session in a one-process run
MAX_STEP_S = 15.0
#: real seconds a real-process run may spend starting the emulator
EMULATOR_READY_S = 15.0
#: real seconds between two services of the session in a real run
REAL_TICK_S = 0.05


class BenchError(Exception):
    """The bench cannot be set up or a fault cannot be made; the message says why."""


AlarmHook = Callable[[AlarmView], None]


def program_of(library: DrugLibrary, spec: BenchSpec) -> ProgramSpec:
    return program_spec(
        library,
        spec.drug,
        spec.concentration,
        spec.diluent,
        weight_kg=spec.weight_kg,
        profile=spec.profile,
        therapy=spec.therapy,
    )


def seed_journal(
    path: Path,
    library: DrugLibrary,
    program: ProgramSpec,
    runs: Sequence[Prior],
    t0: float,
    liveness: float,
    clock: Clock,
) -> list[TruthSegment]:
    """Journal a past infusion as a previous safety process would have (program,
    commands, read-backs), ``t0`` being the scenario's time zero; return its truth.

    Why: a syringe holds a fraction of a day's drug, while the 24 h cap and the wean
    window need hours of history; the safety kernel is event-sourced, so a journal is
    exactly how such a history reaches it. The pump is left stopped. ``clock`` is the
    clinical clock the safety process will run on (its timeline continues from here),
    ``liveness`` the monotonic reading at ``t0``.
    """
    active = load_program(library, program, t0)
    events: list[Event] = []
    truth: list[TruthSegment] = []
    infused = 0.0
    first = t0 + runs[0].from_

    def now(t: float) -> Now:
        return Now(t, liveness + clock.to_real_seconds(t - t0))

    events.append(timeline_started(clock_spec(clock), now(first)))
    patient = PatientSpec(active.limits.profile, active.limits.weight_kg)
    events.append(PatientAdmitted("seeded", patient, "first program", now(first)))
    events.append(ProgramLoaded(program, active.limits, 0.0, now(first)))
    for run in runs:
        start, end = t0 + run.from_, t0 + run.until
        exact = active.exact_rate(Fraction(run.dose))
        rate = _four_digits_down(exact)
        events += [
            CommandIssued(SetRate(rate), "command", now(start)),
            CommandIssued(StartPump(), "command", now(start)),
            ReadbackReceived(PumpReading(True, rate, infused), now(start)),
        ]
        infused += float(rate) * (end - start) / 3600.0
        events += [
            CommandIssued(StopPump(), "command", now(end)),
            ReadbackReceived(PumpReading(False, rate, infused), now(end)),
        ]
        truth += [TruthSegment(start, float(rate)), TruthSegment(end, 0.0)]
    journal = Journal(path, "safety")
    try:
        journal.append_many(
            [(e.kind, encode_event(e), e.now.clinical, e.now.liveness) for e in events]
        )
    finally:
        journal.close()
    return truth


def _four_digits_down(value: Fraction) -> Decimal:
    """A pump rate as the drivers round it: down, to 4 significant digits."""
    d = Decimal(value.numerator) / Decimal(value.denominator)
    if d <= 0:
        return Decimal(0)
    exponent = d.adjusted() - 3
    return d.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_FLOOR).normalize()


def last_id(path: Path) -> int:
    """The newest entry of a journal (read-only), 0 if there is none yet."""
    if not path.exists():
        return 0
    db = open_readonly(path)
    try:
        row = db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()
    except Exception:
        return 0
    finally:
        db.close()
    return int(row[0])


class ScenarioBench(abc.ABC):
    """The runner's view of a bench."""

    def __init__(
        self,
        spec: BenchSpec,
        library: DrugLibrary,
        out_dir: Path,
        on_alarm: AlarmHook,
        channels: Sequence[ChannelSpec] = (),
    ) -> None:
        self.spec = spec
        #: the pumps of a bench of several (empty: the one pump of ``spec``)
        self.channels = tuple(channels)
        self.library = library
        self.out_dir = out_dir
        self.on_alarm = on_alarm
        self.session: Session | None = None
        self.t0 = 0.0
        self.prior_truth: list[TruthSegment] = []
        self.safety_journal = out_dir / SAFETY_NAME
        self.controller_journal = out_dir / CONTROLLER_NAME
        #: channels whose line is off the patient for a prime: (wasted mL before, volume)
        self._off_line: dict[str, tuple[float, float]] = {}

    #: delay (clinical s) between a journaled command and the pump acting on it
    tolerance_s = 0.0

    def _open_session(self, session: Session) -> Session:
        session.subscribe_alarms(self.on_alarm)
        self.session = session
        return session

    def require_session(self) -> Session:
        if self.session is None:
            raise ControllerError(
                "no controller is running (it was killed and not restarted)",
                code="no_controller",
            )
        return self.session

    def raw_request(self, body: RequestBody) -> Outcome:
        """Send one request as it is (``Session.order``: journaled, not planned)."""
        return self.require_session().order(body)

    def remove_old_files(self) -> None:
        for name in (SAFETY_NAME, CONTROLLER_NAME, "pump-truth.jsonl"):
            for suffix in ("", "-wal", "-shm", ".lock"):
                with contextlib.suppress(FileNotFoundError):
                    (self.out_dir / f"{name}{suffix}").unlink()

    def journal_marks(self) -> tuple[int, int]:
        """The newest entry of each journal: what the run wrote, before it tears down."""
        return last_id(self.safety_journal), last_id(self.controller_journal)

    @abc.abstractmethod
    def setup(self, prior: Sequence[Prior]) -> None: ...

    @abc.abstractmethod
    def now(self) -> float: ...

    @abc.abstractmethod
    def wait_until(self, t: float) -> None:
        """Let clinical time pass until ``t``, the controller servicing its plans."""

    @abc.abstractmethod
    def pump_fault(self, spec: str, channel: str | None = None) -> None: ...

    @abc.abstractmethod
    def kill_controller(self) -> None: ...

    @abc.abstractmethod
    def restart_controller(self) -> None: ...

    @abc.abstractmethod
    def kill_safety(self) -> None: ...

    @abc.abstractmethod
    def restart_safety(self) -> None: ...

    def heartbeat_gap(self, on: bool) -> None:
        raise BenchError("heartbeat_gap is available in one-process runs only")

    # -- the line off the patient for a prime (what ``line_disconnected = true`` says)
    def line_off_for_prime(self, channel: str | None, volume_ml: float) -> None:
        """The operator takes ``channel``'s line off the patient for a prime of
        ``volume_ml``: the pump's flow goes to waste until the prime is out (the pump's
        own waste counter says when), then the line goes back on (``line_back``)."""
        name = self.channel_name(channel)
        state = self._line_state(name)
        if state is None:
            return
        self._connect_line(name, False)
        self._off_line[name] = (state[1], volume_ml)

    def line_back(self, channel: str | None = None) -> None:
        """The line back on the patient (at once: e.g. the prime was refused)."""
        name = self.channel_name(channel)
        if self._off_line.pop(name, None) is not None:
            self._connect_line(name, True)

    def channel_name(self, channel: str | None) -> str:
        return channel or (self.channels[0].name if self.channels else DEFAULT_CHANNEL)

    def _lines_back_after_primes(self) -> None:
        for name, (wasted_before, volume) in sorted(self._off_line.items()):
            state = self._line_state(name)
            if state is None:
                continue
            priming, wasted = state
            if not priming and wasted - wasted_before >= volume * 0.99:
                self.line_back(name)

    @abc.abstractmethod
    def load_container(self, channel: str | None, volume_ml: float) -> None:
        """The operator puts a new container holding ``volume_ml`` in ``channel``'s pump
        (what a ``container_changed`` step tells the safety process was done)."""

    @abc.abstractmethod
    def _line_state(self, name: str) -> tuple[bool, float] | None:
        """(priming, wasted mL) of the channel's pump; None: not known now."""

    @abc.abstractmethod
    def _connect_line(self, name: str, connected: bool) -> None:
        """Connect (or take off) the channel's line to the patient."""

    def stop_button(self) -> None:
        raise BenchError("stop_button is available in one-process runs only")

    @abc.abstractmethod
    def resume(self) -> State: ...

    @abc.abstractmethod
    def truth(self) -> list[TruthEvent]: ...

    def truths(self) -> dict[str, list[TruthEvent]]:
        """Each channel's ground truth, by name (a one-pump bench: its one pump's)."""
        return {self.channels[0].name if self.channels else DEFAULT_CHANNEL: self.truth()}

    @abc.abstractmethod
    def close(self) -> None: ...


# --------------------------------------------------------------------------- one process


class VirtualBench(ScenarioBench):
    """LocalSafety + a Session, on virtual clocks."""

    local: LocalSafety

    def __init__(
        self,
        spec: BenchSpec,
        library: DrugLibrary,
        out_dir: Path,
        on_alarm: AlarmHook,
        channels: Sequence[ChannelSpec] = (),
    ) -> None:
        super().__init__(spec, library, out_dir, on_alarm, channels)
        self._safety_down = False
        self._gap = False
        self._poll_s = spec.poll_s or VIRTUAL_POLL_S

    def setup(self, prior: Sequence[Prior]) -> None:
        self.remove_old_files()
        if prior:
            program = program_of(self.library, self.spec)
            self.prior_truth = seed_journal(
                self.safety_journal,
                self.library,
                program,
                prior,
                0.0,
                LIVENESS_START,
                VirtualClock(0.0),
            )
        poll = self._poll_s
        self.local = LocalSafety(
            library=self.library,
            syringe=self.spec.syringe,
            loaded_volume_ml=self.spec.loaded_ml,
            channels=[
                LocalChannel(c.name, c.container or self.spec.syringe, c.loaded_ml)
                for c in self.channels
            ],
            journal_path=self.safety_journal,
            timing=HostTiming(
                poll_period_s=poll,
                keep_alive_period_s=max(2.0, 2 * poll),
                heartbeat_timeout_s=VIRTUAL_HEARTBEAT_TIMEOUT_S,
            ),
        )
        self.t0 = self.local.clinical.now()
        self.restart_controller()

    def now(self) -> float:
        return self.local.clinical.now()

    def wait_until(self, t: float) -> None:
        while (left := t - self.now()) > 1e-9:
            if self._safety_down:  # nothing runs but the pump, on its clinical clock
                self._move_clocks(left)
                continue
            wait = self._service()
            # LocalSafety steps to its own timers only while heartbeats flow (the core
            # reports 0 s to a clinical deadline on a virtual clock): without them, step
            # at the read-back period so polls and supervision keep their pace
            quiet = self.session is None or self._gap
            step = min(left, self._poll_s if quiet else MAX_STEP_S)
            if wait is not None:
                step = min(step, max(wait, 0.5))
            if self._off_line:
                step = min(step, 1.0)  # the line goes back on as soon as the prime is done
            self.local.advance(step)
            self._lines_back_after_primes()
        if not self._safety_down:
            self._service()

    def load_container(self, channel: str | None, volume_ml: float) -> None:
        pump = self.local.pumps[self.channel_name(channel)]
        if not pump.snapshot().running:  # a running pump keeps its syringe: the step is refused
            pump.reload(min(volume_ml, pump.container.volume_ml))

    def _line_state(self, name: str) -> tuple[bool, float] | None:
        snap = self.local.pumps[name].snapshot()
        return snap.priming, snap.wasted_ml

    def _connect_line(self, name: str, connected: bool) -> None:
        self.local.pumps[name].connect_line(connected)

    def _move_clocks(self, seconds: float) -> None:
        clinical: VirtualClock = self.local.clinical
        clinical.advance(seconds)
        self.local.liveness.advance(seconds)

    def _service(self) -> float | None:
        if self.session is None:
            return None
        return self.session.service()

    def pump_fault(self, spec: str, channel: str | None = None) -> None:
        self.local.inject_faults(spec, channel)

    def kill_controller(self) -> None:
        self.local.kill_controller()
        if self.session is not None:
            self.session.close(hang_up=False)
            self.session = None

    def restart_controller(self) -> None:
        self._open_session(
            Session.open(
                self.local,
                self.library,
                journal=self.controller_journal,
                clinical=self.local.clinical,
            )
        )

    def heartbeat_gap(self, on: bool) -> None:
        self._gap = on
        if on:
            self.local.stop_heartbeats()
        else:
            self.local.resume_heartbeats()

    def kill_safety(self) -> None:
        self._safety_down = True

    def restart_safety(self) -> None:
        self.local.restart()
        self._safety_down = False

    def stop_button(self) -> None:
        self.local.press_stop_button()

    def resume(self) -> State:
        return self.require_session().resume()

    def truth(self) -> list[TruthEvent]:
        return list(self.local.pump.truth.events)

    def truths(self) -> dict[str, list[TruthEvent]]:
        return {name: list(pump.truth.events) for name, pump in self.local.pumps.items()}

    def close(self) -> None:
        if self.session is not None:
            self.session.close(hang_up=False)
            self.session = None
        with contextlib.suppress(Exception):
            self.local.close()


# --------------------------------------------------------------------------- real processes


class RealBench(ScenarioBench):
    """An emulator, ``python -m safety`` and this controller, on a scaled clock."""

    def __init__(
        self,
        spec: BenchSpec,
        library: DrugLibrary,
        out_dir: Path,
        on_alarm: AlarmHook,
        channels: Sequence[ChannelSpec] = (),
    ) -> None:
        super().__init__(spec, library, out_dir, on_alarm, channels)
        #: a bench of several pumps: each channel's address on the one line
        self.addresses = (
            {c.name: n for n, c in enumerate(self.channels)} if len(self.channels) > 1 else {}
        )
        if self.addresses:  # one emulator for the line: its kind and syringe are the bench's
            first = self.channels[0]
            spec = spec.model_copy(
                update={"syringe": first.container or spec.syringe, "pump": first.pump or spec.pump}
            )
            self.spec = spec
        elif self.channels:  # one listed channel: its container and volume, on the one pump
            only = self.channels[0]
            spec = spec.model_copy(
                update={
                    "syringe": only.container or spec.syringe,
                    "loaded_ml": only.loaded_ml if only.loaded_ml is not None else spec.loaded_ml,
                    "pump": only.pump or spec.pump,
                }
            )
            self.spec = spec
        self.clock = ScaledClock.starting_now(spec.speed)
        # sockets need a short path (<= 107 bytes): not inside a deep output folder
        self.runtime = Path(tempfile.mkdtemp(prefix="pumpctl-scn-"))
        self.config = out_dir / "safety.toml"
        self.truth_log = out_dir / "pump-truth.jsonl"
        self.control = self.runtime / "emulator.sock"
        self.emulator: subprocess.Popen[bytes] | None = None
        self.safety: SafetyChild | None = None
        self.where = ""
        self.pids: list[int] = []  # every process this bench started
        self.tolerance_s = spec.speed * 1.0  # one real second of wire and process latency

    def setup(self, prior: Sequence[Prior]) -> None:
        self.remove_old_files()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if prior:
            program = program_of(self.library, self.spec)
            self.prior_truth = seed_journal(
                self.safety_journal,
                self.library,
                program,
                prior,
                self.clock.now(),
                time.monotonic(),
                self.clock,
            )
        self.where = self._start_emulator()
        self._write_config()
        self._start_safety()
        self.restart_controller()
        # time zero is now: [[prior]] times were counted from when they were journaled,
        # a few clinical minutes earlier at high speeds (documented)
        self.t0 = self.clock.now()

    def now(self) -> float:
        return self.clock.now()

    def wait_until(self, t: float) -> None:
        while (left := t - self.now()) > 0:
            self._service()
            if self._off_line:
                self._lines_back_after_primes()
            time.sleep(min(REAL_TICK_S, self.clock.to_real_seconds(left)))
        self._service()

    def _service(self) -> None:
        """The session handles link notices (a dead safety process: its own alarm, hold)
        and sends due plan steps; a link failure is its business, never the runner's."""
        if self.session is not None:
            with contextlib.suppress(ControllerError):
                self.session.service()

    # -- processes
    def _start_emulator(self) -> str:
        kind = self.spec.pump
        log_path = self.out_dir / "emulator.log"
        cmd = [sys.executable, "-m", "firmware_bridge.emulators", kind]
        cmd += ["--tcp", "127.0.0.1:0"] if kind == "modbus" else ["--pty"]
        cmd += ["--syringe", self.spec.syringe, "--clock", self.clock.spec()]
        if self.addresses:
            cmd += ["--addresses", ",".join(str(a) for a in self.addresses.values())]
            truth_log = self.out_dir / "pump-{address}-truth.jsonl"
        else:
            truth_log = self.truth_log
        cmd += ["--control", str(self.control), "--truth-log", str(truth_log)]
        if self.spec.loaded_ml is not None and not self.addresses:
            cmd += ["--volume", repr(self.spec.loaded_ml)]
        with log_path.open("wb") as log:
            self.emulator = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pids.append(self.emulator.pid)
        deadline = time.monotonic() + EMULATOR_READY_S
        while time.monotonic() < deadline:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            first, newline, _ = text.partition("\n")
            # several pumps are given their volumes over the control channel, announced
            # after the line
            if newline and first.strip() and (not self.addresses or "control channel" in text):
                for channel in self.channels if self.addresses else ():
                    if channel.loaded_ml is not None:
                        self.pump_fault(f"empty={channel.loaded_ml:g}", channel.name)
                return first.strip()
            if self.emulator.poll() is not None:
                break
            time.sleep(0.02)
        raise BenchError(
            f"the {kind} emulator did not start (log {log_path}): "
            + log_path.read_text(encoding="utf-8", errors="replace")[-400:]
        )

    def _pump_options(self) -> str:
        kind = self.spec.pump
        if kind == "ne1000":
            return f'port = "{self.where}"\naddress = 0\nbaud = 19200\nsafe_mode_timeout_s = 10\n'
        if kind == "harvard":
            return f'port = "{self.where}"\naddress = 0\nbaud = 115200\n'
        host, _, port = self.where.rpartition(":")
        return f'host = "{host}"\nport = {int(port)}\n'

    def _channels_config(self) -> str:
        """``[lines.bus]`` and a ``[channels.NAME]`` per channel, at its address."""
        kind = self.spec.pump
        baud = 19200 if kind == "ne1000" else 115200
        text = f'[lines.bus]\nkind = "serial"\nport = "{self.where}"\nbaud = {baud}\n'
        for channel in self.channels:
            loaded = f"loaded_ml = {channel.loaded_ml!r}\n" if channel.loaded_ml else ""
            safe = "safe_mode_timeout_s = 10\n" if kind == "ne1000" else ""
            text += (
                f'\n[channels.{channel.name}]\ndriver = "{kind}"\nline = "bus"\n'
                f'container = "{self.spec.syringe}"\n{loaded}'
                f"\n[channels.{channel.name}.options]\n"
                f"address = {self.addresses[channel.name]}\n{safe}"
            )
        return text

    def _write_config(self) -> None:
        given = Path(self.library.path)
        library = (
            given
            if given.is_file()
            else Path(os.environ.get("PUMPCTL_LIBRARY", default_library_path()))
        ).resolve()  # the very library the verdicts are judged with
        poll = self.spec.poll_s or REAL_POLL_S
        pumps = (
            self._channels_config()
            if self.addresses
            else f"""[pump]
driver = "{self.spec.pump}"
syringe = "{self.spec.syringe}"

[pump.options]
{self._pump_options()}"""
        )
        self.config.write_text(
            f"""# written by 'pumpctl scenario run --real': this run's safety process
{pumps}
[gpio]
backend = "simulated"
state_dir = "{self.runtime / "gpio"}"

[timing]
heartbeat_timeout_s = 2.0
poll_period_s = {poll!r}
keep_alive_period_s = 1.0

[paths]
journal = "{self.safety_journal}"
socket = "{self.runtime / "safety.sock"}"
key_file = "{self.runtime / "ipc.key"}"
library = "{library}"

[clock]
clinical = "{self.clock.spec()}"
""",
            encoding="utf-8",
        )

    def _start_safety(self) -> None:
        try:
            self.safety = start_safety(self.config, log_path=self.out_dir / "safety.log")
        except ControllerError as exc:
            raise BenchError(f"the safety process did not start: {exc.message}") from None
        self.pids.append(self.safety.pid)

    # -- faults
    def pump_fault(self, spec: str, channel: str | None = None) -> None:
        message: dict[str, object] = {"fault": spec}
        if self.addresses:
            message["address"] = self.addresses[channel or self.channels[0].name]
        reply = send_control(str(self.control), message)
        if not reply.get("ok"):
            raise BenchError(f"the emulator refused fault {spec!r}: {reply.get('error')}")

    def kill_controller(self) -> None:
        if self.session is not None:
            self.session.close(hang_up=True)  # the socket closes without a word: EOF
            self.session = None

    def restart_controller(self) -> None:
        self._open_session(
            connect(self.config, journal=self.controller_journal, name="pumpctl-scenario")
        )

    def kill_safety(self) -> None:
        if self.safety is not None and self.safety.alive():
            os.kill(self.safety.pid, signal.SIGKILL)
            self.safety.process.wait(10)
        self._service()  # the controller sees its link die

    def restart_safety(self) -> None:
        if self.safety is not None:
            with contextlib.suppress(Exception):
                self.safety.stop(5)
        self._service()
        self._start_safety()

    def resume(self) -> State:
        session = self.require_session()
        if session.link_down is not None:
            return session.resume(
                open_link(load_bench_config(self.config), name="pumpctl-scenario")
            )
        return session.resume()

    def truth(self) -> list[TruthEvent]:
        if self.addresses:
            return next(iter(self.truths().values()))
        if not self.truth_log.exists():
            return []
        return read_truth_log(self.truth_log)

    def truths(self) -> dict[str, list[TruthEvent]]:
        if not self.addresses:
            return super().truths()
        out: dict[str, list[TruthEvent]] = {}
        for name, address in self.addresses.items():
            path = self.out_dir / f"pump-{address}-truth.jsonl"
            out[name] = read_truth_log(path) if path.exists() else []
        return out

    def load_container(self, channel: str | None, volume_ml: float) -> None:
        """The emulated syringe set to hold ``volume_ml`` (its control channel)."""
        name = self.channel_name(channel)
        self.pump_fault(f"empty={volume_ml:g}", name if self.addresses else None)

    def _line_state(self, name: str) -> tuple[bool, float] | None:
        message: dict[str, object] = {"query": "state"}
        if self.addresses:
            message["address"] = self.addresses[name]
        reply = send_control(str(self.control), message)
        pump = reply.get("pump") if reply.get("ok") else None
        if not isinstance(pump, dict):
            return None
        return bool(pump.get("priming")), float(pump.get("wasted_ml") or 0.0)

    def _connect_line(self, name: str, connected: bool) -> None:
        self.pump_fault(f"patient_line={'on' if connected else 'off'}", name)

    def close(self) -> None:
        try:
            if self.session is not None:
                with contextlib.suppress(Exception):
                    self.session.close(hang_up=True)
                self.session = None
        finally:
            try:
                if self.safety is not None:
                    with contextlib.suppress(Exception):
                        self.safety.stop(10)
                    self.safety = None
            finally:
                if self.emulator is not None:
                    _end(self.emulator)
                    self.emulator = None
                shutil.rmtree(self.runtime, ignore_errors=True)


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


__all__ = [
    "BenchError",
    "RealBench",
    "ScenarioBench",
    "VirtualBench",
    "last_id",
    "seed_journal",
]
