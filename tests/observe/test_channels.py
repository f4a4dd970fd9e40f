"""The observers on a bench of several channels: the view model (a card per channel and
per drug, the handover, alarms by scope), the telemetry's per-channel and per-drug
retained topics (and their clearing), the fleet's summary, and a one-pump bench that
reads exactly as before. The safety process is the real core in this process
(``LocalSafety``, two simulated pumps on virtual clocks): the relay happens on its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.session import Session
from observe.dashboard.app import Model, create_app
from observe.feed import BenchFeed
from observe.fleet.app import create_app as create_fleet_app
from observe.fleet.model import FleetModel, Tile
from observe.telemetry import schema
from observe.telemetry.outbox import Outbox
from observe.telemetry.publisher import RETAINED_META, BenchTelemetry, Publisher
from observe.view import ProgramCache, bench_view
from safety.ipc.local import LocalChannel, LocalSafety
from safety.library import DrugLibrary
from safety.observer_config import TelemetrySection
from safety.status import AlarmView, Snapshot
from tests.controller.conftest import drive

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "observe/telemetry/telemetry.schema.json").read_text()
)


def _fields(name: str) -> set[str]:
    definition = SCHEMA["$defs"][name]
    assert set(definition["required"]) == set(definition["properties"]), name
    return set(definition["required"])


@pytest.fixture
def bench(library: DrugLibrary) -> Iterator[LocalSafety]:
    # A holds 10 mL: at 8 mcg/min of 4 mg/250 mL (30 mL/h) it empties in 20 min
    channels = (LocalChannel("A", loaded_volume_ml=10.0), LocalChannel("B"))
    with LocalSafety(library=library, channels=channels) as link:
        yield link


@pytest.fixture
def relay(bench: LocalSafety, library: DrugLibrary) -> Iterator[Session]:
    """A infusing 8 mcg/min, B loaded alike, primed and armed as its standby (overlap)."""
    with Session.open(bench, library, clinical=bench.clinical) as session:
        session.program("norepinephrine", "4 mg/250 mL", "D5W")
        session.start(8)
        session.program("norepinephrine", "4 mg/250 mL", "D5W", channel="B")
        session.prime("2", confirm_line_disconnected=True)
        drive(bench, session, 30)
        session.arm_standby("B", "A", "overlap")
        session.select_channel("A")
        drive(bench, session, 60)
        yield session


def _view(snapshot: Snapshot, library: DrugLibrary) -> dict[str, Any]:
    return bench_view(snapshot, ProgramCache(library))


def _by_name(items: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


# --------------------------------------------------------------------------- view model


def test_a_card_per_channel_and_per_drug_before_the_handover(
    bench: LocalSafety, relay: Session, library: DrugLibrary
) -> None:
    snapshot = bench.snapshot()
    view = _view(snapshot, library)
    channels = _by_name(view["channels"])
    a, b = channels["A"], channels["B"]
    assert (a["id"], a["role"], a["state"], a["dose_text"]) == (
        "A",
        "active",
        "infusing",
        "8 mcg/min",
    )
    assert a["rate_ml_h"] == 30.0 and a["remaining_ml"] == 9.25 and a["minutes_to_empty"] == 18.5
    assert (b["role"], b["state"], b["standby_for"], b["strategy"]) == (
        "standby",
        "programmed",
        "A",
        "overlap",
    )
    assert b["primed"] is True and b["rate_ml_h"] == 0.0 and b["container_kind"] == "syringe"
    assert b["relay"].startswith("standby of channel A (overlap): takes over in about")
    # one drug, the patient's total over both channels (what S1 and S3 read)
    (drug,) = view["drugs"]
    due = snapshot.drugs[0].next_handover_at
    assert due is not None and due > snapshot.clinical_time
    assert drug["drug"] == "norepinephrine" and drug["channels"] == ["A", "B"]
    assert drug["dose_text"] == "8 mcg/min" and drug["amount_per_h"] == 0.48  # mg/h
    assert (drug["amount_unit"], drug["cap_amount"], drug["cap_window_h"]) == ("mg", 68.0, 24.0)
    assert drug["given"] == drug["given_in_cap_window"] == 0.012  # 90 s at 0.48 mg/h
    # the next handover from the safety process's own figure (no longer "none known")
    minutes = round((due - snapshot.clinical_time) / 60)
    words = f"in about {minutes} min (channel A to B, overlap)"
    assert drug["next_handover_at"] == due and drug["next_handover"] == words
    assert a["next_handover"] == b["next_handover"] == words
    assert view["handover"] is None
    # per channel: each card plots its drug's total
    assert view["plots"][0]["points"][-1] == [0.0, 30.0, 8.0]


def test_the_handover_in_progress_and_after_it(
    bench: LocalSafety, relay: Session, library: DrugLibrary
) -> None:
    due = bench.snapshot().drugs[0].next_handover_at
    assert due is not None
    drive(bench, relay, due - bench.clinical.now() + 30)
    view = _view(bench.snapshot(), library)
    handover = view["handover"]
    assert handover is not None
    assert (handover["from_channel"], handover["to_channel"], handover["strategy"]) == (
        "A",
        "B",
        "overlap",
    )
    assert handover["text"] == f"channel A to B (overlap, step {handover['step']}/4)"
    _exactly_the_schema_fields(view)
    assert {c["role"] for c in view["channels"]} == {"handing over"}
    assert view["drugs"][0]["next_handover"] == "now: " + handover["text"]
    # the total stays the set dose while the channels trade rates
    assert view["drugs"][0]["dose_text"] == "8 mcg/min"
    assert sum(c["rate_ml_h"] for c in view["channels"]) == 30.0
    drive(bench, relay, 10 * 60)
    view = _view(bench.snapshot(), library)
    channels = _by_name(view["channels"])
    assert view["handover"] is None
    assert (channels["A"]["role"], channels["A"]["relieved_by"]) == ("relieved", "B")
    assert (channels["B"]["role"], channels["B"]["dose_text"]) == ("active", "8 mcg/min")
    assert view["drugs"][0]["next_handover"] is None  # no standby for B yet


def test_alarms_carry_their_scope_and_go_to_the_cards_they_concern(
    bench: LocalSafety, relay: Session, library: DrugLibrary
) -> None:
    bench.inject_faults("occlusion", channel="A")
    drive(bench, relay, 60)
    snapshot = bench.snapshot()
    view = _view(snapshot, library)
    scoped = {(a["scope"], a["key"]) for a in view["alarms"]}
    assert {(a.scope, a.key) for a in snapshot.alarms} == scoped
    a_own = {a.key for a in snapshot.alarms if a.scope == "A" and a.active}
    assert a_own, snapshot.alarms
    channels = _by_name(view["channels"])
    for name, card in channels.items():
        shown = _scopes(card)
        assert all(scope in ("", name, "drug:norepinephrine") for scope, _ in shown), shown
    assert a_own <= {k for s, k in _scopes(channels["A"]) if s == "A"}
    assert channels["A"]["worst_alarm"] == "high"
    assert not any(s == "A" for s, _ in _scopes(channels["B"]))
    # an alarm of a drug no channel gives any more is shown once, on the first card
    orphan = AlarmView("cap_reached", "low", "cap", "m", 1.0, True, False, "drug:heparin")
    view = _view(replace(snapshot, alarms=(orphan,)), library)
    assert [len(c["alarms"]) for c in view["channels"]] == [1, 0]
    assert view["alarms"][0]["scope"] == "drug:heparin"


def _scopes(card: dict[str, Any]) -> set[tuple[str, str]]:
    return {(a["scope"], a["key"]) for a in card["alarms"]}


def test_a_one_pump_bench_reads_as_before(library: DrugLibrary) -> None:
    with (
        LocalSafety(library=library) as link,
        Session.open(link, library, clinical=link.clinical) as session,
    ):
        session.program("norepinephrine", "8 mg/250 mL", "D5W")
        session.start(8)
        drive(link, session, 120)
        link.inject_faults("occlusion")
        drive(link, session, 60)
        snapshot = link.snapshot()
        view = _view(snapshot, library)
    (channel,) = view["channels"]
    assert channel["name"] == "channel 1" and channel["id"] == "A"  # the v1 label
    assert channel["state"] == snapshot.mode
    assert channel["next_handover"] is None and channel["role"] in ("", "active")
    # every alarm on the only card, whatever its scope
    assert len(channel["alarms"]) == len(snapshot.alarms) > 0
    assert view["handover"] is None and [d["drug"] for d in view["drugs"]] == ["norepinephrine"]
    # a snapshot without channel views (an older safety process): one channel, as before
    old = _view(replace(snapshot, channels=(), drugs=()), library)
    (only,) = old["channels"]
    assert (only["name"], only["id"]) == ("channel 1", None)
    assert only["dose_text"] == channel["dose_text"] and only["state"] == channel["state"]
    assert old["drugs"] == [] and len(only["alarms"]) == len(snapshot.alarms)


# --------------------------------------------------------------------------- schema


def _exactly_the_schema_fields(view: dict[str, Any]) -> None:
    """Every message built from ``view`` has exactly its schema's fields."""
    for channel in view["channels"]:
        assert set(channel) == _fields("channel")
        for alarm in channel["alarms"]:
            assert set(alarm) == _fields("alarm_view")
        assert channel["role"] in SCHEMA["$defs"]["channel"]["properties"]["role"]["enum"]
    assert set(view["drugs"][0]) == _fields("drug")
    assert set(view["handover"]) == _fields("handover")
    status = schema.status(
        "b1",
        1,
        1.0,
        live=True,
        problem="",
        clinical_time=1.0,
        library="x",
        channels=view["channels"],
        dashboard_url=None,
        drugs=view["drugs"],
        handover=view["handover"],
        alarms=view["alarms"],
    )
    assert set(status) == _fields("status")
    one = schema.channel("b1", 1, 1.0, live=True, view=view["channels"][0])
    drug = schema.drug("b1", 1, 1.0, live=True, view=view["drugs"][0])
    assert set(one) == _fields("channel_message") and one["type"] == "channel"
    assert set(drug) == _fields("drug_message") and drug["type"] == "drug"


