"""The relay's and the container change's requests, judged by the pure kernel (S15).

``decide_relay`` answers the operator's ``ArmStandby``, ``DisarmStandby``,
``PrimeChannel``, ``PauseForContainerChange``, ``ContainerChanged`` and
``ResumeAfterContainerChange``; ``pause_event_fields`` and ``container_concentration``
say what the host journals for a pause and a new container. Each state here is built by
hand on a bench of two channels (A active, B its relief), so one rule is under test at a
time, and each verdict is compared whole: its reason, its sentence, its actions and its
extra fields, so that a changed word, figure, action or field shows.

The relay's moves (``relay_move`` and what it calls, ``relay_deadline``) are tested in
``test_relay_moves.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.alarms import Priority
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import Pumps, decide
from safety.kernel.history import RateHistory
from safety.kernel.model import (
    AdmitPatient,
    ArmStandby,
    ContainerChanged,
    ContainerPaused,
    DisarmStandby,
    LoadProgram,
    Now,
    PatientSpec,
    PauseForContainerChange,
    PrimeChannel,
    PrimePump,
    ProgramLoaded,
    ProgramSpec,
    Request,
    RequestBody,
    RequestMeta,
    ResumeAfterContainerChange,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
    Verdict,
)
from safety.kernel.reducer import apply
from safety.kernel.relay import (
    container_concentration,
    decide_relay,
    pause_event_fields,
    solution_difference,
)
from safety.kernel.state import (
    ActiveProgram,
    ChannelState,
    ContainerPause,
    ContainerState,
    DrugRecord,
    FluidProgram,
    Handover,
    KernelState,
    Priming,
    Program,
    Standby,
    fluid_limits,
    load_program,
    program_of,
)
from safety.library import DiluentError, DrugLibrary, parse_diluent
from safety.reasons import Reason
from tests.kernel.support import norepi_standard, norepi_weight_based, vasopressin_fixed

CONFIG = KernelConfig()
#: clinical 7200 s; the pauses below began at 7080 s (a gap of 120 s)
NOW = Now(7200.0, 100.0)
PAUSED_AT = 7080.0


def _exact(rate: float) -> float:
    return rate


def _tenths(rate: float) -> float:
    """A pump that runs tenths of a mL/h, rounded down."""
    return math.floor(rate * 10 + 1e-9) / 10


PUMP = PumpCapabilities(Decimal("0.1"), Decimal("1200"), _exact)
PUMPS: dict[str, PumpCapabilities] = {"A": PUMP, "B": PUMP}


def _decide(
    state: KernelState,
    body: RequestBody,
    *,
    now: Now = NOW,
    pumps: Pumps = PUMPS,
    config: KernelConfig = CONFIG,
) -> Verdict:
    return decide_relay(None, state, body, now, pumps, config)


def _refused(reason: Reason, message: str, **extra: object) -> Verdict:
    return Verdict.refuse(reason, message, **extra)


# --------------------------------------------------------------------------- states


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    """Norepinephrine 4 mg/250 mL (16 mcg/mL) in D5W, standard (mcg/min)."""
    return load_program(library, norepi_standard(library), 0.0)


def _program(library: DrugLibrary, spec: ProgramSpec) -> ActiveProgram:
    return load_program(library, spec, 0.0)


def _running(program: Program, rate: str = "30") -> ChannelState:
    """Verified running at ``rate`` mL/h, as told; its container full (50 mL) and primed."""
    ml_h = Decimal(rate)
    return ChannelState(
        program=program,
        running=True,
        set_rate=ml_h,
        expected_running=True,
        expected_rate=ml_h,
        container=ContainerState(volume_ml=50.0, capacity_ml=50.0, primed=True, read_at=0.0),
    )


def _still(program: Program | None, *, primed: bool = True, volume: float = 50.0) -> ChannelState:
    """Standing still, with a container of ``volume`` mL (of 50) primed or not."""
    return ChannelState(
        program=program,
        container=ContainerState(volume_ml=volume, capacity_ml=50.0, primed=primed),
    )


def _bench(a: ChannelState, b: ChannelState, **extra: ChannelState) -> KernelState:
    return KernelState(channels={"A": a, "B": b, **extra})


def _paused(
    program: Program,
    rate: str = "30",
    *,
    concentration: str = "4 mg/250 mL",
    primed: bool = True,
    total_before: Fraction | None = None,
) -> ChannelState:
    """Stopped for a container change at ``PAUSED_AT`` from ``rate`` mL/h; the new container
    in (50 mL), primed or not. The drug's total at the pause: ``total_before`` (mcg/h),
    or this channel's alone (any other channel of the drug started since)."""
    if total_before is None and isinstance(program, ActiveProgram):
        total_before = Fraction(Decimal(rate)) * program.amount_per_ml
    pause = ContainerPause(
        PAUSED_AT, Decimal(rate), 180.0, concentration, changed=True, total_before=total_before
    )
    return ChannelState(
        program=program,
        pause=pause,
        container=ContainerState(volume_ml=50.0, capacity_ml=50.0, primed=primed),
    )


# --------------------------------------------------------------------------- arm


def _armed(b: str, a: str, minutes: int, strategy: str = "quick") -> Verdict:
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"channel {b} armed as the standby of channel {a} ({strategy}): it takes over "
        f"when channel {a}'s container would empty within {minutes} min",
    )


def test_s15_a_primed_standby_of_the_same_solution_is_armed(std: ActiveProgram) -> None:
    """The relief syringe holds what runs, is primed and stands still: armed, with the
    time before empty at which it takes over (quick: the handover lead alone)."""
    state = _bench(_running(std), _still(std))
    assert _decide(state, ArmStandby("B", "A")) == _armed("B", "A", 5)
    # the same, the other way round: the channels are named by the request
    reverse = _bench(_still(std), _running(std))
    assert _decide(reverse, ArmStandby("A", "B")) == _armed("A", "B", 5)


def test_s15_an_overlap_standby_takes_over_earlier_by_its_steps(std: ActiveProgram) -> None:
    """An overlap moves the rate across in steps, so it must begin that much earlier:
    the lead in the sentence is the handover lead plus the steps' length."""
    state = _bench(_running(std), _still(std))
    assert _decide(state, ArmStandby("B", "A", "overlap")) == _armed("B", "A", 9, "overlap")
    tuned = KernelConfig(handover_before_empty_s=600.0, overlap_steps=3, overlap_step_s=120.0)
    assert _decide(state, ArmStandby("B", "A", "overlap"), config=tuned) == _armed(
        "B", "A", 16, "overlap"
    )
    assert _decide(state, ArmStandby("B", "A", "quick"), config=tuned) == _armed("B", "A", 10)


def test_s15_a_channel_cannot_relieve_itself(std: ActiveProgram) -> None:
    """A standby is another pump on another line: the same channel is no relief."""
    state = _bench(_running(std), _still(std))
    assert _decide(state, ArmStandby("A", "A")) == _refused(
        Reason.BAD_INPUT, "refused: channel A cannot relieve itself"
    )


@pytest.mark.parametrize(
    ("handover", "refused"),
    [(("A", "C"), True), (("C", "B"), True), (("C", "D"), False)],
    ids=["active-handing", "standby-receiving", "other-channels"],
)
def test_s15_no_standby_is_armed_on_a_channel_of_a_handover_under_way(
    std: ActiveProgram, handover: tuple[str, str], refused: bool
) -> None:
    """The safety process's own handover must not be raced by an operator's change of
    either channel it moves; a handover between two other channels does not matter."""
    frm, to = handover
    state = KernelState(
        channels={
            "A": _running(std),
            "B": _still(std),
            "C": _still(None),
            "D": _still(None),
        },
        handover=Handover(frm, to, "quick", 100.0, 1),
    )
    expected = (
        _refused(
            Reason.RELAY,
            f"refused: the safety process is handing the infusion over from channel {frm} "
            f"to {to}; wait until it ends",
        )
        if refused
        else _armed("B", "A", 5)
    )
    assert _decide(state, ArmStandby("B", "A")) == expected


