"""A safety core on a bench: virtual clocks, the mock pump, a journal, and the tools to
drive it the way the host and a controller would.

Why a separate module (not only fixtures): the hypothesis state machine builds a fresh
bench for every example, outside pytest's fixture scope, and needs the same helpers.

Two clocks, as in the architecture: the clinical clock moves doses, windows and caps; the
liveness clock moves heartbeats, request expiry and the host's poll timer. ``advance``
moves clinical time the way the host's loop would see it: polling at least every
``poll_every_s`` of clinical time (1 s liveness at a 60x demo clock), and waking exactly
at the kernel's cap deadline (``next_deadline``), never jumping past it.

Ground truth comes from the simulated pump (``pump.truth``): the flow that really left
the syringe, which is what every invariant here is checked against, never the kernel's
own belief.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from drivers.gpio.base import GpioConfig
from drivers.gpio.simulated import SimulatedGpio
from drivers.pumps.mock import MockPumpDriver
from firmware_bridge.clock import Clock, OffsetClock, VirtualClock
from firmware_bridge.faults import WireFaults
from firmware_bridge.pump_model import SimulatedPump, TruthBolus, TruthEvent, TruthSegment
from firmware_bridge.syringes import Syringe, syringe_by_name
from safety.clock_evidence import timeline_started
from safety.host.core import SafetyCore
from safety.journal import Journal, JournalEntry
from safety.kernel.codec import decode_event, encode_event
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    AcknowledgeAlarms,
    ChangeDose,
    CommandIssued,
    EmergencyStop,
    Event,
    LoadProgram,
    Now,
    PatientAdmitted,
    PatientSpec,
    ProgramLoaded,
    ProgramSpec,
    PumpAction,
    PumpReading,
    ReadbackReceived,
    Request,
    RequestBody,
    RequestDecided,
    RequestMeta,
    SetInterlock,
    SetRate,
    StartInfusion,
    StartPump,
    StopInfusion,
    StopPump,
    TimelineResumed,
)
from safety.kernel.observe import next_deadline
from safety.kernel.replay import replay_journal
from safety.kernel.state import ActiveProgram, KernelState, load_program
from safety.kernel.timeline import ClockEvidence
from safety.library import DrugLibrary
from safety.library.loader import parse_library
from safety.status import Outcome
from verification.ground_truth import (
    RecordBuilder,
    SafetyRecord,
    TruthReport,
    check_ground_truth,
)

T = TypeVar("T")

DEFAULT_SYRINGE = "bd-plastipak-50ml"
#: liveness seconds a request stays valid unless a test says otherwise
DEFAULT_TTL_S = 5.0
#: liveness seconds the host's loop spends per service round in ``advance``
SERVICE_LIVENESS_S = 1.0


def norepi_standard(library: DrugLibrary, **changes: object) -> ProgramSpec:
    """Norepinephrine, adult ICU, standard (mcg/min), 4 mg/250 mL (16 mcg/mL) in D5W."""
    base: dict[str, object] = {
        "library_hash": library.content_hash,
        "drug": "norepinephrine",
        "profile": "adult_icu",
        "therapy": "standard",
        "concentration": "4 mg/250 mL",
        "diluent": "D5W",
        "weight_kg": None,
    }
    base.update(changes)
    return ProgramSpec(**base)  # type: ignore[arg-type]


def norepi_weight_based(library: DrugLibrary, weight_kg: Decimal = Decimal(70)) -> ProgramSpec:
    """Norepinephrine, adult ICU, weight-based (mcg/kg/min), 16 mcg/mL, ``weight_kg``."""
    return norepi_standard(library, therapy="weight_based", weight_kg=weight_kg)


def vasopressin_fixed(library: DrugLibrary) -> ProgramSpec:
    """Vasopressin, adult ICU, fixed (units/min), 20 units/100 mL in NS: no gradual wean."""
    return ProgramSpec(
        library.content_hash, "vasopressin", "adult_icu", "fixed", "20 units/100 mL", "NS"
    )


def library_from_text(text: str) -> DrugLibrary:
    model, digest = parse_library(text)
    return DrugLibrary(model, digest)


def library_variant(library: DrugLibrary, edits: Mapping[str, Mapping[str, str]]) -> DrugLibrary:
    """The library with some figures changed, as an update between two runs would:
    ``{table: {figure: value}}``, a table by its TOML header (without brackets) and a
    figure by its name, whose first field (``value``, or a cap's ``amount``) is replaced."""
    text = Path(library.path).read_text(encoding="utf-8")
    for table, figures in edits.items():
        at = text.index(f"[{table}]\n")
        for name, value in figures.items():
            start = text.index(f"\n{name} = {{ ", at) + len(f"\n{name} = {{ ")
            start = text.index("= ", start) + 2
            end = text.index(",", start)
            text = text[:start] + value + text[end:]
    return library_from_text(text)


# --------------------------------------------------------------------------- guards


class JournalGuard:
    """S14 checked from the outside: when anything reaches the pump or the relay, the
    journal must already hold the ``CommandIssued`` for it, as its latest entry."""

    def __init__(self) -> None:
        self.journal: Journal | None = None
        self.violations: list[str] = []
        #: (clinical time, action) of every command that really reached the pump or relay
        self.sent: list[tuple[float, PumpAction]] = []

    def check(self, action: PumpAction, clinical_now: float) -> CommandIssued | None:
        """Raise unless ``action`` is the journal's latest entry; return that entry."""
        journal = self.journal
        if journal is None:  # before the bench wired us up (e.g. seeding): not the core
            self.sent.append((clinical_now, action))
            return None
        last = journal_tail(journal)
        problem = None
        issued: CommandIssued | None = None
        if last is None or last.kind != "command_issued":
            problem = f"{action} sent but the journal's last entry is {last and last.kind!r}"
        else:
            event = decode_event(last.payload)
            if isinstance(event, CommandIssued) and event.action == action:
                issued = event
            else:
                problem = f"{action} sent but the last CommandIssued is {event}"
        if problem is not None:
            self.violations.append(problem)
            raise AssertionError(f"S14 write-ahead broken: {problem}")
        self.sent.append((clinical_now, action))
        return issued


def journal_tail(journal: Journal) -> JournalEntry | None:
    """The journal's latest entry."""
    entries = list(journal.entries(since_id=max(0, journal.last_id() - 1)))
    return entries[-1] if entries else None


class TracingPump(SimulatedPump):
    """The simulated pump, also recording its plunger's rate over time.

    ``truth`` is what reached the patient; under an occlusion it drops to 0 while the
    plunger still runs at the set rate until the pump's pressure alarm stops it. The
    titration and wean rules are about the rate the pump runs, so they are checked on
    this plunger record; the hard max and the cap on both.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.plunger: list[TruthSegment] = []
        super().__init__(*args, **kwargs)
        self.plunger.append(TruthSegment(self.clock.now(), 0.0))

    def _record_flow(self) -> None:
        super()._record_flow()
        rate = self._plunger_rate()
        if not self.plunger or self.plunger[-1].rate_ml_h != rate:
            self.plunger.append(TruthSegment(self._t, rate))


class GuardedMockDriver(MockPumpDriver):
    """The mock driver, with every command checked against the journal first (S14), and
    every change of the pump's rate it causes labelled with the command's cause."""

    def __init__(self, guard: JournalGuard, *, pump: TracingPump, **kwargs: Any) -> None:
        super().__init__(pump=pump, **kwargs)
        self.guard = guard
        self.tracing = pump
        #: the channel this pump is on a bench of several (the actions it is sent name it)
        self.channel = DEFAULT_CHANNEL
        #: when set, the pump runs this fraction of any rate set (a sagging pump, S9)
        self.sag: float | None = None
        #: index in ``pump.truth.events`` / ``pump.plunger`` -> cause of the command that
        #: made it; records made outside any command are the pump's own doing
        self.truth_causes: dict[int, str] = {}
        self.plunger_causes: dict[int, str] = {}

    def label(self, cause: str, send: Callable[[], T]) -> T:
        """Run ``send`` and label the pump records it makes with ``cause``."""
        pump = self.tracing
        pump.snapshot()  # what happens up to now (empty, occlusion) is the pump's own
        truth0, plunger0 = len(pump.truth.events), len(pump.plunger)
        try:
            return send()
        finally:
            for i in range(truth0, len(pump.truth.events)):
                self.truth_causes[i] = cause
            for i in range(plunger0, len(pump.plunger)):
                self.plunger_causes[i] = cause

    def _command(self, action: PumpAction, send: Callable[[], T]) -> T:
        issued = self.guard.check(action, self.tracing.clock.now())
        return self.label(issued.cause if issued is not None else "unjournaled", send)

    def send_rate(self, rate_ml_h: float) -> None:
        def send() -> None:
            super(GuardedMockDriver, self).send_rate(rate_ml_h)
            if self.sag is not None:
                self.tracing.set_rate(self.quantize_rate(rate_ml_h * self.sag))

        self._command(SetRate(Decimal(repr(rate_ml_h)), self.channel), send)

    def start(self) -> None:
        self._command(StartPump(self.channel), super().start)

    def stop(self) -> None:
        self._command(StopPump(self.channel), super().stop)


class GuardedGpio(SimulatedGpio):
    """The simulated GPIO backend, with the interlock relay checked against the journal.

    ``publish=False`` skips writing the pin file (``read_sim_pins``), which only other
    processes read: the state machine runs thousands of host-loop rounds.
    """

    guard: JournalGuard | None = None
    clinical: VirtualClock | None = None
    publish: bool = True

    def _publish(self) -> None:
        if self.publish:
            super()._publish()

    def set_pump_enabled(self, enabled: bool, channel: str | None = None) -> None:
        if self.guard is not None and self.clinical is not None:
            action = SetInterlock(enabled) if channel is None else SetInterlock(enabled, channel)
            self.guard.check(action, self.clinical.now())
        super().set_pump_enabled(enabled, channel)


# --------------------------------------------------------------------------- time evidence


class BenchEvidence:
    """What the bench's safety process reads about time (``SafetyCore(evidence=...)``),
    under the test's control: the boot it runs in, the wall clock and whether NTP keeps
    it synchronised. Real time is the bench's world liveness clock (the bench's clinical
    clock may run faster, as a scaled clock does); the wall clock is that plus
    ``wall_error`` (a stale clock at boot, a jump)."""

    def __init__(self, world: VirtualClock) -> None:
        self.world = world
        self.boot_id = "boot-1"
        self.booted_at = world.now()  # real (world liveness) time the current boot began
        self.wall_synced: bool | None = False
        self.wall_error = 0.0
        self.wall_base = 1_800_000_000.0

    def __call__(self, liveness: Clock, source: Clock) -> ClockEvidence:
        world = self.world.now()
        return ClockEvidence(
            boot_id=self.boot_id,
            liveness=liveness.now(),
            boottime=world - self.booted_at,
            wall=self.wall_base + world + self.wall_error,
            wall_synced=self.wall_synced,
            source="virtual",
            source_now=source.now(),
        )


# --------------------------------------------------------------------------- bench


@dataclass(frozen=True)
class SeededTruth:
    """A stretch of delivery claimed by a seeded journal (before the live pump existed)."""

    start: float
    end: float
    rate_ml_h: float


class Bench:
    """A ``SafetyCore`` with everything around it, on virtual clocks."""

    def __init__(
        self,
        root: Path,
        library: DrugLibrary,
        *,
        syringe: str = DEFAULT_SYRINGE,
        gpio: bool = False,
        gpio_config: GpioConfig | None = None,
        publish_pins: bool = True,
        config: KernelConfig | None = None,
        clinical_start: float = 0.0,
    ) -> None:
        self.root = root
        self.library = library
        self.config = config or KernelConfig()
        #: the world's clocks: the pump's time (clinical) and the monotonic clock; the
        #: safety process reads them through ``source`` and ``process_liveness``, which a
        #: reboot restarts near zero while the world (and the pump) goes on
        self.clinical = VirtualClock(clinical_start)
        self.liveness = VirtualClock(1000.0)
        self.source: Clock = self.clinical
        self.process_liveness: Clock = self.liveness
        self.evidence = BenchEvidence(self.liveness)
        self.syringe: Syringe = syringe_by_name(syringe)
        self.pump = TracingPump(self.clinical, self.syringe)
        self.wire = WireFaults()
        self.guard = JournalGuard()
        self.driver = GuardedMockDriver(self.guard, pump=self.pump, wire=self.wire)
        self.journal = Journal(root / "safety.sqlite", "safety")
        self.gpio_dir = root / "gpio"
        self.gpio: GuardedGpio | None = None
        if gpio:
            self.gpio = GuardedGpio(gpio_config, state_dir=self.gpio_dir, clock=self.liveness)
            self.gpio.publish = publish_pins
            self.gpio.open()
            self.gpio.guard = self.guard
            self.gpio.clinical = self.clinical
        self.core = self._new_core()
        self.session: str | None = None
        self.seq = 0
        self.controller_alive = False
        self.seeded: list[SeededTruth] = []
        #: clinical time a seeded history hands over to the live pump, and whether it
        #: hands it over running
        self.seed_until: float | None = None
        self.seed_running = False
        self.booted = False
        #: the pump's clock minus the patient's timeline, from each process start on
        #: (keyed by the ``TimelineResumed`` that start journaled): ``pump_clock``
        self.run_shifts: dict[TimelineResumed, float] = {}
        self._decoded: list[Event] = []
        self._decoded_upto = 0
        self._decoded_from: Journal | None = None
        self._record = RecordBuilder(self.pump_clock)
        self._recorded = 0

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        return SafetyCore(
            library or self.library,
            self.driver,
            self.journal,
            clinical=self.source,
            liveness=self.process_liveness,
            syringe=self.syringe,
            gpio=self.gpio,
            config=self.config,
            evidence=self.evidence,
        )

    # ------------------------------------------------------------------ life cycle
    def _started(self, first_id: int = 0) -> None:
        """The core may have set a damaged journal aside and started a new one. Notes how
        far the pump's clock is from the timeline the core resumed (``pump_clock``)."""
        if self.journal is not self.core.journal:
            first_id = 0
        self.journal = self.core.journal
        self.guard.journal = self.journal
        resumed = list(self.journal.entries(since_id=first_id, kinds=["timeline_resumed"]))
        if resumed:
            event = decode_event(resumed[-1].payload)
            assert isinstance(event, TimelineResumed)
            self.run_shifts[event] = self.clinical.now() - event.now.clinical

    def _start_core(self) -> None:
        first = self.journal.last_id()
        self.core.start()
        self._started(first)

    def pump_clock(self, resumed: TimelineResumed) -> float | None:
        """``verification.ground_truth.PumpClock``: after a reboot the process's clock
        source restarts near zero while the pump's runs on, and the timeline may credit
        less than the real gap; the bench knows by how much."""
        return self.run_shifts.get(resumed)

    def boot(self, *, attach: bool = True) -> SafetyCore:
        self.guard.journal = self.journal
        self._start_core()
        self.booted = True
        if attach:
            self.attach()
        return self.core

    def attach(self) -> str:
        session, _ = self.core.attach()
        self.session = session
        self.seq = 0
        self.controller_alive = True
        return session

    def restart(self, *, attach: bool = True, library: DrugLibrary | None = None) -> SafetyCore:
        """A new safety process on the same journal and pump (as after kill -9); with
        ``library``, one that was updated in between (the bench's library from then on)."""
        if library is not None:
            self.library = library
        self.core = self._new_core()
        self.controller_alive = False
        self.session = None
        self._start_core()
        if attach:
            self.attach()
        return self.core

    def reboot(
        self,
        gap_s: float,
        *,
        uptime_s: float = 5.0,
        wall_synced: bool | None = False,
        wall_error: float = 0.0,
        new_boot: bool = True,
        attach: bool = True,
    ) -> SafetyCore:
        """The board goes down for ``gap_s`` (the pump runs on, as pumps do on their own
        power) and boots again: the process's monotonic clocks start near zero
        (``uptime_s`` after boot), the boot id changes unless ``new_boot`` is False (a
        time namespace: only the monotonic clock was reset)."""
        self.controller_alive = False
        self.session = None
        self.clinical.advance(gap_s)
        self.liveness.advance(gap_s)
        self.source = OffsetClock(self.clinical, uptime_s - self.clinical.now())
        self.process_liveness = OffsetClock(self.liveness, uptime_s - self.liveness.now())
        if new_boot:
            self.evidence.boot_id = f"boot-{int(self.evidence.boot_id.split('-')[1]) + 1}"
            self.evidence.booted_at = self.liveness.now() - uptime_s
        self.evidence.wall_synced = wall_synced
        self.evidence.wall_error = wall_error
        self.core = self._new_core()
        self._start_core()
        if attach:
            self.attach()
        return self.core

    def patient_now(self) -> float:
        """The safety process's clinical time (the patient's timeline)."""
        return self.core.now().clinical

    def close(self) -> None:
        self.journal.close()
        if self.gpio is not None:
            self.gpio.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ requests
    def send(
        self,
        body: RequestBody,
        *,
        seq: int | None = None,
        session: str | None = None,
        ttl: float = DEFAULT_TTL_S,
        expires_at: float | None = None,
    ) -> Outcome:
        """A request as the attached controller would send it: next seq, fresh expiry."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        else:
            self.seq = max(self.seq, seq)
        sess = session if session is not None else (self.session or "no-session")
        expiry = expires_at if expires_at is not None else self.process_liveness.now() + ttl
        return self.core.handle(Request(RequestMeta(sess, seq, expiry), body))

    # ``link`` passes ``seq``, ``session``, ``ttl`` or ``expires_at`` on to ``send``
    def load(self, spec: ProgramSpec, **link: Any) -> Outcome:
        return self.send(LoadProgram(spec), **link)

    def start(self, dose: Decimal | str | int, *, confirm: bool = False, **link: Any) -> Outcome:
        return self.send(StartInfusion(Decimal(dose), confirm_soft_limits=confirm), **link)

    def change(self, dose: Decimal | str | int, *, confirm: bool = False, **link: Any) -> Outcome:
        return self.send(ChangeDose(Decimal(dose), confirm_soft_limits=confirm), **link)

    def stop(self, **link: Any) -> Outcome:
        return self.send(StopInfusion(), **link)

    def estop(self, **link: Any) -> Outcome:
        return self.send(EmergencyStop("api"), **link)

    def ack(self, keys: tuple[str, ...] | None = None, **link: Any) -> Outcome:
        return self.send(AcknowledgeAlarms(keys), **link)

    # ------------------------------------------------------------------ time
    def service(self, liveness_s: float = SERVICE_LIVENESS_S) -> None:
        """One round of the host's loop, ``liveness_s`` after the last; a live controller
        sends its heartbeat first."""
        self.liveness.advance(liveness_s)
        if self.controller_alive and self.session is not None:
            self.core.heartbeat(self.session)
        self.core.service()

    def advance(self, seconds: float, *, poll_every_s: float = 60.0) -> None:
        """Move clinical time forward as the host would live through it."""
        target = self.clinical.now() + seconds
        self.service()
        while self.clinical.now() < target:
            now = self.clinical.now()
            step_to = min(target, now + poll_every_s)
            if self._quiescent():
                step_to = target  # a stopped pump stays stopped: nothing to see until then
            deadline = next_deadline(self.core.state, self.core.now(), self.core.config)
            if deadline is not None:
                # the kernel's deadline is on the patient's timeline; the world's clock
                # differs from it by the timeline's offset (after a reboot)
                deadline -= self.core.now().clinical - self.clinical.now()
                # a deadline already due (its stop failed on the wire) is retried 1 s later
                step_to = min(step_to, deadline if deadline > now else now + 1.0)
            self.clinical.advance_to(step_to)
            self.service()

    def _quiescent(self) -> bool:
        """Nothing runs and nothing is in doubt: polls in between would read the same."""
        state = self.core.state
        return (
            not self.pump.snapshot().running
            and not state.running
            and not state.expected_running
            and state.pending is None
            and state.comms_ok
        )

    def lose_controller(self, gap_s: float = 3.0) -> None:
        """The controller stops sending heartbeats (hang or death) for ``gap_s``."""
        self.controller_alive = False
        self.service(gap_s)

    # ------------------------------------------------------------------ journal
    def events(self) -> list[Event]:
        """Every event of the journal (decoded once: the state machine reads it after
        every step)."""
        if self._decoded_from is not self.journal:
            self._decoded, self._decoded_upto, self._decoded_from = [], 0, self.journal
            self._record, self._recorded = RecordBuilder(self.pump_clock), 0
        for entry in self.journal.entries(since_id=self._decoded_upto):
            self._decoded.append(decode_event(entry.payload))
            self._decoded_upto = entry.id
        return list(self._decoded)

    def commands(self) -> list[CommandIssued]:
        return [e for e in self.events() if isinstance(e, CommandIssued)]

    def set_rates(self, cause: str | None = None) -> list[CommandIssued]:
        return [
            c
            for c in self.commands()
            if isinstance(c.action, SetRate) and (cause is None or c.cause == cause)
        ]

    def decisions(self) -> list[RequestDecided]:
        return [e for e in self.events() if isinstance(e, RequestDecided)]

    def replayed(self) -> KernelState:
        return replay_journal(self.core.config, self.journal).state

    # ------------------------------------------------------------------ pump truth
    def truth_rate(self) -> float:
        last = self.pump.truth.last_segment()
        return last.rate_ml_h if last is not None else 0.0

    def truth_segments(self) -> list[TruthSegment]:
        return self.pump.truth.segments()

    def truth_boluses(self) -> list[TruthBolus]:
        return self.pump.truth.boluses()

    # ------------------------------------------------------------------ the oracle
    def record(self) -> SafetyRecord:
        """The journal's record on the pump's clock (``verification.ground_truth``), read
        on from where it was last read."""
        events = self.events()
        for event in events[self._recorded :]:
            self._record.add(event)
        self._recorded = len(events)
        return self._record.record()

    def prior(self) -> list[TruthSegment]:
        """The seeded delivery, as truth before the live pump's record."""
        prior: list[TruthSegment] = []
        for n, s in enumerate(self.seeded):
            prior.append(TruthSegment(s.start, s.rate_ml_h))
            if not (self.seed_running and n == len(self.seeded) - 1):
                prior.append(TruthSegment(s.end, 0.0))  # else the live pump runs on
        return prior

    def judge(self, *, plunger: bool = False, record: SafetyRecord | None = None) -> TruthReport:
        """The one oracle on what the pump did: what reached the patient, or (``plunger``)
        the rate its plunger ran, which an occlusion does not hide."""
        events: Sequence[TruthEvent] = self.pump.plunger if plunger else self.pump.truth.events
        if self.seed_until is not None:  # the pump idled until the seeded history ended
            handover = self.seed_until
            events = [e for e in events if _time_of(e) >= handover]
        return check_ground_truth(
            events,
            self.library,
            record if record is not None else self.record(),
            prior=self.prior(),
            until=self.clinical.now(),
        )

    # ------------------------------------------------------------------ programs
    def active(self, spec: ProgramSpec) -> ActiveProgram:
        return load_program(self.library, spec, 0.0)

    def capabilities(self) -> PumpCapabilities:
        return PumpCapabilities(
            Decimal(repr(self.syringe.min_rate_ml_h)),
            Decimal(repr(self.syringe.max_rate_ml_h)),
            self.driver.quantize_rate,
        )

    def pump_rate_for(self, spec: ProgramSpec, dose: Decimal | str | int) -> Decimal:
        """The rate the pump runs for ``dose`` (rounded down, as the kernel computes it)."""
        program = self.active(spec)
        return self.capabilities().pump_rate(program.exact_rate(Fraction(Decimal(dose))))

    def seed(
        self,
        spec: ProgramSpec,
        runs: Sequence[tuple[float, Decimal | str | int]],
        *,
        boot_at: float,
    ) -> None:
        """Before ``boot``: journal a past infusion as a previous safety process would
        have, and leave the pump as that infusion left it.

        ``runs`` is ``(clinical time, dose)`` in time order; a dose of 0 is a stop; the
        last entry lasts until ``boot_at``. Why: the syringe holds at most 0.8 mg of
        norepinephrine at the library's strongest concentration, while the hard max, the
        cumulative cap and the window rules need hours to days of history; the kernel is
        event-sourced, so a journal is exactly how such a history reaches it. The events
        are the ones a live core writes (program, commands, read-backs).
        """
        assert not self.booted, "seed before boot"
        assert runs and runs[0][0] >= self.clinical.now() and boot_at >= runs[-1][0]
        program = self.active(spec)
        live = self.liveness.now()
        rows: list[Event] = []
        t0 = runs[0][0]
        wall = self.evidence.wall_base + live
        boot = self.evidence.boot_id
        rows.append(timeline_started("virtual", Now(t0, live), boot=boot, wall=wall))
        patient = PatientSpec(program.limits.profile, program.limits.weight_kg)
        rows.append(PatientAdmitted("seeded", patient, "first program", Now(t0, live)))
        rows.append(ProgramLoaded(spec, program.limits, 0.0, Now(t0, live)))
        running = False
        rate = Decimal(0)
        infused = 0.0
        last_t = t0
        for i, (t, dose) in enumerate(runs):
            infused += float(rate) * (t - last_t) / 3600.0 if running else 0.0
            last_t = t
            now = Now(t, live)
            if Decimal(dose) > 0:
                rate = self.pump_rate_for(spec, dose)
                rows.append(CommandIssued(SetRate(rate), "command", now))
                if not running:
                    rows.append(CommandIssued(StartPump(), "command", now))
                running = True
            elif running:
                rows.append(CommandIssued(StopPump(), "command", now))
                running = False
            rows.append(ReadbackReceived(PumpReading(running, rate, infused), now))
            end = runs[i + 1][0] if i + 1 < len(runs) else boot_at
            if running and end > t:
                self.seeded.append(SeededTruth(t, end, float(rate)))
        if running:
            infused += float(rate) * (boot_at - last_t) / 3600.0
        rows.append(ReadbackReceived(PumpReading(running, rate, infused), Now(boot_at, live)))
        self.journal.append_many(
            [(e.kind, encode_event(e), e.now.clinical, e.now.liveness) for e in rows]
        )
        self.clinical.advance_to(boot_at)
        self.seed_until = boot_at
        self.seed_running = running

        def resume_seeded_pump() -> None:
            if rate > 0:
                self.pump.set_rate(float(rate))
            if running:
                self.pump.start()

        self.driver.label("seed", resume_seeded_pump)
        assert program.unit  # the spec is valid for this library


def _time_of(event: TruthEvent) -> float:
    return event.start if isinstance(event, TruthSegment) else event.time


def truth_doses(
    program: ActiveProgram, segments: Sequence[TruthSegment]
) -> Iterator[tuple[float, Fraction]]:
    """(start, dose in the therapy's unit) of each truth segment."""
    for seg in segments:
        yield seg.start, program.dose(Decimal(repr(seg.rate_ml_h)))


BenchT = TypeVar("BenchT", bound=Bench)


def bench_factory(
    kind: type[BenchT], library: DrugLibrary, root: Path
) -> Iterator[Callable[..., BenchT]]:
    """A fixture's body: build benches of ``kind`` under ``root``; on teardown close each
    and fail the test if its pump guard saw a command the journal does not explain."""
    made: list[BenchT] = []

    def make(**options: object) -> BenchT:
        bench = kind(root / f"bench{len(made)}", library, **options)  # type: ignore[arg-type]
        made.append(bench)
        return bench

    yield make
    for bench in made:
        bench.journal.close()
        if bench.gpio is not None:
            bench.gpio.close()
        assert not bench.guard.violations, bench.guard.violations
