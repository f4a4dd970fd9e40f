"""What a new drug library says about a program loaded under an older one.

Run once at start when the library's hash is not the one the loaded program was made
with: the answer goes into the journal (``LibraryChecked``) and the operator's alarm,
in words that name the figures that moved, so a reviewer sees what the update changed
for this patient.
"""

from __future__ import annotations

from safety.kernel.model import ProgramLimits, ProgramSpec
from safety.kernel.state import limits_of, program_check
from safety.library import CumulativeCap, DiluentError, DrugLibrary, Figure, LookupProblem
from safety.rules import RuleRefusal, num
from safety.units import UnitError

_FIGURES = ("max_start", "soft_min", "soft_max", "hard_max")
_TITRATION = (
    "max_step_rise",
    "max_step_rise_fraction",
    "window_min",
    "max_window_rise",
    "max_window_rise_fraction",
)
_WEAN = ("max_fall_fraction", "window_min", "stop_threshold")


def what_changed(library: DrugLibrary, spec: ProgramSpec, old: ProgramLimits) -> str:
    """A sentence: why the new library refuses the program, or which of its figures
    differ, or that none does (the program must still be loaded again under it)."""
    try:
        new = limits_of(program_check(library, spec), library.content_hash)
    except RuleRefusal as exc:
        return f"it no longer allows {old.what}: {exc.finding.message}"
    except (UnitError, DiluentError, LookupProblem) as exc:
        return f"it no longer allows {old.what}: {exc}"
    changes: list[str] = []
    unit = old.therapy.dose_unit
    if new.therapy.dose_unit != unit:
        changes.append(f"dose unit {unit} -> {new.therapy.dose_unit}")
    for name in _FIGURES:
        _compare(changes, name, getattr(old.therapy, name), getattr(new.therapy, name))
    for name in _TITRATION:
        _compare(
            changes,
            f"titration {name}",
            getattr(old.therapy.titration, name),
            getattr(new.therapy.titration, name),
        )
    if old.therapy.wean.gradual_wean_only.value != new.therapy.wean.gradual_wean_only.value:
        changes.append(
            f"gradual wean only {old.therapy.wean.gradual_wean_only.value} -> "
            f"{new.therapy.wean.gradual_wean_only.value}"
        )
    for name in _WEAN:
        _compare(
            changes,
            f"wean {name}",
            getattr(old.therapy.wean, name),
            getattr(new.therapy.wean, name),
        )
    old_cap, new_cap = old.cap, new.cap
    if (old_cap is None) != (new_cap is None) or (
        old_cap is not None
        and new_cap is not None
        and (old_cap.base_amount, old_cap.window_s) != (new_cap.base_amount, new_cap.window_s)
    ):
        changes.append(f"cumulative cap {_cap(old_cap)} -> {_cap(new_cap)}")
    what = old.what
    if not changes:
        return f"no figure of {what} changed; load it again to run it under the new library"
    return (
        f"{what}: "
        + "; ".join(changes)
        + " (the stricter limits keep applying until their windows pass)"
    )


def _compare(out: list[str], name: str, old: Figure | None, new: Figure | None) -> None:
    old_value = None if old is None else old.value
    new_value = None if new is None else new.value
    if old_value != new_value:
        shown_old = "none" if old_value is None else num(old_value)
        shown_new = "none" if new_value is None else num(new_value)
        out.append(f"{name.replace('_', ' ')} {shown_old} -> {shown_new}")


def _cap(cap: CumulativeCap | None) -> str:
    if cap is None:
        return "none"
    return f"{num(cap.amount)} {cap.unit} per {num(cap.window_h)} h"
