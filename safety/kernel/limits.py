"""The limit sets a drug is held to at an instant: the program's of every channel giving
it (the requesting channel's first), and any earlier ones still in force
(``PriorLimits``).

Every window rule (S3, S4, S5) and the hard max (S1) is checked against each set, in
that set's own dose unit, on the drug rate (amount per hour) that the request or the
pump gives: a drug rate means the same under any concentration, so a set made for
another concentration, weight or profile judges it just as well. The strictest wins:
a request passes only if every set in force lets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from safety.kernel.model import ProgramLimits
from safety.kernel.state import KernelState
from safety.library import CumulativeCap, Therapy


@dataclass(frozen=True)
class LimitSet:
    limits: ProgramLimits
    #: dose in this set's unit per drug amount per hour
    per_amount_h: Fraction
    #: for people: "" for the program's own limits, else which earlier ones and until when
    note: str = ""

    @property
    def therapy(self) -> Therapy:
        return self.limits.therapy

    @property
    def unit(self) -> str:
        return self.therapy.dose_unit

    @property
    def cap(self) -> CumulativeCap | None:
        return self.limits.cap

    def dose(self, amount_per_h: Fraction) -> Fraction:
        return amount_per_h * self.per_amount_h

    def amount_rate(self, dose: Fraction) -> Fraction:
        return dose / self.per_amount_h


def limit_sets(state: KernelState, channel: str, t: float) -> list[LimitSet]:
    """The limits of ``channel``'s program first, then those of every other channel
    giving the same drug (each distinct set once), then earlier ones still in force."""
    program = state.channel(channel).drug_program
    if program is None:  # nothing, or a test fluid: no drug's limits
        return []
    return drug_limit_sets(state, program.drug, t, first=channel)


def drug_limit_sets(
    state: KernelState, drug: str, t: float, first: str | None = None
) -> list[LimitSet]:
    """Every limit set that binds ``drug`` now (``first``'s program's at the head)."""
    sets: list[LimitSet] = []
    seen: list[object] = []
    channels = state.drug_channels(drug)
    channels.sort(key=lambda item: item[0] != first)
    for name, channel in channels:
        program = channel.drug_program
        assert program is not None
        if program.limits in seen:
            continue
        seen.append(program.limits)
        note = "" if name == first or not sets else f" (the limits of channel {name}'s program)"
        sets.append(LimitSet(program.limits, program.dose_per_amount_h, note))
    for prior in state.record_of(drug).priors_at(t):
        note = f" (still in force until t={prior.until:.0f} s: {prior.why})"
        sets.append(LimitSet(prior.limits, prior.per_amount_h, note))
    return sets


def caps_in_force(state: KernelState, drug: str, t: float) -> list[tuple[CumulativeCap, str]]:
    """Each distinct cumulative cap that binds ``drug`` now."""
    seen: list[CumulativeCap] = []
    out: list[tuple[CumulativeCap, str]] = []
    for limit_set in drug_limit_sets(state, drug, t):
        cap = limit_set.cap
        if cap is not None and cap not in seen:
            seen.append(cap)
            out.append((cap, limit_set.note))
    return out
