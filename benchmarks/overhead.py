"""What the whole stack costs on top of the wire: two comparisons on an NE-1000 pty.

1. Over bare pyserial, unpaced. The frames one dose change puts on the pty (captured from
   the emulator's frame log: the set, its read-back and the status read) are written
   and read again with nothing but pyserial (``write`` then ``read`` of the reply's
   length, exchange after exchange), on the same pty, to the same emulator, in the same
   run, after the safety process has let go of the port (it holds it exclusively). The
   ratio is the stack's p50 over the bare p50: everything but the pty and the emulator.

2. Over the wire time, paced. A second emulator paces its replies at 19200 baud (8N1,
   ``--pace-baud``), after each request's own wire time; the wire time of a command is
   its bytes (both ways) x 10 bits / 19200. The ratio is the stack's p50 over that. The
   same bare pyserial replay on the paced pty is reported beside it: it shows what the
   emulator's pacing and pyserial alone add (the floor the stack is measured against).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import serial

from benchmarks import interrupt
from benchmarks.latency import (
    NE1000_BAUD,
    capture_exchanges,
    close_bench,
    open_bench,
    run_commands,
)
from benchmarks.processes import BenchError, Pool
from safety.library import DrugLibrary

BITS_PER_CHAR = 10  # 8N1
PACE_BAUD = 19200
#: a bare reply that has not come within this long is a failure, not a sample
BARE_TIMEOUT_S = 2.0


@dataclass
class PacedResult:
    samples: list[float]  # stack latency, seconds
    exchanges: list[tuple[bytes, bytes]]
    bare: list[float]  # bare pyserial on the paced pty, seconds
    safety_peak_mb: float | None

    @property
    def wire_bytes(self) -> int:
        return sum(len(request) + len(reply) for request, reply in self.exchanges)

    @property
    def wire_s(self) -> float:
        return wire_time(self.exchanges, PACE_BAUD)


def wire_time(exchanges: Sequence[tuple[bytes, bytes]], baud: int) -> float:
    """Seconds the exchanges' bytes take on an 8N1 line at ``baud``."""
    return sum(len(a) + len(b) for a, b in exchanges) * BITS_PER_CHAR / baud


def bare_replay(
    port: str, exchanges: Sequence[tuple[bytes, bytes]], repetitions: int
) -> list[float]:
    """Seconds per command for the same request bytes written and their replies read
    with bare pyserial (no framing, no driver, no safety process)."""
    if not exchanges:
        raise BenchError("no exchanges were captured to replay")
    samples: list[float] = []
    with serial.Serial(port, NE1000_BAUD, timeout=BARE_TIMEOUT_S, write_timeout=1.0) as ser:
        ser.reset_input_buffer()
        for _ in range(repetitions):
            interrupt.check()
            started = time.perf_counter()
            for request, reply in exchanges:
                ser.write(request)
                got = ser.read(len(reply))
                if len(got) != len(reply) or got[-1:] != reply[-1:]:
                    raise BenchError(
                        f"bare replay: {request!r} answered {got!r}, expected a reply like "
                        f"{reply!r}"
                    )
            samples.append(time.perf_counter() - started)
    return samples


def measure_paced(pool: Pool, library: DrugLibrary, count: int, repetitions: int) -> PacedResult:
    bench = open_bench(pool, library, "ne1000", pace_baud=PACE_BAUD)
    try:
        samples = run_commands(bench, count, warmup=3)
        exchanges = capture_exchanges(bench)
    finally:
        peak = close_bench(pool, bench)
    assert bench.emulator is not None
    try:
        bare = bare_replay(bench.emulator.where, exchanges, repetitions)
    finally:
        pool.stop(bench.emulator.process)
    return PacedResult(samples, exchanges, bare, peak)


__all__ = ["PACE_BAUD", "PacedResult", "bare_replay", "measure_paced", "wire_time"]
