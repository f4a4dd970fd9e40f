"""Driver-level timings for ``pumpctl bench``, run as a child process.

The benchmarks room never imports ``drivers.pumps`` (only the safety process touches what
can deliver a drug, docs/architecture.md), so the figures that are about the drivers
themselves are measured here, in a process of their own started by the benchmark, against
an emulator process the benchmark also started; this prints one JSON object.

``python -m drivers.pumps.timing line --protocol P --port WHERE --addresses 0,1,2,3
--commands N --baud B``: four (or any number of) drivers on one ``SharedLine``; each
command is a ``set_rate`` (the set and its read-back) on the next pump in turn, with the
rate alternating so every set changes the pump. Reported per command: the latency, and
the bytes it put on the wire both ways (counted by a transport wrapper), so the caller can
compute the wire time at the line's real speed as the same-run baseline.

``python -m drivers.pumps.timing harvard-pair --port WHERE --repetitions N``: a rate set
plus a status read with our Harvard driver, then the same with a public third-party
client (python-syringe-pump, a test dependency: when it is not installed the output says
so instead of a figure), on the same emulator, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from drivers.lines import LineSpec, SharedLine, open_line
from drivers.pumps.base import PumpDriver
from drivers.pumps.harvard import HarvardDriver
from drivers.pumps.modbus import ModbusDriver
from drivers.pumps.modbus_link import ModbusLink
from drivers.pumps.ne1000 import Ne1000Driver
from drivers.transport import Ambiguous, FrameEnd, SerialTransport, ToCome, Transport
from firmware_bridge.syringes import DEFAULT_SYRINGE, syringe_by_name

RATES = (4.0, 5.0)
#: our drivers' reply deadline here: long enough never to be the figure
REPLY_TIMEOUT_S = 1.0


class CountingTransport:
    """A ``Transport`` that counts the bytes of every exchange (requests and replies)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.bytes = 0

    @property
    def lock(self) -> AbstractContextManager[Any]:
        return self.inner.lock

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def ensure_open(self) -> bool:
        return self.inner.ensure_open()

    def exchange(
        self,
        request: bytes,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        reply = self.inner.exchange(
            request,
            frame_end=frame_end,
            timeout_s=timeout_s,
            settle_s=settle_s,
            ambiguous=ambiguous,
            to_come=to_come,
        )
        self.bytes += len(request) + len(reply)
        return reply

    def read_frame(
        self,
        *,
        frame_end: FrameEnd,
        timeout_s: float,
        settle_s: float = 0.0,
        ambiguous: Ambiguous | None = None,
        to_come: ToCome | None = None,
    ) -> bytes:
        frame = self.inner.read_frame(
            frame_end=frame_end,
            timeout_s=timeout_s,
            settle_s=settle_s,
            ambiguous=ambiguous,
            to_come=to_come,
        )
        self.bytes += len(frame)
        return frame

    def drain(self) -> bytes:
        return self.inner.drain()


class CountingLink(ModbusLink):
    """A Modbus link that counts the bytes of every exchange, framing included (RTU: the
    address and the CRC, 3 bytes a frame; TCP: the 7-byte MBAP header)."""

    def __init__(self, inner: ModbusLink, overhead: int) -> None:
        self.inner = inner
        self.overhead = overhead
        self.where = inner.where
        self.bytes = 0

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    @property
    def opens(self) -> int:  # type: ignore[override]
        return self.inner.opens

    def open(self) -> None:
        self.inner.open()

    def reopen(self) -> None:
        self.inner.reopen()

    def close(self) -> None:
        self.inner.close()

    def transact(
        self, pdu: bytes, unit: int | None = None, timeout_s: float | None = None
    ) -> bytes:
        reply = self.inner.transact(pdu, unit, timeout_s)
        self.bytes += len(pdu) + len(reply) + 2 * self.overhead
        return reply


def _drivers(
    protocol: str, line: SharedLine, addresses: Sequence[int], map_path: str | None
) -> list[PumpDriver]:
    if protocol == "ne1000":
        return [
            Ne1000Driver(
                line=line, address=a, safe_mode_timeout_s=30, reply_timeout_s=REPLY_TIMEOUT_S
            )
            for a in addresses
        ]
    if protocol == "harvard":
        return [
            HarvardDriver(line=line, address=a, reply_timeout_s=REPLY_TIMEOUT_S) for a in addresses
        ]
    return [
        ModbusDriver(line=line, device_id=a, map_path=map_path, timeout_s=REPLY_TIMEOUT_S)
        for a in addresses
    ]


def measure_line(
    protocol: str,
    port: str,
    addresses: Sequence[int],
    commands: int,
    *,
    baud: int,
    parity: str = "N",
    map_path: str | None = None,
) -> dict[str, object]:
    """Latencies (s) and wire bytes of ``commands`` rate sets spread over the pumps."""
    kind = "tcp" if protocol == "modbus" and ":" in port and not port.startswith("/") else "serial"
    spec = LineSpec.model_validate({"kind": kind, "port": port, "baud": baud, "parity": parity})
    counter: CountingTransport | None = None
    if protocol != "modbus":
        counter = CountingTransport(
            SerialTransport(spec.url, baudrate=baud, parity=parity, dirty_quiet_s=REPLY_TIMEOUT_S)
        )
    line = open_line(spec, transport=counter)
    drivers = _drivers(protocol, line, addresses, map_path)
    links: CountingLink | None = None
    if protocol == "modbus":
        links = CountingLink(line.modbus_link(REPLY_TIMEOUT_S), 7 if kind == "tcp" else 3)
        for driver in drivers:
            assert isinstance(driver, ModbusDriver)
            driver._link = links  # the driver's own link slot: count what it sends
    syringe = syringe_by_name(DEFAULT_SYRINGE)
    samples: list[float] = []
    wire_bytes: list[int] = []
    try:
        for driver in drivers:
            driver.connect()
            driver.configure_syringe(syringe)
            driver.set_rate(driver.quantize_rate(RATES[0]))
        for i in range(commands):
            driver = drivers[i % len(drivers)]
            rate = driver.quantize_rate(RATES[(i // len(drivers) + 1) % 2])
            meter: CountingTransport | CountingLink | None = counter or links
            before = meter.bytes if meter is not None else 0
            started = time.perf_counter()
            driver.set_rate(rate)
            samples.append(time.perf_counter() - started)
            wire_bytes.append((meter.bytes - before) if meter is not None else 0)
    finally:
        for driver in drivers:
            driver.close()
    return {
        "protocol": protocol,
        "pumps": len(drivers),
        "samples_s": samples,
        "wire_bytes": wire_bytes,
        "exchanges_per_command": 2,
    }


def measure_harvard_pair(port: str, repetitions: int) -> dict[str, object]:
    """A rate set plus a status read: our driver, then python-syringe-pump."""
    ours: list[float] = []
    driver = HarvardDriver(port=port, reply_timeout_s=REPLY_TIMEOUT_S)
    driver.connect()
    try:
        driver.configure_syringe(syringe_by_name(DEFAULT_SYRINGE))
        for i in range(repetitions):
            started = time.perf_counter()
            driver.set_rate(RATES[i % 2])
            driver.read_status()
            ours.append(time.perf_counter() - started)
    finally:
        driver.close()
    result: dict[str, object] = {"ours_s": ours, "client": "python-syringe-pump 0.2.1"}
    try:
        theirs = asyncio.run(_client_pair(port, repetitions))
    except ImportError as exc:
        result["client_error"] = (
            f"python-syringe-pump is not installed ({exc}); it is a test dependency: "
            "pip install '.[test]'"
        )
    else:
        result["client_s"] = theirs
    return result


async def _client_pair(port: str, repetitions: int) -> list[float]:
    import aioserial  # noqa: PLC0415 - a test dependency, only for this comparison
    from quantiphy import Quantity  # noqa: PLC0415
    from syringe_pump.rate import Rate  # noqa: PLC0415
    from syringe_pump.serial_interface import PumpSerial  # noqa: PLC0415

    serial = aioserial.AioSerial(port=port, baudrate=115200, timeout=REPLY_TIMEOUT_S)
    samples: list[float] = []
    try:
        client = PumpSerial(serial)
        await client._initialise()  # poll on: every reply ends with XON
        rate = Rate(pump=client, letter="i")
        for i in range(repetitions):
            started = time.perf_counter()
            await rate.set(Quantity(f"{RATES[i % 2] / 60:g} ml/min"))
            await client._write("status", error_state_ok=True)
            samples.append(time.perf_counter() - started)
        # leave the pump as found: the reply to "poll off" ends without XON, so it is
        # written and its reply dropped rather than awaited through the client
        await serial.write_async(b"poll off\r")
        await asyncio.sleep(0.05)
        serial.reset_input_buffer()
    finally:
        serial.close()
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.pumps.timing")
    sub = parser.add_subparsers(dest="what", required=True)
    line = sub.add_parser("line")
    line.add_argument("--protocol", choices=("ne1000", "harvard", "modbus"), required=True)
    line.add_argument("--port", required=True)
    line.add_argument("--addresses", default="0,1,2,3")
    line.add_argument("--commands", type=int, default=100)
    line.add_argument("--baud", type=int, default=19200)
    line.add_argument("--parity", default="N")
    line.add_argument("--map", default=None)
    pair = sub.add_parser("harvard-pair")
    pair.add_argument("--port", required=True)
    pair.add_argument("--repetitions", type=int, default=50)
    ns = parser.parse_args(argv)
    if ns.what == "line":
        addresses = [int(a) for a in ns.addresses.split(",")]
        out = measure_line(
            ns.protocol,
            ns.port,
            addresses,
            ns.commands,
            baud=ns.baud,
            parity=ns.parity,
            map_path=ns.map,
        )
    else:
        out = measure_harvard_pair(ns.port, ns.repetitions)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
