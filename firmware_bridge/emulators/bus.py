"""Several emulated pumps on one line: every pump hears every request, the addressed one
answers.

An RS-232 daisy chain (NE-1000 network port, Harvard / KD Scientific pump chain) carries
every byte the computer sends to every pump; each pump reads its address and stays
silent unless the request is its own. ``PumpBus`` is that line as one ``WireHandler``: it
cuts the stream into requests once (with the protocol's framer, the same rules each pump
applies), hands each request to every pump, and sends back whatever they answer. Two
pumps set to the same address both answer, and their replies land one after the other,
as a collision would garble them on a real line: the host's address check must catch it.

Unsolicited bytes (NE-1000 safe-mode alarm packets) are collected from every pump on
every poll, so no pump's watchdog waits for another's turn, and sent one per poll while
no request is arriving. Wire faults (``SerialLine``) act on the line: once per request,
whoever it was for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from firmware_bridge.emulators.handler import WireHandler


class Framer(Protocol):
    """How every pump of a family cuts the byte stream into requests."""

    @property
    def pending(self) -> bool:
        """Part of a request has arrived."""
        ...

    def feed(self, data: bytes, now: float) -> None: ...

    def next_request(self) -> bytes | None: ...

    def reset(self) -> None: ...


class BusMember(WireHandler, Protocol):
    """A pump's protocol end that can share a line."""

    address: int
    alone_on_line: bool


class PumpBus:
    """Pumps of one protocol family at distinct addresses on one line."""

    def __init__(self, members: Sequence[BusMember], framer: Framer) -> None:
        if not members:
            raise ValueError("a pump bus needs at least one pump")
        protocols = {m.protocol for m in members}
        if len(protocols) != 1:
            raise ValueError(f"one protocol per line, got {sorted(protocols)}")
        addresses = [m.address for m in members]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"two pumps at one address on a line: {sorted(addresses)}")
        self.members = list(members)
        self.protocol = self.members[0].protocol
        self._framer = framer
        self._unsolicited: deque[bytes] = deque()
        for member in self.members:
            member.alone_on_line = len(self.members) == 1

    def member(self, address: int) -> BusMember:
        for m in self.members:
            if m.address == address:
                return m
        raise KeyError(f"no pump at address {address} on this line")

    # ------------------------------------------------------------------ WireHandler
    def feed(self, data: bytes, now: float) -> None:
        self._framer.feed(data, now)

    def next_request(self) -> bytes | None:
        return self._framer.next_request()

    def handle(self, request: bytes, now: float) -> bytes | None:
        replies = [r for m in self.members if (r := m.handle(request, now)) is not None]
        return b"".join(replies) if replies else None

    def poll(self, now: float) -> bytes | None:
        for m in self.members:
            data = m.poll(now)
            if data:
                self._unsolicited.append(data)
        if self._framer.pending or not self._unsolicited:
            return None  # never talk over a request that is arriving
        return self._unsolicited.popleft()

    def reset_link(self) -> None:
        self._framer.reset()
        self._unsolicited.clear()
        for m in self.members:
            m.reset_link()

    def describe(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "pumps": {str(m.address): m.describe() for m in self.members},
        }


__all__ = ["BusMember", "Framer", "PumpBus"]
