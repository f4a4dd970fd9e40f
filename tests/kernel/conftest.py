"""Fixtures for the safety-kernel invariant suite: a bench per test (see ``support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from safety.kernel.model import ProgramSpec
from safety.library import DrugLibrary
from tests.kernel.support import Bench, bench_factory, norepi_standard


@pytest.fixture
def make_bench(library: DrugLibrary, tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    """Build benches (syringe, GPIO, config...) in this test's temporary directory."""
    yield from bench_factory(Bench, library, tmp_path)


@pytest.fixture
def bench(make_bench: Callable[..., Bench]) -> Bench:
    """Booted, controller attached, no program."""
    b = make_bench()
    b.boot()
    return b


@pytest.fixture
def std(library: DrugLibrary) -> ProgramSpec:
    return norepi_standard(library)


@pytest.fixture
def infusing(bench: Bench, std: ProgramSpec) -> Bench:
    """Norepinephrine standard, 4 mg/250 mL, running at 8 mcg/min (30 mL/h)."""
    assert bench.load(std).verdict.accepted
    outcome = bench.start(8)
    assert outcome.verdict.accepted and outcome.execution == "applied", outcome
    assert bench.truth_rate() == 30.0
    return bench
