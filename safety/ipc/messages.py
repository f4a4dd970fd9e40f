"""Every message between a controller and the safety process, as pydantic models.

One JSON object per line (``safety.ipc.framing``), each with a ``type`` tag and the
protocol version ``v``. Unknown fields, unknown types and another version are refused
(``extra="forbid"``, ``Literal`` tags): a message that is not exactly one of these is
not guessed at, the sender is dropped. No pickle, nothing that executes on decode.

The payloads reuse the kernel's frozen dataclasses (``RequestBody``, ``Outcome``,
``Snapshot``): pydantic validates stdlib dataclasses field by field, so the kernel, the
journal (``safety.kernel.codec``) and the wire share one definition and one JSON form.

Conversation (client ``->``, server ``<-``)::

    <- challenge {nonce}                  on connect
    -> hello {client, cnonce, mac}        mac = HMAC(key, "client" | nonce | cnonce)
    <- welcome {mac, timing, clock}       mac = HMAC(key, "server" | nonce | cnonce)
    -> attach {id}                        <- attached {id, session, snapshot}
    -> heartbeat {id, session}            <- heartbeat_ack {id, ok}
    -> request {id, session, seq, expires_at, body}  <- reply {id, outcome}
    -> get_snapshot {id}                  <- snapshot {id, snapshot}
    -> subscribe {id, on, journal}        <- subscribed {id, snapshot}
                                          <- status {snapshot} / alarm {alarm} (pushed)
                                          <- journal {lines} (pushed, if asked)
                                          <- error {id, code, message}

Roles (S17): ``hello`` names its ``role``. A controller proves the controller key; an
observer proves the observer key (a separate file) and may only ``subscribe``,
``get_snapshot`` and send liveness ``heartbeat`` pings (no session). An observer's
``attach`` or ``request`` is refused, put on record in the safety journal, and the
observer is dropped: an observer can never change an infusion or acknowledge an alarm.

History deltas (protocol 1, negotiated): a client that sends ``hello`` with
``history_delta: true`` and gets ``welcome`` with ``history_delta: true`` receives
``reply`` and ``status`` with the snapshot's ``history`` empty and
``history_delta {drop, append, length, first, last}`` beside it: the history of the
previous snapshot on this connection, ``drop`` points dropped from its front and
``append`` added at its end, checked by its ``length`` and its ``first`` and ``last``
points (``safety.ipc.snapshots``). The history of each other drug (``drugs[i].history``)
travels the same way: empty in its view, its delta in ``drug_history_deltas`` under the
drug's name, when the previous snapshot on the connection had that drug. ``attached``,
``snapshot`` and ``subscribed`` always carry the histories in full and set the base
again; so does the first snapshot on a connection. A client that did not ask (or an older
one) gets every history in full.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

import safety.kernel.codec  # noqa: F401 - sets extra="forbid" on the kernel dataclasses
from safety import status
from safety.journal_text import JournalLine
from safety.kernel.model import RequestBody
from safety.status import AlarmView, HistoryPoint, Outcome, Snapshot

PROTOCOL_VERSION = 1

#: bounds on any decimal in a request (a dose, a weight): far beyond any clinical figure
MAX_DECIMAL_DIGITS = 34
MAX_DECIMAL_EXPONENT = 24
#: a request may claim to stay valid at most this long after it reaches the safety
#: process, on the liveness clock (S8). The controller's requests live 2 s
#: (``link.DEFAULT_TTL_S``); 60 s leaves room for any honest client and still keeps S8
#: meaningful: ``expires_at = 1e308`` would make a captured command valid forever.
MAX_EXPIRY_AHEAD_S = 60.0

#: the one spelling of a decimal on the wire: ASCII digits, an optional sign, point and
#: exponent; no spaces, no other scripts' digits (``Decimal`` itself would read
#: "\uff11\uff12 " as 12), no NaN or Infinity
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)

_FORBID = ConfigDict(extra="forbid")
for _value in [*vars(status).values(), JournalLine]:
    if isinstance(_value, type) and dataclasses.is_dataclass(_value):
        _value.__pydantic_config__ = _FORBID  # type: ignore[attr-defined]

#: who a connection is: the key it proved decides what it may send
Role = Literal["controller", "observer"]

#: hex digests and nonces: 32 bytes
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
#: a request id chosen by the client to match replies; any non-negative int below 2**53
MsgId = Annotated[int, Field(ge=0, lt=2**53)]
#: a drug's name as the snapshot's drug views carry it (the library's drug id)
DrugName = Annotated[str, Field(min_length=1, max_length=64)]


class _Message(BaseModel):
    """Strict: an integer must be a JSON integer (``1e3`` and ``"5"`` are refused, not
    read as 1000 and 5), a bool a JSON bool, a string a JSON string."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = 1  # PROTOCOL_VERSION

    @model_validator(mode="before")
    @classmethod
    def _integer_version(cls, data: Any) -> Any:
        """``Literal[1]`` alone would let ``1.0`` and ``true`` pass as 1."""
        # ``type(...) is dict`` first: every decoded message is a dict, and the ABC check
        # alone cost about 2 % of a closed-loop run (docs/closed-loop.md section 9)
        mapping = type(data) is dict or isinstance(data, Mapping)
        if mapping and "v" in data and type(data["v"]) is not int:
            raise ValueError("v: the protocol version must be the JSON integer 1")
        return data


