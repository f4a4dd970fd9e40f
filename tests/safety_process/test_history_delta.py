"""The rate history as a change per connection (``safety.ipc.snapshots``).

What the controller's code receives must be the full snapshot the safety process sent,
whatever the histories were and however they changed; the delta exists only on the
wire. A delta that does not fit (a lost base, a damaged check) is never applied: the
client asks for a full snapshot and its caller still gets the verdict and a full
history. Clients that do not ask for deltas get every history in full.
"""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil_tests.harness.processes import RawClient, wait_for
from safety.ipc.client import SafetyClient
from safety.ipc.framing import decode_server
from safety.ipc.link import Notice, StatusChanged
from safety.ipc.local import LocalSafety
from safety.ipc.messages import (
    Attach,
    Attached,
    HistoryDelta,
    Reply,
    RequestMessage,
    ServerMessage,
    SnapshotReply,
    StatusNotice,
)
from safety.ipc.snapshots import (
    HistoryOutOfStep,
    SnapshotReceiver,
    SnapshotSender,
    apply_delta,
    delta_between,
    snapshot_of,
)
from safety.kernel.model import (
    ChangeDose,
    LoadProgram,
    ProgramSpec,
    RequestBody,
    StartInfusion,
    Verdict,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import DrugView, HistoryPoint, Outcome, Snapshot
from tests.safety_process.conftest import ServerRig

BASE = Snapshot(
    clinical_time=0.0,
    mode="infusing",
    library_hash="0" * 64,
    library_version="1",
    program=None,
    dose_unit=None,
    running=True,
    rate_ml_h=Decimal(30),
    dose=None,
    infused_ml=None,
    drug_given=None,
    amount_unit=None,
    given_in_cap_window=None,
    cap_amount=None,
    cap_window_h=None,
    syringe="bd-plastipak-50ml",
    syringe_volume_ml=50.0,
    remaining_ml=None,
    pump_min_ml_h=Decimal("0.1"),
    pump_max_ml_h=Decimal(100),
    alarms=(),
    session=None,
    last_seq=0,
    attached=True,
    hold=False,
    estopped=False,
    uncertain=False,
    comms_ok=True,
    history=(),
)

points = st.builds(
    HistoryPoint,
    start=st.floats(0.0, 200_000.0),
    amount_per_h=st.sampled_from([Decimal(x) for x in ("0", "24", "480", "480.0", "11.25")]),
    cause=st.sampled_from(["command", "pump", "safety", "estop"]),
)


@st.composite
def history_changes(draw: st.DrawFn) -> list[tuple[tuple[HistoryPoint, ...], str]]:
    """Histories in sequence, each with the message that carries it: mostly a prune at
    the front and new points at the end (what a rate change does), sometimes the same
    history again, a history cut at the end, or one unrelated to the last."""
    history: list[HistoryPoint] = sorted(draw(st.lists(points, max_size=8)), key=_start)
    out: list[tuple[tuple[HistoryPoint, ...], str]] = []
    for _ in range(draw(st.integers(1, 12))):
        how = draw(st.sampled_from(["change", "change", "change", "same", "cut", "new"]))
        if how == "change":
            drop = draw(st.integers(0, len(history)))
            added = draw(st.lists(points, max_size=3))
            last = history[-1].start if history else 0.0
            added = [replace(p, start=last + p.start) for p in sorted(added, key=_start)]
            history = history[drop:] + added
        elif how == "cut":
            history = history[: draw(st.integers(0, len(history)))]
        elif how == "new":
            history = sorted(draw(st.lists(points, max_size=8)), key=_start)
        kind = draw(st.sampled_from(["reply", "reply", "status", "status", "snapshot", "attached"]))
        out.append((tuple(history), kind))
    return out


def _start(p: HistoryPoint) -> float:
    return p.start


def _message(kind: str, snapshot: Snapshot, i: int) -> ServerMessage:
    if kind == "reply":
        verdict = Verdict(True, Reason.ACCEPTED, "accepted")
        return Reply(id=i, outcome=Outcome(verdict, "applied", snapshot))
    if kind == "status":
        return StatusNotice(snapshot=snapshot)
    if kind == "snapshot":
        return SnapshotReply(id=i, snapshot=snapshot)
    return Attached(id=i, session="s", snapshot=snapshot)


@settings(max_examples=300, deadline=None)
@given(changes=history_changes(), delta=st.booleans())
def test_every_snapshot_arrives_whole(
    changes: list[tuple[tuple[HistoryPoint, ...], str]], delta: bool
) -> None:
    sender, receiver = SnapshotSender(), SnapshotReceiver()
    sender.delta = delta
    for i, (history, kind) in enumerate(changes):
        snapshot = replace(BASE, clinical_time=float(i), last_seq=i, history=history)
        message = _message(kind, snapshot, i)
        line = sender.encode(message)
        on_wire = decode_server(line[:-1])  # what crossed, before reconstruction
        received = receiver.receive(on_wire)
        assert type(received) is type(message)
        assert snapshot_of(received) == snapshot
        assert received == message  # the whole message, as the caller sees it
        wire_snapshot = snapshot_of(on_wire)
        assert wire_snapshot is not None
        carries_delta = delta and i > 0 and kind in ("reply", "status")
        if carries_delta:
            assert isinstance(on_wire, Reply | StatusNotice)
            assert on_wire.history_delta is not None and wire_snapshot.history == ()
        else:
            assert wire_snapshot.history == history
            assert getattr(on_wire, "history_delta", None) is None


DRUGS = ("vasopressin", "epinephrine", "dobutamine")


def _drug(name: str, history: tuple[HistoryPoint, ...]) -> DrugView:
    return DrugView(
        drug=name,
        what=name,
        dose_unit=None,
        dose=None,
        amount_per_h=Decimal(0),
        amount_unit=None,
        given=None,
        given_in_cap_window=None,
        cap_amount=None,
        cap_window_h=None,
        channels=(),
        next_handover_at=None,
        history=history,
    )


@settings(max_examples=200, deadline=None)
@given(
    top=history_changes(),
    per_drug=st.tuples(*(history_changes() for _ in DRUGS)),
    present=st.lists(st.frozensets(st.sampled_from(DRUGS)), min_size=12, max_size=12),
    delta=st.booleans(),
)
def test_every_drugs_history_arrives_whole(
    top: list[tuple[tuple[HistoryPoint, ...], str]],
    per_drug: tuple[list[tuple[tuple[HistoryPoint, ...], str]], ...],
    present: list[frozenset[str]],
    delta: bool,
) -> None:
    """A bench of several drugs: each drug's own history (its view's) travels as a delta
    too once the connection's last snapshot had that drug; drugs come and go."""
    sender, receiver = SnapshotSender(), SnapshotReceiver()
    sender.delta = delta
    held: frozenset[str] = frozenset()
    for i, (history, kind) in enumerate(top):
        drugs = tuple(
            _drug(name, changes[min(i, len(changes) - 1)][0])
            for name, changes in zip(DRUGS, per_drug, strict=True)
            if name in present[i]
        )
        snapshot = replace(BASE, clinical_time=float(i), history=history, drugs=drugs)
        message = _message(kind, snapshot, i)
        on_wire = decode_server(sender.encode(message)[:-1])
        received = receiver.receive(on_wire)
        assert received == message
        wire_snapshot = snapshot_of(on_wire)
        assert wire_snapshot is not None
        deltas = getattr(on_wire, "drug_history_deltas", None) or {}
        for view, wire_view in zip(drugs, wire_snapshot.drugs, strict=True):
            as_delta = delta and i > 0 and kind in ("reply", "status") and view.drug in held
            if view.drug in deltas:
                assert as_delta and wire_view.history == ()
            elif view.history:  # both empty needs no delta
                assert not as_delta and wire_view.history == view.history
        held = frozenset(present[i])


def test_a_drug_delta_without_its_base_or_its_drug_is_out_of_step() -> None:
    sender, receiver = SnapshotSender(), SnapshotReceiver()
    sender.delta = True
    h1 = (HistoryPoint(0.0, Decimal(2), "command"),)
    h2 = (*h1, HistoryPoint(60.0, Decimal(3), "command"))
    first = replace(BASE, drugs=(_drug("vasopressin", h1),))
    receiver.receive(decode_server(sender.encode(SnapshotReply(id=1, snapshot=first))[:-1]))
    line = sender.encode(StatusNotice(snapshot=replace(first, drugs=(_drug("vasopressin", h2),))))
    notice = decode_server(line[:-1])
    assert isinstance(notice, StatusNotice) and notice.drug_history_deltas is not None
    delta = notice.drug_history_deltas["vasopressin"]
    assert delta.drop == 0 and delta.append == h2[1:]  # only the new point crossed
    stray = notice.model_copy(update={"drug_history_deltas": {"dobutamine": delta}})
    with pytest.raises(HistoryOutOfStep, match="dobutamine, not in the snapshot"):
        receiver.receive(stray)
    assert not receiver.in_step
    receiver.receive(decode_server(sender.encode(SnapshotReply(id=2, snapshot=first))[:-1]))
    renamed = notice.model_copy(
        update={
            "snapshot": replace(notice.snapshot, drugs=(_drug("epinephrine", ()),)),
            "drug_history_deltas": {"epinephrine": delta},
        }
    )
    with pytest.raises(HistoryOutOfStep, match="no base for the history of epinephrine"):
        receiver.receive(renamed)


@settings(max_examples=200, deadline=None)
@given(
    base=st.lists(points, max_size=10), drop=st.integers(0, 10), added=st.lists(points, max_size=4)
)
def test_a_prune_and_an_append_travel_as_just_that(
    base: list[HistoryPoint], drop: int, added: list[HistoryPoint]
) -> None:
    old = tuple(sorted(base, key=_start))
    drop = min(drop, len(old))
    last = old[-1].start if old else 0.0
    new = old[drop:] + tuple(replace(p, start=last + 1 + p.start) for p in added)
    delta = delta_between(old, new)
    assert apply_delta(old, delta) == new
    assert len(delta.append) <= len(new) - (len(old) - delta.drop)
    if drop < len(old):  # what survived is not sent again
        assert len(delta.append) <= len(added) + drop


def test_a_delta_that_does_not_fit_is_refused_and_a_full_history_restores_step() -> None:
    sender, receiver = SnapshotSender(), SnapshotReceiver()
    sender.delta = True
    h1 = (HistoryPoint(0.0, Decimal(480), "command"),)
    h2 = (*h1, HistoryPoint(60.0, Decimal(600), "command"))
    first = replace(BASE, history=h1)
    receiver.receive(decode_server(sender.encode(SnapshotReply(id=1, snapshot=first))[:-1]))
    line = sender.encode(StatusNotice(snapshot=replace(BASE, history=h2)))[:-1]
    damaged = decode_server(line)
    assert isinstance(damaged, StatusNotice) and damaged.history_delta is not None
    bad = damaged.model_copy(
        update={"history_delta": damaged.history_delta.model_copy(update={"length": 3})}
    )
    with pytest.raises(HistoryOutOfStep) as caught:
        receiver.receive(bad)
    assert "does not fit" in caught.value.why
    assert not receiver.in_step
    # everything after it is refused too, until a full history arrives
    later = sender.encode(StatusNotice(snapshot=replace(BASE, history=h2)))[:-1]
    with pytest.raises(HistoryOutOfStep):
        receiver.receive(decode_server(later))
    full = receiver.receive(decode_server(sender.encode(SnapshotReply(id=2, snapshot=first))[:-1]))
    assert snapshot_of(full) == first and receiver.in_step


def test_a_wrong_check_point_is_caught() -> None:
    h = (HistoryPoint(0.0, Decimal(480), "command"),)
    delta = delta_between((), h)
    assert apply_delta((), delta) == h
    other = HistoryPoint(0.0, Decimal(496), "command")
    assert apply_delta((), delta.model_copy(update={"last": other})) is None
    assert apply_delta((), delta.model_copy(update={"first": other})) is None
    assert apply_delta((), HistoryDelta(drop=1, append=(), length=0, first=None, last=None)) is None


# --------------------------------------------------------------------------- the links


def _titrate(link: LocalSafety | SafetyClient, spec: ProgramSpec, changes: int) -> None:
    link.attach()
    assert link.request(LoadProgram(spec)).verdict.accepted
    assert link.request(StartInfusion(Decimal(8))).execution == "applied"
    for i in range(changes):
        outcome = link.request(ChangeDose(Decimal(9 if i % 2 == 0 else 8)))
        assert outcome.execution == "applied", outcome.verdict.message
        if isinstance(link, LocalSafety):
            link.advance(1.0)


def test_local_link_replies_carry_the_whole_history(
    library: DrugLibrary, spec: ProgramSpec
) -> None:
    with LocalSafety(library=library) as link:
        _titrate(link, spec, 30)
        outcome = link.request(ChangeDose(Decimal(9)))
        assert len(outcome.snapshot.history) == 33  # stopped at start, started, 31 changes
        assert outcome.snapshot.history == link.core.snapshot().history


def test_local_link_out_of_step_fetches_a_full_snapshot(
    library: DrugLibrary, spec: ProgramSpec, caplog: pytest.LogCaptureFixture
) -> None:
    notices: list[Notice] = []
    with LocalSafety(library=library) as link:
        link.subscribe(notices.append)
        _titrate(link, spec, 5)
        link._receiver.forget()
        outcome = link.request(ChangeDose(Decimal(8)))  # the last change was to 9
        assert outcome.verdict.accepted and outcome.execution == "applied"
        assert outcome.snapshot.history == link.core.snapshot().history
        assert len(outcome.snapshot.history) == 8  # stopped at start, started, 6 changes
        assert "out of step" in caplog.text
        # and in step again: the next reply's delta fits
        nxt = link.request(ChangeDose(Decimal(9)))
        assert nxt.snapshot.history == link.core.snapshot().history
        # a status notice that meets a lost base becomes a full snapshot for subscribers
        link._receiver.forget()
        del notices[:]
        link.inject_faults("stall")
        link.advance(5.0)
        statuses = [n for n in notices if isinstance(n, StatusChanged)]
        assert statuses
        assert statuses[-1].snapshot.history == link.core.snapshot().history


def test_socket_client_asks_for_deltas_and_gets_whole_histories(
    rig: ServerRig, spec: ProgramSpec
) -> None:
    notices: list[Notice] = []
    with SafetyClient(rig.socket_path, key=rig.key) as c:
        c.subscribe(notices.append)
        _titrate(c, spec, 20)
        outcome = c.request(ChangeDose(Decimal(9)))
        assert outcome.snapshot.history == rig.core.snapshot().history
        assert len(outcome.snapshot.history) >= 22
        wait_for(
            lambda: any(
                isinstance(n, StatusChanged) and n.snapshot.history == outcome.snapshot.history
                for n in list(notices)
            ),
            what="a status notice with the whole history",
        )
        # the client loses its base: the reply's verdict arrives, with a full history
        c._snapshots.forget()
        again = c.request(ChangeDose(Decimal(8)))
        assert again.verdict.accepted and again.execution == "applied"
        assert again.snapshot.history[-1].amount_per_h == Decimal(480)  # 30 mL/h x 16
        assert again.snapshot.history == rig.core.snapshot().history


def test_socket_status_notice_out_of_step_becomes_a_full_snapshot(
    rig: ServerRig, spec: ProgramSpec
) -> None:
    notices: list[Notice] = []
    with SafetyClient(rig.socket_path, key=rig.key) as c:
        _titrate(c, spec, 3)
        c.subscribe(notices.append)
        c._snapshots.forget()
        rig.driver.inject_faults("stall")  # the pump stops itself: a status change
        wait_for(
            lambda: any(
                isinstance(n, StatusChanged) and not n.snapshot.running for n in list(notices)
            ),
            what="the stopped pump's status, fetched in full",
        )
        stopped = next(
            n for n in list(notices) if isinstance(n, StatusChanged) and not n.snapshot.running
        )
        assert stopped.snapshot.history[-1].amount_per_h == Decimal(0)
        assert len(stopped.snapshot.history) == 6


def test_a_client_that_does_not_ask_gets_every_history_in_full(
    rig: ServerRig, spec: ProgramSpec
) -> None:
    raw = RawClient(rig.socket_path)
    try:
        welcome = raw.authenticate(rig.key)
        assert welcome.history_delta is False
        raw.send(Attach(id=1))
        session = raw.read_until(Attached).session
        bodies: tuple[RequestBody, ...] = (
            LoadProgram(spec),
            StartInfusion(Decimal(8)),
            ChangeDose(Decimal(9)),
        )
        for seq, body in enumerate(bodies, start=1):
            raw.send(
                RequestMessage(
                    id=10 + seq,
                    session=session,
                    seq=seq,
                    expires_at=time.monotonic() + 30,
                    body=body,
                )
            )
            reply = raw.read_until(Reply)
            assert reply.history_delta is None
        assert len(reply.outcome.snapshot.history) == 3  # stopped at start, 8, 9 mcg/min
        assert reply.outcome.snapshot.history == rig.core.snapshot().history
    finally:
        raw.close()
