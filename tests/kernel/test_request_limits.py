"""S1-S5 on requests: one test per refusal path, each built so that only the check under
test stands between the request and the pump.

How each test pins its check: the state is set up so every other rule lets the request
through (step and window room, soft limits confirmed, cap far away), the refusal is
asserted by its reason code (another rule catching it would fail the test), nothing
reaches the pump, and a neighbouring request just inside the limit is accepted (so the
refusal is the limit, not something else in the state).

Norepinephrine adult standard (library): start max 12, soft 2-35, hard 47 mcg/min; step
rise min(2, 25 %); window 10 min rise min(4, 50 %); wean 25 % per 30 min; stop threshold
2; cap 68 mg / 24 h. At 4 mg/250 mL (16 mcg/mL) 1 mcg/min is 3.75 mL/h.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from safety.alarms import Priority
from safety.kernel.model import ProgramSpec, StartInfusion, StopPump
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.rules import Severity
from tests.kernel.support import Bench, norepi_weight_based, vasopressin_fixed

HOUR = 3600.0


def _nothing_sent(bench: Bench, sets_before: int, rate_before: float) -> None:
    assert len(bench.set_rates()) == sets_before
    assert bench.truth_rate() == rate_before


# --------------------------------------------------------------------------- S1


def test_s1_hard_max_refused_when_every_other_rule_allows_it(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """46 -> 48 mcg/min: a +2 step (step and window allow +2), soft max confirmed, cap
    far away: only the hard max refuses it, and confirmation cannot override it."""
    bench = make_bench()
    bench.seed(std, [(0.0, 46)], boot_at=0.0)
    bench.boot()
    assert bench.truth_rate() == 172.5
    sets = len(bench.set_rates())

    out = bench.change(48, confirm=True)

    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.HARD_MAX
    assert "above the hard maximum of 47 mcg/min" in out.verdict.message
    assert out.execution == "not executed"
    _nothing_sent(bench, sets, 172.5)
    # the limit itself is allowed, and the pump's rounding keeps it at or below it
    ok = bench.change(47, confirm=True)
    assert ok.verdict.accepted, ok.verdict.message
    assert ok.verdict.dose is not None and ok.verdict.dose <= 47
    assert bench.truth_rate() == 176.2  # 176.25 mL/h rounded DOWN to 4 digits


# --------------------------------------------------------------------------- S2


def test_s2_soft_max_needs_confirmation_and_confirmed_is_logged(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = make_bench()
    bench.seed(std, [(0.0, 34)], boot_at=0.0)
    bench.boot()
    sets = len(bench.set_rates())

    refused = bench.change(36)
    assert not refused.verdict.accepted
    assert refused.verdict.reason is Reason.SOFT_MAX
    assert refused.verdict.message.startswith("refused until confirmed")
    _nothing_sent(bench, sets, 127.5)

    accepted = bench.change(36, confirm=True)
    assert accepted.verdict.accepted, accepted.verdict.message
    soft = [f for f in accepted.verdict.findings if f.code is Reason.SOFT_MAX]
    assert len(soft) == 1 and soft[0].severity is Severity.WARN
    assert "overridden (confirmed)" in soft[0].message
    assert bench.truth_rate() == 135.0
    # logged: the journal holds the confirmed request with its verdict
    last = bench.decisions()[-1]
    assert last.accepted and getattr(last.body, "confirm_soft_limits", False) is True


def test_s2_soft_min_needs_confirmation_and_confirmed_is_logged(
    bench: Bench, std: ProgramSpec
) -> None:
    assert bench.load(std).verdict.accepted
    refused = bench.start("1.5")
    assert not refused.verdict.accepted
    assert refused.verdict.reason is Reason.SOFT_MIN
    assert bench.set_rates() == [] and bench.truth_rate() == 0.0

    accepted = bench.start("1.5", confirm=True)
    assert accepted.verdict.accepted, accepted.verdict.message
    assert [f.code for f in accepted.verdict.findings] == [Reason.SOFT_MIN]
    assert accepted.verdict.findings[0].severity is Severity.WARN
    assert bench.truth_rate() == 5.625
    last = bench.decisions()[-1]
    assert isinstance(last.body, StartInfusion) and last.body.confirm_soft_limits


# --------------------------------------------------------------------------- S3


def test_s3_rise_refused_when_the_cap_would_be_reached_within_the_look_ahead(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """46 mcg/min for 23.7 h is 65.4 mg; 47 mcg/min for the 1 h look-ahead adds 2.8 mg:
    over 68 mg. The step, window, soft (confirmed) and hard limits all allow 47."""
    bench = make_bench()
    bench.seed(std, [(0.0, 46)], boot_at=23.7 * HOUR)
    bench.boot()
    sets = len(bench.set_rates())

    out = bench.change(47, confirm=True)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.CUMULATIVE_CAP
    assert "68 mg per 24 h" in out.verdict.message
    _nothing_sent(bench, sets, 172.5)


def test_s3_same_rise_accepted_with_room_under_the_cap(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """The counterpart of the refusal above: 23.4 h at 46 (64.6 mg) leaves room."""
    bench = make_bench()
    bench.seed(std, [(0.0, 46)], boot_at=23.4 * HOUR)
    bench.boot()
    out = bench.change(47, confirm=True)
    assert out.verdict.accepted, out.verdict.message


def test_s3_start_refused_when_the_cap_would_be_reached_within_the_look_ahead(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Weight-based at 70 kg: 0.9 mcg/kg/min (63 mcg/min) until 67.6 mg, then stopped;
    a start at 0.1 mcg/kg/min (within max start) would add 0.42 mg in the hour."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    per_s = float(bench.pump_rate_for(spec, "0.9")) * 16 / 3600  # mcg/s
    end = 67_600 / per_s
    bench.seed(spec, [(0.0, "0.9"), (end, 0)], boot_at=end + 3600)
    bench.boot()
    out = bench.start("0.1")
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.CUMULATIVE_CAP
    assert bench.set_rates(cause="command")[-1].now.clinical == 0.0  # only the seed's
    assert bench.truth_rate() == 0.0
    # a start that fits under the cap within the hour is accepted
    assert bench.start("0.02").verdict.accepted


def test_s3_pump_stopped_with_a_high_alarm_when_the_cap_is_reached_as_time_passes(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Weight-based at 70 kg, 0.9 mcg/kg/min (63 mcg/min, above the 47.2 mcg/min that
    68 mg/24 h allows) has given 67.6 mg: the kernel must stop the pump before the
    cap, as clinical time passes, with nobody asking. Time is driven as the host's loop
    lives it: polls, and a wake-up at the kernel's cap deadline."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    rate = float(bench.pump_rate_for(spec, "0.9"))
    per_s = rate * 16 / 3600  # mcg/s
    boot = 67_600 / per_s
    bench.seed(spec, [(0.0, "0.9")], boot_at=boot)
    bench.boot()
    assert bench.core.state.running and bench.truth_rate() == rate
    warning = bench.core.state.alarms.get("cap_warning")
    assert warning is not None and warning.priority is Priority.MEDIUM

    bench.advance(30 * 60)

    assert not bench.pump.snapshot().running and bench.truth_rate() == 0.0
    alarm = bench.core.state.alarms.get("cap")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.reason is Reason.CUMULATIVE_CAP
    stop = [c for c in bench.commands() if isinstance(c.action, StopPump)][-1]
    assert stop.cause == "safety"
    # stopped within the cap, with the guard's minute of headroom, not much earlier
    given = 67_600 + bench.pump.truth.delivered_ml(bench.clinical.now()) * 16
    assert 68_000 - per_s * (bench.core.config.cap_guard_s + 5) <= given <= 68_000
    assert stop.now.clinical <= boot + 400 / per_s - bench.core.config.cap_guard_s + 1e-6
    # and nothing that would cross it may start
    assert bench.ack().verdict.accepted
    assert bench.start("0.02").verdict.reason is Reason.CUMULATIVE_CAP


# --------------------------------------------------------------------------- S4


def test_s4_start_above_max_start_refused(bench: Bench, std: ProgramSpec) -> None:
    assert bench.load(std).verdict.accepted
    out = bench.start(13)  # below soft max and hard max; no history
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.START_TOO_HIGH
    assert "12 mcg/min" in out.verdict.message
    assert bench.set_rates() == [] and bench.truth_rate() == 0.0
    assert bench.start(12).verdict.accepted


def test_s4_ten_fold_slip_refused_as_a_step_and_says_the_largest_allowed_rise(
    bench: Bench, library: DrugLibrary
) -> None:
    """The issue's example: 0.8 typed for 0.08 mcg/kg/min (weight-based)."""
    assert bench.load(norepi_weight_based(library)).verdict.accepted
    assert bench.start("0.08").verdict.accepted
    rate = bench.truth_rate()
    sets = len(bench.set_rates())

    out = bench.change("0.8", confirm=True)  # 0.8 < hard max 1.0; soft max confirmed

    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.STEP_RISE
    assert "0.8 mcg/kg/min is 10x the current 0.08 mcg/kg/min" in out.verdict.message
    assert "the largest allowed rise now is 0.02 mcg/kg/min" in out.verdict.message
    _nothing_sent(bench, sets, rate)


