"""The mutation table stays in step with the source it mutates.

``tests/kernel/mutation_check.py`` removes each safety check in turn and shows that the
tests named for it fail; it takes a minute, so it is run by hand, not by ``make test``.
A refactor that rewrites a checked line would silently turn its mutant into a no-op
("STALE"), and the promise "every check has a test that fails without it" would rot
unnoticed. This test, which is quick, fails as soon as a snippet is no longer found
exactly once, or a mutant names no test that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.kernel.mutation_check import MUTANTS, ROOT, Mutant, copy_tree, missing_modules

TEST_NAMES = {
    name
    for path in (ROOT / "tests" / "kernel").glob("test_*.py")
    for name in re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M)
}


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_changes_exactly_one_place(mutant: Mutant) -> None:
    source = Path(ROOT, mutant.path).read_text(encoding="utf-8")
    assert source.count(mutant.original) == 1, (
        f"{mutant.name}: the snippet is no longer found exactly once in {mutant.path}; "
        "update the mutation table to the new code"
    )
    assert mutant.mutated != mutant.original


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_names_tests_that_exist(mutant: Mutant) -> None:
    words = [w for w in re.split(r"\s+|\(|\)", mutant.tests) if w not in {"", "or", "and", "not"}]
    assert words and all(any(word in name for name in TEST_NAMES) for word in words), (
        f"{mutant.name}: -k {mutant.tests!r} matches no test in tests/kernel"
    )


def test_every_invariant_has_a_mutant() -> None:
    covered = {m.name.split()[0] for m in MUTANTS}
    assert {f"S{n}" for n in range(1, 15)} <= covered


def test_the_runners_copy_of_the_tree_holds_every_module_its_tests_reach(
    tmp_path: Path,
) -> None:
    """The runner judges each mutant in a copy of the tree (``COPY``): a project module
    that the kernel tests reach but the copy lacks fails every mutant's run at
    collection, and each mutant would be reported as not killed for the wrong reason (so
    it was, unseen, until 2026-12-03: ``test_stateful`` had come to import
    ``tests.channels.support``)."""
    copy_tree(tmp_path)
    assert not missing_modules(tmp_path, "tests/kernel")
