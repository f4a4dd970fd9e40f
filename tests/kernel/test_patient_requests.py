"""Admitting and correcting the patient (S16), decided by the pure ``decide``: each
refusal by its reason code, the profile's weight range exactly at its ends and one
0.1 kg step past them, and the sentences that tell the operator what happened.

A new patient starts fresh histories for every drug, so it is refused while anything
infuses or might (a start sent but not yet read back) and without confirmation; a
correction keeps the patient's histories and earlier limits, and must change something.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.model import (
    AdmitPatient,
    LoadProgram,
    Now,
    PatientSpec,
    Request,
    RequestBody,
    RequestMeta,
    UpdatePatient,
    Verdict,
)
from safety.kernel.state import KernelState, Patient, evolve, load_program, single_channel
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard, norepi_weight_based

PUMP = PumpCapabilities(Decimal("1.0"), Decimal("1999.1"), lambda rate: rate)
ATTACHED = single_channel(session="s", attached=True)
ADULT_70 = Patient("p1", PatientSpec("adult_icu", Decimal(70)), 0.0, "admitted")


def _decide(library: DrugLibrary, state: KernelState, body: RequestBody) -> Verdict:
    request = Request(RequestMeta("s", state.last_seq + 1, 10.0), body)
    return decide(library, state, request, Now(0.0, 0.0), PUMP, KernelConfig())


def _admit(weight: str | None, profile: str = "adult_icu") -> AdmitPatient:
    kg = Decimal(weight) if weight is not None else None
    return AdmitPatient(PatientSpec(profile, kg), confirm_new_patient=True)


@pytest.mark.parametrize(
    ("weight", "ok"),
    [("30", True), ("29.9", False), ("250", True), ("250.1", False)],
)
def test_admit_weight_exactly_at_the_profiles_range_and_one_step_past(
    library: DrugLibrary, weight: str, ok: bool
) -> None:
    """The adult ICU profile admits 30-250 kg."""
    verdict = _decide(library, ATTACHED, _admit(weight))
    if ok:
        assert verdict.accepted, verdict.message
        assert verdict.message == f"new patient admitted: adult_icu, {weight} kg"
    else:
        assert verdict.reason is Reason.WEIGHT_OUT_OF_RANGE
        assert verdict.message == (
            f"refused: weight must be 30-250 kg for Adult ICU, got {weight} kg"
        )


def test_admit_without_a_weight_names_only_the_profile(library: DrugLibrary) -> None:
    verdict = _decide(library, ATTACHED, _admit(None))
    assert verdict.accepted
    assert verdict.message == "new patient admitted: adult_icu"


def test_admit_an_unknown_profile_or_an_impossible_weight_is_bad_input(
    library: DrugLibrary,
) -> None:
    unknown = _decide(library, ATTACHED, _admit("70", profile="neonatal_icu"))
    assert unknown.reason is Reason.BAD_INPUT
    assert unknown.message.startswith("refused: ") and "neonatal_icu" in unknown.message
    absurd = _decide(library, ATTACHED, _admit("0"))
    assert absurd.reason is Reason.BAD_INPUT
    assert "weight" in absurd.message


@pytest.mark.parametrize(
    "state",
    [
        evolve(ATTACHED, running=True, expected_running=True),
        evolve(ATTACHED, running=False, expected_running=True),  # started, not read back
        evolve(ATTACHED, running=True, expected_running=False),  # running on its own
    ],
    ids=["running", "start-sent", "pump-on-its-own"],
)
def test_admit_refused_while_anything_infuses_or_might(
    library: DrugLibrary, state: KernelState
) -> None:
    verdict = _decide(library, state, _admit("70"))
    assert verdict.reason is Reason.ALREADY_INFUSING


def test_admit_needs_confirmation(library: DrugLibrary) -> None:
    body = AdmitPatient(PatientSpec("adult_icu", Decimal(70)))
    verdict = _decide(library, ATTACHED, body)
    assert verdict.reason is Reason.CONFIRMATION_REQUIRED
    assert not verdict.accepted


# --------------------------------------------------------------------------- update


def _update(
    weight: str | None, *, confirm: bool = True, profile: str = "adult_icu"
) -> UpdatePatient:
    kg = Decimal(weight) if weight is not None else None
    return UpdatePatient(PatientSpec(profile, kg), confirm=confirm)


def test_update_without_a_patient_is_a_mismatch(library: DrugLibrary) -> None:
    verdict = _decide(library, ATTACHED, _update("60"))
    assert verdict.reason is Reason.PATIENT_MISMATCH


def test_update_may_correct_a_weight_never_forget_it(library: DrugLibrary) -> None:
    state = replace(ATTACHED, patient=ADULT_70)
    forget = _decide(library, state, _update(None))
    assert forget.reason is Reason.BAD_INPUT
    assert "70 kg" in forget.message and "not forgotten" in forget.message
    # a patient who had no weight may be updated without one (another profile)
    weightless = replace(ADULT_70, spec=PatientSpec("adult_icu", None))
    state = replace(ATTACHED, patient=weightless)
    verdict = _decide(library, state, _update(None, profile="pediatric_icu"))
    assert verdict.accepted, verdict.message
    assert verdict.message.startswith("patient updated: pediatric_icu; ")


def test_update_to_what_the_patient_already_is_is_bad_input(library: DrugLibrary) -> None:
    verdict = _decide(library, replace(ATTACHED, patient=ADULT_70), _update("70"))
    assert verdict.reason is Reason.BAD_INPUT
    assert verdict.message == "refused: the patient already has that profile and weight"


def test_update_needs_confirmation_then_says_the_old_limits_keep_applying(
    library: DrugLibrary,
) -> None:
    state = replace(ATTACHED, patient=ADULT_70)
    unconfirmed = _decide(library, state, _update("60", confirm=False))
    assert unconfirmed.reason is Reason.CONFIRMATION_REQUIRED
    verdict = _decide(library, state, _update("60"))
    assert verdict.accepted and verdict.reason is Reason.ACCEPTED
    assert verdict.message == (
        "patient updated: adult_icu, 60 kg; the limits in force before keep applying until "
        "their windows pass; re-program the loaded program for the new profile or weight"
    )


@pytest.mark.parametrize(("weight", "ok"), [("250", True), ("250.1", False)])
def test_update_weight_exactly_at_the_profiles_maximum_and_one_step_past(
    library: DrugLibrary, weight: str, ok: bool
) -> None:
    verdict = _decide(library, replace(ATTACHED, patient=ADULT_70), _update(weight))
    assert verdict.accepted is ok
    if not ok:
        assert verdict.reason is Reason.WEIGHT_OUT_OF_RANGE


# --------------------------------------------------------------------------- programs


def test_a_program_for_another_weight_than_the_patients_is_refused(library: DrugLibrary) -> None:
    state = replace(ATTACHED, patient=ADULT_70)
    spec = norepi_weight_based(library, Decimal(60))
    verdict = _decide(library, state, LoadProgram(spec))
    assert verdict.reason is Reason.PATIENT_MISMATCH
    assert verdict.message.startswith(
        "refused: the patient weighs 70 kg, the program says 60 kg; correct the patient first"
    )
    assert _decide(library, state, LoadProgram(norepi_weight_based(library))).accepted


def test_an_unreadable_program_while_infusing_is_refused_as_another_solution(
    library: DrugLibrary,
) -> None:
    """A spec whose diluent cannot even be read is not "the same solution": while a
    program runs it is refused as a program change, never taken for a re-program."""
    program = load_program(library, norepi_standard(library), 0.0)
    state = evolve(ATTACHED, patient=ADULT_70, program=program, running=True)
    garbled = norepi_standard(library, diluent="lemonade")
    verdict = _decide(library, state, LoadProgram(garbled))
    assert verdict.reason is Reason.ALREADY_INFUSING
