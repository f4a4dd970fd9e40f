"""The configuration and scenario examples in the README and docs/ are files a reader
copies: each one must load as what it shows. A review once found a shared-line example
(``address`` beside ``driver``, no ``container``) that the safety process refuses, and
reason codes quoted in a short form no refusal carries.

A TOML block is a scenario when it has ``[scenario]`` or ``[[action]]`` tables, else a
part of a bench config: validated with the safety process's own loader, a one-pump
``[pump]`` added where the block shows another section alone (``[monitor]``,
``[telemetry]``...)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

from safety.host.config import ConfigError, parse_config
from safety.ipc.messages import ErrorCode
from safety.reasons import Reason
from verification.scenario.loader import ScenarioFileError, parse_scenario

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")),
    "hil_tests/README.md",
]
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)
#: what the example is completed with when it shows a section of a bench alone
ONE_PUMP = {"driver": "mock", "syringe": "bd-plastipak-50ml"}
#: "refused `code`", "refused as `code`", "refused (`code`"; not "a refused `event`"
REFUSED_CODE = re.compile(r"(?<!a )refused\s+(?:as\s+|with\s+)?\(?`([a-z][a-z0-9_]*)`")
#: a controller refusal's code, as its source raises it (``ControllerError(..., code=)``)
CONTROLLER_CODE = re.compile(r'code="([a-z_]+)"')


def refusal_codes() -> set[str]:
    """Every code a refusal carries: the kernel's reasons, the IPC's error codes, the
    controller's own."""
    controller = {
        code
        for path in (REPO / "controller").rglob("*.py")
        for code in CONTROLLER_CODE.findall(path.read_text(encoding="utf-8"))
    }
    return {r.value for r in Reason} | {c.value for c in ErrorCode} | controller


def blocks() -> list[ParameterSet]:
    """Every TOML block of the pages, named by page and line."""
    found = []
    for page in PAGES:
        text = (REPO / page).read_text(encoding="utf-8")
        for m in TOML_BLOCK.finditer(text):
            line = text[: m.start()].count("\n") + 1
            found.append(pytest.param(m.group(1), id=f"{page}:{line}"))
    return found


@pytest.mark.parametrize("text", blocks())
def test_every_toml_example_loads_as_what_it_shows(text: str) -> None:
    data = tomllib.loads(text)
    if "scenario" in data or "action" in data:
        try:
            parse_scenario(text, "the example")
        except ScenarioFileError as exc:
            pytest.fail(f"the scenario example does not load: {exc}")
        return
    if "pump" not in data and "channels" not in data:
        data = {**data, "pump": ONE_PUMP}
    try:
        parse_config(data, "the example")
    except ConfigError as exc:
        pytest.fail(f"the config example does not load: {exc}")


def test_the_toml_examples_are_found() -> None:
    """The check above must not pass by finding nothing (a changed fence, a moved page)."""
    assert len(blocks()) >= 5


@pytest.mark.parametrize("page", PAGES)
def test_every_quoted_refusal_code_is_one_the_safety_process_gives(page: str) -> None:
    text = (REPO / page).read_text(encoding="utf-8")
    known = refusal_codes()
    quoted = set(REFUSED_CODE.findall(text))
    assert not quoted - known, f"{page}: refusal codes no refusal carries: {quoted - known}"


def test_a_quoted_refusal_code_is_recognised() -> None:
    """The pattern reads the forms the docs use (and would see the short forms once used)."""
    said = (
        "refused `hard_max` ... refused as `below_pump_range` ... refused (`wean_too_fast`"
        " ... a refused `request_decided` event"
    )
    assert REFUSED_CODE.findall(said) == ["hard_max", "below_pump_range", "wean_too_fast"]
    assert "hard_max" not in refusal_codes() and "channel_busy" in refusal_codes()
