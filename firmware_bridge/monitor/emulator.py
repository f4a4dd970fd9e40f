"""The monitor side of the pumpctl monitor line protocol, over a simulated patient.

A ``WireHandler`` (``firmware_bridge.emulators.handler``), so the same ``SerialLine`` that
serves the pumps serves it on a pty or TCP, with the same frame log and wire faults. Each
request first brings the monitor's numerics up to the patient's clinical now (the patient
integrates what the pump has delivered so far), then answers from the last ``HISTORY``.

A request line ends with LF (a CR before it is accepted); a line longer than ``MAX_FRAME``
is answered ``ERR TOOLONG`` and dropped; a bad checksum ``ERR CHECKSUM``; anything else
that is not a request ``ERR SYNTAX``. The monitor never speaks unasked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from firmware_bridge.monitor.codec import (
    HISTORY,
    MAX_FRAME,
    VERSION,
    ErrorReply,
    Get,
    Hello,
    Identity,
    MonitorCodecError,
    NoData,
    NoSignal,
    Numeric,
    Reply,
    decode_frame,
    encode_reply,
    parse_request,
)
from firmware_bridge.patient.arterial import Reading, Status

MODEL = "pumpctl-sim"

ReadingSource = Callable[[], list[Reading]]


def numeric_of(reading: Reading) -> Numeric | NoSignal:
    """A reading as it goes on the wire (the truth behind it stays here)."""
    if reading.status is Status.NO_SIGNAL or reading.map_mmhg is None:
        return NoSignal(reading.seq, reading.time)
    assert reading.sys_mmhg is not None and reading.dia_mmhg is not None
    return Numeric(
        reading.seq,
        reading.time,
        min(999.9, reading.map_mmhg),
        min(999.9, reading.sys_mmhg),
        min(999.9, reading.dia_mmhg),
        reading.hr_bpm if reading.hr_bpm is not None else 0,
    )


class MonitorSide:
    """A patient monitor exporting MAP numerics; ``source`` yields the new readings."""

    protocol = "monitor"

    def __init__(self, source: ReadingSource, *, model: str = MODEL) -> None:
        self._source = source
        self._model = model
        self._buffer = bytearray()
        self._held: deque[Numeric | NoSignal] = deque(maxlen=HISTORY)
        self._overlong: bytes | None = None  # the head of a line too long to be a frame
        self.requests = 0

    # ------------------------------------------------------------------ WireHandler
    def feed(self, data: bytes, now: float) -> None:
        self._buffer += data

    def next_request(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_FRAME:
                if self._overlong is None:
                    self._overlong = bytes(self._buffer[: MAX_FRAME + 1])
                self._buffer.clear()  # the rest of this line is dropped up to its LF
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if self._overlong is not None:
            line, self._overlong = self._overlong, None
        return line

    def handle(self, request: bytes, now: float) -> bytes | None:
        self.requests += 1
        return encode_reply(self.answer(request))

    def poll(self, now: float) -> bytes | None:
        return None

    def reset_link(self) -> None:
        self._buffer.clear()
        self._overlong = None

    def describe(self) -> dict[str, object]:
        newest = self._held[-1] if self._held else None
        return {
            "protocol": self.protocol,
            "version": VERSION,
            "requests": self.requests,
            "newest_seq": newest.seq if newest is not None else None,
        }

    # ------------------------------------------------------------------ answers
    def answer(self, request: bytes) -> Reply:
        if len(request) > MAX_FRAME:
            return ErrorReply("TOOLONG")
        try:
            body = decode_frame(request)
        except MonitorCodecError as exc:
            return ErrorReply("CHECKSUM" if "checksum" in str(exc) else "SYNTAX")
        try:
            parsed = parse_request(body)
        except MonitorCodecError:
            return ErrorReply("SYNTAX")
        if isinstance(parsed, Hello):
            return Identity(VERSION, self._model)
        self._refresh()
        return self._numeric(parsed)

    def _refresh(self) -> None:
        for reading in self._source():
            self._held.append(numeric_of(reading))

    def _numeric(self, get: Get) -> Reply:
        if not self._held:
            return NoData()
        if get.after is None:
            return self._held[-1]
        for numeric in self._held:
            if numeric.seq > get.after:
                return numeric
        return NoData()
