"""A reboot of the safety process, for real, on each emulator (issue 9).

The board reboots: the safety process is killed and starts again with a monotonic clock
near zero, while the emulated pump runs on with its own clock. A Linux time namespace
(``unshare --time``) gives the new process exactly that clock; its controller joins the
same namespace (``nsenter``), as it would share the board after a real reboot. Before
the fix the replayed history lay "in the future" of the new clock: every window was
empty, a fast wean and a stop were accepted, and so was a start the cap had refused.

Judged on the pump's ground truth: the rate the pump delivers does not change, and the
invariant checker finds nothing, with the journal put on the pump's clock (the shift is
known: the namespace's offset and the timeline's own, journaled).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from hil_tests.conftest import MakeBench
from hil_tests.harness.bench import HilBench
from hil_tests.harness.processes import Child, wait_for
from hil_tests.harness.pumps import ALL_KINDS, PumpKind
from hil_tests.harness.truth import changes_between, describe, last_rate
from safety.journal_read import read_safety_events
from safety.kernel.model import ProgramSpec, StartInfusion, TimelineResumed
from safety.library import DrugLibrary
from safety.reasons import Reason
from verification.ground_truth import SafetyRecord
from verification.scenario.bench import seed_journal
from verification.scenario.model import Prior

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

#: mL/h per mcg/min at 32 mcg/mL (8 mg/250 mL)
ML_H_PER_MCG_MIN = 60 / 32
#: the new boot's monotonic clock when the safety process starts (s)
UPTIME_S = 5
#: one bench per emulator (Modbus RTU is the Modbus emulator on another transport,
#: covered by the other HIL groups)
EMULATORS = [kind for kind in ALL_KINDS if kind.name != "modbus_rtu"]


def _namespaces_allowed() -> str | None:
    """Why a time namespace cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) not installed"
    try:
        done = subprocess.run(
            ["unshare", "--time", "--monotonic", "-1", "--fork", "true"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --time failed: {exc}"
    if done.returncode != 0:
        return f"unshare --time not permitted here: {done.stderr.strip()}"
    return None


WHY_NOT = _namespaces_allowed()
pytestmark.append(pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""))


def _reboot_wrapper() -> tuple[list[str], int]:
    """The ``unshare`` command for a new boot's clocks, and its monotonic offset (s)."""
    offset = -(int(time.monotonic()) - UPTIME_S)
    boot = -(int(time.clock_gettime(time.CLOCK_BOOTTIME)) - UPTIME_S)
    command = [
        "unshare",
        "--time",
        "--monotonic",
        str(offset),
        "--boottime",
        str(boot),
        "--fork",
        "--kill-child",
    ]
    return command, offset


def _reboot(bench: HilBench) -> tuple[list[str], int]:
    """kill -9, then a safety process on clocks near zero; returns how to join them."""
    bench.kill_safety()
    wrapper, offset = _reboot_wrapper()
    child = bench.start_safety(wrapper)
    inner = _child_of(child)
    return ["nsenter", "--target", str(inner), "--time"], offset


def _child_of(child: Child) -> int:
    """The process ``unshare --fork`` started (the one in the new namespace)."""
    path = Path(f"/proc/{child.pid}/task/{child.pid}/children")
    found = wait_for(lambda: path.read_text().split(), 5.0, "unshare's child")
    return int(found[0])


def _order(bench: HilBench, join: list[str], order: str) -> tuple[bool, str]:
    """One order from a controller on the rebooted board: (accepted, reason)."""
    ctl = bench.controller_child("resume", order, wrapper=join)
    line = ctl.wait_line("ordered ")
    ctl.stop()
    _, accepted, reason, _ = line.split(" ", 3)
    return accepted == "True", reason


def _on_the_pumps_clock(bench: HilBench, offset_s: int) -> SafetyRecord:
    """The safety journal on the pump's clock, by the oracle's mapping (``PumpClock``):
    from the start in the new namespace on, the process read its clock source shifted by
    the namespace's offset (times the clock's speed), and its timeline added the offset
    the journal says it chose; before it, the process and the pump shared one clock."""
    events = read_safety_events(bench.safety_journal)
    starts = [
        e for e in events if isinstance(e, TimelineResumed) and e.previous_clinical is not None
    ]
    reboot = starts[-1]

    def shift(resumed: TimelineResumed) -> float | None:
        if resumed == reboot:
            return -(offset_s * bench.settings.speed + resumed.offset)
        return None

    return SafetyRecord.from_events(events, to_pump_clock=shift)


@pytest.mark.parametrize("kind", EMULATORS, ids=str)
def test_the_wean_holds_across_a_reboot(make_bench: MakeBench, kind: PumpKind) -> None:
    bench = make_bench(kind, speed=300)  # the 30 min wean window: 6 real s
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    session.start(8)
    session.titrate_to(12).confirm()  # two steps of 2 mcg/min, spaced by the plan
    rate_12 = 12 * ML_H_PER_MCG_MIN
    wait_for(lambda: last_rate(bench.truth()) == pytest.approx(rate_12), 30.0, "12 mcg/min")
    session.close(hang_up=True)

    join, offset = _reboot(bench)
    before = bench.now()
    assert _order(bench, join, "2") == (False, Reason.WEAN_TOO_FAST.value)
    assert _order(bench, join, "stop") == (False, Reason.STOP_ABOVE_THRESHOLD.value)

    truth = bench.truth()
    assert changes_between(truth, before) == [], describe(truth)
    assert last_rate(truth) == pytest.approx(rate_12) and bench.pump()["running"]
    events = read_safety_events(bench.safety_journal)
    resumed = [e for e in events if isinstance(e, TimelineResumed)][-1]
    assert resumed.discontinuity and resumed.conservative and "backwards" in resumed.basis
    bench.assert_invariants(_on_the_pumps_clock(bench, offset))
    bench.kill_safety()  # unshare ignores SIGTERM while it waits for its child


@pytest.mark.parametrize("kind", EMULATORS, ids=str)
def test_the_cap_holds_across_a_reboot(
    make_bench: MakeBench, kind: PumpKind, library: DrugLibrary
) -> None:
    """22.6 h of 3 mg/h (hepatorenal therapy) ending 10 min ago: 67.8 mg of the 68 mg per
    24 h; a start at 8 mcg/min (0.48 mg in the hour) is refused before and after."""
    bench = make_bench(kind, start=False, speed=60)
    bench.start_emulator()
    program = ProgramSpec(
        library.content_hash, "norepinephrine", "adult_icu", "hepatorenal", "4 mg/250 mL", "D5W"
    )
    prior = Prior.model_validate({"from": -(22.6 * 60 + 10), "until": -10, "dose": "3"})
    bench.prior = seed_journal(
        bench.safety_journal, library, program, [prior], bench.now(), time.monotonic(), bench.clock
    )
    bench.write_config()
    bench.start_safety()
    session = bench.connect()
    session.reprogram("norepinephrine", "8 mg/250 mL", "D5W")  # the seeded program was another
    refused = session.order(StartInfusion(Decimal(8)))
    assert refused.verdict.reason is Reason.CUMULATIVE_CAP
    session.close(hang_up=True)

    join, offset = _reboot(bench)
    before = bench.now()
    assert _order(bench, join, "start:8") == (False, Reason.CUMULATIVE_CAP.value)
    truth = bench.truth()
    assert changes_between(truth, before) == [] and last_rate(truth) == 0.0, describe(truth)
    assert not bench.pump()["running"]
    bench.assert_invariants(_on_the_pumps_clock(bench, offset))
    bench.kill_safety()  # unshare ignores SIGTERM while it waits for its child
