"""Runs the benchmarks in order and turns their measurements into a report.

Each benchmark that fails (a child that does not start, a refused command) leaves its
figures marked "not measured" with the reason, and the others still run; a Ctrl-C ends
the run. Progress goes to ``progress`` (the command prints it on stderr), the figures
only into the report.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from benchmarks import (
    accuracy,
    closed_loop,
    death,
    four_pumps,
    handover,
    interrupt,
    latency,
    lines,
    observers,
    overhead,
    resources,
    simulation,
)
from benchmarks.host import (
    CpuMeter,
    compile_project,
    describe_host,
    file_system_of,
    load_average,
    tmpfs_dir,
)
from benchmarks.processes import BenchError, Pool
from benchmarks.report import (
    Context,
    Figure,
    Goal,
    Report,
    median_max_ms,
    percentile,
    summary_ms,
)
from controller.logfile import log_to_file
from safety.library import DrugLibrary, load_library

BENCHMARKS = (
    "latency",
    "overhead",
    "lines",
    # issue 14: four pumps on one line through the safety process, handovers
    "latency4",
    "estop4",
    "memory4",
    "handover",
    "liveness",
    "simulation",
    "resources",
    "closed_loop",
    "accuracy",
)
#: heavy, opt-in (``pumpctl bench --observe``): the dashboard and a 1,000-bench fleet
OPT_IN = ("dashboard", "fleet")

LATENCY_GOAL = Goal("<=", 10.0, "ms")
WIRE_GOAL = Goal("<=", 1.2, "x wire time")
DEATH_GOAL_MS = 50.0
SIM_GOAL = Goal(">=", 50_000.0, "x real time")
SAFETY_MEMORY_GOAL = Goal("<=", 40.0, "MB")
CONTROLLER_MEMORY_GOAL = Goal("<=", 60.0, "MB")
STARTUP_GOAL = Goal("<=", 1.0, "s")
#: issue 14: a command with 4 pumps on one line takes at most 10 ms more than its wire time
LINE_GOAL = Goal("<=", 10.0, "ms", "issue 14")
#: issue 14: the Harvard driver finishes at the wire time (it took 130 ms on a pty before)
HARVARD_GOAL = Goal("<=", 10.0, "ms", "issue 14")
#: issue 14: an emergency stop of 4 NE-1000 pumps on one 19200 baud line, confirmed
ESTOP4_GOAL = Goal("<=", 100.0, "ms", "issue 14")
#: issue 14: the safety process with 4 channels
MEMORY4_GOAL = Goal("<=", 40.0, "MB", "issue 14")
#: issue 14: the best relay strategy, primed, keeps every 1-minute window within +-10 %
HANDOVER_GOAL = Goal("<=", 10.0, "%", "issue 14")
DASHBOARD_MEMORY_GOAL = Goal("<=", 60.0, "MB")
PAGE_LATENCY_GOAL = Goal("<=", 1000.0, "ms")
FLEET_LATENCY_GOAL = Goal("<=", 1000.0, "ms")
FLEET_LOSS_GOAL = Goal("<=", 0.0, "events")
#: samples at each end of a latency run compared for the history effect
HISTORY_WINDOW = 100
#: other processes' CPU use (cores, on average) above which the report says so
OTHERS_NOTE_CORES = 0.25


@dataclass(frozen=True)
class Settings:
    """How much of each benchmark to run; ``full()`` is what the figures in the docs
    come from, ``quick()`` a smoke run of the same plumbing."""

    quick: bool = False
    commands: int = 1000
    paced_commands: int = 200
    bare_repetitions: int = 1000
    kills: int = 10
    stops: int = 5
    safety_kills: int = 10
    heartbeat_timeout_s: float = 2.0
    startups: int = 10
    sim_hours: float = 24.0
    sim_real_timing_hours: float = 1.0
    journal_appends: int = 300
    line_commands: int = 200
    harvard_repetitions: int = 100
    dashboard_clients: int = 5
    dashboard_changes: int = 100
    fleet_benches: int = 1000
    fleet_steady_s: float = 30.0
    fleet_outage_s: float = 30.0
    #: closed loop (issue 11): patients per sensitivity of the reduced cohort; ``cohort``
    #: runs the published size instead (250) and measures its speed
    closed_loop_patients: int = 5
    cohort: bool = False
    #: issue 13: analyses of the 24 h accuracy test (the figure is the slowest)
    accuracy_repetitions: int = 5
    #: issue 14: commands per protocol with 4 channels on one line; emergency stops of
    #: 4 pumps and bare replays of one; commands before the 4-channel memory reading;
    #: handovers per condition (rate x strategy x primed). A p99 of 200 commands is the
    #: second-worst sample, at the mercy of one scheduler hiccup on a shared machine: the
    #: 4-channel latency takes 1000, as the one-channel latency does
    line4_commands: int = 1000
    line4_bare_repetitions: int = 200
    estops: int = 100
    estop_bare_repetitions: int = 200
    memory4_commands: int = 50
    handovers: int = 20
    handover_rates: tuple[float, ...] = handover.RATES_ML_H
    only: tuple[str, ...] = BENCHMARKS
    work_dir: Path | None = None
    keep: bool = False

    @classmethod
    def full(cls, **changes: object) -> Settings:
        return replace(cls(), **changes)  # type: ignore[arg-type]

    @classmethod
    def quick_run(cls, **changes: object) -> Settings:
        base = cls(
            quick=True,
            commands=20,
            paced_commands=5,
            bare_repetitions=5,
            kills=1,
            stops=1,
            safety_kills=1,
            heartbeat_timeout_s=1.0,
            startups=1,
            sim_hours=1.0,
            sim_real_timing_hours=0.05,
            journal_appends=20,
            line_commands=8,
            harvard_repetitions=5,
            dashboard_changes=10,
            fleet_benches=20,
            fleet_steady_s=3.0,
            fleet_outage_s=3.0,
            closed_loop_patients=1,
            accuracy_repetitions=2,
            line4_commands=8,
            line4_bare_repetitions=3,
            estops=2,
            estop_bare_repetitions=3,
            memory4_commands=4,
            handovers=1,
            handover_rates=(20.0,),
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        data = asdict(self)
        data["work_dir"] = str(self.work_dir) if self.work_dir is not None else None
        data["only"] = list(self.only)
        data["handover_rates"] = list(self.handover_rates)
        return data


@dataclass
class _Run:
    settings: Settings
    pool: Pool
    library: DrugLibrary
    progress: Callable[[str], None]
    report: Report
    safety_peaks: dict[str, list[float]] = field(default_factory=dict)
    controller_peaks: list[float] = field(default_factory=list)
    ne1000: latency.PathResult | None = None
    bare: list[float] | None = None  # bare pyserial replay on the unpaced NE-1000 pty
    bare_error: str | None = None
    #: issue 14: peak RSS (MB) of the safety processes owning 4 channels, by who
    four_peaks: dict[str, float] = field(default_factory=dict)

    def peak(self, who: str, value: float | None) -> None:
        if value is not None:
            self.safety_peaks.setdefault(who, []).append(value)


def run(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Every selected benchmark; children and files are gone when this returns."""
    library = load_library()
    with Pool(settings.work_dir, keep=settings.keep) as pool, log_to_file(pool.root / "bench.log"):
        meter = CpuMeter()
        report = Report(describe_host(pool.root), settings.describe())
        report.host["bytecode"] = compile_project()  # before any child: see compile_project
        state = _Run(settings, pool, library, progress, report)
        steps: list[tuple[str, Callable[[_Run], None]]] = [
            ("latency", _latency),
            ("overhead", _overhead),
            ("lines", _lines),
            ("latency4", _latency4),
            ("estop4", _estop4),
            ("memory4", _memory4),
            ("handover", _handover),
            ("liveness", _liveness),
            ("simulation", _simulation),
            ("resources", _resources),
            ("dashboard", _dashboard),
            ("fleet", _fleet),
            ("closed_loop", _closed_loop),
            ("accuracy", _accuracy),
        ]
        for name, step in steps:
            if name in settings.only:
                interrupt.check()
                step(state)
        interrupt.check()
        pool.close()  # every child reaped, so the meter counts them as ours
        report.host["load_average_at_end"] = load_average()
        others = meter.others_cores()
        report.host["other_processes_cpu_cores"] = others
        if others is not None and others > OTHERS_NOTE_CORES:
            report.notes.append(
                f"other processes used {others:.2f} of {report.host.get('cpus')} CPU(s) on "
                "average during this run: latency and liveness figures suffer from it"
            )
        if settings.quick:
            report.notes.append(
                "--quick: a smoke run of the plumbing on tiny samples; these are not this "
                "machine's figures (run without --quick for those)"
            )
        if settings.keep:
            report.notes.append(f"files kept in {pool.root}")
    return report


