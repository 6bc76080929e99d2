"""``attach``: the container's own process' output (and stdin) through conmon's attach socket.

conmon (started with ``--socket-dir-path SOCKS``) listens on a
SOCK_SEQPACKET unix socket ``SOCKS/CID/attach`` (``SOCKS/CID`` is a symlink
to the bundle directory). Each packet it sends is one read of the
container's stdout or stderr, prefixed by one byte naming the pipe
(conmon's ``pipe_t``: 2 stdout, 3 stderr). What a client sends goes to the
container's stdin only if conmon holds a stdin pipe (``conmon --stdin``,
for containers whose spec asks for ``stdin: true``); otherwise conmon drops
it. When the container exits conmon closes the socket: the end of output.
A ``tty: true`` container's terminal (conmon holds its master) is resized
on the slave side, the main process' stdin.

The path can be longer than a unix socket address allows (108 bytes), so
the bundle directory is opened and the socket reached through
``/proc/self/fd/N/attach``, as conmon itself binds it.

Attach has no exit code of its own (Kubernetes answers Success when the
stream ends); ``finish()`` returns 0.
"""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import AsyncIterator

from machinery.pb import node_pb2
from nodeagent.errors import ContainerNotRunning
from nodeagent.tty import set_size

STDOUT_PIPE, STDERR_PIPE = 2, 3
PACKET = 8192 + 1


def connect(bundle: Path) -> socket.socket:
    """A connected, non-blocking socket to conmon's attach socket in the bundle dir."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        sock.close()
        raise ContainerNotRunning(f"no attach socket: {exc.strerror}") from exc
    try:
        sock.connect(f"/proc/self/fd/{dfd}/attach")
    except OSError as exc:
        sock.close()
        raise ContainerNotRunning(f"cannot attach: {exc.strerror}") from exc
    finally:
        os.close(dfd)
    sock.setblocking(False)
    return sock


class AttachSession:
    def __init__(self, sock: socket.socket, bundle: Path | None = None):
        self.sock = sock
        self.bundle = bundle

    async def output(self) -> AsyncIterator[node_pb2.ExecResponse]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet = await loop.sock_recv(self.sock, PACKET)
            except ConnectionError:
                return
            if not packet:
                return
            field = "stderr" if packet[0] == STDERR_PIPE else "stdout"
            if len(packet) > 1:
                yield node_pb2.ExecResponse(**{field: packet[1:]})

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), PACKET - 1):
            await loop.sock_sendall(self.sock, data[i:i + PACKET - 1])

    async def close_stdin(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def resize(self, width: int, height: int) -> None:
        """A `tty: true` container's terminal size: TIOCSWINSZ on the terminal its main
        process has as stdin (`/proc/PID/fd/0`, the pty's slave side; the kernel then
        signals SIGWINCH to its foreground process group). Nothing for a container
        without a terminal. (conmon's `ctl` fifo is meant for this, but with conmon
        2.1.6 only the first of kubectl attach's two resizes — size+1, then size, to
        force a redraw — took effect here, even written 50 ms apart; cause not
        pinned down.)"""
        if not (width and height) or self.bundle is None:
            return
        try:
            pid = int((self.bundle / "pidfile").read_text().strip())
            fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except (OSError, ValueError):
            return                       # gone, or no such process
        try:
            if os.isatty(fd):
                set_size(fd, width, height)
        except OSError:
            pass
        finally:
            os.close(fd)

    async def finish(self) -> int:
        return 0

    async def aclose(self) -> None:
        self.sock.close()
