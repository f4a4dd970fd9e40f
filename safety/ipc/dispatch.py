"""The server's side of the protocol, without sockets: one line in, messages out.

``SafetyServer`` (real sockets) and ``LocalSafety`` (in one process) both use this class,
so the in-process link exercises the same authentication, session binding and message
validation as the real one. It moves messages to and from ``SafetyCore`` and decides
nothing about the infusion; what it does decide is who may speak:

- nothing but ``hello`` before the key is proven; a wrong proof changes nothing and is
  logged; any line that is not a valid message drops the sender;
- a session belongs to the connection that attached it: a request carrying a session
  its connection does not hold reaches the kernel with a session that matches nothing,
  so the kernel refuses it (and journals the refusal) like any other stray request.
  ``EmergencyStop`` from any authenticated connection reaches the kernel as the local
  stop button would (S12 needs no session);
- only one live controller: ``attach`` is refused while another connection's session
  is attached and alive; once the safety process has let it go (EOF, heartbeat timeout:
  S11) anyone authenticated may attach and re-sync;
- the attached connection's loss (EOF, socket error, protocol error) is reported to the
  core at once: ``controller_lost`` (S11);
- an observer (it proved the observer key, not the controller's) may read and subscribe,
  never command (S17): its ``attach`` or ``request`` is refused, put on record in the
  safety journal (``SafetyCore.refuse_observer``, ``client_dropped``) and it is dropped;
- a request whose ``expires_at`` lies more than ``MAX_EXPIRY_AHEAD_S`` ahead of the
  liveness clock is not a message of this protocol (S8 would never expire it): dropped,
  the field named.

The journal stream: a peer that subscribes with ``journal`` gets the journal's recent
tail at once and then every new entry worth a line (``safety.journal_text``), read back
from the journal itself after each change, so an observer sees exactly what is on disk.
Nothing is read while no one asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from safety.host.core import SafetyCore
from safety.ipc import auth
from safety.ipc.framing import FrameError, decode_client
from safety.ipc.messages import (
    MAX_EXPIRY_AHEAD_S,
    PROTOCOL_VERSION,
    AlarmNotice,
    Attach,
    Attached,
    Challenge,
    ClientMessage,
    ErrorCode,
    ErrorReply,
    GetSnapshot,
    Heartbeat,
    HeartbeatAck,
    Hello,
    JournalNotice,
    Reply,
    RequestMessage,
    Role,
    ServerMessage,
    SnapshotReply,
    StatusNotice,
    Subscribe,
    Subscribed,
    Welcome,
)
from safety.ipc.snapshots import SnapshotSender, differs
from safety.journal import JournalEntry
from safety.journal_text import JournalLine, JournalTail, ProgramTracker
from safety.kernel.codec import decode_event
from safety.kernel.model import EmergencyStop, Event, ProgramLoaded, Request, RequestMeta
from safety.status import Snapshot

log = logging.getLogger("safety.ipc")

SERVER_NAME = "pumpctl-safety"
#: the session the kernel sees on a request from a connection that holds none
NO_SESSION = "(none: not the attached connection)"
#: journal entries read back to build a new journal reader's tail, and lines sent of it
TAIL_SCAN = 200
TAIL_LINES = 50

#: decides whether an authenticated peer of a role gets a slot: None, or why not
Admit = Callable[["Peer", Role], str | None]


@dataclass(eq=False)
class Peer:
    """One connection's protocol state."""

    id: int
    label: str  # for logs: "pid 1234 uid 1000"
    nonce: bytes = field(default_factory=auth.new_nonce)
    authenticated: bool = False
    client: str = ""
    role: Role = "controller"
    session: str | None = None
    subscribed: bool = False
    #: also gets the journal stream
    journal: bool = False
    #: every message to this peer is encoded here (its snapshots' history as deltas)
    snapshots: SnapshotSender = field(default_factory=SnapshotSender)

    def describe(self) -> str:
        who = f" ({self.client})" if self.client else ""
        return f"client #{self.id} [{self.label}]{who}"


@dataclass(frozen=True)
class Answer:
    """What to send back to the peer, and whether to hang up afterwards."""

    messages: tuple[ServerMessage, ...] = ()
    close: bool = False
    why: str = ""
    #: the hang-up is already in the safety journal (an observer that tried to command)
    recorded: bool = False


