"""docs/scenarios.md: its complete example runs and passes; its tables name every action,
fault and expectation the format knows."""

from __future__ import annotations

import re
from pathlib import Path

from safety.library import DrugLibrary
from tests.scenarios.conftest import REPO
from verification.scenario import parse_scenario, run_scenario
from verification.scenario.model import ACTIONS, EXPECTATIONS, PROCESS_FAULTS

DOC = (REPO / "docs" / "scenarios.md").read_text(encoding="utf-8")


def _example() -> str:
    m = re.search(
        r"<!-- scenario example: start -->\n```toml\n(.*?)```\n<!-- scenario example: end -->",
        DOC,
        re.S,
    )
    assert m is not None, "the example markers are gone from docs/scenarios.md"
    return m.group(1)


def test_the_documented_example_runs_and_passes(library: DrugLibrary, run_dir: Path) -> None:
    loaded = parse_scenario(_example(), "docs/scenarios.md")
    run, evaluation = run_scenario(loaded, run_dir, library=library)
    assert evaluation.passed, [f"{r.name}: {r.detail}" for r in evaluation.failed]
    assert len(evaluation.results) == 7
    assert [a.accepted for a in run.actions] == [True, True, False, True, True, True]


def test_the_reference_tables_name_everything_the_format_knows() -> None:
    for word in (*ACTIONS, *EXPECTATIONS, *PROCESS_FAULTS):
        assert f"`{word}`" in DOC, word
