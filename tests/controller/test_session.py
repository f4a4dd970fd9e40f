"""Session flows on an in-process safety process (``LocalSafety``, virtual clocks).

The safety process is the real core behind the real message dispatcher; only the socket
is missing. Time moves with ``drive`` (advance both clocks, service the session)."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from controller.alarm_desk import LINK_LOST_KEY, PLAN_REFUSED_KEY
from controller.closed_loop.limits import Rules
from controller.errors import BadInput, ControllerError, Refused
from controller.machine import State, TransitionRefused
from controller.plan_executor import MAX_REPLANS, ConfirmationRequired, PlanChanged
from controller.planner import StepKind, Unreachable
from controller.session import Session
from controller.session_link import LinkUnavailable
from safety.ipc.local import LocalSafety
from safety.journal import Journal
from safety.kernel.model import ChangeDose, RequestBody, Verdict
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import AlarmView, Outcome
from safety.timing import HostTiming
from tests.controller.conftest import drive, drive_until


def _state(session: Session) -> State:
    """The machine's state (a call, so the type checker does not narrow it between steps)."""
    return session.state


def _norepi(session: Session, dose: int | str = 8) -> None:
    session.program("norepinephrine", "4 mg/250 mL", "D5W")
    session.start(dose)


def _controller_entries(session: Session, kind: str) -> list[dict[str, Any]]:
    journal = session.journal.journal
    assert journal is not None
    return [e.data() for e in journal.entries(kinds=[kind])]


def _safety_requests(link: LocalSafety) -> list[dict[str, Any]]:
    return [e.data() for e in link.journal.entries(kinds=["request_decided"])]


# --------------------------------------------------------------------------- basics


def test_program_and_start(session: Session, local: LocalSafety) -> None:
    assert _state(session) is State.IDLE
    outcome = session.program("noradrenaline", "4 mg/250 mL", "D5W")
    assert outcome.verdict.accepted and _state(session) is State.PROGRAMMED
    outcome = session.start("8 mcg/min")
    assert outcome.verdict.accepted and _state(session) is State.INFUSING
    assert local.snapshot().rate_ml_h == Decimal(30)
    line = session.status_line()
    assert "[infusing]" in line and "8 mcg/min @ 30 mL/h" in line and "syringe empty in" in line
    actions = [e["action"] for e in _controller_entries(session, "action")]
    assert actions == ["program", "start"]


def test_two_step_titration(session: Session, local: LocalSafety) -> None:
    _norepi(session)
    drive(local, session, 120)
    requests_before = len(_safety_requests(local))
    change = session.titrate_to(14)
    assert _state(session) is State.INFUSING  # entered, not confirmed: nothing sent
    assert len(_safety_requests(local)) == requests_before
    assert [s.dose for s in change.plan.steps] == [Decimal(10), Decimal(12), Decimal(14)]
    results = change.confirm()
    assert [r.step.index for r in results] == [1] and results[0].accepted
    assert _state(session) is State.TITRATING
    assert local.snapshot().dose == Decimal(10)
    drive_until(local, session, (State.TITRATING,), limit_s=3600)
    assert _state(session) is State.INFUSING
    assert local.snapshot().dose == Decimal(14)
    journal = session.journal.journal
    assert journal is not None
    kinds = [e.kind for e in journal.entries()]
    # the plan before its confirmation, the confirmation before the first step's request
    assert kinds.index("plan") < kinds.index("confirm")
    assert kinds.index("confirm") < len(kinds) - 1 - kinds[::-1].index("request")
    confirm = _controller_entries(session, "confirm")[0]
    assert confirm["soft_limits"] is False


