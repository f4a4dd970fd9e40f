"""Four pumps on one line, through a real safety process (issue 14): command latency per
protocol, the emergency stop of all four, and the process's memory.

Each run starts an emulator child serving four pumps on one pty (``emulate P --pty
--addresses ...``; NE-1000 and Harvard replies paced at the line's baud, 19200 and 115200
8N1, so every sample holds its real wire time) and a safety process on a generated config
of one ``[lines.L]`` and four ``[channels.A-D]`` at their addresses (NE-1000 in safe mode,
``safe_mode_timeout_s = 17``: four pumps on a line need more than the reference bench's
10, which the config check holds every bench to: docs/safety.md). The process polls all four pumps
every second (its default timing) while the client works: a command may wait behind a
poll of another pump on the line, as on a real bench.

The four channels give four different drugs (norepinephrine, vasopressin, epinephrine,
dobutamine; see ``CHANNELS``), so each command is judged on its own drug's limits and every
one is accepted: the limits on a drug's total over channels are not what is timed here.

- **Latency** (``measure_latency``): after a warm-up, dose changes go to the four channels
  in turn, each a small step its drug's rules allow, timed at the client from
  ``request(ChangeDose(..., channel=X))`` to its return (verdict, journal, set, read-back,
  journal, reply). The wire time of a sample is the time the paced line was busy (any
  pump's exchanges, ``line_busy``: each from its request's first character to its reply's
  last, at bits per character / baud) within the sample, from the request to the safety
  process's own read-back of the command (``own_readbacks``: its journal's stamp, on the
  same CLOCK_MONOTONIC as the emulator's frames and the client's window): what the line
  itself needed, the command's own exchanges and what it waited for of a poll's, but not
  the next poll, which goes on while the reply travels and is decoded. The figure is the
  p99 of (latency - wire time). Baselines: the command's own exchanges' wire time (their
  most common shape), and the same exchanges written and read with bare pyserial on the
  same paced pty after the safety process let go of it (what the emulator's pacing, the
  pty and the scheduler give a client that does nothing else). Modbus RTU: the emulator
  does not pace and logs no frames, so the samples hold no wire time and the figure is
  the latency itself (as in ``benchmarks.lines``).
- **Emergency stop** (``measure_estop``, NE-1000): all four running, ``EmergencyStop`` is
  timed from the request to its reply, which comes after the safety process stopped every
  pump, each stop confirmed by the status ``S`` in the pump's own reply (S12; a pump whose
  reply does not confirm is read back before the reply); the reply's snapshot must show
  all four stopped (else the run fails). The read-backs of rate and volumes come with the
  process's next poll. Then the stop is acknowledged and the four restarted, and again. Baseline:
  the same stop's exchanges (captured from the emulator's frame log), written and read
  with bare pyserial on the same paced pty after the safety process let go of it.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import serial

from benchmarks import interrupt
from benchmarks.host import vm_hwm_mb
from benchmarks.latency import norepinephrine
from benchmarks.lines import ADDRESSES, BAUD, BITS_PER_CHAR, PACED
from benchmarks.processes import (
    MAX_SOCKET_PATH,
    BenchError,
    Emulator,
    Frame,
    Pool,
    Safety,
    SafetySetup,
    require_accepted,
)
from safety.ipc.client import SafetyClient
from safety.journal import open_readonly
from safety.kernel.codec import decode_event
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    CommandIssued,
    EmergencyStop,
    LoadProgram,
    ProgramSpec,
    ReadbackReceived,
    SetRate,
    StartInfusion,
)
from safety.library import DrugLibrary
from safety.start_up import freeze_start_up

CHANNELS = ("A", "B", "C", "D")
PROTOCOLS = ("ne1000", "harvard", "modbus")
#: the NE-1000 safe-mode timeout of the four pumps: more than a restart's handshakes of
#: four pumps take ((4 x 0.5 s + 3 drains of 0.5 s) x 4 + the 2 s keep-alive:
#: safety.host.config)
SAFE_MODE_TIMEOUT_S = 17
#: the safety journal's file name in a bench's directory
JOURNAL_NAME = "safety-journal.sqlite"
WARMUP = 8
#: a bare reply that has not come within this long is a failure, not a sample
BARE_TIMEOUT_S = 2.0
#: frames logged this close outside a sample's window still belong to it (the
#: emulator stamps them with millisecond resolution)
EDGE_S = 0.002


@dataclass(frozen=True)
class ChannelDrug:
    """What one channel gives: its program, its start, and two doses to alternate."""

    drug: str
    therapy: str
    concentration: str
    diluent: str
    start: Decimal
    alternate: tuple[Decimal, Decimal]
    weight_kg: Decimal | None = None

    def spec(self, library: DrugLibrary) -> ProgramSpec:
        base = norepinephrine(library)
        return ProgramSpec(
            library_hash=base.library_hash,
            drug=self.drug,
            profile=base.profile,
            therapy=self.therapy,
            concentration=self.concentration,
            diluent=self.diluent,
            weight_kg=self.weight_kg,
        )


#: each step within its drug's step and window rules (config/drug_library.toml)
CHANNEL_DRUGS = {
    "A": ChannelDrug("norepinephrine", "standard", "4 mg/250 mL", "D5W", Decimal(8),
                     (Decimal(9), Decimal(8))),
    "B": ChannelDrug("vasopressin", "fixed", "20 units/100 mL", "NS", Decimal("0.03"),
                     (Decimal("0.035"), Decimal("0.03"))),
    "C": ChannelDrug("epinephrine", "weight_based", "4 mg/250 mL", "D5W", Decimal("0.1"),
                     (Decimal("0.12"), Decimal("0.1")), Decimal(70)),
    "D": ChannelDrug("dobutamine", "weight_based", "250 mg/250 mL", "D5W", Decimal(5),
                     (Decimal("5.5"), Decimal(5)), Decimal(70)),
}  # fmt: skip


@dataclass
class LineBench:
    """An emulator of four pumps on one pty, a safety process owning them, a client."""

    protocol: str
    emulator: Emulator
    safety: Safety
    client: SafetyClient
    commands: int = 0
    peak_mb: float | None = None
    unmatched: int = 0

    journal: Path = Path(JOURNAL_NAME)

    @property
    def char_s(self) -> float:
        return BITS_PER_CHAR[self.protocol] / BAUD[self.protocol]

    @property
    def paced(self) -> bool:
        return self.protocol in PACED


@dataclass
class LatencyResult:
    protocol: str
    samples: list[float]  # s
    wire: list[float]  # s per sample: every byte on the line while it ran (paced only)
    own_wire_s: float | None  # a command's own exchanges (most common shape), paced only
    safety_peak_mb: float | None
    paced: bool
    #: s, a command's own exchanges with bare pyserial on the same paced pty (paced only)
    bare: list[float] = field(default_factory=list)
    #: samples whose own read-back the journal did not show (wire counted to the reply)
    unmatched: int = 0


@dataclass
class EstopResult:
    samples: list[float]  # s, request -> reply with all four confirmed stopped
    exchanges: list[tuple[bytes, bytes]]
    bare: list[float]  # s, the same exchanges with bare pyserial on the same pty
    safety_peak_mb: float | None
    wire_s: float = 0.0
    #: s, request -> the emulator's reply to the last pump's stop command (every pump
    #: stopped), from its frame log (millisecond stamps)
    all_stopped: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- set-up


def write_line_config(
    bench: Path, protocol: str, port: str, journal_dir: Path | None = None
) -> Path:
    """A safety config: one shared line, four channels on it at their addresses; the
    journal in ``bench`` or in ``journal_dir`` (another file system: tmpfs)."""
    socket = bench / "safety.sock"
    if len(str(socket).encode()) > MAX_SOCKET_PATH:
        raise BenchError(
            f"the benchmark's directory {bench} is too deep for a Unix socket path: "
            "choose a shorter --work-dir"
        )
    parity = "E" if protocol == "modbus" else "N"
    lines = [
        "# written by pumpctl bench: four pumps on one line (issue 14)",
        "[lines.L]",
        'kind = "serial"',
        f'port = "{port}"',
        f"baud = {BAUD[protocol]}",
        f'parity = "{parity}"',
    ]
    addresses = [int(a) for a in ADDRESSES[protocol].split(",")]
    for name, address in zip(CHANNELS, addresses, strict=True):
        lines += [
            f"[channels.{name}]",
            f'driver = "{protocol}"',
            'container = "bd-plastipak-50ml"',
            'line = "L"',
            f"[channels.{name}.options]",
            f"{'device_id' if protocol == 'modbus' else 'address'} = {address}",
        ]
        if protocol == "ne1000":
            lines.append(f"safe_mode_timeout_s = {SAFE_MODE_TIMEOUT_S}")
    lines += [
        "[gpio]",
        'backend = "none"',
        "[paths]",
        f'journal = "{(journal_dir or bench) / JOURNAL_NAME}"',
        f'socket = "{socket}"',
        f'key_file = "{bench / "ipc.key"}"',
        "[clock]",
        'clinical = "real"',
    ]
    path = bench / "safety.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def open_line_bench(
    pool: Pool, library: DrugLibrary, protocol: str, journal_dir: Path | None = None
) -> LineBench:
    """Emulator, safety process, client attached, every channel loaded and running."""
    args = ["--pty", "--addresses", ADDRESSES[protocol]]
    if protocol in PACED:
        args += ["--pace-baud", str(BAUD[protocol])]
    emulator = pool.emulator(protocol, *args)
    bench_dir = pool.new_dir(f"safety-4x{protocol}")
    write_line_config(bench_dir, protocol, emulator.where, journal_dir)
    safety = pool.safety(SafetySetup(protocol), where=bench_dir)
    client = safety.client()
    journal = (journal_dir or bench_dir) / JOURNAL_NAME
    bench = LineBench(protocol, emulator, safety, client, journal=journal)
    try:
        client.attach()
        for name in CHANNELS:
            drug = CHANNEL_DRUGS[name]
            require_accepted(client.request(LoadProgram(drug.spec(library), channel=name)),
                      f"load {drug.drug} on channel {name}")  # fmt: skip
        start_all(bench)
    except BaseException:
        close_line_bench(pool, bench)
        raise
    # the client is a controller: as ``pumpctl run`` does, what it holds from before (here
    # also every earlier section's modules and results) is frozen (safety.start_up)
    freeze_start_up()
    return bench


def start_all(bench: LineBench) -> None:
    for name in CHANNELS:
        drug = CHANNEL_DRUGS[name]
        outcome = bench.client.request(
            StartInfusion(drug.start, confirm_soft_limits=True, channel=name)
        )
        require_accepted(outcome, f"start channel {name} at {drug.start}", True)


def close_line_bench(pool: Pool, bench: LineBench) -> None:
    """Hang up and stop the safety process (its peak RSS read just before); the
    emulator is left running for a bare replay: the caller stops it."""
    bench.peak_mb = vm_hwm_mb(bench.safety.pid)
    bench.client.close()
    pool.stop(bench.safety.child.process)


# --------------------------------------------------------------------------- latency


def _change(bench: LineBench) -> tuple[float, float, float]:
    """One dose change on the next channel: (latency s, monotonic start, end)."""
    interrupt.check()
    name = CHANNELS[bench.commands % len(CHANNELS)]
    drug = CHANNEL_DRUGS[name]
    dose = drug.alternate[(bench.commands // len(CHANNELS)) % 2]
    begin = time.monotonic()
    started = time.perf_counter()
    outcome = bench.client.request(ChangeDose(dose, channel=name))
    elapsed = time.perf_counter() - started
    end = time.monotonic()
    bench.commands += 1
    require_accepted(outcome, f"change channel {name} to {dose} (command {bench.commands})", True)
    return elapsed, begin, end


def measure_latency(
    pool: Pool,
    library: DrugLibrary,
    protocol: str,
    commands: int,
    bare_repetitions: int = 0,
    journal_dir: Path | None = None,
) -> LatencyResult:
    """``journal_dir``: the safety journal elsewhere than the run's directory (tmpfs: the
    same run without the disk's fsyncs, to tell the stack's time from the disk's)."""
    bench = open_line_bench(pool, library, protocol, journal_dir)
    try:
        for _ in range(WARMUP):
            _change(bench)
        offset = bench.emulator.log_size()
        names: list[str] = []
        timed: list[tuple[float, float, float]] = []
        for _ in range(commands):
            names.append(CHANNELS[bench.commands % len(CHANNELS)])
            timed.append(_change(bench))
        time.sleep(0.05)  # the emulator writes its log after each reply
    finally:
        close_line_bench(pool, bench)
    try:
        samples = [t for t, _, _ in timed]
        wire: list[float] = []
        own: float | None = None
        bare: list[float] = []
        if bench.paced:
            frames = bench.emulator.frames(offset)
            windows = [(begin, end) for _, begin, end in timed]
            cuts = own_readbacks(bench.journal, windows, names)
            busy = line_busy(frames, bench.char_s)
            for (begin, end), cut in zip(windows, cuts, strict=True):
                last = (end if cut is None else cut) + EDGE_S
                wire.append(sum(max(0.0, min(b, last) - max(a, begin)) for a, b in busy))
            bench.unmatched = sum(1 for cut in cuts if cut is None)
            exchanges = _common_exchanges(frames, windows)
            own = sum(len(a) + len(b) for a, b in exchanges) * bench.char_s
            if bare_repetitions:
                bare = bare_replay(bench.emulator.where, exchanges, bare_repetitions, protocol)
    finally:
        pool.stop(bench.emulator.process)
    if not samples:
        raise BenchError(f"no {protocol} command was timed")
    return LatencyResult(
        protocol, samples, wire, own, bench.peak_mb, bench.paced, bare, bench.unmatched
    )


