"""What the kernel is told about the pump and its own tuning (not about the drug)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction


@dataclass(frozen=True)
class PumpCapabilities:
    """The rate range the pump accepts with its syringe (S7) and how it rounds (S1).

    ``quantize`` is the driver's pure ``quantize_rate``: the rate the pump really runs
    when asked for a value, rounded down.
    """

    min_rate_ml_h: Decimal
    max_rate_ml_h: Decimal
    quantize: Callable[[float], float]

    def pump_rate(self, exact: Fraction) -> Decimal:
        """The rate the pump will run for an exact request: never above it."""
        candidate = float(exact)
        for _ in range(4):
            q = Decimal(repr(self.quantize(candidate)))
            if Fraction(q) <= exact:
                return q
            candidate = math.nextafter(candidate, 0.0)  # float noise at a boundary
        return Decimal(0)


@dataclass(frozen=True)
class KernelConfig:
    """Project choices, documented in docs/safety.md."""

    #: S3: refuse a rise if the cap would be reached within this (clinical s) at that rate
    cap_lookahead_s: float = 3600.0
    #: S3: medium alarm when the cap is projected within this
    cap_warning_s: float = 2 * 3600.0
    #: S3: stop when the headroom is less than this many seconds at the current rate
    cap_guard_s: float = 60.0
    #: S13 accuracy: deviation of measured flow from the verified rate
    accuracy_tolerance: float = 0.10
    accuracy_far: float = 0.50
    accuracy_persistence_s: float = 15 * 60.0
    #: and the shortest observation span that is judged (clinical s)
    accuracy_min_span_s: float = 5 * 60.0
    #: S9: a read-back rate is "the same" within this relative difference
    readback_rel_tolerance: Decimal = Decimal("0.0005")
    #: S9: under-rate read-backs are retried this many times before an alarm
    max_under_retries: int = 1
    #: history kept per drug at the least (clinical s): the host sets it to the longest
    #: window of its library (``history_keep_for``); a drug keeps longer when limits in
    #: force have a longer window
    history_keep_s: float = 26 * 3600.0
    #: S15 relay (clinical s): a standby takes over when the active channel's container
    #: would empty within this at its verified rate (an overlap starts earlier, by its
    #: steps); and the remaining volume is the kernel's estimate, so not at the last drop
    handover_before_empty_s: float = 5 * 60.0
    #: a medium alarm when a channel would empty within this and no standby is armed for
    #: it (a bench of several channels; high from ``handover_before_empty_s``)
    warn_before_empty_s: float = 30 * 60.0
    #: overlap handover: the rate moves to the standby in this many steps, each at least
    #: ``overlap_step_s`` long and only once the standby's counter shows its flow
    overlap_steps: int = 4
    overlap_step_s: float = 60.0
    #: an overlap step waits for the standby's flow at most this long, then alarms
    overlap_stall_s: float = 10 * 60.0
    #: a container change (syringe or bag) may stop a channel at most this long
    max_container_pause_s: float = 3 * 60.0
    #: the largest prime volume a request may ask for (mL)
    max_prime_ml: Decimal = Decimal(5)
