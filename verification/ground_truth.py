"""The safety invariants, checked on what the pump really delivered (its ground truth).

Why a second check: the safety process judges every request and every read-back with its
own picture of the pump. A check that read that same picture would share its blind
spots (a lost acknowledgement, a pump that ran on after a lost stop, a bolus released by
a cleared occlusion). So this module looks at the simulated pump's own record of the flow
that reached the patient (``firmware_bridge.pump_model.GroundTruth``: ``SimulatedPump.truth``
in one process, or an emulator's ``--truth-log`` file) and asks, for the program in force
(library therapy, concentration, weight):

- ``hard_max``: the dose never went above the therapy's hard maximum (S1);
- ``cumulative_cap``: the drug given in any rolling cap window (boluses included) never
  went above the cap (S3);
- ``start_above_max_start``, ``step_rise``, ``window_rise``: every rise an operator's
  command caused stayed within the start and titration limits (S4);
- ``wean_too_fast``, ``stop_above_threshold``: every commanded fall of a gradual-wean
  drug stayed above the wean floor, and every commanded stop came from at or below the
  stop threshold (S5);
- ``protective_raise``, ``retry_above_set_rate``: the safety process's own actions
  (safety stop, emergency stop, read-back retry) never raised the flow above what an
  operator had set.

Which change had which cause comes from the safety journal: the ``command_issued`` event
journaled just before the change (with its ``cause``: ``command``, ``safety``, ``estop``,
``retry``, ``reconcile``); a change with no command is the pump's own doing (occlusion,
empty syringe, stall, power cycle) and is exempt from the titration and wean rules, as
are emergency stops and safety stops. The hard maximum and the cap apply to everything.

A restart is licensed by the rate the safety process *verified* running in the last
titration window (its read-backs, excluding rates it judged over-rate), as the kernel's
rule says (S4); the figure checked is still the delivered one.

Times are clinical seconds. ``tolerance_s`` absorbs the delay between the journal entry
and the pump acting on a real wire (0 on a virtual clock, where they coincide).

This module judges one pump's record. A bench of several channels is judged on the
patient's total of the drug by ``verification.channel_truth.check_channels``, which sums
the channels' ground truth in drug, projects every channel's command onto the total, and
runs this check on the sum (each pump's own rules on its own record); a relay handover's
delivered-flow figures are ``verification.handover``'s.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar

from firmware_bridge.pump_model import TruthBolus, TruthEvent, TruthSegment
from safety.journal_read import ProgramsInForce, read_safety_events
from safety.kernel.model import (
    CommandIssued,
    Event,
    PatientAdmitted,
    PrimePump,
    ProgramLimits,
    ProgramLoaded,
    ProgramSpec,
    PumpReading,
    ReadbackReceived,
    SetRate,
    StartPump,
    StopPump,
    TimelineResumed,
)
from safety.kernel.state import ActiveProgram, dose_per_amount_h, window_horizon_s
from safety.library import DrugLibrary, Therapy
from safety.rules import num

#: relative slack for comparisons of figures computed along different paths (float truth)
REL_EPS = 1e-9
#: the kernel's read-back tolerance: a verified rate within this of the set one is "the set one"
READBACK_TOLERANCE = Decimal("0.0005")

#: causes of rate changes an operator's order made (checked against S4 and S5)
COMMANDED = frozenset({"command"})
#: causes of the safety process's own protective actions (may only lower the flow)
PROTECTIVE = frozenset({"safety", "estop"})
#: re-sends of a rate an operator already set (may never exceed it)
RESENDS = frozenset({"retry", "reconcile"})

RULES = (
    "hard_max",
    "cumulative_cap",
    "start_above_max_start",
    "step_rise",
    "window_rise",
    "wean_too_fast",
    "stop_above_threshold",
    "protective_raise",
    "retry_above_set_rate",
)
#: rule groups the scenario runner's expectations refer to
TITRATION_RULES = frozenset({"start_above_max_start", "step_rise", "window_rise"})
WEAN_RULES = frozenset({"wean_too_fast", "stop_above_threshold"})


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Command:
    """A pump command the safety process journaled, just before sending it."""

    time: float
    action: str  # "set_rate", "start_pump", "stop_pump", "set_interlock"
    cause: str
    rate_ml_h: Decimal | None = None
    enabled: bool | None = None  # set_interlock only
    #: how many programs were loaded and new patients admitted before it in the journal
    #: (None: not known, then judged by time): on a virtual clock a load, an admission
    #: and the commands around them may share an instant
    loads_before: int | None = None
    admissions_before: int | None = None
    #: False when the read-backs journaled just before and just after it show the pump
    #: in the same state: a re-send of what the pump already ran, which explains no
    #: change (None: not known)
    changed: bool | None = None


@dataclass(frozen=True)
class Verified:
    """From ``start`` the safety process read the pump back as running ``rate_ml_h``
    (0 when stopped); ``licensed``: a rate it had set, not one it judged over-rate."""

    start: float
    rate_ml_h: Decimal
    licensed: bool
    loads_before: int | None = None  # as for ``Command``
    admissions_before: int | None = None
    #: how many commands the journal held before it: a read-back taken after a start
    #: at the same instant shows that start, and licenses nothing for it
    commands_before: int | None = None


@dataclass(frozen=True)
class Admission:
    """An operator's confirmed new patient (S16): fresh histories from here on."""

    time: float
    #: how many programs were loaded before it in the journal (None: not known, then a
    #: program loaded at the same instant is the new patient's)
    loads_before: int | None = None


#: For each ``TimelineResumed`` of a journal: the pump's clock minus the journal's from that
#: event on (until the next value), or None to keep the one in force. Before the first value
#: the two clocks are one. Whoever ran the bench knows it: after a reboot the safety
#: process's clock source restarts near zero while the pump's runs on, and the timeline's
#: offset (journaled in the event) may credit less than the real gap.
PumpClock = Callable[[TimelineResumed], float | None]