def test_s15_a_standby_cannot_itself_be_relieved(std: ActiveProgram) -> None:
    """A chain of standbys has no active channel at its head: refused, naming whom the
    channel already stands by for."""
    a = _still(std)
    state = _bench(a, _still(std), C=_running(std)).with_channel(
        "A", standby=Standby("C", "quick", 0.0)
    )
    assert _decide(state, ArmStandby("B", "A")) == _refused(
        Reason.RELAY, "refused: channel A is itself the standby of channel C"
    )


def test_s15_the_active_channel_needs_a_drug_program(std: ActiveProgram) -> None:
    """Nothing to relieve without a drug on the active channel."""
    state = _bench(_still(None), _still(std))
    assert _decide(state, ArmStandby("B", "A")) == _refused(
        Reason.NO_PROGRAM, "refused: channel A has no drug program to relieve"
    )


def test_s15_the_standby_needs_a_program_and_is_told_which(std: ActiveProgram) -> None:
    """A standby without a program is refused with the solution to load: the active
    channel's drug, concentration and diluent."""
    state = _bench(_running(std), _still(None))
    assert _decide(state, ArmStandby("B", "A")) == _refused(
        Reason.NO_PROGRAM,
        "refused: channel B has no drug program: load the same drug, concentration and "
        "diluent as channel A (norepinephrine, 4 mg/250 mL in D5W)",
    )


def test_s15_a_stale_standby_program_is_refused(std: ActiveProgram) -> None:
    """A standby whose container holds another strength than its program must be
    re-programmed before it can take anything over."""
    stale = "the new container holds 8 mg/250 mL, the program 4 mg/250 mL"
    state = _bench(_running(std), _still(std)).with_channel("B", program_stale=stale)
    assert _decide(state, ArmStandby("B", "A")) == _refused(
        Reason.PROGRAM_STALE, f"refused: channel B's program: {stale}"
    )


def _mismatch(difference: str) -> Verdict:
    return _refused(
        Reason.STANDBY_MISMATCH,
        f"refused: channel B holds {difference}: a relief syringe must hold the same drug "
        "at the same concentration and diluent as channel A (a change of concentration at "
        "a changeover is the main risk factor of instability)",
    )


@pytest.mark.parametrize(
    ("changes", "difference"),
    [
        ({"concentration": "8 mg/250 mL"}, "concentration 8 mg/250 mL, not 4 mg/250 mL"),
        ({"concentration": "4 mg/1000 mL"}, "concentration 4 mg/1000 mL, not 4 mg/250 mL"),
        ({"diluent": "D5NS"}, "diluent D5NS, not D5W"),
    ],
    ids=["stronger", "weaker", "diluent"],
)
def test_s15_a_standby_of_another_solution_is_refused_naming_what_differs(
    library: DrugLibrary, std: ActiveProgram, changes: dict[str, object], difference: str
) -> None:
    """A change of concentration at a changeover is the main risk factor of instability:
    the standby must hold the same solution, and the refusal says what differs."""
    other = _program(library, norepi_standard(library, **changes))
    state = _bench(_running(std), _still(other))
    assert _decide(state, ArmStandby("B", "A")) == _mismatch(difference)
    assert solution_difference(std, other) == difference
    assert solution_difference(std, std) is None


def test_s15_a_standby_of_another_drug_is_refused(library: DrugLibrary, std: ActiveProgram) -> None:
    """Another drug is never a relief, whatever its strength."""
    other = _program(library, vasopressin_fixed(library))
    state = _bench(_running(std), _still(other))
    assert _decide(state, ArmStandby("B", "A")) == _mismatch("drug vasopressin, not norepinephrine")


def test_s15_the_same_solution_in_other_words_is_the_same(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """What counts is the solution, not its spelling: a diluent written in other case is
    the same diluent, another therapy of the same solution the same solution."""
    spelled = _program(library, norepi_standard(library, diluent="d5w"))
    weighed = _program(library, norepi_weight_based(library))
    assert solution_difference(std, spelled) is None
    assert solution_difference(std, weighed) is None
    state = _bench(_running(std), _still(spelled))
    assert _decide(state, ArmStandby("B", "A")) == _armed("B", "A", 5)


def test_s15_a_diluent_that_cannot_be_read_is_never_the_same(std: ActiveProgram) -> None:
    """Both programs' diluents were read when loaded; should one not be readable (a
    program from another library's journal), it is never taken for the same solution:
    the difference is why it cannot be read."""
    unreadable = replace(std, spec=replace(std.spec, diluent="juice"))
    with pytest.raises(DiluentError) as caught:
        parse_diluent("juice")
    assert solution_difference(std, unreadable) == str(caught.value)
    assert solution_difference(unreadable, std) == str(caught.value)


def test_s15_a_running_standby_is_refused(std: ActiveProgram) -> None:
    """A standby stands still: one already running (or told to) would double the dose."""
    running = _bench(_running(std), _running(std))
    told = _bench(_running(std), _still(std)).with_channel("B", expected_running=True)
    for state in (running, told):
        assert _decide(state, ArmStandby("B", "A")) == _refused(
            Reason.ALREADY_INFUSING, "refused: channel B is running; a standby stands still"
        )


def test_s15_a_priming_or_paused_standby_is_refused(std: ActiveProgram) -> None:
    """A channel priming runs to waste and one paused for a container change waits for
    its resume: neither is ready to take anything over, and the refusal says which."""
    base = _bench(_running(std), _still(std))
    priming = base.with_channel("B", priming=Priming(1.0, 7000.0, 0.0))
    paused = base.with_channel("B", pause=ContainerPause(7000.0, Decimal(30), 180.0))
    assert _decide(priming, ArmStandby("B", "A")) == _refused(
        Reason.RELAY, "refused: channel B is priming"
    )
    assert _decide(paused, ArmStandby("B", "A")) == _refused(
        Reason.RELAY, "refused: channel B is paused for a container change"
    )


def test_s15_an_unprimed_standby_is_refused(std: ActiveProgram) -> None:
    """An unprimed syringe can take many minutes to deliver at low rates: the patient
    would get nothing at the handover."""
    state = _bench(_running(std), _still(std, primed=False))
    assert _decide(state, ArmStandby("B", "A")) == _refused(
        Reason.NOT_PRIMED,
        "refused: channel B has not been primed since its container was loaded: an "
        "unprimed syringe can take many minutes to deliver at low rates; prime it (line "
        "not connected to the patient), then arm it",
    )


@pytest.mark.parametrize(
    ("pump", "expected"),
    [
        (PumpCapabilities(Decimal("0.1"), Decimal("30"), _exact), None),
        (
            PumpCapabilities(Decimal("0.1"), Decimal("29.9"), _exact),
            _refused(
                Reason.PUMP_RANGE_HIGH,
                "refused: channel A's rate needs 30 mL/h, above the pump's 29.9 mL/h with "
                "this syringe (on channel B)",
            ),
        ),
        (PumpCapabilities(Decimal("30"), Decimal("1200"), _exact), None),
        (
            PumpCapabilities(Decimal("30.1"), Decimal("1200"), _exact),
            _refused(
                Reason.PUMP_RANGE_LOW,
                "refused: channel A's rate needs 30 mL/h, below the pump's minimum 30.1 mL/h "
                "with this syringe (use a smaller syringe or a weaker concentration) (on "
                "channel B)",
            ),
        ),
        (
            PumpCapabilities(Decimal(0), Decimal(0), _exact),
            _refused(
                Reason.PUMP_COMMS,
                "refused: the pump's rate range is not known yet (the pump has not answered "
                "since the safety process started) (on channel B)",
            ),
        ),
    ],
    ids=["max-at", "max-past", "min-at", "min-past", "unknown"],
)
def test_s7_the_standbys_pump_must_run_the_active_rate(
    std: ActiveProgram, pump: PumpCapabilities, expected: Verdict | None
) -> None:
    """At a handover the standby runs what the active channel runs: its own pump's range
    (with its syringe) must hold that rate, exactly at a bound accepted, one step past
    refused, on the standby's pump (not the active one's)."""
    state = _bench(_running(std), _still(std))
    verdict = _decide(state, ArmStandby("B", "A"), pumps={"A": PUMP, "B": pump})
    assert verdict == (expected if expected is not None else _armed("B", "A", 5))


def test_s7_a_stopped_active_channel_asks_nothing_of_the_standbys_pump(
    std: ActiveProgram,
) -> None:
    """The range is checked on what runs: an active channel standing still hands over no
    rate (the range is judged again at each step of a handover)."""
    state = _bench(_still(std), _still(std))
    unknown = PumpCapabilities(Decimal(0), Decimal(0), _exact)
    assert _decide(state, ArmStandby("B", "A"), pumps={"A": PUMP, "B": unknown}) == _armed(
        "B", "A", 5
    )


# --------------------------------------------------------------------------- disarm


def test_s15_a_standby_is_disarmed_and_its_active_channel_named(std: ActiveProgram) -> None:
    """Disarming leaves the active channel without relief: the sentence says whose."""
    state = _bench(_running(std), _still(std)).with_channel(
        "B", standby=Standby("A", "overlap", 10.0)
    )
    assert _decide(state, DisarmStandby("B")) == Verdict(
        True, Reason.ACCEPTED, "channel B disarmed: channel A has no standby"
    )


def test_s15_only_an_armed_standby_can_be_disarmed(std: ActiveProgram) -> None:
    """A disarm of a channel that stands by for nobody changes nothing: refused."""
    state = _bench(_running(std), _still(std))
    assert _decide(state, DisarmStandby("B")) == _refused(
        Reason.RELAY, "refused: channel B is not armed as a standby"
    )


# --------------------------------------------------------------------------- prime


def _primes(volume: str, *actions: SetInterlock | PrimePump, name: str = "B") -> Verdict:
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted: channel {name} primes {volume} mL to waste",
        actions=actions,
    )


