"""The publisher across a dropped connection, against a minimal MQTT 3.1.1 broker in a
thread (no process): rows still unacknowledged when the connection dropped go out
again before anything newer, so a consumer that drops numbers at or below the highest
it has seen never drops a message it has not seen."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from observe.telemetry import schema
from observe.telemetry.outbox import Outbox
from observe.telemetry.publisher import Publisher
from safety.observer_config import TelemetrySection


def _read_packet(conn: socket.socket) -> tuple[int, bytes] | None:
    first = conn.recv(1)
    if not first:
        return None
    length, shift = 0, 0
    while True:
        byte = conn.recv(1)
        if not byte:
            return None
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return first[0], body


class _Broker:
    """Accepts one connection at a time: CONNACK, PINGRESP, and a PUBACK for every QoS 1
    PUBLISH unless ``hold`` (then the connection is closed instead, the PUBACK lost).
    Records ``(connection, leaf, seq)`` of every journal PUBLISH."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.journal: list[tuple[int, int]] = []
        self.connections = 0
        self.hold = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5.0)
                self._serve(conn, self.connections)

    def _serve(self, conn: socket.socket, number: int) -> None:
        while not self._stop.is_set():
            try:
                packet = _read_packet(conn)
            except OSError:
                return
            if packet is None:
                return
            kind, body = packet
            if kind >> 4 == 1:  # CONNECT
                conn.sendall(b"\x20\x02\x00\x00")
            elif kind >> 4 == 12:  # PINGREQ
                conn.sendall(b"\xd0\x00")
            elif kind >> 4 == 14:  # DISCONNECT
                return
            elif kind >> 4 == 3:  # PUBLISH
                qos = (kind >> 1) & 3
                size = int.from_bytes(body[:2], "big")
                topic = body[2 : 2 + size].decode()
                rest = body[2 + size :]
                mid, payload = (rest[:2], rest[2:]) if qos else (b"", rest)
                if topic.endswith("/journal"):
                    self.journal.append((number, json.loads(payload)["seq"]))
                    if self.hold.is_set():
                        return  # closed with the PUBLISH unacknowledged
                if qos == 1:
                    conn.sendall(b"\x40\x02" + mid)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.server.close()


def _wait(predicate: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _journal(seq: int, at: float) -> dict[str, Any]:
    entry = {"id": seq, "kind": "readback", "clinical": 0.0, "text": f"line {seq}"}
    return schema.journal("rig", seq, at, "channel 1", entry)


def test_unacknowledged_rows_go_out_again_before_newer_ones(tmp_path: Path) -> None:
    """paho calls ``on_connect`` before it sends its unacknowledged messages again, and
    a publish made meanwhile goes out at once: a row handed then (by the sender thread,
    racing the network thread; here by the ``on_connected`` hook, which makes the race's
    bad outcome certain) overtook row 1, and the fleet would drop row 1 as a duplicate
    though it never had it. The publisher now hands every unacknowledged row again
    itself, in outbox order, on every reconnect."""
    broker = _Broker()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    settings = TelemetrySection(bench="rig", host="127.0.0.1", port=broker.port, keepalive_s=5)
    publisher = Publisher(settings, outbox)

    def hand_rows_now() -> None:  # what the sender thread may do at this moment
        publisher.pump()

    publisher.on_connected = hand_rows_now
    try:
        broker.hold.set()
        publisher.start()
        _wait(lambda: publisher.connected, "the first connection")
        publisher.event("journal", _journal)  # 1: the broker drops the connection on it
        _wait(lambda: broker.journal and not publisher.connected, "the connection dropped")
        broker.hold.clear()
        publisher.event("journal", _journal)  # 2 and 3: written while away
        publisher.event("journal", _journal)
        _wait(lambda: outbox.count() == 0, "the outbox drained after the reconnect")
        again = [seq for connection, seq in broker.journal if connection == 2]
        assert again == [1, 2, 3]
        assert publisher.inflight == 0
    finally:
        publisher.close()
        outbox.close()
        broker.close()
