"""The rooms' import rules (docs/architecture.md), checked on the source, not by running it.

Below the top four rooms, in layers:

- ``firmware_bridge`` imports none of the other rooms;
- ``drivers`` may import ``firmware_bridge`` only;
- ``safety`` may import ``drivers`` and ``firmware_bridge``, never ``controller``;
- only ``safety`` touches what can deliver a drug or stop it: ``drivers.pumps`` and
  ``drivers.gpio``. ``controller`` may use the instruments that cannot
  (``drivers.balances``, ``drivers.monitors``) and no other part of ``drivers``;
- ``controller`` imports from ``safety`` only its pure parts and its IPC client
  (``OPERATOR_SIDE_MAY_IMPORT_FROM_SAFETY``); the rest of safety is the process host.

The top four (``cli``, ``verification``, ``benchmarks``, ``observe``) may use everything
below them except ``drivers.pumps`` and ``drivers.gpio``, and nothing below imports them.
Two of them are held tighter:

- ``observe`` reaches the bench as an IPC observer only: from ``safety`` the same pure
  parts and IPC client as the controller, never ``drivers``, never the controller's
  session (``OBSERVE_NEVER_IMPORTS``);
- the oracle (``verification.ground_truth``) imports only ``safety``'s pure parts and
  ``firmware_bridge``'s truth types, so that its verdict shares nothing with the code it
  judges beyond the rules themselves.

Every import counts wherever it stands: inside a function, under ``if TYPE_CHECKING``,
relative (``from ..drivers import x``) or through ``importlib.import_module("...")``
with a literal name. A lazy import inside a function is still a dependency.

``from safety import x`` is read as the module ``safety.x``: the importer names the pure
module it uses, so the allow-list can see it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the rooms on top: they may use everything below (but drivers.pumps/gpio), none below
#: may import them
TOP = ("cli", "verification", "benchmarks", "observe")
ROOMS = ("firmware_bridge", "drivers", "safety", "controller", *TOP)

#: room -> rooms it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "firmware_bridge": frozenset(ROOMS) - {"firmware_bridge"},
    "drivers": frozenset({"safety", "controller", *TOP}),
    "safety": frozenset({"controller", *TOP}),
    "controller": frozenset(TOP),
    "cli": frozenset(),
    "verification": frozenset(),
    "benchmarks": frozenset(),
    "observe": frozenset({"drivers"}),
}

#: what can deliver a drug or stop it: imported by safety (and drivers itself) alone
SAFETY_ONLY: tuple[str, ...] = ("drivers.pumps", "drivers.gpio")

#: instruments that cannot deliver a drug: the only part of drivers the controller uses
CONTROLLER_MAY_IMPORT_FROM_DRIVERS: tuple[str, ...] = ("drivers.balances", "drivers.monitors")

#: the pure parts of safety (values, rules, the kernel's pure functions, the shared
#: journal store and its reader): what the oracle may use to judge a run, and what the
#: operator side uses to pre-check and explain
SAFETY_PURE: tuple[str, ...] = (
    "safety.units",
    "safety.library",
    "safety.rules",
    "safety.kernel",
    "safety.alarms",
    # what the safety process reports (snapshots, outcomes): plain values
    "safety.status",
    # the safety process's timer settings (plain values)
    "safety.timing",
    # the append-only SQLite store both processes journal into (not the host's journal
    # policy, which lives in safety.host)
    "safety.journal",
    # the one read-only reader of journals (entries, kernel events, programs in force)
    "safety.journal_read",
    # pure too, and already shared with ``pumpctl calc`` so the calculator can never promise
    # a rate the safety process refuses (dosing) and can word the kernel's reasons (reasons)
    "safety.dosing",
    "safety.reasons",
    # pure: each pump family's codec rounding rule, so ``pumpctl calc --pump`` reports the
    # rate that family really runs (no driver, no port)
    "safety.pump_rounding",
    "safety.ipc.messages",
    # the journal's events in words: one wording for journal show and the safety
    # process's journal stream to observers
    "safety.journal_text",
    # the bench config's observer sections (the commands that start observers)
    "safety.observer_config",
)

#: what the controller and observers may import from safety: its pure parts and the IPC
#: client side; every other safety module is the process host's internals
OPERATOR_SIDE_MAY_IMPORT_FROM_SAFETY: tuple[str, ...] = (
    *SAFETY_PURE,
    "safety.ipc.link",
    "safety.ipc.client",
    # starts ``python -m safety`` as a child and waits for it: imports nothing of the host
    "safety.ipc.launch",
    # the read-only client: the dashboard's and the telemetry's link (S17)
    "safety.ipc.observer",
    # the key file and the proof a client presents (what every client does)
    "safety.ipc.auth",
)

#: the controller's session and what drives it: an observer can never command (S17)
OBSERVE_NEVER_IMPORTS: tuple[str, ...] = (
    "controller.session",
    "controller.connect",
    "controller.console",
    "controller.service_thread",
    "controller.plan_executor",
    "controller.session_link",
)

#: the oracle, and what it may import: safety's pure parts, the pump's truth types
ORACLE = "verification.ground_truth"
ORACLE_MAY_IMPORT: tuple[str, ...] = (*SAFETY_PURE, "firmware_bridge.pump_model")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported}: {self.rule}"


def _resolve_relative(module_name: str, is_package: bool, level: int, target: str | None) -> str:
    parts = module_name.split(".")
    base = parts if is_package else parts[:-1]
    if level > len(base):
        raise ValueError("relative import beyond the top-level package")
    kept = base[: len(base) - (level - 1)]
    return ".".join([*kept, *([target] if target else [])])


def imported_modules(
    source: str, module_name: str, *, is_package: bool = False
) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for every import in ``source``, at any depth."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module_name, is_package, node.level, node.module)
            else:
                base = node.module or ""
            for alias in node.names:
                # ``from a import b``: b may be a module; treat it as one (a superset)
                yield node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base
        elif (
            isinstance(node, ast.Call)
            and _is_import_call(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            name = node.args[0].value
            if isinstance(name, str) and not name.startswith("."):
                yield node.lineno, name


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _within(name: str, modules: tuple[str, ...]) -> bool:
    """``name`` is one of ``modules`` or inside one of them."""
    return any(name == m or name.startswith(m + ".") for m in modules)


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    """``name`` is on the allow-list, inside an allowed module, or a parent package on
    the way to one (``safety``, ``safety.ipc``)."""
    return _within(name, allowed) or any(a.startswith(name + ".") for a in allowed)


def _rule_broken(room: str, module_name: str, name: str) -> str | None:
    """Why ``module_name`` (in ``room``) may not import ``name``; None when it may."""
    top = name.partition(".")[0]
    if top in FORBIDDEN.get(room, frozenset()):
        return f"{room} never imports {top}"
    if top == "drivers" and room not in ("safety", "drivers") and _within(name, SAFETY_ONLY):
        return "only safety imports what can deliver a drug or stop it: " + ", ".join(SAFETY_ONLY)
    if (
        room == "controller"
        and top == "drivers"
        and not _allowed(name, CONTROLLER_MAY_IMPORT_FROM_DRIVERS)
    ):
        return "controller may import from drivers only " + ", ".join(
            CONTROLLER_MAY_IMPORT_FROM_DRIVERS
        )
    if (
        room in ("controller", "observe")
        and top == "safety"
        and not _allowed(name, OPERATOR_SIDE_MAY_IMPORT_FROM_SAFETY)
    ):
        return f"{room} may import only the pure parts of safety and its IPC client: " + ", ".join(
            OPERATOR_SIDE_MAY_IMPORT_FROM_SAFETY
        )
    if room == "observe" and _within(name, OBSERVE_NEVER_IMPORTS):
        return "observe never imports the controller's session: " + ", ".join(OBSERVE_NEVER_IMPORTS)
    if _within(module_name, (ORACLE,)) and top in ROOMS and not _allowed(name, ORACLE_MAY_IMPORT):
        return "the oracle imports only " + ", ".join(ORACLE_MAY_IMPORT)
    return None


def check_source(
    source: str, module_name: str, *, is_package: bool = False, path: str = "<source>"
) -> list[Violation]:
    room = module_name.partition(".")[0]
    found: list[Violation] = []
    try:
        imports = list(imported_modules(source, module_name, is_package=is_package))
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, "?", f"cannot parse: {exc.msg}")]
    except ValueError as exc:
        return [Violation(path, 0, "?", str(exc))]
    for line, name in imports:
        rule = _rule_broken(room, module_name, name)
        if rule is not None:
            found.append(Violation(path, line, name, rule))
    return found


def check_tree(root: Path = REPO) -> list[Violation]:
    found: list[Violation] = []
    for room in ROOMS:
        # a room not built yet (observe) has nothing to check
        for file in sorted((root / room).rglob("*.py")):
            rel = file.relative_to(root)
            is_package = file.name == "__init__.py"
            parts = rel.with_suffix("").parts
            module = ".".join(parts[:-1] if is_package else parts)
            found += check_source(
                file.read_text(encoding="utf-8"), module, is_package=is_package, path=str(rel)
            )
    return found


# --------------------------------------------------------------------- the real tree
def test_every_room_keeps_the_import_rules() -> None:
    violations = check_tree()
    assert not violations, "import rule broken:\n" + "\n".join(map(str, violations))


def test_the_tree_is_actually_scanned() -> None:
    names = {
        name for _, name in imported_modules((REPO / "drivers/pumps/mock.py").read_text(), "x")
    }
    assert "firmware_bridge.pump_model.SimulatedPump" in names


def test_every_package_is_in_a_room() -> None:
    """A new top-level package must be given its rules here, or it escapes the check."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages - {"tests", "hil_tests"} <= set(ROOMS)