def test_s15_a_confirmed_prime_purges_the_volume_to_waste(std: ActiveProgram) -> None:
    """A prime takes up the pump's slack: the volume asked, pushed to waste by the
    channel's own pump."""
    state = _bench(_running(std), _still(std, primed=False))
    body = PrimeChannel("B", Decimal("1.5"), confirm_line_disconnected=True)
    assert _decide(state, body) == _primes("1.5", PrimePump(Decimal("1.5"), "B"))


def test_s12_a_prime_with_the_interlock_off_enables_it_first(std: ActiveProgram) -> None:
    """A pump cut by the interlock relay cannot prime: the relay is closed first, then
    the prime sent."""
    state = _bench(_running(std), _still(std, primed=False)).with_channel(
        "B", interlock_enabled=False
    )
    body = PrimeChannel("B", Decimal(2), confirm_line_disconnected=True)
    assert _decide(state, body) == _primes("2", SetInterlock(True, "B"), PrimePump(Decimal(2), "B"))


def test_s12_no_prime_under_an_emergency_stop(std: ActiveProgram) -> None:
    """Nothing moves a pump under an emergency stop until a person acknowledges it."""
    state = _bench(_still(std), _still(std, primed=False))
    stopped = KernelState(channels=state.channels, estopped=True)
    body = PrimeChannel("B", Decimal(1), confirm_line_disconnected=True)
    assert _decide(stopped, body) == _refused(
        Reason.EMERGENCY_STOPPED,
        "refused: emergency stop is active; acknowledge it before priming",
    )


def test_s15_a_running_channel_is_not_primed(std: ActiveProgram) -> None:
    """A prime runs at the pump's top rate: never on a channel that is infusing (or told
    to)."""
    body = PrimeChannel("B", Decimal(1), confirm_line_disconnected=True)
    running = _bench(_still(std), _running(std))
    told = _bench(_still(std), _still(std)).with_channel("B", expected_running=True)
    for state in (running, told):
        assert _decide(state, body) == _refused(
            Reason.ALREADY_INFUSING, "refused: channel B is running; stop it to prime"
        )


def test_s15_an_armed_standby_is_not_primed(std: ActiveProgram) -> None:
    """An armed standby takes no orders until disarmed: the relay may start it."""
    state = _bench(_running(std), _still(std)).with_channel("B", standby=Standby("A", "quick", 0.0))
    body = PrimeChannel("B", Decimal(1), confirm_line_disconnected=True)
    assert _decide(state, body) == _refused(
        Reason.RELAY, "refused: channel B is an armed standby; disarm it to prime"
    )


def test_s15_a_prime_under_way_is_not_asked_again(std: ActiveProgram) -> None:
    """One prime at a time: a second would lose the count of the first."""
    state = _bench(_running(std), _still(std)).with_channel("B", priming=Priming(1.0, 7000.0, 0.0))
    body = PrimeChannel("B", Decimal(1), confirm_line_disconnected=True)
    assert _decide(state, body) == _refused(Reason.RELAY, "refused: channel B is already priming")


def _too_much(most: str, *, holds: bool) -> Verdict:
    return _refused(
        Reason.BAD_INPUT,
        f"refused: volume_ml must be more than 0 and at most {most} mL (the largest prime"
        f"{', and what the container holds' if holds else ''})",
    )


@pytest.mark.parametrize(
    ("volume", "accepted"),
    [("5", True), ("5.001", False), ("0.001", True), ("0", False), ("-1", False)],
)
def test_s15_a_prime_is_bounded_by_the_largest_prime(
    std: ActiveProgram, volume: str, accepted: bool
) -> None:
    """What a prime pushes out is lost drug: at most ``max_prime_ml`` (exactly at it
    allowed, a thousandth more refused), and more than nothing."""
    state = _bench(_running(std), _still(std, primed=False))
    body = PrimeChannel("B", Decimal(volume), confirm_line_disconnected=True)
    expected = (
        _primes(volume, PrimePump(Decimal(volume), "B"))
        if accepted
        else _too_much("5", holds=False)
    )
    assert _decide(state, body) == expected


