"""Random interleavings of everything that can happen to an infusion, checked on what the
pump really did.

A hypothesis state machine drives a ``SafetyCore`` over the mock pump on virtual clocks:
operator requests (start, titrate up and down by random factors including 10x slips,
stop, emergency stop from the API or the button, acknowledge; sometimes with a stale,
expired or forged link), clinical time passing (lived through the host's loop: polls and
the cap deadline), pump faults (occlusion, stall, empty, power cycle, a pump running at
a rate nobody set), wire faults (lost request, lost or corrupted reply), heartbeat gaps
and re-attaches, and what the patient's memory must survive (S16, issue 9): restarts of
the safety process on the same journal and pump, with or without a library update whose
figures for the loaded program moved (tighter or looser); reboots of the board, the pump
running on through the gap, the monotonic clock starting near zero (a new boot, or a
time namespace in the same boot), the wall clock synchronised or not, days behind or
ahead, and NTP synchronising it while running; drug switches (norepinephrine <->
vasopressin and back), concentration changes (4 and 8 mg/250 mL) and new syringes;
profile and weight changes (a confirmed patient update, then a re-program) and new
patients (confirmed, when nothing runs).

The invariants are checked on the pump's own record by the one oracle,
``verification.ground_truth.check_ground_truth``, with the causes and programs from the
journal put on the pump's clock (``Bench.pump_clock``: after a reboot the patient's
timeline and the pump's clock differ by a shift the bench knows), never on the kernel's
belief. Per patient and drug, under every limit set in force:

- what reached the patient and the plunger's rate never exceed a hard max (for any time
  > 0, or when a command set it);
- the drug delivered in any cap window (seeded history + ground truth, boluses included)
  never exceeds a cap in force;
- every rise the operator's commands caused is within the step and window limits, and
  every start within max start (or the rate verified running in the titration window);
  every commanded fall of a gradual-wean drug is within the wean floor, and every
  commanded stop is at or below the stop threshold. Stops by an emergency stop, by the
  kernel's own safety reactions, or by the pump itself are exempt, and safety and
  emergency actions may only ever lower the rate. These are judged on both records: under
  an occlusion the delivered flow drops to 0 while the plunger still runs the set rate,
  so only the plunger shows a titration made meanwhile.

What only this machine can see is checked here: every command that reached the pump was
journaled first (the bench's guard), every accepted request is journaled with the
commands it issued and refused ones issue none, an emergency stop stays a stop, a
restart or a reboot replays the journal to the state it left and sends nothing to the
pump, and the patient's timeline never runs backwards.

Some past states need hours of history the syringe cannot hold (a run just under the
hard max, 66-68 mg of the 68 mg cap): the run may start from a seeded journal
(``Bench.seed``), and the seeded delivery counts in the cap check.

A second, smaller machine (``ChannelsMachine``) puts the same drug on two channels of one
bench (``tests.channels.support.ChannelBench``): starts, titrations, weans and stops on
either channel (the kernel judges each on the patient's total), channel B loaded with the
same or another strength, primed to waste and armed as A's standby (quick or overlap),
A's syringe running out (the safety process hands over by itself), emergency stops, lost
replies, restarts of the safety process (each replayed to its live state, no channel left
with an unknown link) and clinical time passing. It is judged by the oracle on the summed channels
(``verification.channel_truth.check_channels``): both pumps' ground truth summed in drug,
every limit on the total, each pump's own rules on its own record, a prime to waste never
counted as delivery.

Both run in about 20 s by default (CI), sharing ``KERNEL_SM_EXAMPLES`` (four fifths and
one fifth). A deeper search, with coverage statistics:
``KERNEL_SM_EXAMPLES=1500 KERNEL_SM_STEPS=60 pytest tests/kernel/test_stateful.py
--hypothesis-show-statistics``. ``python -m tests.kernel.mutation_check --stateful``
runs it against each kernel check removed in turn.
"""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from drivers.gpio.simulated import press_stop_button, release_stop_button
from safety.kernel.codec import decode_event
from safety.kernel.limits import caps_in_force
from safety.kernel.model import (
    AcknowledgeAlarms,
    AdmitPatient,
    ArmStandby,
    ChangeDose,
    CommandIssued,
    ContainerChanged,
    DisarmStandby,
    EmergencyStop,
    HandoverEnded,
    LoadProgram,
    PatientSpec,
    PrimeChannel,
    ProgramSpec,
    RelayStrategy,
    RequestBody,
    RequestDecided,
    StartInfusion,
    StopInfusion,
    UpdatePatient,
)
from safety.kernel.state import ActiveProgram
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import Outcome
from tests.channels.support import ChannelBench
from tests.conftest import shipped_library
from tests.kernel.support import (
    Bench,
    library_variant,
    norepi_standard,
    norepi_weight_based,
    vasopressin_fixed,
)
from verification.channel_truth import ChannelsReport, check_channels
from verification.ground_truth import TruthReport

