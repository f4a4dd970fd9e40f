"""Conditions on the safety process's snapshot that the real-process cases wait for.

Each returns the snapshot when the condition holds and None otherwise, so it can be
handed to ``wait_for`` as it is and the snapshot that satisfied it is what the case then
asserts on (no second read that could already differ).
"""

from __future__ import annotations

from safety.ipc.client import SafetyClient
from safety.status import AlarmView, Snapshot


def alarm(snap: Snapshot, key: str) -> AlarmView | None:
    """The alarm ``key`` in a snapshot (active or not), if it is there."""
    return next((a for a in snap.alarms if a.key == key), None)


def active(link: SafetyClient, key: str) -> Snapshot | None:
    """The snapshot, if alarm ``key`` is active in it."""
    snap = link.snapshot()
    found = alarm(snap, key)
    return snap if found is not None and found.active else None


def held_with_alarm(link: SafetyClient) -> Snapshot | None:
    """The snapshot, if the safety process holds the rate (S11) with the high-priority
    'controller lost' alarm active."""
    snap = link.snapshot()
    lost = alarm(snap, "controller_lost")
    ok = lost is not None and lost.priority == "high" and lost.active
    return snap if snap.hold and ok else None
