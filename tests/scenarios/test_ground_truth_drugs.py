"""The oracle on a bench giving several drugs (``verification.channel_truth.check_drugs``):
each drug's total is judged on its own limits; one drug's channels never hide or invent
another's violation, and the bench's one interlock relay cuts every drug's pumps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from firmware_bridge.pump_model import TruthEvent, TruthSegment
from safety.kernel.model import (
    CommandIssued,
    Event,
    Now,
    ProgramLoaded,
    ProgramSpec,
    SetInterlock,
)
from safety.kernel.state import load_program
from safety.library import DrugLibrary
from tests.scenarios.test_ground_truth_channels import _load, _read, _start, _truth
from verification.channel_truth import ChannelsError, check_channels, check_drugs

#: vasopressin 20 units/100 mL = 0.2 units/mL: 0.01 units/min = 3 mL/h; hard max 0.04
PER_CENTI_UNIT_MIN = 3.0


def _vasopressin(library: DrugLibrary, t: float, channel: str) -> ProgramLoaded:
    spec = ProgramSpec(
        library.content_hash, "vasopressin", "adult_icu", "fixed", "20 units/100 mL", "NS"
    )
    program = load_program(library, spec, t)
    return ProgramLoaded(spec, program.limits, 0.0, Now(t, t), channel)


def _vaso_truth(*steps: tuple[float, float]) -> list[TruthEvent]:
    """(time s, units/min) changes from a stopped pump."""
    events: list[TruthEvent] = [TruthSegment(0.0, 0.0)]
    return events + [TruthSegment(t, u * 100 * PER_CENTI_UNIT_MIN) for t, u in steps]


def _bench(library: DrugLibrary) -> list[Event]:
    """A: norepinephrine at 8 mcg/min; B: vasopressin at 0.03 units/min (9 mL/h; the
    helper's dose argument is in mcg/min of 3.75 mL/h each: 2.4 of them)."""
    b_start = _start(60, "B", 0.03 * 100 * PER_CENTI_UNIT_MIN / 3.75)
    return [_load(library, 0, "A"), _vasopressin(library, 0, "B"), *_start(0, "A", 8), *b_start]


def test_each_drug_is_judged_on_its_own_total(library: DrugLibrary) -> None:
    events = _bench(library)
    truths = {"A": _truth((0, 8)), "B": _vaso_truth((60, 0.03))}
    with pytest.raises(ChannelsError, match="judged per drug"):
        check_channels(truths, library, events, until=600)
    reports = check_drugs(truths, library, events, until=600)
    assert list(reports) == ["norepinephrine", "vasopressin"]
    assert all(r.ok for r in reports.values()), {d: r.total.violations for d, r in reports.items()}
    assert reports["norepinephrine"].total.summary.max_dose == pytest.approx(8)
    assert reports["vasopressin"].total.summary.max_dose == pytest.approx(0.03)
    assert set(reports["vasopressin"].channels) == {"B"}


def test_a_drug_over_its_hard_max_is_that_drugs_violation_alone(library: DrugLibrary) -> None:
    """B's pump delivers 0.05 units/min (above vasopressin's 0.04) from t=300: the
    vasopressin total breaks S1; the norepinephrine beside it is untouched."""
    events = _bench(library)
    truths = {"A": _truth((0, 8)), "B": _vaso_truth((60, 0.03), (300, 0.05))}
    reports = check_drugs(truths, library, events, until=600)
    assert reports["norepinephrine"].ok
    rules = [v.rule for v in reports["vasopressin"].total.violations]
    assert "hard_max" in rules
    hard = next(v for v in reports["vasopressin"].total.violations if v.rule == "hard_max")
    assert hard.time == 300 and "units/min" in hard.message


def test_the_benchs_relay_cuts_every_drugs_pumps(library: DrugLibrary) -> None:
    """An interlock cut of the bench's one relay (journaled on channel A) stops B's
    vasopressin too: its stop is the relay's doing, judged as a protective stop, not a
    pump that stopped by itself without a command."""
    cut = CommandIssued(SetInterlock(False, "A"), "protective", Now(300, 300))
    events = [
        *_bench(library),
        cut,
        _read(300, "A", Decimal(0), running=False),
        _read(300, "B", Decimal(0), running=False),
    ]
    truths = {"A": _truth((0, 8), (300, 0)), "B": _vaso_truth((60, 0.03), (300, 0))}
    reports = check_drugs(truths, library, events, until=600)
    vaso = reports["vasopressin"]
    assert vaso.ok, vaso.total.violations
    stops = [c for c in vaso.total.changes if c.to_ml_h == 0 and c.time == 300]
    assert stops and all(c.cause == "protective" for c in stops), vaso.total.changes


def test_a_channel_that_gave_two_drugs_cannot_be_split(library: DrugLibrary) -> None:
    events = [*_bench(library), _vasopressin(library, 400, "A")]
    truths = {"A": _truth((0, 8)), "B": _vaso_truth((60, 0.03))}
    with pytest.raises(ChannelsError, match=r"channel A: norepinephrine, vasopressin"):
        check_drugs(truths, library, events, until=600)
