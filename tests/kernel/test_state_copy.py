"""``KernelState.with_channel`` copies its records without ``dataclasses.replace``: the
copy must be exactly what ``replace`` would give, and stay so as the records change."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from decimal import Decimal

import pytest

from safety.kernel.state import ChannelState, ContainerState, KernelState


def test_the_records_have_nothing_replace_would_run_or_skip() -> None:
    """The fast copy runs no ``__init__``: it is only right while there is no
    ``__post_init__`` and no field left out of ``__init__``."""
    for record in (ChannelState, KernelState):
        assert not hasattr(record, "__post_init__"), record
        assert all(f.init for f in dataclasses.fields(record)), record


def test_with_channel_gives_what_replace_gives() -> None:
    a = ChannelState(running=True, set_rate=Decimal(30), driver="mock")
    state = KernelState(channels={"A": a, "B": ChannelState()}, last_seq=7)
    container = ContainerState(used_ml=3.0)
    changed = state.with_channel("A", set_rate=Decimal(45), container=container, relieved_by="B")
    relieved = replace(a, set_rate=Decimal(45), container=container, relieved_by="B")
    expected = replace(state, channels={**state.channels, "A": relieved})
    assert changed == expected
    assert changed.channels["A"].__dict__ == expected.channels["A"].__dict__
    assert changed.__dict__ == expected.__dict__
    assert list(changed.channels) == ["A", "B"]
    assert state.channel("A").set_rate == Decimal(30)  # the old state is untouched
    new = changed.with_channel("C", running=True)  # a new channel, from the defaults
    assert new.channels["C"] == replace(ChannelState(), running=True)


def test_with_channel_carries_no_cached_value_to_the_new_record() -> None:
    """Anything in the old record's ``__dict__`` beyond its fields (what a cached
    property would leave there) is not carried to the new one: it would be stale."""
    state = KernelState(channels={"A": ChannelState(set_rate=Decimal(30))})
    old = state.channels["A"]
    old.__dict__["cached"] = "computed for 30 mL/h"
    state.__dict__["cached"] = "computed for the old state"
    changed = state.with_channel("A", set_rate=Decimal(45))
    assert "cached" not in changed.__dict__ and "cached" not in changed.channels["A"].__dict__


def test_with_channel_refuses_a_field_it_does_not_have() -> None:
    state = KernelState(channels={"A": ChannelState()})
    with pytest.raises(TypeError, match="no field 'rate'"):
        state.with_channel("A", rate=Decimal(1))