@pytest.mark.parametrize("volume", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_s15_a_prime_of_no_finite_volume_is_refused(std: ActiveProgram, volume: str) -> None:
    """A volume that is not a number bounds nothing."""
    state = _bench(_running(std), _still(std, primed=False))
    body = PrimeChannel("B", Decimal(volume), confirm_line_disconnected=True)
    assert _decide(state, body) == _too_much("5", holds=False)


def test_s15_a_prime_is_bounded_by_what_the_container_holds(std: ActiveProgram) -> None:
    """A prime cannot push out more than the container holds (to the thousandth of a mL):
    the bound and the sentence say so when the container is the tighter bound."""
    state = _bench(_running(std), _still(std, primed=False, volume=2.0)).with_channel(
        "B", container=ContainerState(volume_ml=2.5, used_ml=0.5, capacity_ml=50.0)
    )
    body = PrimeChannel("B", Decimal(2), confirm_line_disconnected=True)
    assert _decide(state, body) == _primes("2", PrimePump(Decimal(2), "B"))
    over = PrimeChannel("B", Decimal("2.001"), confirm_line_disconnected=True)
    assert _decide(state, over) == _too_much("2", holds=True)
    # a remainder in float noise is read to the thousandth
    noisy = state.with_channel("B", container=ContainerState(volume_ml=1.2345678))
    assert _decide(noisy, PrimeChannel("B", Decimal("1.235"), True)) == _primes(
        "1.235", PrimePump(Decimal("1.235"), "B")
    )
    assert _decide(noisy, PrimeChannel("B", Decimal("1.236"), True)) == _too_much(
        "1.235", holds=True
    )
    # a container that holds more than the largest prime: the largest prime bounds
    roomy = state.with_channel("B", container=ContainerState(volume_ml=5.0))
    assert _decide(roomy, PrimeChannel("B", Decimal("5.001"), True)) == _too_much("5", holds=False)


@settings(max_examples=60, deadline=None)
@given(
    volume=st.decimals(min_value=Decimal("-1"), max_value=Decimal("8"), places=3),
    held=st.floats(min_value=0.5, max_value=8.0).map(lambda v: round(v, 3)),
)
def test_s15_a_prime_is_accepted_exactly_up_to_the_tighter_bound(
    library: DrugLibrary, volume: Decimal, held: float
) -> None:
    """Whatever the volume and the container: accepted if and only if it is more than 0
    and at most both the largest prime and what the container holds."""
    std = load_program(library, norepi_standard(library), 0.0)
    state = _bench(_running(std), _still(std, primed=False, volume=held))
    verdict = _decide(state, PrimeChannel("B", volume, confirm_line_disconnected=True))
    most = min(CONFIG.max_prime_ml, Decimal(repr(held)))
    assert verdict.accepted is (0 < volume <= most)
    assert verdict.reason is (Reason.ACCEPTED if 0 < volume <= most else Reason.BAD_INPUT)


def test_s15_a_prime_needs_the_line_off_the_patient(std: ActiveProgram) -> None:
    """A prime pushes drug at the pump's top rate: into the patient it would be a bolus.
    Refused until the operator confirms the line is not connected."""
    state = _bench(_running(std), _still(std, primed=False))
    assert _decide(state, PrimeChannel("B", Decimal("1.5"))) == _refused(
        Reason.CONFIRMATION_REQUIRED,
        "refused until confirmed: a prime pushes 1.5 mL out of channel B's line at the "
        "pump's top rate; confirm that the line is NOT connected to the patient",
    )


@pytest.mark.parametrize(
    ("top", "accepted"), [("0", False), ("0.001", True)], ids=["unknown", "smallest"]
)
def test_s13_a_prime_needs_a_pump_that_has_answered(
    std: ActiveProgram, top: str, accepted: bool
) -> None:
    """The pump's range is known once it has answered; before that nothing is sent to
    it. Any known top rate will do: the prime runs at whatever it is."""
    state = _bench(_running(std), _still(std, primed=False))
    pump = PumpCapabilities(Decimal(0), Decimal(top), _exact)
    body = PrimeChannel("B", Decimal(1), confirm_line_disconnected=True)
    expected = (
        _primes("1", PrimePump(Decimal(1), "B"))
        if accepted
        else _refused(
            Reason.PUMP_COMMS,
            "refused: channel B's pump has not answered since the safety process started",
        )
    )
    assert _decide(state, body, pumps={"A": PUMP, "B": pump}) == expected
    # the channel's own pump counts, not another's: a bench of no known pumps refuses
    if accepted:
        assert _decide(state, body, pumps={"A": pump}).reason is Reason.PUMP_COMMS


# --------------------------------------------------------------------------- pause


def _pauses(name: str, minutes: int, rate: str) -> Verdict:
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted: channel {name} paused for a container change, at most {minutes} min "
        f"(alarmed past it); resume it after the change at {rate} mL/h",
        actions=(StopPump(name),),
    )


def test_s15_a_running_channel_pauses_for_a_bounded_container_change(
    std: ActiveProgram,
) -> None:
    """A container change is the one way a gradual-wean drug may stop above its stop
    threshold, so it is explicit and bounded: the channel is stopped, the sentence says
    for how long at most and the rate it will resume at."""
    state = _bench(_still(std), _running(std, "30"))
    assert _decide(state, PauseForContainerChange("B")) == _pauses("B", 3, "30")
    hour = KernelConfig(max_container_pause_s=3600.0)
    assert _decide(state, PauseForContainerChange("B"), config=hour) == _pauses("B", 60, "30")


def test_s15_a_pause_remembers_the_rate_told_over_the_rate_verified(
    std: ActiveProgram,
) -> None:
    """The rate to resume at is what the channel was told to run when it runs as told
    (a change not read back yet), else what its pump was verified to run."""
    told = _running(std, "30")
    changed = _bench(_still(std), told).with_channel("B", expected_rate=Decimal("37.5"))
    assert _decide(changed, PauseForContainerChange("B")) == _pauses("B", 3, "37.5")
    assert pause_event_fields(changed.channel("B")) == (Decimal("37.5"), "4 mg/250 mL")
    # verified running, not told to (the pump started by itself): the verified rate
    own = changed.with_channel("B", expected_running=False, expected_rate=Decimal(0))
    assert _decide(own, PauseForContainerChange("B")) == _pauses("B", 3, "30")
    assert pause_event_fields(own.channel("B")) == (Decimal(30), "4 mg/250 mL")


def test_s15_a_pause_of_a_test_fluid_keeps_no_concentration(library: DrugLibrary) -> None:
    """A test fluid (or nothing) has no strength to compare the next container with."""
    water = _water(library)
    assert pause_event_fields(_running(water, "100")) == (Decimal(100), "")
    assert pause_event_fields(ChannelState()) == (Decimal(0), "")


def test_s15_no_pause_of_a_channel_in_a_handover(std: ActiveProgram) -> None:
    """The safety process's handover moves this channel's rate: a pause would race it.
    A handover between other channels does not matter."""
    state = KernelState(
        channels={"A": _running(std), "B": _running(std), "C": _still(None)},
        handover=Handover("A", "B", "overlap", 100.0, 4),
    )
    refusal = _refused(
        Reason.RELAY,
        "refused: the safety process is handing the infusion over from channel A to B; "
        "wait until it ends",
    )
    assert _decide(state, PauseForContainerChange("B")) == refusal
    assert _decide(state, PauseForContainerChange("A")) == refusal
    other = KernelState(channels=state.channels, handover=Handover("A", "C", "quick", 100.0, 1))
    assert _decide(other, PauseForContainerChange("B")) == _pauses("B", 3, "30")


def test_s15_no_prime_or_container_change_on_a_channel_in_a_handover(
    std: ActiveProgram,
) -> None:
    """A prime's purge on a channel of a handover reads as the incoming channel's flow
    (the overlap stepped on while the purge ran, counted in no total), and a container
    change resets the volume the handover is timed on. (Found by review, 4 December
    2026: B stopped by itself mid-overlap, a prime of B was accepted before the
    fall-back.) Both wait until the handover ends; other channels are free."""
    state = KernelState(
        channels={"A": _running(std), "B": _still(std), "C": _still(std)},
        handover=Handover("A", "B", "overlap", 100.0, 4, Decimal(30), 1, 160.0, 0.0),
    )
    refusal = _refused(
        Reason.RELAY,
        "refused: the safety process is handing the infusion over from channel A to B; "
        "wait until it ends",
    )
    prime = PrimeChannel("B", Decimal(1), confirm_line_disconnected=True)
    assert _decide(state, prime) == refusal
    assert _decide(state, ContainerChanged(Decimal(50), "B")) == refusal
    assert _decide(state, ContainerChanged(Decimal(50), "A")) == refusal
    other = _decide(state, replace(prime, channel="C"), pumps={**PUMPS, "C": PUMP})
    assert other.accepted
    assert _decide(state, ContainerChanged(Decimal(50), "C")).accepted


def test_s15_a_paused_channel_is_not_paused_again(std: ActiveProgram) -> None:
    """One pause at a time: a second would restart its bound and lose its rate."""
    state = _bench(_still(std), _running(std)).with_channel(
        "B", pause=ContainerPause(7000.0, Decimal(30), 180.0)
    )
    assert _decide(state, PauseForContainerChange("B")) == _refused(
        Reason.CONTAINER_PAUSE, "refused: channel B is already paused"
    )


