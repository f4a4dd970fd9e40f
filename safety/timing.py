"""The safety process's timers, as plain settings (no I/O).

Its own module so the controller can hand them to an in-process safety core
(``safety.ipc.local.LocalSafety``) without importing the host's internals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostTiming:
    """Periods and timeouts on the liveness clock (seconds)."""

    poll_period_s: float = 1.0
    keep_alive_period_s: float = 2.0
    heartbeat_timeout_s: float = 2.0
    watchdog_toggle_s: float = 0.25
    button_poll_s: float = 0.02
