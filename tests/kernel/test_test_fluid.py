"""Test-fluid programs (water for an accuracy test): rate limits only, never a drug.

Through the in-process link (every message crosses its JSON encoding, the real kernel and
host core decide, the simulated pump runs): what the kernel accepts for a test fluid, what
it refuses, and that a drug and a test fluid can never be taken for one another.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from safety.ipc.local import LocalSafety
from safety.kernel.model import (
    ChangeDose,
    LoadProgram,
    ProgramSpec,
    StartInfusion,
    StopInfusion,
)
from safety.kernel.replay import replay_journal
from safety.library import DrugLibrary, LibraryError, load_library, parse_library
from safety.reasons import Reason


@pytest.fixture(scope="module")
def shipped() -> DrugLibrary:
    return load_library()


def water(lib: DrugLibrary, **changes: object) -> ProgramSpec:
    fields: dict[str, object] = {
        "library_hash": lib.content_hash,
        "drug": "water",
        "profile": "",
        "therapy": "",
        "concentration": "",
        "diluent": "",
        "test_fluid": True,
    }
    fields.update(changes)
    return ProgramSpec(**fields)  # type: ignore[arg-type]


def test_water_runs_on_rate_limits_only(shipped: DrugLibrary, tmp_path: object) -> None:
    with LocalSafety(library=shipped) as link:
        link.attach()
        loaded = link.request(LoadProgram(water(shipped)))
        assert loaded.verdict.accepted, loaded.verdict.message
        assert "rate limits only" in loaded.verdict.message
        assert loaded.snapshot.dose_unit == "mL/h"
        # far above any drug's max start, and no titration limit on the way up or down
        started = link.request(StartInfusion(Decimal(100), unit="mL/h"))
        assert started.verdict.accepted, started.verdict.message
        assert link.pump.snapshot().set_rate_ml_h == pytest.approx(100.0)
        assert link.request(ChangeDose(Decimal(900), unit="mL/h")).verdict.accepted
        assert link.request(ChangeDose(Decimal(1), unit="mL/h")).verdict.accepted  # pump min
        link.advance(600)
        snap = link.snapshot()
        assert snap.drug_given == 0 and snap.amount_unit is None and snap.cap_amount is None
        # the fluid's maximum is a hard limit; at it is allowed, one step past is not
        assert link.request(ChangeDose(Decimal(1000), unit="mL/h")).verdict.accepted
        over = link.request(ChangeDose(Decimal("1000.001"), unit="mL/h"))
        assert over.verdict.reason is Reason.HARD_MAX
        # a dose unit is never read as a flow
        wrong = link.request(ChangeDose(Decimal(5), unit="mcg/min"))
        assert wrong.verdict.reason is Reason.DOSE_UNIT_MISMATCH
        # a stop is a stop: nothing to wean
        stopped = link.request(StopInfusion())
        assert stopped.verdict.accepted
        assert not link.pump.snapshot().running


def test_the_pump_range_still_applies(shipped: DrugLibrary) -> None:
    with LocalSafety(library=shipped, syringe="bd-plastipak-5ml") as link:
        link.attach()
        assert link.request(LoadProgram(water(shipped))).verdict.accepted
        refused = link.request(StartInfusion(Decimal(900), unit="mL/h"))
        assert refused.verdict.reason is Reason.PUMP_RANGE_HIGH


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"drug": "norepinephrine"}, "not a test fluid"),  # a drug's name as a fluid
        ({"concentration": "4 mg/250 mL"}, "carries no drug: concentration"),
        ({"weight_kg": Decimal(70)}, "weight_kg must be empty"),
        ({"test_fluid": False, "profile": "adult_icu"}, "'water' is not in profile"),
    ],
)
def test_drug_and_fluid_are_never_confused(
    shipped: DrugLibrary, changes: dict[str, object], words: str
) -> None:
    with LocalSafety(library=shipped) as link:
        link.attach()
        refused = link.request(LoadProgram(water(shipped, **changes)))
        assert not refused.verdict.accepted
        assert words in refused.verdict.message


def test_a_journal_with_a_test_fluid_replays(shipped: DrugLibrary, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "safety.sqlite"
    with LocalSafety(library=shipped, journal_path=path) as link:
        link.attach()
        link.request(LoadProgram(water(shipped)))
        link.request(StartInfusion(Decimal(10), unit="mL/h"))
        link.advance(60)
        live = link.core.state
        replayed = replay_journal(link.core.config, link.journal).state
    assert replayed.program == live.program
    assert replayed.set_rate == Decimal(10)


LIBRARY_TAIL = """
[test_fluids.water]
display_name = "Water"
min_rate_ml_h = { value = 0.01, source = "project-default" }
max_rate_ml_h = { value = 1000, source = "project-default" }
"""


def _text(shipped_text: str, tail: str) -> str:
    head = shipped_text.split("# Test fluids:", maxsplit=1)[0]
    return head + tail


def test_library_checks_and_hash(shipped: DrugLibrary) -> None:
    from safety.library.loader import default_library_path

    text = default_library_path().read_text(encoding="utf-8")
    without = parse_library(_text(text, ""))[1]
    with_water = parse_library(_text(text, LIBRARY_TAIL))[1]
    assert without != with_water  # the fluid is part of the content
    for tail, words in [
        (LIBRARY_TAIL.replace("water]", "levophed]"), "also the name of a drug"),
        (LIBRARY_TAIL.replace("value = 0.01", "value = 1000"), "0 < min rate < max rate"),
        (LIBRARY_TAIL.replace('"project-default" }\n', '"nowhere" }\n', 1), "unknown source"),
        (LIBRARY_TAIL + 'dose_unit = "mcg/min"\n', "dosed in mL/h"),
    ]:
        with pytest.raises(LibraryError, match=words):
            parse_library(_text(text, tail))
