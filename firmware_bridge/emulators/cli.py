"""``emulate ne1000|harvard|modbus``: serve the simulated pump on a pty, port or socket.

The first line on stdout is where to connect (a pty path or link, a device, or
``host:port``), flushed at once, so a parent process can read one line and connect; every
frame on the wire is logged on the lines after it. Runs until SIGINT or SIGTERM. Bad
arguments print one line naming the option and what it accepts, and exit with status 2.

Also reachable as ``python -m firmware_bridge.emulators ...``; an optional leading
``emulate`` word is accepted so ``pumpctl`` can pass its arguments through unchanged.

Several pumps on one line: ``--address`` given more than once (or ``--addresses 0,1,2``)
serves one simulated pump per address on the same pty, port or socket, each with its own
physics, syringe state and ground truth (NE-1000 addresses on one RS-232 line, a Harvard
pump chain, Modbus device ids on one RTU line or unit ids behind one TCP server). Their
truth logs go to ``--truth-log DIR`` (one ``pump-<address>.jsonl`` each) or to a path with
``{address}`` in it; one control channel serves them all and names the pump by address
(``firmware_bridge.emulators.control.LineControlChannel``).

``--container bag-500ml`` (with ``modbus --map peristaltic``) makes the pump volumetric: a
bag instead of a syringe, with air-in-line, upstream occlusion and door sensors (faults
``air_in_line``, ``upstream_occlusion``, ``door_open``). ``--faults patient_line=off``
starts with the line not connected to the patient: what it delivers (a prime) is waste.

``--mechanics`` gives the pump a real mechanism (slack, compliance lag, lead-screw ripple,
bore error; ``firmware_bridge.mechanics``). ``--balance-pty`` serves an MT-SICS balance on a
second pty, in this process, weighing what this pump delivers (``firmware_bridge.balance``);
its pty is announced on a line ``balance at PATH`` after the first line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import NoReturn

from firmware_bridge.balance.serve import (
    BalanceControl,
    BalanceSpecError,
    parse_balance_settings,
    serve_balance,
)
from firmware_bridge.clock import Clock, clock_from_spec
from firmware_bridge.emulators.bus import PumpBus
from firmware_bridge.emulators.control import (
    Answerer,
    ControlChannel,
    ControlError,
    ControlServer,
    LineControlChannel,
)
from firmware_bridge.emulators.endpoints import (
    Endpoint,
    PtyEndpoint,
    SerialPortEndpoint,
    TcpEndpoint,
)
from firmware_bridge.emulators.handler import WireHandler
from firmware_bridge.emulators.pacing import MAX_PACE_BAUD, MIN_PACE_BAUD
from firmware_bridge.emulators.patient_monitor import PatientMonitor
from firmware_bridge.emulators.serial_line import SerialLine
from firmware_bridge.emulators.syringe_match import syringe_for_bore
from firmware_bridge.emulators.truth_log import TruthLogWriter
from firmware_bridge.faults import WIRE_FAULTS, FaultSpecError, WireFaults, apply_faults
from firmware_bridge.harvard.emulator import HarvardFramer, HarvardPumpSide
from firmware_bridge.mechanics import Mechanics, MechanicsSpecError, parse_mechanics
from firmware_bridge.ne1000.emulator import Ne1000Framer, Ne1000PumpSide
from firmware_bridge.patient.spec import PatientSpec, parse_patient_spec
from firmware_bridge.pump_model import SimulatedPump
from firmware_bridge.syringes import BAGS, DEFAULT_SYRINGE, Container, syringe_by_name

PROTOCOLS = ("ne1000", "harvard", "modbus")
BAUDS = {
    "ne1000": (300, 1200, 2400, 9600, 19200),
    "harvard": (9600, 19200, 38400, 57600, 115200),
    "modbus": (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200),
}
DEFAULT_BAUD = {"ne1000": 19200, "harvard": 115200, "modbus": 19200}


class UsageError(Exception):
    """A bad command line; the message is the one line shown to the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog="emulate",
        description="Serve the simulated pump over a wire protocol.",
        add_help=True,
        exit_on_error=False,
    )
    p.add_argument("protocol", choices=PROTOCOLS, help="wire protocol to speak")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a new pty (default)")
    where.add_argument("--port", metavar="DEV", help="serve on a real serial port")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on a TCP socket")
    p.add_argument("--link", metavar="PATH", help="with --pty: a stable symlink to the pty")
    p.add_argument(
        "--address",
        type=int,
        action="append",
        help="pump address (0-99; Modbus device id 1-247); repeat for several pumps on the line",
    )
    p.add_argument(
        "--addresses",
        metavar="LIST",
        help="several pumps on one line, e.g. '0,1,2,3' (same as repeating --address)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--syringe", metavar="NAME", help="syringe from the catalogue")
    which.add_argument("--diameter", type=float, metavar="MM", help="syringe inner diameter")
    which.add_argument(
        "--container",
        metavar="BAG",
        help="modbus with a peristaltic map: a volumetric pump holding this bag "
        "(bag-250ml, bag-500ml, bag-1000ml)",
    )
    p.add_argument("--volume", type=float, metavar="ML", help="volume loaded in the syringe")
    p.add_argument("--baud", type=int, help="baud rate")
    p.add_argument(
        "--pace-baud",
        type=int,
        metavar="N",
        help="ne1000/harvard: write replies at N baud (8N1) instead of at once, after the "
        "request's own wire time (benchmarks against the wire time); off by default",
    )
    p.add_argument("--faults", metavar="SPEC", help="faults at start, e.g. 'delay=0.2,stall'")
    p.add_argument("--control", metavar="SOCKETPATH", help="runtime control channel socket")
    p.add_argument(
        "--truth-log",
        metavar="PATH",
        help="ground-truth JSON-lines log; with several pumps a directory (pump-<address>.jsonl "
        "each) or a path containing {address}",
    )
    p.add_argument("--clock", metavar="SPEC", default="real", help="real | scaled:SCALE:ORIGIN")
    p.add_argument("--map", metavar="PATH", help="Modbus register map (TOML)")
    p.add_argument(
        "--patient",
        metavar="SPEC",
        help="a simulated patient on this pump's delivered flow, e.g. "
        "'seed=7,sensitivity=0.5,condition=wandering' (docs/closed-loop.md); its monitor "
        "is served with --monitor-tcp, or on a pty (--monitor-pty, the default)",
    )
    monitor = p.add_mutually_exclusive_group()
    monitor.add_argument("--monitor-tcp", metavar="HOST:PORT", help="serve the monitor on TCP")
    monitor.add_argument("--monitor-pty", action="store_true", help="serve the monitor on a pty")
    p.add_argument(
        "--ignore-first-command",
        action="store_true",
        help="ignore the first command after start and after each power cycle",
    )
    p.add_argument(
        "--mechanics",
        metavar="SPEC",
        help="the pump's mechanism: ideal (default), typical, or name=value changes, e.g. "
        "'typical,bore_error=0.0075' (slack_mm, tau_s, ripple, pitch_mm, bore_error, primed)",
    )
    p.add_argument(
        "--balance-pty",
        action="store_true",
        help="ne1000/harvard: also serve an MT-SICS balance on a pty, weighing this pump's "
        "delivered fluid (announced as 'balance at PATH')",
    )
    p.add_argument("--balance-link", metavar="PATH", help="a stable symlink to the balance's pty")
    p.add_argument(
        "--balance",
        metavar="SETTINGS",
        default="",
        help="balance settings: temperature_c, evaporation_mg_min, beaker_g, seed, noise_mg, "
        "settle_s, capacity_g (e.g. 'temperature_c=22,evaporation_mg_min=0.02')",
    )
    p.add_argument(
        "--balance-faults",
        metavar="SPEC",
        default="",
        help="balance faults at start: no_stability, overload, pan_off, bump[=G]",
    )
    p.add_argument(
        "--balance-control", metavar="SOCKETPATH", help="the balance's runtime control socket"
    )
    return p