def test_soft_limit_overrides_need_their_own_confirmation(
    session: Session, local: LocalSafety
) -> None:
    _norepi(session, 3)
    drive(local, session, 600)
    change = session.titrate_to("1.5")  # below the soft minimum of 2 mcg/min
    assert change.needs_soft_confirmation
    flagged = [s.dose for s in change.plan.steps if s.confirm_soft_limits]
    assert flagged and all(d is not None and d < 2 for d in flagged)
    with pytest.raises(ConfirmationRequired, match="soft minimum of 2 mcg/min"):
        change.confirm()
    assert _state(session) is State.INFUSING and session.pending is change  # still pending
    change.confirm(soft_limits=True)
    drive_until(local, session, (State.TITRATING,), limit_s=4 * 3600, step=60)
    assert _state(session) is State.INFUSING
    assert local.snapshot().dose == Decimal("1.5")
    confirms = _controller_entries(session, "confirm")
    assert confirms[-1]["soft_limits"] is True
    assert any("soft minimum" in f for f in confirms[-1]["soft_findings"])
    errors = _controller_entries(session, "error")
    assert any(e["code"] == "soft_limit_confirmation_required" for e in errors)
    # the safety process journaled each override on the steps that needed it
    overrides = [r for r in _safety_requests(local) if r["body"].get("confirm_soft_limits")]
    assert len(overrides) == len(flagged) and all(r["accepted"] for r in overrides)


def test_stop_of_norepinephrine_is_a_wean_then_a_stop(session: Session, local: LocalSafety) -> None:
    _norepi(session, 4)  # 15 mL/h: the 50 mL syringe lasts the wean
    drive(local, session, 600)
    change = session.stop()
    assert change.plan.ends_in_stop and len(change.plan.steps) > 2
    change.confirm()
    assert _state(session) is State.WEANING
    drive_until(local, session, (State.WEANING,), limit_s=4 * 3600, step=60)
    assert _state(session) is State.STOPPED
    snapshot = local.snapshot()
    assert not snapshot.running
    # the wean rule held on what the safety process verified: never below 75 % of the
    # highest rate in force during the 30 minutes before a change
    per_ml = Fraction(16)  # 4 mg/250 mL: the history's drug rates as rates of it
    points = [(p.start, p.exact_amount() / per_ml) for p in snapshot.history]
    ends = [start for start, _ in points[1:]] + [float("inf")]
    for i, (t, rate) in enumerate(points):
        if rate == 0:
            continue
        highest = max(r for (s, r), e in zip(points[: i + 1], ends, strict=False) if e > t - 1800)
        assert rate >= Fraction(3, 4) * highest
    assert points[-1][1] == 0 and points[-2][1] <= Fraction("7.5")  # stopped from <= 2 mcg/min


def test_stop_of_a_drug_without_wean_rule_is_immediate(
    session: Session, local: LocalSafety
) -> None:
    session.program("vasopressin", "20 units/100 mL", "NS")
    session.start("0.03")
    change = session.stop()
    assert [s.kind for s in change.plan.steps] == [StepKind.STOP]
    results = change.confirm()
    assert results[0].accepted and _state(session) is State.STOPPED
    assert not local.snapshot().running


def test_emergency_stop_cancels_the_plan_and_needs_an_acknowledgement(
    session: Session, local: LocalSafety
) -> None:
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(12).confirm()
    assert _state(session) is State.TITRATING
    outcome = session.emergency_stop()
    assert outcome.verdict.accepted
    assert _state(session) is State.EMERGENCY_STOPPED and session.active_plan is None
    assert not local.snapshot().running and local.snapshot().estopped
    with pytest.raises(TransitionRefused, match="acknowledge the emergency stop first"):
        session.start(8)
    drive(local, session, 5)
    session.acknowledge()
    assert _state(session) is State.STOPPED
    session.start(8)  # a restart is allowed again
    assert _state(session) is State.INFUSING


def test_a_pump_alarm_then_acknowledge(session: Session, local: LocalSafety) -> None:
    seen: list[AlarmView] = []
    session.subscribe_alarms(seen.append)
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(12).confirm()
    local.pump.set_occlusion(True)
    drive(local, session, 120, step=5)
    assert _state(session) is State.ALARM
    assert session.active_plan is None  # the plan stops with the alarm
    assert "pump:occlusion" in [a.key for a in seen]
    line = session.status_line()
    assert "HIGH pump:occlusion" in line
    with pytest.raises(TransitionRefused, match="acknowledge the alarm first"):
        session.titrate_to(14)
    local.pump.set_occlusion(False)
    drive(local, session, 5)
    session.acknowledge()
    assert _state(session) is State.STOPPED  # the occlusion stopped the pump
    session.start(10)
    assert _state(session) is State.INFUSING
    alarms = _controller_entries(session, "alarm")
    assert any(a["alarm"]["key"] == "pump:occlusion" for a in alarms)