@dataclass(frozen=True)
class SafetyRecord:
    """What the checks need from the safety journal: programs, commands, read-backs and
    the confirmed new patients, every time on the pump's clock."""

    #: (when, the drug program loaded then; None for a test fluid, which has no drug)
    programs: tuple[tuple[float, ActiveProgram | None], ...] = ()
    commands: tuple[Command, ...] = ()
    verified: tuple[Verified, ...] = ()
    #: where an operator's confirmed new patient started fresh histories (S16)
    admissions: tuple[Admission, ...] = ()

    @classmethod
    def from_events(
        cls, events: Iterable[Event], *, to_pump_clock: PumpClock | None = None
    ) -> SafetyRecord:
        """The record of a journal's events; ``to_pump_clock`` puts the journal's times
        (the patient's timeline) on the pump's clock where they differ (after a reboot)."""
        builder = RecordBuilder(to_pump_clock)
        for event in events:
            builder.add(event)
        return builder.record()

    @classmethod
    def from_journal(
        cls, path: str | Path, *, to_pump_clock: PumpClock | None = None
    ) -> SafetyRecord:
        """Read a safety journal (read-only: safe on a live one)."""
        return cls.from_events(read_safety_events(path), to_pump_clock=to_pump_clock)


class RecordBuilder:
    """Folds a safety journal's events, one at a time, into its ``SafetyRecord``: a
    bench that judges its pump after every step reads only what its journal gained."""

    def __init__(self, to_pump_clock: PumpClock | None = None) -> None:
        self.to_pump_clock = to_pump_clock
        self.programs: list[tuple[float, ActiveProgram | None]] = []
        self.commands: list[Command] = []
        self.verified: list[Verified] = []
        self.admissions: list[Admission] = []
        self.expected_rate = Decimal(0)
        self.expected_running = False
        self.shift = 0.0
        # the pump's state as last read back, and the commands journaled since
        self.last_read: tuple[bool, Decimal] | None = None
        self.unread: list[int] = []

    def record(self) -> SafetyRecord:
        return SafetyRecord(
            tuple(self.programs),
            tuple(self.commands),
            tuple(self.verified),
            tuple(self.admissions),
        )

    def add(self, event: Event) -> None:
        if isinstance(event, TimelineResumed) and self.to_pump_clock is not None:
            moved = self.to_pump_clock(event)
            if moved is not None:
                self.shift = moved
        t = event.now.clinical + self.shift
        if isinstance(event, ProgramLoaded):
            limits = event.limits
            loaded = (
                ActiveProgram(event.spec, limits, t) if isinstance(limits, ProgramLimits) else None
            )
            self.programs.append((t, loaded))
        elif isinstance(event, PatientAdmitted):
            if event.how == "admitted":
                self.admissions.append(Admission(t, len(self.programs)))
        elif isinstance(event, CommandIssued):
            self._command(event, t)
        elif isinstance(event, ReadbackReceived):
            self._readback(event.reading, t)

    def _command(self, event: CommandIssued, t: float) -> None:
        action = event.action
        command = Command(
            t,
            action.kind,
            event.cause,
            loads_before=len(self.programs),
            admissions_before=len(self.admissions),
        )
        if isinstance(action, SetRate):
            command = replace(command, rate_ml_h=action.rate_ml_h)
            self.expected_rate = action.rate_ml_h
        elif isinstance(action, StartPump):
            self.expected_running = True
        elif isinstance(action, StopPump):
            self.expected_running = False
        elif isinstance(action, PrimePump):
            return  # a purge to waste: nothing the patient's record must explain
        else:
            command = replace(command, enabled=action.pump_enabled)
        self.commands.append(command)
        self.unread.append(len(self.commands) - 1)

    def _readback(self, reading: PumpReading, t: float) -> None:
        state = (reading.running, reading.set_rate_ml_h)
        if self.last_read is not None:
            for n in self.unread:
                self.commands[n] = replace(self.commands[n], changed=state != self.last_read)
        self.last_read, self.unread = state, []
        rate = reading.set_rate_ml_h if reading.running else Decimal(0)
        licensed = (
            reading.running
            and self.expected_running
            and rate <= self.expected_rate * (1 + READBACK_TOLERANCE)
        )
        if not reading.running:
            self.expected_running = False  # the pump stopped (by itself or as told)
        last = self.verified[-1] if self.verified else None
        if last is None or (last.rate_ml_h, last.licensed) != (rate, licensed):
            self.verified.append(
                Verified(
                    t,
                    rate,
                    licensed,
                    len(self.programs),
                    len(self.admissions),
                    len(self.commands),
                )
            )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which rule, when (clinical s), and what happened."""

    rule: str
    time: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "time_s": self.time, "message": self.message}


@dataclass(frozen=True)
class Change:
    """A change of the delivered flow and what caused it."""

    time: float
    from_ml_h: float
    to_ml_h: float
    from_dose: Fraction | None
    to_dose: Fraction | None
    unit: str | None
    cause: str  # a journaled command's cause, "pump" (no command), or "prior"
    kind: str  # "start", "rise", "fall", "stop"

    def to_json(self) -> dict[str, Any]:
        return {
            "time_s": self.time,
            "from_ml_h": self.from_ml_h,
            "to_ml_h": self.to_ml_h,
            "from_dose": None if self.from_dose is None else float(self.from_dose),
            "to_dose": None if self.to_dose is None else float(self.to_dose),
            "unit": self.unit,
            "cause": self.cause,
            "kind": self.kind,
        }


@dataclass
class TruthSummary:
    """Figures for people (and the scenario runner's expectations)."""

    start: float = 0.0
    end: float = 0.0
    program: str | None = None
    dose_unit: str | None = None
    max_rate_ml_h: float = 0.0
    max_rate_at: float | None = None
    max_dose: float | None = None
    max_dose_at: float | None = None
    volume_ml: float = 0.0
    bolus_count: int = 0
    bolus_ml: float = 0.0
    drug_amount: float | None = None  # in ``amount_unit``
    amount_unit: str | None = None
    running_s: float = 0.0
    above_soft_max_s: float = 0.0
    below_soft_min_s: float = 0.0  # running, but below the soft minimum
    cap: str | None = None  # e.g. "68 mg per 24 h"
    cap_peak: float | None = None  # highest amount in any cap window, in the cap's unit
    cap_peak_at: float | None = None  # end of that window
    changes_by_cause: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class TruthReport:
    violations: tuple[Violation, ...]
    summary: TruthSummary
    changes: tuple[Change, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self, rules: Iterable[str]) -> tuple[Violation, ...]:
        wanted = frozenset(rules)
        return tuple(v for v in self.violations if v.rule in wanted)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": [v.to_json() for v in self.violations],
            "summary": self.summary.to_json(),
            "changes": [c.to_json() for c in self.changes],
        }


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class _Seg:
    """A stretch of the record at one rate, under one program and one patient (stretches
    are cut where a program is loaded while the pump runs on)."""

    start: float
    end: float
    rate_ml_h: float
    origin: str  # "prior" (before this pump's record: counted, never judged) or "live"
    program: ActiveProgram | None
    cut: bool = False  # begins where a program was loaded while the pump ran on
    patient: int = 0  # how many new patients were admitted before it

    @cached_property
    def drug(self) -> str | None:
        return self.program.drug if self.program is not None else None

    @cached_property
    def amount_h(self) -> Fraction:
        """Drug amount (mcg or units) per hour: the same figure whatever the concentration."""
        if self.program is None or self.rate_ml_h <= 0:
            return Fraction(0)
        return Fraction(Decimal(repr(self.rate_ml_h))) * self.program.amount_per_ml

    def amount_of(self, drug: str, patient: int) -> Fraction:
        """This stretch's rate of ``drug`` for ``patient`` (0 for another drug or patient)."""
        return self.amount_h if self.drug == drug and self.patient == patient else Fraction(0)


