"""The reducer's memory of a drug's earlier limits (S16), event by event: a program with
other limits keeps the old ones in force, saying which figure moved; a confirmed patient
update makes the loaded program stale only when it was made for another patient.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from safety.kernel.config import KernelConfig
from safety.kernel.model import (
    Now,
    PatientAdmitted,
    PatientSpec,
    PatientUpdated,
    ProgramLimits,
    ProgramLoaded,
    ProgramSpec,
)
from safety.kernel.reducer import apply
from safety.kernel.state import KernelState, evolve, limits_of, program_check, window_horizon_s
from safety.library import DrugLibrary
from tests.kernel.support import norepi_standard, norepi_weight_based

CONFIG = KernelConfig()
WHAT = "norepinephrine (Adult ICU, Standard (mcg/min))"


def _limits(library: DrugLibrary, spec: ProgramSpec) -> ProgramLimits:
    return limits_of(program_check(library, spec), library.content_hash)


def _loaded(spec: ProgramSpec, limits: ProgramLimits, t: float, state: KernelState) -> KernelState:
    return apply(CONFIG, state, ProgramLoaded(spec, limits, 0.0, Now(t, t)))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"profile": "pediatric_icu"}, "profile adult_icu -> pediatric_icu"),
        ({"weight_kg": Decimal(70)}, "weight None -> 70 kg"),
        ({"cap": None}, "cumulative cap changed"),
        ({"library_hash": "sha256:other"}, "library updated"),
        ({"what": "renamed"}, "changed"),
    ],
    ids=["profile", "weight", "cap", "library", "other"],
)
def test_other_limits_for_the_drug_keep_the_old_ones_in_force_saying_what_moved(
    library: DrugLibrary, change: dict[str, object], words: str
) -> None:
    spec = norepi_standard(library)
    old = _limits(library, spec)
    new = replace(old, **change)  # type: ignore[arg-type]
    state = _loaded(spec, old, 100.0, KernelState())
    state = _loaded(spec, new, 200.0, state)
    priors = state.priors_at(200.0)
    assert [p.why for p in priors] == [f"limits of {WHAT} ({words})"]
    assert priors[0].limits == old
    assert priors[0].until == 200.0 + window_horizon_s(old) == 200.0 + 24 * 3600.0
    assert state.record.limits == new
    # the same limits again add nothing
    again = _loaded(spec, new, 300.0, state)
    assert again.priors_at(300.0) == priors


def test_a_therapy_switch_names_both_therapies(library: DrugLibrary) -> None:
    std = norepi_standard(library)
    wb = norepi_weight_based(library)
    state = _loaded(std, _limits(library, std), 0.0, KernelState())
    state = _loaded(wb, _limits(library, wb), 10.0, state)
    (prior,) = state.priors_at(10.0)
    assert prior.why == (
        f"limits of {WHAT} (weight None -> 70 kg, therapy Standard (mcg/min) -> "
        "Weight-based (mcg/kg/min))"
    )


def _with_patient(library: DrugLibrary, spec: ProgramSpec) -> KernelState:
    limits = _limits(library, spec)
    patient = PatientSpec(limits.profile, limits.weight_kg)
    state = apply(CONFIG, KernelState(), PatientAdmitted("p", patient, "first program", Now(0, 0)))
    return _loaded(spec, limits, 0.0, state)


def test_a_confirmed_profile_change_makes_the_program_stale(library: DrugLibrary) -> None:
    state = _with_patient(library, norepi_standard(library))
    update = PatientUpdated(PatientSpec("pediatric_icu", Decimal(20)), "confirmed", Now(5, 5))
    after = apply(CONFIG, state, update)
    assert after.patient is not None and after.patient.spec == update.patient
    assert after.program_stale == (
        f"the patient is now pediatric_icu, 20 kg; {WHAT} was made for adult_icu: re-program it"
    )


def test_a_first_weight_or_the_same_patient_leaves_the_program_as_it_is(
    library: DrugLibrary,
) -> None:
    """A weight learnt from a weight-based program ("first weight") and a confirmed update
    to what the program was made for change nothing about the program."""
    state = _with_patient(library, norepi_standard(library))
    first = PatientUpdated(PatientSpec("adult_icu", Decimal(70)), "first weight", Now(5, 5))
    after = apply(CONFIG, state, first)
    assert after.program_stale is None
    assert after.patient is not None and after.patient.weight_kg == 70
    same = PatientUpdated(PatientSpec("adult_icu", None), "confirmed", Now(6, 6))
    assert apply(CONFIG, state, same).program_stale is None


def test_a_patient_update_without_a_program_only_updates_the_patient(
    library: DrugLibrary,
) -> None:
    patient = PatientSpec("adult_icu", Decimal(70))
    state = apply(CONFIG, KernelState(), PatientAdmitted("p", patient, "admitted", Now(0, 0)))
    update = PatientUpdated(PatientSpec("pediatric_icu", Decimal(20)), "confirmed", Now(1, 1))
    after = apply(CONFIG, state, update)
    assert after.patient is not None and after.patient.spec == update.patient
    assert after.program_stale is None
    # and an earlier staleness (a library change) is kept by a later update
    stale = evolve(_with_patient(library, norepi_standard(library)), program_stale="library")
    first = PatientUpdated(PatientSpec("adult_icu", Decimal(70)), "first weight", Now(5, 5))
    assert apply(CONFIG, stale, first).program_stale == "library"


def test_a_confirmed_update_without_a_weight_keeps_a_weight_based_program(
    library: DrugLibrary,
) -> None:
    """No weight given is no weight changed (a patient's known weight is never forgotten,
    ``decide`` refuses that; a journal written otherwise is read the same way)."""
    state = _with_patient(library, norepi_weight_based(library))
    update = PatientUpdated(PatientSpec("adult_icu", None), "confirmed", Now(5, 5))
    assert apply(CONFIG, state, update).program_stale is None


def test_a_test_fluid_loaded_resets_retries_and_staleness(library: DrugLibrary) -> None:
    from safety.kernel.state import fluid_limits

    water = ProgramSpec(library.content_hash, "water", "", "", "", "", test_fluid=True)
    state = evolve(KernelState(), under_retries=1, program_stale="library")
    event = ProgramLoaded(water, fluid_limits(library, water), 0.5, Now(9.0, 9.0))
    after = apply(CONFIG, state, event)
    assert (after.under_retries, after.program_stale) == (0, None)
    assert after.program is not None and after.program.loaded_at == 9.0
