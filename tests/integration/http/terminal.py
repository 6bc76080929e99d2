"""A program on a pseudo-terminal made with Python's `pty` module, driven like a user
at a terminal: type, read until some text shows, resize the window (the
kernel sends the program SIGWINCH), wait for its exit code."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time


class Terminal:
    """A program on a pseudo-terminal of ours, read and typed into like a user would."""

    def __init__(self, argv: list[str], env: dict, cols: int = 100, rows: int = 30):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:                                   # the child: argv on the pty's slave
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.resize(cols, rows)
        self.seen = b""

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, needle: str, timeout: float = 30) -> str:
        """Read until needle appears in what was read since the last expect; returns that text."""
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen in {self.seen!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:                              # EIO: the program has exited
                    data = b""
                assert data, f"{needle!r} not seen before the end: {self.seen!r}"
                self.seen += data
        text, _, self.seen = self.seen.partition(needle.encode())
        return (text + needle.encode()).decode(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"still running after {timeout}s: {self.seen!r}")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)
