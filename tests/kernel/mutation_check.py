"""Hand-picked mutants for what mutmut (``make mutation``) cannot make: each safety
check removed outright, statements reordered or added, a module-level table or the host
changed, in a throw-away copy of the source tree, and the tests named for it must fail.

mutmut mutates operators, constants and arguments inside the kernel's functions; it
never deletes a whole check (``>`` becomes ``>=``, not "no check"), never reorders two
statements (the journal write before the send, S14), never adds a call (a blind repeat,
S10), never touches module-level tables (the pump alarms' priorities) and does not run
over ``safety/host`` (the heartbeat timeout, the stop button, the relay on a lost stop).
The promise "every invariant and every refusal path has a test that fails if the check
is removed" is kept here, by name: each mutant names the tests that must kill it, so a
refactor that drops the test an invariant relies on is seen. Mutants that mutmut makes
the same (an argument dropped, an assignment to None, a conditional forced one way) were
taken out of this table; docs/safety.md lists them.

Each mutant replaces one exact snippet of source; a snippet no longer found is reported
as a failure, never skipped (``test_mutation_table.py`` checks that in ``make test``).

Run: ``.venv/bin/python -m tests.kernel.mutation_check [name-filter ...]``. About two
minutes (one pytest run per mutant); not part of the normal test run. With
``--stateful`` the hypothesis state machine runs against each mutant instead (minutes
per mutant). Some checks are defence in depth that the state machine cannot see from
the pump's side (the cap look-ahead on requests: the cap guard still holds the truth
under the cap), which is why each mutant names the tests that pin it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPY = (
    "safety",
    "drivers",
    "firmware_bridge",
    "verification",
    "config",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/kernel",
    # the state machine's bench of several channels (test_stateful imports it)
    "tests/channels/__init__.py",
    "tests/channels/support.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    original: str  # exact text, found exactly once
    mutated: str
    tests: str  # pytest -k expression for the tests that must fail


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "S1 hard max",
        "safety/rules.py",
        "    if value > Fraction(hard.value):",
        "    if False:",
        "test_s1_hard_max_refused",
    ),
    Mutant(
        "S1 read-back",
        "safety/kernel/observe.py",
        "        elif over_by_hard is not None:",
        "        elif False:",
        "test_s1_readback",
    ),
    Mutant(
        "S2 soft max",
        "safety/rules.py",
        "    if value > Fraction(soft_max.value):",
        "    if False:",
        "test_s2_soft_max",
    ),
    Mutant(
        "S2 soft min",
        "safety/rules.py",
        "    elif 0 < value < Fraction(soft_min.value):",
        "    elif False:",
        "test_s2_soft_min",
    ),
    Mutant(
        "S2 confirmation",
        "safety/kernel/decide.py",
        "        if finding.severity is Severity.CONFIRM:",
        "        if False:",
        "test_s2_soft_max or test_s2_soft_min",
    ),
    Mutant(
        "S2 finding in verdict",
        "safety/kernel/decide.py",
        "    warnings = tuple(f for f in findings if f.severity is Severity.WARN)",
        "    warnings = ()",
        "test_s2_soft_max or test_s2_soft_min",
    ),
    Mutant(
        "S3 cap on request",
        "safety/kernel/decide.py",
        "    if so_far + ahead > float(cap.base_amount):",
        "    if False:",
        "test_s3_rise_refused or test_s3_start_refused",
    ),
    Mutant(
        "S3 cap as time passes",
        "safety/kernel/observe.py",
        "    if per_s > 0 and headroom <= per_s * config.cap_guard_s:",
        "    if False:",
        "test_s3_pump_stopped",
    ),
    Mutant(
        "S3 cap deadline",
        "safety/kernel/observe.py",
        "    return min(deadlines, default=None)",
        "    return None",
        "test_s3_pump_stopped",
    ),
    Mutant(
        "S4 max start",
        "safety/kernel/decide.py",
        "        if dose > bound:",
        "        if False:",
        "test_s4_start_above_max_start or test_s4_restart_after",
    ),
    Mutant(
        "S4 step",
        "safety/kernel/decide.py",
        "    if rise > step_bound:",
        "    if False:",
        "test_s4_ten_fold or test_s4_step_rise",
    ),
    Mutant(
        "S4 window",
        "safety/kernel/decide.py",
        "    if dose - base > window_bound:",
        "    if False:",
        "test_s4_window_rise_refused_where or test_s4_window_rise_refused_for",
    ),
    Mutant(
        "S4 same-instant fix",
        "safety/kernel/history.py",
        "        end = bisect.bisect_right(starts, t)",
        "        end = bisect.bisect_left(starts, t)",
        "test_s4_window_rise_refused_for",
    ),
    Mutant(
        "S5 wean",
        "safety/kernel/decide.py",
        "    if effective < floor:",
        "    if False:",
        "test_s5_wean",
    ),
    Mutant(
        "S5 stop threshold",
        "safety/kernel/decide.py",
        "        if dose > threshold:",
        "        if False:",
        "test_s5_stop_above",
    ),
    Mutant(
        "S6 library hash",
        "safety/kernel/decide.py",
        "    if spec.library_hash != library.content_hash:",
        "    if False:",
        "test_s6_library_hash",
    ),
    Mutant(
        "S6 concentration",
        "safety/rules.py",
        ("    entry = therapy.allowed_concentration(concentration, weight)\n    if entry is None:"),
        (
            "    entry = therapy.allowed_concentration(concentration, weight) or"
            " therapy.concentrations[0]\n"
            "    if False:"
        ),
        "test_s6_concentration or test_s6_units_drug",
    ),
    Mutant(
        "S6 diluent",
        "safety/rules.py",
        "    if diluent not in entry.diluents:",
        "    if False:",
        "test_s6_saline or test_s6_diluent_allowed",
    ),
    Mutant(
        "S6 weight range",
        "safety/rules.py",
        "    if not (rng.min <= weight.kg <= rng.max):",
        "    if False:",
        "test_s6_weight_outside",
    ),
    Mutant(
        "S7 pump max",
        "safety/kernel/decide.py",
        "    if exact > Fraction(pump.max_rate_ml_h):",
        "    if False:",
        "test_s7_above",
    ),
    Mutant(
        "S7 round down",
        "safety/kernel/config.py",
        "        candidate = float(exact)",
        "        return Decimal(repr(round(float(exact), 2)))\n        candidate = float(exact)",
        "test_s7_rate_sent",
    ),
    Mutant(
        "S8 stale seq",
        "safety/kernel/decide.py",
        "    if meta.seq <= state.last_seq:",
        "    if False:",
        "test_s8_duplicate or test_s8_replayed or test_s8_out_of_order",
    ),
    Mutant(
        "S8 expiry",
        "safety/kernel/decide.py",
        "    if now.liveness > meta.expires_at:",
        "    if False:",
        "test_s8_expired",
    ),
    Mutant(
        "S8 session",
        "safety/kernel/decide.py",
        "    if not state.attached or meta.session != state.session:",
        "    if not state.attached:",
        "test_s8_request_from_another or test_s8_old_session",
    ),
    Mutant(
        "S9 over",
        "safety/kernel/observe.py",
        "        elif rate > c.expected_rate * (1 + tol):",
        "        elif False:",
        "test_s9_readback_over",
    ),
    Mutant(
        "S9 not started",
        "safety/kernel/observe.py",
        "        elif not c.expected_running:",
        "        elif False:",
        "test_s9_pump_running_without",
    ),
    Mutant(
        "S9 retry",
        "safety/kernel/observe.py",
        "            if c.under_retries < config.max_under_retries:",
        "            if False:",
        "test_s9_readback_under_the_set_rate_is_retried",
    ),
    Mutant(
        "S9 under alarm",
        "safety/kernel/observe.py",
        "        elif rate < c.expected_rate * (1 - tol):",
        "        elif False:",
        "test_s9_readback_under or test_s9_readback_still",
    ),
    Mutant(
        "S10 pending refusal",
        "safety/kernel/decide.py",
        "        if c.pending is not None:\n            where =",
        "        if False:\n            where =",
        "test_s10_lost_ack_makes or test_s10_lost_request",
    ),
    Mutant(
        "S15 no resume while priming",
        "safety/kernel/relay.py",
        "    if c.priming is not None:\n        # a prime runs to waste",
        "    if False:\n        # a prime runs to waste",
        "test_s15_no_resume_while_the_channel_primes",
    ),
    Mutant(
        "S15 no pause while priming",
        "safety/kernel/relay.py",
        "    if c.priming is not None:\n        # the pump runs to waste",
        "    if False:\n        # the pump runs to waste",
        "test_s15_a_priming_channel_is_not_paused",
    ),
    Mutant(
        "S15 resume restores at most the total before",
        "safety/kernel/relay.py",
        "            resume_to=pause.total_before,\n",
        "            resume_to=asked,\n",
        "test_s4_a_resume_restores_no_more_than_the_total_at_the_pause",
    ),
    Mutant(
        "S15 a paused channel keeps its drug",
        "safety/kernel/decide.py",
        "    if c.pause is None or c.program is None or drug == c.drug:\n        return None",
        "    if True:\n        return None",
        "test_s15_a_paused_channel_takes_a_program_of_its_own_drug_only",
    ),
    Mutant(
        "S16 no new patient during a pause",
        "safety/kernel/decide.py",
        "    if paused:  # its resume would restore",
        "    if False:  # its resume would restore",
        "test_s16_no_new_patient_while_a_channel_is_paused",
    ),
    Mutant(
        "S15 a re-programmed channel's standby disarmed",
        "safety/kernel/reducer.py",
        "        if difference is None:\n            continue\n"
        "        alarms = state.alarms.raised(\n"
        '            "standby_disarmed",',
        "        if True:\n            continue\n"
        "        alarms = state.alarms.raised(\n"
        '            "standby_disarmed",',
        "test_s15_a_new_program_of_another_solution_disarms",
    ),
    Mutant(
        "S15 no prime during a handover",
        "safety/kernel/relay.py",
        "    refusal = _handing(state, name)  # a purge would read as the standby's flow\n"
        "    if refusal is not None:",
        "    refusal = _handing(state, name)  # a purge would read as the standby's flow\n"
        "    if False:",
        "test_s15_no_prime_or_container_change_on_a_channel_in_a_handover",
    ),
    Mutant(
        "S15 a prime that runs on is stopped",
        "safety/kernel/observe.py",
        "        elif (moved is not None and moved > most) or t - priming.since > PRIME_LONGEST_S:",
        "        elif False:",
        "test_a_purge_that_runs_on_past_its_bound",
    ),
    Mutant(
        "S12 a priming pump under the stop",
        "safety/kernel/observe.py",
        "        if s.estopped:  # S12 holds until acknowledged: its stop was lost on the wire",
        "        if False:",
        "test_a_priming_pump_seen_running_under_an_emergency_stop",
    ),
    Mutant(
        "S3 a purge is no unseen drug",
        "safety/kernel/observe.py",
        "    if c.priming is not None:\n        return s  # a prime's purge",
        "    if False:\n        return s  # a prime's purge",
        "test_a_purge_is_not_counted",
    ),
    Mutant(
        "S11 a restart mid-prime holds nothing",
        "safety/kernel/reducer.py",
        "    if s.channel(channel).priming is not None:\n        # a prime under way",
        "    if False:\n        # a prime under way",
        "test_a_restart_during_a_prime",
    ),
    Mutant(
        "S4 overlapping pauses share a total",
        "safety/kernel/reducer.py",
        "            total = max(total, pause.total_before)",
        "            pass",
        "test_s4_pauses_that_overlap_share_one_total_before",
    ),
    Mutant(
        "S4 a pause counts the rate told",
        "safety/kernel/reducer.py",
        "    total += Fraction(event.rate_ml_h) * program.amount_per_ml",
        "    total += c.licensed_amount_rate()",
        "test_s4_a_pause_keeps_the_rate_told",
    ),
    Mutant(
        "S3 a prime pushed past its bound counts",
        "safety/kernel/observe.py",
        "            if moved > most and drug_program is not None:",
        "            if False:",
        "test_a_prime_found_stopped_far_past_its_bound",
    ),
    Mutant(
        "S10 blind repeat",
        "safety/host/core.py",
        (
            "                self.poll(depth + 1, [name])  # S10: reconcile by read-back, never by "
            "repeating"
        ),
        "                self._send(action); self.poll(depth + 1, [name])",
        "test_s10",
    ),
    Mutant(
        "S10 a restart's reading reconciles",
        "safety/kernel/reducer.py",
        "    if pending is not None:  # S10, judged on this reading: its alarm's condition ends\n"
        "        s = reconcile(s, channel, pending, reading, t)\n",
        "",
        "test_a_restart_clears_the_link_and_reconciles",
    ),
    Mutant(
        "S10 kept until a reading",
        "safety/kernel/reducer.py",
        "        return replace(s, hold=others_run).with_channel(channel, unseen_pending=True)",
        (
            "        return replace(s, hold=others_run).with_channel(\n"
            "            channel, unseen_pending=True, pending=None\n"
            "        )"
        ),
        "test_a_restart_clears_the_link_and_reconciles",
    ),
    Mutant(
        "S10 a stop since the lost command stands",
        "safety/kernel/reducer.py",
        "        state = state.with_channel(channel, pending=replace(c.pending, superseded=True))",
        "        pass",
        "test_a_stop_sent_while_a_command_is_uncertain",
    ),
    Mutant(
        "S10 a replaced pump's uncertainty ends",
        "safety/kernel/observe.py",
        '        s = _with_alarms(s, s.alarms.condition_gone("delivery_uncertain", channel))\n'
        "    s = pump_names_alike(s, t)",
        "        pass\n    s = pump_names_alike(s, t)",
        "test_accepting_a_replacement_ends_an_uncertain",
    ),
    Mutant(
        "S11 hold refusal",
        "safety/kernel/decide.py",
        "    if state.hold:  # S11",
        "    if False:",
        "test_s11_changes_refused",
    ),
    Mutant(
        "S11 heartbeat timeout",
        "safety/host/core.py",
        "            and live - heartbeat > self.timing.heartbeat_timeout_s",
        "            and False",
        "test_s11_heartbeat",
    ),
    Mutant(
        "S12 interlock",
        "safety/kernel/decide.py",
        "        actions=(*stops, *cuts, *late),",
        "        actions=(*stops, *late),",
        "test_s12_emergency_stop_from or test_s12_lost_stop",
    ),
    Mutant(
        "S12 never refused",
        "safety/kernel/decide.py",
        "    if isinstance(body, EmergencyStop):",
        "    if isinstance(body, EmergencyStop) and _check_link(state, request, now) is None:",
        "test_s12_emergency_stop_ignores or test_s11_emergency_stop_still",
    ),
    Mutant(
        "S12 restart refused",
        "safety/kernel/decide.py",
        "        if state.estopped:",
        "        if False:",
        "test_s12_restart_refused or test_s12_acknowledging_other",
    ),
    Mutant(
        "S12 button",
        "safety/host/core.py",
        "            if self.gpio.poll_stop():",
        "            if False:",
        "test_s12_emergency_stop_from_the_gpio",
    ),
    Mutant(
        "S12 lost stop: relay",
        "safety/host/core.py",
        (
            "            if not isinstance(action, SetInterlock) and name not in unconfirmed:\n"
            "                unconfirmed.append(name)"
        ),
        (
            "            if failure is not None:\n"
            "                break  # a lost stop ends the sequence: the relay never cut\n"
            "            if not isinstance(action, SetInterlock) and name not in unconfirmed:\n"
            "                unconfirmed.append(name)"
        ),
        "test_s12_lost_stop",
    ),
    Mutant(
        "S12 unknown links after the relay",
        "safety/kernel/decide.py",
        "    return channel.comms_ok and not channel.connecting",
        "    return channel.comms_ok",
        "test_an_emergency_stop_while_a_restart_connects",
    ),
    Mutant(
        "S12 unknown until resumed",
        "safety/kernel/reducer.py",
        "            connecting=True,  # until its ``Resumed``",
        "            connecting=False,",
        "test_an_emergency_stop_while_a_restart_connects",
    ),
    Mutant(
        "S12 lost stop: re-stop",
        "safety/kernel/observe.py",
        "        if s.estopped:\n            # S12 holds",
        "        if False:\n            # S12 holds",
        "test_s12_lost_stop",
    ),
    Mutant(
        "S13 pump alarms",
        "safety/kernel/observe.py",
        "    alarms = _pump_alarms(alarms, reading, t, channel)",
        "    pass",
        "test_s13_pump_alarm or test_s13_occlusion or test_s13_near_empty",
    ),
    Mutant(
        "S13 pump stopped",
        "safety/kernel/observe.py",
        "        if c.expected_running:\n            present",
        "        if False:\n            present",
        "test_s13_pump_alarm",
    ),
    Mutant(
        "S13 occlusion high",
        "safety/kernel/observe.py",
        '    "occlusion": (Priority.HIGH,',
        '    "occlusion": (Priority.MEDIUM,',
        "test_s13_occlusion or test_s13_pump_alarm",
    ),
    Mutant(
        "S13 comms",
        "safety/host/core.py",
        (
            "            if known.comms_ok or another != channel.another_pump or other != known."
            "other_pump:\n"
            "                channel.another_pump = another\n"
        ),
        "            if False:\n                channel.another_pump = another\n",
        "test_s13_comms",
    ),
    Mutant(
        "S14 write-ahead",
        "safety/host/core.py",
        (
            "            if index > 0 or not first_recorded:\n"
            "                self._record(CommandIssued(action, cause, self.now()))\n"
            "            try:\n"
            "                self._send(action)"
        ),
        (
            "            try:\n"
            "                self._send(action)\n"
            "                if index > 0 or not first_recorded:\n"
            "                    self._record(CommandIssued(action, cause, self.now()))"
        ),
        "test_s14_the_guard or test_s1_hard_max",
    ),
    Mutant(
        "S14 verdict's command",
        "safety/host/core.py",
        "                events.append(CommandIssued(verdict.actions[0], cause, now))",
        "                pass",
        "test_s14_the_guard or test_s14_request_verdict",
    ),
    Mutant(
        "S14 replay",
        "safety/kernel/replay.py",
        "    for entry in entries:",
        "    for entry in entries[:-1]:",
        "test_s14_replay",
    ),
    Mutant(
        "S14 restart touches pump",
        "safety/host/core.py",
        "        if status.running:\n            # Resuming over a running infusion",
        "        if False:\n            # Resuming over a running infusion",
        "test_s14_restart",
    ),
    Mutant(
        "S14 alarm output",
        "safety/host/core.py",
        "        self.gpio.set_alarm(bool(loud))",
        "        self.gpio.set_alarm(bool(loud) or bool(self.state.alarms.alarms))",
        "test_s14_alarm_output",
    ),
)


def copy_tree(dest: Path, extra: Sequence[str] = ()) -> None:
    """What the runner judges each mutant in: the code and the tests named for them
    (``COPY``), and ``extra`` (a runner of other tests copies those too)."""
    for rel in (*COPY, *extra):
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(
                src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def missing_modules(tree: Path, tests: str) -> list[str]:
    """The project modules that the tests in ``tests`` reach, directly or through the
    code they import, and that the copy ``tree`` lacks (each with the file importing
    it). Read from the import statements (a function's own included), without running
    anything: a module missing from the copy fails every mutant's run at collection,
    and each mutant would be reported as not killed for the wrong reason."""
    first_party = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    todo = [*(tree / tests).glob("*.py"), tree / "tests" / "conftest.py"]
    seen: set[Path] = set()
    missing: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _project_imports(path, first_party):
            found = _module_file(tree, name)
            if found is not None:
                todo.append(found)
            elif _module_file(ROOT, name) is not None:
                missing.add(f"{name} (imported by {path.relative_to(tree)})")
    return sorted(missing)


def _project_imports(path: Path, first_party: set[str]) -> list[str]:
    """Every project module ``path`` may import: each ``import a.b``, each ``from a.b``,
    and each ``a.b.c`` of ``from a.b import c`` (a module, or a name in ``a.b`` where no
    such file is in the tree)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return [n for n in names if n.split(".")[0] in first_party]


def _module_file(root: Path, name: str) -> Path | None:
    module = root.joinpath(*name.split("."))
    for candidate in (module.with_suffix(".py"), module / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def judge(
    mutants: Sequence[Mutant],
    filters: list[str],
    tests_for: Callable[[Mutant], list[str]],
    *,
    extra: Sequence[str] = (),
) -> int:
    """Each mutant (whose name contains one of ``filters``; all without) in turn in one
    copy of the tree, with the pytest arguments ``tests_for`` gives it; 1 unless every
    one was killed."""
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree, extra)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        for mutant in mutants:
            if filters and not any(f in mutant.name for f in filters):
                continue
            target = tree / mutant.path
            pristine = target.read_text()
            if pristine.count(mutant.original) != 1:
                print(f"STALE     {mutant.name}: snippet not found once in {mutant.path}")
                survivors.append(mutant.name)
                continue
            target.write_text(pristine.replace(mutant.original, mutant.mutated))
            # hypothesis keeps failing examples in .hypothesis/ and replays them first: a
            # failure found under one mutant must not count as a kill of the next
            shutil.rmtree(tree / ".hypothesis", ignore_errors=True)
            try:
                pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
                result = subprocess.run(
                    [*pytest, *tests_for(mutant)],
                    cwd=tree,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
            finally:
                target.write_text(pristine)
            lines = result.stdout.strip().splitlines()
            summary = lines[-1] if lines else result.stderr.strip()[-200:]
            killed = result.returncode == 1 and " failed" in summary
            # pytest's 2-5: interrupted, internal or usage error, nothing collected: the
            # tests never judged the mutant (a module of the copy missing, say)
            broken = result.returncode not in (0, 1)
            verdict = "killed" if killed else "BROKEN" if broken else "SURVIVED"
            print(f"{verdict:9s} {mutant.name:32s} {summary}", flush=True)
            if not killed:
                survivors.append(mutant.name)
    listing = ": " + ", ".join(survivors) if survivors else ""
    print(f"{len(survivors)} survivor(s){listing}")
    return 1 if survivors else 0


def run(filters: list[str], *, stateful: bool) -> int:
    def tests_for(mutant: Mutant) -> list[str]:
        if stateful:
            return ["tests/kernel/test_stateful.py", "-x"]
        return ["tests/kernel", "-k", mutant.tests]

    return judge(MUTANTS, filters, tests_for)


def main(argv: list[str]) -> int:
    stateful = "--stateful" in argv
    return run([a for a in argv if a != "--stateful"], stateful=stateful)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
