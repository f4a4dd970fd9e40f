"""Reading the evidence about time that ``safety.kernel.timeline`` decides on.

Linux only, and every reading optional: a missing boot id, boot time or synchronisation
state makes the evidence weaker (the timeline then credits less), never an error. It
touches nothing but clocks and /proc, so a scenario runner that seeds a journal may use
it too (``timeline_started``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware_bridge.clock import Clock, ScaledClock, clock_spec
from safety.kernel.model import Now, TimelineResumed
from safety.kernel.timeline import ClockEvidence

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

#: adjtimex(2) returns TIME_ERROR when the kernel's clock is not synchronised
_TIME_ERROR = 5
#: the running check takes an answer about the synchronisation up to this old (real s)
SYNC_READ_EVERY_S = 1.0
#: (when, answer) of the last read, if any
_LAST_SYNC_READ: list[tuple[float, bool | None]] = []

EvidenceSource = Callable[[Clock, Clock], ClockEvidence]


def read_evidence(liveness: Clock, source: Clock) -> ClockEvidence:
    """Evidence now: ``liveness`` is the process's monotonic clock, ``source`` the clock
    its clinical time is made from (before any offset)."""
    return ClockEvidence(
        boot_id=boot_id(),
        liveness=liveness.now(),
        boottime=_boottime(),
        wall=time.time(),
        wall_synced=wall_clock_synchronised(),
        source=clock_spec(source),
        source_now=source.now(),
        scale=source.scale if isinstance(source, ScaledClock) else 1.0,
    )


def boot_id() -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = BOOT_ID.read_text(encoding="ascii").strip()
        return text or None
    return None


def _boottime() -> float | None:
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:
        return None


def wall_clock_synchronised(*, max_age_s: float = 0.0) -> bool | None:
    """Whether the kernel's clock is synchronised (NTP): ``adjtimex`` with no change asked
    reads the state; None where it cannot be asked. ``max_age_s``: an answer read that
    many real seconds ago or less will do (the running check's, ``SYNC_READ_EVERY_S``: a
    process on a virtual clock checks every simulated minute, many times a real second,
    while the state changes on the scale of real minutes); evidence to journal reads it
    fresh (the default), beside a wall time read now."""
    now = time.monotonic()
    if _LAST_SYNC_READ and 0 <= now - _LAST_SYNC_READ[0][0] < max_age_s:
        return _LAST_SYNC_READ[0][1]
    answer = _read_synchronisation()
    _LAST_SYNC_READ[:] = [(now, answer)]
    return answer


def _read_synchronisation() -> bool | None:
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    try:
        buffer = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 (read)
        state = int(adjtimex(buffer))
    except OSError:
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


@functools.cache
def _adjtimex() -> Any:
    """libc's ``adjtimex``, looked up once per process (None where there is none): the
    look-up costs more than the call, and the running process checks every minute."""
    try:
        # the process's own symbols (libc is among them on Linux); ctypes.util.find_library
        # would start a subprocess (ldconfig) on every call
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def timeline_started(
    source: str, now: Now, *, boot: str | None = None, wall: float | None = None
) -> TimelineResumed:
    """What a process journals when it starts a journal: the first entry of a journal
    written elsewhere for a core that will run on this machine with clock source
    ``source`` (a spec: ``clock_spec``), e.g. a scenario's or a test's seeded history,
    so that core continues the timeline instead of doubting it. ``boot`` and ``wall``
    default to this machine's boot id and wall clock."""
    return TimelineResumed(
        previous_clinical=None,
        credited_s=0.0,
        offset=0.0,
        basis="a new journal: the timeline starts",
        conservative=False,
        discontinuity=False,
        boot_id=boot if boot is not None else boot_id(),
        source=source,
        wall=wall if wall is not None else time.time(),
        wall_synced=wall_clock_synchronised(),
        now=now,
    )
