"""``pumpctl calc``: a dose order to a pump rate, or a rate to the dose it delivers.

Runs the same pure rules as the safety kernel (``safety.dosing``), so a figure printed
here is one the safety process would accept for the same library.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cli.commands.output import (
    EXIT_OK,
    EXIT_REFUSED,
    CommandError,
    SubParsers,
    bad_input,
    library_from_option,
    print_json,
)
from safety.dosing import (
    DoseOrder,
    ProgramCheck,
    check_program,
    describe,
    order_from_dose,
    order_from_rate,
)
from safety.library import DiluentError, DrugLibrary, LookupProblem
from safety.library.diluents import parse_diluent
from safety.pump_rounding import ROUNDINGS, RateRounding, rounding_for
from safety.rules import RuleRefusal, Severity, dose_in_unit, num
from safety.units import (
    BodyWeight,
    UnitError,
    absolute_unit_for,
    parse_concentration,
    parse_dose,
    parse_flow,
)


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "calc",
        help="convert a dose to a pump rate (or a rate to a dose) from the drug library",
        description="Convert a dose order to the pump rate (or a rate to the dose it "
        "delivers), checked against the drug library. Exit 0 allowed (warnings possible), "
        "2 bad input, 3 refused by the library.",
    )
    p.add_argument("drug", help="drug name or alias, e.g. norepinephrine")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dose", help='dose order, e.g. "0.1 mcg/kg/min" or "8 mcg/min"')
    what.add_argument("--rate", help='pump rate, e.g. "26.25 mL/h"')
    p.add_argument("--concentration", required=True, help='e.g. "4 mg/250 mL" or "16 mcg/mL"')
    p.add_argument("--weight", help="patient weight in kg (needed for weight-based doses)")
    p.add_argument("--profile", help="care-area profile (default adult_icu)")
    p.add_argument("--therapy", help="therapy within the drug (default: by dose unit)")
    p.add_argument("--diluent", help="diluent, e.g. D5W, NS (checked against the library)")
    p.add_argument(
        "--pump",
        choices=sorted(ROUNDINGS),
        default="generic",
        help="round the rate as this pump family does (default generic: 4 significant "
        "digits, steps >= 0.001 mL/h)",
    )
    p.add_argument("--library", help="drug library file (default config/drug_library.toml)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    library = library_from_option(args.library)
    try:
        concentration = parse_concentration(args.concentration)
        weight = BodyWeight.parse(args.weight) if args.weight is not None else None
        diluent = parse_diluent(args.diluent) if args.diluent is not None else None
        dose = parse_dose(args.dose) if args.dose is not None else None
        flow = parse_flow(args.rate) if args.rate is not None else None
        selection = library.select(
            args.drug,
            profile=args.profile,
            therapy=args.therapy,
            dose_unit=dose.unit if dose is not None else None,
        )
        if dose is not None:
            # A dose in the wrong kind of unit (the 70x mcg/min vs mcg/kg/min swap) is
            # refused first: asking for a weight would suggest the entry was fine.
            dose_in_unit(dose, selection.therapy.unit, describe(selection))
        program = check_program(selection, concentration, diluent, weight)
        resolution = rounding_for(args.pump)
        if dose is not None:
            order = order_from_dose(program, dose, resolution)
        else:
            assert flow is not None
            order = order_from_rate(program, flow, resolution)
    except UnitError as exc:
        bad_input(str(exc), exc.field)
    except DiluentError as exc:
        bad_input(str(exc), "diluent")
    except LookupProblem as exc:
        bad_input(str(exc), exc.field, code="unknown_entry")
    except RuleRefusal as exc:
        raise CommandError(
            exc.finding.code.value, exc.finding.message, EXIT_REFUSED, exc.finding.field
        ) from None
    refusals = order.refusals()
    if refusals:
        first = refusals[0]
        raise CommandError(first.code.value, first.message, EXIT_REFUSED, first.field)
    if args.json:
        print_json(_as_json(order, library, resolution, args.pump))
    else:
        print(_as_text(order, library, resolution, args.pump, from_rate=flow is not None))
    return EXIT_OK


def _as_json(
    order: DoseOrder, library: DrugLibrary, res: RateRounding, pump: str
) -> dict[str, Any]:
    p = order.program
    sel = p.selection
    return {
        "drug": sel.drug_id,
        "profile": sel.profile_id,
        "therapy": sel.therapy_id,
        "rate_ml_per_h": float(order.pump_rate_ml_h),
        "rate_exact_ml_per_h": float(order.exact_rate_ml_h),
        "dose_value": float(order.dose),
        "dose_unit": str(order.unit),
        "dose_at_pump_rate": float(order.dose_at_pump_rate),
        "absolute_dose": _absolute(order),
        "concentration": str(p.concentration),
        "concentration_per_ml": p.concentration.per_ml_text(),
        "concentration_entry": p.entry.label,
        "diluent": p.diluent.value if p.diluent else None,
        "weight_kg": float(p.weight.kg) if p.weight else None,
        "warnings": [f.message for f in order.findings if f.severity is not Severity.REFUSE],
        "soft_limit_confirmation_needed": bool(order.confirmations()),
        "pump": pump,
        "rounding": res.describe(),
        "library": {"version": library.version, "hash": library.content_hash},
    }


def _absolute(order: DoseOrder) -> dict[str, Any] | None:
    p = order.program
    if not order.unit.per_kg or p.weight is None:
        return None
    unit = absolute_unit_for(order.unit)
    factor = order.unit.factor_to_base_per_hour() / unit.factor_to_base_per_hour()
    value = order.dose * Fraction(p.weight.kg) * factor
    return {"value": float(value), "unit": str(unit)}


def _as_text(
    order: DoseOrder, library: DrugLibrary, res: RateRounding, pump: str, from_rate: bool
) -> str:
    p: ProgramCheck = order.program
    unit = order.unit
    lines = [f"{p.what}"]
    absolute = _absolute(order)
    extra = ""
    if absolute is not None and p.weight is not None:
        extra = f"  (= {num(Decimal(str(absolute['value'])))} {absolute['unit']} at {p.weight})"
    if from_rate:
        lines.append(f"  rate           {num(order.pump_rate_ml_h)} mL/h")
        lines.append(f"  dose           {num(order.dose)} {unit}{extra}")
    else:
        lines.append(f"  dose           {num(order.dose)} {unit}{extra}")
        lines.append(
            f"  rate           {num(order.pump_rate_ml_h)} mL/h   "
            f"(exact {num(order.exact_rate_ml_h, 10)} mL/h; {pump} pump: rounded "
            f"{res.describe()})"
        )
        lines.append(f"  delivers       {num(order.dose_at_pump_rate, 8)} {unit} at that rate")
    diluent = f" in {p.diluent.value}" if p.diluent else ""
    lines.append(
        f"  concentration  {p.concentration} = {p.concentration.per_ml_text()}{diluent}"
        f"  [library: {p.entry.label}]"
    )
    notes = [f for f in order.findings if f.severity is not Severity.REFUSE]
    if notes:
        lines.append("warnings:")
        lines += [f"  - {f.message}" for f in notes]
    lines.append(f"library {library.version} {library.content_hash[:19]}")
    return "\n".join(lines)
