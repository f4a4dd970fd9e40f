"""Declarative scenarios: a bench, timed actions and faults, and expectations (TOML).

``pumpctl scenario run FILE`` (``cli.commands.scenario``) and tests use
``run_scenario``; the format is documented in docs/scenarios.md.

- ``model``: the file's shape (pydantic, ``extra="forbid"``);
- ``loader``: TOML -> model, every problem named by its line;
- ``bench``: where it runs (one process on virtual clocks, or real processes);
- ``runner``: timed actions and faults, a timeline;
- ``expect``: the verdicts, from the journals and the pump's ground truth;
- ``report``: text and JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from safety.library import DrugLibrary, load_library
from verification.scenario.expect import Evaluation, evaluate
from verification.scenario.loader import (
    LoadedScenario,
    ScenarioFileError,
    load_scenario,
    parse_scenario,
    real_mode_problems,
)
from verification.scenario.runner import Runner, RunResult, ScenarioRunError


def run_scenario(
    scenario: LoadedScenario | str | Path,
    out_dir: str | Path,
    *,
    real: bool = False,
    library: DrugLibrary | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[RunResult, Evaluation]:
    """Run a scenario (a file or a loaded one) with its journals in ``out_dir``.

    Raises ``ScenarioFileError`` for a bad file (every problem with its line) and
    ``ScenarioRunError`` when the bench cannot be set up or dies."""
    loaded = scenario if isinstance(scenario, LoadedScenario) else load_scenario(scenario)
    if real:
        problems = real_mode_problems(loaded)
        if problems:
            raise ScenarioFileError(str(loaded.path), problems)
    library = library or load_library()
    result = Runner(loaded, library, Path(out_dir), real=real, echo=echo).run()
    return result, evaluate(loaded, result, library)


__all__ = [
    "Evaluation",
    "LoadedScenario",
    "RunResult",
    "ScenarioFileError",
    "ScenarioRunError",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
]