@dataclass(frozen=True)
class _LimitSet:
    """One limit set a drug is held to for one patient, and from when until when (S16):
    a program's journaled limits, in force while they are the drug's latest and then
    until their longest window has passed (``window_horizon_s``), as the kernel keeps
    them."""

    limits: ProgramLimits
    since: float
    until: float  # inf while the drug's latest
    load: int  # the index of the program whose load began it (``ProgramsInForce``)
    patient: int

    @cached_property
    def per_amount_h(self) -> Fraction:
        return dose_per_amount_h(self.limits)

    @property
    def therapy(self) -> Therapy:
        return self.limits.therapy

    @property
    def unit(self) -> str:
        return self.therapy.dose_unit

    def dose(self, amount_h: Fraction) -> Fraction:
        return amount_h * self.per_amount_h

    def note(self, own: ProgramLimits | None) -> str:
        if self.limits == own:
            return ""
        return f" (under the limits of {self.limits.what}, in force until t={self.until:.0f} s)"


class _Record:
    """The record being judged: its stretches, each with the program and patient it ran
    under, and the look-ups the rules make (one drug's delivery to one patient in a
    window, its licensed verified rates, its limit sets in force)."""

    def __init__(
        self,
        segs: list[_Seg],
        made_by: Sequence[Command | None],
        boluses: Sequence[TruthBolus],
        programs: ProgramsInForce,
        record: SafetyRecord,
        *,
        journaled: bool,
    ) -> None:
        self.programs = programs
        #: the programs are the journal's (not one given to judge by): commands and
        #: read-backs name theirs by their place in the journal
        self.journaled = journaled
        self.verified = record.verified
        self.admissions = sorted(record.admissions, key=lambda a: a.time)
        self.admission_times = [a.time for a in self.admissions]
        self.load_of = {id(p): n for n, p in enumerate(programs.programs)}
        #: the load that began the limit set each load's program is held to as its own
        self.own_set: dict[int, int] = {}
        self.sets = self._limit_sets()
        self.segs = self._placed(segs, made_by)
        self.starts = [s.start for s in self.segs]
        self.boluses = [
            (b.time, b.volume_ml, programs.at(b.time), self.patient_at(b.time)) for b in boluses
        ]

    # ------------------------------------------------------------------ where things are
    def patient_at(self, t: float) -> int:
        """The patient in care at ``t`` (how many were admitted at or before it)."""
        return bisect.bisect_right(self.admission_times, t)

    def _patient_of_load(self, n: int) -> int:
        """The patient a program loaded n-th was loaded for."""
        t = self.programs.times[n]
        admitted = 0
        for a in self.admissions:
            if self.journaled and a.loads_before is not None:
                admitted += a.loads_before <= n
            else:
                admitted += a.time <= t
        return admitted

    def _place(self, what: Command | Verified, t: float) -> tuple[ActiveProgram | None, int]:
        """The program in force and the patient in care where ``what`` was journaled."""
        n, p = what.loads_before, what.admissions_before
        if not self.journaled or n is None or n > len(self.programs.programs):
            program = self.programs.at(t)
        else:
            program = self.programs.programs[n - 1] if n else None
        return program, self.patient_at(t) if p is None else p

    def _placed(self, segs: list[_Seg], made_by: Sequence[Command | None]) -> list[_Seg]:
        """Each stretch with the program whose solution ran in it and the patient it
        reached: where the command that made it was journaled; for the pump's own
        change (or a stretch that goes on), the one before it (a pump does not change
        its syringe by itself); a stretch cut by a load, that program's; the first, the
        program loaded at or before its start."""
        out: list[_Seg] = []
        for i, seg in enumerate(segs):
            command = made_by[i]
            if seg.cut:
                n = self.load_of.get(id(seg.program))
                patient = self._patient_of_load(n) if n is not None else self.patient_at(seg.start)
                program = seg.program
            elif command is not None:
                program, patient = self._place(command, seg.start)
            elif out:
                program, patient = out[-1].program, out[-1].patient
            else:
                program, patient = seg.program, self.patient_at(seg.start)
            out.append(replace(seg, program=program, patient=patient))
        return out

    def _limit_sets(self) -> dict[str, list[_LimitSet]]:
        """Every drug's limit sets over the record: a program of the drug with other
        limits than its latest starts a new set and leaves the old one in force for its
        longest window; a confirmed new patient ends every set (fresh histories, fresh
        limits)."""
        programs = self.programs
        marks: list[tuple[float, float, ActiveProgram | None]] = []
        for a in self.admissions:
            journal = a.loads_before is not None and self.journaled
            marks.append((a.time, (a.loads_before or 0) - 0.5 if journal else -1.0, None))
        loads = zip(programs.times, programs.programs, strict=True)
        marks += [(t, n, p) for n, (t, p) in enumerate(loads) if p is not None]
        marks.sort(key=lambda m: (m[0], m[1]))
        current: dict[str, _LimitSet] = {}
        sets: dict[str, list[_LimitSet]] = {}
        patient = 0
        for t, place, program in marks:
            if program is None:  # a new patient: every set ends here
                for drug, latest in current.items():
                    sets.setdefault(drug, []).append(replace(latest, until=t))
                current = {}
                for drug, spans in sets.items():
                    sets[drug] = [replace(s, until=min(s.until, t)) for s in spans]
                patient += 1
                continue
            drug, limits = program.drug, program.limits
            old = current.get(drug)
            if old is not None and old.limits != limits:
                ends = t + window_horizon_s(old.limits)
                sets.setdefault(drug, []).append(replace(old, until=ends))
            if old is None or old.limits != limits:
                current[drug] = _LimitSet(limits, t, math.inf, int(place), patient)
            self.own_set[int(place)] = current[drug].load
        for drug, latest in current.items():
            sets.setdefault(drug, []).append(latest)
        return sets

    # ------------------------------------------------------------------ look-ups
    def sets_at(self, t: float, program: ActiveProgram, patient: int) -> list[_LimitSet]:
        """The limit sets of the program's drug in force at ``t`` for ``patient`` (loaded
        no later than the program: on a virtual clock the next load may share the
        instant), the program's own first."""
        load = self.load_of.get(id(program), len(self.programs.programs))
        own = self.own_set.get(load)
        found = [
            s
            for s in self.sets.get(program.drug, ())
            if s.load <= load and s.patient == patient and s.since <= t < s.until
        ]
        mine = [s for s in found if s.load == own] or [
            _LimitSet(program.limits, t, math.inf, load, patient)
        ]
        return [mine[0], *(s for s in found if s.load != own)]

    def window(self, before: int, since: float, until: float) -> list[_Seg]:
        """The stretches among the first ``before`` in force at some instant of
        [since, until] (the kernel's rule)."""
        lo = max(0, bisect.bisect_right(self.starts, since) - 1)
        hi = min(before, bisect.bisect_right(self.starts, until))
        return [s for s in self.segs[lo:hi] if s.end > since]

    def licensed(
        self, drug: str, patient: int, since: float, until: float, command: int | None
    ) -> list[Fraction]:
        """Drug rates of ``drug`` the safety process verified running (at a rate it had
        set) for ``patient`` at some instant of [since, until], read before the
        ``command``-th command: what licenses a restart by that command."""
        out = []
        for v in in_force(self.verified, since, until):
            if not _read_before(v, command):
                continue
            program, where = self._place(v, v.start)
            ours = program is not None and program.drug == drug and where == patient
            if ours and v.licensed and v.rate_ml_h > 0:
                assert program is not None
                out.append(Fraction(v.rate_ml_h) * program.amount_per_ml)
        return out

    def verified_amount(self, drug: str, patient: int, t: float, command: int | None) -> Fraction:
        """The drug rate last verified running at or before ``t`` and before the
        ``command``-th command (0: stopped)."""
        last: Verified | None = None
        for v in self.verified:
            if v.start > t or not _read_before(v, command):
                break
            last = v
        if last is None:
            return Fraction(0)
        program, where = self._place(last, last.start)
        if program is None or program.drug != drug or where != patient:
            return Fraction(0)
        return Fraction(last.rate_ml_h) * program.amount_per_ml


