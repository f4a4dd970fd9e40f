"""Two channels whose pumps name themselves alike, behind ports a reboot may swap, are
warned about: the pump-name check (``PumpNamed``, ``test_pump_name_restart.py``) cannot
see such a swap, so the operator is told to name the ports by ``/dev/serial/by-id/``
(a low alarm, ``pump_names_alike``, never a refusal).

Channels A and B on NE-1000 drivers made afresh by every safety process
(``ne1000_ports.PortBench``): each on a port of its own, or both at addresses 0 and 1 on
one line (``one_line``). What a port is named in the config is the driver's
``serial_port``, which ``named`` sets to the links no test can create.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.status_line import status_line
from drivers.lines import LineSpec, open_line
from drivers.pumps.modbus import ModbusDriver
from drivers.pumps.ne1000 import Ne1000Driver
from firmware_bridge.faults import WireFaults
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.ne1000.emulator import FIRMWARE
from firmware_bridge.syringes import syringe_by_name
from safety.alarms import Alarm, Priority
from safety.host.core import Channel, SafetyCore
from safety.kernel.model import AcceptPump, PumpNamed
from safety.kernel.replay import replay_journal
from safety.library import DrugLibrary
from safety.reasons import Reason
from tests.channels.ne1000_ports import PORTS, PortBench
from tests.channels.support import ChannelBench, booted
from tests.firmware_bridge.test_modbus_identification import map_with
from tests.kernel.support import TracingPump, norepi_standard

pytestmark = pytest.mark.timeout(60)

OTHER_FIRMWARE = "NE500V2.100"
SPARE_FIRMWARE = "NE1000V3.930"
BY_ID = {
    "A": "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KZP1Q-if00-port0",
    "B": "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KZP2R-if00-port0",
}
BY_PATH = {"B": "/dev/serial/by-path/platform-3f980000.usb-usb-0:1.3:1.0-port0"}
REMEDY = "name each of these ports by /dev/serial/by-id/ (or by-path), docs/protocols.md"
KEY = "pump_names_alike"


class AlikeBench(PortBench):
    """A ``PortBench`` whose pumps name themselves alike unless ``firmware`` says
    otherwise (its default): the case the warning is for."""

    def alike(self) -> Alarm | None:
        """The warning, when the book holds it (bench scope)."""
        return self.core.state.alarms.get(KEY, "")


@pytest.fixture
def make_bench(library: DrugLibrary, tmp_path: Path) -> Iterator[Callable[..., AlikeBench]]:
    """Boots an ``AlikeBench`` with the options given, shut after the test."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> AlikeBench:
            return stack.enter_context(booted(AlikeBench(tmp_path / "bench", library, **options)))

        yield make


def _gone(alarm: Alarm | None) -> bool:
    """Never raised, or its condition gone (latched until acknowledged, as every alarm)."""
    return alarm is None or not alarm.active


def test_two_channels_on_ports_that_may_swap_named_alike_are_warned(
    make_bench: Callable[..., AlikeBench],
) -> None:
    """Two NE-1000s of one firmware, each on a ``ttyUSB`` port of its own: a reboot that
    swapped the ports would pass the name check. A low alarm names both channels and
    their ports, the shared name and the remedy; the console's status line shows it as
    any other; it blocks nothing (a program loads and starts)."""
    bench = make_bench()
    assert bench.pump_names() == [("A", FIRMWARE), ("B", FIRMWARE)]
    alarm = bench.alike()
    assert alarm is not None and alarm.active and alarm.annunciating
    assert alarm.priority is Priority.LOW and alarm.reason is Reason.PUMP_NAMES_ALIKE
    a, b = (str(bench.root / PORTS[n]) for n in ("A", "B"))
    assert f"channels A ({a}), B ({b}) have pumps that name themselves {FIRMWARE!r}" in (
        alarm.message
    )
    assert REMEDY in alarm.message
    shown = [v for v in bench.core.snapshot().alarms if v.key == KEY]
    assert len(shown) == 1 and shown[0].priority == "low"
    assert f"LOW {KEY}: channels A" in status_line(bench.core.snapshot(), "idle")

    assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted
    assert bench.start_on("A", "8").execution == "applied"
    assert bench.pumps["A"].snapshot().running


def test_two_pumps_at_two_addresses_on_one_line_are_not_warned(
    make_bench: Callable[..., AlikeBench],
) -> None:
    """The ``make demo`` bench: two NE-1000s of one firmware at addresses 0 and 1 on one
    line. Their addresses tell them apart: nothing to warn about, at start or after a
    restart."""
    bench = make_bench(one_line=True)
    assert bench.pump_names() == [("A", FIRMWARE), ("B", FIRMWARE)]
    assert bench.alike() is None
    bench.reboot(30)
    assert bench.ch("A").comms_ok and bench.ch("B").comms_ok
    assert bench.alike() is None


