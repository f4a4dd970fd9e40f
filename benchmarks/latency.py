"""Command path latency through a real safety process: request -> verdict -> pump set ->
read-back -> reply, timed at the controller's side of the socket.

Each path gets its own safety process (a fresh journal on the run's disk, ``[clock]
clinical = "real"``) and, for the serial and Modbus paths, its own emulator process:

- ``mock``: the in-process simulated pump (``drivers.pumps.mock``) inside the safety process;
- ``ne1000``: an NE-1000 emulator on a pty, driven in safe mode (CRC packets, the
  reference bench's ``safe_mode_timeout_s = 10``) at 19200 baud;
- ``modbus``: a Modbus TCP emulator on 127.0.0.1 (the example syringe map).

The controller side is the real socket client (``SafetyClient``). After attaching, it
loads norepinephrine 4 mg/250 mL in D5W (adult ICU, standard, mcg/min), starts at 8
mcg/min and then alternates 9 and 8 mcg/min: a rise of 1 (S4 allows 2 per step and 4 per
10-min window, both within 25 %/50 %) and a fall to 89 % (S5 allows 75 % of the highest
dose of the last 30 min), far below the 68 mg/24 h cap. So every command is accepted and
carried out; one that is not makes the benchmark stop with the kernel's reason, because a
refusal is a much shorter path and would flatter the figure.

Each command is timed from the call to ``SafetyClient.request`` to its return, which is
after the safety process journaled the verdict and the command (one fsync), set the pump,
read it back, journaled the read-back (fsync) and replied. The first ``WARMUP`` commands
are not counted.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from decimal import Decimal

from benchmarks import interrupt
from benchmarks.host import vm_hwm_mb
from benchmarks.processes import (
    BenchError,
    Emulator,
    Frame,
    Pool,
    Safety,
    SafetySetup,
    require_accepted,
)
from safety.ipc.client import SafetyClient
from safety.kernel.model import ChangeDose, LoadProgram, ProgramSpec, StartInfusion
from safety.library import DrugLibrary

#: commands sent before timing starts (imports, caches, the first journal pages)
WARMUP = 10
START_DOSE = Decimal(8)
ALTERNATE = (Decimal(9), Decimal(8))
NE1000_BAUD = 19200
#: the reference bench's NE-1000 safe-mode timeout (config/bench/ne1000-safety.toml)
SAFE_MODE_TIMEOUT_S = 10
#: commands whose frames are captured to find one command's exchanges on the wire
CAPTURE_COMMANDS = 6

PATHS = ("mock", "ne1000", "modbus")
PATH_TITLES = {
    "mock": "mock driver",
    "ne1000": "NE-1000 emulator on a pty",
    "modbus": "Modbus TCP emulator",
}


def norepinephrine(library: DrugLibrary) -> ProgramSpec:
    return ProgramSpec(
        library_hash=library.content_hash,
        drug="norepinephrine",
        profile="adult_icu",
        therapy="standard",
        concentration="4 mg/250 mL",
        diluent="D5W",
    )


@dataclass
class Bench:
    """A running safety process (and emulator, if any) with an attached client."""

    path: str
    safety: Safety
    client: SafetyClient
    emulator: Emulator | None
    commands: int = 0

    def next_dose(self) -> Decimal:
        return ALTERNATE[self.commands % 2]


@dataclass
class PathResult:
    path: str
    samples: list[float]  # seconds, in order
    safety_peak_mb: float | None
    safety_ready_s: float
    emulator: Emulator | None = None  # still running: the overhead benchmark reuses its pty
    exchanges: list[tuple[bytes, bytes]] = field(default_factory=list)


def open_bench(
    pool: Pool, library: DrugLibrary, path: str, *, pace_baud: int | None = None
) -> Bench:
    """Start the path's emulator and safety process, attach, load and start the program."""
    emulator: Emulator | None = None
    if path == "mock":
        setup = SafetySetup("mock")
    elif path == "ne1000":
        args = ["--pty", "--baud", str(NE1000_BAUD)]
        if pace_baud is not None:
            args += ["--pace-baud", str(pace_baud)]
        emulator = pool.emulator("ne1000", *args)
        setup = SafetySetup(
            "ne1000",
            {
                "port": emulator.where,
                "baud": NE1000_BAUD,
                "safe_mode_timeout_s": SAFE_MODE_TIMEOUT_S,
            },
        )
    elif path == "modbus":
        emulator = pool.emulator("modbus", "--tcp", "127.0.0.1:0")
        host, _, port = emulator.where.rpartition(":")
        setup = SafetySetup("modbus", {"host": host, "port": int(port)})
    else:
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATHS)}")
    safety = pool.safety(setup)
    client = safety.client()
    try:
        client.attach()
        require_accepted(client.request(LoadProgram(norepinephrine(library))), "load the program")
        require_accepted(
            client.request(StartInfusion(START_DOSE)), f"start at {START_DOSE} mcg/min", True
        )
    except BaseException:
        client.close()
        raise
    return Bench(path, safety, client, emulator)


