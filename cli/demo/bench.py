"""The demo bench: an NE-1000 emulator on a pty, the safety process, and their clock.

Three real processes, as on a lab bench: the emulated pump (``firmware_bridge``) on a
pseudo-terminal, the safety process owning it over the real serial path, and this
controller. They share one scaled clinical clock (an origin on ``time.monotonic`` and a
scale), so a four-hour course runs in about a minute.
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
    def truth_log(self) -> Path:
        return self.out_dir / "pump-truth.jsonl"

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
            "pump-truth.jsonl",
            "emulator.log",
            "safety.log",
            "demo.png",
            "summary.json",
        ):
            with contextlib.suppress(FileNotFoundError):
                (self.out_dir / name).unlink()

    def start_pump(self) -> str:
        """The NE-1000 emulator on a pty; returns the pty path it announced."""
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
            "--truth-log",
            str(self.truth_log),
        ]
        self.emulator = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + EMULATOR_READY_S
        while time.monotonic() < deadline:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            first, newline, _ = text.partition("\n")
            if newline and first.strip():
                self.pty = first.strip()
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
        library = Path(os.environ.get("PUMPCTL_LIBRARY", default_library_path())).resolve()
        self.config.write_text(
            f"""# written by 'pumpctl demo': the safety process of this demo run
[pump]
driver = "ne1000"
syringe = "{self.syringe}"

[pump.options]
port = "{self.pty}"
address = 0
baud = 19200
safe_mode_timeout_s = {safe_mode_timeout_s}

[gpio]
backend = "simulated"
state_dir = "{self.gpio_dir}"

[timing]
heartbeat_timeout_s = 2.0
poll_period_s = 0.25
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

    def fault(self, spec: str) -> None:
        """Switch a fault on the emulated pump (its control channel)."""
        reply = send_control(str(self.control_socket), {"fault": spec})
        if not reply.get("ok"):
            raise ControllerError(f"emulator refused fault {spec!r}: {reply}", code="demo_failed")

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
