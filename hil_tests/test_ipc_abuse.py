"""Case group 6: abuse of the safety process's socket, against the real process.

A wrong key, malformed and oversized lines, a replayed (duplicate) command and an expired
one, each while an infusion runs on an emulated NE-1000. Whatever arrives: nothing
changes at the pump (truth, frame log), the offender is dropped or refused with its
reason (S8), the attached controller is undisturbed, and the process keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from decimal import Decimal

import pytest

from controller.session import Session
from hil_tests.conftest import MakeBench
from hil_tests.harness.bench import HilBench
from hil_tests.harness.processes import RawClient, stray, wait_for
from hil_tests.harness.pumps import NE1000
from hil_tests.harness.truth import changes_between, describe
from safety.ipc.client import SafetyClient
from safety.ipc.framing import encode
from safety.ipc.link import AuthenticationFailed
from safety.ipc.messages import (
    Attach,
    Attached,
    ErrorCode,
    ErrorReply,
    GetSnapshot,
    Reply,
    RequestMessage,
)
from safety.journal_read import read_safety_events
from safety.kernel.model import (
    ChangeDose,
    ClientDropped,
    Event,
    LoadProgram,
    ProgramSpec,
    RequestBody,
    RequestDecided,
    StartInfusion,
)
from safety.library import DrugLibrary
from safety.reasons import Reason

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]

RATE_8 = 15.0  # mL/h: 8 mcg/min at 32 mcg/mL
RATE_10 = 18.75

#: one line each; every one must drop its sender and change nothing
MALFORMED: list[tuple[str, bytes]] = [
    ("not JSON", b"this is not json\n"),
    ("binary", b"\x00\xff\xfe garbage\n"),
    ("oversized, no newline", b"{" + b" " * (70 * 1024)),
    ("oversized line", b'{"v":1,"type":"attach","id":1,"pad":"' + b"x" * (70 * 1024) + b'"}\n'),
    ("unknown type", b'{"v":1,"type":"reboot_pump","id":1}\n'),
    ("extra field", b'{"v":1,"type":"attach","id":1,"admin":true}\n'),
    ("another version", b'{"v":2,"type":"attach","id":1}\n'),
    (
        "a pump action as a request",
        b'{"v":1,"type":"request","id":1,"session":null,"seq":1,"expires_at":1e300,'
        b'"body":{"kind":"set_rate","rate_ml_h":"999"}}\n',
    ),
    (
        "an absurd dose",
        b'{"v":1,"type":"request","id":1,"session":null,"seq":1,"expires_at":1e300,'
        b'"body":{"kind":"change_dose","dose":"1E+999999999","confirm_soft_limits":false}}\n',
    ),
    ("deep nesting", b'{"v":1,"type":"attach","id":' + b"[" * 5000 + b"]" * 5000 + b"}\n"),
]


def decisions(bench: HilBench) -> list[Event]:
    return [e for e in read_safety_events(bench.safety_journal) if isinstance(e, RequestDecided)]


def infusing(bench: HilBench) -> Session:
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    assert session.start(8).execution == "applied"
    return session


def still_in_charge(bench: HilBench, session: Session, since: float, sets: int) -> None:
    """Nothing reached the pump since ``since``; the process serves; the controller is
    still attached and its next order is carried out."""
    assert bench.safety is not None and bench.safety.alive()
    truth = bench.truth()
    assert changes_between(truth, since) == [], describe(truth)
    assert bench.set_rates_executed() == sets
    snap = session.status()
    assert snap.attached and not snap.hold and session.link_down is None
    outcome = session.order(ChangeDose(Decimal(10)))
    assert outcome.execution == "applied", outcome
    assert [s.rate_ml_h for s in changes_between(bench.truth(), since)] == [RATE_10]
    bench.assert_invariants()


def attached_raw(bench: HilBench, library: DrugLibrary) -> tuple[RawClient, str]:
    """A raw connection that attaches as the controller and starts 8 mcg/min itself."""
    raw = bench.raw(name="hil-raw-controller")
    raw.send(Attach(id=1))
    session = raw.read_until(Attached).session
    spec = ProgramSpec(
        library.content_hash, "norepinephrine", "adult_icu", "standard", "8 mg/250 mL", "D5W"
    )
    for seq, body in ((1, LoadProgram(spec)), (2, StartInfusion(Decimal(8)))):
        assert request(raw, session, seq, body).outcome.verdict.accepted
    return raw, session


def request(
    raw: RawClient, session: str | None, seq: int, body: RequestBody, ttl_s: float = 5.0
) -> Reply:
    raw.send(
        RequestMessage(
            id=100 + seq, session=session, seq=seq, expires_at=time.monotonic() + ttl_s, body=body
        )
    )
    return raw.read_until(Reply)


def test_a_wrong_key_is_refused_and_changes_nothing(make_bench: MakeBench) -> None:
    bench = make_bench(NE1000)
    session = infusing(bench)
    since, sets, before = bench.now(), bench.set_rates_executed(), len(decisions(bench))

    with pytest.raises(AuthenticationFailed):
        SafetyClient(bench.socket, key=os.urandom(32), name="intruder")
    raw = bench.raw(authenticate=False)
    raw.read()  # the challenge
    # a request before any proof of the key: dropped, never decided
    raw.send(
        RequestMessage(id=1, session=None, seq=1, expires_at=1e12, body=ChangeDose(Decimal(40)))
    )
    error = raw.read()
    assert isinstance(error, ErrorReply) and error.fatal
    assert error.code is ErrorCode.NOT_AUTHENTICATED
    assert raw.closed_by_server()
    assert len(decisions(bench)) == before  # nothing reached the kernel
    assert "authentication failed" in bench.safety.stderr_text()  # type: ignore[union-attr]
    still_in_charge(bench, session, since, sets)


def test_malformed_and_oversized_messages_drop_only_their_sender(make_bench: MakeBench) -> None:
    bench = make_bench(NE1000)
    session = infusing(bench)
    since, sets, before = bench.now(), bench.set_rates_executed(), len(decisions(bench))

    for what, payload in MALFORMED:
        for authenticated in (False, True):
            raw = bench.raw(authenticate=authenticated)
            if not authenticated:
                raw.read()  # the challenge
            raw.send_raw(payload)
            error = raw.read()
            assert isinstance(error, ErrorReply) and error.fatal, what
            assert error.code in (ErrorCode.BAD_MESSAGE, ErrorCode.NOT_AUTHENTICATED), what
            assert raw.closed_by_server(), what
            raw.close()
    assert len(decisions(bench)) == before  # not one of them reached the kernel
    assert bench.safety is not None and "dropped" in bench.safety.stderr_text()
    still_in_charge(bench, session, since, sets)


def test_a_replayed_command_is_refused(make_bench: MakeBench, library: DrugLibrary) -> None:
    bench = make_bench(NE1000, heartbeat_timeout_s=10.0)  # the raw controller is slow to beat
    raw, session = attached_raw(bench, library)
    since = bench.now()

    line = encode(
        RequestMessage(
            id=7,
            session=session,
            seq=3,
            expires_at=time.monotonic() + 30,
            body=ChangeDose(Decimal(10)),
        )
    )
    raw.send_raw(line)
    assert raw.read_until(Reply).outcome.verdict.accepted
    sets = bench.set_rates_executed()
    raw.send_raw(line)  # the very same bytes again: a duplicate
    duplicate = raw.read_until(Reply).outcome
    assert duplicate.verdict.reason is Reason.STALE_SEQUENCE, duplicate.verdict
    # the captured line replayed from another authenticated connection: not its session
    intruder = bench.raw(name="hil-intruder")
    intruder.send_raw(line)
    replayed = intruder.read_until(Reply).outcome
    assert replayed.verdict.reason is Reason.NOT_ATTACHED, replayed.verdict
    # an older sequence number: out of order
    older = request(raw, session, 2, ChangeDose(Decimal(8))).outcome
    assert older.verdict.reason is Reason.STALE_SEQUENCE, older.verdict

    truth = bench.truth()
    assert [s.rate_ml_h for s in changes_between(truth, since)] == [RATE_10], describe(truth)
    assert bench.set_rates_executed() == sets
    assert request(raw, session, 4, ChangeDose(Decimal(8))).outcome.verdict.accepted
    bench.assert_invariants()


def test_an_expired_command_is_refused(make_bench: MakeBench, library: DrugLibrary) -> None:
    bench = make_bench(NE1000, heartbeat_timeout_s=10.0)
    raw, session = attached_raw(bench, library)
    since, sets = bench.now(), bench.set_rates_executed()

    stale = request(raw, session, 3, ChangeDose(Decimal(10)), ttl_s=-0.5).outcome
    assert stale.verdict.reason is Reason.EXPIRED, stale.verdict
    assert "expired" in stale.verdict.message
    truth = bench.truth()
    assert changes_between(truth, since) == [], describe(truth)
    assert bench.set_rates_executed() == sets
    # the same change, in time, is carried out: the refusal was the expiry's alone
    fresh = request(raw, session, 4, ChangeDose(Decimal(10))).outcome
    assert fresh.verdict.accepted and fresh.execution == "applied"
    assert [s.rate_ml_h for s in changes_between(bench.truth(), since)] == [RATE_10]
    bench.assert_invariants()


# --------------------------------------------------------------------------- issue 9's abuse

#: numbers in a form the protocol refuses; each drops its sender, naming the field
STRICT_NUMBERS: list[tuple[str, str, str]] = [
    ("full-width digits", '"seq":"\uff11\uff12"', "seq"),
    ("a trailing space", '"seq":3,"body":{"kind":"change_dose","dose":"10 "}', "body.dose"),
    ("1e3 as a sequence number", '"seq":1e3', "seq"),
    ("an expiry of 1e308", '"seq":3,"expires_at":1e308', "expires_at"),
]


def test_numbers_in_another_form_are_refused_by_the_real_process(
    make_bench: MakeBench, library: DrugLibrary
) -> None:
    bench = make_bench(NE1000, heartbeat_timeout_s=10.0)
    raw, session = attached_raw(bench, library)
    since, sets, before = bench.now(), bench.set_rates_executed(), len(decisions(bench))
    for what, fields, name in STRICT_NUMBERS:
        other = bench.raw(name="hil-numbers")
        base = {
            "v": 1,
            "type": "request",
            "id": 5,
            "session": session,
            "seq": 3,
            "expires_at": time.monotonic() + 5,
            "body": {"kind": "change_dose", "dose": "10"},
        }
        line = json.dumps(base)[:-1] + "," + fields + "}"
        # a later duplicate key wins in JSON objects: the field under test replaces the base
        other.send_raw(line.encode("utf-8") + b"\n")
        error = other.read_until(ErrorReply)
        assert error.fatal and error.code is ErrorCode.BAD_MESSAGE, what
        assert name in error.message, (what, error.message)
        assert other.closed_by_server(), what
    assert len(decisions(bench)) == before  # not one reached the kernel
    assert changes_between(bench.truth(), since) == []
    assert bench.set_rates_executed() == sets
    assert request(raw, session, 3, ChangeDose(Decimal(10))).outcome.verdict.accepted
    bench.assert_invariants()


def test_stray_connections_never_lock_a_restarted_controller_out(make_bench: MakeBench) -> None:
    bench = make_bench(NE1000)
    session = infusing(bench)
    session.close(hang_up=True)  # the controller goes; the safety process holds (S11)
    silent = stray(bench.socket, 7)  # seven silent connections, held
    forever = stray(bench.socket, 0, forever=True)  # one more that reconnects for ever
    try:
        again = bench.connect(name="hil-controller-again")
        assert again.status().attached
        outcome = again.order(ChangeDose(Decimal(10)))
        assert outcome.execution == "applied", outcome
    finally:
        for process in (silent, forever):
            process.kill()
            process.wait()
    bench.assert_invariants()


def test_half_lines_and_non_readers_are_dropped_by_the_real_process(
    make_bench: MakeBench,
) -> None:
    bench = make_bench(NE1000)
    session = infusing(bench)
    since, sets = bench.now(), bench.set_rates_executed()
    half = bench.raw(name="hil-half-line")
    half.send_raw(b'{"v":1,"type":"get_snap')
    error = half.read_until(ErrorReply)
    assert error.code is ErrorCode.TOO_SLOW and "incomplete line" in error.message
    deaf = bench.raw(name="hil-never-reads")
    deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with contextlib.suppress(OSError):  # the server hangs up part-way: the case is made
        for i in range(20000):
            deaf.send(GetSnapshot(id=i + 10))

    def on_record() -> list[str]:
        events = read_safety_events(bench.safety_journal)
        return [e.why for e in events if isinstance(e, ClientDropped)]

    wait_for(
        lambda: any("did not read" in x for x in on_record()),
        15.0,
        "the non-reader dropped and on record",
    )
    whys = on_record()
    assert any("incomplete line" in x for x in whys)
    assert session.status().attached  # the controller was never held up
    assert changes_between(bench.truth(), since) == []
    assert bench.set_rates_executed() == sets
    bench.assert_invariants()
