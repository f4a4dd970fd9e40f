"""The patient's timeline across restarts, decided purely (``safety.kernel.timeline``).

Properties that must hold for any evidence: the timeline never runs backwards; a credit
is never more than the best trustworthy evidence says; an untrusted wall clock never
adds time; within one boot on the same source it continues exactly.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safety.kernel.timeline import ClockEvidence, TimelineMark, resume

times = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)
boots = st.sampled_from(["boot-1", "boot-2", None])
synced = st.sampled_from([True, False, None])
sources = st.sampled_from(["real", "scaled:60.0:10.0:0.0", "virtual"])


@st.composite
def marks(draw: st.DrawFn) -> TimelineMark:
    return TimelineMark(
        clinical=draw(times),
        liveness=draw(times),
        wall=1.8e9 + draw(times),
        boot_id=draw(boots),
        source=draw(sources),
        offset=draw(st.floats(-1e7, 1e7)),
        wall_synced=draw(synced),
    )


@st.composite
def evidences(draw: st.DrawFn) -> ClockEvidence:
    return ClockEvidence(
        boot_id=draw(boots),
        liveness=draw(times),
        boottime=draw(st.one_of(st.none(), times)),
        wall=1.8e9 + draw(st.floats(-1e7, 2e7)),
        wall_synced=draw(synced),
        source=draw(sources),
        source_now=draw(times),
        scale=draw(st.sampled_from([1.0, 60.0])),
    )


@given(marks(), evidences())
def test_the_timeline_never_runs_backwards(mark: TimelineMark, ev: ClockEvidence) -> None:
    resumed = resume(mark, ev)
    assert resumed.credited_s >= 0
    assert math.isfinite(resumed.offset)
    # clinical time right after the restart is where the journal ended plus the credit
    assert ev.source_now + resumed.offset == pytest.approx(
        mark.clinical + resumed.credited_s, rel=1e-9, abs=1e-6
    )


@given(marks(), evidences())
def test_an_unsynchronised_wall_clock_never_adds_time(
    mark: TimelineMark, ev: ClockEvidence
) -> None:
    resumed = resume(mark, ev)
    if resumed.conservative:
        lower = ev.boottime if ev.boottime is not None else 0.0
        assert resumed.credited_s <= max(0.0, lower) * ev.scale + 1e-6


@given(marks(), evidences())
def test_a_wall_clock_is_trusted_only_when_synchronised_at_both_ends(
    mark: TimelineMark, ev: ClockEvidence
) -> None:
    resumed = resume(mark, ev)
    if "wall clock" in resumed.basis and not resumed.conservative:
        assert mark.wall_synced and ev.wall_synced


def test_same_boot_same_source_continues_exactly() -> None:
    mark = TimelineMark(1000.0, 50.0, 1.8e9, "b", "real", 950.0, False)
    ev = ClockEvidence("b", 80.0, 80.0, 1.8e9 + 30, False, "real", 80.0)
    resumed = resume(mark, ev)
    assert resumed.offset == 950.0 and resumed.credited_s == 30.0
    assert not resumed.discontinuity and not resumed.conservative


def test_same_boot_new_source_counts_monotonic_elapsed_time_at_its_scale() -> None:
    mark = TimelineMark(1000.0, 50.0, 1.8e9, "b", "scaled:60.0:1.0:0.0", 0.0, None)
    ev = ClockEvidence("b", 60.0, 60.0, 1.8e9, None, "scaled:60.0:55.0:0.0", 300.0, 60.0)
    resumed = resume(mark, ev)
    assert resumed.credited_s == pytest.approx(600.0)  # 10 s at 60x
    assert resumed.discontinuity and not resumed.conservative


@pytest.mark.parametrize(
    ("mark_synced", "now_synced", "wall_gap", "credited", "conservative"),
    [
        (True, True, 7200.0, 7200.0, False),  # both synchronised: trusted
        (False, True, 7200.0, 5.0, True),  # synchronised only now: the boot's lower bound
        (True, False, 7200.0, 5.0, True),
        (True, True, 2.0, 5.0, True),  # a wall clock that contradicts the boot time
        (True, True, -3600.0, 5.0, True),  # one that went back
    ],
)
def test_after_a_reboot(
    mark_synced: bool, now_synced: bool, wall_gap: float, credited: float, conservative: bool
) -> None:
    mark = TimelineMark(1000.0, 9e5, 1.8e9, "boot-1", "real", 0.0, mark_synced)
    ev = ClockEvidence("boot-2", 5.0, 5.0, 1.8e9 + wall_gap, now_synced, "real", 5.0)
    resumed = resume(mark, ev)
    assert resumed.credited_s == pytest.approx(credited)
    assert resumed.conservative is conservative
    assert resumed.discontinuity
    assert 5.0 + resumed.offset == pytest.approx(1000.0 + credited)


def test_a_monotonic_clock_that_went_backwards_in_one_boot_credits_no_boot_time() -> None:
    """A time namespace: the boot id is the same, so the boot time proves nothing."""
    mark = TimelineMark(1000.0, 9e5, 1.8e9, "boot-1", "real", 0.0, False)
    ev = ClockEvidence("boot-1", 5.0, 5.0, 1.8e9 + 600, False, "real", 5.0)
    resumed = resume(mark, ev)
    assert resumed.credited_s == 0.0 and resumed.conservative
    assert "ran backwards" in resumed.basis


def test_a_new_journal_starts_the_timeline_where_the_source_stands() -> None:
    ev = ClockEvidence("b", 5.0, 5.0, 1.8e9, None, "real", 5.0)
    resumed = resume(None, ev)
    assert resumed.offset == 0.0 and resumed.credited_s == 0.0
    assert not resumed.discontinuity
