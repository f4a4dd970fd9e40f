"""Where an emulated serial pump's bytes go: a pty, a real serial port, or a TCP socket.

A pty stands in for a USB serial adapter on a machine with no hardware: the host opens
the slave path like any ``/dev/tty*``. The pty is put in raw mode so that neither end's
line discipline echoes bytes or turns CR into LF behind the protocol's back. The emulator
keeps its own handle on the slave open, so that a host closing and reopening the port
does not hang the master up. An optional symlink gives the pty a stable name, which is
what lets a host reconnect after a simulated unplug: the name is gone while the line is
down, then the emulator opens a fresh pty and points the link at it, the way udev removes
an unplugged adapter's name and gives it back when it is plugged in again.

The TCP endpoint serves the same byte stream to one client at a time (a serial-over-IP
server); pyserial reaches it with a ``socket://HOST:PORT`` URL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import tty
from typing import Any, Protocol

import serial


class Endpoint(Protocol):
    """One end of a byte stream the emulator serves."""

    @property
    def name(self) -> str:
        """Where a host connects (pty path or link, device, host:port)."""
        ...

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None:
        """Drop the line as an unplugged cable would."""
        ...

    def read(self, timeout_s: float) -> bytes:
        """Bytes from the host, waiting at most ``timeout_s``; b"" when none came."""
        ...

    def write(self, data: bytes) -> None: ...

    def shutdown(self) -> None:
        """Close for good and remove anything created on disk."""
        ...


class PtyEndpoint:
    """A pseudo-terminal in raw mode, optionally reachable through a stable symlink."""

    def __init__(self, link: str | None = None) -> None:
        self._link = link
        self._master: int | None = None
        self._slave: int | None = None
        self._path = ""

    @property
    def name(self) -> str:
        return self._link or self._path

    @property
    def pty_path(self) -> str:
        return self._path

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def open(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._path = os.ttyname(slave)
        if self._link:
            tmp = f"{self._link}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self._path, tmp)
            os.replace(tmp, self._link)

    def close(self) -> None:
        """Hang the line up (a simulated unplug). The link goes with it, as udev removes an
        unplugged adapter's name: left in place it would name a pty number the kernel may
        give the next pty opened on the machine, and a host reopening it would talk to
        another device. The name goes first: not one instant names a freed number."""
        if self._link and self._path:
            with contextlib.suppress(OSError):
                if os.readlink(self._link) == self._path:
                    os.unlink(self._link)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def read(self, timeout_s: float) -> bytes:
        if self._master is None:
            return b""
        ready, _, _ = select.select([self._master], [], [], timeout_s)
        if not ready:
            return b""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: nobody is connected
                return b""
            raise

    def write(self, data: bytes) -> None:
        if self._master is None:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                # the host is not reading and its input queue is full: a real line would
                # lose these bytes too
                return
            view = view[written:]

    def shutdown(self) -> None:
        self.close()


class SerialPortEndpoint:
    """A real serial port (a null-modem cable to the host, or a USB adapter)."""

    def __init__(self, port: str, baud: int) -> None:
        self._port = port
        self._baud = baud
        self._serial: Any = None

    @property
    def name(self) -> str:
        return self._port

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        if self._serial is None:
            self._serial = serial.Serial(self._port, self._baud, timeout=0.02, write_timeout=1.0)

    def close(self) -> None:
        ser = self._serial
        self._serial = None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def read(self, timeout_s: float) -> bytes:
        ser = self._serial
        if ser is None:
            return b""
        if ser.timeout != timeout_s:  # setting it reprograms the port: only on change
            ser.timeout = timeout_s
        waiting: int = ser.in_waiting
        data: bytes = ser.read(max(1, waiting))
        return data

    def write(self, data: bytes) -> None:
        if self._serial is not None:
            self._serial.write(data)

    def shutdown(self) -> None:
        self.close()


class TcpEndpoint:
    """A TCP server handing the byte stream to one client at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    @property
    def name(self) -> str:
        if self._listener is None:
            return f"{self._host}:{self._port}"
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(1)
            self._listener = listener

    def close(self) -> None:
        """A simulated unplug: the connected client loses its connection; the server
        stays, so the host can reconnect."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def read(self, timeout_s: float) -> bytes:
        if self._listener is None:
            return b""
        if self._client is None:
            ready, _, _ = select.select([self._listener], [], [], timeout_s)
            if ready:
                self._client, _ = self._listener.accept()
                self._client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return b""
        ready, _, _ = select.select([self._client], [], [], timeout_s)
        if not ready:
            return b""
        try:
            data = self._client.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.close()
        return data

    def write(self, data: bytes) -> None:
        if self._client is not None:
            try:
                self._client.sendall(data)
            except OSError:
                self.close()

    def shutdown(self) -> None:
        self.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
