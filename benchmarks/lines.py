"""Pumps on one line, at the driver level (issue 14): per protocol the command latency
with four pumps on one line, against the wire time of the same commands; and the Harvard
driver's rate set plus status read beside a public Harvard client on the same emulator.

Both run the drivers in a child process (``python -m drivers.pumps.timing``), against an
emulator child serving four pumps on one pty: this room never imports ``drivers.pumps``
(docs/architecture.md), and neither end shares a process (and a GIL) with the other.

- NE-1000 and Harvard: the emulator paces its replies at the line's baud rate (19200 and
  115200, 8N1), so every sample includes its real wire time; the child counts each
  command's bytes (both ways), and the figure is the p99 of (latency - wire time): what
  the software adds to the wire. NE-1000 in safe mode (CRC packets), as a bench runs.
- Modbus RTU: the Modbus emulator does not pace, the pty moves bytes at memory speed, so
  the samples hold no wire time and the figure is the latency itself; the wire time of a
  real line at 19200 baud 8E1 (11 bits a character) is reported beside it.
- A command is a rate set and its read-back, on the next of the four pumps in turn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from benchmarks import interrupt
from benchmarks.processes import BenchError, Pool

ADDRESSES = {"ne1000": "0,1,2,3", "harvard": "0,1,2,3", "modbus": "1,2,3,4"}
BAUD = {"ne1000": 19200, "harvard": 115200, "modbus": 19200}
#: bits a character takes on the wire: 8N1 for the serial pumps, 8E1 for Modbus RTU
BITS_PER_CHAR = {"ne1000": 10, "harvard": 10, "modbus": 11}
PACED = frozenset({"ne1000", "harvard"})
PROTOCOLS = ("ne1000", "harvard", "modbus")
CHILD_TIMEOUT_S = 300.0


@dataclass
class LineResult:
    protocol: str
    samples: list[float]  # s
    wire: list[float]  # s, per sample
    paced: bool


@dataclass
class HarvardPair:
    ours: list[float]
    client: list[float] | None
    client_name: str
    client_error: str | None


def _child(args: list[str]) -> dict[str, object]:
    interrupt.check()
    done = subprocess.run(
        [sys.executable, "-m", "drivers.pumps.timing", *args],
        capture_output=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"the driver timing child failed: {' | '.join(tail)}")
    out: dict[str, object] = json.loads(done.stdout)
    return out


def measure_line(pool: Pool, protocol: str, commands: int) -> LineResult:
    args = ["--pty", "--addresses", ADDRESSES[protocol]]
    if protocol in PACED:
        args += ["--pace-baud", str(BAUD[protocol])]
    emulator = pool.emulator(protocol, *args)
    try:
        child = [
            "line",
            "--protocol",
            protocol,
            "--port",
            emulator.where,
            "--addresses",
            ADDRESSES[protocol],
            "--commands",
            str(commands),
            "--baud",
            str(BAUD[protocol]),
        ]
        if protocol == "modbus":
            child += ["--parity", "E"]
        out = _child(child)
    finally:
        pool.stop(emulator.process)
    samples = [float(x) for x in out["samples_s"]]  # type: ignore[attr-defined]
    wire_bytes = [int(x) for x in out["wire_bytes"]]  # type: ignore[attr-defined]
    char_s = BITS_PER_CHAR[protocol] / BAUD[protocol]
    if not samples:
        raise BenchError(f"no {protocol} command was timed")
    return LineResult(protocol, samples, [n * char_s for n in wire_bytes], protocol in PACED)


def measure_harvard_pair(pool: Pool, repetitions: int) -> HarvardPair:
    emulator = pool.emulator("harvard", "--pty")
    try:
        out = _child(["harvard-pair", "--port", emulator.where, "--repetitions", str(repetitions)])
    finally:
        pool.stop(emulator.process)
    client = out.get("client_s")
    return HarvardPair(
        ours=[float(x) for x in out["ours_s"]],  # type: ignore[attr-defined]
        client=None if client is None else [float(x) for x in client],  # type: ignore[attr-defined]
        client_name=str(out.get("client", "")),
        client_error=None if out.get("client_error") is None else str(out["client_error"]),
    )


__all__ = ["PROTOCOLS", "HarvardPair", "LineResult", "measure_harvard_pair", "measure_line"]
