"""The safety process without its sockets: kernel + pump driver + GPIO + journal.

Every decision is the kernel's (pure); this class does the I/O around it in a fixed
order: journal, then act (S14). It runs the same code whether driven by the real process
(``safety.host.process``, a selector loop on real clocks) or in one process on a virtual
clock (scenario runner, tests): nothing is skipped in that mode but the socket.

Timers run on the liveness clock (polling, keep-alive, heartbeat supervision, the
hardware-watchdog pin); doses, windows and caps on the clinical clock.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from drivers.errors import DriverError
from drivers.gpio.base import GpioInterface
from drivers.pumps.base import PumpAlarmError, PumpDriver, PumpRejected, PumpStatus, RateRange
from firmware_bridge.clock import Clock, OffsetClock
from firmware_bridge.syringes import Syringe
from safety.alarms import Priority
from safety.clock_evidence import EvidenceSource, read_evidence
from safety.host.watchdog_device import WatchdogFeeder
from safety.journal import Journal, JournalDamaged, JournalEntry, salvage, set_aside
from safety.kernel.codec import encode_event
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.library_check import what_changed
from safety.kernel.model import (
    AcknowledgeAlarms,
    AdmitPatient,
    AlarmsAcknowledged,
    ClientDropped,
    CommandFailed,
    CommandIssued,
    CommsFailed,
    ControllerAttached,
    ControllerLost,
    EmergencyStop,
    EmergencyStopRaised,
    Event,
    JournalRecovered,
    LibraryChecked,
    LoadProgram,
    Now,
    PatientAdmitted,
    PatientSpec,
    PatientUpdated,
    ProgramLoaded,
    PumpAction,
    PumpReading,
    ReadbackReceived,
    Request,
    RequestBody,
    RequestDecided,
    Resumed,
    SetInterlock,
    SetRate,
    StartPump,
    StopPump,
    Ticked,
    TimelineResumed,
    UpdatePatient,
    Verdict,
)
from safety.kernel.observe import next_deadline, observe, tick
from safety.kernel.reducer import apply
from safety.kernel.replay import Replayed, replay_journal
from safety.kernel.state import (
    KernelState,
    fluid_limits,
    history_keep_for,
    limits_of,
    program_check,
)
from safety.kernel.timeline import resume
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import AlarmView, Outcome, PatientView, Snapshot, history_points
from safety.timing import HostTiming
from safety.units import fraction_to_decimal

log = logging.getLogger("safety")

#: reactions may cause reactions (stop -> read-back); never more deep than this
MAX_REACTION_DEPTH = 3
#: how often (liveness s) the wall clock's synchronisation is looked at: a change is
#: journaled, so a later reboot knows whether the journal's last wall time can be trusted
SYNC_CHECK_S = 60.0


def open_journal(
    path: str | Path, process: str, cache_kib: int | None = None
) -> tuple[Journal, tuple[str, str] | None]:
    """The journal, or, when the file is not a readable database, a new one that starts
    with what could be salvaged from it, the damaged file set aside (never deleted);
    the second value is then (where it went, why). Raises JournalError when no journal
    can be had at all (a missing permission, a full disk): nothing may run without one."""
    try:
        return Journal(path, process, cache_kib=cache_kib), None
    except JournalDamaged as exc:
        keep, _ = salvage(path)
        aside = set_aside(path)
        log.critical("journal damaged (%s); %d entries salvaged; kept as %s", exc, len(keep), aside)
        journal = Journal(path, process, cache_kib=cache_kib)
        journal.append_entries(keep)
        return journal, (str(aside), str(exc))


def reopen_journal(journal: Journal, keep: list[JournalEntry]) -> tuple[Journal, str]:
    """A damaged journal set aside (kept, never deleted) and a new one in its place that
    starts with the entries that could be read; returns it and where the old one went."""
    path, process, cache_kib = journal.path, journal.process, journal.cache_kib
    journal.close()
    aside = set_aside(path)
    fresh = Journal(path, process, cache_kib=cache_kib)
    fresh.append_entries(keep)
    return fresh, str(aside)


class SafetyCore:
    def __init__(
        self,
        library: DrugLibrary | None,
        driver: PumpDriver,
        journal: Journal,
        *,
        clinical: Clock,
        liveness: Clock,
        syringe: Syringe,
        gpio: GpioInterface | None = None,
        watchdog_device: WatchdogFeeder | None = None,
        config: KernelConfig | None = None,
        timing: HostTiming | None = None,
        on_change: Callable[[Snapshot], None] | None = None,
        evidence: EvidenceSource = read_evidence,
        library_problem: str | None = None,
        damaged_journal: tuple[str, str] | None = None,
    ) -> None:
        """``clinical`` is the clock the patient's timeline is made from; ``self.clinical``
        is the timeline itself (that clock plus the offset ``start`` finds).
        ``library`` None: it could not be loaded (``library_problem`` says why); the
        process supervises with the limits journaled with the program. ``damaged_journal``
        (where the damaged file went, why): the journal could not even be opened and
        was set aside before this one was created."""
        self.library = library
        self.library_problem = library_problem
        self.driver = driver
        self.journal = journal
        self.source = clinical
        self.clinical = OffsetClock(clinical, 0.0)
        self.liveness = liveness
        self.evidence = evidence
        self._damaged_journal = damaged_journal
        self._wall_synced: bool | None = None
        self._due_sync_check = 0.0
        self.syringe = syringe
        self.gpio = gpio
        self.watchdog_device = watchdog_device
        config = config or KernelConfig()
        if library is not None:  # every window the library can express is kept whole
            keep = max(config.history_keep_s, history_keep_for(library))
            config = replace(config, history_keep_s=keep)
        self.config = config
        self.timing = timing or HostTiming()
        self.on_change = on_change
        self.state = KernelState()
        self.pump = PumpCapabilities(Decimal(0), Decimal(0), lambda r: r)
        self._last_heartbeat: float | None = None
        self._due_poll = 0.0
        self._due_keep_alive = 0.0
        self._due_watchdog = 0.0
        self._due_button = 0.0
        self._watchdog_level = False
        self._last_infused_ml: float | None = None
        self._started = False
        self._pump_known = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Connect the pump, rebuild state from the journal, resume supervision.

        Never changes what the pump is doing: a restart only reads and reconciles. The
        order of what is journaled: where the timeline continues, what was lost of a
        damaged journal, what the library says about the loaded program, then the pump.
        """
        replayed = replay_journal(self.config, self.journal)
        self.state = replayed.state
        damaged = self._damaged_journal
        if replayed.damage is not None:
            self.journal, aside = reopen_journal(self.journal, replayed.good)
            damaged = (aside, replayed.damage)
            log.critical("journal damaged (%s); kept as %s", replayed.damage, aside)
        self._record(self._timeline(replayed))
        if damaged is not None:
            aside, why = damaged
            self._record(JournalRecovered(aside, len(replayed.good), why, self.now()))
        self._record(self._library_checked())
        now = self.now()
        reading: PumpReading | None = None
        detail = ""
        try:
            self.driver.connect()
            status = self._learn_pump()
            reading = self._reading(status)
        except DriverError as exc:
            detail = f"pump not reachable at start: {exc}"
            log.error(detail)
        self._record(Resumed(reading, now, detail))
        if reading is not None:
            self._record(ReadbackReceived(reading, now))
        else:
            self._record(CommsFailed(detail or "no reading", now))
        self._started = True
        self._outputs()

    def _timeline(self, replayed: Replayed) -> TimelineResumed:
        """Continue the patient's timeline from the journal (``safety.kernel.timeline``)."""
        evidence = self.evidence(self.liveness, self.source)
        resumed = resume(replayed.mark(), evidence)
        self.clinical = OffsetClock(self.source, resumed.offset)
        self._wall_synced = evidence.wall_synced
        mark = replayed.mark()
        if resumed.discontinuity:
            log.warning("clinical timeline: %s, %.0f s credited", resumed.basis, resumed.credited_s)
        return TimelineResumed(
            previous_clinical=mark.clinical if mark is not None else None,
            credited_s=resumed.credited_s,
            offset=resumed.offset,
            basis=resumed.basis,
            conservative=resumed.conservative,
            discontinuity=resumed.discontinuity,
            boot_id=evidence.boot_id,
            source=evidence.source,
            wall=evidence.wall,
            wall_synced=evidence.wall_synced,
            now=self.now(),
        )

    def _library_checked(self) -> LibraryChecked:
        library = self.library
        program = self.state.drug_program  # a test fluid's limits are its rates alone
        if library is None:
            detail = self.library_problem or "no library"
            return LibraryChecked("unusable", detail, "", self.now())
        if program is not None and program.limits.library_hash != library.content_hash:
            detail = what_changed(library, program.spec, program.limits)
            return LibraryChecked("changed", detail, library.content_hash, self.now())
        return LibraryChecked("ok", "", library.content_hash, self.now())

    def _learn_pump(self) -> PumpStatus:
        """The rate range the pump accepts with our syringe (S7), and a fresh status.

        Tried at start and, until it succeeds, after every good read-back: a pump that
        missed one packet at start must not leave the range unknown for good.
        """
        status = self.driver.read_status()
        if status.running:
            # Resuming over a running infusion: a syringe setting is never sent to a
            # running pump (the pump refuses it, and a new diameter would change the
            # rate it runs). The range is this process's configured syringe's own; the
            # pump still refuses anything outside its range (PumpRejected, handled).
            rng = RateRange(self.syringe.min_rate_ml_h, self.syringe.max_rate_ml_h)
        else:
            rng = self.driver.configure_syringe(self.syringe)
            # a driver reports a pump alarm once (the NE-1000 forgets it once answered):
            # the one the first read saw (why the pump stopped while this process was
            # down, e.g. its safe-mode timeout) must survive this second read
            first_alarms = status.alarms
            status = self.driver.read_status()
            status = replace(status, alarms=status.alarms | first_alarms)
        self.pump = PumpCapabilities(
            Decimal(repr(rng.min_ml_h)), Decimal(repr(rng.max_ml_h)), self.driver.quantize_rate
        )
        self._pump_known = True
        return status

    def close(self) -> None:
        """Let go of the pump's port; the pump is left as it is."""
        try:
            self.driver.close()
        except DriverError as exc:  # pragma: no cover - best effort at shutdown
            log.warning("closing the pump: %s", exc)

    def now(self) -> Now:
        return Now(self.clinical.now(), self.liveness.now())

    # ------------------------------------------------------------------ controller link
    def attach(self) -> tuple[str, Snapshot]:
        """A controller (re-)attaches: a new session, and the state to re-sync from."""
        session = secrets.token_hex(8)
        self._record(ControllerAttached(session, self.now()))
        self._last_heartbeat = self.liveness.now()
        return session, self.snapshot()

    def heartbeat(self, session: str) -> bool:
        if not self.state.attached or session != self.state.session:
            return False
        self._last_heartbeat = self.liveness.now()
        return True

    def controller_lost(self, why: str) -> None:
        """S11: hold the last verified rate, raise a high alarm, refuse changes."""
        if self.state.attached:
            self._record(ControllerLost(why, self.now()))
            self._last_heartbeat = None
            self._outputs()

    # ------------------------------------------------------------------ requests
    def handle(self, request: Request) -> Outcome:
        now = self.now()
        verdict = decide(self.library, self.state, request, now, self.pump, self.config)
        meta = request.meta
        events: list[Event] = [
            RequestDecided(
                meta.session if meta else None,
                meta.seq if meta else None,
                request.body,
                verdict.accepted,
                verdict.reason,
                now,
            )
        ]
        body = request.body
        cause = "estop" if isinstance(body, EmergencyStop) else "command"
        if verdict.accepted:
            if isinstance(body, EmergencyStop):
                events.append(EmergencyStopRaised(body.source, now))
            elif isinstance(body, LoadProgram):
                events += self._program_events(body, now)
            elif isinstance(body, AdmitPatient):
                assert self.library is not None  # decide refuses it without one
                profile_id, _ = self.library.profile(body.patient.profile)
                patient = PatientSpec(profile_id, body.patient.weight_kg)
                events.append(PatientAdmitted(secrets.token_hex(8), patient, "admitted", now))
            elif isinstance(body, UpdatePatient):
                assert self.library is not None
                profile_id, _ = self.library.profile(body.patient.profile)
                patient = PatientSpec(profile_id, body.patient.weight_kg)
                events.append(PatientUpdated(patient, "confirmed", now))
            elif isinstance(body, AcknowledgeAlarms):
                events.append(AlarmsAcknowledged(body.keys, now))
            if verdict.actions:
                # The verdict and its first pump command share one durable transaction:
                # both are on disk before anything is sent (S14's write-ahead order
                # holds), and the command waits for one flush to the device, not two.
                # A crash before the commit leaves neither; after it, the replay knows
                # the command was about to be sent, as it would from two transactions.
                events.append(CommandIssued(verdict.actions[0], cause, now))
        self._record(*events)
        execution = (
            self._execute(verdict.actions, cause, first_recorded=True)
            if verdict.accepted
            else "not executed"
        )
        self._outputs()
        return Outcome(verdict, execution, self.snapshot())

    def _program_events(self, body: LoadProgram, now: Now) -> list[Event]:
        """The program with the limits it is held to; the patient it implies, when the
        journal has none yet (or no weight yet)."""
        assert self.library is not None  # decide refuses a program without one
        if body.spec.test_fluid:  # no drug, no patient
            fluid = fluid_limits(self.library, body.spec)
            return [ProgramLoaded(body.spec, fluid, self._infused_now(), now)]
        drug = limits_of(program_check(self.library, body.spec), self.library.content_hash)
        events: list[Event] = []
        patient = self.state.patient
        implied = PatientSpec(drug.profile, drug.weight_kg)
        if patient is None:
            events.append(PatientAdmitted(secrets.token_hex(8), implied, "first program", now))
        elif patient.weight_kg is None and drug.weight_kg is not None:
            events.append(PatientUpdated(implied, "first weight", now))
        events.append(ProgramLoaded(body.spec, drug, self._infused_now(), now))
        return events

    def emergency_stop(self, source: str) -> Outcome:
        """The local stop button (no session, no sequence): S12 needs neither."""
        return self.handle(Request(None, EmergencyStop(source)))

    # ------------------------------------------------------------------ observers (S17)
    def refuse_observer(self, body: RequestBody, client: str) -> Verdict:
        """An observer sent a request: refused without reaching the kernel, and put on
        record with who tried (S17); the IPC server then hangs up on it."""
        now = self.now()
        self._record(
            RequestDecided(None, None, body, False, Reason.OBSERVER_READ_ONLY, now),
            ClientDropped(client, "observer", f"sent a {body.kind!r} request", now),
        )
        return Verdict.refuse(
            Reason.OBSERVER_READ_ONLY,
            f"refused: {client} is an observer (read-only); it can never change an "
            "infusion or acknowledge an alarm",
        )

    def client_dropped(self, client: str, role: str, why: str) -> None:
        """The IPC server hung up on an authenticated connection: on record."""
        self._record(ClientDropped(client, role, why, self.now()))

    # ------------------------------------------------------------------ pump I/O
    def poll(self, depth: int = 0) -> None:
        """Read the pump, journal the reading, react (S1 on read-back, S9, S10, S13, S3).

        The reading is stamped with the time it came back, not the time it was asked for:
        on a scaled clock a slow reply covers clinical seconds, and a volume counted up to
        the reply but compared with the expectation at the request would look like over-
        infusion.
        """
        try:
            status = self.driver.read_status()
        except DriverError as exc:
            if self.state.comms_ok:
                self._record(CommsFailed(f"{type(exc).__name__}: {exc}", self.now()))
                self._outputs()
            return
        if not self._pump_known:
            try:
                status = self._learn_pump()
            except DriverError as exc:
                log.warning("pump range still unknown: %s", exc)
        reading = self._reading(status)
        now = self.now()
        _, reaction = observe(self.state, reading, now, self.config)
        self._record(ReadbackReceived(reading, now))
        if reaction.actions and depth < MAX_REACTION_DEPTH:
            self._execute(reaction.actions, reaction.cause, depth + 1)
        self._outputs()

    def _execute(
        self,
        actions: tuple[PumpAction, ...],
        cause: str,
        depth: int = 0,
        *,
        first_recorded: bool = False,
    ) -> str:
        """Carry out actions in order, each journaled before it is sent (S14).

        ``first_recorded``: the first action's ``CommandIssued`` is already journaled (with
        its verdict, by ``handle``). A failed action ends the sequence (the rest may depend
        on it: never start on a rate that did not take), except in an emergency stop: there
        every action moves toward safety, and the interlock relay does not depend on the
        pump's link, so a stop lost on the wire must not leave the relay closed (S12).
        """
        failure: str | None = None
        for index, action in enumerate(actions):
            if index > 0 or not first_recorded:
                self._record(CommandIssued(action, cause, self.now()))
            try:
                self._send(action)
            except PumpRejected as exc:
                self._record(CommandFailed(action, "rejected", exc.reason or str(exc), self.now()))
                self.poll(depth + 1)
                failure = failure or f"rejected by pump: {exc.reason or exc}"
            except PumpAlarmError as exc:
                reason = ", ".join(sorted(exc.alarms)) or str(exc)
                self._record(CommandFailed(action, "rejected", f"pump alarm: {reason}", self.now()))
                self.poll(depth + 1)
                failure = failure or f"rejected by pump: alarm {reason}"
            except DriverError as exc:
                kind = type(exc).__name__
                self._record(CommandFailed(action, "timeout", f"{kind}: {exc}", self.now()))
                self.poll(depth + 1)  # S10: reconcile by read-back, never by repeating
                if self.state.pending is not None:
                    failure = failure or f"uncertain: {kind}; waiting for a read-back"
                else:
                    failure = failure or f"uncertain ({kind}), reconciled by read-back"
            except OSError as exc:  # GPIO
                self._record(CommandFailed(action, "error", str(exc), self.now()))
                failure = failure or f"failed: {exc}"
            if failure is not None and cause != "estop":
                return failure
        if failure is not None:
            return failure
        self.poll(depth + 1)
        return "applied"

    def _send(self, action: PumpAction) -> None:
        if isinstance(action, SetRate):
            self.driver.set_rate(float(action.rate_ml_h))
        elif isinstance(action, StartPump):
            self.driver.start()
        elif isinstance(action, StopPump):
            self.driver.stop()
        elif isinstance(action, SetInterlock) and self.gpio is not None:
            self.gpio.set_pump_enabled(action.pump_enabled)

    # ------------------------------------------------------------------ timers
    def service(self) -> float:
        """Run whatever is due; return seconds (liveness) until something is due again."""
        live = self.liveness.now()
        heartbeat = self._last_heartbeat
        if (
            heartbeat is not None
            and self.state.attached
            and live - heartbeat > self.timing.heartbeat_timeout_s
        ):
            self.controller_lost("heartbeat timeout")
        if self.gpio is not None and live >= self._due_button:
            self._due_button = live + self.timing.button_poll_s
            if self.gpio.poll_stop():
                self.emergency_stop("button")
        if live >= self._due_keep_alive:
            self._due_keep_alive = live + self.timing.keep_alive_period_s
            if self.state.running:
                try:
                    self.driver.keep_alive()
                except DriverError as exc:
                    log.warning("keep-alive failed: %s", exc)
        now = self.now()
        deadline = next_deadline(self.state, now, self.config)
        if live >= self._due_poll or (deadline is not None and now.clinical >= deadline):
            self._due_poll = live + self.timing.poll_period_s
            self.poll()
        else:
            _, reaction = tick(self.state, now, self.config)
            if reaction.actions:
                self._record(Ticked(now))
                self._execute(reaction.actions, reaction.cause)
        if live >= self._due_sync_check:
            self._due_sync_check = live + SYNC_CHECK_S
            self._check_wall_clock()
        watched = self.gpio is not None or self.watchdog_device is not None
        if watched and live >= self._due_watchdog:
            # one place for both: whatever stops this loop stops the pin and the feed
            self._due_watchdog = live + self.timing.watchdog_toggle_s
            self._watchdog_level = not self._watchdog_level
            if self.gpio is not None:
                self.gpio.toggle_heartbeat()
            if self.watchdog_device is not None:
                self.watchdog_device.feed()
        waits = [self._due_poll - live, self._due_keep_alive - live]
        if self.gpio is not None:
            waits.append(self._due_button - live)
        if watched:
            waits.append(self._due_watchdog - live)
        if self._last_heartbeat is not None and self.state.attached:
            waits.append(self._last_heartbeat + self.timing.heartbeat_timeout_s - live)
        deadline = next_deadline(self.state, self.now(), self.config)
        if deadline is not None:
            waits.append(self.clinical.to_real_seconds(deadline - self.clinical.now()))
        return max(0.0, min(waits))

    def _check_wall_clock(self) -> None:
        """Journal a change of the wall clock's synchronisation (no change of timeline):
        after a reboot, the journal's last wall time is evidence only if it was synced."""
        if not self._started:
            return
        evidence = self.evidence(self.liveness, self.source)
        if evidence.wall_synced == self._wall_synced:
            return
        self._wall_synced = evidence.wall_synced
        offset = self.clinical.offset
        self._record(
            TimelineResumed(
                previous_clinical=None,
                credited_s=0.0,
                offset=offset,
                basis="the wall clock's synchronisation changed",
                conservative=False,
                discontinuity=False,
                boot_id=evidence.boot_id,
                source=evidence.source,
                wall=evidence.wall,
                wall_synced=evidence.wall_synced,
                now=self.now(),
            )
        )

    # ------------------------------------------------------------------ state
    def _record(self, *events: Event) -> None:
        """Journal first (one durable transaction), then apply (S14)."""
        rows = [
            (event.kind, encode_event(event), event.now.clinical, event.now.liveness)
            for event in events
        ]
        self.journal.append_many(rows)
        for event in events:
            self.state = apply(self.config, self.state, event)
            if isinstance(event, ReadbackReceived):
                self._last_infused_ml = event.reading.infused_ml
        if self.on_change is not None and self._started:
            self.on_change(self.snapshot())

    def _outputs(self) -> None:
        """GPIO alarm output follows the alarms that need a person now."""
        if self.gpio is None:
            return
        loud = [a for a in self.state.alarms.annunciating() if a.priority >= Priority.MEDIUM]
        self.gpio.set_alarm(bool(loud))

    def _infused_now(self) -> float:
        return self._last_infused_ml if self._last_infused_ml is not None else 0.0

    @staticmethod
    def _reading(status: PumpStatus) -> PumpReading:
        return PumpReading(
            running=status.running,
            set_rate_ml_h=Decimal(repr(status.set_rate_ml_h)),
            infused_ml=status.infused_ml,
            alarms=tuple(sorted(str(a) for a in status.alarms)),
            pressure_mmhg=status.pressure_mmhg,
        )

    def snapshot(self) -> Snapshot:
        s = self.state
        program = s.program
        now = self.clinical.now()
        infused = given = in_window = cap_amount = cap_window = None
        amount_unit = None
        remaining = None
        dose = None
        if program is not None:
            base = self._infused_now() - program.infused_baseline_ml
            infused = max(0.0, base)
            amount = Fraction(infused) * program.amount_per_ml
            cap = program.cap
            factor = cap.unit.base_factor if cap is not None else Fraction(1)
            amount_unit = cap.unit.value if cap is not None else program.amount_unit
            given = fraction_to_decimal(amount / factor, 6)
            if cap is not None:
                window_amount = s.history.amount(now - float(cap.window_s), now)
                in_window = fraction_to_decimal(Fraction(window_amount) / factor, 6)
                cap_amount, cap_window = cap.amount, cap.window_h
            dose = fraction_to_decimal(program.dose(s.set_rate), 6) if s.running else Decimal(0)
        if self._last_infused_ml is not None:
            remaining = max(0.0, self.syringe.volume_ml - self._last_infused_ml)
        return Snapshot(
            clinical_time=now,
            mode=s.mode.value,
            library_hash=self.library.content_hash if self.library is not None else "",
            library_version=self.library.version if self.library is not None else "",
            program=program.spec if program is not None else None,
            dose_unit=program.unit if program is not None else None,
            running=s.running,
            rate_ml_h=s.set_rate if s.running else Decimal(0),
            dose=dose,
            infused_ml=infused,
            drug_given=given,
            amount_unit=amount_unit,
            given_in_cap_window=in_window,
            cap_amount=cap_amount,
            cap_window_h=cap_window,
            syringe=self.syringe.name,
            syringe_volume_ml=self.syringe.volume_ml,
            remaining_ml=remaining,
            pump_min_ml_h=self.pump.min_rate_ml_h,
            pump_max_ml_h=self.pump.max_rate_ml_h,
            alarms=tuple(
                AlarmView(
                    a.key,
                    a.priority.word,
                    a.reason.value,
                    a.message,
                    a.raised_at,
                    a.active,
                    a.acknowledged,
                )
                for a in s.alarms.alarms
            ),
            session=s.session,
            last_seq=s.last_seq,
            attached=s.attached,
            hold=s.hold,
            estopped=s.estopped,
            uncertain=s.pending is not None,
            comms_ok=s.comms_ok,
            history=history_points(s.history),
            patient=(
                PatientView(s.patient.id, s.patient.spec, s.patient.since, s.patient.how)
                if s.patient is not None
                else None
            ),
            program_stale=s.program_stale,
            priors=s.priors_at(now),
        )


__all__ = ["HostTiming", "SafetyCore", "Verdict"]