def test_s4_step_rise_refused_where_the_window_would_allow_it(
    infusing: Bench,
) -> None:
    """From 8: +3 is inside the window's +4 but over the step's min(2, 25 % = 2)."""
    out = infusing.change(11)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.STEP_RISE
    assert "the largest allowed rise now is 2 mcg/min (to 10 mcg/min)" in out.verdict.message
    assert infusing.truth_rate() == 30.0
    assert infusing.change(10).verdict.accepted


def test_s4_window_rise_refused_where_each_step_is_allowed(infusing: Bench) -> None:
    """8 -> 10 -> 12 in one window; 13 is a +1 step but +5 over the window's lowest (8)."""
    infusing.advance(1)
    assert infusing.change(10).verdict.accepted
    infusing.advance(1)
    assert infusing.change(12).verdict.accepted
    infusing.advance(1)
    out = infusing.change(13)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.WINDOW_RISE
    assert infusing.truth_rate() == 45.0
    infusing.advance(600)  # the 8 mcg/min leaves the window
    assert infusing.change(13).verdict.accepted


def test_s4_window_rise_refused_for_steps_at_the_same_clinical_instant(
    infusing: Bench,
) -> None:
    """Requests that share a clinical instant (a virtual clock, a coarse clock) must not
    escape the window: the start at 8 is the window's lowest even if it ran for 0 s."""
    assert infusing.change(10).verdict.accepted
    assert infusing.change(12).verdict.accepted
    out = infusing.change(14)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.WINDOW_RISE
    assert infusing.truth_rate() == 45.0