def _parse_tcp(text: str, option: str = "--tcp") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise UsageError(f"{option}: expected HOST:PORT with PORT 0-65535, got {text!r}")
    return host, int(port)


def _syringe(ns: argparse.Namespace) -> Container:
    if ns.container is not None:
        if ns.protocol != "modbus":
            raise UsageError(
                f"--container: the {ns.protocol} emulator is a syringe pump; a bag is for a "
                "volumetric pump (modbus --map peristaltic)"
            )
        if ns.container not in BAGS:
            raise UsageError(
                f"--container: unknown bag {ns.container!r}; known: {', '.join(sorted(BAGS))}"
            )
        if ns.mechanics:
            raise UsageError("--mechanics: a syringe driver's mechanism; not with --container")
        return BAGS[ns.container]
    if ns.syringe is not None:
        try:
            return syringe_by_name(ns.syringe)
        except ValueError as exc:
            raise UsageError(f"--syringe: {exc}") from None
    default = syringe_by_name(DEFAULT_SYRINGE)
    if ns.diameter is not None:
        if not (0.1 <= ns.diameter <= 50.0):
            raise UsageError(f"--diameter: must be 0.1-50 mm, got {ns.diameter}")
        return syringe_for_bore(ns.diameter, default)
    return default


def addresses(ns: argparse.Namespace) -> list[int | None]:
    """The addresses asked for, in order: ``[None]`` for one pump at the default address."""
    found: list[int] = list(ns.address or [])
    if ns.addresses:
        for part in ns.addresses.split(","):
            text = part.strip()
            if not (text.isascii() and text.isdigit()):
                raise UsageError(
                    f"--addresses: expected numbers separated by commas, e.g. 0,1,2; got {part!r}"
                )
            found.append(int(text))
    return list(found) or [None]


