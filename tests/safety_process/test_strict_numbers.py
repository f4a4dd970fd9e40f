"""Numbers the protocol refuses (issue 9): each is a bad message naming its field.

Decoding alone (no socket): full-width digits, a trailing space, ``1e3`` as a sequence
number, a dose as a JSON float, ``1.0`` as the version; and the expiry bound, at the
dispatcher, on a virtual liveness clock: exactly ``MAX_EXPIRY_AHEAD_S`` ahead reaches the
kernel, one microsecond more is refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from safety.ipc import auth
from safety.ipc.dispatch import Dispatcher, Peer
from safety.ipc.framing import MAX_REQUEST_BYTES, BadMessage, decode_client, encode
from safety.ipc.local import LocalSafety
from safety.ipc.messages import (
    MAX_EXPIRY_AHEAD_S,
    Attach,
    Attached,
    ErrorCode,
    ErrorReply,
    Hello,
    Reply,
    RequestMessage,
)
from safety.kernel.model import ChangeDose


def request(**changes: Any) -> bytes:
    message: dict[str, Any] = {
        "v": 1,
        "type": "request",
        "id": 1,
        "session": "s",
        "seq": 1,
        "expires_at": 5.0,
        "body": {"kind": "change_dose", "dose": "8"},
    }
    body = changes.pop("body", None)
    message.update(changes)
    if body is not None:
        message["body"] = {**message["body"], **body}
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def test_the_honest_form_is_accepted() -> None:
    decoded = decode_client(request())
    assert isinstance(decoded, RequestMessage) and decoded.body == ChangeDose(Decimal(8))
    small = decode_client(request(body={"dose": "0.125"}))
    assert isinstance(small, RequestMessage) and small.body == ChangeDose(Decimal("0.125"))


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (request(seq="\uff11\uff12"), "seq", "valid integer"),  # full-width 12
        (request(seq="12"), "seq", "valid integer"),
        (request(seq=1e3), "seq", "valid integer"),
        (request(seq=True), "seq", "valid integer"),
        (request(id=1.0), "id", "valid integer"),
        (request(v=1.0), "v", "JSON integer"),
        (request(expires_at="5"), "expires_at", "valid number"),
        (request(body={"dose": "\uff18"}), "body.dose", "ASCII digits"),  # full-width 8
        (request(body={"dose": "8 "}), "body.dose", "ASCII digits"),
        (request(body={"dose": " 8"}), "body.dose", "ASCII digits"),
        (request(body={"dose": "\u0668"}), "body.dose", "ASCII digits"),  # Arabic-Indic 8
        (request(body={"dose": "Infinity"}), "body.dose", "ASCII digits"),
        (request(body={"dose": 8.5}), "body.dose", "not as a JSON float"),
        (request(body={"dose": 8}), "body.dose", "not as a JSON int"),
        (
            request(
                body={
                    "kind": "load_program",
                    "dose": None,
                    "spec": {
                        "library_hash": "x",
                        "drug": "d",
                        "profile": "p",
                        "therapy": "t",
                        "concentration": "4 mg/250 mL",
                        "diluent": "D5W",
                        "weight_kg": "\uff17\uff10",
                    },
                }
            ),
            "body.spec.weight_kg",
            "ASCII digits",
        ),
    ],
)
def test_numbers_in_another_form_are_refused_naming_the_field(
    line: bytes, field: str, words: str
) -> None:
    with pytest.raises(BadMessage) as info:
        decode_client(line)
    text = str(info.value)
    assert field in text and words in text, text


def test_a_bool_is_not_a_version() -> None:
    with pytest.raises(BadMessage, match="JSON integer"):
        decode_client(b'{"v":true,"type":"get_snapshot","id":1}')


# --------------------------------------------------------------------------- expiry bound


@pytest.fixture
def link() -> Any:
    with LocalSafety() as local:
        yield local


def _controller(link: LocalSafety) -> tuple[Dispatcher, Peer, str]:
    """A second dispatcher on the link's core, a peer authenticated and attached on it."""
    key = bytes(32)
    dispatcher = Dispatcher(
        link.core, key, clinical_clock="virtual", max_request_bytes=MAX_REQUEST_BYTES
    )
    peer = Peer(1, "test")
    cnonce = auth.new_nonce()
    hello = Hello(client="t", cnonce=cnonce.hex(), mac=auth.client_proof(key, peer.nonce, cnonce))
    assert not dispatcher.handle(peer, hello).close
    attached = dispatcher.handle(peer, Attach(id=1)).messages[0]
    assert isinstance(attached, Attached)
    return dispatcher, peer, attached.session


def _send(dispatcher: Dispatcher, peer: Peer, session: str, seq: int, expires_at: float) -> Any:
    message = RequestMessage(
        id=seq, session=session, seq=seq, expires_at=expires_at, body=ChangeDose(Decimal(8))
    )
    return dispatcher.receive(peer, encode(message)[:-1])


def test_an_expiry_at_the_bound_reaches_the_kernel_one_step_past_is_dropped(
    link: LocalSafety,
) -> None:
    dispatcher, peer, session = _controller(link)
    now = link.liveness.now()
    at = _send(dispatcher, peer, session, 1, now + MAX_EXPIRY_AHEAD_S)
    assert not at.close and isinstance(at.messages[0], Reply)  # decided (not infusing)
    past = _send(dispatcher, peer, session, 2, now + MAX_EXPIRY_AHEAD_S + 1e-6)
    assert past.close
    error = past.messages[0]
    assert isinstance(error, ErrorReply) and error.code is ErrorCode.BAD_MESSAGE
    assert "expires_at" in error.message and "60 s" in error.message


def test_an_expiry_of_1e308_never_reaches_the_kernel(link: LocalSafety) -> None:
    dispatcher, peer, session = _controller(link)
    decided = len(list(link.journal.entries(kinds=["request_decided"])))
    answer = _send(dispatcher, peer, session, 1, 1e308)
    assert answer.close and "expires_at" in answer.why
    assert len(list(link.journal.entries(kinds=["request_decided"]))) == decided
