"""What a library update says about a loaded program (``library_check.what_changed``)
and why earlier limits keep applying (``PriorLimits.why``), word for word.

The sentence goes into the journal (``LibraryChecked``) and the operator's high alarm: a
reviewer reads it to see what the update changed for this patient. A figure left out, a
change reported that did not happen, or "none" shown for a figure that exists would each
mislead that reader, so the sentences are pinned exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from safety.kernel.library_check import what_changed
from safety.kernel.model import PatientSpec, ProgramLimits, ProgramSpec, UpdatePatient
from safety.kernel.state import limits_of, program_check
from safety.library import DrugLibrary
from safety.library.loader import parse_library
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard, vasopressin_fixed

NOREPI = "norepinephrine (Adult ICU, Standard (mcg/min))"
STANDARD = "[profiles.adult_icu.drugs.norepinephrine.therapies.standard"
TAIL = " (the stricter limits keep applying until their windows pass)"


def _text(library: DrugLibrary) -> str:
    return Path(library.path).read_text(encoding="utf-8")


def _library(text: str) -> DrugLibrary:
    model, digest = parse_library(text)
    return DrugLibrary(model, digest)


def _edit(text: str, section: str, old: str, new: str) -> str:
    """``old`` -> ``new`` once, in the first place after ``section``'s header."""
    at = text.index(old, text.index(section))
    return text[:at] + new + text[at + len(old) :]


def _limits(library: DrugLibrary, spec: ProgramSpec) -> ProgramLimits:
    return limits_of(program_check(library, spec), library.content_hash)


def test_nothing_changed_is_said_and_a_reload_still_asked_for(library: DrugLibrary) -> None:
    spec = norepi_standard(library)
    assert what_changed(library, spec, _limits(library, spec)) == (
        f"no figure of {NOREPI} changed; load it again to run it under the new library"
    )


def test_each_moved_dose_figure_is_named_with_old_and_new_value(library: DrugLibrary) -> None:
    text = _text(library)
    text = _edit(text, STANDARD + "]", "hard_max = { value = 47", "hard_max = { value = 40")
    text = _edit(text, STANDARD + "]", "max_start = { value = 12", "max_start = { value = 10")
    newer = _library(text)
    spec = norepi_standard(library)
    assert what_changed(newer, norepi_standard(newer), _limits(library, spec)) == (
        f"{NOREPI}: max start 12 -> 10; hard max 47 -> 40{TAIL}"
    )


def test_titration_and_wean_figures_are_named(library: DrugLibrary) -> None:
    text = _text(library)
    text = _edit(
        text, STANDARD + ".titration]", "max_step_rise = { value = 2", "max_step_rise = { value = 1"
    )
    text = _edit(
        text, STANDARD + ".titration]", "window_min = { value = 10", "window_min = { value = 15"
    )
    text = _edit(
        text, STANDARD + ".wean]", "window_min = { value = 30", "window_min = { value = 60"
    )
    text = _edit(
        text, STANDARD + ".wean]", "stop_threshold = { value = 2", "stop_threshold = { value = 1"
    )
    newer = _library(text)
    spec = norepi_standard(library)
    assert what_changed(newer, norepi_standard(newer), _limits(library, spec)) == (
        f"{NOREPI}: titration max step rise 2 -> 1; titration window min 10 -> 15; "
        f"wean window min 30 -> 60; wean stop threshold 2 -> 1{TAIL}"
    )


def test_a_wean_rule_dropped_is_named_with_its_figures_gone(library: DrugLibrary) -> None:
    text = _text(library)
    section = STANDARD + ".wean]"
    start = text.index(section)
    end = text.index("\n[", start)
    text = (
        text[:start]
        + section
        + '\ngradual_wean_only = { value = false, source = "project-default" }\n'
        + text[end:]
    )
    newer = _library(text)
    spec = norepi_standard(library)
    assert what_changed(newer, norepi_standard(newer), _limits(library, spec)) == (
        f"{NOREPI}: gradual wean only True -> False; wean max fall fraction 0.25 -> none; "
        f"wean window min 30 -> none; wean stop threshold 2 -> none{TAIL}"
    )
    # and the other way round: a rule that appears shows "none" as its old figures
    assert what_changed(library, spec, _limits(newer, norepi_standard(newer))) == (
        f"{NOREPI}: gradual wean only False -> True; wean max fall fraction none -> 0.25; "
        f"wean window min none -> 30; wean stop threshold none -> 2{TAIL}"
    )


