"""What the agent's Exec and Attach calls drive: a session with input, output and an end.

A session has ``output()`` (ExecResponse chunks until the process' output
is done), ``write(data)`` / ``close_stdin()`` (stdin), ``resize(w, h)`` (a
terminal's size; ignored without one), ``finish()`` (the exit code, after
output ended) and ``aclose()`` (kill what still runs, free what is held).

* ``PipeSession``: ``runc exec`` with three pipes; one reader task per
  output pipe puts chunks on one bounded queue (EXEC_QUEUE), so stdout and
  stderr interleave as they come and a client that stops reading stalls the
  command, not the agent's memory.
* ``TtySession``: ``runc exec --tty`` on a pseudo-terminal
  (nodeagent/tty.py); stderr is merged into stdout, as on any terminal;
  stdin's end is sent as the terminal's EOF character (Ctrl-D), because a
  terminal has no half-close.
* ``AttachSession`` (nodeagent/attach.py): the container's own process
  through conmon's attach socket.

``drive(session, first, rest)`` is the call's loop (server.py): a pump task
feeds the requests (stdin data, stdin_eof, resize) into the session while
the caller iterates the responses; the last response carries the exit code.
Leaving the loop early (the client went away) closes the session, which
kills the command and all its children (processes.end_exec).
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

from machinery.pb import node_pb2
from nodeagent.processes import end_exec
from nodeagent.tty import Terminal


EXEC_QUEUE = 16     # output chunks (64 KiB) waiting for the client: a slow reader stalls the pipes


class PipeSession:
    def __init__(self, proc: asyncio.subprocess.Process, pidfile: Path):
        self.proc, self.pidfile = proc, pidfile

    async def output(self) -> AsyncIterator[node_pb2.ExecResponse]:
        queue: asyncio.Queue = asyncio.Queue(EXEC_QUEUE)

        async def pump_out(stream, field: str) -> None:
            while data := await stream.read(65536):
                await queue.put(node_pb2.ExecResponse(**{field: data}))
            await queue.put(None)
        tasks = [asyncio.create_task(pump_out(self.proc.stdout, "stdout")),
                 asyncio.create_task(pump_out(self.proc.stderr, "stderr"))]
        try:
            open_pipes = 2
            while open_pipes:
                msg = await queue.get()
                if msg is None:
                    open_pipes -= 1
                else:
                    yield msg
        finally:
            for t in tasks:
                t.cancel()

    async def write(self, data: bytes) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        pass

    async def finish(self) -> int:
        return await self.proc.wait()

    async def aclose(self) -> None:
        # what is left in the pipes is read and dropped: a paused pipe keeps proc.wait() waiting
        drains = [asyncio.create_task(_discard(s)) for s in (self.proc.stdout, self.proc.stderr) if s]
        try:
            await end_exec(self.proc, self.pidfile)
        finally:
            for t in drains:
                t.cancel()


async def _discard(stream) -> None:
    while await stream.read(65536):
        pass


class TtySession(PipeSession):
    EOF = b"\x04"

    def __init__(self, proc: asyncio.subprocess.Process, pidfile: Path, term: Terminal):
        super().__init__(proc, pidfile)
        self.term = term
        term.pid = proc.pid

    async def output(self) -> AsyncIterator[node_pb2.ExecResponse]:
        async for data in self.term.read():
            yield node_pb2.ExecResponse(stdout=data)

    async def write(self, data: bytes) -> None:
        await self.term.write(data)

    async def close_stdin(self) -> None:
        await self.term.write(self.EOF)

    def resize(self, width: int, height: int) -> None:
        self.term.resize(width, height)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.term.close()


async def drive(session, first: node_pb2.ExecRequest,
                rest: AsyncIterator[node_pb2.ExecRequest]) -> AsyncIterator[node_pb2.ExecResponse]:
    """Feed the requests into the session, yield its output, then the exit code (if it has one)."""
    stdin_open = first.stdin

    async def apply(req: node_pb2.ExecRequest) -> None:
        nonlocal stdin_open
        if req.HasField("resize"):
            session.resize(req.resize.width, req.resize.height)
        if req.stdin_data and stdin_open:
            await session.write(req.stdin_data)
        if req.stdin_eof and stdin_open:
            stdin_open = False
            await session.close_stdin()

    async def pump_in() -> None:
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await apply(first)
            async for req in rest:      # resizes may come after stdin's end, or without stdin
                await apply(req)
            if stdin_open:
                await session.close_stdin()
    pumping = asyncio.create_task(pump_in())
    try:
        async with contextlib.aclosing(session.output()) as chunks:
            async for msg in chunks:
                yield msg
        code = await session.finish()
        if code is not None:
            yield node_pb2.ExecResponse(exit_code=code)
    finally:
        pumping.cancel()
        await session.aclose()
