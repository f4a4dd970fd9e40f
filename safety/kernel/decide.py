"""Requests -> verdicts: invariants S1-S8, S10-S12 applied to what the controller asks.

``decide`` is a pure function of (library, state, request, now, pump capabilities): it
changes nothing. The host journals the verdict, then executes its actions; the state
changes only through journaled events (``reducer.py``).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from safety.kernel.config import KernelConfig, PumpCapabilities
from safety.kernel.model import (
    AcknowledgeAlarms,
    ChangeDose,
    EmergencyStop,
    LoadProgram,
    Now,
    PumpAction,
    Request,
    SetInterlock,
    SetRate,
    StartInfusion,
    StartPump,
    StopInfusion,
    StopPump,
    Verdict,
)
from safety.kernel.state import ActiveProgram, KernelState, program_check
from safety.library import DiluentError, DrugLibrary, LookupProblem
from safety.reasons import Reason
from safety.rules import Finding, RuleRefusal, Severity, limit_findings, num
from safety.units import DOSE_VALUE_MAX, UnitError, fraction_to_decimal, parse_dose_unit


def decide(
    library: DrugLibrary,
    state: KernelState,
    request: Request,
    now: Now,
    pump: PumpCapabilities,
    config: KernelConfig,
) -> Verdict:
    body = request.body
    # S12: an emergency stop is never refused, whatever its sequence or the state.
    if isinstance(body, EmergencyStop):
        return Verdict(
            True,
            Reason.EMERGENCY_STOPPED,
            f"emergency stop ({body.source}): pump stopped and interlocked",
            actions=(StopPump(), SetInterlock(False)),
        )
    refusal = _check_link(state, request, now)
    if refusal is not None:
        return refusal
    if isinstance(body, AcknowledgeAlarms):
        return Verdict(True, Reason.ACCEPTED, "alarms acknowledged")
    if state.pending is not None:  # S10
        return Verdict.refuse(
            Reason.DELIVERY_UNCERTAIN,
            "refused: the last pump command's outcome is uncertain (its acknowledgement was "
            "lost); waiting for a read-back to reconcile it. Nothing is repeated blindly.",
        )
    if isinstance(body, LoadProgram):
        return _load_program(library, state, body)
    program = state.program
    if program is None:
        return Verdict.refuse(Reason.NO_PROGRAM, "refused: no program loaded")
    if isinstance(body, StartInfusion | ChangeDose) and body.unit is not None:
        refusal = _unit_check(body.unit, program)
        if refusal is not None:
            return refusal
    if isinstance(body, StartInfusion):
        if state.estopped:
            return Verdict.refuse(
                Reason.EMERGENCY_STOPPED,
                "refused: emergency stop is active; acknowledge it before starting again",
            )
        if state.running or state.expected_running:
            return Verdict.refuse(Reason.ALREADY_INFUSING, "refused: already infusing")
        return _dose_change(
            state, program, body.dose, body.confirm_soft_limits, now, pump, config, start=True
        )
    if isinstance(body, ChangeDose):
        if not state.running:
            return Verdict.refuse(Reason.NOT_INFUSING, "refused: not infusing; start first")
        return _dose_change(
            state, program, body.dose, body.confirm_soft_limits, now, pump, config, start=False
        )
    assert isinstance(body, StopInfusion)
    return _stop(state, program)


# --------------------------------------------------------------------------- S8


def _check_link(state: KernelState, request: Request, now: Now) -> Verdict | None:
    meta = request.meta
    if meta is None:
        return Verdict.refuse(Reason.BAD_INPUT, "refused: a request without session and sequence")
    if state.hold:  # S11
        return Verdict.refuse(
            Reason.HOLD,
            "refused: the safety process is holding the last verified rate after losing the "
            "controller; re-attach and re-sync first",
        )
    if not state.attached or meta.session != state.session:
        return Verdict.refuse(
            Reason.NOT_ATTACHED,
            "refused: this request is not from the attached controller session",
        )
    if meta.seq <= state.last_seq:
        return Verdict.refuse(
            Reason.STALE_SEQUENCE,
            f"refused: sequence {meta.seq} is not after {state.last_seq} (a duplicate, replayed "
            "or out-of-order command)",
        )
    if now.liveness > meta.expires_at:
        late = now.liveness - meta.expires_at
        return Verdict.refuse(
            Reason.EXPIRED, f"refused: request expired {late:.3f} s before it was examined"
        )
    return None


# --------------------------------------------------------------------------- S6


def _load_program(library: DrugLibrary, state: KernelState, body: LoadProgram) -> Verdict:
    spec = body.spec
    if spec.library_hash != library.content_hash:
        return Verdict.refuse(
            Reason.LIBRARY_MISMATCH,
            f"refused: the program was made with library {spec.library_hash[:19]}, the safety "
            f"process runs {library.content_hash[:19]}",
        )
    if state.running or state.expected_running:
        return Verdict.refuse(
            Reason.ALREADY_INFUSING,
            "refused: an infusion is running; changing the program ends it first (wean and stop)",
        )
    try:
        check = program_check(library, spec)
    except RuleRefusal as exc:
        return Verdict.refuse(exc.finding.code, exc.finding.message, findings=(exc.finding,))
    except (UnitError, DiluentError, LookupProblem) as exc:
        return Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"program loaded: {check.what}, {check.concentration}",
        findings=check.findings,
        unit=check.selection.therapy.dose_unit,
    )


# --------------------------------------------------------------------------- S6 units


def _unit_check(unit_text: str, program: ActiveProgram) -> Verdict | None:
    """The unit the request's number is in must be the program's: never converted here,
    so a weight-based figure is never taken for an absolute one (the 70x error)."""
    try:
        unit = parse_dose_unit(unit_text, "unit")
    except UnitError as exc:
        return Verdict.refuse(Reason.BAD_INPUT, f"refused: {exc}")
    if str(unit) != program.unit:
        kind = "weight-based" if unit.per_kg else "not weight-based"
        return Verdict.refuse(
            Reason.DOSE_UNIT_MISMATCH,
            f"refused: the dose is in {unit} ({kind}) but {program.what} is dosed in "
            f"{program.unit}; re-enter it in {program.unit}",
        )
    return None


# --------------------------------------------------------------------------- S1-S5, S7


def _dose_change(
    state: KernelState,
    program: ActiveProgram,
    dose_value: Decimal,
    confirm_soft: bool,
    now: Now,
    pump: PumpCapabilities,
    config: KernelConfig,
    *,
    start: bool,
) -> Verdict:
    unit = program.unit
    # Bounded before any exact arithmetic: Fraction(1E+999999999) would take hours.
    if not dose_value.is_finite() or not (0 < dose_value <= DOSE_VALUE_MAX):
        return Verdict.refuse(
            Reason.BAD_INPUT,
            f"refused: dose must be a positive number of {unit}, at most {DOSE_VALUE_MAX}; "
            "use stop to stop",
        )
    dose = Fraction(dose_value)
    therapy = program.therapy
    exact = program.exact_rate(dose)
    rate = pump.pump_rate(exact)
    effective = program.dose(rate)
    extra = {"unit": unit, "rate_ml_h": rate, "dose": fraction_to_decimal(effective)}

    # S7: the pump's physical range with this syringe
    if pump.max_rate_ml_h <= 0:
        return Verdict.refuse(
            Reason.PUMP_COMMS,
            "refused: the pump's rate range is not known yet (the pump has not answered "
            "since the safety process started)",
            **extra,
        )
    if exact > Fraction(pump.max_rate_ml_h):
        return Verdict.refuse(
            Reason.PUMP_RANGE_HIGH,
            f"refused: {num(dose)} {unit} needs {num(exact)} mL/h, above the pump's "
            f"{num(pump.max_rate_ml_h)} mL/h with this syringe",
            **extra,
        )
    if rate < pump.min_rate_ml_h or rate <= 0:
        return Verdict.refuse(
            Reason.PUMP_RANGE_LOW,
            f"refused: {num(dose)} {unit} needs {num(exact)} mL/h, below the pump's minimum "
            f"{num(pump.min_rate_ml_h)} mL/h with this syringe (use a smaller syringe or a "
            "weaker concentration)",
            **extra,
        )

    # S1 hard max, S2 soft limits (checked on the order; the pump's rounded rate is lower)
    findings = limit_findings(therapy, dose, program.what, soft_confirmed=confirm_soft)
    for finding in findings:
        if finding.severity is Severity.REFUSE:
            return Verdict.refuse(finding.code, finding.message, findings=(finding,), **extra)
    for finding in findings:
        if finding.severity is Severity.CONFIRM:
            return Verdict.refuse(
                finding.code,
                f"refused until confirmed: {finding.message.removeprefix('needs confirmation: ')}",
                findings=(finding,),
                **extra,
            )

    current = state.current_dose()
    t = now.clinical
    # S4 increase limits
    if start:
        titr_window = float(therapy.titration.window_min.value) * 60
        # a rate the pump ran on its own (stopped as over-rate) is no licence to start at it
        recent = program.dose_of_amount_rate(
            state.history.max_amount_rate(t - titr_window, t, exclude=frozenset({"pump"}))
        )
        bound = max(Fraction(therapy.max_start.value), recent)
        if dose > bound:
            return Verdict.refuse(
                Reason.START_TOO_HIGH,
                f"refused: a start at {num(dose)} {unit} is above the largest allowed start, "
                f"{num(bound)} {unit} (max start {num(therapy.max_start.value)} {unit}, or the "
                "rate running in the last titration window)",
                **extra,
            )
    elif dose > current:
        refusal = _rise_limits(state, program, dose, current, t, extra)
        if refusal is not None:
            return refusal

    # S5 gradual wean: never below (1 - f) x the highest dose of the last window
    if not start and dose < current:
        refusal = _wean_limit(state, program, effective, t, extra)
        if refusal is not None:
            return refusal

    # S3 cumulative cap: a rise (or a start) must not reach the cap within the look-ahead
    if start or dose > current:
        refusal = _cap_limit(state, program, rate, t, config, extra)
        if refusal is not None:
            return refusal

    actions: tuple[PumpAction, ...]
    if start:
        actions = (SetRate(rate), StartPump())
        if not state.interlock_enabled:
            actions = (SetInterlock(True), *actions)
        verb = "start"
    else:
        actions = (SetRate(rate),)
        verb = "rise" if dose > current else "fall" if dose < current else "same rate"
    warnings = tuple(f for f in findings if f.severity is Severity.WARN)
    return Verdict(
        True,
        Reason.ACCEPTED,
        f"accepted ({verb}): {num(dose)} {unit} -> {num(rate)} mL/h "
        f"(delivers {num(effective)} {unit})",
        actions=actions,
        findings=warnings,
        **extra,  # type: ignore[arg-type]
    )


def _rise_limits(
    state: KernelState,
    program: ActiveProgram,
    dose: Fraction,
    current: Fraction,
    t: float,
    extra: dict[str, object],
) -> Verdict | None:
    titration = program.therapy.titration
    unit = program.unit
    rise = dose - current
    step_bound = min(
        Fraction(titration.max_step_rise.value),
        Fraction(titration.max_step_rise_fraction.value) * current,
    )
    if rise > step_bound:
        ratio = f"{num(dose / current, 3)}x" if current > 0 else "a rise from"
        return Verdict.refuse(
            Reason.STEP_RISE,
            f"refused: {num(dose)} {unit} is {ratio} the current {num(current)} {unit}; "
            f"the largest allowed rise now is {num(step_bound)} {unit} (to "
            f"{num(current + step_bound)} {unit})",
            **extra,
        )
    window_s = float(titration.window_min.value) * 60
    base_amount = state.history.min_running_amount_rate(t - window_s, t)
    base = program.dose_of_amount_rate(base_amount) if base_amount is not None else current
    window_bound = min(
        Fraction(titration.max_window_rise.value),
        Fraction(titration.max_window_rise_fraction.value) * base,
    )
    if dose - base > window_bound:
        return Verdict.refuse(
            Reason.WINDOW_RISE,
            f"refused: {num(dose)} {unit} rises {num(dose - base)} {unit} above the lowest dose "
            f"of the last {num(titration.window_min.value)} min ({num(base)} {unit}); at most "
            f"{num(window_bound)} {unit} per window, so at most {num(base + window_bound)} "
            f"{unit} now",
            **extra,
        )
    return None


def _wean_limit(
    state: KernelState,
    program: ActiveProgram,
    effective: Fraction,
    t: float,
    extra: dict[str, object],
) -> Verdict | None:
    wean = program.therapy.wean
    if not wean.gradual_wean_only.value:
        return None
    assert wean.max_fall_fraction is not None and wean.window_min is not None
    unit = program.unit
    window_s = float(wean.window_min.value) * 60
    highest = program.dose_of_amount_rate(state.history.max_amount_rate(t - window_s, t))
    floor = (1 - Fraction(wean.max_fall_fraction.value)) * highest
    if effective < floor:
        pct = num(Fraction(wean.max_fall_fraction.value) * 100)
        return Verdict.refuse(
            Reason.WEAN_TOO_FAST,
            f"refused: {num(effective)} {unit} is a faster wean than allowed: at most {pct} % "
            f"below the highest dose of the last {num(wean.window_min.value)} min "
            f"({num(highest)} {unit}), so not below {num(floor)} {unit} now",
            **extra,
        )
    return None


def _cap_limit(
    state: KernelState,
    program: ActiveProgram,
    rate: Decimal,
    t: float,
    config: KernelConfig,
    extra: dict[str, object],
) -> Verdict | None:
    cap = program.cap
    if cap is None:
        return None
    window_s = float(cap.window_s)
    given = state.history.amount(t - window_s, t)
    ahead = float(rate) * config.cap_lookahead_s / 3600.0 * float(program.amount_per_ml)
    limit = float(cap.base_amount)
    if given + ahead > limit:
        return Verdict.refuse(
            Reason.CUMULATIVE_CAP,
            f"refused: at {num(rate)} mL/h the cap of {num(cap.amount)} {cap.unit} per "
            f"{num(cap.window_h)} h would be reached within {config.cap_lookahead_s / 60:.0f} min "
            f"({_amount(given, cap.unit.value)} given in the last {num(cap.window_h)} h)",
            **extra,
        )
    return None


def _stop(state: KernelState, program: ActiveProgram) -> Verdict:
    if not state.running and not state.expected_running:
        return Verdict.refuse(Reason.NOT_INFUSING, "refused: not infusing")
    wean = program.therapy.wean
    current = state.current_dose()
    if wean.gradual_wean_only.value:
        assert wean.stop_threshold is not None
        threshold = Fraction(wean.stop_threshold.value)
        if current > threshold:
            return Verdict.refuse(
                Reason.STOP_ABOVE_THRESHOLD,
                f"refused: {program.what} is weaned, never stopped abruptly: the current "
                f"{num(current)} {program.unit} is above the stop threshold "
                f"{num(threshold)} {program.unit}; wean first (emergency stop stops at once)",
            )
    return Verdict(True, Reason.ACCEPTED, "accepted: stop", actions=(StopPump(),))


def _amount(base: float, unit: str) -> str:
    value = base / 1000.0 if unit == "mg" else base
    return f"{value:.3g} {unit}"


__all__ = ["Finding", "decide"]