def line_busy(frames: Sequence[Frame], char_s: float) -> list[tuple[float, float]]:
    """When the modelled wire carried each exchange: from its request's first character to
    its reply's last (the pacer's model: the reply follows the request's characters, and the
    emulator logs a reply when its last character is out). A sample's wire time is its
    window's overlap with these: an exchange the command found half done counts for its
    rest only, one that ended just after the command began for that sliver only."""
    out: list[tuple[float, float]] = []
    for request, reply in _pair_frames(frames):
        out.append((reply.at - (len(request.data) + len(reply.data)) * char_s, reply.at))
    return out


def _pair_frames(frames: Sequence[Frame]) -> list[tuple[Frame, Frame]]:
    """Each request frame with the reply frame after it."""
    out: list[tuple[Frame, Frame]] = []
    request: Frame | None = None
    for frame in frames:
        if frame.direction == "rx":
            request = frame
        elif frame.direction == "tx" and request is not None:
            out.append((request, frame))
            request = None
    return out


def own_readbacks(
    journal: Path, windows: Sequence[tuple[float, float]], channels: Sequence[str]
) -> list[float | None]:
    """For each timed command (its window and channel): when the safety process had its
    own read-back, from its journal (stamped on CLOCK_MONOTONIC, as the emulator's frames
    and the client's window are). The line's bytes after it cannot have delayed the
    command: they are the next poll's, going on while the reply travels and is decoded.
    None where the journal shows no such read-back in the window."""
    connection = open_readonly(journal)
    try:
        rows = connection.execute(
            "SELECT liveness, payload FROM entries WHERE kind IN ('command_issued', 'readback')"
            " ORDER BY id"
        ).fetchall()
    finally:
        connection.close()
    events = [(float(at), decode_event(payload)) for at, payload in rows]
    times = [at for at, _ in events]
    out: list[float | None] = []
    for (begin, end), channel in zip(windows, channels, strict=True):
        cut: float | None = None
        issued = False
        for at, event in events[bisect.bisect_left(times, begin) :]:
            if at > end:
                break
            if isinstance(event, CommandIssued) and event.cause == "command":
                issued = issued or (
                    isinstance(event.action, SetRate) and event.action.channel == channel
                )
            elif issued and isinstance(event, ReadbackReceived) and event.channel == channel:
                cut = at
                break
        out.append(cut)
    return out


