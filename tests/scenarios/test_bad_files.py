"""A bad scenario file exits 2, and every problem names its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from verification.scenario import ScenarioFileError, parse_scenario
from verification.scenario.loader import LineMap

GOOD = """\
[scenario]
name = "good"
duration = 30

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"

[[action]]
at = 0
do = "program"

[[action]]
at = 0
name = "start"
do = "start"
dose = 8

[[fault]]
at = 5
name = "clamp"
fault = "occlusion=on"

[[expect]]
type = "alarm"
key = "pump:occlusion"
after = "clamp"
within_s = 60
"""


def _lines(text: str) -> list[int | None]:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "s.toml")
    return [p.line for p in info.value.problems]


def _problem(text: str) -> tuple[int | None, str]:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "s.toml")
    problems = info.value.problems
    assert len(problems) == 1, problems
    return problems[0].line, f"{problems[0].where}: {problems[0].message}"


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_good_file_loads() -> None:
    loaded = parse_scenario(GOOD)
    assert loaded.scenario.duration_s == 30 * 60
    assert [a.do for a in loaded.scenario.action] == ["program", "start"]


def test_toml_syntax_error_names_its_line() -> None:
    text = GOOD.replace("dose = 8", "dose = 8 mcg/min")  # a bare word: not TOML
    line, message = _problem(text)
    assert line == _line_of(text, "dose = 8 mcg/min")
    assert "TOML syntax" in message


def test_unknown_field_names_its_line_and_the_allowed_ones() -> None:
    text = GOOD.replace('diluent = "D5W"', 'diluent = "D5W"\nsyringee = "bd-plastipak-50ml"')
    line, message = _problem(text)
    assert line == _line_of(text, "syringee")
    assert "unknown field 'syringee'" in message and "syringe" in message.split("allowed")[1]


def test_unknown_field_in_an_action_lists_that_action_s_fields() -> None:
    text = GOOD.replace("dose = 8", "dose = 8\nconfirm = true")  # start takes no confirm
    line, message = _problem(text)
    assert line == _line_of(text, "confirm = true")
    assert "[[action]] #2 (start, at 0)" in message
    assert "confirm_soft_limits" in message


def test_bad_value_names_its_line() -> None:
    text = GOOD.replace('fault = "occlusion=on"', 'fault = "occlusion=sometimes"')
    line, message = _problem(text)
    assert line == _line_of(text, "occlusion=sometimes")
    assert "expected on/off" in message
    text = GOOD.replace("duration = 30", 'duration = "thirty minutes"')
    line, message = _problem(text)
    assert line == _line_of(text, "thirty minutes") and "is not a time" in message


def test_unknown_action_names_its_line_and_the_known_ones() -> None:
    text = GOOD.replace('do = "program"', 'do = "dance"')
    line, message = _problem(text)
    assert line == _line_of(text, 'do = "dance"')
    assert "unknown action do = 'dance'" in message and "titrate_to" in message


def test_unknown_expectation_type_names_its_line() -> None:
    text = GOOD.replace('type = "alarm"', 'type = "alarms"')
    line, message = _problem(text)
    assert line == _line_of(text, 'type = "alarms"')
    assert "unknown expectation type = 'alarms'" in message


def test_missing_field_names_the_line_of_its_table() -> None:
    text = GOOD.replace("dose = 8\n", "")
    line, message = _problem(text)
    assert line == _line_of(text, 'name = "start"') - 2  # the [[action]] header
    assert "missing required field 'dose'" in message


def test_references_and_times_are_checked_with_lines() -> None:
    text = GOOD.replace('after = "clamp"', 'after = "clampp"')
    line, message = _problem(text)
    assert line == _line_of(text, "clampp") and "no action or fault is named 'clampp'" in message
    text = GOOD.replace("at = 5\n", "at = 45\n")
    line, message = _problem(text)
    assert line == _line_of(text, "at = 45") and "after the end of the scenario" in message
    text = GOOD.replace('name = "clamp"', 'name = "start"').replace('"clamp"', '"start"')
    line, message = _problem(text)
    assert "already used" in message


def test_several_problems_are_all_reported_in_line_order() -> None:
    text = GOOD.replace('do = "program"', 'do = "dance"').replace(
        'diluent = "D5W"', 'diluent = "D5W"\ncolour = "red"'
    )
    assert _lines(text) == [_line_of(text, "colour"), _line_of(text, "dance")]


def test_line_map_skips_multi_line_strings_and_arrays() -> None:
    text = '[scenario]\ndescription = """\n[[action]]\ndo = 1\n"""\nname = "x"\n'
    text += '[[action]]\nkeys = [\n  "a",\n  "[b]",\n]\nat = 1\n'
    lines = LineMap.scan(text)
    assert lines.line(("scenario", "name")) == 6
    assert lines.line(("action", 0)) == 7
    assert lines.line(("action", 0, "at")) == 12
    assert lines.line(("action", 0, "keys", 1)) == 8  # inside the array: the key's line


def test_the_command_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    text = GOOD.replace('do = "program"', 'do = "dance"')
    path.write_text(text, encoding="utf-8")
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{_line_of(text, 'dance')}: [[action]] #1" in err
    assert "Traceback" not in err
    assert main(["scenario", "run", str(path), "--json"]) == 2
    body = json.loads(capsys.readouterr().out)["error"]
    assert body["code"] == "bad_scenario"
    assert body["problems"][0]["line"] == _line_of(text, "dance")


def test_one_process_faults_are_refused_for_real_runs_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gap.toml"
    text = GOOD.replace('fault = "occlusion=on"', 'fault = "heartbeat_gap"\nduration_s = 30')
    path.write_text(text, encoding="utf-8")
    assert main(["scenario", "run", str(path), "--real"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{_line_of(text, 'heartbeat_gap')}:" in err and "one-process runs only" in err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "run", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