def test_s15_a_pause_keeps_the_drugs_total_before_it(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """The journaled pause keeps what the patient got of the drug until then, on every
    channel (A's 15 mL/h and B's 30 mL/h of 16 mcg/mL: 720 mcg/h), before its stop is
    read back; the resume restores at most that (S4). A test fluid keeps none."""
    state = _bench(_running(std, "15"), _running(std, "30"))
    paused = apply(CONFIG, state, ContainerPaused("B", Decimal(30), 180.0, NOW, "4 mg/250 mL"))
    pause = paused.channel("B").pause
    assert pause == ContainerPause(
        NOW.clinical, Decimal(30), 180.0, "4 mg/250 mL", False, Fraction(720)
    )
    water = _bench(_still(None), _running(_water(library), "100"))
    fluid = apply(CONFIG, water, ContainerPaused("B", Decimal(100), 180.0, NOW))
    assert fluid.channel("B").pause == ContainerPause(NOW.clinical, Decimal(100), 180.0)


def test_s4_a_pause_keeps_the_rate_told_so_a_read_back_in_tolerance_still_resumes(
    std: ActiveProgram,
) -> None:
    """The pump read back 29.99 mL/h for the 30 it was told (within the 0.05 % band):
    the pause keeps 30 for this channel in the total before it, the rate its resume asks,
    so the resume restores it (counted at the verified 29.99 the resume was a rise from
    0, refused by S4, and a paused channel has no other way out). Review, 4 December
    2026."""
    b = replace(_running(std, "29.99"), expected_rate=Decimal(30))
    state = _bench(_still(None), b)
    paused = apply(CONFIG, state, ContainerPaused("B", Decimal(30), 180.0, NOW, "4 mg/250 mL"))
    pause = paused.channel("B").pause
    assert pause is not None and pause.total_before == Fraction(480)
    stopped = paused.with_channel("B", running=False, expected_running=False)
    assert _decide(stopped, ResumeAfterContainerChange("B"), now=Now(7320.0, 220.0)).accepted


def test_s4_pauses_that_overlap_share_one_total_before(std: ActiveProgram) -> None:
    """A runs 30 mL/h (8 mcg/min) and B 7.5 (2): B pauses, then A, each resumed in the
    same order. A's pause keeps the 10 mcg/min that ran before B's (not the 8 left when
    it paused), so both resume; a channel started at a paused one's rate and paused in
    turn cannot double the dose that way (its total before is the first pause's)."""
    state = _bench(_running(std, "30"), _running(std, "7.5"))
    b_paused = apply(CONFIG, state, ContainerPaused("B", Decimal("7.5"), 180.0, NOW, ""))
    b_stopped = b_paused.with_channel("B", running=False, expected_running=False)
    a_paused = apply(CONFIG, b_stopped, ContainerPaused("A", Decimal(30), 180.0, NOW, ""))
    a_pause, b_pause = a_paused.channel("A").pause, a_paused.channel("B").pause
    assert a_pause is not None and b_pause is not None
    assert (a_pause.total_before, b_pause.total_before) == (Fraction(600), Fraction(600))
    both = a_paused.with_channel("A", running=False, expected_running=False)
    later = Now(7320.0, 220.0)
    assert _decide(both, ResumeAfterContainerChange("B"), now=later).accepted
    b_back = both.with_channel("B", running=True, expected_running=True)
    assert _decide(b_back, ResumeAfterContainerChange("A"), now=later).accepted
    # A paused at 8, B started at 8 meanwhile and paused: B's "before" is A's 8, not 16
    a_only = _bench(_running(std, "30"), _still(std))
    a_first = apply(CONFIG, a_only, ContainerPaused("A", Decimal(30), 180.0, NOW, ""))
    a_first = a_first.with_channel("A", running=False, expected_running=False)
    b_started = a_first.with_channel(
        "B", running=True, set_rate=Decimal(30), expected_running=True, expected_rate=Decimal(30)
    )
    b_then = apply(CONFIG, b_started, ContainerPaused("B", Decimal(30), 180.0, NOW, ""))
    b_pause = b_then.channel("B").pause
    assert b_pause is not None and b_pause.total_before == Fraction(480)


def test_s15_a_priming_channel_is_not_paused(std: ActiveProgram) -> None:
    """A prime runs the pump to waste at its top rate: a pause then would keep that rate
    as the one to resume at (the pump reads it, nothing was told). Refused like every
    other order to a priming channel. (Found 4 December 2026, with the resume's.)"""
    priming = _bench(_running(std), _still(std)).with_channel(
        "B", priming=Priming(2.0, 7150.0, 0.0), running=True, set_rate=Decimal(1200)
    )
    assert _decide(priming, PauseForContainerChange("B")) == _refused(
        Reason.RELAY, "refused: channel B is priming"
    )


def test_s15_a_pause_needs_a_program_and_a_running_channel(std: ActiveProgram) -> None:
    """Without a program there is no rate to resume at; a channel standing still needs
    no pause to change its container."""
    bare = _bench(_still(std), ChannelState(running=True, set_rate=Decimal(30)))
    assert _decide(bare, PauseForContainerChange("B")) == _refused(
        Reason.NO_PROGRAM, "refused: no program loaded"
    )
    still = _bench(_running(std), _still(std))
    assert _decide(still, PauseForContainerChange("B")) == _refused(
        Reason.NOT_INFUSING,
        "refused: channel B is not running: change its container without a pause",
    )


# --------------------------------------------------------------------------- container


def _changed(volume: str, note: str = "", name: str = "B") -> Verdict:
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"container changed on channel {name}: {volume} mL; not primed{note}",
    )


def test_s15_a_new_container_is_recorded_not_primed(std: ActiveProgram) -> None:
    """A new container's slack is not taken up: the sentence says it is not primed (a
    standby must be primed before it is armed)."""
    state = _bench(_running(std), _still(std))
    assert _decide(state, ContainerChanged(Decimal(50), "B")) == _changed("50")
    body = ContainerChanged(Decimal(50), "B", "4 mg/250 mL")
    assert _decide(state, body) == _changed("50")
    assert container_concentration(state, body) is None
    # the same strength in other words is the same
    same = ContainerChanged(Decimal(20), "B", "16 mcg/mL")
    assert _decide(state, same) == _changed("20")
    assert container_concentration(state, same) is None


def test_s15_a_container_of_another_strength_needs_a_re_program(std: ActiveProgram) -> None:
    """Another concentration than the program's would give another dose at the same
    rate: the new container is recorded with its label, and the channel must be
    re-programmed before it runs."""
    state = _bench(_running(std), _still(std))
    body = ContainerChanged(Decimal(50), "B", "8 mg/250 mL")
    assert _decide(state, body) == _changed(
        "50",
        "; it holds 8 mg/250 mL, the program 4 mg/250 mL: re-program the channel before it runs",
    )
    assert container_concentration(state, body) == "8 mg/250 mL"


def test_s15_a_labelled_container_on_a_channel_without_a_drug_keeps_its_label(
    library: DrugLibrary,
) -> None:
    """With no drug program there is nothing to compare with: the label is recorded as
    given, and no re-program is asked for here (loading a program is)."""
    state = _bench(_still(None), _still(_water(library)))
    body = ContainerChanged(Decimal(50), "B", "8 mg/250 mL")
    assert _decide(state, body) == _changed("50")
    assert container_concentration(state, body) == "8 mg/250 mL"
    assert container_concentration(state, ContainerChanged(Decimal(50), "B")) is None
    assert (
        container_concentration(state, ContainerChanged(Decimal(50), None, "8 mg/250 mL")) is None
    )


def test_s15_a_container_label_that_is_no_concentration_is_refused(std: ActiveProgram) -> None:
    """A label the kernel cannot read is no concentration to compare with the program."""
    state = _bench(_running(std), _still(std))
    assert _decide(state, ContainerChanged(Decimal(50), "B", "strong")) == _refused(
        Reason.BAD_INPUT,
        "refused: concentration: 'strong' is not a concentration; write e.g. '4 mg/250 mL' "
        "or '16 mcg/mL'",
    )