LIBRARY: DrugLibrary = shipped_library()
NOREPI = "profiles.adult_icu.drugs.norepinephrine"
#: library updates between two runs: the loaded program's figures moved either way
LIBRARIES: dict[str, DrugLibrary] = {
    "shipped": LIBRARY,
    "tighter": library_variant(
        LIBRARY,
        {
            NOREPI: {"cumulative_cap": "60"},
            f"{NOREPI}.therapies.standard": {"hard_max": "40", "max_start": "10"},
            f"{NOREPI}.therapies.standard.titration": {"max_step_rise": "1.5"},
            f"{NOREPI}.therapies.standard.wean": {"max_fall_fraction": "0.2", "window_min": "45"},
            f"{NOREPI}.therapies.weight_based": {"hard_max": "0.8", "max_start": "0.08"},
            f"{NOREPI}.therapies.weight_based.wean": {"max_fall_fraction": "0.2"},
        },
    ),
    "looser": library_variant(
        LIBRARY,
        {
            NOREPI: {"cumulative_cap": "80"},
            f"{NOREPI}.therapies.standard": {"hard_max": "55", "max_start": "15"},
            f"{NOREPI}.therapies.standard.titration": {"max_step_rise": "3", "window_min": "5"},
            f"{NOREPI}.therapies.standard.wean": {
                "max_fall_fraction": "0.5",
                "window_min": "15",
                "stop_threshold": "4",
            },
            f"{NOREPI}.therapies.weight_based": {"hard_max": "1.2"},
            f"{NOREPI}.therapies.weight_based.wean": {
                "max_fall_fraction": "0.5",
                "stop_threshold": "0.06",
            },
        },
    ),
}
#: programs an operator may load (an adult's; a child gets weight-based norepinephrine)
KINDS = ("standard", "double strength", "weight_based", "vasopressin")
#: patients a correction or an admission may name: (profile, kg)
PATIENTS = st.sampled_from(
    [
        ("adult_icu", 50),
        ("adult_icu", 70),
        ("adult_icu", 90),
        ("pediatric_icu", 40),
        ("pediatric_icu", 55),
    ]
)
#: clinical seconds between the host's polls in ``Bench.advance``
POLL_S = 60.0
#: causes of pump records that are the kernel's own idea; they may only lower the rate
PROTECTIVE = frozenset({"safety", "estop"})
DAY = 86_400.0

LINKS = st.sampled_from(["ok", "ok", "ok", "ok", "stale", "expired", "forged"])
FACTORS = st.sampled_from(
    [
        "0.1",
        "0.5",
        "0.7",
        "0.74",
        "0.75",
        "0.76",
        "0.9",
        "1",
        "1.1",
        "1.24",
        "1.25",
        "1.26",
        "1.5",
        "2",
        "10",
    ]
)

_SHM = Path("/dev/shm")
_TMP_ROOT = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None


