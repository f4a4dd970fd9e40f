"""Every limit exactly at it, and one pump-resolution step past it.

A limit tested far from its edge lets through the mutants that matter most: ``>`` for
``>=``, a slack of a few per cent, a window a minute too short. Here each limit is met
exactly (allowed) and then missed by the smallest amount the pump can express (refused):
one unit in the mock pump's fourth significant digit at that rate (``pump_step``), the
resolution its ``quantize_rate`` runs. Limits on time (windows, the cap guard, request
expiry) are met at the exact instant and missed by the clock's next step.

Figures (library, norepinephrine adult ICU, standard, mcg/min): start max 12, soft 2-35,
hard 47; step rise min(2, 25 %); 10 min window rise min(4, 50 %); wean 25 % per 30 min;
stop threshold 2; cap 68 mg per 24 h. At 4 mg/1000 mL (4 mcg/mL) 1 mcg/min is 15 mL/h,
so every whole limit is a rate the pump runs exactly (47 -> 705.0 mL/h); at 4 mg/250 mL
(16 mcg/mL) 1 mcg/min is 3.75 mL/h. Weight-based at 70 kg and 16 mcg/mL, 1 mcg/kg/min is
262.5 mL/h, 4200 mcg/h.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

from safety.alarms import Priority
from safety.kernel.model import Now, ProgramSpec, SetRate, StopPump
from safety.kernel.observe import next_deadline, tick
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard, norepi_weight_based

WEAK = "4 mg/1000 mL"  # 4 mcg/mL
WHAT = "norepinephrine (Adult ICU, Standard (mcg/min))"


def pump_step(rate: Decimal) -> Decimal:
    """The mock pump's resolution at ``rate``: one unit of its fourth significant digit."""
    return Decimal(1).scaleb(rate.adjusted() - 3)


def runs(bench: Bench, rate: Decimal) -> Decimal:
    return Decimal(repr(bench.driver.quantize_rate(float(rate))))


def step_up(bench: Bench, rate: Decimal) -> Decimal:
    """The next rate above ``rate`` the pump runs, checked against the pump itself."""
    up = rate + pump_step(rate)
    assert runs(bench, up) == up
    assert runs(bench, rate + pump_step(rate) / 2) == rate  # nothing in between
    return up


def step_down(bench: Bench, rate: Decimal) -> Decimal:
    """The next rate below ``rate`` the pump runs (across a decade: 1.000 -> 0.9999)."""
    down = rate - pump_step(rate)
    if down.adjusted() < rate.adjusted():
        down = rate - pump_step(down)
    assert runs(bench, down) == down
    assert runs(bench, (rate + down) / 2) == down  # nothing in between
    return down


def order_for(bench: Bench, spec: ProgramSpec, rate: Decimal) -> Decimal:
    """The shortest dose order (in the program's unit) the pump runs as exactly ``rate``."""
    per_dose = bench.active(spec).exact_rate(Fraction(1))  # mL/h per unit of dose
    exact = Fraction(rate) / per_dose
    for places in range(10):
        dose = Decimal(math.ceil(exact * 10**places)).scaleb(-places)
        if bench.pump_rate_for(spec, dose) == rate:
            return dose
    raise AssertionError(f"no short order runs {rate} mL/h")


def refused(outcome_reason: Reason, bench: Bench, rate_before: float) -> None:
    assert bench.truth_rate() == rate_before, "a refused request reached the pump"
    assert outcome_reason is not Reason.ACCEPTED


# --------------------------------------------------------------------------- S1


