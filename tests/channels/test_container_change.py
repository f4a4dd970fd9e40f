"""A syringe or bag change on one pump (S15): pause, new container, prime, resume.

The pause is the one way a gradual-wean drug stops above its stop threshold, and only
for a bounded time: past ``max_container_pause_s`` (3 min) a high alarm. Norepinephrine
8 mcg/min (30 mL/h of 16 mcg/mL) on a one-pump bench, as today's benches are.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.kernel.model import ContainerLoaded, ContainerPaused, ProgramSpec
from safety.reasons import Reason
from tests.channels.support import ChannelBench


@pytest.fixture
def one(make_channels: Callable[..., ChannelBench], std: ProgramSpec) -> ChannelBench:
    bench = make_channels(names=("A",), loaded_ml={"A": 20.0})
    bench.boot()
    assert bench.load(std).verdict.accepted
    assert bench.start(8).execution == "applied"
    bench.advance(120)
    return bench


def test_a_pause_stops_a_vasopressor_a_stop_may_not(one: ChannelBench) -> None:
    assert one.stop().verdict.reason is Reason.STOP_ABOVE_THRESHOLD
    pause = one.pause()
    assert pause.verdict.accepted and pause.execution == "applied", pause.verdict.message
    assert pause.verdict.message == (
        "accepted: channel A paused for a container change, at most 3 min (alarmed past "
        "it); resume it after the change at 30 mL/h"
    )
    assert not one.pump.snapshot().running
    paused = [e for e in one.events() if isinstance(e, ContainerPaused)]
    assert [(e.channel, e.rate_ml_h) for e in paused] == [("A", Decimal("30.0"))]
    # the channel takes no dose while paused
    assert one.change(9).verdict.reason is Reason.CONTAINER_PAUSE
    assert one.start(8).verdict.reason is Reason.CONTAINER_PAUSE


def test_a_pause_is_bounded_exactly_at_its_length(one: ChannelBench) -> None:
    assert one.pause().verdict.accepted
    since = one.patient_now()
    one.advance(180, poll_every_s=1)  # exactly 3 min
    assert one.patient_now() == since + 180
    assert one.core.state.alarms.get("container_pause_overdue") is None
    one.advance(1, poll_every_s=1)
    alarm = one.core.state.alarms.get("container_pause_overdue", "A")
    assert alarm is not None and alarm.priority.word == "high" and alarm.raised_at == since + 180
    # resuming ends it
    assert one.resume().verdict.accepted
    one.advance(1)
    alarm = one.core.state.alarms.get("container_pause_overdue", "A")
    assert alarm is not None and not alarm.active


def test_a_change_primes_and_resumes_at_the_rate_before(one: ChannelBench) -> None:
    assert one.pause().verdict.accepted
    changed = one.container_changed("50")
    assert changed.verdict.accepted, changed.verdict.message
    assert changed.verdict.message == "container changed on channel A: 50 mL; not primed"
    assert one.ch("A").container.volume_ml == 50.0 and one.ch("A").container.used_ml == 0.0
    one.prime_done("A", "1")
    resumed = one.resume()
    assert resumed.verdict.accepted and resumed.execution == "applied", resumed.verdict.message
    assert resumed.verdict.message.startswith("accepted: channel A resumes at 30 mL/h")
    assert one.pump.snapshot().running and one.pump.snapshot().set_rate_ml_h == 30.0
    # the pause is in the drug's history: nothing reset it
    history = one.core.state.history_of("norepinephrine")
    amounts = [s.amount_per_h for s in history.segments]
    assert Fraction(0) in amounts and amounts[-1] == Fraction(480)


def test_another_concentration_needs_a_reprogram_and_resumes_the_same_drug_rate(
    one: ChannelBench, std: ProgramSpec
) -> None:
    assert one.pause().verdict.accepted
    changed = one.container_changed("50", concentration="8 mg/250 mL")
    assert changed.verdict.accepted
    assert changed.verdict.message.endswith(
        "it holds 8 mg/250 mL, the program 4 mg/250 mL: re-program the channel before it runs"
    )
    loaded = [e for e in one.events() if isinstance(e, ContainerLoaded)]
    assert loaded[-1].concentration == "8 mg/250 mL"
    stale = one.resume()
    assert stale.verdict.reason is Reason.PROGRAM_STALE
    double = ProgramSpec(**{**std.__dict__, "concentration": "8 mg/250 mL"})
    assert one.load(double).verdict.accepted
    resumed = one.resume()
    assert resumed.verdict.accepted, resumed.verdict.message
    assert one.pump.snapshot().set_rate_ml_h == 15.0  # 8 mcg/min of 32 mcg/mL


def test_a_pause_needs_something_to_pause_and_a_resume_a_pause(one: ChannelBench) -> None:
    assert one.resume().verdict.reason is Reason.CONTAINER_PAUSE
    assert one.container_changed("50").verdict.reason is Reason.ALREADY_INFUSING
    assert one.pause().verdict.accepted
    assert one.pause().verdict.reason is Reason.CONTAINER_PAUSE
    past = one.container_changed("50.001")
    assert past.verdict.reason is Reason.BAD_INPUT
    assert past.verdict.message == (
        "refused: volume_ml must be more than 0 and at most 50 mL (what bd-plastipak-50ml holds)"
    )


def test_a_resume_is_judged_on_what_the_drug_gives_by_then(
    make_channels: Callable[..., ChannelBench], std: ProgramSpec
) -> None:
    """A paused at 40 mcg/min; B started meanwhile at the window's highest dose (a start
    may resume it): A's resume would give 80 in all, far above the hard max."""
    bench = make_channels()
    bench.seed(std, [(0.0, "40")], boot_at=3600.0)
    bench.boot()
    assert bench.load_on("A", std).verdict.accepted and bench.load_on("B", std).verdict.accepted
    assert bench.pause("A").verdict.accepted
    assert bench.start_on("B", 40, confirm=True).verdict.accepted
    refused = bench.resume("A")
    assert refused.verdict.reason is Reason.HARD_MAX, refused.verdict.message
    assert not bench.pumps["A"].snapshot().running