def _decimal(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.000001"))


def _violations(what: str, report: TruthReport) -> str:
    return f"invariants broken on the {what}:\n" + "\n".join(
        f"  {v.rule} at {v.time:.0f} s: {v.message}" for v in report.violations
    )


class InfusionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="kernel-sm-", dir=_TMP_ROOT))
        self.bench = Bench(self.root, LIBRARY, gpio=True, publish_pins=False)
        self.kind = "standard"
        self.timeline = -float("inf")
        self.timeline_checked = 0
        self.checked_requests = 0
        self.cap_fill = 0.0
        self.hard_fill = 0.0
        #: the oracle's last report on what reached the patient
        self.delivered: TruthReport | None = None

    @property
    def program(self) -> ActiveProgram | None:
        """The drug program the safety process has loaded (none after a new patient)."""
        return self.bench.core.state.drug_program

    def teardown(self) -> None:
        self.bench.close()
        if self.cap_fill > 0:  # steer the search toward the cap
            target(self.cap_fill, label="highest fraction of the cap given in 24 h")
        if self.cap_fill > 0.99:
            event("within 1 % of the cumulative cap")
        if self.hard_fill > 0:  # and toward the hard max
            target(self.hard_fill, label="highest commanded dose / hard max")

    # ------------------------------------------------------------------ set-up
    @initialize(
        start=st.sampled_from(
            [
                ("standard", "none"),
                ("standard", "high"),
                ("standard", "high"),
                ("weight_based", "none"),
                ("weight_based", "near_cap"),
                ("weight_based", "at_cap"),
                ("weight_based", "running_into_cap"),
                ("vasopressin", "none"),
            ]
        ),
        gap=st.sampled_from([0.0, 120.0, 1800.0]),
    )
    def setup(self, start: tuple[str, str], gap: float) -> None:
        """A program, and maybe a past the journal already holds (see ``Bench.seed``)."""
        kind, seed = start
        b = self.bench
        self.kind = kind
        spec = self._spec(kind)
        # 0.9 mcg/kg/min at 70 kg is 63 mcg/min: the 68 mg / 24 h cap is within reach
        per_s = float(b.pump_rate_for(spec, "0.9")) * 16 / 3600
        if seed == "high":  # running just under the hard max (for a minute: a past)
            b.seed(spec, [(0.0, 46)], boot_at=60.0)
        elif seed in ("near_cap", "at_cap"):  # stopped at 66.5 or 67.8 mg
            end = (66_500 if seed == "near_cap" else 67_800) / per_s
            b.seed(spec, [(0.0, "0.9"), (end, 0)], boot_at=end + gap)
        elif seed == "running_into_cap":  # still running with 0.4 mg to go
            b.seed(spec, [(0.0, "0.9")], boot_at=67_600 / per_s)
        b.boot()
        if b.core.state.program is None:
            assert b.load(spec).verdict.accepted
        assert self.program is not None  # a drug program, not a test fluid

    def _spec(self, kind: str) -> ProgramSpec:
        """A program of ``kind`` for the patient in care, under the bench's library."""
        library = self.bench.library
        patient = self.bench.core.state.patient
        profile = patient.profile if patient is not None else "adult_icu"
        weight = patient.weight_kg if patient is not None else None
        if profile != "adult_icu":  # a child: weight-based norepinephrine only
            return norepi_standard(
                library, profile=profile, therapy="weight_based", weight_kg=weight or Decimal(40)
            )
        if kind == "vasopressin":
            return vasopressin_fixed(library)
        if kind == "weight_based":
            return norepi_weight_based(library, weight or Decimal(70))
        if kind == "double strength":
            return norepi_standard(library, concentration="8 mg/250 mL")
        return norepi_standard(library)

    # ------------------------------------------------------------------ requests
    def _send(self, body: RequestBody, link: str) -> Outcome:
        """Send a request, and check it against the journal: an accepted one is there
        with exactly the commands it issued; a refused one issued none."""
        b = self.bench
        first = b.journal.last_id()
        if link == "stale":
            out = b.send(body, seq=b.core.state.last_seq)
        elif link == "expired":
            out = b.send(body, expires_at=b.process_liveness.now() - 0.5)
        elif link == "forged":
            out = b.send(body, session="0" * 16, seq=b.seq + 1)
        else:
            out = b.send(body)
        events = [decode_event(e.payload) for e in b.journal.entries(since_id=first)]
        decided = events[0]
        assert isinstance(decided, RequestDecided) and decided.body == body
        assert decided.accepted == out.verdict.accepted
        assert decided.reason == out.verdict.reason
        own_cause = "estop" if isinstance(body, EmergencyStop) else "command"
        own = [e.action for e in events if isinstance(e, CommandIssued) and e.cause == own_cause]
        if out.verdict.accepted:
            if out.execution == "applied":
                assert own == list(out.verdict.actions), (own, out.verdict)
            else:  # stopped at a failed command (an estop carries on)
                assert own == list(out.verdict.actions[: len(own)])
        else:
            assert own == [] and out.execution == "not executed"
        if link != "ok" and not isinstance(body, EmergencyStop):
            assert not out.verdict.accepted
        self.checked_requests += 1
        event(f"{type(body).__name__}: {out.verdict.reason.value}")
        return out

    def _load(self, kind: str) -> Outcome:
        """Load a program of ``kind``; one for another solution is refused while the pump
        runs (or is believed to), whatever else holds."""
        state = self.bench.core.state
        spec = self._spec(kind)
        before = self.program
        out = self._send(LoadProgram(spec), "ok")
        running = state.running or state.expected_running
        if running and before is not None and not before.same_solution(spec):
            assert out.verdict.reason in (
                Reason.ALREADY_INFUSING,
                Reason.HOLD,
                Reason.DELIVERY_UNCERTAIN,
            ), out.verdict
        if out.verdict.accepted:
            self.kind = kind
            assert self.bench.core.state.program_stale is None
        return out

    # operator requests: most of what happens, so most of the rules

    @rule(
        scale=st.sampled_from(["0.1", "0.5", "1", "1", "1.2", "10", "100"]),
        confirm=st.booleans(),
        link=LINKS,
    )
    def start(self, scale: str, confirm: bool, link: str) -> None:
        program = self.program
        if program is None:
            return
        max_start = Decimal(program.therapy.max_start.value)
        self._send(StartInfusion(max_start * Decimal(scale), confirm_soft_limits=confirm), link)

    @rule(scale=st.sampled_from(["1", "1", "1.01", "2"]), confirm=st.booleans())
    def resume(self, scale: str, confirm: bool) -> None:
        """After an alarm: acknowledge, then start again at the last rate that ran."""
        program = self.program
        if program is None:
            return
        self._send(AcknowledgeAlarms(None), "ok")
        amounts = [s.amount_per_h for s in self.bench.core.state.history.segments]
        amounts = [a for a in amounts if a > 0]
        if amounts:
            dose = _decimal(program.dose_of_amount_rate(amounts[-1]) * Fraction(Decimal(scale)))
            self._send(StartInfusion(dose, confirm_soft_limits=confirm), "ok")

    @rule(factor=FACTORS, confirm=st.booleans(), link=LINKS)
    def change_by_factor(self, factor: Decimal | str, confirm: bool, link: str) -> None:
        self._change(Decimal(factor), confirm, link)

    @rule(
        factor=st.decimals(min_value=Decimal("0.7"), max_value=Decimal("1.3"), places=3),
        confirm=st.booleans(),
    )
    def titrate(self, factor: Decimal, confirm: bool) -> None:
        self._change(factor, confirm, "ok")

    @rule(factor=st.decimals(min_value=Decimal("1"), max_value=Decimal("1.3"), places=3))
    def titrate_up(self, factor: Decimal) -> None:
        self._change(factor, False, "ok")

    @rule(factor=st.decimals(min_value=Decimal("0.76"), max_value=Decimal("0.98"), places=3))
    def wean(self, factor: Decimal) -> None:
        """Wean a step, or stop once at or below the stop threshold."""
        program = self.program
        if program is None:
            return
        wean = program.therapy.wean
        threshold = Fraction(wean.stop_threshold.value) if wean.stop_threshold else Fraction(0)
        current = self.bench.core.state.current_dose()
        if 0 < current <= threshold:
            self._send(StopInfusion(), "ok")
        elif current > 0:
            dose = max(_decimal(current * Fraction(factor)), _decimal(threshold))
            self._send(ChangeDose(dose, confirm_soft_limits=True), "ok")

    def _change(self, factor: Decimal, confirm: bool, link: str) -> None:
        """Titrate by ``factor``; when nothing runs, the operator starts instead (at
        ``factor`` x max start), so that most steps find an infusion to work on."""
        program = self.program
        if program is None:
            return
        state = self.bench.core.state
        current = state.current_dose()
        if state.running and current > 0:
            dose = _decimal(current * Fraction(factor))
            self._send(ChangeDose(dose, confirm_soft_limits=confirm), link)
        else:
            max_start = Fraction(program.therapy.max_start.value)
            dose = _decimal(max_start * Fraction(factor))
            self._send(StartInfusion(dose, confirm_soft_limits=confirm), link)

    @rule(
        which=st.sampled_from(["hard_max", "hard_max", "soft_max", "stop", "soft_min"]),
        by=st.sampled_from(["0.99", "1", "1.01"]),
    )
    def change_to_a_limit(self, which: str, by: str) -> None:
        program = self.program
        if program is None:
            return
        therapy = program.therapy
        figure = {
            "hard_max": therapy.hard_max,
            "soft_max": therapy.soft_max,
            "soft_min": therapy.soft_min,
            "stop": therapy.wean.stop_threshold or therapy.soft_min,
        }[which]
        dose = (Decimal(figure.value) * Decimal(by)).quantize(Decimal("0.000001"))
        self._send(ChangeDose(dose, confirm_soft_limits=True), "ok")

    @rule(link=st.sampled_from(["ok", "ok", "stale"]))
    def stop(self, link: str) -> None:
        self._send(StopInfusion(), link)

    @rule(link=st.sampled_from(["ok", "ok", "stale"]))
    def acknowledge(self, link: str) -> None:
        self._send(AcknowledgeAlarms(None), link)

    @rule(how=st.sampled_from(["api", "api forged", "api expired", "button", "api, stop lost"]))
    def emergency_stop(self, how: str) -> None:
        b = self.bench
        if how == "api, stop lost":  # the stop request and the read after it are lost
            b.wire.drop_next(2)
            how = "api"
        if how == "button":
            # held for 0.2 s, as a finger would: the debounce wants 3 polls 20 ms apart,
            # and a rebooted process's offset clock may land a hair before a poll is due
            press_stop_button(b.gpio_dir)
            for _ in range(10):
                b.service(0.02)
            release_stop_button(b.gpio_dir)
            for _ in range(10):  # a release is seen once it has lasted the debounce too
                b.service(0.02)
        else:
            link = how.removeprefix("api").strip() or "ok"
            assert self._send(EmergencyStop("api"), link).verdict.accepted
        assert b.core.state.estopped

    # the patient's memory (S16): programs, syringes, the patient

    @rule(
        kind=st.sampled_from(KINDS),
        syringe=st.sampled_from(["same syringe", "new syringe"]),
        first=st.sampled_from(["as is", "as is", "emergency stop first"]),
    )
    def load_a_program(self, kind: str, syringe: str, first: str) -> None:
        """A drug switch (norepinephrine <-> vasopressin), a concentration change, the same
        program again (after a library update, or with a new syringe); refused for another
        solution while anything runs, so the operator may stop it at once first."""
        b = self.bench
        if first == "emergency stop first" and b.core.state.running:
            self._send(EmergencyStop("api"), "ok")
            self._send(AcknowledgeAlarms(None), "ok")
        if syringe == "new syringe" and not b.pump.snapshot().running:
            b.pump.reload()
        out = self._load(kind)
        event(f"load {kind} ({syringe}): {out.verdict.reason.value}")

    @rule(patient=PATIENTS, reprogram=st.sampled_from([True, True, False]))
    def patient_corrected(self, patient: tuple[str, int], reprogram: bool) -> None:
        """The same patient's profile or weight, confirmed; then (usually) the program
        again for them: the earlier limits keep applying until their windows pass."""
        profile, kg = patient
        out = self._send(UpdatePatient(PatientSpec(profile, Decimal(kg)), confirm=True), "ok")
        if out.verdict.accepted:
            state = self.bench.core.state
            program = state.drug_program
            if program is not None and (
                program.limits.profile != profile or program.limits.weight_kg not in (None, kg)
            ):
                assert state.program_stale is not None, "a program for another patient"
            if reprogram:
                self._load(self.kind)

    @rule(patient=PATIENTS, kind=st.sampled_from(KINDS))
    def new_patient(self, patient: tuple[str, int], kind: str) -> None:
        """A confirmed new patient (only when nothing runs): fresh histories, then a
        program for them."""
        b = self.bench
        state = b.core.state
        profile, kg = patient
        admit = AdmitPatient(PatientSpec(profile, Decimal(kg)), confirm_new_patient=True)
        out = self._send(admit, "ok")
        if state.running or state.expected_running:
            assert not out.verdict.accepted
        if out.verdict.accepted:
            assert b.core.state.drugs == {} and b.core.state.program is None
            assert self._load(kind).verdict.accepted

    # time

    @rule(seconds=st.sampled_from([1.0, 10.0, 60.0, 300.0, 600.0, 900.0]))
    def time_passes(self, seconds: float) -> None:
        self.bench.advance(seconds, poll_every_s=POLL_S)

    @rule(seconds=st.sampled_from([1800.0, 3600.0, 4 * 3600.0]))
    def hours_pass(self, seconds: float) -> None:
        self.bench.advance(seconds, poll_every_s=POLL_S)

    @rule(synced=st.booleans())
    def ntp_changes_its_mind(self, synced: bool) -> None:
        """The wall clock becomes synchronised (stepping to the right time) or loses it;
        the safety process journals the change (evidence for the next reboot)."""
        evidence = self.bench.evidence
        evidence.wall_synced = synced
        if synced:
            evidence.wall_error = 0.0
        self.bench.advance(60.0, poll_every_s=POLL_S)

    # the pump, the wire, the controller, the safety process: one rule each

    @rule(
        fault=st.sampled_from(
            [
                "occlusion",
                "occlusion cleared",
                "stall",
                "stall cleared",
                "empty",
                "near empty",
                "power cycle",
                "new syringe",
            ]
        )
    )
    def pump_fault(self, fault: str) -> None:
        self.bench.advance(1.0)  # at an instant of its own, not a command's
        pump = self.bench.pump
        if fault.startswith("occlusion"):
            pump.set_occlusion(not fault.endswith("cleared"))
        elif fault.startswith("stall"):
            pump.set_stall(not fault.endswith("cleared"))
        elif fault == "empty":
            pump.empty_syringe(0.0)
        elif fault == "near empty":
            pump.empty_syringe(3.0)
        elif fault == "power cycle":
            pump.power_cycle()
        elif not pump.snapshot().running:
            pump.reload()

    @precondition(lambda self: self.bench.pump.snapshot().running)
    @rule(factor=st.sampled_from([0.5, 0.9, 1.1, 2.0, 5.0]), then_resume=st.booleans())
    def pump_runs_at_a_rate_nobody_set(self, factor: float, then_resume: bool) -> None:
        """A pump fault behind the kernel's back, seen at the very next read; then maybe
        the operator acknowledges and restarts at the last rate the pump showed."""
        b = self.bench
        program = self.program
        rate = b.driver.quantize_rate(b.pump.snapshot().set_rate_ml_h * factor)
        if program is not None and b.syringe.min_rate_ml_h <= rate <= b.syringe.max_rate_ml_h:
            # at an instant of its own, not a command's (the pump's truth and the journal
            # are matched by time); the read right after it is at the same instant
            b.clinical.advance(1.0)
            b.wire.clear()
            before = b.core.state
            b.pump.set_rate(rate)
            b.core.poll()
            assert b.core.state.comms_ok
            tolerance = 1 + float(b.core.config.readback_rel_tolerance)
            over = (
                not before.expected_running
                or rate > float(before.expected_rate) * tolerance
                or program.dose(Decimal(repr(rate))) > Fraction(program.therapy.hard_max.value)
            )
            if over:
                assert not b.pump.snapshot().running, "an over-rate pump must be stopped"
                if then_resume:
                    self.resume("1", True)

    @rule(
        fault=st.sampled_from(["drop", "lose_ack", "corrupt"]),
        count=st.integers(min_value=1, max_value=2),
    )
    def wire_fault(self, fault: str, count: int) -> None:
        getattr(self.bench.wire, f"{fault}_next")(count)

    @rule(gap=st.sampled_from([2.5, 30.0]), re_attach=st.sampled_from([True, True, False]))
    def controller_gap(self, gap: float, re_attach: bool) -> None:
        """The controller stops answering (hang, death); it may come back at once."""
        b = self.bench
        if b.controller_alive:
            commands = len(b.commands())
            truth = len(b.pump.plunger)
            b.lose_controller(gap)
            assert b.core.state.hold
            # hold: nothing but the kernel's own safety reactions touches the pump
            reactions = b.commands()[commands:]
            assert all(c.cause in PROTECTIVE | {"retry"} for c in reactions), reactions
            if not reactions:
                assert len(b.pump.plunger) == truth or not b.pump.snapshot().running
            out = self._send(ChangeDose(Decimal("0.001")), "ok")
            assert out.verdict.reason.value == "hold_controller_lost"
        if re_attach or not b.controller_alive:
            b.attach()
            assert not b.core.state.hold

    @rule(
        clean_wire=st.booleans(),
        library=st.sampled_from(["same", "same", "same", "shipped", "tighter", "looser"]),
    )
    def safety_process_restarts(self, clean_wire: bool, library: str) -> None:
        """kill -9 and a new process on the same journal and pump; maybe with the drug
        library updated in between: the program is then held (supervised at its rate,
        changes refused) until it is loaded again (``load_a_program``)."""
        b = self.bench
        assert b.replayed() == b.core.state
        if clean_wire:
            b.wire.clear()
        b.core.close()
        truth = list(b.pump.truth.events)
        plunger = list(b.pump.plunger)
        sent = len(b.guard.sent)
        b.restart(library=None if library == "same" else LIBRARIES[library])
        assert b.pump.truth.events == truth, "a restart must not change the pump"
        assert b.pump.plunger == plunger
        assert len(b.guard.sent) == sent, "a restart sends nothing to the pump"
        assert b.replayed() == b.core.state
        program = self.program
        if program is not None and program.limits.library_hash != b.library.content_hash:
            assert b.core.state.program_stale is not None, "a program of another library"
            event("library updated under a loaded program")
        # the process's loop runs at once: its first poll acts on what start() only read
        # (e.g. a pump still running under an emergency stop whose stop was lost)
        b.service()

    @rule(
        gap=st.sampled_from([30.0, 600.0, 2400.0, 4 * 3600.0]),
        wall=st.sampled_from(["synced", "unsynced", "unsynced, days behind", "days ahead"]),
        new_boot=st.sampled_from([True, True, False]),
    )
    def board_reboots(self, gap: float, wall: str, new_boot: bool) -> None:
        """The board goes down for ``gap`` with the pump running on, and boots again: the
        monotonic clock starts near zero (a new boot, or a time namespace in the same
        boot), the wall clock is right only when synchronised (a Raspberry Pi has no RTC:
        otherwise it may be days off either way)."""
        b = self.bench
        gap = self._unsupervised(gap)
        error = {"unsynced, days behind": -3 * DAY, "days ahead": 3 * DAY}.get(wall, 0.0)
        b.core.close()
        sent = len(b.guard.sent)
        b.reboot(gap, wall_synced=wall == "synced", wall_error=error, new_boot=new_boot)
        assert len(b.guard.sent) == sent, "a restart sends nothing to the pump"
        assert b.replayed() == b.core.state
        b.service()

    def _unsupervised(self, gap: float) -> float:
        """How long the board may stay down with the pump running on: nobody can stop
        it meanwhile, so never so long that it runs past a cap in force (by what the
        kernel counted, or by what the pump really gave, whichever is more: the two
        differ after a gap the kernel could not see)."""
        b = self.bench
        state, pump, program = b.core.state, b.pump.snapshot(), self.program
        if not pump.running or program is None:
            return gap
        per_s = pump.set_rate_ml_h * float(program.amount_per_ml) / 3600.0
        t = b.patient_now()
        peak = self.delivered.summary.cap_peak if self.delivered is not None else None
        for cap, _ in caps_in_force(state, program.drug, t):
            given = state.history.amount(t - float(cap.window_s), t)
            if peak is not None:  # the highest window the pump really gave, in the cap's unit
                given = max(given, peak * float(cap.unit.base_factor))
            headroom = float(cap.base_amount) - given - per_s * b.core.config.cap_guard_s
            gap = min(gap, max(0.0, headroom / per_s))
        return gap

    # ------------------------------------------------------------------ invariants
    @invariant()
    def the_pump_kept_every_limit(self) -> None:
        """The oracle on what reached the patient and on the plunger's rate."""
        b = self.bench
        record = b.record()
        delivered = self.delivered = b.judge(record=record)
        assert delivered.ok, _violations("delivered flow", delivered)
        plunger = delivered
        if b.pump.plunger != b.pump.truth.events:  # an occlusion held back some flow
            plunger = b.judge(plunger=True, record=record)
            assert plunger.ok, _violations("plunger's rate", plunger)
        program = self.program
        summary = delivered.summary
        if program is not None and program.cap is not None and summary.cap_peak is not None:
            self.cap_fill = max(self.cap_fill, summary.cap_peak / float(program.cap.amount))
        if program is not None:
            hard = Fraction(program.therapy.hard_max.value)
            for change in plunger.changes:
                if change.cause == "command" and change.unit == program.unit and change.to_dose:
                    self.hard_fill = max(self.hard_fill, float(change.to_dose / hard))
        for change in plunger.changes:
            event(f"{change.kind} by {change.cause}")

    @invariant()
    def the_timeline_never_runs_backwards(self) -> None:
        """Every journaled instant of the patient's timeline, restarts and reboots
        included, is at or after the one before it."""
        events = self.bench.events()
        for e in events[self.timeline_checked :]:
            assert e.now.clinical >= self.timeline, (e, self.timeline)
            self.timeline = e.now.clinical
        self.timeline_checked = len(events)

    @invariant()
    def an_emergency_stop_stays_a_stop(self) -> None:
        """Until acknowledged, whenever the kernel can see the pump and has nothing in
        doubt, the pump is stopped."""
        state = self.bench.core.state
        gpio = self.bench.gpio
        assert gpio is not None
        if state.estopped:  # the relay never waits for the pump's link
            assert not gpio.pump_enabled, "emergency stop without the interlock"
        if state.estopped and state.comms_ok and state.pending is None:
            assert self.bench.pump.plunger[-1].rate_ml_h == 0.0

    @invariant()
    def every_command_was_journaled_first(self) -> None:
        b = self.bench
        assert b.guard.violations == []
        journaled = [c.action for c in b.commands()]
        sent = [a for _, a in b.guard.sent]
        # every command that reached the pump or relay is in the journal, in order
        it = iter(journaled)
        assert all(any(a == j for j in it) for a in sent), (sent, journaled)


