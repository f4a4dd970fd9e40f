"""NE-1000 driver against recorded request/reply bytes (pymeasure ``expected_protocol``
style): every byte the driver sends is checked, every reply byte must be consumed, and a
request the script does not expect (a blind retry, say) fails the test at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.pumps.base import (
    AnotherPumpAnswers,
    PumpAlarmError,
    PumpAlarmKind,
    PumpChecksumError,
    PumpRejected,
    RateRange,
    StopConfirmation,
)
from drivers.pumps.ne1000 import Ne1000Driver
from drivers.testing import DISCONNECT, ScriptedTransport, Step, expected_protocol
from firmware_bridge.ne1000.codec import encode_safe_packet
from firmware_bridge.syringes import syringe_by_name


def b(text: str) -> bytes:
    """A basic-mode reply frame."""
    return b"\x02" + text.encode() + b"\x03"


def s(text: str) -> bytes:
    """A safe-mode packet."""
    return encode_safe_packet(text.encode())


def corrupt_crc(packet: bytes) -> bytes:
    return packet[:-2] + bytes([packet[-2] ^ 0xFF]) + packet[-1:]


VER_BASIC: Step = (b"0VER\r", b("00SNE1000V3.928"))
VER_SAFE: Step = (s("0VER"), s("00SNE1000V3.928"))
CONNECT_BASIC: list[Step] = [(b"0\r", b("00S")), VER_BASIC, (b"0RAT\r", b("00S0.000MH"))]
#: a driver set for safe mode probes it first; a fresh pump, still in basic mode, executes
#: a valid packet and answers it as one (the emulator's reading of a silent manual)
CONNECT_SAFE: list[Step] = [
    (s("0"), s("00S")),
    VER_SAFE,  # the pump names itself before anything is set
    (s("0SAF"), s("00S0")),  # basic mode, in fact
    (s("0SAF30"), s("00S")),  # answered in the framing of the mode it switches to
    (s("0SAF"), s("00S30")),
    (s("0RAT"), s("00S0.000MH")),
]


def basic(transport: ScriptedTransport) -> Ne1000Driver:
    return Ne1000Driver(port="scripted", transport=transport, reply_timeout_s=0.2)


def safe(transport: ScriptedTransport) -> Ne1000Driver:
    return Ne1000Driver(
        port="scripted", transport=transport, safe_mode_timeout_s=30, reply_timeout_s=0.2
    )


# --------------------------------------------------------------------- connecting
def test_connect_in_basic_mode() -> None:
    with expected_protocol(basic, CONNECT_BASIC, connect=True) as driver:
        assert not driver.safe_mode


def test_a_pump_that_ignores_its_first_command_gets_a_throw_away_query() -> None:
    steps: list[Step] = [
        (b"0\r", None),
        (b"0\r", b("00S")),
        VER_BASIC,
        (b"0RAT\r", b("00S5.000MH")),
    ]
    with expected_protocol(basic, steps, connect=True):
        pass


def test_connect_enters_safe_mode_and_reads_the_timeout_back() -> None:
    with expected_protocol(safe, CONNECT_SAFE, connect=True) as driver:
        assert driver.safe_mode


def test_a_restart_over_a_pump_in_safe_mode_finds_it_at_the_first_probe() -> None:
    """A safety process restarting over a running pump spends none of the pump's
    safe-mode watchdog on basic probes, which a pump in safe mode drops."""
    steps: list[Step] = [
        (s("0"), s("00S")),
        VER_SAFE,
        (s("0SAF"), s("00S30")),  # the timeout we want: nothing to set
        (s("0RAT"), s("00S1.000MH")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        assert driver.safe_mode


@pytest.mark.parametrize(
    "answer",
    [
        None,  # a pump that ignores packets while in basic mode
        b("00S"),  # a reply outside the link's framing: refused, never taken for safe mode
    ],
    ids=["unanswered", "basic-framed"],
)
def test_connect_falls_back_to_basic_probes_when_no_packet_is_taken(answer: bytes | None) -> None:
    steps: list[Step] = [
        (s("0"), answer),
        (s("0"), answer),
        (b"0\r", b("00S")),
        VER_BASIC,
        (b"0SAF30\r", b("00S")),
        (s("0SAF"), s("00S30")),
        (s("0RAT"), s("00S0.000MH")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        assert driver.safe_mode


def test_connect_finds_a_pump_left_in_safe_mode_after_a_power_cycle() -> None:
    steps: list[Step] = [
        (s("0"), s("00A?R")),  # answered: it is in safe mode, and was power cycled
        VER_SAFE,
        (s("0SAF"), s("00S30")),  # already the timeout we want: nothing to set
        (s("0RAT"), s("00S1.000MH")),
        (s("0RAT"), s("00S1.000MH")),
        (s("0DIS"), s("00SI0.000W0.000ML")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        assert driver.read_status().alarms == {PumpAlarmKind.RESET}


def test_connect_returns_a_safe_mode_pump_to_basic_mode() -> None:
    steps: list[Step] = [
        (b"0\r", None),
        (b"0\r", None),
        (s("0"), s("00S")),
        VER_SAFE,
        (s("0SAF0"), s("00S")),  # answered in the mode it was sent in
        (b"0SAF\r", b("00S0")),  # read back in basic mode
        (b"0RAT\r", b("00S0.000MH")),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        assert not driver.safe_mode


def test_no_pump_at_all_is_a_timeout_after_four_bounded_tries() -> None:
    steps: list[Step] = [(b"0\r", None), (b"0\r", None), (s("0"), None), (s("0"), None)]
    with (
        expected_protocol(basic, steps) as driver,
        pytest.raises(DeviceTimeout, match="basic or safe"),
    ):
        driver.connect()


def test_address_is_on_every_command_and_checked_on_every_reply() -> None:
    steps: list[Step] = [
        (b"12\r", b("12S")),
        (b"12VER\r", b("12SNE1000V3.928")),
        (b"12RAT\r", b("12S0.000MH")),
        (b"12VER\r", b("03SNE1000V3.928")),  # another pump answered
        (b"12VER\r", b("12SNE1000V3.928")),  # a query may be asked again, once
    ]
    make = lambda t: Ne1000Driver(port="x", address=12, transport=t)  # noqa: E731
    with expected_protocol(make, steps, connect=True) as driver:
        identity = driver.identify()
    assert (identity.model, identity.firmware, identity.address) == ("NE1000", "3.928", 12)


# --------------------------------------------------------------------- syringe
CONFIGURE_50ML: list[Step] = [
    (b"0DIA26.59\r", b("00S")),
    (b"0DIA\r", b("00S26.59")),
    (b"0VOLML\r", b("00S")),
    (b"0VOL0\r", b("00S")),
    (b"0VOL\r", b("00S0.000ML")),
    (b"0DIRINF\r", b("00S")),
    (b"0DIR\r", b("00SINF")),
    (b"0RAT\r", b("00S0.000MH")),
]


def test_configure_syringe_sets_and_reads_back_everything() -> None:
    syringe = syringe_by_name("bd-plastipak-50ml")
    with expected_protocol(basic, CONNECT_BASIC + CONFIGURE_50ML, connect=True) as driver:
        assert driver.configure_syringe(syringe) == RateRange(1.0, syringe.max_rate_ml_h)


def test_a_diameter_read_back_wrong_is_rejected() -> None:
    steps = [*CONNECT_BASIC, (b"0DIA26.59\r", b("00S")), (b"0DIA\r", b("00S26.50"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(PumpRejected) as info:
            driver.configure_syringe(syringe_by_name("bd-plastipak-50ml"))
        assert "26.50" in info.value.reason


# --------------------------------------------------------------------- rates
def test_set_rate_sends_once_and_returns_the_read_back() -> None:
    steps = [*CONNECT_BASIC, (b"0RAT12.34MH\r", b("00S")), (b"0RAT\r", b("00S12.34MH"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        assert driver.quantize_rate(12.3456) == 12.34
        assert driver.set_rate(12.34) == 12.34


def test_send_rate_is_the_set_alone_without_a_read_back() -> None:
    """The safety core's set: its own read-back (RAT and DIS) follows, so no RAT here."""
    steps = [*CONNECT_BASIC, (b"0RAT12.34MH\r", b("00S"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        driver.send_rate(12.34)


def test_a_small_rate_goes_in_microlitres_per_minute() -> None:
    steps = [*CONNECT_BASIC, (b"0RAT3.908UM\r", b("00S")), (b"0RAT\r", b("00S3.908UM"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        q = driver.quantize_rate(0.2345)
        assert q == 0.23448
        assert driver.set_rate(q) == pytest.approx(0.23448, rel=1e-12)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b("00S?OOR"), "out of range (?OOR)"),
        (b("00I?NA"), "not applicable now (?NA)"),
        (b("00S?"), "unknown command (?)"),
    ],
)
def test_a_refused_rate_raises_with_the_pumps_reason_and_no_read_back(
    reply: bytes, reason: str
) -> None:
    steps = [*CONNECT_BASIC, (b"0RAT2999MH\r", reply)]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(PumpRejected) as info:
            driver.set_rate(2999.0)
        assert info.value.reason == reason


def test_a_lost_acknowledgement_is_a_timeout_and_is_not_retried() -> None:
    steps = [*CONNECT_BASIC, (b"0RAT20.00MH\r", None)]
    with expected_protocol(basic, steps, connect=True) as driver, pytest.raises(DeviceTimeout):
        driver.set_rate(20.0)


def test_an_unquantized_rate_is_refused_before_anything_is_sent() -> None:
    with expected_protocol(basic, CONNECT_BASIC, connect=True) as driver:
        with pytest.raises(ValueError, match=r"quantize_rate gives 12\.34 mL/h"):
            driver.set_rate(12.3456)
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="finite number of mL/h above 0"):
                driver.quantize_rate(bad)


def test_units_are_locked_while_the_pump_runs() -> None:
    steps = [*CONNECT_BASIC, (b"0RUN\r", b("00I")), (b"0STP\r", b("00S"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        assert driver.quantize_rate(0.2345) == 0.23448  # stopped: uL/min is allowed
        driver.start()
        assert driver.quantize_rate(0.2345) == 0.234  # running in mL/h: mL/h only
        with pytest.raises(ValueError, match="units allowed now: MH"):
            driver.set_rate(0.23448)
        driver.stop()
        assert driver.quantize_rate(0.2345) == 0.23448


# --------------------------------------------------------------------- run, stop, alarms
def test_start_and_stop_read_the_status_character() -> None:
    steps = [*CONNECT_BASIC, (b"0RUN\r", b("00I")), (b"0STP\r", b("00S")), (b"0RUN\r", b("00S"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        driver.start()
        driver.stop()
        with pytest.raises(PumpRejected, match="status S") as info:
            driver.start()
        assert info.value.reason == "did not start (status S)"


def test_a_stop_answered_with_status_s_is_confirmed_by_its_own_reply() -> None:
    """The reply to STP carries the pump's status: ``S`` (stopped) is the pump's own word
    that it stopped, returned to the caller, with nothing read back (S12: the emergency
    stop stops every pump before it reads any back)."""
    steps = [*CONNECT_BASIC, (b"0RUN\r", b("00I")), (b"0STP\r", b("00S"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        driver.start()
        confirmation = driver.stop()
    assert confirmation == StopConfirmation("00S")


def test_a_stop_answered_in_safe_mode_is_confirmed_by_its_crc_checked_reply() -> None:
    steps = [*CONNECT_SAFE, (s("0RUN"), s("00I")), (s("0STP"), s("00S"))]
    with expected_protocol(safe, steps, connect=True) as driver:
        driver.start()
        assert driver.stop() == StopConfirmation("00S")


@pytest.mark.parametrize("status", ["P", "T", "U"])
def test_a_stop_answered_paused_or_waiting_is_not_a_confirmation(status: str) -> None:
    """Paused (``P``), a pause phase (``T``) or a trigger wait (``U``) is not running now
    but not plainly stopped (a pause phase ends by itself): no confirmation, the caller
    reads the pump back."""
    steps = [*CONNECT_BASIC, (b"0RUN\r", b("00I")), (b"0STP\r", b(f"00{status}"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        driver.start()
        assert driver.stop() is None


def test_a_stop_answered_still_running_raises_and_is_never_a_confirmation() -> None:
    steps = [*CONNECT_BASIC, (b"0RUN\r", b("00I")), (b"0STP\r", b("00I"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        driver.start()
        with pytest.raises(PumpRejected) as info:
            driver.stop()
    assert info.value.reason == "still running (status I)"


def test_a_stop_answered_with_an_alarm_or_not_at_all_is_no_confirmation() -> None:
    steps = [
        *CONNECT_BASIC,
        (b"0STP\r", b("00A?S")),
        (b"0STP\r", None),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(PumpAlarmError):
            driver.stop()
        with pytest.raises(DeviceTimeout):
            driver.stop()  # never repeated by the driver: the caller reconciles (S10)


def test_an_alarm_instead_of_a_set_raises_and_is_reported_by_the_next_status() -> None:
    steps = [
        *CONNECT_BASIC,
        (b"0RAT20.00MH\r", b("00A?S")),
        (b"0RAT\r", b("00S10.00MH")),
        (b"0DIS\r", b("00SI1.000W0.000ML")),
        (b"0RAT\r", b("00S10.00MH")),
        (b"0DIS\r", b("00SI1.000W0.000ML")),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(PumpAlarmError) as info:
            driver.set_rate(20.0)
        assert info.value.alarms == {PumpAlarmKind.STALL}
        status = driver.read_status()
        assert status.alarms == {PumpAlarmKind.STALL}
        assert (status.running, status.set_rate_ml_h, status.infused_ml) == (False, 10.0, 1.0)
        assert driver.read_status().alarms == frozenset()  # reported once


def test_read_status_asks_again_after_an_alarm_reply() -> None:
    steps = [
        *CONNECT_BASIC,
        (b"0RAT\r", b("00A?R")),  # the pump was power cycled: the query was not answered
        (b"0RAT\r", b("00S10.00MH")),
        (b"0DIS\r", b("00SI1.234W0.000ML")),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        status = driver.read_status()
    assert status.alarms == {PumpAlarmKind.RESET}
    assert status.infused_ml == 1.234
    assert status.raw == "00S10.00MH 00SI1.234W0.000ML"


def test_a_query_is_retried_once_only() -> None:
    steps = [*CONNECT_BASIC, (b"0VER\r", None), (b"0VER\r", b("00SNE1000V3.928"))]
    with expected_protocol(basic, steps, connect=True) as driver:
        assert driver.identify().firmware == "3.928"
    steps = [*CONNECT_BASIC, (b"0VER\r", None), (b"0VER\r", None)]
    with expected_protocol(basic, steps, connect=True) as driver, pytest.raises(DeviceTimeout):
        driver.identify()


# --------------------------------------------------------------------- safe mode
def test_a_bad_crc_on_a_set_is_a_checksum_error_not_retried() -> None:
    steps = [*CONNECT_SAFE, (s("0RAT12.34MH"), corrupt_crc(s("00S")))]
    with expected_protocol(safe, steps, connect=True) as driver, pytest.raises(PumpChecksumError):
        driver.set_rate(12.34)


def test_a_bad_crc_or_com_on_a_query_is_retried() -> None:
    steps = [
        *CONNECT_SAFE,
        (s("0VER"), corrupt_crc(s("00SNE1000V3.928"))),
        (s("0VER"), s("00S?COM")),  # our packet arrived damaged: asked again... once
    ]
    with expected_protocol(safe, steps, connect=True) as driver, pytest.raises(PumpChecksumError):
        driver.identify()
    steps = [*CONNECT_SAFE, (s("0VER"), s("00S?COM")), (s("0VER"), s("00SNE1000V3.928"))]
    with expected_protocol(safe, steps, connect=True) as driver:
        assert driver.identify().model == "NE1000"


def test_com_on_a_set_means_it_was_not_executed_and_is_reported_as_checksum() -> None:
    steps = [*CONNECT_SAFE, (s("0RAT12.34MH"), s("00S?COM"))]
    with (
        expected_protocol(safe, steps, connect=True) as driver,
        pytest.raises(PumpChecksumError, match=r"\?COM"),
    ):
        driver.set_rate(12.34)


def test_an_auto_alarm_crossing_a_request_is_kept_and_the_real_reply_used() -> None:
    steps = [
        *CONNECT_SAFE,
        (s("0RAT12.34MH"), s("00A?T") + s("00S")),  # auto-alarm first, then the reply
        (s("0RAT"), s("00S12.34MH")),
        (s("0RAT"), s("00S12.34MH")),
        (s("0DIS"), s("00SI0.000W0.000ML")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        assert driver.set_rate(12.34) == 12.34
        assert driver.read_status().alarms == {PumpAlarmKind.COMMS_TIMEOUT}


def test_unsolicited_alarm_packets_are_read_before_the_next_request() -> None:
    steps = [
        *CONNECT_SAFE,
        (s("0"), s("00I") + s("00A?S")),  # the pump stalled right after answering
        (s("0RAT"), s("00S12.34MH")),
        (s("0DIS"), s("00SI1.000W0.000ML")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        driver.keep_alive()
        assert driver.read_status().alarms == {PumpAlarmKind.STALL}


def test_an_announced_alarm_answered_by_the_pump_costs_no_wait_for_a_second_packet() -> None:
    """The pump sends one auto-alarm packet per new alarm; the alarm reply to the next
    request is its answer. Waiting for a "real" reply after it would time out and leave
    the line dirty: the next exchange would first sit out a whole reply timeout."""
    steps = [
        *CONNECT_SAFE,
        (s("0"), s("00I") + s("00A?S")),  # the pump stalled right after answering
        (s("0RAT"), s("00A?S")),  # answered with the alarm, which acknowledges it
        (s("0RAT"), s("00S12.34MH")),
        (s("0DIS"), s("00SI1.000W0.000ML")),
    ]
    used: list[ScriptedTransport] = []

    def make(transport: ScriptedTransport) -> Ne1000Driver:
        used.append(transport)
        return safe(transport)

    with expected_protocol(make, steps, connect=True) as driver:
        driver.keep_alive()
        status = driver.read_status()
    assert status.alarms == {PumpAlarmKind.STALL} and not status.running
    assert used[0].unprompted_reads == 0


def test_keep_alive_is_one_status_query_and_surfaces_alarms() -> None:
    steps = [*CONNECT_SAFE, (s("0"), s("00I")), (s("0"), s("00A?T")), (s("0"), None)]
    with expected_protocol(safe, steps, connect=True) as driver:
        driver.keep_alive()
        with pytest.raises(PumpAlarmError) as info:
            driver.keep_alive()
        assert info.value.alarms == {PumpAlarmKind.COMMS_TIMEOUT}
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()  # not retried: the caller's next call is the retry


# --------------------------------------------------------------------- the port
def test_a_vanished_port_is_reported_then_reopened_once_with_a_new_handshake() -> None:
    steps = [
        *CONNECT_BASIC,
        (b"0VER\r", DISCONNECT),
        *CONNECT_BASIC,  # the next call reopens the port and talks to the pump afresh
        (b"0VER\r", b("00SNE1000V3.928")),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.identify()
        assert driver.identify().model == "NE1000"


def test_after_a_reconnect_another_pump_on_the_port_is_refused_until_ours_is_back() -> None:
    """A port's name can reach another adapter after an unplug (docs/protocols.md): the
    pump answering there names itself otherwise, so nothing is set on it (no ``SAF``, no
    rate), nothing it says is taken, each later call asks again, and the channel's own
    pump is used once it is back."""
    other = (b"0VER\r", b("00SNE500V2.100"))
    steps = [
        *CONNECT_BASIC,
        (b"0\r", DISCONNECT),
        (b"0\r", b("00S")),  # the reopened port: a pump answers...
        other,  # ...and it is another model
        (b"0\r", b("00S")),  # the next call asks again, and sends nothing else
        other,
        *CONNECT_BASIC,  # ours is back: the handshake goes on
        (b"0\r", b("00S")),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"'NE500V2\.100', not 'NE1000V3\.928'"):
                driver.keep_alive()
        driver.keep_alive()


def test_a_handshake_cut_short_after_a_reconnect_is_done_again_before_anything_else() -> None:
    """The pump on the reopened port answered the probe but not its name: nothing says it
    is the channel's pump, so the next call shakes hands again (a rate is never sent to a
    pump that has not named itself)."""
    steps = [
        *CONNECT_BASIC,
        (b"0\r", DISCONNECT),
        (b"0\r", b("00S")),  # the reopened port: something answers the probe...
        (b"0VER\r", None),  # ...but not the name question, asked twice
        (b"0VER\r", None),
        *CONNECT_BASIC,  # the next call: a whole handshake, not the rate
        (b"0RAT5.000MH\r", b("00S")),
        (b"0RAT\r", b("00S5.000MH")),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()
        assert driver.set_rate(5.0) == 5.0


def test_a_foreign_pump_in_safe_mode_gets_no_safe_mode_setting() -> None:
    """The name is asked before the link is brought to the configured mode: another pump
    found after a reconnect keeps its own safe-mode timeout."""
    steps = [
        *CONNECT_SAFE,
        (s("0"), DISCONNECT),
        (s("0"), s("00S")),
        (s("0VER"), s("00SNE4000V3.928")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(AnotherPumpAnswers, match="NE4000"):
            driver.keep_alive()


def recorded(name: str | None) -> Callable[[ScriptedTransport], Ne1000Driver]:
    """A basic-mode driver that expects ``name`` before its first connection, as the safety
    process presets the name its journal holds for the channel (``PumpName.expect``)."""

    def make(transport: ScriptedTransport) -> Ne1000Driver:
        driver = basic(transport)
        assert driver.pump_name is not None
        driver.pump_name.expect(name, "accept it with newpump A")
        return driver

    return make


def test_a_name_recorded_before_a_restart_refuses_another_pump_at_the_first_connection() -> None:
    """A fresh driver (a restarted safety process) whose port now reaches another pump:
    refused as after a reconnect, the message says what to do; only the probe and the name
    question reach that pump, at the connection and at each call after it."""
    other = (b"0VER\r", b("00SNE500V2.100"))
    steps = [(b"0\r", b("00S")), other, (b"0\r", b("00S")), other]
    with (
        expected_protocol(recorded("NE1000V3.928"), steps, connect=True) as driver,
        pytest.raises(AnotherPumpAnswers) as refused,
    ):
        driver.keep_alive()
    message = str(refused.value)
    assert "names itself 'NE500V2.100', not 'NE1000V3.928' as this channel's pump did" in message
    assert message.endswith("another pump answers there; accept it with newpump A")


def test_the_pump_that_gives_the_recorded_name_is_connected_as_ever() -> None:
    """The preset name is asked once, at connect: the next call is its own query only."""
    steps = [*CONNECT_BASIC, (b"0\r", b("00S"))]
    with expected_protocol(recorded("NE1000V3.928"), steps, connect=True) as driver:
        assert driver.pump_name is not None and driver.pump_name.foreign is None
        assert not driver.pump_name.must_ask
        driver.keep_alive()


def test_no_recorded_name_takes_the_first_pump_to_name_itself() -> None:
    """``expect(None)``: the operator accepted a replacement (or nothing is on record): the
    next pump to name itself is the channel's, and compared from then on."""
    other_connect = [(b"0\r", b("00S")), (b"0VER\r", b("00SNE500V2.100"))]
    steps = [
        *other_connect,  # refused at the connection: not the recorded name...
        *other_connect,  # ...then accepted: a whole handshake with the new pump
        (b"0RAT\r", b("00S0.000MH")),
        (b"0\r", b("00S")),
    ]
    with expected_protocol(recorded("NE1000V3.928"), steps, connect=True) as driver:
        assert driver.pump_name is not None and driver.pump_name.foreign is not None
        driver.pump_name.expect(None)
        driver.keep_alive()
        assert driver.pump_name.first == "NE500V2.100"


def test_expect_none_while_linked_shakes_hands_again_at_the_next_call() -> None:
    """The channel's pump was silent a moment (the port stayed up) and the operator
    accepted a replacement meanwhile (``expect(None)``): the next call shakes hands again
    before its own query, and the name then heard is the channel's. Another pump on the
    port after a reconnect is then refused, with nothing but the probe and the question."""
    other = (b"0VER\r", b("00SNE500V2.100"))
    steps = [
        *CONNECT_BASIC,
        (b"0\r", None),  # silent a moment: the link stays up
        *CONNECT_BASIC,  # after expect(None): a whole handshake first...
        (b"0\r", b("00S")),  # ...then the call's own query
        (b"0\r", DISCONNECT),
        (b"0\r", b("00S")),  # the reopened port: another pump
        other,
        (b"0\r", b("00S")),  # asked again, and nothing else sent
        other,
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        assert driver.pump_name is not None
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()
        driver.pump_name.expect(None, "accept it with newpump A")
        assert driver.pump_name.must_ask
        driver.keep_alive()
        assert driver.pump_name.first == "NE1000V3.928" and not driver.pump_name.must_ask
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"'NE500V2\.100', not 'NE1000V3\.928'"):
                driver.keep_alive()


def test_a_replacement_accepted_while_linked_is_brought_to_safe_mode() -> None:
    """The pump answering after ``expect(None)`` on a port that stayed up is a fresh one
    in basic mode: it is the channel's, and gets the safe-mode timeout as at a connection."""
    steps = [
        *CONNECT_SAFE,
        (s("0"), s("00S")),
        (s("0VER"), s("00SNE500V2.100")),
        (s("0SAF"), s("00S0")),
        (s("0SAF30"), s("00S")),
        (s("0SAF"), s("00S30")),
        (s("0RAT"), s("00S0.000MH")),
        (s("0"), s("00S")),
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        assert driver.pump_name is not None
        driver.pump_name.expect(None)
        driver.keep_alive()
        assert driver.pump_name.first == "NE500V2.100" and driver.pump_name.foreign is None


def test_expect_of_another_name_while_linked_refuses_the_pump_on_the_port() -> None:
    """Even a stop: the pump on the port names itself otherwise than expected, so it is
    not this channel's and nothing but the probe and the question reach it."""
    steps = [*CONNECT_BASIC, (b"0\r", b("00S")), VER_BASIC, (b"0\r", b("00S")), VER_BASIC]
    with expected_protocol(basic, steps, connect=True) as driver:
        assert driver.pump_name is not None
        driver.pump_name.expect("NE500V2.100", "put channel A's pump back")
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"'NE1000V3\.928', not 'NE500V2\.100'"):
                driver.stop()


def test_a_port_that_stays_gone_keeps_reporting_disconnected() -> None:
    steps = [*CONNECT_BASIC, (b"0\r", DISCONNECT)]
    with expected_protocol(basic, steps, connect=True, refuse_reopen=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(DeviceDisconnected, match="still gone"):
            driver.keep_alive()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"address": 100}, "address must be 0-99"),
        ({"baud": 115200}, "baud must be one of"),
        ({"safe_mode_timeout_s": 0}, "safe_mode_timeout_s must be 1-255"),
        ({"safe_mode_timeout_s": 256}, "safe_mode_timeout_s must be 1-255"),
        ({"reply_timeout_s": 0}, "reply_timeout_s must be > 0"),
    ],
)
def test_bad_settings_name_the_field_and_the_range(options: dict[str, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Ne1000Driver(port="/dev/null", **options)  # type: ignore[arg-type]


def test_a_stop_goes_out_when_the_handshake_fails_after_the_pump_named_itself() -> None:
    """S12: on a reopened port the channel's own pump answers and names itself, but its
    safe-mode setting is not taken (read back wrong): the stop is sent all the same. A
    pump that did not name itself as the channel's still gets nothing."""
    steps = [
        *CONNECT_SAFE,
        (s("0"), DISCONNECT),
        (s("0"), s("00S")),  # the reopened port
        VER_SAFE,  # the channel's own pump
        (s("0SAF"), s("00S7")),  # not the timeout we want...
        (s("0SAF30"), s("00S")),
        (s("0SAF"), s("00S7")),  # ...and it does not take
        (s("0STP"), s("00S")),  # the stop goes out all the same, and is confirmed
    ]
    with expected_protocol(safe, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        assert driver.stop() is not None


def test_a_stop_is_not_sent_to_a_pump_that_did_not_name_itself() -> None:
    steps = [
        *CONNECT_BASIC,
        (b"0\r", DISCONNECT),
        (b"0\r", b("00S")),
        (b"0VER\r", None),  # no name: perhaps another pump, perhaps ours
        (b"0VER\r", None),
    ]
    with expected_protocol(basic, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(DeviceTimeout):
            driver.stop()