def test_s1_hard_max_exactly_allowed_one_pump_step_past_refused_on_request_and_readback(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """47 mcg/min runs 705.0 mL/h; 705.1 (47.0067 mcg/min) is refused on request, and
    stopped on read-back when the pump runs it on its own; 705.1 is inside the S9 band
    (0.05 % of 705 is 0.35 mL/h), so only the hard max can catch it."""
    spec = norepi_standard(library, concentration=WEAK)
    bench = make_bench()
    bench.seed(spec, [(0.0, 46)], boot_at=0.0)
    bench.boot()
    at = order_for(bench, spec, Decimal("705.0"))
    past = order_for(bench, spec, step_up(bench, Decimal("705.0")))
    assert (at, past) == (Decimal(47), Decimal("47.01"))

    out = bench.change(past, confirm=True)
    assert out.verdict.reason is Reason.HARD_MAX
    refused(out.verdict.reason, bench, 690.0)
    assert [f.code for f in out.verdict.findings] == [Reason.HARD_MAX]
    assert (out.verdict.unit, out.verdict.rate_ml_h) == ("mcg/min", Decimal("705.1"))
    assert f"for {WHAT} (source:" in out.verdict.message
    # an order above the limit is refused even where the pump would round it down to the
    # limit's own rate: S1 judges the order (and, below, the pump's rate)
    assert bench.pump_rate_for(spec, "47.001") == Decimal("705.0")
    assert bench.change("47.001", confirm=True).verdict.reason is Reason.HARD_MAX

    ok = bench.change(at, confirm=True)
    assert ok.verdict.accepted, ok.verdict.message
    assert bench.truth_rate() == 705.0
    bench.core.poll()
    assert bench.core.state.running
    assert bench.core.state.alarms.get("readback_hard_max") is None

    bench.pump.set_rate(705.1)  # the pump runs one step above on its own
    bench.core.poll()
    assert not bench.pump.snapshot().running
    alarm = bench.core.state.alarms.get("readback_hard_max")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert bench.core.state.alarms.get("readback_over") is None
    assert "47.006" in alarm.message and "hard maximum 47 mcg/min" in alarm.message


# --------------------------------------------------------------------------- S2


def test_s2_soft_max_exactly_needs_no_confirmation_one_pump_step_past_does(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    spec = norepi_standard(library, concentration=WEAK)
    bench = make_bench()
    bench.seed(spec, [(0.0, 34)], boot_at=0.0)
    bench.boot()
    past = order_for(bench, spec, step_up(bench, Decimal("525.0")))  # 35 mcg/min -> 525.0

    out = bench.change(past)
    assert out.verdict.reason is Reason.SOFT_MAX
    assert out.verdict.message.startswith("refused until confirmed")
    assert [f.code for f in out.verdict.findings] == [Reason.SOFT_MAX]
    assert (out.verdict.unit, out.verdict.rate_ml_h) == ("mcg/min", Decimal("525.1"))
    refused(out.verdict.reason, bench, 510.0)

    ok = bench.change(35)
    assert ok.verdict.accepted, ok.verdict.message
    assert Reason.SOFT_MAX not in [f.code for f in ok.verdict.findings]
    assert bench.truth_rate() == 525.0
    confirmed = bench.change(past, confirm=True)
    assert confirmed.verdict.accepted
    assert Reason.SOFT_MAX in [f.code for f in confirmed.verdict.findings]


def test_s2_soft_min_exactly_needs_no_confirmation_one_pump_step_below_does(
    bench: Bench, std: ProgramSpec
) -> None:
    """2 mcg/min runs 7.500 mL/h at 16 mcg/mL; 7.499 is 1.99973 mcg/min."""
    assert bench.load(std).verdict.accepted
    below = order_for(bench, std, step_down(bench, Decimal("7.500")))

    out = bench.start(below)
    assert out.verdict.reason is Reason.SOFT_MIN
    refused(out.verdict.reason, bench, 0.0)

    ok = bench.start(2)
    assert ok.verdict.accepted, ok.verdict.message
    assert Reason.SOFT_MIN not in [f.code for f in ok.verdict.findings]
    assert bench.truth_rate() == 7.5


# --------------------------------------------------------------------------- S3


def _cap_seeded(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> tuple[Bench, ProgramSpec]:
    """Weight-based, 70 kg: 0.8 mcg/kg/min (210.0 mL/h, 3360 mcg/h) for 20 h = 67.2 mg,
    stopped a minute ago (so the titration window still licenses a start above max
    start): 800 mcg of the 68 mg cap is left."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    bench.seed(spec, [(0.0, "0.8"), (20 * 3600.0, 0)], boot_at=20 * 3600.0 + 60)
    bench.boot()
    assert bench.core.state.history.amount(0.0, bench.patient_now()) == 67_200.0
    return bench, spec


def test_s3_start_filling_the_cap_exactly_in_the_look_ahead_allowed(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """50.00 mL/h is 800 mcg/h: 67.2 mg + 800 mcg in the hour's look-ahead is the cap."""
    bench, spec = _cap_seeded(make_bench, library)
    out = bench.start(order_for(bench, spec, Decimal("50.00")))
    assert out.verdict.accepted, out.verdict.message
    assert bench.truth_rate() == 50.0


def test_s3_start_one_pump_step_past_the_cap_in_the_look_ahead_refused(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """50.01 mL/h would give 800.16 mcg in the hour: 0.16 mcg over the cap."""
    bench, spec = _cap_seeded(make_bench, library)
    out = bench.start(order_for(bench, spec, step_up(bench, Decimal("50.00"))))
    assert out.verdict.reason is Reason.CUMULATIVE_CAP
    refused(out.verdict.reason, bench, 0.0)


def test_s3_rise_is_looked_ahead_at_its_new_rate_and_the_same_rate_is_not(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Running at 50.00 mL/h with the cap exactly filled by the hour ahead: one pump step
    up is refused by the cap. A minute later the running rate itself would cross the cap
    within the hour; asking for it again is no rise and is not looked ahead (the guard
    stops it in time, as time passes)."""
    bench, spec = _cap_seeded(make_bench, library)
    at = order_for(bench, spec, Decimal("50.00"))
    assert bench.start(at).verdict.accepted
    up = bench.change(order_for(bench, spec, step_up(bench, Decimal("50.00"))))
    assert up.verdict.reason is Reason.CUMULATIVE_CAP
    refused(up.verdict.reason, bench, 50.0)
    bench.advance(60)
    same = bench.change(at)
    assert same.verdict.accepted, same.verdict.message
    assert same.verdict.rate_ml_h == Decimal("50.00") and bench.truth_rate() == 50.0


def test_s3_guard_stops_exactly_when_a_minute_of_headroom_is_left(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """225.0 mL/h at 16 mcg/mL is 3600 mcg/h, 1 mcg/s: with the 68 mg cap and a 60 s
    guard, the pump must stop at t = 67 940 s (60 mcg left), and not one second before."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    bench.seed(spec, [(0.0, order_for(bench, spec, Decimal("225.0")))], boot_at=67_700.0)
    bench.boot()
    state, config = bench.core.state, bench.core.config
    assert config.cap_guard_s == 60.0
    live = bench.liveness.now()
    assert next_deadline(state, Now(67_700.0, live), config) == 67_940.0

    early, reaction = tick(state, Now(67_939.0, live), config)
    assert reaction.actions == ()
    assert early.alarms.get("cap") is None and early.alarms.get("cap_warning") is not None
    at, reaction = tick(state, Now(67_940.0, live), config)
    assert reaction.actions == (StopPump(),)
    alarm = at.alarms.get("cap")
    assert alarm is not None and alarm.priority is Priority.HIGH

    # the host wakes at that deadline and stops the pump there, with nobody asking
    bench.advance(500.0)
    stop = [c for c in bench.commands() if isinstance(c.action, StopPump)]
    assert [c.now.clinical for c in stop] == [67_940.0]
    assert stop[0].cause == "safety"
    assert not bench.pump.snapshot().running
    assert bench.core.state.history.amount(0.0, bench.patient_now()) == 67_940.0


def test_s3_cap_window_lets_a_dose_go_exactly_24_h_after_it_was_given(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """0.8 mcg/kg/min (3360 mcg/h) for the first hour, then again for 72 407 s from
    t = 10 000 s (67 579.87 mcg), then stopped. A start at max start (26.25 mL/h,
    420 mcg/h) fits the cap only once the first hour has left the 24 h window: at
    t = 90 000 s exactly, not one second earlier (when 0.93 mcg of it still counts)."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    late_end = 10_000.0 + 72_407.0
    bench.seed(
        spec,
        [(0.0, "0.8"), (3600.0, 0), (10_000.0, "0.8"), (late_end, 0)],
        boot_at=89_000.0,
    )
    bench.boot()
    start = order_for(bench, spec, Decimal("26.25"))
    assert start == Decimal("0.1")  # max start: no titration-window licence needed
    bench.advance(999.0)
    assert bench.patient_now() == 89_999.0
    out = bench.start(start)
    assert out.verdict.reason is Reason.CUMULATIVE_CAP
    refused(out.verdict.reason, bench, 0.0)
    bench.advance(1.0)
    ok = bench.start(start)
    assert ok.verdict.accepted, ok.verdict.message


# --------------------------------------------------------------------------- S4


def test_s4_max_start_exactly_allowed_one_pump_step_past_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    spec = norepi_standard(library, concentration=WEAK)
    assert bench.load(spec).verdict.accepted
    out = bench.start(order_for(bench, spec, step_up(bench, Decimal("180.0"))))
    assert out.verdict.reason is Reason.START_TOO_HIGH
    assert out.verdict.message == (
        "refused: a start at 12.01 mcg/min is above the largest allowed start, 12 mcg/min "
        "(max start 12 mcg/min)"
    )
    refused(out.verdict.reason, bench, 0.0)
    assert bench.start(12).verdict.accepted
    assert bench.truth_rate() == 180.0


def test_s4_restart_may_resume_exactly_the_recent_rate_not_one_step_more(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """20 mcg/min (300.0 mL/h) ran until an occlusion stopped it: within the titration
    window a start may resume 300.0, and 300.1 is refused."""
    spec = norepi_standard(library, concentration=WEAK)
    bench = make_bench()
    bench.seed(spec, [(0.0, 20)], boot_at=0.0)
    bench.boot()
    bench.pump.set_occlusion(True)
    bench.advance(60)
    bench.pump.set_occlusion(False)
    assert bench.ack().verdict.accepted
    out = bench.start(order_for(bench, spec, step_up(bench, Decimal("300.0"))))
    assert out.verdict.reason is Reason.START_TOO_HIGH
    assert bench.start(20).verdict.accepted


def test_s4_start_soon_after_a_stop_is_a_rise_exactly_allowed_one_step_past_refused(
    bench: Bench, std: ProgramSpec
) -> None:
    """2 mcg/min ran until a stop a minute ago: within the titration window a start may
    rise by the window rule above it, min(4, 50 % of 2) = 1, so 3 mcg/min (11.25 mL/h);
    11.26 is refused."""
    assert bench.load(std).verdict.accepted
    assert bench.start(2).verdict.accepted
    bench.advance(60)
    assert bench.stop().verdict.accepted
    bench.advance(60)
    out = bench.start(order_for(bench, std, step_up(bench, Decimal("11.25"))))
    assert out.verdict.reason is Reason.START_TOO_HIGH
    assert "a window rise above the lowest (2 + 1 mcg/min) within the max start" in (
        out.verdict.message
    )
    refused(out.verdict.reason, bench, 0.0)
    assert bench.start(3).verdict.accepted
    assert bench.truth_rate() == 11.25


def test_s4_absolute_step_exactly_allowed_one_pump_step_past_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    """From 10 mcg/min the step is min(2, 25 % = 2.5) = 2: 12 (180.0 mL/h) is allowed,
    180.1 is not; the window (+4) would allow both."""
    spec = norepi_standard(library, concentration=WEAK)
    assert bench.load(spec).verdict.accepted
    assert bench.start(10).verdict.accepted
    out = bench.change(order_for(bench, spec, step_up(bench, Decimal("180.0"))))
    assert out.verdict.reason is Reason.STEP_RISE
    refused(out.verdict.reason, bench, 150.0)
    assert bench.change(12).verdict.accepted


def test_s4_relative_step_exactly_allowed_one_pump_step_past_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    """From 4 mcg/min the step is min(2, 25 % = 1) = 1: 5 (75.00 mL/h) is allowed, 75.01
    is not; the window (min(4, 50 % = 2)) would allow both."""
    spec = norepi_standard(library, concentration=WEAK)
    assert bench.load(spec).verdict.accepted
    assert bench.start(4).verdict.accepted
    out = bench.change(order_for(bench, spec, step_up(bench, Decimal("75.00"))))
    assert out.verdict.reason is Reason.STEP_RISE
    refused(out.verdict.reason, bench, 60.0)
    assert bench.change(5).verdict.accepted


def test_s4_relative_window_exactly_allowed_one_pump_step_past_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    """4 -> 5 -> 6 mcg/min in one window: 50 % of the lowest (4) is 2, so 6 (90.00 mL/h)
    is the window's limit; 90.01 is refused though its step from 5 (+1.0007, under
    25 % = 1.25) is allowed."""
    spec = norepi_standard(library, concentration=WEAK)
    assert bench.load(spec).verdict.accepted
    assert bench.start(4).verdict.accepted
    bench.advance(1)
    assert bench.change(5).verdict.accepted
    bench.advance(1)
    out = bench.change(order_for(bench, spec, step_up(bench, Decimal("90.00"))))
    assert out.verdict.reason is Reason.WINDOW_RISE
    refused(out.verdict.reason, bench, 75.0)
    assert bench.change(6).verdict.accepted


def test_s4_absolute_window_exactly_allowed_one_pump_step_past_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    """10 -> 11.2 -> 12.4 -> 13.6 mcg/min in one window, each step allowed: the window's
    limit is min(4, 50 % of 10) = 4 above 10, so 14 (210.0 mL/h) is allowed, 210.0 + one
    step is not, though its step from 13.6 is small."""
    spec = norepi_standard(library, concentration=WEAK)
    assert bench.load(spec).verdict.accepted
    assert bench.start(10).verdict.accepted
    for dose in ("11.2", "12.4", "13.6"):
        bench.advance(1)
        assert bench.change(dose).verdict.accepted, dose
    bench.advance(1)
    out = bench.change(order_for(bench, spec, step_up(bench, Decimal("210.0"))))
    assert out.verdict.reason is Reason.WINDOW_RISE
    refused(out.verdict.reason, bench, 204.0)
    assert bench.change(14).verdict.accepted


def test_s4_titration_window_closes_exactly_10_min_after_the_lowest_rate_ended(
    bench: Bench, std: ProgramSpec
) -> None:
    """4 mcg/min until t0 + 1 s, then 5: 6.25 (a step of 25 % from 5) is 2.25 over the
    window's lowest while the 4 is in it (limit 50 % of 4 = 2), and allowed from the
    instant it has left it (limit from 5: 2.5)."""
    assert bench.load(std).verdict.accepted
    assert bench.start(4).verdict.accepted
    bench.advance(1)
    assert bench.change(5).verdict.accepted
    ended = bench.patient_now()
    bench.advance(599)
    assert bench.patient_now() == ended + 599
    assert bench.change("6.25").verdict.reason is Reason.WINDOW_RISE
    bench.advance(1)
    assert bench.change("6.25").verdict.accepted


# --------------------------------------------------------------------------- S5


def test_s5_wean_floor_exactly_allowed_one_pump_step_below_refused(infusing: Bench) -> None:
    """From 8 mcg/min (30.00 mL/h) the floor is 6 (22.50 mL/h); 22.49 is 5.9973."""
    std = infusing.core.state.program
    assert std is not None
    below = order_for(infusing, std.spec, step_down(infusing, Decimal("22.50")))
    out = infusing.change(below)
    assert out.verdict.reason is Reason.WEAN_TOO_FAST
    refused(out.verdict.reason, infusing, 30.0)
    assert infusing.change(6).verdict.accepted
    assert infusing.truth_rate() == 22.5


def test_s5_wean_window_closes_exactly_30_min_after_the_highest_rate_ended(
    infusing: Bench,
) -> None:
    """8 mcg/min until t0 + 60 s, then 6: a fall to 4.8 (20 % below 6) is refused while
    the 8 is in the 30 min window (floor 6) and allowed from the instant it has left."""
    infusing.advance(60)
    assert infusing.change(6).verdict.accepted
    ended = infusing.patient_now()
    infusing.advance(1799)
    assert infusing.patient_now() == ended + 1799
    assert infusing.change("4.8").verdict.reason is Reason.WEAN_TOO_FAST
    infusing.advance(1)
    assert infusing.change("4.8").verdict.accepted


def test_s5_stop_exactly_at_the_threshold_allowed_one_pump_step_above_refused(
    bench: Bench, std: ProgramSpec
) -> None:
    """The threshold 2 mcg/min runs 7.500 mL/h; 7.501 is 2.00027 mcg/min."""
    assert bench.load(std).verdict.accepted
    above = order_for(bench, std, step_up(bench, Decimal("7.500")))
    assert bench.start(above).verdict.accepted
    assert bench.truth_rate() == 7.501
    out = bench.stop()
    assert out.verdict.reason is Reason.STOP_ABOVE_THRESHOLD
    refused(out.verdict.reason, bench, 7.501)
    assert bench.change(2).verdict.accepted
    assert bench.stop().verdict.accepted
    assert bench.truth_rate() == 0.0


# --------------------------------------------------------------------------- S7


def test_s7_pump_minimum_exactly_allowed_one_pump_step_below_refused(
    bench: Bench, std: ProgramSpec
) -> None:
    """The 50 mL syringe's minimum is 1.000 mL/h; 0.9999 is one step below it."""
    assert bench.syringe.min_rate_ml_h == 1.0
    assert bench.load(std).verdict.accepted
    below = order_for(bench, std, step_down(bench, Decimal("1.000")))
    out = bench.start(below, confirm=True)
    assert out.verdict.reason is Reason.PUMP_RANGE_LOW
    refused(out.verdict.reason, bench, 0.0)
    ok = bench.start(order_for(bench, std, Decimal("1.000")), confirm=True)
    assert ok.verdict.accepted, ok.verdict.message
    assert bench.truth_rate() == 1.0


def test_s7_pump_maximum_exactly_allowed_one_pump_step_past_refused(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """The 5 mL syringe's maximum is 406.5 mL/h (27.1 mcg/min at 4 mcg/mL, under every
    dose limit); 406.6 is one step past it."""
    spec = norepi_standard(library, concentration=WEAK)
    bench = make_bench(syringe="bd-plastipak-5ml")
    assert bench.syringe.max_rate_ml_h == 406.5
    bench.seed(spec, [(0.0, 26)], boot_at=0.0)
    bench.boot()
    past = order_for(bench, spec, step_up(bench, Decimal("406.5")))
    out = bench.change(past)
    assert out.verdict.reason is Reason.PUMP_RANGE_HIGH
    assert out.verdict.message.startswith(f"refused: {past} mcg/min needs 406.6")
    assert (out.verdict.unit, out.verdict.rate_ml_h) == ("mcg/min", Decimal("406.6"))
    refused(out.verdict.reason, bench, 390.0)
    ok = bench.change("27.1")
    assert ok.verdict.accepted, ok.verdict.message
    assert bench.truth_rate() == 406.5


def test_s7_rounding_runs_an_exact_rate_as_it_is_and_anything_less_one_step_down(
    bench: Bench, library: DrugLibrary
) -> None:
    """12 mcg/min is exactly 180.0 mL/h: the pump runs 180.0, not a step lower; a hair
    less runs 179.9 (down, toward less drug), never 180.0."""
    spec = norepi_standard(library, concentration=WEAK)
    assert bench.load(spec).verdict.accepted
    assert bench.pump_rate_for(spec, 12) == Decimal("180.0")
    assert bench.pump_rate_for(spec, "11.99999") == Decimal("179.9")
    out = bench.start(12)
    assert out.verdict.rate_ml_h == Decimal("180.0") and out.verdict.dose == 12
    assert bench.set_rates()[-1].action == SetRate(Decimal("180.0"))


# --------------------------------------------------------------------------- S8


def test_s8_request_valid_exactly_at_its_expiry_refused_just_after(infusing: Bench) -> None:
    now = infusing.core.now().liveness
    late = infusing.ack(expires_at=math.nextafter(now, -math.inf))
    assert late.verdict.reason is Reason.EXPIRED
    on_time = infusing.ack(expires_at=now)
    assert on_time.verdict.accepted, on_time.verdict.message


# --------------------------------------------------------------------------- S9


def _at_200(make_bench: Callable[..., Bench], library: DrugLibrary) -> Bench:
    """12 -> 13.333 mcg/min at 4 mcg/mL: the pump set to 200.0 mL/h, whose S9 band
    (0.05 %) is exactly 0.1 mL/h: one pump step either way."""
    spec = norepi_standard(library, concentration=WEAK)
    bench = make_bench()
    bench.boot()
    assert bench.load(spec).verdict.accepted
    assert bench.start(12).verdict.accepted
    assert bench.change(order_for(bench, spec, Decimal("200.0"))).verdict.accepted
    assert bench.truth_rate() == 200.0
    assert bench.core.config.readback_rel_tolerance == Decimal("0.0005")
    return bench


def test_s9_readback_over_exactly_at_the_tolerance_runs_on_one_step_past_stops(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    bench = _at_200(make_bench, library)
    bench.pump.set_rate(200.1)
    bench.core.poll()
    assert bench.pump.snapshot().running and bench.core.state.alarms.get("readback_over") is None
    bench.pump.set_rate(200.2)
    bench.core.poll()
    assert not bench.pump.snapshot().running
    alarm = bench.core.state.alarms.get("readback_over")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert alarm.raised_at == bench.patient_now()


def test_s9_readback_under_exactly_at_the_tolerance_accepted_one_step_past_retried(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    bench = _at_200(make_bench, library)
    bench.pump.set_rate(199.9)
    bench.core.poll()
    assert bench.set_rates(cause="retry") == []
    assert bench.core.state.alarms.get("readback_under") is None
    bench.pump.set_rate(199.8)
    bench.core.poll()
    retries = bench.set_rates(cause="retry")
    assert [c.action for c in retries] == [SetRate(Decimal("200.0"))]
    assert bench.truth_rate() == 200.0
