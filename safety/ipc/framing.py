"""Newline-delimited JSON with a hard size limit, and strict decoding into messages.

The safety process reads from sockets whose other end may be buggy or hostile, so this
layer bounds what it holds in memory (``MAX_REQUEST_BYTES`` per client line, the line
buffer never grows beyond it) and turns every way a line can be wrong into one error
type, ``FrameError``: too long, not UTF-8, not JSON, not one of the messages. The server
catches exactly that, drops the client and logs why; nothing else can escape from here,
whatever bytes arrive (a property test feeds it arbitrary bytes).

The server's own lines (replies with a snapshot and its rate history) may be larger than
a client's, so the client reads with the larger ``MAX_SERVER_BYTES``.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from safety.ipc.messages import CLIENT_MESSAGE, SERVER_MESSAGE, ClientMessage, ServerMessage

#: largest line a client may send (a request is a few hundred bytes)
MAX_REQUEST_BYTES = 64 * 1024
#: largest line the server sends (a snapshot carries up to ~25 h of rate history)
MAX_SERVER_BYTES = 4 * 1024 * 1024

_NEWLINE = b"\n"


class FrameError(ValueError):
    """A line that is not an acceptable message; the message says why (for the log)."""


class FrameTooLong(FrameError):
    """More bytes than the limit without a newline."""


class BadMessage(FrameError):
    """A complete line that is not valid JSON or not one of the protocol's messages."""


class LineFramer:
    """Split a byte stream into lines of at most ``max_bytes`` (newline excluded)."""

    def __init__(self, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of a line not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in ``data`` (after what came before); raise ``FrameTooLong``.

        After an error the framer is unusable: the stream has lost its framing, and the
        only safe answer is to drop the connection.
        """
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(_NEWLINE, start)
            if end < 0:
                break
            chunk = data[start:end]
            if len(self._buffer) + len(chunk) > self.max_bytes:
                self._poison()
            if self._buffer:
                self._buffer += chunk
                lines.append(bytes(self._buffer))
                self._buffer.clear()
            else:
                lines.append(bytes(chunk))
            start = end + 1
        rest = data[start:]
        if len(self._buffer) + len(rest) > self.max_bytes:
            self._poison()
        self._buffer += rest
        return lines

    def _poison(self) -> None:
        size = len(self._buffer)
        self._buffer.clear()
        raise FrameTooLong(
            f"a line longer than {self.max_bytes} bytes (at least {size} held without a "
            "newline): not a protocol message"
        )


def encode(message: BaseModel, max_bytes: int = MAX_SERVER_BYTES) -> bytes:
    """One line: compact JSON (never contains a raw newline) and the newline."""
    data = message.model_dump_json().encode("utf-8")
    if len(data) > max_bytes:
        raise FrameTooLong(
            f"{type(message).__name__} is {len(data)} bytes, over the {max_bytes}-byte limit"
        )
    return data + _NEWLINE


def decode_client(line: bytes) -> ClientMessage:
    """A client line -> its message, or ``BadMessage`` saying what is wrong with it."""
    try:
        return CLIENT_MESSAGE.validate_json(line)
    except ValidationError as exc:
        raise BadMessage(_summary(exc)) from None
    except (ValueError, RecursionError) as exc:  # defensive: pydantic raises only the above
        raise BadMessage(f"undecodable line: {type(exc).__name__}") from None


def decode_server(line: bytes) -> ServerMessage:
    try:
        return SERVER_MESSAGE.validate_json(line)
    except ValidationError as exc:
        raise BadMessage(_summary(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"undecodable line: {type(exc).__name__}") from None


def _summary(exc: ValidationError, limit: int = 3) -> str:
    """The first few problems, field path and message, without echoing the input."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_SERVER_BYTES",
    "BadMessage",
    "FrameError",
    "FrameTooLong",
    "LineFramer",
    "decode_client",
    "decode_server",
    "encode",
]
