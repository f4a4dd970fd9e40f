"""The telemetry publisher: one bench's outbox to an MQTT broker (paho-mqtt 2.x).

``Publisher`` owns one paho client. Events are put in the durable ``Outbox`` (numbered)
and handed to paho in outbox order, at most ``window`` unacknowledged at a time; a row
is deleted only on its PUBACK. While the broker is away everything newer waits in the
outbox; on every reconnect the publisher hands the rows still unacknowledged to paho
again itself, in outbox order, before anything newer (paho's own resending comes after
its ``on_connect``, and a publish made meanwhile would overtake it: a consumer would
then drop the older row as a duplicate it never had). Nothing is lost, whatever the
outage's length, and the order is the outbox's. A broker that received a message whose
acknowledgement was lost gets it twice: the consumer drops it by its ``seq``.

The status is not an event: only the latest matters, so it is published retained on
every change, every ``status_period_s`` (so a fleet view can tell the data's age), and
on every (re)connect, never queued behind an outage. So are the per-channel and per-drug
messages published with it (``channel/<id>``, ``drug/<drug>``); a topic that is no
longer among them (a drug no channel gives now) is cleared at the broker, and the set
held is kept in the outbox, so a restarted publisher clears what its predecessor left.
The broker holds a last will on the ``online`` topic: "offline" if this publisher
vanishes without saying goodbye.

Threads: paho's network loop (``loop_start``) and a sender that hands rows to paho.
``pump()`` and ``external_loop=True`` let a benchmark drive a thousand publishers from a
few threads instead (``benchmarks/observers.py``).

``BenchTelemetry`` connects a ``BenchFeed`` (the safety process, as an observer) to a
publisher: journal lines and newly raised alarms to the outbox, status to the broker.
Its cursors (last journal entry, alarms already sent) live in the outbox, so a restarted
publisher neither repeats nor skips an event.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from observe.feed import BenchFeed, FeedState
from observe.telemetry import schema
from observe.telemetry.outbox import Outbox, now
from observe.view import SINGLE_CHANNEL_LABEL, ProgramCache, alarm_json, bench_view, journal_json
from safety.library import DrugLibrary
from safety.observer_config import TelemetrySection
from safety.status import AlarmView, Snapshot

log = logging.getLogger("observe.telemetry")

DEFAULT_WINDOW = 20
#: the outbox's record of the retained topics besides status and online (their leaves)
RETAINED_META = "retained"

#: builds the retained messages published with a status: leaf -> body, for (seq, sent_at)
Parts = Callable[[int, float], dict[str, dict[str, Any]]]


class Publisher:
    def __init__(
        self,
        settings: TelemetrySection,
        outbox: Outbox,
        *,
        password: str | None = None,
        window: int = DEFAULT_WINDOW,
        external_loop: bool = False,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.bench = settings.bench
        self.window = window
        self._external = external_loop
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id
        self._early: set[int] = set()  # mids acknowledged before they were booked
        self._untracked: set[int] = set()  # status and online: not outbox rows
        self._handed = 0  # last outbox row id handed to paho
        #: held by ``pump`` while it hands rows and by ``_on_connect`` while it takes
        #: back what paho holds (re-entrant: ``on_connected`` may pump)
        self._pump_lock = threading.RLock()
        self._kick = threading.Event()
        #: the outbox may hold rows not yet handed to paho (saves a query per pump)
        self._more = threading.Event()
        self._more.set()
        self._stop = threading.Event()
        self.connected = False
        self.connects = 0
        self._status: dict[str, Any] | None = None
        self._status_at = 0.0
        #: the retained messages published with the status (leaf -> latest body)
        self._parts: dict[str, dict[str, Any]] = {}
        #: retained leaves to clear at the broker (held before, not any more)
        self._clear: set[str] = set(json.loads(outbox.get_meta(RETAINED_META) or "[]"))
        self._held: set[str] = set(self._clear)
        self.on_connected: Callable[[], None] | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pumpctl-telemetry-{self.bench}",
            clean_session=True,
        )
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        if settings.username is not None:
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file,
                keyfile=settings.key_file,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(
            self.topic("online"),
            json.dumps(schema.online(self.bench, False, now())),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client
        self._sender = threading.Thread(target=self._send_loop, name="telemetry-send", daemon=True)

    def topic(self, leaf: str) -> str:
        return schema.topic(self.settings.topic_prefix, self.bench, leaf)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Publisher:
        """Connect in the background (and keep reconnecting); never blocks on the broker."""
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        if not self._external:
            self.client.loop_start()
            self._sender.start()
        return self

    def close(self) -> None:
        """Say goodbye (online: false), stop. What is still in the outbox stays there."""
        self._stop.set()
        self._kick.set()
        if self.connected:
            info = self.client.publish(
                self.topic("online"),
                json.dumps(schema.online(self.bench, False, now())),
                qos=1,
                retain=True,
            )
            if not self._external:
                info.wait_for_publish(2.0)
        self.client.disconnect()
        if not self._external:
            self.client.loop_stop()
            if self._sender.is_alive():
                self._sender.join(2.0)
        release_sockets(self.client)

    # ------------------------------------------------------------------ events and status
    def event(self, stream: str, build: Callable[[int, float], dict[str, Any]], **meta: str) -> int:
        """Put an event of ``stream`` in the outbox (``build(seq, written_at)``) and send
        it when the broker allows; return its number."""
        written = now()
        seq = self.outbox.put(stream, self.topic(stream), lambda s: build(s, written), meta)
        self._more.set()
        self._kick.set()
        return seq

    def status(
        self, payload: Callable[[int, float], dict[str, Any]], parts: Parts | None = None
    ) -> None:
        """Publish the status (retained) now if connected, with the retained messages
        ``parts`` builds (same ``seq``); all are sent again on connect. A leaf held
        before and not among ``parts`` now is cleared at the broker."""
        seq, at = self.outbox.next_seq("status"), now()
        body = payload(seq, at)
        bodies = parts(seq, at) if parts is not None else {}
        with self._lock:
            self._status = body
            self._status_at = now()
            self._clear = (self._clear | set(self._parts)) - set(bodies)
            self._parts = dict(bodies)
            held = set(bodies) | self._clear
            changed = held != self._held
            self._held = held
        if changed:  # what a restarted publisher must clear, if it is gone by then
            self.outbox.set_meta(RETAINED_META, json.dumps(sorted(held)))
        if self.connected:
            self._publish_retained()

    def _publish_retained(self) -> None:
        """The status, its parts, and the clearing of leaves no longer held."""
        with self._lock:
            status = self._status
            parts = list(self._parts.items())
            # clear only once the present set is known (not a retained message that the
            # first status is about to publish again)
            clear = sorted(self._clear) if status is not None else []
        if status is not None:
            self._publish_untracked("status", status)
        for leaf, body in parts:
            self._publish_untracked(leaf, body)
        for leaf in clear:
            self._publish_untracked(leaf, None)
        if clear:
            with self._lock:
                self._clear -= set(clear)
                self._held -= set(clear) - set(self._parts)
                held = set(self._held)
            self.outbox.set_meta(RETAINED_META, json.dumps(sorted(held)))

    def _publish_untracked(self, leaf: str, body: dict[str, Any] | None) -> None:
        """A retained message that is not an outbox row (status, its parts, online);
        ``None``: clear the topic's retained message (an empty payload)."""
        data = json.dumps(body) if body is not None else b""
        info = self.client.publish(self.topic(leaf), data, qos=1, retain=True)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._untracked.add(info.mid)

    def status_due(self) -> bool:
        return now() - self._status_at >= self.settings.status_period_s

    # ------------------------------------------------------------------ sending
    def pump(self) -> int:
        """Hand outbox rows to paho while the window has room; return how many.

        paho is never called under ``_lock`` (its network thread calls ``_on_publish``
        holding its own lock: the two orders would deadlock); a PUBACK that beats the
        bookkeeping of its own publish is kept in ``_early`` and settled here. One pump at a
        time (``_pump_lock``), and none while a reconnect takes the rows back."""
        with self._pump_lock:
            return self._pump()

    def _pump(self) -> int:
        if not self.connected or not self._more.is_set():
            return 0
        with self._lock:
            room = self.window - len(self._inflight)
            after = self._handed
        if room <= 0:
            return 0
        self._more.clear()  # set again by a new event, an acknowledgement, a connect
        rows = self.outbox.pending(after, room)
        if len(rows) == room:
            self._more.set()  # the window is full: there may be more behind it
        handed = 0
        for row in rows:
            info = self.client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                break
            with self._lock:
                self._handed = row.id
                early = info.mid in self._early
                if early:
                    self._early.discard(info.mid)
                else:
                    self._inflight[info.mid] = row.id
            if early:
                self.outbox.ack(row.id)
            handed += 1
        return handed

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(0.5)
            self._kick.clear()
            try:
                while self.pump():
                    pass
            except Exception:
                log.exception("telemetry sender failed; retrying")

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        if self.connects:
            self._take_back()
        self.connected = True
        self.connects += 1
        log.info("connected to the broker %s:%s", self.settings.host, self.settings.port)
        self._publish_untracked("online", schema.online(self.bench, True, now()))
        self._publish_retained()
        self._more.set()
        self._kick.set()
        if self.on_connected is not None:
            self.on_connected()

    def _take_back(self) -> None:
        """A reconnect: drop what paho would send again after this callback and hand the
        unacknowledged rows again from the outbox, in its order (``pump``). The session
        is clean: no PUBACK for the dropped messages can come any more. The status and
        its parts are published again by ``_on_connect`` anyway."""
        with self._pump_lock:
            dropped = self.client.drop_out_messages()
            with self._lock:
                self._inflight.clear()
                self._untracked -= {m.mid for m in dropped}
                # a PUBACK kept for a booking to come: none comes for a dropped message
                self._early.clear()
                self._handed = 0
            self._more.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if self.connected:
            log.warning("broker connection lost (%s); the outbox keeps everything", reason)
        self.connected = False

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason: ReasonCode,
        _properties: object,
    ) -> None:
        with self._lock:
            row = self._inflight.pop(mid, None)
            if row is None and mid not in self._untracked:
                self._early.add(mid)
            self._untracked.discard(mid)
        if row is not None:
            self.outbox.ack(row)
            self._more.set()
            self._kick.set()