# --------------------------------------------------------------------------- observers


def _dashboard(run: _Run) -> None:
    s = run.settings
    run.progress(f"dashboard: {s.dashboard_clients} SSE clients, {s.dashboard_changes} changes")
    try:
        result = observers.measure_dashboard(
            run.pool.root / "dashboard",
            run.library,
            clients=s.dashboard_clients,
            changes=s.dashboard_changes,
        )
    except Exception as exc:
        run.report.figures.append(
            _failed("dashboard.rss", "dashboard RSS", "MB", DASHBOARD_MEMORY_GOAL, "rss", exc)
        )
        return
    run.report.figures.append(
        Figure(
            "dashboard.rss",
            f"dashboard process RSS with {result.clients} SSE clients",
            result.rss_mb,
            "MB",
            DASHBOARD_MEMORY_GOAL,
            "rss",
            note="python -m cli.main dashboard, after the changes below; the clients "
            "are HTTP event streams read by threads, standing in for browsers",
        )
    )
    page = summary_ms(result.latencies)
    base = summary_ms(result.baseline)
    run.report.figures.append(
        Figure(
            "dashboard.latency",
            "journal -> page p99 (request sent -> its journal line at an SSE client)",
            page["p99"],
            "ms",
            PAGE_LATENCY_GOAL,
            "p99",
            {
                **page,
                "baseline p50": base["p50"],
                "baseline p99": base["p99"],
                "p99 / baseline p99": page["p99"] / base["p99"] if base["p99"] else 0.0,
            },
            note="baseline, same run: the controller's own round trip of the same requests",
        )
    )


def _fleet(run: _Run) -> None:
    s = run.settings
    run.progress(
        f"fleet: {s.fleet_benches} simulated benches, {s.fleet_outage_s:g} s broker outage"
    )
    try:
        result = observers.measure_fleet(
            run.pool.root / "fleet",
            benches=s.fleet_benches,
            steady_s=s.fleet_steady_s,
            outage_s=s.fleet_outage_s,
            progress=run.progress,
        )
    except Exception as exc:
        run.report.figures.append(
            _failed("fleet.latency", "fleet latency", "ms", FLEET_LATENCY_GOAL, "p99", exc)
        )
        return
    steady = result.steady
    rtt = result.broker_rtt_ms
    stats = {k: float(v) for k, v in steady.items() if isinstance(v, int | float)}
    if rtt:
        stats["baseline: broker round trip p50 ms"] = rtt
    run.report.figures.append(
        Figure(
            "fleet.latency",
            f"fleet: outbox write -> fleet view p99, {result.benches} benches at 1 event/s",
            steady.get("p99"),
            "ms",
            FLEET_LATENCY_GOAL,
            "p99",
            stats,
            note="steady state, before the outage; the fleet view is pumpctl fleet's model "
            "(the page redraws from it at most every 0.5 s); baseline: one QoS 1 message "
            "through the same broker, publish -> receive",
        )
    )
    totals = result.totals
    lost = result.produced - totals.get("received", 0)
    run.report.figures.append(
        Figure(
            "fleet.loss",
            f"fleet: events lost across a {result.outage_s:g} s broker outage",
            float(max(lost, totals.get("missed", 0))),
            "events",
            FLEET_LOSS_GOAL,
            "count",
            {
                "produced": float(result.produced),
                "received once": float(totals.get("received", 0)),
                "gaps": float(totals.get("gaps", 0)),
                "duplicates delivered (dropped by seq)": float(totals.get("duplicates", 0)),
                "catch-up after the outage s": result.catch_up_s,
            },
            note="every bench kept writing into its outbox during the outage; duplicates "
            "are what QoS 1 redelivered and the fleet dropped by sequence number",
        )
    )


