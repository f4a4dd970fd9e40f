"""Alarms with IEC 60601-1-8 priorities, latched until the condition is gone AND they are
acknowledged.

The book is an immutable value: every change returns a new book, so the safety kernel can
rebuild it exactly by replaying its journal. An alarm is one condition in one scope: the
bench (""), a channel (its name: "pump_comms" on channel B is not channel A's) or a drug
("drug:norepinephrine": its cumulative cap); (scope, key) is its identity, and the key
alone names the condition whatever the scope ("pump:occlusion", "cap"). Acknowledging an
alarm whose condition is still present silences it for ``SILENCE_S`` seconds only; after
that it annunciates again (an alarm can never be disabled for good; Generic Infusion Pump
requirements).
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


def matches(alarm_key: str, scope: str, wanted: str) -> bool:
    """Does ``wanted`` (a key, or "scope/key") name the alarm ``key`` in ``scope``?"""
    if "/" in wanted:
        want_scope, _, want_key = wanted.partition("/")
        return want_scope == scope and want_key == alarm_key
    return wanted == alarm_key


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
    #: "" the bench, a channel's name, or "drug:<id>"
    scope: str = ""

    @property
    def annunciating(self) -> bool:
        """Should a person be told right now (sound/light)?"""
        return not self.acknowledged

    @property
    def ident(self) -> str:
        """ "scope/key" (the key alone for a bench alarm): unique in a book."""
        return f"{self.scope}/{self.key}" if self.scope else self.key


@dataclass(frozen=True)
class AlarmBook:
    alarms: tuple[Alarm, ...] = ()

    def get(self, key: str, scope: str | None = None) -> Alarm | None:
        """The alarm ``key`` in ``scope`` (None: in any scope, the first raised)."""
        for alarm in self.alarms:
            if alarm.key == key and (scope is None or alarm.scope == scope):
                return alarm
        return None

    def raised(
        self,
        key: str,
        reason: Reason,
        priority: Priority,
        message: str,
        at: float,
        scope: str = "",
    ) -> AlarmBook:
        """The condition is present. A new alarm, or an existing one made active again."""
        existing = self.get(key, scope)
        if existing is None:
            alarm = Alarm(key, reason, priority, message, at, scope=scope)
            return AlarmBook((*self.alarms, alarm))
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

    def condition_gone(self, key: str, scope: str = "") -> AlarmBook:
        existing = self.get(key, scope)
        if existing is None or not existing.active:
            return self
        if existing.acknowledged:
            return self._without(existing)
        return self._with(replace(existing, active=False))

    def acknowledged(self, keys: tuple[str, ...] | None, liveness_now: float) -> AlarmBook:
        """Acknowledge some (or all, with None) alarms; cleared ones disappear. A key
        acknowledges that condition in every scope; "scope/key" in one."""
        out: list[Alarm] = []
        for alarm in self.alarms:
            if keys is not None and not any(matches(alarm.key, alarm.scope, k) for k in keys):
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

    def has(self, key: str, scope: str | None = None) -> bool:
        return self.get(key, scope) is not None

    def _with(self, alarm: Alarm) -> AlarmBook:
        return AlarmBook(
            tuple(alarm if (a.key, a.scope) == (alarm.key, alarm.scope) else a for a in self.alarms)
        )

    def _without(self, alarm: Alarm) -> AlarmBook:
        return AlarmBook(
            tuple(a for a in self.alarms if (a.key, a.scope) != (alarm.key, alarm.scope))
        )