def test_s15_no_container_change_while_the_channel_runs_stands_by_or_primes(
    std: ActiveProgram,
) -> None:
    """A container is changed on a stopped channel (a running one is paused first), not
    under an armed standby (the relay counts on it) nor in a prime (its count would be
    lost)."""
    body = ContainerChanged(Decimal(50), "B")
    running = _bench(_still(std), _running(std))
    told = _bench(_still(std), _still(std)).with_channel("B", expected_running=True)
    for state in (running, told):
        assert _decide(state, body) == _refused(
            Reason.ALREADY_INFUSING,
            "refused: channel B is running: pause it for the container change first",
        )
    armed = _bench(_running(std), _still(std)).with_channel("B", standby=Standby("A", "quick", 0.0))
    assert _decide(armed, body) == _refused(
        Reason.RELAY, "refused: channel B is an armed standby; disarm it first"
    )
    priming = _bench(_running(std), _still(std)).with_channel(
        "B", priming=Priming(1.0, 7000.0, 0.0)
    )
    assert _decide(priming, body) == _refused(Reason.RELAY, "refused: channel B is priming")


def _too_big(most: str, container: str | None) -> Verdict:
    return _refused(
        Reason.BAD_INPUT,
        f"refused: volume_ml must be more than 0 and at most {most} mL"
        + (f" (what {container} holds)" if container is not None else ""),
    )


@pytest.mark.parametrize(
    ("volume", "accepted"),
    [("50", True), ("50.001", False), ("0.001", True), ("0.5", True), ("0", False)],
)
def test_s15_a_new_container_holds_at_most_its_capacity(
    std: ActiveProgram, volume: str, accepted: bool
) -> None:
    """The volume says when the relay must hand over: more than the container can hold
    would hand over late. Exactly its capacity is allowed, a thousandth more refused."""
    state = _bench(_running(std), _still(std)).with_channel(
        "B", container=ContainerState(name="bd-plastipak-50ml", capacity_ml=50.0)
    )
    expected = _changed(volume) if accepted else _too_big("50", "bd-plastipak-50ml")
    assert _decide(state, ContainerChanged(Decimal(volume), "B")) == expected


@pytest.mark.parametrize("volume", ["NaN", "Infinity", "-Infinity"])
def test_s15_a_new_container_of_no_finite_volume_is_refused(
    std: ActiveProgram, volume: str
) -> None:
    """A volume that is not a number says nothing of when the container empties."""
    state = _bench(_running(std), _still(std)).with_channel(
        "B", container=ContainerState(name="bd-plastipak-50ml", capacity_ml=50.0)
    )
    assert _decide(state, ContainerChanged(Decimal(volume), "B")) == _too_big(
        "50", "bd-plastipak-50ml"
    )


def test_s15_a_container_of_unknown_capacity_is_bounded_by_the_largest_figure(
    std: ActiveProgram,
) -> None:
    """A bag whose capacity the bench does not know is bounded only by the largest figure
    a request may carry."""
    state = _bench(_running(std), _still(std)).with_channel("B", container=ContainerState())
    assert _decide(state, ContainerChanged(Decimal(1000), "B")) == _changed("1000")
    assert _decide(state, ContainerChanged(Decimal(0), "B")) == _too_big("100000", None)


# --------------------------------------------------------------------------- resume


def _water(library: DrugLibrary) -> FluidProgram:
    spec = ProgramSpec(library.content_hash, "water", "", "", "", "", test_fluid=True)
    program = program_of(spec, fluid_limits(library, spec), 0.0)
    assert isinstance(program, FluidProgram)
    return program


def _resumes(
    rate: str,
    gap: int,
    *actions: SetInterlock | SetRate | StartPump,
    unit: str = "mcg/min",
    primed: bool = True,
) -> Verdict:
    words = "" if primed else "; not primed: expect a late start at low rates"
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted: channel B resumes at {rate} mL/h after a pause of {gap} s{words}",
        actions=actions or (SetRate(Decimal(rate), "B"), StartPump("B")),
        rate_ml_h=Decimal(rate),
        unit=unit,
    )


def test_s15_a_resume_runs_the_rate_before_the_pause(std: ActiveProgram) -> None:
    """After the change the channel runs the drug rate it gave before, started, and the
    sentence gives the rate and the length of the gap."""
    state = _bench(_still(None), _paused(std, "30"))
    assert _decide(state, ResumeAfterContainerChange("B")) == _resumes("30", 120)
    later = Now(7500.0, 400.0)
    assert _decide(state, ResumeAfterContainerChange("B"), now=later) == _resumes("30", 420)


def test_s15_a_resume_unprimed_warns_of_a_late_start(std: ActiveProgram) -> None:
    """An unprimed syringe can take many minutes to deliver at low rates: allowed (a
    pump without a prime must still resume) but said."""
    state = _bench(_still(None), _paused(std, "30", primed=False))
    assert _decide(state, ResumeAfterContainerChange("B")) == _resumes("30", 120, primed=False)


def test_s12_a_resume_with_the_interlock_off_enables_it_first(std: ActiveProgram) -> None:
    """A pump cut by the interlock cannot run: the relay is closed before the rate and
    the start are sent."""
    state = _bench(_still(None), _paused(std, "30")).with_channel("B", interlock_enabled=False)
    assert _decide(state, ResumeAfterContainerChange("B")) == _resumes(
        "30", 120, SetInterlock(True, "B"), SetRate(Decimal(30), "B"), StartPump("B")
    )


def test_s15_a_resume_of_a_test_fluid_runs_its_rate(library: DrugLibrary) -> None:
    """A test fluid has no drug: its rate is the rate, in mL/h, and no drug rule
    applies (a rate far above any drug's maximum resumes)."""
    state = _bench(_still(None), _paused(_water(library), "900", concentration=""))
    assert _decide(state, ResumeAfterContainerChange("B")) == _resumes("900", 120, unit="mL/h")


def test_s15_a_resume_converts_the_drug_rate_to_the_new_concentration(
    library: DrugLibrary,
) -> None:
    """The resume gives the patient the same drug per hour as before: paused at 10.03
    mL/h of 32 mcg/mL, re-programmed for 16 mcg/mL, it runs 20.06 mL/h, which a pump of
    tenths runs as 20 mL/h (never above the order)."""
    weaker = _program(library, norepi_standard(library))
    at_32 = Fraction(1003, 100) * 32  # mcg/h at the pause
    state = _bench(
        _still(None),
        _paused(weaker, "10.03", concentration="8 mg/250 mL", total_before=at_32),
    )
    tenths = PumpCapabilities(Decimal("0.1"), Decimal("1200"), _tenths)
    assert _decide(
        state, ResumeAfterContainerChange("B"), pumps={"A": PUMP, "B": tenths}
    ) == _resumes("20", 120)
    # the same pause without a recorded strength: taken as the program's
    unlabelled = _bench(_still(None), _paused(weaker, "10.03", concentration=""))
    assert _decide(
        unlabelled, ResumeAfterContainerChange("B"), pumps={"A": PUMP, "B": tenths}
    ) == _resumes("10", 120)


def test_s15_only_a_paused_channel_resumes(std: ActiveProgram) -> None:
    """A resume restores what a pause stopped: without a pause there is nothing to
    restore (a start is a start, judged as one)."""
    state = _bench(_still(None), _still(std))
    assert _decide(state, ResumeAfterContainerChange("B")) == _refused(
        Reason.CONTAINER_PAUSE, "refused: channel B is not paused for a change"
    )


def test_s12_no_resume_under_an_emergency_stop(std: ActiveProgram) -> None:
    """Nothing restarts a pump under an emergency stop but a person's acknowledgement."""
    state = _bench(_still(None), _paused(std))
    stopped = KernelState(channels=state.channels, estopped=True)
    assert _decide(stopped, ResumeAfterContainerChange("B")) == _refused(
        Reason.EMERGENCY_STOPPED,
        "refused: emergency stop is active; acknowledge it before resuming",
    )