# --------------------------------------------------------------------------- estop


def measure_estop(
    pool: Pool, library: DrugLibrary, stops: int, bare_repetitions: int
) -> EstopResult:
    """``stops`` emergency stops of four NE-1000 pumps on one line at 19200 baud."""
    bench = open_line_bench(pool, library, "ne1000")
    samples: list[float] = []
    windows: list[tuple[float, float]] = []
    try:
        offset = bench.emulator.log_size()
        for i in range(stops):
            interrupt.check()
            if i:
                require_accepted(bench.client.request(AcknowledgeAlarms(None)), "acknowledge")
                start_all(bench)
                time.sleep(0.02)  # apart from the starts in the log's millisecond stamps
            begin = time.monotonic()
            started = time.perf_counter()
            outcome = bench.client.request(EmergencyStop("api"))
            samples.append(time.perf_counter() - started)
            windows.append((begin, time.monotonic()))
            running = [v.name for v in outcome.snapshot.channels if v.running]
            if running or len(outcome.snapshot.channels) != len(CHANNELS):
                raise BenchError(
                    f"emergency stop {i + 1}: the reply does not show all four pumps stopped "
                    f"(running: {', '.join(running) or 'none'}; {outcome.execution})"
                )
        time.sleep(0.05)
        frames = bench.emulator.frames(offset)
        exchanges = _common_exchanges(frames, windows)
        all_stopped = _stops_reached(frames, windows)
    finally:
        close_line_bench(pool, bench)
    try:
        bare = bare_replay(bench.emulator.where, exchanges, bare_repetitions)
    finally:
        pool.stop(bench.emulator.process)
    wire = sum(len(a) + len(b) for a, b in exchanges) * bench.char_s
    return EstopResult(samples, exchanges, bare, bench.peak_mb, wire, all_stopped)


