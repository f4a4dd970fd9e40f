"""The Harvard PHD ULTRA / Pump 11 Elite pump side, byte for byte, without a pty."""

from __future__ import annotations

from firmware_bridge.clock import VirtualClock
from firmware_bridge.harvard.codec import Prompt, decode_reply, parse_status
from firmware_bridge.harvard.emulator import VERSION, HarvardPumpSide
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import syringe_by_name


class Bench:
    def __init__(self, *, address: int = 0, **pump_options: object) -> None:
        self.clock = VirtualClock()
        self.pump = SimulatedPump(self.clock, **pump_options)  # type: ignore[arg-type]
        self.side = HarvardPumpSide(self.pump, address=address)

    def send(self, data: bytes) -> list[bytes | None]:
        self.side.feed(data, 0.0)
        answers = []
        while (request := self.side.next_request()) is not None:
            answers.append(self.side.handle(request, 0.0))
        return answers

    def ask(self, line: str) -> bytes | None:
        (answer,) = self.send(line.encode() + b"\r")
        return answer


def test_version_and_prompt_at_address_zero() -> None:
    bench = Bench()
    assert bench.ask("ver") == b"\n" + VERSION.encode() + b"\r\n:"
    assert bench.ask("") == b"\n:"


def test_a_nonzero_address_prefixes_every_line_and_the_prompt() -> None:
    bench = Bench(address=12)
    assert bench.ask("12:ver") == b"\n12:" + VERSION.encode() + b"\r\n12:"
    assert bench.ask("12ver") == b"\n12:" + VERSION.encode() + b"\r\n12:"  # Legato form
    assert bench.ask("13:ver") is None  # another pump's command
    assert bench.ask("ver") is not None  # no address: the pump on this link answers


def test_cr_lf_is_one_terminator_not_two_commands() -> None:
    bench = Bench()
    assert bench.send(b"ver\r\nver\r\n") == [bench.ask("ver"), bench.ask("ver")]
    assert bench.send(b"ver\n") == [b"\n" + VERSION.encode() + b"\r\n:"]


def test_rate_set_and_query_exactly_as_sent() -> None:
    bench = Bench()
    assert bench.ask("irate 12.34 ml/hr") == b"\n:"
    assert bench.ask("irat") == b"\n12.34 ml/hr\r\n:"
    assert bench.pump.snapshot().set_rate_ml_h == 12.34
    assert bench.ask("irate 100 u/m") == b"\n:"
    assert bench.ask("irate") == b"\n100 ul/min\r\n:"
    assert bench.pump.snapshot().set_rate_ml_h == 6.0


def test_rate_limits_and_errors() -> None:
    bench = Bench()  # 50 mL syringe: 1-1999.1 mL/h
    assert bench.ask("irate lim") == b"\n16.67 ul/min to 33.31 ml/min\r\n:"
    assert bench.ask("irate 5000 ml/hr") == b"\nArgument error: 5000 ml/hr\r\n   Out of range\r\n:"
    assert bench.ask("irate 5 furlongs") == b"\nArgument error: furlongs\r\n   Invalid units\r\n:"
    assert bench.ask("irate 5") == b"\nArgument error: 5\r\n   Expected <rate> <units>\r\n:"
    assert bench.ask("fly") == b"\nCommand error: fly\r\n   Unknown command\r\n:"
    assert bench.pump.snapshot().set_rate_ml_h == 0.0


def test_run_stop_and_status() -> None:
    bench = Bench(address=3)
    bench.ask("3:irate 60 ml/hr")
    assert bench.ask("3:irun") == b"\n03>"
    bench.clock.advance(60.0)
    status = decode_reply(bench.ask("3:status") or b"")
    assert status.prompt is Prompt.INFUSING
    line = parse_status(status.lines[0])
    assert line.volume_fl == 10**12  # 1 mL
    assert line.motor_running and line.infusing_direction and not line.stalled
    assert line.rate_fl_s == 16666666666  # 60 mL/h
    assert bench.ask("3:ivol") == b"\n03:1 ml\r\n03>"
    assert bench.ask("3:stp") == b"\n03:"
    assert bench.ask("3:civolume") == b"\n03:"
    assert bench.ask("3:ivolume") == b"\n03:0 ml\r\n03:"


