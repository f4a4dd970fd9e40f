"""Reading a scenario file: TOML, validated, every problem named by its LINE.

A scenario's author edits a text file; "action.2.titrate_to.dose: field required" makes
them count tables by hand. So every problem is reported as ``FILE:LINE: where: what``:
``tomllib`` syntax errors carry their line already; pydantic's error locations (a path
of table names, array indexes and field names) are mapped back to the line of that key,
or of its table's header when the key is missing, by a small scan of the file
(``LineMap``). Cross-references (an expectation naming an action that does not exist,
an action after the end of the scenario) are checked here too, with the same lines.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from controller.machine import State
from firmware_bridge.syringes import container_by_name
from safety.kernel.model import DEFAULT_CHANNEL
from safety.kernel.state import Mode
from verification.scenario.model import (
    ACTIONS,
    EXPECTATIONS,
    ONE_PROCESS_ONLY,
    AcknowledgeAction,
    AlarmExpect,
    ArmStandbyAction,
    BenchSpec,
    ChannelSpec,
    ConfirmAction,
    ContainerChangedAction,
    ContainerPauseAction,
    DisarmStandbyAction,
    Fault,
    FinalExpect,
    HandoverExpect,
    LimitExpect,
    OutcomeExpect,
    PrimeAction,
    Prior,
    ProgramAction,
    RequestAction,
    RuleExpect,
    Scenario,
    ScenarioInfo,
    SimpleAction,
    StartAction,
    StateExpect,
    StopAction,
    TitrateAction,
    WeanAction,
)

Loc = tuple[str | int, ...]

_ACTION_MODELS: dict[str, type[BaseModel]] = {
    "program": ProgramAction,
    "reprogram": ProgramAction,
    "start": StartAction,
    "titrate_to": TitrateAction,
    "wean": WeanAction,
    "stop": StopAction,
    "confirm": ConfirmAction,
    "cancel": SimpleAction,
    "emergency_stop": SimpleAction,
    "resume": SimpleAction,
    "acknowledge": AcknowledgeAction,
    "request": RequestAction,
    "arm_standby": ArmStandbyAction,
    "disarm_standby": DisarmStandbyAction,
    "prime": PrimeAction,
    "pause_for_container_change": ContainerPauseAction,
    "resume_after_container_change": ContainerPauseAction,
    "container_changed": ContainerChangedAction,
}
_EXPECT_MODELS: dict[str, type[BaseModel]] = {
    "alarm": AlarmExpect,
    "no_alarm": AlarmExpect,
    "refused": OutcomeExpect,
    "accepted": OutcomeExpect,
    "max_rate": LimitExpect,
    "max_dose": LimitExpect,
    "wean_rule": RuleExpect,
    "titration_rule": RuleExpect,
    "cap": RuleExpect,
    "hard_max": RuleExpect,
    "invariants": RuleExpect,
    "state": StateExpect,
    "final": FinalExpect,
    "handover": HandoverExpect,
}
_TABLES: dict[str, type[BaseModel]] = {
    "scenario": ScenarioInfo,
    "bench": BenchSpec,
    "channels": ChannelSpec,
    "prior": Prior,
    "fault": Fault,
}
_ARRAYS = ("channels", "prior", "action", "fault", "expect")
_TAGS = {"action": ("do", _ACTION_MODELS), "expect": ("type", _EXPECT_MODELS)}


@dataclass(frozen=True)
class Problem:
    line: int | None
    where: str
    message: str


class ScenarioFileError(Exception):
    """A scenario file that cannot be used; each problem names its line."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = [
            f"{path}:{p.line}: {p.where}: {p.message}"
            if p.line is not None
            else f"{path}: {p.where}: {p.message}"
            for p in self.problems
        ]
        super().__init__("\n".join(lines))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"line": p.line, "where": p.where, "message": p.message} for p in self.problems]


