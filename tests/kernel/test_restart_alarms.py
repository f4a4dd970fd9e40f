"""What a restart tells the operator, event by event: the library check (the same, changed
or unusable library: which alarm, how loud, latched or not, and whether the program may
still be changed) and the timeline's resumption after a gap (an advisory naming the time
credited and how).
"""

from __future__ import annotations

from decimal import Decimal

from safety.alarms import Priority
from safety.kernel.config import KernelConfig
from safety.kernel.model import LibraryChecked, Now, TimelineResumed
from safety.kernel.reducer import apply
from safety.kernel.state import ActiveProgram, KernelState, evolve, load_program, single_channel
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()


def _check(status: str, detail: str, t: float) -> LibraryChecked:
    return LibraryChecked(status, detail, "sha256:x", Now(t, 1.0))  # type: ignore[arg-type]


def _infusing(library: DrugLibrary) -> KernelState:
    program: ActiveProgram = load_program(library, norepi_standard(library), 0.0)
    return single_channel(program=program, running=True, set_rate=Decimal(30))


def test_a_changed_library_latches_a_high_alarm_and_holds_the_program(
    library: DrugLibrary,
) -> None:
    after = apply(CONFIG, _infusing(library), _check("changed", "hard max 47 -> 40", 12.0))
    alarm = after.alarms.get("library_changed")
    assert alarm is not None and not alarm.active  # latched until acknowledged
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.PROGRAM_STALE,
        Priority.HIGH,
        12.0,
    )
    words = "the drug library changed since the program was loaded: hard max 47 -> 40"
    assert alarm.message == words
    assert after.program_stale == words
    # the same library again changes neither the latched alarm nor the staleness
    ok = apply(CONFIG, after, _check("ok", "", 13.0))
    assert ok.alarms.get("library_changed") == alarm  # still waits for its acknowledgement
    assert ok.program_stale == words


def test_an_unusable_library_raises_its_alarm_until_a_usable_one_is_back(
    library: DrugLibrary,
) -> None:
    after = apply(CONFIG, _infusing(library), _check("unusable", "not valid TOML", 5.0))
    alarm = after.alarms.get("library_unusable")
    assert alarm is not None and alarm.active
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.LIBRARY_UNUSABLE,
        Priority.HIGH,
        5.0,
    )
    assert alarm.message == "the drug library cannot be used: not valid TOML"
    assert after.program_stale == alarm.message
    back = apply(CONFIG, after, _check("ok", "", 6.0))
    gone = back.alarms.get("library_unusable")
    assert gone is not None and not gone.active
    # without a program there is nothing to hold, and an earlier reason is kept
    idle = apply(CONFIG, KernelState(), _check("unusable", "gone", 5.0))
    assert idle.program_stale is None
    held = evolve(_infusing(library), program_stale="the journal was damaged")
    assert apply(CONFIG, held, _check("ok", "", 1.0)).program_stale == "the journal was damaged"


def _resumed(credited: float, *, conservative: bool, discontinuity: bool) -> TimelineResumed:
    return TimelineResumed(
        previous_clinical=100.0,
        credited_s=credited,
        offset=0.0,
        basis="a reboot: the synchronised wall clock",
        conservative=conservative,
        discontinuity=discontinuity,
        boot_id="b",
        source="real",
        wall=0.0,
        wall_synced=True,
        now=Now(100.0 + credited, 1.0),
    )


def test_a_resumption_after_a_gap_is_an_advisory_naming_the_credit() -> None:
    after = apply(CONFIG, KernelState(), _resumed(600.0, conservative=False, discontinuity=True))
    alarm = after.alarms.get("timeline")
    assert alarm is not None and not alarm.active  # advisory, latched for acknowledgement
    assert (alarm.reason, alarm.priority, alarm.raised_at) == (
        Reason.TIMELINE_GAP,
        Priority.LOW,
        700.0,
    )
    assert alarm.message == (
        "the clinical timeline resumed after the safety process was down: 10 min by a "
        "reboot: the synchronised wall clock"
    )
    doubt = apply(CONFIG, KernelState(), _resumed(30.0, conservative=True, discontinuity=True))
    alarm = doubt.alarms.get("timeline")
    assert alarm is not None
    assert alarm.message == (
        "the clinical timeline resumed after the safety process was down: counted as 30 s "
        "(a reboot: the synchronised wall clock); the real gap may be longer, and every "
        "window and cap counts the shorter one"
    )
    same = apply(CONFIG, KernelState(), _resumed(5.0, conservative=False, discontinuity=False))
    assert same.alarms.get("timeline") is None