def _read_before(v: Verified, command: int | None) -> bool:
    """Whether a read-back was journaled before the ``command``-th command (unknown: yes)."""
    return command is None or v.commands_before is None or v.commands_before <= command


def _timeline(
    truth: Sequence[TruthEvent],
    prior: Sequence[TruthSegment],
    until: float,
    programs: ProgramsInForce,
) -> list[_Seg]:
    raw: list[tuple[float, float, str]] = [(p.start, p.rate_ml_h, "prior") for p in prior]
    live = [e for e in truth if isinstance(e, TruthSegment)]
    handover = live[0].start if live else math.inf
    raw = [r for r in raw if r[0] <= handover]  # a prior stop at the handover stays
    raw += [(e.start, e.rate_ml_h, "live") for e in live]
    raw.sort(key=lambda r: r[0])  # stable: records of one instant keep their order
    # a record that lasted 0 s is kept: the change into it and out of it are both judged
    # (a start at 8 and a rise at the same instant must not look like a start at 10)
    loads = programs.times
    segs: list[_Seg] = []
    for i, (start, rate, origin) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else max(until, start)
        # cut where a program is loaded: each part is converted with its own program
        cuts = [t for t in loads[bisect.bisect_right(loads, start) :] if t < end]
        edges = [start, *cuts, end]
        for n, (a, b) in enumerate(itertools.pairwise(edges)):
            segs.append(_Seg(a, b, rate, origin, programs.at(a), cut=n > 0))
    return segs