# --------------------------------------------------------------------------- 1 latency


def _latency(run: _Run) -> None:
    n = run.settings.commands
    for path in latency.PATHS:
        title = f"command latency p99, {latency.PATH_TITLES[path]}"
        key = f"latency.{path}"
        run.progress(f"latency: {latency.PATH_TITLES[path]}, {n} commands")
        try:
            result = latency.measure_path(run.pool, run.library, path, n)
        except Exception as exc:
            run.report.figures.append(_failed(key, title, "ms", LATENCY_GOAL, "p99", exc))
            continue
        run.peak(f"safety ({path})", result.safety_peak_mb)
        if path == "ne1000":
            run.ne1000 = result
            if "overhead" in run.settings.only:
                _bare_replay(run, result)
        _stop_emulator(run, result)
        stats = summary_ms(result.samples)
        run.report.figures.append(
            Figure(
                key,
                title,
                stats["p99"],
                "ms",
                LATENCY_GOAL,
                "p99",
                stats,
                note="request -> verdict -> pump set -> read-back -> reply, at the client",
            )
        )
        if len(result.samples) >= 2 * HISTORY_WINDOW:
            run.report.context.append(_history_effect(path, result.samples))


def _history_effect(path: str, samples: list[float]) -> Context:
    """Latency at the start and at the end of a run: every accepted change adds a segment
    to the rate history the kernel keeps for 26 h; the S4/S5 window rules look at every
    segment in their windows (all of them, in this benchmark)."""
    first = samples[:HISTORY_WINDOW]
    last = samples[-HISTORY_WINDOW:]
    w = HISTORY_WINDOW
    growth = (statistics.median(last) - statistics.median(first)) * 1000
    per_100 = growth / ((len(samples) - w) / 100)
    return Context(
        f"latency.{path}.history",
        f"latency growth with the rate history, {latency.PATH_TITLES[path]} (per 100 segments)",
        per_100,
        "ms",
        {
            f"first {w} p50": percentile(first, 50) * 1000,
            f"first {w} p99": percentile(first, 99) * 1000,
            f"last {w} p50": percentile(last, 50) * 1000,
            f"last {w} p99": percentile(last, 99) * 1000,
        },
        note=f"the history held {latency.WARMUP + 1}-{latency.WARMUP + w} segments for the "
        f"first {w} commands, {len(samples) + latency.WARMUP - w + 1}-"
        f"{len(samples) + latency.WARMUP} for the last {w}",
    )


# --------------------------------------------------------------------------- 2 overhead


def _bare_replay(run: _Run, ne1000: latency.PathResult) -> None:
    """Replay the NE-1000 exchanges with bare pyserial at once: the emulator runs in safe
    mode, and a pump left silent for its safe-mode timeout alarms."""
    n = run.settings.bare_repetitions
    run.progress(f"overhead: bare pyserial replay on the same pty, {n} repetitions")
    try:
        assert ne1000.emulator is not None
        run.bare = overhead.bare_replay(ne1000.emulator.where, ne1000.exchanges, n)
    except Exception as exc:
        run.bare_error = _why(exc)
    finally:
        _stop_emulator(run, ne1000)


def _stop_emulator(run: _Run, result: latency.PathResult) -> None:
    if result.emulator is not None:
        run.pool.stop(result.emulator.process)


def _overhead(run: _Run) -> None:
    s = run.settings
    try:
        ne1000 = run.ne1000
        if ne1000 is None:  # latency not selected: the unpaced run is made here
            run.progress(f"overhead: NE-1000 on a pty, {s.commands} commands")
            ne1000 = latency.measure_path(run.pool, run.library, "ne1000", s.commands)
            run.peak("safety (ne1000)", ne1000.safety_peak_mb)
            _bare_replay(run, ne1000)
        bare = run.bare
        if bare is None:
            raise BenchError(run.bare_error or "the bare replay did not run")
        stack_p50 = percentile(ne1000.samples, 50)
        bare_p50 = percentile(bare, 50)
        run.report.context.append(
            Context(
                "overhead.bare_pyserial",
                "whole stack over bare pyserial, same bytes on the same pty (p50 / p50)",
                stack_p50 / bare_p50,
                "x",
                {
                    "stack p50 ms": stack_p50 * 1000,
                    "bare p50 ms": bare_p50 * 1000,
                    "bare p99 ms": percentile(bare, 99) * 1000,
                    "n_bare": float(len(bare)),
                    "exchanges per command": float(len(ne1000.exchanges)),
                },
                note="no goal in issue 6: the pty moves bytes at memory speed, so this is "
                "the software's whole cost (client, IPC, kernel, journal fsyncs, driver)",
            )
        )
    except Exception as exc:
        run.report.context.append(
            Context("overhead.bare_pyserial", "whole stack over bare pyserial", None, "x",
                    note=f"not measured: {_why(exc)}")
        )  # fmt: skip
    title = f"overhead over the wire time at {overhead.PACE_BAUD} baud (p50)"
    run.progress(
        f"overhead: NE-1000 paced at {overhead.PACE_BAUD} baud, {s.paced_commands} commands"
    )
    try:
        paced = overhead.measure_paced(run.pool, run.library, s.paced_commands, s.paced_commands)
    except Exception as exc:
        run.report.figures.append(_failed("overhead.wire", title, "x", WIRE_GOAL, "p50", exc))
        return
    run.peak("safety (ne1000)", paced.safety_peak_mb)
    wire = paced.wire_s
    p50 = percentile(paced.samples, 50)
    run.report.figures.append(
        Figure(
            "overhead.wire",
            title,
            p50 / wire,
            "x",
            WIRE_GOAL,
            "p50 latency / wire time",
            {
                "p99 ratio": percentile(paced.samples, 99) / wire,
                "stack p50 ms": p50 * 1000,
                "wire ms": wire * 1000,
                "n_bytes": float(paced.wire_bytes),
                "n": float(len(paced.samples)),
            },
            note=f"{len(paced.exchanges)} exchanges, {paced.wire_bytes} bytes per command "
            f"(8N1: x 10 bits / {overhead.PACE_BAUD})",
        )
    )
    bare_p50 = percentile(paced.bare, 50)
    run.report.context.append(
        Context(
            "overhead.pacing_floor",
            "bare pyserial on the paced pty over the wire time (the emulator's pacing)",
            bare_p50 / wire,
            "x",
            {"bare p50 ms": bare_p50 * 1000, "wire ms": wire * 1000},
        )
    )


