"""A real headless browser for the page tests: Debian's ``chromium`` driven through
``chromium-driver`` by Selenium, offline (no Selenium Manager download: the driver's
path is given). ``available()`` says why not when something is missing.

Screenshots go to ``var/test-artifacts/`` (``ARTIFACTS``), one per page and moment, so a
person can see what the test saw.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
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
        self.driver: Any = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))

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