def check_ground_truth(
    truth: Sequence[TruthEvent],
    library: DrugLibrary,
    record: SafetyRecord | None = None,
    *,
    program: ProgramSpec | None = None,
    prior: Sequence[TruthSegment] = (),
    until: float | None = None,
    tolerance_s: float = 0.0,
) -> TruthReport:
    """Check the invariants on ``truth`` (events of one pump, in order).

    ``truth`` is what reached the patient (the pump's ground truth), or the rate the
    pump's plunger ran (``TruthSegment`` records only): under an occlusion the two differ,
    and a titration judged on what was delivered would not see a rise made while the line
    was blocked. ``record``: the safety journal's programs, commands, read-backs and new
    patients, on the pump's clock (``SafetyRecord.from_events(..., to_pump_clock=...)``);
    without it every change counts as the pump's and only the hard maximum and the cap
    are checked. ``program``: the program to judge by (default: each one the journal
    loaded, from when it was loaded). ``prior``: delivery before this pump's record began
    (e.g. a seeded history), counted in the cap and in the windows but never judged
    itself. ``until``: end of the record (default: its last event).

    Per patient and drug, as the kernel keeps them (S16): each stretch is converted to a
    drug amount per hour with the program in force then (so a concentration change is
    counted right), windows and caps count only the same drug's delivery to the same
    patient (a confirmed new patient starts fresh), and every rule is checked under every
    limit set in force (the program's own, and an earlier program's of the drug until its
    longest window has passed), each in its own dose unit.
    """
    record = record or SafetyRecord()
    programs = (
        ProgramsInForce.of_spec(library, program)
        if program is not None
        else ProgramsInForce(record.programs)
    )
    notes: list[str] = list(programs.problems)
    last_t = max([e.start if isinstance(e, TruthSegment) else e.time for e in truth] or [0.0])
    end = last_t if until is None else max(until, last_t)
    raw = _timeline(truth, prior, end, programs)
    violations: list[Violation] = []
    changes: list[Change] = []
    commands = sorted(record.commands, key=lambda c: c.time)
    command_times = [c.time for c in commands]

    def cause_of(before: _Seg, after: _Seg, limit: int) -> tuple[str, int | None]:
        """What made the change into ``after``: a command journaled near it (before the
        ``limit``-th command, which made a later change), or the pump itself."""
        if after.origin == "prior":
            return "prior", None
        t = after.start
        lo = bisect.bisect_left(command_times, t - tolerance_s - 1e-6)
        hi = min(limit, bisect.bisect_right(command_times, t + 1e-6))
        window = [(n, commands[n]) for n in range(lo, hi)]
        if after.rate_ml_h > 0 and before.rate_ml_h <= 0:
            wanted: tuple[str, ...] = ("start_pump", "set_rate")
        elif after.rate_ml_h > 0:
            wanted = ("set_rate",)
        else:
            wanted = ("stop_pump", "set_interlock")
        for kind in wanted:
            found = [
                (n, c)
                for n, c in window
                if c.action == kind and c.enabled is not True and c.changed is not False
            ]
            if kind == "set_rate":
                # a rate command explains a change to the rate it set, else one toward
                # it (on a real wire the pump may round it or ramp to it), else one in
                # the direction it ordered: a pump that overshot a commanded rise or
                # fell past a commanded wean step made the operator's change larger
                # than ordered, and the rules judge the delivered figure (taking it
                # for the pump's own would exempt it from S4 and S5). A change the
                # other way at the command's time is not the command's doing.
                exact = [(n, c) for n, c in found if _ml_h(c) == after.rate_ml_h]
                near = [(n, c) for n, c in found if _toward(c, before.rate_ml_h, after.rate_ml_h)]
                along = [(n, c) for n, c in found if _along(c, before.rate_ml_h, after.rate_ml_h)]
                found = exact or near or along
            if found:
                n, c = found[-1]
                return c.cause, n
        return "pump", None

    # -- each change attributed to a command, or to the pump itself. The pump acts on
    # commands in the order they were journaled, so later changes are matched first and
    # each to a command journaled before the one the next change was matched to: on a
    # virtual clock, a command issued after a pump's own change at the same instant
    # cannot be taken for its cause
    causes = ["prior" if s.origin == "prior" else "pump" for s in raw]
    made_by: list[Command | None] = [None] * len(raw)
    made_at: list[int] = [0] * len(raw)  # the index of that command
    limit = len(commands)
    for i in reversed(range(1, len(raw))):
        before, after = raw[i - 1], raw[i]
        if after.rate_ml_h != before.rate_ml_h:
            causes[i], n = cause_of(before, after, limit)
            if n is not None:
                made_by[i], made_at[i], limit = commands[n], n, n
    for i in range(1, len(raw)):
        if raw[i].rate_ml_h == raw[i - 1].rate_ml_h:
            causes[i] = causes[i - 1]  # the same stretch (a program loaded meanwhile)
    boluses = [e for e in truth if isinstance(e, TruthBolus)]
    rec = _Record(raw, made_by, boluses, programs, record, journaled=program is None)
    segs = rec.segs

    # -- the rules on each change
    for i in range(1, len(segs)):
        before, after = segs[i - 1], segs[i]
        if after.rate_ml_h == before.rate_ml_h:
            continue
        t = after.start
        cause, command = causes[i], made_by[i]
        prog = after.program
        if after.rate_ml_h > before.rate_ml_h:
            kind = "start" if before.rate_ml_h <= 0 else "rise"
        else:
            kind = "stop" if after.rate_ml_h <= 0 else "fall"
        if prog is None:
            changes.append(
                Change(t, before.rate_ml_h, after.rate_ml_h, None, None, None, cause, kind)
            )
            continue
        patient = after.patient
        a0, a1 = before.amount_of(prog.drug, patient), after.amount_h
        d0, d1 = prog.dose_of_amount_rate(a0), prog.dose_of_amount_rate(a1)
        changes.append(Change(t, before.rate_ml_h, after.rate_ml_h, d0, d1, prog.unit, cause, kind))
        if cause in ("pump", "prior"):
            continue
        if cause in PROTECTIVE:
            if after.rate_ml_h > before.rate_ml_h:
                violations.append(
                    Violation(
                        "protective_raise",
                        t,
                        f"a {cause} action raised the flow from {before.rate_ml_h:g} to "
                        f"{after.rate_ml_h:g} mL/h",
                    )
                )
            continue
        if cause in RESENDS:
            set_rate = _last_set_rate(commands[: made_at[i]])
            if set_rate is not None and Fraction(Decimal(repr(after.rate_ml_h))) > Fraction(
                set_rate
            ) * (1 + Fraction(READBACK_TOLERANCE)):
                violations.append(
                    Violation(
                        "retry_above_set_rate",
                        t,
                        f"a {cause} re-send ran {after.rate_ml_h:g} mL/h, above the "
                        f"{num(set_rate)} mL/h an operator set",
                    )
                )
            continue
        if cause not in COMMANDED:
            continue
        ref = command.time if command is not None else t
        if kind == "start" and command is not None and command.action == "set_rate":
            # a rise sent while the line was occluded (delivered 0, the plunger moving)
            a0 = rec.verified_amount(prog.drug, patient, ref, made_at[i])
            kind = "rise" if a0 > 0 else "start"
        judged: set[str] = set()
        at = made_at[i] if command is not None else None
        for limit_set in rec.sets_at(t, prog, patient):
            for v in _rise_and_fall_rules(
                limit_set, prog, kind, a0, a1, i, t, (ref, at), patient, rec, tolerance_s
            ):
                if v.rule not in judged:  # the first limit set that it breaks, named
                    judged.add(v.rule)
                    violations.append(v)

    # -- hard maximum, on every stretch of delivery, under every limit set in force
    for i, seg in enumerate(segs):
        prog = seg.program
        if prog is None or seg.origin == "prior" or seg.rate_ml_h <= 0:
            continue
        # a rate a command set is judged even if it ran for 0 s (stopped by the read-back
        # at the same instant); the pump's own doing once it lasts
        if seg.end <= seg.start and causes[i] == "pump":
            continue
        for limit_set in rec.sets_at(seg.start, prog, seg.patient):
            dose = limit_set.dose(seg.amount_h)
            hard = Fraction(limit_set.therapy.hard_max.value)
            if dose > hard * (1 + Fraction(REL_EPS)):
                unit = limit_set.unit
                violations.append(
                    Violation(
                        "hard_max",
                        seg.start,
                        f"{seg.rate_ml_h:g} mL/h = {num(dose)} {unit} delivered for "
                        f"{seg.end - seg.start:.0f} s, above the hard maximum {num(hard)} "
                        f"{unit}{limit_set.note(prog.limits)}",
                    )
                )
                break

    summary = _summary(segs, rec, changes, notes)
    violations += _caps(rec, end, summary)
    violations.sort(key=lambda v: v.time)
    return TruthReport(tuple(violations), summary, tuple(changes))


