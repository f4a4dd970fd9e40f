"""The demo bench: two NE-1000 pumps on one pty line, the safety process, and their clock.

Three real processes, as on a lab bench: the emulated pumps (``firmware_bridge``, two
NE-1000s at addresses 0 and 1 daisy-chained on one pseudo-terminal, as on one RS-232
line), the safety process owning both over the real serial path (one ``[lines]`` entry,
two ``[channels]``), and this controller. They share one scaled clinical clock (an origin
on ``time.monotonic`` and a scale), so a four-hour course runs in about a minute.

Channel A starts with a part-used syringe so that the course outlives it: the safety
process hands the infusion over to channel B (same drug, concentration and diluent,
primed) before A empties. Each pump writes its own ground truth (``truth_logs``): the
handover is judged on what both delivered, summed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.connect import start_safety
from controller.errors import ControllerError
from firmware_bridge.clock import ScaledClock
from firmware_bridge.emulators.control import send_control
from safety.ipc.launch import SafetyChild
from safety.library import default_library_path

#: how long the emulator may take to print where to connect (real seconds)
EMULATOR_READY_S = 15.0

#: the channels, by name, and their pumps' addresses on the one line
ADDRESSES = {"A": 0, "B": 1}
#: what channel A's syringe holds at the start (mL): a part-used 50 mL syringe that
#: empties in the middle of the course; channel B's relief syringe is full
LOADED_A_ML = 17.0
#: the relay's figures ([relay]): an overlap handover in four one-minute steps, ending
#: five minutes before A empties (more on a fast clock: ``write_safety_config``)
OVERLAP_STEPS = 4
OVERLAP_STEP_MIN = 1.0
HANDOVER_BEFORE_EMPTY_MIN = 5.0
WARN_BEFORE_EMPTY_MIN = 15.0
#: read-backs every POLL_CLINICAL_S of the clinical clock where the real poll period
#: allows it (MIN_POLL_S-POLL_S real seconds)
POLL_CLINICAL_S = 30.0
POLL_S = 0.25
MIN_POLL_S = 0.05


def truth_log_paths(out_dir: Path) -> dict[str, Path]:
    """Each channel's ground truth in a run's folder (the emulator names them by address)."""
    return {name: out_dir / f"pump-{a}-truth.jsonl" for name, a in ADDRESSES.items()}


@dataclass
class DemoBench:
    """Where everything of one demo run lives, and the processes it started."""

    out_dir: Path
    speed: float
    syringe: str = "bd-plastipak-50ml"
    clock: ScaledClock = field(init=False)
    runtime_dir: Path = field(init=False)  # short path for sockets (<= 107 bytes)
    emulator: subprocess.Popen[bytes] | None = None
    safety: SafetyChild | None = None
    pty: str = ""

    def __post_init__(self) -> None:
        self.clock = ScaledClock.starting_now(self.speed)
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="pumpctl-demo-"))

    # files -------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.out_dir / "safety.toml"

    @property
    def safety_journal(self) -> Path:
        return self.out_dir / "safety-journal.sqlite"

    @property
    def controller_journal(self) -> Path:
        return self.out_dir / "controller-journal.sqlite"

    @property
    def truth_logs(self) -> dict[str, Path]:
        return truth_log_paths(self.out_dir)

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "emulator.sock"

    @property
    def gpio_dir(self) -> Path:
        return self.runtime_dir / "gpio"

    # life cycle --------------------------------------------------------------------
    def prepare(self) -> None:
        """A fresh output folder: the demo's journals describe this run only."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in (
            "safety-journal.sqlite",
            "safety-journal.sqlite-wal",
            "safety-journal.sqlite-shm",
            "safety-journal.sqlite.lock",
            "controller-journal.sqlite",
            "controller-journal.sqlite-wal",
            "controller-journal.sqlite-shm",
            "pump-truth.jsonl",  # the one-pump demo's, from an earlier version
            *(path.name for path in self.truth_logs.values()),
            "emulator.log",
            "safety.log",
            "demo.png",
            "summary.json",
        ):
            with contextlib.suppress(FileNotFoundError):
                (self.out_dir / name).unlink()

    def start_pump(self) -> str:
        """The NE-1000 emulators, at their addresses on one pty; returns the pty path they
        announced. Channel A's syringe is then made part-used (``LOADED_A_ML``)."""
        log_path = self.out_dir / "emulator.log"
        log = log_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "firmware_bridge.emulators",
            "ne1000",
            "--pty",
            "--syringe",
            self.syringe,
            "--clock",
            self.clock.spec(),
            "--control",
            str(self.control_socket),
            "--addresses",
            ",".join(str(a) for a in ADDRESSES.values()),
            "--truth-log",
            str(self.out_dir / "pump-{address}-truth.jsonl"),
        ]
        self.emulator = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + EMULATOR_READY_S
        while time.monotonic() < deadline:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            first, newline, _ = text.partition("\n")
            # the control channel is announced after the pty: the syringe is set through it
            if newline and first.strip() and "control channel at" in text:
                self.pty = first.strip()
                self.fault(f"empty={LOADED_A_ML:g}", channel="A")
                return self.pty
            if self.emulator.poll() is not None:
                break
            time.sleep(0.02)
        raise ControllerError(
            f"the NE-1000 emulator did not start (see {log_path}): "
            + log_path.read_text(encoding="utf-8", errors="replace")[-400:],
            code="demo_failed",
        )

    def write_safety_config(self, *, safe_mode_timeout_s: int = 10) -> Path:
        """The safety process's config for this run. The poll period and the relay's lead
        follow the clock's speed: an overlap step goes on only once a read-back of the
        incoming pump shows its flow, so on a fast clock (a poll every ``poll`` real
        seconds is ``poll x speed`` clinical ones) the handover starts earlier by what its
        steps wait for polls beyond their minute, and still ends before A empties."""
        library = Path(os.environ.get("PUMPCTL_LIBRARY", default_library_path())).resolve()
        a, b = ADDRESSES["A"], ADDRESSES["B"]
        poll_s = min(POLL_S, max(MIN_POLL_S, POLL_CLINICAL_S / self.speed))
        step_wait_s = max(0.0, 2 * poll_s * self.speed - OVERLAP_STEP_MIN * 60)
        handover_min = HANDOVER_BEFORE_EMPTY_MIN + OVERLAP_STEPS * step_wait_s / 60
        warn_min = max(WARN_BEFORE_EMPTY_MIN, handover_min + 5)
        self.config.write_text(
            f"""# written by 'pumpctl demo': the safety process of this demo run
# two NE-1000 pumps daisy-chained on one RS-232 line (here a pty), at addresses {a} and {b}
[lines.bus]
kind = "serial"
port = "{self.pty}"
baud = 19200

[channels.A]
driver = "ne1000"
line = "bus"
container = "{self.syringe}"
loaded_ml = {LOADED_A_ML}

[channels.A.options]
address = {a}
safe_mode_timeout_s = {safe_mode_timeout_s}

[channels.B]
driver = "ne1000"
line = "bus"
container = "{self.syringe}"

[channels.B.options]
address = {b}
safe_mode_timeout_s = {safe_mode_timeout_s}

[relay]
handover_before_empty_min = {handover_min:.2f}
warn_before_empty_min = {warn_min:.2f}
overlap_steps = {OVERLAP_STEPS}
overlap_step_min = {OVERLAP_STEP_MIN}

[gpio]
backend = "simulated"
state_dir = "{self.gpio_dir}"

[timing]
heartbeat_timeout_s = 2.0
poll_period_s = {poll_s:.3f}
keep_alive_period_s = 1.0

[paths]
journal = "{self.safety_journal}"
socket = "{self.runtime_dir / "safety.sock"}"
key_file = "{self.runtime_dir / "ipc.key"}"
library = "{library}"

[clock]
clinical = "{self.clock.spec()}"
""",
            encoding="utf-8",
        )
        return self.config

    def start_safety(self) -> SafetyChild:
        self.safety = start_safety(self.config, log_path=self.out_dir / "safety.log")
        return self.safety

    def fault(self, spec: str, *, channel: str = "A") -> None:
        """Switch a fault on one channel's emulated pump (the line's control channel,
        which names the pump by its address)."""
        message = {"address": ADDRESSES[channel], "fault": spec}
        reply = send_control(str(self.control_socket), message)
        if not reply.get("ok"):
            raise ControllerError(
                f"emulator refused fault {spec!r} on channel {channel}: {reply}",
                code="demo_failed",
            )

    def close(self) -> None:
        if self.safety is not None:
            self.safety.stop()
            self.safety = None
        if self.emulator is not None:
            self.emulator.terminate()
            try:
                self.emulator.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait(timeout=5)
            self.emulator = None
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