def test_run_without_a_rate_is_a_command_error() -> None:
    bench = Bench()
    assert bench.ask("irun") == b"\nCommand error: irun\r\n   Rate not set\r\n:"


def test_stall_occlusion_and_empty_show_the_stall_prompt() -> None:
    bench = Bench()
    bench.ask("irate 60 ml/hr")
    bench.ask("irun")
    bench.pump.set_stall(True)
    reply = decode_reply(bench.ask("status") or b"")
    assert reply.prompt is Prompt.STALLED and parse_status(reply.lines[0]).stalled
    assert bench.ask("irun") == b"\n*"  # the motor tries and stalls again
    bench.pump.set_stall(False)
    assert bench.ask("irun") == b"\n>"

    occluded = Bench()
    occluded.ask("irate 60 ml/hr")
    occluded.ask("irun")
    occluded.pump.set_occlusion(True)
    occluded.clock.advance(120.0)
    assert occluded.ask("") == b"\n*"

    empty = Bench()
    empty.pump.empty_syringe(0.0)
    empty.ask("irate 60 ml/hr")
    assert empty.ask("irun") == b"\n*"


def test_target_volume_reached_shows_t_star() -> None:
    bench = Bench()
    assert bench.ask("tvolume") == b"\nTarget volume not set\r\n:"
    bench.ask("tvolume 0.5 ml")
    assert bench.ask("tvol") == b"\n500 ul\r\n:"
    bench.ask("irate 60 ml/hr")
    bench.ask("irun")
    bench.clock.advance(60.0)
    assert bench.ask("") == b"\nT*"
    assert bench.ask("ctvolume") == b"\nT*"
    assert bench.ask("tvolume") == b"\nTarget volume not set\r\nT*"


def test_diameter_and_syringe_volume() -> None:
    bench = Bench()
    assert bench.ask("diameter") == b"\n26.5900 mm\r\n:"
    assert bench.ask("diameter 21.59 mm") == b"\n:"
    assert bench.pump.syringe == syringe_by_name("bd-plastipak-30ml")
    assert bench.ask("svolume") == b"\n30 ml\r\n:"
    assert bench.ask("svolume 25 ml") == b"\n:"
    assert bench.pump.syringe.volume_ml == 25.0
    assert bench.ask("diameter 99") == b"\nArgument error: 99\r\n   Out of range\r\n:"
    bench.ask("irate 10 ml/hr")
    bench.ask("irun")
    reply = decode_reply(bench.ask("diameter 26.59") or b"")
    assert reply.lines[0] == "Command error: diameter" and reply.prompt is Prompt.INFUSING


def test_ignore_the_first_command_after_power_up() -> None:
    bench = Bench(ignore_first_command_after_power_up=True)
    assert bench.ask("ver") is None
    assert bench.ask("ver") is not None


def test_describe_reports_protocol_state() -> None:
    bench = Bench(address=4)
    bench.ask("4:irate 5 ml/hr")
    state = bench.side.describe()
    assert state["protocol"] == "harvard" and state["infuse_rate"] == "5 ml/hr"


def test_the_manuals_own_example_command() -> None:
    # PHD ULTRA user's guide: "12:irat 3.2 ul/min" sets the infuse rate of pump 12
    bench = Bench(address=12, syringe="bd-plastipak-5ml")
    assert bench.ask("12:irat 3.2 ul/min") == b"\n12:"
    assert bench.pump.snapshot().set_rate_ml_h == 0.192
    assert bench.ask("12:irat") == b"\n12:3.2 ul/min\r\n12:"
