"""The telemetry's topics and messages, version 1 (docs/telemetry.md; the JSON schema
``telemetry.schema.json`` beside this file is checked against these builders by tests).

Topic tree, per bench (``<prefix>`` is ``[telemetry] topic_prefix``, default
``pumpctl``)::

    <prefix>/v1/<bench>/online    retained, QoS 1; the broker's last will says offline
    <prefix>/v1/<bench>/status    retained, QoS 1; on every change and every period
    <prefix>/v1/<bench>/alarm     QoS 1; each newly raised alarm, numbered (stream "alarm")
    <prefix>/v1/<bench>/journal   QoS 1; each safety-journal line, numbered ("journal")
    <prefix>/v1/<bench>/channel/<id>   retained, QoS 1; one channel, with every status
    <prefix>/v1/<bench>/drug/<drug>    retained, QoS 1; one drug's total, with every status

The channel and drug messages carry the ``seq`` of the status they were published with
(one moment of the bench); a drug no channel gives any more has its retained message
cleared (an empty retained payload, the MQTT way to delete one).

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
#: what may not be in one topic level (MQTT: the level separator and the wildcards)
_NOT_IN_A_LEVEL = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def topic(prefix: str, bench: str, leaf: str) -> str:
    return f"{prefix}/{VERSION}/{bench}/{leaf}"


def level(name: str) -> str:
    """``name`` as one topic level: channel names are safe by the config's pattern, drug
    ids by the library's habits; this makes sure (a ``/`` would add a level)."""
    return name.translate(_NOT_IN_A_LEVEL) or "_"


def channel_leaf(channel_id: str) -> str:
    return f"channel/{level(channel_id)}"


def drug_leaf(drug: str) -> str:
    return f"drug/{level(drug)}"


def split_topic(prefix: str, topic_name: str) -> tuple[str, str] | None:
    """(bench, leaf) of a v1 topic under ``prefix`` (the leaf may have levels of its own:
    ``channel/A``), None for anything else. Read from the front: a consumer that took
    the bench from the second-to-last level would read ``channel`` as a bench."""
    head = f"{prefix}/{VERSION}/"
    if not topic_name.startswith(head):
        return None
    bench, _, leaf = topic_name[len(head) :].partition("/")
    if not bench or not leaf:
        return None
    return bench, leaf


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
    drugs: list[dict[str, Any]] | None = None,
    handover: dict[str, Any] | None = None,
    alarms: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The bench now. ``drugs``: each drug's total over its channels; ``handover``: the
    relay handover in progress; ``alarms``: every alarm once, with its scope (a
    channel's list also holds the bench's and its drug's)."""
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
        "drugs": drugs if drugs is not None else [],
        "handover": handover,
        "alarms": alarms if alarms is not None else [],
        "dashboard_url": dashboard_url,
    }


def channel(
    bench: str, seq: int, sent_at: float, *, live: bool, view: dict[str, Any]
) -> dict[str, Any]:
    """One channel on its own retained topic (the same object as in the status)."""
    return {
        "schema": SCHEMA,
        "type": "channel",
        "bench": bench,
        "seq": seq,
        "sent_at": sent_at,
        "live": live,
        "channel": view,
    }


def drug(
    bench: str, seq: int, sent_at: float, *, live: bool, view: dict[str, Any]
) -> dict[str, Any]:
    """One drug's total on its own retained topic (the same object as in the status)."""
    return {
        "schema": SCHEMA,
        "type": "drug",
        "bench": bench,
        "seq": seq,
        "sent_at": sent_at,
        "live": live,
        "drug": view,
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


__all__ = [
    "SCHEMA",
    "STREAMS",
    "VERSION",
    "alarm",
    "channel",
    "channel_leaf",
    "drug",
    "drug_leaf",
    "journal",
    "level",
    "online",
    "split_topic",
    "status",
    "topic",
]
