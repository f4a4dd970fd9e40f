"""A test fluid's rate limits exactly at them and one pump step past, by the pure
``decide``: the fluid's maximum (its S1) and minimum, the pump's range (S7) behind them,
and what a verdict for water carries (mL/h, no drug, the relay closed on a start).

Water in the example library: 0.01-1000 mL/h. The pump here runs 1.0-1999.1 mL/h and
rounds to 4 significant digits, as the mock pump does.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from drivers.pumps.mock import MockPumpDriver
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.model import (
    ChangeDose,
    LoadProgram,
    Now,
    ProgramLoaded,
    ProgramSpec,
    Request,
    RequestBody,
    RequestMeta,
    SetInterlock,
    SetRate,
    StartInfusion,
    StartPump,
    Verdict,
)
from safety.kernel.reducer import apply
from safety.kernel.state import FluidProgram, KernelState, evolve, fluid_limits, single_channel
from safety.library import DrugLibrary, LookupProblem
from safety.reasons import Reason

CONFIG = KernelConfig()
QUANTIZE = MockPumpDriver().quantize_rate
PUMP = PumpCapabilities(Decimal("1.0"), Decimal("1999.1"), QUANTIZE)
NOW = Now(10.0, 5.0)


def water(library: DrugLibrary, **changes: object) -> ProgramSpec:
    fields: dict[str, object] = {
        "library_hash": library.content_hash,
        "drug": "water",
        "profile": "",
        "therapy": "",
        "concentration": "",
        "diluent": "",
        "test_fluid": True,
    }
    fields.update(changes)
    return ProgramSpec(**fields)  # type: ignore[arg-type]


def _loaded(library: DrugLibrary, **state: object) -> KernelState:
    spec = water(library)
    event = ProgramLoaded(spec, fluid_limits(library, spec), 2.5, Now(1.0, 1.0))
    base = single_channel(session="s", attached=True)
    return evolve(apply(CONFIG, base, event), **state)


def _decide(
    library: DrugLibrary, state: KernelState, body: RequestBody, pump: PumpCapabilities = PUMP
) -> Verdict:
    request = Request(RequestMeta("s", state.last_seq + 1, 1e6), body)
    return decide(library, state, request, NOW, pump, CONFIG)


def test_a_loaded_test_fluid_is_the_journaled_program(library: DrugLibrary) -> None:
    state = _loaded(library)
    program = state.program
    assert isinstance(program, FluidProgram)
    assert program.spec == water(library)
    assert (program.loaded_at, program.infused_baseline_ml) == (1.0, 2.5)
    assert state.drug_program is None and state.drugs == {}


@pytest.mark.parametrize(
    ("rate", "reason"),
    [
        ("1000", Reason.ACCEPTED),  # the fluid's maximum
        ("1000.1", Reason.HARD_MAX),  # one pump step past it (1000 -> 1001 at 4 digits)
        ("1001", Reason.HARD_MAX),
    ],
)
def test_the_fluids_maximum_exactly_allowed_one_step_past_refused(
    library: DrugLibrary, rate: str, reason: Reason
) -> None:
    verdict = _decide(library, _loaded(library), StartInfusion(Decimal(rate), unit="mL/h"))
    assert verdict.reason is reason, verdict.message
    assert verdict.unit == "mL/h"
    assert verdict.rate_ml_h == Decimal(repr(QUANTIZE(float(rate))))


def test_the_fluids_minimum_and_the_pumps_minimum(library: DrugLibrary) -> None:
    """Below 1.0 mL/h the pump cannot run it (S7) though water's own minimum (0.01)
    allows it; with a pump that runs 0.001 mL/h, water's minimum is the limit."""
    state = _loaded(library)
    at_pump_min = _decide(library, state, StartInfusion(Decimal("1.000"), unit="mL/h"))
    assert at_pump_min.accepted, at_pump_min.message
    below_pump = _decide(library, state, StartInfusion(Decimal("0.9999"), unit="mL/h"))
    assert below_pump.reason is Reason.PUMP_RANGE_LOW
    fine = PumpCapabilities(Decimal("0.001"), Decimal("1999.1"), QUANTIZE)
    at_min = _decide(library, state, StartInfusion(Decimal("0.01"), unit="mL/h"), fine)
    assert at_min.accepted, at_min.message
    below = _decide(library, state, StartInfusion(Decimal("0.009999"), unit="mL/h"), fine)
    assert below.reason is Reason.PUMP_RANGE_LOW
    assert below.message == (
        "refused: 0.009999 mL/h is below the minimum 0.01 mL/h of test fluid water "
        "(Water (accuracy test, no drug))"
    )
    assert below.unit == "mL/h" and below.rate_ml_h == Decimal("0.009999")


