"""The safety process without its sockets: kernel + pump drivers + GPIO + journal.

Every decision is the kernel's (pure); this class does the I/O around it in a fixed
order: journal, then act (S14). It runs the same code whether driven by the real process
(``safety.host.process``, a selector loop on real clocks) or in one process on a virtual
clock (scenario runner, tests): nothing is skipped in that mode but the socket.

The bench's pumps are its channels (``Channel``: a driver and the container it holds),
in the order configured; a one-pump bench is one channel, ``A``. Every channel is read
back each poll period (channels on one shared line take turns on it: the line's lock
serialises the exchanges), kept alive while it runs, stopped by the emergency stop, and
read at start; the relay (``safety.kernel.relay``) is driven from the service loop on the
clinical clock, so a handover happens with the controller dead too.

Timers run on the liveness clock (polling, keep-alive, heartbeat supervision, the
hardware-watchdog pin); doses, windows, caps and handovers on the clinical clock.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from drivers.errors import DriverError
from drivers.gpio.base import GpioInterface
from drivers.pumps.base import (
    AnotherPumpAnswers,
    PumpAlarmError,
    PumpDriver,
    PumpRejected,
    PumpStatus,
    RateRange,
    StopConfirmation,
)
from firmware_bridge.clock import Clock, OffsetClock
from firmware_bridge.syringes import Bag, Container
from safety.alarms import Priority
from safety.clock_evidence import (
    SYNC_READ_EVERY_S,
    EvidenceSource,
    read_evidence,
    wall_clock_synchronised,
)
from safety.host.watchdog_device import WatchdogFeeder
from safety.journal import Journal, JournalDamaged, JournalEntry, salvage, set_aside
from safety.kernel.codec import encode_event
from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.decide import decide
from safety.kernel.library_check import what_changed
from safety.kernel.model import (
    DEFAULT_CHANNEL,
    AcceptPump,
    AcknowledgeAlarms,
    AdmitPatient,
    AlarmsAcknowledged,
    ArmStandby,
    BenchConfigured,
    ChannelConfigured,
    ClientDropped,
    CommandFailed,
    CommandIssued,
    CommsFailed,
    ContainerChanged,
    ContainerLoaded,
    ContainerPaused,
    ContainerResumed,
    ControllerAttached,
    ControllerLost,
    DisarmStandby,
    EmergencyStop,
    EmergencyStopRaised,
    Event,
    HandoverEnded,
    HandoverStepped,
    JournalRecovered,
    LibraryChecked,
    LoadProgram,
    Now,
    PatientAdmitted,
    PatientSpec,
    PatientUpdated,
    PauseForContainerChange,
    PrimeChannel,
    PrimePump,
    ProgramLoaded,
    PumpAction,
    PumpNamed,
    PumpReading,
    Reaction,
    ReadbackReceived,
    Request,
    RequestBody,
    RequestDecided,
    ResumeAfterContainerChange,
    Resumed,
    SetInterlock,
    SetRate,
    StandbyArmed,
    StandbyDisarmed,
    StartPump,
    StopConfirmed,
    StopPump,
    Ticked,
    TimelineResumed,
    UpdatePatient,
    Verdict,
)
from safety.kernel.observe import next_deadline, observe, tick
from safety.kernel.reducer import apply
from safety.kernel.relay import (
    RelayMove,
    container_concentration,
    pause_event_fields,
    relay_deadline,
    relay_move,
)
from safety.kernel.replay import Replayed, replay_journal
from safety.kernel.state import (
    ChannelState,
    KernelState,
    fluid_limits,
    history_keep_for,
    limits_of,
    program_check,
)
from safety.kernel.timeline import resume
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import (
    AlarmView,
    ChannelView,
    DrugView,
    HandoverView,
    Outcome,
    PatientView,
    PointsMemo,
    Snapshot,
    history_points,
    new_memo,
)
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


_UNKNOWN_RANGE = PumpCapabilities(Decimal(0), Decimal(0), lambda r: r)


@dataclass
class Channel:
    """One pump the safety process owns: its driver, the container it holds and what the
    process learned of it (its rate range with that container)."""

    name: str
    driver: PumpDriver
    #: the syringe (or a volumetric pump's bag) the channel holds
    container: Container
    #: what the container held when the bench was set up (None: full)
    loaded_ml: float | None = None
    #: the registry name of the driver, for the journal and people
    driver_name: str = ""
    pump: PumpCapabilities = field(default_factory=lambda: _UNKNOWN_RANGE)
    known: bool = False
    last_infused_ml: float | None = None
    due_keep_alive: float = 0.0
    #: the cause of the comms failure last journaled was another pump answering on the
    #: channel's port: a change to or from that cause is journaled again, so the alarm
    #: says which (a lost line and a pump that is not the channel's call for different
    #: hands), while a repeat of the same cause at every poll is not
    another_pump: bool = False
    #: a replacement was accepted and the new pump has not been read stopped yet: its
    #: syringe is set at its first such reading (never on a running pump, which is
    #: stopped first as one the safety process did not start); until then no range
    #: is known, so no rate can be asked of it
    replaced: bool = False

    def configured(self) -> ChannelConfigured:
        container = self.container
        loaded = container.volume_ml if self.loaded_ml is None else self.loaded_ml
        return ChannelConfigured(
            self.name,
            self.driver_name or self.driver.name,
            container.name,
            "bag" if isinstance(container, Bag) else "syringe",
            container.volume_ml,
            loaded,
            serial_port=self.driver.serial_port,
        )


@dataclass(frozen=True)
class _SnapshotMemo:
    """The last snapshot and everything it was made of (``SafetyCore.snapshot``)."""

    state: KernelState
    library: DrugLibrary | None
    config: KernelConfig
    now: float
    counters: tuple[float | None, ...]
    snapshot: Snapshot


@functools.lru_cache(maxsize=256)
def _rate_decimal(rate_ml_h: float) -> Decimal:
    """A read rate as the kernel's Decimal, one object per value: every reading's rate is
    kept in its channel's flow log for minutes, and a pump runs at few distinct rates."""
    return Decimal(repr(rate_ml_h))


