"""The drug library: the shipped figures the issue lists, every figure's source, the
content hash, the validation that refuses a broken library by field path (mutation tests
on copies of the shipped TOML), and ``DrugLibrary.select``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from safety.library import (
    CumulativeCap,
    DrugLibrary,
    DrugLibraryModel,
    LibraryError,
    LookupProblem,
    Problem,
    Therapy,
    content_hash,
    load_library,
    parse_library,
)
from safety.library.diluents import Diluent, parse_diluent
from safety.library.loader import DEFAULT_LIBRARY_PATH
from safety.rules import Severity, diluent_findings
from safety.units import (
    DOSE_RATE_UNITS,
    AmountUnit,
    BodyWeight,
    Concentration,
    parse_concentration,
)

NE = "profiles.adult_icu.drugs.norepinephrine"
NE_STD = f"{NE}.therapies.standard"

# Passages of the shipped TOML that the mutation tests edit (each must occur exactly once).
SOURCE0 = '"levophed-rescue-summary"'
SOURCE1 = '"norepinephrine-hypotension-summary"'
NE_WB_HARD_MAX = (
    'hard_max = { value = 1.0, source = "project-default", note = "twice the quoted upper range; 68'
)
NE_WB_SOFT_AND_HARD_MAX = f"soft_max = {{ value = 0.5, source = {SOURCE1} }}\n{NE_WB_HARD_MAX}"
NE_LABEL_STRENGTH = (
    f'strength = "4 mg/1000 mL"\ndiluents = ["D5W", "D5NS"]\nsource = {SOURCE0}\nnote'
)
NE_16_STRENGTH = (
    f'strength = "4 mg/250 mL"\ndiluents = ["D5W", "D5NS"]\nsource = {SOURCE1}\n'
    'note = "4 mg in 250 mL D5W'
)
VASO_WEAN = (
    'gradual_wean_only = { value = false, source = "project-default", '
    'note = "the sources give no wean rule for vasopressin" }'
)
VASO_GRADUAL_WEAN = (
    VASO_WEAN.replace("false", "true")
    + '\nmax_fall_fraction = { value = 0.25, source = "project-default" }'
    + '\nwindow_min = { value = 30, source = "project-default" }'
    + '\nstop_threshold = { value = 0.01, source = "project-default" }'
)
NE_STD_FALL = (
    f"max_fall_fraction = {{ value = 0.25, source = {SOURCE1}, "
    'note = "decrease by 25 % of the current dose every 30 minutes" }\n'
)
DOBUTAMINE_BANNER = "# " + "-" * 67 + " dobutamine"
PEDIATRIC_BANNER = "# " + "=" * 85 + "\n[profiles.pediatric_icu]"


def therapy(lib: DrugLibrary, profile: str, drug: str, tid: str) -> Therapy:
    return lib.model.profiles[profile].drugs[drug].therapies[tid]


def mutate(text: str, old: str, new: str) -> str:
    """Replace one exact, unique passage, so a mutation can never silently miss."""
    assert text.count(old) == 1, f"passage not unique in the library: {old!r}"
    return text.replace(old, new)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(LibraryError) as caught:
        parse_library(text, "mutant.toml")
    assert caught.value.path == "mutant.toml"
    assert caught.value.problems
    # the exception's own text lists every problem, for a log or a terminal
    for problem in caught.value.problems:
        assert str(problem) in str(caught.value)
    return caught.value.problems


def problem_at(problems: list[Problem], path: str) -> Problem:
    found = [p for p in problems if p.path == path]
    assert found, f"no problem at {path}; got: {[str(p) for p in problems]}"
    return found[0]


# ----------------------------------------------------------------------------- shipped


def test_shipped_library_loads_with_both_profiles(library: DrugLibrary) -> None:
    assert {"adult_icu", "pediatric_icu"} <= set(library.model.profiles)
    assert library.content_hash.startswith("sha256:")
    assert len(library.content_hash) == len("sha256:") + 64
    assert library.version
    # it says what it is: example data a clinician must review
    assert "not clinically reviewed" in library.model.status
    adult = library.model.profiles["adult_icu"]
    assert {"norepinephrine", "vasopressin", "epinephrine", "dobutamine"} <= set(adult.drugs)


def test_norepinephrine_adult_standard(library: DrugLibrary) -> None:
    t = therapy(library, "adult_icu", "norepinephrine", "standard")
    assert t.dose_unit == "mcg/min"
    assert (t.default_start.value, t.max_start.value) == (
        Decimal(8),
        Decimal(12),
    )  # rescue start 8-12
    strengths = {parse_concentration(c.strength or "").base_per_ml() for c in t.concentrations}
    # 4 and 16 mcg/mL from the seeds; 32 mcg/mL for fluid restriction (project choice)
    assert strengths == {Fraction(4), Fraction(16), Fraction(32)}
    for entry in t.concentrations:
        assert entry.diluents
        assert all(d.contains_dextrose for d in entry.diluents), entry
        assert Diluent.NS not in entry.diluents


@pytest.mark.parametrize("tid", ["standard", "weight_based", "hepatorenal"])
@pytest.mark.parametrize("saline", ["NS", "saline", "normal saline", "0.9% NaCl"])
def test_norepinephrine_in_saline_alone_is_refused(
    library: DrugLibrary, tid: str, saline: str
) -> None:
    t = therapy(library, "adult_icu", "norepinephrine", tid)
    for entry in t.concentrations:
        findings = diluent_findings(entry, parse_diluent(saline), "norepinephrine")
        assert [f.severity for f in findings] == [Severity.REFUSE]
        assert "dextrose-containing diluent is required" in findings[0].message
        assert diluent_findings(entry, Diluent.D5W, "norepinephrine") == []


def test_norepinephrine_cap_and_wean(library: DrugLibrary) -> None:
    drug = library.model.profiles["adult_icu"].drugs["norepinephrine"]
    cap = drug.cumulative_cap
    assert cap is not None
    assert (cap.amount, cap.unit, cap.window_h) == (Decimal(68), AmountUnit.MG, Decimal(24))
    assert cap.base_amount == 68_000  # mcg
    for tid, t in drug.therapies.items():
        assert t.wean.gradual_wean_only.value, tid
        assert t.wean.max_fall_fraction is not None and t.wean.window_min is not None
        assert t.wean.max_fall_fraction.value == Decimal("0.25"), tid  # 25 %
        assert t.wean.window_min.value == 30, tid  # per 30 min
        assert t.wean.stop_threshold is not None


def test_norepinephrine_weight_based_adult(library: DrugLibrary) -> None:
    t = therapy(library, "adult_icu", "norepinephrine", "weight_based")
    assert t.dose_unit == "mcg/kg/min"
    assert (t.soft_min.value, t.soft_max.value) == (Decimal("0.02"), Decimal("0.5"))
    assert t.default_start.value == Decimal("0.02")
    assert t.hard_max.value >= t.soft_max.value


def test_norepinephrine_pediatric(library: DrugLibrary) -> None:
    t = therapy(library, "pediatric_icu", "norepinephrine", "weight_based")
    assert t.dose_unit == "mcg/kg/min"
    assert (t.soft_min.value, t.soft_max.value, t.hard_max.value) == (
        Decimal("0.1"),
        Decimal("1.0"),
        Decimal(5),
    )
    assert t.default_start.value == Decimal("0.1")
    rules = [c for c in t.concentrations if c.rule is not None]
    assert len(rules) == 1
    rule6 = rules[0]
    assert rule6.name == "Rule of 6"
    assert rule6.rule is not None
    assert (rule6.rule.mg_per_kg, rule6.rule.volume_ml) == (Decimal("0.6"), Decimal(100))
    ten_kg = BodyWeight(Decimal(10))
    assert rule6.concentration(ten_kg) == Concentration(Decimal(6), AmountUnit.MG, Decimal(100))
    assert rule6.concentration(None) is None  # a weight rule means nothing without weight
    assert rule6.matches(parse_concentration("6 mg/100 mL"), ten_kg)
    assert not rule6.matches(parse_concentration("6 mg/100 mL"), BodyWeight(Decimal(20)))
    assert all(d.contains_dextrose for c in t.concentrations for d in c.diluents)


def test_norepinephrine_hepatorenal(library: DrugLibrary) -> None:
    t = therapy(library, "adult_icu", "norepinephrine", "hepatorenal")
    assert t.dose_unit == "mg/h"
    assert t.explicit_selection_only
    assert t.default_start.value == Decimal("0.5")
    assert t.hard_max.value == 3  # up to 3 mg/h
    assert t.titration.max_step_rise.value == Decimal("0.5")  # +0.5 mg/h
    assert t.titration.window_min.value == 240  # per 4 h
    assert t.titration.max_window_rise.value == Decimal("0.5")


def test_second_line_drugs(library: DrugLibrary) -> None:
    vaso = therapy(library, "adult_icu", "vasopressin", "fixed")
    assert vaso.dose_unit == "units/min"
    assert (vaso.soft_min.value, vaso.soft_max.value) == (Decimal("0.03"), Decimal("0.04"))
    assert vaso.hard_max.value == Decimal("0.04")
    assert {c.strength for c in vaso.concentrations} == {"20 units/100 mL"}
    epi = therapy(library, "adult_icu", "epinephrine", "weight_based")
    assert epi.dose_unit == "mcg/kg/min"
    assert (epi.soft_min.value, epi.soft_max.value) == (Decimal("0.1"), Decimal("0.5"))
    dobu = therapy(library, "adult_icu", "dobutamine", "weight_based")
    assert dobu.dose_unit == "mcg/kg/min"
    assert dobu.hard_max.value == 20  # up to 20 mcg/kg/min


def test_every_therapy_is_ordered_and_in_the_closed_set(library: DrugLibrary) -> None:
    for profile in library.model.profiles.values():
        for drug in profile.drugs.values():
            for t in drug.therapies.values():
                assert t.dose_unit in DOSE_RATE_UNITS
                assert t.soft_min.value <= t.soft_max.value <= t.hard_max.value
                assert t.soft_min.value <= t.default_start.value <= t.soft_max.value


def _sourced(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "value" in node or "source" in node:
            yield path, node
        for key, value in node.items():
            yield from _sourced(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _sourced(value, f"{path}[{i}]")


def test_every_figure_names_a_declared_source(library_text: str) -> None:
    raw = tomllib.loads(library_text, parse_float=Decimal)
    declared = set(raw["sources"])
    figures = list(_sourced(raw["profiles"], "profiles"))
    assert len(figures) > 100
    for path, node in figures:
        assert "source" in node, f"{path} has no source"
        assert node["source"] in declared, f"{path}: {node['source']!r} is not declared"
    # figures the seeds do not give are marked as the project's own choice
    assert any(node["source"] == "project-default" for _, node in figures)


# ----------------------------------------------------------------------------- content hash


def _hash(text: str) -> str:
    return parse_library(text)[1]


def test_hash_is_the_same_for_the_same_content(library: DrugLibrary, library_text: str) -> None:
    model, digest = parse_library(library_text)
    assert digest == library.content_hash == content_hash(model)
    assert load_library().content_hash == digest


def test_hash_ignores_comments_whitespace_key_order_and_number_spelling(
    library_text: str,
) -> None:
    original = _hash(library_text)
    no_comments = "\n".join(
        line for line in library_text.splitlines() if not line.lstrip().startswith("#")
    )
    assert _hash(no_comments) == original
    assert _hash("# reviewed draft\n\n" + library_text.replace("\n[", "\n\n\n[")) == original
    note = "68 mg/day continuous = 47.2 mcg/min, rounded down (project choice)"
    reordered = mutate(
        library_text,
        f'hard_max = {{ value = 47, source = "levophed-rescue-summary", note = "{note}" }}',
        f'hard_max = {{ note = "{note}", source = "levophed-rescue-summary", value = 47 }}',
    )
    assert _hash(reordered) == original
    respelled = mutate(
        library_text, "default_start = { value = 8,", "default_start = { value = 8.00,"
    )
    respelled = mutate(
        respelled,
        NE_WB_HARD_MAX,
        NE_WB_HARD_MAX.replace("value = 1.0", "value = 1"),
    )
    assert _hash(respelled) == original
    # whole tables in another order: the same library
    head, rest = library_text.split(DOBUTAMINE_BANNER)
    dobutamine, pediatric = rest.split(PEDIATRIC_BANNER)
    moved = head + "[profiles.pediatric_icu]" + pediatric + "\n" + dobutamine
    assert _hash(moved) == original


_NUMBER = re.compile(r"\b(value|amount|window_h|mg_per_kg|volume_ml|min|max) = ([0-9.]+)")


def test_hash_changes_when_any_figure_changes(library_text: str) -> None:
    """Every number in the file, one at a time: the hash must see each change (checked on
    the model, so a change that breaks the sanity rules still counts)."""
    original = _hash(library_text)
    matches = list(_NUMBER.finditer(library_text))
    assert len(matches) > 90
    seen = {original}
    for match in matches:
        bumped = str(Decimal(match.group(2)) + Decimal("0.5"))
        text = library_text[: match.start(2)] + bumped + library_text[match.end(2) :]
        model = DrugLibraryModel.model_validate(tomllib.loads(text, parse_float=Decimal))
        digest = content_hash(model)
        assert digest not in seen, f"hash blind to {match.group(0)!r} at offset {match.start()}"
        seen.add(digest)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (NE_LABEL_STRENGTH, NE_LABEL_STRENGTH.replace("1000 mL", "500 mL")),
        ('diluents = ["NS", "D5W"]', 'diluents = ["D5W"]'),
        ('dose_unit = "units/min"', 'dose_unit = "units/h"'),
        (VASO_WEAN, VASO_GRADUAL_WEAN),
        ("explicit_selection_only = true\n", ""),
        ('version = "2026.11.1-example"', 'version = "2026.11.2-example"'),
        ('aliases = ["argipressin", "vasostrict"]', 'aliases = ["argipressin"]'),
        (
            'soft_max = { value = 20, source = "norepinephrine-hypotension-summary"',
            'soft_max = { value = 20, source = "project-default"',
        ),
    ],
)
def test_hash_changes_when_content_changes(library_text: str, old: str, new: str) -> None:
    assert _hash(mutate(library_text, old, new)) != _hash(library_text)


# ----------------------------------------------------------------------------- mutations


def test_unknown_field_is_refused_with_its_path(library_text: str) -> None:
    text = mutate(
        library_text,
        'display_name = "Vasopressin"\n',
        'display_name = "Vasopressin"\nhard_maxx = 1\n',
    )
    problem = problem_at(problems_of(text), "profiles.adult_icu.drugs.vasopressin.hard_maxx")
    assert "Extra inputs are not permitted" in problem.message
    text = mutate(
        library_text,
        "hard_max = { value = 47, source",
        'hard_max = { value = 47, sauce = "x", source',
    )
    problem_at(problems_of(text), f"{NE_STD}.hard_max.sauce")
    text = mutate(library_text, "schema = 1\n", 'schema = 1\nlibrary_owner = "me"\n')
    problem_at(problems_of(text), "library_owner")


def test_soft_min_above_soft_max(library_text: str) -> None:
    text = mutate(library_text, "soft_min = { value = 2, source", "soft_min = { value = 40, source")
    problem = problem_at(problems_of(text), f"{NE_STD}.soft_min.value")
    assert "soft min 40 is above soft max 35" in problem.message


def test_soft_max_above_hard_max(library_text: str) -> None:
    text = mutate(
        library_text, "soft_max = { value = 35, source", "soft_max = { value = 50, source"
    )
    problem = problem_at(problems_of(text), f"{NE_STD}.soft_max.value")
    assert "soft max 50 is above hard max 47" in problem.message


def test_default_start_outside_the_soft_range(library_text: str) -> None:
    text = mutate(
        library_text, "default_start = { value = 8, source", "default_start = { value = 1, source"
    )
    problem = problem_at(problems_of(text), f"{NE_STD}.default_start.value")
    assert "default start 1 is outside the soft range 2-35 mcg/min" in problem.message


def test_unknown_source(library_text: str) -> None:
    text = mutate(
        library_text,
        'max_step_rise = { value = 2, source = "project-default" }',
        'max_step_rise = { value = 2, source = "my memory" }',
    )
    problem = problem_at(problems_of(text), f"{NE_STD}.titration.max_step_rise.source")
    assert "unknown source 'my memory'" in problem.message
    assert "[sources]" in problem.message


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("mcg/h", "not a supported dose unit"),
        ("U/min", "error-prone"),
        ("mL/h", "flow rate, not a dose"),
        ("mcg/kg", "no time base"),
    ],
)
def test_dose_unit_outside_the_closed_set(library_text: str, bad: str, says: str) -> None:
    text = mutate(library_text, 'dose_unit = "units/min"', f'dose_unit = "{bad}"')
    problem = problem_at(
        problems_of(text), "profiles.adult_icu.drugs.vasopressin.therapies.fixed.dose_unit"
    )
    assert says in problem.message


def test_mixed_mass_and_units_in_one_drug(library_text: str) -> None:
    text = mutate(library_text, 'dose_unit = "mg/h"', 'dose_unit = "units/h"')
    problems = problems_of(text)
    problem = problem_at(problems, f"{NE}.therapies")
    assert "mix mass and units" in problem.message
    assert "hepatorenal=units/h" in problem.message


def test_hard_max_1000x_its_siblings(library_text: str) -> None:
    """The classic mg/mcg slip in the library itself: 47 mcg/min typed as 47000."""
    text = mutate(
        library_text, "hard_max = { value = 47, source", "hard_max = { value = 47000, source"
    )
    problems = problems_of(text)
    flagged = [p for p in problems if p.path == f"{NE_STD}.hard_max.value"]
    assert flagged
    assert any("mg/mcg slip" in p.message for p in flagged)
    assert any("sibling" in p.message for p in flagged)
    assert all(p.path.startswith(NE_STD) for p in problems)  # nothing else is blamed


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        (
            "profiles.pediatric_icu.drugs.norepinephrine.therapies.weight_based.hard_max.value",
            "hard_max = { value = 5, source",
            "hard_max = { value = 5000, source",
        ),
        (
            f"{NE}.therapies.hepatorenal.hard_max.value",
            "hard_max = { value = 3, source",
            "hard_max = { value = 3000, source",
        ),
        (
            "profiles.adult_icu.drugs.vasopressin.therapies.fixed.hard_max.value",
            "hard_max = { value = 0.04, source",
            "hard_max = { value = 40, source",
        ),
        (
            f"{NE}.therapies.weight_based.soft_max.value",
            NE_WB_SOFT_AND_HARD_MAX,
            NE_WB_SOFT_AND_HARD_MAX.replace("0.5", "500").replace("1.0", "1000"),
        ),
    ],
)
def test_other_1000x_limits(library_text: str, path: str, old: str, new: str) -> None:
    problem = problem_at(problems_of(mutate(library_text, old, new)), path)
    assert "mg/mcg slip" in problem.message


def test_concentration_1000x_off(library_text: str) -> None:
    """4 mg/250 mL entered as 4 mcg/250 mL: 1000x weaker than its siblings."""
    old = NE_16_STRENGTH
    text = mutate(library_text, old, old.replace('"4 mg/250 mL"', '"4 mcg/250 mL"'))
    problems = problems_of(text)
    path = f"{NE_STD}.concentrations[1]"
    messages = [p.message for p in problems if p.path == path]
    assert any("1000x below" in m and "mg/mcg slip" in m for m in messages), messages
    assert any("unit slip" in m and "mL/h" in m for m in messages), messages


def test_cumulative_cap_1000x_off(library_text: str) -> None:
    old = 'cumulative_cap = { amount = 68, unit = "mg"'
    low = problems_of(mutate(library_text, old, 'cumulative_cap = { amount = 68, unit = "mcg"'))
    problem = problem_at(low, f"{NE}.cumulative_cap.amount")
    assert "below what the lowest soft minimum delivers" in problem.message
    high = problems_of(mutate(library_text, old, 'cumulative_cap = { amount = 68000, unit = "mg"'))
    problem = problem_at(high, f"{NE}.cumulative_cap.amount")
    assert "highest hard max" in problem.message and "mg/mcg slip" in problem.message
    wrong_kind = problems_of(
        mutate(library_text, old, 'cumulative_cap = { amount = 68, unit = "units"')
    )
    assert "dosed in mass" in problem_at(wrong_kind, f"{NE}.cumulative_cap.unit").message


def test_gradual_wean_only_needs_its_fields(library_text: str) -> None:
    text = mutate(library_text, NE_STD_FALL, "")
    problem = problem_at(problems_of(text), f"{NE_STD}.wean")
    assert "gradual_wean_only needs max_fall_fraction" in problem.message
    text = mutate(library_text, VASO_WEAN, VASO_WEAN.replace("false", "true"))
    problem = problem_at(
        problems_of(text), "profiles.adult_icu.drugs.vasopressin.therapies.fixed.wean"
    )
    assert "max_fall_fraction, window_min, stop_threshold" in problem.message


def test_bad_toml(library_text: str) -> None:
    problems = problems_of(mutate(library_text, "schema = 1\n", "schema = = 1\n"))
    assert problems[0].path == "(file)"
    assert "not valid TOML" in problems[0].message
    assert "line" in problems[0].message
    assert problem_at(problems_of("schema = " + "9" * 5000), "(file)")


@pytest.mark.parametrize(
    ("old", "new", "path", "says"),
    [
        (
            "hard_max = { value = 47, source",
            "hard_max = { value = nan, source",
            f"{NE_STD}.hard_max.value",
            "finite",
        ),
        (
            "hard_max = { value = 47, source",
            "hard_max = { value = inf, source",
            f"{NE_STD}.hard_max.value",
            "finite",
        ),
        (
            "hard_max = { value = 47, source",
            "hard_max = { value = -47, source",
            f"{NE_STD}.hard_max.value",
            ">= 0",
        ),
        (
            "hard_max = { value = 47, source",
            "hard_max = { value = 1e-99999999, source",
            f"{NE_STD}.hard_max.value",
            "plausible magnitude",
        ),
        (
            "hard_max = { value = 47, source",
            "hard_max = { value = 1e99, source",
            f"{NE_STD}.hard_max.value",
            "plausible magnitude",
        ),
        (
            'diluents = ["NS", "D5W"]',
            'diluents = ["salt water"]',
            "profiles.adult_icu.drugs.vasopressin.therapies.fixed.concentrations[0].diluents",
            "unknown 'salt water'",
        ),
        (
            'diluents = ["NS", "D5W"]',
            "diluents = []",
            "profiles.adult_icu.drugs.vasopressin.therapies.fixed.concentrations[0].diluents",
            "at least 1",
        ),
        (
            'strength = "20 units/100 mL"',
            'strength = "20 U/100 mL"',
            "profiles.adult_icu.drugs.vasopressin.therapies.fixed.concentrations[0].strength",
            "error-prone",
        ),
        (
            'strength = "20 units/100 mL"',
            "rule = { mg_per_kg = 0.6, volume_ml = 100 }",
            "profiles.adult_icu.drugs.vasopressin.therapies.fixed.concentrations[0].rule",
            "weight-based dose unit",
        ),
        (
            'default_therapy = "fixed"',
            'default_therapy = "fixd"',
            "profiles.adult_icu.drugs.vasopressin",
            "'fixd' is not one of: fixed",
        ),
        (
            "reference_weight_kg = { value = 20,",
            "reference_weight_kg = { value = 0,",
            "profiles.pediatric_icu.reference_weight_kg.value",
            "0.2-500 kg",
        ),
        (
            "reference_weight_kg = { value = 70,",
            "reference_weight_kg = { value = 20,",
            "profiles.adult_icu.reference_weight_kg.value",
            "outside the profile's weight range",
        ),
        ("schema = 1", "schema = 2", "schema", "less than or equal to 1"),
        (
            'aliases = ["argipressin", "vasostrict"]',
            'aliases = ["argipressin", "levophed"]',
            "profiles.adult_icu.drugs.vasopressin.aliases",
            "also names drug 'norepinephrine'",
        ),
    ],
)
def test_more_broken_libraries(library_text: str, old: str, new: str, path: str, says: str) -> None:
    problem = problem_at(problems_of(mutate(library_text, old, new)), path)
    assert says in problem.message


def test_missing_and_unreadable_files(tmp_path: Any) -> None:
    with pytest.raises(LibraryError) as caught:
        load_library(tmp_path / "nope.toml")
    assert caught.value.problems[0].path == "(file)"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LibraryError) as caught:
        load_library(binary)
    assert "not UTF-8" in caught.value.problems[0].message
    with pytest.raises(LibraryError) as caught:
        load_library(tmp_path)  # a directory
    assert caught.value.problems[0].path == "(file)"


# ----------------------------------------------------------------------------- select


@pytest.mark.parametrize(
    "name", ["norepinephrine", "Levophed", "noradrenaline", " NOREPI ", "nor-epinephrine"]
)
def test_select_by_name_or_alias(library: DrugLibrary, name: str) -> None:
    sel = library.select(name)
    assert (sel.profile_id, sel.drug_id, sel.therapy_id) == (
        "adult_icu",
        "norepinephrine",
        "standard",
    )
    assert sel.key == "adult_icu/norepinephrine/standard"


@pytest.mark.parametrize(
    ("profile", "unit", "expected"),
    [
        (None, "mcg/min", "standard"),
        (None, "mcg/kg/min", "weight_based"),
        (None, "mcg/kg/h", "weight_based"),
        (None, "mg/h", "standard"),  # same kind as mcg/min; hepatorenal is explicit only
        (None, None, "standard"),
        ("pediatric_icu", "mcg/kg/min", "weight_based"),
        ("Pediatric ICU", None, "weight_based"),
        ("pediatric-icu", None, "weight_based"),
    ],
)
def test_select_by_unit_kind(
    library: DrugLibrary, profile: str | None, unit: str | None, expected: str
) -> None:
    dose_unit = DOSE_RATE_UNITS[unit] if unit else None
    sel = library.select("norepinephrine", profile=profile, dose_unit=dose_unit)
    assert sel.therapy_id == expected
    assert sel.therapy is sel.drug.therapies[expected]


def test_select_explicit_therapy(library: DrugLibrary) -> None:
    sel = library.select("norepinephrine", therapy="hepatorenal")
    assert sel.therapy.dose_unit == "mg/h"
    assert library.select("norepinephrine", therapy="Weight-Based").therapy_id == "weight_based"


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"drug": "aspirin"}, "drug", "'aspirin' is not in profile adult_icu"),
        ({"drug": "  "}, "drug", "is empty"),
        (
            {"drug": "norepinephrine", "profile": "neonatal"},
            "profile",
            "unknown profile 'neonatal'; known: adult_icu, pediatric_icu",
        ),
        ({"drug": "dobutamine", "profile": "pediatric_icu"}, "drug", "it is in profile adult_icu"),
        ({"drug": "norepinephrine", "therapy": "bolus"}, "therapy", "no therapy 'bolus'"),
        (
            {"drug": "norepinephrine", "dose_unit": "units/min"},
            "therapy",
            "choose one with --therapy",
        ),
        ({"drug": "vasopressin", "dose_unit": "mcg/min"}, "therapy", "fixed (units/min)"),
        (
            {"drug": "norepinephrine", "profile": "pediatric_icu", "dose_unit": "mcg/min"},
            "therapy",
            "weight_based (mcg/kg/min)",
        ),
    ],
)
def test_select_errors_name_the_field(
    library: DrugLibrary, kwargs: dict[str, str], field: str, says: str
) -> None:
    kwargs = dict(kwargs)  # the parameter is shared: a second run must find it whole
    unit = kwargs.pop("dose_unit", None)
    drug = kwargs.pop("drug")
    with pytest.raises(LookupProblem) as caught:
        library.select(drug, dose_unit=DOSE_RATE_UNITS[unit] if unit else None, **kwargs)
    assert caught.value.field == field
    assert says in str(caught.value)


def _library(text: str) -> DrugLibrary:
    model, digest = parse_library(text)
    return DrugLibrary(model, digest)


def test_explicit_selection_only_is_never_auto_picked(library_text: str) -> None:
    weight_first = mutate(
        library_text, 'default_therapy = "standard"', 'default_therapy = "weight_based"'
    )
    lib = _library(weight_first)
    mg_h = DOSE_RATE_UNITS["mg/h"]
    # mg/h is not weight-based: of the two absolute mass therapies, only the one that
    # may be picked automatically is.
    assert lib.select("norepinephrine", dose_unit=mg_h).therapy_id == "standard"
    both_explicit = mutate(
        weight_first,
        'dose_unit = "mcg/min"\n',
        'dose_unit = "mcg/min"\nexplicit_selection_only = true\n',
    )
    lib = _library(both_explicit)
    with pytest.raises(LookupProblem) as caught:
        lib.select("norepinephrine", dose_unit=mg_h)
    assert caught.value.field == "therapy"
    assert "hepatorenal (mg/h)" in str(caught.value)
    assert lib.select("norepinephrine", therapy="hepatorenal").therapy_id == "hepatorenal"
    # explicit-only therapies can still be the default when asked for nothing
    assert lib.select("norepinephrine").therapy_id == "weight_based"


def test_two_candidates_are_an_error_never_a_guess(library_text: str) -> None:
    text = mutate(library_text, 'default_therapy = "standard"', 'default_therapy = "weight_based"')
    text = mutate(text, "explicit_selection_only = true\n", "")
    lib = _library(text)
    with pytest.raises(LookupProblem) as caught:
        lib.select("norepinephrine", dose_unit=DOSE_RATE_UNITS["mcg/min"])
    assert caught.value.field == "therapy"
    assert "several norepinephrine therapies fit mcg/min" in str(caught.value)


# --------------------------------------------------------------------------- window bounds


@pytest.mark.parametrize(
    ("old", "new", "field", "ok"),
    [
        ('unit = "mg", window_h = 24,', 'unit = "mg", window_h = 168,', "window_h", True),
        ('unit = "mg", window_h = 24,', 'unit = "mg", window_h = 168.01,', "window_h", False),
        ("window_min = { value = 10,", "window_min = { value = 1440,", "titration", True),
        ("window_min = { value = 10,", "window_min = { value = 1441,", "titration", False),
        ("window_min = { value = 30,", "window_min = { value = 1440,", "wean", True),
        ("window_min = { value = 30,", "window_min = { value = 1440.5,", "wean", False),
    ],
)
def test_windows_are_bounded_so_the_history_can_hold_them(
    old: str, new: str, field: str, ok: bool
) -> None:
    """The safety process keeps each drug's history as long as its longest window; the
    library bounds windows (7 days for a cap, 24 h for titration and wean): exactly at the
    bound is accepted, just past it refused with the field named."""
    text = DEFAULT_LIBRARY_PATH.read_text(encoding="utf-8").replace(old, new, 1)
    if ok:
        parse_library(text)
        return
    with pytest.raises(LibraryError) as info:
        parse_library(text)
    assert any(field in p.path for p in info.value.problems), info.value


def test_a_caps_exact_figures_follow_its_values_never_an_earlier_caps() -> None:
    """``base_amount`` and ``window_s`` are cached on the values: a cap built or copied
    with other values gets its own figures, not those of the cap asked first."""
    cap = CumulativeCap(amount=Decimal(68), unit=AmountUnit.MG, window_h=Decimal(24), source="x")
    assert (cap.base_amount, cap.window_s) == (Fraction(68_000), Fraction(86_400))
    other = cap.model_copy(update={"amount": Decimal("0.5"), "window_h": Decimal("1.5")})
    assert (other.base_amount, other.window_s) == (Fraction(500), Fraction(5_400))
    units = CumulativeCap(
        amount=Decimal(68), unit=AmountUnit.UNITS, window_h=Decimal(24), source="x"
    )
    assert units.base_amount == Fraction(68)
    assert (cap.base_amount, cap.window_s) == (Fraction(68_000), Fraction(86_400))
