"""A Modbus pump on the wire: pymodbus serves ``SimulatedPump`` through a register map.

Modbus TCP on a socket, Modbus RTU on a pty or a real serial port. What reaches the pump
physics goes through ``device.PumpRegisters`` (reads from the model's snapshot, writes
act on the model, refusals become exception replies); this module deals with the wire:
addressing, wire faults, the comms-timeout watchdog tick and logging.

How pymodbus 3.16 is used, and why:

- the datastore is a ``ModbusServerContext`` subclass whose ``async_getValues`` /
  ``async_setValues`` call ``PumpRegisters``. pymodbus 3.16 accepts such a context
  through its "old simulator" path (``context.old_simulator``) and hands it the function
  code, address and values of each request; its newer ``SimDevice`` model keeps its own
  register store, which would let reads drift from the physics.
- each connection's request handler is our ``ServerRequestHandler`` subclass. It queues
  every decoded request and answers them one at a time (pymodbus would run them as
  concurrent tasks sharing one ``last_pdu``, which mixes up replies once a reply is
  delayed), and it builds and sends each reply itself so wire faults apply per request.

Wire faults (``firmware_bridge.faults.WireFaults``), consumed once per request addressed
to this pump:

- drop: not executed, no reply. silent: same, for as long as it is on.
- lose_ack: executed, reply discarded.
- corrupt: executed, one reply byte flipped. On RTU a payload byte (the CRC then fails,
  as with line noise). On TCP there is no checksum and TCP's own makes a flipped payload
  bit practically impossible, so we flip the MBAP protocol identifier instead: a framing
  error any client can detect (pymodbus' client, which waits for more bytes, sees a
  timeout).
- delay: the reply leaves ``delay`` seconds (real time) later; later requests wait.
- garbage: not executed, 8-16 random bytes come back.
- disconnect: TCP: every client connection is closed (the listener stays, so a client
  can reconnect). pty: the pty closes and a new one appears behind the same path (a USB
  adapter pulled and plugged back). Real serial port: a serial line has no hang-up, so we
  approximate with 1 s of silence.

A pump set to ignore the first command after power-up
(``SimulatedPump.ignore_first_command_after_power_up``) lets that request go unanswered
and unexecuted, whatever its function.

Addressing: one emulator may serve several pumps, each at its own device id (several
drives on one RS-485 line, or units behind one Modbus TCP gateway); each has its own
physics, registers and comms watchdog (fed only by requests addressed to it). RTU answers
its device ids only; broadcasts (address 0) are executed by every pump without a reply and
other addresses are ignored, as on a shared RS-485 line. TCP answers its unit ids, and
255 when it serves a single pump (Modbus Messaging on TCP/IP v1.0b: 0xFF for a directly
reached device); another unit id gets exception 0B, as from a gateway without that
device.
Only the data functions 1, 2, 3, 4, 5, 6, 15, 16, 22, 23 and Read Device Identification
(43 with MEI type 14) are served; any other function gets exception 01 ILLEGAL FUNCTION.
The identification reply is built by our own codec (``frames.device_id_reply``, from the
map's ``[device]`` table through ``device.PumpRegisters.identification``), not by
pymodbus, whose answer is one process-wide identity for every device it serves; pymodbus
only frames it, and third-party clients check it from the other side.
Approximation: on RTU a function code pymodbus does not know at all cannot be framed (its
length is unknown), so it goes unanswered as line noise would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.transaction import TransactionManager

from firmware_bridge.faults import ReplyAction, WireFaults
from firmware_bridge.modbus.device import PumpRegisters
from firmware_bridge.modbus.frames import (
    ExceptionCode,
    FrameError,
    device_id_reply,
    parse_device_id_request,
)
from firmware_bridge.modbus.pty_line import PtyLine, PtyTransport
from firmware_bridge.modbus.register_map import (
    RegisterMap,
    RegisterMapError,
    Table,
    load_register_map,
    resolve_map_path,
)
from firmware_bridge.pump_model import SimulatedPump

#: function code -> the table it addresses
_FC_TABLE: dict[int, Table] = {
    1: Table.COIL,
    5: Table.COIL,
    15: Table.COIL,
    2: Table.DISCRETE_INPUT,
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    22: Table.HOLDING,
    23: Table.HOLDING,
    4: Table.INPUT,
}
SUPPORTED_FUNCTIONS = frozenset(_FC_TABLE)
TCP_DIRECT_UNIT = 0xFF
#: how often the watchdog, the stop flag and disconnect requests are looked at
_TICK_S = 0.02
#: a "disconnect" on a real serial port: this long without replies
_SERIAL_DISCONNECT_SILENCE_S = 1.0


class ModbusEmulatorError(RuntimeError):
    """The emulator could not start (bad arguments, port in use, serial port missing)."""


@dataclass
class _Emulation:
    """What every connection of one emulator shares."""

    devices: dict[int, PumpRegisters]
    wire: WireFaults
    is_tcp: bool
    log: Callable[[str], None]
    context: _PumpContext = field(init=False)
    handlers: set[_PumpHandler] = field(default_factory=set)
    mute_until: float = 0.0  # liveness time; a real serial port's "disconnect"

    def __post_init__(self) -> None:
        self.context = _PumpContext(self.devices)

    def unit(self, unit: int) -> int | None:
        """The device id a request's unit reaches (TCP 255: the only pump), or None."""
        if unit in self.devices:
            return unit
        if self.is_tcp and unit == TCP_DIRECT_UNIT and len(self.devices) == 1:
            return next(iter(self.devices))
        return None


