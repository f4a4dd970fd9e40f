"""Every --json and JSON file is strict JSON: Python writes NaN and Infinity, which JSON
has not and strict readers (jq, browsers, most parsers) refuse."""

from __future__ import annotations

import json
import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cli.commands.output import json_text


def _strict(text: str) -> object:
    def refuse(word: str) -> object:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def test_a_figure_that_is_not_a_number_is_null() -> None:
    body = {"ratio to manual": math.nan, "rise": [1.5, math.inf, -math.inf], "n": 3}
    assert _strict(json_text(body)) == {"ratio to manual": None, "rise": [1.5, None, None], "n": 3}


def test_a_decimal_that_is_not_a_number_is_null_not_the_word() -> None:
    body = {"dose": [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("0.1")]}
    assert _strict(json_text(body)) == {"dose": [None, None, None, "0.1"]}


def test_other_values_are_as_json_writes_them() -> None:
    body = {"dose": Decimal("0.05"), "pair": (1, 2.0), "nested": {"ok": True, "x": None}}
    assert _strict(json_text(body, indent=1)) == {
        "dose": "0.05", "pair": [1, 2.0], "nested": {"ok": True, "x": None},
    }  # fmt: skip


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
))  # fmt: skip
def test_anything_json_can_hold_comes_out_strict(value: object) -> None:
    _strict(json_text(value))
