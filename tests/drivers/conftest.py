"""The ``rig`` fixture: one driver with its simulated pump, for every kind of pump.

Each rig lives in ``tests/drivers/rigs/<name>.py`` and exposes ``make_rig(tmp_path)``, a
context manager yielding a connected ``Rig``. A rig module that does not exist yet is
skipped with a message (drivers are written in parallel); once every rig exists the skip
goes and a missing rig becomes a failure.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drivers.rig import Rig

RIG_NAMES = ["mock", "ne1000", "harvard", "modbus_tcp", "modbus_rtu"]


def _rig_module(name: str) -> object:
    module_name = f"tests.drivers.rigs.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            pytest.skip(f"rig {name!r} not written yet ({module_name} missing)")
        raise


@pytest.fixture(params=RIG_NAMES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    module = _rig_module(request.param)
    make_rig = getattr(module, "make_rig", None)
    if make_rig is None:
        pytest.fail(f"tests.drivers.rigs.{request.param} has no make_rig(tmp_path)")
    with make_rig(tmp_path) as built:
        assert isinstance(built, Rig)
        yield built
