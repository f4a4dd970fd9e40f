"""The channel mutants' snippets are each found exactly once in the source: a refactor
that moves a check must move its mutant too (``tests/channels/mutation_check.py``); and
the runner's copy of the tree holds every module its tests reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.mutation_check import EXTRA, MUTANTS, TESTS
from tests.kernel.mutation_check import ROOT, Mutant, copy_tree, missing_modules


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_channel_mutant_changes_exactly_one_place(mutant: Mutant) -> None:
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.original) == 1, (
        f"{mutant.name}: the snippet is no longer found exactly once in {mutant.path}"
    )
    assert mutant.mutated != mutant.original


def test_the_runners_copy_of_the_tree_holds_every_module_its_tests_reach(
    tmp_path: Path,
) -> None:
    """A module the channel tests reach but the copy lacks would fail every mutant's run
    at collection (``benchmarks`` was missing until 2026-12-03)."""
    copy_tree(tmp_path, EXTRA)
    for tests in TESTS:
        folder = Path(tests).parent if tests.endswith(".py") else Path(tests)
        assert not missing_modules(tmp_path, str(folder))
