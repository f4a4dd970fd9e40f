"""Our emulators against public third-party clients written for real pumps, one per
protocol (test dependencies pinned in pyproject's ``test`` extra).

- New Era NE-1000: NESP-Lib 2.0.0 (``nesp_lib``). It sends every ``SAF`` as a safe-mode
  packet whatever the pump's mode and expects the reply to ``SAF0`` in basic framing and
  to ``SAF n`` in safe framing: the interoperability rule of docs/protocols.md. It opens
  its port with no read timeout; the tests give that port one, so a broken emulator
  fails the test instead of hanging it. Its ``Pump`` objects each hold their own lock, so
  two of them on one port are serialised only by the caller (here: one thread).
- Harvard / KD Scientific: python-syringe-pump 0.2.1 (``syringe_pump``, written for the
  Legato 100). It turns polling mode on and reads each reply up to the XON that ends it,
  and it sends no address, so it drives a pump alone on its line (or the chain's pump 0).
  pumpy 1.1.3 speaks the older Pump 11 protocol (``MMD``, ``RAT``) and writes ``str`` to
  the port (Python 2), kdsautolib 0.0.4 never reads a reply, flowchem 1.1.6 pulls a web
  stack with it: none of them is used.
- Modbus: minimalmodbus 2.1.1 for RTU (several device ids on one pty) and pymodbus' own
  client for TCP (several unit ids on one server): both third parties to our driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from firmware_bridge.clock import VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.emulators.bus import PumpBus
from firmware_bridge.emulators.endpoints import PtyEndpoint
from firmware_bridge.faults import WireFaults
from firmware_bridge.harvard.emulator import HarvardPumpSide
from firmware_bridge.modbus.emulator import BackgroundEmulator
from firmware_bridge.ne1000.emulator import Ne1000Framer, Ne1000PumpSide
from firmware_bridge.pump_model import SimulatedPump

pytestmark = pytest.mark.timeout(60)

nesp_lib = pytest.importorskip("nesp_lib")
minimalmodbus = pytest.importorskip("minimalmodbus")
syringe_pump = pytest.importorskip("syringe_pump")
aioserial = pytest.importorskip("aioserial")
quantiphy = pytest.importorskip("quantiphy")

#: a third-party client's read that waits longer than this is a failure, not a hang
CLIENT_READ_TIMEOUT_S = 2.0


def bounded_nesp_port(path: str) -> Any:
    port = nesp_lib.Port(path, baud_rate=19200)
    port._Port__serial.timeout = CLIENT_READ_TIMEOUT_S  # NESP-Lib sets none
    return port


@contextlib.contextmanager
def ne1000_line(
    tmp_path: Path, addresses: tuple[int, ...]
) -> Iterator[tuple[VirtualClock, dict[int, SimulatedPump], str]]:
    clock = VirtualClock()
    pumps = {a: SimulatedPump(clock) for a in addresses}
    sides = [Ne1000PumpSide(p, address=a) for a, p in pumps.items()]
    handler = sides[0] if len(sides) == 1 else PumpBus(sides, Ne1000Framer())
    endpoint = PtyEndpoint(link=str(tmp_path / "ne1000.tty"))
    with BackgroundLine(handler, WireFaults(), endpoint=endpoint) as emulator:
        yield clock, pumps, emulator.where


# --------------------------------------------------------------------- NE-1000: NESP-Lib
def test_nesp_lib_in_basic_mode_sets_runs_and_reads(tmp_path: Path) -> None:
    with ne1000_line(tmp_path, (0,)) as (clock, pumps, where):
        port = bounded_nesp_port(where)
        try:
            pump = nesp_lib.Pump(port)  # sends SAF0 as a safe packet to a basic-mode pump
            assert pump.model_number == 1000
            assert pump.firmware_version == (3, 928)
            pump.syringe_diameter_mm = 26.59
            assert pump.syringe_diameter_mm == pytest.approx(26.59)
            pump.pumping_direction = nesp_lib.PumpingDirection.INFUSE
            pump.pumping_rate_ml_per_min = 0.1  # 6 mL/h
            assert pump.pumping_rate_ml_per_min == pytest.approx(0.1)
            assert pumps[0].snapshot().set_rate_ml_h == pytest.approx(6.0)
            pump.run(wait_while_running=False)
            assert pump.status is nesp_lib.Status.INFUSING
            clock.advance(600.0)
            assert pump.volume_infused_ml == pytest.approx(1.0, rel=1e-3)
            pump.stop(wait_while_running=False)
            assert not pumps[0].snapshot().running
        finally:
            port.close()


def test_nesp_lib_enters_and_leaves_safe_mode(tmp_path: Path) -> None:
    """``SAF 20`` as a packet to a basic-mode pump: the reply must come as a packet; later
    ``SAF0`` as a packet: the reply must come in basic framing."""
    with ne1000_line(tmp_path, (0,)) as (_clock, pumps, where):
        port = bounded_nesp_port(where)
        try:
            pump = nesp_lib.Pump(port, safe_mode_timeout_s=20)
            assert pump.safe_mode_timeout_s == 20
            pump.pumping_rate_ml_per_min = 0.05
            assert pump.pumping_rate_ml_per_min == pytest.approx(0.05)
            assert pumps[0].snapshot().set_rate_ml_h == pytest.approx(3.0)
            pump.safe_mode_timeout_s = 0  # back to basic: SAF0 as a packet
            assert pump.safe_mode_timeout_s == 0
            assert pump.status is nesp_lib.Status.STOPPED
        finally:
            port.close()


def test_nesp_lib_two_pumps_at_two_addresses_on_one_line(tmp_path: Path) -> None:
    with ne1000_line(tmp_path, (1, 2)) as (_clock, pumps, where):
        port = bounded_nesp_port(where)
        try:
            one = nesp_lib.Pump(port, address=1)
            two = nesp_lib.Pump(port, address=2)
            one.pumping_rate_ml_per_min = 0.1
            two.pumping_rate_ml_per_min = 0.2
            assert one.pumping_rate_ml_per_min == pytest.approx(0.1)
            assert two.pumping_rate_ml_per_min == pytest.approx(0.2)
            one.run(wait_while_running=False)
            assert pumps[1].snapshot().running and not pumps[2].snapshot().running
            assert two.status is nesp_lib.Status.STOPPED
        finally:
            port.close()


def test_nesp_lib_reconnects_by_the_link_name_after_an_unplug(tmp_path: Path) -> None:
    """A simulated unplug as a client written for real pumps meets it: the port's name is
    gone while the line is down (as udev removes an unplugged adapter's), so opening it
    fails instead of reaching whatever pty got the freed number; once back, the same name
    reaches the same pump, its state intact."""
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    wire = WireFaults()
    link = tmp_path / "ne1000.tty"
    endpoint = PtyEndpoint(link=str(link))
    with BackgroundLine(
        Ne1000PumpSide(pump, address=0), wire, endpoint=endpoint, reopen_after_s=0.5
    ):
        port = bounded_nesp_port(str(link))
        try:
            nesp_lib.Pump(port).pumping_rate_ml_per_min = 0.1
        finally:
            port.close()
        wire.request_disconnect()
        # the name itself, not only what it points at (a freed pty number is reused)
        assert _within(lambda: not os.path.lexists(link), 2.0), "the name outlived the unplug"
        with pytest.raises(nesp_lib.Port.Unavailability):  # its word for "no such port"
            nesp_lib.Port(str(link), baud_rate=19200)
        assert _within(link.exists, 2.0), "the name did not come back"
        port = bounded_nesp_port(str(link))
        try:
            assert nesp_lib.Pump(port).pumping_rate_ml_per_min == pytest.approx(0.1)
        finally:
            port.close()
    assert pump.snapshot().set_rate_ml_h == pytest.approx(6.0)


def _within(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` (10 ms) for at most ``timeout_s`` of real time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --------------------------------------------------------------------- Harvard
def test_python_syringe_pump_sets_and_reads_a_rate_in_polling_mode(tmp_path: Path) -> None:
    from syringe_pump.rate import Rate
    from syringe_pump.serial_interface import PumpSerial

    clock = VirtualClock()
    pump = SimulatedPump(clock)
    side = HarvardPumpSide(pump)
    endpoint = PtyEndpoint(link=str(tmp_path / "harvard.tty"))

    async def session(where: str) -> tuple[float, float]:
        port = aioserial.AioSerial(port=where, baudrate=115200, timeout=CLIENT_READ_TIMEOUT_S)
        try:
            client = PumpSerial(port)
            await client._initialise()  # poll on, nvram none
            rate = Rate(pump=client, letter="i")
            await rate.set(quantiphy.Quantity("5 ml/min"))
            got = await rate.get()
            _low, high = await rate.get_limits()
            return float(got), float(high)
        finally:
            port.close()

    with BackgroundLine(side, WireFaults(), endpoint=endpoint) as emulator:
        got, high = asyncio.run(session(emulator.where))
    assert got == pytest.approx(0.005)  # l/min
    assert pump.snapshot().set_rate_ml_h == pytest.approx(300.0)
    assert high * 60_000 == pytest.approx(pump.syringe.max_rate_ml_h, rel=1e-3)
    assert side.poll_mode


# --------------------------------------------------------------------- Modbus
def test_minimalmodbus_on_one_rtu_line_with_three_device_ids() -> None:
    """The example syringe map: rate set-point holding 0-1 (uint32, 0.001 mL/h), run coil 0."""
    clock = VirtualClock()
    pumps = {5: SimulatedPump(clock), 6: SimulatedPump(clock), 7: SimulatedPump(clock)}
    with BackgroundEmulator(pumps, WireFaults(), use_pty=True) as emu:
        port = serial.Serial(emu.where, 19200, timeout=0.5, write_timeout=1.0)
        try:
            instruments = {u: minimalmodbus.Instrument(port, u) for u in pumps}
            for unit, instrument in instruments.items():
                instrument.write_long(0, unit * 1000)  # unit mL/h
            for unit, instrument in instruments.items():
                assert instrument.read_long(0) == unit * 1000
                assert pumps[unit].snapshot().set_rate_ml_h == pytest.approx(unit)
            instruments[6].write_bit(0, 1, functioncode=5)
            assert instruments[6].read_bit(0, functioncode=1) == 1
            assert [p.snapshot().running for p in pumps.values()] == [False, True, False]
            with pytest.raises(minimalmodbus.NoResponseError):
                minimalmodbus.Instrument(port, 9).read_long(0)  # nobody at 9: silence
        finally:
            port.close()


def test_pymodbus_client_on_one_tcp_server_with_two_unit_ids() -> None:
    from pymodbus.client import ModbusTcpClient

    clock = VirtualClock()
    pumps = {1: SimulatedPump(clock), 2: SimulatedPump(clock)}
    with BackgroundEmulator(pumps, WireFaults(), tcp=("127.0.0.1", 0)) as emu:
        host, port = emu.host_port
        client = ModbusTcpClient(host, port=port, timeout=2)
        assert client.connect()  # type: ignore[no-untyped-call]
        try:
            for unit in pumps:
                reply = client.write_registers(0, [0, unit * 2500], device_id=unit)
                assert not reply.isError()
            for unit, pump in pumps.items():
                reply = client.read_holding_registers(0, count=2, device_id=unit)
                assert reply.registers == [0, unit * 2500]
                assert pump.snapshot().set_rate_ml_h == pytest.approx(unit * 2.5)
            missing = client.read_holding_registers(0, count=2, device_id=3)
            assert missing.isError() and missing.exception_code == 0x0B
        finally:
            client.close()  # type: ignore[no-untyped-call]


def test_pymodbus_client_primes_the_peristaltic_drive() -> None:
    """The example peristaltic map's prime from pymodbus: the float32 volume (mL) in
    holding registers 1221-1222, coil 1 set, status register 1200 bit 2 (priming) on while
    the drive runs at its top rate, off once the volume is out."""
    from pymodbus.client import ModbusTcpClient

    from firmware_bridge.syringes import BAGS

    clock = VirtualClock()
    bag = BAGS["bag-1000ml"]
    pump = SimulatedPump(clock, bag)
    with BackgroundEmulator(
        pump, WireFaults(), map_path="peristaltic", tcp=("127.0.0.1", 0), device_id=20
    ) as emu:
        host, port = emu.host_port
        client = ModbusTcpClient(host, port=port, timeout=2)
        assert client.connect()  # type: ignore[no-untyped-call]
        try:
            assert not client.write_registers(1221, [0x4040, 0x0000], device_id=20).isError()  # 3.0
            assert client.read_holding_registers(1221, count=2, device_id=20).registers == [
                0x4040,
                0,
            ]
            assert not client.write_coil(1, True, device_id=20).isError()
            state = client.read_holding_registers(1200, count=1, device_id=20).registers[0]
            assert state & 0b101 == 0b101  # running and priming
            assert pump.snapshot().priming
            clock.advance(3600.0 * 3.0 / bag.max_rate_ml_h + 1.0)
            state = client.read_holding_registers(1200, count=1, device_id=20).registers[0]
            assert state & 0b101 == 0
            # the volume stays written: the next prime needs only the coil; stop ends it
            assert not client.write_coil(1, True, device_id=20).isError()
            assert pump.snapshot().priming
            assert not client.write_coil(0, False, device_id=20).isError()
            assert not pump.snapshot().running
            # a volume beyond the bag is refused (illegal data value)
            too_much = client.write_registers(1221, [0x4580, 0x0000], device_id=20)  # 4096 mL
            assert too_much.isError() and too_much.exception_code == 0x03
        finally:
            client.close()  # type: ignore[no-untyped-call]


def test_pymodbus_client_reads_the_device_identification() -> None:
    """pymodbus' own decoder of Read Device Identification (43/14) against the reply our
    codec builds: on TCP and on an RTU pty (its framer sizes the reply from the object
    lengths), the basic stream, one object by individual access, and a device without
    identification (the peristaltic example: exception 01)."""
    from pymodbus import FramerType
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient
    from pymodbus.pdu.mei_message import ReadDeviceInformationResponse

    basic = {0: b"pumpctl", 1: b"EXAMPLE-MODBUS-SYRINGE", 2: b"1.00"}
    clock = VirtualClock()
    with BackgroundEmulator(SimulatedPump(clock), WireFaults(), tcp=("127.0.0.1", 0)) as emu:
        host, port = emu.host_port
        client = ModbusTcpClient(host, port=port, timeout=2)
        assert client.connect()  # type: ignore[no-untyped-call]
        try:
            reply = client.read_device_information(device_id=1)
            assert isinstance(reply, ReadDeviceInformationResponse)
            assert reply.information == basic
            assert (reply.conformity, reply.more_follows, reply.number_of_objects) == (0x81, 0, 3)
            one = client.read_device_information(read_code=4, object_id=1, device_id=1)
            assert isinstance(one, ReadDeviceInformationResponse)
            assert one.information == {1: basic[1]}
        finally:
            client.close()  # type: ignore[no-untyped-call]
    with BackgroundEmulator(SimulatedPump(clock), WireFaults(), use_pty=True) as emu:
        serial_client = ModbusSerialClient(
            emu.where, framer=FramerType.RTU, baudrate=19200, parity="N", timeout=2, retries=0
        )
        assert serial_client.connect()
        try:
            over_rtu = serial_client.read_device_information(device_id=1)
            assert isinstance(over_rtu, ReadDeviceInformationResponse)
            assert over_rtu.information == basic
        finally:
            serial_client.close()  # type: ignore[no-untyped-call]
    with BackgroundEmulator(
        SimulatedPump(clock), WireFaults(), map_path="peristaltic", tcp=("127.0.0.1", 0)
    ) as emu:
        host, port = emu.host_port
        client = ModbusTcpClient(host, port=port, timeout=2)
        assert client.connect()  # type: ignore[no-untyped-call]
        try:
            refused = client.read_device_information(device_id=1)
            assert refused.isError() and refused.exception_code == 0x01
        finally:
            client.close()  # type: ignore[no-untyped-call]


def test_pymodbus_client_follows_more_follows_from_our_emulator(tmp_path: Path) -> None:
    """Objects at the limits: an empty ProductCode and a 244-byte VendorName, the longest
    one reply holds, so the stream needs two replies; pymodbus sees "more follows" and the
    next object id, and asks from it."""
    from pymodbus.client import ModbusTcpClient
    from pymodbus.pdu.mei_message import ReadDeviceInformationResponse

    from firmware_bridge.modbus.register_map import default_map_path

    text = default_map_path("syringe").read_text()
    text = text.replace('vendor_name = "pumpctl"', f'vendor_name = "{"V" * 244}"')
    text = text.replace('product_code = "EXAMPLE-MODBUS-SYRINGE"', 'product_code = ""')
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with BackgroundEmulator(
        SimulatedPump(VirtualClock()), WireFaults(), map_path=str(path), tcp=("127.0.0.1", 0)
    ) as emu:
        host, port = emu.host_port
        client = ModbusTcpClient(host, port=port, timeout=2)
        assert client.connect()  # type: ignore[no-untyped-call]
        try:
            first = client.read_device_information(device_id=1)
            assert isinstance(first, ReadDeviceInformationResponse)
            assert first.information == {0: b"V" * 244}
            assert (first.more_follows, first.next_object_id) == (0xFF, 1)
            rest = client.read_device_information(object_id=first.next_object_id, device_id=1)
            assert isinstance(rest, ReadDeviceInformationResponse)
            assert rest.information == {1: b"", 2: b"1.00"}
            assert rest.more_follows == 0
        finally:
            client.close()  # type: ignore[no-untyped-call]
