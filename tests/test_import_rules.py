"""The rooms' import rules (ARCHITECTURE.md), checked on the source, not by running it.

- ``firmware_bridge`` imports none of drivers, safety, controller.
- ``drivers`` never imports safety or controller.
- ``safety`` never imports controller.
- ``controller`` never imports drivers, except instruments that cannot deliver a drug
  (``CONTROLLER_MAY_IMPORT_FROM_DRIVERS``: the MAP sources), and from safety only its
  pure parts (``CONTROLLER_MAY_IMPORT_FROM_SAFETY``); the rest of safety is the process
  host.

Every import counts wherever it stands: inside a function, under ``if TYPE_CHECKING``,
relative (``from ..drivers import x``) or through ``importlib.import_module("...")``
with a literal name. A lazy import inside a function is still a dependency.

``from safety import x`` in the controller is read as the module ``safety.x``: the
controller names the pure module it uses, so the allow-list can see it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("firmware_bridge", "drivers", "safety", "controller")

#: room -> rooms it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "firmware_bridge": frozenset({"drivers", "safety", "controller"}),
    "drivers": frozenset({"safety", "controller"}),
    "safety": frozenset({"controller"}),
    "controller": frozenset({"drivers"}),
}

#: the pure parts of safety the controller may use to pre-check and explain (and their
#: submodules); every other safety module is the process host's internals
CONTROLLER_MAY_IMPORT_FROM_SAFETY: tuple[str, ...] = (
    "safety.units",
    "safety.library",
    "safety.rules",
    "safety.kernel",
    "safety.ipc.messages",
    "safety.ipc.link",
    "safety.ipc.client",
    # the in-process link for one-process runs (scenario runner, tests): it builds the
    # host core and the mock driver itself, lazily, so the controller never touches them
    "safety.ipc.local",
    "safety.alarms",
    # what the safety process reports (snapshots, outcomes): plain values
    "safety.status",
    # the safety process's timer settings (plain values)
    "safety.timing",
    # the append-only SQLite store both processes journal into (not the host's journal
    # policy, which lives in safety.host)
    "safety.journal",
    # pure too, and already shared with ``pumpctl calc`` so the calculator can never promise
    # a rate the safety process refuses (dosing) and can word the kernel's reasons (reasons)
    "safety.dosing",
    "safety.reasons",
    # pure: each pump family's codec rounding rule, so ``pumpctl calc --pump`` reports the
    # rate that family really runs (no driver, no port)
    "safety.pump_rounding",
)


#: instruments that cannot deliver or stop a drug (ARCHITECTURE.md): the controller may use
#: them; everything else in drivers (pumps, GPIO) belongs to the safety process alone
CONTROLLER_MAY_IMPORT_FROM_DRIVERS: tuple[str, ...] = ("drivers.monitors",)


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


def _controller_may_import(name: str) -> bool:
    for allowed in CONTROLLER_MAY_IMPORT_FROM_SAFETY:
        if name == allowed or name.startswith(allowed + "."):
            return True
        if allowed.startswith(name + "."):  # a parent package on the way: safety, safety.ipc
            return True
    return False


def check_source(
    source: str, module_name: str, *, is_package: bool = False, path: str = "<source>"
) -> list[Violation]:
    room = module_name.partition(".")[0]
    forbidden = FORBIDDEN.get(room, frozenset())
    found: list[Violation] = []
    try:
        imports = list(imported_modules(source, module_name, is_package=is_package))
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, "?", f"cannot parse: {exc.msg}")]
    except ValueError as exc:
        return [Violation(path, 0, "?", str(exc))]
    for line, name in imports:
        top = name.split(".")[0]
        if room == "controller" and any(
            name == allowed or name.startswith(allowed + ".")
            for allowed in CONTROLLER_MAY_IMPORT_FROM_DRIVERS
        ):
            continue
        if top in forbidden:
            found.append(Violation(path, line, name, f"{room} never imports {top}"))
        elif room == "controller" and top == "safety" and not _controller_may_import(name):
            found.append(
                Violation(
                    path,
                    line,
                    name,
                    "controller may import only the pure parts of safety: "
                    + ", ".join(CONTROLLER_MAY_IMPORT_FROM_SAFETY),
                )
            )
    return found


def check_tree(root: Path = REPO) -> list[Violation]:
    found: list[Violation] = []
    for room in ROOMS:
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
    names = {name for _, name in imported_modules((REPO / "drivers/mock.py").read_text(), "x")}
    assert "firmware_bridge.pump_model.SimulatedPump" in names


# --------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    ("module", "source", "imported"),
    [
        ("firmware_bridge.codec", "import drivers.base", "drivers.base"),
        ("firmware_bridge.codec", "from safety import kernel", "safety.kernel"),
        ("drivers.ne1000", "def f():\n    import controller.cli\n", "controller.cli"),
        ("drivers.ne1000", "from controller import cli", "controller.cli"),
        ("drivers.ne1000", "class A:\n    def m(self):\n        import safety\n", "safety"),
        ("safety.host", "import controller", "controller"),
        ("safety.host", "if True:\n    from controller.machine import M\n", "controller.machine.M"),
        (
            "controller.cli",
            "from drivers.mock import MockPumpDriver",
            "drivers.mock.MockPumpDriver",
        ),
        (
            "controller.cli",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from drivers import base\n",
            "drivers.base",
        ),
        (
            "controller.cli",
            "import importlib\nimportlib.import_module('drivers.mock')",
            "drivers.mock",
        ),
        ("controller.cli", "__import__('drivers')", "drivers"),
        ("controller.cli", "from drivers import ne1000", "drivers.ne1000"),
        ("controller.cli", "import drivers.monitorsx", "drivers.monitorsx"),
        ("controller.cli", "import safety.host", "safety.host"),
        ("controller.cli", "from safety.ipc import server", "safety.ipc.server"),
        ("controller.cli", "from safety import watchdog", "safety.watchdog"),
    ],
)
def test_checker_catches_a_violation(module: str, source: str, imported: str) -> None:
    violations = check_source(source, module)
    assert [v.imported for v in violations] == [imported]
    assert violations[0].line >= 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("controller.cli", "from safety.units import parse_dose"),
        ("controller.cli", "from safety import units, rules, kernel, alarms, library"),
        ("controller.cli", "import safety.ipc.client"),
        ("controller.cli", "from safety.ipc import messages"),
        ("controller.cli", "import safety"),
        ("controller.cli", "from safety.library.models import Drug"),
        ("controller.cli", "from . import journal\nfrom .machine import M"),
        ("controller.cli", "import transitions, json"),
        ("controller.closed_loop.loop", "from drivers.monitors.base import MapSource"),
        ("controller.cli", "from drivers import monitors"),
        ("drivers.mock", "from firmware_bridge import faults"),
        ("drivers.gpio.rpi", "from ..registry import resolve"),
        ("safety.host", "from drivers.base import PumpDriver\nimport firmware_bridge.clock"),
        ("firmware_bridge.emulators.ne1000", "from ..pump_model import SimulatedPump"),
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
        ("firmware_bridge", "from ..controller import cli", True),
        ("drivers.x", "from .... import a", False),
    ]:
        violations = check_source(source, module, is_package=is_package)
        assert "beyond the top-level" in violations[0].rule