@pytest.mark.parametrize(
    ("named", "warned"),
    [
        pytest.param(BY_ID, False, id="both-by-id"),
        pytest.param({"A": BY_ID["A"], **BY_PATH}, False, id="by-id-and-by-path"),
        # a ttyUSB name may come up as the by-id channel's adapter after a reboot: the
        # channel on it would then take the other's pump for its own, unnoticed
        pytest.param({"A": BY_ID["A"]}, True, id="one-by-id-one-ttyUSB"),
        # a board's own UART is no adapter's name: nothing can come up as it, or as it
        pytest.param({"A": "/dev/ttyAMA0"}, False, id="on-board-UART-and-ttyUSB"),
        pytest.param({"A": "/dev/serial0"}, False, id="pi-serial0-and-ttyUSB"),
        # udev rules' own links follow their adapters, as by-id links do
        pytest.param({"A": "/dev/pumpA", "B": "/dev/pumpB"}, False, id="both-udev-rule-links"),
        pytest.param({"A": "/dev/pumpA"}, True, id="udev-rule-link-and-ttyUSB"),
        pytest.param({"A": "/dev/ttyACM0"}, True, id="ttyACM-and-ttyUSB"),
        # the first adapter that matches: whichever came up first
        pytest.param(
            {"A": "hwgrep://0403:6001", "B": "hwgrep://0403:6001&skip_busy"},
            True,
            id="both-hwgrep",
        ),
    ],
)
def test_ports_named_by_their_adapters_are_not_warned(
    make_bench: Callable[..., AlikeBench], named: dict[str, str], warned: bool
) -> None:
    """Ports named by udev's links for their adapters (``/dev/serial/by-id/``,
    ``/dev/serial/by-path/``, a rule's own) cannot trade pumps, nor can a board's own
    UART: no warning however alike the names. A ``ttyUSB`` or ``ttyACM`` name (handed out
    in plug-in order) beside anything an adapter may come up as is warned."""
    bench = make_bench(named=named)
    assert bench.pump_names() == [("A", FIRMWARE), ("B", FIRMWARE)]
    alarm = bench.alike()
    if warned:
        assert alarm is not None and alarm.active
        assert f"A ({named['A']})" in alarm.message
    else:
        assert alarm is None


def test_pumps_that_name_themselves_otherwise_are_not_warned(
    make_bench: Callable[..., AlikeBench],
) -> None:
    """An NE-1000 and an NE-500 on ``ttyUSB`` ports: the name check sees a swap."""
    bench = make_bench(firmware={"B": OTHER_FIRMWARE})
    assert bench.pump_names() == [("A", FIRMWARE), ("B", OTHER_FIRMWARE)]
    assert bench.alike() is None


def test_the_warning_is_derived_again_from_the_journal_after_a_restart(
    make_bench: Callable[..., AlikeBench],
) -> None:
    """The journal alone gives it back (a replay, as at every start), and a reboot keeps
    it: the names are not journaled again, the warning stands. Once the ports are named
    by-id in the config, the next start clears it."""
    bench = make_bench()
    replayed = replay_journal(bench.config, bench.journal).state.alarms.get(KEY, "")
    assert replayed is not None and replayed.active and replayed.priority is Priority.LOW
    first = len(bench.events())
    bench.reboot(30)
    assert not [e for e in bench.events()[first:] if isinstance(e, PumpNamed)]
    assert bench.ch("A").comms_ok and bench.ch("B").comms_ok
    alarm = bench.alike()
    assert alarm is not None and alarm.active and alarm.message == replayed.message

    bench.named.update(BY_ID)  # the operator followed the remedy
    bench.reboot(30)
    assert bench.ch("A").comms_ok and bench.ch("B").comms_ok
    assert _gone(bench.alike())
    assert _gone(replay_journal(bench.config, bench.journal).state.alarms.get(KEY, ""))


def test_an_accepted_replacement_that_names_itself_otherwise_ends_the_warning(
    make_bench: Callable[..., AlikeBench],
) -> None:
    """A's pump is replaced by a pump of another firmware while the safety process is
    down (here: A's port is empty at the restart). A's recorded name still matches B's:
    warned. Accepted (``newpump A``), the old name goes at once, before any new pump has
    named itself; the spare's name, recorded when it answers, is not B's: no warning,
    after a further restart too."""
    bench = make_bench()
    assert bench.alike() is not None
    bench.add("spare", SPARE_FIRMWARE)
    bench.unplug(PORTS["A"])
    bench.reboot(30)
    assert not bench.ch("A").comms_ok
    alarm = bench.alike()
    assert alarm is not None and alarm.active  # A's recorded name is still B's

    assert bench.send(AcceptPump("A")).verdict.accepted
    assert bench.pump_names()[-1] == ("A", "")
    assert _gone(bench.alike())  # the old pump's name went with it

    # a port absent when the safety process started is opened at its next start only
    bench.plug(PORTS["A"], "spare")
    bench.reboot(30)
    assert bench.ch("A").comms_ok and bench.ch("A").pump_name == SPARE_FIRMWARE
    assert bench.pump_names()[-1] == ("A", SPARE_FIRMWARE)
    assert _gone(bench.alike())
    bench.reboot(30)
    assert bench.ch("A").comms_ok
    assert _gone(bench.alike())