# --------------------------------------------------------------------------- pumps on one line


def _lines(run: _Run) -> None:
    s = run.settings
    for protocol in lines.PROTOCOLS:
        key = f"lines.{protocol}"
        title = f"command latency p99 over the wire time, 4 {protocol} pumps on one line"
        run.progress(f"lines: 4 {protocol} pumps on one pty, {s.line_commands} commands")
        try:
            result = lines.measure_line(run.pool, protocol, s.line_commands)
        except Exception as exc:
            run.report.figures.append(_failed(key, title, "ms", LINE_GOAL, "p99", exc))
            continue
        excess = [t - w for t, w in zip(result.samples, result.wire, strict=True)]
        judged = excess if result.paced else result.samples
        stats = summary_ms(result.samples)
        wire_ms = statistics.median(result.wire) * 1000
        stats["wire ms"] = wire_ms
        if result.paced:
            stats["p99 - wire ms"] = percentile(excess, 99) * 1000
        run.report.figures.append(
            Figure(
                key,
                title,
                percentile(judged, 99) * 1000,
                "ms",
                LINE_GOAL,
                "p99 of latency - wire time" if result.paced else "p99 latency (unpaced)",
                stats,
                note=(
                    f"driver level, a rate set and its read-back on the next of 4 pumps; "
                    f"replies paced at {lines.BAUD[protocol]} baud; wire time = bytes x "
                    f"{lines.BITS_PER_CHAR[protocol]} bits / baud, counted per command"
                    if result.paced
                    else f"driver level, RTU on a pty the emulator does not pace: the "
                    f"samples hold no wire time; a real line at {lines.BAUD[protocol]} "
                    f"baud 8E1 would add {wire_ms:.1f} ms"
                ),
            )
        )
    title = "Harvard rate set + status read p50, our driver (unpaced pty)"
    run.progress(
        f"lines: Harvard set + read, our driver and a public client, {s.harvard_repetitions}x"
    )
    try:
        pair = lines.measure_harvard_pair(run.pool, s.harvard_repetitions)
    except Exception as exc:
        run.report.figures.append(
            _failed("lines.harvard_pair", title, "ms", HARVARD_GOAL, "p50", exc)
        )
        return
    ours = percentile(pair.ours, 50) * 1000
    stats = {**summary_ms(pair.ours)}
    note = "the same Pump 11 Elite emulator, one after the other; before issue 14: 130 ms"
    if pair.client is not None:
        theirs = percentile(pair.client, 50) * 1000
        stats["client p50 ms"] = theirs
        stats["client / ours (p50)"] = theirs / ours if ours else 0.0
        note += (
            f"; the client is {pair.client_name} (polling mode: it reads each reply up to "
            "the XON that ends it), timed for its own rate set plus a status command"
        )
    else:
        note += f"; client not measured: {pair.client_error}"
    run.report.figures.append(
        Figure("lines.harvard_pair", title, ours, "ms", HARVARD_GOAL, "p50", stats, note=note)
    )


# --------------------------------------------------------------------------- issue 14


def _latency4(run: _Run) -> None:
    s = run.settings
    for protocol in four_pumps.PROTOCOLS:
        key = f"latency4.{protocol}"
        title = f"command latency p99 over the wire time, 4 {protocol} channels on one line"
        run.progress(
            f"latency4: safety process, 4 {protocol} channels on one pty, "
            f"{s.line4_commands} commands"
        )
        try:
            result = four_pumps.measure_latency(
                run.pool, run.library, protocol, s.line4_commands, s.line4_bare_repetitions
            )
        except Exception as exc:
            run.report.figures.append(_failed(key, title, "ms", LINE_GOAL, "p99", exc))
            continue
        if result.safety_peak_mb is not None:
            run.four_peaks[f"4 {protocol} channels"] = result.safety_peak_mb
        value, stats = _latency4_stats(result)
        if result.paced:
            judged = "p99 of latency - wire time"
            note = (
                f"request -> verdict -> set -> read-back -> reply through the safety process, "
                f"the next of 4 channels in turn, each polled every second; replies paced at "
                f"{lines.BAUD[protocol]} baud; a sample's wire time is the time the paced "
                f"line was busy ({lines.BITS_PER_CHAR[protocol]} bits / baud a character, each "
                f"exchange from its request's first character to its reply's last) from the "
                f"request to the safety process's own read-back of the command (its journal's "
                f"stamp, the same clock): its own exchanges and any poll it waited behind, not "
                f"the next poll while the reply travels ({result.unmatched} sample(s) without "
                f"that read-back counted to the reply); baselines: "
                f"the command's own exchanges' wire time ('own wire') and the same "
                f"exchanges with bare pyserial on the same paced pty ('bare')"
            )
        else:
            judged = "p99 latency (unpaced)"
            note = (
                "through the safety process, the next of 4 channels in turn, each polled "
                "every second; Modbus RTU on a pty the emulator does not pace (and whose "
                "frames it does not log): the samples hold no wire time, so the latency "
                "itself is judged; a real 19200 baud 8E1 line adds its wire time (see "
                "lines.modbus)"
            )
        run.report.figures.append(
            Figure(key, title, value, "ms", LINE_GOAL, judged, stats, note=note)
        )
        _latency4_without_disk(run, protocol)
    _harvard_client_beside(run)


