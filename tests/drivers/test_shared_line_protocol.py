"""Several drivers on one shared line, byte for byte (``drivers.lines`` over the scripted
transport): every command carries its pump's address, the exchanges of different pumps
follow one another on the one port, and a reply from the wrong pump is an error."""

from __future__ import annotations

import pytest

from drivers.errors import DeviceTimeout
from drivers.lines import LineError, LineSpec, SharedLine, open_line, open_lines
from drivers.loading import DriverOptionError
from drivers.pumps.base import PumpChecksumError
from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.ne1000 import Ne1000Driver
from drivers.pumps.registry import load_driver
from drivers.testing import ScriptedTransport, Step
from firmware_bridge.ne1000.codec import encode_safe_packet

SERIAL = LineSpec(kind="serial", port="scripted", baud=19200)


def b(text: str) -> bytes:
    return b"\x02" + text.encode() + b"\x03"


def s(text: str) -> bytes:
    return encode_safe_packet(text.encode())


def line_with(steps: list[Step], spec: LineSpec = SERIAL) -> tuple[SharedLine, ScriptedTransport]:
    transport = ScriptedTransport(steps)
    return open_line(spec, transport=transport), transport


# --------------------------------------------------------------------- the line spec
def test_a_line_spec_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="port"):
        LineSpec(kind="tcp", port="no-port-number")
    with pytest.raises(ValueError, match="baud"):
        LineSpec.model_validate({"kind": "serial", "port": "/dev/x", "baud": 0})
    with pytest.raises(ValueError, match="speed"):
        LineSpec.model_validate({"kind": "serial", "port": "/dev/x", "speed": 9600})
    tcp = LineSpec(kind="tcp", port="127.0.0.1:4001")
    assert tcp.host_port == ("127.0.0.1", 4001)
    assert tcp.url == "socket://127.0.0.1:4001"
    lines = open_lines({"bus1": {"kind": "serial", "port": "/dev/ttyUSB0"}})
    assert lines["bus1"].spec.baud == 19200


def test_a_driver_takes_a_port_or_a_line_not_both() -> None:
    line = open_line(SERIAL, transport=ScriptedTransport([]))
    with pytest.raises(ValueError, match="port= or line="):
        Ne1000Driver(port="/dev/x", line=line)
    with pytest.raises(ValueError, match="baud belongs to the line"):
        Ne1000Driver(line=line, baud=9600)
    with pytest.raises(ValueError, match=r"port= .* or line="):
        Ne1000Driver()
    fast = open_line(
        LineSpec(kind="serial", port="x", baud=115200), transport=ScriptedTransport([])
    )
    with pytest.raises(ValueError, match="baud must be one of"):
        Ne1000Driver(line=fast, address=1)  # the line's baud is checked for the family


def test_one_protocol_and_one_driver_per_address_on_a_line() -> None:
    line = open_line(SERIAL, transport=ScriptedTransport([]))
    Ne1000Driver(line=line, address=1)
    with pytest.raises(LineError, match="address 1 is already used"):
        Ne1000Driver(line=line, address=1)
    with pytest.raises(LineError, match="carries ne1000 pumps"):
        HarvardDriver(line=line, address=2)


def test_the_registry_accepts_a_line_option() -> None:
    line = open_line(SERIAL, transport=ScriptedTransport([]))
    driver = load_driver("ne1000", line=line, address=3)
    assert isinstance(driver, Ne1000Driver) and driver.address == 3
    with pytest.raises(DriverOptionError, match="lines"):
        load_driver("ne1000", lines=line, address=3)


# --------------------------------------------------------------------- NE-1000 chain
def test_two_ne1000_on_one_line_each_exchange_carries_its_address() -> None:
    line, transport = line_with(
        [
            (b"1\r", b("01S")),
            (b"1VER\r", b("01SNE1000V3.928")),
            (b"1RAT\r", b("01S0.000MH")),
            (b"2\r", b("02S")),
            (b"2VER\r", b("02SNE1000V3.928")),
            (b"2RAT\r", b("02S0.000MH")),
            (b"1RAT5.000MH\r", b("01S")),
            (b"1RAT\r", b("01S5.000MH")),
            (b"2RAT7.500MH\r", b("02S")),
            (b"2RAT\r", b("02S7.500MH")),
        ]
    )
    one = Ne1000Driver(line=line, address=1, reply_timeout_s=0.2)
    two = Ne1000Driver(line=line, address=2, reply_timeout_s=0.2)
    one.connect()
    two.connect()
    assert transport.opens == 1  # one port for both
    assert one.set_rate(5.0) == 5.0
    assert two.set_rate(7.5) == 7.5
    one.close()
    assert transport.is_open  # the other driver still uses the line
    two.close()
    assert not transport.is_open
    transport.assert_finished()


