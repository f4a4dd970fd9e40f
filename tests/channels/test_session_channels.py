"""The session on a bench of several channels: it works on one channel at a time (its
machine, plans and doses are that channel's), names it in every request, and follows an
infusion the safety process hands over to another channel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from controller.errors import BadInput, ControllerError, Refused
from controller.machine import State
from controller.session import Session
from safety.ipc.local import LocalChannel, LocalSafety
from safety.library import DrugLibrary
from tests.controller.conftest import drive


@pytest.fixture
def bench(library: DrugLibrary) -> Iterator[LocalSafety]:
    channels = (LocalChannel("A", loaded_volume_ml=10.0), LocalChannel("B"))
    with LocalSafety(library=library, channels=channels) as link:
        yield link


@pytest.fixture
def session(bench: LocalSafety, library: DrugLibrary) -> Iterator[Session]:
    with Session.open(bench, library, clinical=bench.clinical) as s:
        yield s


def _state(session: Session) -> State:
    """The session's state, read afresh (mypy would keep an earlier comparison's)."""
    return session.state


def _norepi(session: Session, channel: str | None = None) -> None:
    session.program("norepinephrine", "4 mg/250 mL", "D5W", channel=channel)


def test_the_session_works_on_the_first_channel_and_names_it(
    session: Session, bench: LocalSafety
) -> None:
    _norepi(session)
    session.start(8)
    snapshot = session.status()
    assert session.channel == "A" and session.state is State.INFUSING
    assert [(v.name, v.role) for v in snapshot.channels] == [("A", "active"), ("B", "")]
    assert snapshot.drugs[0].channels == ("A",) and snapshot.drugs[0].dose == Decimal(8)
    assert bench.pumps["A"].snapshot().running and not bench.pumps["B"].snapshot().running


def test_a_relay_set_up_from_the_session_is_followed_to_the_new_channel(
    session: Session, bench: LocalSafety
) -> None:
    _norepi(session)
    session.start(8)  # 30 mL/h: channel A's 10 mL last 20 min
    _norepi(session, channel="B")
    assert session.channel == "B" and session.state is State.PROGRAMMED
    session.prime("2", confirm_line_disconnected=True)
    drive(bench, session, 30)
    session.arm_standby("B", "A")
    session.select_channel("A")
    assert _state(session) is State.INFUSING
    assert session.status().channel("B").role == "standby"  # type: ignore[union-attr]
    drive(bench, session, 20 * 60)
    assert session.channel == "B" and _state(session) is State.INFUSING
    snapshot = session.status()
    assert snapshot.rate_ml_h == Decimal("30.0")
    assert snapshot.channel("A").relieved_by == "B"  # type: ignore[union-attr]
    assert not bench.pumps["A"].snapshot().running and bench.pumps["B"].snapshot().running
    # the drug's history in doses, after the handover too (it read 0 mL/h and no dose
    # on a bench of several channels: a plan's state was asked for, and refused)
    history = session.history()
    assert history[-1].rate_ml_h == Decimal("30") and history[-1].dose == Decimal(8)
    assert {p.dose for p in history} >= {Decimal(8)}
    # and the infusion goes on from there as before
    change = session.titrate_to(10)
    change.confirm()
    drive(bench, session, 10 * 60)
    assert bench.pumps["B"].snapshot().set_rate_ml_h == 37.5


def test_another_channel_waits_until_a_planned_change_is_decided(
    session: Session, bench: LocalSafety
) -> None:
    _norepi(session)
    session.start(8)
    drive(bench, session, 120)
    pending = session.titrate_to(12)
    with pytest.raises(ControllerError) as info:
        session.select_channel("B")
    assert info.value.code == "channel_busy"
    pending.cancel()
    assert session.select_channel("B").program is None
    with pytest.raises(ControllerError) as unknown:
        session.select_channel("C")
    assert "there is no channel 'C' (channels: A, B)" in unknown.value.message


def test_the_session_follows_a_handover_it_saw_only_after_the_new_container(
    session: Session, bench: LocalSafety
) -> None:
    """The safety process hands over and the emptied syringe is replaced before this
    session looks again (a controller that was down): the new container makes the safety
    process forget who relieved A, but the session saw B armed for A and follows it."""
    _norepi(session)
    session.start(8)  # 30 mL/h: channel A's 10 mL last 20 min
    _norepi(session, channel="B")
    session.prime("2", confirm_line_disconnected=True)
    drive(bench, session, 30)
    session.arm_standby("B", "A")
    session.select_channel("A")
    bench.advance(20 * 60)  # the handover, with nobody servicing this session
    assert bench.pumps["B"].snapshot().running
    session.container_changed("50", channel="A")
    assert session.channel == "B" and _state(session) is State.INFUSING
    assert session.status().channel("A").relieved_by is None  # type: ignore[union-attr]


def test_a_plan_keeps_running_while_another_channel_is_prepared(
    session: Session, bench: LocalSafety
) -> None:
    """Priming and arming the other channel while a titration runs on this one leaves the
    machine titrating: the plan's later steps are still sent (the machine once settled to
    infusing under the running plan, whose next step then stayed due for ever)."""
    _norepi(session, channel="B")
    session.select_channel("A")
    _norepi(session)
    session.start(8)
    drive(bench, session, 120)
    session.titrate_to(12).confirm()  # 10 now, 12 a minute later
    assert session.active_plan is not None and len(session.active_plan.steps) > 1
    session.prime("2", "B", confirm_line_disconnected=True)
    assert _state(session) is State.TITRATING
    drive(bench, session, 30)
    session.arm_standby("B", "A")
    assert _state(session) is State.TITRATING and session.channel == "A"
    drive(bench, session, 60)
    assert session.active_plan is None and _state(session) is State.INFUSING
    assert session.status().dose == Decimal(12) and session.channel == "A"


def _entries(session: Session) -> list[tuple[str, dict[str, Any]]]:
    store = session.journal.journal
    assert store is not None
    return [(e.kind, json.loads(e.payload)) for e in store.entries()]


def test_every_journal_entry_about_a_channel_names_it(session: Session, bench: LocalSafety) -> None:
    """``journal show --channel A`` keeps A's entries and the bench's: B's program, its
    move and resync, its prime and its standby must say B (they said nothing, and read
    as A's); an arm_standby says its strategy, a prime that its line was off the patient."""
    _norepi(session)
    session.start(8)
    drive(bench, session, 30)
    _norepi(session, channel="B")  # moves the session from A (infusing) to B
    bench.inject_faults("power_cycle", "B")
    drive(bench, session, 30)
    session.acknowledge(("B/pump:reset",))
    session.prime("2", confirm_line_disconnected=True)
    drive(bench, session, 30)
    session.arm_standby("B", "A", "overlap")
    with pytest.raises(Refused):  # a standby takes no orders: refused, and B's refusal
        session.start(8, channel="B")
    session.emergency_stop()
    entries = _entries(session)
    actions = [p for kind, p in entries if kind == "action"]
    assert [(p["action"], p.get("channel")) for p in actions] == [
        ("program", "A"),
        ("start", "A"),
        ("program", "B"),
        ("acknowledge", None),  # a key may name an alarm on every channel: the bench's
        ("prime", "B"),
        ("arm_standby", "B"),
        ("start", "B"),
        ("emergency_stop", None),  # every channel stops: the bench's
    ]
    by_action = {p["action"]: p for p in actions}
    assert by_action["arm_standby"]["strategy"] == "overlap"
    assert by_action["arm_standby"]["for_channel"] == "A"
    assert by_action["prime"]["confirm_line_disconnected"] is True
    # the move is the bench's (it concerns both); B's resync after it is B's
    moves = [p for kind, p in entries if kind == "notice" and p["what"] == "working on channel"]
    assert moves == [{"what": "working on channel", "from_channel": "A", "to": "B"}]
    left_a = [p for kind, p in entries if kind == "transition" and p["source"] == "infusing"]
    assert [(p["dest"], p["channel"]) for p in left_a] == [("idle", "B")]
    # a request and its outcome are the channel's it was sent to
    sent = [(p["body"]["kind"], p.get("channel")) for kind, p in entries if kind == "request"]
    assert ("load_program", "A") in sent and ("load_program", "B") in sent
    assert ("arm_standby", "B") in sent and ("start", "B") in sent
    assert ("emergency_stop", None) in sent
    refused = [p for kind, p in entries if kind == "outcome" and not p["accepted"]]
    assert [p["channel"] for p in refused] == ["B"]
    errors = [p for kind, p in entries if kind == "error"]
    assert [(p["action"], p["channel"]) for p in errors] == [("start", "B")]
    # B's alarm seen from the safety process is B's
    alarms = [p for kind, p in entries if kind == "alarm" and p["alarm"]["scope"] == "B"]
    assert alarms and {p["channel"] for p in alarms} == {"B"}
    # nothing about one channel goes unnamed: only the bench's entries name none
    unnamed = {kind for kind, p in entries if p.get("channel") is None}
    assert unnamed <= {"attached", "notice", "action", "request", "outcome", "alarm"}
    assert all(
        p.get("channel") is not None
        for kind, p in entries
        if kind in ("transition", "plan", "confirm", "cancel", "error")
    )


def test_the_status_line_names_a_bag_as_a_bag(library: DrugLibrary) -> None:
    channels = (LocalChannel("A", container="bag-250ml", loaded_volume_ml=40.0), LocalChannel("B"))
    with (
        LocalSafety(library=library, channels=channels) as bench,
        Session.open(bench, library, clinical=bench.clinical) as session,
    ):
        _norepi(session)
        session.start(8)  # 30 mL/h: 40 mL last 1 h 20 min
        session.status()
        line = session.status_line()
        assert "bag empty in 1 h 20 min" in line and "syringe" not in line
        session.emergency_stop()
        session.status()
        line = session.status_line()
        assert "bag 40.0 mL left" in line and "syringe" not in line


def test_an_unknown_alarm_key_is_refused_naming_what_can_be_acknowledged(
    session: Session, bench: LocalSafety
) -> None:
    """The safety process accepts any key ("alarms acknowledged") and acknowledges
    nothing: the session must tell a typo from an acknowledgement."""
    bench.inject_faults("power_cycle", "B")
    drive(bench, session, 30)
    for keys in (("B/nosuch",), ("A/pump:reset",), ("controller:nosuch",)):
        with pytest.raises(BadInput) as info:
            session.acknowledge(keys)
        assert info.value.field == "keys"
        assert f"no alarm {keys[0]!r}; alarms that can be acknowledged now: B/pump:reset" in (
            info.value.message
        )
    assert session.acknowledgeable() == ("B/pump:reset",)
    with pytest.raises(BadInput) as both:  # one unknown key: nothing is acknowledged
        session.acknowledge(("B/pump:reset", "B/nosuch"))
    assert "no alarm 'B/nosuch'" in both.value.message
    assert "nothing was acknowledged" in both.value.message
    assert not session.status().alarms[0].acknowledged
    assert session.unknown_alarm_keys(("pump:reset", "B/nosuch", "B/pump:reset")) == ("B/nosuch",)
    errors = [p for kind, p in _entries(session) if kind == "error"]
    assert errors and all(p["field"] == "keys" for p in errors)
    session.acknowledge(("pump:reset",))  # the key alone: on every channel
    assert session.status().alarms[0].acknowledged
