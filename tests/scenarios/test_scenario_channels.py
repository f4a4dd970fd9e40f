"""Scenario files on a bench of several pumps: ``[[channels]]``, a ``channel`` on steps,
faults and expectations, the relay and container-change steps; judged on the patient's
total of the drug; bad channel words named by line; one-pump files unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.kernel.model import HandoverEnded, HandoverStarted
from safety.library import DrugLibrary
from tests.scenarios.conftest import REPO
from verification.scenario import ScenarioFileError, load_scenario, parse_scenario, run_scenario
from verification.scenario.loader import real_mode_problems
from verification.scenario.report import json_report

RELAY = REPO / "config" / "scenarios" / "relay-handover.toml"

HEAD = """\
[scenario]
name = "two pumps"
duration = 20

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"

[[channels]]
name = "A"

[[channels]]
name = "B"
"""


#: the two-pump head with channel A programmed and started at 8 mcg/min
A_AT_8 = (
    HEAD
    + """
[[action]]
at = 0
do = "program"
channel = "A"

[[action]]
at = 0
do = "start"
channel = "A"
dose = 8
"""
)


def _problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "s.toml")
    return [(p.line, f"{p.where}: {p.message}") for p in info.value.problems]


def test_the_shipped_relay_hands_over_with_the_controller_dead(
    library: DrugLibrary, run_dir: Path
) -> None:
    run, evaluation = run_scenario(RELAY, run_dir, library=library)
    assert evaluation.passed, [f"{r.name}: {r.detail}" for r in evaluation.failed]
    # the handover is the safety process's own, after the controller died (20 min)
    events = evaluation.journals.events
    started = [e for e in events if isinstance(e, HandoverStarted)]
    ended = [e for e in events if isinstance(e, HandoverEnded)]
    assert [(e.from_channel, e.to_channel, e.strategy) for e in started] == [("A", "B", "overlap")]
    assert [e.outcome for e in ended] == ["done"]
    assert started[0].now.clinical - run.t0 > 20 * 60
    # each pump's own truth, and the total judged over both
    assert set(run.truths) == {"A", "B"} and run.truth == run.truths["A"]
    assert set(evaluation.channel_truths) == {"A", "B"}
    a, b = (evaluation.channel_truths[n].summary for n in ("A", "B"))
    assert a.volume_ml > 0 and b.volume_ml > 0
    assert evaluation.truth.summary.volume_ml == pytest.approx(a.volume_ml + b.volume_ml)
    assert evaluation.truth.ok
    report = json_report(load_scenario(RELAY), run, evaluation, kept=False)
    assert set(report["ground_truth"]["channels"]) == {"A", "B"}
    assert [r["what"] for r in report["relay"]][:2] == [
        "B armed as the standby of A (overlap)",
        "RELAY A -> B (overlap, 4 steps, 30 mL/h): channel A's container empties in about 9 min",
    ]
    quality = next(r for r in evaluation.results if r.type == "handover")
    assert quality.passed and "A -> B (overlap)" in quality.detail
    assert "worst 1-min window +0.0 %, below 90 % for 0 s" in quality.detail


def test_a_handover_expectation_fails_without_its_handover(
    library: DrugLibrary, run_dir: Path
) -> None:
    text = (
        HEAD
        + """
[[action]]
at = 0
do = "program"

[[action]]
at = 0
do = "start"
dose = 8

[[expect]]
name = "any"
type = "handover"

[[expect]]
name = "two"
type = "handover"
count = 2

[[expect]]
name = "none"
type = "handover"
count = 0
"""
    )
    _, evaluation = run_scenario(parse_scenario(text), run_dir, library=library)
    verdicts = {r.name: (r.passed, r.detail) for r in evaluation.results}
    assert verdicts["any"] == (False, "no handover happened")
    assert verdicts["two"] == (False, "0 handover(s), not 2")
    assert verdicts["none"] == (True, "no handover, as expected")


@pytest.mark.hil
@pytest.mark.timeout(120)
def test_the_relay_with_real_processes(library: DrugLibrary, run_dir: Path) -> None:
    """Two NE-1000 emulated pumps at addresses 0 and 1 on one pty line, the safety process
    owning both through the real driver, the controller killed: the same verdicts."""
    run, evaluation = run_scenario(RELAY, run_dir, real=True, library=library)
    assert run.mode == "real" and run.pump == "ne1000"
    assert evaluation.passed, [f"{r.name}: {r.detail}" for r in evaluation.failed]
    assert set(run.truths) == {"A", "B"} and all(run.truths.values())
    assert (run_dir / "pump-0-truth.jsonl").exists() and (run_dir / "pump-1-truth.jsonl").exists()
    config = (run_dir / "safety.toml").read_text()
    assert "[lines.bus]" in config and "[channels.B.options]\naddress = 1" in config
    ended = [e for e in evaluation.journals.events if isinstance(e, HandoverEnded)]
    assert [e.outcome for e in ended] == ["done"]


def test_limits_are_judged_on_the_drug_total(library: DrugLibrary, run_dir: Path) -> None:
    text = (
        A_AT_8
        + """