def test_ne1000_reply_from_the_wrong_pump_is_refused_and_the_query_retried_once() -> None:
    line, transport = line_with(
        [
            (b"1\r", b("01S")),
            (b"1VER\r", b("01SNE1000V3.928")),
            (b"1RAT\r", b("01S0.000MH")),
            (b"1RAT\r", b("02S9.999MH")),  # pump 2 answered (a mis-set address)
            (b"1RAT\r", b("02S9.999MH")),
        ]
    )
    one = Ne1000Driver(line=line, address=1, reply_timeout_s=0.2)
    one.connect()
    with pytest.raises(PumpChecksumError, match="address 2, expected 1"):
        one.read_status()
    transport.assert_finished()


def test_another_pumps_alarm_packet_crossing_our_reply_goes_to_its_driver() -> None:
    line, transport = line_with(
        [
            (s("1"), s("01S")),  # both already in safe mode (a restart)
            (s("1VER"), s("01SNE1000V3.928")),
            (s("1SAF"), s("01S30")),
            (s("1RAT"), s("01S0.000MH")),
            (s("2"), s("02S")),
            (s("2VER"), s("02SNE1000V3.928")),
            (s("2SAF"), s("02S30")),
            (s("2RAT"), s("02S0.000MH")),
            # pump 2's auto-alarm arrives just before pump 1's reply
            (s("1RAT"), s("02A?S") + s("01S0.000MH")),
            (s("1DIS"), s("01SI0.000W0.000ML")),
            # pump 2's next exchange: its driver learnt of the alarm from the line
            (s("2RAT"), s("02A?S")),
            (s("2RAT"), s("02S0.000MH")),
            (s("2DIS"), s("02SI0.000W0.000ML")),
        ]
    )
    one = Ne1000Driver(line=line, address=1, safe_mode_timeout_s=30, reply_timeout_s=0.2)
    two = Ne1000Driver(line=line, address=2, safe_mode_timeout_s=30, reply_timeout_s=0.2)
    one.connect()
    two.connect()
    assert one.read_status().alarms == frozenset()
    status = two.read_status()
    assert {a.value for a in status.alarms} == {"stall"}
    transport.assert_finished()


# --------------------------------------------------------------------- Harvard chain
def test_two_harvard_pumps_on_one_chain() -> None:
    spec = LineSpec(kind="serial", port="scripted", baud=115200)
    line, transport = line_with(
        [
            (b"1:ver\r", b"\n01:11 ELITE I/W Single 3.0.4\r\n01:"),
            (b"2:ver\r", b"\n02:11 ELITE I/W Single 3.0.4\r\n02:"),
            (b"1:irate 5 ml/hr\r", b"\n01:"),
            (b"1:irate\r", b"\n01:5 ml/hr\r\n01:"),
            (b"2:irate 2.5 ml/hr\r", b"\n02:"),
            (b"2:irate\r", b"\n02:2.5 ml/hr\r\n02:"),
            (b"2:irate 2.5 ml/hr\r", b"\n02:"),
            (b"2:irate\r", b"\n01:5 ml/hr\r\n01:"),  # the wrong pump answers
            (b"2:irate\r", b"\n01:5 ml/hr\r\n01:"),
        ],
        spec,
    )
    one = HarvardDriver(line=line, address=1, reply_timeout_s=0.2)
    two = HarvardDriver(line=line, address=2, reply_timeout_s=0.2)
    one.connect()
    two.connect()
    assert one.set_rate(5.0) == 5.0
    assert two.set_rate(2.5) == 2.5
    with pytest.raises(PumpChecksumError, match="reply from pump 1, expected 2"):
        two.set_rate(2.5)  # the set's own reply is fine; its read-back is not
    transport.assert_finished()


# --------------------------------------------------------------------- SAF framing
#: a driver set for safe mode probes it first; a pump in basic mode that ignores packets
#: lets it fall back to basic probes
IGNORED_SAFE_PROBES: list[Step] = [(s("0"), None), (s("0"), None)]


def test_the_reply_to_saf_is_accepted_in_either_framing() -> None:
    """Old rule (the framing the command came in) and the rule of real pumps (the framing
    of the mode it switches to), entering and leaving safe mode."""
    for enter_reply in (b("00S"), s("00S")):
        transport = ScriptedTransport(
            [
                *IGNORED_SAFE_PROBES,
                (b"0\r", b("00S")),
                (b"0VER\r", b("00SNE1000V3.928")),
                (b"0SAF30\r", enter_reply),
                (s("0SAF"), s("00S30")),
                (s("0RAT"), s("00S0.000MH")),
            ]
        )
        driver = Ne1000Driver(
            port="scripted", transport=transport, safe_mode_timeout_s=30, reply_timeout_s=0.2
        )
        driver.connect()
        assert driver.safe_mode
        transport.assert_finished()
    for leave_reply in (s("00S"), b("00S")):
        transport = ScriptedTransport(
            [
                (b"0\r", None),
                (b"0\r", None),
                (s("0"), s("00S")),
                (s("0VER"), s("00SNE1000V3.928")),
                (s("0SAF0"), leave_reply),
                (b"0SAF\r", b("00S0")),
                (b"0RAT\r", b("00S0.000MH")),
            ]
        )
        driver = Ne1000Driver(port="scripted", transport=transport, reply_timeout_s=0.2)
        driver.connect()
        assert not driver.safe_mode
        transport.assert_finished()