# --------------------------------------------------------------------------- line map

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _key_parts(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


@dataclass
class LineMap:
    """Where each table and key of a (syntactically valid) TOML file starts."""

    lines: dict[Loc, int] = field(default_factory=dict)

    @classmethod
    def scan(cls, text: str) -> LineMap:
        result = cls()
        counts: dict[tuple[str, ...], int] = {}
        table: Loc = ()
        in_string: str | None = None  # the closing quotes of a multi-line string
        depth = 0  # open brackets of a multi-line array
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if in_string in line:
                    in_string = None
                continue
            if depth > 0:
                depth += _bracket_balance(line)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            header = _HEADER.match(line)
            if header and len(header.group(1)) == len(header.group(3)):
                names = tuple(_key_parts(header.group(2)))
                if header.group(1) == "[[":
                    index = counts.get(names, 0)
                    counts[names] = index + 1
                    table = (*names, index)
                else:
                    table = names
                result.lines.setdefault(table, number)
                result.lines.setdefault(table[:1], number)
                continue
            key = _KEY.match(line)
            if key:
                loc = (*table, *_key_parts(key.group(1)))
                result.lines.setdefault(loc, number)
                rest = line[key.end() :]
                for quotes in ('"""', "'''"):
                    if rest.count(quotes) == 1:
                        in_string = quotes
                depth = max(0, _bracket_balance(rest))
        return result

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, else of the nearest enclosing table or key."""
        for n in range(len(loc), 0, -1):
            found = self.lines.get(loc[:n])
            if found is not None:
                return found
        return None


def _bracket_balance(text: str) -> int:
    depth = 0
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
    return depth


# --------------------------------------------------------------------------- errors


def _data_path(data: Any, loc: Sequence[str | int]) -> Loc:
    """pydantic's location, keeping only the steps that exist in the data (a union's
    tag, e.g. ``titrate_to``, is not a key of the file)."""
    path: list[str | int] = []
    node = data
    for n, step in enumerate(loc):
        in_list = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        in_table = isinstance(node, dict) and isinstance(step, str) and step in node
        if in_list or in_table:
            path.append(step)
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and n == len(loc) - 1:
            path.append(step)  # a missing field: named, though not in the file
            node = None
    return tuple(path)


def _where(path: Loc, data: Any) -> str:
    if not path:
        return "file"
    head = str(path[0])
    if head in _ARRAYS and len(path) > 1 and isinstance(path[1], int):
        label = f"[[{head}]] #{path[1] + 1}"
        item = data.get(head, [None])[path[1]] if isinstance(data, dict) else None
        if isinstance(item, dict):
            tag = item.get("do") or item.get("type") or item.get("fault") or item.get("name")
            at = item.get("at")
            bits = [str(tag)] if tag else []
            if at is not None:
                bits.append(f"at {at}")
            if bits:
                label += f" ({', '.join(bits)})"
        rest = path[2:]
    else:
        label = f"[{head}]"
        rest = path[1:]
    if rest:
        label += " " + ".".join(str(p) for p in rest)
    return label


def _allowed(path: Loc, data: Any) -> list[str] | None:
    if not path:
        return list(Scenario.model_fields)
    head = str(path[0])
    model: type[BaseModel] | None = _TABLES.get(head)
    if head in _TAGS and len(path) > 1 and isinstance(path[1], int):
        tag_key, models = _TAGS[head]
        item = data.get(head, [None])[path[1]] if isinstance(data, dict) else None
        tag = item.get(tag_key) if isinstance(item, dict) else None
        model = models.get(str(tag)) if tag is not None else None
    if model is None:
        return None
    return [f.alias or name for name, f in model.model_fields.items()]


def _message(error: Any, path: Loc, data: Any) -> str:
    kind = error["type"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed(path[:-1], data)
        known = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"unknown field {path[-1]!r}{known}" if path else f"unknown field{known}"
    if kind == "union_tag_invalid":
        head = str(path[0]) if path else ""
        tag_key = _TAGS.get(head, ("kind", {}))[0]
        names: tuple[str, ...] = ACTIONS if head == "action" else EXPECTATIONS
        given = error.get("input", {})
        value = given.get(tag_key) if isinstance(given, dict) else None
        noun = "action" if head == "action" else "expectation"
        return f"unknown {noun} {tag_key} = {value!r}; known: {', '.join(names)}"
    if kind == "union_tag_not_found":
        head = str(path[0]) if path else ""
        if head == "action":
            return f"missing 'do': which action? one of {', '.join(ACTIONS)}"
        return f"missing 'type': which expectation? one of {', '.join(EXPECTATIONS)}"
    if kind == "missing":
        if path and isinstance(path[-1], str):
            return f"missing required field {path[-1]!r}"
        return "missing required field"
    return msg


def _validation_problems(exc: ValidationError, data: Any, lines: LineMap) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = _data_path(data, loc)
        line_loc = path
        if error["type"] in ("union_tag_invalid",) and len(path) >= 2:
            head = str(path[0])
            tag_key = _TAGS.get(head, ("do", {}))[0]
            line_loc = (*path, tag_key)
        problems.append(
            Problem(lines.line(line_loc), _where(path, data), _message(error, path, data))
        )
    problems.sort(key=lambda p: p.line or 0)
    return problems


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: Path
    lines: LineMap
    data: dict[str, Any]

    def line(self, loc: Loc) -> int | None:
        return self.lines.line(loc)

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.line(loc), _where(loc, self.data), message)


def parse_scenario(text: str, origin: str = "<text>") -> LoadedScenario:
    """Validate a scenario text; ``ScenarioFileError`` lists every problem by line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(m.group(1)) if m else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        where = f"column {m.group(2)}" if m else "TOML"
        raise ScenarioFileError(origin, [Problem(line, where, f"TOML syntax: {message}")]) from None
    lines = LineMap.scan(text)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioFileError(origin, _validation_problems(exc, data, lines)) from None
    loaded = LoadedScenario(scenario, Path(origin), lines, data)
    problems = cross_check(loaded)
    if problems:
        raise ScenarioFileError(origin, problems)
    return loaded


