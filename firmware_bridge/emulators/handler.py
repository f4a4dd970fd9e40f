"""The contract between a pump's protocol end and the line that carries its bytes.

The serial line (pty, serial port or TCP socket) knows nothing of any protocol and the
protocol end knows nothing of ptys or faults. Framing and execution are separate calls on
purpose: a wire fault such as "drop the request" or "lose the acknowledgement" must act
between the moment a request is recognised and the moment it is executed or answered.
Times passed in are liveness-clock readings (``time.monotonic()``): inter-byte gaps and
safe-mode watchdogs run on real time even when the pump's physics runs on a virtual clock.
"""

from __future__ import annotations

from typing import Protocol


class WireHandler(Protocol):
    """A pump's protocol end over a byte stream."""

    #: short protocol name for logs: "ne1000", "harvard"
    protocol: str

    def feed(self, data: bytes, now: float) -> None:
        """Bytes arrived from the host at liveness time ``now``."""
        ...

    def next_request(self) -> bytes | None:
        """Take one complete request out of what was fed, or None if none is complete."""
        ...

    def handle(self, request: bytes, now: float) -> bytes | None:
        """Execute one request; the reply bytes, or None when the pump stays silent."""
        ...

    def poll(self, now: float) -> bytes | None:
        """Called often while the line is idle: watchdogs, and bytes the pump sends unasked."""
        ...

    def reset_link(self) -> None:
        """The line was (re)opened: forget any partial request."""
        ...

    def describe(self) -> dict[str, object]:
        """The protocol state as plain JSON-able values (for the control channel)."""
        ...
