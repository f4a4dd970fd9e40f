"""Case group 4: processes die. kill -9 and SIGSTOP of the controller, kill -9 of the
safety process, restarts of each, and both dead at once.

What must hold (S11, S14 in docs/safety.md, and the restart rule "never change what the
pump is doing"), judged on the pump's ground truth and frame log:

- a dead or hung controller: the pump keeps the verified rate, the safety process raises
  a high-priority alarm (and its GPIO alarm pin), and refuses changes until a controller
  re-attaches; a restarted controller re-attaches without touching the rate;
- a killed safety process: its journal is intact (every entry decodes and replays), the
  pump runs on, and the restarted process resumes supervision without sending the pump
  a single rate (frame log) or changing the delivered flow (truth);
- both dead: the pump keeps running at its rate - except the NE-1000 in safe mode, which
  stops itself when nobody talks to it for its safe-mode timeout. That is the pump's own
  protection (NE-1000 manual, ``SAF``), configured by the bench (``safe_mode_timeout_s``),
  and the restarted safety process reports it (``pump:comms_timeout``) rather than
  restarting the pump; the other pumps here have no such watchdog switched on.
"""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest

from controller.bench_config import load_bench_config
from controller.connect import open_link
from controller.machine import State
from hil_tests.conftest import MakeBench
from hil_tests.harness.bench import HilBench
from hil_tests.harness.conditions import held_with_alarm
from hil_tests.harness.processes import wait_for
from hil_tests.harness.pumps import ALL_KINDS, NE1000, PumpKind
from hil_tests.harness.truth import changes_between, describe, last_rate
from safety.journal import Journal
from safety.kernel.codec import decode_event
from safety.kernel.config import KernelConfig
from safety.kernel.model import ChangeDose
from safety.kernel.replay import replay_journal
from safety.reasons import Reason

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

#: mL/h per mcg/min at 32 mcg/mL
ML_H_PER_MCG_MIN = 60 / 32
RATE_8 = 8 * ML_H_PER_MCG_MIN  # 15 mL/h
RATE_10 = 10 * ML_H_PER_MCG_MIN  # 18.75 mL/h
#: the NE-1000's own watchdog in the both-dead case (s, real time: the pump's clock): the
#: shortest whole number the config check takes for one pump with the harness's 0.5 s
#: reply timeout and 1 s keep-alive (more than 4 x 0.5 + 3 drains of 0.5 + 1 s = 4.5 s)
NE1000_SAFE_MODE_S = 5
#: the both-dead case's clock (clinical s per real s; see there)
RESTART_SPEED = 300.0


def alarm_pin(bench: HilBench) -> bool:
    return bool(bench.gpio().get("alarm_on"))


def journal_replays(bench: HilBench) -> tuple[bool, Decimal]:
    """Open the safety journal as a reader would after a crash: every entry decodes and
    the kernel state replays. Returns (running, set rate) from the replay."""
    journal = Journal(bench.safety_journal, "check")
    try:
        entries = list(journal.entries())
        assert [e.id for e in entries] == list(range(1, len(entries) + 1))
        for entry in entries:
            decode_event(entry.payload)
        state = replay_journal(KernelConfig(), journal).state
    finally:
        journal.close()
    return state.running, state.set_rate


def infusing_child(bench: HilBench, dose: str = "8") -> None:
    ctl = bench.controller_child("infuse", dose)
    ctl.wait_line("infusing")
    wait_for(lambda: bench.pump()["running"], 5.0, "the pump running")
    wait_for(lambda: not alarm_pin(bench), 5.0, "the alarm pin off while supervised")


# --------------------------------------------------------------------------- controller