def _latency4_stats(result: four_pumps.LatencyResult) -> tuple[float, dict[str, float]]:
    """The judged figure (ms) and its details: the p99 over the wire time when the line is
    paced, the p99 latency when it is not."""
    stats = summary_ms(result.samples)
    if not result.paced:
        return stats["p99"], stats
    excess = [t - w for t, w in zip(result.samples, result.wire, strict=True)]
    stats["line wire p50 ms"] = percentile(result.wire, 50) * 1000
    stats["p50 - wire ms"] = percentile(excess, 50) * 1000
    if result.own_wire_s:
        stats["own wire ms"] = result.own_wire_s * 1000
        stats["p99 / own wire"] = stats["p99"] / (result.own_wire_s * 1000)
    if result.bare:
        bare_p50 = percentile(result.bare, 50) * 1000
        stats["bare p50 ms"] = bare_p50
        stats["bare p99 ms"] = percentile(result.bare, 99) * 1000
        stats["p50 / bare p50"] = stats["p50"] / bare_p50 if bare_p50 else 0.0
    return percentile(excess, 99) * 1000, stats


def _latency4_without_disk(run: _Run, protocol: str) -> None:
    """The same measurement with the safety journal on tmpfs: every command waits for
    two durable journal appends (S14) and for those of any poll it meets, so a disk that
    sometimes takes tens of milliseconds to flush (a shared VM's) sets the judged p99;
    beside it, this run's figure without the disk is the software's own."""
    s = run.settings
    key = f"latency4.{protocol}.tmpfs"
    title = f"the same, 4 {protocol} channels, the safety journal on tmpfs"
    shm = tmpfs_dir()
    if shm is None or file_system_of(run.pool.root).startswith("tmpfs"):
        why = "no tmpfs on this host" if shm is None else "the run's journals are on tmpfs"
        run.report.context.append(Context(key, title, None, "ms", note=f"not measured: {why}"))
        return
    run.progress(f"latency4: the same, the journal on tmpfs, {s.line4_commands} commands")
    where = Path(tempfile.mkdtemp(prefix="pumpctl-bench-journal-", dir=shm))
    try:
        result = four_pumps.measure_latency(
            run.pool, run.library, protocol, s.line4_commands, journal_dir=where
        )
    except Exception as exc:
        run.report.context.append(
            Context(key, title, None, "ms", note=f"not measured: {_why(exc)}")
        )
        return
    finally:
        shutil.rmtree(where, ignore_errors=True)
    value, stats = _latency4_stats(result)
    judged = "p99 of latency - wire time" if result.paced else "p99 latency"
    run.report.context.append(
        Context(key, title, value, "ms", stats, note=f"{judged}, beside the goal's "
                f"{LINE_GOAL.describe()}: the software without the disk's flushes")
    )  # fmt: skip


def _harvard_client_beside(run: _Run) -> None:
    """The public Harvard client (python-syringe-pump, a test dependency) on its own
    emulator in the same run: what a peer client takes for a set plus a read."""
    s = run.settings
    run.progress(f"latency4: a public Harvard client beside it, {s.harvard_repetitions}x")
    ours = next((f for f in run.report.figures if f.key == "latency4.harvard"), None)
    try:
        pair = lines.measure_harvard_pair(run.pool, s.harvard_repetitions)
    except Exception as exc:
        run.report.context.append(
            Context("latency4.harvard_client", "public Harvard client, set + read p50", None,
                    "ms", note=f"not measured: {_why(exc)}")
        )  # fmt: skip
        return
    if pair.client is None:
        run.report.context.append(
            Context("latency4.harvard_client", "public Harvard client, set + read p50", None,
                    "ms", note=f"client not measured: {pair.client_error}")
        )  # fmt: skip
        return
    theirs = percentile(pair.client, 50) * 1000
    stats = {
        "our driver alone p50 ms": percentile(pair.ours, 50) * 1000,
        "client / our driver (p50)": theirs / (percentile(pair.ours, 50) * 1000),
    }
    if ours is not None and ours.stats:
        stats["ours via safety, 4 channels, p50 ms"] = ours.stats["p50"]
    run.report.context.append(
        Context(
            "latency4.harvard_client",
            f"{pair.client_name}: rate set + status read p50 (unpaced pty, one pump)",
            theirs,
            "ms",
            stats,
            note="the public client and our driver on the same kind of emulator in the same "
            "run, driver level (no safety process); the through-safety figure above is paced "
            "at 115200 baud with 4 pumps polled on the line",
        )
    )