# --------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    ("module", "source", "imported"),
    [
        ("firmware_bridge.codec", "import drivers.pumps.base", "drivers.pumps.base"),
        ("firmware_bridge.codec", "from safety import kernel", "safety.kernel"),
        ("firmware_bridge.codec", "import verification", "verification"),
        ("drivers.pumps.ne1000", "def f():\n    import controller.session\n", "controller.session"),
        ("drivers.pumps.ne1000", "from controller import session", "controller.session"),
        ("drivers.pumps.ne1000", "class A:\n    def m(self):\n        import safety\n", "safety"),
        ("drivers.balances.x", "import observe", "observe"),
        ("safety.host", "import controller", "controller"),
        ("safety.host", "if True:\n    from controller.machine import M\n", "controller.machine.M"),
        ("safety.host", "from cli.main import main", "cli.main.main"),
        ("safety.host", "import benchmarks.suite", "benchmarks.suite"),
        (
            "controller.x",
            "from verification.ground_truth import check",
            "verification.ground_truth.check",
        ),
        ("controller.x", "import cli", "cli"),
        # what can deliver a drug or stop it: safety alone
        (
            "controller.x",
            "from drivers.pumps.mock import MockPumpDriver",
            "drivers.pumps.mock.MockPumpDriver",
        ),
        (
            "controller.x",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from drivers.gpio import x\n",
            "drivers.gpio.x",
        ),
        (
            "controller.x",
            "import importlib\nimportlib.import_module('drivers.pumps.mock')",
            "drivers.pumps.mock",
        ),
        ("controller.x", "__import__('drivers.pumps')", "drivers.pumps"),
        ("cli.commands.x", "import drivers.pumps.registry", "drivers.pumps.registry"),
        (
            "verification.scenario.x",
            "from drivers.gpio.simulated import read",
            "drivers.gpio.simulated.read",
        ),
        ("benchmarks.death", "import drivers.gpio", "drivers.gpio"),
        # the controller uses instruments that cannot deliver, and nothing else of drivers
        (
            "controller.x",
            "from drivers.transport import SerialTransport",
            "drivers.transport.SerialTransport",
        ),
        ("controller.x", "from drivers import pumps", "drivers.pumps"),
        # safety's process internals are not the operator side's business
        ("controller.x", "import safety.host", "safety.host"),
        ("controller.x", "from safety.ipc import server", "safety.ipc.server"),
        ("controller.x", "from safety.ipc import local", "safety.ipc.local"),
        ("controller.x", "from safety import watchdog", "safety.watchdog"),
        # observers: IPC only, never drivers, never the session
        ("observe.dashboard", "from drivers.balances import mtsics", "drivers.balances.mtsics"),
        ("observe.dashboard", "import safety.host.core", "safety.host.core"),
        (
            "observe.dashboard",
            "from controller.session import Session",
            "controller.session.Session",
        ),
        ("observe.dashboard", "from controller import connect", "controller.connect"),
        # the oracle shares nothing with what it judges beyond the rules
        (
            "verification.ground_truth",
            "from controller.journal_timeline import x",
            "controller.journal_timeline.x",
        ),
        ("verification.ground_truth", "import safety.ipc.client", "safety.ipc.client"),
        (
            "verification.ground_truth",
            "from firmware_bridge.clock import VirtualClock",
            "firmware_bridge.clock.VirtualClock",
        ),
    ],
)
def test_checker_catches_a_violation(module: str, source: str, imported: str) -> None:
    violations = check_source(source, module)
    assert [v.imported for v in violations] == [imported]
    assert violations[0].line >= 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("controller.x", "from safety.units import parse_dose"),
        ("controller.x", "from safety import units, rules, kernel, alarms, library"),
        ("controller.x", "import safety.ipc.client"),
        ("controller.x", "from safety.ipc import messages"),
        ("controller.x", "import safety"),
        ("controller.x", "from safety.library.models import Drug"),
        ("controller.x", "from . import journal\nfrom .machine import M"),
        ("controller.x", "import transitions, json"),
        ("controller.x", "from drivers.balances import mtsics\nimport drivers.monitors.x"),
        ("controller.x", "import drivers"),
        ("observe.dashboard", "from safety.status import Snapshot\nimport safety.ipc.client"),
        ("observe.dashboard", "from controller.status_line import status_line"),
        ("observe.dashboard", "import firmware_bridge.clock"),
        ("cli.demo.script", "from verification.ground_truth import check_ground_truth"),
        ("cli.commands.bench", "from benchmarks.suite import run\nimport controller.session"),
        ("verification.scenario.bench", "from safety.ipc.local import LocalSafety"),
        ("verification.scenario.bench", "import drivers.transport"),
        ("verification.ground_truth", "from safety.kernel.model import Event"),
        ("verification.ground_truth", "from firmware_bridge.pump_model import GroundTruth"),
        ("drivers.pumps.mock", "from firmware_bridge import faults"),
        ("drivers.gpio.rpi", "from ..loading import resolve"),
        ("drivers.pumps.ne1000", "from drivers.transport import SerialTransport"),
        ("safety.host", "from drivers.pumps.base import PumpDriver\nimport firmware_bridge.clock"),
        ("safety.host", "from drivers.gpio import open_gpio\nfrom drivers.balances import x"),
        ("firmware_bridge.emulators.ne1000", "from ..pump_model import SimulatedPump"),
        ("observe.feed", "from safety.ipc.observer import ObserverClient"),
        ("observe.view", "from safety.status import Snapshot\nfrom safety import journal_text"),
        ("cli.commands.dashboard", "from observe.feed import BenchFeed"),
    ],
)
def test_checker_allows_what_the_rules_allow(module: str, source: str) -> None:
    assert check_source(source, module) == []


