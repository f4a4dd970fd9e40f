"""Checks that relate the library's figures to each other, each reported by field path.

The library itself can be the error: one real library held mg/mL limits entered as mcg/mL
(1000x). So besides the order of limits (soft min <= soft max <= hard max), every dose
figure is compared with the same figure of its sibling therapies (other therapies and
profiles of the same drug, normalised to base amount per minute at the profile's reference
weight), and every concentration with its siblings; a figure far off its siblings is
refused as the classic mg/mcg slip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from pydantic import BaseModel

from safety.library.models import (
    ConcentrationEntry,
    CumulativeCap,
    DrugLibraryModel,
    Figure,
    Therapy,
)
from safety.units import WEIGHT_MAX_KG, WEIGHT_MIN_KG, BodyWeight

#: A dose figure this many times off the median of its siblings is refused.
SIBLING_RATIO_LIMIT = 20
#: Within one therapy, hard max may be at most this many times the soft min.
SPREAD_RATIO_LIMIT = 200
#: Concentrations of one drug this many times off their siblings are refused.
CONCENTRATION_RATIO_LIMIT = 200
#: Implied pump rates outside this band (mL/h) point at a unit slip.
PLAUSIBLE_RATE_ML_H = (Fraction(1, 100), Fraction(5000))

DOSE_FIGURES = ("default_start", "max_start", "soft_min", "soft_max", "hard_max")

#: The longest titration or wean window a library may set (minutes), and the longest
#: cumulative cap window (hours). The safety process keeps each drug's history for the
#: longest window its limits have (``safety.kernel.state.DrugRecord.keep_s``), so every
#: window the library can express is counted whole; the bounds keep that history (and
#: the journal a restart replays for it) to a size a bench computer holds.
MAX_RULE_WINDOW_MIN = Decimal(24 * 60)
MAX_CAP_WINDOW_H = Decimal(7 * 24)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_library(lib: DrugLibraryModel) -> list[Problem]:
    problems: list[Problem] = []
    problems += _check_sources(lib)
    for pid, profile in lib.profiles.items():
        ppath = f"profiles.{pid}"
        ref = profile.reference_weight_kg.value
        if not _usable_weight(ref):
            problems.append(
                Problem(
                    f"{ppath}.reference_weight_kg.value",
                    f"{ref} kg is outside the weights the units accept "
                    f"({WEIGHT_MIN_KG}-{WEIGHT_MAX_KG} kg); the profile's doses are not checked",
                )
            )
            continue
        if not (profile.weight_kg.min <= ref <= profile.weight_kg.max):
            problems.append(
                Problem(
                    f"{ppath}.reference_weight_kg.value",
                    f"{ref} kg is outside the profile's weight range "
                    f"{profile.weight_kg.min}-{profile.weight_kg.max} kg",
                )
            )
        names: dict[str, str] = {}
        for did, drug in profile.drugs.items():
            dpath = f"{ppath}.drugs.{did}"
            for name in [did, *drug.aliases]:
                key = name.strip().lower()
                if key in names and names[key] != did:
                    problems.append(
                        Problem(f"{dpath}.aliases", f"{name!r} also names drug {names[key]!r}")
                    )
                names[key] = did
            dims = {t.unit.dimension for t in drug.therapies.values()}
            if len(dims) > 1:
                problems.append(
                    Problem(
                        f"{dpath}.therapies",
                        "dose units mix mass and units within one drug: "
                        + ", ".join(f"{tid}={t.dose_unit}" for tid, t in drug.therapies.items()),
                    )
                )
            cap = drug.cumulative_cap
            if cap is not None and dims and cap.unit.dimension not in dims:
                problems.append(
                    Problem(
                        f"{dpath}.cumulative_cap.unit",
                        f"cap in {cap.unit} but the drug is dosed in {dims.pop()}",
                    )
                )
            elif cap is not None and len(dims) == 1:
                problems += _check_cap(f"{dpath}.cumulative_cap", cap, drug.therapies, ref)
            for tid, therapy in drug.therapies.items():
                problems += _check_therapy(f"{dpath}.therapies.{tid}", therapy, ref)
    problems += _check_siblings(lib)
    problems += _check_test_fluids(lib)
    return problems


def _check_test_fluids(lib: DrugLibraryModel) -> list[Problem]:
    """A test fluid's rates are ordered, and its name names no drug anywhere: typing
    "water" can never reach a drug, nor a drug's name a test fluid."""
    problems: list[Problem] = []
    drug_names = {
        name.strip().lower()
        for profile in lib.profiles.values()
        for did, drug in profile.drugs.items()
        for name in (did, *drug.aliases)
    }
    for fid, fluid in lib.test_fluids.items():
        path = f"test_fluids.{fid}"
        low, high = fluid.min_rate_ml_h.value, fluid.max_rate_ml_h.value
        if not (0 < low < high):
            problems.append(
                Problem(
                    f"{path}.max_rate_ml_h.value",
                    f"need 0 < min rate < max rate, got {low}, {high}",
                )
            )
        if high > 10_000:
            problems.append(Problem(f"{path}.max_rate_ml_h.value", f"{high} mL/h is above 10000"))
        if fid.strip().lower() in drug_names:
            problems.append(Problem(path, f"{fid!r} is also the name of a drug"))
    return problems


