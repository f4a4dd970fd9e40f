"""The NE-1000 pump side, byte for byte, without a pty: what a host written from the
manual sees. Liveness times are passed in explicitly, the pump runs on a VirtualClock."""

from __future__ import annotations

from firmware_bridge.clock import VirtualClock
from firmware_bridge.ne1000.codec import Ne1000Reply, encode_safe_packet, parse_reply
from firmware_bridge.ne1000.codec import decode_safe_packet as unpack
from firmware_bridge.ne1000.emulator import FIRMWARE, Ne1000PumpSide
from firmware_bridge.pump_model import PumpAlarm, SimulatedPump
from firmware_bridge.syringes import syringe_by_name

STX, ETX = b"\x02", b"\x03"


def frame(text: str) -> bytes:
    return STX + text.encode() + ETX


class Bench:
    def __init__(self, *, address: int = 0, **pump_options: object) -> None:
        self.clock = VirtualClock()
        self.pump = SimulatedPump(self.clock, **pump_options)  # type: ignore[arg-type]
        self.side = Ne1000PumpSide(self.pump, address=address)

    def send(self, data: bytes, now: float = 0.0) -> list[bytes | None]:
        self.side.feed(data, now)
        answers = []
        while (request := self.side.next_request()) is not None:
            answers.append(self.side.handle(request, now))
        return answers

    def basic(self, text: str, now: float = 0.0) -> bytes | None:
        (answer,) = self.send(text.encode() + b"\r", now)
        return answer

    def safe(self, text: str, now: float = 0.0) -> bytes | None:
        (answer,) = self.send(encode_safe_packet(text.encode()), now)
        return answer

    def safe_reply(self, text: str, now: float = 0.0) -> Ne1000Reply:
        answer = self.safe(text, now)
        assert answer is not None
        return parse_reply(unpack(answer))


# --------------------------------------------------------------------- basic mode
def test_version_and_status_query() -> None:
    bench = Bench()
    assert bench.basic("0VER") == frame("00S" + FIRMWARE)
    assert bench.basic("0") == frame("00S")
    assert bench.basic("") == frame("00S")  # no address: address 0


def test_only_its_own_address_is_answered() -> None:
    bench = Bench(address=7)
    assert bench.basic("VER") is None
    assert bench.basic("0VER") is None
    assert bench.basic("7VER") == frame("07S" + FIRMWARE)
    assert bench.basic(" 07 ver ") == frame("07S" + FIRMWARE)


def test_rate_set_query_and_units() -> None:
    bench = Bench()
    assert bench.basic("0RAT 5 MH") == frame("00S")
    assert bench.basic("0RAT") == frame("00S5.000MH")
    assert bench.pump.snapshot().set_rate_ml_h == 5.0
    assert bench.basic("0RAT 83.33 UM") == frame("00S")
    assert bench.basic("0RAT") == frame("00S83.33UM")
    assert bench.pump.snapshot().set_rate_ml_h == 4.9998
    assert bench.basic("0RAT 100") == frame("00S")  # unit kept
    assert bench.basic("0RAT") == frame("00S100.0UM")
    assert bench.pump.snapshot().set_rate_ml_h == 6.0


def test_units_cannot_change_while_pumping() -> None:
    bench = Bench()
    bench.basic("0RAT 5 MH")
    assert bench.basic("0RUN") == frame("00I")
    assert bench.basic("0RAT 6 MH") == frame("00I")  # same unit: fine while running
    assert bench.basic("0RAT 100 UM") == frame("00I?NA")
    assert bench.pump.snapshot().set_rate_ml_h == 6.0


def test_rates_outside_the_syringe_range_are_out_of_range() -> None:
    bench = Bench()  # 50 mL syringe: 1-1999 mL/h
    assert bench.basic("0RAT 5000 MH") == frame("00S?OOR")
    assert bench.basic("0RAT 0.5 MH") == frame("00S?OOR")
    assert bench.basic("0RAT 12345 MH") == frame("00S?OOR")  # five digits
    assert bench.basic("0RAT 1.2345 MH") == frame("00S?OOR")
    assert bench.basic("0RAT FAST") == frame("00S?")
    assert bench.pump.snapshot().set_rate_ml_h == 0.0


def test_unknown_and_unsupported_commands() -> None:
    bench = Bench()
    assert bench.basic("0XYZ") == frame("00S?")
    assert bench.basic("0PHN 2") == frame("00S?NA")  # a real command this model lacks