def release_sockets(client: mqtt.Client) -> None:
    """Close the client's socket and its wake-up socket pair now. paho-mqtt 2.x keeps
    the pair until the client object is collected, and has no public call for it: its
    own ``reinitialise`` uses this one."""
    client._reset_sockets()


class BenchTelemetry:
    """A bench's feed to its publisher (see the module docstring)."""

    def __init__(
        self,
        feed: BenchFeed,
        publisher: Publisher,
        library: DrugLibrary | None,
        *,
        channel: str = SINGLE_CHANNEL_LABEL,
    ) -> None:
        self.feed = feed
        self.publisher = publisher
        self.channel = channel
        self.programs = ProgramCache(library)
        outbox = publisher.outbox
        self._journal_id = int(outbox.get_meta("journal_id") or 0)
        self._alarms: set[str] = set(json.loads(outbox.get_meta("alarms") or "[]"))
        self._lock = threading.Lock()
        self._version = -1
        self._wake = threading.Event()
        self._stop = threading.Event()
        feed.add_listener(lambda _state: self._wake.set())
        self._thread = threading.Thread(target=self._run, name="bench-telemetry", daemon=True)

    def start(self) -> BenchTelemetry:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        period = self.publisher.settings.status_period_s
        while not self._stop.is_set():
            self._wake.wait(min(period, 1.0))
            self._wake.clear()
            try:
                self.step(self.feed.read())
            except Exception:
                log.exception("telemetry step failed; retrying")

    def step(self, state: FeedState) -> None:
        """Outbox what is new in ``state``; publish the status if it changed or is due."""
        bench = self.publisher.bench
        snap = state.snapshot
        several = snap is not None and len(snap.channels) > 1
        for line in state.journal:
            if line.id <= self._journal_id:
                continue
            entry = journal_json([line])[0]
            # on a bench of several the line names its channel itself
            channel = "" if several else self.channel
            self.publisher.event(
                "journal",
                functools.partial(_journal, bench, channel, entry),
                journal_id=str(line.id),
            )
            self._journal_id = line.id
        view: dict[str, Any] = {"channels": [], "drugs": [], "handover": None, "alarms": []}
        if snap is not None:
            view = bench_view(snap, self.programs, single_label=self.channel)
            present = set()
            for a in snap.alarms:
                ident = _alarm_ident(a, several)
                present.add(ident)
                if ident in self._alarms or not a.active:
                    continue
                self._alarms.add(ident)
                self.publisher.event(
                    "alarm",
                    functools.partial(_alarm, bench, self._alarm_channel(snap, a), alarm_json(a)),
                    alarms=json.dumps(sorted(self._alarms & (present | {ident}))),
                )
            self._alarms &= present
        if state.version != self._version or self.publisher.status_due():
            self._version = state.version
            url = self.publisher.settings.dashboard_url
            live = state.live
            self.publisher.status(
                lambda seq, at: schema.status(
                    bench,
                    seq,
                    at,
                    live=live,
                    problem=state.problem,
                    clinical_time=snap.clinical_time if snap is not None else None,
                    library=snap.library_version if snap is not None else None,
                    channels=view["channels"],
                    dashboard_url=url,
                    drugs=view["drugs"],
                    handover=view["handover"],
                    alarms=view["alarms"],
                ),
                lambda seq, at: _parts(bench, seq, at, live, view),
            )

    def _alarm_channel(self, snap: Snapshot, alarm: AlarmView) -> str:
        """The ``channel`` of an alarm message: a one-pump bench's label; on a bench of
        several the channel the alarm is about ("" for the bench or a drug: see scope)."""
        if len(snap.channels) <= 1:
            return self.channel
        return alarm.scope if snap.channel(alarm.scope) is not None else ""