# --------------------------------------------------------------------------- client -> server


class Hello(_Message):
    """The client's answer to the challenge: who it is and the proof it holds the key."""

    type: Literal["hello"] = "hello"
    client: Annotated[str, Field(pattern=r"^[\x20-\x7e]{1,64}$")]  # printable: it is logged
    cnonce: Hex32
    mac: Hex32
    #: send the rate history in replies and status notices as a change (see above)
    history_delta: bool = False
    #: which key ``mac`` was made with (and so what this connection may send)
    role: Role = "controller"


class Attach(_Message):
    """Become the controller: a new session, and the state to re-sync from (S11)."""

    type: Literal["attach"] = "attach"
    id: MsgId


class Heartbeat(_Message):
    """'I am alive' from the controller; with ``session`` None it is only a liveness ping."""

    type: Literal["heartbeat"] = "heartbeat"
    id: MsgId
    session: Annotated[str, Field(max_length=64)] | None = None


class RequestMessage(_Message):
    """A kernel request. ``expires_at`` is on the liveness clock (``time.monotonic()``,
    system-wide on Linux), so both processes read the same clock (S8)."""

    type: Literal["request"] = "request"
    id: MsgId
    session: Annotated[str, Field(max_length=64)] | None
    seq: Annotated[int, Field(ge=0, lt=2**53)]
    expires_at: Annotated[float, Field(allow_inf_nan=False)]
    body: RequestBody

    @model_validator(mode="before")
    @classmethod
    def _decimals_as_ascii_text(cls, data: Any) -> Any:
        """The body's decimals (kernel dataclasses, shared with the journal, so not
        strict themselves) must be text in the one ASCII spelling: a JSON number would
        pass through a binary float, and ``Decimal`` reads other scripts' digits and
        surrounding spaces without a word."""
        body = data.get("body") if isinstance(data, Mapping) else None
        if not isinstance(body, Mapping):
            return data
        for path in _DECIMAL_PATHS.get(str(body.get("kind")), ()):
            value: Any = body
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                continue
            name = ".".join(("body", *path))
            if not isinstance(value, str):
                raise ValueError(
                    f'{name}: a decimal is sent as a string of ASCII digits (e.g. "8.5"), '
                    f"not as a JSON {type(value).__name__}"
                )
            if not _DECIMAL_TEXT.fullmatch(value):
                raise ValueError(
                    f"{name}: {value[:40]!r} is not a decimal in ASCII digits (no spaces, no "
                    "other digits, no NaN or Infinity)"
                )
        return data

    @model_validator(mode="after")
    def _sane_numbers(self) -> RequestMessage:
        """Refuse decimals no clinical figure has (``1E+999999999``) before the kernel
        turns one into an exact fraction: that would take the process hours."""
        for name, value in _decimals(self.body, "body"):
            if value.is_finite() and (
                len(value.as_tuple().digits) > MAX_DECIMAL_DIGITS
                or abs(value.adjusted()) > MAX_DECIMAL_EXPONENT
            ):
                raise ValueError(
                    f"{name}: {value!s:.40} is not a plausible figure (at most "
                    f"{MAX_DECIMAL_DIGITS} digits, magnitude 1e-{MAX_DECIMAL_EXPONENT} to "
                    f"1e{MAX_DECIMAL_EXPONENT})"
                )
        return self


def _decimal_paths(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Field paths of ``Decimal`` (or ``Decimal | None``) fields in a kernel dataclass,
    nested dataclasses included: what ``_decimals_as_ascii_text`` inspects."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        members = typing.get_args(hint) or (hint,)
        for member in members:
            if member is Decimal:
                yield (*prefix, f.name)
            elif dataclasses.is_dataclass(member) and isinstance(member, type):
                yield from _decimal_paths(member, (*prefix, f.name))


_DECIMAL_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    typing.get_type_hints(body)["kind"].__args__[0]: tuple(_decimal_paths(body))
    for body in typing.get_args(typing.get_args(RequestBody)[0])
}


def _decimals(value: object, path: str) -> Iterator[tuple[str, Decimal]]:
    if isinstance(value, Decimal):
        yield path, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _decimals(getattr(value, f.name), f"{path}.{f.name}")


class GetSnapshot(_Message):
    type: Literal["get_snapshot"] = "get_snapshot"
    id: MsgId


class Subscribe(_Message):
    """Ask for (``on``) or stop (``not on``) pushed status and alarm notifications."""

    type: Literal["subscribe"] = "subscribe"
    id: MsgId
    on: bool = True
    #: also stream the safety journal (``journal`` notices), starting with its tail
    journal: bool = False


