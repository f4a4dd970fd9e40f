"""The safety core builds one snapshot per state and instant (``SafetyCore.snapshot``):
never a stale one. Any change of what a snapshot is made of (the kernel state, the clinical
instant, a channel's pump counter, the library) builds it again."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.four_pumps import CHANNEL_DRUGS
from safety.kernel.model import ProgramSpec
from safety.library import DrugLibrary
from tests.channels.support import ChannelBench


def test_a_snapshot_is_rebuilt_whenever_what_it_shows_changed(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    bench = make_channels()
    bench.boot()
    core = bench.core
    first = core.snapshot()
    assert core.snapshot() is first  # same state, same instant: the same snapshot

    assert bench.load_on("A", std).verdict.accepted  # a new state
    loaded = core.snapshot()
    assert loaded is not first and loaded.channels[0].program == std

    bench.clinical.advance(1.0)  # a new instant, the same state
    later = core.snapshot()
    assert later is not loaded and later.clinical_time > loaded.clinical_time

    channel = core.channels["A"]
    channel.last_infused_ml = (channel.last_infused_ml or 0.0) + 1.0  # a new counter
    counted = core.snapshot()
    assert counted is not later

    library = core.library
    assert library is not None
    core.library = None  # the library went (a bad reload): the snapshot says so
    assert core.snapshot().library_hash == ""
    core.library = library
    assert core.snapshot().library_hash == library.content_hash


def test_the_settled_snapshot_is_the_replys_own_until_anything_in_it_changes(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    """What the status push right after a reply shows: the reply's own snapshot while only
    the clinical clock moved; a new one, at the instant, once anything it is made of
    changed, and whenever there is no reply just sent to reuse (a push at any other time
    shows the clock's passing: windows, amounts given, minutes left)."""
    bench = make_channels()
    bench.boot()
    core = bench.core
    answered = bench.load_on("A", std).snapshot
    bench.clinical.advance(1.0)
    assert core.settled_snapshot(answered) is answered  # only time passed: no news
    fresh = core.settled_snapshot(None)  # no reply to reuse: built at the instant
    assert fresh is not answered and fresh.clinical_time > answered.clinical_time
    channel = core.channels["A"]
    channel.last_infused_ml = (channel.last_infused_ml or 0.0) + 1.0
    counted = core.settled_snapshot(fresh)
    assert counted is not fresh and counted.channels[0].infused_ml != fresh.channels[0].infused_ml
    reloaded = bench.load_on("B", std).snapshot  # a new state
    assert core.settled_snapshot(counted) is not counted
    assert core.settled_snapshot(reloaded) is reloaded


def test_a_drugs_channels_are_those_whose_program_gives_it_as_the_state_changes(
    make_channels: Callable[..., ChannelBench], library: DrugLibrary
) -> None:
    """``KernelState.drug_channels`` is found once per state (cached on it): after every
    load, on any channel, it is what a walk over the channels gives, in the bench's order."""
    bench = make_channels(names=("A", "B", "C", "D"))
    bench.boot()
    drugs = {name: drug.spec(library) for name, drug in CHANNEL_DRUGS.items()}
    norepinephrine = drugs["A"]
    plan = [("B", norepinephrine), ("D", drugs["D"]), ("A", drugs["B"]), ("C", norepinephrine),
            ("A", norepinephrine), ("D", norepinephrine)]  # fmt: skip
    for channel, spec in plan:
        assert bench.load_on(channel, spec).verdict.accepted
        state = bench.core.state
        for drug in {s.drug for s in drugs.values()}:
            walked = [(n, c) for n, c in state.channels.items() if c.drug == drug]
            assert state.drug_channels(drug) == walked
            assert state.drug_channels(drug) == walked  # again: from the cache
