"""S6 for the dose itself: the unit travels with the number and the safety process checks
it, so a weight-based figure is never read as an absolute one (the 70x error) even when
a controller or a script sends it unchecked."""

from __future__ import annotations

from decimal import Decimal

from safety.kernel.model import ChangeDose, StartInfusion
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard, norepi_weight_based


def test_a_mcg_kg_min_figure_for_a_mcg_min_program_is_refused(infusing: Bench) -> None:
    out = infusing.send(ChangeDose(Decimal("8.5"), unit="mcg/kg/min"))
    assert out.verdict.reason is Reason.DOSE_UNIT_MISMATCH
    assert "mcg/kg/min" in out.verdict.message and "mcg/min" in out.verdict.message
    assert infusing.truth_rate() == 30.0  # nothing reached the pump
    # the same number in the program's unit is an ordinary, accepted rise
    assert infusing.send(ChangeDose(Decimal("8.5"), unit="mcg/min")).verdict.accepted


def test_a_mcg_min_figure_for_a_weight_based_program_is_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    assert bench.load(norepi_weight_based(library)).verdict.accepted
    out = bench.send(StartInfusion(Decimal("0.05"), unit="mcg/min"))
    assert out.verdict.reason is Reason.DOSE_UNIT_MISMATCH
    assert bench.truth_rate() == 0.0
    assert bench.send(StartInfusion(Decimal("0.05"), unit="mcg/kg/min")).verdict.accepted


def test_a_unit_that_is_not_one_is_bad_input(bench: Bench, library: DrugLibrary) -> None:
    assert bench.load(norepi_standard(library)).verdict.accepted
    out = bench.send(StartInfusion(Decimal(8), unit="mg/kg"))
    assert out.verdict.reason is Reason.BAD_INPUT and "time base" in out.verdict.message
    assert bench.truth_rate() == 0.0


def test_same_amount_in_another_unit_is_still_refused_never_converted(infusing: Bench) -> None:
    """0.48 mg/h is 8 mcg/min, but the kernel converts nothing: a wrong unit is a wrong
    entry, the controller converts (exactly) before sending."""
    out = infusing.send(ChangeDose(Decimal("0.48"), unit="mg/h"))
    assert out.verdict.reason is Reason.DOSE_UNIT_MISMATCH
