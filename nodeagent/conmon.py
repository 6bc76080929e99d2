"""Starting a container the way Podman/CRI-O do: conmon runs ``runc create`` and stays its parent.

``run_conmon`` starts ``conmon`` with ``start_new_session=True`` (the
container outlives the agent) and ``_OCI_SYNCPIPE`` passed via ``pass_fds``:
conmon's parent returns before ``runc create`` is done; the pipe then yields
one JSON line, ``{"data": PID}`` or ``{"data": -1, "message": ...}``.  conmon
keeps the container's stdio: it writes the CRI log (nodeagent/crilog.py) and,
at exit, the exit code as a plain integer into its exit dir.  A failed create
is a ``ContainerRuntimeError`` with conmon's and runc's messages.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from nodeagent.errors import ContainerRuntimeError

CONMON = shutil.which("conmon") or "/usr/bin/conmon"


async def run_conmon(d: Path, cid: str, args: list[str]) -> int:
    """conmon ARGS in its own session (the container outlives the agent), cwd = the bundle D,
    stderr to D/conmon.err; the container's pid from the sync pipe (runc create is done)."""
    r, w = os.pipe()
    try:
        with open(d / "conmon.err", "wb") as errf:
            proc = await asyncio.create_subprocess_exec(
                CONMON, *args, env={**os.environ, "_OCI_SYNCPIPE": str(w)}, pass_fds=(w,),
                start_new_session=True, cwd=str(d),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=errf)
        os.close(w)
        w = -1
        rc = await proc.wait()
        line = await asyncio.wait_for(read_line(r), 60)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    try:
        msg = json.loads(line) if line else {"data": -1, "message": "conmon closed sync pipe"}
    except ValueError:
        msg = {"data": -1, "message": line}
    if rc != 0 or msg.get("data", -1) < 0:
        err = (d / "conmon.err").read_text(errors="replace").strip()
        raise ContainerRuntimeError(f"runc create {cid} failed: {msg.get('message', '')} {err}".strip())
    return int(msg["data"])


async def read_line(fd: int) -> str:
    """One line from the sync pipe, read by the event loop (a dup of FD; FD stays open).  Not a
    thread each: a burst of 30 creates used to fill the default executor's few threads and wait
    there in line for one another's runc create (bench/README.md)."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    try:
        return (await reader.readline()).decode(errors="replace").strip()
    finally:
        transport.close()
