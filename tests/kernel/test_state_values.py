"""The kernel's state as a value that other parts read: the dose it says runs, a history
put in place by the planner's look-ahead, delivery counted at an instant (a bolus seen
only on the pump's counter) and an event as plain JSON for the journal's readers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.kernel.codec import EVENT, event_to_dict
from safety.kernel.history import RateHistory
from safety.kernel.model import CommandIssued, Now, SetRate
from safety.kernel.state import (
    ActiveProgram,
    DrugRecord,
    KernelState,
    PriorLimits,
    evolve,
    load_program,
    program_of,
    single_channel,
)
from safety.library import DrugLibrary
from tests.kernel.support import norepi_standard, vasopressin_fixed


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def test_the_current_dose_is_the_verified_rate_while_running_and_zero_otherwise(
    std: ActiveProgram,
) -> None:
    state = single_channel(program=std, running=True, set_rate=Decimal("30.0"))
    assert state.current_dose() == 8
    assert evolve(state, running=False).current_dose() == 0
    assert evolve(state, program=None).current_dose() == 0
    assert single_channel(running=True, set_rate=Decimal(30)).current_dose() == 0


def test_a_history_put_in_place_replaces_only_the_loaded_drugs(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    vaso = load_program(library, vasopressin_fixed(library), 0.0)
    other = DrugRecord(RateHistory().with_rate(0.0, Fraction(Decimal(6)) * vaso.amount_per_ml))
    state = single_channel(program=std, drugs={vaso.drug: other})
    planned = RateHistory().with_rate(10.0, Fraction(Decimal(30)) * std.amount_per_ml)
    after = state.with_history(planned)
    assert after.history is planned
    assert after.drugs[std.drug].limits == std.limits  # a new record carries the limits
    assert after.drugs[vaso.drug] is other
    assert after.program is std
    # an existing record keeps its limits and priors, with the history replaced
    prior = PriorLimits(replace(std.limits, what="earlier"), 99.0, "why")
    kept = DrugRecord(RateHistory(), replace(std.limits, what="latest"), (prior,))
    state = replace(state, drugs={std.drug: kept})
    again = state.with_history(planned)
    assert again.drugs[std.drug] == replace(kept, history=planned)
    with pytest.raises(AssertionError, match=r"^a history belongs to a drug: load a drug program$"):
        KernelState().with_history(planned)


def test_a_program_rebuilt_from_its_journaled_event_is_the_one_loaded(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    spec = norepi_standard(library)
    assert load_program(library, spec, 7.5).loaded_at == 7.5
    assert program_of(spec, std.limits, 3.0, 1.25) == ActiveProgram(spec, std.limits, 3.0, 1.25)
    assert program_of(spec, std.limits, 3.0).infused_baseline_ml == 0.0


def test_delivery_counted_at_an_instant_is_kept_in_time_order(std: ActiveProgram) -> None:
    history = RateHistory().with_rate(0.0, Fraction(Decimal(30)) * std.amount_per_ml)
    assert history.with_amount(50.0, 0.0, "nothing") is history
    assert history.with_amount(50.0, -1.0, "nothing") is history
    counted = history.with_amount(100.0, 0.5, "seen on the counter")
    assert [(b.at, b.amount, b.why) for b in counted.boluses] == [
        (100.0, 0.5, "seen on the counter")
    ]
    for at in (200.0, 300.0):
        counted = counted.with_amount(at, 1.0, "later")
    late = counted.with_amount(250.0, 2.0, "reported late")
    assert [b.at for b in late.boluses] == [100.0, 200.0, 300.0, 300.0]
    # counted in the window that holds its (moved) instant, on top of the rate
    rate_only = 480.0 * 100.0 / 3600.0
    assert late.amount(250.0, 350.0) == pytest.approx(rate_only + 1.0 + 2.0)
    assert late.amount(0.0, 299.0) == pytest.approx(480.0 * 299.0 / 3600.0 + 0.5 + 1.0)


def test_a_bolus_on_a_history_never_asked_before_answers_as_one_built_whole(
    std: ActiveProgram,
) -> None:
    fresh = RateHistory(
        (RateHistory().with_rate(0.0, Fraction(Decimal(30)) * std.amount_per_ml).segments[0],)
    )
    counted = fresh.with_amount(60.0, 3.0, "x")
    assert counted.amount(0.0, 120.0) == pytest.approx(480.0 * 120.0 / 3600.0 + 3.0)
    assert counted.max_amount_rate(0.0, 120.0) == Fraction(480)


def test_an_event_as_plain_json_reads_back_as_the_same_event() -> None:
    event = CommandIssued(SetRate(Decimal("30.0")), "command", Now(12.5, 3.0))
    plain = event_to_dict(event)
    assert plain["kind"] == "command_issued"
    assert plain["action"] == {"rate_ml_h": "30.0", "channel": "A", "kind": "set_rate"}
    assert json.loads(json.dumps(plain)) == plain
    assert EVENT.validate_python(plain) == event


def test_the_current_drug_rate_is_the_verified_one_while_running(std: ActiveProgram) -> None:
    state = single_channel(program=std, running=True, set_rate=Decimal("30.0"))
    assert state.current_amount_rate() == 480  # mcg/h
    assert evolve(state, running=False).current_amount_rate() == 0
    assert evolve(state, program=None).current_amount_rate() == 0


def test_a_test_fluid_spec_is_no_drug_program(library: DrugLibrary) -> None:
    from safety.kernel.state import program_check
    from safety.library import LookupProblem

    spec = replace(norepi_standard(library), drug="water", test_fluid=True)
    with pytest.raises(LookupProblem) as caught:
        program_check(library, spec)
    assert caught.value.field == "program"
    assert str(caught.value).endswith("'water' is a test-fluid program, not a drug")


def test_limits_keep_mattering_for_their_longest_window(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    from safety.kernel.state import window_horizon_s

    assert window_horizon_s(std.limits) == 24 * 3600.0  # the cap
    assert window_horizon_s(replace(std.limits, cap=None)) == 30 * 60.0  # the wean
    hepatorenal = load_program(library, norepi_standard(library, therapy="hepatorenal"), 0.0)
    assert window_horizon_s(replace(hepatorenal.limits, cap=None)) == 240 * 60.0  # titration
    vaso = load_program(library, vasopressin_fixed(library), 0.0)
    assert window_horizon_s(vaso.limits) == 10 * 60.0  # no wean window, no cap


def test_every_drug_keeps_the_librarys_longest_window_and_a_margin(
    library: DrugLibrary,
) -> None:
    from pathlib import Path

    from safety.kernel.state import KEEP_MARGIN_S, history_keep_for
    from safety.library.loader import parse_library

    assert history_keep_for(library) == 24 * 3600.0 + KEEP_MARGIN_S
    text = Path(library.path).read_text(encoding="utf-8")
    uncapped = "\n".join(
        line for line in text.splitlines() if not line.startswith("cumulative_cap")
    )
    model, digest = parse_library(uncapped)
    assert history_keep_for(DrugLibrary(model, digest)) == 240 * 60.0 + KEEP_MARGIN_S
