"""``PumpName``: when the pump on the port must be asked its name (``must_ask``)."""

from __future__ import annotations

import pytest

from drivers.pumps.base import AnotherPumpAnswers, PumpName


def test_a_fresh_name_is_to_be_asked_and_the_answer_clears_it() -> None:
    name = PumpName("test")
    assert name.must_ask
    name.heard("PUMP 1", "on port")
    assert not name.must_ask and name.first == "PUMP 1"


def test_expect_marks_the_name_to_be_asked_again_whatever_was_heard() -> None:
    name = PumpName("test")
    name.heard("PUMP 1", "on port")
    name.expect(None)
    assert name.must_ask and name.first is None
    name.heard("PUMP 2", "on port")  # the replacement: taken
    assert not name.must_ask and name.first == "PUMP 2" and name.foreign is None
    name.expect("PUMP 2")
    assert name.must_ask


def test_another_pump_answering_clears_the_question_but_is_refused() -> None:
    """The question was answered, by another pump: the driver's own state (not linked,
    not named on this opening) asks again at every call; ``must_ask`` is the owner's."""
    name = PumpName("test")
    name.expect("PUMP 1", "put it back")
    name.heard("PUMP 9", "on port")
    assert not name.must_ask
    with pytest.raises(AnotherPumpAnswers, match=r"'PUMP 9', not 'PUMP 1'.*put it back"):
        name.refuse_foreign()


def test_a_pump_without_a_name_answers_the_question_when_none_is_expected() -> None:
    name = PumpName("test")
    name.expect(None)
    name.heard_no_name()
    assert not name.must_ask and name.first is None and name.foreign is None
