"""``LocalSafety``: the safety process in the caller's process, on virtual clocks.

For the scenario runner, the controller's fast tests and demos that need no sockets. It
builds the real ``SafetyCore`` over the mock driver (the one simulated pump every
emulator serves), and talks to it through the real ``Dispatcher`` with every message
encoded to its JSON line and decoded and validated again on the other side, in both
directions: a message that could not cross the socket cannot cross here either. What is
missing is only the operating-system boundary (``hil_tests/`` and
``tests/safety_process`` cover that).

Time moves only in ``advance``: both virtual clocks (clinical and liveness) move
together, and the core's timers (pump polls, keep-alive, heartbeat supervision, clinical
deadlines) run at each instant they fall due, as the real loop would run them. While
attached, the link sends its heartbeats as time advances, as the real client's thread
would; ``stop_heartbeats()`` simulates a hung controller, ``kill_controller()`` a dead
one (the socket's EOF), ``restart()`` a safety-process restart (journal replay) on the
same pump.

Not thread-safe: one caller drives it. Notices are delivered synchronously, in order,
during the call that caused them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from firmware_bridge.clock import VirtualClock
from safety.ipc import auth
from safety.ipc.client import ServerInfo, expect
from safety.ipc.framing import MAX_REQUEST_BYTES, decode_server, encode
from safety.ipc.link import (
    DEFAULT_TTL_S,
    AlarmRaised,
    LinkDown,
    NotAttached,
    Notice,
    SafetyUnavailable,
    SessionLost,
    StatusChanged,
)
from safety.ipc.messages import (
    AlarmNotice,
    Attach,
    Attached,
    Challenge,
    ClientMessage,
    ErrorReply,
    GetSnapshot,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Reply,
    RequestMessage,
    ServerMessage,
    SnapshotReply,
    StatusNotice,
    Welcome,
)
from safety.ipc.snapshots import HistoryOutOfStep, SnapshotReceiver
from safety.kernel.model import EmergencyStop, RequestBody
from safety.status import Outcome, Snapshot
from safety.timing import HostTiming

if TYPE_CHECKING:
    from drivers.pumps.mock import MockPumpDriver
    from firmware_bridge.faults import WireFaults
    from firmware_bridge.mechanics import Mechanics
    from firmware_bridge.pump_model import SimulatedPump
    from safety.host.core import SafetyCore
    from safety.ipc.dispatch import Dispatcher, Peer
    from safety.journal import Journal
    from safety.kernel.config import KernelConfig
    from safety.library import DrugLibrary

log = logging.getLogger("safety.ipc.local")

#: liveness time at which the virtual liveness clock starts (any value works; not 0 so a
#: bug that mixes it up with clinical time shows)
LIVENESS_START = 1000.0
#: at most this many timer rounds per ``advance`` (a runaway timer is a bug, not a hang)
MAX_STEPS_PER_ADVANCE = 10_000_000


@dataclass(frozen=True)
class LocalChannel:
    """One simulated pump of an in-process bench of several channels."""

    name: str
    container: str = "bd-plastipak-50ml"  # a syringe or bag, by catalogue name
    loaded_volume_ml: float | None = None
    faults: str = ""
    mechanics: Mechanics | None = None


class LocalSafety:
    """A ``SafetyLink`` to a ``SafetyCore`` in this process, on virtual clocks."""

    #: every notice is delivered during the call that caused it (time moves only in
    #: ``advance``, and one caller drives it): once a subscriber has handled the notices
    #: it holds, nothing has changed at the safety process that it has not been told
    #: (``Session.current_state`` relies on it)
    synchronous_notices = True

    def __init__(
        self,
        *,
        library: DrugLibrary | None = None,
        syringe: str = "bd-plastipak-50ml",
        loaded_volume_ml: float | None = None,
        faults: str = "",
        journal_path: str | os.PathLike[str] = ":memory:",
        timing: HostTiming | None = None,
        config: KernelConfig | None = None,
        clinical_start: float = 0.0,
        ttl_s: float = DEFAULT_TTL_S,
        name: str = "local-controller",
        mechanics: Mechanics | None = None,
        channels: Sequence[LocalChannel] = (),
    ) -> None:
        """``journal_path`` ":memory:" keeps nothing; give a file to inspect or replay it.
        ``mechanics``: the simulated pump's mechanism (default ideal). ``channels``: a
        bench of several pumps (each its own simulated pump); without it, one pump, channel
        A, from ``syringe``, ``loaded_volume_ml``, ``faults`` and ``mechanics``."""
        # lazy: importing safety.ipc (the controller does) must not import drivers
        from drivers.pumps.mock import MockPumpDriver  # noqa: PLC0415
        from firmware_bridge.pump_model import SimulatedPump  # noqa: PLC0415
        from firmware_bridge.syringes import container_by_name  # noqa: PLC0415

        self.clinical = VirtualClock(clinical_start)
        self.liveness = VirtualClock(LIVENESS_START)
        if not channels:
            channels = (LocalChannel("A", syringe, loaded_volume_ml, faults, mechanics),)
        self.channel_specs = tuple(channels)
        self.pumps: dict[str, SimulatedPump] = {}
        self.drivers: dict[str, MockPumpDriver] = {}
        for spec in channels:
            container = container_by_name(spec.container)
            pump = SimulatedPump(
                self.clinical,
                container,
                loaded_volume_ml=spec.loaded_volume_ml,
                mechanics=spec.mechanics,
            )
            self.pumps[spec.name] = pump
            self.drivers[spec.name] = MockPumpDriver(pump=pump, faults=spec.faults)
        first = channels[0].name
        #: the first channel's pump, driver and container (a one-pump bench's own)
        self.pump: SimulatedPump = self.pumps[first]
        self.driver: MockPumpDriver = self.drivers[first]
        self.syringe = self.pump.container
        self._library = library
        self._journal_path = journal_path
        self._timing = timing
        self._config = config
        self.ttl_s = ttl_s
        self.name = name
        self._key = os.urandom(auth.KEY_BYTES)
        self._subscribers: list[Callable[[Notice], None]] = []
        self._ids = 0
        self._session: str | None = None
        self._attached = False
        self._seq = 0
        self._heartbeats = True
        self._closed = False
        self._next_heartbeat = 0.0
        self.core: SafetyCore
        self.journal: Journal
        self._dispatcher: Dispatcher
        self._peer: Peer
        self._receiver = SnapshotReceiver()
        self.info: ServerInfo
        self._boot()

    # ------------------------------------------------------------------ faults and time
    @property
    def wire(self) -> WireFaults:
        return self.driver.wire

    def inject_faults(self, specs: str, channel: str | None = None) -> None:
        """Wire or pump faults by name, e.g. ``"occlusion"``, ``"lose_ack"``, ``"drop=2"``,
        on ``channel``'s pump (the first channel's when None)."""
        driver = self.driver if channel is None else self.drivers[channel]
        driver.inject_faults(specs)

    def advance(self, seconds: float) -> None:
        """Move both clocks ``seconds`` forward, running every timer when it falls due."""
        if not seconds >= 0:
            raise ValueError(f"advance({seconds}): time only moves forward")
        end = self.liveness.now() + seconds
        for _ in range(MAX_STEPS_PER_ADVANCE):
            self._heartbeat_if_due()
            self.service()
            now = self.liveness.now()
            if now >= end:
                return
            candidates = [end]
            # the liveness timers apart: ``service``'s own wait folds in the clinical
            # deadline, which a virtual clock gives as 0 real seconds (looked at below)
            wait = self.core.liveness_wait()
            if wait > 0:
                candidates.append(now + wait)
            if self._attached and self._heartbeats:
                candidates.append(self._next_heartbeat)
            deadline = self.core.next_deadline()
            if deadline is not None and deadline > self.clinical.now():
                candidates.append(now + (deadline - self.clinical.now()))
            step = max(min(candidates) - now, 1e-6)
            self.clinical.advance(step)
            self.liveness.advance(step)
        raise RuntimeError("LocalSafety.advance: timers never settled (a bug)")

    def service(self) -> float:
        """Run the core's due timers now; deliver the notices; seconds to the next one."""
        self._check_open()
        wait = self.core.service()
        self._deliver_notices()
        return wait

    def stop_heartbeats(self) -> None:
        """The controller hangs (e.g. SIGSTOP): no more heartbeats from this link."""
        self._heartbeats = False

    def resume_heartbeats(self) -> None:
        self._heartbeats = True
        self._next_heartbeat = self.liveness.now()

    def kill_controller(self) -> None:
        """The controller process dies: the safety side sees EOF (S11, at once)."""
        self._dispatcher.disconnected(self._peer, "eof")
        self._deliver_notices()
        self._session = None
        self._attached = False
        self._peer = self._connect()

    def press_stop_button(self) -> Outcome:
        """The GPIO stop button (S12): no session, no sequence."""
        outcome = self.core.emergency_stop("button")
        self._deliver_notices()
        return outcome

    def restart(self) -> None:
        """The safety process restarts on the same pump and journal (replay, no action).

        Needs a journal file: ":memory:" would restart with no history at all.
        """
        if str(self._journal_path) == ":memory:":
            raise ValueError("restart() needs journal_path= a file; ':memory:' keeps nothing")
        self.core.close()
        self.journal.close()
        self._session = None
        self._attached = False
        self._boot()

    # ------------------------------------------------------------------ SafetyLink
    @property
    def session(self) -> str | None:
        return self._session

    @property
    def attached(self) -> bool:
        return self._attached

    def attach(self) -> Snapshot:
        reply = expect(self._call(Attach(id=self._id())), Attached)
        self._session = reply.session
        self._seq = 0
        self._attached = True
        self._next_heartbeat = self.liveness.now() + self.info.heartbeat_period_s
        return reply.snapshot

    def heartbeat(self) -> bool:
        session = self._session if self._attached else None
        ack = expect(self._call(Heartbeat(id=self._id(), session=session)), HeartbeatAck)
        if session is not None and not ack.ok and self._attached:
            self._attached = False
            self._notify(SessionLost("the safety process refused the heartbeat: re-attach"))
        return ack.ok and session is not None

    def request(self, body: RequestBody, *, ttl_s: float | None = None) -> Outcome:
        if self._session is None and not isinstance(body, EmergencyStop):
            raise NotAttached(f"attach() before sending {body.kind!r}")
        if self._session is None:
            seq = 0
        else:
            self._seq += 1
            seq = self._seq
        expires = self.liveness.now() + (self.ttl_s if ttl_s is None else ttl_s)
        message = RequestMessage(
            id=self._id(), session=self._session, seq=seq, expires_at=expires, body=body
        )
        return expect(self._call(message), Reply).outcome

    def snapshot(self) -> Snapshot:
        return expect(self._call(GetSnapshot(id=self._id())), SnapshotReply).snapshot

    def subscribe(self, callback: Callable[[Notice], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Hang up (a controller loss if attached, as for the real link) and shut the
        core down; the pump is left as it is."""
        if self._closed:
            return
        self._dispatcher.disconnected(self._peer, "eof")
        self._deliver_notices()
        self._closed = True
        self._notify(LinkDown("closed by this process", final=True))
        self.core.close()
        self.journal.close()

    # ------------------------------------------------------------------ internals
    def _boot(self) -> None:
        from safety.host.core import Channel, SafetyCore  # noqa: PLC0415 - the host, if used
        from safety.ipc.dispatch import Dispatcher  # noqa: PLC0415
        from safety.journal import Journal  # noqa: PLC0415
        from safety.library import load_library  # noqa: PLC0415

        if self._library is None:
            self._library = load_library()
        if str(self._journal_path) != ":memory:":
            Path(self._journal_path).parent.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(os.fspath(self._journal_path), "safety")
        self.core = SafetyCore(
            self._library,
            [
                Channel(s.name, self.drivers[s.name], self.pumps[s.name].container,
                        s.loaded_volume_ml, "mock")
                for s in self.channel_specs
            ],
            self.journal,
            clinical=self.clinical,
            liveness=self.liveness,
            timing=self._timing,
            config=self._config,
        )  # fmt: skip
        self.core.start()
        self._dispatcher = Dispatcher(
            self.core, self._key, clinical_clock="virtual", max_request_bytes=MAX_REQUEST_BYTES
        )
        self._peer = self._connect()

    def _connect(self) -> Peer:
        """A fresh connection, authenticated through the real handshake messages."""
        from safety.ipc.dispatch import Peer  # noqa: PLC0415

        peer = Peer(0, f"in-process ({self.name})")
        self._peer = peer
        self._receiver = SnapshotReceiver()  # a new connection: no history held yet
        challenge = expect(self._wire_server(self._dispatcher.greet(peer)), Challenge)
        cnonce = auth.new_nonce()
        nonce = bytes.fromhex(challenge.nonce)
        hello = Hello(
            client=self.name,
            cnonce=cnonce.hex(),
            mac=auth.client_proof(self._key, nonce, cnonce),
            history_delta=True,
        )
        answer = self._dispatcher.receive(peer, _wire_client(hello))
        welcome = expect(self._wire_server(answer.messages[0]), Welcome)
        self.info = ServerInfo(
            welcome.heartbeat_timeout_s,
            welcome.heartbeat_period_s,
            welcome.clinical_clock,
            welcome.library_hash,
        )
        return peer

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def _check_open(self) -> None:
        if self._closed:
            raise SafetyUnavailable("the local safety link is closed")

    def _call(self, message: ClientMessage) -> ServerMessage:
        self._check_open()
        answer = self._dispatcher.receive(self._peer, _wire_client(message))
        replies: list[ServerMessage] = []
        resync = False
        for sent in answer.messages:
            try:
                replies.append(self._wire_server(sent))
            except HistoryOutOfStep as exc:
                log.error("rate history out of step (%s): asking for it in full", exc.why)
                replies.append(exc.message)
                resync = True
        self._deliver_notices()
        if answer.close:  # cannot happen with messages built here; kept for parity
            self._dispatcher.disconnected(self._peer, f"protocol error: {answer.why}")
            self._peer = self._connect()
        if not replies:
            raise SafetyUnavailable(f"no answer to {message.type!r}")
        reply = replies[0]
        if resync and isinstance(reply, Reply):  # the verdict is good, its history was not
            outcome = replace(reply.outcome, snapshot=self.snapshot())
            reply = reply.model_copy(update={"outcome": outcome})
        return reply

    def _heartbeat_if_due(self) -> None:
        if not (self._attached and self._heartbeats):
            return
        if self.liveness.now() >= self._next_heartbeat:
            self._next_heartbeat = self.liveness.now() + self.info.heartbeat_period_s
            self.heartbeat()

    def _deliver_notices(self) -> None:
        for message in self._dispatcher.notices():
            if not self._dispatcher.is_for(self._peer, message):
                continue
            try:
                decoded = self._wire_server(message)
            except HistoryOutOfStep as exc:
                log.error("rate history out of step (%s): asking for it in full", exc.why)
                self._notify(StatusChanged(self.snapshot()))
                continue
            if isinstance(decoded, AlarmNotice):
                self._notify(AlarmRaised(decoded.alarm))
            elif isinstance(decoded, StatusNotice):
                self._notify(StatusChanged(decoded.snapshot))
            elif isinstance(decoded, ErrorReply):  # pragma: no cover - none are pushed
                self._notify(LinkDown(decoded.message, final=decoded.fatal))

    def _notify(self, notice: Notice) -> None:
        for callback in list(self._subscribers):
            try:
                callback(notice)
            except Exception:
                log.exception("a safety-link subscriber failed on %s", type(notice).__name__)

    def __enter__(self) -> LocalSafety:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wire_server(self, message: ServerMessage) -> ServerMessage:
        """Across the wire to this link's connection: encoded by its sender (snapshots'
        history as deltas), decoded, validated and reconstructed by its receiver.
        Raises ``HistoryOutOfStep`` as the real client would meet it."""
        line = self._peer.snapshots.encode(message)[:-1]
        return self._receiver.receive(decode_server(line))


def _wire_client(message: ClientMessage) -> bytes:
    """What the socket would carry (the newline stripped, as the framer does)."""
    return encode(message, MAX_REQUEST_BYTES)[:-1]  # the dispatcher decodes and validates it


__all__ = ["LocalChannel", "LocalSafety"]
