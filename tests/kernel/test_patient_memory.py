"""S16: the patient's memory that a reboot, a drug detour, a profile switch or a library
update cannot erase (issue 9's four ways past the limits, each reproduced and closed).

Every refusal that held before the event must hold after it, checked on what the pump
really delivers (the bench's pump truth), not only on verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from safety.alarms import Priority
from safety.kernel.model import (
    AdmitPatient,
    LibraryChecked,
    PatientAdmitted,
    PatientSpec,
    ProgramSpec,
    TimelineResumed,
    UpdatePatient,
)
from safety.library import DrugLibrary
from safety.library.loader import parse_library
from safety.reasons import Reason
from tests.kernel.support import Bench, norepi_standard, norepi_weight_based, vasopressin_fixed

HOUR = 3600.0


def _at_twelve(bench: Bench, std: ProgramSpec) -> None:
    """8 -> 10 -> 12 mcg/min, each step allowed (2 mcg/min, window +4 from 8)."""
    assert bench.load(std).verdict.accepted
    assert bench.start(8).verdict.accepted
    bench.advance(60)
    assert bench.change(10).verdict.accepted
    bench.advance(60)
    assert bench.change(12).verdict.accepted
    bench.advance(60)


def _wean_and_stop_refused(bench: Bench) -> None:
    out = bench.change(2)
    assert out.verdict.reason is Reason.WEAN_TOO_FAST, out.verdict.message
    assert bench.stop().verdict.reason is Reason.STOP_ABOVE_THRESHOLD
    assert bench.truth_rate() == 45.0  # 12 mcg/min at 16 mcg/mL, delivered on


# --------------------------------------------------------------------------- 1. reboot


@pytest.mark.parametrize(
    ("gap_s", "synced"),
    [(30.0, False), (40 * 60.0, False), (40 * 60.0, True), (50 * 60.0, True)],
    ids=["short-unsynced", "long-unsynced", "long-synced", "longer-synced"],
)
def test_a_reboot_keeps_the_wean_rule(
    make_bench: Callable[..., Bench], std: ProgramSpec, gap_s: float, synced: bool
) -> None:
    """Issue 9, 1: at 12 mcg/min a drop to 2 and a stop are refused; a reboot restarts the
    monotonic clock near zero, and before the fix the replayed history lay 'in the future'
    and both were accepted. Whatever the evidence about the gap, they stay refused (the
    gaps stay within what the 50 mL syringe holds at 45 mL/h)."""
    bench = make_bench()
    bench.evidence.wall_synced = synced
    bench.boot()
    _at_twelve(bench, std)
    _wean_and_stop_refused(bench)
    before = bench.patient_now()

    bench.reboot(gap_s, wall_synced=synced)
    bench.ack()

    assert bench.patient_now() >= before  # the timeline never runs backwards
    _wean_and_stop_refused(bench)


def test_a_reboot_credits_a_synchronised_wall_clock_and_otherwise_the_time_since_boot(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    bench = make_bench()
    bench.evidence.wall_synced = True
    bench.boot()
    _at_twelve(bench, std)
    before = bench.patient_now()
    bench.reboot(2 * HOUR, wall_synced=True)
    resumed = [e for e in bench.events() if isinstance(e, TimelineResumed)][-1]
    assert resumed.discontinuity and not resumed.conservative
    # the synchronised wall clock said 2 h (+ the 5 s of uptime, + the first poll)
    assert resumed.credited_s == pytest.approx(2 * HOUR, abs=10)
    assert bench.patient_now() - before == pytest.approx(2 * HOUR, abs=10)

    bench.reboot(2 * HOUR, wall_synced=False, uptime_s=30.0)
    resumed = [e for e in bench.events() if isinstance(e, TimelineResumed)][-1]
    assert resumed.conservative and "lower bound" in resumed.basis
    assert resumed.credited_s == pytest.approx(30.0, abs=1)
    alarm = bench.core.state.alarms.get("timeline")
    assert alarm is not None and alarm.priority is Priority.LOW
    assert "may be longer" in alarm.message


def test_a_monotonic_clock_that_runs_backwards_in_the_same_boot_credits_nothing(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """A time namespace (what the HIL reboot uses): same boot id, monotonic near zero."""
    bench = make_bench()
    bench.boot()
    _at_twelve(bench, std)
    before = bench.patient_now()
    bench.reboot(10 * 60.0, new_boot=False)
    resumed = [e for e in bench.events() if isinstance(e, TimelineResumed)][-1]
    assert resumed.conservative and resumed.credited_s == 0.0
    assert "ran backwards" in resumed.basis
    assert bench.patient_now() >= before
    _wean_and_stop_refused(bench)


def test_a_reboot_keeps_the_cap_and_counts_what_the_pump_gave_unseen(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Issue 9, 1 (cap): 0.9 mcg/kg/min at 70 kg (63 mcg/min) has given 67.3 mg; the pump
    runs on through a 6 min reboot that the timeline can only credit as its 5 s of uptime.
    The pump's own volume counter shows the 0.38 mg given meanwhile: counted, so the cap
    stops the pump before 68 mg (on the pump's truth), and a start stays refused."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    rate = float(bench.pump_rate_for(spec, "0.9"))
    per_s = rate * 16 / 3600
    boot = 67_300 / per_s
    bench.seed(spec, [(0.0, "0.9")], boot_at=boot)
    bench.boot()
    bench.advance(5)
    bench.reboot(6 * 60.0, wall_synced=False)
    unseen = bench.core.state.history.boluses
    assert len(unseen) == 1
    assert unseen[0].amount == pytest.approx(per_s * (6 * 60.0 - 5.0), rel=0.05)
    bench.advance(15 * 60)
    assert not bench.pump.snapshot().running
    cap = bench.core.state.alarms.get("cap")
    assert cap is not None and cap.priority is Priority.HIGH, bench.core.state.alarms
    delivered = 67_300 + bench.pump.truth.delivered_ml(bench.clinical.now()) * 16
    assert delivered <= 68_000
    bench.ack()
    assert bench.start("0.02").verdict.reason is Reason.CUMULATIVE_CAP


# --------------------------------------------------------------------------- 2. drug detour


def test_a_drug_detour_keeps_the_first_drugs_cap(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Issue 9, 2: norepinephrine with 67.6 mg given; vasopressin loaded and stopped;
    norepinephrine again: before the fix its history was gone and a start passed."""
    spec = norepi_weight_based(library)
    bench = make_bench()
    per_s = float(bench.pump_rate_for(spec, "0.9")) * 16 / 3600
    end = 67_600 / per_s
    bench.seed(spec, [(0.0, "0.9"), (end, 0)], boot_at=end + 600)
    bench.boot()
    assert bench.start("0.1").verdict.reason is Reason.CUMULATIVE_CAP

    assert bench.load(vasopressin_fixed(library)).verdict.accepted
    assert bench.start("0.03").verdict.accepted
    bench.advance(10 * 60)
    assert bench.stop().verdict.accepted
    assert bench.load(spec).verdict.accepted

    assert bench.start("0.1").verdict.reason is Reason.CUMULATIVE_CAP
    assert bench.truth_rate() == 0.0
    in_window = bench.core.snapshot().given_in_cap_window
    assert in_window is not None and float(in_window) == pytest.approx(67.6, abs=0.01)


