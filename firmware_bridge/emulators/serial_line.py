"""Serve a pump's protocol end over an endpoint, with wire faults, logging every frame.

One thread runs ``SerialLine.serve``: it reads what the host sends, lets the protocol end
cut it into requests, consults ``WireFaults`` once per request and then executes, answers,
corrupts, delays or swallows accordingly. Everything on the wire is logged as hex plus a
printable rendering, so a failing hardware-in-the-loop run can be read byte by byte.

Fault semantics (``firmware_bridge.faults.ReplyAction``):
- drop: the request is lost on its way in: not executed, no reply;
- lose_ack: executed, the reply is lost (the host cannot tell whether it took effect);
- corrupt: executed, one byte of the reply (the middle one) has its lowest bit flipped;
- garbage: not executed, random bytes come back instead;
- silent: not executed, nothing comes back (also suppresses unsolicited packets);
- delay: the reply leaves after the given real-time delay;
- disconnect: the endpoint closes as if the cable were pulled; a pty comes back after
  ``reopen_after_s`` under the same link name (if one was given), a TCP server keeps
  listening for the host to reconnect.

``pace_baud`` (off by default) writes replies at that baud rate's speed instead of at
once (``firmware_bridge.emulators.pacing``), for benchmarks against the wire time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from firmware_bridge.emulators.endpoints import Endpoint
from firmware_bridge.emulators.handler import WireHandler
from firmware_bridge.emulators.pacing import Pacer
from firmware_bridge.faults import ReplyAction, WireFaults

#: how long one read waits before the line looks at watchdogs and faults again
POLL_INTERVAL_S = 0.01


def render(data: bytes) -> str:
    """Hex and printable rendering of a frame, e.g. ``02 30 30 53 03 |.00S.|``."""
    printable = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
    return f"{data.hex(' ')} |{printable}|"


class SerialLine:
    """A protocol end served over one endpoint, with wire faults applied per request."""

    def __init__(
        self,
        handler: WireHandler,
        endpoint: Endpoint,
        wire: WireFaults,
        *,
        log: Callable[[str], None] = lambda line: None,
        reopen_after_s: float | None = 0.5,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        pace_baud: int | None = None,
    ) -> None:
        self.handler = handler
        self.endpoint = endpoint
        self.wire = wire
        self._log = log
        self._reopen_after_s = reopen_after_s
        self._rng = rng or random.Random(0)
        self._now = clock
        self._pacer = Pacer(pace_baud, clock=clock) if pace_baud is not None else None
        self._reopen_at: float | None = None
        self.requests = 0
        self.disconnects = 0

    def log(self, tag: str, data: bytes = b"", note: str = "") -> None:
        text = f"{self._now():.3f} {self.handler.protocol} {tag}"
        if data:
            text += " " + render(data)
        if note:
            text += " " + note
        self._log(text)

    def describe(self) -> dict[str, object]:
        state = self.wire.state()
        return {
            "endpoint": self.endpoint.name,
            "connected": self.endpoint.is_open,
            "requests": self.requests,
            "disconnects": self.disconnects,
            "faults": {
                "drop_next": state.drop_next,
                "lose_ack_next": state.lose_ack_next,
                "corrupt_next": state.corrupt_next,
                "delay_s": state.delay_s,
                "garbage": state.garbage,
                "silent": state.silent,
            },
            "protocol": self.handler.describe(),
        }

    # ------------------------------------------------------------------ main loop
    def serve(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; the endpoint is shut down on the way out."""
        try:
            if not self.endpoint.is_open:
                self.endpoint.open()
            while not stop.is_set():
                self.step(stop)
        finally:
            self.endpoint.shutdown()

    def step(self, stop: threading.Event) -> None:
        """One turn of the loop: read, answer complete requests, poll, apply disconnect."""
        if not self.endpoint.is_open:
            if self._reopen_at is not None and self._now() >= self._reopen_at:
                self._reopen_at = None
                self.endpoint.open()
                self.handler.reset_link()
                self.log("open", note=f"line back at {self.endpoint.name}")
            else:
                stop.wait(POLL_INTERVAL_S)
            return
        data = self.endpoint.read(POLL_INTERVAL_S)
        now = self._now()
        if data:
            self.handler.feed(data, now)
        while self.endpoint.is_open and not stop.is_set():
            request = self.handler.next_request()
            if request is None:
                break
            self._serve_request(request, stop, now)
        if self.endpoint.is_open:
            unsolicited = self.handler.poll(self._now())
            if unsolicited and not self.wire.state().silent:
                self.endpoint.write(unsolicited)
                self.log("tx*", unsolicited, "(unsolicited)")
        if self.wire.take_disconnect():
            self.disconnect()

    def disconnect(self) -> None:
        self.endpoint.close()
        self.handler.reset_link()
        self.disconnects += 1
        if self._reopen_after_s is not None and not self.endpoint.is_open:
            self._reopen_at = self._now() + self._reopen_after_s
        self.log("disconnect", note=f"line dropped ({self.endpoint.name})")

    def _serve_request(self, request: bytes, stop: threading.Event, received_at: float) -> None:
        self.requests += 1
        action = self.wire.next_action()
        if action is ReplyAction.DROP_REQUEST:
            self.log("rx", request, "[fault: dropped on the way in, not executed]")
            return
        if action is ReplyAction.SILENT:
            self.log("rx", request, "[fault: pump silent, not executed]")
            return
        self.log("rx", request)
        if action is ReplyAction.GARBAGE:
            reply = bytes(self._rng.randrange(256) for _ in range(8))
            note = "[fault: garbage instead of a reply, not executed]"
        else:
            answer = self.handler.handle(request, self._now())
            note = ""
            if answer is None:
                return
            reply = answer
            if action is ReplyAction.LOSE_ACK:
                self.log("tx", reply, "[fault: executed, reply lost]")
                return
            if action is ReplyAction.CORRUPT:
                reply = corrupt(reply)
                note = "[fault: one byte corrupted]"
        delay = self.wire.delay_s
        if delay > 0 and stop.wait(delay):
            return
        if self._pacer is None:
            self.endpoint.write(reply)
        elif not self._pacer.send(
            self.endpoint.write,
            reply,
            request_bytes=len(request),
            received_at=received_at,
            stop=stop,
        ):
            return
        self.log("tx", reply, note)


def corrupt(reply: bytes) -> bytes:
    """Flip the lowest bit of the middle byte: deterministic, so tests can predict it."""
    if not reply:
        return reply
    i = len(reply) // 2
    return reply[:i] + bytes([reply[i] ^ 0x01]) + reply[i + 1 :]