[[action]]
at = 1
do = "program"
channel = "B"

[[action]]
at = 5
name = "too much beside A"
do = "start"
channel = "B"
dose = 4

[[action]]
at = 6
name = "B beside A"
do = "start"
channel = "B"
dose = 2

[[expect]]
type = "refused"
action = "too much beside A"
code = "step_rise_too_large"

[[expect]]
type = "accepted"
action = "B beside A"

[[expect]]
name = "the total"
type = "max_dose"
value = 9

[[expect]]
name = "A alone"
type = "max_dose"
value = 9
channel = "A"

[[expect]]
type = "final"
channel = "B"
running = true
dose = 2

[[expect]]
type = "final"
channel = "A"
running = true
dose = 8
"""
    )
    run, evaluation = run_scenario(parse_scenario(text), run_dir, library=library)
    verdicts = {r.name: (r.passed, r.detail) for r in evaluation.results}
    assert verdicts["the total"][0] is False and "10 mcg/min" in verdicts["the total"][1]
    assert verdicts["A alone"][0] is True and "8 mcg/min" in verdicts["A alone"][1]
    assert [r.passed for r in evaluation.results if r.type != "max_dose"] == [True] * 4
    refused = next(a for a in run.actions if a.name == "too much beside A")
    assert "the total of channels A, B" in refused.message


def test_a_container_change_on_one_pump(library: DrugLibrary, run_dir: Path) -> None:
    """The old one-pump format with the new steps: no [[channels]], no channel keys."""
    text = """\
[scenario]
name = "syringe change"
duration = 15

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"

[[action]]
at = 0
do = "program"

[[action]]
at = 0
do = "start"
dose = 8

[[action]]
at = 5
name = "pause"
do = "pause_for_container_change"

[[action]]
at = 5.5
name = "new syringe"
do = "container_changed"
volume_ml = 50

[[action]]
at = 6
name = "prime on the patient"
do = "prime"
volume_ml = 1

[[action]]
at = 6
name = "prime"
do = "prime"
volume_ml = 1
line_disconnected = true

[[action]]
at = 7
name = "resume"
do = "resume_after_container_change"

[[expect]]
type = "accepted"
action = "pause"

[[expect]]
type = "accepted"
action = "new syringe"

[[expect]]
type = "refused"
action = "prime on the patient"

[[expect]]
type = "accepted"
action = "prime"

[[expect]]
type = "accepted"
action = "resume"

[[expect]]
name = "paused"
type = "state"
at = 6.5
running = false

[[expect]]
name = "the prime went to waste"
type = "max_rate"
value = 30.01

[[expect]]
type = "invariants"

[[expect]]
type = "final"
running = true
dose = 8
"""
    run, evaluation = run_scenario(parse_scenario(text), run_dir, library=library)
    assert evaluation.passed, [f"{r.name}: {r.detail}" for r in evaluation.failed]
    assert list(run.truths) == ["A"] and not evaluation.channel_truths
    refused = next(a for a in run.actions if a.name == "prime on the patient")
    assert "line" in refused.message and "patient" in refused.message


def test_bad_channel_names_are_named_by_line() -> None:
    text = (
        HEAD
        + """
[[channels]]
name = "A"

[[action]]
at = 0
do = "start"
channel = "C"
dose = 8

[[action]]
at = 1
do = "arm_standby"
channel = "B"
for_channel = "D"

[[expect]]
type = "final"
channel = "Z"
running = false
"""
    )
    problems = _problems(text)
    assert [line for line, _ in problems] == [17, 22, 29, 33]
    texts = [t for _, t in problems]
    assert texts[0] == "[[channels]] #3 (A) name: channel 'A' is listed twice"
    assert (
        texts[1] == "[[action]] #1 (start, at 0) channel: there is no channel 'C'; channels: A, B"
    )
    assert "for_channel: there is no channel 'D'" in texts[2]
    assert "channel: there is no channel 'Z'" in texts[3]


def test_bench_wide_steps_and_process_faults_take_no_channel() -> None:
    text = (
        HEAD
        + """
