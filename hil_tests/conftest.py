"""Fixtures of the hardware-in-the-loop suite.

- ``make_bench(kind, **settings)``: starts a bench (emulator + safety process) for one
  pump kind and returns it; every bench of the case is closed at its end, passed or
  failed, and a failed case's report gets the tail of every process's output. A case
  that never checked the invariants on a bench's ground truth fails.
- ``machine_watch`` (autouse): a failed case's report ends with what the machine did
  meanwhile (pressure stalls, the test process kept from running:
  ``hil_tests.harness.machine``).
- ``no_leftovers`` (autouse): the case left no process, socket, pty or runtime file
  behind (``hil_tests.harness.leftovers``).
- ``library``, ``shipped_environment`` and ``processes_only_in_hil`` (both autouse):
  shared with ``tests/`` (its ``conftest.py``): the shipped drug library (the safety
  process loads the same file), an environment without ``PUMPCTL_*`` or systemd
  overrides, and the rule that only a ``hil`` case starts processes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil_tests.harness import bench as bench_module
from hil_tests.harness.bench import BenchSettings, HilBench
from hil_tests.harness.leftovers import Census, problems
from hil_tests.harness.machine import WATCHER, Watch
from hil_tests.harness.processes import wait_for
from hil_tests.harness.pumps import PumpKind
from safety.library import DrugLibrary
from tests import conftest as shared

#: how long teardown waits for processes and sockets to be gone (failure after that)
LEFTOVER_WAIT_S = 10.0

MakeBench = Callable[..., HilBench]

#: the fixtures both suites share (``tests/conftest.py``)
library = shared.library
shipped_environment = shared.shipped_environment
processes_only_in_hil = shared.processes_only_in_hil


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures know at teardown if it failed."""
    report = yield
    setattr(item, f"hil_report_{report.when}", report)
    return report


def _failed(node: pytest.Item) -> bool:
    return any(
        getattr(getattr(node, f"hil_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(autouse=True)
def machine_watch(request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure, say whether the machine kept the processes from running meanwhile."""
    WATCHER.start()
    watch = Watch()
    yield
    if _failed(request.node):
        print(f"\n{watch.report()}")


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fail the case if it leaves a process, socket, pty or runtime directory behind."""
    before = Census.take()
    first_dir = len(bench_module.RUNTIME_DIRS)
    yield
    created = bench_module.RUNTIME_DIRS[first_dir:]
    found: list[str] = []

    def clean() -> bool:
        found[:] = problems(before, created)
        return not found

    try:
        wait_for(clean, LEFTOVER_WAIT_S, "the case's processes and files to be gone")
    except AssertionError:
        pytest.fail("the case left things behind:\n  " + "\n  ".join(found), pytrace=False)


@pytest.fixture
def make_bench(
    request: pytest.FixtureRequest, tmp_path: Path, library: DrugLibrary
) -> Iterator[MakeBench]:
    benches: list[HilBench] = []

    def make(kind: PumpKind | str, *, start: bool = True, **settings: Any) -> HilBench:
        bench = HilBench(
            kind, tmp_path / f"bench{len(benches)}", BenchSettings(**settings), library
        )
        benches.append(bench)
        if start:
            bench.start()
        return bench

    try:
        yield make
    finally:
        failed = _failed(request.node)
        for bench in benches:
            if failed:
                print(f"\n{bench.diagnostics()}")
            bench.close()
        if failed:
            print(f"journals, truth logs and configs: {tmp_path}")
        unchecked = [b for b in benches if b.emulator is not None and not b.invariants_checked]
        if unchecked and not failed:
            pytest.fail(
                "every case judges the pump's ground truth: call bench.assert_invariants() "
                f"(not done on the {', '.join(str(b.kind) for b in unchecked)} bench)",
                pytrace=False,
            )


# --------------------------------------------------------------------------- missing tools

#: a skip whose reason starts with this is a tool missing on this machine: the run ends
#: with a loud list of them (not only pytest's one-line -ra summary)
MISSING_TOOL = "missing tool: "
_missing: list[tuple[str, str]] = []


def skip_unless(reason: str | None) -> None:
    """Skip the case when ``reason`` (a tool that is not installed) is given."""
    if reason is not None:
        pytest.skip(MISSING_TOOL + reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if MISSING_TOOL in reason:
            _missing.append((report.nodeid, reason.split(MISSING_TOOL, 1)[1]))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _missing:
        return
    tr = terminalreporter
    tr.write_sep("!", f"{len(_missing)} TEST(S) SKIPPED: TOOLS MISSING ON THIS MACHINE", red=True)
    for nodeid, reason in _missing:
        tr.write_line(f"  {nodeid}: {reason}", red=True)
    tr.write_line(
        "  install them (as root: .ci/run does) to run these cases: apt-get install mosquitto "
        "chromium chromium-driver",
        red=True,
    )
