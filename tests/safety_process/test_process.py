"""``python -m safety`` as a real process, with real controller processes around it.

Each test starts its processes under ``children()``, which stops (SIGCONT, SIGTERM, then
SIGKILL) and reaps every one of them whatever happens, and works in a short temporary
directory that the fixture removes. Waiting is bounded polling (``wait_for``), never a
sleep that makes a test pass.
"""

from __future__ import annotations

import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from drivers.gpio.simulated import read_sim_pins
from firmware_bridge.emulators.control import send_control
from hil_tests.harness.conditions import held_with_alarm
from hil_tests.harness.processes import (
    PYTHON,
    Child,
    children,
    ready_socket,
    safety_args,
    unattached_request,
    wait_for,
    write_toml,
)
from safety.ipc.client import SafetyClient
from safety.ipc.launch import start_safety_process
from safety.ipc.link import LinkDown, SafetyStartFailed
from safety.journal import Journal
from safety.kernel.codec import decode_event
from safety.kernel.config import KernelConfig
from safety.kernel.model import ChangeDose, LoadProgram, ProgramSpec, StartInfusion
from safety.kernel.replay import replay_journal
from safety.library import DrugLibrary
from safety.reasons import Reason
from safety.status import Snapshot

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]

HEARTBEAT_TIMEOUT_S = 1.0


def config(directory: Path, pump: dict[str, Any], **extra: Any) -> Path:
    table: dict[str, Any] = {
        "pump": pump,
        "gpio": {"backend": "simulated", "state_dir": str(directory / "gpio")},
        "timing": {
            "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
            "poll_period_s": 0.2,
            "keep_alive_period_s": 1.0,
        },
        "paths": {
            "journal": str(directory / "journal.sqlite"),
            "socket": str(directory / "safety.sock"),
            "key_file": str(directory / "ipc.key"),
        },
        **extra,
    }
    return write_toml(directory / "safety.toml", table)


MOCK_PUMP = {"driver": "mock", "syringe": "bd-plastipak-50ml"}


def controller(directory: Path, mode: str = "infuse") -> Child:
    return Child(
        [
            PYTHON,
            "-m",
            "tests.safety_process.controller_child",
            str(directory / "safety.sock"),
            str(directory / "ipc.key"),
            mode,
        ]
    )


def monitor(directory: Path) -> SafetyClient:
    return SafetyClient(
        directory / "safety.sock", key_file=directory / "ipc.key", name="test-monitor"
    )


def read_back(client: SafetyClient) -> Snapshot | None:
    snap = client.snapshot()
    return snap if snap.infused_ml is not None else None


def gpio_alarm(directory: Path) -> bool:
    return bool(read_sim_pins(directory / "gpio").get("alarm_on"))


def read_key(directory: Path) -> bytes:
    return bytes.fromhex((directory / "ipc.key").read_text().strip())


# --------------------------------------------------------------------------- (a)


def test_kill_9_of_the_controller_holds_the_rate_alarms_and_refuses_changes(
    short_dir: Path,
) -> None:
    with children() as kids:
        safety = Child(safety_args(config(short_dir, MOCK_PUMP)))
        kids.append(safety)
        ready_socket(safety)
        ctl = controller(short_dir)
        kids.append(ctl)
        ctl.wait_line("infusing")
        with monitor(short_dir) as mon:
            before = mon.snapshot()
            assert before.running and before.attached and before.rate_ml_h == Decimal("30.0")
            wait_for(lambda: not gpio_alarm(short_dir), 5.0, "alarm pin off while supervised")

            ctl.kill9()

            snap = wait_for(lambda: held_with_alarm(mon), 5.0, "hold and a high alarm")
            assert snap.running and snap.rate_ml_h == Decimal("30.0")  # last verified rate
            assert [h.amount_per_h for h in snap.history] == [
                h.amount_per_h for h in before.history
            ]
            alarm = next(a for a in snap.alarms if a.key == "controller_lost")
            assert "(eof)" in alarm.message  # at once, not after the heartbeat timeout
            wait_for(lambda: gpio_alarm(short_dir), 5.0, "the GPIO alarm pin")

            refused = unattached_request(
                short_dir / "safety.sock", read_key(short_dir), ChangeDose(Decimal(10))
            )
            assert not refused.outcome.verdict.accepted
            assert refused.outcome.verdict.reason is Reason.HOLD
            assert mon.snapshot().rate_ml_h == Decimal("30.0")

            mon.attach()  # a controller re-attaches and re-syncs
            accepted = mon.request(ChangeDose(Decimal(10)))
            assert accepted.verdict.accepted, accepted.verdict.message
            assert accepted.snapshot.rate_ml_h == Decimal("37.5")