def test_s15_no_resume_while_the_channel_primes(std: ActiveProgram) -> None:
    """A prime after a container change runs to waste: its flow counts in no total and
    its read-backs judge no rate. A resume during it would send the rate and the start
    while the channel still counts as priming, so the patient's drug would escape the
    hard maximum and the cap (S1, S3) and the read-back (S9): refused until the prime is
    done. (Found by the kernel's relay tests, 4 December 2026: every other order on a
    priming channel was refused, this one was accepted.)"""
    state = _bench(_still(None), _paused(std, "30")).with_channel(
        "B", priming=Priming(2.0, 7150.0, 0.0), running=True, set_rate=Decimal(1200)
    )
    assert _decide(state, ResumeAfterContainerChange("B")) == _refused(
        Reason.RELAY, "refused: channel B is priming; resume it once the prime is done"
    )
    done = state.with_channel("B", priming=None, running=False, set_rate=Decimal(0))
    assert _decide(done, ResumeAfterContainerChange("B")) == _resumes("30", 120)


def test_s15_a_resume_needs_a_current_program(std: ActiveProgram) -> None:
    """Without a program nothing says what the rate means; with a stale one (a container
    of another strength) the rate would give another dose."""
    bare = _bench(_still(None), ChannelState(pause=ContainerPause(PAUSED_AT, Decimal(30), 180.0)))
    assert _decide(bare, ResumeAfterContainerChange("B")) == _refused(
        Reason.NO_PROGRAM, "refused: no program loaded"
    )
    stale = _bench(_still(None), _paused(std)).with_channel(
        "B", program_stale="the new container holds 8 mg/250 mL"
    )
    assert _decide(stale, ResumeAfterContainerChange("B")) == _refused(
        Reason.PROGRAM_STALE,
        "refused: the new container holds 8 mg/250 mL. Load the program for the new "
        "container first",
    )


@pytest.mark.parametrize(
    ("pump", "expected"),
    [
        (PumpCapabilities(Decimal("0.1"), Decimal("30"), _exact), None),
        (
            PumpCapabilities(Decimal("0.1"), Decimal("29.9"), _exact),
            (
                Reason.PUMP_RANGE_HIGH,
                "refused: the rate before the pause needs 30 mL/h, above the pump's 29.9 "
                "mL/h with this syringe",
            ),
        ),
        (PumpCapabilities(Decimal("30"), Decimal("1200"), _exact), None),
        (
            PumpCapabilities(Decimal("30.1"), Decimal("1200"), _exact),
            (
                Reason.PUMP_RANGE_LOW,
                "refused: the rate before the pause needs 30 mL/h, below the pump's minimum "
                "30.1 mL/h with this syringe (use a smaller syringe or a weaker "
                "concentration)",
            ),
        ),
        (
            PumpCapabilities(Decimal(0), Decimal(0), _exact),
            (
                Reason.PUMP_COMMS,
                "refused: the pump's rate range is not known yet (the pump has not answered "
                "since the safety process started)",
            ),
        ),
    ],
    ids=["max-at", "max-past", "min-at", "min-past", "unknown"],
)
def test_s7_a_resume_is_within_the_pumps_range(
    std: ActiveProgram, pump: PumpCapabilities, expected: tuple[Reason, str] | None
) -> None:
    """The new syringe may set another range: the rate before the pause must be one the
    channel's pump runs now (exactly at a bound allowed, one step past refused); the
    refusal still says the rate and unit it was about."""
    state = _bench(_still(None), _paused(std, "30"))
    verdict = _decide(state, ResumeAfterContainerChange("B"), pumps={"A": PUMP, "B": pump})
    if expected is None:
        assert verdict == _resumes("30", 120)
    else:
        reason, message = expected
        assert verdict == _refused(reason, message, rate_ml_h=Decimal(30), unit="mcg/min")


@pytest.mark.parametrize(
    ("a_rate", "expected"),
    [
        ("146.25", None),  # 39 + 8 = 47 mcg/min: the hard maximum, exactly
        ("146.3", "47.0133"),
    ],
    ids=["at", "past"],
)
def test_s1_a_resume_is_judged_on_the_patients_total(
    std: ActiveProgram, a_rate: str, expected: str | None
) -> None:
    """Another channel of the drug counts: the resume's 8 mcg/min on top of channel A's
    (39 mcg/min at the pause, 39.0133 since) may not take the total above the hard
    maximum, and the refusal says it is the total of both channels."""
    state = _bench(_running(std, a_rate), _paused(std, "30", total_before=Fraction(2820)))
    verdict = _decide(state, ResumeAfterContainerChange("B"))
    if expected is None:
        assert verdict == _resumes("30", 120)
    else:
        assert verdict == _refused(
            Reason.HARD_MAX,
            f"refused: {expected} mcg/min is above the hard maximum of 47 mcg/min (the "
            "total of channels A, B)",
            rate_ml_h=Decimal(30),
            unit="mcg/min",
        )


@pytest.mark.parametrize(
    ("at_pause", "accepted"),
    [(Fraction(720), True), (Fraction(720) - Fraction(1, 100), False)],
    ids=["at", "past"],
)
def test_s4_a_resume_restores_no_more_than_the_total_at_the_pause(
    std: ActiveProgram, at_pause: Fraction, accepted: bool
) -> None:
    """What ran before the pause comes back without a titration; more does not. A is at
    15 mL/h (4 mcg/min) and B paused at 30 (8): if the total at the pause was those 12
    mcg/min (720 mcg/h), the resume restores it; if it was less (A started or rose
    since), the resume is a rise of the total, held to S4: from 4 to 12 mcg/min is
    refused. (Found by review, 4 December 2026: every resume counted as restoring, so
    a channel started during a pause doubled the patient's dose at the resume.)"""
    state = _bench(_running(std, "15"), _paused(std, "30", total_before=at_pause))
    verdict = _decide(state, ResumeAfterContainerChange("B"))
    if accepted:
        assert verdict == _resumes("30", 120)
    else:
        assert (verdict.accepted, verdict.reason) == (False, Reason.STEP_RISE)
        assert verdict.message == (
            "refused: 12 mcg/min is 3x the current 4 mcg/min; the largest allowed rise now "
            "is 1 mcg/min (to 5 mcg/min) (the total of channels A, B)"
        )


