"""systemd's readiness and watchdog protocol, with the standard library only.

``Type=notify``: systemd considers the service started when it receives ``READY=1`` on
the datagram socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract name when it
starts with ``@``). ``WatchdogSec=``: systemd passes ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``) and kills and restarts the service when no ``WATCHDOG=1`` arrives in
that interval; we ping at half of it (sd_watchdog_enabled(3) advises pinging at half the
interval). The ping is sent from the server loop itself, never from a helper thread, so
a loop stuck on a pump call or a deadlock stops the pings and systemd acts.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from firmware_bridge.clock import Clock, MonotonicClock

log = logging.getLogger("safety.sdnotify")


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None, clock: Clock | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._clock = clock or MonotonicClock()
        self.watchdog_interval_s = _watchdog_interval(env)
        self._next_ping = 0.0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines; True if sent. Never raises: systemd is advisory."""
        if self._address is None:
            return False
        data = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self._address)
                s.sendall(data)
        except OSError as exc:
            log.warning("systemd notify %r failed: %s", fields, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def tick(self) -> float:
        """Ping the watchdog if due; seconds until the next ping (a large number if off)."""
        interval = self.watchdog_interval_s
        if interval is None or self._address is None:
            return 3600.0
        now = self._clock.now()
        if now >= self._next_ping:
            self.notify("WATCHDOG=1")
            self._next_ping = now + interval / 2.0
        return max(0.0, self._next_ping - now)


def _address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


def _watchdog_interval(env: dict[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid:
        with contextlib.suppress(ValueError):
            if int(pid) != os.getpid():
                return None  # meant for another process (e.g. our parent)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


__all__ = ["SystemdNotifier"]
