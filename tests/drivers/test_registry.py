"""Drivers by name, lazily: no optional library is imported before its driver is used."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drivers.loading import DriverOptionError, DriverUnavailableError, UnknownDriverError
from drivers.pumps import registry
from drivers.pumps.base import PumpDriver
from drivers.pumps.mock import MockPumpDriver
from drivers.pumps.registry import (
    driver_class,
    known_drivers,
    load_driver,
)
from firmware_bridge.clock import VirtualClock

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.hil
def test_importing_drivers_pulls_in_no_optional_library() -> None:
    result = run_python(
        """
        import sys
        import drivers
        import drivers.pumps.registry
        import drivers.gpio
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("serial", "pymodbus", "RPi", "lgpio")
        )
        print(heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.hil
def test_loading_the_mock_pulls_in_no_optional_library() -> None:
    result = run_python(
        """
        import sys
        from drivers.pumps.registry import load_driver
        d = load_driver("mock", clock="scaled:60:0")
        d.connect()
        d.read_status()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("serial", "pymodbus")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_load_mock_with_options() -> None:
    clock = VirtualClock()
    driver = load_driver("mock", clock=clock, syringe="bd-plastipak-10ml")
    assert isinstance(driver, MockPumpDriver)
    assert driver.pump.syringe.name == "bd-plastipak-10ml"
    assert not driver.connected  # loading is not connecting


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownDriverError) as info:
        load_driver("ne2000")
    assert str(info.value) == (
        "unknown pump driver 'ne2000'; known drivers: harvard, mock, modbus, ne1000"
    )
    assert known_drivers() == ("harvard", "mock", "modbus", "ne1000")


def test_unknown_option_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(DriverOptionError) as info:
        load_driver("mock", clock=VirtualClock(), baudrate=9600, syrnge="x")
    message = str(info.value)
    assert "driver 'mock': unknown option(s) 'baudrate', 'syrnge'" in message
    assert "accepted: auto_reconnect, clock, faults" in message


@pytest.fixture
def fake_drivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for throw-away driver modules, and a writable table."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "DRIVERS", dict(registry.DRIVERS))
    return tmp_path


def write_module(where: Path, name: str, body: str) -> None:
    (where / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    importlib.invalidate_caches()


@pytest.mark.parametrize(
    ("library", "package"),
    [("serial", "pyserial"), ("pymodbus", "pymodbus[serial]"), ("RPi", "rpi-lgpio")],
)
def test_missing_library_names_the_package_only_when_used(
    fake_drivers: Path, monkeypatch: pytest.MonkeyPatch, library: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # import of it now fails
    module = f"fake_needs_{library.lower()}"
    write_module(fake_drivers, module, f"import {library}\n")
    registry.DRIVERS[module] = f"{module}:Driver"  # type: ignore[index]
    with pytest.raises(DriverUnavailableError) as info:
        load_driver(module)
    assert f"needs the Python module {library!r}, which is not installed" in str(info.value)
    assert f"install {package}" in str(info.value)
    assert isinstance(info.value, ImportError)


def test_registered_module_missing_from_the_install(fake_drivers: Path) -> None:
    registry.DRIVERS["ghost"] = "drivers.ghost:GhostDriver"  # type: ignore[index]
    with pytest.raises(DriverUnavailableError, match="not part of this installation"):
        load_driver("ghost")


def test_registered_class_missing_or_not_a_driver(fake_drivers: Path) -> None:
    write_module(fake_drivers, "fake_not_driver", "class NotADriver:\n    pass\n")
    registry.DRIVERS["nothing"] = "fake_not_driver:Missing"  # type: ignore[index]
    registry.DRIVERS["wrong"] = "fake_not_driver:NotADriver"  # type: ignore[index]
    with pytest.raises(DriverUnavailableError, match="has no 'Missing'"):
        load_driver("nothing")
    with pytest.raises(DriverUnavailableError, match="is not a PumpDriver"):
        load_driver("wrong")


def test_missing_required_option_is_named(fake_drivers: Path) -> None:
    write_module(
        fake_drivers,
        "fake_port_driver",
        """
        from drivers.pumps.mock import MockPumpDriver

        class PortDriver(MockPumpDriver):
            name = "port"

            def __init__(self, *, port: str, baud: int = 19200) -> None:
                super().__init__()
                self.port = port
        """,
    )
    registry.DRIVERS["port"] = "fake_port_driver:PortDriver"  # type: ignore[index]
    with pytest.raises(DriverOptionError, match="driver 'port': missing required option"):
        load_driver("port")
    driver = load_driver("port", port="/dev/ttyUSB0")
    assert vars(driver)["port"] == "/dev/ttyUSB0"


@pytest.mark.parametrize("name", sorted(registry.DRIVERS))
def test_every_registered_driver_that_exists_is_a_pump_driver(name: str) -> None:
    module = registry.DRIVERS[name].partition(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not written yet")
    cls = driver_class(name)
    assert issubclass(cls, PumpDriver)
    assert cls.name == name