def _validate(ns: argparse.Namespace) -> None:
    proto: str = ns.protocol
    wanted = addresses(ns)
    low, high = (1, 247) if proto == "modbus" else (0, 99)
    for address in wanted:
        if address is not None and not (low <= address <= high):
            raise UsageError(f"--address: {proto} addresses are {low}-{high}, got {address}")
    if len(set(wanted)) != len(wanted):
        raise UsageError(f"--address: each pump on a line needs its own address, got {wanted}")
    if len(wanted) > 1 and ns.balance_pty:
        raise UsageError("--balance-pty: weighs one pump; serve one address with it")
    if len(wanted) > 1 and ns.patient is not None:
        raise UsageError("--patient: one patient on one pump; serve one address with it")
    if ns.baud is not None and ns.baud not in BAUDS[proto]:
        allowed = ", ".join(str(b) for b in BAUDS[proto])
        raise UsageError(f"--baud: {proto} supports {allowed}; got {ns.baud}")
    if ns.pace_baud is not None:
        if proto == "modbus":
            raise UsageError("--pace-baud: only the ne1000 and harvard emulators pace replies")
        if not (MIN_PACE_BAUD <= ns.pace_baud <= MAX_PACE_BAUD):
            raise UsageError(
                f"--pace-baud: must be {MIN_PACE_BAUD}-{MAX_PACE_BAUD} bits/s, got {ns.pace_baud}"
            )
    if ns.map is not None and proto != "modbus":
        raise UsageError("--map: only the modbus emulator takes a register map")
    if ns.link is not None and (ns.port or ns.tcp or proto == "modbus"):
        raise UsageError("--link: only with --pty for ne1000 or harvard")
    if ns.volume is not None and not (ns.volume >= 0):
        raise UsageError(f"--volume: must be >= 0 mL, got {ns.volume}")
    if ns.tcp is not None:
        _parse_tcp(ns.tcp)
    balance_only = [
        name
        for name, value in (
            ("--balance-link", ns.balance_link),
            ("--balance", ns.balance),
            ("--balance-faults", ns.balance_faults),
            ("--balance-control", ns.balance_control),
        )
        if value
    ]
    if balance_only and not ns.balance_pty:
        raise UsageError(f"{balance_only[0]}: only with --balance-pty")
    if ns.balance_pty:
        if proto == "modbus":
            raise UsageError("--balance-pty: only beside the ne1000 and harvard emulators")
        try:
            parse_balance_settings(ns.balance)
        except BalanceSpecError as exc:
            raise UsageError(str(exc)) from None
    if (ns.monitor_tcp or ns.monitor_pty) and ns.patient is None:
        raise UsageError("--monitor-tcp/--monitor-pty: the monitor needs a --patient")
    if ns.patient is not None and ns.monitor_tcp is not None:
        _parse_tcp(ns.monitor_tcp, "--monitor-tcp")