def _estop4(run: _Run) -> None:
    s = run.settings
    key, title = "estop4.ne1000", "emergency stop p99, 4 NE-1000 pumps on one 19200 baud line"
    run.progress(f"estop4: {s.estops} emergency stops of 4 NE-1000 pumps on one pty")
    try:
        result = four_pumps.measure_estop(run.pool, run.library, s.estops, s.estop_bare_repetitions)
    except Exception as exc:
        run.report.figures.append(_failed(key, title, "ms", ESTOP4_GOAL, "p99", exc))
        return
    if result.safety_peak_mb is not None:
        run.four_peaks["4 ne1000 channels, estops"] = result.safety_peak_mb
    stats = summary_ms(result.samples)
    bare_p50 = percentile(result.bare, 50) * 1000
    stats["bare p50 ms"] = bare_p50
    stats["bare p99 ms"] = percentile(result.bare, 99) * 1000
    stats["p99 / bare p50"] = stats["p99"] / bare_p50 if bare_p50 else 0.0
    stats["wire ms"] = result.wire_s * 1000
    if result.all_stopped:
        stats["last pump stopped p99 ms"] = percentile(result.all_stopped, 99) * 1000
    run.report.figures.append(
        Figure(
            key,
            title,
            stats["p99"],
            "ms",
            ESTOP4_GOAL,
            "p99, request -> reply with every pump confirmed stopped",
            stats,
            note=f"EmergencyStop from the API; the reply's snapshot shows all 4 stopped; "
            f"{len(result.exchanges)} exchanges on the wire ({result.wire_s * 1000:.0f} ms at "
            "19200 baud 8N1: a stop per pump, back to back, each confirmed by the status "
            "'S' in its own reply; rate and volumes are read back by the next poll); "
            "baseline: the same exchanges with bare pyserial on the same paced pty ('bare'); "
            "'last pump stopped': to the emulator's reply to the 4th stop command "
            "(from its frame log, ms stamps)",
        )
    )


def _memory4(run: _Run) -> None:
    s = run.settings
    key, title = "memory.safety_4ch", "safety process peak RSS with 4 channels (VmHWM, max)"
    try:
        if not run.four_peaks:
            run.progress(
                f"memory4: a safety process with 4 NE-1000 channels, {s.memory4_commands} commands"
            )
            peak = four_pumps.measure_memory(run.pool, run.library, s.memory4_commands)
            if peak is not None:
                run.four_peaks["4 ne1000 channels"] = peak
        one = run.safety_peaks.get("safety (ne1000)")
        if not one:
            run.progress("memory4: the same-run baseline, a one-pump NE-1000 safety process")
            base = latency.measure_path(run.pool, run.library, "ne1000", s.memory4_commands)
            _stop_emulator(run, base)
            run.peak("safety (ne1000)", base.safety_peak_mb)
            one = run.safety_peaks.get("safety (ne1000)")
    except Exception as exc:
        run.report.figures.append(_failed(key, title, "MB", MEMORY4_GOAL, "max", exc))
        return
    if not run.four_peaks:
        run.report.figures.append(
            _failed(key, title, "MB", MEMORY4_GOAL, "max",
                    BenchError("no 4-channel safety process was measured"))
        )  # fmt: skip
        return
    worst = max(run.four_peaks, key=lambda who: run.four_peaks[who])
    stats = dict(sorted(run.four_peaks.items()))
    if one:
        stats["baseline: one NE-1000 channel MB"] = max(one)
        stats["4 channels / 1 channel ratio"] = run.four_peaks[worst] / max(one)
    run.report.figures.append(
        Figure(
            key,
            title,
            run.four_peaks[worst],
            "MB",
            MEMORY4_GOAL,
            "max over the 4-channel safety processes of the run",
            stats,
            note=f"highest: {worst}; read just before each was stopped; baseline: a one-pump "
            "NE-1000 safety process of the same run; MB = 10^6 bytes",
        )
    )