def _stops_reached(frames: list[Frame], windows: Sequence[tuple[float, float]]) -> list[float]:
    """Per stop: from its request to the reply to the last pump's stop command."""
    out = []
    for begin, end in windows:
        inside = [f for f in frames if begin - EDGE_S <= f.at <= end + EDGE_S]
        stopped = [
            reply.at
            for request, reply in itertools.pairwise(inside)
            if request.direction == "rx" and b"STP" in request.data and reply.direction == "tx"
        ]
        if len(stopped) >= len(CHANNELS):
            out.append(max(0.0, stopped[len(CHANNELS) - 1] - begin))
    return out


def _common_exchanges(
    frames: list[Frame], windows: Sequence[tuple[float, float]]
) -> list[tuple[bytes, bytes]]:
    """The (request, reply) pairs most stops put on the wire (a poll that fell inside
    one stop's window is left out that way)."""
    shapes: collections.Counter[tuple[int, ...]] = collections.Counter()
    per_stop: list[list[tuple[bytes, bytes]]] = []
    for begin, end in windows:
        pairs = _pairs([f for f in frames if begin - EDGE_S <= f.at <= end + EDGE_S])
        per_stop.append(pairs)
        shapes[tuple(len(a) + len(b) for a, b in pairs)] += 1
    common, _ = shapes.most_common(1)[0]
    for pairs in per_stop:
        if pairs and tuple(len(a) + len(b) for a, b in pairs) == common:
            return pairs
    raise BenchError("the emulator logged no complete exchange for an emergency stop")


