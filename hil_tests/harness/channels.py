"""A hardware-in-the-loop bench of several channels: emulated pumps on one or more lines,
one safety process owning them all, controllers.

Why a bench of its own: ``HilBench`` serves one pump on one wire. A bench of several
channels (issue 14) is one emulator process per line, each serving one simulated pump
per address (``--address`` repeated: NE-1000 addresses on one RS-232 line, a Harvard
chain, Modbus device ids), and one safety config that names the line (``[lines.NAME]``)
and its channels (``[channels.NAME]`` with ``line`` and ``address``), or gives a channel
a port of its own. Everything else (runtime directory, shared scaled clinical clock,
controllers, GPIO, clean-up) is ``HilBench``'s, reused as it is.

The ground truth is per pump (one truth log per address); what the limits protect is the
patient's drug, so the cases judge the SUM of the delivered flow of every channel giving
a drug (``total``, ``assert_total_invariants``): the hard maximum and the cumulative cap
on the total at every instant, and, for a handover, how long the total strayed from the
set dose (``TotalRate.longest``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from firmware_bridge.emulators.control import send_control
from firmware_bridge.emulators.truth_log import read_truth_log
from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from hil_tests.harness.bench import EMULATOR_NICENESS, START_TIMEOUT_S, BenchSettings, HilBench
from hil_tests.harness.processes import PYTHON, Child, wait_for, write_toml
from hil_tests.harness.pumps import PumpKind
from safety.journal_read import read_safety_events
from safety.kernel.model import ProgramLimits, ProgramLoaded
from safety.kernel.state import dose_per_amount_h
from safety.library import DrugLibrary
from safety.units import parse_concentration

#: float dust in sums of truth rates (mL/h)
EPS = 1e-9


@dataclass(frozen=True)
class BenchLine:
    """One wire and the pumps on it: ``channels`` maps channel name -> pump address.

    ``shared``: the safety config declares the wire as a ``[lines.NAME]`` and each channel
    names it with its address (several pumps, one port, one lock); otherwise the one
    channel on it gets the driver options of a port of its own (``PumpKind.driver_options``),
    as a one-pump bench does."""

    name: str
    kind: PumpKind
    channels: dict[str, int]
    shared: bool = True
    #: what every syringe on the line holds at start (None: full); told to the safety
    #: process as each channel's ``loaded_ml`` too, unless ``told_ml`` says otherwise
    volume_ml: float | None = None
    #: what the safety process is told each syringe holds (an operator's mistake)
    told_ml: float | None = None

    def __post_init__(self) -> None:
        if not self.shared and len(self.channels) != 1:
            raise ValueError(f"line {self.name}: a line that is not shared has one channel")


@dataclass(frozen=True)
class RelaySettings:
    """The config's ``[relay]`` (minutes, on the clinical clock)."""

    handover_before_empty_min: float = 5.0
    warn_before_empty_min: float = 30.0
    overlap_steps: int = 4
    overlap_step_min: float = 1.0
    max_container_pause_min: float = 3.0
    max_prime_ml: float = 5.0


@dataclass
class _Served:
    """One emulator process and where it serves."""

    line: BenchLine
    child: Child
    where: str
    control: Path
    truth: dict[str, Path] = field(default_factory=dict)  # channel -> truth log