# --------------------------------------------------------------------------- (c)


def test_a_stopped_controller_is_held_within_the_heartbeat_timeout(short_dir: Path) -> None:
    with children() as kids:
        safety = Child(safety_args(config(short_dir, MOCK_PUMP)))
        kids.append(safety)
        ready_socket(safety)
        ctl = controller(short_dir)
        kids.append(ctl)
        ctl.wait_line("infusing")
        with monitor(short_dir) as mon:
            ctl.signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            snap = wait_for(
                lambda: held_with_alarm(mon),
                HEARTBEAT_TIMEOUT_S + 2.0,
                "hold within the heartbeat timeout (plus scheduling slack)",
            )
            assert time.monotonic() - stopped_at >= HEARTBEAT_TIMEOUT_S * 0.5  # the timer, not EOF
            alarm = next(a for a in snap.alarms if a.key == "controller_lost")
            assert "heartbeat timeout" in alarm.message
            assert snap.running and snap.rate_ml_h == Decimal("30.0")
            wait_for(lambda: gpio_alarm(short_dir), 5.0, "the GPIO alarm pin")
            ctl.signal(signal.SIGCONT)
            ctl.wait_line("session lost", 10.0)  # the controller learns it was let go
            assert mon.snapshot().hold


# --------------------------------------------------------------------------- (b)


def test_kill_9_of_the_safety_process_resumes_without_touching_the_rate(
    short_dir: Path, library: DrugLibrary, spec: ProgramSpec
) -> None:
    """The pump in its own process (NE-1000 emulator on a pty) outlives the safety process."""
    control = str(short_dir / "ctl.sock")
    with children() as kids:
        emulator = Child(
            [
                PYTHON,
                "-m",
                "firmware_bridge.emulators",
                "ne1000",
                "--pty",
                "--link",
                str(short_dir / "tty"),
                "--control",
                control,
                "--truth-log",
                str(short_dir / "truth.jsonl"),
            ]
        )
        kids.append(emulator)
        emulator.wait_line("/")
        pump = {
            "driver": "ne1000",
            "syringe": "bd-plastipak-50ml",
            "options": {"port": str(short_dir / "tty"), "reply_timeout_s": 0.5},
        }
        cfg = config(short_dir, pump)
        first = Child(safety_args(cfg))
        kids.append(first)
        ready_socket(first)
        failures: list[LinkDown] = []
        ctl = SafetyClient(
            short_dir / "safety.sock", key_file=short_dir / "ipc.key", on_failure=failures.append
        )
        try:
            ctl.attach()
            for body in (LoadProgram(spec), StartInfusion(Decimal(8)), ChangeDose(Decimal(10))):
                outcome = ctl.request(body)
                assert outcome.verdict.accepted and outcome.execution == "applied", outcome
            wait_for(lambda: (ctl.snapshot().infused_ml or 0) > 0.005, 10.0, "some infusion")

            first.kill9()
            down = wait_for(
                lambda: failures[0] if failures else None,
                2.0,
                "the controller seeing the safety process die",
            )
            assert down.final and "eof" in down.reason
        finally:
            ctl.close()

        # the journal is intact: it opens, every entry decodes, and it replays
        journal = Journal(short_dir / "journal.sqlite", "check")
        try:
            entries = list(journal.entries())
            for entry in entries:
                decode_event(entry.payload)
            state = replay_journal(KernelConfig(), journal).state
        finally:
            journal.close()
        assert state.running and state.set_rate == Decimal("37.5")
        last_id = entries[-1].id

        pump_state = send_control(control, {"query": "state"})["pump"]
        assert pump_state["running"] and pump_state["set_rate_ml_h"] == pytest.approx(37.5)

        second = Child(safety_args(cfg))
        kids.append(second)
        ready_socket(second)
        with monitor(short_dir) as mon:
            snap = wait_for(lambda: read_back(mon), 5.0, "a read-back after restart")
            assert snap.running and snap.rate_ml_h == Decimal("37.5")
            # nobody supervises until a controller attaches: hold, and say the safety
            # process went down (high priority), without touching the pump
            assert snap.mode == "hold"
            assert any(a.key == "safety_restarted" and a.priority == "high" for a in snap.alarms)
            assert not any(a.key == "resume_changed" for a in snap.alarms)
            pump_after = send_control(control, {"query": "state"})["pump"]
            assert pump_after["running"] and pump_after["set_rate_ml_h"] == pytest.approx(37.5)
            # the cumulative dose it reports is the pump's own counter, since the program
            snap = mon.snapshot()
            pump_now = send_control(control, {"query": "state"})["pump"]
            slack_ml = 37.5 / 3600 * 1.0 + 0.002  # 1 s of flow between the two reads + display
            assert snap.infused_ml == pytest.approx(pump_now["infused_ml"], abs=slack_ml)
            assert snap.drug_given is not None and snap.amount_unit == "mg"
            assert float(snap.drug_given) == pytest.approx(
                pump_now["infused_ml"] * 16 / 1000, abs=slack_ml * 16 / 1000 + 1e-6
            )

        # nothing was sent to the pump after the restart: it only read and reconciled
        journal = Journal(short_dir / "journal.sqlite", "check")
        try:
            after = [e.kind for e in journal.entries(since_id=last_id)]
        finally:
            journal.close()
        assert "resumed" in after
        assert "command_issued" not in after


