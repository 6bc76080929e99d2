"""Pseudo-terminals for ``exec -t``: the agent's end of a pty whose slave is ``runc exec --tty``'s stdio.

runc hands the container's console master to whoever passes
``--console-socket``, but only together with ``--detach``; a detached exec
is reparented away from the agent, which then can neither wait for its exit
code nor kill it by process tree as ``processes.end_exec`` does. So the agent
runs ``runc exec --tty`` in the foreground instead: runc allocates the
container's pty itself (``tty`` inside prints ``/dev/pts/N``), puts *its*
stdio terminal (our slave) in raw mode and copies bytes both ways; on
SIGWINCH it copies our terminal's size to the container's. A resize is
therefore TIOCSWINSZ on our master, then SIGWINCH to runc.

Reading: the master is non-blocking and read from the event loop
(``add_reader``); EIO means every slave holder (runc) has gone — the end of
output. Writing retries on EAGAIN (a full pty buffer) with short sleeps.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import pty
import signal
import struct
import termios
from typing import AsyncIterator

DEFAULT_SIZE = (80, 24)


def set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    """(width, height) of the terminal on fd."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


class Terminal:
    """A pty pair: give ``slave`` to the child, then ``close_slave()``; read and write the master."""

    def __init__(self, width: int = 0, height: int = 0):
        self.master, self.slave = pty.openpty()
        w, h = width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1]
        set_size(self.master, w, h)
        os.set_blocking(self.master, False)
        self.pid: int | None = None

    def close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def resize(self, width: int, height: int) -> None:
        if width and height and self.master >= 0:
            set_size(self.master, width, height)
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGWINCH)
                except ProcessLookupError:
                    pass

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.master >= 0:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                await asyncio.sleep(0.01)

    async def read(self, size: int = 65536) -> AsyncIterator[bytes]:
        """Output until the other side is closed by every holder."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(self.master, size)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                loop.remove_reader(self.master)
            queue.put_nowait(data)
        loop.add_reader(self.master, readable)
        try:
            while data := await queue.get():
                yield data
        finally:
            if self.master >= 0:
                loop.remove_reader(self.master)

    def close(self) -> None:
        self.close_slave()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
