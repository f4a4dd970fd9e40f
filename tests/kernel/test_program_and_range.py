"""S6 (what may be loaded: concentration, diluent, library, units, weight) and S7 (the
pump's physical range, and rounding toward safety).

Each S6 test changes one field of a program the library accepts, so the refusal can only
come from the check on that field; the reason code is asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest

from safety.kernel.model import ProgramSpec, SetRate
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard, norepi_weight_based

# --------------------------------------------------------------------------- S6


def test_s6_reference_program_is_accepted(bench: Bench, std: ProgramSpec) -> None:
    """The baseline every S6 test below changes one field of."""
    out = bench.load(std)
    assert out.verdict.accepted and out.verdict.unit == "mcg/min"
    assert bench.core.state.program is not None


@pytest.mark.parametrize("concentration", ["16 mg/250 mL", "4 mg/500 mL", "64 mcg/mL"])
def test_s6_concentration_not_in_the_library_refused(
    bench: Bench, library: DrugLibrary, concentration: str
) -> None:
    out = bench.load(norepi_standard(library, concentration=concentration))
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.CONCENTRATION_NOT_ALLOWED
    assert "allowed: 4 mg/1000 mL" in out.verdict.message
    assert bench.core.state.program is None


def test_s6_equivalent_spelling_of_an_allowed_concentration_accepted(
    bench: Bench, library: DrugLibrary
) -> None:
    """Concentrations are compared by value, not by text: 4000 mcg/250 mL is 4 mg/250 mL."""
    out = bench.load(norepi_standard(library, concentration="4000 mcg/250 mL"))
    assert out.verdict.accepted, out.verdict.message


def test_s6_saline_diluent_refused_for_norepinephrine(bench: Bench, library: DrugLibrary) -> None:
    out = bench.load(norepi_standard(library, diluent="NS"))
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.DILUENT_NOT_ALLOWED
    assert "dextrose-containing diluent is required" in out.verdict.message
    assert bench.core.state.program is None


def test_s6_diluent_allowed_for_one_profile_refused_for_another(
    bench: Bench, library: DrugLibrary
) -> None:
    """D5NS: allowed for adults, not in the pediatric profile (D5W only)."""
    adult = norepi_standard(library, diluent="D5NS")
    assert bench.load(adult).verdict.accepted
    pediatric = norepi_standard(
        library,
        profile="pediatric_icu",
        therapy="weight_based",
        diluent="D5NS",
        weight_kg=Decimal(20),
    )
    out = bench.load(pediatric)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.DILUENT_NOT_ALLOWED
    # the adult program stays loaded
    program = bench.core.state.program
    assert program is not None and program.spec == adult


def test_s6_library_hash_mismatch_refused(bench: Bench, library: DrugLibrary) -> None:
    other = "sha256:" + "0" * 64
    out = bench.load(norepi_standard(library, library_hash=other))
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.LIBRARY_MISMATCH
    assert library.content_hash[:19] in out.verdict.message
    assert bench.core.state.program is None


def test_s6_units_drug_with_a_mass_concentration_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    """Vasopressin is dosed in units/min: a concentration in mg can never feed it."""
    spec = ProgramSpec(
        library.content_hash, "vasopressin", "adult_icu", "fixed", "4 mg/250 mL", "NS"
    )
    out = bench.load(spec)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.CONCENTRATION_NOT_ALLOWED
    assert bench.core.state.program is None


def test_s6_weight_based_therapy_without_a_weight_refused(
    bench: Bench, library: DrugLibrary
) -> None:
    out = bench.load(norepi_standard(library, therapy="weight_based"))
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.BAD_INPUT
    assert "weight" in out.verdict.message and "mcg/kg/min" in out.verdict.message
    assert bench.core.state.program is None


def test_s6_weight_outside_the_profile_range_refused(bench: Bench, library: DrugLibrary) -> None:
    out = bench.load(norepi_weight_based(library, Decimal(300)))
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.WEIGHT_OUT_OF_RANGE
    assert "30-250 kg" in out.verdict.message


def test_s6_doses_are_read_in_the_therapy_unit(bench: Bench, library: DrugLibrary) -> None:
    """Weight-based and absolute never mix: 0.1 in the weight-based therapy is
    0.1 mcg/kg/min (7 mcg/min at 70 kg), never 0.1 mcg/min."""
    out = bench.load(norepi_weight_based(library))
    assert out.verdict.unit == "mcg/kg/min"
    start = bench.start("0.1")
    assert start.verdict.accepted and start.verdict.unit == "mcg/kg/min"
    assert bench.truth_rate() == 26.25  # 7 mcg/min at 16 mcg/mL


def test_s6_unknown_drug_profile_or_therapy_refused(bench: Bench, library: DrugLibrary) -> None:
    for change in ({"drug": "dopamine"}, {"profile": "neonatal"}, {"therapy": "bolus"}):
        out = bench.load(norepi_standard(library, **change))
        assert not out.verdict.accepted, change
        assert out.verdict.reason is Reason.BAD_INPUT, change
    assert bench.core.state.program is None


def test_s6_program_cannot_change_under_a_running_infusion(
    infusing: Bench, library: DrugLibrary
) -> None:
    out = infusing.load(norepi_standard(library, concentration="4 mg/1000 mL"))
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.ALREADY_INFUSING
    assert infusing.truth_rate() == 30.0


# --------------------------------------------------------------------------- S7


def test_s7_below_the_pump_minimum_refused(bench: Bench, std: ProgramSpec) -> None:
    """0.25 mcg/min needs 0.9375 mL/h; the 50 mL syringe's minimum is 1 mL/h. The soft
    minimum is confirmed, so only the pump range is left to refuse it."""
    assert bench.load(std).verdict.accepted
    out = bench.start("0.25", confirm=True)
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.PUMP_RANGE_LOW
    assert "below the pump's minimum 1 mL/h" in out.verdict.message
    assert bench.set_rates() == [] and bench.truth_rate() == 0.0
    assert bench.start("0.27", confirm=True).verdict.accepted  # 1.0125 -> 1.012 mL/h


def test_s7_above_the_pump_maximum_refused(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """5 mL syringe (max 406.5 mL/h) at 4 mg/1000 mL (4 mcg/mL): 26 -> 27.5 mcg/min is a
    +1.5 step inside every dose rule, but needs 412.5 mL/h."""
    spec = norepi_standard(library, concentration="4 mg/1000 mL")
    bench = make_bench(syringe="bd-plastipak-5ml")
    bench.seed(spec, [(0.0, 26)], boot_at=0.0)
    bench.boot()
    assert bench.truth_rate() == 390.0
    out = bench.change("27.5")
    assert not out.verdict.accepted
    assert out.verdict.reason is Reason.PUMP_RANGE_HIGH
    assert "above the pump's 406.5 mL/h" in out.verdict.message
    assert bench.truth_rate() == 390.0
    assert bench.change(27).verdict.accepted  # 405 mL/h


@pytest.mark.parametrize(
    "dose",
    ["8.1234", "9.99999", "10.0001", "4.4444", "2.2222", "11.1111"],
)
def test_s7_rate_sent_is_rounded_down_never_above_the_request(
    bench: Bench, std: ProgramSpec, dose: str
) -> None:
    assert bench.load(std).verdict.accepted
    out = bench.start(dose, confirm=True)
    assert out.verdict.accepted, out.verdict.message
    exact = Fraction(Decimal(dose)) * Fraction(60, 16)  # mL/h that delivers the dose
    sent = [a for _, a in bench.guard.sent if isinstance(a, SetRate)]
    assert len(sent) == 1
    assert Fraction(sent[0].rate_ml_h) <= exact
    assert Fraction(Decimal(repr(bench.truth_rate()))) <= exact
    assert out.verdict.dose is not None and out.verdict.dose <= Decimal(dose)
    assert out.verdict.rate_ml_h == sent[0].rate_ml_h
    # and not needlessly low: within the pump's 4-significant-digit resolution
    assert exact - Fraction(sent[0].rate_ml_h) < Fraction(1, 100)