def test_the_pumps_maximum_binds_a_fluid_allowed_more(library: DrugLibrary) -> None:
    small = PumpCapabilities(Decimal("0.05"), Decimal("406.5"), QUANTIZE)
    state = _loaded(library)
    at = _decide(library, state, StartInfusion(Decimal("406.5"), unit="mL/h"), small)
    assert at.accepted, at.message
    past = _decide(library, state, StartInfusion(Decimal("406.6"), unit="mL/h"), small)
    assert past.reason is Reason.PUMP_RANGE_HIGH
    assert past.message.startswith("refused: 406.6 mL/h needs 406.6 mL/h, above the pump's")


@pytest.mark.parametrize("rate", ["0", "-1", "NaN", "Infinity"])
def test_a_non_positive_or_non_finite_rate_is_bad_input(library: DrugLibrary, rate: str) -> None:
    verdict = _decide(library, _loaded(library), StartInfusion(Decimal(rate), unit="mL/h"))
    assert verdict.reason is Reason.BAD_INPUT
    assert verdict.message.startswith("refused: rate must be a positive number of mL/h")


def test_the_largest_rate_a_request_may_carry_is_judged_not_refused_as_input(
    library: DrugLibrary,
) -> None:
    from safety.units import DOSE_VALUE_MAX

    verdict = _decide(library, _loaded(library), StartInfusion(DOSE_VALUE_MAX, unit="mL/h"))
    assert verdict.reason is Reason.HARD_MAX  # a rate, judged by the fluid's maximum


def test_a_start_closes_the_relay_first_when_it_is_open(library: DrugLibrary) -> None:
    start = StartInfusion(Decimal(100), unit="mL/h")
    closed = _decide(library, _loaded(library), start)
    assert closed.actions == (SetRate(Decimal("100.0")), StartPump())
    assert closed.message == (
        "accepted (start): test fluid water (Water (accuracy test, no drug)) at 100 mL/h "
        "(rate limits only: no drug)"
    )
    opened = _decide(library, _loaded(library, interlock_enabled=False), start)
    assert opened.actions == (SetInterlock(True), SetRate(Decimal("100.0")), StartPump())
    change = _decide(library, _loaded(library, running=True), ChangeDose(Decimal(50), unit="mL/h"))
    assert change.actions == (SetRate(Decimal("50.00")),)
    assert change.message.startswith("accepted (change): ")
    assert (change.unit, change.dose) == ("mL/h", Decimal("50.00"))


@pytest.mark.parametrize(
    "state",
    [
        {"running": True, "expected_running": True},
        {"running": False, "expected_running": True},
        {"running": True, "expected_running": False},
    ],
    ids=["running", "start-sent", "pump-on-its-own"],
)
def test_a_test_fluid_is_loaded_only_when_nothing_runs(
    library: DrugLibrary, state: dict[str, bool]
) -> None:
    verdict = _decide(library, _loaded(library, **state), LoadProgram(water(library)))
    assert verdict.reason is Reason.ALREADY_INFUSING
    ok = _decide(library, _loaded(library), LoadProgram(water(library)))
    assert ok.accepted and ok.unit == "mL/h"
    assert ok.message == (
        "program loaded: test fluid water (Water (accuracy test, no drug)): no drug, rate "
        "limits only (0.01-1000 mL/h)"
    )


def test_a_test_fluid_spec_with_a_drugs_fields_names_each_one(library: DrugLibrary) -> None:
    spec = water(library, profile="adult_icu", therapy="standard", diluent="NS")
    with pytest.raises(LookupProblem) as caught:
        fluid_limits(library, spec)
    assert caught.value.field == "program"
    assert "profile, therapy, diluent must be empty" in str(caught.value)
    drug = replace(water(library), test_fluid=False)
    with pytest.raises(LookupProblem) as caught:
        fluid_limits(library, drug)
    assert caught.value.field == "program"
    assert "'water' is a drug program, not a test fluid" in str(caught.value)
    verdict = _decide(library, single_channel(session="s", attached=True), LoadProgram(spec))
    assert verdict.reason is Reason.BAD_INPUT
