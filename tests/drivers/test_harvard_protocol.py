"""Harvard driver against recorded request/reply bytes: every byte sent is checked, every
reply byte must be read, and an unexpected request (a blind retry) fails at once."""

from __future__ import annotations

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
from drivers.pumps.harvard import HarvardDriver
from drivers.testing import DISCONNECT, ScriptedTransport, Step, expected_protocol
from firmware_bridge.syringes import syringe_by_name

VER = b"\n11 ELITE I/W Single 3.0.4\r\n:"
CONNECT: list[Step] = [(b"ver\r", VER)]


def pump0(transport: ScriptedTransport) -> HarvardDriver:
    return HarvardDriver(port="scripted", transport=transport, reply_timeout_s=0.2)


def pump7(transport: ScriptedTransport) -> HarvardDriver:
    return HarvardDriver(port="scripted", address=7, transport=transport, reply_timeout_s=0.2)


# --------------------------------------------------------------------- connecting
def test_connect_is_an_addressed_version_query_never_a_bare_cr() -> None:
    with expected_protocol(pump0, CONNECT, connect=True):
        pass
    with expected_protocol(pump7, [(b"7:ver\r", b"\n07:11 ELITE\r\n07:")], connect=True):
        pass
    # a pump fresh from power-up ignores its first command: the throw-away query covers it
    with expected_protocol(pump0, [(b"ver\r", None), (b"ver\r", VER)], connect=True):
        pass


def test_identify_splits_model_and_firmware() -> None:
    with expected_protocol(pump0, [*CONNECT, (b"ver\r", VER)], connect=True) as driver:
        identity = driver.identify()
    assert (identity.model, identity.firmware) == ("11 ELITE I/W Single", "3.0.4")


def test_replies_from_another_address_are_refused() -> None:
    steps = [
        (b"7:ver\r", b"\n07:11 ELITE\r\n07:"),
        (b"7:ver\r", b"\n08:11 ELITE\r\n08:"),  # a daisy-chained neighbour answered
        (b"7:ver\r", b"\n11 ELITE\r\n:"),  # and then one with no address at all
    ]
    with (
        expected_protocol(pump7, steps, connect=True) as driver,
        pytest.raises(PumpChecksumError, match="reply from pump 0, expected 7"),
    ):
        driver.identify()


# --------------------------------------------------------------------- syringe, rates
CONFIGURE_50ML: list[Step] = [
    (b"diameter 26.5900\r", b"\n:"),
    (b"diameter\r", b"\n26.5900 mm\r\n:"),
    (b"svolume 50 ml\r", b"\n:"),
    (b"svolume\r", b"\n50 ml\r\n:"),
    (b"ctvolume\r", b"\n:"),
    (b"tvolume\r", b"\nTarget volume not set\r\n:"),
    (b"irate lim\r", b"\n16.67 ul/min to 33.31 ml/min\r\n:"),
]


def test_configure_syringe_reads_back_and_returns_the_pumps_own_range() -> None:
    with expected_protocol(pump0, CONNECT + CONFIGURE_50ML, connect=True) as driver:
        rng = driver.configure_syringe(syringe_by_name("bd-plastipak-50ml"))
    assert rng == RateRange(min_ml_h=1.0002, max_ml_h=1998.6)


def test_a_target_volume_left_set_is_rejected() -> None:
    steps = [*CONNECT, *CONFIGURE_50ML[:5], (b"tvolume\r", b"\n5 ml\r\n:")]
    with (
        expected_protocol(pump0, steps, connect=True) as driver,
        pytest.raises(PumpRejected, match="target volume"),
    ):
        driver.configure_syringe(syringe_by_name("bd-plastipak-50ml"))


def test_set_rate_sends_once_and_returns_the_read_back() -> None:
    steps = [*CONNECT, (b"irate 12.34 ml/hr\r", b"\n:"), (b"irate\r", b"\n12.34 ml/hr\r\n:")]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.quantize_rate(12.3456) == 12.34
        assert driver.set_rate(12.34) == 12.34


def test_send_rate_is_the_set_alone_without_a_read_back() -> None:
    steps = [*CONNECT, (b"irate 12.34 ml/hr\r", b"\n:")]
    with expected_protocol(pump0, steps, connect=True) as driver:
        driver.send_rate(12.34)


