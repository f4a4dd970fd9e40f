"""Request rules where the bench rarely goes, by the pure ``decide`` and ``apply`` on
hand-made states: earlier limits' hard max (S1) exactly at it and past it, the start
bound's titration window to the second (S4), the same rate asked again (no rise, no
wean), a program change while a start is in flight, a re-program in place at and above
the new program's hard max, a pump whose range is unknown, and what every journaled
command leaves the state expecting.

Norepinephrine adult standard at 16 mcg/mL: 8 mcg/min is 30 mL/h, 12 is 45.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.history import RateHistory
from safety.kernel.model import (
    ChangeDose,
    CommandIssued,
    LoadProgram,
    Now,
    ProgramLoaded,
    PumpAction,
    Request,
    RequestBody,
    RequestMeta,
    SetInterlock,
    SetRate,
    StartInfusion,
    StartPump,
    StopPump,
    Verdict,
)
from safety.kernel.observe import next_deadline
from safety.kernel.reducer import apply
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    PriorLimits,
    evolve,
    load_program,
    single_channel,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard, norepi_weight_based, vasopressin_fixed

CONFIG = KernelConfig()
PUMP = PumpCapabilities(Decimal("1.0"), Decimal("1999.1"), lambda rate: rate)


def _decide(
    state: KernelState,
    body: RequestBody,
    t: float,
    library: DrugLibrary | None = None,
    pump: PumpCapabilities = PUMP,
) -> Verdict:
    request = Request(RequestMeta("s", state.last_seq + 1, 1e9), body)
    return decide(library, state, request, Now(t, 0.0), pump, CONFIG)


def _state(
    program: ActiveProgram,
    runs: list[tuple[float, str]],
    *,
    running: bool = True,
    priors: tuple[PriorLimits, ...] = (),
) -> KernelState:
    """``program`` loaded; ``runs`` are (t, mL/h) verified in order; the last one is the
    pump's rate now (running unless told otherwise)."""
    history = RateHistory()
    for t, text in runs:
        history = history.with_rate(t, Fraction(Decimal(text)) * program.amount_per_ml)
    now = Decimal(runs[-1][1])
    return single_channel(
        drugs={program.drug: DrugRecord(history, program.limits, priors)},
        program=program,
        running=running and now > 0,
        set_rate=now,
        expected_running=running and now > 0,
        expected_rate=now,
        session="s",
        attached=True,
    )


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def _looser(program: ActiveProgram, **figures: str) -> ActiveProgram:
    """The program with some therapy (or titration) figures changed: another library or
    profile's."""
    therapy = program.limits.therapy
    titration = therapy.titration
    changed: dict[str, object] = {}
    steps: dict[str, object] = {}
    for name, value in figures.items():
        target, into = (titration, steps) if hasattr(titration, name) else (therapy, changed)
        into[name] = getattr(target, name).model_copy(update={"value": Decimal(value)})
    if steps:
        changed["titration"] = titration.model_copy(update=steps)
    limits = replace(program.limits, therapy=therapy.model_copy(update=changed), what="looser")
    return replace(program, limits=limits)


# --------------------------------------------------------------------------- S1 priors


def test_earlier_limits_hard_max_binds_exactly_at_it_and_refuses_past_it(
    std: ActiveProgram,
) -> None:
    """A program that allows 60 mcg/min, with the earlier program's hard max (47) still
    in force: 47 is allowed, 47.01 (one pump step at 4 mcg/mL) is refused naming them."""
    loose = _looser(std, hard_max="60", soft_max="60")
    prior = PriorLimits(std.limits, until=5000.0, why="limits of the adult program")
    state = _state(loose, [(0.0, "172.5")], priors=(prior,))  # 46 mcg/min
    at = _decide(state, ChangeDose(Decimal(47)), 100.0)
    assert at.accepted, at.message
    past = _decide(state, ChangeDose(Decimal("47.01")), 100.0)
    assert past.reason is Reason.HARD_MAX
    assert past.message == (
        "refused: 47.01 mcg/min is above the hard maximum of 47 mcg/min (still in force "
        "until t=5000 s: limits of the adult program)"
    )
    assert (past.unit, past.rate_ml_h) == ("mcg/min", Decimal("176.2875"))
    # once they have passed, the program's own limits alone apply
    assert _decide(state, ChangeDose(Decimal("47.01")), 5000.0).accepted