def test_medium_alarms_are_announced_but_do_not_stop_a_plan(
    session: Session, local: LocalSafety
) -> None:
    seen: list[str] = []
    session.subscribe_alarms(lambda a: seen.append(a.key))
    _norepi(session, 4)
    drive(local, session, 600)
    session.stop().confirm()
    local.inject_faults("empty=4.5")  # 4.5 mL left: below the near-empty mark (5 mL)
    drive(local, session, 60, step=10)
    assert "pump:near_empty" in seen
    assert _state(session) is State.WEANING and session.active_plan is not None
    assert "MEDIUM pump:near_empty" in session.status_line()
    # then the syringe runs dry: a high alarm, and the plan stops with it
    drive_until(local, session, (State.WEANING,), limit_s=3600, step=30)
    assert _state(session) is State.ALARM
    assert "pump:empty" in seen and session.active_plan is None


# --------------------------------------------------------------------------- re-sync, link


def test_a_restarted_controller_resyncs_without_changing_the_rate(
    local: LocalSafety, library: DrugLibrary, tmp_path: Path
) -> None:
    first = Session.open(local, library, journal=tmp_path / "c1.sqlite", clinical=local.clinical)
    _norepi(first)
    drive(local, first, 120)
    first.titrate_to(12).confirm()
    drive_until(local, first, (State.TITRATING,), limit_s=600)
    local.kill_controller()  # the controller process dies: EOF at the safety process
    first.close(hang_up=False)
    rate = local.snapshot().rate_ml_h
    assert local.snapshot().hold
    decided = len(_safety_requests(local))
    second = Session.open(local, library, journal=tmp_path / "c2.sqlite", clinical=local.clinical)
    assert local.snapshot().rate_ml_h == rate  # attaching changed nothing
    assert len(_safety_requests(local)) == decided  # and sent no request
    # it finds the infusion and the 'controller lost' alarm the safety process raised
    assert _state(second) is State.ALARM
    assert any(a.key == "controller_lost" for a in second.alarms())
    second.acknowledge()
    assert _state(second) is State.INFUSING
    assert second.status().dose == Decimal(12)
    second.close(hang_up=False)


def test_current_state_is_the_last_snapshot_on_a_link_that_tells_every_change(
    library: DrugLibrary, tmp_path: Path
) -> None:
    # read-backs once a minute: between them nothing changes and nothing is pushed
    timing = HostTiming(poll_period_s=60.0, keep_alive_period_s=60.0, heartbeat_timeout_s=600.0)
    with LocalSafety(library=library, timing=timing) as local:
        session = Session.open(local, library, clinical=local.clinical)
        _norepi(session)
        local.advance(60.0)  # a read-back at 60 s, the next one at 120 s
        local.advance(30.0)
        held, at = session.current_state()
        now = local.clinical.now()
        assert at == now
        fresh = local.snapshot()
        assert held.clinical_time < now  # the last change was before now: not asked again
        for field in ("program", "running", "rate_ml_h", "dose", "history", "alarms", "hold"):
            assert getattr(held, field) == getattr(fresh, field)
        at_now = Rules(library, held, session.kernel_config, now=now)
        asked = Rules(library, fresh, session.kernel_config)
        assert at_now.state == asked.state and at_now.bounds() == asked.bounds()
        assert at_now.check(Decimal(9), False) == asked.check(Decimal(9), False)
        # a change (the stop button, at the safety process) is pushed at once
        local.press_stop_button()
        stopped, _ = session.current_state()
        assert stopped.estopped and not stopped.running
        assert stopped == local.snapshot()
        assert _state(session) is State.EMERGENCY_STOPPED  # the machine followed it
        session.close(hang_up=False)