def test_topic_levels() -> None:
    assert schema.channel_leaf("B") == "channel/B"
    assert schema.drug_leaf("a/b+c#") == "drug/a_b_c_"  # one level, no wildcard
    assert schema.split_topic("lab/x", "lab/x/v1/rig-3/channel/B") == ("rig-3", "channel/B")
    assert schema.split_topic("lab/x", "lab/x/v1/rig-3/status") == ("rig-3", "status")
    assert schema.split_topic("lab/x", "lab/x/v2/rig-3/status") is None
    assert schema.split_topic("lab", "lab/v1/rig-3") is None


# --------------------------------------------------------------------------- telemetry


class _Sent:
    """A stand-in for paho's publish: what was sent, retained or not."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | str, bool]] = []
        self.mid = 0

    def __call__(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> Any:
        self.mid += 1
        self.messages.append((topic, payload, retain))

        class Info:
            mid = self.mid
            rc = 0

            def wait_for_publish(self, _timeout: float) -> None:
                pass

        return Info()

    def retained(self) -> dict[str, bytes | str]:
        return {t: p for t, p, r in self.messages if r}


def _publisher(outbox: Outbox) -> tuple[Publisher, _Sent]:
    settings = TelemetrySection(bench="rig", outbox="unused")
    publisher = Publisher(settings, outbox, client_id="test-rig")
    sent = _Sent()
    publisher.client.publish = sent  # type: ignore[method-assign,assignment]
    publisher.connected = True
    return publisher, sent


def test_the_telemetry_publishes_each_channel_and_drug_retained(
    bench: LocalSafety, relay: Session, library: DrugLibrary, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    publisher, sent = _publisher(outbox)
    feed = BenchFeed("/nonexistent", key=b"x")
    feed.state.snapshot = bench.snapshot()
    feed.state.live = True
    telemetry = BenchTelemetry(feed, publisher, library)
    try:
        telemetry.step(feed.read())
        retained = sent.retained()
        assert set(retained) == {
            "pumpctl/v1/rig/status",
            "pumpctl/v1/rig/channel/A",
            "pumpctl/v1/rig/channel/B",
            "pumpctl/v1/rig/drug/norepinephrine",
        }
        status = json.loads(retained["pumpctl/v1/rig/status"])
        b = json.loads(retained["pumpctl/v1/rig/channel/B"])
        drug = json.loads(retained["pumpctl/v1/rig/drug/norepinephrine"])
        assert b["seq"] == drug["seq"] == status["seq"]  # one moment of the bench
        assert b["channel"] == status["channels"][1] and b["channel"]["role"] == "standby"
        assert drug["drug"] == status["drugs"][0] and drug["drug"]["dose_text"] == "8 mcg/min"
        assert json.loads(outbox.get_meta(RETAINED_META) or "[]") == [
            "channel/A",
            "channel/B",
            "drug/norepinephrine",
        ]
        # a raised alarm goes to the outbox naming its channel and scope
        bench.inject_faults("occlusion", channel="A")
        drive(bench, relay, 60)
        feed.state.snapshot = bench.snapshot()
        feed.state.version += 1
        telemetry.step(feed.read())
        rows = [json.loads(r.payload) for r in outbox.pending() if r.topic.endswith("/alarm")]
        assert rows and all(r["channel"] == "A" and r["alarm"]["scope"] == "A" for r in rows)
    finally:
        publisher.close()
        outbox.close()


def test_a_retained_topic_no_longer_held_is_cleared_also_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path)
    publisher, sent = _publisher(outbox)

    def parts(*leaves: str) -> Any:
        return lambda seq, at: {leaf: {"seq": seq} for leaf in leaves}

    publisher.status(lambda seq, at: {"seq": seq}, parts("channel/A", "drug/x", "drug/y"))
    publisher.status(lambda seq, at: {"seq": seq}, parts("channel/A", "drug/x"))
    assert sent.messages[-1] == ("pumpctl/v1/rig/drug/y", b"", True)  # cleared
    publisher.close()
    outbox.close()
    # drug/x goes while no publisher runs: the next one clears it, but only once it knows
    # what is held now (never a topic it is about to publish again)
    outbox = Outbox(path)
    publisher, sent = _publisher(outbox)
    publisher._publish_retained()  # a connect before the first status
    assert sent.messages == []
    publisher.status(lambda seq, at: {"seq": seq}, parts("channel/A"))
    assert ("pumpctl/v1/rig/drug/x", b"", True) in sent.messages
    assert ("pumpctl/v1/rig/channel/A", b"", True) not in sent.messages
    assert json.loads(outbox.get_meta(RETAINED_META) or "[]") == ["channel/A"]
    publisher.close()
    outbox.close()


# --------------------------------------------------------------------------- fleet


class _Message:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic = topic
        self.payload = payload


def test_the_fleet_summarises_a_bench_of_several_channels(
    bench: LocalSafety, relay: Session, library: DrugLibrary
) -> None:
    view = _view(bench.snapshot(), library)
    status = schema.status(
        "rig",
        1,
        1.0,
        live=True,
        problem="",
        clinical_time=1.0,
        library="x",
        channels=view["channels"],
        dashboard_url=None,
        drugs=view["drugs"],
        handover=view["handover"],
        alarms=view["alarms"],
    )
    channel_a = schema.channel("rig", 1, 1.0, live=True, view=view["channels"][0])
    model = FleetModel("127.0.0.1", 1, prefix="lab/x")
    try:
        feed = [
            ("lab/x/v1/rig/status", json.dumps(status).encode()),
            # the per-channel and per-drug topics make no tile of their own
            ("lab/x/v1/rig/channel/A", json.dumps(channel_a).encode()),
            ("lab/x/v1/rig/drug/norepinephrine", b""),  # a cleared retained message
        ]
        for topic, payload in feed:
            model._on_message(model.client, None, _Message(topic, payload))  # type: ignore[arg-type]
        assert list(model.tiles) == ["rig"]
    finally:
        from observe.telemetry.publisher import release_sockets

        release_sockets(model.client)
    tile = model.tiles["rig"].view(1.0, 15.0)
    (drug,) = tile["drugs"]
    assert drug["dose_text"] == "8 mcg/min" and drug["channels"] == ["A", "B"]
    assert drug["next_handover"] == view["drugs"][0]["next_handover"]
    assert [(c["name"], c["role"]) for c in tile["channels"]] == [("A", "active"), ("B", "standby")]
    assert tile["handover"] is None
    one = Tile("old", status={"live": True, "channels": [{"name": "channel 1"}]}, status_at=1.0)
    assert one.view(1.0, 15.0)["drugs"] == [] and one.view(1.0, 15.0)["handover"] is None


# --------------------------------------------------------------------------- dashboard


def test_the_dashboard_data_of_a_bench_of_several_channels(
    bench: LocalSafety, relay: Session, library: DrugLibrary
) -> None:
    feed = BenchFeed("/nonexistent", key=b"x")
    feed.state.snapshot = bench.snapshot()
    feed.state.live = True
    data = Model(feed, "rig", library).view(feed.read())
    assert [c["name"] for c in data["channels"]] == ["A", "B"]
    assert [d["drug"] for d in data["drugs"]] == ["norepinephrine"]
    assert len(data["plots"]) == 2 and data["handover"] is None
    assert {"alarms", "journal", "link", "clinical_time"} <= set(data)


def test_the_pages_can_only_be_read() -> None:
    """S17 at the web layer: no route of the dashboard or the fleet takes anything but a
    read (GET, HEAD)."""
    feed = BenchFeed("/nonexistent", key=b"x")
    fleet = FleetModel("127.0.0.1", 1)
    try:
        for app in (create_app(feed, bench="rig"), create_fleet_app(fleet)):
            for route in app.routes:
                methods = getattr(route, "methods", None)
                assert methods is None or set(methods) <= {"GET", "HEAD"}, route
    finally:
        from observe.telemetry.publisher import release_sockets

        release_sockets(fleet.client)


def test_a_container_change_on_a_one_pump_bench_is_shown_in_words(
    library: DrugLibrary,
) -> None:
    with (
        LocalSafety(library=library) as link,
        Session.open(link, library, clinical=link.clinical) as session,
    ):
        session.program("norepinephrine", "8 mg/250 mL", "D5W")
        session.start(8)
        drive(link, session, 120)
        assert session.pause_for_container_change().verdict.accepted
        drive(link, session, 30)
        view = _view(link.snapshot(), library)
    (channel,) = view["channels"]
    assert channel["role"] == "paused" and channel["paused_until"] is not None
    assert channel["relay"].startswith("paused for a container change (")