# --------------------------------------------------------------------------- S4 start


def test_a_start_may_resume_a_recent_rate_until_exactly_one_titration_window_after(
    std: ActiveProgram,
) -> None:
    """20 mcg/min (75 mL/h) ran until t=100 s, then stopped: a start at 20 is allowed
    while the 20 is within the last 10 min (to t=699 s) and refused from t=700 s."""
    state = _state(std, [(0.0, "75.0"), (100.0, "0")], running=False)
    assert _decide(state, StartInfusion(Decimal(20)), 699.0).accepted
    late = _decide(state, StartInfusion(Decimal(20)), 700.0)
    assert late.reason is Reason.START_TOO_HIGH
    assert (late.unit, late.rate_ml_h, late.dose) == ("mcg/min", Decimal("75"), Decimal(20))


# --------------------------------------------------------------------------- same rate


def test_the_same_rate_asked_again_is_neither_a_rise_nor_a_wean(std: ActiveProgram) -> None:
    """The pump runs 5 after 12 within both windows (a fall the pump made on its own):
    asking for 5 again is no rise (the window from 5 is not judged) and no wean (the
    floor 9 from 12 is not judged); asking for 4 is a wean and is refused."""
    state = _state(std, [(0.0, "45.0"), (60.0, "18.75")])
    again = _decide(state, ChangeDose(Decimal(5)), 120.0)
    assert again.accepted, again.message
    assert again.message.startswith("accepted (same rate): 5 mcg/min -> 18.75 mL/h")
    assert _decide(state, ChangeDose(Decimal(4)), 120.0).reason is Reason.WEAN_TOO_FAST
    # and with a stricter earlier window (rise at most 0.5 above the lowest), 5 again
    # after 4 is still no rise
    strict = _looser(std, max_window_rise="0.5")
    low = _state(strict, [(0.0, "15.0"), (10.0, "18.75")])
    assert _decide(low, ChangeDose(Decimal(5)), 20.0).accepted
    assert _decide(low, ChangeDose(Decimal("5.5")), 20.0).reason is Reason.WINDOW_RISE


def test_each_accepted_change_says_whether_it_rises_falls_or_starts(std: ActiveProgram) -> None:
    state = _state(std, [(0.0, "30.0")])
    rise = _decide(state, ChangeDose(Decimal(9)), 10.0)
    assert rise.message == "accepted (rise): 9 mcg/min -> 33.75 mL/h (delivers 9 mcg/min)"
    fall = _decide(state, ChangeDose(Decimal(7)), 10.0)
    assert fall.message == "accepted (fall): 7 mcg/min -> 26.25 mL/h (delivers 7 mcg/min)"
    stopped = _state(std, [(0.0, "0")], running=False)
    start = _decide(stopped, StartInfusion(Decimal(8)), 10.0)
    assert start.message == "accepted (start): 8 mcg/min -> 30 mL/h (delivers 8 mcg/min)"
    assert start.actions == (SetRate(Decimal(30)), StartPump())


def test_the_largest_dose_a_request_may_carry_is_judged_by_the_limits(
    std: ActiveProgram,
) -> None:
    from safety.units import DOSE_VALUE_MAX

    state = _state(std, [(0.0, "30.0")])
    verdict = _decide(state, ChangeDose(DOSE_VALUE_MAX), 10.0)
    assert verdict.reason is not Reason.BAD_INPUT


# --------------------------------------------------------------------------- programs


