"""What the safety process tells a controller: a snapshot of the bench and the outcome
of each request. Plain values shared by the process, the IPC messages and the controller.

A snapshot shows every channel (``channels``) and every drug the patient receives
(``drugs``: the total over its channels). Its top-level program, rate, dose, syringe and
counter fields are those of the bench's first channel, and its ``history`` that of the
first channel's drug: a one-pump bench reads exactly as before, and code written for one
pump keeps working on the first channel of several.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from safety.kernel.history import RateHistory, Segment
from safety.kernel.model import PatientSpec, ProgramSpec, Verdict
from safety.kernel.state import PriorLimits
from safety.units import UnitError, fraction_to_decimal, parse_concentration


@dataclass(frozen=True)
class AlarmView:
    key: str
    priority: str  # "high" | "medium" | "low"
    reason: str
    message: str
    raised_at: float
    active: bool
    acknowledged: bool
    #: "" the bench, a channel's name, or "drug:<id>" (``safety.alarms``)
    scope: str = ""

    @property
    def ident(self) -> str:
        """ "scope/key" (the key alone for a bench alarm): what acknowledges this one."""
        return f"{self.scope}/{self.key}" if self.scope else self.key


#: decimal places of a history point's amount: enough to give the exact fraction back
#: (``HistoryPoint.exact_amount``) for any pump rate and concentration a bench uses
AMOUNT_PLACES = 24
#: the largest denominator ``exact_amount`` looks for
_AMOUNT_DENOMINATOR = 10**10


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """From ``start`` (clinical s) the patient received ``amount_per_h`` of the drug (mcg
    or units per hour), summed over every channel giving it. Slotted: a snapshot carries
    one for every change of the last 26 h, for every drug."""

    start: float
    amount_per_h: Decimal
    cause: str

    def exact_amount(self) -> Fraction:
        """The kernel's exact figure: a pump rate (a short decimal) times a concentration
        (a small fraction) has a small denominator, which the 24 places pin down."""
        return _exact_amount(self.amount_per_h)


@functools.lru_cache(maxsize=1024)
def _exact_amount(amount_per_h: Decimal) -> Fraction:
    """``HistoryPoint.exact_amount``, remembered by value (equal Decimals are the same
    fraction): a planner rebuilds its kernel view from a snapshot's whole history at
    every closed-loop decision, and a history holds few distinct rates."""
    return Fraction(amount_per_h).limit_denominator(_AMOUNT_DENOMINATOR)


@dataclass(frozen=True)
class ChannelView:
    """One channel as the safety process sees it (S15: its container and relay role)."""

    name: str
    driver: str
    container: str  # the syringe's or bag's catalogue name
    container_kind: str  # "syringe" or "bag"
    container_volume_ml: float  # what it held when loaded
    remaining_ml: float | None  # what the pump's counter leaves of it
    primed: bool
    program: ProgramSpec | None
    dose_unit: str | None
    dose: Decimal | None  # what this channel's verified rate delivers
    running: bool
    rate_ml_h: Decimal
    infused_ml: float | None  # the pump's counter since the program was loaded, less primes
    pump_min_ml_h: Decimal
    pump_max_ml_h: Decimal
    uncertain: bool
    comms_ok: bool
    program_stale: str | None
    #: "active" (running), "standby", "priming", "paused", "handing over", "" (idle)
    role: str
    standby_for: str | None
    strategy: str | None
    #: the relay or container change in words ("takes over from A in about 12 min")
    relay: str
    paused_until: float | None  # clinical time a container-change pause must end by
    #: the channel that took this one's infusion over in the last handover
    relieved_by: str | None = None

    @property
    def minutes_to_empty(self) -> float | None:
        if self.remaining_ml is None or not self.running or self.rate_ml_h <= 0:
            return None
        return self.remaining_ml / float(self.rate_ml_h) * 60.0


@dataclass(frozen=True)
class DrugView:
    """One drug for the patient: the total over its channels (S1, S3: what limits read)."""

    drug: str
    what: str  # the first channel's program, for people
    dose_unit: str | None
    dose: Decimal | None  # the total, in ``dose_unit``
    amount_per_h: Decimal  # the total, in base amount (mcg or units) per hour
    amount_unit: str | None  # the cap's unit, or mcg / units
    given: Decimal | None  # since the history's first entry (pruned history included)
    given_in_cap_window: Decimal | None
    cap_amount: Decimal | None
    cap_window_h: Decimal | None
    channels: tuple[str, ...]  # the channels whose program gives it
    next_handover_at: float | None  # clinical time the relay hands it over next
    #: its history, when it is not the snapshot's top-level one (then empty)
    history: tuple[HistoryPoint, ...] = ()
    #: earlier limits of the drug still in force beside its programs'
    priors: tuple[PriorLimits, ...] = ()


@dataclass(frozen=True)
class HandoverView:
    """A relay handover in progress (the safety process's own)."""

    from_channel: str
    to_channel: str
    strategy: str
    step: int
    steps: int
    started_at: float
    next_step_at: float | None


@dataclass(frozen=True)
class PatientView:
    """Whom the limits protect (S16): from ``since`` (clinical s) every history counts."""

    id: str
    spec: PatientSpec
    since: float
    how: str


@dataclass(frozen=True)
class Snapshot:
    clinical_time: float
    mode: str
    library_hash: str
    library_version: str
    program: ProgramSpec | None
    dose_unit: str | None
    running: bool
    rate_ml_h: Decimal  # verified set point
    dose: Decimal | None  # the dose that rate delivers, in dose_unit
    infused_ml: float | None  # pump's own counter since the program was loaded
    drug_given: Decimal | None  # infused_ml x concentration, in cap_unit (or mcg/units)
    amount_unit: str | None
    given_in_cap_window: Decimal | None
    cap_amount: Decimal | None
    cap_window_h: Decimal | None
    syringe: str
    syringe_volume_ml: float
    remaining_ml: float | None
    pump_min_ml_h: Decimal
    pump_max_ml_h: Decimal
    alarms: tuple[AlarmView, ...]
    session: str | None
    last_seq: int
    attached: bool
    hold: bool
    estopped: bool
    uncertain: bool
    comms_ok: bool
    history: tuple[HistoryPoint, ...]
    patient: PatientView | None = None
    #: why changes wait for the program to be loaded again (None: they do not)
    program_stale: str | None = None
    #: earlier limits of the loaded program's drug still in force beside its own
    priors: tuple[PriorLimits, ...] = ()
    #: every channel, in the bench's order (the top-level fields are the first's)
    channels: tuple[ChannelView, ...] = ()
    #: every drug the bench's programs give, with its total over their channels
    drugs: tuple[DrugView, ...] = ()
    handover: HandoverView | None = None

    @property
    def minutes_to_empty(self) -> float | None:
        if self.remaining_ml is None or not self.running or self.rate_ml_h <= 0:
            return None
        return self.remaining_ml / float(self.rate_ml_h) * 60.0

    def channel(self, name: str | None = None) -> ChannelView | None:
        """The named channel's view (None: the first)."""
        for view in self.channels:
            if name is None or view.name == name:
                return view
        return None

    def history_of(self, drug: str) -> tuple[HistoryPoint, ...]:
        """A drug's verified history: the top-level one, or the drug's own view's."""
        for view in self.drugs:
            if view.drug == drug and view.history:
                return view.history
        return self.history

    def drug(self, drug: str) -> DrugView | None:
        return next((view for view in self.drugs if view.drug == drug), None)

    def focused(self, channel: str | None) -> Snapshot:
        """The same snapshot with ``channel``'s figures at the top level (program, rate,
        dose, syringe, its drug's history and cap), as if it were the bench's first: what
        code written for one pump reads. Bench-wide fields (alarms, link, mode, stop) are
        kept. The first channel, or None, gives the snapshot itself."""
        view = self.channel(channel) if channel is not None else None
        if view is None or not self.channels or view.name == self.channels[0].name:
            return self
        drug = self.drug(view.program.drug) if view.program is not None else None
        given = None
        if drug is not None and view.infused_ml is not None and view.program is not None:
            given = drug_given(view.program, view.infused_ml, drug.amount_unit)
        return replace(
            self,
            program=view.program,
            dose_unit=view.dose_unit,
            running=view.running,
            rate_ml_h=view.rate_ml_h,
            dose=view.dose,
            infused_ml=view.infused_ml,
            drug_given=given,
            amount_unit=drug.amount_unit if drug is not None else None,
            given_in_cap_window=drug.given_in_cap_window if drug is not None else None,
            cap_amount=drug.cap_amount if drug is not None else None,
            cap_window_h=drug.cap_window_h if drug is not None else None,
            syringe=view.container,
            syringe_volume_ml=view.container_volume_ml,
            remaining_ml=view.remaining_ml,
            pump_min_ml_h=view.pump_min_ml_h,
            pump_max_ml_h=view.pump_max_ml_h,
            comms_ok=view.comms_ok,
            history=self.history_of(drug.drug) if drug is not None else (),
            program_stale=view.program_stale,
            priors=drug.priors if drug is not None else (),
        )


def drug_given(spec: ProgramSpec, infused_ml: float, amount_unit: str | None) -> Decimal | None:
    """What ``infused_ml`` of ``spec``'s solution carried, in ``amount_unit`` (mg, mcg,
    units): for people, from the label alone."""
    try:
        per_ml = parse_concentration(spec.concentration).base_per_ml()
    except UnitError:
        return None
    factor = Fraction(1000) if amount_unit == "mg" else Fraction(1)
    return fraction_to_decimal(Fraction(infused_ml) * per_ml / factor, 6)


@dataclass(frozen=True)
class Outcome:
    """A verdict and what became of it at the pump."""

    verdict: Verdict
    execution: str  # "applied", "not executed", "uncertain: ...", "rejected by pump: ..."
    snapshot: Snapshot


class PointsMemo:
    """The last history converted, by identity: a snapshot is taken after every journaled
    event, but the (immutable) history changes only when a verified rate changes, so the
    points are rebuilt only then; and then only the new segments are converted, the
    others' points (same segment objects: a change appends one and may prune the oldest)
    are reused, not up to 26 h of segments per change."""

    def __init__(self) -> None:
        self.history: RateHistory | None = None
        self.points: tuple[HistoryPoint, ...] = ()


_MEMO = PointsMemo()
#: how far into the previous history its first surviving segment is looked for
_PRUNE_SCAN = 64


def history_points(history: RateHistory, memo: PointsMemo = _MEMO) -> tuple[HistoryPoint, ...]:
    if memo.history is history:
        return memo.points
    segs = history.segments
    reused = _reusable(memo, segs)
    points: list[HistoryPoint] = list(reused)
    for s in segs[len(reused) :]:
        points.append(HistoryPoint(s.start, _amount_decimal(s.amount_per_h), s.cause))
    result = tuple(points)
    memo.history, memo.points = history, result
    return result


@functools.lru_cache(maxsize=1024)
def _amount_decimal(amount_per_h: Fraction) -> Decimal:
    """A history point's figure, one object per value: a titrated drug goes back to the
    same few rates, and the points of 26 h of them stay in the safety process."""
    return fraction_to_decimal(amount_per_h, AMOUNT_PLACES)


def new_memo() -> PointsMemo:
    """A memo of its own (one per drug a snapshot shows)."""
    return PointsMemo()


def _reusable(memo: PointsMemo, segs: tuple[Segment, ...]) -> tuple[HistoryPoint, ...]:
    """The memo's points for the longest run of ``segs`` (from its start) that are the very
    segment objects of the memo's history, in order; () when there is none."""
    if memo.history is None or not segs:
        return ()
    old = memo.history.segments
    first = segs[0]
    for k in range(min(len(old), _PRUNE_SCAN)):
        if old[k] is first:
            break
    else:
        return ()
    n = min(len(old) - k, len(segs))
    if all(map(operator.is_, segs[:n], old[k : k + n])):
        return memo.points[k : k + n]
    return ()
