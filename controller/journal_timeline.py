"""Both journals (safety process and controller) as one timeline, merged by clinical time.

The files are read with the one journal reader (``safety.journal_read``: read-only and
safe on a live journal).

The safety process journals *kernel events* (``safety.kernel.codec``); it does not
journal its alarms as such, because they are derived state: replaying the events
through the kernel's own reducer (``safety.kernel.reducer.apply``, pure) rebuilds the
alarm book at every instant, exactly as the safety process rebuilds it after a restart.
``replay_safety`` does that and reports each alarm as it is raised and cleared, and the
kernel's state at any instants asked for (the scenario runner's state expectations).

The controller journals its own entries (``controller.session_journal``): operator
actions, plans, confirmations, requests and outcomes, state changes, alarms, link notices.

On a bench of several pumps every row says which channel it concerns (``Row.channel``:
None for the bench, the patient, a handover between two channels) and every replayed
alarm its scope (a channel, or ``drug:<id>``): the same condition on two pumps is two
alarms, told apart by scope.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safety.alarms import Alarm
from safety.journal_read import (
    JournalReadError,
    RawEntry,
    read_entries,
    read_safety_journal,
)
from safety.journal_text import ProgramTracker, describe
from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    BenchConfigured,
    CommandIssued,
    Event,
    RequestDecided,
)
from safety.kernel.reducer import apply
from safety.kernel.state import KernelState
from safety.library import DrugLibrary

#: file names the bench uses (controller.connect, pumpctl demo, scenario runs)
SAFETY_NAME = "safety-journal.sqlite"
CONTROLLER_NAME = "controller-journal.sqlite"


@dataclass(frozen=True)
class Row:
    """One line of the merged timeline. ``derived`` rows (alarms raised and cleared in
    the safety process) are rebuilt by replay; they have no journal id."""

    clinical: float
    wall: float
    process: str
    id: int | None
    kind: str
    summary: str
    payload: dict[str, Any]
    derived: bool = False
    seq: float = 0.0  # order within one process: a derived row right after its entry
    #: the channel the entry concerns (None: the bench, or not one channel's)
    channel: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "clinical_s": self.clinical,
            "wall": self.wall,
            "process": self.process,
            "id": self.id,
            "kind": self.kind,
            "summary": self.summary,
            "derived": self.derived,
            "channel": self.channel,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class AlarmMark:
    """An alarm raised (or cleared) at ``time`` (clinical s)."""

    time: float
    wall: float
    key: str
    priority: str
    reason: str
    message: str
    source: str  # "safety" or "controller"
    event: str = "raised"  # or "cleared"
    entry_id: int = 0  # the journal entry that raised or cleared it
    #: "" the bench, a channel's name, or "drug:<id>" (``safety.alarms``)
    scope: str = ""

    @property
    def ident(self) -> str:
        """ "scope/key" (the key alone for a bench alarm), as an acknowledgement names it."""
        return f"{self.scope}/{self.key}" if self.scope else self.key


@dataclass
class SafetyReplay:
    """The safety kernel's alarm history and state, rebuilt from its journal."""

    alarms: list[AlarmMark] = field(default_factory=list)
    states: dict[float, KernelState] = field(default_factory=dict)
    final: KernelState = field(default_factory=KernelState)
    problem: str | None = None  # why the replay stopped early (a foreign library)


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class JournalFiles:
    safety: Path | None
    controller: Path | None


def locate(
    safety: str | Path | None = None,
    controller: str | Path | None = None,
    directory: str | Path | None = None,
) -> JournalFiles:
    """Which journals to read: given files, or the bench's names inside ``directory``."""
    s = Path(safety) if safety is not None else None
    c = Path(controller) if controller is not None else None
    if directory is not None:
        d = Path(directory)
        if not d.is_dir():
            raise JournalReadError(f"--dir {d}: not a directory")
        if s is None and (d / SAFETY_NAME).exists():
            s = d / SAFETY_NAME
        if c is None and (d / CONTROLLER_NAME).exists():
            c = d / CONTROLLER_NAME
        if s is None and c is None:
            raise JournalReadError(
                f"--dir {d}: neither {SAFETY_NAME} nor {CONTROLLER_NAME} is there"
            )
    if s is None and c is None:
        raise JournalReadError("give --safety FILE, --controller FILE or --dir DIR")
    for path in (s, c):
        if path is not None and not path.is_file():
            raise JournalReadError(f"{path}: no such journal file")
    return JournalFiles(s, c)


# --------------------------------------------------------------------------- replay