ClientMessage = Annotated[
    Hello | Attach | Heartbeat | RequestMessage | GetSnapshot | Subscribe,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- server -> client


class Challenge(_Message):
    type: Literal["challenge"] = "challenge"
    server: str
    nonce: Hex32


class Welcome(_Message):
    """Authenticated. ``mac`` proves the server holds the key too; the timing tells the
    client how often to send heartbeats and how long silence means the server is gone."""

    type: Literal["welcome"] = "welcome"
    mac: Hex32
    heartbeat_timeout_s: float
    heartbeat_period_s: float
    clinical_clock: str  # "real", "scaled:SCALE:ORIGIN:CLINICAL" or "virtual"
    library_hash: str
    max_request_bytes: int
    #: the client's ``history_delta`` granted
    history_delta: bool = False
    role: Role = "controller"


class Attached(_Message):
    type: Literal["attached"] = "attached"
    id: MsgId
    session: str
    snapshot: Snapshot


class HeartbeatAck(_Message):
    """``ok`` False: the session is not (or no longer) the attached one: re-attach."""

    type: Literal["heartbeat_ack"] = "heartbeat_ack"
    id: MsgId
    ok: bool


class HistoryDelta(BaseModel):
    """The snapshot's history as a change from the previous one on this connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drop: Annotated[int, Field(ge=0)]  # points dropped from the front
    append: tuple[HistoryPoint, ...]  # points added at the end
    length: Annotated[int, Field(ge=0)]  # the check: points in the result
    first: HistoryPoint | None  # ... its first and last points (None when empty)
    last: HistoryPoint | None


class Reply(_Message):
    type: Literal["reply"] = "reply"
    id: MsgId
    outcome: Outcome
    history_delta: HistoryDelta | None = None
    #: drug -> the delta of that drug's own history (its view's ``history``)
    drug_history_deltas: dict[DrugName, HistoryDelta] | None = None


class SnapshotReply(_Message):
    type: Literal["snapshot"] = "snapshot"
    id: MsgId
    snapshot: Snapshot


class Subscribed(_Message):
    type: Literal["subscribed"] = "subscribed"
    id: MsgId
    on: bool
    snapshot: Snapshot


class StatusNotice(_Message):
    """Pushed when the snapshot changed (beyond the passing of clinical time), to every
    subscriber but one that was last sent that same state (a requester, in its reply)."""

    type: Literal["status"] = "status"
    snapshot: Snapshot
    history_delta: HistoryDelta | None = None
    drug_history_deltas: dict[DrugName, HistoryDelta] | None = None


class AlarmNotice(_Message):
    """Pushed once per newly raised alarm, before the status notice that shows it (to a
    requester whose request raised it, after the reply that shows it)."""

    type: Literal["alarm"] = "alarm"
    alarm: AlarmView


class JournalNotice(_Message):
    """Safety-journal entries worth a line (``safety.journal_text.JournalTail``), in
    order; the first one after ``subscribe`` carries the journal's recent tail."""

    type: Literal["journal"] = "journal"
    #: not strict: pydantic's strict mode refuses a JSON array as a tuple
    lines: Annotated[tuple[JournalLine, ...], Field(strict=False)]


class ErrorCode(enum.StrEnum):
    BAD_MESSAGE = "bad_message"  # not JSON, not a known message, too long: dropped
    AUTH_FAILED = "auth_failed"  # wrong key: dropped
    NOT_AUTHENTICATED = "not_authenticated"  # anything before hello: dropped
    CONTROLLER_ATTACHED = "controller_attached"  # another live controller holds the session
    TOO_MANY_CLIENTS = "too_many_clients"
    TOO_SLOW = "too_slow"  # a client that does not read, or stalls mid-line: dropped
    READ_ONLY = "read_only"  # an observer tried to command: refused, on record, dropped
    SHUTTING_DOWN = "shutting_down"


class ErrorReply(_Message):
    type: Literal["error"] = "error"
    id: MsgId | None = None
    code: ErrorCode
    message: str
    fatal: bool  # the server closes the connection after sending it


ServerMessage = Annotated[
    Challenge
    | Welcome
    | Attached
    | HeartbeatAck
    | Reply
    | SnapshotReply
    | Subscribed
    | StatusNotice
    | AlarmNotice
    | JournalNotice
    | ErrorReply,
    Field(discriminator="type"),
]

CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)

__all__ = [
    "CLIENT_MESSAGE",
    "MAX_EXPIRY_AHEAD_S",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGE",
    "AlarmNotice",
    "Attach",
    "Attached",
    "Challenge",
    "ClientMessage",
    "ErrorCode",
    "ErrorReply",
    "GetSnapshot",
    "Heartbeat",
    "HeartbeatAck",
    "Hello",
    "HistoryDelta",
    "JournalNotice",
    "Reply",
    "RequestMessage",
    "Role",
    "ServerMessage",
    "SnapshotReply",
    "StatusNotice",
    "Subscribe",
    "Subscribed",
    "Welcome",
]