def test_kill_9_of_the_controller_holds_the_rate_until_a_new_controller_attaches(
    make_bench: MakeBench,
) -> None:
    bench = make_bench(NE1000)
    ctl = bench.controller_child("infuse", "8")
    ctl.wait_line("infusing")
    wait_for(lambda: not alarm_pin(bench), 5.0, "the alarm pin off while supervised")
    monitor = bench.monitor()
    sets = bench.set_rates_executed()

    killed = bench.now()
    ctl.kill9()
    snap = wait_for(lambda: held_with_alarm(monitor), 5.0, "hold and a high alarm")
    assert snap.running and snap.rate_ml_h == Decimal("15")
    alarm = next(a for a in snap.alarms if a.key == "controller_lost")
    assert "(eof)" in alarm.message  # seen at once, not after the heartbeat timeout
    wait_for(lambda: alarm_pin(bench), 5.0, "the GPIO alarm pin")
    refused = bench.unattached_request(ChangeDose(Decimal(10)))
    assert refused.outcome.verdict.reason is Reason.HOLD
    bench.wait_clinical(bench.now() + 15 * 60)  # a quarter of an hour unsupervised

    # a restarted controller re-attaches (never a rate change) and may titrate again
    restarted = bench.now()
    again = bench.controller_child("resume", "10")
    attached = again.wait_line("attached").split()
    assert attached[1] == "alarm" and Decimal(attached[2]) == Decimal(15), attached
    assert again.wait_line("acknowledged") == "acknowledged infusing"
    assert again.wait_line("ordered").split()[1:3] == ["True", "accepted"]
    wait_for(lambda: not alarm_pin(bench), 5.0, "the alarm pin off again")

    truth = bench.truth()
    assert changes_between(truth, killed, restarted) == [], describe(truth)
    assert [s.rate_ml_h for s in changes_between(truth, restarted)] == [RATE_10]
    assert bench.set_rates_executed() == sets + 1  # the titration, and nothing else
    bench.assert_invariants()


def test_sigstop_of_the_controller_holds_within_the_heartbeat_timeout(
    make_bench: MakeBench,
) -> None:
    bench = make_bench(NE1000, heartbeat_timeout_s=1.0)
    ctl = bench.controller_child("infuse", "8")
    ctl.wait_line("infusing")
    wait_for(lambda: not alarm_pin(bench), 5.0, "the alarm pin off while supervised")
    monitor = bench.monitor()
    sets = bench.set_rates_executed()

    stopped = bench.now()
    ctl.signal(signal.SIGSTOP)
    snap = wait_for(lambda: held_with_alarm(monitor), 1.0 + 3.0, "hold after the timeout")
    alarm = next(a for a in snap.alarms if a.key == "controller_lost")
    assert "heartbeat timeout" in alarm.message  # the timer, not an EOF
    assert snap.running and snap.rate_ml_h == Decimal("15")
    wait_for(lambda: alarm_pin(bench), 5.0, "the GPIO alarm pin")
    refused = bench.unattached_request(ChangeDose(Decimal(10)))
    assert refused.outcome.verdict.reason is Reason.HOLD

    # the stopped controller comes back and learns it was let go: it changes nothing
    ctl.signal(signal.SIGCONT)
    ctl.wait_line("alarm high controller:session_lost", 10.0)
    assert monitor.snapshot().hold
    # a new controller re-attaches; only then is a change accepted
    restarted = bench.now()
    again = bench.controller_child("resume", "10")
    assert again.wait_line("ordered").split()[1:3] == ["True", "accepted"]

    truth = bench.truth()
    assert changes_between(truth, stopped, restarted) == [], describe(truth)
    assert last_rate(truth) == pytest.approx(RATE_10)
    assert bench.set_rates_executed() == sets + 1
    bench.assert_invariants()


# --------------------------------------------------------------------------- safety process


