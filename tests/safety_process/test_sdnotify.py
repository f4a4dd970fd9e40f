"""systemd readiness and watchdog pings, against a datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.clock import VirtualClock
from safety.host.sdnotify import SystemdNotifier


@pytest.fixture
def fake_systemd(short_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(short_dir / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5.0)
    try:
        yield path, sock
    finally:
        sock.close()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = SystemdNotifier(environ={})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.tick() == 3600.0


def test_ready_and_status_reach_systemd(fake_systemd: tuple[str, socket.socket]) -> None:
    path, sock = fake_systemd
    SystemdNotifier(environ={"NOTIFY_SOCKET": path}).ready("serving")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"


def test_watchdog_pings_at_half_the_interval(fake_systemd: tuple[str, socket.socket]) -> None:
    path, sock = fake_systemd
    clock = VirtualClock(100.0)
    notifier = SystemdNotifier(
        environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, clock=clock
    )
    assert notifier.watchdog_interval_s == 4.0
    assert notifier.tick() == 2.0
    assert sock.recv(4096) == b"WATCHDOG=1"
    clock.advance(1.0)
    assert notifier.tick() == 1.0  # not due: nothing sent
    clock.advance(1.0)
    assert notifier.tick() == 2.0
    assert sock.recv(4096) == b"WATCHDOG=1"
    sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # exactly two pings


def test_a_watchdog_meant_for_another_process_is_ignored(short_dir: Path) -> None:
    env = {
        "NOTIFY_SOCKET": str(short_dir / "x"),
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": str(os.getpid() + 1),
    }
    assert SystemdNotifier(environ=env).watchdog_interval_s is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert SystemdNotifier(environ=env).watchdog_interval_s == 1.0


def test_abstract_socket_names_are_understood() -> None:
    name = f"pumpctl-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5.0)
    try:
        assert SystemdNotifier(environ={"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()


def test_an_unreachable_systemd_never_raises(short_dir: Path) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": str(short_dir / "gone.sock")})
    assert notifier.notify("READY=1") is False
