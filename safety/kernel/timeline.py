"""The patient's clinical timeline across restarts and reboots (S16), decided purely.

Clinical time is the process's clock source (the monotonic clock, a scaled clock for a
demo, a virtual one in tests) plus an offset. Within one boot the source continues, and
so does the timeline with the same offset. After a reboot the monotonic clock starts
again near zero: the journal's last clinical time is where the timeline stands, and the
time that passed while nothing ran must be credited from evidence.

Crediting too much would let a history age out of a cap or wean window that it should
still be in; crediting too little only keeps it in longer. So the gap is credited from
the best evidence there is, and where that is only a lower bound, the lower bound:

1. same boot, source still running forward: exact (the same offset);
2. same boot, another source (a new scaled clock): the monotonic clock's elapsed time;
3. a reboot (another boot id) or a monotonic clock that ran backwards (a time
   namespace): the wall clock, when it was synchronised both when the journal last
   wrote and now and does not contradict the next bound; otherwise the time since this
   boot (CLOCK_BOOTTIME: the last entry was written before the boot, so at least that
   much passed); otherwise nothing.

A Raspberry Pi has no real-time clock: it boots with a stale wall clock (or the last one
saved at shutdown) and jumps when NTP synchronises, so an unsynchronised wall clock is
never evidence. The timeline itself never runs backwards: the credit is never negative.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClockEvidence:
    """What the host reads about time when it (re)starts."""

    boot_id: str | None  # /proc/sys/kernel/random/boot_id: changes at every boot
    liveness: float  # the monotonic (liveness) clock
    boottime: float | None  # seconds since this boot, suspend included (CLOCK_BOOTTIME)
    wall: float  # time.time(): evidence only when synchronised
    wall_synced: bool | None  # the kernel says NTP keeps it synchronised (None: unknown)
    source: str  # the clinical clock source's spec ("real", "scaled:...", "virtual")
    source_now: float  # the source's reading now
    scale: float = 1.0  # clinical seconds per real second of the source


@dataclass(frozen=True)
class TimelineMark:
    """The journal's last word on time: its newest entry, and the newest
    ``TimelineResumed`` (which boot, which source, which offset)."""

    clinical: float
    liveness: float
    wall: float
    boot_id: str | None
    source: str
    offset: float
    wall_synced: bool | None


@dataclass(frozen=True)
class Resumption:
    offset: float
    credited_s: float  # clinical seconds counted for the gap
    basis: str
    conservative: bool  # the credit is a lower bound of the real gap
    discontinuity: bool  # the source did not simply continue


def resume(mark: TimelineMark | None, ev: ClockEvidence) -> Resumption:
    if mark is None:
        return Resumption(0.0, 0.0, "a new journal: the timeline starts", False, False)
    same_boot = ev.boot_id is not None and ev.boot_id == mark.boot_id
    forward = ev.liveness >= mark.liveness
    if same_boot and forward and ev.source == mark.source:
        credited = ev.source_now + mark.offset - mark.clinical
        if credited >= 0:
            return Resumption(mark.offset, credited, "same boot: the clock went on", False, False)
    if same_boot and forward:
        credited = (ev.liveness - mark.liveness) * ev.scale
        return _at(mark, ev, credited, "same boot: the monotonic clock's elapsed time", False)
    lower = 0.0
    rebooted = ev.boot_id is not None and mark.boot_id is not None and not same_boot
    if rebooted and ev.boottime is not None:
        lower = max(0.0, ev.boottime)
    wall_delta = ev.wall - mark.wall
    why = "a reboot" if rebooted else "the monotonic clock ran backwards"
    if ev.wall_synced and mark.wall_synced and wall_delta >= lower:
        return _at(mark, ev, wall_delta * ev.scale, f"{why}: the synchronised wall clock", False)
    doubt = (
        "the wall clock contradicts the time since boot"
        if ev.wall_synced and mark.wall_synced
        else "the wall clock was not synchronised"
    )
    if lower > 0:
        basis = f"{why}: the time since this boot, a lower bound ({doubt})"
    else:
        basis = f"{why}: no trustworthy evidence of the gap ({doubt}); counted as none"
    return _at(mark, ev, lower * ev.scale, basis, True)


def _at(
    mark: TimelineMark, ev: ClockEvidence, credited: float, basis: str, conservative: bool
) -> Resumption:
    credited = max(0.0, credited)
    offset = mark.clinical + credited - ev.source_now
    return Resumption(offset, credited, basis, conservative, True)
