"""The server's bounds on its clients (issue 9): strays never lock the controller out, a
half line is not held forever, a client that does not read is dropped, never waited for.

Real Unix socket, the server on a thread (``conftest.make_server``), short limits so
that every case takes well under a second of waiting.
"""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path

import pytest

from hil_tests.harness.processes import RawClient, stray, wait_for
from safety.ipc.client import SafetyClient
from safety.ipc.link import SafetyUnavailable
from safety.ipc.messages import (
    ErrorCode,
    ErrorReply,
    GetSnapshot,
    Subscribe,
)
from safety.ipc.server import Limits
from safety.kernel.model import ChangeDose, LoadProgram, ProgramSpec, StartInfusion
from safety.library import DrugLibrary
from tests.safety_process.conftest import ServerRig, make_server, stop_server


def dropped(rig: ServerRig) -> list[str]:
    return [e.payload for e in rig.journal.entries(kinds=["client_dropped"])]


@pytest.mark.hil  # the stray is another process (the server tells peers apart by pid)
def test_silent_strays_only_evict_each_other(short_dir: Path, library: DrugLibrary) -> None:
    limits = Limits(max_pending=4, max_pending_per_peer=2, auth_timeout_s=30)
    rig = make_server(short_dir, library, limits=limits)
    process = stray(rig.socket_path, 12)
    try:
        out, _ = process.communicate(timeout=20)
        # one process never holds more than its share: 10 of its 12 were evicted
        assert out.split()[-1] == "10", out
        for _ in range(3):  # a restarted controller gets in at once, every time
            with SafetyClient(rig.socket_path, key=rig.key, connect_timeout_s=2.0) as c:
                assert c.attach().attached
    finally:
        process.kill()
        process.wait()
        stop_server(rig)


@pytest.mark.hil  # the stray is another process
def test_a_stray_that_reconnects_forever_never_locks_the_controller_out(
    short_dir: Path, library: DrugLibrary
) -> None:
    limits = Limits(max_pending=2, max_pending_per_peer=1, auth_timeout_s=30)
    rig = make_server(short_dir, library, limits=limits)
    process = stray(rig.socket_path, 0, forever=True)
    try:
        wait_for(lambda: rig.server.counts()["pending"] >= 1, 5.0, "the stray at work")
        for _ in range(10):
            with SafetyClient(rig.socket_path, key=rig.key, connect_timeout_s=2.0) as c:
                assert c.attach().attached
                assert c.heartbeat()
        assert rig.server.counts()["pending"] <= 2
    finally:
        process.kill()
        process.wait()
        stop_server(rig)


def test_authenticated_slots_are_per_role(short_dir: Path, library: DrugLibrary) -> None:
    rig = make_server(short_dir, library, limits=Limits(max_controllers=2, max_observers=1))
    raws: list[RawClient] = []
    try:
        for _ in range(2):
            raws.append(RawClient(rig.socket_path))
            raws[-1].authenticate(rig.key)
        # a third controller-role connection is refused with the reason
        extra = RawClient(rig.socket_path)
        with pytest.raises(AssertionError, match="too many controller connections"):
            extra.authenticate(rig.key)
        extra.close()
        # the observer pool is separate: still room for one
        obs = RawClient(rig.socket_path)
        assert obs.authenticate(rig.observer_key, role="observer").role == "observer"
        raws.append(obs)
        assert rig.server.counts() == {"pending": 0, "controller": 2, "observer": 1}
    finally:
        for r in raws:
            r.close()
        stop_server(rig)


def test_a_half_line_is_dropped_after_the_line_timeout(
    short_dir: Path, library: DrugLibrary
) -> None:
    rig = make_server(short_dir, library, limits=Limits(line_timeout_s=0.3))
    try:
        raw = RawClient(rig.socket_path)
        raw.authenticate(rig.key, name="half-liner")
        raw.send_raw(b'{"v":1,"type":"get_snap')  # ... and nothing more
        error = raw.read()
        assert isinstance(error, ErrorReply) and error.fatal
        assert error.code is ErrorCode.TOO_SLOW and "incomplete line" in error.message
        assert raw.closed_by_server()
        assert any("incomplete line" in p and "half-liner" in p for p in dropped(rig))
        # a whole line sent in two pieces is no half line
        ok = RawClient(rig.socket_path)
        ok.authenticate(rig.key)
        ok.send_raw(b'{"v":1,"type":"get_sn')
        ok.send_raw(b'apshot","id":3}\n')
        assert ok.read().type == "snapshot"
        ok.close()
    finally:
        stop_server(rig)


def _flood_without_reading(raw: RawClient, count: int) -> None:
    """Ask for many snapshots and read none of the answers."""
    for i in range(count):
        try:
            raw.send(GetSnapshot(id=1000 + i))
        except OSError:  # the server hung up: the case is made
            return


def test_a_client_that_never_reads_is_dropped_at_the_queue_bound(
    short_dir: Path, library: DrugLibrary, spec: ProgramSpec
) -> None:
    bound = 256 * 1024
    rig = make_server(short_dir, library, limits=Limits(max_queued_bytes=bound, stall_timeout_s=60))
    try:
        with SafetyClient(rig.socket_path, key=rig.key) as c:
            c.attach()
            assert c.request(LoadProgram(spec)).verdict.accepted
            assert c.request(StartInfusion(Decimal(8))).verdict.accepted
            raw = RawClient(rig.socket_path)
            raw.authenticate(rig.key, name="never-reads")
            raw.send(Subscribe(id=1, on=True))
            peak = [0]

            def watch() -> bool:
                peak[0] = max(peak[0], rig.server.queued_bytes())
                return any("never-reads" in p for p in dropped(rig))

            _flood_without_reading(raw, 5000)
            wait_for(watch, 10.0, "the non-reader dropped")
            assert peak[0] <= bound  # memory stayed within the bound
            assert any("over 262144 bytes waiting" in p for p in dropped(rig))
            # the controller was never held up and is still in charge
            assert c.snapshot().attached
            assert c.request(ChangeDose(Decimal(10))).verdict.accepted
            raw.close()
    finally:
        stop_server(rig)


def test_a_client_that_stalls_is_dropped_after_the_stall_timeout(
    short_dir: Path, library: DrugLibrary
) -> None:
    rig = make_server(short_dir, library, limits=Limits(stall_timeout_s=0.3))
    try:
        raw = RawClient(rig.socket_path)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.authenticate(rig.key, name="stalls")
        _flood_without_reading(raw, 400)  # far more than the socket buffers hold
        wait_for(
            lambda: any("did not read its messages for 0.3 s" in p for p in dropped(rig)),
            10.0,
            "the stalled reader dropped",
        )
        raw.close()
        with SafetyClient(rig.socket_path, key=rig.key) as c:  # still serving
            assert c.snapshot().mode == "idle"
    finally:
        stop_server(rig)


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        Limits(max_pending=0)
    with pytest.raises(ValueError, match="line_timeout_s"):
        Limits(line_timeout_s=0)


def test_an_unreachable_server_is_unavailable(short_dir: Path) -> None:
    with pytest.raises(SafetyUnavailable):
        SafetyClient(short_dir / "nothing.sock", key=bytes(32))