def test_s4_restart_after_an_interruption_may_resume_the_commanded_rate(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """The start bound's other half: within the titration window, a start may resume
    the rate that was running (here 20 mcg/min, above max start), and no more."""
    bench = make_bench()
    bench.seed(std, [(0.0, 20)], boot_at=0.0)
    bench.boot()
    bench.pump.set_occlusion(True)
    bench.advance(60)
    bench.pump.set_occlusion(False)
    assert not bench.core.state.running
    assert bench.ack().verdict.accepted
    assert bench.start(21).verdict.reason is Reason.START_TOO_HIGH
    assert bench.start(20).verdict.accepted


def test_s4_start_bound_ignores_a_rate_the_pump_ran_on_its_own(infusing: Bench) -> None:
    """A pump found running 150 mL/h (40 mcg/min) instead of the 30 it was set to is
    stopped (S9); that rogue rate must not become a licence to restart at 5x the
    prescribed 8 mcg/min."""
    infusing.advance(600)
    infusing.pump.set_rate(150.0)
    infusing.core.poll()
    assert not infusing.pump.snapshot().running
    assert infusing.ack().verdict.accepted
    out = infusing.start(40, confirm=True)  # hard max 47; soft max confirmed
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.START_TOO_HIGH
    assert infusing.truth_rate() == 0.0
    assert infusing.start(8).verdict.accepted  # the commanded rate may resume


# --------------------------------------------------------------------------- S5


def test_s5_wean_faster_than_25_percent_refused(infusing: Bench) -> None:
    out = infusing.change("5.9")  # floor 0.75 x 8 = 6; above soft min 2
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.WEAN_TOO_FAST
    assert "not below 6 mcg/min" in out.verdict.message
    assert infusing.truth_rate() == 30.0
    assert infusing.change(6).verdict.accepted
    assert infusing.truth_rate() == 22.5


def test_s5_wean_floor_is_from_the_highest_dose_of_the_last_30_min(infusing: Bench) -> None:
    infusing.advance(60)
    assert infusing.change(10).verdict.accepted
    infusing.advance(60)
    out = infusing.change("7.4")  # floor is 0.75 x 10 (the highest), not 0.75 x current
    assert out.verdict.reason is Reason.WEAN_TOO_FAST
    infusing.advance(60)
    # exactly 7.5 would be refused too: 28.125 mL/h runs as 28.12 (rounded down, S7),
    # which delivers 7.4987, below the floor; the kernel judges what the pump will run
    assert infusing.change("7.5").verdict.reason is Reason.WEAN_TOO_FAST
    assert infusing.change("7.6").verdict.accepted
    infusing.advance(60)
    # 10 mcg/min is still within the last 30 min: 7.6 -> 7 is refused...
    assert infusing.change(7).verdict.reason is Reason.WEAN_TOO_FAST
    infusing.advance(30 * 60)
    # ...and allowed once it has left the window (floor 0.75 x 7.6 = 5.7)
    assert infusing.change(7).verdict.accepted


def test_s5_stop_above_the_threshold_refused(infusing: Bench) -> None:
    out = infusing.stop()
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.STOP_ABOVE_THRESHOLD
    assert "wean first" in out.verdict.message
    assert infusing.pump.snapshot().running and infusing.truth_rate() == 30.0


def test_s5_stop_at_or_below_the_threshold_accepted(bench: Bench, std: ProgramSpec) -> None:
    assert bench.load(std).verdict.accepted
    assert bench.start(2).verdict.accepted  # the threshold itself
    out = bench.stop()
    assert out.verdict.accepted and out.execution == "applied"
    assert not bench.pump.snapshot().running and bench.truth_rate() == 0.0


def test_s5_drug_without_gradual_wean_may_fall_and_stop_at_once(
    bench: Bench, library: DrugLibrary
) -> None:
    assert bench.load(vasopressin_fixed(library)).verdict.accepted
    assert bench.start("0.04").verdict.accepted
    fall = bench.change("0.02", confirm=True)  # -50 % at once: no wean rule for it
    assert fall.verdict.accepted, fall.verdict.message
    out = bench.stop()  # 0.02 units/min, no stop threshold
    assert out.verdict.accepted
    assert not bench.pump.snapshot().running


def test_s5_vasopressin_stop_from_full_dose(bench: Bench, library: DrugLibrary) -> None:
    assert bench.load(vasopressin_fixed(library)).verdict.accepted
    assert bench.start("0.04").verdict.accepted
    assert bench.stop().verdict.accepted
    assert bench.truth_rate() == 0.0


# --------------------------------------------------------------------------- doses


def test_nonpositive_or_non_finite_doses_are_bad_input(infusing: Bench) -> None:
    for dose in ("0", "-1", "NaN", "Infinity"):
        out = infusing.change(Decimal(dose))
        assert out.verdict.reason is Reason.BAD_INPUT, dose
        assert "positive number of mcg/min" in out.verdict.message
    assert infusing.truth_rate() == 30.0


def test_s4_a_stop_and_a_start_do_not_step_around_the_titration_rule(
    bench: Bench, library: DrugLibrary
) -> None:
    """Found by the closed-loop cohort: at 0.02 mcg/kg/min a stop is allowed (below the
    0.03 stop threshold), and a start 5 s later at the max start (0.1) used to pass: 5x in
    5 s where a titration may rise 1.25x per step. Within the titration window a start is
    a rise from what ran (the window rule, within the max start); after it, the library's
    start again."""
    spec = norepi_weight_based(library)
    assert bench.load(spec).verdict.accepted
    assert bench.start("0.02").verdict.accepted
    bench.advance(60)
    assert bench.stop().verdict.accepted
    bench.advance(5)
    out = bench.start("0.1")
    assert out.verdict.reason is Reason.START_TOO_HIGH, out.verdict.message
    assert "window rise" in out.verdict.message
    assert bench.truth_rate() == 0.0
    assert bench.start("0.03").verdict.accepted  # 0.02 + 50 %: the window's own rise
    assert bench.stop().verdict.accepted
    bench.advance(11 * 60)  # the titration window has passed
    assert bench.start("0.1").verdict.accepted