class SafetyCore:
    def __init__(
        self,
        library: DrugLibrary | None,
        driver: PumpDriver | Sequence[Channel],
        journal: Journal,
        *,
        clinical: Clock,
        liveness: Clock,
        syringe: Container | None = None,
        interlock_scope: str = "bench",
        gpio: GpioInterface | None = None,
        watchdog_device: WatchdogFeeder | None = None,
        config: KernelConfig | None = None,
        timing: HostTiming | None = None,
        on_change: Callable[[], None] | None = None,
        evidence: EvidenceSource = read_evidence,
        library_problem: str | None = None,
        damaged_journal: tuple[str, str] | None = None,
    ) -> None:
        """``driver``: the bench's channels, or one driver (with its ``syringe``): a
        one-pump bench, channel ``A``. ``clinical`` is the clock the patient's timeline is
        made from; ``self.clinical`` is the timeline itself (that clock plus the offset
        ``start`` finds). ``interlock_scope``: one pump-enable relay for the bench
        ("bench"), or one per channel ("channel": the GPIO backend's
        ``channel_enable_pins``).
        ``library`` None: it could not be loaded (``library_problem`` says why); the
        process supervises with the limits journaled with the program. ``damaged_journal``
        (where the damaged file went, why): the journal could not even be opened and
        was set aside before this one was created."""
        self.library = library
        self.library_problem = library_problem
        if isinstance(driver, PumpDriver):
            if syringe is None:
                raise ValueError("a single pump driver needs its syringe")
            channels: Sequence[Channel] = [Channel(DEFAULT_CHANNEL, driver, syringe)]
        else:
            channels = list(driver)
        if not channels:
            raise ValueError("a safety process needs at least one channel")
        self.channels: dict[str, Channel] = {c.name: c for c in channels}
        if len(self.channels) != len(channels):
            raise ValueError("channel names must be unique")
        self.interlock_scope = interlock_scope
        self.journal = journal
        self.source = clinical
        self.clinical = OffsetClock(clinical, 0.0)
        self.liveness = liveness
        self.evidence = evidence
        self._damaged_journal = damaged_journal
        self._wall_synced: bool | None = None
        self._due_sync_check = 0.0
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
        self._last_heartbeat: float | None = None
        self._due_poll = 0.0
        self._due_watchdog = 0.0
        self._due_button = 0.0
        self._watchdog_level = False
        self._started = False
        self._memos: dict[str, PointsMemo] = {}
        #: the last ``next_deadline``: (state, config, clinical time, deadline)
        self._deadline_memo: tuple[KernelState, KernelConfig, float, float | None] | None = None
        #: the last ``tick``'s reaction: (state, config, instant, reaction)
        self._tick_memo: tuple[KernelState, KernelConfig, Now, Reaction] | None = None
        #: set by the socket server: serves the requests already waiting, without waiting
        #: for more. Run between two channels' timer exchanges (read-backs, keep-alives),
        #: so an emergency stop or a command waits behind one pump's exchange, not a
        #: round of every pump on the line.
        self.between_exchanges: Callable[[], object] | None = None
        self._in_between = False
        #: the last snapshot and what it was built from (``snapshot``)
        self._snapshot_memo: _SnapshotMemo | None = None

    # ------------------------------------------------------------------ one channel
    # What a one-pump bench (and code written for it) reads: its only channel's.
    def _only(self) -> Channel:
        if len(self.channels) != 1:
            raise ValueError(f"the bench has {len(self.channels)} channels: name one")
        return next(iter(self.channels.values()))

    @property
    def driver(self) -> PumpDriver:
        return self._only().driver

    @property
    def syringe(self) -> Container:
        return self._only().container

    @property
    def pump(self) -> PumpCapabilities:
        return self._only().pump

    @property
    def pumps(self) -> dict[str, PumpCapabilities]:
        """Every channel's rate range and rounding, for the kernel."""
        return {name: c.pump for name, c in self.channels.items()}

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
        configured = tuple(c.configured() for c in self.channels.values())
        self._record(BenchConfigured(configured, self.interlock_scope, self.now()))  # type: ignore[arg-type]
        self._record(self._library_checked())
        for channel in self.channels.values():
            self._expect_pump(channel)  # before any connection: see ``_expect_pump``
        answered: list[str] = []  # the channels whose pumps this start has read
        for name, channel in self.channels.items():
            self._between_connections(answered)
            reading: PumpReading | None = None
            detail = other = ""
            try:
                channel.driver.connect()
                status = self._learn_pump(channel)
                reading = self._reading(status)
            except DriverError as exc:
                where = f"channel {name}'s pump" if len(self.channels) > 1 else "pump"
                detail = f"{where} not reachable at start: {exc}"
                channel.another_pump = isinstance(exc, AnotherPumpAnswers)
                other = exc.other if isinstance(exc, AnotherPumpAnswers) else ""
                log.error(detail)
            self._note_pump_name(channel)
            # stamped when the reading came back, not before the handshake: connecting
            # can take seconds (an NE-1000 left in safe mode answers the third probe),
            # and the pump's counter moved meanwhile (S13 accuracy, unseen delivery)
            now = self.now()
            self._record(Resumed(reading, now, detail, name))
            if reading is not None:
                # the handshake and the reading were traffic the pump's link watchdog counts
                channel.due_keep_alive = self.liveness.now() + self.timing.keep_alive_period_s
                answered.append(name)
                self._record(ReadbackReceived(reading, now, name))
            else:
                self._record(CommsFailed(detail or "no reading", now, name, other))
        self._started = True
        self._outputs()

    def _between_connections(self, answered: list[str]) -> None:
        """While ``start`` connects one channel after another, the channels whose pumps it
        has read are kept alive when due, and the stop button is read and the watchdog fed
        between any two of those exchanges (``_watch``). Connecting a channel can take
        seconds (a pump that does not answer is waited on for each probe, a network port
        for its connect timeout): without this, a running NE-1000 in safe mode or a Modbus
        pump with its comms timeout armed, connected earlier, went without traffic for the
        sum of the others' connections and could stop itself (an abrupt stop of a
        vasopressor), a watchdog device armed at open could bite a process that is alive,
        and a short press of the stop button during a restart was never seen.

        A press here is an emergency stop like any other (S12), before the bench is fully
        connected: the pumps read so far are stopped at once and the interlock is cut;
        a channel not connected yet counts as silent (``ChannelState.connecting``): its
        stop goes out after the relay and fails (at once for a driver not linked yet),
        its connection's reading reconciles that lost stop (S10) and clears its comms
        alarm, and the loop's first read-back stops the pump if it runs (observe, S12
        holds until acknowledged). Keep-alives only to channels that answered at this
        start: one whose connection failed is not linked, and its keep-alive would be a
        whole handshake again, seconds more for the others to wait (the loop's polls try
        it again soon enough); none to a channel the stop stopped (``_keep_alive``)."""
        self._watch()
        for name in answered:
            if self._keep_alive(name, self.liveness.now()):
                self._watch()

    def _keep_alive(self, name: str, live: float) -> bool:
        """A keep-alive to ``name``'s pump if one is due and the channel runs (a pump that
        is stopped has no link watchdog to feed); True when one was sent."""
        channel = self.channels[name]
        if live < channel.due_keep_alive:
            return False
        channel.due_keep_alive = live + self.timing.keep_alive_period_s
        if not self.state.channel(name).running:
            return False
        try:
            channel.driver.keep_alive()
        except DriverError as exc:
            log.warning("channel %s: keep-alive failed: %s", name, exc)
        return True

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
        if library is None:
            detail = self.library_problem or "no library"
            return LibraryChecked("unusable", detail, "", self.now())
        changed: list[tuple[str, str]] = []
        for name, c in self.state.channels.items():
            program = c.drug_program  # a test fluid's limits are its rates alone
            if program is not None and program.limits.library_hash != library.content_hash:
                changed.append((name, what_changed(library, program.spec, program.limits)))
        if changed:
            if len(self.state.channels) == 1:
                detail = changed[0][1]
            else:
                detail = "; ".join(f"channel {n}: {d}" for n, d in changed)
            names = tuple(n for n, _ in changed)
            return LibraryChecked("changed", detail, library.content_hash, self.now(), names)
        return LibraryChecked("ok", "", library.content_hash, self.now())

    def _learn_pump(self, channel: Channel) -> PumpStatus:
        """The rate range the pump accepts with our syringe (S7), and a fresh status.

        Tried at start and, until it succeeds, after every good read-back: a pump that
        missed one packet at start must not leave the range unknown for good.
        """
        driver, syringe = channel.driver, channel.container
        status = driver.read_status()
        if status.running and channel.replaced:
            # a replacement found running: judged as a pump nobody started (stopped);
            # its syringe is set at the next reading, stopped
            return status
        if status.running:
            # Resuming over a running infusion: a syringe setting is never sent to a
            # running pump (the pump refuses it, and a new diameter would change the
            # rate it runs). The range is this process's configured syringe's own; the
            # pump still refuses anything outside its range (PumpRejected, handled).
            rng = RateRange(syringe.min_rate_ml_h, syringe.max_rate_ml_h)
        else:
            rng = driver.configure_syringe(syringe)
            # a driver reports a pump alarm once (the NE-1000 forgets it once answered):
            # the one the first read saw (why the pump stopped while this process was
            # down, e.g. its safe-mode timeout) must survive this second read
            first_alarms = status.alarms
            status = driver.read_status()
            status = replace(status, alarms=status.alarms | first_alarms)
        channel.pump = PumpCapabilities(
            Decimal(repr(rng.min_ml_h)), Decimal(repr(rng.max_ml_h)), driver.quantize_rate
        )
        channel.known, channel.replaced = True, False
        return status

    def _expect_pump(self, channel: Channel) -> None:
        """Preset on the channel's driver the name its pump gave in an earlier run (the
        journal's ``PumpNamed``), with what to do when another pump answers.

        A fresh driver would otherwise take whatever pump answers first as the channel's:
        after a reboot ``/dev/ttyUSB0`` and ``/dev/ttyUSB1`` may have swapped, and the
        remembered infusion of one channel would be driven onto the other's pump. With
        the name preset, another pump is refused as after a reconnect (``PumpName``). No
        name on record (a new bench, a journal written before names were recorded, a
        replacement accepted): the first pump to name itself is the channel's, as ever."""
        names = channel.driver.pump_name
        if names is None:  # a driver whose pumps give no name (mock)
            return
        name = channel.name
        recorded = self.state.channel(name).pump_name if name in self.state.channels else ""
        names.expect(
            recorded or None,
            f"if channel {name}'s pump was replaced on purpose, accept the new one (console: "
            f"newpump {name}); if not, put channel {name}'s own pump back on that port (and "
            "name ports by /dev/serial/by-id/, docs/protocols.md)",
        )

    def _note_pump_name(self, channel: Channel) -> None:
        """Journal the name the channel's pump gave its driver when the journal does not
        hold it yet: at the first connection ever, and at the first after an accepted
        replacement. A later run presets it (``_expect_pump``). A pump that was asked and
        gives no name is journaled as such (``PumpNamed.nameless``), once."""
        names = channel.driver.pump_name
        if names is None or names.foreign is not None:
            return
        known = self.state.channel(channel.name)
        if names.first is None:
            if names.nameless and not known.pump_nameless:  # asked, and it gives none
                self._record(PumpNamed(channel.name, "", self.now(), nameless=True))
            return
        if names.first != known.pump_name:
            self._record(PumpNamed(channel.name, names.first, self.now()))

    def close(self) -> None:
        """Let go of the pumps' ports; the pumps are left as they are."""
        for channel in self.channels.values():
            try:
                channel.driver.close()
            except DriverError as exc:  # pragma: no cover - best effort at shutdown
                log.warning("closing channel %s's pump: %s", channel.name, exc)

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
        verdict = decide(self.library, self.state, request, now, self.pumps, self.config)
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
            elif isinstance(body, AcceptPump):
                events.append(PumpNamed(self.state.resolve(body.channel), "", now))
            else:
                events += self._relay_events(body, now)
                cause = "relay" if isinstance(body, ArmStandby) else cause
                if isinstance(body, PauseForContainerChange | ResumeAfterContainerChange):
                    cause = "container_change"
                elif isinstance(body, PrimeChannel):
                    cause = "prime"
            if verdict.actions:
                # The verdict and its first pump command share one durable transaction:
                # both are on disk before anything is sent (S14's write-ahead order
                # holds), and the command waits for one flush to the device, not two.
                # A crash before the commit leaves neither; after it, the replay knows
                # the command was about to be sent, as it would from two transactions.
                events.append(CommandIssued(verdict.actions[0], cause, now))
        self._record(*events)
        if verdict.accepted and isinstance(body, AcceptPump):
            # the name just journaled as gone: the next pump to name itself is taken (the
            # read-back below asks the pump on the port again), and what this process
            # learned of the old pump (its range with our syringe) is forgotten
            replaced = self.channels[self.state.resolve(body.channel)]
            replaced.known, replaced.replaced, replaced.another_pump = False, True, False
            replaced.pump = _UNKNOWN_RANGE
            replaced.last_infused_ml = None
            self._expect_pump(replaced)
        if not verdict.accepted:
            execution = "not executed"
        elif isinstance(body, EmergencyStop):
            execution = self._emergency_execute(verdict.actions)
        else:
            execution = self._execute(verdict.actions, cause, first_recorded=True)
        self._outputs()
        return Outcome(verdict, execution, self.snapshot())

    def _relay_events(self, body: RequestBody, now: Now) -> list[Event]:
        """What an accepted relay or container-change request changes (S15)."""
        if isinstance(body, ArmStandby):
            return [StandbyArmed(body.channel, body.for_channel, body.strategy, now)]
        if isinstance(body, DisarmStandby):
            return [StandbyDisarmed(body.channel, "disarmed by the operator", now)]
        channel = self.state.resolve(getattr(body, "channel", None))
        if isinstance(body, PauseForContainerChange):
            rate, concentration = pause_event_fields(self.state.channel(channel))
            max_s = self.config.max_container_pause_s
            return [ContainerPaused(channel, rate, max_s, now, concentration)]
        if isinstance(body, ContainerChanged):
            name = self.state.channel(channel).container.name
            label = container_concentration(self.state, replace(body, channel=channel))
            return [ContainerLoaded(channel, name, float(body.volume_ml), now, label)]
        if isinstance(body, ResumeAfterContainerChange):
            return [ContainerResumed(channel, now)]
        return []  # a prime: its command is its event

    def _program_events(self, body: LoadProgram, now: Now) -> list[Event]:
        """The program with the limits it is held to; the patient it implies, when the
        journal has none yet (or no weight yet)."""
        assert self.library is not None  # decide refuses a program without one
        channel = self.state.resolve(body.channel)
        baseline = self._infused_now(channel)
        if body.spec.test_fluid:  # no drug, no patient
            fluid = fluid_limits(self.library, body.spec)
            return [ProgramLoaded(body.spec, fluid, baseline, now, channel)]
        drug = limits_of(program_check(self.library, body.spec), self.library.content_hash)
        events: list[Event] = []
        patient = self.state.patient
        implied = PatientSpec(drug.profile, drug.weight_kg)
        if patient is None:
            events.append(PatientAdmitted(secrets.token_hex(8), implied, "first program", now))
        elif patient.weight_kg is None and drug.weight_kg is not None:
            events.append(PatientUpdated(implied, "first weight", now))
        events.append(ProgramLoaded(body.spec, drug, baseline, now, channel))
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
    def poll(self, depth: int = 0, channels: Sequence[str] | None = None) -> None:
        """Read the pumps (every channel, or ``channels`` in that order), journal each
        reading, react (S1 on read-back, S9, S10, S13, S3)."""
        names = channels if channels is not None else list(self.channels)
        for i, name in enumerate(names):
            if i and depth == 0:
                self._let_requests_in()
            self._poll_one(self.channels[name], depth)

    def _let_requests_in(self) -> None:
        """Read the stop button and feed the watchdog when due (``_watch``), and serve the
        requests that arrived during a timer's exchange with one pump, before the next
        pump's. Only between a timer's own exchanges (depth 0): a request's own read-backs
        run to the end, and a request served here is not served into again."""
        if self._in_between:
            return
        self._in_between = True
        try:
            self._watch()
            if self.between_exchanges is not None:
                self.between_exchanges()
        finally:
            self._in_between = False

    def _watch(self) -> None:
        """The stop button read and the watchdog fed, each when due. Called once a loop
        pass, between any two of a timer's exchanges with pumps and between a restart's
        connections, so that a slow pump (one that does not answer and is waited on to
        its reply timeout, a port still opening: ``drivers.opening``) holds them up by one
        exchange, never by a round of them: the watchdog does not bite a loop that is
        alive, and a press is acted on after one exchange at most. A press that began and
        ended inside that exchange was counted meanwhile by the GPIO's own sampling
        thread (``watch_stop_button``, started by the process) and is reported here."""
        live = self.liveness.now()
        if self.gpio is not None and live >= self._due_button:
            self._due_button = live + self.timing.button_poll_s
            if self.gpio.poll_stop():
                self.emergency_stop("button")
        self._feed_watchdog(live)

    def _feed_watchdog(self, live: float) -> None:
        """The heartbeat pin toggled and the watchdog device fed, when due: one place for
        both, so that whatever stops this process's work stops the pin and the feed."""
        watched = self.gpio is not None or self.watchdog_device is not None
        if watched and live >= self._due_watchdog:
            self._due_watchdog = live + self.timing.watchdog_toggle_s
            self._watchdog_level = not self._watchdog_level
            if self.gpio is not None:
                self.gpio.toggle_heartbeat()
            if self.watchdog_device is not None:
                self.watchdog_device.feed()

    def _poll_one(self, channel: Channel, depth: int) -> None:
        """One channel's read-back.

        The reading is stamped with the time it came back, not the time it was asked for:
        on a scaled clock a slow reply covers clinical seconds, and a volume counted up to
        the reply but compared with the expectation at the request would look like over-
        infusion.
        """
        name = channel.name
        try:
            status = channel.driver.read_status()
        except DriverError as exc:
            another = isinstance(exc, AnotherPumpAnswers)
            other = exc.other if isinstance(exc, AnotherPumpAnswers) else ""
            known = self.state.channel(name)
            if known.comms_ok or another != channel.another_pump or other != known.other_pump:
                channel.another_pump = another
                detail = f"{type(exc).__name__}: {exc}"
                self._record(CommsFailed(detail, self.now(), name, other))
                self._outputs()
            return
        self._note_pump_name(channel)  # a pump first heard now (or after a replacement)
        # a read-back is traffic the pump's link watchdog counts (NE-1000 safe mode, a
        # Modbus comms timeout): no keep-alive is due until a period without one
        channel.due_keep_alive = self.liveness.now() + self.timing.keep_alive_period_s
        if not channel.known:
            try:
                status = self._learn_pump(channel)
            except DriverError as exc:
                log.warning("channel %s: pump range still unknown: %s", name, exc)
        reading = self._reading(status)
        now = self.now()
        # the reducer's state for this event is observe's own (``apply`` of a read-back
        # is ``observe``, a pure function of the same arguments): computed once, here
        after, reaction = observe(self.state, reading, now, self.config, name)
        self._record(ReadbackReceived(reading, now, name), applied=after)
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
        on it: never start on a rate that did not take, never stop the outgoing pump of a
        handover whose incoming one did not start). (An emergency stop is not carried
        out here but by ``_emergency_execute``, where a failure ends nothing: every action
        moves toward safety.) Afterwards the channels acted on are read back, in the order
        they were first acted on (a relay's incoming channel first); every channel when
        none was.
        """
        failure: str | None = None
        touched: list[str] = []
        for index, action in enumerate(actions):
            name = action.channel
            if not isinstance(action, SetInterlock) and name not in touched:
                touched.append(name)
            if index > 0 or not first_recorded:
                self._record(CommandIssued(action, cause, self.now()))
            try:
                self._send(action)
            except PumpRejected as exc:
                self._record(CommandFailed(action, "rejected", exc.reason or str(exc), self.now()))
                self.poll(depth + 1, [name])
                failure = f"rejected by pump: {exc.reason or exc}"
            except PumpAlarmError as exc:
                reason = ", ".join(sorted(exc.alarms)) or str(exc)
                self._record(CommandFailed(action, "rejected", f"pump alarm: {reason}", self.now()))
                self.poll(depth + 1, [name])
                failure = f"rejected by pump: alarm {reason}"
            except DriverError as exc:
                kind = type(exc).__name__
                self._record(CommandFailed(action, "timeout", f"{kind}: {exc}", self.now()))
                self.poll(depth + 1, [name])  # S10: reconcile by read-back, never by repeating
                if self.state.channel(name).pending is not None:
                    failure = f"uncertain: {kind}; waiting for a read-back"
                else:
                    failure = f"uncertain ({kind}), reconciled by read-back"
            except OSError as exc:  # GPIO
                self._record(CommandFailed(action, "error", str(exc), self.now()))
                failure = f"failed: {exc}"
            if failure is not None:
                return failure
        self.poll(depth + 1, touched or None)  # nothing sent: every channel, as it is now
        return "applied"

    def _emergency_execute(self, actions: tuple[PumpAction, ...]) -> str:
        """S12: every answering pump's stop, back to back in channel order, then the
        interlock relay, then the silent channels' stops (the kernel's order,
        ``decide._emergency_stop``); read-backs only after all of them.

        Each action's ``CommandIssued`` is journaled before it is sent (the first one
        with the verdict, by ``handle``). A stop whose own reply showed the pump stopped
        (``StopConfirmation``: NE-1000 status ``S``, Harvard idle prompt) is journaled as
        ``StopConfirmed`` in the same transaction as the next command (one flush, not
        two, between two stops); that channel counts as stopped, and its read-back comes
        with the next poll, which verifies as always. A failed action is journaled the
        same way (``CommandFailed``, as ``_execute`` does) and nothing stops the rest:
        every action moves toward safety, and the relay does not depend on the pump's
        link. Then every channel whose stop was not confirmed (its reply said nothing of
        the pump's state, showed it still running, or never came) is read back here, in
        channel order, with the usual reactions: a pump seen running under the stop is
        stopped again, an uncertain stop is reconciled, a silent pump is a comms alarm.
        """
        failure: str | None = None
        uncertain: tuple[str, str] | None = None  # the first stop whose reply was lost
        unconfirmed: list[str] = []
        carried: list[Event] = []  # journaled with the next command (or at the end)
        for index, action in enumerate(actions):
            name = action.channel
            if index > 0:
                self._record(*carried, CommandIssued(action, "estop", self.now()))
                carried = []
            try:
                confirmation = self._send(action)
            except PumpRejected as exc:
                carried.append(
                    CommandFailed(action, "rejected", exc.reason or str(exc), self.now())
                )
                failure = failure or f"rejected by pump: {exc.reason or exc}"
            except PumpAlarmError as exc:
                reason = ", ".join(sorted(exc.alarms)) or str(exc)
                failed = CommandFailed(action, "rejected", f"pump alarm: {reason}", self.now())
                carried.append(failed)
                failure = failure or f"rejected by pump: alarm {reason}"
            except DriverError as exc:  # S10: reconciled by the read-back below
                kind = type(exc).__name__
                carried.append(CommandFailed(action, "timeout", f"{kind}: {exc}", self.now()))
                uncertain = uncertain or (name, kind)
                failure = failure or "uncertain"
            except OSError as exc:  # GPIO
                carried.append(CommandFailed(action, "error", str(exc), self.now()))
                failure = failure or f"failed: {exc}"
            else:
                if isinstance(action, StopPump) and confirmation is not None:
                    carried.append(StopConfirmed(name, confirmation.reply, self.now()))
                    continue
            if not isinstance(action, SetInterlock) and name not in unconfirmed:
                unconfirmed.append(name)
        if carried:
            self._record(*carried)
        if unconfirmed:
            self.poll(1, unconfirmed)
        if failure == "uncertain" and uncertain is not None:
            name, kind = uncertain
            if self.state.channel(name).pending is not None:
                failure = f"uncertain: {kind}; waiting for a read-back"
            else:
                failure = f"uncertain ({kind}), reconciled by read-back"
        return failure or "applied"

    def _send(self, action: PumpAction) -> StopConfirmation | None:
        """Send one action; a stop returns the pump's confirmation, when its reply has one."""
        if isinstance(action, SetInterlock):
            if self.gpio is not None:
                relay = action.channel if self.interlock_scope == "channel" else None
                self.gpio.set_pump_enabled(action.pump_enabled, relay)
            return None
        driver = self.channels[action.channel].driver
        if isinstance(action, SetRate):
            driver.send_rate(float(action.rate_ml_h))  # read back with the channel's status
        elif isinstance(action, StartPump):
            driver.start()
        elif isinstance(action, StopPump):
            return driver.stop()
        elif isinstance(action, PrimePump):
            driver.prime(float(action.volume_ml))
        return None

    # ------------------------------------------------------------------ the relay (S15)
    def _relay(self) -> None:
        """Whatever the relay must do now: a handover's start, its next step, its end.
        Each move is journaled (cause "relay") before its commands go out."""
        for _ in range(4):  # a move may complete at once and the next be due
            move = relay_move(self.state, self.now(), self.config, self.pumps)
            if move is None:
                return
            self._relay_move(move)
            if self.state.handover is None:
                return

    def _relay_move(self, move: RelayMove) -> None:
        events: list[Event] = list(move.events)
        if move.actions:
            events.append(CommandIssued(move.actions[0], "relay", self.now()))
        self._record(*events)
        ended = any(isinstance(e, HandoverEnded) for e in move.events)
        if move.actions:
            log.info("%s", move.message)
            outcome = self._execute(move.actions, "relay", first_recorded=True)
            now = self.now()
            handover = self.state.handover
            if ended or handover is None:
                pass  # a fall-back after the end: its read-backs speak for it
            elif outcome != "applied":
                self._record(HandoverEnded("failed", outcome, now))
            else:
                counter = self.state.channel(handover.to_channel).container.counter_ml
                self._record(HandoverStepped(move.step, counter, now))
                if move.last:
                    self._record(HandoverEnded("done", move.message, now))
        self._outputs()

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
        self._watch()
        now = self.now()
        deadline = self.next_deadline(now)
        polled = live >= self._due_poll or (deadline is not None and now.clinical >= deadline)
        if polled:
            self._due_poll = live + self.timing.poll_period_s
            self.poll()
        else:
            reaction = self._tick(now)
            if reaction.actions:
                self._record(Ticked(now))
                self._execute(reaction.actions, reaction.cause)
        # after the poll: a channel it read needs no keep-alive now (``_poll_one``)
        exchanged = polled
        for name, channel in self.channels.items():
            due = live >= channel.due_keep_alive and self.state.channel(name).running
            if due and exchanged:
                self._let_requests_in()  # may stop the channel (the button, a request)
            exchanged = self._keep_alive(name, live) or exchanged
        if self.state.handover is not None or any(
            c.standby is not None for c in self.state.channels.values()
        ):
            self._relay()  # cheap, pure until it has something to do
        if live >= self._due_sync_check:
            self._due_sync_check = live + SYNC_CHECK_S
            self._check_wall_clock()
        self._watch()
        wait = self.liveness_wait()
        deadline = self.next_deadline()
        if deadline is not None:
            wait = min(wait, self.clinical.to_real_seconds(deadline - self.clinical.now()))
        return max(0.0, wait)

    def liveness_wait(self) -> float:
        """Seconds (liveness) until the next of the process's own timers: poll, keep-alive,
        stop button, watchdog, heartbeat supervision. Apart from the clinical deadline,
        which ``service`` folds in through the clinical clock: a virtual clinical clock
        has no real seconds to give (0), and whoever drives it (``LocalSafety.advance``)
        still needs to know when these fall due."""
        live = self.liveness.now()
        waits = [self._due_poll - live]
        waits += [c.due_keep_alive - live for c in self.channels.values()]
        if self.gpio is not None:
            waits.append(self._due_button - live)
        if self.gpio is not None or self.watchdog_device is not None:
            waits.append(self._due_watchdog - live)
        if self._last_heartbeat is not None and self.state.attached:
            waits.append(self._last_heartbeat + self.timing.heartbeat_timeout_s - live)
        return max(0.0, min(waits))

    def _tick(self, now: Now) -> Reaction:
        """The kernel's ``tick`` (pure), remembered for one state and instant (both clocks):
        a virtual clock's advance services twice at the instant it stops at, with nothing
        changed between unless a request came in (a new state)."""
        memo = self._tick_memo
        if memo is not None and memo[0] is self.state and memo[1] is self.config and memo[2] == now:
            return memo[3]
        _, reaction = tick(self.state, now, self.config)
        self._tick_memo = (self.state, self.config, now, reaction)
        return reaction

    def next_deadline(self, now: Now | None = None) -> float | None:
        """The kernel's ``next_deadline`` for the state as it is at ``now`` (default:
        this instant). Pure, so computed once per state and clinical instant: a service
        pass, and a virtual clock's advance around it, ask for it several times."""
        now = now if now is not None else self.now()
        memo = self._deadline_memo
        if (
            memo is not None
            and memo[0] is self.state
            and memo[1] is self.config
            and memo[2] == now.clinical
        ):
            return memo[3]
        deadline = next_deadline(self.state, now, self.config)
        self._deadline_memo = (self.state, self.config, now.clinical, deadline)
        return deadline

    def _check_wall_clock(self) -> None:
        """Journal a change of the wall clock's synchronisation (no change of timeline):
        after a reboot, the journal's last wall time is evidence only if it was synced."""
        if not self._started:
            return
        if (
            self.evidence is read_evidence
            and wall_clock_synchronised(max_age_s=SYNC_READ_EVERY_S) == self._wall_synced
        ):
            # this machine's own evidence: its synchronisation is all a check needs (the
            # boot id and the clocks are read when there is a change to journal)
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
    def _record(self, *events: Event, applied: KernelState | None = None) -> None:
        """Journal first (one durable transaction), then apply (S14). ``applied``: the
        state after the one event, already computed by the kernel from the current state
        with the reducer's own function (``apply`` would compute it again)."""
        rows = [
            (event.kind, encode_event(event), event.now.clinical, event.now.liveness)
            for event in events
        ]
        self.journal.append_many(rows)
        if applied is not None and len(events) != 1:
            raise ValueError("a precomputed state is the state after one event")
        for event in events:
            self.state = apply(self.config, self.state, event) if applied is None else applied
            if isinstance(event, ReadbackReceived) and event.channel in self.channels:
                self.channels[event.channel].last_infused_ml = event.reading.infused_ml
        if self.on_change is not None and self._started:
            # only told, not shown: a status snapshot (every channel's and drug's view) costs
            # more than most events, and a listener needs one per batch of events at most
            # (the dispatcher builds it when it pushes; ``alarm_views`` is the cheap part)
            self.on_change()

    def _outputs(self) -> None:
        """GPIO alarm output follows the alarms that need a person now."""
        if self.gpio is None:
            return
        loud = [a for a in self.state.alarms.annunciating() if a.priority >= Priority.MEDIUM]
        self.gpio.set_alarm(bool(loud))

    def _infused_now(self, channel: str) -> float:
        found = self.channels.get(channel)
        last = found.last_infused_ml if found is not None else None
        return last if last is not None else 0.0

    @staticmethod
    def _reading(status: PumpStatus) -> PumpReading:
        return PumpReading(
            running=status.running,
            set_rate_ml_h=_rate_decimal(status.set_rate_ml_h),
            infused_ml=status.infused_ml,
            alarms=tuple(sorted(str(a) for a in status.alarms)),
            pressure_mmhg=status.pressure_mmhg,
        )

    def snapshot(self) -> Snapshot:
        """The bench as it is: every channel, every drug, and the first channel's figures
        at the top level (``safety.status``).

        Built once per state and instant: a request's outcome, the status notice after it
        and a client's own read at that instant are the same snapshot. Everything it is
        made of is in the key (the state is immutable, so its identity is its value; the
        channels' last counters and the library are the rest)."""
        return self.settled_snapshot(None)

    def settled_snapshot(self, answered: Snapshot | None) -> Snapshot:
        """``snapshot()``, except that ``answered`` (the snapshot of a reply just sent) is
        the state as it is while nothing it is made of has changed since it was built,
        whatever the instant. The status pushed right after a reply is then the reply's
        own snapshot, not a second one built a millisecond later (that passing alone is
        no news: ``safety.ipc.snapshots.differs``); any other time the clock's passing
        shows (cap windows, what was given, a paused container's minutes left)."""
        now = self.clinical.now()
        counters = tuple(c.last_infused_ml for c in self.channels.values())
        memo = self._snapshot_memo
        if (
            memo is not None
            and (memo.now == now or (answered is not None and memo.snapshot is answered))
            and memo.state is self.state
            and memo.library is self.library
            and memo.config is self.config
            and memo.counters == counters
        ):
            return memo.snapshot
        snapshot = self._build_snapshot(now)
        self._snapshot_memo = _SnapshotMemo(
            self.state, self.library, self.config, now, counters, snapshot
        )
        return snapshot

    def _build_snapshot(self, now: float) -> Snapshot:
        s = self.state
        views = tuple(self._channel_view(name, now) for name in self.channels)
        drugs = self._drug_views(now)
        first = views[0]
        first_state = s.channel(first.name)
        top_drug = first_state.drug
        drug = next((d for d in drugs if d.drug == top_drug), None)
        program = first_state.program
        given = None
        if program is not None and first.infused_ml is not None:
            amount = Fraction(first.infused_ml) * program.amount_per_ml
            cap = program.cap
            factor = cap.unit.base_factor if cap is not None else Fraction(1)
            given = fraction_to_decimal(amount / factor, 6)
        memo = self._memo(top_drug or "")
        return Snapshot(
            clinical_time=now,
            mode=s.mode.value,
            library_hash=self.library.content_hash if self.library is not None else "",
            library_version=self.library.version if self.library is not None else "",
            program=first.program,
            dose_unit=first.dose_unit,
            running=first.running,
            rate_ml_h=first.rate_ml_h,
            dose=first.dose,
            infused_ml=first.infused_ml,
            drug_given=given,
            amount_unit=drug.amount_unit
            if drug is not None
            else (program.amount_unit if program is not None else None),
            given_in_cap_window=drug.given_in_cap_window if drug is not None else None,
            cap_amount=drug.cap_amount if drug is not None else None,
            cap_window_h=drug.cap_window_h if drug is not None else None,
            syringe=first.container,
            syringe_volume_ml=self.channels[first.name].container.volume_ml,
            remaining_ml=first.remaining_ml,
            pump_min_ml_h=first.pump_min_ml_h,
            pump_max_ml_h=first.pump_max_ml_h,
            alarms=self.alarm_views(),
            session=s.session,
            last_seq=s.last_seq,
            attached=s.attached,
            hold=s.hold,
            estopped=s.estopped,
            uncertain=any(c.pending is not None for c in s.channels.values()),
            comms_ok=first_state.comms_ok,
            history=history_points(s.history_of(top_drug), memo) if top_drug else (),
            patient=(
                PatientView(s.patient.id, s.patient.spec, s.patient.since, s.patient.how)
                if s.patient is not None
                else None
            ),
            program_stale=first.program_stale,
            priors=s.record_of(top_drug).priors_at(now),
            channels=views,
            drugs=drugs,
            handover=self._handover_view(),
        )

    def alarm_views(self) -> tuple[AlarmView, ...]:
        """The alarm book as a snapshot shows it (``snapshot().alarms``), without the
        rest of the snapshot: a change listener looks for new alarms after every event."""
        return tuple(
            AlarmView(
                a.key,
                a.priority.word,
                a.reason.value,
                a.message,
                a.raised_at,
                a.active,
                a.acknowledged,
                a.scope,
            )
            for a in self.state.alarms.alarms
        )

    def _memo(self, drug: str) -> PointsMemo:
        """One memo per drug: its history's points are converted once per change."""
        memo = self._memos.get(drug)
        if memo is None:
            memo = self._memos[drug] = new_memo()
        return memo

    def _channel_view(self, name: str, now: float) -> ChannelView:
        s = self.state
        c = s.channel(name)
        channel = self.channels[name]
        program = c.program
        infused = None
        dose = None
        if program is not None:
            counter = self._infused_now(name)
            if c.priming is not None and c.priming.counter_at_start is not None:
                counter = min(counter, c.priming.counter_at_start)  # a prime goes to waste
            infused = max(0.0, counter - program.infused_baseline_ml)
            # to the patient: a pump priming runs fast, to waste
            giving = c.running and c.priming is None
            dose = fraction_to_decimal(program.dose(c.set_rate), 6) if giving else Decimal(0)
        remaining = c.remaining_ml if channel.last_infused_ml is not None else None
        role, relay = self._role(name, c, now)
        standby = c.standby
        return ChannelView(
            name=name,
            driver=c.driver or channel.driver.name,
            container=c.container.name or channel.container.name,
            container_kind=c.container.kind,
            container_volume_ml=c.container.volume_ml,
            remaining_ml=remaining,
            primed=c.container.primed,
            program=program.spec if program is not None else None,
            dose_unit=program.unit if program is not None else None,
            dose=dose,
            running=c.running,
            rate_ml_h=c.set_rate if c.running else Decimal(0),
            infused_ml=infused,
            pump_min_ml_h=channel.pump.min_rate_ml_h,
            pump_max_ml_h=channel.pump.max_rate_ml_h,
            uncertain=c.pending is not None,
            comms_ok=c.comms_ok,
            program_stale=c.program_stale,
            role=role,
            standby_for=standby.for_channel if standby is not None else None,
            strategy=standby.strategy if standby is not None else None,
            relay=relay,
            paused_until=c.pause.until if c.pause is not None else None,
            relieved_by=c.relieved_by,
        )

    def _role(self, name: str, c: ChannelState, now: float) -> tuple[str, str]:
        """The channel's part in a relay or a container change, in one word and in words."""
        handover = self.state.handover
        if handover is not None and name in (handover.from_channel, handover.to_channel):
            other = handover.to_channel if name == handover.from_channel else handover.from_channel
            way = "to" if name == handover.from_channel else "from"
            return "handing over", (
                f"handing over {way} channel {other} ({handover.strategy}, step "
                f"{handover.step}/{handover.steps})"
            )
        if c.priming is not None:
            return "priming", f"priming {c.priming.volume_ml:g} mL to waste"
        if c.pause is not None:
            left = c.pause.until - now
            words = f"{left / 60:.0f} min left" if left > 0 else "OVERDUE"
            return "paused", f"paused for a container change ({words})"
        if c.standby is not None:
            active = self.state.channel(c.standby.for_channel)
            empty_at = active.empty_at()
            when = ""
            if empty_at is not None:
                lead = self.config.handover_before_empty_s
                if c.standby.strategy == "overlap":
                    lead += self.config.overlap_steps * self.config.overlap_step_s
                when = f": takes over in about {max(0.0, empty_at - lead - now) / 60:.0f} min"
            return "standby", (
                f"standby of channel {c.standby.for_channel} ({c.standby.strategy}){when}"
            )
        if c.running:
            return "active", ""
        if c.relieved_by is not None:
            return "relieved", (
                f"relieved by channel {c.relieved_by}: load a new container, prime it and "
                "arm it as the standby"
            )
        return "", ""

    def _drug_views(self, now: float) -> tuple[DrugView, ...]:
        s = self.state
        order: list[str] = []
        for c in s.channels.values():
            if c.drug is not None and c.drug not in order:
                order.append(c.drug)
        first = next(iter(s.channels.values())).drug if s.channels else None
        due = relay_deadline(s, self.config)
        views: list[DrugView] = []
        for drug in order:
            channels = s.drug_channels(drug)
            program = channels[0][1].drug_program
            assert program is not None
            record = s.record_of(drug)
            total = s.total_amount_rate(drug)
            cap = program.cap
            factor = cap.unit.base_factor if cap is not None else Fraction(1)
            history = record.history
            in_window = None
            if cap is not None:
                window_amount = history.amount(now - float(cap.window_s), now)
                in_window = fraction_to_decimal(Fraction(window_amount) / factor, 6)
            handing = any(
                c.standby is not None and s.channel(c.standby.for_channel).drug == drug
                for c in s.channels.values()
            )
            views.append(
                DrugView(
                    drug=drug,
                    what=program.what,
                    dose_unit=program.unit,
                    dose=fraction_to_decimal(program.dose_of_amount_rate(total), 6),
                    amount_per_h=fraction_to_decimal(total, 6),
                    amount_unit=cap.unit.value if cap is not None else program.amount_unit,
                    given=fraction_to_decimal(Fraction(history.given_total(now)) / factor, 6),
                    given_in_cap_window=in_window,
                    cap_amount=cap.amount if cap is not None else None,
                    cap_window_h=cap.window_h if cap is not None else None,
                    channels=tuple(n for n, _ in channels),
                    next_handover_at=due if handing and s.handover is None else None,
                    history=(() if drug == first else history_points(history, self._memo(drug))),
                    priors=record.priors_at(now),
                )
            )
        return tuple(views)

    def _handover_view(self) -> HandoverView | None:
        handover = self.state.handover
        if handover is None:
            return None
        next_at = (
            handover.step_at + self.config.overlap_step_s
            if handover.step_at is not None and handover.step < handover.steps
            else None
        )
        return HandoverView(
            handover.from_channel,
            handover.to_channel,
            handover.strategy,
            handover.step,
            handover.steps,
            handover.started_at,
            next_at,
        )


__all__ = ["Channel", "HostTiming", "SafetyCore", "Verdict"]