def _pairs(frames: list[Frame]) -> list[tuple[bytes, bytes]]:
    return [(request.data, reply.data) for request, reply in _pair_frames(frames)]


def bare_replay(
    port: str,
    exchanges: Sequence[tuple[bytes, bytes]],
    repetitions: int,
    protocol: str = "ne1000",
) -> list[float]:
    """Seconds per command for the same request bytes written and each reply read to its
    end with bare pyserial: NE-1000 safe mode by the frame's length byte (STX, length,
    the rest), Harvard up to the prompt's ``>``."""
    if not exchanges:
        raise BenchError("no exchanges were captured to replay")
    samples: list[float] = []
    with serial.Serial(port, BAUD[protocol], timeout=BARE_TIMEOUT_S, write_timeout=1.0) as ser:
        ser.reset_input_buffer()
        for _ in range(repetitions):
            interrupt.check()
            started = time.perf_counter()
            for request, reply in exchanges:
                ser.write(request)
                got = _read_reply(ser, protocol)
                if got[-1:] != reply[-1:]:
                    raise BenchError(
                        f"bare replay: {request!r} answered {got!r}, expected a reply like "
                        f"{reply!r}"
                    )
            samples.append(time.perf_counter() - started)
    return samples


def _read_reply(ser: serial.Serial, protocol: str) -> bytes:
    if protocol == "harvard":
        return bytes(ser.read_until(b">"))
    head = bytes(ser.read(2))
    if len(head) != 2 or head[0] != 0x02 or head[1] < 2:
        return head
    return head + bytes(ser.read(head[1] - 1))


# --------------------------------------------------------------------------- memory


def measure_memory(pool: Pool, library: DrugLibrary, commands: int) -> float | None:
    """Peak RSS (MB) of a safety process owning four NE-1000 pumps on one line, after
    ``commands`` dose changes."""
    bench = open_line_bench(pool, library, "ne1000")
    try:
        for _ in range(commands):
            _change(bench)
    finally:
        close_line_bench(pool, bench)
        pool.stop(bench.emulator.process)
    return bench.peak_mb


__all__ = [
    "CHANNELS",
    "CHANNEL_DRUGS",
    "PROTOCOLS",
    "EstopResult",
    "LatencyResult",
    "bare_replay",
    "measure_estop",
    "measure_latency",
    "measure_memory",
    "open_line_bench",
    "write_line_config",
]