def test_another_drug_is_refused_while_a_start_is_in_flight(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    state = evolve(_state(std, [(0.0, "0")], running=False), expected_running=True)
    verdict = _decide(state, LoadProgram(vasopressin_fixed(library)), 10.0, library)
    assert verdict.reason is Reason.ALREADY_INFUSING


def test_a_re_program_in_place_is_allowed_exactly_at_the_new_hard_max_and_refused_above(
    library: DrugLibrary,
) -> None:
    """47 mcg/min runs (705.0 mL/h at 4 mcg/mL); the same solution re-programmed weight
    based: at 47 kg that is 1.0 mcg/kg/min, the hard max (allowed, in place); at 46 kg it
    is 1.0217 (refused, naming the figures)."""
    weak = norepi_standard(library, concentration="4 mg/1000 mL")
    program = load_program(library, weak, 0.0)
    state = _state(program, [(0.0, "705.0")])
    at = norepi_standard(library, concentration="4 mg/1000 mL", therapy="weight_based")
    ok = _decide(state, LoadProgram(replace(at, weight_kg=Decimal(47))), 10.0, library)
    assert ok.accepted, ok.message
    assert ok.message.endswith("(re-programmed in place: the pump runs on)")
    assert ok.unit == "mcg/kg/min" and ok.findings == ()
    above = _decide(state, LoadProgram(replace(at, weight_kg=Decimal(46))), 10.0, library)
    assert above.reason is Reason.HARD_MAX
    assert above.message.startswith("refused: the pump runs 1.02174 mcg/kg/min under this")
    fresh = _decide(_state(program, [(0.0, "0")], running=False), LoadProgram(weak), 10.0, library)
    assert fresh.accepted and "in place" not in fresh.message


def test_a_refused_concentration_carries_its_finding(library: DrugLibrary) -> None:
    state = single_channel(session="s", attached=True)
    spec = norepi_standard(library, concentration="4 mg/500 mL")
    verdict = _decide(state, LoadProgram(spec), 0.0, library)
    assert verdict.reason is Reason.CONCENTRATION_NOT_ALLOWED
    assert [f.code for f in verdict.findings] == [Reason.CONCENTRATION_NOT_ALLOWED]


# --------------------------------------------------------------------------- S7


def test_a_pump_whose_range_is_not_known_yet_takes_nothing(std: ActiveProgram) -> None:
    stopped = _state(std, [(0.0, "0")], running=False)
    unknown = PumpCapabilities(Decimal(0), Decimal(0), lambda rate: rate)
    verdict = _decide(stopped, StartInfusion(Decimal(8)), 10.0, pump=unknown)
    assert verdict.reason is Reason.PUMP_COMMS
    assert verdict.rate_ml_h == Decimal(30)
    tiny = PumpCapabilities(Decimal("0.1"), Decimal("1.0"), lambda rate: rate)
    small = _decide(
        stopped, StartInfusion(Decimal("0.2"), confirm_soft_limits=True), 10.0, pump=tiny
    )
    assert small.accepted, small.message  # 0.75 mL/h on a pump that runs up to 1.0


def test_a_rate_the_pump_rounds_to_nothing_is_refused_whatever_its_minimum(
    std: ActiveProgram,
) -> None:
    stopped = _state(std, [(0.0, "0")], running=False)
    coarse = PumpCapabilities(Decimal(0), Decimal("1999.1"), lambda rate: float(int(rate)))
    verdict = _decide(
        stopped, StartInfusion(Decimal("0.2"), confirm_soft_limits=True), 1.0, pump=coarse
    )
    assert verdict.reason is Reason.PUMP_RANGE_LOW
    assert verdict.message.startswith("refused: 0.2 mcg/min needs 0.75 mL/h, below")
    assert (verdict.unit, verdict.rate_ml_h) == ("mcg/min", Decimal(0))


# --------------------------------------------------------------------------- journal


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (SetRate(Decimal("37.5")), {"expected_rate": Decimal("37.5"), "expected_running": True}),
        (StartPump(), {"expected_running": True, "expected_rate": Decimal("30.0")}),
        (StopPump(), {"expected_running": False, "expected_rate": Decimal("30.0")}),
    ],
    ids=["set-rate", "start", "stop"],
)
def test_a_journaled_command_sets_what_is_expected_why_and_since_when(
    std: ActiveProgram, action: PumpAction, expected: dict[str, object]
) -> None:
    state = evolve(_state(std, [(0.0, "30.0")]), under_retries=1, expected_cause="x")
    after = apply(CONFIG, state, CommandIssued(action, "safety", Now(42.0, 1.0)))
    for name, value in expected.items():
        assert getattr(after, name) == value, name
    assert (after.expected_cause, after.expected_since) == ("safety", 42.0)
    if isinstance(action, SetRate):
        assert after.under_retries == 0  # a new rate starts its retries afresh
        retry = apply(CONFIG, state, CommandIssued(action, "retry", Now(43.0, 1.0)))
        assert retry.under_retries == 1  # a retry keeps its count