@pytest.mark.parametrize(
    ("new_cap", "words"),
    [
        ('amount = 60, unit = "mg", window_h = 24,', "68 mg per 24 h -> 60 mg per 24 h"),
        ('amount = 68, unit = "mg", window_h = 48,', "68 mg per 24 h -> 68 mg per 48 h"),
        (None, "68 mg per 24 h -> none"),
    ],
    ids=["amount", "window", "removed"],
)
def test_a_cap_changed_or_removed_is_named(
    library: DrugLibrary, new_cap: str | None, words: str
) -> None:
    text = _text(library)
    section = "[profiles.adult_icu.drugs.norepinephrine]"
    old = 'amount = 68, unit = "mg", window_h = 24,'
    if new_cap is None:
        at = text.index("cumulative_cap = {", text.index(section))
        text = text[:at] + text[text.index("\n", at) + 1 :]
    else:
        text = _edit(text, section, old, new_cap)
    newer = _library(text)
    spec = norepi_standard(library)
    assert what_changed(newer, norepi_standard(newer), _limits(library, spec)) == (
        f"{NOREPI}: cumulative cap {words}{TAIL}"
    )
    if new_cap is None:  # and a cap that appears where there was none
        assert what_changed(library, spec, _limits(newer, norepi_standard(newer))) == (
            f"{NOREPI}: cumulative cap none -> 68 mg per 24 h{TAIL}"
        )


def test_a_dose_unit_changed_is_named_first(library: DrugLibrary) -> None:
    """Limits journaled in mg/h (the hepatorenal therapy) against a library whose program
    doses in mcg/min: the unit comes first, then every figure that moved."""
    old = _limits(library, norepi_standard(library, therapy="hepatorenal"))
    said = what_changed(library, norepi_standard(library), old)
    assert said.startswith(
        "norepinephrine (Adult ICU, Hepatorenal syndrome (mg/h)): dose unit mg/h -> mcg/min; "
        "max start 0.5 -> 12; soft min 0.5 -> 2; soft max 3 -> 35; hard max 3 -> 47; "
    ), said
    assert said.endswith(TAIL)


def test_a_program_the_update_refuses_says_why(library: DrugLibrary) -> None:
    spec = norepi_standard(library)
    old = _limits(library, spec)
    text = _edit(
        _text(library), STANDARD + "]", 'strength = "4 mg/250 mL"', 'strength = "4 mg/500 mL"'
    )
    said = what_changed(_library(text), spec, old)
    assert said.startswith(f"it no longer allows {NOREPI}: ")
    assert "4 mg/250 mL" in said
    # a drug the update removed: the lookup's own words
    vaso = vasopressin_fixed(library)
    text = _text(library).replace("drugs.vasopressin", "drugs.vasopressin_withdrawn")
    text = text.replace('aliases = ["argipressin", "vasostrict"]', "")
    said = what_changed(_library(text), vaso, _limits(library, vaso))
    assert said.startswith("it no longer allows vasopressin (Adult ICU, Fixed dose (units/min)): ")
    assert "'vasopressin'" in said


# --------------------------------------------------------------------------- priors


def test_a_weight_correction_makes_the_program_stale_and_keeps_the_old_limits_saying_why(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """A confirmed weight correction makes the loaded program stale (it was made for the
    old weight) and keeps the old limits in force: both say what moved."""
    bench = make_bench()
    bench.boot()
    spec = norepi_standard(library, therapy="weight_based", weight_kg=Decimal(70))
    assert bench.load(spec).verdict.accepted
    assert bench.start("0.05").verdict.accepted
    fix = UpdatePatient(PatientSpec("adult_icu", Decimal(60)), confirm=True)
    assert bench.send(fix).verdict.accepted
    state = bench.core.state
    assert state.patient is not None and state.patient.spec == fix.patient
    assert state.program_stale == (
        "the patient is now adult_icu, 60 kg; norepinephrine (Adult ICU, Weight-based "
        "(mcg/kg/min)) was made for adult_icu, 70 kg: re-program it"
    )
    assert bench.change("0.06").verdict.reason is Reason.PROGRAM_STALE
    again = norepi_standard(library, therapy="weight_based", weight_kg=Decimal(60))
    assert bench.load(again).verdict.accepted
    assert bench.core.state.program_stale is None
    priors = bench.core.state.priors_at(bench.patient_now())
    assert [p.why for p in priors] == [
        "limits of norepinephrine (Adult ICU, Weight-based (mcg/kg/min)) (weight 70 -> 60 kg)"
    ]