def _alarm_ident(alarm: AlarmView, several: bool) -> str:
    """What tells one raised alarm from another (its key, scope and raising time). A
    one-pump bench keeps the form its outbox cursor has always held (the key alone)."""
    key = alarm.ident if several else alarm.key
    return f"{key}@{alarm.raised_at!r}"


def _parts(
    bench: str, seq: int, at: float, live: bool, view: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The retained message of each channel and each drug, published with a status."""
    out: dict[str, dict[str, Any]] = {}
    for channel in view["channels"]:
        if channel.get("id"):
            leaf = schema.channel_leaf(channel["id"])
            out[leaf] = schema.channel(bench, seq, at, live=live, view=channel)
    for drug in view["drugs"]:
        out[schema.drug_leaf(drug["drug"])] = schema.drug(bench, seq, at, live=live, view=drug)
    return out


def _journal(
    bench: str, channel: str, entry: dict[str, Any], seq: int, at: float
) -> dict[str, Any]:
    return schema.journal(bench, seq, at, channel, entry)


def _alarm(bench: str, channel: str, view: dict[str, Any], seq: int, at: float) -> dict[str, Any]:
    return schema.alarm(bench, seq, at, channel, view)


__all__ = ["DEFAULT_WINDOW", "BenchTelemetry", "Publisher", "release_sockets"]