def test_the_journal_survives_kill_9_at_any_instant(short_dir: Path, library: DrugLibrary) -> None:
    """Kill the safety process in the middle of a stream of titrations, three times."""
    cfg = config(short_dir, MOCK_PUMP)
    for round_ in range(3):
        with children() as kids:
            safety = Child(safety_args(cfg))
            kids.append(safety)
            ready_socket(safety)
            ctl = controller(short_dir, "titrate")
            kids.append(ctl)
            ctl.wait_line("infusing")
            ctl.wait_line(f"step {3 + 5 * round_}")
            safety.kill9()
            ctl.wait_line("stopped:")
        journal = Journal(short_dir / "journal.sqlite", "check")
        try:
            entries = list(journal.entries())
            assert [e.id for e in entries] == list(range(1, len(entries) + 1))
            for entry in entries:
                decode_event(entry.payload)
            assert replay_journal(KernelConfig(), journal).damage is None
        finally:
            journal.close()


# --------------------------------------------------------------------------- life cycle


def emulated_pump(short_dir: Path, kids: list[Child]) -> tuple[dict[str, Any], str]:
    control = str(short_dir / "ctl.sock")
    emulator = Child(
        [
            PYTHON,
            "-m",
            "firmware_bridge.emulators",
            "ne1000",
            "--pty",
            "--link",
            str(short_dir / "tty"),
            "--control",
            control,
        ]
    )
    kids.append(emulator)
    emulator.wait_line("/")
    pump = {
        "driver": "ne1000",
        "syringe": "bd-plastipak-50ml",
        "options": {"port": str(short_dir / "tty"), "reply_timeout_s": 0.5},
    }
    return pump, control


def test_sigterm_shuts_down_cleanly_and_never_stops_the_pump(
    short_dir: Path, spec: ProgramSpec
) -> None:
    with children() as kids:
        pump, control = emulated_pump(short_dir, kids)
        safety = Child(safety_args(config(short_dir, pump)))
        kids.append(safety)
        ready_socket(safety)
        with monitor(short_dir) as ctl:
            ctl.attach()
            for body in (LoadProgram(spec), StartInfusion(Decimal(8))):
                assert ctl.request(body).verdict.accepted
            safety.signal(signal.SIGTERM)
            assert safety.proc.wait(timeout=15) == 0
            down = wait_for(lambda: ctl.down, 5.0, "the controller seeing the shutdown")
            assert "shutting down" in down.reason or "eof" in down.reason
        assert "never stopped" in safety.stderr_text()
        state = send_control(control, {"query": "state"})["pump"]
        assert state["running"] and state["set_rate_ml_h"] == pytest.approx(30.0)
        assert not (short_dir / "safety.sock").exists()
        pins = read_sim_pins(short_dir / "gpio")
        assert pins["alarm_on"] is True  # a pump without its safety process is unsupervised
        assert pins["open"] is False
        # the lock was released: the next start resumes supervision of the running pump
        again = Child(safety_args(config(short_dir, pump)))
        kids.append(again)
        ready_socket(again)
        with monitor(short_dir) as mon:
            snap = wait_for(lambda: read_back(mon), 5.0, "a read-back")
            assert snap.running and snap.rate_ml_h == Decimal("30.0")