def test_a_reply_in_the_wrong_framing_is_an_error_not_a_wait() -> None:
    """Any reply but SAF's must come in the link's framing: a basic reply on a safe link
    would bypass the CRC. It is recognised at once (no DeviceTimeout)."""
    transport = ScriptedTransport(
        [
            *IGNORED_SAFE_PROBES,
            (b"0\r", b("00S")),
            (b"0VER\r", b("00SNE1000V3.928")),
            (b"0SAF30\r", s("00S")),
            (s("0SAF"), s("00S30")),
            (s("0RAT"), s("00S0.000MH")),
            (s("0RAT"), b("00S5.000MH")),
            (s("0RAT"), b("00S5.000MH")),
        ]
    )
    driver = Ne1000Driver(
        port="scripted", transport=transport, safe_mode_timeout_s=30, reply_timeout_s=0.2
    )
    driver.connect()
    with pytest.raises(PumpChecksumError, match="basic framing while the link is in safe mode"):
        driver.read_status()
    transport.assert_finished()


def test_a_silent_pump_on_a_line_times_out_without_touching_the_others() -> None:
    line, transport = line_with(
        [
            (b"1\r", b("01S")),
            (b"1VER\r", b("01SNE1000V3.928")),
            (b"1RAT\r", b("01S0.000MH")),
            (b"5\r", None),
            (b"5\r", None),
            (s("5"), None),  # no safe-mode answer either (the pump is not there)
            (s("5"), None),
        ]
    )
    one = Ne1000Driver(line=line, address=1, reply_timeout_s=0.2)
    five = Ne1000Driver(line=line, address=5, reply_timeout_s=0.2)
    one.connect()
    with pytest.raises(DeviceTimeout, match="no pump answered at address 5"):
        five.connect()
    assert transport.is_open


# --------------------------------------------------------------------- lifetime
def test_an_address_is_free_again_once_its_driver_closed() -> None:
    line = open_line(SERIAL, transport=ScriptedTransport([]))
    first = Ne1000Driver(line=line, address=1)
    first.close()
    second = Ne1000Driver(line=line, address=1)
    assert line.addresses == frozenset({1})
    second.close()
    assert line.protocol is None  # an empty line may carry another family now
    HarvardDriver(line=line, address=1)


def test_a_vanished_port_is_reopened_once_and_every_driver_shakes_hands_again() -> None:
    from drivers.errors import DeviceDisconnected
    from drivers.testing import DISCONNECT

    line, transport = line_with(
        [
            (b"1\r", b("01S")),
            (b"1VER\r", b("01SNE1000V3.928")),
            (b"1RAT\r", b("01S0.000MH")),
            (b"2\r", b("02S")),
            (b"2VER\r", b("02SNE1000V3.928")),
            (b"2RAT\r", b("02S0.000MH")),
            (b"1RAT\r", DISCONNECT),  # the adapter vanishes under pump 1's driver
            # pump 2's driver reopens the port and shakes hands first
            (b"2\r", b("02S")),
            (b"2VER\r", b("02SNE1000V3.928")),
            (b"2RAT\r", b("02S0.000MH")),
            (b"2RAT\r", b("02S0.000MH")),
            (b"2DIS\r", b("02SI0.000W0.000ML")),
            # pump 1's driver sees the port was reopened: its own handshake, once
            (b"1\r", b("01S")),
            (b"1VER\r", b("01SNE1000V3.928")),
            (b"1RAT\r", b("01S0.000MH")),
            (b"1RAT\r", b("01S0.000MH")),
            (b"1DIS\r", b("01SI0.000W0.000ML")),
        ]
    )
    one = Ne1000Driver(line=line, address=1, reply_timeout_s=0.2)
    two = Ne1000Driver(line=line, address=2, reply_timeout_s=0.2)
    one.connect()
    two.connect()
    with pytest.raises(DeviceDisconnected):
        one.read_status()
    assert two.read_status().set_rate_ml_h == 0.0
    assert one.read_status().set_rate_ml_h == 0.0
    assert transport.opens == 2
    transport.assert_finished()