class FirstLine:
    """Keeps the "first line is where to connect" promise even if a server logs before it
    announces: lines logged earlier are held back and printed right after the announcement."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._announced = False
        self._held: list[str] = []

    def announce(self, where: str) -> None:
        with self._lock:
            if self._announced:
                return
            self._announced = True
            self._out(where)
            for line in self._held:
                self._out(line)
            self._held.clear()

    def log(self, line: str) -> None:
        with self._lock:
            if self._announced:
                self._out(line)
            else:
                self._held.append(line)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "emulate":
        args = args[1:]
    if any(a in ("-h", "--help") for a in args):
        _parser().print_help()
        return 0
    try:
        ns = _parser().parse_args(args)
        _validate(ns)
        syringe = _syringe(ns)
        try:
            clock = clock_from_spec(ns.clock)
        except ValueError as exc:
            raise UsageError(f"--clock: {exc}") from None
        try:
            mechanics = parse_mechanics(ns.mechanics) if ns.mechanics else None
        except MechanicsSpecError as exc:
            raise UsageError(f"--mechanics: {exc}") from None
        patient_spec = _patient_spec(ns)
    except (UsageError, argparse.ArgumentError) as exc:
        print(f"emulate: error: {exc}", file=sys.stderr)
        return 2

    def out(line: str) -> None:
        print(line, flush=True)

    stop = threading.Event()
    with _Releases() as release:
        release.callback(_install_signals(stop))
        code = _serve(ns, stop, out, release, clock, syringe, mechanics, patient_spec)
    return 1 if release.failed and code == 0 else code


def _serve(
    ns: argparse.Namespace,
    stop: threading.Event,
    out: Callable[[str], None],
    release: _Releases,
    clock: Clock,
    syringe: Container,
    mechanics: Mechanics | None,
    patient_spec: PatientSpec | None,
) -> int:
    """Make the pumps and serve them until ``stop``; each resource made is registered
    with ``release`` as it is made."""
    wanted = addresses(ns)
    pumps: dict[int | None, SimulatedPump] = {}
    for address in wanted:
        path = _truth_path(ns.truth_log, address, several=len(wanted) > 1)
        try:
            truth = TruthLogWriter(path) if path else None
        except OSError as exc:
            print(f"emulate: error: --truth-log: cannot write {path}: {exc}", file=sys.stderr)
            return 2
        if truth is not None:
            release.add(f"the truth log {path}", truth.close)
        try:
            pumps[address] = _make_pump(ns, clock, syringe, truth, mechanics)
        except ValueError as exc:
            print(f"emulate: error: --volume: {exc}", file=sys.stderr)
            return 2
    pump = next(iter(pumps.values()))
    wire = WireFaults()
    if ns.faults:
        try:
            _apply_start_faults(ns.faults, list(pumps.values()), wire)
        except FaultSpecError as exc:
            print(f"emulate: error: --faults: {exc}", file=sys.stderr)
            return 2
    if ns.protocol == "modbus":
        patient = None if patient_spec is None else (patient_spec, clock)
        return _run_modbus(ns, pumps, wire, stop, out, release, patient)

    handler = _handler(ns, pumps)
    endpoint = _endpoint(ns)
    line = SerialLine(handler, endpoint, wire, log=out, pace_baud=ns.pace_baud)
    try:
        endpoint.open()
    except Exception as exc:  # OSError, ValueError, or pyserial's SerialException
        print(f"emulate: error: cannot open {endpoint.name}: {exc}", file=sys.stderr)
        return 1
    release.add(endpoint.name, endpoint.shutdown)
    out(endpoint.name)
    if ns.balance_pty:
        try:
            balance = serve_balance(
                clock,
                pump,
                settings=ns.balance,
                faults=ns.balance_faults,
                link=ns.balance_link,
                log=lambda text: out(f"balance {text}"),
            )
        except (ValueError, OSError) as exc:
            print(f"emulate: error: --balance-pty: {exc}", file=sys.stderr)
            return 2
        release.add("the balance", balance.stop)
        out(f"balance at {balance.where}")
        if ns.balance_control:
            weighing = BalanceControl(balance.model, balance.wire)
            if not _serve_control("--balance-control", ns.balance_control, weighing, release):
                return 2
            out(f"balance control channel at {ns.balance_control}")
    if patient_spec is not None:
        monitor = _serve_monitor(ns, patient_spec, pump, clock, out, release)
        if monitor is None:
            return 1
        out(f"monitor at {monitor.where}")
    if ns.control:
        answers = _control_channel(pumps, wire, line.describe)
        if not _serve_control("--control", ns.control, answers, release):
            return 2
        out(f"control channel at {ns.control}")
    line.serve(stop)
    return 0


def _patient_spec(ns: argparse.Namespace) -> PatientSpec | None:
    if ns.patient is None:
        return None
    try:
        return parse_patient_spec(ns.patient)
    except ValueError as exc:
        raise UsageError(f"--patient: {exc}") from None


def _monitor_endpoint(ns: argparse.Namespace) -> Endpoint:
    if ns.monitor_tcp:
        host, port = _parse_tcp(ns.monitor_tcp, "--monitor-tcp")
        return TcpEndpoint(host, port)
    return PtyEndpoint()


def _make_pump(
    ns: argparse.Namespace,
    clock: Clock,
    syringe: Container,
    truth: TruthLogWriter | None,
    mechanics: Mechanics | None = None,
) -> SimulatedPump:
    # building the model is switching the pump on: with --ignore-first-command the first
    # command after start is ignored, and so is the first after each power_cycle fault
    return SimulatedPump(
        clock,
        syringe,
        loaded_volume_ml=ns.volume,
        ignore_first_command_after_power_up=ns.ignore_first_command,
        truth_sink=truth,
        mechanics=mechanics,
    )


def _apply_start_faults(specs: str, pumps: list[SimulatedPump], wire: WireFaults) -> None:
    """Wire faults act once, on the line; pump faults on every pump of the line."""
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        name = spec.partition("=")[0].strip().lower().replace("-", "_")
        if name in WIRE_FAULTS or name == "clear":
            apply_faults(spec, pumps[0], wire)
        for pump in pumps if name not in WIRE_FAULTS else []:
            apply_faults(spec, pump, None if name != "clear" else wire)


def _truth_path(path: str | None, address: int | None, *, several: bool) -> str | None:
    """Where one pump's truth log goes (see the module docstring)."""
    if path is None or not several:
        return path
    if "{address}" in path:
        return path.replace("{address}", str(address))
    os.makedirs(path, exist_ok=True)
    return os.path.join(path, f"pump-{address}.jsonl")