def test_a_concentration_change_keeps_the_history_in_drug_amounts(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """A new syringe at 8 mg/250 mL: the wean window still sees 12 mcg/min (not 12 x 2)."""
    bench = make_bench()
    bench.boot()
    _at_twelve(bench, std)
    bench.advance(10 * 60)
    assert bench.change(10).verdict.accepted  # a fall within the 25 % floor of 12 (9)
    bench.advance(60)
    assert bench.change("9.5").verdict.accepted
    bench.advance(60)
    # wean to the floor and stop, then the double-strength syringe
    out = bench.change(8)
    assert out.verdict.reason is Reason.WEAN_TOO_FAST  # 8 < 9 = 0.75 x 12 of 30 min
    assert bench.estop().verdict.accepted and bench.ack().verdict.accepted
    double = norepi_standard(bench.library, concentration="8 mg/250 mL")
    assert bench.load(double).verdict.accepted
    assert bench.start(12).verdict.accepted  # the rate of the titration window licenses it
    bench.advance(60)
    assert bench.change(2).verdict.reason is Reason.WEAN_TOO_FAST


# --------------------------------------------------------------------------- 3. profile switch


def test_a_profile_switch_needs_a_confirmed_patient_update_and_keeps_the_adult_cap(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Issue 9, 3: same drug, same 55 kg patient, adult ICU -> paediatric ICU (no cap, a
    5x higher hard max): before the fix the start the adult cap refused was accepted."""
    adult = norepi_weight_based(library, Decimal(55))
    bench = make_bench()
    per_s = float(bench.pump_rate_for(adult, "0.9")) * 16 / 3600
    end = 67_800 / per_s  # a start at 0.1 (0.33 mg/h at 55 kg) would cross 68
    bench.seed(adult, [(0.0, "0.9"), (end, 0)], boot_at=end + 600)
    bench.boot()
    assert bench.start("0.1").verdict.reason is Reason.CUMULATIVE_CAP

    paed = norepi_standard(
        library,
        profile="pediatric_icu",
        therapy="weight_based",
        weight_kg=Decimal(55),
        concentration="4 mg/250 mL",
    )
    # a program for another profile than the patient's is refused outright
    assert bench.load(paed).verdict.reason is Reason.PATIENT_MISMATCH
    update = UpdatePatient(PatientSpec("pediatric_icu", Decimal(55)))
    assert bench.send(update).verdict.reason is Reason.CONFIRMATION_REQUIRED
    assert bench.send(UpdatePatient(update.patient, confirm=True)).verdict.accepted
    assert bench.load(paed).verdict.accepted

    # the adult cap binds until its 24 h window has passed
    out = bench.start("0.1")
    assert out.verdict.reason is Reason.CUMULATIVE_CAP
    assert "still in force" in out.verdict.message
    assert bench.truth_rate() == 0.0
    bench.advance(25 * 3600)
    assert bench.start("0.1").verdict.accepted


def test_a_weight_correction_while_infusing_needs_a_re_program_and_keeps_the_old_limits(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """70 kg corrected to 50 kg while 0.1 mcg/kg/min (7 mcg/min) runs: the pump runs on
    (supervised), changes wait for the program to be loaded again at 50 kg, and the
    70 kg limits still bind beside the 50 kg ones until their windows pass."""
    bench = make_bench()
    bench.boot()
    spec70 = norepi_weight_based(library, Decimal(70))
    assert bench.load(spec70).verdict.accepted
    assert bench.start("0.1").verdict.accepted
    bench.advance(60)
    fix = UpdatePatient(PatientSpec("adult_icu", Decimal(50)), confirm=True)
    assert bench.send(fix).verdict.accepted
    out = bench.change("0.12")
    assert out.verdict.reason is Reason.PROGRAM_STALE
    assert bench.truth_rate() > 0
    spec50 = norepi_weight_based(library, Decimal(50))
    reloaded = bench.load(spec50)
    assert reloaded.verdict.accepted, reloaded.verdict.message
    assert "re-programmed in place" in reloaded.verdict.message
    assert bench.core.snapshot().priors  # the 70 kg limits, still in force


def test_a_new_patient_is_the_only_fresh_start_and_must_be_confirmed(
    make_bench: Callable[..., Bench], library: DrugLibrary, std: ProgramSpec
) -> None:
    spec = norepi_weight_based(library)
    bench = make_bench()
    per_s = float(bench.pump_rate_for(spec, "0.9")) * 16 / 3600
    end = 67_600 / per_s
    bench.seed(spec, [(0.0, "0.9"), (end, 0)], boot_at=end + 600)
    bench.boot()
    first = bench.core.state.patient
    assert first is not None
    admit = AdmitPatient(PatientSpec("adult_icu", Decimal(70)))
    assert bench.send(admit).verdict.reason is Reason.CONFIRMATION_REQUIRED
    assert bench.send(AdmitPatient(admit.patient, confirm_new_patient=True)).verdict.accepted
    patient = bench.core.state.patient
    assert patient is not None and patient.id != first.id and patient.how == "admitted"
    assert bench.core.state.program is None and bench.core.state.drugs == {}
    assert bench.load(spec).verdict.accepted
    assert bench.start("0.1").verdict.accepted  # a new patient's cap starts empty
    admitted = [e for e in bench.events() if isinstance(e, PatientAdmitted)]
    assert [e.how for e in admitted] == ["first program", "admitted"]
    # never while infusing
    again = bench.send(AdmitPatient(admit.patient, confirm_new_patient=True))
    assert again.verdict.reason is Reason.ALREADY_INFUSING


def test_a_program_for_another_solution_is_refused_while_it_runs(
    infusing: Bench, library: DrugLibrary
) -> None:
    double = norepi_standard(library, concentration="8 mg/250 mL")
    assert infusing.load(double).verdict.reason is Reason.ALREADY_INFUSING
    assert infusing.load(vasopressin_fixed(library)).verdict.reason is Reason.ALREADY_INFUSING
    same = norepi_standard(library)
    assert infusing.load(same).verdict.accepted


# --------------------------------------------------------------------------- 4. library update


STANDARD = "[profiles.adult_icu.drugs.norepinephrine.therapies.standard]"


def _from_text(text: str) -> DrugLibrary:
    model, digest = parse_library(text)
    return DrugLibrary(model, digest)


def _tightened(library: DrugLibrary, **figures: str) -> DrugLibrary:
    """The library with some adult standard norepinephrine figures changed."""
    text = Path(library.path).read_text(encoding="utf-8")
    for name, value in figures.items():
        old = f"{name} = {{ value = "
        start = text.index(old, text.index(STANDARD))
        end = text.index(",", start)
        text = text[:start] + f"{old}{value}" + text[end:]
    return _from_text(text)


def test_a_library_update_between_runs_holds_the_pump_and_names_what_changed(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """Issue 9, 4: the journal holds a program the new library no longer allows (or
    allows with other figures): before the fix the replay raised and the process died,
    leaving the pump unsupervised. Now it starts, supervises the running rate, raises a
    high alarm naming the change and refuses changes until a re-program."""
    bench = make_bench()
    bench.boot()
    _at_twelve(bench, std)
    newer = _tightened(bench.library, hard_max="40", soft_max="30")
    bench.restart(library=newer)
    checked = [e for e in bench.events() if isinstance(e, LibraryChecked)][-1]
    assert checked.status == "changed"
    assert "hard max 47 -> 40" in checked.detail
    alarm = bench.core.state.alarms.get("library_changed")
    assert alarm is not None and alarm.priority is Priority.HIGH
    assert bench.change(10).verdict.reason is Reason.PROGRAM_STALE
    assert bench.truth_rate() == 45.0
    # the wean rule still holds (journaled limits), and a re-program under the new library
    # brings changes back, with the old figures still binding until their windows pass
    spec = norepi_standard(newer)
    assert bench.load(spec).verdict.accepted
    assert bench.change(2).verdict.reason is Reason.WEAN_TOO_FAST
    assert bench.change(10).verdict.accepted


def test_a_library_that_no_longer_allows_the_program_names_why(
    make_bench: Callable[..., Bench], std: ProgramSpec, library: DrugLibrary
) -> None:
    bench = make_bench()
    bench.boot()
    _at_twelve(bench, std)
    text = Path(library.path).read_text(encoding="utf-8")
    text = text.replace('strength = "4 mg/250 mL"', 'strength = "4 mg/500 mL"')
    bench.restart(library=_from_text(text))
    checked = [e for e in bench.events() if isinstance(e, LibraryChecked)][-1]
    assert checked.status == "changed" and "no longer allows" in checked.detail
    assert bench.change(10).verdict.reason is Reason.PROGRAM_STALE


def test_no_usable_library_still_supervises_with_the_journaled_limits(
    make_bench: Callable[..., Bench], std: ProgramSpec
) -> None:
    """The library file unusable at start: the process supervises with the limits its
    journal holds (S1 on read-back included) and refuses new programs with the reason."""
    bench = make_bench()
    bench.boot()
    _at_twelve(bench, std)
    bench.core = bench._new_core()
    bench.core.library = None
    bench.core.library_problem = "drug_library.toml: line 3: invalid"
    bench.core.start()
    bench.attach()
    alarm = bench.core.state.alarms.get("library_unusable")
    assert alarm is not None and "line 3" in alarm.message
    assert bench.load(std).verdict.reason is Reason.LIBRARY_UNUSABLE
    assert bench.change(10).verdict.reason is Reason.PROGRAM_STALE
    # a pump run above the journaled hard max is still stopped on read-back
    bench.pump.set_rate(47 * 60 / 16 + 1)
    bench.advance(5)
    assert not bench.pump.snapshot().running


# --------------------------------------------------------------------------- 5. long windows


def test_a_cap_window_longer_than_a_day_is_counted_whole(
    make_bench: Callable[..., Bench], library: DrugLibrary
) -> None:
    """Issue 9, 5: the history kept 26 h whatever the library said. A 48 h cap of 68 mg
    must count a dose given 29-47 h ago."""
    text = Path(library.path).read_text(encoding="utf-8")
    text = text.replace('unit = "mg", window_h = 24,', 'unit = "mg", window_h = 48,', 1)
    longer = _from_text(text)
    spec = norepi_weight_based(longer)
    bench = make_bench()
    bench.library = longer
    bench.core = bench._new_core()
    assert bench.core.config.history_keep_s >= 48 * HOUR
    per_s = float(bench.pump_rate_for(spec, "0.9")) * 16 / 3600
    end = 67_800 / per_s
    bench.seed(spec, [(0.0, "0.9"), (end, 0)], boot_at=46 * HOUR)  # all of it > 26 h ago
    bench.boot()
    bench.advance(3600)
    in_window = bench.core.snapshot().given_in_cap_window
    assert in_window is not None and float(in_window) == pytest.approx(67.8, abs=0.01)
    assert bench.start("0.1").verdict.reason is Reason.CUMULATIVE_CAP


def _at_sixteen_then_stopped(bench: Bench, std: ProgramSpec) -> None:
    """12 -> 14 -> 16 mcg/min (above the max start of 12), then an emergency stop."""
    _at_twelve(bench, std)
    bench.advance(10 * 60)
    assert bench.change(14).verdict.accepted
    bench.advance(60)
    assert bench.change(16).verdict.accepted
    bench.advance(60)
    assert bench.estop().verdict.accepted
    assert bench.ack().verdict.accepted


@pytest.mark.parametrize("synced", [True, False], ids=["synced", "unsynced"])
def test_a_rate_from_before_a_reboot_of_unknown_length_licenses_no_start(
    make_bench: Callable[..., Bench], std: ProgramSpec, synced: bool
) -> None:
    """Within the titration window a start may resume the dose that ran (S4). After a
    reboot whose length only has a lower bound, the real gap may be past the window: the
    dose from before it licenses nothing, the max start applies. (Crediting less time is
    the conservative side for every window that holds history in, but not for a
    licence that history grants.) A gap the evidence measures keeps the licence."""
    bench = make_bench()
    bench.evidence.wall_synced = synced
    bench.boot()
    _at_sixteen_then_stopped(bench, std)
    bench.reboot(2 * 60.0, wall_synced=synced)
    bench.ack()
    resumed = [e for e in bench.events() if isinstance(e, TimelineResumed)][-1]
    assert resumed.conservative is not synced
    out = bench.start(16, confirm=True)
    if synced:  # 2 min measured: the 16 that ran is in the window
        assert out.verdict.accepted, out.verdict.message
    else:
        assert out.verdict.reason is Reason.START_TOO_HIGH, out.verdict.message
        assert bench.start(12).verdict.accepted  # the max start itself