def test_small_rates_travel_in_microlitres() -> None:
    steps = [
        *CONNECT,
        (b"irate 123.4 ul/hr\r", b"\n:"),
        (b"irate\r", b"\n123.4 ul/hr\r\n:"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.quantize_rate(0.123456) == 0.1234
        assert driver.set_rate(0.1234) == pytest.approx(0.1234, rel=1e-12)


def test_an_out_of_range_rate_raises_with_the_pumps_words() -> None:
    steps = [
        *CONNECT,
        (b"irate 3000 ml/hr\r", b"\nArgument error: 3000 ml/hr\r\n   Out of range\r\n:"),
    ]
    with (
        expected_protocol(pump0, steps, connect=True) as driver,
        pytest.raises(PumpRejected) as info,
    ):
        driver.set_rate(3000.0)
    assert info.value.reason == "Argument error: 3000 ml/hr / Out of range"


def test_a_lost_acknowledgement_is_a_timeout_and_is_not_retried() -> None:
    steps = [*CONNECT, (b"irate 20 ml/hr\r", None)]
    with expected_protocol(pump0, steps, connect=True) as driver, pytest.raises(DeviceTimeout):
        driver.set_rate(20.0)


def test_a_garbled_reply_to_a_set_is_a_checksum_error_not_retried() -> None:
    steps = [*CONNECT, (b"irate 20 ml/hr\r", b"\x8f\x13\n:")]
    with expected_protocol(pump0, steps, connect=True) as driver, pytest.raises(PumpChecksumError):
        driver.set_rate(20.0)


def test_an_unquantized_rate_is_refused_before_anything_is_sent() -> None:
    with (
        expected_protocol(pump0, CONNECT, connect=True) as driver,
        pytest.raises(ValueError, match="more than 4 significant digits"),
    ):
        driver.set_rate(12.345)


# --------------------------------------------------------------------- run, stop, status
def test_start_and_stop_read_the_prompt() -> None:
    steps = [
        *CONNECT,
        (b"irun\r", b"\n>"),
        (b"stp\r", b"\n:"),
        (b"irun\r", b"\n*"),
        (b"irun\r", b"\nCommand error: irun\r\n   Rate not set\r\n:"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        driver.start()
        driver.stop()
        with pytest.raises(PumpAlarmError) as alarm:
            driver.start()
        assert alarm.value.alarms == {PumpAlarmKind.STALL}
        with pytest.raises(PumpRejected, match="Rate not set"):
            driver.start()


def test_a_stop_answered_with_the_idle_prompt_is_confirmed_by_its_own_reply() -> None:
    """The prompt ending the reply to ``stp`` is the pump's state: ``:`` (idle) is its own
    word that it stopped, returned to the caller with nothing read back."""
    steps = [*CONNECT, (b"irun\r", b"\n>"), (b"stp\r", b"\n:")]
    with expected_protocol(pump0, steps, connect=True) as driver:
        driver.start()
        assert driver.stop() == StopConfirmation(":")


def test_a_stop_of_a_chained_pump_is_confirmed_by_its_addressed_idle_prompt() -> None:
    steps = [
        (b"7:ver\r", b"\n07:11 ELITE\r\n07:"),
        (b"7:stp\r", b"\n07:"),
    ]
    with expected_protocol(pump7, steps, connect=True) as driver:
        assert driver.stop() == StopConfirmation("07:")


@pytest.mark.parametrize("prompt", [b"*", b"T*"])
def test_a_stop_answered_stalled_or_at_target_is_not_a_confirmation(prompt: bytes) -> None:
    """Not running, but not stopped by the stop: the caller reads the pump back."""
    steps = [*CONNECT, (b"stp\r", b"\n" + prompt)]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.stop() is None


def test_a_stop_answered_still_infusing_raises_and_is_never_a_confirmation() -> None:
    steps = [*CONNECT, (b"stp\r", b"\n>"), (b"stp\r", None)]
    with expected_protocol(pump0, steps, connect=True) as driver:
        with pytest.raises(PumpRejected) as info:
            driver.stop()
        assert info.value.reason == "still running (prompt '>')"
        with pytest.raises(DeviceTimeout):
            driver.stop()


def test_read_status_uses_the_status_line_and_the_rate() -> None:
    steps = [
        *CONNECT,
        (b"status\r", b"\n1388888888 3600 5000000000000 I...I.\r\n>"),
        (b"irate\r", b"\n5 ml/hr\r\n>"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        status = driver.read_status()
    assert status.running and status.alarms == frozenset()
    assert (status.set_rate_ml_h, status.infused_ml) == (5.0, 5.0)
    assert status.pressure_mmhg is None


def test_a_stall_is_reported() -> None:
    steps = [
        *CONNECT,
        (b"status\r", b"\n0 12 500000000000 i.S.I.\r\n*"),
        (b"irate\r", b"\n5 ml/hr\r\n*"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        status = driver.read_status()
    assert not status.running and status.alarms == {PumpAlarmKind.STALL}


def test_an_unexplained_stop_after_start_is_reported_once_as_a_reset() -> None:
    steps = [
        *CONNECT,
        (b"irun\r", b"\n>"),
        (b"status\r", b"\n0 0 0 i...I.\r\n:"),  # idle: no stall, no target reached
        (b"irate\r", b"\n5 ml/hr\r\n:"),
        (b"status\r", b"\n0 0 0 i...I.\r\n:"),
        (b"irate\r", b"\n5 ml/hr\r\n:"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        driver.start()
        assert driver.read_status().alarms == {PumpAlarmKind.RESET}
        assert driver.read_status().alarms == frozenset()


def test_target_reached_is_not_an_alarm() -> None:
    steps = [
        *CONNECT,
        (b"irun\r", b"\n>"),
        (b"status\r", b"\n0 30 500000000000 i...IT\r\nT*"),
        (b"irate\r", b"\n60 ml/hr\r\nT*"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        driver.start()
        status = driver.read_status()
    assert not status.running and status.alarms == frozenset()


def test_withdrawing_reads_the_infused_volume_separately() -> None:
    steps = [
        *CONNECT,
        (b"status\r", b"\n0 0 200000000000 w...W.\r\n:"),
        (b"ivolume\r", b"\n1.5 ml\r\n:"),
        (b"irate\r", b"\n5 ml/hr\r\n:"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.read_status().infused_ml == 1.5


def test_queries_are_retried_once_only() -> None:
    steps = [*CONNECT, (b"ver\r", None), (b"ver\r", VER)]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.identify().firmware == "3.0.4"
    steps = [*CONNECT, (b"ver\r", None), (b"ver\r", None)]
    with expected_protocol(pump0, steps, connect=True) as driver, pytest.raises(DeviceTimeout):
        driver.identify()


def test_keep_alive_is_one_status_query() -> None:
    steps = [*CONNECT, (b"status\r", b"\n0 0 0 i...I.\r\n:"), (b"status\r", None)]
    with expected_protocol(pump0, steps, connect=True) as driver:
        driver.keep_alive()
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()


# --------------------------------------------------------------------- the port
def test_a_vanished_port_is_reported_then_reopened_with_a_new_handshake() -> None:
    steps = [*CONNECT, (b"status\r", DISCONNECT), *CONNECT, (b"ver\r", VER)]
    with expected_protocol(pump0, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        assert driver.identify().model == "11 ELITE I/W Single"


def test_after_a_reconnect_another_pump_on_the_port_is_refused_until_ours_is_back() -> None:
    """A port's name can reach another adapter after an unplug (docs/protocols.md): what
    answers there is not this channel's pump, so nothing it says is taken, nothing is sent
    to it; each later call asks again, and the channel's own pump is used once it is back."""
    other = b"\nPHD ULTRA 2.1.0\r\n:"
    steps = [
        *CONNECT,
        (b"status\r", DISCONNECT),
        (b"ver\r", other),  # the reopened port: another pump
        (b"ver\r", other),  # the next call asks again, and sends nothing else
        (b"ver\r", VER),  # ours is back
        (b"status\r", b"\n0 0 0 i...I.\r\n:"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"PHD ULTRA 2\.1\.0"):
                driver.keep_alive()
        driver.keep_alive()


def test_a_name_recorded_before_a_restart_refuses_another_pump_at_the_first_connection() -> None:
    """The safety process presets the name its journal holds (``PumpName.expect``): a fresh
    driver whose port reaches another pump sends it the name question and nothing else."""
    other = b"\nPHD ULTRA 2.1.0\r\n:"

    def make(transport: ScriptedTransport) -> HarvardDriver:
        driver = pump0(transport)
        assert driver.pump_name is not None
        driver.pump_name.expect("11 ELITE I/W Single 3.0.4", "accept it with newpump A")
        return driver

    steps = [(b"ver\r", other), (b"ver\r", other)]
    with (
        expected_protocol(make, steps, connect=True) as driver,
        pytest.raises(AnotherPumpAnswers, match=r"'PHD ULTRA 2\.1\.0', not '11 ELITE"),
    ):
        driver.keep_alive()
    with expected_protocol(make, [*CONNECT, (b"ver\r", VER)], connect=True) as driver:
        assert driver.identify().firmware == "3.0.4"  # the recorded pump: as ever


def test_expect_none_while_linked_asks_the_name_at_the_next_call() -> None:
    """The channel's pump was silent a moment (the port stayed up) and the operator
    accepted a replacement meanwhile (``expect(None)``): the next call asks ``ver`` before
    its own command, and the name then heard is the channel's. Another pump on the port
    after a reconnect is then refused, with nothing but the question."""
    other = b"\nPHD ULTRA 2.1.0\r\n:"
    steps = [
        *CONNECT,
        (b"status\r", None),  # silent a moment: the link stays up
        (b"ver\r", VER),  # after expect(None): the name first...
        (b"status\r", b"\n0 0 0 i...I.\r\n:"),  # ...then the call's own query
        (b"status\r", DISCONNECT),
        (b"ver\r", other),  # the reopened port: another pump
        (b"ver\r", other),  # asked again, and nothing else sent
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.pump_name is not None
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()
        driver.pump_name.expect(None, "accept it with newpump A")
        assert driver.pump_name.must_ask
        driver.keep_alive()
        assert driver.pump_name.first == "11 ELITE I/W Single 3.0.4"
        assert not driver.pump_name.must_ask
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"'PHD ULTRA 2\.1\.0', not '11 ELITE"):
                driver.keep_alive()


def test_expect_of_another_name_while_linked_refuses_the_pump_on_the_port() -> None:
    """Even a stop: the pump on the port names itself otherwise than expected, so nothing
    but the question reaches it, call after call."""
    steps = [*CONNECT, (b"ver\r", VER), (b"ver\r", VER)]
    with expected_protocol(pump0, steps, connect=True) as driver:
        assert driver.pump_name is not None
        driver.pump_name.expect("PHD ULTRA 2.1.0", "put channel A's pump back")
        for _ in range(2):
            with pytest.raises(AnotherPumpAnswers, match=r"not 'PHD ULTRA 2\.1\.0'"):
                driver.stop()


def test_a_reconnect_whose_ver_went_unanswered_asks_again_before_anything_else() -> None:
    """Until the pump on the reopened port has named itself, nothing else is sent."""
    steps = [
        *CONNECT,
        (b"status\r", DISCONNECT),
        (b"ver\r", None),  # the reopened port: the name question unanswered, twice
        (b"ver\r", None),
        (b"ver\r", VER),  # the next call asks first
        (b"status\r", b"\n0 0 0 i...I.\r\n:"),
    ]
    with expected_protocol(pump0, steps, connect=True) as driver:
        with pytest.raises(DeviceDisconnected):
            driver.keep_alive()
        with pytest.raises(DeviceTimeout):
            driver.keep_alive()
        driver.keep_alive()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"address": -1}, "address must be 0-99"),
        ({"baud": 300}, "baud must be one of"),
        ({"reply_timeout_s": 31}, "reply_timeout_s must be > 0 and <= 30"),
        ({"settle_s": 2}, "settle_s must be 0-1"),
    ],
)
def test_bad_settings_name_the_field_and_the_range(options: dict[str, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        HarvardDriver(port="/dev/null", **options)  # type: ignore[arg-type]