@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_kill_9_of_the_safety_process_and_its_restart_leave_the_rate_alone(
    make_bench: MakeBench, kind: PumpKind
) -> None:
    bench = make_bench(kind)
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    session.start(8)
    assert session.order(ChangeDose(Decimal(10))).execution == "applied"
    sets = bench.set_rates_executed()
    assert sets == 2

    killed = bench.now()
    bench.kill_safety()
    wait_for(lambda: session.link_down, 5.0, "the controller seeing the safety process die")
    wait_for(lambda: session.state is State.HOLD, 5.0, "the controller on hold")
    assert any(a.key == "controller:safety_link_lost" for a in session.alarms())
    assert journal_replays(bench) == (True, Decimal("18.75"))  # S14: intact after kill -9
    assert bench.pump()["running"] and bench.pump()["set_rate_ml_h"] == pytest.approx(RATE_10)

    bench.start_safety()  # replays its journal, reads the pump, touches nothing
    restarted = bench.now()
    session.resume(open_link(load_bench_config(bench.config), name="hil-controller"))
    snap = session.status()
    assert snap.running and snap.rate_ml_h == Decimal("18.75")
    assert any(a.key == "safety_restarted" and a.priority == "high" for a in snap.alarms)
    assert not any(a.key == "resume_changed" for a in snap.alarms)
    session.acknowledge()
    assert session.state is State.INFUSING
    bench.wait_clinical(bench.now() + 5 * 60)
    truth = bench.truth()
    assert changes_between(truth, killed) == [], describe(truth)
    assert bench.set_rates_executed() == sets  # nothing was sent to change the rate

    # supervision is back: the restarted process decides and drives the pump again
    fallen = session.order(ChangeDose(Decimal(8)))
    assert fallen.execution == "applied", fallen
    assert [s.rate_ml_h for s in changes_between(bench.truth(), restarted)] == [RATE_8]
    bench.assert_invariants()


@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_both_dead_and_restarted(make_bench: MakeBench, kind: PumpKind) -> None:
    # 300x, not the default 600x: the pump runs on through real-time steps (its silence,
    # the restart, the new controller), and at 600x its 50 mL syringe at 15 mL/h lasts
    # 20 real s, of which a normal run uses about 8 (the least margin of the suite)
    bench = make_bench(kind, safe_mode_timeout_s=NE1000_SAFE_MODE_S, speed=RESTART_SPEED)
    infusing_child(bench)
    sets = bench.set_rates_executed()
    controller = bench.children[-1]

    controller.kill9()
    bench.kill_safety()
    dead = bench.now()
    if kind.has_comms_watchdog:
        # the NE-1000 in safe mode stops itself: nobody talks to it any more
        wait_for(
            lambda: not bench.pump()["running"],
            NE1000_SAFE_MODE_S + 5.0,
            "the pump's own safe-mode timeout",
        )
        assert "comms_timeout" in bench.pump()["alarms"]
    else:
        # the same silence, and longer: the pump keeps delivering the verified rate
        def still_running() -> None:
            state = bench.pump()
            assert state["running"] and state["set_rate_ml_h"] == pytest.approx(RATE_8)

        bench.wait_clinical(
            dead + bench.settings.speed * (NE1000_SAFE_MODE_S * 2 + 1), also=still_running
        )

    bench.start_safety()
    restarted = bench.now()
    snap = bench.monitor().snapshot()  # what the restarted process found, before anyone acts
    keys = {a.key: a for a in snap.alarms}
    again = bench.controller_child("resume")
    attached = again.wait_line("attached").split()
    acknowledged = again.wait_line("acknowledged")
    truth = bench.truth()
    text = describe(truth)
    if kind.has_comms_watchdog:
        assert attached[1] == "alarm" and Decimal(attached[2]) == 0, attached
        assert acknowledged == "acknowledged stopped"
        assert not snap.running
        assert "pump:comms_timeout" in keys, snap.alarms
        assert keys["pump:comms_timeout"].priority == "high"
        assert "now stopped" in keys["resume_changed"].message
        changes = changes_between(truth, dead)
        assert [s.rate_ml_h for s in changes] == [0.0], text
        # within the pump's own timeout of the last packet (real time on the pump side)
        assert changes[0].start - dead <= bench.settings.speed * (NE1000_SAFE_MODE_S + 2), text
    else:
        assert attached[1] == "alarm" and Decimal(attached[2]) == Decimal(15), attached
        assert acknowledged == "acknowledged infusing"
        assert snap.running and snap.rate_ml_h == Decimal("15")
        assert keys["safety_restarted"].priority == "high"
        assert "resume_changed" not in keys
        assert changes_between(truth, dead) == [], text
    assert changes_between(truth, restarted) == [], text  # the restart sent nothing
    assert bench.set_rates_executed() == sets
    report = bench.assert_invariants()
    if kind.has_comms_watchdog:
        assert report.summary.changes_by_cause == {"command": 1, "pump": 1}
