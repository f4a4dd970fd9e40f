"""What a pump reading costs the safety core: each piece of work done once (see
docs/benchmarks.md, "Simulation"). The decisions are the same either way (the replay and
journal-order tests say so); these tests keep the repeated work from coming back."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from safety import clock_evidence
from safety.host.core import SYNC_CHECK_S, HostTiming
from safety.ipc.local import LocalSafety
from safety.kernel import observe as kernel_observe
from safety.kernel.model import ChangeDose, LoadProgram, ProgramSpec, StartInfusion
from safety.kernel.replay import replay_journal
from safety.library import DrugLibrary

#: the simulation benchmark's timing: a reading and a keep-alive a minute
TIMING = HostTiming(poll_period_s=60.0, keep_alive_period_s=60.0, heartbeat_timeout_s=120.0)


def _infusing(link: LocalSafety, spec: ProgramSpec) -> None:
    link.attach()
    assert link.request(LoadProgram(spec)).verdict.accepted
    assert link.request(StartInfusion(Decimal(8))).execution == "applied"


def _counting(monkeypatch: pytest.MonkeyPatch, target: str, real: Any) -> list[object]:
    calls: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, counted)
    return calls


def _readbacks(link: LocalSafety) -> int:
    return sum(1 for _ in link.journal.entries(kinds=("readback",)))


def test_a_reading_is_observed_once_and_the_live_state_is_the_replayed_one(
    library: DrugLibrary, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalSafety(library=library, timing=TIMING) as link:
        _infusing(link, spec)
        live = _counting(monkeypatch, "safety.host.core.observe", kernel_observe.observe)
        replayed = _counting(monkeypatch, "safety.kernel.reducer.observe", kernel_observe.observe)
        before = _readbacks(link)
        link.advance(3600.0)
        readings = _readbacks(link) - before
        assert readings >= 60
        assert len(live) == readings  # the host's reaction and the state: one observe
        assert not replayed  # the reducer is not asked again for the same read-back
        monkeypatch.undo()
        assert replay_journal(link.core.config, link.journal).state == link.core.state


def test_the_next_deadline_is_computed_once_per_state_and_instant(
    library: DrugLibrary, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalSafety(library=library, timing=TIMING) as link:
        _infusing(link, spec)
        calls = _counting(
            monkeypatch, "safety.host.core.next_deadline", kernel_observe.next_deadline
        )
        for _ in range(5):
            expected = kernel_observe.next_deadline(
                link.core.state, link.core.now(), link.core.config
            )
            assert expected is not None
            assert link.core.next_deadline() == expected
            assert link.core.next_deadline() == expected  # the same state and instant
            link.advance(60.0)
        distinct = {(id(args[0]), args[1].clinical) for args in calls}  # type: ignore[index]
        assert len(calls) == len(distinct)


def test_the_running_check_reads_the_synchronisation_alone_and_journals_a_change(
    library: DrugLibrary, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool | None] = [False]

    def sync(*, max_age_s: float = 0.0) -> bool | None:
        return synced[0]

    monkeypatch.setattr("safety.clock_evidence.wall_clock_synchronised", sync)
    monkeypatch.setattr("safety.host.core.wall_clock_synchronised", sync)
    with LocalSafety(library=library, timing=TIMING) as link:
        _infusing(link, spec)
        boot_reads = _counting(monkeypatch, "safety.clock_evidence.boot_id", clock_evidence.boot_id)
        link.advance(10 * SYNC_CHECK_S)
        assert not boot_reads  # ten checks, no change: nothing but the synchronisation read

        synced[0] = True
        link.advance(SYNC_CHECK_S)
        changes = [
            e.data()
            for e in link.journal.entries(kinds=("timeline_resumed",))
            if "synchronisation changed" in e.data()["basis"]
        ]
        assert len(changes) == 1
        assert changes[0]["wall_synced"] is True
        assert len(boot_reads) == 1  # the full evidence, for the change journaled
        assert changes[0]["boot_id"] == clock_evidence.boot_id()


def test_the_kernels_tick_is_computed_once_per_state_and_instant(
    library: DrugLibrary, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtual clock's advance services twice at the instant it stops at (and a real
    loop pass may too): the second pass reuses the first's pure result."""
    with LocalSafety(library=library, timing=TIMING) as link:
        _infusing(link, spec)
        calls = _counting(monkeypatch, "safety.host.core.tick", kernel_observe.tick)
        for _ in range(30):
            link.advance(30.0)
        assert len(calls) >= 15
        # every call kept its arguments alive: no id of a state was reused
        distinct = {(id(args[0]), args[1]) for args in calls}  # type: ignore[index]
        assert len(calls) == len(distinct)


def test_the_running_check_asks_the_kernel_at_most_once_a_real_second_evidence_always(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process on a virtual clock checks the synchronisation every simulated minute,
    many times a real second, and the kernel's answer changes on the scale of real
    minutes: the running check may take an answer up to ``SYNC_READ_EVERY_S`` old.
    Evidence to journal (beside a wall time read now) always asks afresh."""
    asked: list[float] = []
    real = [100.0]
    answers = iter([True, False, None, True, False])

    def read() -> bool | None:
        asked.append(real[0])
        return next(answers)

    monkeypatch.setattr(clock_evidence, "_read_synchronisation", read)
    monkeypatch.setattr(clock_evidence, "_LAST_SYNC_READ", [])
    # the module's own clock only (the test process's monotonic clock is left alone)
    monkeypatch.setattr("safety.clock_evidence.time", SimpleNamespace(monotonic=lambda: real[0]))
    every = clock_evidence.SYNC_READ_EVERY_S

    def check() -> bool | None:
        return clock_evidence.wall_clock_synchronised(max_age_s=every)

    assert check() is True
    real[0] += every - 0.001  # just inside the second
    assert check() is True
    assert asked == [100.0]
    real[0] = 100.0 + every  # exactly at it: asked again
    assert check() is False
    real[0] -= 5.0  # a clock that went back is no reason to trust an old answer
    assert check() is None
    assert len(asked) == 3
    assert clock_evidence.wall_clock_synchronised() is True  # fresh, at the same instant
    assert len(asked) == 4


def test_the_remembered_tick_is_asked_again_for_a_new_state_at_the_same_instant(
    library: DrugLibrary, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remembered for one state: a request served at the same instant (a new state, a
    rate whose cap or warning may now be due) is judged afresh, never by the old
    state's reaction."""
    with LocalSafety(library=library, timing=TIMING) as link:
        _infusing(link, spec)
        calls = _counting(monkeypatch, "safety.host.core.tick", kernel_observe.tick)
        now = link.core.now()
        first = link.core._tick(now)
        assert link.core._tick(now) is first
        assert len(calls) == 1
        before = link.core.state
        assert link.request(ChangeDose(Decimal(9))).verdict.accepted
        assert link.core.state is not before and link.core.now() == now  # the same instant
        link.core._tick(now)
        assert len(calls) == 2
        assert calls[1][0] is link.core.state  # type: ignore[index]