[[action]]
at = 2
do = "confirm"
channel = "A"

[[action]]
at = 2
do = "arm_standby"
channel = "A"
for_channel = "A"

[[fault]]
at = 3
fault = "kill_controller"
channel = "A"

[[expect]]
type = "final"
running = false
"""
    )
    texts = [t for _, t in _problems(text)]
    assert any("confirm executes the pending change: it takes no channel" in t for t in texts)
    assert any("channel A cannot relieve itself" in t for t in texts), texts
    assert any("kill_controller is a process fault: it takes no channel" in t for t in texts)


def test_a_step_on_a_channel_of_a_one_pump_bench_is_channel_a() -> None:
    one = """\
[scenario]
name = "one"
duration = 5

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"

[[action]]
at = 0
do = "start"
channel = "B"
dose = 8

[[expect]]
type = "final"
running = false
"""
    [(line, text)] = _problems(one)
    assert line == 13 and "there is no channel 'B'; channels: A" in text
    assert parse_scenario(one.replace('channel = "B"', 'channel = "A"'))


def test_what_real_runs_cannot_serve_and_a_seeded_history() -> None:
    text = HEAD + '\n[[expect]]\ntype = "final"\nrunning = false\n'
    loaded = parse_scenario(text)
    assert real_mode_problems(loaded) == []  # two NE-1000s on one line
    mixed = parse_scenario(text.replace('name = "B"\n', 'name = "B"\npump = "modbus"\n'))
    [problem] = real_mode_problems(mixed)
    assert "one line of NE-1000 or Harvard pumps" in problem.message and problem.line == 10
    assert "modbus, ne1000" in problem.message
    bag = parse_scenario(
        text.replace('name = "B"\n', 'name = "B"\ncontainer = "bd-plastipak-20ml"\n')
    )
    [problem] = real_mode_problems(bag)
    assert "one syringe" in problem.message
    seeded = text + '\n[[prior]]\nfrom = "-2 h"\nuntil = "-1 h"\ndose = 5\n'
    [(_, message)] = _problems(seeded)
    assert "[[prior]] history is seeded on a one-pump bench only" in message


def test_a_channel_table_refuses_unknown_fields_and_containers() -> None:
    bad = HEAD.replace('name = "B"\n', 'name = "B"\nvolume = 5\ncontainer = "no-such-syringe"\n')
    texts = [t for _, t in _problems(bad + '\n[[expect]]\ntype = "final"\nrunning = false\n')]
    assert any("unknown field 'volume'; allowed here: name, container, loaded_ml, pump" in t
               for t in texts), texts  # fmt: skip
    assert any("[[channels]] #2 (B) container" in t for t in texts), texts


TWO_DRUGS = (
    A_AT_8
    + """
[[action]]
at = 1
do = "program"
channel = "B"
drug = "vasopressin"
therapy = "fixed"
concentration = "20 units/100 mL"
diluent = "NS"

[[action]]
at = 1
do = "start"
channel = "B"
dose = "0.03"

[[expect]]
type = "invariants"

[[expect]]
name = "B's vasopressin"
type = "max_dose"
value = "0.03"
channel = "B"

[[expect]]
name = "a total over two drugs"
type = "max_dose"
value = 8
"""
)


def test_a_bench_of_two_drugs_is_judged_drug_by_drug(library: DrugLibrary, run_dir: Path) -> None:
    _, evaluation = run_scenario(
        parse_scenario(TWO_DRUGS, "two-drugs.toml"), run_dir, library=library
    )
    results = {r.name: r for r in evaluation.results}
    invariants = next(r for r in evaluation.results if r.type == "invariants")
    assert invariants.passed, invariants.detail
    assert results["B's vasopressin"].passed, results["B's vasopressin"].detail
    over_two = results["a total over two drugs"]
    assert not over_two.passed
    assert "the bench gives norepinephrine, vasopressin" in over_two.detail
    assert "name the channel" in over_two.detail
    assert evaluation.truth.summary.notes == [
        "a bench of 2 drugs (norepinephrine, vasopressin): each judged on its own total"
    ]