class _PumpContext(ModbusServerContext):
    """The datastore pymodbus reads and writes: the pumps' registers, nothing stored."""

    def __init__(self, devices: dict[int, PumpRegisters]) -> None:  # no super(): no store
        self.old_simulator = True  # pymodbus 3.16 then uses this object as it is
        self.simdevices = []
        self.devices = devices
        self._echo: tuple[int, int, int, list[int] | list[bool]] | None = None

    async def async_getValues(  # noqa: N802 - pymodbus' name
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        regs = self.devices.get(device_id)
        if regs is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code in (5, 6) and self._echo and self._echo[:3] == (device_id, func_code, address):
            # a single write is answered with an echo of the request (MODBUS v1.1b3,
            # 6.5/6.6), not with what the register reads afterwards (a command coil
            # reads 0 again at once)
            return self._echo[3]
        table = _FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        result: list[int] | list[bool] | ExceptionCode
        if table.is_bit:
            result = regs.read_bits(table, address, count)
        else:
            result = regs.read_registers(table, address, count)
        return ExcCodes(int(result)) if isinstance(result, ExceptionCode) else result

    async def async_setValues(  # noqa: N802 - pymodbus' name
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        self._echo = None
        regs = self.devices.get(device_id)
        if regs is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        table = _FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if table.is_bit:
            result = regs.write_bits(table, address, [bool(v) for v in values])
        else:
            result = regs.write_registers(table, address, [int(v) for v in values])
        if result is not None:
            return ExcCodes(int(result))
        if func_code in (5, 6):
            echo: list[int] | list[bool] = (
                [bool(v) for v in values] if func_code == 5 else [int(v) for v in values]
            )
            self._echo = (device_id, func_code, address, echo)
        return None

    def device_ids(self) -> list[int]:
        return [0]


def _describe(pdu: ModbusPDU) -> str:
    parts = [f"dev={pdu.dev_id}", f"fc={pdu.function_code:#04x}", type(pdu).__name__]
    for name in ("address", "count", "registers", "bits", "exception_code"):
        value = getattr(pdu, name, None)
        if name in ("count", "exception_code") and not value:
            continue
        if value not in (None, []):
            if name == "bits":
                value = [int(b) for b in value]
            parts.append(f"{name}={value}")
    return " ".join(parts)


class _CodecReply(ModbusPDU):
    """A reply PDU our own codec built (``firmware_bridge.modbus.frames``): pymodbus only
    puts it in its frame."""

    def __init__(self, pdu: bytes) -> None:
        super().__init__()
        self.function_code = pdu[0]
        self.body = pdu[1:]

    def encode(self) -> bytes:
        return self.body


@dataclass(frozen=True)
class _Undecodable:
    """A frame with a function code pymodbus cannot decode: answered with 01."""

    function_code: int
    dev_id: int
    transaction_id: int


class _PumpHandler(ServerRequestHandler):
    """One client connection (TCP) or the serial line (RTU)."""

    def __init__(self, owner: _ServerMixin) -> None:
        super().__init__(owner, None, None, None)  # type: ignore[no-untyped-call]
        self._emu = owner.emulation
        self._queue: asyncio.Queue[tuple[ModbusPDU | _Undecodable, tuple[str, int] | None]]
        self._queue = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ connection
    def callback_connected(self) -> None:
        super().callback_connected()
        self._emu.handlers.add(self)
        self._worker = self.loop.create_task(self._serve())
        self._emu.log("link: client connected" if self._emu.is_tcp else "link: line open")

    def callback_disconnected(self, exc: Exception | None) -> None:
        super().callback_disconnected(exc)
        self._forget()
        self._emu.log(f"link: client disconnected ({exc or 'closed'})")

    def _forget(self) -> None:
        self._emu.handlers.discard(self)
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None

    def drop(self) -> None:
        """Disconnect fault: close this connection now."""
        self._forget()
        self.close()

    # ------------------------------------------------------------ receiving
    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        try:
            used = TransactionManager.callback_data(self, data, addr)
        except ModbusIOException as exc:
            # pymodbus does not say which function it could not decode; the spec wants
            # it back with 0x80 set, so read it from the frame (MBAP: byte 7, RTU: byte 1)
            pos = 7 if self._emu.is_tcp else 1
            fcode = exc.fcode if exc.fcode is not None else (data[pos] if len(data) > pos else 0)
            dev_id = exc.dev_id or 0
            tid = exc.transaction_id or 0
            self._queue.put_nowait((_Undecodable(fcode, dev_id, tid), addr))
            return len(data)
        if self.last_pdu is not None:
            self._queue.put_nowait((self.last_pdu, self.last_addr))
        return int(used)

    async def _serve(self) -> None:
        while True:
            pdu, addr = await self._queue.get()
            try:
                await self._answer(pdu, addr)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one request kill the line
                self._emu.log(f"error: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ answering
    async def _answer(self, pdu: ModbusPDU | _Undecodable, addr: tuple[str, int] | None) -> None:
        emu = self._emu
        unit = pdu.dev_id
        broadcast = not emu.is_tcp and unit == 0
        target = emu.unit(unit)
        gateway_miss = emu.is_tcp and target is None
        if isinstance(pdu, _Undecodable):
            what = f"dev={unit} fc={pdu.function_code:#04x} (unknown function)"
        else:
            what = f"{self._request_hex(pdu)}  {_describe(pdu)}"
        if not emu.is_tcp and target is None and not broadcast:
            emu.log(f"rx {what}  -> no pump at this address on the line, ignored")
            return
        emu.log(f"rx {what}")
        if time.monotonic() < emu.mute_until:
            emu.log("fault disconnect: line dead, no reply")
            return
        action = emu.wire.next_action()
        if action in (ReplyAction.DROP_REQUEST, ReplyAction.SILENT):
            emu.log(f"fault {action.value}: not executed, no reply")
            return
        if action is ReplyAction.GARBAGE:
            junk = os.urandom(8 + os.urandom(1)[0] % 9)
            emu.log(f"fault garbage: not executed, tx {junk.hex(' ')}")
            self.send(junk, addr)
            return

        reached = list(emu.devices) if broadcast else [] if target is None else [target]
        if any(emu.devices[d].pump.consume_ignored_command() for d in reached):
            emu.log("ignored: the first command after power-up (pump setting)")
            return
        if broadcast:
            for device in reached:
                await self._execute(pdu, False, device)
                emu.devices[device].note_request()
            emu.log("broadcast: executed by every pump, no reply")
            return
        response = await self._execute(pdu, gateway_miss, target)
        if target is not None:
            emu.devices[target].note_request()
        response.transaction_id = pdu.transaction_id
        response.dev_id = unit
        frame = self.framer.buildFrame(response)
        if action is ReplyAction.LOSE_ACK:
            emu.log(f"fault lose_ack: executed, reply {frame.hex(' ')} discarded")
            return
        if action is ReplyAction.CORRUPT:
            frame = _corrupt(frame, emu.is_tcp)
            emu.log("fault corrupt: one reply byte flipped")
        delay = emu.wire.delay_s
        if delay > 0:
            emu.log(f"fault delay: reply held {delay:g} s")
            await asyncio.sleep(delay)
        if not self.transport:
            emu.log("reply not sent: the link closed meanwhile")
            return
        self.send(frame, addr)
        emu.log(f"tx {frame.hex(' ')}  {_describe(response)}")

    async def _execute(
        self, pdu: ModbusPDU | _Undecodable, gateway_miss: bool, device: int | None
    ) -> ModbusPDU:
        if isinstance(pdu, ReadDeviceInformationRequest):
            return self._identification(pdu, gateway_miss, device)
        if isinstance(pdu, _Undecodable) or pdu.function_code not in SUPPORTED_FUNCTIONS:
            return ExceptionResponse(pdu.function_code & 0x7F, ExcCodes.ILLEGAL_FUNCTION)
        if gateway_miss or device is None:
            return ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        try:
            response: ModbusPDU = await pdu.datastore_update(self._emu.context, device)
        except Exception as exc:
            self._emu.log(f"error: {type(exc).__name__}: {exc}; answering 04")
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        return response

    def _identification(
        self, pdu: ReadDeviceInformationRequest, gateway_miss: bool, device: int | None
    ) -> ModbusPDU:
        """Read Device Identification: the request re-read and the reply built by our
        codec, from the device's map (``PumpRegisters.identification``)."""
        fc = pdu.function_code
        if gateway_miss or device is None:
            return ExceptionResponse(fc, ExcCodes.GATEWAY_NO_RESPONSE)
        try:
            request = parse_device_id_request(bytes([fc]) + pdu.encode())
        except FrameError:
            return ExceptionResponse(fc, ExcCodes.ILLEGAL_VALUE)
        answer = self._emu.devices[device].identification(request)
        if isinstance(answer, ExceptionCode):
            return ExceptionResponse(fc, ExcCodes(int(answer)))
        return _CodecReply(device_id_reply(answer))

    def _request_hex(self, pdu: ModbusPDU) -> str:
        try:
            return bytes(self.framer.buildFrame(pdu)).hex(" ")
        except Exception:
            return "(not re-encodable)"


def _corrupt(frame: bytes, is_tcp: bool) -> bytes:
    data = bytearray(frame)
    if is_tcp:
        data[2] ^= 0x01  # MBAP protocol identifier: must be 0
    else:
        data[len(data) - 3] ^= 0x01  # last PDU byte before the CRC
    return bytes(data)


class _ServerMixin(ModbusBaseServer):
    emulation: _Emulation

    def callback_new_connection(self) -> _PumpHandler:
        return _PumpHandler(self)


class _TcpServer(_ServerMixin, ModbusTcpServer):
    pass


class _SerialServer(_ServerMixin, ModbusSerialServer):
    pass


# ---------------------------------------------------------------------- entry point
def serve_modbus(
    pump: SimulatedPump | Mapping[int, SimulatedPump],
    wire: WireFaults,
    *,
    map_path: str | None,
    tcp: tuple[str, int] | None,
    serial_port: str | None,
    use_pty: bool,
    device_id: int | None = None,
    baud: int,
    announce: Callable[[str], None],
    log: Callable[[str], None],
    stop: threading.Event,
    liveness: Callable[[], float] = time.monotonic,
) -> None:
    """Serve ``pump`` until ``stop`` is set.

    ``pump`` is one pump (at ``device_id``, default the map's) or a mapping of device id to
    pump, several pumps on one line. Exactly one of ``tcp=(host, port)`` (port 0: any free
    port), ``serial_port`` or ``use_pty``. ``announce`` is called once with where to
    connect ("host:port" or a device path); ``log`` with every request, reply and fault.
    ``liveness``: the clock the comms-timeout watchdog reads (real monotonic time; a test
    passes a virtual one). Blocks, so run it in a thread; everything it opened is closed
    when it returns. Anything that prevents serving (arguments, register map, port in use)
    raises ``ModbusEmulatorError`` with a message for the operator.
    """
    chosen = [tcp is not None, serial_port is not None, bool(use_pty)]
    if sum(chosen) != 1:
        raise ModbusEmulatorError(
            "serve_modbus needs exactly one of tcp=(host, port), serial_port=PATH, use_pty=True"
        )
    try:
        regmap = load_register_map(resolve_map_path(map_path))
    except (RegisterMapError, ValueError) as exc:
        raise ModbusEmulatorError(str(exc)) from exc
    if isinstance(pump, SimulatedPump):
        pumps = {regmap.link.device_id if device_id is None else device_id: pump}
    else:
        pumps = dict(pump)
    if not pumps:
        raise ModbusEmulatorError("serve_modbus needs at least one pump")
    for unit in pumps:
        if not 1 <= unit <= 247:
            raise ModbusEmulatorError(f"Modbus device id must be 1-247, got {unit}")
    if tcp is not None and not 0 <= tcp[1] <= 65535:
        raise ModbusEmulatorError(f"TCP port must be 0-65535, got {tcp[1]}")
    if serial_port is not None and baud <= 0:
        raise ModbusEmulatorError(f"baud must be positive, got {baud}")
    asyncio.run(
        _serve(
            pumps,
            wire=wire,
            regmap=regmap,
            tcp=tcp,
            serial_port=serial_port,
            baud=baud,
            announce=announce,
            log=log,
            stop=stop,
            liveness=liveness,
        )
    )


async def _serve(
    pumps: dict[int, SimulatedPump],
    *,
    wire: WireFaults,
    regmap: RegisterMap,
    tcp: tuple[str, int] | None,
    serial_port: str | None,
    baud: int,
    announce: Callable[[str], None],
    log: Callable[[str], None],
    stop: threading.Event,
    liveness: Callable[[], float],
) -> None:
    devices = {unit: PumpRegisters(pump, regmap, liveness=liveness) for unit, pump in pumps.items()}
    emu = _Emulation(devices, wire, tcp is not None, log)
    line: PtyLine | None = None
    pty_transport: PtyTransport | None = None
    server: _TcpServer | _SerialServer
    loop = asyncio.get_running_loop()
    try:
        if tcp is not None:
            server = _TcpServer(emu.context, address=tcp)
            server.emulation = emu
            await _listen(server, f"TCP {tcp[0]}:{tcp[1]}")
            sock = server.transport.sockets[0]  # type: ignore[attr-defined]
            port = sock.getsockname()[1]
            host = tcp[0] or "0.0.0.0"
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        elif serial_port is not None:
            parity = regmap.link.parity
            if _is_pty(serial_port) and parity != "N":
                # a Linux pty refuses re-applied parity settings (EINVAL) and has no
                # parity bits to carry anyway (e.g. a socat pty pair)
                log(f"{serial_port} is a pseudo-terminal: parity {parity} not applied")
                parity = "N"
            server = _SerialServer(
                emu.context,
                port=serial_port,
                baudrate=baud,
                parity=parity,
                stopbits=regmap.link.stop_bits,
                bytesize=8,
            )
            server.emulation = emu
            await _listen(server, f"serial port {serial_port}")
            where = serial_port
        else:
            line = PtyLine()
            server = _SerialServer(emu.context, port="")
            server.emulation = emu
            the_line = line

            async def create_pty() -> tuple[PtyTransport, asyncio.BaseProtocol]:
                nonlocal pty_transport
                protocol = server.handle_new_connection()
                pty_transport = PtyTransport(loop, the_line, protocol)
                pty_transport.start()
                return pty_transport, protocol

            server.call_create = create_pty
            await _listen(server, "pty")
            where = line.path
        announce(where)
        log(
            f"modbus {'TCP' if emu.is_tcp else 'RTU'} emulator: {regmap.device.model}, "
            f"device id(s) {', '.join(str(u) for u in devices)}, at {where}"
        )
        while not stop.is_set():
            await asyncio.sleep(_TICK_S)
            for unit, regs in devices.items():
                if regs.check_watchdog():
                    log(
                        f"comms timeout: device {unit} heard nothing for "
                        f"{regs.comms_timeout_s:g} s, pump stopped"
                    )
            if wire.take_disconnect():
                _disconnect(emu, pty_transport, serial_port is not None)
    finally:
        with contextlib.suppress(NameError):
            await server.shutdown()  # type: ignore[no-untyped-call]
            if ModbusBaseServer.active_server is server:
                ModbusBaseServer.active_server = None
        if pty_transport is not None:
            pty_transport.close()
        if line is not None:
            line.close()
        for _ in range(3):  # let closed transports release their sockets
            await asyncio.sleep(0)


async def _listen(server: ModbusBaseServer, what: str) -> None:
    try:
        await server.serve_forever(background=True)
    except Exception as exc:  # pyserial and termios errors are not all OSErrors
        raise ModbusEmulatorError(f"cannot serve Modbus on {what}: {exc}") from None


def _is_pty(path: str) -> bool:
    real = os.path.realpath(path)
    return real.startswith("/dev/pts/") or real.startswith("/dev/pty")


def _disconnect(emu: _Emulation, pty_transport: PtyTransport | None, real_serial: bool) -> None:
    if pty_transport is not None:
        pty_transport.reopen()
        for handler in list(emu.handlers):
            handler.recv_buffer = b""
        emu.log("fault disconnect: pty closed, a new one appears at the same path")
    elif real_serial:
        emu.mute_until = time.monotonic() + _SERIAL_DISCONNECT_SILENCE_S
        emu.log(f"fault disconnect: serial line silent for {_SERIAL_DISCONNECT_SILENCE_S:g} s")
    else:
        handlers = list(emu.handlers)
        for handler in handlers:
            handler.drop()
        emu.log(f"fault disconnect: {len(handlers)} TCP connection(s) closed")


# ---------------------------------------------------------------------- background use
class BackgroundEmulator:
    """``serve_modbus`` in a thread, for tests and in-process rigs.

    ``with BackgroundEmulator(pump, wire, tcp=("127.0.0.1", 0)) as emu:`` starts it and
    waits for the announcement (``emu.where``); leaving the block stops it and joins the
    thread, so its socket or pty is released. An error while starting is re-raised here.
    """

    def __init__(
        self,
        pump: SimulatedPump | Mapping[int, SimulatedPump],
        wire: WireFaults | None = None,
        *,
        map_path: str | None = None,
        tcp: tuple[str, int] | None = None,
        serial_port: str | None = None,
        use_pty: bool = False,
        device_id: int = 1,
        baud: int = 19200,
        log: Callable[[str], None] | None = None,
        start_timeout_s: float = 10.0,
        liveness: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pump = pump
        self.wire = wire if wire is not None else WireFaults()
        self.lines: list[str] = []
        self.where = ""
        self._log = log
        self._kwargs = {
            "map_path": map_path,
            "tcp": tcp,
            "serial_port": serial_port,
            "use_pty": use_pty,
            "device_id": device_id,
            "baud": baud,
            "liveness": liveness,
        }
        self._start_timeout_s = start_timeout_s
        self._stop = threading.Event()
        self._announced = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _record(self, line: str) -> None:
        self.lines.append(line)
        if self._log is not None:
            self._log(line)

    def _announce(self, where: str) -> None:
        self.where = where
        self._announced.set()

    def _run(self) -> None:
        try:
            serve_modbus(
                self.pump,
                self.wire,
                announce=self._announce,
                log=self._record,
                stop=self._stop,
                **self._kwargs,  # type: ignore[arg-type]
            )
        except BaseException as exc:
            self._error = exc
        finally:
            self._announced.set()

    def start(self) -> BackgroundEmulator:
        self._thread = threading.Thread(target=self._run, name="modbus-emulator", daemon=True)
        self._thread.start()
        if not self._announced.wait(self._start_timeout_s):
            self.stop()
            raise ModbusEmulatorError("Modbus emulator did not start in time")
        if self._error is not None:
            self.stop()
            raise self._error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise ModbusEmulatorError("Modbus emulator thread did not stop")
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def host_port(self) -> tuple[str, int]:
        """For a TCP emulator: the announced host and port."""
        host, _, port = self.where.rpartition(":")
        return host.strip("[]"), int(port)

    def __enter__(self) -> BackgroundEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
