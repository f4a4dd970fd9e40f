"""The observer role (issue 12, S17): its own key; status, alarms and the journal stream;
never a command: one that tries is refused, put on record in the safety journal, and
dropped, and nothing reaches the kernel or the pump."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from hil_tests.harness.processes import RawClient, wait_for
from safety.ipc.client import SafetyClient
from safety.ipc.link import AlarmRaised, AuthenticationFailed, StatusChanged
from safety.ipc.messages import Attach, ErrorCode, ErrorReply, RequestMessage
from safety.ipc.observer import JournalLines, ObserverClient, ObserverNotice
from safety.journal_text import JournalTail, ProgramTracker
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    EmergencyStop,
    LoadProgram,
    Now,
    ProgramSpec,
    PumpReading,
    ReadbackReceived,
    RequestBody,
    StartInfusion,
    Ticked,
)
from safety.library import DrugLibrary
from tests.safety_process.conftest import ServerRig, make_server, stop_server


def observer(rig: ServerRig, **kwargs: object) -> ObserverClient:
    return ObserverClient(rig.socket_path, key=rig.observer_key, **kwargs)  # type: ignore[arg-type]


def start_infusing(c: SafetyClient, spec: ProgramSpec) -> None:
    c.attach()
    assert c.request(LoadProgram(spec)).verdict.accepted
    assert c.request(StartInfusion(Decimal(8))).execution == "applied"


def test_an_observer_sees_status_alarms_and_the_journal(rig: ServerRig, spec: ProgramSpec) -> None:
    notices: list[ObserverNotice] = []
    with SafetyClient(rig.socket_path, key=rig.key) as c:
        c.attach()
        assert c.request(LoadProgram(spec)).verdict.accepted
        with observer(rig, name="dashboard") as obs:
            obs.start(notices.append)
            # the tail arrives first, and holds what happened before the observer came
            wait_for(lambda: any(isinstance(n, JournalLines) for n in notices), 5.0, "tail")
            first = next(n for n in notices if isinstance(n, JournalLines))
            assert any("program loaded: norepinephrine" in line.text for line in first.lines)
            assert c.request(StartInfusion(Decimal(8))).execution == "applied"
            wait_for(
                lambda: any(
                    isinstance(n, StatusChanged) and n.snapshot.running for n in list(notices)
                ),
                5.0,
                "status at the observer",
            )
            wait_for(
                lambda: any(
                    isinstance(n, JournalLines)
                    and any("request start 8 -> accepted" in x.text for x in n.lines)
                    for n in list(notices)
                ),
                5.0,
                "the start in the journal stream",
            )
            rig.driver.inject_faults("stall")
            wait_for(
                lambda: any(
                    isinstance(n, AlarmRaised) and n.alarm.key == "pump:stall"
                    for n in list(notices)
                ),
                5.0,
                "the alarm at the observer",
            )
            ids = [x.id for n in notices if isinstance(n, JournalLines) for x in n.lines]
            assert ids == sorted(ids)  # in journal order
            assert not any(
                x.kind == "ticked" for n in notices if isinstance(n, JournalLines) for x in n.lines
            )


@pytest.mark.parametrize(
    "body",
    [ChangeDose(Decimal(40)), AcknowledgeAlarms(None), EmergencyStop("api")],
    ids=["change_dose", "acknowledge", "emergency_stop"],
)
def test_an_observer_that_commands_is_refused_on_record_and_dropped(
    rig: ServerRig, spec: ProgramSpec, body: RequestBody
) -> None:
    with SafetyClient(rig.socket_path, key=rig.key) as c:
        start_infusing(c, spec)
        before = rig.journal.last_id()
        raw = RawClient(rig.socket_path)
        raw.authenticate(rig.observer_key, name="rogue-observer", role="observer")
        raw.send(RequestMessage(id=9, session=None, seq=1, expires_at=0.0, body=body))
        error = raw.read()
        assert isinstance(error, ErrorReply) and error.fatal
        assert error.code is ErrorCode.READ_ONLY and "observer" in error.message
        assert raw.closed_by_server()
        entries = list(rig.journal.entries(since_id=before))
        decided = [json.loads(e.payload) for e in entries if e.kind == "request_decided"]
        assert [(d["accepted"], d["reason"], d["body"]["kind"]) for d in decided] == [
            (False, "observer_read_only", body.kind)
        ]
        drops = [json.loads(e.payload) for e in entries if e.kind == "client_dropped"]
        assert [(d["role"], "rogue-observer" in d["client"]) for d in drops] == [("observer", True)]
        assert not [e for e in entries if e.kind in ("command_issued", "alarms_acknowledged")]
        assert rig.pumps_at(30.0)
        snap = c.snapshot()
        assert snap.attached and not snap.estopped
        assert c.request(ChangeDose(Decimal(10))).verdict.accepted  # still in charge


def test_an_observer_cannot_attach(rig: ServerRig) -> None:
    raw = RawClient(rig.socket_path)
    raw.authenticate(rig.observer_key, name="wants-control", role="observer")
    raw.send(Attach(id=1))
    error = raw.read()
    assert isinstance(error, ErrorReply) and error.code is ErrorCode.READ_ONLY
    assert raw.closed_by_server()
    drops = [e.payload for e in rig.journal.entries(kinds=["client_dropped"])]
    assert any("tried to attach" in d and "wants-control" in d for d in drops)
    assert not rig.core.snapshot().attached


def test_each_key_opens_only_its_own_role(rig: ServerRig) -> None:
    with pytest.raises(AuthenticationFailed):
        ObserverClient(rig.socket_path, key=rig.key)  # the controller's key as an observer
    with pytest.raises(AuthenticationFailed):
        SafetyClient(rig.socket_path, key=rig.observer_key)  # and the other way round
    with pytest.raises(AuthenticationFailed):
        ObserverClient(rig.socket_path, key=os.urandom(32))


def test_without_an_observer_key_no_observer_gets_in(short_dir: Path, library: DrugLibrary) -> None:
    rig = make_server(short_dir, library)
    rig.server.dispatcher._observer_key = None
    try:
        with pytest.raises(AuthenticationFailed, match="no observer key"):
            observer(rig)
    finally:
        stop_server(rig)


# --------------------------------------------------------------------------- the tail


def test_the_tail_leaves_out_ticks_and_readbacks_that_say_nothing_new() -> None:
    tail = JournalTail(ProgramTracker())
    now = Now(10.0, 1.0)
    running = PumpReading(True, Decimal("15"), 1.0)
    lines = [
        tail.line(1, Ticked(now)),
        tail.line(2, ReadbackReceived(running, now)),
        tail.line(3, ReadbackReceived(PumpReading(True, Decimal("15"), 1.5), now)),
        tail.line(4, ReadbackReceived(PumpReading(True, Decimal("18.75"), 2.0), now)),
    ]
    assert lines[0] is None and lines[2] is None
    assert lines[1] is not None and lines[1].text == "read-back: running 15 mL/h"
    assert lines[3] is not None and lines[3].id == 4 and lines[3].clinical == 10.0