def test_diameter_sets_the_syringe_and_volume_units() -> None:
    bench = Bench()
    assert bench.basic("0DIA") == frame("00S26.59")
    assert bench.basic("0DIA 14.43") == frame("00S")
    assert bench.pump.syringe == syringe_by_name("bd-plastipak-10ml")
    assert bench.basic("0VOL") == frame("00S0.000ML")  # above 14.00 mm: mL
    assert bench.basic("0DIA 11.99") == frame("00S")
    assert bench.basic("0VOL") == frame("00S0.000UL")  # at or below 14.00 mm: uL
    assert bench.basic("0VOL ML") == frame("00S")
    assert bench.basic("0VOL") == frame("00S0.000ML")
    assert bench.basic("0DIA 60") == frame("00S?OOR")


def test_diameter_cannot_change_while_pumping() -> None:
    bench = Bench()
    bench.basic("0RAT 10 MH")
    bench.basic("0RUN")
    assert bench.basic("0DIA 21.59") == frame("00I?NA")


def test_run_stop_dispensed_and_clear() -> None:
    bench = Bench()
    bench.basic("0RAT 60 MH")
    assert bench.basic("0DIR") == frame("00SINF")
    assert bench.basic("0RUN") == frame("00I")
    bench.clock.advance(60.0)
    assert bench.basic("0DIS") == frame("00II1.000W0.000ML")
    assert bench.basic("0STP") == frame("00S")
    assert bench.basic("0CLD INF") == frame("00S")
    assert bench.basic("0DIS") == frame("00SI0.000W0.000ML")
    assert bench.pump.snapshot().infused_ml == 1.0  # the pump's counter, not the display


def test_volume_to_dispense_stops_the_pump() -> None:
    bench = Bench()
    bench.basic("0RAT 60 MH")
    bench.basic("0VOL 0.5")
    bench.basic("0RUN")
    bench.clock.advance(60.0)
    assert bench.basic("0") == frame("00S")
    assert bench.basic("0DIS") == frame("00SI0.500W0.000ML")


def test_withdraw_and_purge() -> None:
    bench = Bench(loaded_volume_ml=10.0)
    bench.basic("0RAT 60 MH")
    bench.basic("0DIR WDR")
    assert bench.basic("0RUN") == frame("00W")
    bench.basic("0STP")
    bench.basic("0DIR INF")
    assert bench.basic("0PUR") == frame("00X")
    assert bench.pump.snapshot().set_rate_ml_h == bench.pump.syringe.max_rate_ml_h
    assert bench.basic("0STP") == frame("00S")
    assert bench.basic("0RAT") == frame("00S60.00MH")  # the rate before the purge


# --------------------------------------------------------------------- alarms
def test_an_alarm_answers_the_next_command_which_is_not_executed() -> None:
    bench = Bench()
    bench.basic("0RAT 10 MH")
    bench.basic("0RUN")
    bench.pump.set_stall(True)
    assert bench.basic("0RAT 20 MH") == frame("00A?S")
    assert bench.pump.snapshot().set_rate_ml_h == 10.0  # not executed
    assert bench.basic("0RAT 20 MH") == frame("00S")  # acknowledged: the next one runs
    assert bench.pump.snapshot().set_rate_ml_h == 20.0


def test_occlusion_and_empty_syringe_reach_the_host_as_a_stall() -> None:
    bench = Bench()
    bench.basic("0RAT 60 MH")
    bench.basic("0RUN")
    bench.pump.set_occlusion(True)
    bench.clock.advance(120.0)
    assert PumpAlarm.OCCLUSION in bench.pump.snapshot().alarms
    assert bench.basic("0") == frame("00A?S")
    assert bench.basic("0") == frame("00S")
    assert bench.basic("0RUN") == frame("00S?NA")  # still occluded: the motor cannot push

    empty = Bench()
    empty.basic("0RAT 60 MH")
    empty.pump.empty_syringe(0.0)
    assert empty.basic("0RUN") == frame("00A?S")


def test_power_cycle_reports_a_reset() -> None:
    bench = Bench()
    bench.basic("0RAT 10 MH")
    bench.basic("0RUN")
    bench.pump.power_cycle()
    assert bench.basic("0") == frame("00A?R")
    assert bench.basic("0RAT") == frame("00S10.00MH")  # settings survive


def test_the_first_command_after_power_up_can_be_ignored() -> None:
    bench = Bench(ignore_first_command_after_power_up=True)
    assert bench.basic("0VER") is None
    assert bench.basic("0VER") == frame("00S" + FIRMWARE)
    bench.pump.power_cycle()
    assert bench.basic("0") is None
    assert bench.basic("0") == frame("00A?R")


