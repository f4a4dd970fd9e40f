"""The controller's view of alarms: which of the safety process's are news, its own
alarms, and who is told.

The safety process owns its alarms (raised, latched, acknowledged there); the controller
only needs to know which ones it has not shown yet, so it can journal them, call the
subscribers and stop a plan. Its own alarms (link lost, session lost, a plan step refused,
a callback fault) follow the same rule as the safety process's: latched until their
condition is gone *and* they are acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from controller.session_journal import SessionJournal
from safety.alarms import matches
from safety.status import AlarmView, Snapshot

log = logging.getLogger("controller.alarms")

#: the controller's own alarm keys (the safety process's keys never start with this)
OWN = "controller:"
LINK_LOST_KEY = f"{OWN}safety_link_lost"
SESSION_LOST_KEY = f"{OWN}session_lost"
PLAN_REFUSED_KEY = f"{OWN}plan_step_refused"
#: a wean cut short by a lost link or session: its re-planned rest waits for the operator
PLAN_INTERRUPTED_KEY = f"{OWN}plan_interrupted"
FAULT_KEY = f"{OWN}fault"

#: controller alarms that stop plans and need the operator, whatever their priority
_BLOCKING_OWN = frozenset({LINK_LOST_KEY, SESSION_LOST_KEY, PLAN_REFUSED_KEY})

AlarmCallback = Callable[[AlarmView], None]


def blocks(alarm: AlarmView) -> bool:
    """Does this alarm put the controller in ``alarm`` (plans stop, operator must ack)?

    High priority ones (delivery is compromised: occlusion, pump stopped, comms, cap,
    estop, controller lost) and the controller's own link and plan failures. Medium and
    low ones (near empty, cap warning, accuracy) are announced and shown but do not
    interrupt a plan: a cap warning says "wean now", it must not stop a wean."""
    return alarm.priority == "high" or alarm.key in _BLOCKING_OWN


def names(wanted: str, alarms: Sequence[AlarmView]) -> bool:
    """Does ``wanted`` (a key, "scope/key", or a controller alarm's key) name one of
    ``alarms``? The safety process acknowledges whatever it is sent, a key that names
    nothing included, so the controller must tell a typo from an acknowledgement."""
    return any(matches(a.key, a.scope, wanted) for a in alarms)


def alarm_names(alarms: Sequence[AlarmView], *, scoped: bool) -> list[str]:
    """How an acknowledgement can name ``alarms`` (``scoped``: "scope/key", as a bench of
    several pumps shows them), each once."""
    return list(dict.fromkeys(a.ident if scoped else a.key for a in alarms))


def unknown_keys_text(unknown: Sequence[str], known_now: Sequence[str]) -> str:
    """Which keys name no alarm, and what can be acknowledged instead."""
    which = ", ".join(repr(k) for k in unknown)
    noun = "alarm" if len(unknown) == 1 else "alarms"
    now = (
        f"alarms that can be acknowledged now: {', '.join(known_now)}"
        if known_now
        else "there is no alarm to acknowledge now"
    )
    return f"no {noun} {which}; {now}"


class AlarmDesk:
    """Not thread-safe by itself: the session calls it under its lock."""

    def __init__(self, journal: SessionJournal, clinical_now: Callable[[], float]) -> None:
        self._journal = journal
        self._now = clinical_now
        self._callbacks: list[AlarmCallback] = []
        self._acked: dict[str, bool] = {}  # last seen acknowledgement per safety alarm key
        self._own: dict[str, AlarmView] = {}

    @property
    def own(self) -> tuple[AlarmView, ...]:
        return tuple(self._own.values())

    def get(self, key: str) -> AlarmView | None:
        return self._own.get(key)

    def subscribe(self, callback: AlarmCallback) -> None:
        self._callbacks.append(callback)

    def unsubscribe(self, callback: AlarmCallback) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    # ------------------------------------------------------------------ safety alarms
    def news(self, snapshot: Snapshot) -> list[AlarmView]:
        """Alarms new in this snapshot, or annunciating again after an acknowledgement;
        each is journaled and announced once."""
        fresh: list[AlarmView] = []
        present = set()
        for alarm in snapshot.alarms:
            present.add(alarm.key)
            before = self._acked.get(alarm.key)
            self._acked[alarm.key] = alarm.acknowledged
            if not alarm.acknowledged and (before is None or before):
                fresh.append(alarm)
        for key in [k for k in self._acked if k not in present]:
            del self._acked[key]
        for alarm in fresh:
            self._journal.note("alarm", source="safety", alarm=alarm)
            self.announce(alarm)
        return fresh

    def remember(self, snapshot: Snapshot) -> None:
        """The operator acknowledged: what this snapshot shows is not news."""
        for alarm in snapshot.alarms:
            self._acked[alarm.key] = alarm.acknowledged

    # ------------------------------------------------------------------ own alarms
    def raise_own(self, key: str, priority: str, reason: str, message: str) -> None:
        existing = self._own.get(key)
        alarm = AlarmView(
            key=key,
            priority=priority,
            reason=reason,
            message=message,
            raised_at=self._now(),
            active=True,
            acknowledged=False,
        )
        if existing is not None and existing.active and not existing.acknowledged:
            self._own[key] = replace(alarm, raised_at=existing.raised_at)  # still the same
            return
        self._own[key] = alarm
        self._journal.note("alarm", source="controller", alarm=alarm)
        self.announce(alarm)

    def condition_gone(self, key: str) -> None:
        """The condition of one of the controller's own alarms is gone: journaled (so a
        journal's reader and its plots know when it ended, as for the safety process's
        alarms), then forgotten if acknowledged, else latched until it is."""
        alarm = self._own.get(key)
        if alarm is None or not alarm.active:
            return
        gone = replace(alarm, active=False)
        self._journal.note("alarm", source="controller", alarm=gone, event="cleared")
        if alarm.acknowledged:
            del self._own[key]
        else:
            self._own[key] = gone

    def acknowledge(self, keys: tuple[str, ...] | None) -> None:
        for key, alarm in list(self._own.items()):
            if keys is not None and key not in keys:
                continue
            if alarm.active:
                self._own[key] = replace(alarm, acknowledged=True)
            else:
                del self._own[key]

    # ------------------------------------------------------------------ telling people
    def announce(self, alarm: AlarmView) -> None:
        for callback in list(self._callbacks):
            try:
                callback(alarm)
            except Exception as exc:
                log.error("alarm callback %r failed: %r", callback, exc)
                self._journal.note("error", what="alarm callback failed", error=repr(exc))