CHANNELS = st.sampled_from(["A", "A", "B"])
STRENGTHS = st.sampled_from(["4 mg/250 mL", "4 mg/250 mL", "8 mg/250 mL"])


class ChannelsMachine(RuleBasedStateMachine):
    """Norepinephrine on two channels of one bench, judged on the patient's total (see
    the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="kernel-sm2-", dir=_TMP_ROOT))
        self.bench: ChannelBench | None = None
        self.report: ChannelsReport | None = None
        self.handovers = 0

    @property
    def b(self) -> ChannelBench:
        assert self.bench is not None
        return self.bench

    def teardown(self) -> None:
        if self.bench is not None:
            self.bench.journal.close()
            if self.bench.gpio is not None:
                self.bench.gpio.close()
        if self.handovers:
            event(f"{self.handovers} handover(s) done")

    @initialize(
        loaded_a=st.sampled_from([6.0, 12.0, 50.0]),
        strength=STRENGTHS,
        dose=st.sampled_from(["8", "12"]),
        relief=st.sampled_from(["none", "loaded", "quick", "overlap", "overlap"]),
    )
    def setup(self, loaded_a: float, strength: str, dose: str, relief: str) -> None:
        """A running at ``dose`` mcg/min from a syringe holding ``loaded_a`` mL (a few mL
        empty within the run, so the relay has something to do); B as ``relief`` says:
        nothing, the same solution loaded, or primed and armed with a strategy."""
        self.bench = ChannelBench(self.root, LIBRARY, ("A", "B"), loaded_ml={"A": loaded_a})
        b = self.b
        b.boot()
        spec = self._spec(strength)
        assert self._send(LoadProgram(spec, channel="A")).verdict.accepted
        assert self._send(StartInfusion(Decimal(dose), channel="A")).verdict.accepted
        if relief != "none":
            assert self._send(LoadProgram(spec, channel="B")).verdict.accepted
        if relief in ("quick", "overlap"):
            b.prime_done("B")
            assert self._send(ArmStandby("B", "A", relief)).verdict.accepted  # type: ignore[arg-type]

    def _spec(self, strength: str) -> ProgramSpec:
        return norepi_standard(LIBRARY, concentration=strength)

    def _send(self, body: RequestBody) -> Outcome:
        """Send a request; a refused one issues no command."""
        b = self.b
        first = b.journal.last_id()
        out = b.send(body)
        events = [decode_event(e.payload) for e in b.journal.entries(since_id=first)]
        if not out.verdict.accepted:
            assert not any(isinstance(e, CommandIssued) and e.cause == "command" for e in events)
        event(f"{type(body).__name__}: {out.verdict.reason.value}")
        return out

    # operator requests, each on a channel: the kernel judges them on the total
    @rule(channel=CHANNELS, scale=st.sampled_from(["0.25", "0.5", "1", "1", "1.2", "10"]))
    def start(self, channel: str, scale: str) -> None:
        program = self.b.ch(channel).drug_program
        if program is not None:
            dose = Decimal(program.therapy.max_start.value) * Decimal(scale)
            self._send(StartInfusion(dose, confirm_soft_limits=True, channel=channel))

    @rule(channel=CHANNELS, factor=FACTORS)
    def change_by_factor(self, channel: str, factor: str) -> None:
        c = self.b.ch(channel)
        program = c.drug_program
        current = c.current_dose()
        if program is None:
            return
        if c.running and current > 0:
            dose = _decimal(current * Fraction(Decimal(factor)))
            self._send(ChangeDose(dose, confirm_soft_limits=True, channel=channel))
        else:
            dose = _decimal(Fraction(program.therapy.max_start.value) * Fraction(Decimal(factor)))
            self._send(StartInfusion(dose, confirm_soft_limits=True, channel=channel))

    @rule(channel=CHANNELS)
    def stop(self, channel: str) -> None:
        self._send(StopInfusion(channel=channel))

    @rule(channel=CHANNELS, factor=st.sampled_from(["0.76", "0.8", "0.9"]))
    def wean(self, channel: str, factor: str) -> None:
        """A wean step on one channel, or its stop once the channel runs at or below the
        stop threshold (allowed only when the total stays within the wean rule)."""
        c = self.b.ch(channel)
        program = c.drug_program
        if program is None or not c.running:
            return
        threshold = program.therapy.wean.stop_threshold
        current = c.current_dose()
        if threshold is not None and current <= Fraction(threshold.value):
            self._send(StopInfusion(channel=channel))
        else:
            dose = _decimal(current * Fraction(Decimal(factor)))
            self._send(ChangeDose(dose, confirm_soft_limits=True, channel=channel))

    # the relief syringe
    @rule(strength=STRENGTHS)
    def load_b(self, strength: str) -> None:
        self._send(LoadProgram(self._spec(strength), channel="B"))

    @rule(volume=st.sampled_from(["1", "2"]))
    def prime_b(self, volume: str) -> None:
        if self._send(PrimeChannel("B", Decimal(volume), True)).verdict.accepted:
            self.b.advance(60.0, poll_every_s=5.0)

    @rule(strategy=st.sampled_from(["quick", "overlap"]))
    def arm_b(self, strategy: RelayStrategy) -> None:
        self._send(ArmStandby("B", "A", strategy))

    @rule()
    def disarm_b(self) -> None:
        self._send(DisarmStandby("B"))

    @rule(channel=CHANNELS)
    def new_syringe(self, channel: str) -> None:
        """A full syringe in a stopped channel (it must be primed again to stand by)."""
        pump = self.b.pumps[channel]
        if (
            not pump.snapshot().running
            and self._send(ContainerChanged(Decimal(50), channel)).verdict.accepted
        ):
            pump.reload()

    # the world
    @rule(seconds=st.sampled_from([10.0, 60.0, 300.0, 900.0, 1800.0]))
    def time_passes(self, seconds: float) -> None:
        self.b.advance(seconds, poll_every_s=30.0)

    @rule(channel=CHANNELS)
    def syringe_runs_out(self, channel: str) -> None:
        """The pump finds its syringe empty sooner than the safety process reckoned."""
        self.b.advance(1.0)  # at an instant of its own, not a command's
        self.b.pumps[channel].empty_syringe(0.0)
        self.b.advance(60.0, poll_every_s=5.0)

    @rule(then_acknowledge=st.booleans())
    def emergency_stop(self, then_acknowledge: bool) -> None:
        """Every channel stops at once (S12); the operator may acknowledge at once."""
        assert self._send(EmergencyStop("api")).verdict.accepted
        self.an_emergency_stop_stays_a_stop()
        if then_acknowledge:
            self._send(AcknowledgeAlarms(None))

    @rule()
    def acknowledge(self) -> None:
        self._send(AcknowledgeAlarms(None))

    @rule(fault=st.sampled_from(["drop", "lose_ack", "corrupt"]))
    def wire_fault(self, fault: str) -> None:
        getattr(self.b.wire, f"{fault}_next")(1)  # channel A's wire

    @rule(clean_wire=st.booleans())
    def safety_process_restarts(self, clean_wire: bool) -> None:
        """kill -9 and a new process on the same journal and pumps: it configures the
        bench and resumes the channels one by one (a command uncertain at the kill is
        judged on the first reading), sends nothing while it does, and replays to the
        state it lives in; no channel is left with an unknown link."""
        b = self.b
        assert b.replayed() == b.core.state
        if clean_wire:
            b.wire.clear()
        b.core.close()
        truth = {name: list(pump.truth.events) for name, pump in b.pumps.items()}
        b.restart()
        for name, pump in b.pumps.items():
            assert pump.truth.events == truth[name], f"a restart must not change pump {name}"
        assert b.replayed() == b.core.state
        assert not any(c.connecting for c in b.core.state.channels.values())
        event("restart")
        b.service()  # the process's loop runs at once
        assert b.replayed() == b.core.state

    # ------------------------------------------------------------------ invariants
    @invariant()
    def the_total_kept_every_limit(self) -> None:
        """The oracle on both pumps' ground truth, summed."""
        b = self.b
        events = b.events()
        truths = {name: list(pump.truth.events) for name, pump in b.pumps.items()}
        report = self.report = check_channels(truths, b.library, events, until=b.clinical.now())
        assert report.ok, _violations("total of both channels", report.total)
        self.handovers = sum(
            1 for e in events if isinstance(e, HandoverEnded) and e.outcome == "done"
        )
        for change in report.total.changes:
            event(f"total: {change.kind} by {change.cause}")

    @invariant()
    def an_emergency_stop_stays_a_stop(self) -> None:
        """Until acknowledged, every channel the kernel can see with nothing in doubt is
        stopped (a stop lost on the wire is found by the next read-back)."""
        state = self.b.core.state
        if state.estopped:
            for name, pump in self.b.pumps.items():
                c = state.channel(name)
                if c.comms_ok and c.pending is None:
                    assert not pump.snapshot().running, f"channel {name} runs under an estop"

    @invariant()
    def every_command_was_journaled_first(self) -> None:
        assert self.b.guard.violations == []


#: a failing example can take minutes to shrink: more than the suite's default timeout
pytestmark = pytest.mark.timeout(1800)

#: the examples of one run, shared by the two machines (four fifths for the one-channel
#: machine, a fifth for the two-channel one): the file's run time stays as it was
EXAMPLES = int(os.environ.get("KERNEL_SM_EXAMPLES", "100"))

InfusionMachine.TestCase.settings = settings(
    max_examples=max(1, EXAMPLES - EXAMPLES // 5),
    stateful_step_count=int(os.environ.get("KERNEL_SM_STEPS", "35")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestInfusionMachine = InfusionMachine.TestCase

ChannelsMachine.TestCase.settings = settings(
    max_examples=max(1, EXAMPLES // 5),
    stateful_step_count=int(os.environ.get("KERNEL_SM_STEPS", "35")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestChannelsMachine = ChannelsMachine.TestCase
