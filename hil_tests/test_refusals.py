"""Case group 2: orders the rules refuse, each with its reason code, and nothing changes at
the pump.

Every order is sent twice where it can be: through the controller as an operator would
(which refuses it first, in the operator's words) and raw (``Session.order``: one request
exactly as given, unplanned), so the safety process's own refusal is proven too - the
controller is not a safety layer, the safety process is. "Nothing changes at the pump" is
judged on the emulator's ground truth and frame log, not on any process's belief.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from controller.errors import BadInput, ControllerError, Refused
from controller.inputs import program_spec
from hil_tests.conftest import MakeBench
from hil_tests.harness.bench import HilBench
from hil_tests.harness.processes import wait_for
from hil_tests.harness.pumps import ALL_KINDS, NE1000, PumpKind
from hil_tests.harness.truth import changes_between, describe, last_rate, rate_at
from safety.journal_read import read_safety_events
from safety.kernel.model import (
    ChangeDose,
    LoadProgram,
    ProgramSpec,
    ReadbackReceived,
    RequestDecided,
    StartInfusion,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from verification.scenario.bench import seed_journal
from verification.scenario.model import Prior

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]

DRUG, STRENGTH, DILUENT = "norepinephrine", "8 mg/250 mL", "D5W"
#: 3 mcg/min at 32 mcg/mL
RUNNING_ML_H = 3 * 60 / 32


def spec(
    library: DrugLibrary, concentration: str = STRENGTH, diluent: str = DILUENT
) -> ProgramSpec:
    """A program as the wire carries it (not pre-checked by the controller)."""
    return ProgramSpec(library.content_hash, DRUG, "adult_icu", "standard", concentration, diluent)


def refusals(bench: HilBench) -> list[Reason]:
    """The reasons of every refusal the safety process journaled, in order."""
    return [
        e.reason
        for e in read_safety_events(bench.safety_journal)
        if isinstance(e, RequestDecided) and not e.accepted
    ]


def readbacks(bench: HilBench) -> int:
    return sum(isinstance(e, ReadbackReceived) for e in read_safety_events(bench.safety_journal))


def settle(bench: HilBench, polls: int = 2) -> None:
    """Wait until the safety process has read the pump back ``polls`` more times, so any
    change an order might have caused would be on the pump and in its truth by now."""
    seen = readbacks(bench)
    wait_for(lambda: readbacks(bench) >= seen + polls, 10.0, f"{polls} more read-backs")


@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_refused_orders_change_nothing_at_the_pump(
    make_bench: MakeBench, kind: PumpKind, library: DrugLibrary
) -> None:
    bench = make_bench(kind)
    session = bench.connect()

    # S6: a diluent and a concentration the library does not allow for this drug
    with pytest.raises(ControllerError) as diluent:
        session.program(DRUG, STRENGTH, "NS")
    assert diluent.value.code == Reason.DILUENT_NOT_ALLOWED.value
    raw = session.order(LoadProgram(spec(library, diluent="NS")))
    assert raw.verdict.reason is Reason.DILUENT_NOT_ALLOWED, raw.verdict
    with pytest.raises(ControllerError) as strength:
        session.program(DRUG, "16 mg/250 mL", DILUENT)
    assert strength.value.code == Reason.CONCENTRATION_NOT_ALLOWED.value
    raw = session.order(LoadProgram(spec(library, concentration="16 mg/250 mL")))
    assert raw.verdict.reason is Reason.CONCENTRATION_NOT_ALLOWED, raw.verdict

    # S1: a start above the hard maximum (47 mcg/min)
    session.program(DRUG, STRENGTH, DILUENT)
    # units: a weight-based start typed for a mcg/min program is never read as mcg/min
    with pytest.raises(BadInput) as per_kg:
        session.start("0.05 mcg/kg/min")
    assert per_kg.value.field == "dose" and "weight-based" in per_kg.value.message
    with pytest.raises(Refused) as above:
        session.start(60)
    assert above.value.code == Reason.HARD_MAX.value
    assert not bench.pump()["running"] and bench.set_rates_executed() == 0

    session.start(3)
    wait_for(lambda: bench.pump()["running"], 5.0, "the pump running")
    settle(bench)
    steady = bench.now()
    sets = bench.set_rates_executed()
    assert sets == 1

    # S4: a 10x slip (30 for 3 mcg/min, below the soft maximum) as one change
    slip = session.order(ChangeDose(Decimal(30)))
    assert slip.verdict.reason is Reason.STEP_RISE, slip.verdict
    # S1 while running: a rise above the hard maximum
    high = session.order(ChangeDose(Decimal(50)))
    assert high.verdict.reason is Reason.HARD_MAX, high.verdict
    # ... nor a titration to one
    with pytest.raises(BadInput) as units:
        session.titrate_to("0.1 mcg/kg/min")
    assert units.value.field == "dose" and "weight-based" in units.value.message

    settle(bench)
    until = bench.now()
    truth = bench.truth()
    assert changes_between(truth, steady, until) == [], describe(truth)
    assert rate_at(truth, until) == pytest.approx(RUNNING_ML_H), describe(truth)
    assert bench.set_rates_executed() == sets  # nothing more reached the pump
    assert bench.pump()["set_rate_ml_h"] == pytest.approx(RUNNING_ML_H)
    # the safety process refused each order itself, with its reason, and journaled it
    assert refusals(bench) == [
        Reason.DILUENT_NOT_ALLOWED,
        Reason.CONCENTRATION_NOT_ALLOWED,
        Reason.HARD_MAX,
        Reason.STEP_RISE,
        Reason.HARD_MAX,
    ]
    report = bench.assert_invariants()
    assert report.summary.max_dose == pytest.approx(3.0)


def test_the_24_h_cap_refuses_a_start_that_would_reach_it(
    make_bench: MakeBench, library: DrugLibrary
) -> None:
    """68 mg per 24 h (adult norepinephrine), on the scaled clock: 22 h of 3 mg/h
    (hepatorenal therapy, its hard maximum) ending 5 min ago leave 2.25 mg. A syringe holds
    a fraction of a day's drug, so the 22 h reach the safety process the way a previous
    run of it would leave them: journaled (``verification.scenario.bench.seed_journal``),
    before it starts; the truth check counts them as prior delivery."""
    bench = make_bench(NE1000, start=False, speed=300)
    bench.start_emulator()
    program = program_spec(library, DRUG, "4 mg/250 mL", DILUENT, therapy="hepatorenal")
    prior = Prior.model_validate({"from": -22 * 60, "until": -5, "dose": "3"})
    bench.prior = seed_journal(
        bench.safety_journal,
        library,
        program,
        [prior],
        bench.now(),
        time.monotonic(),
        bench.clock,
    )
    bench.write_config()
    bench.start_safety()
    session = bench.connect()
    snap = session.status()
    assert snap.cap_amount == Decimal(68) and snap.amount_unit == "mg"
    assert float(snap.given_in_cap_window or 0) == pytest.approx(65.75, abs=0.01)

    # 3 mg/h is allowed by every other rule (the rate of the last 4 h licenses the start,
    # S4), but 3 mg more within the hour would cross the cap (S3)
    before = bench.now()
    with pytest.raises(Refused) as capped:
        session.start(3)
    assert capped.value.code == Reason.CUMULATIVE_CAP.value
    assert "68 mg per 24 h" in capped.value.message
    raw = session.order(StartInfusion(Decimal(3)))
    assert raw.verdict.reason is Reason.CUMULATIVE_CAP
    settle(bench)
    truth = bench.truth()
    assert changes_between(truth, before) == [] and last_rate(truth) == 0.0, describe(truth)
    assert bench.set_rates_executed() == 0 and not bench.pump()["running"]

    # within the headroom the same start is allowed, with the cap warning (S3: wean now)
    outcome = session.start(2)
    assert outcome.verdict.accepted
    wait_for(
        lambda: any(a.key == "cap_warning" for a in session.status().alarms),
        5.0,
        "the cap warning",
    )
    settle(bench)
    assert last_rate(bench.truth()) == pytest.approx(125.0)  # 2 mg/h at 16 mcg/mL
    report = bench.assert_invariants()
    assert report.summary.cap_peak is not None and report.summary.cap_peak < 68
