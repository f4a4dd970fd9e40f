"""A real Mosquitto broker for benchmarks and tests: a plain child process with its own
config file, on a free loopback port, stopped and started again on the same port (an
outage). Persistence is on, as a fleet's broker needs it (docs/telemetry.md): the
subscribers' sessions and the messages queued for them outlive a restart. Debian package
``mosquitto``; ``available()`` says why not when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"


def available() -> str | None:
    """None if a broker can be started here, else why not."""
    if shutil.which(MOSQUITTO) is None and shutil.which("mosquitto") is None:
        return "mosquitto is not installed (Debian package mosquitto; .ci/run installs it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, directory: Path, port: int | None = None, max_connections: int = -1) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # sessions and their queued QoS 1 messages survive a broker restart: a
            # subscriber (the fleet) that reconnects after the publishers misses nothing
            "persistence true\n"
            f"persistence_location {directory}/\n"
            f"max_connections {max_connections}\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            # as root mosquitto would switch to its own user, which cannot write the
            # persistence file in a private temporary directory
            + ("user root\n" if os.geteuid() == 0 else "")
            + "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        binary = shutil.which(MOSQUITTO) or shutil.which("mosquitto") or MOSQUITTO
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
        self.process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["MOSQUITTO", "Mosquitto", "available", "free_port"]