def replay_safety(
    events: Sequence[tuple[RawEntry, Event]],
    library: DrugLibrary,
    config: KernelConfig | None = None,
    at: Iterable[float] = (),
) -> SafetyReplay:
    """Fold the events through the kernel's reducer: alarms as raised and cleared, and the
    state in force at each instant of ``at`` (the last event at or before it)."""
    config = config or KernelConfig()
    wanted = sorted(set(at))
    result = SafetyReplay()
    state = KernelState()
    w = 0
    for entry, event in events:
        t = event.now.clinical
        while w < len(wanted) and wanted[w] < t:
            result.states[wanted[w]] = state
            w += 1
        after = apply(config, state, event)
        result.alarms += _alarm_changes(state, after, t, entry.wall, entry.id)
        state = after
    for rest in wanted[w:]:
        result.states[rest] = state
    result.final = state
    return result


def _alarm_changes(
    before: KernelState, after: KernelState, t: float, wall: float, entry_id: int
) -> list[AlarmMark]:
    marks: list[AlarmMark] = []

    def cleared(alarm: Alarm) -> AlarmMark:
        return AlarmMark(
            t,
            wall,
            alarm.key,
            alarm.priority.word,
            str(alarm.reason),
            "",
            "safety",
            "cleared",
            entry_id,
            alarm.scope,
        )

    # one condition per (scope, key): the same key on two channels is two alarms
    old = {a.ident: a for a in before.alarms.alarms}
    new = {a.ident: a for a in after.alarms.alarms}
    for key, alarm in new.items():
        prev = old.get(key)
        if prev is None or (alarm.active and not prev.active):
            marks.append(
                AlarmMark(
                    t,
                    wall,
                    alarm.key,
                    alarm.priority.word,
                    str(alarm.reason),
                    alarm.message,
                    "safety",
                    entry_id=entry_id,
                    scope=alarm.scope,
                )
            )
        if not alarm.active and (prev is None or prev.active):
            marks.append(cleared(alarm))
    for key, alarm in old.items():
        if key not in new and alarm.active:
            marks.append(cleared(alarm))
    return marks


def channel_of(event: Event) -> str | None:
    """The channel a safety event concerns: its own ``channel``, its pump command's, or
    its request's (None: the bench, the patient, or two channels, as a handover)."""
    if isinstance(event, CommandIssued):
        return event.action.channel
    if isinstance(event, RequestDecided):
        named = getattr(event.body, "channel", None)
        return named if isinstance(named, str) else None
    named = getattr(event, "channel", None)
    return named if isinstance(named, str) else None


def journal_channels(events: Iterable[Event]) -> list[str]:
    """The bench's channels, as its journal configured them (the last configuration),
    else as its events name them."""
    configured: list[str] = []
    named: dict[str, None] = {}
    for event in events:
        if isinstance(event, BenchConfigured):
            configured = [c.name for c in event.channels]
        channel = channel_of(event)
        if channel is not None:
            named[channel] = None
    return configured or list(named)


def controller_alarms(entries: Iterable[RawEntry]) -> list[AlarmMark]:
    """The controller's own alarms, as its journal recorded them: each raise, and each
    clear (its condition gone; journals written before clears were recorded have none)."""
    marks: list[AlarmMark] = []
    for e in entries:
        if e.kind != "alarm" or e.payload.get("source") != "controller":
            continue
        alarm = e.payload.get("alarm") or {}
        cleared = e.payload.get("event") == "cleared"
        marks.append(
            AlarmMark(
                e.clinical if cleared else float(alarm.get("raised_at", e.clinical)),
                e.wall,
                str(alarm.get("key", "?")),
                str(alarm.get("priority", "?")),
                str(alarm.get("reason", "")),
                str(alarm.get("message", "")),
                "controller",
                "cleared" if cleared else "raised",
                e.id,
            )
        )
    return marks


def machine_states(entries: Iterable[RawEntry]) -> list[tuple[float, str]]:
    """(clinical s, state) each time the controller's machine changed state."""
    out: list[tuple[float, str]] = []
    for e in entries:
        if e.kind == "transition":
            dest = str(e.payload.get("dest", "?"))
            if not out or out[-1][1] != dest:
                out.append((e.clinical, dest))
    return out


def state_at(states: Sequence[tuple[float, str]], t: float, default: str = "idle") -> str:
    current = default
    for when, state in states:
        if when > t:
            break
        current = state
    return current


# --------------------------------------------------------------------------- timeline


