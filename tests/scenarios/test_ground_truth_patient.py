"""The ground-truth oracle judges the delivered drug per patient and drug (S16), on
hand-made journals and truths: a drug switch, a concentration change, the limits of an
earlier program still in force, a new patient, journal times put on the pump's clock
after a reboot, the plunger's record, and instants a virtual clock shares.

Each case is built so that the oracle's verdict turns on the one capability it tests:
without it, the verdict would differ.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from firmware_bridge.pump_model import TruthEvent, TruthSegment
from safety.kernel.model import (
    CommandIssued,
    Event,
    Now,
    PatientAdmitted,
    PatientSpec,
    ProgramLoaded,
    ProgramSpec,
    PumpReading,
    ReadbackReceived,
    SetRate,
    StartPump,
    StopPump,
    TimelineResumed,
)
from safety.kernel.state import load_program
from safety.library import DrugLibrary
from tests.kernel.support import library_variant
from verification.ground_truth import SafetyRecord, TruthReport, check_ground_truth

HOUR = 3600.0
#: mL/h per mcg/min at 16 and 32 mcg/mL; per units/min at 0.2 units/mL
AT_16 = 3.75
AT_32 = 1.875
VASO = 300.0
NOREPI = "profiles.adult_icu.drugs.norepinephrine"


def _spec(
    library: DrugLibrary,
    *,
    drug: str = "norepinephrine",
    profile: str = "adult_icu",
    therapy: str = "standard",
    concentration: str = "4 mg/250 mL",
    diluent: str = "D5W",
    kg: int | None = None,
) -> ProgramSpec:
    weight = Decimal(kg) if kg is not None else None
    return ProgramSpec(library.content_hash, drug, profile, therapy, concentration, diluent, weight)


def _vasopressin(library: DrugLibrary) -> ProgramSpec:
    return _spec(
        library, drug="vasopressin", therapy="fixed", concentration="20 units/100 mL", diluent="NS"
    )


class Journal:
    """A safety journal written by hand: what a safety process would journal for each
    program, command and read-back (the read-back shows the command's effect)."""

    def __init__(self, library: DrugLibrary) -> None:
        self.library = library
        self.events: list[Event] = []
        self.rate = Decimal(0)
        self.running = False

    def load(self, t: float, spec: ProgramSpec, library: DrugLibrary | None = None) -> None:
        limits = load_program(library or self.library, spec, t).limits
        self.events.append(ProgramLoaded(spec, limits, 0.0, Now(t, t)))

    def _read(self, t: float) -> None:
        self.events.append(ReadbackReceived(PumpReading(self.running, self.rate, 0.0), Now(t, t)))

    def set(self, t: float, rate_ml_h: float, cause: str = "command", *, read: bool = True) -> None:
        """A rate; a start too when stopped."""
        self.rate = Decimal(repr(rate_ml_h))
        self.events.append(CommandIssued(SetRate(self.rate), cause, Now(t, t)))
        if not self.running:
            self.events.append(CommandIssued(StartPump(), cause, Now(t, t)))
            self.running = True
        if read:
            self._read(t)

    def stop(self, t: float, cause: str = "command") -> None:
        self.events.append(CommandIssued(StopPump(), cause, Now(t, t)))
        self.running = False
        self._read(t)

    def reads(self, t: float, running: bool, rate_ml_h: float) -> None:
        """A read-back of what the pump does by itself."""
        self.running, self.rate = running, Decimal(repr(rate_ml_h))
        self._read(t)

    def admit(self, t: float, profile: str = "adult_icu", kg: int | None = None) -> None:
        weight = Decimal(kg) if kg is not None else None
        patient = PatientSpec(profile, weight)
        self.events.append(PatientAdmitted("next", patient, "admitted", Now(t, t)))

    def resumed(self, t: float, offset: float = 0.0) -> TimelineResumed:
        event = TimelineResumed(
            None, 0.0, offset, "test", False, True, "boot", "virtual", 0.0, None, Now(t, t)
        )
        self.events.append(event)
        return event

    def record(self) -> SafetyRecord:
        return SafetyRecord.from_events(self.events)


def _truth(*steps: tuple[float, float]) -> list[TruthEvent]:
    return [TruthSegment(t, rate) for t, rate in steps]


def _rules(report: TruthReport) -> list[str]:
    return [v.rule for v in report.violations]


def _prior_of(mg: float, ends: float) -> list[TruthSegment]:
    """A past run at 60 mcg/min (16 mcg/mL) that gave ``mg`` and stopped at ``ends``: 68 mg
    take 19 h at that rate, so it fits one cap window."""
    seconds = mg * 1000 / 60 * 60
    return [TruthSegment(ends - seconds, 60 * AT_16), TruthSegment(ends, 0.0)]


# --------------------------------------------------------------------------- drug switch


def test_windows_count_only_the_same_drug(library: DrugLibrary) -> None:
    """Norepinephrine 8 -> (vasopressin in between) -> 8 -> 10 mcg/min: the window's lowest
    norepinephrine dose is 8, so +2 is allowed. Counted as norepinephrine, vasopressin's
    2.4 units/h would read as 0.04 mcg/min and make the rise a 250x one."""
    j = Journal(library)
    j.load(0, _spec(library))
    j.set(0, 8 * AT_16)
    j.stop(600, "estop")
    j.load(630, _vasopressin(library))
    j.set(660, 0.04 * VASO)
    j.stop(900, "estop")
    j.load(930, _spec(library))
    j.set(960, 8 * AT_16)
    j.set(1020, 10 * AT_16)
    truth = _truth(
        (0, 0), (0, 8 * AT_16), (600, 0), (660, 0.04 * VASO), (900, 0), (960, 30), (1020, 37.5)
    )
    report = check_ground_truth(truth, library, j.record(), until=1200)
    assert report.ok, report.violations
    changes = [(c.time, c.unit, c.to_dose) for c in report.changes if c.cause == "command"]
    assert (660.0, "units/min", Fraction(1, 25)) in changes  # vasopressin, in its own unit
    assert (1020.0, "mcg/min", Fraction(10)) in changes


def test_a_drug_detour_keeps_the_first_drugs_cap(library: DrugLibrary) -> None:
    """67.9 mg of norepinephrine in the last day, vasopressin loaded, norepinephrine again:
    15 min at 8 mcg/min (0.12 mg) crosses 68 mg (issue 9's detour, on the truth)."""
    j = Journal(library)
    j.load(-23 * HOUR, _spec(library))
    j.load(-1800, _vasopressin(library))
    j.load(0, _spec(library))
    j.set(0, 8 * AT_16)
    prior = _prior_of(67.9, ends=-HOUR)
    report = check_ground_truth(
        _truth((0, 0), (0, 30)), library, j.record(), prior=prior, until=900
    )
    assert _rules(report) == ["cumulative_cap"]
    assert "68.02 mg of norepinephrine" in report.violations[0].message


# --------------------------------------------------------------------------- concentration


def test_each_stretch_is_converted_with_its_own_concentration(library: DrugLibrary) -> None:
    """12 mcg/min at 4 mg/250 mL (45 mL/h), then the double strength at 12 and 10 mcg/min
    (22.5 and 18.75 mL/h): the wean floor is 9 (of 12), so 10 holds and 8 does not. Read
    at 32 mcg/mL, the first 45 mL/h would be 24 mcg/min and 10 would be too fast."""
    double = _spec(library, concentration="8 mg/250 mL")

    def course(last_mcg_min: float) -> TruthReport:
        j = Journal(library)
        j.load(0, _spec(library))
        j.set(0, 12 * AT_16)
        j.stop(600, "estop")
        j.load(630, double)
        j.set(660, 12 * AT_32)
        j.set(720, last_mcg_min * AT_32)
        truth = _truth((0, 0), (0, 45), (600, 0), (660, 22.5), (720, last_mcg_min * AT_32))
        return check_ground_truth(truth, library, j.record(), until=900)

    assert course(10).ok, course(10).violations
    too_fast = course(8)
    assert _rules(too_fast) == ["wean_too_fast"]
    assert "the highest dose of the last 30 min (12 mcg/min)" in too_fast.violations[0].message


# --------------------------------------------------------------------------- earlier limits


def test_the_adult_cap_follows_the_patient_to_the_paediatric_profile(library: DrugLibrary) -> None:
    """55 kg, 67.9 mg given under the adult profile; the paediatric one has no cap, but the
    adult limits stay in force for their longest window (24 h): an hour at 0.1
    mcg/kg/min (0.33 mg) crosses the adult cap. Issue 9's profile switch, on the truth."""
    j = Journal(library)
    j.load(-23 * HOUR, _spec(library, therapy="weight_based", kg=55))
    j.load(0, _spec(library, profile="pediatric_icu", therapy="weight_based", kg=55))
    j.set(0, 5.5 * AT_16)  # 0.1 mcg/kg/min at 55 kg
    prior = _prior_of(67.9, ends=-HOUR)
    report = check_ground_truth(
        _truth((0, 0), (0, 5.5 * AT_16)), library, j.record(), prior=prior, until=HOUR
    )
    assert _rules(report) == ["cumulative_cap"]
    assert "under the limits of norepinephrine (Adult ICU" in report.violations[0].message


def test_an_earlier_hard_max_binds_until_its_window_has_passed(library: DrugLibrary) -> None:
    """Adult standard (hard max 47 mcg/min, longest window its 24 h cap) replaced by the
    paediatric weight-based program (5 mcg/kg/min = 275 mcg/min at 55 kg): 55 mcg/min is
    within the new program's hard max and above the adult one, which still binds; a day
    later it does not."""
    j = Journal(library)
    j.load(-600, _spec(library))
    j.load(0, _spec(library, profile="pediatric_icu", therapy="weight_based", kg=55))
    soon = check_ground_truth(
        _truth((0, 0), (60, 55 * AT_16), (120, 0)), library, j.record(), until=180
    )
    assert _rules(soon) == ["hard_max"]
    assert "above the hard maximum 47 mcg/min (under the limits of" in soon.violations[0].message
    later = 25 * HOUR
    report = check_ground_truth(
        _truth((0, 0), (later, 55 * AT_16), (later + 60, 0)), library, j.record(), until=later + 90
    )
    assert report.ok, report.violations


def test_a_cap_tightened_by_a_library_update_binds_what_is_given_after_it(
    library: DrugLibrary,
) -> None:
    """The window holds 67 mg when the program is loaded again under a library whose cap
    is 60 mg: nothing given after that breaks it (what was given before cannot be taken
    back); 10 min at 8 mcg/min does."""
    tighter = library_variant(library, {NOREPI: {"cumulative_cap": "60"}})
    j = Journal(library)
    j.load(-23 * HOUR, _spec(library))
    j.load(0, _spec(tighter), tighter)
    prior = _prior_of(67, ends=-60)
    idle = check_ground_truth(_truth((0, 0)), library, j.record(), prior=prior, until=HOUR)
    assert idle.ok, idle.violations
    j.set(600, 8 * AT_16)
    j.stop(1200, "estop")
    given = check_ground_truth(
        _truth((0, 0), (600, 30), (1200, 0)), library, j.record(), prior=prior, until=HOUR
    )
    assert _rules(given) == ["cumulative_cap"]
    assert "above the cap of 60 mg" in given.violations[0].message


# --------------------------------------------------------------------------- new patient


def test_a_confirmed_new_patient_starts_fresh_histories(library: DrugLibrary) -> None:
    """67.9 mg given to the last patient; a new one admitted: an hour at 7 mcg/min is theirs
    alone. Without the admission the same hour crosses the cap."""
    prior = _prior_of(67.9, ends=-HOUR)
    truth = _truth((0, 0), (0, 7 * AT_16))

    def run(admitted: bool) -> TruthReport:
        j = Journal(library)
        j.load(-23 * HOUR, _spec(library))
        if admitted:
            j.admit(-60)
        j.load(0, _spec(library))
        j.set(0, 7 * AT_16)
        return check_ground_truth(truth, library, j.record(), prior=prior, until=HOUR)

    assert run(admitted=True).ok
    assert _rules(run(admitted=False)) == ["cumulative_cap"]


def test_a_new_patients_start_is_not_licensed_by_the_last_patients_rate(
    library: DrugLibrary,
) -> None:
    """12 -> 14 -> 16 mcg/min, stopped a minute ago: a restart at 16 (above the max start
    of 12) is licensed for the same patient by the rate running in the titration window,
    not for a new one."""

    def run(admitted: bool) -> TruthReport:
        j = Journal(library)
        j.load(-600, _spec(library))
        j.set(-600, 12 * AT_16)
        j.set(-540, 14 * AT_16)
        j.set(-480, 16 * AT_16)
        j.stop(-60, "estop")
        if admitted:
            j.admit(-30)
            j.load(-30, _spec(library))
        j.set(0, 16 * AT_16)
        truth = _truth((-600, 0), (-600, 45), (-540, 52.5), (-480, 60), (-60, 0), (0, 60))
        return check_ground_truth(truth, library, j.record(), until=60)

    assert run(admitted=False).ok, run(admitted=False).violations
    assert _rules(run(admitted=True)) == ["start_above_max_start"]


# --------------------------------------------------------------------------- the pump's clock


def test_journal_times_are_put_on_the_pumps_clock_after_a_reboot(library: DrugLibrary) -> None:
    """12 mcg/min running; the board is down for an hour the timeline credits as 5 s; then
    a drop to 2 mcg/min. On the pump's clock the change is an hour later than the
    journal says: mapped, the drop is the command's (and too fast); unmapped, nothing in
    the journal explains it and it counts as the pump's own."""
    j = Journal(library)
    j.resumed(0)
    j.load(0, _spec(library))
    j.set(0, 45)
    j.reads(95, True, 45)
    reboot = j.resumed(100, offset=-5000.0)
    sync = j.resumed(105, offset=-5000.0)  # the wall clock's synchronisation changed
    j.set(110, 7.5)
    truth = _truth((0, 0), (0, 45), (3610, 7.5))
    shifts = {reboot: 3500.0, sync: None}

    mapped = SafetyRecord.from_events(j.events, to_pump_clock=shifts.get)
    assert [c.time for c in mapped.commands][-1] == 3610
    report = check_ground_truth(truth, library, mapped, until=3700)
    assert _rules(report) == ["wean_too_fast"] and report.violations[0].time == 3610
    assert report.changes[-1].cause == "command"

    unmapped = check_ground_truth(truth, library, j.record(), until=3700)
    assert unmapped.ok and unmapped.changes[-1].cause == "pump"


# --------------------------------------------------------------------------- the plunger


def test_the_plunger_shows_a_rise_made_while_the_line_was_blocked(library: DrugLibrary) -> None:
    """An occlusion holds delivery at 0 while the plunger runs on; a 2.5x rise sent then
    is invisible in what was delivered, and a step rise on the plunger's record."""
    j = Journal(library)
    j.load(0, _spec(library))
    j.set(0, 8 * AT_16)
    j.set(600, 20 * AT_16)
    delivered = _truth((0, 0), (0, 30), (300, 0))
    plunger = _truth((0, 0), (0, 30), (600, 75))
    assert check_ground_truth(delivered, library, j.record(), until=900).ok
    report = check_ground_truth(plunger, library, j.record(), until=900)
    assert _rules(report) == ["step_rise", "window_rise"]


# --------------------------------------------------------------------------- one instant


def test_a_command_after_the_pumps_own_change_at_the_same_instant_did_not_cause_it(
    library: DrugLibrary,
) -> None:
    """On a virtual clock: at t = 60 the pump runs 16 mcg/min by itself, is stopped, and an
    operator starts it again at 16. The pump's own rise is not the operator's (the
    journal orders them: the operator's command came after the stop); the restart is,
    and is judged as a start."""
    j = Journal(library)
    j.load(0, _spec(library))
    j.set(0, 8 * AT_16)
    j.reads(60, True, 60.0)
    j.stop(60, "safety")
    j.set(60, 60.0)
    truth = _truth((0, 0), (0, 30), (60, 60), (60, 0), (60, 60))
    report = check_ground_truth(truth, library, j.record(), until=120)
    assert [c.cause for c in report.changes] == ["command", "pump", "safety", "command"]
    assert _rules(report) == ["start_above_max_start"]


def test_a_re_send_of_what_the_pump_runs_explains_no_change(library: DrugLibrary) -> None:
    """The pump sags to half, a retry restores the set rate, then the operator sends the
    same rate again: the restoring change is the retry's, not a 2x commanded rise."""
    j = Journal(library)
    j.load(0, _spec(library))
    j.set(0, 8 * AT_16)
    j.reads(60, True, 15.0)
    j.set(60, 30.0, "retry")
    j.set(60, 30.0)
    truth = _truth((0, 0), (0, 30), (60, 15), (60, 30))
    report = check_ground_truth(truth, library, j.record(), until=120)
    assert report.ok, report.violations
    assert [c.cause for c in report.changes] == ["command", "pump", "retry"]


def test_journaled_order_of_loads_at_one_instant(library: DrugLibrary) -> None:
    """At one instant: the pump runs 46 mcg/min (172.5 mL/h at 16 mcg/mL) by itself, an
    emergency stop, the double strength loaded, a new patient admitted and the double
    strength loaded for them, then a start at 12 mcg/min (22.5 mL/h). The 46 stretch is
    the first program's solution (within its hard max of 47), not the double strength
    loaded at the same instant after it (92 mcg/min); the start is the new patient's."""
    double = _spec(library, concentration="8 mg/250 mL")
    j = Journal(library)
    j.load(-600, _spec(library))
    j.reads(0, True, 46 * AT_16)
    j.stop(0, "estop")
    j.load(0, double)
    j.admit(0)
    j.load(0, double)
    j.set(0, 12 * AT_32)
    truth = _truth((-600, 0), (0, 46 * AT_16), (0, 0), (0, 12 * AT_32))
    report = check_ground_truth(truth, library, j.record(), until=60)
    assert report.ok, report.violations
    assert [c.to_dose for c in report.changes] == [46, 0, 12]