def _control_channel(
    pumps: Mapping[int | None, SimulatedPump] | Mapping[int, SimulatedPump],
    wire: WireFaults,
    describe: Callable[[], dict[str, object]] | None = None,
) -> Answerer:
    if len(pumps) == 1:
        return ControlChannel(next(iter(pumps.values())), wire, describe)
    return LineControlChannel({a: p for a, p in pumps.items() if a is not None}, wire, describe)


def _handler(ns: argparse.Namespace, pumps: dict[int | None, SimulatedPump]) -> WireHandler:
    baud = ns.baud or DEFAULT_BAUD["harvard"]
    sides: list[Ne1000PumpSide] | list[HarvardPumpSide]
    if ns.protocol == "ne1000":
        sides = [Ne1000PumpSide(p, address=a or 0) for a, p in pumps.items()]
        if len(sides) == 1:
            return sides[0]
        return PumpBus(sides, Ne1000Framer())
    sides = [HarvardPumpSide(p, address=a or 0, baud=baud) for a, p in pumps.items()]
    if len(sides) == 1:
        return sides[0]
    return PumpBus(sides, HarvardFramer())


def _endpoint(ns: argparse.Namespace) -> Endpoint:
    if ns.port:
        return SerialPortEndpoint(ns.port, ns.baud or DEFAULT_BAUD[ns.protocol])
    if ns.tcp:
        host, port = _parse_tcp(ns.tcp)
        return TcpEndpoint(host, port)
    return PtyEndpoint(link=ns.link)