def load_scenario(path: str | Path) -> LoadedScenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFileError(str(p), [Problem(None, "file", f"cannot read it: {exc}")]) from None
    return parse_scenario(text, str(p))


_STATES = tuple(s.value for s in State)
_MODES = tuple(m.value for m in Mode)


def cross_check(loaded: LoadedScenario) -> list[Problem]:
    """What one table cannot know alone: names, references, times within the run."""
    s = loaded.scenario
    problems: list[Problem] = _channel_problems(loaded) + _volume_problems(loaded)
    end = s.duration_s
    names: dict[str, Loc] = {}
    actions: set[str] = set()
    for table, items in (("action", s.action), ("fault", s.fault)):
        for i, item in enumerate(items):
            loc: Loc = (table, i)
            if item.at > end:
                problems.append(
                    loaded.problem(
                        (*loc, "at"),
                        f"at {item.at / 60:g} min is after the end of the scenario "
                        f"({end / 60:g} min)",
                    )
                )
            if item.name is None:
                continue
            if item.name in names:
                problems.append(
                    loaded.problem(
                        (*loc, "name"),
                        f"name {item.name!r} is already used (line "
                        f"{loaded.line((*names[item.name], 'name'))}); names must be unique",
                    )
                )
            names[item.name] = loc
            if table == "action":
                actions.add(item.name)
    previous_end = None
    for i, prior in enumerate(s.prior):
        if previous_end is not None and prior.from_ < previous_end:
            problems.append(
                loaded.problem(("prior", i, "from"), "prior runs must be in time order, apart")
            )
        previous_end = prior.until
    for i, expect in enumerate(s.expect):
        loc = ("expect", i)
        if (
            isinstance(expect, AlarmExpect)
            and expect.after is not None
            and (expect.after not in names)
        ):
            problems.append(
                loaded.problem(
                    (*loc, "after"),
                    f"no action or fault is named {expect.after!r}"
                    + (f"; names: {', '.join(sorted(names))}" if names else ""),
                )
            )
        if isinstance(expect, OutcomeExpect) and expect.action not in actions:
            problems.append(
                loaded.problem(
                    (*loc, "action"),
                    f"no action is named {expect.action!r}"
                    + (f"; action names: {', '.join(sorted(actions))}" if actions else ""),
                )
            )
        if isinstance(expect, StateExpect) and expect.at > end:
            problems.append(
                loaded.problem((*loc, "at"), f"at {expect.at / 60:g} min is after the end")
            )
        if isinstance(expect, StateExpect | FinalExpect):
            if expect.state is not None and expect.state not in _STATES:
                problems.append(
                    loaded.problem(
                        (*loc, "state"),
                        f"unknown controller state {expect.state!r}; one of {', '.join(_STATES)}",
                    )
                )
            if expect.mode is not None and expect.mode not in _MODES:
                problems.append(
                    loaded.problem(
                        (*loc, "mode"),
                        f"unknown safety mode {expect.mode!r}; one of {', '.join(_MODES)}",
                    )
                )
    return problems