def _handover(run: _Run) -> None:
    s = run.settings
    bench = handover.HandoverBench(handovers=s.handovers, rates=s.handover_rates)
    key = "handover.primed_best"
    title = "handover: worst 1-min deviation from the set dose, best strategy, primed"
    try:
        results = handover.measure(run.library, bench, run.progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        run.report.figures.append(_failed(key, title, "%", HANDOVER_GOAL, "max", exc))
        return
    for r in results:
        c = r.condition
        run.report.context.append(
            Context(
                f"handover.{c.rate_ml_h:g}.{c.strategy}.{'primed' if c.primed else 'unprimed'}",
                f"handover {c.name}: worst 1-min deviation",
                r.worst_dev * 100,
                "%",
                {
                    "median |worst| %": statistics.median(
                        abs(x.worst_window_dev) for x in r.samples
                    )
                    * 100,
                    "longest below 90 % s": r.longest_low_s,
                    "median longest below 90 % s": statistics.median(
                        x.longest_low_s for x in r.samples
                    ),
                    "n": float(len(r.samples)),
                    "n_failed": float(r.failures),
                },
            )
        )
    primed = [r for r in results if r.condition.primed]
    by_strategy: dict[str, list[handover.ConditionResult]] = {}
    for r in primed:
        by_strategy.setdefault(r.condition.strategy, []).append(r)
    worst = {k: max(abs(r.worst_dev) for r in v) * 100 for k, v in by_strategy.items()}
    best = min(worst, key=lambda k: worst[k])
    stats: dict[str, float] = {f"{k} primed worst %": v for k, v in worst.items()}
    for strategy in by_strategy:
        unprimed = [r for r in results if not r.condition.primed
                    and r.condition.strategy == strategy]  # fmt: skip
        if unprimed:
            stats[f"{strategy} unprimed worst %"] = max(abs(r.worst_dev) for r in unprimed) * 100
            stats[f"{strategy} unprimed longest below 90 % s"] = max(
                r.longest_low_s for r in unprimed
            )
    stats["n"] = float(sum(len(r.samples) for r in results))
    stats["n_failed"] = float(sum(r.failures for r in results))
    real = sum(r.real_s for r in results)
    simulated = sum(r.simulated_s for r in results)
    stats["real s"] = real
    stats["simulated / real"] = simulated / real if real else 0.0
    run.report.figures.append(
        Figure(
            key,
            title,
            worst[best],
            "%",
            HANDOVER_GOAL,
            f"max |1-min mean / set dose - 1| over the {best} strategy's primed handovers",
            stats,
            note=f"best: {best}; {s.handovers} handovers per rate "
            f"({', '.join(f'{r:g}' for r in s.handover_rates)} mL/h) x strategy x primed/"
            "unprimed, in process on the virtual clock, pumps with slack, lag and ripple "
            "(mechanics 'typical'); judged on the ground truth of both pumps summed, from 1 "
            "min before each handover until an unprimed start-up would be over; the ratio "
            "is to the set dose itself",
        )
    )


# --------------------------------------------------------------------------- 3 liveness


def _liveness(run: _Run) -> None:
    s = run.settings
    hb = s.heartbeat_timeout_s
    run.progress(
        f"liveness: {s.kills} controller SIGKILL, {s.stops} SIGSTOP (heartbeat timeout "
        f"{hb:g} s), {s.safety_kills} safety SIGKILL"
    )
    kill_goal = Goal("<=", DEATH_GOAL_MS, "ms")
    stop_goal = Goal("<=", hb * 1000 + DEATH_GOAL_MS, "ms", "issue 6: heartbeat timeout + 50 ms")
    titles = {
        "liveness.controller_kill": "controller SIGKILL -> alarm pin high (max)",
        "liveness.controller_stop": f"controller SIGSTOP -> alarm pin high (max; timeout {hb:g} s)",
        "liveness.safety_kill": "safety process SIGKILL -> controller's alarm (max)",
    }
    try:
        result = death.measure_liveness(
            run.pool,
            heartbeat_timeout_s=hb,
            kills=s.kills,
            stops=s.stops,
            safety_kills=s.safety_kills,
        )
    except Exception as exc:
        for key, goal in (
            ("liveness.controller_kill", kill_goal),
            ("liveness.controller_stop", stop_goal),
            ("liveness.safety_kill", kill_goal),
        ):
            run.report.figures.append(_failed(key, titles[key], "ms", goal, "max", exc))
        return
    run.controller_peaks += result.controller_peaks_mb
    for peak in result.safety_peaks_mb:
        run.peak("safety (mock, simulated GPIO)", peak)
    for key, goal, samples in (
        ("liveness.controller_kill", kill_goal, result.controller_kill_s),
        ("liveness.controller_stop", stop_goal, result.controller_stop_s),
        ("liveness.safety_kill", kill_goal, result.safety_kill_s),
    ):
        if not samples:
            continue
        stats = median_max_ms(samples)
        run.report.figures.append(
            Figure(key, titles[key], stats["max"], "ms", goal, f"max of {len(samples)}", stats)
        )
    if result.restart_ready_s:
        stats = median_max_ms(result.restart_ready_s)
        run.report.context.append(
            Context(
                "startup.restart",
                "safety process restart to ready, replaying its journal",
                stats["median"] / 1000,
                "s",
                {k: v / 1000 if k != "n" else v for k, v in stats.items()},
            )
        )


# --------------------------------------------------------------------------- 4 simulation


#: timed runs of each simulated course (after one untimed run): the median is the figure
SIM_RUNS = 3


def _median_course(
    hours: float, timing: simulation.SimTiming, run: _Run, *, relay: bool
) -> tuple[simulation.SimResult, list[float]]:
    """One untimed run (what a first run pays once in a process: validators built, lazy
    imports, caches filled; not the simulator's speed), then ``SIM_RUNS`` timed ones: the
    median run, and every run's speed (the untimed one first). The courses are
    deterministic: each run is the same course."""
    first = simulation.simulate_course(hours, timing, run.library, relay=relay)
    results = sorted(
        (
            simulation.simulate_course(hours, timing, run.library, relay=relay)
            for _ in range(SIM_RUNS)
        ),
        key=lambda r: r.speed,
    )
    return results[len(results) // 2], [first.speed, *(r.speed for r in results)]


def _simulation(run: _Run) -> None:
    s = run.settings
    timing = simulation.SimTiming()
    title = f"simulation speed, {s.sim_hours:g} h norepinephrine course, relay on 2 channels"
    run.progress(f"simulation: {s.sim_hours:g} h course on the virtual clock, one pump")
    try:
        one, _ = _median_course(s.sim_hours, timing, run, relay=False)
    except Exception as exc:
        one = None
        one_error = _why(exc)
    run.progress(f"simulation: {s.sim_hours:g} h course, two channels handing over")
    try:
        result, speeds = _median_course(s.sim_hours, timing, run, relay=True)
    except Exception as exc:
        run.report.figures.append(_failed("simulation.speed", title, "x", SIM_GOAL, "run", exc))
        return
    stats = {
        "timed runs": float(SIM_RUNS),
        "slowest x": speeds[1],
        "fastest x": speeds[-1],
        "the untimed first run x": speeds[0],
        "real s": result.real_s,
        "of which set-up s": result.setup_s,
        "n_rate_changes": float(result.changes),
        "n_handovers": float(result.handovers),
        "n_failed_handovers": float(result.failed_handovers),
        "n_plans_ordered_again": float(result.replans),
    }
    if one is not None:
        stats["baseline: one pump, refilled out of band x"] = one.speed
        stats["relay / one pump speed"] = result.speed / one.speed
    run.report.figures.append(
        Figure(
            "simulation.speed",
            title,
            result.speed,
            "x real time",
            SIM_GOAL,
            f"median of {SIM_RUNS} runs after an untimed one, set-up included",
            stats,
            note=f"LocalSafety (channels A and B) + Session in one process; every syringe "
            f"change a real handover ({simulation.RELAY_STRATEGY}) by the safety process, the "
            "emptied channel given a new syringe, primed (line off) and armed as the standby; "
            "baseline, same run: the one-pump course whose syringe is refilled out of band; "
            f"simulation timing: {timing.describe()}; ended {result.final_state}, alarms: "
            f"{', '.join(result.alarms) or 'none'}",
        )
    )
    if one is not None:
        run.report.context.append(
            Context(
                "simulation.one_pump",
                f"simulation speed, {s.sim_hours:g} h course on one pump refilled out of band",
                one.speed,
                "x real time",
                {"real s": one.real_s, "n_syringe_changes": float(one.refills)},
                note=f"the course before issue 14; ended {one.final_state}",
            )
        )
    else:
        run.report.context.append(
            Context("simulation.one_pump", "simulation speed, one pump", None, "x",
                    note=f"not measured: {one_error}")
        )  # fmt: skip
    real_timing = simulation.SimTiming(poll_period_s=1.0, heartbeat_timeout_s=2.0)
    try:
        slow = simulation.simulate_course(s.sim_real_timing_hours, real_timing, run.library)
    except Exception as exc:
        run.report.context.append(
            Context("simulation.bench_timing", "simulation at the bench's timing", None, "x",
                    note=f"not measured: {_why(exc)}")
        )  # fmt: skip
        return
    run.report.context.append(
        Context(
            "simulation.bench_timing",
            f"simulation speed at a real bench's timing ({s.sim_real_timing_hours:g} h course)",
            slow.speed,
            "x real time",
            {"real s": slow.real_s},
            note=f"{real_timing.describe()}: the core's timers run per simulated second",
        )
    )


# --------------------------------------------------------------------------- 5 resources


def _resources(run: _Run) -> None:
    s = run.settings
    run.progress(f"resources: {s.startups} safety start-ups, journal commit time")
    startup_title = "safety process start-up to ready (max)"
    try:
        ready, peaks = resources.measure_startup(run.pool, s.startups)
        for peak in peaks:
            run.peak("safety (mock, idle)", peak)
        stats = {k: v / 1000 if k != "n" else v for k, v in median_max_ms(ready).items()}
        run.report.figures.append(
            Figure(
                "startup.safety",
                startup_title,
                stats["max"],
                "s",
                STARTUP_GOAL,
                f"max of {len(ready)}",
                stats,
                note="spawn to 'ready <socket>': interpreter, imports, config, library, "
                "journal, pump, socket (fresh journal, mock pump)",
            )
        )
    except Exception as exc:
        run.report.figures.append(
            _failed("startup.safety", startup_title, "s", STARTUP_GOAL, "max", exc)
        )
    if not run.controller_peaks:
        with contextlib.suppress(Exception):
            run.progress("resources: one controller child for its peak memory")
            bench = death.Liveness(run.pool, s.heartbeat_timeout_s)
            try:
                bench.controller()
            finally:
                bench.close()
            run.controller_peaks += bench.result.controller_peaks_mb
    _memory_figures(run)
    try:
        commits = resources.measure_journal_commit(run.pool.new_dir("journal"), s.journal_appends)
        stats = summary_ms(commits)
        run.report.context.append(
            Context(
                "journal.commit",
                "one durable journal append (fsync) on this disk",
                stats["p50"],
                "ms",
                stats,
                note="a dose change waits for two (the verdict with its command, the "
                "read-back); a start for three",
            )
        )
    except Exception as exc:
        run.report.context.append(
            Context("journal.commit", "one durable journal append", None, "ms",
                    note=f"not measured: {_why(exc)}")
        )  # fmt: skip


def _memory_figures(run: _Run) -> None:
    peaks = run.safety_peaks
    title = "safety process peak RSS (VmHWM, max)"
    if peaks:
        worst = max(peaks, key=lambda who: max(peaks[who]))
        run.report.figures.append(
            Figure(
                "memory.safety",
                title,
                max(peaks[worst]),
                "MB",
                SAFETY_MEMORY_GOAL,
                "max over every safety process of the run",
                {who: max(values) for who, values in sorted(peaks.items())},
                note=f"highest: {worst}; MB = 10^6 bytes",
            )
        )
    else:
        run.report.figures.append(
            _failed("memory.safety", title, "MB", SAFETY_MEMORY_GOAL, "max",
                    BenchError("no safety process was measured"))
        )  # fmt: skip
    title = "controller peak RSS (VmHWM, max)"
    if run.controller_peaks:
        stats = {
            "median": statistics.median(run.controller_peaks),
            "max": max(run.controller_peaks),
            "n": float(len(run.controller_peaks)),
        }
        run.report.figures.append(
            Figure(
                "memory.controller",
                title,
                stats["max"],
                "MB",
                CONTROLLER_MEMORY_GOAL,
                "max over the controller children",
                stats,
                note="connect() + Session + service thread, attached and infusing",
            )
        )
    else:
        run.report.figures.append(
            _failed("memory.controller", title, "MB", CONTROLLER_MEMORY_GOAL, "max",
                    BenchError("no controller child was measured"))
        )  # fmt: skip


# --------------------------------------------------------------------------- 6 closed loop


def _closed_loop(run: _Run) -> None:
    s = run.settings
    try:
        figures, context = closed_loop.measure(
            run.library,
            closed_loop.ClosedLoopBench(patients=s.closed_loop_patients, full=s.cohort),
            run.progress,
            interrupt.check,
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        run.report.figures.append(
            _failed("closed_loop.violations", "closed loop cohort", "violations",
                    closed_loop.VIOLATIONS_GOAL, "sum", exc)
        )  # fmt: skip
        return
    run.report.figures += figures
    run.report.context += context


# --------------------------------------------------------------------------- 7 accuracy


def _accuracy(run: _Run) -> None:
    try:
        figures, context = accuracy.measure(
            run.library,
            accuracy.AccuracyBench(repetitions=run.settings.accuracy_repetitions),
            run.pool.new_dir("accuracy"),
            run.progress,
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        run.report.figures += [
            _failed(key, title, unit, goal, judged, exc)
            for key, title, unit, goal, judged in accuracy.FIGURES
        ]
        return
    run.report.figures += figures
    run.report.context += context


# --------------------------------------------------------------------------- helpers


def _failed(key: str, title: str, unit: str, goal: Goal, judged: str, exc: BaseException) -> Figure:
    return Figure(key, title, None, unit, goal, judged, error=_why(exc))


def _why(exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


__all__ = ["BENCHMARKS", "Settings", "run"]