def safety_rows(
    events: Sequence[tuple[RawEntry, Event]],
    library: DrugLibrary | None,
    replay: SafetyReplay | None,
) -> list[Row]:
    programs = ProgramTracker()
    rows: list[Row] = []
    for entry, event in events:
        summary = describe(event, programs)
        rows.append(
            Row(
                entry.clinical,
                entry.wall,
                "safety",
                entry.id,
                entry.kind,
                summary,
                entry.payload,
                seq=entry.id,
                channel=channel_of(event),
            )
        )
    if replay is not None:
        several = len(journal_channels(event for _, event in events)) > 1
        for mark in replay.alarms:
            name = mark.ident if several else mark.key
            if mark.event == "raised":
                text = f"ALARM {mark.priority} {name}: {mark.message}"
                kind = "alarm_raised"
            else:
                text = f"alarm cleared: {name}"
                kind = "alarm_cleared"
            rows.append(
                Row(
                    mark.time,
                    mark.wall,
                    "safety",
                    None,
                    kind,
                    text,
                    {
                        "key": mark.key,
                        "priority": mark.priority,
                        "reason": mark.reason,
                        "message": mark.message,
                        "scope": mark.scope,
                    },
                    derived=True,
                    seq=mark.entry_id + 0.5,
                    channel=mark.scope
                    if several and mark.scope and ":" not in mark.scope
                    else None,
                )
            )
    return rows


def controller_rows(entries: Iterable[RawEntry]) -> list[Row]:
    return [
        Row(
            e.clinical,
            e.wall,
            "controller",
            e.id,
            e.kind,
            _controller_summary(e),
            e.payload,
            seq=e.id,
            # the entry's channel (None: about the bench), so ``--channel`` filters it
            channel=e.payload.get("channel") if isinstance(e.payload.get("channel"), str) else None,
        )
        for e in entries
    ]


def _controller_summary(e: RawEntry) -> str:
    p = e.payload
    kind = e.kind
    if kind == "attached":
        return f"attached to the safety process (session {p.get('session')}, mode {p.get('mode')})"
    if kind == "action":
        args = " ".join(
            f"{k}={v}"
            for k, v in p.items()
            if k not in ("action", "state") and v not in (None, False)
        )
        return f"operator: {p.get('action')} {args}".rstrip()
    if kind == "plan":
        plan = p.get("plan") or {}
        target = plan.get("target")
        goal = (
            f"{plan.get('kind')} {plan.get('start_dose')} -> {'stop' if target is None else target}"
        )
        if not plan.get("reachable", True):
            return f"plan {goal}: UNREACHABLE ({plan.get('code')}): {plan.get('problem')}"
        steps = plan.get("steps") or []
        again = f" (re-planned after {p['replanned_after']})" if p.get("replanned_after") else ""
        duration = _hms(float(plan.get("duration_s") or 0))
        return f"plan {goal}: {len(steps)} step(s) over {duration}{again}"
    if kind == "confirm":
        soft = " with the soft-limit override" if p.get("soft_limits") else ""
        return f"operator confirmed {p.get('trigger')}{soft}"
    if kind == "cancel":
        return f"plan ended: {p.get('why')}"
    if kind == "interrupted":
        return f"plan INTERRUPTED after step {p.get('steps_done')}: {p.get('why')}"
    if kind == "request":
        body = p.get("body") or {}
        extra = f" {body['dose']}" if "dose" in body else ""
        return f"request {body.get('kind')}{extra}"
    if kind == "outcome":
        verdict = "accepted" if p.get("accepted") else f"REFUSED {p.get('reason')}"
        return f"outcome {p.get('request')}: {verdict}: {p.get('message')} [{p.get('execution')}]"
    if kind == "transition":
        return f"state {p.get('source')} -> {p.get('dest')} ({p.get('trigger')})"
    if kind == "alarm":
        alarm = p.get("alarm") or {}
        who = "controller" if p.get("source") == "controller" else "seen from safety"
        if p.get("event") == "cleared":
            return f"alarm cleared: {alarm.get('key')} ({who})"
        return f"ALARM {alarm.get('priority')} {alarm.get('key')} ({who}): {alarm.get('message')}"
    if kind == "notice":
        rest = ", ".join(f"{k}={v}" for k, v in p.items() if k != "what")
        return f"link: {p.get('what')} ({rest})"
    if kind == "error":
        where = f" [{p.get('field')}]" if p.get("field") else ""
        return f"REFUSED {p.get('action')}: {p.get('code')}{where}: {p.get('message')}"
    return f"{kind}: {json.dumps(p, sort_keys=True)[:200]}"