def send_one(bench: Bench) -> float:
    """One dose change; its latency in seconds. A refusal or a pump failure is an error."""
    interrupt.check()
    dose = bench.next_dose()
    started = time.perf_counter()
    outcome = bench.client.request(ChangeDose(dose))
    elapsed = time.perf_counter() - started
    bench.commands += 1
    require_accepted(outcome, f"change the dose to {dose} mcg/min (command {bench.commands})", True)
    return elapsed


def run_commands(bench: Bench, count: int, *, warmup: int = WARMUP) -> list[float]:
    for _ in range(warmup):
        send_one(bench)
    return [send_one(bench) for _ in range(count)]


def capture_exchanges(bench: Bench, commands: int = CAPTURE_COMMANDS) -> list[tuple[bytes, bytes]]:
    """The (request, reply) frames one dose change puts on the wire, read from the
    emulator's frame log: the pattern most of ``commands`` commands share (a background
    read-back that happens to fall inside one command's window is left out that way)."""
    emulator = bench.emulator
    if emulator is None:
        return []
    windows: list[tuple[float, float]] = []
    offset = emulator.log_size()
    for _ in range(commands):
        time.sleep(0.02)  # separates the commands in the log's millisecond stamps
        start = time.monotonic()
        send_one(bench)
        windows.append((start, time.monotonic()))
    time.sleep(0.05)  # the emulator writes its log after each reply
    frames = emulator.frames(offset)
    patterns: collections.Counter[tuple[int, ...]] = collections.Counter()
    per_command: list[list[tuple[bytes, bytes]]] = []
    for start, end in windows:
        inside = [f for f in frames if start - 0.002 <= f.at <= end + 0.002]
        pairs = _pairs(inside)
        per_command.append(pairs)
        patterns[tuple(len(a) + len(b) for a, b in pairs)] += 1
    if not patterns:
        raise BenchError("no frames were logged for the captured commands")
    common, _ = patterns.most_common(1)[0]
    for pairs in per_command:
        if tuple(len(a) + len(b) for a, b in pairs) == common and pairs:
            return pairs
    raise BenchError("the emulator logged no complete exchange for a dose change")


def close_bench(pool: Pool, bench: Bench) -> float | None:
    """Hang up and stop the safety process; its peak RSS (MB) read just before."""
    peak = vm_hwm_mb(bench.safety.pid)
    bench.client.close()
    pool.stop(bench.safety.child.process)
    return peak


def measure_path(pool: Pool, library: DrugLibrary, path: str, count: int) -> PathResult:
    bench = open_bench(pool, library, path)
    try:
        samples = run_commands(bench, count)
        exchanges = capture_exchanges(bench) if path == "ne1000" else []
    finally:
        peak = close_bench(pool, bench)
    return PathResult(path, samples, peak, bench.safety.ready_s, bench.emulator, exchanges)


def _pairs(frames: list[Frame]) -> list[tuple[bytes, bytes]]:
    """Each host request with the pump's reply that follows it."""
    out: list[tuple[bytes, bytes]] = []
    request: bytes | None = None
    for frame in frames:
        if frame.direction == "rx":
            request = frame.data
        elif frame.direction == "tx" and request is not None:
            out.append((request, frame.data))
            request = None
    return out


__all__ = [
    "PATHS",
    "PATH_TITLES",
    "Bench",
    "PathResult",
    "capture_exchanges",
    "close_bench",
    "measure_path",
    "norepinephrine",
    "open_bench",
    "run_commands",
    "send_one",
]
