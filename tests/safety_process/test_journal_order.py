"""S14 write-ahead order with the verdict and its first command in one transaction.

``SafetyCore.handle`` journals an accepted verdict and the ``CommandIssued`` of its first
pump action in one durable transaction (one flush to the device, not two); every later
action, and the read-back, in their own. Checked here by watching each transaction and
what the pump was doing when it committed: nothing reaches the pump before the
transaction that names it, and the journal replays to the state the process holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from safety.ipc.local import LocalSafety
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    EmergencyStop,
    LoadProgram,
    ProgramSpec,
    StartInfusion,
)
from safety.kernel.replay import replay_journal
from safety.library import DrugLibrary

Batch = tuple[tuple[str, ...], float, bool]  # kinds, pump rate, pump running at commit


def _watch(link: LocalSafety) -> list[Batch]:
    batches: list[Batch] = []
    journal = link.core.journal
    append_many = journal.append_many

    def watched(rows: Sequence[tuple[str, str, float, float]]) -> list[int]:
        pump = link.pump.snapshot()
        ids = append_many(rows)  # committed (or raised) before anything below
        batches.append((tuple(r[0] for r in rows), pump.set_rate_ml_h, pump.running))
        return ids

    journal.append_many = watched  # type: ignore[method-assign]
    return batches


def test_a_dose_change_is_one_transaction_before_the_pump_and_one_after(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        link.attach()
        link.request(LoadProgram(spec))
        assert link.request(StartInfusion(Decimal(8))).execution == "applied"
        batches = _watch(link)
        outcome = link.request(ChangeDose(Decimal(10)))
        assert outcome.execution == "applied"
        assert [kinds for kinds, _, _ in batches] == [
            ("request_decided", "command_issued"),
            ("readback",),
        ]
        # the verdict and the command were on disk while the pump still ran 30 mL/h
        assert batches[0][1:] == (30.0, True)
        assert batches[1][1:] == (37.5, True)  # the read-back saw the new rate


def test_a_start_journals_each_later_action_before_it_is_sent(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        link.attach()
        link.request(LoadProgram(spec))
        batches = _watch(link)
        assert link.request(StartInfusion(Decimal(8))).execution == "applied"
        kinds = [k for k, _, _ in batches]
        assert kinds == [("request_decided", "command_issued"), ("command_issued",), ("readback",)]
        assert batches[0][1:] == (0.0, False)  # set rate: not yet sent
        assert batches[1][1:] == (30.0, False)  # rate set, start not yet sent
        assert batches[2][1:] == (30.0, True)


def test_an_emergency_stop_is_journaled_whole_before_the_pump_stops(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        link.attach()
        link.request(LoadProgram(spec))
        link.request(StartInfusion(Decimal(8)))
        batches = _watch(link)
        assert link.request(EmergencyStop("api")).verdict.accepted
        first_kinds, rate, running = batches[0]
        assert first_kinds == ("request_decided", "emergency_stop_raised", "command_issued")
        assert running and rate == 30.0  # nothing sent yet
        assert not link.pump.snapshot().running


def test_a_refusal_and_an_acknowledgement_journal_no_command(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        link.attach()
        link.request(LoadProgram(spec))
        link.request(StartInfusion(Decimal(8)))
        batches = _watch(link)
        assert not link.request(ChangeDose(Decimal(80))).verdict.accepted
        assert link.request(AcknowledgeAlarms()).verdict.accepted
        assert [k for k, _, _ in batches] == [
            ("request_decided",),
            ("request_decided", "alarms_acknowledged"),
            ("readback",),  # an accepted request without pump actions still reads back
        ]


def test_the_shared_transaction_replays_to_the_live_state(
    library: DrugLibrary, spec: ProgramSpec, tmp_path: Path
) -> None:
    with LocalSafety(library=library, journal_path=tmp_path / "j.sqlite") as link:
        link.attach()
        link.request(LoadProgram(spec))
        link.request(StartInfusion(Decimal(8)))
        for dose in ("9", "8", "10", "9"):
            assert link.request(ChangeDose(Decimal(dose))).execution == "applied"
            link.advance(30.0)
        live = link.core.state
        replayed = replay_journal(link.core.config, link.journal).state
        assert replayed.history == live.history
        assert replayed.expected_rate == live.expected_rate == live.set_rate
        decided = [json.loads(e.payload) for e in link.journal.entries(kinds=["command_issued"])]
        assert len(decided) == 6  # set + start, then one set per change