def _ml_h(command: Command) -> float | None:
    return float(command.rate_ml_h) if command.rate_ml_h is not None else None


def _toward(command: Command, before: float, after: float) -> bool:
    target = _ml_h(command)
    return target is not None and abs(after - target) < abs(before - target)


def _along(command: Command, before: float, after: float) -> bool:
    """Whether a change from ``before`` to ``after`` went the way the command ordered
    (up for a higher rate, down for a lower one), whatever rate it reached."""
    target = _ml_h(command)
    return target is not None and (target - before) * (after - before) > 0


def _last_set_rate(commands: Sequence[Command]) -> Decimal | None:
    """The rate an operator's commands last set among ``commands``: one that the pump's
    read-backs show did not take effect (lost on the wire, its outcome reconciled as not
    applied) leaves the one before it."""
    for c in reversed(commands):
        if c.action == "set_rate" and c.cause == "command" and c.changed is not False:
            return c.rate_ml_h
    return None


def _rise_and_fall_rules(
    limits: _LimitSet,
    prog: ActiveProgram,
    kind: str,
    a0: Fraction,
    a1: Fraction,
    index: int,
    t: float,
    made: tuple[float, int | None],
    patient: int,
    rec: _Record,
    tolerance_s: float,
) -> list[Violation]:
    """S4 and S5 for one change under one limit set, on drug rates (``a0`` -> ``a1``, an
    amount per hour) shown in the set's own dose unit; the windows hold the same drug's
    delivery to the same patient. ``made``: when the command that made it was journaled,
    and its index (read-backs before it license a start)."""
    ref, command = made
    therapy = limits.therapy
    unit = limits.unit
    note = limits.note(prog.limits)
    drug = prog.drug
    titration, wean = therapy.titration, therapy.wean
    slack = 1 + Fraction(REL_EPS)
    d0, d1 = limits.dose(a0), limits.dose(a1)
    out: list[Violation] = []
    if kind == "start":
        window = float(titration.window_min.value) * 60
        licensed = [limits.dose(a) for a in rec.licensed(drug, patient, ref - window, ref, command)]
        bound = max([Fraction(therapy.max_start.value), *licensed])
        if d1 > bound * slack:
            out.append(
                Violation(
                    "start_above_max_start",
                    t,
                    f"started at {num(d1)} {unit}, above the largest allowed start "
                    f"{num(bound)} {unit} (max start {num(therapy.max_start.value)}, or the "
                    f"rate verified running in the last titration window){note}",
                )
            )
        return out
    if kind == "rise":
        step = min(
            Fraction(titration.max_step_rise.value),
            Fraction(titration.max_step_rise_fraction.value) * d0,
        )
        if d1 - d0 > step * slack:
            out.append(
                Violation(
                    "step_rise",
                    t,
                    f"rose {num(d0)} -> {num(d1)} {unit} (+{num(d1 - d0)}) in one step; at "
                    f"most +{num(step)} {unit}{note}",
                )
            )
        window = float(titration.window_min.value) * 60
        amounts = [
            s.amount_of(drug, patient) for s in rec.window(index, t - window + tolerance_s, t)
        ]
        base = min((limits.dose(a) for a in amounts if a > 0), default=d0)
        bound = min(
            Fraction(titration.max_window_rise.value),
            Fraction(titration.max_window_rise_fraction.value) * base,
        )
        if d1 - base > bound * slack:
            out.append(
                Violation(
                    "window_rise",
                    t,
                    f"rose to {num(d1)} {unit}, +{num(d1 - base)} over the lowest dose of the "
                    f"last {num(titration.window_min.value)} min ({num(base)} {unit}); at most "
                    f"+{num(bound)} {unit} per window{note}",
                )
            )
        return out
    if not wean.gradual_wean_only.value:
        return out
    assert wean.max_fall_fraction is not None and wean.window_min is not None
    assert wean.stop_threshold is not None
    if kind == "stop":
        threshold = Fraction(wean.stop_threshold.value)
        if d0 > threshold * slack:
            out.append(
                Violation(
                    "stop_above_threshold",
                    t,
                    f"stopped from {num(d0)} {unit}, above the stop threshold "
                    f"{num(threshold)} {unit} (a gradual-wean drug is weaned first){note}",
                )
            )
        return out
    window = float(wean.window_min.value) * 60
    highest = max(
        (
            limits.dose(s.amount_of(drug, patient))
            for s in rec.window(index, t - window + tolerance_s, t)
        ),
        default=d0,
    )
    floor = (1 - Fraction(wean.max_fall_fraction.value)) * highest
    if d1 * slack < floor:
        pct = num(Fraction(wean.max_fall_fraction.value) * 100)
        out.append(
            Violation(
                "wean_too_fast",
                t,
                f"fell to {num(d1)} {unit}: more than {pct} % below the highest dose of the "
                f"last {num(wean.window_min.value)} min ({num(highest)} {unit}); the floor "
                f"was {num(floor)} {unit}{note}",
            )
        )
    return out