class Dispatcher:
    def __init__(
        self,
        core: SafetyCore,
        key: bytes,
        *,
        clinical_clock: str,
        max_request_bytes: int,
        heartbeat_period_s: float | None = None,
        observer_key: bytes | None = None,
    ) -> None:
        """``observer_key`` None: no observer can authenticate."""
        self.core = core
        self._key = key
        self._observer_key = observer_key
        #: the server's slot policy; the in-process link admits everyone
        self.admit: Admit = lambda _peer, _role: None
        self._clinical_clock = clinical_clock
        self._max_request_bytes = max_request_bytes
        timeout = core.timing.heartbeat_timeout_s
        self.heartbeat_period_s = heartbeat_period_s or timeout / 4.0
        self.attached: Peer | None = None
        first = core.snapshot()
        self._pushed: Snapshot = first
        #: the core changed since the last status push was considered
        self._changed_since_push = False
        self._seen_alarms = {(a.key, a.raised_at) for a in first.alarms}
        self._alarm_queue: list[AlarmNotice] = []
        previous = core.on_change
        self._previous_hook: Callable[[], None] | None = previous
        core.on_change = self._changed
        #: the snapshot of the reply last sent, until the next push looks at it
        self._answered: Snapshot | None = None
        self._journal_readers: set[int] = set()  # peer ids
        self._journal_cursor = 0  # last entry id streamed
        self._journal_stream: JournalTail | None = None
        self._journal_dirty = False

    # ------------------------------------------------------------------ connection life
    def greet(self, peer: Peer) -> Challenge:
        return Challenge(server=SERVER_NAME, nonce=peer.nonce.hex())

    def receive(self, peer: Peer, line: bytes) -> Answer:
        """Decode one line and handle it; a bad line drops the peer (logged)."""
        try:
            message = decode_client(line)
        except FrameError as exc:
            return self.reject(peer, ErrorCode.BAD_MESSAGE, f"invalid message: {exc}")
        return self.handle(peer, message)

    def reject(self, peer: Peer, code: ErrorCode, message: str) -> Answer:
        """Drop a peer for a protocol violation; log it (the process keeps running)."""
        log.warning("%s dropped: %s", peer.describe(), message)
        return Answer((ErrorReply(code=code, message=message, fatal=True),), True, message)

    def disconnected(self, peer: Peer, why: str) -> None:
        """The peer's connection is gone. If it was the controller: S11, now."""
        self._journal_readers.discard(peer.id)
        if self.attached is not peer:
            return
        self.attached = None
        if self.core.state.attached and self.core.state.session == peer.session:
            log.error("controller %s lost: %s", peer.describe(), why)
            self.core.controller_lost(why)

    # ------------------------------------------------------------------ messages
    def handle(self, peer: Peer, message: ClientMessage) -> Answer:
        if not peer.authenticated:
            if isinstance(message, Hello):
                return self._hello(peer, message)
            return self.reject(
                peer, ErrorCode.NOT_AUTHENTICATED, f"{message.type!r} before authentication"
            )
        if isinstance(message, Hello):
            return self.reject(peer, ErrorCode.BAD_MESSAGE, "hello sent twice")
        if peer.role == "observer" and isinstance(message, RequestMessage | Attach):
            return self._observer_commands(peer, message)
        if isinstance(message, RequestMessage):
            ahead = message.expires_at - self.core.liveness.now()
            if ahead > MAX_EXPIRY_AHEAD_S:
                return self.reject(
                    peer,
                    ErrorCode.BAD_MESSAGE,
                    f"invalid message: request.expires_at: {message.expires_at:g} is "
                    f"{ahead:.6g} s after now on the liveness clock; at most "
                    f"{MAX_EXPIRY_AHEAD_S:g} s is allowed (S8)",
                )
            outcome = self.core.handle(self._request(peer, message))
            self._answered = outcome.snapshot
            return Answer((Reply(id=message.id, outcome=outcome),))
        if isinstance(message, Heartbeat):
            ok = (
                message.session is not None
                and message.session == peer.session
                and self.core.heartbeat(message.session)
            )
            return Answer((HeartbeatAck(id=message.id, ok=ok),))
        if isinstance(message, Attach):
            return self._attach(peer, message)
        if isinstance(message, GetSnapshot):
            return Answer((SnapshotReply(id=message.id, snapshot=self.core.snapshot()),))
        assert isinstance(message, Subscribe)
        peer.subscribed = message.on
        subscribed = Subscribed(id=message.id, on=message.on, snapshot=self.core.snapshot())
        if not (message.on and message.journal):
            peer.journal = False
            self._journal_readers.discard(peer.id)
            return Answer((subscribed,))
        peer.journal = True
        self._journal_readers.add(peer.id)
        return Answer((subscribed, JournalNotice(lines=self._journal_tail())))

    def _observer_commands(self, peer: Peer, message: RequestMessage | Attach) -> Answer:
        """S17: refused, on record in the safety journal, and the observer dropped."""
        if isinstance(message, RequestMessage):
            verdict = self.core.refuse_observer(message.body, peer.describe())
            text = verdict.message
        else:
            text = f"refused: {peer.describe()} is an observer (read-only); it cannot attach"
            self.core.client_dropped(peer.describe(), "observer", "tried to attach")
        log.error("%s (S17)", text)
        error = ErrorReply(id=message.id, code=ErrorCode.READ_ONLY, message=text, fatal=True)
        return Answer((error,), True, text, recorded=True)

    def _hello(self, peer: Peer, hello: Hello) -> Answer:
        cnonce = bytes.fromhex(hello.cnonce)
        key = self._key if hello.role == "controller" else self._observer_key
        if key is None:
            return self.reject(
                peer,
                ErrorCode.AUTH_FAILED,
                f"authentication failed (client {hello.client!r}): this safety process has "
                "no observer key",
            )
        expected = auth.client_proof(key, peer.nonce, cnonce)
        if not auth.proofs_match(expected, hello.mac):
            return self.reject(
                peer,
                ErrorCode.AUTH_FAILED,
                f"authentication failed (client {hello.client!r}, role {hello.role})",
            )
        refusal = self.admit(peer, hello.role)
        if refusal is not None:
            return self.reject(peer, ErrorCode.TOO_MANY_CLIENTS, refusal)
        peer.authenticated = True
        peer.client = hello.client
        peer.role = hello.role
        peer.snapshots.delta = hello.history_delta
        log.info("%s authenticated as %s", peer.describe(), hello.role)
        return Answer(
            (
                Welcome(
                    mac=auth.server_proof(key, peer.nonce, cnonce),
                    heartbeat_timeout_s=self.core.timing.heartbeat_timeout_s,
                    heartbeat_period_s=self.heartbeat_period_s,
                    clinical_clock=self._clinical_clock,
                    library_hash=(
                        self.core.library.content_hash if self.core.library is not None else ""
                    ),
                    max_request_bytes=self._max_request_bytes,
                    history_delta=hello.history_delta,
                    role=hello.role,
                ),
            )
        )

    def _attach(self, peer: Peer, message: Attach) -> Answer:
        holder = self.attached
        state = self.core.state
        if (
            holder is not None
            and holder is not peer
            and state.attached
            and state.session == holder.session
        ):
            return Answer(
                (
                    ErrorReply(
                        id=message.id,
                        code=ErrorCode.CONTROLLER_ATTACHED,
                        message=(
                            f"another controller ({holder.describe()}) is attached and alive; "
                            "it must close or miss its heartbeats first"
                        ),
                        fatal=False,
                    ),
                )
            )
        session, snapshot = self.core.attach()
        self.attached = peer
        peer.session = session
        peer.subscribed = True
        log.info("controller attached: %s, session %s", peer.describe(), session)
        return Answer((Attached(id=message.id, session=session, snapshot=snapshot),))

    def _request(self, peer: Peer, message: RequestMessage) -> Request:
        owned = message.session is not None and message.session == peer.session
        if owned:
            assert message.session is not None
            meta = RequestMeta(message.session, message.seq, message.expires_at)
            return Request(meta, message.body)
        if isinstance(message.body, EmergencyStop):
            return Request(None, message.body)
        if message.session is not None:
            log.warning(
                "%s sent a request with a session it does not hold; the kernel will refuse it",
                peer.describe(),
            )
        return Request(RequestMeta(NO_SESSION, message.seq, message.expires_at), message.body)

    # ------------------------------------------------------------------ notifications
    def _changed(self) -> None:
        """After every journaled event: alarms are looked at now (one raised and gone
        before the next push is still announced); the status snapshot waits for the push,
        which shows the state as it is then."""
        self._changed_since_push = True
        self._journal_dirty = True
        for alarm in self.core.alarm_views():
            ident = (alarm.key, alarm.raised_at)
            if alarm.active and ident not in self._seen_alarms:
                self._seen_alarms.add(ident)
                self._alarm_queue.append(AlarmNotice(alarm=alarm))
        if self._previous_hook is not None:
            self._previous_hook()

    def notices(self) -> list[ServerMessage]:
        """Pushes due since the last call: new alarms first, then the status if changed,
        then the journal's new lines (for journal readers only: ``JournalNotice``)."""
        out: list[ServerMessage] = list(self._alarm_queue)
        self._alarm_queue.clear()
        lines = self._journal_news()
        if lines:
            out.append(JournalNotice(lines=lines))
        answered, self._answered = self._answered, None
        if self._changed_since_push:
            self._changed_since_push = False
            latest = self.core.settled_snapshot(answered)
            if differs(latest, self._pushed):
                out.append(StatusNotice(snapshot=latest))
                self._pushed = latest
                # forget alarms that left the book: raised again later, they are news again
                self._seen_alarms &= {(a.key, a.raised_at) for a in latest.alarms}
        return out

    @staticmethod
    def is_for(peer: Peer, notice: ServerMessage) -> bool:
        """Whether to push ``notice`` to a subscribed ``peer``: journal lines only to a
        journal reader; a status, not when it is the one the peer was last sent (a
        requester has the state its request left in the reply's outcome)."""
        if isinstance(notice, JournalNotice):
            return peer.journal
        return not (isinstance(notice, StatusNotice) and peer.snapshots.holds(notice.snapshot))

    # ------------------------------------------------------------------ the journal stream
    def _journal_tail(self) -> tuple[JournalLine, ...]:
        """The last lines of the journal for a new reader; starts the stream if idle."""
        journal = self.core.journal
        last = journal.last_id()
        events = _decoded(journal.entries(since_id=max(0, last - TAIL_SCAN)))
        loaded_here = any(isinstance(event, ProgramLoaded) for _, event in events)
        # with no program loaded in the scanned entries, the one in force now was in force
        # for all of them; otherwise the tracker learns each from its ProgramLoaded
        current = None if loaded_here else self.core.state.drug_program
        tail = JournalTail(ProgramTracker(current))
        lines = [line for ident, event in events if (line := tail.line(ident, event))]
        if self._journal_stream is None or len(self._journal_readers) <= 1:
            self._journal_stream, self._journal_cursor = tail, last
            self._journal_dirty = False
        return tuple(lines[-TAIL_LINES:])

    def _journal_news(self) -> tuple[JournalLine, ...]:
        if not self._journal_readers:
            self._journal_stream = None
            return ()
        stream = self._journal_stream
        if stream is None or not self._journal_dirty:
            return ()
        self._journal_dirty = False
        events = _decoded(self.core.journal.entries(since_id=self._journal_cursor))
        if events:
            self._journal_cursor = events[-1][0]
        return tuple(line for ident, event in events if (line := stream.line(ident, event)))


def _decoded(entries: Iterable[JournalEntry]) -> list[tuple[int, Event]]:
    """(id, event) of each entry that decodes (one that does not is the replay's
    business, not the stream's: it is left out)."""
    out: list[tuple[int, Event]] = []
    for entry in entries:
        try:
            out.append((entry.id, decode_event(entry.payload)))
        except ValidationError:
            log.warning("journal entry %d (%s) left out of the stream", entry.id, entry.kind)
    return out


__all__ = ["NO_SESSION", "PROTOCOL_VERSION", "SERVER_NAME", "Answer", "Dispatcher", "Peer"]