class ChannelBench(HilBench):
    """Emulators (one per line), one safety process owning every channel, controllers."""

    def __init__(
        self,
        lines: Sequence[BenchLine],
        artefacts: Path,
        settings: BenchSettings | None = None,
        library: DrugLibrary | None = None,
        *,
        relay: RelaySettings | None = None,
        interlock_scope: str = "bench",
    ) -> None:
        if not lines:
            raise ValueError("a bench needs at least one line")
        super().__init__(lines[0].kind, artefacts, settings, library)
        self.lines = list(lines)
        names = [n for line in self.lines for n in line.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique across lines: {names}")
        self.relay = relay or RelaySettings()
        self.interlock_scope = interlock_scope
        self.served: dict[str, _Served] = {}

    # ------------------------------------------------------------------ life cycle
    def start(self) -> ChannelBench:
        for line in self.lines:
            self._start_line(line)
        self.write_config()
        self.start_safety()
        return self

    def _start_line(self, line: BenchLine) -> None:
        link = self.runtime / f"{line.name}.tty"
        control = self.runtime / f"{line.name}.sock"
        truth = {
            ch: self.artefacts / f"truth-{line.name}-{a}.jsonl" for ch, a in line.channels.items()
        }
        args = [
            PYTHON,
            "-m",
            "firmware_bridge.emulators",
            *line.kind.emulator_args(link=str(link)),
            *line.kind.container_args(self.settings.syringe),
            "--clock",
            self.clock.spec(),
            "--control",
            str(control),
        ]
        for address in line.channels.values():
            args += ["--address", str(address)]
        if len(line.channels) > 1:
            args += ["--truth-log", str(self.artefacts / f"truth-{line.name}-{{address}}.jsonl")]
        else:
            args += ["--truth-log", str(next(iter(truth.values())))]
        if line.volume_ml is not None:
            args += ["--volume", repr(line.volume_ml)]
        args += self.settings.emulator_args
        child = self._spawn(args, env={"TMPDIR": str(self.runtime)}, niceness=EMULATOR_NICENESS)
        where = child.first_line(START_TIMEOUT_S)
        served = _Served(line, child, where, control, truth)
        self.served[line.name] = served
        if self.emulator is None:  # the first line's: what HilBench's checks look at
            self.emulator, self.where = child, where

        def answers() -> bool:
            try:
                return bool(send_control(str(control), {"query": "state"}).get("ok"))
            except Exception:
                return False

        wait_for(answers, START_TIMEOUT_S, f"line {line.name}'s control channel")

    def write_config(self) -> Path:
        s = self.settings
        lines: dict[str, Any] = {}
        channels: dict[str, Any] = {}
        for served in self.served.values():
            line = served.line
            options = line.kind.driver_options(
                served.where,
                reply_timeout_s=s.reply_timeout_s,
                safe_mode_timeout_s=s.safe_mode_timeout_s,
            )
            if line.shared:
                wire = {"port", "baud", "serial_port", "host", "parity"}
                lines[line.name] = {
                    "kind": "serial" if line.kind.transport == "pty" else "tcp",
                    "port": served.where,
                    **({"baud": options["baud"]} if "baud" in options else {}),
                }
                options = {k: v for k, v in options.items() if k not in wire}
            for name, address in line.channels.items():
                table: dict[str, Any] = {
                    "driver": line.kind.protocol,
                    "container": line.kind.container(s.syringe),
                }
                told = line.told_ml if line.told_ml is not None else line.volume_ml
                if told is not None:
                    table["loaded_ml"] = told
                own = dict(options)
                own["device_id" if line.kind.protocol == "modbus" else "address"] = address
                if line.shared:
                    table["line"] = line.name
                table["options"] = own
                channels[name] = table
        r = self.relay
        config: dict[str, Any] = {
            "lines": lines,
            "channels": channels,
            "interlock": {"scope": self.interlock_scope},
            "relay": {
                "handover_before_empty_min": r.handover_before_empty_min,
                "warn_before_empty_min": r.warn_before_empty_min,
                "overlap_steps": r.overlap_steps,
                "overlap_step_min": r.overlap_step_min,
                "max_container_pause_min": r.max_container_pause_min,
                "max_prime_ml": r.max_prime_ml,
            },
            **self._process_tables(),
        }
        if not lines:
            del config["lines"]
        return write_toml(self.config, config)

    def channel_child(self, *steps: str) -> Child:
        """``python -m hil_tests.harness.channel_child`` with ``steps`` (see there): a
        controller process that sets the bench up and can then be killed."""
        return self._spawn(
            [
                PYTHON,
                "-m",
                "hil_tests.harness.channel_child",
                str(self.config),
                str(self.controller_journal),
                *steps,
            ]
        )

    # ------------------------------------------------------------------ the pump side
    def _line_of(self, channel: str) -> _Served:
        for served in self.served.values():
            if channel in served.line.channels:
                return served
        raise KeyError(f"no channel {channel!r} on this bench")

    def _control(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        served = self._line_of(channel)
        if len(served.line.channels) > 1:
            message = {"address": served.line.channels[channel], **message}
        return send_control(str(served.control), message)

    def channel_fault(self, channel: str, spec: str) -> None:
        """A pump fault (or the patient line's state) on one channel's pump."""
        reply = self._control(channel, {"fault": spec})
        assert reply.get("ok"), f"the emulator refused fault {spec!r} on {channel}: {reply}"

    def channel_pump(self, channel: str) -> dict[str, Any]:
        """One channel's pump's own state now (not the safety process's belief)."""
        reply = self._control(channel, {"query": "state"})
        assert reply.get("ok"), reply
        state: dict[str, Any] = reply["pump"]
        return state

    def pump(self) -> dict[str, Any]:
        """The first channel's pump (what ``HilBench`` callers expect)."""
        return self.channel_pump(self.names[0])

    @property
    def names(self) -> list[str]:
        return [n for line in self.lines for n in line.channels]

    def channel_truth(self, channel: str) -> list[TruthEvent]:
        path = self._line_of(channel).truth[channel]
        return read_truth_log(path) if path.exists() else []

    def truth(self) -> list[TruthEvent]:
        """The first channel's truth (``HilBench``'s one-pump view)."""
        return self.channel_truth(self.names[0])

    def frame_log(self, line: str | None = None) -> list[str]:
        served = self.served[line] if line is not None else next(iter(self.served.values()))
        return list(served.child.lines[1:])

    def diagnostics(self, lines: int = 40) -> str:
        parts = [super().diagnostics(lines)]
        for name in self.names:
            parts.append(f"--- truth of channel {name}:")
            parts += [f"  {e!r}" for e in self.channel_truth(name)[-lines:]]
        return "\n".join(parts)

    # ------------------------------------------------------------------ the total
    def programs(self) -> dict[str, tuple[ProgramLoaded, ProgramLimits]]:
        """Each channel's last drug program and its limits, from the safety journal."""
        found: dict[str, tuple[ProgramLoaded, ProgramLimits]] = {}
        for event in read_safety_events(self.safety_journal):
            if isinstance(event, ProgramLoaded) and isinstance(event.limits, ProgramLimits):
                found[event.channel] = (event, event.limits)
        return found

    def total(self, drug: str) -> TotalRate:
        """The patient's delivered dose of ``drug``: every channel programmed with it,
        summed on the ground truth, in the therapy's dose unit."""
        programs = {c: p for c, p in self.programs().items() if p[1].drug == drug}
        assert programs, f"no channel was programmed with {drug}"
        parts: dict[str, tuple[list[TruthEvent], Fraction]] = {}
        for channel, (loaded, limits) in programs.items():
            per_ml = parse_concentration(loaded.spec.concentration).base_per_ml()
            parts[channel] = (self.channel_truth(channel), per_ml * dose_per_amount_h(limits))
        limits = next(iter(programs.values()))[1]
        return TotalRate(parts, limits, self.now())

    def assert_total_invariants(self, drug: str = "norepinephrine") -> TotalRate:
        """The limits that protect the patient, on the summed delivered dose: never above
        the hard maximum (S1), and within the cumulative cap over the run (S3). Marks the
        bench judged (every case must judge its ground truth)."""
        self.invariants_checked = True
        total = self.total(drug)
        hard_max = float(total.limits.therapy.hard_max.value)
        peak, when = total.peak()
        assert peak <= hard_max * (1 + 1e-9), (
            f"the summed dose reached {peak:g} at {when:.0f} s, above the hard max {hard_max:g}:"
            f"\n{total.describe()}"
        )
        cap = total.limits.cap
        if cap is not None:
            given = total.amount_given()  # base units (mcg)
            cap_base = float(Fraction(cap.amount) * cap.unit.base_factor)
            assert given <= cap_base, f"{given:g} given, above the cap {cap_base:g}"
        return total


@dataclass(frozen=True)
class TotalRate:
    """The summed delivered dose of one drug over its channels (ground truth).

    ``parts``: channel -> (its truth, dose per mL/h). Times are clinical seconds."""

    parts: dict[str, tuple[list[TruthEvent], Fraction]]
    limits: ProgramLimits
    until: float

    def edges(self) -> list[float]:
        times = {
            e.start
            for truth, _ in self.parts.values()
            for e in truth
            if isinstance(e, TruthSegment)
        }
        return sorted(times)

    def rate_ml_h(self, channel: str, t: float) -> float:
        rate = 0.0
        for e in self.parts[channel][0]:
            if isinstance(e, TruthSegment):
                if e.start > t:
                    break
                rate = e.rate_ml_h
        return rate

    def at(self, t: float) -> float:
        """The summed dose at clinical time ``t`` (each segment from its start on)."""
        return sum(self.rate_ml_h(ch, t) * float(per) for ch, (_, per) in self.parts.items())

    def stretches(self, since: float) -> list[tuple[float, float, float]]:
        """(start, end, dose) of every stretch of constant total from ``since`` on."""
        cuts = [since, *(t for t in self.edges() if t > since), self.until]
        return [(a, b, self.at(a)) for a, b in itertools.pairwise(cuts) if b > a]

    def peak(self) -> tuple[float, float]:
        """The highest summed dose and when it began."""
        best, when = 0.0, 0.0
        for start, _, dose in self.stretches(0.0):
            if dose > best:
                best, when = dose, start
        return best, when

    def longest(self, since: float, outside: tuple[float, float]) -> float:
        """The longest time (clinical s) from ``since`` on that the total stayed outside
        ``outside`` = (low, high) without a break."""
        low, high = outside
        longest = run = 0.0
        for start, end, dose in self.stretches(since):
            if dose < low - EPS or dose > high + EPS:
                run += end - start
                longest = max(longest, run)
            else:
                run = 0.0
        return longest

    def amount_given(self) -> float:
        """Base amount (mcg) delivered over the run, boluses included."""
        total = 0.0
        for truth, per in self.parts.values():
            per_amount = float(per / dose_per_amount_h(self.limits))  # base per h per mL/h
            segs = [e for e in truth if isinstance(e, TruthSegment)]
            for a, b in itertools.pairwise([*segs, None]):
                assert a is not None
                end = b.start if b is not None else self.until
                total += max(0.0, a.rate_ml_h) * per_amount * max(0.0, end - a.start) / 3600
            for bolus in (e for e in truth if isinstance(e, TruthBolus)):
                total += bolus.volume_ml * per_amount
        return total

    def describe(self) -> str:
        return ", ".join(
            f"{a:.0f}-{b:.0f}s:{d:.3g}" for a, b, d in self.stretches(0.0) if d > 0 or a == 0.0
        )


def ml_h(dose_mcg_min: Decimal | float, mcg_per_ml: float) -> float:
    """mL/h that give ``dose_mcg_min`` of a solution of ``mcg_per_ml``."""
    return float(dose_mcg_min) * 60.0 / mcg_per_ml
