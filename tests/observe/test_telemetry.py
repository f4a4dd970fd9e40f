"""The telemetry's pure parts: the schema file against the builders, the outbox's
numbering and durability, the fleet's sequence check, the view's plot and limits."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from observe.fleet.model import FleetModel, Tile
from observe.telemetry import schema
from observe.telemetry.outbox import Outbox
from observe.view import channel_view, plot_series, worst_alarm
from safety.ipc.local import LocalSafety
from safety.kernel.model import LoadProgram, ProgramSpec, StartInfusion
from safety.library import DrugLibrary, load_library

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "observe/telemetry/telemetry.schema.json").read_text()
)


def _required(name: str) -> set[str]:
    return set(SCHEMA["$defs"][name]["required"])


@pytest.fixture(scope="module")
def library() -> DrugLibrary:
    return load_library()


@pytest.fixture
def infusing(library: DrugLibrary) -> Any:
    with LocalSafety(library=library) as link:
        link.attach()
        spec = ProgramSpec(
            library.content_hash, "norepinephrine", "adult_icu", "standard", "8 mg/250 mL", "D5W"
        )
        assert link.request(LoadProgram(spec)).verdict.accepted
        assert link.request(StartInfusion(Decimal(8))).verdict.accepted
        link.advance(600)
        yield link


def test_every_message_has_exactly_the_schema_fields(infusing: LocalSafety) -> None:
    from observe.view import ProgramCache

    snap = infusing.snapshot()
    channel = channel_view(snap, ProgramCache(infusing.core.library).get(snap))
    assert set(channel) == _required("channel") == set(SCHEMA["$defs"]["channel"]["properties"])
    assert set(channel["limits"]) == {"unit", "hard_max", "soft_max", "soft_min"}
    built = {
        "online": schema.online("b1", True, 1.0),
        "status": schema.status(
            "b1",
            1,
            1.0,
            live=True,
            problem="",
            clinical_time=1.0,
            library="x",
            channels=[channel],
            dashboard_url=None,
        ),
        "alarm": schema.alarm("b1", 1, 1.0, "channel 1", {}),
        "journal": schema.journal("b1", 1, 1.0, "channel 1", {}),
    }
    for name, body in built.items():
        assert set(body) == _required(name), name
        assert body["schema"] == SCHEMA["$id"] and body["type"] == name


def test_the_channel_view_says_what_runs(infusing: LocalSafety) -> None:
    from observe.view import ProgramCache

    snap = infusing.snapshot()
    program = ProgramCache(infusing.core.library).get(snap)
    view = channel_view(snap, program)
    assert view["drug"] == "norepinephrine" and view["dose"] == 8.0 and view["rate_ml_h"] == 15.0
    assert view["dose_text"] == "8 mcg/min" and view["state"] == "infusing"
    assert view["limits"] == {
        "unit": "mcg/min",
        "hard_max": 47.0,
        "soft_max": 35.0,
        "soft_min": 2.0,
    }
    plot = plot_series(snap, program)
    assert plot["points"][-1] == [0.0, 15.0, 8.0]  # now: 15 mL/h is 8 mcg/min
    assert all(p[0] <= 0 for p in plot["points"])
    # another library: no limits, no doses drawn (a view never shows a limit the safety
    # process does not enforce)
    other = ProgramCache(None).get(snap)
    assert channel_view(snap, other)["limits"] is None
    assert plot_series(snap, other)["points"][-1] == [0.0, 15.0, None]


def test_the_worst_alarm_is_the_highest_that_needs_a_person() -> None:
    """Active, or latched: a high alarm whose condition is gone but nobody acknowledged
    (a pump that stopped by itself) is still the bench's worst; once acknowledged and
    gone it needs nobody."""
    from safety.status import AlarmView

    low = AlarmView("a", "low", "r", "m", 1.0, True, False)
    high_latched = AlarmView("b", "high", "r", "m", 2.0, False, False)
    high_done = AlarmView("b", "high", "r", "m", 2.0, False, True)
    medium = AlarmView("c", "medium", "r", "m", 3.0, True, True)
    assert worst_alarm((low, high_latched, medium)) == high_latched
    assert worst_alarm((low, high_done, medium)) == medium
    assert worst_alarm((high_done,)) is None


# --------------------------------------------------------------------------- outbox


def test_the_outbox_numbers_each_stream_and_never_reuses_a_number(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    seqs = [box.put("journal", "t/j", lambda s: {"seq": s}) for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert box.put("alarm", "t/a", lambda s: {"seq": s}, {"alarms": "[1]"}) == 1
    rows = box.pending()
    assert [json.loads(r.payload)["seq"] for r in rows] == [1, 2, 3, 1]
    assert [r.topic for r in rows] == ["t/j", "t/j", "t/j", "t/a"]
    for row in rows[:3]:
        box.ack(row.id)
    box.close()
    again = Outbox(path)  # a restarted publisher
    assert again.count() == 1 and again.get_meta("alarms") == "[1]"
    assert again.put("journal", "t/j", lambda s: {"seq": s}) == 4
    assert again.next_seq("status") == 1
    again.close()


def test_a_payload_that_fails_leaves_no_number_used(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")

    def broken(_seq: int) -> dict[str, Any]:
        raise ValueError("no")

    with pytest.raises(ValueError):
        box.put("journal", "t", broken)
    assert box.put("journal", "t", lambda s: {"seq": s}) == 1
    assert box.count() == 1
    box.close()


# --------------------------------------------------------------------------- fleet


class _Message:
    def __init__(self, topic: str, body: dict[str, Any]) -> None:
        self.topic = topic
        self.payload = json.dumps(body).encode()


def test_the_fleet_drops_duplicates_and_counts_gaps_by_number() -> None:
    model = FleetModel("127.0.0.1", 1)  # never started: messages are fed by hand
    for seq in (1, 2, 2, 3, 6, 5, 7):
        body = schema.journal("b1", seq, 0.0, "channel 1", {"text": str(seq)})
        model._on_message(model.client, None, _Message("pumpctl/v1/b1/journal", body))  # type: ignore[arg-type]
    s = model.tiles["b1"].streams["journal"]
    assert (s.last, s.received, s.duplicates, s.gaps, s.missed) == (7, 5, 2, 1, 2)
    model._on_message(model.client, None, _Message("pumpctl/v1/b1/status", {"schema": "x"}))  # type: ignore[arg-type]
    assert model.tiles["b1"].status is None  # another schema: dropped
    release(model)


class _Subscriber:
    """What ``FleetModel._on_connect`` needs of a paho client: ``subscribe``."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def subscribe(self, topic: str, qos: int = 0) -> tuple[int, int]:
        self.topics.append(topic)
        return 0, 41


