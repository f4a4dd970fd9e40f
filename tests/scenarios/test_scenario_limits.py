"""Scenario values that only another table can judge, refused when the file is loaded.

``loaded_ml`` is bounded by the container it fills, which a channel may leave to
``[bench] syringe``: past it the simulated pump refused it mid-setup, as a traceback and
exit 1. A channel's name follows the safety config's own rule
(``safety.host.channel_names``): a scenario must not run a bench its config would refuse.
Each is named by file and line, exit 2, tested at the limit and one step past it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from safety.host.config import ConfigError, parse_config
from tests.scenarios.conftest import REPO, scenario_text
from verification.scenario import ScenarioFileError, parse_scenario

ONE_PUMP = """\
[scenario]
name = "one pump"
duration = 5

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"
syringe = "bd-plastipak-20ml"
loaded_ml = LOADED

[[expect]]
type = "final"
running = false
"""

TWO_PUMPS = """\
[scenario]
name = "two pumps"
duration = 5

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"

[[channels]]
name = "A"
loaded_ml = LOADED_A

[[channels]]
name = "B"
container = "bag-250ml"
loaded_ml = LOADED_B

[[expect]]
type = "final"
running = false
"""


def _problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "s.toml")
    return [(p.line, f"{p.where}: {p.message}") for p in info.value.problems]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_benchs_loaded_volume_at_its_syringes_limit() -> None:
    assert parse_scenario(ONE_PUMP.replace("LOADED", "20")).scenario.bench.loaded_ml == 20
    text = ONE_PUMP.replace("LOADED", "20.1")
    assert _problems(text) == [
        (
            _line_of(text, "loaded_ml"),
            "[bench] loaded_ml: must be more than 0 and at most 20 mL (what "
            "bd-plastipak-20ml holds), got 20.1",
        )
    ]


def test_a_channels_loaded_volume_at_its_containers_limit() -> None:
    """A: the bench's default syringe (50 mL); B: a 250 mL bag."""
    full = TWO_PUMPS.replace("LOADED_A", "50").replace("LOADED_B", "250")
    assert [c.loaded_ml for c in parse_scenario(full).scenario.channels] == [50, 250]
    over = TWO_PUMPS.replace("LOADED_A", "50.1").replace("LOADED_B", "250.5")
    assert _problems(over) == [
        (
            _line_of(over, "50.1"),
            "[[channels]] #1 (A) loaded_ml: must be more than 0 and at most 50 mL (what "
            "bd-plastipak-50ml holds), got 50.1",
        ),
        (
            _line_of(over, "250.5"),
            "[[channels]] #2 (B) loaded_ml: must be more than 0 and at most 250 mL (what "
            "bag-250ml holds), got 250.5",
        ),
    ]


@pytest.mark.parametrize(
    ("shipped", "before", "after"),
    [
        ("relay-handover.toml", "loaded_ml = 20", "loaded_ml = 80"),
        ("syringe-change.toml", "loaded_ml = 12", "loaded_ml = 80"),
    ],
)
def test_the_command_exits_2_naming_the_file_line_and_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shipped: str, before: str, after: str
) -> None:
    """The reported cases: a shipped file with 80 mL in a 50 mL syringe."""
    text = scenario_text(shipped)
    assert text.count(before) == 1
    text = text.replace(before, after)
    path = tmp_path / shipped
    path.write_text(text, encoding="utf-8")
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{_line_of(text, after)}: " in err
    assert "loaded_ml: must be more than 0 and at most 50 mL" in err and "got 80" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- names

CHANNEL = """\
[scenario]
name = "names"
duration = 5

[bench]
drug = "norepinephrine"
concentration = "4 mg/250 mL"
diluent = "D5W"

[[channels]]
name = "A"

[[channels]]
name = "NAME"

[[expect]]
type = "final"
running = false
"""


def _config_takes(name: str) -> bool:
    mock = {"driver": "mock", "container": "bd-plastipak-50ml"}
    try:
        parse_config({"channels": {"A": mock, name: mock}})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("name", ["B", "b_2-x", "B" * 16])
def test_a_name_the_safety_config_takes_is_taken(name: str) -> None:
    assert _config_takes(name)
    loaded = parse_scenario(CHANNEL.replace("NAME", name))
    assert loaded.scenario.channel_names == ("A", name)


@pytest.mark.parametrize("name", ["1B", "_B", "-B", "B" * 17])
def test_a_name_the_safety_config_refuses_is_refused_in_plain_words(name: str) -> None:
    assert not _config_takes(name)
    text = CHANNEL.replace("NAME", name)
    [(line, message)] = _problems(text)
    assert line == _line_of(text, f'name = "{name}"')
    assert message == (
        f"[[channels]] #2 ({name}) name: channel name {name!r} must start with a letter, "
        "followed by letters, digits, '_' or '-' only, 16 characters at most"
    )


def test_a_step_naming_a_bad_channel_is_refused_by_the_same_rule() -> None:
    text = CHANNEL.replace("NAME", "B") + '\n[[action]]\nat = 0\ndo = "start"\nchannel = "1B"\n'
    text += "dose = 8\n"
    [(line, message)] = _problems(text)
    assert line == _line_of(text, 'channel = "1B"')
    assert "channel: channel name '1B' must start with a letter" in message


def test_the_shipped_relay_is_still_good() -> None:
    assert parse_scenario((REPO / "config" / "scenarios" / "relay-handover.toml").read_text())
