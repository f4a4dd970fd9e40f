"""Replies paced at a serial line's real speed, so a pty can stand in for a slow wire.

A pty moves bytes as fast as the kernel copies them; an RS-232 line at 8N1 moves one
10-bit character (start bit, 8 data bits, stop bit) every ``10 / baud`` seconds, so a
20-byte NE-1000 exchange takes about 10 ms at 19200 baud before any software runs. To
compare a host's own overhead with the wire time it would really face (``pumpctl bench``),
the emulator can pace its replies at a given baud rate (``emulate ... --pace-baud N``).

The model, for a host that writes a whole request at once (as the drivers do): the pty
hands the request over at once, at ``received_at``; on the wire its last character would
arrive ``len(request)`` character times later, so the reply cannot start before then.
Each reply byte is then written when its stop bit would end. Byte ``i`` is due at a fixed
instant computed from the start, never from the previous write, so a late wake-up of the
emulator's thread delays one byte and is not added to every later one. Off by default:
the emulator's normal job is to answer as fast as it can.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: bits per character on an 8N1 line: start, 8 data, stop
BITS_PER_CHAR = 10
#: the pacing option's accepted range (bits per second)
MIN_PACE_BAUD = 50
MAX_PACE_BAUD = 1_000_000


class Pacer:
    """Writes a reply at ``baud`` 8N1 characters, after the request's own wire time."""

    def __init__(self, baud: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not (MIN_PACE_BAUD <= baud <= MAX_PACE_BAUD):
            raise ValueError(
                f"pace baud must be {MIN_PACE_BAUD}-{MAX_PACE_BAUD} bits/s, got {baud}"
            )
        self.baud = baud
        self.char_s = BITS_PER_CHAR / baud
        self._now = clock

    def wire_time(self, n_bytes: int) -> float:
        """Seconds ``n_bytes`` characters take on the wire."""
        return n_bytes * self.char_s

    def send(
        self,
        write: Callable[[bytes], None],
        reply: bytes,
        *,
        request_bytes: int,
        received_at: float,
        stop: threading.Event,
    ) -> bool:
        """Write ``reply`` byte by byte on the wire's schedule; False if ``stop`` was set
        on the way (the rest is not sent, as a line switched off mid-reply)."""
        start = max(self._now(), received_at + self.wire_time(request_bytes))
        for i in range(len(reply)):
            wait = start + self.wire_time(i + 1) - self._now()
            if wait > 0 and stop.wait(wait):
                return False
            write(reply[i : i + 1])
        return True


__all__ = ["BITS_PER_CHAR", "MAX_PACE_BAUD", "MIN_PACE_BAUD", "Pacer"]
