"""A running emulator's control channel: switch faults and read the truth while it serves.

A Unix-domain socket speaking JSON lines, one request and one answer per line:

- ``{"fault": "occlusion=on"}`` or ``{"faults": "stall,delay=0.2"}`` -> ``{"ok": true}``
  or ``{"ok": false, "error": "unknown fault 'x'; known: ..."}`` (fault words as in
  ``firmware_bridge.faults.apply_fault``);
- ``{"query": "state"}`` -> ``{"ok": true, "pump": {...snapshot...}, "wire": {...}}``.

Several pumps on one line (``emulate ... --address 0 --address 1``) share one channel
(``LineControlChannel``): a message for one pump names it, ``{"address": 1, "fault":
"occlusion"}`` or ``{"address": 1, "query": "state"}``; without an address a wire fault
acts on the line, a pump fault is refused (which pump?), and ``{"query": "state"}``
answers ``{"ok": true, "pumps": {"0": {...}, "1": {...}}, "wire": {...}}``.

It exists so the hardware-in-the-loop suite (another process) can occlude the line or
pull the cable in the middle of an infusion, and look at what the pump really did, without
going through the very protocol under test. ``send_control`` is the client side.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Any, Protocol

from firmware_bridge.faults import FaultSpecError, WireFaults, apply_faults
from firmware_bridge.pump_model import PumpSnapshot, SimulatedPump
from firmware_bridge.syringes import Syringe

#: Unix socket paths longer than this do not fit ``sockaddr_un`` on Linux
MAX_SOCKET_PATH = 107
MAX_LINE = 64 * 1024


class ControlError(RuntimeError):
    """The control channel could not be reached or answered nonsense."""


def snapshot_to_json(snap: PumpSnapshot) -> dict[str, object]:
    s = snap.container
    container: dict[str, object] = {
        "name": s.name,
        "volume_ml": s.volume_ml,
        "min_rate_ml_h": s.min_rate_ml_h,
        "max_rate_ml_h": s.max_rate_ml_h,
    }
    if isinstance(s, Syringe):
        container["inner_diameter_mm"] = s.inner_diameter_mm
    return {
        "time": snap.time,
        "running": snap.running,
        "direction": snap.direction.value,
        "set_rate_ml_h": snap.set_rate_ml_h,
        "plunger_rate_ml_h": snap.plunger_rate_ml_h,
        "delivered_rate_ml_h": snap.delivered_rate_ml_h,
        "infused_ml": snap.infused_ml,
        "withdrawn_ml": snap.withdrawn_ml,
        "remaining_ml": snap.remaining_ml,
        "pressure_mmhg": snap.pressure_mmhg,
        "alarms": sorted(a.value for a in snap.alarms),
        "near_empty": snap.near_empty,
        "target_reached": snap.target_reached,
        "kind": snap.kind,
        "priming": snap.priming,
        "line_connected": snap.line_connected,
        "wasted_ml": snap.wasted_ml,
        "door_open": snap.door_open,
        # "syringe" kept for readers of earlier versions; a bag has no inner diameter
        "syringe": container,
        "container": container,
    }


class Answerer(Protocol):
    """Whatever answers control messages (a pump's ``ControlChannel``, a balance's)."""

    def answer(self, message: object) -> dict[str, object]: ...


class ControlChannel:
    """Answers control messages for one pump and its wire (either may be absent)."""

    def __init__(
        self,
        pump: SimulatedPump | None,
        wire: WireFaults | None,
        describe_wire: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self._pump = pump
        self._wire = wire
        self._describe_wire = describe_wire

    def answer(self, message: object) -> dict[str, object]:
        """The reply to one decoded message; never raises."""
        if not isinstance(message, dict):
            return _fail('a control message is a JSON object, e.g. {"fault": "stall"}')
        try:
            if "fault" in message or "faults" in message:
                spec = message.get("fault", message.get("faults"))
                if not isinstance(spec, str):
                    return _fail("'fault' must be a string such as \"occlusion=on\"")
                apply_faults(spec, self._pump, self._wire)
                return {"ok": True}
            if "query" in message:
                if message["query"] != "state":
                    return _fail(f"unknown query {message['query']!r}; known: 'state'")
                return {
                    "ok": True,
                    "pump": None if self._pump is None else snapshot_to_json(self._pump.snapshot()),
                    "wire": self._wire_state(),
                }
        except FaultSpecError as exc:
            return _fail(str(exc))
        except Exception as exc:  # a control request must never take the emulator down
            return _fail(f"{type(exc).__name__}: {exc}")
        return _fail("expected a 'fault', 'faults' or 'query' key")

    def _wire_state(self) -> dict[str, object] | None:
        if self._describe_wire is not None:
            return self._describe_wire()
        if self._wire is None:
            return None
        state = self._wire.state()
        return {
            "drop_next": state.drop_next,
            "lose_ack_next": state.lose_ack_next,
            "corrupt_next": state.corrupt_next,
            "delay_s": state.delay_s,
            "garbage": state.garbage,
            "silent": state.silent,
        }


class LineControlChannel:
    """The control channel of several pumps on one line (see the module docstring)."""

    def __init__(
        self,
        pumps: dict[int, SimulatedPump],
        wire: WireFaults | None,
        describe_wire: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self._pumps = dict(pumps)
        self._wire = wire
        self._line = ControlChannel(None, wire, describe_wire)
        self._each = {a: ControlChannel(p, wire, describe_wire) for a, p in self._pumps.items()}

    def answer(self, message: object) -> dict[str, object]:
        if not isinstance(message, dict):
            return _fail(
                'a control message is a JSON object, e.g. {"address": 1, "fault": "stall"}'
            )
        if "address" in message:
            address = message["address"]
            channel = self._each.get(address) if isinstance(address, int) else None
            if channel is None:
                known = ", ".join(str(a) for a in sorted(self._each))
                return _fail(f"no pump at address {address!r} on this line; addresses: {known}")
            rest = {k: v for k, v in message.items() if k != "address"}
            return channel.answer(rest)
        if "query" in message:
            if message["query"] != "state":
                return _fail(f"unknown query {message['query']!r}; known: 'state'")
            return {
                "ok": True,
                "pumps": {str(a): snapshot_to_json(p.snapshot()) for a, p in self._pumps.items()},
                "wire": self._line.answer({"query": "state"}).get("wire"),
            }
        answer = self._line.answer(message)
        if not answer.get("ok") and "needs a simulated pump" in str(answer.get("error", "")):
            known = ", ".join(str(a) for a in sorted(self._each))
            return _fail(f'{answer["error"]}: name it with "address" (one of {known})')
        return answer


def _fail(error: str) -> dict[str, object]:
    return {"ok": False, "error": error}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            if not line.strip():
                continue
            try:
                message: object = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                answer = _fail(f"not JSON: {exc}")
            else:
                answer = self.server.channel.answer(message)
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    channel: Answerer


class ControlServer:
    """The control channel served on a Unix socket by a background thread."""

    def __init__(self, path: str, channel: Answerer) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise ControlError(
                f"control socket path is {len(path)} bytes; Unix sockets allow at most "
                f"{MAX_SOCKET_PATH}: {path}"
            )
        self.path = path
        self._channel = channel
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                os.unlink(self.path)  # a stale socket from a killed run
        server = _Server(self.path, _Handler)
        server.channel = self._channel
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="emulator-control",
        )
        self._thread.start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_control(path: str, message: dict[str, Any], timeout_s: float = 2.0) -> dict[str, Any]:
    """Send one message to an emulator's control socket and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise ControlError(f"control answer from {path} longer than {MAX_LINE} bytes")
    except OSError as exc:
        raise ControlError(f"control channel {path}: {exc}") from None
    try:
        answer = json.loads(buffer)
    except json.JSONDecodeError:
        raise ControlError(f"control channel {path} answered non-JSON: {buffer[:200]!r}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"control channel {path} answered {answer!r}, not an object")
    return answer