def test_relative_imports_resolve_from_the_right_package() -> None:
    names = [n for _, n in imported_modules("from . import a\nfrom .. import b", "x.y.z")]
    assert names == ["x.y.a", "x.b"]
    names = [n for _, n in imported_modules("from . import a", "x.y", is_package=True)]
    assert names == ["x.y.a"]


def test_unparsable_or_escaping_sources_are_reported() -> None:
    assert check_source("import (", "drivers.x")[0].rule.startswith("cannot parse")
    # a relative import cannot leave its room: Python refuses it, and so does the check
    for module, source, is_package in [
        ("firmware_bridge.emulators.x", "from ...drivers import base", False),
        ("firmware_bridge", "from ..controller import session", True),
        ("drivers.x", "from .... import a", False),
    ]:
        violations = check_source(source, module, is_package=is_package)
        assert "beyond the top-level" in violations[0].rule


@pytest.mark.hil  # a child interpreter: only a fresh process shows what it imports
def test_the_safety_process_imports_no_web_or_broker_stack() -> None:
    """Its memory goal (<= 40 MB) and its attack surface: ``python -m safety`` loads
    neither the observers' web stack nor the MQTT client nor the console's toolkit."""
    import subprocess
    import sys

    code = (
        "import sys, safety.__main__, safety.host.process, safety.ipc.server; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'uvicorn', 'paho', 'prompt_toolkit', 'selenium', 'observe', "
        "'controller', 'anyio'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]", out.stdout
