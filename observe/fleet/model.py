"""The fleet view's model: every bench on a broker, from its telemetry (schema v1).

``FleetModel`` subscribes (paho-mqtt 2.x) to ``<prefix>/v1/+/#`` and keeps one tile per
bench: state, drug, dose, worst alarm, the data's age, online or not; for a bench of
several channels also each drug's total, each channel's role and the next (or current)
relay handover, all from the bench's status (its ``channel/<id>`` and ``drug/<drug>``
topics say the same and are not read). A bench is
*stale* when its last status is older than ``stale_after_s`` (its publisher sends one at
least every ``status_period_s``), when the bench says its safety process is not live, or
when the broker reported it offline (last will).

Sequence check: for each bench and stream (alarm, journal) the model keeps the highest
number seen; a message at or below it is a duplicate (QoS 1 delivers at least once) and
is dropped and counted; a jump over the next number is a gap, counted with the numbers
missed. ``latencies`` holds ``received - written_at`` of each new event (one machine:
the benchmark's figure, outbox write to fleet view).

The subscription is a persistent session (see ``FleetModel.__init__``): with a broker
that persists sessions, an outage of the broker or of this view loses no event. What a
bench published before the broker first held this view's subscription is not delivered
to it (MQTT keeps no history but retained messages): ``subscribed`` (in ``view()`` under
``broker``) turns true when the broker has acknowledged the subscription (SUBACK), not
when the connection is made, so whoever starts benches after this view and counts on
every event (the fleet's tests, the benchmark) waits for it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from observe.telemetry import schema
from observe.telemetry.publisher import release_sockets

log = logging.getLogger("observe.fleet")

DEFAULT_STALE_AFTER_S = 15.0


@dataclass
class Stream:
    last: int = 0
    received: int = 0
    duplicates: int = 0
    gaps: int = 0
    missed: int = 0


@dataclass
class Tile:
    bench: str
    status: dict[str, Any] | None = None
    status_at: float | None = None  # time.time() the status arrived
    online: bool | None = None
    streams: dict[str, Stream] = field(default_factory=dict)
    journal: deque[str] = field(default_factory=lambda: deque(maxlen=5))

    def view(self, now: float, stale_after_s: float) -> dict[str, Any]:
        status = self.status or {}
        channels = status.get("channels") or []
        age = None if self.status_at is None else max(0.0, now - self.status_at)
        reasons = []
        if self.online is False:
            reasons.append("offline")
        if age is None:
            reasons.append("no status yet")
        elif age > stale_after_s:
            reasons.append(f"no status for {age:.0f} s")
        if status and not status.get("live", False):
            reasons.append("safety process not reachable: " + str(status.get("problem", "")))
        ranks = {"high": 0, "medium": 1, "low": 2}
        worst = min(
            (c.get("worst_alarm") for c in channels if c.get("worst_alarm")),
            key=lambda p: ranks.get(str(p), 9),
            default=None,
        )
        return {
            "bench": self.bench,
            "online": self.online,
            "stale": bool(reasons),
            "stale_reasons": reasons,
            "age_s": None if age is None else round(age, 1),
            "dashboard_url": status.get("dashboard_url"),
            "worst_alarm": worst,
            "channels": [
                {
                    "name": c.get("name"),
                    "state": c.get("state"),
                    "drug": c.get("drug"),
                    "dose_text": c.get("dose_text"),
                    "role": c.get("role") or "",
                    "minutes_to_empty": c.get("minutes_to_empty"),
                    "worst_alarm": c.get("worst_alarm"),
                    "alarms": [
                        f"{a.get('priority', '?').upper()} {a.get('key')}"
                        for a in c.get("alarms", [])
                        if a.get("active")
                    ],
                }
                for c in channels
            ],
            "drugs": [
                {
                    "drug": d.get("drug"),
                    "dose_text": d.get("dose_text"),
                    "channels": list(d.get("channels") or []),
                    "next_handover": d.get("next_handover"),
                }
                for d in status.get("drugs") or []
            ],
            "handover": (status.get("handover") or {}).get("text"),
            "streams": {k: vars(s) for k, s in self.streams.items()},
            "journal": list(self.journal),
        }


def default_client_id() -> str:
    """One fleet view per machine by default (two views need two ids: the broker would
    hand one session back and forth between them)."""
    return f"pumpctl-fleet-{socket.gethostname()}"[:64]


class FleetModel:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        prefix: str = "pumpctl",
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        keep_latencies: int = 200_000,
    ) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.stale_after_s = stale_after_s
        self.tiles: dict[str, Tile] = {}
        self.connected = False
        #: the broker has acknowledged this view's subscription on this connection
        self.subscribed = False
        self._subscribe_mid: int | None = None
        self.version = 0
        self.latencies: deque[float] = deque(maxlen=keep_latencies)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        # a persistent session (a stable client id, clean_session False): the broker
        # queues QoS 1 events for this view while it is away, and (with the broker's
        # persistence on) across a broker restart, so nothing published before this
        # view resubscribes is lost
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or default_client_id(),
            clean_session=False,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        if username is not None:
            client.username_pw_set(username, password)
        if tls:
            client.tls_set(ca_certs=ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def add_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> FleetModel:
        self.client.connect_async(self.host, self.port, 30)
        self.client.loop_start()
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)

    # ------------------------------------------------------------------ views
    def view(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            tiles = [t.view(now, self.stale_after_s) for _, t in sorted(self.tiles.items())]
        return {
            "now": now,
            "broker": {
                "host": self.host,
                "port": self.port,
                "connected": self.connected,
                "subscribed": self.subscribed,
            },
            "benches": tiles,
            "totals": self.totals(),
        }

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Totals and the latency percentiles (ms) since the last reset (benchmarks)."""
        with self._lock:
            samples = sorted(self.latencies)
            if reset:
                self.latencies.clear()

        def pct(q: float) -> float | None:
            if not samples:
                return None
            return round(samples[min(len(samples) - 1, int(q / 100 * len(samples)))] * 1000, 3)

        return {
            "benches": len(self.tiles),
            "connected": self.connected,
            "subscribed": self.subscribed,
            "totals": self.totals(),
            "latency_ms": {"n": len(samples), "p50": pct(50), "p99": pct(99), "max": pct(100)},
        }

    def totals(self) -> dict[str, int]:
        out = {"received": 0, "duplicates": 0, "gaps": 0, "missed": 0}
        with self._lock:
            for tile in self.tiles.values():
                for s in tile.streams.values():
                    out["received"] += s.received
                    out["duplicates"] += s.duplicates
                    out["gaps"] += s.gaps
                    out["missed"] += s.missed
        return out

    # ------------------------------------------------------------------ paho
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the fleet view: %s", reason)
            return
        self.connected = True
        # subscribed only on the SUBACK: until the broker has processed the SUBSCRIBE,
        # what a bench publishes does not reach this view (the SUBACK is handled by this
        # same network thread, after this callback: the mid is booked first)
        self.subscribed = False
        _rc, self._subscribe_mid = client.subscribe(f"{self.prefix}/{schema.VERSION}/+/#", qos=1)
        self._changed()

    def _on_subscribe(
        self,
        _c: mqtt.Client,
        _u: object,
        mid: int,
        reasons: list[ReasonCode],
        _p: object,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        if not reasons or any(r.is_failure for r in reasons):
            log.warning("broker refused the fleet view's subscription: %s", reasons)
            return
        self.subscribed = True
        self._changed()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _reason: ReasonCode, _p: object
    ) -> None:
        self.connected = False
        self.subscribed = False
        self._changed()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received = time.time()
        where = schema.split_topic(self.prefix, message.topic)
        if where is None:
            return
        bench, leaf = where
        if leaf not in ("status", "online", *schema.STREAMS):
            return  # channel/<id>, drug/<drug>: the status carries the same
        if not message.payload:
            return  # a retained message cleared
        try:
            body = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            log.warning("not JSON on %s: dropped", message.topic)
            return
        if not isinstance(body, dict) or body.get("schema") != schema.SCHEMA:
            log.warning("not %s on %s: dropped", schema.SCHEMA, message.topic)
            return
        with self._lock:
            tile = self.tiles.get(bench)
            if tile is None:
                tile = self.tiles[bench] = Tile(bench)
            if leaf == "status":
                tile.status, tile.status_at = body, received
            elif leaf == "online":
                tile.online = bool(body.get("online"))
            else:
                self._event(tile, leaf, body, received)
        self._changed()

    def _event(self, tile: Tile, stream: str, body: dict[str, Any], received: float) -> None:
        s = tile.streams.setdefault(stream, Stream())
        seq = body.get("seq")
        if not isinstance(seq, int):
            return
        if seq <= s.last:
            s.duplicates += 1
            return
        if seq > s.last + 1:
            s.gaps += 1
            s.missed += seq - s.last - 1
        s.last = seq
        s.received += 1
        written = body.get("written_at")
        if isinstance(written, int | float):
            self.latencies.append(received - float(written))
        if stream == "journal":
            entry = body.get("entry") or {}
            tile.journal.append(str(entry.get("text", "")))

    def _changed(self) -> None:
        self.version += 1
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("a fleet listener failed")


__all__ = ["DEFAULT_STALE_AFTER_S", "FleetModel", "Stream", "Tile"]