class _Started(Protocol):
    @property
    def start(self) -> float: ...


S = TypeVar("S", bound=_Started)


def in_force(changes: Sequence[S], since: float, until: float) -> list[S]:
    """The changes in force at some instant of [since, until], each lasting until the
    next one starts (the kernel's rule, by a plain walk: the reference that oracles and
    property tests compare against, never the kernel's own look-up)."""
    out = []
    for i, change in enumerate(changes):
        end = changes[i + 1].start if i + 1 < len(changes) else math.inf
        if change.start <= until and end > since:
            out.append(change)
    return out


def _amount_unit(prog: ActiveProgram) -> tuple[str, Fraction]:
    """The unit drug amounts are shown in (the cap's, else mcg or units) and its size."""
    cap = prog.cap
    if cap is not None:
        return cap.unit.value, cap.unit.base_factor
    units = prog.therapy.unit.amount.value == "units"
    return ("units" if units else "mcg"), Fraction(1)


def _summary(
    segs: Sequence[_Seg],
    rec: _Record,
    changes: Sequence[Change],
    notes: list[str],
) -> TruthSummary:
    s = TruthSummary(notes=notes)
    live = [x for x in segs if x.origin != "prior"]
    if live:
        s.start, s.end = live[0].start, live[-1].end
    amounts: dict[str, Fraction] = {}
    amount_known = True
    last = None
    for seg in live:
        span = seg.end - seg.start
        volume = seg.rate_ml_h * span / 3600.0
        s.volume_ml += volume
        if seg.rate_ml_h > s.max_rate_ml_h:
            s.max_rate_ml_h, s.max_rate_at = seg.rate_ml_h, seg.start
        if seg.rate_ml_h > 0:
            s.running_s += span
        prog = seg.program
        if prog is None:
            amount_known = amount_known and seg.rate_ml_h == 0
            continue
        last = prog
        given = Fraction(Decimal(repr(volume))) * prog.amount_per_ml
        amounts[prog.drug] = amounts.get(prog.drug, Fraction(0)) + given
        dose = prog.dose(Decimal(repr(seg.rate_ml_h)))
        if s.max_dose is None or float(dose) > s.max_dose:
            s.max_dose, s.max_dose_at = float(dose), seg.start
        therapy = prog.therapy
        if dose > Fraction(therapy.soft_max.value):
            s.above_soft_max_s += span
        if 0 < dose < Fraction(therapy.soft_min.value):
            s.below_soft_min_s += span
    for _at, volume_ml, prog, _patient in rec.boluses:
        s.bolus_count += 1
        s.bolus_ml += volume_ml
        s.volume_ml += volume_ml
        if prog is not None:
            given = Fraction(Decimal(repr(volume_ml))) * prog.amount_per_ml
            amounts[prog.drug] = amounts.get(prog.drug, Fraction(0)) + given
    if last is None:
        progs = rec.programs.known()
        last = progs[-1] if progs else None
    if last is not None:
        s.program = last.what
        s.dose_unit = last.unit
        unit, factor = _amount_unit(last)
        s.amount_unit = unit
        amount = amounts.get(last.drug, Fraction(0))
        s.drug_amount = float(amount / factor) if amount_known else None
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.cause] = counts.get(c.cause, 0) + 1
    s.changes_by_cause = counts
    return s


