"""A monitor speaking the pumpctl monitor line protocol (version 1), over any transport.

The protocol (``firmware_bridge.monitor.codec``, docs/closed-loop.md) is request-reply, so
the shared serial transport serves it unchanged: one exchange at a time under its lock,
a deadline on every reply, a late reply discarded, a vanished port closed and reopened
once per poll (``drivers.transport``). A pty path or a real serial port opens as it is;
a TCP monitor is ``socket://HOST:PORT``.

Polling: the first poll takes the newest numeric (a monitor's history from before we
connected is not ours to act on); each later poll asks ``GET <last seq>`` until the
monitor has nothing newer, so no numeric is missed between polls (up to the monitor's
``HISTORY``). If the newest numeric's sequence is below ours the monitor restarted: we
follow its new numbering. A corrupted or missing reply makes the poll raise
``MonitorUnavailable``; the caller decides how long that may last.
"""

from __future__ import annotations

from drivers.errors import DeviceDisconnected, DeviceTimeout, DriverError
from drivers.monitors.base import MapSample, MonitorProtocolError, MonitorUnavailable
from drivers.monitors.limits import DEFAULT_BAUD, DEFAULT_REPLY_TIMEOUT_S, REPLY_TIMEOUT_RANGE_S
from drivers.transport import SerialTransport, Transport
from firmware_bridge.monitor.codec import (
    HISTORY,
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
    Request,
    decode_frame,
    encode_request,
    frame_end,
    parse_reply,
)


class WireMonitor:
    """A ``MapSource`` over the monitor line protocol."""

    def __init__(
        self,
        port: str,
        *,
        transport: Transport | None = None,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        baud: int = DEFAULT_BAUD,
        max_per_poll: int = HISTORY,
    ) -> None:
        low, high = REPLY_TIMEOUT_RANGE_S
        if not (low <= reply_timeout_s <= high):
            raise ValueError(f"reply timeout must be {low:g}-{high:g} s, got {reply_timeout_s}")
        if not (1 <= max_per_poll <= 10 * HISTORY):
            raise ValueError(f"max_per_poll must be 1-{10 * HISTORY}, got {max_per_poll}")
        self.port = port
        self._transport = transport or SerialTransport(port, baudrate=baud)
        self._timeout = reply_timeout_s
        self._max = max_per_poll
        self._last: int | None = None
        self.model: str | None = None

    @property
    def name(self) -> str:
        return f"monitor line protocol {VERSION} at {self.port}"

    def open(self) -> None:
        try:
            self._transport.open()
        except DeviceDisconnected as exc:
            raise MonitorUnavailable(f"{self.port}: {exc}") from None
        self._hello()

    def close(self) -> None:
        self._transport.close()

    def poll(self) -> list[MapSample]:
        try:
            if self._transport.ensure_open():
                self._hello()
            return self._poll()
        except (DeviceTimeout, DeviceDisconnected) as exc:
            raise MonitorUnavailable(f"{self.port}: {exc}") from None

    # ------------------------------------------------------------------ internals
    def _hello(self) -> None:
        try:
            reply = self._ask(Hello())
        except (DeviceTimeout, DeviceDisconnected) as exc:
            raise MonitorUnavailable(f"{self.port}: no answer to HELLO ({exc})") from None
        if not isinstance(reply, Identity) or reply.version != VERSION:
            raise MonitorProtocolError(
                f"{self.port}: expected a monitor speaking version {VERSION}, got {reply}"
            )
        self.model = reply.model

    def _poll(self) -> list[MapSample]:
        out: list[MapSample] = []
        if self._last is None:
            reply = self._ask(Get())
            sample = _sample(reply)
            if sample is not None:
                self._last = sample.seq
                out.append(sample)
            return out
        for _ in range(self._max):
            sample = _sample(self._ask(Get(self._last)))
            if sample is None:
                break
            self._last = sample.seq
            out.append(sample)
        if not out:
            newest = _sample(self._ask(Get()))
            if newest is not None and newest.seq < self._last:  # the monitor restarted
                self._last = newest.seq
                out.append(newest)
        return out

    def _ask(self, request: Request) -> Reply:
        frame = self._transport.exchange(
            encode_request(request), frame_end=frame_end, timeout_s=self._timeout
        )
        try:
            reply = parse_reply(decode_frame(frame))
        except MonitorCodecError as exc:
            raise MonitorUnavailable(f"{self.port}: corrupted reply ({exc})") from None
        if isinstance(reply, ErrorReply):
            raise MonitorProtocolError(f"{self.port}: the monitor answered ERR {reply.code}")
        return reply


def _sample(reply: Reply) -> MapSample | None:
    if isinstance(reply, Numeric):
        return MapSample(
            reply.seq, reply.time, reply.map_mmhg, reply.sys_mmhg, reply.dia_mmhg, reply.hr_bpm
        )
    if isinstance(reply, NoSignal):
        return MapSample(reply.seq, reply.time, None)
    if isinstance(reply, NoData):
        return None
    raise MonitorProtocolError(f"expected a numeric, got {reply}")


__all__ = ["DriverError", "WireMonitor"]
