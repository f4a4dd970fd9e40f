"""``LocalSafety``: the in-process link, on virtual clocks, through the JSON messages."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from safety.host.core import HostTiming
from safety.ipc.framing import decode_client
from safety.ipc.link import (
    AlarmRaised,
    LinkDown,
    NotAttached,
    Notice,
    SafetyLink,
    SafetyUnavailable,
    SessionLost,
    StatusChanged,
)
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
from safety.reasons import Reason


def infusing(link: LocalSafety, spec: ProgramSpec, dose: str = "8") -> None:
    link.attach()
    assert link.request(LoadProgram(spec)).verdict.accepted
    outcome = link.request(StartInfusion(Decimal(dose)))
    assert outcome.verdict.accepted, outcome.verdict.message
    assert outcome.execution == "applied"


def test_it_is_a_safety_link(library: DrugLibrary) -> None:
    with LocalSafety(library=library) as link:
        assert isinstance(link, SafetyLink)


def test_program_start_and_titrate_through_the_messages(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        infusing(link, spec)
        assert link.pump.snapshot().set_rate_ml_h == pytest.approx(30.0)
        refused = link.request(ChangeDose(Decimal(80)))
        assert not refused.verdict.accepted
        assert refused.verdict.reason is Reason.HARD_MAX
        assert refused.execution == "not executed"
        rise = link.request(ChangeDose(Decimal(10)))
        assert rise.verdict.accepted
        assert rise.snapshot.rate_ml_h == Decimal("37.5")
        assert link.pump.snapshot().set_rate_ml_h == pytest.approx(37.5)


def test_every_request_crosses_the_json_validation(
    library: DrugLibrary, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bytes] = []
    real = decode_client

    def spy(line: bytes) -> object:
        seen.append(line)
        return real(line)

    monkeypatch.setattr("safety.ipc.dispatch.decode_client", spy)
    with LocalSafety(library=library) as link:
        link.attach()
        link.request(LoadProgram(spec))
    assert any(b'"type":"request"' in line and b"load_program" in line for line in seen)
    assert any(b'"type":"hello"' in line for line in seen)


def test_time_advances_the_pump_and_the_dose(library: DrugLibrary, spec: ProgramSpec) -> None:
    with LocalSafety(library=library) as link:
        infusing(link, spec)
        link.advance(600)  # 10 min at 30 mL/h = 5 mL
        snap = link.snapshot()
        assert snap.infused_ml == pytest.approx(5.0, abs=0.05)
        assert snap.attached and not snap.hold  # heartbeats were sent as time passed


def test_a_hung_controller_is_held_after_the_heartbeat_timeout(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    notices: list[Notice] = []
    timing = HostTiming(heartbeat_timeout_s=2.0, poll_period_s=1.0)
    with LocalSafety(library=library, timing=timing) as link:
        link.subscribe(notices.append)
        infusing(link, spec)
        link.stop_heartbeats()
        link.advance(1.9)
        assert not link.snapshot().hold
        link.advance(0.2)
        snap = link.snapshot()
        assert snap.hold and not snap.attached
        assert snap.running and snap.rate_ml_h == Decimal("30.0")  # the rate is held
        assert any(a.key == "controller_lost" and a.priority == "high" for a in snap.alarms)
        assert any(isinstance(n, AlarmRaised) and n.alarm.key == "controller_lost" for n in notices)
        refused = link.request(ChangeDose(Decimal(9)))
        assert refused.verdict.reason is Reason.HOLD
        assert link.heartbeat() is False
        assert any(isinstance(n, SessionLost) for n in notices)
        link.attach()  # re-attach and re-sync ends the hold
        assert link.request(ChangeDose(Decimal(9))).verdict.accepted


def test_a_dead_controller_is_held_at_once(library: DrugLibrary, spec: ProgramSpec) -> None:
    with LocalSafety(library=library) as link:
        infusing(link, spec)
        link.kill_controller()
        snap = link.snapshot()
        assert snap.hold and snap.running and snap.rate_ml_h == Decimal("30.0")
        with pytest.raises(NotAttached):
            link.request(ChangeDose(Decimal(9)))
        link.attach()
        assert not link.snapshot().hold


def test_emergency_stop_needs_no_session(library: DrugLibrary, spec: ProgramSpec) -> None:
    with LocalSafety(library=library) as link:
        infusing(link, spec)
        link.kill_controller()
        outcome = link.request(EmergencyStop("api"))
        assert outcome.verdict.accepted
        assert not link.pump.snapshot().running
        assert outcome.snapshot.estopped


def test_the_stop_button_stops_the_pump(library: DrugLibrary, spec: ProgramSpec) -> None:
    with LocalSafety(library=library) as link:
        infusing(link, spec)
        outcome = link.press_stop_button()
        assert outcome.verdict.accepted and not link.pump.snapshot().running
        link.request(AcknowledgeAlarms())


def test_notices_report_status_and_new_alarms(library: DrugLibrary, spec: ProgramSpec) -> None:
    notices: list[Notice] = []
    with LocalSafety(library=library) as link:
        link.subscribe(notices.append)
        infusing(link, spec)
        # the link's own requests: each outcome carries the state it left; no notice
        # repeats it (it would tell the requester nothing)
        assert not [n for n in notices if isinstance(n, StatusChanged)]
        link.inject_faults("occlusion")
        link.advance(120)
        assert any(isinstance(n, StatusChanged) and not n.snapshot.running for n in notices)
        raised = [n.alarm.key for n in notices if isinstance(n, AlarmRaised)]
        assert "pump:occlusion" in raised
        assert raised.count("pump:occlusion") == 1  # once, not on every status
    assert isinstance(notices[-1], LinkDown) and notices[-1].final


def test_a_status_notice_shows_the_state_when_it_is_pushed(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    """The core only says it changed; the dispatcher builds the status when it pushes.
    After several events with no push between them, the one status pushed is the state
    after the last of them (never one from an earlier event), after their new alarms."""
    notices: list[Notice] = []
    with LocalSafety(library=library) as link:
        infusing(link, spec)
        link.advance(60)
        link.subscribe(notices.append)
        link.core.emergency_stop("button")  # several events, nothing delivered yet
        assert notices == []
        link.service()
        statuses = [n.snapshot for n in notices if isinstance(n, StatusChanged)]
        assert len(statuses) == 1
        pushed, now = statuses[0], link.core.snapshot()
        assert pushed.estopped and not pushed.running
        assert (pushed.last_seq, pushed.alarms, pushed.channels) == (
            now.last_seq,
            now.alarms,
            now.channels,
        )
        kinds = [type(n) for n in notices]
        assert AlarmRaised in kinds and kinds.index(AlarmRaised) < kinds.index(StatusChanged)
        notices.clear()
        link.service()  # nothing changed since: no status again
        assert not any(isinstance(n, StatusChanged) for n in notices)


def test_a_restart_replays_and_leaves_the_rate_alone(
    library: DrugLibrary, spec: ProgramSpec, tmp_path: Path
) -> None:
    with LocalSafety(library=library, journal_path=tmp_path / "j.sqlite") as link:
        infusing(link, spec)
        link.advance(300)
        before = link.snapshot()
        link.restart()
        after = link.snapshot()
        assert after.running and after.rate_ml_h == before.rate_ml_h
        assert after.program == before.program
        assert after.infused_ml == pytest.approx(before.infused_ml)
        assert link.pump.snapshot().set_rate_ml_h == pytest.approx(30.0)
        assert replay_journal(link.core.config, link.journal).state == link.core.state


def test_restart_needs_a_journal_file(library: DrugLibrary) -> None:
    with LocalSafety(library=library) as link, pytest.raises(ValueError, match="journal_path"):
        link.restart()


def test_a_closed_link_is_unavailable(library: DrugLibrary) -> None:
    link = LocalSafety(library=library)
    link.close()
    with pytest.raises(SafetyUnavailable):
        link.snapshot()


def test_an_unattached_change_is_refused_locally(library: DrugLibrary) -> None:
    with LocalSafety(library=library) as link, pytest.raises(NotAttached):
        link.request(ChangeDose(Decimal(1)))


def test_the_timers_run_when_they_fall_due_inside_one_advance(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    """A running infusion always has a clinical deadline ahead (its cap window, its wean
    window); the liveness timers (the poll here) still run at their own instants inside a
    long ``advance``, not at its end."""
    timing = HostTiming(poll_period_s=60.0, keep_alive_period_s=600.0, heartbeat_timeout_s=1e4)
    with LocalSafety(library=library, timing=timing) as link:
        infusing(link, spec)
        link.stop_heartbeats()
        assert link.core.next_deadline() is not None
        started = link.clinical.now()
        before = link.core.journal.last_id()
        link.advance(150)
        polls = [
            e.clinical - started
            for e in link.core.journal.entries(since_id=before)
            if e.kind == "readback"
        ]
        assert polls == pytest.approx([0.0, 60.0, 120.0], abs=1e-6), polls