def _serve_control(option: str, path: str, answers: Answerer, release: _Releases) -> bool:
    """A control channel at ``path`` (for ``option``), released on the way out; False
    (said) when it cannot be served."""
    try:
        control = ControlServer(path, answers)
        control.start()
    except (ControlError, OSError) as exc:
        print(f"emulate: error: {option}: {exc}", file=sys.stderr)
        return False
    release.add(f"the control channel at {path}", control.close)
    return True


def _serve_monitor(
    ns: argparse.Namespace,
    spec: PatientSpec,
    pump: SimulatedPump,
    clock: Clock,
    log: Callable[[str], None],
    release: _Releases,
) -> PatientMonitor | None:
    """The patient's monitor on ``pump``, released on the way out; None (said) when it
    cannot be served."""
    monitor = PatientMonitor(spec, pump, clock, _monitor_endpoint(ns), log=log)
    try:
        monitor.start()
    except OSError as exc:
        print(f"emulate: error: cannot serve the monitor: {exc}", file=sys.stderr)
        return None
    release.add("the monitor", monitor.stop)
    return monitor


class _Releases(contextlib.ExitStack):
    """What the emulator made, released on the way out in the reverse order of making.
    One that will not be released (a thread that does not stop) is said, not raised: the
    rest are released too, nothing ends in a traceback, and ``failed`` names it (the
    emulator's exit code then says so)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[str] = []

    def add(self, what: str, release: Callable[[], None]) -> None:
        self.callback(self._quietly, what, release)

    def _quietly(self, what: str, release: Callable[[], None]) -> None:
        try:
            release()
        except Exception as exc:
            print(f"emulate: error: {what} was not released cleanly: {exc}", file=sys.stderr)
            self.failed.append(what)


def _run_modbus(
    ns: argparse.Namespace,
    pumps: dict[int | None, SimulatedPump],
    wire: WireFaults,
    stop: threading.Event,
    out: Callable[[str], None],
    release: _Releases,
    patient: tuple[PatientSpec, Clock] | None = None,
) -> int:
    """Hand over to the Modbus helper's server; the control channel and the patient's
    monitor are served here (each registered with ``release`` once made), and nothing is
    printed before the server's announcement (it must be the first line)."""
    try:
        # lazy: pymodbus is loaded only when a Modbus pump is emulated
        from firmware_bridge.modbus.emulator import (  # noqa: PLC0415
            ModbusEmulatorError,
            serve_modbus,
        )
        from firmware_bridge.modbus.register_map import (  # noqa: PLC0415
            RegisterMapError,
            load_register_map,
            resolve_map_path,
        )
    except ImportError as exc:
        print(f"emulate: error: the modbus emulator is not available: {exc}", file=sys.stderr)
        return 1
    try:
        register_map = load_register_map(resolve_map_path(ns.map))
    except (RegisterMapError, OSError) as exc:
        print(f"emulate: error: --map: {exc}", file=sys.stderr)
        return 2
    if ns.container is not None and register_map.device.kind.value != "peristaltic":
        print(
            f"emulate: error: --container: the map {register_map.device.model!r} is a "
            "syringe pump's; a bag needs a volumetric pump's map (--map peristaltic)",
            file=sys.stderr,
        )
        return 2
    # the map's [link] says which unit the pump answers as (DULCO flex: 20); --address wins
    devices = {(register_map.link.device_id if a is None else a): p for a, p in pumps.items()}
    first = FirstLine(out)
    if ns.control:
        answers = _control_channel({**devices}, wire)
        if not _serve_control("--control", ns.control, answers, release):
            return 2
    if patient is not None:
        spec, clock = patient
        # on the pump of the one address served (--patient allows no more)
        monitor = _serve_monitor(ns, spec, next(iter(devices.values())), clock, first.log, release)
        if monitor is None:
            return 1
        first.log(f"monitor at {monitor.where}")  # printed after the server's announcement
    try:
        serve_modbus(
            devices,
            wire,
            map_path=ns.map,
            tcp=_parse_tcp(ns.tcp) if ns.tcp else None,
            serial_port=ns.port,
            use_pty=not (ns.tcp or ns.port),
            baud=ns.baud or register_map.link.baud,
            announce=first.announce,
            log=first.log,
            stop=stop,
        )
    except ModbusEmulatorError as exc:
        print(f"emulate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _install_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop``; returns a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, previous in old.items():
            signal.signal(sig, previous)

    return restore
