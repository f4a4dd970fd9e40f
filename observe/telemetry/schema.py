"""The telemetry's topics and messages, version 1 (docs/telemetry.md; the JSON schema
``telemetry.schema.json`` beside this file is checked against these builders by tests).

Topic tree, per bench (``<prefix>`` is ``[telemetry] topic_prefix``, default
``pumpctl``)::

    <prefix>/v1/<bench>/online    retained, QoS 1; the broker's last will says offline
    <prefix>/v1/<bench>/status    retained, QoS 1; on every change and every period
    <prefix>/v1/<bench>/alarm     QoS 1; each newly raised alarm, numbered (stream "alarm")
    <prefix>/v1/<bench>/journal   QoS 1; each safety-journal line, numbered ("journal")

Every payload is one JSON object with ``schema`` ("pumpctl.telemetry/1"), ``type`` and
``bench``. Alarm and journal messages carry ``seq``: 1, 2, 3... per bench and stream,
never reused, never skipped; a consumer that sees a gap has lost something, one that
sees a number again has a duplicate (QoS 1 is "at least once"), which it drops.
"""

from __future__ import annotations

from typing import Any

SCHEMA = "pumpctl.telemetry/1"
VERSION = "v1"
STREAMS = ("alarm", "journal")


def topic(prefix: str, bench: str, leaf: str) -> str:
    return f"{prefix}/{VERSION}/{bench}/{leaf}"


def online(bench: str, up: bool, sent_at: float) -> dict[str, Any]:
    return {"schema": SCHEMA, "type": "online", "bench": bench, "online": up, "sent_at": sent_at}


def status(
    bench: str,
    seq: int,
    sent_at: float,
    *,
    live: bool,
    problem: str,
    clinical_time: float | None,
    library: str | None,
    channels: list[dict[str, Any]],
    dashboard_url: str | None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "type": "status",
        "bench": bench,
        "seq": seq,
        "sent_at": sent_at,
        "live": live,
        "problem": problem,
        "clinical_time": clinical_time,
        "library": library,
        "channels": channels,
        "dashboard_url": dashboard_url,
    }


def alarm(
    bench: str, seq: int, written_at: float, channel: str, view: dict[str, Any]
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "type": "alarm",
        "bench": bench,
        "seq": seq,
        "written_at": written_at,
        "channel": channel,
        "alarm": view,
    }


def journal(
    bench: str, seq: int, written_at: float, channel: str, entry: dict[str, Any]
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "type": "journal",
        "bench": bench,
        "seq": seq,
        "written_at": written_at,
        "channel": channel,
        "entry": entry,
    }


__all__ = ["SCHEMA", "STREAMS", "VERSION", "alarm", "journal", "online", "status", "topic"]