def _channel_problems(loaded: LoadedScenario) -> list[Problem]:
    """Channel names: unique, and every step, fault and expectation names a channel the
    bench has (a one-pump bench's is A)."""
    s = loaded.scenario
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, spec in enumerate(s.channels):
        if spec.name in seen:
            problems.append(
                loaded.problem(("channels", i, "name"), f"channel {spec.name!r} is listed twice")
            )
        seen.add(spec.name)
    names = tuple(dict.fromkeys(s.channel_names))
    listed = ", ".join(names)

    def check(loc: Loc, value: str | None) -> None:
        if value is not None and value not in names:
            problems.append(
                loaded.problem(loc, f"there is no channel {value!r}; channels: {listed}")
            )

    if s.prior and (len(s.channels) > 1 or (s.channels and s.channels[0].name != DEFAULT_CHANNEL)):
        problems.append(
            loaded.problem(
                ("prior", 0),
                "[[prior]] history is seeded on a one-pump bench only (channel "
                f"{DEFAULT_CHANNEL}); not with [[channels]] of other names or several",
            )
        )
    for table, items in (("action", s.action), ("fault", s.fault), ("expect", s.expect)):
        for i, item in enumerate(items):
            check((table, i, "channel"), getattr(item, "channel", None))
            check((table, i, "for_channel"), getattr(item, "for_channel", None))
    return problems


def _volume_problems(loaded: LoadedScenario) -> list[Problem]:
    """``loaded_ml`` within what its container holds: the container is named in another
    table (a channel's default is the bench's syringe), so no single table can check it,
    and past this point the simulated pump refuses it mid-setup, as a traceback."""
    s = loaded.scenario
    problems: list[Problem] = []
    wanted: list[tuple[Loc, float | None, str]] = [
        (("bench", "loaded_ml"), s.bench.loaded_ml, s.bench.syringe)
    ]
    wanted += [
        (("channels", i, "loaded_ml"), c.loaded_ml, c.container or s.bench.syringe)
        for i, c in enumerate(s.channels)
    ]
    for loc, loaded_ml, container in wanted:
        volume = container_by_name(container).volume_ml
        if loaded_ml is not None and loaded_ml > volume:
            problems.append(
                loaded.problem(
                    loc,
                    f"must be more than 0 and at most {volume:g} mL (what {container} "
                    f"holds), got {loaded_ml:g}",
                )
            )
    return problems


def real_mode_problems(loaded: LoadedScenario) -> list[Problem]:
    """What only the one-process runner can do (--real cannot): some faults, and benches
    of several pumps the emulator cannot serve on one line."""
    s = loaded.scenario
    several: list[Problem] = []
    if len(s.channels) > 1:
        kinds = {c.pump or s.bench.pump for c in s.channels}
        containers = {c.container or s.bench.syringe for c in s.channels}
        if len(kinds) > 1 or not kinds <= {"ne1000", "harvard"}:
            several.append(
                loaded.problem(
                    ("channels",),
                    "--real serves a bench of several pumps as one line of NE-1000 or Harvard "
                    f"pumps (one kind for all); got {', '.join(sorted(kinds))}",
                )
            )
        if len(containers) > 1:
            several.append(
                loaded.problem(
                    ("channels",),
                    "--real serves every pump of the line with one syringe; got "
                    + ", ".join(sorted(containers)),
                )
            )
    elif s.channels and s.channels[0].name != DEFAULT_CHANNEL:
        several.append(
            loaded.problem(
                ("channels", 0, "name"),
                f"--real names a one-pump bench's channel {DEFAULT_CHANNEL}",
            )
        )
    return several + [
        loaded.problem(
            ("fault", i, "fault"),
            f"{f.fault} is available in one-process runs only (not with --real)",
        )
        for i, f in enumerate(loaded.scenario.fault)
        if f.fault in ONE_PROCESS_ONLY
    ]


__all__ = [
    "LineMap",
    "LoadedScenario",
    "Problem",
    "ScenarioFileError",
    "load_scenario",
    "parse_scenario",
    "real_mode_problems",
]
