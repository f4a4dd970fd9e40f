"""What a safety process on real pumps imports: nothing it has no run-time use for.

The safety process's memory goal (peak RSS <= 40 MB with 4 channels, issue 14) is mostly
its import footprint. These modules are left out on purpose, each imported only on the
path that needs it (docs/benchmarks.md, "The safety process's import footprint"):

- the simulated pump (``drivers.pumps.mock``, ``firmware_bridge.pump_model``, ``.faults``):
  only for a ``mock`` channel, or a config that names a mock's faults;
- ``importlib.metadata`` (and ``email``, ``zipfile``, ``csv``): pydantic's plugin search,
  replaced by an empty loader (``safety.host.plugins``);
- ``shutil`` (and ``zlib``, ``bz2``, ``lzma``): argparse's terminal width
  (``safety.host.process``) and the journal's salvage copy (``tempfile``);
- ``statistics``: one median of the library's sanity check (``safety.library.sanity``).

The rooms above ``safety`` (controller, observers, CLI, benchmarks, verification) and the
test tools are checked too, and that start-up's objects were frozen out of the cyclic
collector's full collections (``safety.start_up``: a latency tail, not memory).
The process is the real one (``python -m safety`` through
``runpy``), started on a pty with pumps that never answer: comms alarms, not an exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil_tests.harness.processes import write_toml
from safety.host import process
from safety.host.plugins import LOADER, skip_pydantic_plugins
from safety.library.sanity import median_of

REPO = Path(__file__).resolve().parents[2]

#: modules (or packages) a safety process on real pumps must not hold
NOT_AT_RUN_TIME = (
    "drivers.pumps.mock",
    "firmware_bridge.pump_model",
    "firmware_bridge.faults",
    "firmware_bridge.mechanics",
    "importlib.metadata",
    "email",
    "zipfile",
    "csv",
    "shutil",
    "tempfile",
    "zlib",
    "bz2",
    "lzma",
    "statistics",
    "pymodbus",
    "controller",
    "observe",
    "cli",
    "benchmarks",
    "verification",
    "hypothesis",
    "matplotlib",
)

#: runs ``python -m safety ARGS`` and, at its exit, writes what it imported to argv[1]
PROBE = r"""
import atexit, json, runpy, sys
out = sys.argv[1]

def dump():
    loader = sys.modules.get("pydantic.plugin._loader")
    with open(out, "w") as fh:
        json.dump({"modules": sorted(sys.modules),
                   "loader": type(loader).__name__ if loader is not None else None,
                   "frozen": __import__("gc").get_freeze_count()}, fh)

atexit.register(dump)
sys.argv = ["safety", *sys.argv[2:]]
runpy.run_module("safety", run_name="__main__", alter_sys=True)
"""

OPTION = {"ne1000": "address", "harvard": "address", "modbus": "device_id"}
#: the pumps never answer: a short wait for each reply keeps the start-up reads short
TIMEOUT = {"ne1000": "reply_timeout_s", "harvard": "reply_timeout_s", "modbus": "timeout_s"}


@pytest.fixture
def pty_port() -> Iterator[str]:
    """A pty nobody answers on: the channels' drivers open it and see silence."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def _config(where: Path, protocol: str, port: str) -> Path:
    channels = {
        name: {
            "driver": protocol,
            "container": "bd-plastipak-50ml",
            "line": "L",
            "options": {OPTION[protocol]: address, TIMEOUT[protocol]: 0.05},
        }
        for name, address in (("A", 1),)
    }
    parity = "E" if protocol == "modbus" else "N"
    return write_toml(
        where / "safety.toml",
        {
            "lines": {"L": {"kind": "serial", "port": port, "baud": 19200, "parity": parity}},
            "channels": channels,
            "gpio": {"backend": "none"},
            "paths": {
                "journal": str(where / "journal.sqlite"),
                "socket": str(where / "safety.sock"),
                "key_file": str(where / "ipc.key"),
            },
        },
    )


def _run_until_ready(config: Path, out: Path) -> dict[str, object]:
    """Start the probe, wait for its ``ready`` line, stop it with SIGTERM, read its dump."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", PROBE, str(out), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith(b"ready "), line
        time.sleep(0.3)  # a poll round or two: the drivers have talked (to silence)
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    seen: dict[str, object] = json.loads(out.read_text())
    return seen


def _held(modules: list[str]) -> list[str]:
    return sorted(
        name
        for name in NOT_AT_RUN_TIME
        if any(m == name or m.startswith(name + ".") for m in modules)
    )


@pytest.mark.hil
@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["ne1000", "harvard", "modbus"])
def test_a_safety_process_on_real_pumps_imports_nothing_it_does_not_use(
    short_dir: Path, pty_port: str, protocol: str
) -> None:
    seen = _run_until_ready(_config(short_dir, protocol, pty_port), short_dir / "modules.json")
    modules = seen["modules"]
    assert isinstance(modules, list)
    assert f"drivers.pumps.{protocol}" in modules  # it did load its driver
    assert _held(modules) == []
    assert seen["loader"] == "_StandIn"  # pydantic validated with no plugin search
    # start-up's objects frozen out of the collector's full collections (process.py)
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000


def test_pydantic_already_imported_is_left_alone() -> None:
    # this test process imported pydantic (and its real plugin loader, or not) long ago
    before = sys.modules.get(LOADER)
    assert skip_pydantic_plugins() is False
    assert sys.modules.get(LOADER) is before


@pytest.mark.parametrize("columns", [None, "60", "200", "0", "wide"])
def test_terminal_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert process.terminal_columns() == shutil.get_terminal_size().columns


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_help_is_argparses_own(monkeypatch: pytest.MonkeyPatch, columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    ours = process._parser()
    plain = process._parser()
    plain.formatter_class = argparse.HelpFormatter
    assert ours.format_help() == plain.format_help()
    assert ours.format_usage() == plain.format_usage()


@given(
    st.lists(
        st.fractions(min_value=Fraction(1, 10**4), max_value=10**6, max_denominator=10**4),
        min_size=1,
        max_size=9,
    )
)
def test_median_is_statistics_median(values: list[Fraction]) -> None:
    ours = median_of(values)
    assert ours == statistics.median(values)
    assert isinstance(ours, Fraction)
