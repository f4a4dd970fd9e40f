"""MT-SICS codec (properties, exact bytes) and the balance's end of the line, in-process.

The balance weighs what a simulated pump really delivered; every case runs on a
``VirtualClock``. Byte strings are the exact lines a balance sends, CR LF included.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.balance.codec import (
    IMPLEMENTED,
    MAX_LINE,
    Command,
    MtSicsCodecError,
    decimals_of,
    decode_reply,
    encode_command,
    format_value,
    parse_command,
    quantize,
    weight_reply,
)
from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import (
    BalanceFaultError,
    BalanceModel,
    BalanceSpec,
    Bench,
    ConstantFlow,
)
from firmware_bridge.balance.water import water_density_g_ml
from firmware_bridge.clock import VirtualClock
from firmware_bridge.pump_model import SimulatedPump

RES = Decimal("0.0001")


# --------------------------------------------------------------------- codec
def test_a_weight_is_a_right_aligned_ten_character_field() -> None:
    assert weight_reply("S", "S", Decimal("100.00"), "g", Decimal("0.01")) == (
        b"S S     100.00 g\r\n"
    )
    assert format_value(-0.00004, RES) == "    0.0000"  # never "-0.0000"
    assert format_value(-1.23456, RES) == "   -1.2346"
    assert format_value(12345678.9, RES) == "12345678.9000"  # wider: not cut


@given(st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False))
def test_quantize_rounds_to_the_nearest_digit(value: Decimal) -> None:
    q = quantize(value, RES)
    assert abs(q - value) <= RES / 2
    assert -q.as_tuple().exponent == 4  # type: ignore[operator]


@given(
    st.sampled_from(IMPLEMENTED),
    st.lists(st.from_regex(r"[A-Za-z0-9.\-]{1,8}", fullmatch=True), max_size=3),
)
def test_commands_round_trip(name: str, args: list[str]) -> None:
    line = encode_command(name, *args)
    assert line.endswith(b"\r\n")
    assert parse_command(line) == Command(name, tuple(args))


@given(
    st.sampled_from(["S", "T", "TI", "TA"]),
    st.sampled_from(["S", "D", "A"]),
    st.decimals(min_value=-220, max_value=220, places=4, allow_nan=False),
)
def test_weight_replies_round_trip(ident: str, status: str, value: Decimal) -> None:
    reply = decode_reply(weight_reply(ident, status, value, "g", RES))
    assert (reply.id, reply.status) == (ident, status)
    assert reply.weight() == (quantize(value, RES), "g")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"s\r\n", "ES"),  # commands are upper case
        (b"\r\n", "ES"),
        (b"S  1\r\n", "ES"),  # double space
        (b" S\r\n", "ES"),
        (b"S\xe9\r\n", "ET"),  # a byte that cannot have come through intact
        (b"S\x07\r\n", "ET"),
        (b"S" * (MAX_LINE + 1) + b"\r\n", "ET"),
    ],
)
def test_bad_command_lines_name_their_error(line: bytes, code: str) -> None:
    with pytest.raises(MtSicsCodecError) as info:
        parse_command(line)
    assert info.value.code == code


def test_longest_line_is_accepted() -> None:
    assert parse_command(b"A" * 6 + b" " + b"x" * (MAX_LINE - 7) + b"\r\n").name == "AAAAAA"


def test_replies_decode_quotes_and_general_errors() -> None:
    assert decode_reply(b'I2 A "SIM 220.0000 g"\r\n').fields == ("SIM 220.0000 g",)
    assert decode_reply(b'I1 A "01" "1.00" "1.00" "" ""\r\n').fields == (
        "01",
        "1.00",
        "1.00",
        "",
        "",
    )
    assert decode_reply(b"EL\r\n").is_general_error
    assert decode_reply(b"S +\r\n").status == "+"
    with pytest.raises(MtSicsCodecError):
        decode_reply(b"garbage\r\n")
    assert decimals_of(Decimal("0.01")) == 2 and decimals_of(Decimal("1")) == 0


def test_water_density_matches_the_cipm_table() -> None:
    assert water_density_g_ml(20.0) == pytest.approx(0.9982067, abs=1e-7)
    assert water_density_g_ml(25.0) == pytest.approx(0.9970470, abs=1e-7)
    assert water_density_g_ml(0.0) == pytest.approx(0.9998428, abs=1e-7)
    assert water_density_g_ml(40.0) > 0.99
    with pytest.raises(ValueError, match="0-40 C"):
        water_density_g_ml(40.01)


# --------------------------------------------------------------------- the balance
def balance(
    rate_ml_h: float = 0.0, *, noise: float = 0.0, **bench: float
) -> tuple[MtSicsBalanceSide, VirtualClock, BalanceModel]:
    clock = VirtualClock()
    spec = BalanceSpec(noise_sd_g=noise)
    model = BalanceModel(clock, ConstantFlow(clock, rate_ml_h), spec=spec, bench=Bench(**bench))  # type: ignore[arg-type]
    side = MtSicsBalanceSide(model, monotonic=lambda: 0.0)
    return side, clock, model


def ask(side: MtSicsBalanceSide, line: bytes) -> bytes:
    side.feed(line, 0.0)
    out = b""
    while (request := side.next_request()) is not None:
        out += side.handle(request, 0.0) or b""
    return out


def test_tare_the_beaker_then_weigh_the_water() -> None:
    side, clock, _ = balance(rate_ml_h=10.0)
    clock.advance(5.0)  # settled
    assert ask(side, b"Z\r\n") == b"Z +\r\n"  # a 60 g beaker is beyond the zero range
    assert ask(side, b"T\r\n") == b"T S    60.0139 g\r\n"  # 5 s of 10 mL/h is in it too
    clock.advance(3600.0)
    expected = quantize(10.0 * water_density_g_ml(20.0) * 3600 / 3600, RES)
    assert ask(side, b"S\r\n") == f"S S {expected:>10} g\r\n".encode()
    assert ask(side, b"TA\r\n") == b"TA A    60.0139 g\r\n"


def test_evaporation_takes_its_share() -> None:
    _, clock, model = balance(rate_ml_h=0.0, evaporation_mg_min=0.5)
    clock.advance(600.0)
    assert model.read().net_g == Decimal("59.9950")  # a 60 g beaker, 5 mg gone


def test_s_waits_for_stability_and_gives_up_with_s_i() -> None:
    side, clock, model = balance()
    clock.advance(5.0)
    model.apply_fault("no_stability")
    assert ask(side, b"S\r\n") == b""  # waiting
    assert ask(side, b"I4\r\n") == b""  # queued behind it
    clock.advance(9.9)
    assert side.poll(0.0) is None
    clock.advance(0.1)
    assert side.poll(0.0) == b'S I\r\nI4 A "0000000001"\r\n'
    assert ask(side, b"SI\r\n") == b"S D    60.0000 g\r\n"  # the empty 60 g beaker
    model.apply_fault("no_stability=off")
    assert ask(side, b"S\r\n") == b""  # settling after the fault cleared
    clock.advance(2.0)
    assert side.poll(0.0) == b"S S    60.0000 g\r\n"


def test_at_cancels_a_waiting_command() -> None:
    side, clock, model = balance()
    model.apply_fault("no_stability")
    assert ask(side, b"S\r\n") == b""
    assert ask(side, b"@\r\n") == b'I4 A "0000000001"\r\n'
    clock.advance(60.0)
    assert side.poll(0.0) is None


def test_overload_underload_and_a_bump() -> None:
    side, clock, model = balance()
    clock.advance(5.0)
    model.apply_fault("overload")
    assert ask(side, b"SI\r\n") == b"S +\r\n"
    assert ask(side, b"S\r\n") == b"S +\r\n"
    assert ask(side, b"T\r\n") == b"T +\r\n"
    model.apply_fault("overload=off")
    model.apply_fault("pan_off")
    assert ask(side, b"SI\r\n") == b"S -\r\n"
    assert ask(side, b"Z\r\n") == b"Z -\r\n"
    model.apply_fault("clear")
    clock.advance(5.0)
    assert ask(side, b"TAC\r\n") == b"TAC A\r\n"
    model.apply_fault("bump=0.5")
    clock.advance(0.01)
    reply = decode_reply(ask(side, b"SI\r\n"))
    assert reply.status == "D" and reply.weight()[0] > Decimal("0.4")  # shaken
    clock.advance(3.0)
    assert ask(side, b"SI\r\n") == b"S S    60.0000 g\r\n"  # the beaker is 60 g
    with pytest.raises(BalanceFaultError, match="unknown balance fault"):
        model.apply_fault("earthquake")


def test_identity_and_the_command_list() -> None:
    side, _, _ = balance()
    lines = ask(side, b"I0\r\n").split(b"\r\n")[:-1]
    assert len(lines) == len(IMPLEMENTED)
    assert lines[0] == b'I0 B 0 "@"' and lines[-1] == b'I0 A 1 "TI"'
    assert ask(side, b"I1\r\n") == b'I1 A "01" "1.00" "1.00" "" ""\r\n'
    assert ask(side, b"I2\r\n") == b'I2 A "PUMPCTL-SIM220 220.0000 g"\r\n'
    assert ask(side, b"I3\r\n") == b'I3 A "1.00 pumpctl"\r\n'
    assert ask(side, b"I4\r\n") == b'I4 A "0000000001"\r\n'


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"XYZ\r\n", b"ES\r\n"),
        (b"D hello\r\n", b"EL\r\n"),  # display text: known, not carried out
        (b"S 1\r\n", b"EL\r\n"),
        (b"TA 1.0 kg\r\n", b"TA L\r\n"),
        (b"TA 999 g\r\n", b"TA L\r\n"),  # beyond capacity
        (b"TA 220 g\r\n", b"TA A   220.0000 g\r\n"),  # exactly at capacity
        (b"TA x g\r\n", b"TA L\r\n"),
        (b"s\r\n", b"ES\r\n"),
        (b"S\xff\r\n", b"ET\r\n"),
    ],
)
def test_errors(line: bytes, reply: bytes) -> None:
    side, _, _ = balance()
    assert ask(side, line) == reply


def test_zero_immediately_and_tare_immediately_say_dynamic() -> None:
    side, clock, model = balance(rate_ml_h=0.0, beaker_g=1.0)
    clock.advance(5.0)
    model.apply_fault("no_stability")
    assert ask(side, b"ZI\r\n") == b"ZI D\r\n"
    assert ask(side, b"TI\r\n") == b"TI D     0.0000 g\r\n"


def test_sir_repeats_until_another_command() -> None:
    clock = VirtualClock()
    model = BalanceModel(clock, ConstantFlow(clock, 0.0), spec=BalanceSpec(noise_sd_g=0.0))
    t = [0.0]
    side = MtSicsBalanceSide(model, sir_period_s=0.1, monotonic=lambda: t[0])
    clock.advance(5.0)
    side.feed(b"SIR\r\n", 0.0)
    request = side.next_request()
    assert request is not None
    assert side.handle(request, 0.0) == b"S S    60.0000 g\r\n"
    assert side.poll(0.05) is None
    assert side.poll(0.1) == b"S S    60.0000 g\r\n"
    assert side.poll(0.2) == b"S S    60.0000 g\r\n"
    assert ask(side, b"I4\r\n") == b'I4 A "0000000001"\r\n'
    assert side.poll(0.5) is None


def test_the_balance_weighs_what_the_pump_really_delivered() -> None:
    from firmware_bridge.mechanics import Mechanics

    clock = VirtualClock()
    pump = SimulatedPump(clock, mechanics=Mechanics(slack_mm=0.25))
    model = BalanceModel(clock, pump, spec=BalanceSpec(noise_sd_g=0.0), bench=Bench(beaker_g=0))
    pump.set_rate(1.0)
    pump.start()
    clock.advance(400.0)  # still taking up the slack (500 s at 1 mL/h)
    assert model.read().net_g == 0
    clock.advance(3600.0)
    assert float(model.read().net_g) == pytest.approx(
        pump.delivered_ml() * water_density_g_ml(20.0), abs=1e-4
    )


def test_noise_is_a_function_of_seed_and_instant() -> None:
    def readings(seed: int) -> list[Decimal]:
        clock = VirtualClock()
        model = BalanceModel(clock, ConstantFlow(clock, 0.0), bench=Bench(seed=seed))
        out = []
        for _ in range(50):
            clock.advance(30.0)
            out.append(model.read().net_g)
        return out

    assert readings(1) == readings(1)
    assert readings(1) != readings(2)
    spread = max(readings(3)) - min(readings(3))
    assert Decimal("0.0001") <= spread <= Decimal("0.0010")
