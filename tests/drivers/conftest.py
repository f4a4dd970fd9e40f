"""The ``rig`` fixture: one driver with its simulated pump, for every kind of pump.

Each rig lives in ``tests/drivers/rigs/<name>.py`` and exposes ``make_rig(tmp_path)``, a
context manager yielding a connected ``Rig``. Every pump kind must have one: a missing
rig is a failure, never a skip, so no driver drops out of the back-to-back suite unseen.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drivers.rig import Rig

RIG_NAMES = ["mock", "ne1000", "harvard", "modbus_tcp", "modbus_rtu"]


def _rig_module(name: str) -> object:
    return importlib.import_module(f"tests.drivers.rigs.{name}")


@pytest.fixture(params=RIG_NAMES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    module = _rig_module(request.param)
    make_rig = getattr(module, "make_rig", None)
    if make_rig is None:
        pytest.fail(f"tests.drivers.rigs.{request.param} has no make_rig(tmp_path)")
    with make_rig(tmp_path) as built:
        assert isinstance(built, Rig)
        yield built
