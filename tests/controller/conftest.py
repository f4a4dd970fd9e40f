"""Shared set-up for the controller tests: hand-built snapshots for the pure planner
tests, and an in-process safety process (``LocalSafety``) for session tests (the library
comes from ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from controller.machine import State
from controller.session import Session
from safety.ipc.local import LocalSafety
from safety.kernel.model import ProgramSpec
from safety.kernel.state import program_check
from safety.library import DrugLibrary
from safety.rules import dose_for_rate
from safety.status import AMOUNT_PLACES, HistoryPoint, Snapshot
from safety.units import fraction_to_decimal


@dataclass(frozen=True)
class Program:
    """A program the library allows, with a plausible start dose."""

    drug: str
    therapy: str
    concentration: str
    diluent: str
    weight_kg: Decimal | None = None

    def spec(self, library: DrugLibrary) -> ProgramSpec:
        return ProgramSpec(
            library.content_hash,
            self.drug,
            "adult_icu",
            self.therapy,
            self.concentration,
            self.diluent,
            self.weight_kg,
        )


NOREPI = Program("norepinephrine", "standard", "4 mg/250 mL", "D5W")
NOREPI_DILUTE = Program("norepinephrine", "standard", "4 mg/1000 mL", "D5W")
NOREPI_KG = Program("norepinephrine", "weight_based", "4 mg/250 mL", "D5W", Decimal(70))
NOREPI_HRS = Program("norepinephrine", "hepatorenal", "4 mg/250 mL", "D5W")
EPI = Program("epinephrine", "weight_based", "4 mg/250 mL", "D5W", Decimal(80))
DOBUTAMINE = Program("dobutamine", "weight_based", "500 mg/250 mL", "D5W", Decimal(60))
VASOPRESSIN = Program("vasopressin", "fixed", "20 units/100 mL", "NS")
PROGRAMS = (NOREPI, NOREPI_DILUTE, NOREPI_KG, NOREPI_HRS, EPI, DOBUTAMINE, VASOPRESSIN)

#: (min, max) mL/h of the mock pump with a 5 mL and a 50 mL BD Plastipak
PUMP_5ML = (Decimal("0.05"), Decimal("406.5"))
PUMP_50ML = (Decimal("1.0"), Decimal("1999.0"))


def make_snapshot(
    library: DrugLibrary,
    program: Program,
    segments: list[tuple[float, Decimal]],
    now: float,
    pump: tuple[Decimal, Decimal] = PUMP_5ML,
) -> Snapshot:
    """What a safety process would report after running ``segments`` ((start s, mL/h))."""
    spec = program.spec(library)
    check = program_check(library, spec)
    amount = check.concentration.base_per_ml()
    points = tuple(
        HistoryPoint(start, fraction_to_decimal(Fraction(rate) * amount, AMOUNT_PLACES), "command")
        for start, rate in segments
    )
    rate = segments[-1][1] if segments else Decimal(0)
    running = rate > 0
    dose = Fraction(0)
    if running:
        dose = dose_for_rate(
            Fraction(rate), check.selection.therapy.unit, check.concentration, check.weight
        )
    return Snapshot(
        clinical_time=now,
        mode="infusing" if running else "programmed",
        library_hash=library.content_hash,
        library_version=library.version,
        program=spec,
        dose_unit=check.selection.therapy.dose_unit,
        running=running,
        rate_ml_h=rate if running else Decimal(0),
        dose=fraction_to_decimal(dose, 9),
        infused_ml=0.0,
        drug_given=Decimal(0),
        amount_unit="mcg",
        given_in_cap_window=None,
        cap_amount=None,
        cap_window_h=None,
        syringe="bd-plastipak-5ml",
        syringe_volume_ml=5.0,
        remaining_ml=5.0,
        pump_min_ml_h=pump[0],
        pump_max_ml_h=pump[1],
        alarms=(),
        session="s",
        last_seq=0,
        attached=True,
        hold=False,
        estopped=False,
        uncertain=False,
        comms_ok=True,
        history=points,
    )


# --------------------------------------------------------------------------- in-process bench


@pytest.fixture
def local(library: DrugLibrary, tmp_path: Path) -> Iterator[LocalSafety]:
    link = LocalSafety(library=library)  # journal in memory: fast, still readable
    yield link
    link.close()


@pytest.fixture
def session(local: LocalSafety, library: DrugLibrary, tmp_path: Path) -> Iterator[Session]:
    s = Session.open(
        local, library, journal=tmp_path / "controller.sqlite", clinical=local.clinical
    )
    yield s
    s.close(hang_up=False)


def drive(link: LocalSafety, session: Session, seconds: float, step: float = 30.0) -> None:
    """Let clinical time pass, servicing the session as its service thread would."""
    end = link.clinical.now() + seconds
    # a remainder below a microsecond is float rounding: adding it may not move the clock
    while end - link.clinical.now() > 1e-6:
        link.advance(min(step, end - link.clinical.now()))
        session.service()


def drive_until(
    link: LocalSafety,
    session: Session,
    states: tuple[State, ...],
    limit_s: float,
    step: float = 30.0,
) -> None:
    """Drive until the session leaves ``states`` (or the limit, which fails the test)."""
    end = link.clinical.now() + limit_s
    while session.state in states:
        assert link.clinical.now() < end, f"still {session.state} after {limit_s} s"
        link.advance(step)
        session.service()