class _Given:
    """One drug's delivery to one patient as a running total: the amount given by any
    instant (stretches and boluses), so any window's amount is two look-ups."""

    def __init__(self, rec: _Record, drug: str, patient: int) -> None:
        self.rec = rec
        segs = rec.segs
        self.rates = [float(s.amount_of(drug, patient)) for s in segs]
        self.totals = [0.0]
        for s, rate in zip(segs, self.rates, strict=True):
            self.totals.append(self.totals[-1] + rate * (s.end - s.start) / 3600.0)
        shots = sorted(
            (at, volume * float(p.amount_per_ml))
            for at, volume, p, whose in rec.boluses
            if p is not None and p.drug == drug and whose == patient
        )
        self.bolus_times = [at for at, _ in shots]
        self.bolus_totals = [0.0, *itertools.accumulate(a for _, a in shots)]

    def _rated(self, t: float) -> float:
        i = bisect.bisect_right(self.rec.starts, t) - 1
        if i < 0:
            return 0.0
        s = self.rec.segs[i]
        return self.totals[i] + self.rates[i] * (min(t, s.end) - s.start) / 3600.0

    def giving_at(self, t: float, since: float) -> bool:
        """Whether the drug is being given at ``t``, counting from ``since`` on: a
        stretch of it that lasts runs up to ``t`` (from after ``since``) or from it, or a
        bolus is given then."""
        at = bisect.bisect_left(self.bolus_times, t)
        if at < len(self.bolus_times) and self.bolus_times[at] == t:
            return True
        segs = self.rec.segs
        lo = max(0, bisect.bisect_left(self.rec.starts, t) - 1)
        hi = bisect.bisect_right(self.rec.starts, t)
        for i in range(lo, min(hi + 1, len(segs))):
            s = segs[i]
            if self.rates[i] <= 0 or s.end <= s.start:
                continue
            if s.start <= t < s.end or (s.end == t and t > since):
                return True
        return False

    def in_window(self, t: float, window: float) -> float:
        """Given in [t - window, t] (boluses at either end included)."""
        since = t - window
        rated = self._rated(t) - self._rated(since)
        first = bisect.bisect_left(self.bolus_times, since)
        last = bisect.bisect_right(self.bolus_times, t)
        return rated + self.bolus_totals[last] - self.bolus_totals[first]


def _peak(
    given: _Given, window: float, since: float, until: float, *, delivering: bool = False
) -> tuple[float, float | None]:
    """The largest amount in any window ending in [since, until]: found at the instants
    where a window's edge meets a change (the amount is piecewise linear in between).
    ``delivering``: only at instants where the drug is being given (a stretch of it
    lasting up to or from there, or a bolus): a cap that comes into force over a window
    already fuller than it (a tighter library, another profile) is broken by giving
    more before the window has emptied below it, not by what was given before."""
    ends = {since, until}
    for s in given.rec.segs:
        ends.update((s.start, s.start + window, s.end, s.end + window))
    for at in given.bolus_times:
        ends.update((at, at + window))
    peak, peak_at = 0.0, None
    for t in sorted(e for e in ends if since <= e <= until):
        if delivering and not given.giving_at(t, since):
            continue
        amount = given.in_window(t, window)
        if amount > peak:
            peak, peak_at = amount, t
    return peak, peak_at


def _caps(rec: _Record, end: float, summary: TruthSummary) -> list[Violation]:
    """S3 on the truth: per drug and patient, every cap of a limit set is judged over the
    windows that end, while the drug is being given, with that set in force; the summary
    shows the latest program's cap (its highest window, given or not)."""
    out: list[Violation] = []
    givens: dict[tuple[str, int], _Given] = {}
    first = rec.segs[0].start if rec.segs else 0.0
    for drug, sets in rec.sets.items():
        judged: set[tuple[int, Fraction, float]] = set()
        for limit_set in sets:
            cap = limit_set.limits.cap
            if cap is None:
                continue
            key = (drug, limit_set.patient)
            given = givens.get(key) or givens.setdefault(key, _Given(rec, *key))
            window = float(cap.window_s)
            since, until = max(limit_set.since, first), min(limit_set.until, end)
            if until < since:
                continue
            peak, peak_at = _peak(given, window, since, until, delivering=True)
            limit = float(cap.base_amount)
            which = (limit_set.patient, cap.base_amount, window)
            if peak > limit * (1 + REL_EPS) and peak_at is not None and which not in judged:
                judged.add(which)
                factor = float(cap.unit.base_factor)
                out.append(
                    Violation(
                        "cumulative_cap",
                        peak_at,
                        f"{peak / factor:.4g} {cap.unit} of {drug} given in the "
                        f"{num(cap.window_h)} h before {peak_at:.0f} s, above the cap of "
                        f"{num(cap.amount)} {cap.unit}" + limit_set.note(_latest(sets)),
                    )
                )
    caps = [p for p in rec.programs.known() if p.cap is not None]
    if caps:
        prog = caps[-1]
        cap = prog.cap
        assert cap is not None
        patient = len(rec.admissions)  # the patient in care at the end
        key = (prog.drug, patient)
        given = givens.get(key) or _Given(rec, *key)
        peak, peak_at = _peak(given, float(cap.window_s), first, end)
        summary.cap = f"{num(cap.amount)} {cap.unit} per {num(cap.window_h)} h"
        summary.cap_peak = peak / float(cap.unit.base_factor)
        summary.cap_peak_at = peak_at
    return out


def _latest(sets: Sequence[_LimitSet]) -> ProgramLimits | None:
    latest = [s for s in sets if s.until == math.inf]
    return latest[-1].limits if latest else None


__all__ = [
    "RULES",
    "TITRATION_RULES",
    "WEAN_RULES",
    "Admission",
    "Change",
    "Command",
    "PumpClock",
    "RecordBuilder",
    "SafetyRecord",
    "TruthReport",
    "TruthSummary",
    "Verified",
    "Violation",
    "check_ground_truth",
]
