"""A real headless browser for the page tests: Debian's ``chromium`` driven through
``chromium-driver`` by Selenium, offline (no Selenium Manager download: the driver's
path is given). ``available()`` says why not when something is missing.

The browser never outranks the processes the tests judge on real time (the safety
process, the emulators): run as root (as CI does), Chromium *raises* its own threads to
niceness -8, above them, and CI once saw three real-time tests lose their safety link for
2.3 s while a browser test ran beside them. So where this process could let it do that,
the driver starts without the capability to (``setpriv``, util-linux): every browser
thread stays at the test process's own niceness (0), below the safety process and the
emulators (``hil_tests/harness/bench.py``). Not lower: a browser niced to 10 starved
behind the other worker's tests and missed its own 30 s first render.

Screenshots go to ``var/test-artifacts/`` (``ARTIFACTS``), one per page and moment, so a
person can see what the test saw. A wait on the page that fails (``Browser.wait``) says
what the page showed at that moment, what the page's script logged, and how long the
browser took to start: CI once waited 30 s for a first render with nothing to tell why.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hil_tests.harness.processes import wait_for

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SETPRIV = "/usr/bin/setpriv"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def available() -> str | None:
    """None if a browser test can run here, else why not."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return (
            f"{' and '.join(missing)} not installed (Debian packages chromium and "
            "chromium-driver; .ci/run installs them)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the test extra)"
    return None


#: capability bits (linux/capability.h)
CAP_SETPCAP = 8
CAP_SYS_NICE = 23


def _effective_capabilities() -> int:
    """This process's effective capability set (``/proc/self/status``); 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _may_drop_sys_nice() -> bool:
    """Whether the browser would hold CAP_SYS_NICE (Chromium then sets its threads'
    niceness as it likes) and ``setpriv`` can take it out of the bounding set (that
    needs CAP_SETPCAP)."""
    caps = _effective_capabilities()
    return bool(caps >> CAP_SYS_NICE & 1 and caps >> CAP_SETPCAP & 1) and Path(SETPRIV).exists()


def launcher() -> list[str]:
    """The command before the driver's: where this process holds CAP_SYS_NICE (root),
    ``setpriv`` taking it out of the bounding set, so that no browser process can raise
    its priority (with it one may lower a niceness; without, only raise it)."""
    return [SETPRIV, "--bounding-set", "-sys_nice"] if _may_drop_sys_nice() else []


def cannot_raise_priority() -> bool:
    """Whether no browser process may set a niceness below this process's: it would not
    hold CAP_SYS_NICE, or ``launcher()`` takes it away."""
    return not _effective_capabilities() >> CAP_SYS_NICE & 1 or _may_drop_sys_nice()


def _service(service: type[Any]) -> Any:
    """The driver's service, its command behind ``launcher()``'s. Selenium puts its own
    arguments right after the executable, so the rest of the launcher's go first."""
    prefix = launcher()
    if not prefix:
        return service(CHROMEDRIVER)

    class LaunchedService(service):  # type: ignore[misc]
        def command_line_args(self) -> list[str]:
            return [*prefix[1:], CHROMEDRIVER, *super().command_line_args()]

    return LaunchedService(prefix[0])


class Browser:
    """One headless Chromium with a fresh profile, closed (and its profile removed) on
    exit."""

    def __init__(self, width: int = 1200, height: int = 1000) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = Path(tempfile.mkdtemp(prefix="pumpctl-chromium-"))
        options = webdriver.ChromeOptions()
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.binary_location = CHROMIUM
        # the page's console, for the report of a failed wait
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        started = time.monotonic()
        self.driver: Any = webdriver.Chrome(options=options, service=_service(Service))
        #: real seconds from asking for the browser to its driver answering
        self.start_s = time.monotonic() - started

    def wait(
        self,
        predicate: Callable[[], T | None],
        timeout_s: float,
        what: str,
        *,
        server: Callable[[], str] | None = None,
    ) -> T:
        """``wait_for`` on the page; a failure (a timeout, or the predicate raising: an
        element gone stale, a script error) says what the page showed (``report``) and,
        given ``server``, what the server had to show at that moment."""
        try:
            return wait_for(predicate, timeout_s, what)
        except Exception as exc:
            timed_out = isinstance(exc, AssertionError)
            said = [str(exc) if timed_out else f"waiting for {what}: {exc!r}", self.report()]
            if server is not None:
                try:
                    said.append(f"the server: {server()}")
                except Exception as error:  # a report, not the failure
                    said.append(f"the server could not be asked: {error!r}")
            raise AssertionError("\n".join(said)) from (None if timed_out else exc)

    def report(self) -> str:
        """What the page shows now and what its script logged: the address, the document's
        state, the text of the page (its start), the console, the browser's start time."""
        lines = [f"the browser started in {self.start_s:.1f} s"]
        try:
            shown = self.driver.execute_script(
                "return [location.href, document.readyState,"
                " document.body ? document.body.innerText.slice(0, 600) : '']"
            )
            lines += [
                f"page {shown[0]} ({shown[1]}), showing:",
                *("  " + t for t in str(shown[2]).splitlines()),
            ]
        except Exception as exc:  # the report must not hide the failure it explains
            lines.append(f"the page could not be read: {exc!r}")
        try:
            logged = self.driver.get_log("browser")
            lines.append(f"the page's console ({len(logged)} entries, the last 20):")
            lines += [f"  {e.get('level')} {e.get('message')}" for e in logged[-20:]]
        except Exception as exc:
            lines.append(f"the page's console could not be read: {exc!r}")
        return "\n".join(lines)

    def niceness(self) -> list[int]:
        """The niceness of every thread of the driver and the browser processes under it,
        from ``/proc`` (a thread's own, which Chromium sets per thread)."""
        tree = [self.driver.service.process.pid]
        for pid in tree:  # grows while walked: breadth first
            for task in Path(f"/proc/{pid}/task").glob("*"):
                children = task / "children"
                with contextlib.suppress(OSError):
                    tree.extend(int(c) for c in children.read_text().split())
        found = []
        for pid in tree:
            for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
                with contextlib.suppress(OSError):
                    # after the command's closing parenthesis: state is field 3, nice 19
                    found.append(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
        return found

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ARTIFACTS", "Browser", "available"]
