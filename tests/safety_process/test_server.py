"""The server and the client over a real Unix socket, the mock pump behind the core."""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from hil_tests.harness.processes import RawClient, wait_for
from safety.ipc.client import SafetyClient
from safety.ipc.link import (
    AlarmRaised,
    AuthenticationFailed,
    ControllerBusy,
    LinkDown,
    LinkRestored,
    NotAttached,
    Notice,
    SafetyLink,
    SafetyUnavailable,
    SessionLost,
    StatusChanged,
)
from safety.ipc.local import LocalSafety
from safety.ipc.messages import (
    Attach,
    Attached,
    ErrorCode,
    ErrorReply,
    GetSnapshot,
    Heartbeat,
    HeartbeatAck,
    Reply,
    RequestMessage,
    SnapshotReply,
    StatusNotice,
    Subscribe,
    Subscribed,
)
from safety.ipc.server import SafetyServer, ServerError
from safety.ipc.snapshots import differs
from safety.kernel.model import (
    ChangeDose,
    EmergencyStop,
    LoadProgram,
    ProgramSpec,
    RequestBody,
    StartInfusion,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.safety_process.conftest import ServerRig, make_server, stop_server


def client(rig: ServerRig, **kwargs: object) -> SafetyClient:
    return SafetyClient(rig.socket_path, key=rig.key, **kwargs)  # type: ignore[arg-type]


def start_infusing(c: SafetyClient, spec: ProgramSpec) -> None:
    c.attach()
    assert c.request(LoadProgram(spec)).verdict.accepted
    outcome = c.request(StartInfusion(Decimal(8)))
    assert outcome.verdict.accepted, outcome.verdict.message
    assert outcome.execution == "applied"


def raw_attached(rig: ServerRig) -> tuple[RawClient, str]:
    raw = RawClient(rig.socket_path)
    raw.authenticate(rig.key)
    raw.send(Attach(id=1))
    attached = raw.read_until(Attached)
    return raw, attached.session


# --------------------------------------------------------------------------- the happy path


def test_attach_program_start_and_titrate(rig: ServerRig, spec: ProgramSpec) -> None:
    with client(rig) as c:
        assert isinstance(c, SafetyLink)
        assert c.info.heartbeat_timeout_s == 1.0
        assert rig.core.library is not None
        assert c.info.library_hash == rig.core.library.content_hash
        snap = c.attach()
        assert snap.attached and snap.session == c.session
        loaded = c.request(LoadProgram(spec))
        assert loaded.verdict.accepted and loaded.snapshot.program == spec
        started = c.request(StartInfusion(Decimal(8)))
        assert started.verdict.accepted and started.execution == "applied"
        assert rig.pumps_at(30.0)
        refused = c.request(ChangeDose(Decimal(80)))
        assert refused.verdict.reason is Reason.HARD_MAX
        assert "hard maximum" in refused.verdict.message
        assert rig.pumps_at(30.0)
        rise = c.request(ChangeDose(Decimal(10)))
        assert rise.verdict.accepted and rise.snapshot.rate_ml_h == Decimal("37.5")
        assert rig.pumps_at(37.5)
        assert c.snapshot().rate_ml_h == Decimal("37.5")


def test_the_socket_is_private(rig: ServerRig) -> None:
    mode = rig.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_status_and_alarm_notices_reach_the_controller(rig: ServerRig, spec: ProgramSpec) -> None:
    notices: list[Notice] = []
    with client(rig) as c:
        c.subscribe(notices.append)
        start_infusing(c, spec)
        wait_for(
            lambda: any(isinstance(n, StatusChanged) and n.snapshot.running for n in notices),
            what="a status notice",
        )
        rig.driver.inject_faults("stall")
        wait_for(
            lambda: any(
                isinstance(n, AlarmRaised) and n.alarm.key == "pump:stall" for n in list(notices)
            ),
            what="the stall alarm notice",
        )


def test_a_status_the_requester_was_answered_with_is_pushed_to_the_others_only(
    rig: ServerRig, spec: ProgramSpec
) -> None:
    """The reply's outcome carries the state the request left: a status notice of that
    same state would tell the requester nothing (it cost a snapshot's encoding and decoding
    between two back-to-back commands), so it goes to every other subscriber only."""
    raw, session = raw_attached(rig)
    monitor = RawClient(rig.socket_path)
    try:
        monitor.authenticate(rig.key, name="monitor")
        monitor.send(Subscribe(id=1, on=True))
        monitor.read_until(Subscribed)
        body = LoadProgram(spec)
        raw.send(RequestMessage(id=2, session=session, seq=1, expires_at=time.monotonic() + 5,
                                body=body))  # fmt: skip
        reply = raw.read_until(Reply)
        assert reply.outcome.verdict.accepted
        answered = reply.outcome.snapshot
        assert answered.program is not None
        pushed = monitor.read_until(StatusNotice).snapshot
        assert pushed.program == answered.program
        assert not differs(pushed, answered)
        raw.send(GetSnapshot(id=3))  # whatever was pushed after the reply comes before this
        between = []
        while not isinstance(message := raw.read(), SnapshotReply):
            between.append(message)
        assert not [m for m in between if isinstance(m, StatusNotice)
                    and not differs(m.snapshot, answered)], between  # fmt: skip
    finally:
        monitor.close()
        raw.close()


def test_a_monitor_can_subscribe_without_attaching(rig: ServerRig, spec: ProgramSpec) -> None:
    notices: list[Notice] = []
    with client(rig) as controller, client(rig, name="monitor") as monitor:
        monitor.subscribe(notices.append)
        start_infusing(controller, spec)
        wait_for(
            lambda: any(isinstance(n, StatusChanged) and n.snapshot.running for n in list(notices)),
            what="status at the monitor",
        )
        assert monitor.session is None


# --------------------------------------------------------------------------- who may speak


def test_a_wrong_key_changes_nothing(
    rig: ServerRig, spec: ProgramSpec, caplog: pytest.LogCaptureFixture
) -> None:
    with client(rig) as c:
        start_infusing(c, spec)
        before = rig.decisive_entries()
        with (
            caplog.at_level(logging.WARNING, logger="safety.ipc"),
            pytest.raises(AuthenticationFailed),
        ):
            SafetyClient(rig.socket_path, key=os.urandom(32))
        wait_for(lambda: "authentication failed" in caplog.text, what="the log line")
        assert rig.decisive_entries() == before
        assert rig.pumps_at(30.0)
        assert c.snapshot().attached and c.heartbeat()  # the controller is undisturbed
        assert c.request(ChangeDose(Decimal(10))).verdict.accepted  # and still in charge


def test_a_client_that_never_authenticates_is_dropped(
    short_dir: Path, library: DrugLibrary
) -> None:
    rig = make_server(short_dir, library, auth_timeout_s=0.3)
    try:
        raw = RawClient(rig.socket_path)
        assert raw.closed_by_server()
        raw.close()
        with client(rig) as c:  # still serving
            assert c.snapshot().mode == "idle"
    finally:
        stop_server(rig)


@pytest.mark.parametrize(
    ("payload", "what"),
    [
        (b"this is not json\n", "non-JSON"),
        (b"{" + b" " * (70 * 1024), "oversized (no newline)"),
        (b'{"type":"attach","id":1,"pad":"' + b"x" * (70 * 1024) + b'"}\n', "oversized line"),
        (b'{"v":1,"type":"reboot_pump","id":1}\n', "unknown type"),
        (b'{"v":1,"type":"attach","id":1,"admin":true}\n', "extra field"),
        (b'{"v":2,"type":"attach","id":1}\n', "wrong version"),
        (
            b'{"v":1,"type":"request","id":1,"session":null,"seq":1,"expires_at":1e300,'
            b'"body":{"kind":"set_rate","rate_ml_h":"999"}}\n',
            "a pump action as a request",
        ),
        (b"\x00\xff\xfe garbage\n", "binary"),
    ],
)
def test_malformed_messages_change_nothing_and_the_server_keeps_serving(
    rig: ServerRig,
    spec: ProgramSpec,
    payload: bytes,
    what: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with client(rig) as c:
        start_infusing(c, spec)
        before = rig.decisive_entries()
        with caplog.at_level(logging.WARNING, logger="safety.ipc"):
            for authenticated in (False, True):
                raw = RawClient(rig.socket_path)
                if authenticated:
                    raw.authenticate(rig.key)
                else:
                    raw.read()  # the challenge
                raw.send_raw(payload)
                error = raw.read()
                assert isinstance(error, ErrorReply) and error.fatal, what
                assert error.code in (ErrorCode.BAD_MESSAGE, ErrorCode.NOT_AUTHENTICATED)
                assert raw.closed_by_server(), what
                raw.close()
        assert "dropped" in caplog.text
        assert rig.decisive_entries() == before, what
        assert rig.pumps_at(30.0)
        snap = c.snapshot()
        assert snap.attached and not snap.hold
        assert c.request(ChangeDose(Decimal(10))).verdict.accepted


def test_anything_before_hello_is_refused(rig: ServerRig) -> None:
    raw = RawClient(rig.socket_path)
    raw.read()
    raw.send(GetSnapshot(id=1))
    error = raw.read()
    assert isinstance(error, ErrorReply) and error.code is ErrorCode.NOT_AUTHENTICATED
    assert raw.closed_by_server()
    raw.close()


def test_a_duplicate_and_an_expired_request_are_refused(rig: ServerRig, spec: ProgramSpec) -> None:
    raw, session = raw_attached(rig)
    now = time.monotonic

    def send(seq: int, body: RequestBody, expires_at: float) -> Reply:
        raw.send(
            RequestMessage(id=100 + seq, session=session, seq=seq, expires_at=expires_at, body=body)
        )
        return raw.read_until(Reply)

    assert send(1, LoadProgram(spec), now() + 5).outcome.verdict.accepted
    assert send(2, StartInfusion(Decimal(8)), now() + 5).outcome.verdict.accepted
    replay = send(2, ChangeDose(Decimal(10)), now() + 5).outcome
    assert replay.verdict.reason is Reason.STALE_SEQUENCE
    older = send(1, ChangeDose(Decimal(10)), now() + 5).outcome
    assert older.verdict.reason is Reason.STALE_SEQUENCE
    expired = send(3, ChangeDose(Decimal(10)), now() - 0.5).outcome
    assert expired.verdict.reason is Reason.EXPIRED
    assert rig.pumps_at(30.0)
    assert send(4, ChangeDose(Decimal(10)), now() + 5).outcome.verdict.accepted
    raw.close()


def test_a_session_belongs_to_its_connection(rig: ServerRig, spec: ProgramSpec) -> None:
    """A second authenticated client that learnt the session still cannot use it."""
    with client(rig) as c:
        start_infusing(c, spec)
        intruder = RawClient(rig.socket_path)
        intruder.authenticate(rig.key)
        assert c.session is not None
        intruder.send(
            RequestMessage(
                id=1,
                session=c.session,
                seq=1000,
                expires_at=time.monotonic() + 30,
                body=ChangeDose(Decimal(10)),
            )
        )
        reply = intruder.read_until(Reply)
        assert not reply.outcome.verdict.accepted
        assert reply.outcome.verdict.reason is Reason.NOT_ATTACHED
        intruder.send(Heartbeat(id=2, session=c.session))
        assert intruder.read_until(HeartbeatAck).ok is False
        intruder.close()
        assert rig.pumps_at(30.0)
        assert c.request(ChangeDose(Decimal(10))).verdict.accepted  # seq 1000 did not count


def test_one_live_controller_at_a_time(rig: ServerRig, spec: ProgramSpec) -> None:
    with client(rig) as first, client(rig, name="second") as second:
        first.attach()
        with pytest.raises(ControllerBusy):
            second.attach()
        assert first.heartbeat()


def test_emergency_stop_from_any_authenticated_client(rig: ServerRig, spec: ProgramSpec) -> None:
    with client(rig) as c, client(rig, name="stop-panel") as panel:
        start_infusing(c, spec)
        with pytest.raises(NotAttached):
            panel.request(ChangeDose(Decimal(10)))
        outcome = panel.request(EmergencyStop("api"))
        assert outcome.verdict.accepted and outcome.snapshot.estopped
        assert not rig.pump.snapshot().running


# --------------------------------------------------------------------------- supervision


def test_controller_eof_holds_the_rate_at_once(rig: ServerRig, spec: ProgramSpec) -> None:
    c = client(rig)
    start_infusing(c, spec)
    c.close()
    snap = wait_for(rig.held, 5.0, "hold")
    assert snap.running and snap.rate_ml_h == Decimal("30.0")
    # held because of the EOF itself, not later by the heartbeat timeout
    assert any(
        a.key == "controller_lost" and a.priority == "high" and "(eof)" in a.message
        for a in snap.alarms
    )
    assert rig.pumps_at(30.0)
    with client(rig, name="monitor") as monitor:
        with pytest.raises(NotAttached):
            monitor.request(ChangeDose(Decimal(10)))
        monitor.attach()
        assert monitor.request(ChangeDose(Decimal(10))).verdict.accepted


def test_missed_heartbeats_hold_and_the_client_learns_it(rig: ServerRig, spec: ProgramSpec) -> None:
    raw, session = raw_attached(rig)  # attached, and never sends a heartbeat
    now = time.monotonic
    raw.send(
        RequestMessage(id=5, session=session, seq=1, expires_at=now() + 5, body=LoadProgram(spec))
    )
    assert raw.read_until(Reply).outcome.verdict.accepted
    raw.send(
        RequestMessage(
            id=6, session=session, seq=2, expires_at=now() + 5, body=StartInfusion(Decimal(8))
        )
    )
    assert raw.read_until(Reply).outcome.verdict.accepted
    snap = wait_for(rig.held, 5.0, "the heartbeat timeout")
    assert any(a.key == "controller_lost" and "heartbeat" in a.message for a in snap.alarms)
    raw.send(Heartbeat(id=7, session=session))
    assert raw.read_until(HeartbeatAck).ok is False
    raw.close()


def test_a_client_that_comes_back_is_told_its_session_is_gone(
    rig: ServerRig, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    notices: list[Notice] = []
    gate = threading.Event()
    gate.set()
    with client(rig) as c:
        c.subscribe(notices.append)
        start_infusing(c, spec)
        real_send = c._send

        def paused_send(message: object) -> None:  # a stopped process sends nothing
            if isinstance(message, Heartbeat) and not gate.is_set():
                return
            real_send(message)  # type: ignore[arg-type]

        monkeypatch.setattr(c, "_send", paused_send)
        gate.clear()
        wait_for(lambda: rig.core.snapshot().hold, 5.0, "hold")
        gate.set()
        wait_for(lambda: any(isinstance(n, SessionLost) for n in list(notices)), 5.0, "SessionLost")
        assert not c.attached
        refused = c.request(ChangeDose(Decimal(10)))  # the kernel says why, and journals it
        assert refused.verdict.reason is Reason.HOLD
        c.attach()
        assert c.request(ChangeDose(Decimal(10))).verdict.accepted


def test_the_client_sees_the_safety_process_die(
    short_dir: Path, library: DrugLibrary, spec: ProgramSpec
) -> None:
    rig = make_server(short_dir, library)
    failures: list[LinkDown] = []
    notices: list[Notice] = []
    c = client(rig, on_failure=failures.append)
    try:
        c.subscribe(notices.append)
        start_infusing(c, spec)
    finally:
        stop_server(rig)
    down = wait_for(lambda: failures[0] if failures else None, 2.0, "on_failure")
    assert down.final
    assert "shutting down" in down.reason or "eof" in down.reason
    wait_for(
        lambda: any(isinstance(n, LinkDown) and n.final for n in list(notices)),
        2.0,
        "LinkDown notice",
    )
    with pytest.raises(SafetyUnavailable):
        c.snapshot()
    c.close()


def test_bytes_waiting_unread_are_not_silence() -> None:
    """A controller stopped (SIGSTOP) past the heartbeat timeout wakes with the safety
    process's messages waiting in its socket; its heartbeat thread may run before its
    reader. The safety process was not silent then, and must not be reported as such
    (``SafetyClient._unread``, asked before a ``LinkDown``)."""
    ours, theirs = socket.socketpair()
    link = SafetyClient.__new__(SafetyClient)  # only the socket matters here
    link._sock = ours
    try:
        assert not link._unread()
        theirs.sendall(b'{"type": "status"}\n')
        assert link._unread()
        ours.recv(4096)
        assert not link._unread()
    finally:
        ours.close()
        theirs.close()
    assert not link._unread()  # closed: the reader reports that, not this


def test_the_client_sees_a_hung_safety_process(short_dir: Path, library: DrugLibrary) -> None:
    rig = make_server(short_dir, library, heartbeat_timeout_s=0.5)
    hang = threading.Event()
    resume = threading.Event()
    real_service = rig.core.service

    def service() -> float:
        if hang.is_set():
            resume.wait(10)
            hang.clear()
        return real_service()

    rig.core.service = service  # type: ignore[method-assign]
    notices: list[Notice] = []
    c = client(rig)
    try:
        c.subscribe(notices.append)
        hang.set()
        wait_for(
            lambda: any(isinstance(n, LinkDown) and not n.final for n in list(notices)),
            5.0,
            "LinkDown(final=False)",
        )
        c.reply_timeout_s = 0.3
        with pytest.raises(SafetyUnavailable, match="no answer"):
            c.snapshot()
        c.reply_timeout_s = 10.0
        resume.set()
        wait_for(
            lambda: any(isinstance(n, LinkRestored) for n in list(notices)), 5.0, "LinkRestored"
        )
        assert c.snapshot().mode == "idle"
    finally:
        resume.set()
        c.close()
        stop_server(rig)


def test_a_dead_heartbeat_thread_is_reported_and_the_safety_side_holds(
    rig: ServerRig, spec: ProgramSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[LinkDown] = []
    c = client(rig, on_failure=failures.append)
    start_infusing(c, spec)
    real_send = c._send

    def broken(message: object) -> None:
        if isinstance(message, Heartbeat):
            raise RuntimeError("simulated bug in the heartbeat path")
        real_send(message)  # type: ignore[arg-type]

    monkeypatch.setattr(c, "_send", broken)
    down = wait_for(lambda: failures[0] if failures else None, 5.0, "the failure report")
    assert "heartbeat thread failed" in down.reason and "simulated bug" in down.reason
    with pytest.raises(SafetyUnavailable):
        c.snapshot()
    # the link closed itself, so the safety process holds at once (no silent controller)
    snap = wait_for(rig.held, 2.0, "hold")
    assert snap.running
    c.close()


def test_attach_request_snapshot_over_raw_lines(rig: ServerRig) -> None:
    raw, session = raw_attached(rig)
    raw.send(GetSnapshot(id=3))
    snap = raw.read_until(SnapshotReply)
    assert snap.id == 3 and snap.snapshot.session == session
    raw.close()


# --------------------------------------------------------------------------- the socket file


def test_a_stale_socket_is_replaced_and_a_live_one_refused(
    short_dir: Path, library: DrugLibrary, rig: ServerRig
) -> None:
    idle = LocalSafety(library=library)  # a core nobody serves, to build more servers on
    with pytest.raises(ServerError, match="another process is serving"):
        SafetyServer(idle.core, rig.socket_path, rig.key).open()
    assert rig.socket_path.exists()  # the live one was left alone
    stale_path = short_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_path))
    stale.close()  # the file stays, nobody listens: a crashed process's leftover
    fresh = SafetyServer(idle.core, stale_path, rig.key)
    fresh.open()
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(stale_path))
        probe.close()
        assert stat.S_IMODE(stale_path.stat().st_mode) == 0o600
    finally:
        fresh.close()
    assert not stale_path.exists()
    regular = short_dir / "file.sock"
    regular.write_text("not a socket")
    with pytest.raises(ServerError, match="not a socket"):
        SafetyServer(idle.core, regular, rig.key).open()
    idle.close()
