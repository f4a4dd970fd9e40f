"""Fixtures for benches of several channels (``support.ChannelBench``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from safety.kernel.model import ProgramSpec
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench
from tests.kernel.support import norepi_standard


@pytest.fixture
def make_channels(library: DrugLibrary, tmp_path: Path) -> Iterator[Callable[..., ChannelBench]]:
    made: list[ChannelBench] = []

    def make(**options: object) -> ChannelBench:
        bench = ChannelBench(tmp_path / f"bench{len(made)}", library, **options)  # type: ignore[arg-type]
        made.append(bench)
        return bench

    yield make
    for bench in made:
        bench.journal.close()
        if bench.gpio is not None:
            bench.gpio.close()
        assert not bench.guard.violations, bench.guard.violations


@pytest.fixture
def two(make_channels: Callable[..., ChannelBench]) -> ChannelBench:
    """Channels A and B (50 mL syringes), booted, controller attached, no program."""
    bench = make_channels()
    bench.boot()
    return bench


@pytest.fixture
def std(library: DrugLibrary) -> ProgramSpec:
    return norepi_standard(library)