def test_s1_a_resume_is_judged_first_on_its_own_programs_limits(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """Two programs of one drug bring two limit sets; the resuming channel's own comes
    first, so its refusal carries no note, and the other's limits still bind (A's
    47 mcg/min passes, B's 1 mcg/kg/min at 40 kg, 40 mcg/min, does not)."""
    light = _program(library, norepi_weight_based(library, Decimal(40)))
    both = Fraction(30 * 16) + Fraction(12375, 100) * light.amount_per_ml
    state = _bench(_running(std, "30"), _paused(light, "123.75", total_before=both))
    assert _decide(state, ResumeAfterContainerChange("B")) == _refused(
        Reason.HARD_MAX,
        "refused: 1.025 mcg/kg/min is above the hard maximum of 1 mcg/kg/min (the total "
        "of channels A, B)",
        rate_ml_h=Decimal("123.75"),
        unit="mcg/kg/min",
    )


def _near_cap(*, a_running: bool) -> DrugRecord:
    """2800 mcg/h over the last 24 h until the pause (67.11 mg of the 68 mg cap), then
    channel A's 480 mcg/h if it runs."""
    history = RateHistory().with_rate(NOW.clinical - 86400.0, Fraction(2800))
    history = history.with_rate(PAUSED_AT, Fraction(480 if a_running else 0))
    return DrugRecord(history)


def test_s3_a_resume_is_refused_when_it_would_reach_the_cap(std: ActiveProgram) -> None:
    """The pause changes nothing of the drug's history: resuming at 60 mL/h (960 mcg/h)
    would reach the 68 mg per 24 h cap within the hour's look-ahead; 30 mL/h does not."""
    drugs = {"norepinephrine": _near_cap(a_running=False)}
    slow = KernelState(channels={"A": _still(None), "B": _paused(std, "30")}, drugs=drugs)
    assert _decide(slow, ResumeAfterContainerChange("B")) == _resumes("30", 120)
    fast = slow.with_channel(
        "B", pause=ContainerPause(PAUSED_AT, Decimal(60), 180.0, total_before=Fraction(960))
    )
    assert _decide(fast, ResumeAfterContainerChange("B")) == _refused(
        Reason.CUMULATIVE_CAP,
        "refused: at this rate the cap of 68 mg per 24 h would be reached within 60 min "
        "(67.1 mg given in the last 24 h)",
        rate_ml_h=Decimal(60),
        unit="mcg/min",
    )


def test_s3_a_resume_counts_the_other_channels_toward_the_cap(std: ActiveProgram) -> None:
    """Channel A runs beside it (as at the pause): the resume's 480 mcg/h alone stays
    under the cap, with A's 480 mcg/h beside it the total reaches it, and the refusal
    says it is the total."""
    drugs = {"norepinephrine": _near_cap(a_running=True)}
    paused = _paused(std, "30", total_before=Fraction(960))
    state = KernelState(channels={"A": _running(std), "B": paused}, drugs=drugs)
    assert _decide(state, ResumeAfterContainerChange("B")) == _refused(
        Reason.CUMULATIVE_CAP,
        "refused: at this rate the cap of 68 mg per 24 h would be reached within 60 min "
        "(67.1 mg given in the last 24 h) (the total of channels A, B)",
        rate_ml_h=Decimal(30),
        unit="mcg/min",
    )


def test_s3_a_resume_whose_stop_did_not_take_is_no_rise(std: ActiveProgram) -> None:
    """A pause whose stop the pump refused leaves the channel running: its resume at the
    same rate is no rise (the cap is checked on a start or a rise) and counts its own
    rate once in the total (8 + 39 mcg/min is the hard maximum, not twice 8 above it)."""
    drugs = {"norepinephrine": _near_cap(a_running=True)}
    b = _running(std, "30")
    still_running = KernelState(
        channels={"A": _running(std, "146.25"), "B": b}, drugs=drugs
    ).with_channel("B", pause=ContainerPause(PAUSED_AT, Decimal(30), 180.0, "4 mg/250 mL"))
    assert _decide(still_running, ResumeAfterContainerChange("B")) == _resumes("30", 120)


# --------------------------------------------------------------------------- while paused


def _decided(library: DrugLibrary, state: KernelState, body: RequestBody) -> Verdict:
    """Through the kernel's ``decide``: a program and a patient are not relay requests."""
    attached = replace(state, session="s", attached=True)
    request = Request(RequestMeta("s", 1, 1e6), body)
    return decide(library, attached, request, NOW, PUMPS, CONFIG)


def test_s15_a_paused_channel_takes_a_program_of_its_own_drug_only(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """The resume restores the paused drug's rate with the channel's program: a new
    program may give the new container's strength, never another drug (its resume would
    start that drug unordered, at a rate no start limit judged) nor a test fluid.
    (Found by review, 4 December 2026: epinephrine loaded on a channel paused from
    35 mcg/min of norepinephrine resumed at 0.5 mcg/kg/min, 5x its max start.)"""
    state = _bench(_still(None), _paused(std, "30"))
    epinephrine = ProgramSpec(
        library.content_hash,
        "epinephrine",
        "adult_icu",
        "weight_based",
        "4 mg/250 mL",
        "D5W",
        Decimal(70),
    )
    assert _decided(library, state, LoadProgram(epinephrine, "B")) == _refused(
        Reason.CONTAINER_PAUSE,
        "refused: channel B is paused for a container change of norepinephrine: until it "
        "resumes, only a program of the same drug may be loaded (another strength for the "
        "new container is fine)",
    )
    water = ProgramSpec(library.content_hash, "water", "", "", "", "", test_fluid=True)
    assert not _decided(library, state, LoadProgram(water, "B")).accepted
    # the same drug by another of the library's names is the same drug
    alias = norepi_standard(library, drug="noradrenaline", concentration="8 mg/250 mL")
    assert _decided(library, state, LoadProgram(alias, "B")).accepted
    stronger = norepi_standard(library, concentration="8 mg/250 mL")
    assert _decided(library, state, LoadProgram(stronger, "B")).accepted
    fluid = _bench(_still(None), _paused(_water(library), "100", concentration=""))
    assert _decided(library, fluid, LoadProgram(norepi_standard(library), "B")) == _refused(
        Reason.CONTAINER_PAUSE,
        "refused: channel B is paused for a container change of a test fluid: until it "
        "resumes, only a program of the same kind may be loaded (another strength for the "
        "new container is fine)",
    )
    assert _decided(library, fluid, LoadProgram(water, "B")).accepted


def test_s16_no_new_patient_while_a_channel_is_paused(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """A new patient starts fresh histories: a pause's resume would then restore the
    previous patient's rate to the next one, unjudged (S4 has no history to hold it).
    (Found by review, 4 December 2026.)"""
    state = _bench(_still(None), _paused(std, "30"))
    admit = AdmitPatient(PatientSpec("adult_icu", None), confirm_new_patient=True)
    assert _decided(library, state, admit) == _refused(
        Reason.CONTAINER_PAUSE,
        "refused: channel B is paused for a container change; a new patient is admitted "
        "only when nothing infuses or is paused",
    )
    resumed = state.with_channel("B", pause=None)
    assert _decided(library, resumed, admit).accepted


# --------------------------------------------------------------------------- re-programmed


def test_s15_a_new_program_of_another_solution_disarms_the_channels_standby(
    library: DrugLibrary, std: ActiveProgram
) -> None:
    """A standby is armed for a solution: when its channel is re-programmed for another
    (a container change to another strength), the standby is disarmed with an alarm, so
    the early warning that no standby is armed speaks in time. Left armed, it silenced
    that warning and its handover failed at the lead, minutes before empty. (Found by
    review, 4 December 2026.) A program of the same solution (another therapy) keeps it."""
    armed = _bench(_still(std), _still(std)).with_channel("B", standby=Standby("A", "quick", 0.0))
    double = _program(library, norepi_standard(library, concentration="8 mg/250 mL"))
    loaded = apply(CONFIG, armed, ProgramLoaded(double.spec, double.limits, 0.0, NOW, "A"))
    assert loaded.channel("B").standby is None
    alarm = loaded.alarms.get("standby_disarmed", "B")
    assert alarm is not None
    assert (alarm.reason, alarm.priority, alarm.raised_at, alarm.active) == (
        Reason.STANDBY_MISMATCH,
        Priority.MEDIUM,
        NOW.clinical,
        False,
    )
    assert alarm.message == (
        "channel B is no longer the standby of channel A after its new program: it holds "
        "concentration 4 mg/250 mL, not 8 mg/250 mL"
    )
    weight = _program(library, norepi_weight_based(library))
    same = apply(CONFIG, armed, ProgramLoaded(weight.spec, weight.limits, 0.0, NOW, "A"))
    assert same.channel("B").standby == Standby("A", "quick", 0.0)
    assert same.alarms.get("standby_disarmed") is None
    water = _water(library)
    fluid = apply(CONFIG, armed, ProgramLoaded(water.spec, water.limits, 0.0, NOW, "A"))
    assert fluid.channel("B").standby is None
    disarmed = fluid.alarms.get("standby_disarmed", "B")
    assert disarmed is not None and disarmed.message.endswith(": channel A now runs no drug")
    other = armed.with_channel("C", program=std)  # a program on a channel nobody relieves
    untouched = apply(CONFIG, other, ProgramLoaded(double.spec, double.limits, 0.0, NOW, "C"))
    assert untouched.channel("B").standby == Standby("A", "quick", 0.0)
