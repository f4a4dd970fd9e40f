"""Fixtures for benches of several channels (``support.ChannelBench``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from safety.kernel.model import ProgramSpec
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench
from tests.kernel.support import bench_factory, norepi_standard


@pytest.fixture
def make_channels(library: DrugLibrary, tmp_path: Path) -> Iterator[Callable[..., ChannelBench]]:
    yield from bench_factory(ChannelBench, library, tmp_path)


@pytest.fixture
def two(make_channels: Callable[..., ChannelBench]) -> ChannelBench:
    """Channels A and B (50 mL syringes), booted, controller attached, no program."""
    bench = make_channels()
    bench.boot()
    return bench


@pytest.fixture
def std(library: DrugLibrary) -> ProgramSpec:
    return norepi_standard(library)
