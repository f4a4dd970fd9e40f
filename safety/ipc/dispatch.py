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
  core at once: ``controller_lost`` (S11).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from safety.host.core import SafetyCore
from safety.ipc import auth
from safety.ipc.framing import FrameError, decode_client
from safety.ipc.messages import (
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
    Reply,
    RequestMessage,
    ServerMessage,
    SnapshotReply,
    StatusNotice,
    Subscribe,
    Subscribed,
    Welcome,
)
from safety.ipc.snapshots import SnapshotSender, differs
from safety.kernel.model import EmergencyStop, Request, RequestMeta
from safety.status import Snapshot

log = logging.getLogger("safety.ipc")

SERVER_NAME = "pumpctl-safety"
#: the session the kernel sees on a request from a connection that holds none
NO_SESSION = "(none: not the attached connection)"


@dataclass(eq=False)
class Peer:
    """One connection's protocol state."""

    id: int
    label: str  # for logs: "pid 1234 uid 1000"
    nonce: bytes = field(default_factory=auth.new_nonce)
    authenticated: bool = False
    client: str = ""
    session: str | None = None
    subscribed: bool = False
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


class Dispatcher:
    def __init__(
        self,
        core: SafetyCore,
        key: bytes,
        *,
        clinical_clock: str,
        max_request_bytes: int,
        heartbeat_period_s: float | None = None,
    ) -> None:
        self.core = core
        self._key = key
        self._clinical_clock = clinical_clock
        self._max_request_bytes = max_request_bytes
        timeout = core.timing.heartbeat_timeout_s
        self.heartbeat_period_s = heartbeat_period_s or timeout / 4.0
        self.attached: Peer | None = None
        first = core.snapshot()
        self._pushed: Snapshot = first
        self._latest: Snapshot = first
        self._seen_alarms = {(a.key, a.raised_at) for a in first.alarms}
        self._alarm_queue: list[AlarmNotice] = []
        previous = core.on_change
        self._previous_hook: Callable[[Snapshot], None] | None = previous
        core.on_change = self._changed

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
        if isinstance(message, RequestMessage):
            outcome = self.core.handle(self._request(peer, message))
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
        return Answer((Subscribed(id=message.id, on=message.on, snapshot=self.core.snapshot()),))

    def _hello(self, peer: Peer, hello: Hello) -> Answer:
        cnonce = bytes.fromhex(hello.cnonce)
        expected = auth.client_proof(self._key, peer.nonce, cnonce)
        if not auth.proofs_match(expected, hello.mac):
            return self.reject(
                peer, ErrorCode.AUTH_FAILED, f"authentication failed (client {hello.client!r})"
            )
        peer.authenticated = True
        peer.client = hello.client
        peer.snapshots.delta = hello.history_delta
        log.info("%s authenticated", peer.describe())
        return Answer(
            (
                Welcome(
                    mac=auth.server_proof(self._key, peer.nonce, cnonce),
                    heartbeat_timeout_s=self.core.timing.heartbeat_timeout_s,
                    heartbeat_period_s=self.heartbeat_period_s,
                    clinical_clock=self._clinical_clock,
                    library_hash=(
                        self.core.library.content_hash if self.core.library is not None else ""
                    ),
                    max_request_bytes=self._max_request_bytes,
                    history_delta=hello.history_delta,
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
    def _changed(self, snapshot: Snapshot) -> None:
        self._latest = snapshot
        for alarm in snapshot.alarms:
            ident = (alarm.key, alarm.raised_at)
            if alarm.active and ident not in self._seen_alarms:
                self._seen_alarms.add(ident)
                self._alarm_queue.append(AlarmNotice(alarm=alarm))
        if self._previous_hook is not None:
            self._previous_hook(snapshot)

    def notices(self) -> list[ServerMessage]:
        """Pushes due since the last call: new alarms first, then the status if changed."""
        out: list[ServerMessage] = list(self._alarm_queue)
        self._alarm_queue.clear()
        latest = self._latest
        if differs(latest, self._pushed):
            out.append(StatusNotice(snapshot=latest))
            self._pushed = latest
            # forget alarms that left the book: raised again later, they are news again
            self._seen_alarms &= {(a.key, a.raised_at) for a in latest.alarms}
        return out


__all__ = ["NO_SESSION", "PROTOCOL_VERSION", "SERVER_NAME", "Answer", "Dispatcher", "Peer"]
