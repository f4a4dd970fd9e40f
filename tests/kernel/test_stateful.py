"""Random interleavings of everything that can happen to an infusion, checked on what the
pump really did.

A hypothesis state machine drives a ``SafetyCore`` over the mock pump on virtual clocks:
operator requests (start, titrate up and down by random factors including 10x slips,
stop, emergency stop from the API or the button, acknowledge; sometimes with a stale,
expired or forged link), clinical time passing (lived through the host's loop: polls and
the cap deadline), pump faults (occlusion, stall, empty, power cycle, a pump running at
a rate nobody set), wire faults (lost request, lost or corrupted reply), heartbeat gaps
and re-attaches, and restarts of the safety process on the same journal and pump.

The invariants are checked on the pump's own record, never on the kernel's belief:

- the plunger and the delivered flow never exceed the hard max (for any time > 0);
- the drug delivered in any 24 h window (seeded history + ground truth, boluses
  included) never exceeds the cap;
- every rise the operator's commands caused is within the step and window limits, and
  every start within max start (or the commanded rate running in the titration window);
  every commanded fall of a gradual-wean drug is within the wean floor, and every
  commanded stop is at or below the stop threshold. Stops by an emergency stop, by the
  kernel's own safety reactions, or by the pump itself are exempt, and safety and
  emergency actions may only ever lower the rate;
- every command that reached the pump was journaled first (the bench's guard), every
  accepted request is journaled with the commands it issued, refused ones issue none;
- a restart replays the journal to the state it left and changes nothing at the pump.

Which command caused which change of the pump's rate comes from the journal: the bench's
driver labels each record the pump makes during a command with that command's
``CommandIssued.cause``; records made outside any command are the pump's own doing.
Titration and wean are judged on the plunger's rate (``TracingPump``), because under an
occlusion the delivered flow drops to 0 while the pump still runs its rate; the hard max
on both, the cap on what was delivered.

Some past states need hours of history the syringe cannot hold (a run just under the
hard max, 66-68 mg of the 68 mg cap): the run may start from a seeded journal
(``Bench.seed``), and the seeded delivery counts in the cap check.

Runs in about 15 s by default (CI). A deeper search, with coverage statistics:
``KERNEL_SM_EXAMPLES=1500 KERNEL_SM_STEPS=60 pytest tests/kernel/test_stateful.py
--hypothesis-show-statistics``. ``python -m tests.kernel.mutation_check --stateful``
runs it against each kernel check removed in turn (checked with 300 examples: it finds
the hard max, step, window, start, wean, stop-threshold, cap-guard, read-back, link,
hold, write-ahead and emergency-stop mutants; checks only visible in verdicts - soft-limit
confirmation, the cap look-ahead on requests - are pinned by the example tests).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
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
from firmware_bridge.pump_model import TruthBolus, TruthSegment
from safety.kernel.codec import decode_event
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    CommandIssued,
    EmergencyStop,
    ProgramSpec,
    RequestBody,
    RequestDecided,
    StartInfusion,
    StopInfusion,
)
from safety.kernel.state import ActiveProgram
from safety.library import DrugLibrary
from safety.status import Outcome
from tests.conftest import shipped_library
from tests.kernel.support import (
    Bench,
    norepi_standard,
    norepi_weight_based,
    vasopressin_fixed,
)
from verification.ground_truth import in_force

LIBRARY: DrugLibrary = shipped_library()
#: clinical seconds between the host's polls in ``Bench.advance``
POLL_S = 60.0
#: the kernel learns that the pump stopped by itself at its next poll: a commanded rate
#: counts as "running in the window" until then
KNOWLEDGE_LAG_S = POLL_S + 1.0
#: causes of pump records the operator's commands made
COMMANDED = frozenset({"command", "seed"})
#: causes of pump records that are the kernel's own idea; they may only lower the rate
PROTECTIVE = frozenset({"safety", "estop"})

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


@dataclass(frozen=True)
class Seg:
    start: float
    rate_ml_h: float
    cause: str


def _decimal(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.000001"))


def _amount_ml(segs: list[Seg], lo: float, hi: float) -> float:
    """Volume delivered in [lo, hi] by piecewise-constant ``segs``."""
    total = 0.0
    for i, seg in enumerate(segs):
        end = segs[i + 1].start if i + 1 < len(segs) else hi
        a, b = max(seg.start, lo), min(end, hi)
        if b > a:
            total += seg.rate_ml_h * (b - a) / 3600.0
    return total


class InfusionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="kernel-sm-", dir=_TMP_ROOT))
        self.bench = Bench(self.root, LIBRARY, gpio=True, publish_pins=False)
        self.program: ActiveProgram | None = None
        self.spec: ProgramSpec | None = None
        self.checked_requests = 0
        self.cap_fill = 0.0

    def teardown(self) -> None:
        self.bench.close()
        if self.cap_fill > 0:  # steer the search toward the cap
            target(self.cap_fill, label="highest fraction of the cap given in 24 h")
        if self.cap_fill > 0.99:
            event("within 1 % of the cumulative cap")
        if self.program is not None:  # and toward the hard max
            hard = Fraction(self.program.therapy.hard_max.value)
            doses = [self._dose(s.rate_ml_h) for s in self._plunger() if s.cause == "command"]
            if doses:
                target(float(max(doses) / hard), label="highest commanded dose / hard max")

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
        drug, seed = start
        b = self.bench
        spec = {
            "standard": norepi_standard(LIBRARY),
            "weight_based": norepi_weight_based(LIBRARY),
            "vasopressin": vasopressin_fixed(LIBRARY),
        }[drug]
        self.spec = spec
        # 0.9 mcg/kg/min at 70 kg is 63 mcg/min: the 68 mg / 24 h cap is within reach
        per_s = float(b.pump_rate_for(spec, "0.9")) * 16 / 3600
        if seed == "high":  # running just under the hard max
            b.seed(spec, [(0.0, 46)], boot_at=0.0)
        elif seed in ("near_cap", "at_cap"):  # stopped at 66.5 or 67.8 mg
            end = (66_500 if seed == "near_cap" else 67_800) / per_s
            b.seed(spec, [(0.0, "0.9"), (end, 0)], boot_at=end + gap)
        elif seed == "running_into_cap":  # still running with 0.4 mg to go
            b.seed(spec, [(0.0, "0.9")], boot_at=67_600 / per_s)
        b.boot()
        if b.core.state.program is None:
            assert b.load(spec).verdict.accepted
        program = b.core.state.program
        assert isinstance(program, ActiveProgram)  # a drug program, not a test fluid
        self.program = program

    # ------------------------------------------------------------------ requests
    def _send(self, body: RequestBody, link: str) -> Outcome:
        """Send a request, and check it against the journal: an accepted one is there
        with exactly the commands it issued; a refused one issued none."""
        b = self.bench
        first = b.journal.last_id()
        if link == "stale":
            out = b.send(body, seq=b.core.state.last_seq)
        elif link == "expired":
            out = b.send(body, expires_at=b.liveness.now() - 0.5)
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

    # operator requests: most of what happens, so most of the rules

    @rule(
        scale=st.sampled_from(["0.1", "0.5", "1", "1", "1.2", "10", "100"]),
        confirm=st.booleans(),
        link=LINKS,
    )
    def start(self, scale: str, confirm: bool, link: str) -> None:
        assert self.program is not None
        max_start = Decimal(self.program.therapy.max_start.value)
        self._send(StartInfusion(max_start * Decimal(scale), confirm_soft_limits=confirm), link)

    @rule(scale=st.sampled_from(["1", "1", "1.01", "2"]), confirm=st.booleans())
    def resume(self, scale: str, confirm: bool) -> None:
        """After an alarm: acknowledge, then start again at the last rate that ran."""
        assert self.program is not None
        self._send(AcknowledgeAlarms(None), "ok")
        amounts = [s.amount_per_h for s in self.bench.core.state.history.segments]
        amounts = [a for a in amounts if a > 0]
        if amounts:
            last = self.program.dose_of_amount_rate(amounts[-1])
            dose = _decimal(last * Fraction(Decimal(scale)))
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
        assert self.program is not None
        wean = self.program.therapy.wean
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
        assert self.program is not None
        state = self.bench.core.state
        current = state.current_dose()
        if state.running and current > 0:
            dose = _decimal(current * Fraction(factor))
            self._send(ChangeDose(dose, confirm_soft_limits=confirm), link)
        else:
            max_start = Fraction(self.program.therapy.max_start.value)
            dose = _decimal(max_start * Fraction(factor))
            self._send(StartInfusion(dose, confirm_soft_limits=confirm), link)

    @rule(
        which=st.sampled_from(["hard_max", "hard_max", "soft_max", "stop", "soft_min"]),
        by=st.sampled_from(["0.99", "1", "1.01"]),
    )
    def change_to_a_limit(self, which: str, by: str) -> None:
        assert self.program is not None
        therapy = self.program.therapy
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
            press_stop_button(b.gpio_dir)
            for _ in range(4):
                b.service(0.02)
            release_stop_button(b.gpio_dir)
            for _ in range(4):  # a release is seen once it has lasted the debounce too
                b.service(0.02)
        else:
            link = how.removeprefix("api").strip() or "ok"
            assert self._send(EmergencyStop("api"), link).verdict.accepted
        assert b.core.state.estopped

    # time

    @rule(seconds=st.sampled_from([1.0, 10.0, 60.0, 300.0, 600.0, 900.0]))
    def time_passes(self, seconds: float) -> None:
        self.bench.advance(seconds, poll_every_s=POLL_S)

    @rule(seconds=st.sampled_from([1800.0, 3600.0, 4 * 3600.0]))
    def hours_pass(self, seconds: float) -> None:
        self.bench.advance(seconds, poll_every_s=POLL_S)

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
        assert self.program is not None
        rate = b.driver.quantize_rate(b.pump.snapshot().set_rate_ml_h * factor)
        if b.syringe.min_rate_ml_h <= rate <= b.syringe.max_rate_ml_h:
            b.wire.clear()
            before = b.core.state
            b.pump.set_rate(rate)
            b.core.poll()
            assert b.core.state.comms_ok
            tolerance = 1 + float(b.core.config.readback_rel_tolerance)
            over = (
                not before.expected_running
                or rate > float(before.expected_rate) * tolerance
                or self._dose(rate) > Fraction(self.program.therapy.hard_max.value)
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

    @rule(clean_wire=st.booleans())
    def safety_process_restarts(self, clean_wire: bool) -> None:
        b = self.bench
        assert b.replayed() == b.core.state
        if clean_wire:
            b.wire.clear()
        b.core.close()
        truth = list(b.pump.truth.events)
        plunger = list(b.pump.plunger)
        sent = len(b.guard.sent)
        b.restart()
        assert b.pump.truth.events == truth, "a restart must not change the pump"
        assert b.pump.plunger == plunger
        assert len(b.guard.sent) == sent, "a restart sends nothing to the pump"
        assert b.replayed() == b.core.state
        # the process's loop runs at once: its first poll acts on what start() only read
        # (e.g. a pump still running under an emergency stop whose stop was lost)
        b.service()

    # ------------------------------------------------------------------ invariants
    def _plunger(self) -> list[Seg]:
        return self._timeline(self.bench.pump.plunger, self.bench.driver.plunger_causes)

    def _delivered(self) -> list[Seg]:
        truth = [e for e in self.bench.pump.truth.events]
        causes = self.bench.driver.truth_causes
        records = [(i, e) for i, e in enumerate(truth) if isinstance(e, TruthSegment)]
        return self._timeline(
            [e for _, e in records],
            {n: causes[i] for n, (i, _) in enumerate(records) if i in causes},
        )

    def _timeline(self, records: list[TruthSegment], causes: dict[int, str]) -> list[Seg]:
        """Seeded history, then what the live pump recorded after it."""
        b = self.bench
        segs: list[Seg] = []
        for s in b.seeded:
            if segs and segs[-1].start == s.start:
                segs.pop()
            segs.append(Seg(s.start, s.rate_ml_h, "seed"))
            segs.append(Seg(s.end, 0.0, "seed"))
        handover = b.seed_until if b.seed_until is not None else -math.inf
        for i, rec in enumerate(records):
            if rec.start < handover:
                continue
            segs.append(Seg(rec.start, rec.rate_ml_h, causes.get(i, "pump")))
        return segs

    def _dose(self, rate_ml_h: float) -> Fraction:
        assert self.program is not None
        return self.program.dose(Decimal(repr(rate_ml_h)))

    @invariant()
    def never_above_the_hard_max(self) -> None:
        if self.program is None:
            return
        hard = Fraction(self.program.therapy.hard_max.value)
        now = self.bench.clinical.now()
        for segs in (self._plunger(), self._delivered()):
            for i, seg in enumerate(segs):
                end = segs[i + 1].start if i + 1 < len(segs) else now
                # a rate a command set is judged even if it ran for 0 s (stopped by the
                # read-back at the same instant); the pump's own faults once they last
                if end > seg.start or seg.cause != "pump":
                    assert self._dose(seg.rate_ml_h) <= hard, (seg, end)

    @invariant()
    def cumulative_cap_never_exceeded(self) -> None:
        program = self.program
        if program is None or program.cap is None:
            return
        window = float(program.cap.window_s)
        limit = float(program.cap.base_amount)
        per_ml = float(program.amount_per_ml)
        segs = self._delivered()
        boluses = [e for e in self.bench.pump.truth.events if isinstance(e, TruthBolus)]
        now = self.bench.clinical.now()

        def amount(lo: float, hi: float) -> float:
            bolus = sum(b.volume_ml for b in boluses if lo <= b.time <= hi)
            return (_amount_ml(segs, lo, hi) + bolus) * per_ml

        ends = {now} | {s.start for s in segs} | {s.start + window for s in segs}
        highest = 0.0
        for end in ends:
            if end <= now:
                given = amount(end - window, end)
                assert given <= limit * (1 + 1e-9), (end, given, limit)
                highest = max(highest, given)
        self.cap_fill = max(self.cap_fill, highest / limit)

    @invariant()
    def commanded_changes_within_titration_and_wean_rules(self) -> None:
        program = self.program
        if program is None:
            return
        therapy = program.therapy
        titration, wean = therapy.titration, therapy.wean
        segs = self._plunger()
        for i in range(1, len(segs)):
            before, after = segs[i - 1], segs[i]
            if after.rate_ml_h == before.rate_ml_h:
                continue
            t, cause = after.start, after.cause
            d0, d1 = self._dose(before.rate_ml_h), self._dose(after.rate_ml_h)
            if cause in PROTECTIVE:
                assert d1 < d0 and d1 == 0, f"a {cause} action raised the rate: {before}->{after}"
                event(f"pump stopped by {cause}")
                continue
            if cause != "command":
                event(f"rate changed by {cause}")
                continue  # the pump's own doing, a seeded past, or a retry to the set rate
            history = segs[:i]
            if d1 > d0 and d0 == 0:  # a start
                lo = t - float(titration.window_min.value) * 60 - KNOWLEDGE_LAG_S
                recent = [
                    self._dose(s.rate_ml_h)
                    for s in in_force(history, lo, t)
                    if s.cause in COMMANDED | {"retry"}
                ]
                bound = max([Fraction(therapy.max_start.value), *recent])
                assert d1 <= bound, f"start at {d1} above {bound} at t={t}"
                event(
                    "commanded start" + (" above max start" if d1 > therapy.max_start.value else "")
                )
            elif d1 > d0:  # a commanded rise
                step = min(
                    Fraction(titration.max_step_rise.value),
                    Fraction(titration.max_step_rise_fraction.value) * d0,
                )
                assert d1 - d0 <= step, f"step {d0} -> {d1} over {step} at t={t}"
                lo = t - float(titration.window_min.value) * 60
                running = [self._dose(s.rate_ml_h) for s in in_force(history, lo, t)]
                base = min([d for d in running if d > 0], default=d0)
                rise = min(
                    Fraction(titration.max_window_rise.value),
                    Fraction(titration.max_window_rise_fraction.value) * base,
                )
                assert d1 - base <= rise, f"window {base} -> {d1} over {rise} at t={t}"
                event("commanded rise")
            elif wean.gradual_wean_only.value:
                assert wean.max_fall_fraction is not None and wean.window_min is not None
                assert wean.stop_threshold is not None
                if d1 == 0:  # a commanded stop
                    assert d0 <= Fraction(wean.stop_threshold.value), f"stop from {d0} at t={t}"
                    event("commanded stop")
                else:  # a commanded fall
                    lo = t - float(wean.window_min.value) * 60
                    highest = max(self._dose(s.rate_ml_h) for s in in_force(history, lo, t))
                    floor = (1 - Fraction(wean.max_fall_fraction.value)) * highest
                    assert d1 >= floor, f"wean {highest} -> {d1} below {floor} at t={t}"
                    event("commanded wean step")

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


#: a failing example can take minutes to shrink: more than the suite's default timeout
pytestmark = pytest.mark.timeout(1800)

InfusionMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("KERNEL_SM_EXAMPLES", "100")),
    stateful_step_count=int(os.environ.get("KERNEL_SM_STEPS", "35")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestInfusionMachine = InfusionMachine.TestCase
