"""The channel mutants' snippets are each found exactly once in the source: a refactor
that moves a check must move its mutant too (``tests/channels/mutation_check.py``)."""

from __future__ import annotations

import pytest

from tests.channels.mutation_check import MUTANTS
from tests.kernel.mutation_check import ROOT, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_channel_mutant_changes_exactly_one_place(mutant: Mutant) -> None:
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.original) == 1, (
        f"{mutant.name}: the snippet is no longer found exactly once in {mutant.path}"
    )
    assert mutant.mutated != mutant.original
