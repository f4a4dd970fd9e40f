"""The oracle on a bench of several channels: the patient's total of the drug, judged.

Why a second layer over ``verification.ground_truth``: on a bench of several pumps the
limits that protect the patient are on the drug's total over its channels (the design:
S1 hard max, S3 cap, S4 titration and S5 wean on the summed dose rate), and a check of
each pump alone would both miss and invent violations. Two pumps each under the hard
maximum may together be over it; stopping one of two pumps may be an abrupt fall of the
total (a vasopressor stopped by the back door), or may be a handover during which the
total never moved. Only the sum says which.

So ``check_channels`` judges:

- **the total** (per drug: ``check_drugs`` splits a bench of several drugs and judges
  each drug's channels together): each channel's ground
  truth (``TruthSegment``s and boluses; ``TruthWaste``, a prime to waste, is never
  delivery) converted to a drug amount per hour with that channel's program in force,
  summed, and expressed as one "virtual pump" in the mL/h of the bench's program in force.
  The journal is projected the same way: every channel's command becomes the change of the
  total it ordered (a start of channel B beside a running A is a rise of the total; a stop
  of one of two is a fall), with its cause; every read-back updates the total the safety
  process verified. ``check_ground_truth`` then applies every rule to the total, exactly
  as to one pump: S1 on every stretch, S3 on every window, S4 and S5 on every change an
  operator's command made, and S5 also on the falls of the relay's own steps (a handover
  must keep the total within the wean rule; its rises restore what ran and are no
  titration).
- **each channel** for what belongs to one pump: the safety process's own actions never
  raised that pump's flow (``protective_raise``), nor a re-send above what was set on it
  (``retry_above_set_rate``).

Changes of several channels at one instant are one change of the total (on a virtual clock
a quick handover's start of B and stop of A coincide, and the patient saw no change). On a
real wire they are milliseconds apart; ``tolerance_s`` (the journal-to-pump slack) is
passed on, and the handover's delivered-flow figures are ``verification.handover``'s.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from safety.journal_read import ProgramsInForce
from safety.kernel.model import (
    BenchConfigured,
    CommandIssued,
    Event,
    PatientAdmitted,
    PrimePump,
    ProgramLoaded,
    ReadbackReceived,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
    TimelineResumed,
)
from safety.kernel.state import ActiveProgram
from safety.library import DrugLibrary
from verification.ground_truth import (
    READBACK_TOLERANCE,
    TITRATION_RULES,
    WEAN_RULES,
    Command,
    PumpClock,
    RecordBuilder,
    SafetyRecord,
    TruthReport,
    Verified,
    check_ground_truth,
)

#: the rules that belong to one pump, judged per channel
CHANNEL_RULES = frozenset({"protective_raise", "retry_above_set_rate"})
#: the rules on changes of the total (S4, S5), judged with each relay move as one change
STEP_RULES = TITRATION_RULES | WEAN_RULES


#: a pump command as the summed truth needs it (see ``_TotalBuilder.marks``)
Mark = tuple[float, str, str, int, ActiveProgram | None]


class ChannelsError(ValueError):
    """A record this check cannot judge as one total (the message says why)."""


@dataclass(frozen=True)
class ChannelsReport:
    """The total's report (its violations include each channel's own) and each channel's
    report on its own record (of which only ``CHANNEL_RULES`` count)."""

    total: TruthReport
    channels: Mapping[str, TruthReport]

    @property
    def ok(self) -> bool:
        return self.total.ok


def _channel_of(event: Event) -> str | None:
    """The channel an event belongs to (None: the bench's, e.g. a new patient)."""
    if isinstance(event, ProgramLoaded | ReadbackReceived):
        return event.channel
    if isinstance(event, CommandIssued):
        return event.action.channel
    return None


def check_drugs(
    truths: Mapping[str, Sequence[TruthEvent]],
    library: DrugLibrary,
    events: Iterable[Event],
    *,
    to_pump_clock: PumpClock | None = None,
    until: float | None = None,
    tolerance_s: float = 0.0,
) -> dict[str, ChannelsReport]:
    """A bench giving several drugs: each drug's channels judged together
    (``check_channels``), one report per drug, in the order the drugs were first loaded.

    The limits bind each drug's own total (S1 on norepinephrine says nothing of a
    vasopressin beside it), so the journal is split by channel: each drug's channels'
    programs, commands and read-backs, with what belongs to the bench (patient, timeline,
    the bench's one interlock relay, which cuts every pump). A channel that never had a
    program is judged with the first drug (it should deliver nothing); one that gave two
    drugs over the record cannot be split (``ChannelsError``)."""
    events = list(events)
    drugs_of: dict[str, list[str]] = {}
    scope = "bench"
    for event in events:
        if isinstance(event, ProgramLoaded):
            known = drugs_of.setdefault(event.channel, [])
            if event.spec.drug not in known:
                known.append(event.spec.drug)
        elif isinstance(event, BenchConfigured):
            scope = event.interlock_scope
    mixed = {c: d for c, d in drugs_of.items() if len(d) > 1}
    if mixed:
        said = "; ".join(f"channel {c}: {', '.join(d)}" for c, d in sorted(mixed.items()))
        raise ChannelsError(f"a channel gave more than one drug ({said}): it cannot be split")
    groups: dict[str, list[str]] = {}
    for channel in drugs_of:  # journal order: the drugs in the order they were loaded
        if channel in truths:
            groups.setdefault(drugs_of[channel][0], []).append(channel)
    if not groups:
        raise ChannelsError("no channel of these truths had a drug program")
    first = next(iter(groups))
    groups[first] += [c for c in truths if c not in drugs_of]

    def mine(channels: list[str]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            channel = _channel_of(event)
            if channel is None or channel in channels:
                out.append(event)
            elif (
                scope == "bench"
                and isinstance(event, CommandIssued)
                and isinstance(event.action, SetInterlock)
            ):  # the bench's one relay, named by whichever channel: it cuts these too
                action = replace(event.action, channel=channels[0])
                out.append(replace(event, action=action))
        return out

    return {
        drug: check_channels(
            {c: truths[c] for c in channels},
            library,
            mine(channels),
            to_pump_clock=to_pump_clock,
            until=until,
            tolerance_s=tolerance_s,
        )
        for drug, channels in groups.items()
    }


class _TotalBuilder(RecordBuilder):
    """The journal of every channel, folded into the record of one virtual pump that
    delivers the drug total (in the mL/h of the bench's program in force)."""

    def __init__(self, to_pump_clock: PumpClock | None) -> None:
        super().__init__(to_pump_clock)
        self.loads: dict[str, list[tuple[float, ActiveProgram | None]]] = {}
        self.running: dict[str, bool] = {}
        self.rates: dict[str, Decimal] = {}
        self.reads: dict[str, tuple[bool, Decimal, bool]] = {}  # running, rate, licensed
        self.scope = "bench"
        #: the first drug program's concentration: the virtual pump's mL/h are of it
        self.reference: ActiveProgram | None = None
        #: each relay move's commands, (first, last) journal times: one decision whose
        #: commands reach the pumps one after the other
        self.moves: list[tuple[float, float]] = []
        self.command_times: list[float] = []
        #: every pump command in journal order: (time, channel, kind, group, program),
        #: ``group`` the index of the run of commands it was journaled in (one decision's
        #: actions, journaled back to back: a request's, an emergency stop's, a relay
        #: move's), ``program`` the channel's program in force when it was journaled
        self.marks: list[Mark] = []
        self._in_move = False
        self._groups = 0
        self._in_group = False

    def add(self, event: Event) -> None:
        if isinstance(event, BenchConfigured):
            self.scope = event.interlock_scope
        if not isinstance(event, CommandIssued):
            self._in_move = self._in_group = False
        if isinstance(event, TimelineResumed) and self.to_pump_clock is not None:
            moved = self.to_pump_clock(event)
            if moved is not None:
                self.shift = moved
        t = event.now.clinical + self.shift
        if isinstance(event, ProgramLoaded):
            before = len(self.programs)
            RecordBuilder.add(self, event)  # the merged record's loads
            at, program = self.programs[before]
            self.loads.setdefault(event.channel, []).append((at, program))
            if program is not None:
                # the bench's record carries the load's limits at the reference strength:
                # its stretches are the drug total in the reference's mL/h
                self.reference = self.reference or program
                spec = replace(program.spec, concentration=self.reference.spec.concentration)
                self.programs[before] = (at, replace(program, spec=spec))
        elif isinstance(event, PatientAdmitted):
            RecordBuilder.add(self, event)
        elif isinstance(event, CommandIssued):
            self._channel_command(event, t)
        elif isinstance(event, ReadbackReceived):
            self._channel_readback(event, t)

    # -- drug amounts
    def _per_ml(self, channel: str, t: float) -> Fraction | None:
        """The channel's program's drug per mL at ``t`` (None: no drug program)."""
        loads = self.loads.get(channel, [])
        times = [at for at, _ in loads]
        i = bisect.bisect_right(times, t) - 1
        program = loads[i][1] if i >= 0 else None
        return program.amount_per_ml if program is not None else None

    def _reference(self) -> Fraction | None:
        """Drug per mL of the reference program (the bench's first drug program)."""
        return self.reference.amount_per_ml if self.reference is not None else None

    def _total(
        self, rates: Mapping[str, Decimal], running: Mapping[str, bool], t: float
    ) -> Decimal:
        """The total of the channels told to run, in the reference program's mL/h."""
        ref = self._reference()
        total = Fraction(0)
        for channel, rate in rates.items():
            if not running.get(channel, False):
                continue
            per_ml = self._per_ml(channel, t)
            factor = Fraction(1) if ref is None or per_ml is None else per_ml / ref
            total += Fraction(rate) * factor
        return Decimal(total.numerator) / Decimal(total.denominator)

    # -- the journal, projected
    def _channel_command(self, event: CommandIssued, t: float) -> None:
        action = event.action
        if isinstance(action, PrimePump):
            return  # a purge to waste: nothing the patient's record must explain
        self.command_times.append(t)
        if event.cause == "relay":
            if self._in_move and self.moves:
                self.moves[-1] = (self.moves[-1][0], t)
            else:
                self.moves.append((t, t))
        self._in_move = event.cause == "relay"
        if not self._in_group:
            self._groups += 1
            self._in_group = True
        loads = self.loads.get(action.channel, [])
        program = loads[-1][1] if loads else None
        self.marks.append((t, action.channel, action.kind, self._groups, program))
        was_running = any(self.running.values())
        before = self._total(self.rates, self.running, t)
        if isinstance(action, SetRate):
            self.rates[action.channel] = action.rate_ml_h
        elif isinstance(action, StartPump):
            self.running[action.channel] = True
        elif isinstance(action, StopPump):
            self.running[action.channel] = False
        elif isinstance(action, SetInterlock):
            if not action.pump_enabled:
                cut = list(self.running) if self.scope == "bench" else [action.channel]
                for channel in cut:
                    self.running[channel] = False
            self._emit(Command(t, "set_interlock", event.cause, enabled=action.pump_enabled))
            return
        now_running = any(self.running.values())
        after = self._total(self.rates, self.running, t)
        if now_running and (after != before or not was_running):
            self._emit(Command(t, "set_rate", event.cause, rate_ml_h=after))
        if now_running and not was_running:
            self._emit(Command(t, "start_pump", event.cause))
        elif was_running and not now_running:
            self._emit(Command(t, "stop_pump", event.cause))
        self.expected_running = now_running
        self.expected_rate = after

    def _emit(self, command: Command) -> None:
        self.commands.append(
            replace(
                command, loads_before=len(self.programs), admissions_before=len(self.admissions)
            )
        )

    def _channel_readback(self, event: ReadbackReceived, t: float) -> None:
        reading = event.reading
        channel = event.channel
        set_rate = self.rates.get(channel, Decimal(0))
        licensed = (
            reading.running
            and self.running.get(channel, False)
            and reading.set_rate_ml_h <= set_rate * (1 + READBACK_TOLERANCE)
        )
        self.reads[channel] = (reading.running, reading.set_rate_ml_h, licensed)
        if not reading.running:
            self.running[channel] = False  # stopped by itself or as told
        rates = {c: r for c, (run, r, _) in self.reads.items() if run}
        total = self._total(rates, dict.fromkeys(rates, True), t)
        ok = all(lic for run, _, lic in self.reads.values() if run)
        last = self.verified[-1] if self.verified else None
        if last is None or (last.rate_ml_h, last.licensed) != (total, total > 0 and ok):
            self.verified.append(
                Verified(
                    t,
                    total,
                    total > 0 and ok,
                    len(self.programs),
                    len(self.admissions),
                    len(self.commands),
                )
            )


def _summed_truth(
    truths: Mapping[str, Sequence[TruthEvent]],
    loads: Mapping[str, Sequence[tuple[float, ActiveProgram | None]]],
    reference: ActiveProgram | None,
    marks: Sequence[Mark] = (),
) -> list[TruthEvent]:
    """Every channel's delivered drug, summed, in the mL/h of the ``reference`` program's
    strength; one record per change of the total.

    On a virtual clock several records share an instant, and the truth logs do not say
    in which order the channels' records of one instant came: the journal does
    (``marks``, the commands in journal order). Each command of the instant takes its
    channel's next record if that record is the change it orders (a start from 0, a stop
    to 0, a new rate), and the stretch it begins is converted with the program in force
    where the command was journaled; the total is written after each decision's commands
    (journaled back to back: the start of B and the stop of A of a quick handover, an
    emergency stop's stop of every channel, are one change for the patient), while one
    decision after another at one instant are changes of their own (a start, then a rise:
    each judged, as the one-pump oracle judges them). Records no command explains (the
    pump's own, a power-up's) come after the commands, channel by channel, under the
    program of the stretch before them (a pump does not change its syringe by itself)."""
    per_channel = {c: ProgramsInForce(loads.get(c, ())) for c in truths}
    drugs = {p.drug for c in truths for p in per_channel[c].known()}
    if len(drugs) > 1:
        raise ChannelsError(
            f"channels give {', '.join(sorted(drugs))}: the total is judged per drug, and "
            "this record holds more than one"
        )

    def factor(program: ActiveProgram | None) -> Fraction:
        if program is None or reference is None:
            return Fraction(1)
        return program.amount_per_ml / reference.amount_per_ml

    segments = {
        c: [e for e in events if isinstance(e, TruthSegment)] for c, events in truths.items()
    }
    starts = {c: [s.start for s in segs] for c, segs in segments.items()}
    instants = sorted({s.start for segs in segments.values() for s in segs})
    commands_at: dict[float, list[tuple[str, str, int, ActiveProgram | None]]] = {}
    for t, channel, kind, group, program in marks:
        commands_at.setdefault(t, []).append((channel, kind, group, program))
    out: list[TruthEvent] = []
    last: float | None = None
    # each channel's current record: its rate and the program whose solution it runs
    current: dict[str, tuple[float, ActiveProgram | None]] = {c: (0.0, None) for c in segments}

    def emit(t: float) -> None:
        nonlocal last
        total = Fraction(0)
        for rate, program in current.values():
            if rate != 0:
                total += Fraction(Decimal(repr(rate))) * factor(program)
        value = float(total)
        if value != last:
            out.append(TruthSegment(t, value))
            last = value

    if instants:  # the record begins with each channel's first record (a power-up's)
        t0 = instants[0]
        for c, segs in segments.items():
            if segs and segs[0].start == t0:
                current[c] = (segs[0].rate_ml_h, per_channel[c].at(t0))
        emit(t0)
    for t in instants:
        pending = {
            c: segments[c][bisect.bisect_left(starts[c], t) : bisect.bisect_right(starts[c], t)]
            for c in segments
        }
        for c, records in pending.items():  # records that change nothing
            while records and records[0].rate_ml_h == current[c][0]:
                records.pop(0)
        commands = commands_at.get(t, [])
        for n, (c, kind, group, program) in enumerate(commands):
            waiting = pending.get(c)
            if waiting and _orders(kind, current[c][0], waiting[0].rate_ml_h):
                current[c] = (waiting.pop(0).rate_ml_h, program)
            following = commands[n + 1][2] if n + 1 < len(commands) else None
            if following != group:
                emit(t)
        for c, records in pending.items():
            for record in records:
                program = current[c][1] or per_channel[c].at(t)
                current[c] = (record.rate_ml_h, program)
                emit(t)
        emit(t)
    for c, events in truths.items():
        for e in events:
            if isinstance(e, TruthBolus):
                volume = Fraction(Decimal(repr(e.volume_ml))) * factor(per_channel[c].at(e.time))
                out.append(TruthBolus(e.time, float(volume)))
    out.sort(key=lambda e: e.start if isinstance(e, TruthSegment) else e.time)
    return out


def _orders(kind: str, before: float, after: float) -> bool:
    """Whether a command of ``kind`` orders the change of one pump from ``before`` to
    ``after`` (mL/h)."""
    if kind == "start_pump":
        return before == 0 and after > 0
    if kind in ("stop_pump", "set_interlock"):
        return before > 0 and after == 0
    if kind == "set_rate":
        return before > 0 and after > 0
    return False


def _collapse_moves(
    truth: Sequence[TruthEvent],
    moves: Sequence[tuple[float, float]],
    command_times: Sequence[float],
    tolerance_s: float,
) -> list[TruthEvent]:
    """The total as if each relay move had acted at once: of the changes between a move's
    first command and its last one's effect (``tolerance_s`` after it, and before the next
    command), only the last is kept. What the wire put between them (the incoming pump
    already up, the outgoing not yet down) is a transient of a few exchanges, counted by
    S1 and S3 on the raw total, and by the handover's own delivered-flow figures, but no
    titration or wean step of its own."""
    drop: set[int] = set()
    for first, last in moves:
        later = [t for t in command_times if t > last]
        after = later[0] if later else float("inf")  # the next command's change is its own
        inside = [
            i
            for i, e in enumerate(truth)
            if isinstance(e, TruthSegment)
            and first <= e.start <= last + tolerance_s
            and e.start < after
        ]
        drop.update(inside[:-1])
    return [e for i, e in enumerate(truth) if i not in drop]


def _falls(command: Command, record: SafetyRecord) -> bool:
    """Whether a projected command lowered the total the safety process had set."""
    before = Decimal(0)
    for c in record.commands:
        if c is command:
            break
        if c.action == "set_rate" and c.rate_ml_h is not None:
            before = c.rate_ml_h
        elif c.action == "stop_pump":
            before = Decimal(0)
    if command.action == "stop_pump":
        return before > 0
    return command.rate_ml_h is not None and command.rate_ml_h < before


def check_channels(
    truths: Mapping[str, Sequence[TruthEvent]],
    library: DrugLibrary,
    events: Iterable[Event],
    *,
    to_pump_clock: PumpClock | None = None,
    until: float | None = None,
    tolerance_s: float = 0.0,
) -> ChannelsReport:
    """Judge the channels' ground truth (``truths``: each channel's events, by name)
    against the safety journal's ``events``: the drug total by every rule, each channel
    by the rules that belong to one pump (see the module docstring)."""
    events = list(events)
    builder = _TotalBuilder(to_pump_clock)
    for event in events:
        builder.add(event)
    record = builder.record()
    summed = _summed_truth(truths, builder.loads, builder.reference, builder.marks)
    # S1, S3 and the protective rules on what really reached the patient
    raw = check_ground_truth(summed, library, record, until=until, tolerance_s=tolerance_s)
    # S4 and S5 on the total with each relay move as one change: its falls judged as
    # an operator's would be (a handover may not drop the total faster than the wean
    # rule), its rises not (they restore what ran: no titration)
    steps = _collapse_moves(summed, builder.moves, builder.command_times, tolerance_s)
    relay_falls = replace(
        record,
        commands=tuple(
            replace(c, cause="command")
            if c.cause == "relay" and c.action in ("set_rate", "stop_pump") and _falls(c, record)
            else c
            for c in record.commands
        ),
    )
    stepped = check_ground_truth(steps, library, relay_falls, until=until, tolerance_s=tolerance_s)
    violations = [v for v in raw.violations if v.rule not in STEP_RULES]
    violations += [v for v in stepped.violations if v.rule in STEP_RULES]
    reports: dict[str, TruthReport] = {}
    for channel, truth in truths.items():
        mine = [e for e in events if _channel_of(e) in (None, channel)]
        own = SafetyRecord.from_events(mine, to_pump_clock=to_pump_clock)
        report = check_ground_truth(truth, library, own, until=until, tolerance_s=tolerance_s)
        reports[channel] = report
        violations += [
            replace(v, message=f"channel {channel}: {v.message}")
            for v in report.violations
            if v.rule in CHANNEL_RULES
        ]
    total = replace(raw, violations=tuple(sorted(violations, key=lambda v: v.time)))
    return ChannelsReport(total, reports)


__all__ = ["CHANNEL_RULES", "ChannelsError", "ChannelsReport", "check_channels", "check_drugs"]
