"""`kctl exec`: run a command in a container, through the apiserver's node proxy.

    kctl exec POD [-c C] [-i] [-t] -- COMMAND [ARGS...]
    kctl exec deploy/web -- hostname        (the first pod, as `kctl logs`)
    kctl exec -it POD -- sh                 (an interactive shell)

Output chunks go to stdout / stderr as they arrive. The command's exit
code becomes kctl's: non-zero prints kubectl's `command terminated with exit
code N` on stderr and exits N (0 is silent).

With -i, stdin is read on a daemon thread (a blocking read works for
terminals, pipes and files alike, and a daemon thread never holds up exit
while the command has already finished) and handed to the event loop
through a queue; end of input closes the command's stdin (`stdin_eof`), so
`echo hi | kctl exec -i p -- cat` ends. Without -i the command's stdin is
/dev/null.

With -t the command runs on a pseudo-terminal on the node (stderr merged
into stdout, as on any terminal). `LocalTerminal` puts kctl's own terminal
in raw mode for the session (keys, Ctrl-C included, go to the remote
terminal, which echoes) and restores it at the end, sends the window's
size first and again on every SIGWINCH. When stdin is not a terminal, -t is
dropped with kubectl's note `Unable to use a TTY - input is not a terminal
or the right kind of file`. `kctl run -it` and `kctl attach` use the same
pieces (kubectlish/attach.py).
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import termios
import threading
import tty as ttymod
from typing import AsyncIterator

import click

from kubectlish.common import Ctx, Failed, err, run
from kubectlish.logs import pod_and_container

NOT_A_TTY = "Unable to use a TTY - input is not a terminal or the right kind of file"


def stdin_chunks(stream=None, size: int = 65536) -> AsyncIterator[bytes]:
    """stdin (binary) as an async iterator of chunks, read on a daemon thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    src = stream if stream is not None else sys.stdin.buffer
    read = getattr(src, "read1", src.read)
    if stream is None:
        try:      # the file descriptor itself: a thread blocked in it holds no lock at exit
            fd = sys.stdin.fileno()
            read = lambda n: os.read(fd, n)  # noqa: E731
        except (AttributeError, OSError, ValueError):
            pass

    def reader() -> None:
        while True:
            try:
                data = read(size)
            except (OSError, ValueError):
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            except Exception:  # noqa: BLE001 - the loop is gone: nobody wants more
                return
            if not data:
                return

    threading.Thread(target=reader, name="kctl-exec-stdin", daemon=True).start()

    async def chunks():
        while data := await queue.get():
            yield data
    return chunks()


def stdin_is_a_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):
        return False


class LocalTerminal:
    """kctl's terminal during a -t session: raw mode, its size, and its resizes (SIGWINCH)."""

    def __init__(self, fd: int | None = None):
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._saved = None
        self._sizes: asyncio.Queue = asyncio.Queue()

    def size(self) -> tuple[int, int]:
        cols, rows = os.get_terminal_size(self.fd)
        return cols, rows

    def __enter__(self) -> "LocalTerminal":
        self._saved = termios.tcgetattr(self.fd)
        ttymod.setraw(self.fd)
        asyncio.get_running_loop().add_signal_handler(signal.SIGWINCH, lambda: self._sizes.put_nowait(self.size()))
        return self

    def __exit__(self, *exc) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGWINCH)
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    async def resizes(self) -> AsyncIterator[tuple[int, int]]:
        while True:
            yield await self._sizes.get()


async def copy_out(stream: AsyncIterator) -> int | None:
    """Write a session's output to stdout/stderr; the exit code it ended with (None: none sent)."""
    code = None
    try:
        async for resp in stream:
            if resp.stdout:
                sys.stdout.buffer.write(resp.stdout)
                sys.stdout.buffer.flush()
            if resp.stderr:
                sys.stderr.buffer.write(resp.stderr)
                sys.stderr.buffer.flush()
            if resp.HasField("exit_code"):
                code = resp.exit_code
    finally:
        await stream.aclose()
    return code


async def session(open_stream, stdin: bool, tty: bool) -> int | None:
    """open_stream(stdin=, tty=, size=, resizes=) with kctl's stdin and terminal; its exit code."""
    if not tty:
        return await copy_out(open_stream(stdin=stdin_chunks() if stdin else None, tty=False, size=None,
                                          resizes=None))
    with LocalTerminal() as term:
        return await copy_out(open_stream(stdin=stdin_chunks() if stdin else None, tty=True, size=term.size(),
                                          resizes=term.resizes()))


async def _exec(ctx: Ctx, arg, container, stdin, tty, command) -> int:
    from machinery import nodeclient
    if not command:
        raise Failed("error: you must specify at least one command for the container")
    pod, container = await pod_and_container(ctx, arg, container)

    def open_stream(**kw):
        return nodeclient.exec_(ctx.server, pod.metadata.namespace or ctx.namespace, pod.metadata.name,
                                container, list(command), credentials=ctx.credentials,
                                metadata=ctx.impersonate, **kw)
    code = await session(open_stream, stdin, tty)
    if code is None:
        raise Failed("error: the exec stream ended without an exit code")
    if code:
        raise Failed(f"command terminated with exit code {code}", code=code)
    return 0


def want_tty(stdin: bool, tty: bool) -> bool:
    """-t is honoured with a terminal on stdin (and -i); else kubectl's note, and no TTY."""
    if tty and not (stdin and stdin_is_a_terminal()):
        err(NOT_A_TTY)
        return False
    return tty


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-c", "--container", default=None, help="The container (default: the pod's default or first one).")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Run the command on a terminal (with -i and a terminal on stdin).")
@click.pass_obj
def exec_cmd(ctx: Ctx, pod, command, container, stdin, tty):
    """Run a command in a container: exec POD [-c C] [-i] [-t] -- COMMAND [ARGS...]."""
    run(ctx, _exec, pod, container, stdin, want_tty(stdin, tty), command)
