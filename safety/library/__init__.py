"""The drug library: validated models, lookup by drug / profile / therapy, content hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safety.library.diluents import Diluent, DiluentError, parse_diluent
from safety.library.loader import (
    LibraryError,
    content_hash,
    default_library_path,
    load_library_file,
    parse_library,
)
from safety.library.models import (
    BenchFluid,
    ConcentrationEntry,
    CumulativeCap,
    Drug,
    DrugLibraryModel,
    Figure,
    Profile,
    Therapy,
)
from safety.library.sanity import Problem
from safety.units import DoseRateUnit

__all__ = [
    "BenchFluid",
    "ConcentrationEntry",
    "CumulativeCap",
    "Diluent",
    "DiluentError",
    "Drug",
    "DrugLibrary",
    "DrugLibraryModel",
    "Figure",
    "LibraryError",
    "LookupProblem",
    "Problem",
    "Profile",
    "Selection",
    "Therapy",
    "content_hash",
    "default_library_path",
    "load_library",
    "parse_diluent",
    "parse_library",
]

DEFAULT_PROFILE = "adult_icu"


class LookupProblem(LookupError):
    """A drug, profile or therapy that the library does not have; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


@dataclass(frozen=True)
class Selection:
    """One library entry: the profile, drug and therapy an order is checked against."""

    profile_id: str
    drug_id: str
    therapy_id: str
    profile: Profile
    drug: Drug
    therapy: Therapy

    @property
    def key(self) -> str:
        return f"{self.profile_id}/{self.drug_id}/{self.therapy_id}"


@dataclass(frozen=True)
class DrugLibrary:
    """A validated library and the hash that identifies its content."""

    model: DrugLibraryModel
    content_hash: str
    path: str = "<text>"

    @property
    def version(self) -> str:
        return self.model.version

    def profile(self, profile_id: str | None) -> tuple[str, Profile]:
        pid = profile_id or DEFAULT_PROFILE
        key = pid.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in self.model.profiles:
            known = ", ".join(self.model.profiles)
            raise LookupProblem("profile", f"unknown profile {pid!r}; known: {known}")
        return key, self.model.profiles[key]

    def drug(self, name: str, profile_id: str | None = None) -> tuple[str, str, Drug]:
        pid, profile = self.profile(profile_id)
        wanted = name.strip().lower()
        if not wanted:
            raise LookupProblem("drug", "is empty")
        for did, drug in profile.drugs.items():
            if wanted == did or wanted in (a.lower() for a in drug.aliases):
                return pid, did, drug
        elsewhere = [
            p for p, prof in self.model.profiles.items() if p != pid and wanted in prof.drugs
        ]
        hint = f" (it is in profile {', '.join(elsewhere)})" if elsewhere else ""
        known = ", ".join(profile.drugs)
        raise LookupProblem("drug", f"{name!r} is not in profile {pid}{hint}; drugs there: {known}")

    def test_fluid(self, name: str) -> tuple[str, BenchFluid]:
        """A test fluid by name: never a drug (the names are kept apart by the sanity
        checks); a library without ``[test_fluids]`` has none."""
        key = name.strip().lower()
        fluids = self.model.test_fluids
        if key not in fluids:
            known = ", ".join(fluids) or "none (the library has no [test_fluids] table)"
            raise LookupProblem("test_fluid", f"{name!r} is not a test fluid; known: {known}")
        return key, fluids[key]

    def select(
        self,
        drug: str,
        *,
        profile: str | None = None,
        therapy: str | None = None,
        dose_unit: DoseRateUnit | None = None,
    ) -> Selection:
        """Find the entry for an order.

        Without ``therapy``: the drug's default therapy when its dose unit is of the same
        kind (weight-based or not, mass or units) as ``dose_unit``; otherwise the one
        other therapy of that kind, unless it may only be chosen explicitly. Never a
        guess between two candidates: that is an error listing them.
        """
        pid, did, entry = self.drug(drug, profile)
        prof = self.model.profiles[pid]
        if therapy is not None:
            tid = therapy.strip().lower().replace("-", "_").replace(" ", "_")
            if tid not in entry.therapies:
                known = ", ".join(entry.therapies)
                raise LookupProblem(
                    "therapy", f"{did} has no therapy {therapy!r} in {pid}; known: {known}"
                )
            return Selection(pid, did, tid, prof, entry, entry.therapies[tid])
        default = entry.therapies[entry.default_therapy]
        if dose_unit is None or _same_kind(default.unit, dose_unit):
            return Selection(pid, did, entry.default_therapy, prof, entry, default)
        candidates = [
            tid
            for tid, t in entry.therapies.items()
            if _same_kind(t.unit, dose_unit) and not t.explicit_selection_only
        ]
        if len(candidates) == 1:
            tid = candidates[0]
            return Selection(pid, did, tid, prof, entry, entry.therapies[tid])
        listing = ", ".join(f"{tid} ({t.dose_unit})" for tid, t in entry.therapies.items())
        if not candidates:
            raise LookupProblem(
                "therapy",
                f"no {did} therapy in {pid} is dosed in {dose_unit}; choose one with "
                f"--therapy: {listing}",
            )
        raise LookupProblem("therapy", f"several {did} therapies fit {dose_unit}: {listing}")


def _same_kind(a: DoseRateUnit, b: DoseRateUnit) -> bool:
    return a.per_kg == b.per_kg and a.dimension is b.dimension


def load_library(path: str | Path | None = None) -> DrugLibrary:
    """Load and validate a library (default: config/drug_library.toml)."""
    model, digest = load_library_file(path)
    shown = str(path) if path is not None else str(default_library_path())
    return DrugLibrary(model, digest, shown)
