"""Alarms with IEC 60601-1-8 priorities, latched until the condition is gone AND they are
acknowledged.

The book is an immutable value: every change returns a new book, so the safety kernel can
rebuild it exactly by replaying its journal. Acknowledging an alarm whose condition is
still present silences it for ``SILENCE_S`` seconds only; after that it annunciates again
(an alarm can never be disabled for good; Generic Infusion Pump requirements).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from safety.reasons import Reason

#: how long an acknowledgement silences an alarm whose condition persists (liveness s)
SILENCE_S = 120.0


class Priority(enum.IntEnum):
    """IEC 60601-1-8 alarm priorities."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def word(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Alarm:
    key: str  # one per condition, e.g. "pump:occlusion", "controller_lost", "cap"
    reason: Reason
    priority: Priority
    message: str
    raised_at: float  # clinical time
    active: bool = True  # the condition is still present
    acknowledged: bool = False
    silenced_until: float | None = None  # liveness time

    @property
    def annunciating(self) -> bool:
        """Should a person be told right now (sound/light)?"""
        return not self.acknowledged


@dataclass(frozen=True)
class AlarmBook:
    alarms: tuple[Alarm, ...] = ()

    def get(self, key: str) -> Alarm | None:
        for alarm in self.alarms:
            if alarm.key == key:
                return alarm
        return None

    def raised(
        self, key: str, reason: Reason, priority: Priority, message: str, at: float
    ) -> AlarmBook:
        """The condition is present. A new alarm, or an existing one made active again."""
        existing = self.get(key)
        if existing is None:
            return AlarmBook((*self.alarms, Alarm(key, reason, priority, message, at)))
        updated = replace(
            existing,
            reason=reason,
            priority=max(existing.priority, priority),
            message=message,
            active=True,
            # a condition that returned after it was gone must be acknowledged again
            acknowledged=existing.acknowledged and existing.active,
        )
        return self._with(updated)

    def condition_gone(self, key: str) -> AlarmBook:
        existing = self.get(key)
        if existing is None or not existing.active:
            return self
        if existing.acknowledged:
            return self._without(key)
        return self._with(replace(existing, active=False))

    def acknowledged(self, keys: tuple[str, ...] | None, liveness_now: float) -> AlarmBook:
        """Acknowledge some (or all, with None) alarms; cleared ones disappear."""
        out: list[Alarm] = []
        for alarm in self.alarms:
            if keys is not None and alarm.key not in keys:
                out.append(alarm)
            elif not alarm.active:
                continue  # condition gone and now acknowledged: cleared
            else:
                out.append(
                    replace(alarm, acknowledged=True, silenced_until=liveness_now + SILENCE_S)
                )
        return AlarmBook(tuple(out))

    def rearmed(self, liveness_now: float) -> AlarmBook:
        """Silence ends for alarms whose condition persists."""
        changed = False
        out: list[Alarm] = []
        for alarm in self.alarms:
            if (
                alarm.active
                and alarm.acknowledged
                and alarm.silenced_until is not None
                and liveness_now >= alarm.silenced_until
            ):
                out.append(replace(alarm, acknowledged=False, silenced_until=None))
                changed = True
            else:
                out.append(alarm)
        return AlarmBook(tuple(out)) if changed else self

    def highest(self) -> Priority | None:
        return max((a.priority for a in self.alarms), default=None)

    def annunciating(self) -> tuple[Alarm, ...]:
        return tuple(a for a in self.alarms if a.annunciating)

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def _with(self, alarm: Alarm) -> AlarmBook:
        return AlarmBook(tuple(alarm if a.key == alarm.key else a for a in self.alarms))

    def _without(self, key: str) -> AlarmBook:
        return AlarmBook(tuple(a for a in self.alarms if a.key != key))
