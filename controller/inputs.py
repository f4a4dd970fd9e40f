"""What an operator types, checked before anything is sent: a program and a dose.

Each problem is a ``BadInput`` naming its field and what is allowed, or the library's own
refusal (S6) with its reason code, so a mistake is explained here instead of coming back
as a refusal from the safety process (which checks everything again).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from controller.errors import BadInput, ControllerError
from safety.dosing import check_program
from safety.kernel.model import ProgramSpec
from safety.library import DiluentError, DrugLibrary, LookupProblem, parse_diluent
from safety.rules import RuleRefusal, dose_in_unit
from safety.status import Snapshot
from safety.units import (
    BodyWeight,
    UnitError,
    parse_concentration,
    parse_dose,
    parse_dose_unit,
    plain,
    to_decimal,
)

Dose = Decimal | int | float | str
Weight = Decimal | int | float | str

#: a dose converted from another unit keeps this many decimal places (rounded down)
DOSE_PLACES = 9


def program_spec(
    library: DrugLibrary,
    drug: str,
    concentration: str,
    diluent: str,
    *,
    weight_kg: Weight | None = None,
    profile: str | None = None,
    therapy: str | None = None,
) -> ProgramSpec:
    """The program the safety process will be asked to load, checked against the library
    (drug, therapy, concentration, diluent, weight: S6) with the same pure rules."""
    try:
        selection = library.select(drug, profile=profile, therapy=therapy)
        weight = BodyWeight.parse(weight_kg) if weight_kg is not None else None
        parsed = parse_concentration(concentration)
        check_program(selection, parsed, parse_diluent(diluent), weight)
    except UnitError as exc:
        raise BadInput(exc.field, exc.detail) from None
    except LookupProblem as exc:
        raise BadInput(exc.field, exc.detail) from None
    except DiluentError as exc:
        raise BadInput("diluent", str(exc).removeprefix("diluent: ")) from None
    except RuleRefusal as exc:
        finding = exc.finding
        raise ControllerError(
            finding.message, code=str(finding.code), field=finding.field
        ) from None
    return ProgramSpec(
        library_hash=library.content_hash,
        drug=selection.drug_id,
        profile=selection.profile_id,
        therapy=selection.therapy_id,
        concentration=concentration.strip(),
        diluent=diluent.strip(),
        weight_kg=weight.kg if weight is not None else None,
    )


def patient_weight(weight_kg: Weight | None) -> Decimal | None:
    """A patient's weight as typed (``70``, ``"70 kg"``), checked: a ``BadInput`` naming
    the field and its range otherwise."""
    if weight_kg is None:
        return None
    try:
        return BodyWeight.parse(weight_kg).kg
    except UnitError as exc:
        raise BadInput(exc.field, exc.detail) from None


def dose_value(dose: Dose, snapshot: Snapshot) -> Decimal:
    """A dose in the loaded program's unit: a number, or text with a unit ("8 mcg/min",
    "0.48 mg/h") converted exactly, rounded down if it must be; a weight-based dose is
    never read as an absolute one, nor the reverse."""
    unit_text = snapshot.dose_unit
    if snapshot.program is None or unit_text is None:
        raise ControllerError("no program is loaded; program first", code="no_program")
    try:
        if isinstance(dose, str) and any(c.isalpha() for c in dose):
            parsed = parse_dose(dose, "dose")
            value = dose_in_unit(parsed, parse_dose_unit(unit_text), snapshot.program.drug)
            result = _round_down(value)
        else:
            result = to_decimal(dose, "dose")
    except UnitError as exc:
        raise BadInput(exc.field, exc.detail) from None
    except RuleRefusal as exc:
        raise BadInput("dose", exc.finding.message.removeprefix("refused: ")) from None
    if result <= 0:
        raise BadInput(
            "dose",
            f"{dose} is not a dose: give a positive number of {unit_text} (use stop to stop)",
        )
    return result


def _round_down(value: Fraction) -> Decimal:
    scaled = math.floor(value * 10**DOSE_PLACES)
    return plain(Decimal(scaled).scaleb(-DOSE_PLACES))
