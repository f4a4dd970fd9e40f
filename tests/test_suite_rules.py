"""The suite's own rules (``tests/conftest.py``) hold: they are what make ``-m "not hil"``
the quick in-process set and keep the environment from swapping the library."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ENVIRONMENT_OVERRIDES


def test_a_test_that_starts_a_process_without_the_hil_marker_fails() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"mark it @pytest\.mark\.hil"):
        subprocess.run(["true"], check=False)
    with pytest.raises(pytest.fail.Exception, match=r"mark it @pytest\.mark\.hil"):
        os.fork()


@pytest.mark.hil
def test_a_hil_test_may_start_one() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0


def test_no_override_reaches_a_test() -> None:
    assert not [name for name in ENVIRONMENT_OVERRIDES if name in os.environ]