def test_a_second_safety_process_on_the_same_journal_refuses_to_start(short_dir: Path) -> None:
    cfg = config(short_dir, MOCK_PUMP)
    with children() as kids:
        first = Child(safety_args(cfg))
        kids.append(first)
        ready_socket(first)
        other_socket = str(short_dir / "other.sock")
        second = Child([*safety_args(cfg), "--socket", other_socket])
        kids.append(second)
        assert second.proc.wait(timeout=30) == 1
        second.stop()
        assert "another safety process" in second.stderr_text()
        assert str(first.pid) in second.stderr_text()
        assert not Path(other_socket).exists()
        # and one on another journal but the same socket is refused too
        third = Child([*safety_args(cfg), "--journal", str(short_dir / "j2.sqlite")])
        kids.append(third)
        assert third.proc.wait(timeout=30) == 1
        third.stop()
        assert "another process is serving" in third.stderr_text()
        with monitor(short_dir) as mon:  # the first one is unaffected
            assert mon.snapshot().mode == "idle"


def test_systemd_sees_ready_and_watchdog_pings(short_dir: Path) -> None:
    import socket as socket_module

    notify_path = str(short_dir / "notify.sock")
    sock = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(10.0)
    try:
        with children() as kids:
            safety = Child(
                safety_args(config(short_dir, MOCK_PUMP)),
                env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"},
            )
            kids.append(safety)
            received: list[bytes] = []
            while b"READY=1" not in b"".join(received):
                received.append(sock.recv(4096))
            assert (short_dir / "safety.sock").exists()  # ready means serving
            pings = 0
            while pings < 3:
                if sock.recv(4096) == b"WATCHDOG=1":
                    pings += 1
            safety.signal(signal.SIGTERM)
            while sock.recv(4096) != b"STOPPING=1":
                pass
            assert safety.proc.wait(timeout=15) == 0
    finally:
        sock.close()


def test_a_hung_safety_process_is_seen_by_the_controller_and_its_watchdog_pin_stops(
    short_dir: Path,
) -> None:
    with children() as kids:
        safety = Child(safety_args(config(short_dir, MOCK_PUMP)))
        kids.append(safety)
        ready_socket(safety)
        notices: list[object] = []
        with monitor(short_dir) as mon:
            mon.subscribe(notices.append)
            toggles = read_sim_pins(short_dir / "gpio")["heartbeat_toggles"]
            wait_for(
                lambda: read_sim_pins(short_dir / "gpio")["heartbeat_toggles"] > toggles + 2,
                5.0,
                "the watchdog pin toggling while healthy",
            )
            safety.signal(signal.SIGSTOP)
            try:
                down = wait_for(
                    lambda: next((n for n in list(notices) if isinstance(n, LinkDown)), None),
                    HEARTBEAT_TIMEOUT_S + 3.0,
                    "the controller noticing the silence",
                )
                assert not down.final
                frozen = read_sim_pins(short_dir / "gpio")["heartbeat_toggles"]
                with pytest.raises(AssertionError):
                    wait_for(
                        lambda: read_sim_pins(short_dir / "gpio")["heartbeat_toggles"] != frozen,
                        0.5,
                        "a toggle from a stopped process",
                    )
            finally:
                safety.signal(signal.SIGCONT)
            wait_for(
                lambda: any(type(n).__name__ == "LinkRestored" for n in list(notices)),
                5.0,
                "LinkRestored",
            )
            assert mon.snapshot().mode == "idle"


def test_a_parent_starts_it_as_a_child_and_waits_for_ready(short_dir: Path) -> None:
    child = start_safety_process(
        config(short_dir, MOCK_PUMP),
        socket_path=short_dir / "child.sock",
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.socket_path == str(short_dir / "child.sock")
        with SafetyClient(child.socket_path, key_file=short_dir / "ipc.key") as client:
            assert client.snapshot().mode == "idle"
    finally:
        assert child.stop() == 0
    bad = write_toml(short_dir / "bad.toml", {"pump": {**MOCK_PUMP, "syringe": "none"}})
    with pytest.raises(SafetyStartFailed) as info:
        start_safety_process(bad, stderr=subprocess.DEVNULL)
    assert info.value.exit_code == 2