def merged(rows: Iterable[Row]) -> list[Row]:
    """One timeline: clinical time first, then the order things were written."""
    return sorted(rows, key=lambda r: (r.clinical, r.wall, r.process != "controller", r.seq))


def condensed(rows: Sequence[Row], *, both: bool) -> list[Row]:
    """What ``journal show`` prints: read-backs only when something changed, no ticks, and
    when both journals are read, the controller's copies of requests and outcomes and of
    the safety process's alarms left out (the safety journal has the originals).

    A read-back is compared with the last one of its own channel: on a bench of several
    pumps the channels' read-backs interleave, and against the bench's last reading
    every one of them would look like a change."""
    out: list[Row] = []
    last_reading: dict[str | None, tuple[Any, ...]] = {}
    for row in rows:
        if row.process == "safety":
            if row.kind == "ticked":
                continue
            if row.kind == "readback":
                reading = row.payload.get("reading") or {}
                key = (
                    reading.get("running"),
                    reading.get("set_rate_ml_h"),
                    tuple(reading.get("alarms") or ()),
                )
                if last_reading.get(row.channel) == key:
                    continue
                last_reading[row.channel] = key
        elif both:
            if row.kind in ("request", "outcome"):
                continue
            if row.kind == "alarm" and row.payload.get("source") != "controller":
                continue
            if row.kind == "transition" and row.payload.get("source") == row.payload.get("dest"):
                continue
        out.append(row)
    return out


def _hms(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


def format_time(seconds: float) -> str:
    """Clinical time as h:mm:ss (negative before the run's time zero)."""
    if not math.isfinite(seconds):
        return str(seconds)
    return _hms(seconds)


# --------------------------------------------------------------------------- both at once


@dataclass
class Journals:
    """Both journals of one bench, read and decoded, with the safety replay."""

    files: JournalFiles
    safety: list[tuple[RawEntry, Event]]
    controller: list[RawEntry]
    replay: SafetyReplay | None
    library: DrugLibrary | None

    @property
    def events(self) -> list[Event]:
        return [event for _, event in self.safety]

    @property
    def end(self) -> float | None:
        """The clinical instant of the last entry of either journal (None: both empty):
        where the run ended, which a plot's time axis must reach, not its last alarm or
        change (a line holding steady to the end has no point of its own there)."""
        times = [entry.clinical for entry, _ in self.safety]
        times += [entry.clinical for entry in self.controller]
        return max(times, default=None)

    def rows(self) -> list[Row]:
        """Every entry of both journals (and the replayed alarms), merged by time."""
        rows = safety_rows(self.safety, self.library, self.replay)
        rows += controller_rows(self.controller)
        return merged(rows)

    def alarms(self, *, cleared: bool = False) -> list[AlarmMark]:
        """Alarms raised: the safety process's (replayed) and the controller's own;
        ``cleared``: their clears too (a plot draws each alarm from its raise to its
        clear)."""
        wanted = ("raised", "cleared") if cleared else ("raised",)
        marks = [a for a in self.replay.alarms if a.event in wanted] if self.replay else []
        marks += [a for a in controller_alarms(self.controller) if a.event in wanted]
        return sorted(marks, key=lambda a: (a.time, a.wall))


def load_journals(
    files: JournalFiles,
    library: DrugLibrary | None,
    *,
    config: KernelConfig | None = None,
    at: Iterable[float] = (),
    safety_until_id: int | None = None,
    controller_until_id: int | None = None,
) -> Journals:
    """Read both (either may be absent); replay the safety one when a library is given.

    ``*_until_id``: ignore entries after these ids (what a run wrote before tearing its
    bench down, e.g. the 'controller lost' of its own hang-up)."""
    safety = read_safety_journal(files.safety) if files.safety is not None else []
    controller = read_entries(files.controller) if files.controller is not None else []
    if safety_until_id is not None:
        safety = [(e, event) for e, event in safety if e.id <= safety_until_id]
    if controller_until_id is not None:
        controller = [e for e in controller if e.id <= controller_until_id]
    replay = (
        replay_safety(safety, library, config, at)
        if library is not None and files.safety is not None
        else None
    )
    return Journals(files, safety, controller, replay, library)


__all__ = [
    "CONTROLLER_NAME",
    "SAFETY_NAME",
    "AlarmMark",
    "JournalFiles",
    "Journals",
    "Row",
    "SafetyReplay",
    "condensed",
    "controller_alarms",
    "controller_rows",
    "format_time",
    "load_journals",
    "locate",
    "machine_states",
    "merged",
    "replay_safety",
    "safety_rows",
    "state_at",
]
