"""Issue 12's benchmarks (opt-in: ``pumpctl bench --observe``): the dashboard and the fleet.

Dashboard: a safety process on the mock pump, ``pumpctl dashboard`` on it, ``clients``
server-sent-event clients (HTTP streams read in threads, standing in for browsers: a
browser adds its own rendering, not the server's), and a controller that sends changes.
Measured: the dashboard process's RSS with the clients connected, and for each change
the time from the request leaving the controller to the state event carrying its
journal line reaching a client (journal -> page). Baseline, same run: the controller's
own request round trip (request -> verdict -> pump -> reply) for the same requests.

Fleet: one Mosquitto on this machine, ``pumpctl fleet`` subscribed to it, ``benches``
simulated benches (the real schema, outbox and publisher; no safety processes) each
writing one journal event a second. Measured: outbox write -> fleet model p99 in steady
state; then the broker stopped for ``outage_s`` while every bench goes on writing, and
started again: events received, gaps, numbers missed, duplicates the broker delivered
(dropped by the fleet by their numbers), and how long the fleet took to catch up.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from safety.ipc.client import SafetyClient
from safety.ipc.launch import start_safety_process
from safety.kernel.model import ChangeDose, LoadProgram, ProgramSpec, StartInfusion
from safety.library import DrugLibrary

REPO = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _pumpctl(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )


def _first_line(process: subprocess.Popen[str], prefix: str, timeout_s: float = 30.0) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"no {prefix!r} line within {timeout_s} s")


def _stop(process: subprocess.Popen[str] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# --------------------------------------------------------------------------- dashboard


@dataclass
class SseClient:
    """Reads one /events stream; notes when each journal line first arrived."""

    url: str
    arrivals: dict[int, float] = field(default_factory=dict)
    lines: dict[int, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    def run(self) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            conn.request("GET", "/events")
            response = conn.getresponse()
            event, data = "", b""
            while not self.stop.is_set():
                raw = response.fp.readline()
                if not raw:
                    return
                if raw.startswith(b"event: "):
                    event = raw[7:].strip().decode()
                elif raw.startswith(b"data: "):
                    data = raw[6:].strip()
                elif raw == b"\n" and event == "state":
                    now = time.monotonic()
                    for line in json.loads(data)["journal"]:
                        if line["id"] not in self.arrivals:
                            self.arrivals[line["id"]] = now
                            self.lines[line["id"]] = line["text"]
        except Exception as exc:  # reported with the figure
            if not self.stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()


@dataclass
class DashboardResult:
    rss_mb: float
    latencies: list[float]  # s, journal -> page, every change at every client
    baseline: list[float]  # s, the controller's own round trip
    clients: int


def measure_dashboard(
    directory: Path, library: DrugLibrary, *, clients: int = 5, changes: int = 100
) -> DashboardResult:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "bench.toml"
    config.write_text(
        '[pump]\ndriver = "mock"\nsyringe = "bd-plastipak-50ml"\n'
        "[paths]\n"
        f'journal = "{directory}/safety-journal.sqlite"\n'
        f'socket = "{directory}/safety.sock"\n'
        f'key_file = "{directory}/ipc.key"\n',
        encoding="utf-8",
    )
    safety = start_safety_process(config, stderr=subprocess.DEVNULL)
    dashboard: subprocess.Popen[str] | None = None
    readers: list[SseClient] = []
    threads: list[threading.Thread] = []
    try:
        dashboard = _pumpctl("dashboard", "--config", str(config), "--port", "0")
        url = _first_line(dashboard, "dashboard on ")
        for _ in range(clients):
            reader = SseClient(url)
            thread = threading.Thread(target=reader.run, daemon=True)
            thread.start()
            readers.append(reader)
            threads.append(thread)
        with SafetyClient(safety.socket_path, key_file=directory / "ipc.key") as c:
            c.attach()
            spec = ProgramSpec(
                library.content_hash,
                "norepinephrine",
                "adult_icu",
                "standard",
                "8 mg/250 mL",
                "D5W",
            )
            assert c.request(LoadProgram(spec)).verdict.accepted
            assert c.request(StartInfusion(Decimal(8))).verdict.accepted
            time.sleep(1.0)  # every client connected and holding the tail
            sent: list[tuple[float, float]] = []
            for i in range(changes):
                dose = Decimal(9) if i % 2 == 0 else Decimal(8)
                t0 = time.monotonic()
                c.request(ChangeDose(dose), ttl_s=5.0)
                sent.append((t0, time.monotonic()))
                time.sleep(0.1)
            time.sleep(1.5)
        rss = _rss_mb(dashboard.pid)
        latencies: list[float] = []
        for reader in readers:
            if reader.error:
                raise RuntimeError(f"an SSE client failed: {reader.error}")
            ids = sorted(
                i for i, text in reader.lines.items() if text.startswith("request change_dose")
            )
            if len(ids) != changes:
                raise RuntimeError(f"a client saw {len(ids)} of {changes} changes")
            latencies += [reader.arrivals[i] - t0 for i, (t0, _) in zip(ids, sent, strict=True)]
        if rss is None:
            raise RuntimeError("the dashboard's memory could not be read")
        return DashboardResult(rss, latencies, [t1 - t0 for t0, t1 in sent], clients)
    finally:
        for reader in readers:
            reader.stop.set()
        _stop(dashboard)
        for thread in threads:
            thread.join(2)
        safety.stop()


# --------------------------------------------------------------------------- fleet


@dataclass
class FleetResult:
    benches: int
    steady: dict[str, Any]  # the fleet's latency stats in steady state
    produced: int
    totals: dict[str, int]
    catch_up_s: float
    outage_s: float
    broker_rtt_ms: float | None


class _Driver(threading.Thread):
    """Drives a share of the simulated benches from one thread: one selector over their
    broker sockets (paho's external-loop calls: read when readable, write when it has
    something to write, its housekeeping once a second), their outboxes to paho, and one
    event per bench per second at its own phase. A thousand paho network threads would
    measure the scheduler instead."""

    def __init__(self, benches: list[Any], rate_hz: float) -> None:
        super().__init__(daemon=True)
        self.benches = benches
        self.rate_hz = rate_hz
        self.ticking = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        import selectors  # noqa: PLC0415

        import paho.mqtt.client as mqtt  # noqa: PLC0415

        sel = selectors.DefaultSelector()
        n = len(self.benches)
        start = time.monotonic()
        next_tick = [start + i / max(1, n) / self.rate_hz for i in range(n)]
        next_try = [0.0] * n
        sockets: list[Any] = [None] * n
        next_misc = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            for i, bench in enumerate(self.benches):
                client = bench.publisher.client
                sock = client.socket()
                if sock is not sockets[i]:
                    if sockets[i] is not None:
                        with contextlib.suppress(KeyError, ValueError):
                            sel.unregister(sockets[i])
                    sockets[i] = sock
                    if sock is not None:
                        sel.register(sock, selectors.EVENT_READ, i)
                if sock is None and now >= next_try[i]:
                    next_try[i] = now + 1.0
                    with contextlib.suppress(OSError):
                        client.reconnect()
                if self.ticking.is_set() and now >= next_tick[i]:
                    next_tick[i] += 1.0 / self.rate_hz
                    bench.tick()
                    if bench.publisher.status_due():
                        bench.status()
                bench.publisher.pump()
                if client.want_write():
                    client.loop_write()
            for key, _events in sel.select(0.005):
                rc = self.benches[key.data].publisher.client.loop_read()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(key.fileobj)
                    sockets[key.data] = None
            if now >= next_misc:
                next_misc = now + 1.0
                for bench in self.benches:
                    bench.publisher.client.loop_misc()


def _get(url: str, path: str) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", path)
        data: dict[str, Any] = json.loads(conn.getresponse().read())
        return data
    finally:
        conn.close()


def measure_fleet(
    directory: Path,
    *,
    benches: int = 1000,
    steady_s: float = 30.0,
    outage_s: float = 30.0,
    drivers: int = 2,
    progress: Any = None,
) -> FleetResult:
    from benchmarks.broker import Mosquitto  # noqa: PLC0415
    from observe.telemetry.simulate import SimulatedBench  # noqa: PLC0415

    say = progress or (lambda _line: None)
    directory.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(directory / "broker").start()
    fleet: subprocess.Popen[str] | None = None
    sims: list[SimulatedBench] = []
    workers: list[_Driver] = []
    try:
        fleet = _pumpctl(
            "fleet",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--port",
            "0",
            "--stale-after",
            str(max(60.0, outage_s * 3)),
        )
        url = _first_line(fleet, "fleet on ")
        # the page is up before the view's subscription is: what a bench publishes
        # before the broker acknowledged it is never delivered to the view (a gap)
        deadline = time.monotonic() + 30.0
        while not _get(url, "/api/stats")["subscribed"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the fleet view did not subscribe within 30 s")
            time.sleep(0.05)
        rtt = _broker_rtt(broker.port)
        say(f"fleet: connecting {benches} simulated benches")
        for i in range(benches):
            sim = SimulatedBench(
                f"sim-{i:04d}",
                "127.0.0.1",
                broker.port,
                directory / "outboxes",
                external_loop=True,
                synchronous="NORMAL",
                status_period_s=30.0,
            )
            sim.publisher.client.connect("127.0.0.1", broker.port, 60)
            sim.publisher.connected = True  # on_connect runs in the driver's loop
            sims.append(sim)
        share = (len(sims) + drivers - 1) // drivers
        workers = [_Driver(sims[k : k + share], 1.0) for k in range(0, len(sims), share)]
        for w in workers:
            w.start()
        for sim in sims:
            sim.status()
        for w in workers:
            w.ticking.set()
        time.sleep(5.0)  # warm-up
        _get(url, "/api/stats?reset=1")
        say(f"fleet: steady state, {steady_s:g} s at 1 event/s per bench")
        time.sleep(steady_s)
        steady = _get(url, "/api/stats?reset=1")
        say(f"fleet: broker stopped for {outage_s:g} s")
        broker.stop()
        time.sleep(outage_s)
        broker.start()
        back = time.monotonic()
        say("fleet: broker back; waiting for every outbox to drain")
        time.sleep(5.0)
        for w in workers:
            w.ticking.clear()
        time.sleep(0.5)  # a tick already under way finishes before the count
        produced = sum(sum(s.produced.values()) for s in sims)
        deadline = time.monotonic() + 300
        totals: dict[str, int] = {}
        while time.monotonic() < deadline:
            totals = _get(url, "/api/stats")["totals"]
            if totals["received"] + totals["missed"] >= produced and all(s.drained() for s in sims):
                break
            time.sleep(1.0)
        catch_up = time.monotonic() - back
        for w in workers:
            if w.error:
                raise RuntimeError(f"a bench driver failed: {w.error}")
        return FleetResult(benches, steady["latency_ms"], produced, totals, catch_up, outage_s, rtt)
    finally:
        for w in workers:
            w.stop.set()
        for w in workers:
            w.join(5)
        for sim in sims:
            with contextlib.suppress(Exception):
                sim.publisher.client.disconnect()
                sim.outbox.close()
        _stop(fleet)
        broker.stop()


def _broker_rtt(port: int, n: int = 50) -> float | None:
    """The baseline: publish -> receive of a QoS 1 message through the same broker (ms,
    median), one client, no outbox."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    got = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rtt-{os.getpid()}")
    client.on_message = lambda _c, _u, _m: got.set()
    client.connect("127.0.0.1", port)
    client.subscribe("pumpctl-rtt/x", qos=1)
    client.loop_start()
    samples = []
    try:
        time.sleep(0.3)
        for _ in range(n):
            got.clear()
            t0 = time.monotonic()
            client.publish("pumpctl-rtt/x", b"x", qos=1)
            if got.wait(2.0):
                samples.append(time.monotonic() - t0)
    finally:
        client.disconnect()
        client.loop_stop()
    samples.sort()
    return samples[len(samples) // 2] * 1000 if samples else None


__all__ = ["DashboardResult", "FleetResult", "measure_dashboard", "measure_fleet"]
