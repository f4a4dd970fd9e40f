"""The MT-SICS balance driver: byte-exact against a script, then back to back against the
balance emulator over a real pty, and the emulator against a third-party MT-SICS client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from drivers.balances import (
    BalanceDisconnected,
    BalanceIdentity,
    BalanceNotReady,
    BalanceOverload,
    BalanceProtocolError,
    BalanceRejected,
    BalanceTimeout,
    BalanceUnderload,
    WeightReading,
    known_balances,
    load_balance,
)
from drivers.balances.mtsics import MtSicsBalance
from drivers.loading import DriverOptionError, UnknownDriverError
from drivers.testing import DISCONNECT, ScriptedTransport, Step
from firmware_bridge.balance.emulator import MtSicsBalanceSide
from firmware_bridge.balance.physics import BalanceModel, BalanceSpec, Bench
from firmware_bridge.balance.water import water_density_g_ml
from firmware_bridge.clock import ScaledClock, VirtualClock
from firmware_bridge.emulators.background import BackgroundLine
from firmware_bridge.faults import WireFaults
from firmware_bridge.pump_model import SimulatedPump

HELLO: Step = (b"@\r\n", b'I4 A "0123456789"\r\n')


@contextlib.contextmanager
def scripted(steps: list[Step], **options: float) -> Iterator[MtSicsBalance]:
    transport = ScriptedTransport([HELLO, *steps])
    balance = MtSicsBalance(port="scripted", transport=transport, **options)  # type: ignore[arg-type]
    balance.connect()
    yield balance
    transport.assert_finished()


def test_identity() -> None:
    with scripted(
        [
            (b"I2\r\n", b'I2 A "XS205 220.0000 g"\r\n'),
            (b"I3\r\n", b'I3 A "2.10 10.28.0.493.142"\r\n'),
            (b"I4\r\n", b'I4 A "0123456789"\r\n'),
        ]
    ) as balance:
        assert balance.identify() == BalanceIdentity(
            "XS205", "0123456789", "2.10 10.28.0.493.142", Decimal("220.0000")
        )


def test_weights_stable_and_immediate() -> None:
    with scripted(
        [
            (b"S\r\n", b"S S     12.3456 g\r\n"),
            (b"SI\r\n", b"S D     -0.0012 g\r\n"),
        ]
    ) as balance:
        assert balance.read_stable() == WeightReading(Decimal("12.3456"), True)
        assert balance.read_immediate() == WeightReading(Decimal("-0.0012"), False)


def test_stable_read_waits_longer_than_a_plain_reply() -> None:
    transport = ScriptedTransport(
        [HELLO, (b"S\r\n", b"S S 1.0000 g\r\n"), (b"SI\r\n", b"S S 1.0000 g\r\n")]
    )
    balance = MtSicsBalance(port="x", transport=transport, reply_timeout_s=0.5, stable_timeout_s=12)
    balance.connect()
    balance.read_stable()
    balance.read_immediate()
    assert transport.timeouts == [0.5, 12, 0.5]


def test_zero_and_tare() -> None:
    with scripted(
        [
            (b"Z\r\n", b"Z A\r\n"),
            (b"ZI\r\n", b"ZI D\r\n"),
            (b"T\r\n", b"T S     60.0123 g\r\n"),
            (b"TI\r\n", b"TI D     60.0124 g\r\n"),
            (b"TA\r\n", b"TA A     60.0124 g\r\n"),
            (b"TAC\r\n", b"TAC A\r\n"),
        ]
    ) as balance:
        balance.zero()
        balance.zero(immediate=True)
        assert balance.tare() == Decimal("60.0123")
        assert balance.tare(immediate=True) == Decimal("60.0124")
        assert balance.tare_value() == Decimal("60.0124")
        balance.clear_tare()


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (b"S I\r\n", BalanceNotReady, "no stability"),
        (b"S +\r\n", BalanceOverload, "overload"),
        (b"S -\r\n", BalanceUnderload, "pan in place"),
        (b"ES\r\n", BalanceRejected, "syntax error"),
        (b"ET\r\n", BalanceRejected, "transmission error"),
        (b"EL\r\n", BalanceRejected, "logical error"),
        (b"S S 1.0000 kg\r\n", BalanceProtocolError, "set its unit to g"),
        (b"S A\r\n", BalanceProtocolError, "unexpected answer S A"),
        (b"S S\r\n", BalanceProtocolError, "expected 'value unit'"),
        (b"\x01\x02\r\n", BalanceProtocolError, "unreadable answer"),
        (None, BalanceTimeout, "no complete reply"),
        (DISCONNECT, BalanceDisconnected, "vanished"),
    ],
)
def test_answers_become_typed_errors_with_the_reason(
    reply: bytes | None, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words), scripted([(b"S\r\n", reply)]) as balance:
        balance.read_stable()


def test_lines_of_another_command_are_skipped() -> None:
    with scripted([(b"SI\r\n", b'I4 A "x"\r\nS S      1.0000 g\r\n')]) as balance:
        assert balance.read_immediate().grams == Decimal("1.0000")


def test_options_are_checked_at_the_limits() -> None:
    assert MtSicsBalance(
        port="x", reply_timeout_s=30, stable_timeout_s=120, transport=ScriptedTransport([])
    )
    for bad, words in [
        ({"baud": 9601}, "baud must be one of"),
        ({"reply_timeout_s": 30.001}, "reply_timeout_s"),
        ({"stable_timeout_s": 0}, "stable_timeout_s"),
    ]:
        with pytest.raises(ValueError, match=words):
            MtSicsBalance(port="x", **bad)  # type: ignore[arg-type]


def test_registry_is_lazy_and_checks_options() -> None:
    assert known_balances() == ("mtsics",)
    balance = load_balance("mtsics", port="/dev/null-balance", baud=9600)
    assert isinstance(balance, MtSicsBalance)
    with pytest.raises(UnknownDriverError, match="known: mtsics"):
        load_balance("sartorius")
    with pytest.raises(DriverOptionError, match="unknown option"):
        load_balance("mtsics", port="x", baudrate=9600)


def test_a_port_that_cannot_open_is_disconnected(tmp_path: Path) -> None:
    with pytest.raises(BalanceDisconnected, match="cannot open"):
        MtSicsBalance(port=str(tmp_path / "no-such-tty")).connect()


# --------------------------------------------------------------------- back to back
@contextlib.contextmanager
def emulated(
    clock: VirtualClock | ScaledClock, pump: SimulatedPump, **spec: float
) -> Iterator[tuple[MtSicsBalance, BalanceModel]]:
    model = BalanceModel(clock, pump, spec=BalanceSpec(**spec), bench=Bench(seed=7))  # type: ignore[arg-type]
    with BackgroundLine(MtSicsBalanceSide(model), WireFaults()) as line:
        balance = MtSicsBalance(port=line.where, reply_timeout_s=0.5, stable_timeout_s=3.0)
        balance.connect()
        try:
            yield balance, model
        finally:
            balance.close()


def test_back_to_back_weighs_the_delivered_water() -> None:
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    with emulated(clock, pump) as (balance, model):
        assert balance.identify().capacity_g == Decimal("220.0000")
        clock.advance(5.0)
        assert balance.tare() == pytest.approx(Decimal(60), abs=Decimal("0.0005"))
        pump.set_rate(6.0)
        pump.start()
        clock.advance(600.0)
        reading = balance.read_stable()
        assert reading.stable
        assert float(reading.grams) == pytest.approx(1.0 * water_density_g_ml(20.0), abs=5e-4)
        model.apply_fault("overload")
        with pytest.raises(BalanceOverload):
            balance.read_immediate()
        model.apply_fault("clear")
        model.apply_fault("pan_off")
        with pytest.raises(BalanceUnderload):
            balance.zero()
        with pytest.raises(BalanceRejected, match="EL"):
            balance._ask("D")


def test_back_to_back_no_stability_times_out_on_the_balance() -> None:
    clock = ScaledClock.starting_now(100.0)  # the balance's 10 s time-out passes in 0.1 s
    pump = SimulatedPump(clock)
    with emulated(clock, pump) as (balance, model):
        model.apply_fault("no_stability")
        with pytest.raises(BalanceNotReady, match="S I"):
            balance.read_stable()
        assert balance.read_immediate().stable is False


# --------------------------------------------------------------------- a third-party client
@pytest.mark.hil
def test_the_emulator_answers_a_third_party_mtsics_client() -> None:
    """Janelia's ``mettler_toledo_device`` (written against real XS balances) reads
    identity, weights and zero results from our balance emulator on a pty."""
    mettler = pytest.importorskip("mettler_toledo_device")
    clock = VirtualClock()
    pump = SimulatedPump(clock)
    model = BalanceModel(clock, pump, spec=BalanceSpec(noise_sd_g=0.0), bench=Bench(beaker_g=1.0))
    with BackgroundLine(MtSicsBalanceSide(model), WireFaults()) as line:
        clock.advance(5.0)
        device = mettler.MettlerToledoDevice(port=line.where)  # sleeps 2 s, as for a real one
        try:
            assert device.get_serial_number() == "0000000001"
            assert device.get_balance_data() == ["PUMPCTL-SIM220", "220.0000", "g"]
            assert device.get_software_version() == ["1.00", "pumpctl"]
            assert device.get_weight() == [1.0, "g", "S"]
            assert device.zero() == "S"  # ZI within the zero range, stable
            clock.advance(5.0)
            pump.set_rate(60.0)
            pump.start()
            clock.advance(60.0)
            value, unit = device.get_weight_stable()
            assert unit == "g" and value == pytest.approx(water_density_g_ml(20.0), abs=2e-4)
            model.apply_fault("overload")
            with pytest.raises(mettler.MettlerToledoError, match="overload"):
                device.get_weight()
        finally:
            device.close()