def _usable_weight(kg: Decimal) -> bool:
    """A reference weight ``BodyWeight`` accepts; the checks below build one from it."""
    return WEIGHT_MIN_KG <= kg <= WEIGHT_MAX_KG


# ------------------------------------------------------------------ sources


def _figures(node: object, path: str) -> Iterator[tuple[str, str]]:
    """Every (path, source) in the model tree."""
    if isinstance(node, BaseModel):
        source = getattr(node, "source", None)
        if isinstance(source, str):
            yield f"{path}.source", source
        for name in type(node).model_fields:
            yield from _figures(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _figures(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _figures(value, f"{path}[{i}]")


def _check_sources(lib: DrugLibraryModel) -> list[Problem]:
    known = set(lib.sources)
    figures = [*_figures(lib.profiles, "profiles"), *_figures(lib.test_fluids, "test_fluids")]
    return [
        Problem(path, f"unknown source {source!r}; declare it under [sources] ({', '.join(known)})")
        for path, source in figures
        if source not in known
    ]


# ------------------------------------------------------------------ cumulative cap


def _check_cap(
    path: str, cap: CumulativeCap, therapies: dict[str, Therapy], ref_weight: Decimal
) -> list[Problem]:
    """A cap is a limit too, and the mg/mcg slip hits it as easily: a cap the lowest
    usual dose would exceed within its window, or one the hard max could never reach
    by a wide margin, is refused."""
    problems: list[Problem] = []
    if cap.window_h > MAX_CAP_WINDOW_H:
        problems.append(
            Problem(
                f"{path}.window_h",
                f"a cap window must be at most {MAX_CAP_WINDOW_H} h (7 days), got {cap.window_h}",
            )
        )
    window = Fraction(cap.window_h)
    floors = [
        _base_per_hour(t, t.soft_min.value or t.default_start.value, ref_weight) * window
        for t in therapies.values()
    ]
    ceilings = [
        _base_per_hour(t, t.hard_max.value, ref_weight) * window for t in therapies.values()
    ]
    lowest = min((f for f in floors if f > 0), default=Fraction(0))
    highest = max(ceilings, default=Fraction(0))
    base = cap.base_amount
    shown = f"{cap.amount} {cap.unit} per {cap.window_h} h"
    factor = cap.unit.base_factor
    if 0 < base < lowest:
        problems.append(
            Problem(
                f"{path}.amount",
                f"cap {shown} is below what the lowest soft minimum delivers in that window "
                f"({float(lowest / factor):.4g} {cap.unit}): a mg/mcg slip?",
            )
        )
    if highest > 0 and base > SIBLING_RATIO_LIMIT * highest:
        problems.append(
            Problem(
                f"{path}.amount",
                f"cap {shown} is {float(base / highest):.0f}x what the highest hard max "
                f"delivers in that window (limit {SIBLING_RATIO_LIMIT}x): a mg/mcg slip?",
            )
        )
    return problems


# ------------------------------------------------------------------ one therapy


def _check_therapy(path: str, t: Therapy, ref_weight: Decimal) -> list[Problem]:
    p: list[Problem] = []

    def need(ok: bool, field: str, message: str) -> None:
        if not ok:
            p.append(Problem(f"{path}.{field}", message))

    smin, smax, hmax = t.soft_min.value, t.soft_max.value, t.hard_max.value
    need(hmax > 0, "hard_max.value", "must be > 0")
    need(smin <= smax, "soft_min.value", f"soft min {smin} is above soft max {smax}")
    need(smax <= hmax, "soft_max.value", f"soft max {smax} is above hard max {hmax}")
    start, max_start = t.default_start.value, t.max_start.value
    need(
        smin <= start <= smax,
        "default_start.value",
        f"default start {start} is outside the soft range {smin}-{smax} {t.dose_unit}",
    )
    need(start <= max_start, "max_start.value", f"max start {max_start} is below default {start}")
    need(max_start <= hmax, "max_start.value", f"max start {max_start} is above hard max {hmax}")
    if t.warn_above is not None:
        need(
            0 < t.warn_above.value <= hmax,
            "warn_above.value",
            f"warn-above {t.warn_above.value} must be within (0, hard max {hmax}]",
        )
    if smin > 0 and hmax / smin > SPREAD_RATIO_LIMIT:
        p.append(
            Problem(
                f"{path}.hard_max.value",
                f"hard max {hmax} is {hmax / smin:.0f}x the soft min {smin} "
                f"(limit {SPREAD_RATIO_LIMIT}x): a mg/mcg slip?",
            )
        )
    ti = t.titration
    for name in ("max_step_rise", "window_min", "max_window_rise"):
        fig: Figure = getattr(ti, name)
        need(fig.value > 0, f"titration.{name}.value", "must be > 0")
    need(
        ti.window_min.value <= MAX_RULE_WINDOW_MIN,
        "titration.window_min.value",
        f"must be at most {MAX_RULE_WINDOW_MIN} min (24 h), got {ti.window_min.value}",
    )
    for name in ("max_step_rise", "max_window_rise"):
        fig = getattr(ti, name)
        need(
            fig.value <= hmax,
            f"titration.{name}.value",
            f"{fig.value} {t.dose_unit} is above the hard max {hmax}",
        )
    for name in ("max_step_rise_fraction", "max_window_rise_fraction"):
        fig = getattr(ti, name)
        need(
            0 < fig.value <= 10,
            f"titration.{name}.value",
            f"a relative rise must be within (0, 10], got {fig.value}",
        )
    need(
        ti.max_step_rise.value <= ti.max_window_rise.value,
        "titration.max_window_rise.value",
        "the window allows less than one step",
    )
    w = t.wean
    if w.gradual_wean_only.value:
        assert w.max_fall_fraction and w.window_min and w.stop_threshold
        need(
            0 < w.max_fall_fraction.value < 1,
            "wean.max_fall_fraction.value",
            f"must be within (0, 1), got {w.max_fall_fraction.value}",
        )
        need(
            0 < w.window_min.value <= MAX_RULE_WINDOW_MIN,
            "wean.window_min.value",
            f"must be within (0, {MAX_RULE_WINDOW_MIN}] min (24 h), got {w.window_min.value}",
        )
        need(
            0 < w.stop_threshold.value < smax,
            "wean.stop_threshold.value",
            f"must be within (0, soft max {smax})",
        )
    for i, entry in enumerate(t.concentrations):
        p += _check_concentration(f"{path}.concentrations[{i}]", t, entry, ref_weight)
    return p


def _check_concentration(
    path: str, t: Therapy, entry: ConcentrationEntry, ref_weight: Decimal
) -> list[Problem]:
    p: list[Problem] = []
    if entry.rule is not None and not t.weight_based:
        p.append(Problem(f"{path}.rule", "a weight rule needs a weight-based dose unit"))
        return p
    conc = entry.concentration(BodyWeight(ref_weight))
    assert conc is not None
    if conc.dimension is not t.unit.dimension:
        p.append(
            Problem(
                f"{path}.strength",
                f"{entry.label} is in {conc.amount_unit} but the therapy doses in {t.dose_unit}",
            )
        )
        return p
    per_ml = conc.base_per_ml()
    per_h_at = _base_per_hour
    low = per_h_at(t, t.soft_min.value or t.default_start.value, ref_weight) / per_ml
    high = per_h_at(t, t.hard_max.value, ref_weight) / per_ml
    lo_ok, hi_ok = PLAUSIBLE_RATE_ML_H
    if high > hi_ok:
        p.append(
            Problem(
                path,
                f"hard max at {entry.label} needs {float(high):.0f} mL/h (> {hi_ok} mL/h): "
                "a unit slip in the strength or the limits?",
            )
        )
    if 0 < low < lo_ok:
        p.append(
            Problem(
                path,
                f"soft min at {entry.label} needs {float(low):.4f} mL/h (< {float(lo_ok)} mL/h): "
                "a unit slip in the strength or the limits?",
            )
        )
    return p


def _base_per_hour(t: Therapy, value: Decimal, ref_weight: Decimal) -> Fraction:
    per_h = Fraction(value) * t.unit.factor_to_base_per_hour()
    return per_h * Fraction(ref_weight) if t.weight_based else per_h


# ------------------------------------------------------------------ siblings


def _check_siblings(lib: DrugLibraryModel) -> list[Problem]:
    """Compare each drug's figures across its therapies and profiles."""
    by_drug: dict[str, list[tuple[str, Therapy, Decimal]]] = {}
    for pid, profile in lib.profiles.items():
        if not _usable_weight(profile.reference_weight_kg.value):
            continue  # reported already
        for did, drug in profile.drugs.items():
            for tid, therapy in drug.therapies.items():
                path = f"profiles.{pid}.drugs.{did}.therapies.{tid}"
                by_drug.setdefault(did, []).append(
                    (path, therapy, profile.reference_weight_kg.value)
                )
    problems: list[Problem] = []
    for entries in by_drug.values():
        if len({t.unit.dimension for _, t, _ in entries}) > 1:
            continue  # reported already as mixed units
        for figure in DOSE_FIGURES:
            values = [
                (f"{path}.{figure}.value", _base_per_hour(t, getattr(t, figure).value, ref))
                for path, t, ref in entries
            ]
            problems += _outliers(values, SIBLING_RATIO_LIMIT, figure.replace("_", " "))
        strengths: list[tuple[str, Fraction]] = []
        for path, t, ref in entries:
            for i, entry in enumerate(t.concentrations):
                conc = entry.concentration(BodyWeight(ref))
                if conc is not None and conc.dimension is t.unit.dimension:
                    strengths.append((f"{path}.concentrations[{i}]", conc.base_per_ml()))
        problems += _outliers(strengths, CONCENTRATION_RATIO_LIMIT, "concentration")
    return problems


def median_of(values: list[Fraction]) -> Fraction:
    """``statistics.median`` of exact fractions (the mean of the two middle values of an
    even count), without importing ``statistics``: 0.15 MB of the safety process's
    resident memory (goal 40 MB) for one median at each library load."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _outliers(values: list[tuple[str, Fraction]], limit: int, what: str) -> list[Problem]:
    problems = []
    for i, (path, value) in enumerate(values):
        others = [v for j, (_, v) in enumerate(values) if j != i and v > 0]
        if not others or value <= 0:
            continue
        median = median_of(others)
        ratio = value / median
        if ratio > limit or ratio < Fraction(1, limit):
            shown = float(ratio) if ratio >= 1 else float(1 / ratio)
            direction = "above" if ratio >= 1 else "below"
            problems.append(
                Problem(
                    path,
                    f"{what} is {shown:.0f}x {direction} the same figure of its sibling "
                    f"therapies (limit {limit}x): a mg/mcg slip?",
                )
            )
    return problems
