"""`kctl exec`: run a command in a container, through the apiserver's node proxy.

    kctl exec POD [-c C] [-i] [-t] -- COMMAND [ARGS...]
    kctl exec deploy/web -- hostname        (the first pod, as `kctl logs`)

Output chunks go to stdout / stderr as they arrive. The command's exit
code becomes kctl's: non-zero prints kubectl's `command terminated with exit
code N` on stderr and exits N (0 is silent).

With -i, stdin is read on a daemon thread (a blocking read works for
terminals, pipes and files alike, and a daemon thread never holds up exit
while the command has already finished) and handed to the event loop
through a queue; end of input closes the command's stdin (`stdin_eof`), so
`echo hi | kctl exec -i p -- cat` ends. Without -i the command's stdin is
/dev/null. -t is accepted for kubectl compatibility but no terminal is
allocated (kctl has no TTY support yet); kctl says so on stderr.
"""
from __future__ import annotations

import asyncio
import sys
import threading
from typing import AsyncIterator

import click

from kubectlish.common import Ctx, Failed, err, run
from kubectlish.logs import pod_and_container


def stdin_chunks(stream=None, size: int = 65536) -> AsyncIterator[bytes]:
    """stdin (binary) as an async iterator of chunks, read on a daemon thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    src = stream if stream is not None else sys.stdin.buffer
    read = getattr(src, "read1", src.read)

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


async def _exec(ctx: Ctx, arg, container, stdin, command) -> int:
    from machinery import nodeclient
    if not command:
        raise Failed("error: you must specify at least one command for the container")
    pod, container = await pod_and_container(ctx, arg, container)
    code = None
    stream = nodeclient.exec_(ctx.server, pod.metadata.namespace or ctx.namespace, pod.metadata.name,
                              container, list(command), stdin_chunks() if stdin else None)
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
    if code is None:
        raise Failed("error: the exec stream ended without an exit code")
    if code:
        raise Failed(f"command terminated with exit code {code}", code=code)
    return 0


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-c", "--container", default=None, help="The container (default: the pod's default or first one).")
@click.option("-i", "--stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Accepted for kubectl compatibility; no TTY is allocated.")
@click.pass_obj
def exec_cmd(ctx: Ctx, pod, command, container, stdin, tty):
    """Run a command in a container: exec POD [-c C] [-i] -- COMMAND [ARGS...]."""
    if tty:
        err("Unable to use a TTY - kctl exec does not allocate one; running without")
    run(ctx, _exec, pod, container, stdin, command)
