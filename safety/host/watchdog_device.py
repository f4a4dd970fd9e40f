"""The Linux hardware watchdog (``/dev/watchdog``), fed while the safety loop runs.

The GPIO heartbeat pin lets an external watchdog circuit see the safety process hang or
die; on a board without such a circuit the SoC's own watchdog does the same job. Opening
the device arms it; every write within its timeout (set by the kernel driver: about 15 s
on a Raspberry Pi's bcm2835) feeds it; if the feeding stops, the board resets. The feed
comes from the same place in the loop as the pin's toggle, so a hung loop, a dead
process and a stuck journal all look alike to it.

Closing: a deliberate shutdown (SIGTERM, systemd stop) writes the magic character "V"
before closing, which disarms the device on kernels built without ``nowayout``. A crash
closes it without the "V": the device stays armed, and a process restarted (by systemd)
within the timeout simply takes over the feeding; if none does, the board resets.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Protocol

log = logging.getLogger(__name__)

#: written before close to disarm the device (Linux watchdog API, "magic close")
MAGIC_CLOSE = b"V"
#: any byte other than "V" feeds the device
FEED = b"\0"


class WatchdogDeviceError(Exception):
    """The device cannot be opened: the message names the path and the likely cause."""


class WatchdogFeeder(Protocol):
    """What the safety core feeds on each healthy turn of its loop."""

    def feed(self) -> None: ...


class WatchdogDevice:
    """One open watchdog device; only one process may hold it at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            hint = {
                errno.ENOENT: "no such device (is the watchdog driver loaded?)",
                errno.EACCES: "permission denied (the safety process's user needs write access)",
                errno.EBUSY: "busy: another process (a watchdog daemon, systemd's "
                "RuntimeWatchdogSec, or a second safety process) already holds it",
            }.get(exc.errno or 0, exc.strerror or str(exc))
            raise WatchdogDeviceError(f"[watchdog] device {path!r}: {hint}") from None

    def feed(self) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, FEED)
        except OSError as exc:  # feeding failed: the device will reset the board, say why
            log.error("feeding the watchdog %s failed: %s", self.path, exc)

    def close(self, *, disarm: bool) -> None:
        """Close; ``disarm`` (a deliberate shutdown) writes the magic "V" first."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if disarm:
                os.write(fd, MAGIC_CLOSE)
        except OSError as exc:
            log.error("disarming the watchdog %s failed: %s", self.path, exc)
        finally:
            os.close(fd)