# --------------------------------------------------------------------- safe mode
def test_entering_and_leaving_safe_mode() -> None:
    """``SAF n`` is answered in the framing of the mode it switches to, whichever framing
    it came in (what clients written against real pumps expect)."""
    bench = Bench()
    enter = bench.basic("0SAF 5", now=0.0)
    assert enter == encode_safe_packet(b"00S")  # a basic command, answered as a packet
    assert bench.send(b"0VER\r", now=0.1) == [None]  # basic commands are now ignored
    assert bench.safe_reply("0VER", now=0.2).data == FIRMWARE
    assert bench.safe_reply("0SAF", now=0.3).data == "5"  # a query: the framing it came in
    leave = bench.safe("0SAF0", now=0.4)
    assert leave == frame("00S")  # a packet, answered in basic framing
    assert bench.basic("0SAF", now=0.5) == frame("00S0")


def test_a_packet_in_basic_mode_is_recognised_saf0_and_saf_n() -> None:
    """The manual's way back to basic mode, ``02 08 'SAF0' 55 43 03``, sent to a pump that
    is already in basic mode: recognised, answered in basic framing, mode unchanged. And a
    ``SAF n`` packet in basic mode switches to safe mode with a safe-framed reply."""
    bench = Bench()
    manual_packet = bytes.fromhex("02 08 53 41 46 30 55 43 03")
    assert bench.send(manual_packet, now=0.0) == [frame("00S")]
    assert bench.side.describe()["mode"] == "basic"
    assert bench.safe("0SAF10", now=0.1) == encode_safe_packet(b"00S")
    assert bench.side.describe()["mode"] == "safe"
    assert bench.safe_reply("0SAF", now=0.2).data == "10"


def test_another_packet_in_basic_mode_is_answered_as_a_packet() -> None:
    bench = Bench()
    assert bench.safe_reply("0VER", now=0.0).data == FIRMWARE
    assert bench.side.describe()["mode"] == "basic"
    assert bench.basic("0VER", now=0.1) == frame("00S" + FIRMWARE)  # basic still works


def test_safe_mode_answers_a_damaged_packet_with_com() -> None:
    bench = Bench()
    bench.basic("0SAF 5")
    damaged = bytearray(encode_safe_packet(b"0RAT10MH"))
    damaged[4] ^= 0x01
    (answer,) = bench.send(bytes(damaged), now=0.1)
    assert answer is not None and unpack(answer) == b"00S?COM"
    assert bench.pump.snapshot().set_rate_ml_h == 0.0


def test_a_gap_over_half_a_second_discards_a_partial_packet() -> None:
    bench = Bench()
    bench.basic("0SAF 5")
    packet = encode_safe_packet(b"0VER")
    assert bench.send(packet[:4], now=1.0) == []
    assert bench.send(packet[4:], now=1.6) == []  # the head was discarded: no packet
    assert bench.side.discarded_partials == 1
    assert bench.send(packet[:4], now=2.0) == []
    (answer,) = bench.send(packet[4:], now=2.3)  # 0.3 s gap: fine
    assert answer is not None and unpack(answer) == b"00S" + FIRMWARE.encode()


def test_safe_mode_timeout_stops_the_pump_and_sends_an_auto_alarm() -> None:
    bench = Bench()
    bench.basic("0RAT 10 MH")
    bench.basic("0RUN")
    bench.basic("0SAF 5", now=100.0)
    assert bench.side.poll(104.9) is None
    bench.safe("0", now=104.9)  # a valid packet restarts the clock
    assert bench.side.poll(109.8) is None
    assert bench.pump.snapshot().running
    auto = bench.side.poll(110.0)  # 5.1 s of silence
    assert auto is not None and unpack(auto) == b"00A?T"
    snap = bench.pump.snapshot()
    assert not snap.running and PumpAlarm.COMMS_TIMEOUT in snap.alarms
    assert bench.side.poll(111.0) is None  # sent once; and it did not acknowledge the alarm:
    assert bench.safe_reply("0", now=111.0).alarm is not None
    assert bench.safe_reply("0", now=111.1).status is not None


def test_auto_alarm_packets_for_other_alarms() -> None:
    bench = Bench()
    bench.basic("0SAF 30", now=0.0)
    bench.pump.power_cycle()
    auto = bench.side.poll(1.0)
    assert auto is not None and unpack(auto) == b"00A?R"
    assert bench.side.poll(1.1) is None


def test_saf_range() -> None:
    bench = Bench()
    assert bench.basic("0SAF 256") == frame("00S?OOR")
    assert bench.basic("0SAF") == frame("00S0")
    assert bench.side.describe()["mode"] == "basic"


def test_the_manual_quick_start_works_as_typed_in_a_terminal() -> None:
    # NE-500/1000 quick start: no address, lower case and spaces allowed, CR after each
    bench = Bench()
    assert bench.send(b"dia 26.59\r rat 10.5 mh\r vol 0\r run\r") == [
        frame("00S"),
        frame("00S"),
        frame("00S"),
        frame("00I"),
    ]
    assert bench.pump.snapshot().set_rate_ml_h == 10.5
