"""The refusals every request meets before any limit (``decide.decide``): no program,
a stale program, already infusing, not infusing, an emergency stop, a channel the bench
does not have or did not name, no usable library, an uncertain command; and the
acknowledgement that is always accepted.

A controller acts on the reason code and an operator on the sentence, and a refusal
that names the wrong channel sends them to the wrong pump: each is asserted whole, on
a one-pump bench and on a bench of two channels (where the sentence names the channel).
Nothing refused ever carries an action for the pump.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.history import RateHistory
from safety.kernel.model import (
    AcknowledgeAlarms,
    AdmitPatient,
    ArmStandby,
    ChangeDose,
    DisarmStandby,
    LoadProgram,
    Now,
    PatientSpec,
    PrimeChannel,
    PrimePump,
    Request,
    RequestBody,
    RequestMeta,
    ResumeAfterContainerChange,
    SetRate,
    StartInfusion,
    StopInfusion,
    Verdict,
)
from safety.kernel.state import (
    ActiveProgram,
    ContainerPause,
    DrugRecord,
    Handover,
    KernelState,
    Pending,
    Priming,
    Standby,
    load_program,
    single_channel,
)
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.kernel.support import norepi_standard

CONFIG = KernelConfig()
PUMP = PumpCapabilities(Decimal("1.0"), Decimal("1999.1"), lambda rate: rate)
NOW = Now(100.0, 50.0)


@pytest.fixture
def std(library: DrugLibrary) -> ActiveProgram:
    return load_program(library, norepi_standard(library), 0.0)


def bench(program: ActiveProgram | None, *, running: bool = False) -> KernelState:
    """One pump, attached; ``program`` loaded (running at 30 mL/h when ``running``)."""
    rate = Decimal("30.0")
    fields: dict[str, object] = {"session": "s", "attached": True}
    if program is not None:
        history = RateHistory().with_rate(0.0, Fraction(rate) * program.amount_per_ml)
        fields["drugs"] = {
            program.drug: DrugRecord(history if running else RateHistory(), program.limits)
        }
        fields.update(program=program, set_rate=rate, expected_rate=rate)
        fields.update(running=running, expected_running=running)
    return single_channel(**fields)


def two(state: KernelState) -> KernelState:
    """The same with a second channel, B, holding what A holds; A emptied."""
    return state.with_channel("B", **vars(state.channel("A"))).with_channel(
        "A", program=None, running=False, expected_running=False
    )


def decided(state: KernelState, body: RequestBody, library: DrugLibrary | None = None) -> Verdict:
    request = Request(RequestMeta("s", state.last_seq + 1, 1e6), body)
    return decide(library, state, request, NOW, PUMP, CONFIG)


def refused(verdict: Verdict, reason: Reason, message: str) -> None:
    assert (verdict.accepted, verdict.reason, verdict.message) == (False, reason, message)
    assert verdict.actions == ()


# --------------------------------------------------------------------------- always


def test_an_acknowledgement_is_accepted_whatever_runs(std: ActiveProgram) -> None:
    verdict = decided(bench(std, running=True), AcknowledgeAlarms())
    assert (verdict.accepted, verdict.reason, verdict.message) == (
        True,
        Reason.ACCEPTED,
        "alarms acknowledged",
    )
    assert verdict.actions == ()


# --------------------------------------------------------------------------- programs


@pytest.mark.parametrize(
    "body",
    [StartInfusion(Decimal(8)), ChangeDose(Decimal(8)), StopInfusion()],
    ids=["start", "change", "stop"],
)
def test_nothing_to_start_change_or_stop_without_a_program(body: RequestBody) -> None:
    refused(decided(bench(None), body), Reason.NO_PROGRAM, "refused: no program loaded")


def test_no_program_on_the_named_channel_names_it(std: ActiveProgram) -> None:
    state = two(bench(std))
    refused(
        decided(state, StartInfusion(Decimal(8), channel="A")),
        Reason.NO_PROGRAM,
        "refused: no program loaded on channel A",
    )


def test_a_stale_program_is_refused_with_why_and_what_to_do(std: ActiveProgram) -> None:
    state = bench(std, running=True).with_channel("A", program_stale="the library changed")
    refused(
        decided(state, ChangeDose(Decimal(9))),
        Reason.PROGRAM_STALE,
        "refused: the library changed. The pump is supervised at its current rate; load the "
        "program again (same drug, concentration and diluent) to change it",
    )


# --------------------------------------------------------------------------- running or not


def test_a_start_while_infusing_is_refused(std: ActiveProgram) -> None:
    refused(
        decided(bench(std, running=True), StartInfusion(Decimal(8))),
        Reason.ALREADY_INFUSING,
        "refused: already infusing",
    )
    refused(
        decided(two(bench(std, running=True)), StartInfusion(Decimal(8), channel="B")),
        Reason.ALREADY_INFUSING,
        "refused: already infusing on channel B",
    )


def test_a_dose_change_while_stopped_is_refused(std: ActiveProgram) -> None:
    refused(
        decided(bench(std), ChangeDose(Decimal(8))),
        Reason.NOT_INFUSING,
        "refused: not infusing; start first",
    )
    refused(
        decided(two(bench(std)), ChangeDose(Decimal(8), channel="B")),
        Reason.NOT_INFUSING,
        "refused: not infusing on channel B; start first",
    )


def test_a_start_under_an_emergency_stop_is_refused(std: ActiveProgram) -> None:
    state = single_channel(
        session="s", attached=True, estopped=True, program=std, drugs=bench(std).drugs
    )
    refused(
        decided(state, StartInfusion(Decimal(8))),
        Reason.EMERGENCY_STOPPED,
        "refused: emergency stop is active; acknowledge it before starting again",
    )


# --------------------------------------------------------------------------- channels


def test_a_request_on_a_bench_of_two_must_name_its_channel(std: ActiveProgram) -> None:
    refused(
        decided(two(bench(std)), StartInfusion(Decimal(8))),
        Reason.UNKNOWN_CHANNEL,
        "refused: the bench has 2 channels (A, B): name the channel",
    )


@pytest.mark.parametrize(
    "body",
    [
        StartInfusion(Decimal(8), channel="Z"),
        ArmStandby("Z", "A"),
        ArmStandby("B", "Z"),
        DisarmStandby("Z"),
        PrimeChannel("Z", Decimal(1)),
    ],
    ids=["start", "arm", "arm-for", "disarm", "prime"],
)
def test_a_channel_the_bench_does_not_have_is_named_in_the_refusal(
    std: ActiveProgram, body: RequestBody
) -> None:
    refused(
        decided(two(bench(std)), body),
        Reason.UNKNOWN_CHANNEL,
        "refused: there is no channel 'Z' (channels: A, B)",
    )


# --------------------------------------------------------------------------- library


NO_LIBRARY = (
    "refused: the safety process has no usable drug library (see its alarm); it supervises "
    "the running program with the limits it was loaded with"
)


def test_no_load_and_no_patient_without_a_usable_library(library: DrugLibrary) -> None:
    refused(
        decided(bench(None), LoadProgram(norepi_standard(library))),
        Reason.LIBRARY_UNUSABLE,
        NO_LIBRARY,
    )
    patient = PatientSpec("adult_icu", Decimal(70))
    refused(
        decided(bench(None), AdmitPatient(patient, confirm_new_patient=True)),
        Reason.LIBRARY_UNUSABLE,
        NO_LIBRARY,
    )


# --------------------------------------------------------------------------- S10


def test_a_new_patient_waits_for_an_uncertain_command_on_any_channel(
    std: ActiveProgram, library: DrugLibrary
) -> None:
    pending = Pending(SetRate(Decimal("37.5"), "B"), Decimal("30.0"), True, 90.0)
    state = two(bench(std, running=True)).with_channel("B", pending=pending)
    refused(
        decided(state, AdmitPatient(PatientSpec("adult_icu", Decimal(70)), True), library),
        Reason.DELIVERY_UNCERTAIN,
        "refused: the last pump command's outcome on channel B is uncertain (its "
        "acknowledgement was lost); waiting for a read-back to reconcile it. Nothing is "
        "repeated blindly.",
    )


@pytest.mark.parametrize("named", [True, False])
def test_an_uncertain_command_on_a_pump_that_does_not_answer_says_what_ends_the_wait(
    std: ActiveProgram, named: bool
) -> None:
    """The pump is silent (it may be gone for good): the refusal says that its first
    reading settles the command, and what the operator can do: accept a replacement of a
    pump with a name on record; for a pump that gives none, put one on its port."""
    pending = Pending(SetRate(Decimal("37.5"), "B"), Decimal("30.0"), True, 90.0)
    state = two(bench(std, running=True)).with_channel(
        "B", pending=pending, comms_ok=False, pump_name="NE-1000 V3.930" if named else ""
    )
    how = (
        "if it is gone for good, accept its replacement (console: newpump B)"
        if named
        else "a pump put on its port in its place is read as the channel's own"
    )
    refused(
        decided(state, ChangeDose(Decimal("5"), channel="B")),
        Reason.DELIVERY_UNCERTAIN,
        "refused: the last pump command's outcome on channel B is uncertain (its "
        "acknowledgement was lost); waiting for a read-back to reconcile it. Nothing is "
        "repeated blindly. Channel B's pump does not answer: its first reading will settle "
        f"it; {how}.",
    )


# --------------------------------------------------------------------------- S15: the relay


def test_a_relay_request_reaches_the_relays_rules(std: ActiveProgram) -> None:
    """Disarm, prime and resume are judged by the relay's own rules, with the pump's
    capabilities, the configuration and the clock they need."""
    state = two(bench(std))
    refused(
        decided(state, DisarmStandby("B")),
        Reason.RELAY,
        "refused: channel B is not armed as a standby",
    )
    primed = decided(state, PrimeChannel("A", Decimal(1), confirm_line_disconnected=True))
    assert (primed.accepted, primed.actions) == (True, (PrimePump(Decimal(1), "A"),))
    too_much = decided(state, PrimeChannel("A", Decimal(6), confirm_line_disconnected=True))
    assert too_much.reason is Reason.BAD_INPUT
    assert "at most 5 mL" in too_much.message
    pause = ContainerPause(
        90.0, Decimal("30.0"), 180.0, "4 mg/250 mL", changed=True, total_before=Fraction(480)
    )
    resumed = decided(state.with_channel("B", pause=pause), ResumeAfterContainerChange("B"))
    assert resumed.accepted, resumed.message
    assert resumed.rate_ml_h == Decimal("30.0")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"standby": Standby("A", "quick", 0.0)},
            "refused: channel B is armed as the standby of channel A; disarm it first",
        ),
        ({"priming": Priming(1.0, 90.0, 0.0)}, "refused: channel B is priming"),
    ],
    ids=["standby", "priming"],
)
def test_a_standby_or_a_priming_channel_takes_no_dose_order(
    std: ActiveProgram, changes: dict[str, object], message: str
) -> None:
    state = two(bench(std)).with_channel("B", **changes)
    refused(decided(state, StartInfusion(Decimal(8), channel="B")), Reason.RELAY, message)


def test_no_dose_order_on_a_drug_being_handed_over(std: ActiveProgram) -> None:
    state = two(bench(std, running=True)).with_channel("A", program=std)
    handing = Handover("B", "A", "quick", 80.0, 1)
    state = KernelState(
        drugs=state.drugs,
        channels=state.channels,
        session="s",
        attached=True,
        handover=handing,
    )
    refused(
        decided(state, ChangeDose(Decimal(9), channel="B")),
        Reason.RELAY,
        "refused: the safety process is handing the infusion over from channel B to A; wait "
        "until it ends (the emergency stop acts at once)",
    )
