"""A pseudo-terminal that a Modbus RTU master opens like a serial port.

The emulator keeps the master side; the client opens the slave through a symlink in a
private temporary folder. The symlink lets a "disconnect" fault behave like a USB
adapter that is pulled and plugged back in: the old pty closes (the client's next read
or write fails) and a new one appears under the same name, so a driver that reconnects
finds the pump again. The emulator also holds the slave open, so a client closing its
side never hangs the line up for the next client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import tempfile
import tty
from typing import Any, Protocol


class PtyLine:
    """The pty pair behind a stable path."""

    LINK_NAME = "ttyModbus"

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pumpctl-modbus-")
        self.path = os.path.join(self._dir, self.LINK_NAME)
        self.master = -1
        self._slave = -1
        self._open()

    def _open(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass unchanged
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)

    def _close_fds(self) -> None:
        for fd in (self.master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = -1

    def reopen(self) -> None:
        """Vanish and come back under the same path (a new pty behind the symlink)."""
        self._close_fds()
        self._open()

    def close(self) -> None:
        self._close_fds()
        shutil.rmtree(self._dir, ignore_errors=True)


class Receiver(Protocol):
    """The side of a protocol the transport feeds (pymodbus' ModbusProtocol has it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def data_received(self, data: bytes) -> None: ...


class PtyTransport(asyncio.Transport):
    """An asyncio transport over the pty master, shaped like pymodbus' serial transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, line: PtyLine, protocol: Receiver) -> None:
        super().__init__()
        self._loop = loop
        self._line = line
        self._protocol = protocol
        self._closed = False

    def start(self) -> None:
        self._loop.add_reader(self._line.master, self._read_ready)
        self._loop.call_soon(self._protocol.connection_made, self)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._line.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the slave side is held open by us, so this is transient
        if data:
            self._protocol.data_received(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            return
        # A pty buffers kilobytes and our frames are under 260 bytes; a full buffer means
        # nobody reads the line, and a real serial line would lose the bytes too.
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            os.write(self._line.master, bytes(data))

    def reopen(self) -> None:
        """Disconnect fault: the device vanishes and reappears under the same path."""
        if self._closed:
            return
        self._loop.remove_reader(self._line.master)
        self._line.reopen()
        self._loop.add_reader(self._line.master, self._read_ready)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._line.master)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._line.path if name == "path" else default

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def is_reading(self) -> bool:
        return not self._closed

    def pause_reading(self) -> None:
        """Reading never pauses: a Modbus slave answers one request at a time."""

    def resume_reading(self) -> None:
        """See ``pause_reading``."""