def test_the_relay_command_sets_the_interlock_only(std: ActiveProgram) -> None:
    state = _state(std, [(0.0, "30.0")])
    opened = apply(CONFIG, state, CommandIssued(SetInterlock(False), "estop", Now(1.0, 1.0)))
    assert opened.interlock_enabled is False
    assert evolve(opened, interlock_enabled=True) == state
    closed = apply(CONFIG, opened, CommandIssued(SetInterlock(True), "command", Now(2, 2)))
    assert closed.interlock_enabled is True


def test_a_program_loaded_resets_retries_and_staleness(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    state = evolve(_state(std, [(0.0, "30.0")]), under_retries=1, program_stale="library")
    spec = norepi_weight_based(library)
    event = ProgramLoaded(spec, load_program(library, spec, 0.0).limits, 3.5, Now(50.0, 1.0))
    after = apply(CONFIG, state, event)
    assert (after.under_retries, after.program_stale) == (0, None)
    assert after.program is not None and after.program.loaded_at == 50.0
    assert after.program.infused_baseline_ml == 3.5
    # the earlier standard limits are in force from the load on, and only until they pass
    (prior,) = after.priors_at(50.0)
    assert prior.limits == std.limits
    later = apply(CONFIG, after, replace(event, now=Now(50.0 + 24 * 3600.0, 2.0)))
    assert later.priors_at(50.0 + 24 * 3600.0) == ()


# --------------------------------------------------------------------------- S3 deadline


def test_the_cap_deadline_is_asked_only_of_a_running_drug_and_never_in_the_past(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    running = _state(std, [(0.0, "30.0")])  # 480 mcg/h: the cap in 141.7 h
    deadline = next_deadline(running, Now(0.0, 0.0), CONFIG)
    assert deadline == pytest.approx(68_000 / 480 * 3600 - CONFIG.cap_guard_s)
    assert next_deadline(evolve(running, running=False), Now(0.0, 0.0), CONFIG) is None
    assert next_deadline(evolve(running, program=None), Now(0.0, 0.0), CONFIG) is None
    slow = _state(std, [(0.0, "0.0001")])  # a running drug rate below 1 mcg/h still counts
    assert next_deadline(slow, Now(0.0, 0.0), CONFIG) is not None
    zero = _state(std, [(0.0, "0")])
    assert next_deadline(evolve(zero, running=True), Now(0.0, 0.0), CONFIG) is None
    # already past the guard: the deadline is now, not before
    given = RateHistory().with_rate(0.0, Fraction(Decimal("30.0")) * std.amount_per_ml)
    full = replace(
        running, drugs={std.drug: DrugRecord(given.with_amount(1.0, 67_999.0, "x"), std.limits)}
    )
    assert next_deadline(full, Now(10.0, 0.0), CONFIG) == 10.0
    vaso = load_program(library, vasopressin_fixed(library), 0.0)
    assert next_deadline(_state(vaso, [(0.0, "12.0")]), Now(0.0, 0.0), CONFIG) is None


@pytest.mark.parametrize(
    ("running", "expected"),
    [(True, True), (False, True), (True, False)],
    ids=["running", "start-sent", "pump-on-its-own"],
)
def test_a_start_is_refused_while_anything_infuses_or_might(
    std: ActiveProgram, running: bool, expected: bool
) -> None:
    state = evolve(_state(std, [(0.0, "30.0")]), running=running, expected_running=expected)
    verdict = _decide(state, StartInfusion(Decimal(8)), 10.0)
    assert verdict.reason is Reason.ALREADY_INFUSING
