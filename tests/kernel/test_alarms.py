"""Alarm latching (safety/alarms.py): IEC 60601-1-8 priorities; an alarm stays until its
condition is gone AND it has been acknowledged; acknowledging a present condition only
silences it for a while, then it annunciates again."""

from __future__ import annotations

from safety.alarms import SILENCE_S, AlarmBook, Priority
from safety.reasons import Reason


def _raised(book: AlarmBook | None = None, key: str = "pump:occlusion") -> AlarmBook:
    return (book or AlarmBook()).raised(key, Reason.PUMP_ALARM, Priority.HIGH, "occluded", 10.0)


def test_raised_alarm_is_active_and_annunciating() -> None:
    book = _raised()
    alarm = book.get("pump:occlusion")
    assert alarm is not None and alarm.active and alarm.annunciating
    assert book.highest() is Priority.HIGH


def test_condition_gone_without_acknowledge_stays_latched() -> None:
    book = _raised().condition_gone("pump:occlusion")
    alarm = book.get("pump:occlusion")
    assert alarm is not None and not alarm.active and alarm.annunciating


def test_acknowledge_after_condition_gone_clears_it() -> None:
    book = _raised().condition_gone("pump:occlusion").acknowledged(None, 0.0)
    assert book.get("pump:occlusion") is None and book.highest() is None


def test_acknowledge_while_present_silences_then_condition_gone_clears() -> None:
    book = _raised().acknowledged(None, 0.0)
    alarm = book.get("pump:occlusion")
    assert alarm is not None and alarm.active and not alarm.annunciating
    assert book.condition_gone("pump:occlusion").get("pump:occlusion") is None


def test_silence_ends_and_a_persisting_condition_annunciates_again() -> None:
    book = _raised().acknowledged(None, 100.0)
    assert book.rearmed(100.0 + SILENCE_S - 0.001).annunciating() == ()
    again = book.rearmed(100.0 + SILENCE_S)
    alarm = again.get("pump:occlusion")
    assert alarm is not None and alarm.annunciating and not alarm.acknowledged


def test_condition_returning_after_it_was_gone_must_be_acknowledged_again() -> None:
    book = _raised().acknowledged(None, 0.0)  # silenced while present
    book = book.condition_gone("pump:occlusion")  # gone: acknowledged -> cleared
    book = _raised(book)  # back
    alarm = book.get("pump:occlusion")
    assert alarm is not None and alarm.annunciating
    # gone but not acknowledged, then back: still one alarm, annunciating
    book2 = _raised().condition_gone("pump:occlusion")
    book2 = _raised(book2)
    alarm2 = book2.get("pump:occlusion")
    assert alarm2 is not None and alarm2.active and alarm2.annunciating
    assert len(book2.alarms) == 1


def test_re_raising_never_lowers_the_priority() -> None:
    book = _raised().raised("pump:occlusion", Reason.PUMP_ALARM, Priority.LOW, "x", 11.0)
    alarm = book.get("pump:occlusion")
    assert alarm is not None and alarm.priority is Priority.HIGH


def test_acknowledging_some_keys_leaves_the_others() -> None:
    book = _raised(_raised(), "pump_comms")
    book = book.acknowledged(("pump_comms",), 0.0)
    occl, comms = book.get("pump:occlusion"), book.get("pump_comms")
    assert occl is not None and occl.annunciating
    assert comms is not None and not comms.annunciating


def test_raising_a_present_acknowledged_alarm_keeps_it_silenced() -> None:
    """The condition persists (raised again on each read-back): the silence holds."""
    book = _raised().acknowledged(None, 0.0)
    book = _raised(book)
    alarm = book.get("pump:occlusion")
    assert alarm is not None and alarm.acknowledged and not alarm.annunciating