def test_a_network_port_or_a_line_names_its_device_once() -> None:
    """What a driver reports as its serial device (journaled with the bench): a shared
    line's device for every pump on it, the device of a port of its own, and none for a
    network address, which no reboot gives to another adapter."""
    serial = open_line(LineSpec(kind="serial", port="/dev/ttyUSB0", baud=19200))
    on_line = [Ne1000Driver(line=serial, address=n) for n in (1, 2)]
    assert [d.serial_port for d in on_line] == ["/dev/ttyUSB0", "/dev/ttyUSB0"]
    assert Ne1000Driver(port="/dev/ttyUSB1").serial_port == "/dev/ttyUSB1"
    assert Ne1000Driver(port="socket://192.0.2.7:4001").serial_port == ""
    assert Ne1000Driver(port="rfc2217://192.0.2.7:4001").serial_port == ""
    # pyserial's wrappers of a device name the device; hwgrep:// is kept for the kernel
    assert Ne1000Driver(port="spy:///dev/ttyUSB3?file=x.txt").serial_port == "/dev/ttyUSB3"
    assert Ne1000Driver(port="alt:///dev/ttyUSB4?class=PosixPollSerial").serial_port == (
        "/dev/ttyUSB4"
    )
    assert Ne1000Driver(port="hwgrep://0403:6001").serial_port == "hwgrep://0403:6001"
    tcp = open_line(LineSpec(kind="tcp", port="192.0.2.7:4001"))
    assert Ne1000Driver(line=tcp, address=1).serial_port == ""
    assert ModbusDriver(host="192.0.2.8").serial_port == ""
    assert ModbusDriver(serial_port="/dev/ttyUSB2").serial_port == "/dev/ttyUSB2"


class NamelessBench(ChannelBench):
    """Channels A and B on Modbus RTU drivers, each on a port of its own (``ttyUSB0`` and
    ``ttyUSB1``, links to the emulators' ptys), whose devices give no identification (a
    register map with ``identification = false``): nothing in what they answer tells one
    from the other."""

    def __init__(self, root: Path, library: DrugLibrary, map_path: str) -> None:
        self.map_path = map_path
        self.emulators: dict[str, BackgroundEmulator] = {}
        super().__init__(root, library, ("A", "B"))

    def _new_core(self, library: DrugLibrary | None = None) -> SafetyCore:
        if not self.emulators:
            self.root.mkdir(parents=True, exist_ok=True)
            for name, port in PORTS.items():
                pump = TracingPump(self.clinical, self.syringe)
                self.pumps[name] = pump
                emulator = BackgroundEmulator(
                    pump, WireFaults(), map_path=self.map_path, use_pty=True
                )
                emulator.__enter__()
                self.emulators[name] = emulator
                (self.root / port).symlink_to(emulator.where)
            self.pump = self.pumps["A"]
        channels = [
            Channel(
                name,
                ModbusDriver(
                    serial_port=str(self.root / port), map_path=self.map_path, timeout_s=0.5
                ),
                syringe_by_name(self.syringe.name),
                None,
                "modbus",
            )
            for name, port in PORTS.items()
        ]
        return self._core_of(channels, library)

    def shut(self) -> None:
        super().shut()
        for emulator in self.emulators.values():
            emulator.__exit__(None, None, None)


def test_two_pumps_that_give_no_name_on_ports_that_may_swap_are_warned(
    library: DrugLibrary, tmp_path: Path
) -> None:
    """Two Modbus devices without identification, each on a ``ttyUSB`` port of its own:
    there is no name to check at all, so a reboot that swapped the ports would go
    unnoticed. Each channel's pump is journaled once as giving no name, and the low
    warning names both channels, their ports, the driver and the remedy; a restart
    derives it again from the journal without journaling the pumps again."""
    no_identification = map_with(tmp_path, "identification = false")
    bench = NamelessBench(tmp_path / "bench", library, no_identification)
    with booted(bench):
        nameless = [e for e in bench.events() if isinstance(e, PumpNamed)]
        assert [(e.channel, e.name, e.nameless) for e in nameless] == [
            ("A", "", True),
            ("B", "", True),
        ]
        alarm = bench.core.state.alarms.get(KEY, "")
        assert alarm is not None and alarm.active
        assert alarm.priority is Priority.LOW and alarm.reason is Reason.PUMP_NAMES_ALIKE
        for name, port in PORTS.items():
            assert f"{name} ({bench.root / port})" in alarm.message
        assert "have modbus pumps that give no name" in alarm.message
        assert REMEDY in alarm.message
        assert bench.load_on("A", norepi_standard(bench.library)).verdict.accepted

        first = len(bench.events())
        bench.restart()
        assert not [e for e in bench.events()[first:] if isinstance(e, PumpNamed)]
        again = bench.core.state.alarms.get(KEY, "")
        assert again is not None and again.active and again.message == alarm.message