def test_current_state_asks_a_link_that_may_still_have_news_on_the_way(
    library: DrugLibrary,
) -> None:
    class SocketLike(LocalSafety):
        synchronous_notices = False  # as over a socket: a notice may be in flight

    timing = HostTiming(poll_period_s=60.0, keep_alive_period_s=60.0, heartbeat_timeout_s=600.0)
    with SocketLike(library=library, timing=timing) as local:
        session = Session.open(local, library, clinical=local.clinical)
        _norepi(session)
        local.advance(90.0)
        asked, at = session.current_state()
        assert asked.clinical_time == at == local.clinical.now()
        assert asked == local.snapshot()
        session.close(hang_up=False)


def test_resync_of_a_fresh_bench_is_idle(session: Session) -> None:
    assert _state(session) is State.IDLE
    assert "no program" in session.status_line()


def test_safety_link_death_raises_an_alarm_holds_and_sends_nothing(
    session: Session, local: LocalSafety, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    session.subscribe_alarms(lambda a: seen.append(a.key))
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(14).confirm()
    journal = session.journal.journal
    assert journal is not None
    local.close()  # the safety process dies (its socket closes)
    session.service()
    assert _state(session) is State.HOLD
    assert LINK_LOST_KEY in seen
    alarm = next(a for a in session.alarms() if a.key == LINK_LOST_KEY)
    assert alarm.priority == "high"
    assert session.active_plan is None
    sent = len(list(journal.entries(kinds=["request"])))
    with pytest.raises((TransitionRefused, LinkUnavailable)):
        session.titrate_to(12)
    with pytest.raises(TransitionRefused):
        session.acknowledge()
    assert session.service() is None
    assert len(list(journal.entries(kinds=["request"]))) == sent  # nothing more was sent
    with pytest.raises(LinkUnavailable, match="hardware stop button"):
        session.emergency_stop()  # attempted, and the operator told where to turn


def test_heartbeat_loss_puts_both_sides_on_hold_until_resume(
    session: Session, local: LocalSafety
) -> None:
    _norepi(session)
    rate = local.snapshot().rate_ml_h
    local.stop_heartbeats()  # this controller hangs
    drive(local, session, 10, step=1)
    assert local.snapshot().hold
    assert _state(session) is State.HOLD
    assert local.snapshot().rate_ml_h == rate  # S11: the rate is held
    local.resume_heartbeats()
    assert session.resume() is State.ALARM  # re-attached: 'controller lost' to acknowledge
    session.acknowledge()
    assert _state(session) is State.INFUSING and local.snapshot().rate_ml_h == rate


def test_resume_ends_a_plan_at_the_current_dose(session: Session, local: LocalSafety) -> None:
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(14).confirm()
    assert session.resume() is State.INFUSING
    drive(local, session, 1200)
    assert local.snapshot().dose == Decimal(10)  # only the first step was taken


# --------------------------------------------------------------------------- refusals


def test_a_refused_step_is_replanned_not_forced(session: Session, local: LocalSafety) -> None:
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(14).confirm()  # 10 now, 12 in a minute
    # someone else lowers the dose behind the plan's back (same session, so it is valid)
    outcome = local.request(ChangeDose(Decimal(9)))
    assert outcome.verdict.accepted
    drive_until(local, session, (State.TITRATING,), limit_s=3600)
    assert _state(session) is State.INFUSING
    assert local.snapshot().dose == Decimal(14)
    replans = [e for e in _controller_entries(session, "plan") if "replanned_after" in e]
    assert replans and replans[0]["replanned_after"] == "step_rise_too_large"


class RefusingLink:
    """The real in-process link, except that dose changes are refused with ``reason``
    from the ``after``-th one on (a safety process whose limits the planner does not
    know about, e.g. one configured differently)."""

    def __init__(self, link: LocalSafety, reason: Reason, after: int = 1) -> None:
        self._link = link
        self.reason = reason
        self.after = after
        self.changes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    @property
    def session(self) -> str | None:
        return self._link.session

    def request(self, body: RequestBody, *, ttl_s: float | None = None) -> Outcome:
        if isinstance(body, ChangeDose):
            self.changes += 1
            if self.changes >= self.after:
                verdict = Verdict.refuse(self.reason, f"refused: {self.reason} (test)")
                return Outcome(verdict, "not executed", self._link.snapshot())
        return self._link.request(body, ttl_s=ttl_s)


@pytest.mark.parametrize(
    ("reason", "replans"),
    [(Reason.HARD_MAX, 0), (Reason.STEP_RISE, MAX_REPLANS)],
    ids=["not-replannable", "replans-exhausted"],
)
def test_a_step_that_cannot_be_replanned_is_a_controller_alarm(
    local: LocalSafety, library: DrugLibrary, tmp_path: Path, reason: Reason, replans: int
) -> None:
    proxy = RefusingLink(local, reason, after=2)
    session = Session.open(
        proxy,
        library,
        journal=tmp_path / "c.sqlite",
        clinical=local.clinical,
    )
    seen: list[str] = []
    session.subscribe_alarms(lambda a: seen.append(a.key))
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(14).confirm()  # step 1 goes through; step 2 is refused
    drive(local, session, 300)
    assert _state(session) is State.ALARM
    assert PLAN_REFUSED_KEY in seen and session.active_plan is None
    alarm = next(a for a in session.alarms() if a.key == PLAN_REFUSED_KEY)
    assert "refused by the safety process" in alarm.message
    assert "the dose stays at 10 mcg/min" in alarm.message
    assert proxy.changes == 2 + replans  # each refused step was asked once, never repeated
    assert local.snapshot().dose == Decimal(10)  # nothing forced
    session.acknowledge()
    assert _state(session) is State.INFUSING
    session.close(hang_up=False)


def test_unreachable_targets_are_explained(session: Session) -> None:
    _norepi(session)
    with pytest.raises(Unreachable) as info:
        session.titrate_to(50)
    assert "hard maximum of 47 mcg/min" in info.value.message
    assert info.value.plan.best == Decimal(47)
    assert session.pending is None


def test_invalid_triggers_are_operator_errors(session: Session, local: LocalSafety) -> None:
    with pytest.raises(TransitionRefused, match="cannot start while idle"):
        session.start(8)
    _norepi(session, 4)
    drive(local, session, 600)
    session.stop().confirm()
    with pytest.raises(TransitionRefused, match="cannot titrate while weaning; resume first"):
        session.titrate_to(6)
    with pytest.raises(TransitionRefused, match="stop it first"):
        session.reprogram("vasopressin", "20 units/100 mL", "NS")


def test_bad_input_names_the_field(session: Session) -> None:
    with pytest.raises(BadInput) as info:
        session.program("norepinephrine", "4 mg per 250", "D5W")
    assert info.value.field == "concentration"
    with pytest.raises(BadInput) as info:
        session.program("unobtainium", "4 mg/250 mL", "D5W")
    assert info.value.field == "drug"
    with pytest.raises(BadInput) as info:
        session.program("norepinephrine", "4 mg/250 mL", "bleach")
    assert info.value.field == "diluent"
    session.program("norepinephrine", "4 mg/250 mL", "D5W")
    for bad in ("abc", "-1", "0", "1,5"):
        with pytest.raises(BadInput) as info:
            session.start(bad)
        assert info.value.field == "dose"
    with pytest.raises(BadInput, match="weight-based"):
        session.start("0.1 mcg/kg/min")
    with pytest.raises(Refused) as refused:
        session.start(20)  # above the max start
    assert refused.value.code == "start_above_max_start"
    errors = _controller_entries(session, "error")
    assert {e["field"] for e in errors} >= {"concentration", "drug", "diluent", "dose"}


def test_a_plan_that_went_stale_is_shown_again(session: Session, local: LocalSafety) -> None:
    _norepi(session)
    drive(local, session, 120)
    change = session.titrate_to(14)
    drive(local, session, 300)  # the same steps, later: still valid
    assert change.plan.steps[0].dose == Decimal(10)
    local.request(ChangeDose(Decimal(9)))  # the dose changed behind the operator's back
    with pytest.raises(PlanChanged) as info:
        change.confirm()
    fresh = info.value.pending
    assert session.pending is fresh
    assert fresh.plan.start_dose == Decimal(9)
    assert "review the new plan" in info.value.message
    fresh.confirm()
    assert _state(session) is State.TITRATING
    with pytest.raises(Exception, match="no longer pending"):
        change.confirm()


def test_a_new_action_supersedes_a_pending_change(session: Session) -> None:
    _norepi(session)
    change = session.titrate_to(10)
    session.emergency_stop()
    assert session.pending is None
    with pytest.raises(Exception, match="no longer pending"):
        change.confirm()


def test_alarm_callbacks_that_fail_are_logged_not_raised(
    session: Session, local: LocalSafety, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(alarm: AlarmView) -> None:
        raise RuntimeError("subscriber bug")

    session.subscribe_alarms(broken)
    _norepi(session)
    with caplog.at_level(logging.CRITICAL, logger="controller.session"):
        session.emergency_stop()
    assert _state(session) is State.EMERGENCY_STOPPED
    assert any(
        "subscriber bug" in str(e.get("error")) for e in _controller_entries(session, "error")
    )


def test_history_has_doses(session: Session, local: LocalSafety) -> None:
    _norepi(session)
    drive(local, session, 120)
    session.titrate_to(10).confirm()
    points = session.history()
    assert [p.dose for p in points if p.rate_ml_h > 0][-2:] == [Decimal(8), Decimal(10)]
    assert all(p.unit == "mcg/min" for p in points)


def test_the_journal_survives_and_reads_back(
    session: Session, local: LocalSafety, tmp_path: Path
) -> None:
    _norepi(session)
    session.close(hang_up=False)
    journal = Journal(tmp_path / "controller.sqlite", process="controller")
    kinds = [e.kind for e in journal.entries()]
    assert "attached" in kinds and "action" in kinds and "outcome" in kinds
    assert all(e.process == "controller" for e in journal.entries())
    for entry in journal.entries():
        json.loads(entry.payload)
    journal.close()


def test_a_second_controller_is_told_another_one_is_attached(
    local: LocalSafety, library: DrugLibrary, tmp_path: Path
) -> None:
    """Only one live controller: the real dispatcher refuses a second attach (here the
    same in-process link attaches twice; a live first session is what counts)."""
    first = Session.open(local, library, clinical=local.clinical)
    _norepi(first)

    class SecondLink:
        def __getattr__(self, name: str) -> Any:
            return getattr(local, name)

        @property
        def session(self) -> str | None:
            return local.session

        def attach(self) -> Any:
            from safety.ipc.link import ControllerBusy

            raise ControllerBusy("safety process: a controller is attached")

    with pytest.raises(ControllerError) as info:
        Session.open(SecondLink(), library, clinical=local.clinical)
    assert info.value.code == "controller_busy"
    assert local.snapshot().running  # nothing happened to the infusion
    first.close(hang_up=False)


def test_a_safety_process_restart_is_a_lost_session_then_a_resync(
    library: DrugLibrary, tmp_path: Path
) -> None:
    link = LocalSafety(library=library, journal_path=tmp_path / "safety.sqlite")
    try:
        session = Session.open(link, library, clinical=link.clinical)
        _norepi(session)
        drive(link, session, 60)
        rate = link.snapshot().rate_ml_h
        link.restart()  # journal replay; the pump untouched
        session.service()
        assert _state(session) is State.HOLD
        assert any(a.key == "controller:session_lost" for a in session.alarms())
        with pytest.raises(TransitionRefused):
            session.titrate_to(10)
        decided = len(_safety_requests(link))
        assert session.resume() is State.ALARM  # the session-lost alarm to acknowledge
        assert link.snapshot().rate_ml_h == rate
        assert len(_safety_requests(link)) == decided  # re-attaching sent nothing
        session.acknowledge()
        assert _state(session) is State.INFUSING and session.status().dose == Decimal(8)
        session.close(hang_up=False)
    finally:
        link.close()


def test_a_wean_cut_short_by_a_safety_restart_comes_back_re_planned(
    library: DrugLibrary, tmp_path: Path
) -> None:
    """Issue 9: the controller used to drop its plan on a safety-process restart and the
    dose stayed at the intermediate step until someone noticed. Now the interruption is
    an alarm at once, and once the session takes orders again the rest of the wean is
    re-planned from where it stopped and waits for the operator's confirmation."""
    link = LocalSafety(library=library, journal_path=tmp_path / "safety.sqlite")
    try:
        session = Session.open(link, library, clinical=link.clinical)
        _norepi(session, 12)
        drive(link, session, 60)
        session.wean(Decimal(4)).confirm()
        drive(link, session, 40 * 60, step=120)  # a step or two of the wean (25 %/30 min)
        reached = link.snapshot().dose
        assert reached is not None and Decimal(4) < reached < Decimal(12)
        link.restart()
        session.service()
        alarm = next(a for a in session.alarms() if a.key == "controller:plan_interrupted")
        assert alarm.priority == "medium" and "interrupted after step" in alarm.message
        assert session.pending is None  # nothing can be planned while the session is lost

        assert session.resume() is State.ALARM
        pending = session.pending
        assert pending is not None and pending.plan.target == Decimal(4)
        assert pending.plan.start_dose == reached  # from where it stopped
        alarm = next(a for a in session.alarms() if a.key == "controller:plan_interrupted")
        assert "re-planned" in alarm.message and "confirm" in alarm.message
        assert link.snapshot().dose == reached  # nothing was sent by the offer itself

        session.acknowledge()
        again = session.pending
        assert again is not None
        again.confirm()
        drive_until(link, session, (State.WEANING,), 6 * 3600, step=300)
        assert link.snapshot().dose == Decimal(4)
        assert all(a.key != "controller:plan_interrupted" for a in session.alarms())
        session.close(hang_up=False)
    finally:
        link.close()


def test_a_titration_cut_short_is_not_offered_again(library: DrugLibrary, tmp_path: Path) -> None:
    """A rise left half-way leaves a dose below the goal, not a hazard the operator did not
    choose: the plan is dropped as before, with the session-lost alarm only."""
    link = LocalSafety(library=library, journal_path=tmp_path / "safety.sqlite")
    try:
        session = Session.open(link, library, clinical=link.clinical)
        _norepi(session, 8)
        drive(link, session, 60)
        session.titrate_to(16).confirm()
        drive(link, session, 60)
        link.restart()
        session.service()
        session.resume()
        assert session.pending is None
        assert all(a.key != "controller:plan_interrupted" for a in session.alarms())
        session.close(hang_up=False)
    finally:
        link.close()


def test_a_wean_the_previous_controller_was_carrying_out_is_picked_up(
    local: LocalSafety, library: DrugLibrary, tmp_path: Path
) -> None:
    """The controller process dies half-way through a wean: the controller started next
    on the same journal finds the unfinished wean, says so, and offers its rest."""
    journal = tmp_path / "controller.sqlite"
    first = Session.open(local, library, journal=journal, clinical=local.clinical)
    _norepi(first, 12)
    drive(local, first, 60)
    first.wean(Decimal(4)).confirm()
    drive(local, first, 40 * 60, step=120)
    local.kill_controller()  # no close: a death leaves the plan confirmed in the journal
    reached = local.snapshot().dose
    assert reached is not None and Decimal(4) < reached < Decimal(12)

    second = Session.open(local, library, journal=journal, clinical=local.clinical)
    alarm = next(a for a in second.alarms() if a.key == "controller:plan_interrupted")
    assert "controller stopped" in alarm.message and "re-planned" in alarm.message
    pending = second.pending
    assert pending is not None and pending.plan.target == Decimal(4)
    assert pending.plan.start_dose == reached
    second.acknowledge()
    pending.confirm()
    drive_until(local, second, (State.WEANING,), 6 * 3600, step=300)
    assert local.snapshot().dose == Decimal(4)

    local.kill_controller()  # a finished wean is not picked up again
    second.close(hang_up=False)
    again = Session.open(local, library, journal=journal, clinical=local.clinical)
    assert again.pending is None
    assert all(a.key != "controller:plan_interrupted" for a in again.alarms())
    again.close(hang_up=False)