def _suback(name: str) -> list[ReasonCode]:
    return [ReasonCode(PacketTypes.SUBACK, name)]


def test_the_fleet_is_subscribed_only_once_the_broker_acknowledged_it() -> None:
    """Connected is not subscribed: a bench that publishes between the fleet's CONNACK
    and its SUBACK (a fresh broker, no session of the fleet's yet) is not delivered to
    it. The HIL case lost bench-00's first journal event that way on a loaded machine;
    it and the benchmark now wait for ``broker.subscribed`` before starting benches."""
    model = FleetModel("127.0.0.1", 1)  # never started: the callbacks are fed by hand
    client = _Subscriber()
    assert model.view()["broker"]["subscribed"] is False
    model._on_connect(client, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)  # type: ignore[arg-type]
    assert client.topics == ["pumpctl/v1/+/#"]
    broker = model.view()["broker"]
    assert (broker["connected"], broker["subscribed"]) == (True, False)
    model._on_subscribe(client, None, 40, _suback("Granted QoS 1"), None)  # type: ignore[arg-type]
    assert not model.subscribed  # another subscription's SUBACK
    model._on_subscribe(client, None, 41, _suback("Unspecified error"), None)  # type: ignore[arg-type]
    assert not model.subscribed  # refused
    model._on_subscribe(client, None, 41, _suback("Granted QoS 1"), None)  # type: ignore[arg-type]
    assert model.view()["broker"]["subscribed"] is True
    assert model.stats()["subscribed"] is True
    model._on_disconnect(client, None, None, ReasonCode(PacketTypes.DISCONNECT, "Success"), None)  # type: ignore[arg-type]
    assert model.view()["broker"]["subscribed"] is False
    model._on_connect(client, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)  # type: ignore[arg-type]
    assert model.subscribed is False  # a new connection: subscribed again on its SUBACK
    release(model)


def test_a_tile_is_stale_when_old_offline_or_not_live() -> None:
    tile = Tile("b1", status={"live": True, "channels": []}, status_at=100.0, online=True)
    assert not tile.view(105.0, 15.0)["stale"]
    assert tile.view(116.0, 15.0)["stale"]
    tile.online = False
    assert tile.view(105.0, 15.0)["stale_reasons"] == ["offline"]
    tile.online, tile.status = True, {"live": False, "problem": "eof", "channels": []}
    assert "safety process not reachable: eof" in tile.view(105.0, 15.0)["stale_reasons"]


def release(model: FleetModel) -> None:
    from observe.telemetry.publisher import release_sockets

    release_sockets(model.client)
