"""Ending what a ``runc exec`` started: the exec'd command and all its descendants.

Killing ``runc exec`` alone would leave the command running in the
container (runc is only its parent until it exits).  ``kill_exec`` therefore
finds the exec'd PID from the file runc writes with ``--pid-file``, stops
that whole process tree (from /proc's parent links) with SIGSTOP so nothing
forks or is reparented to the container's init meanwhile, then SIGKILLs the
process group and every process of the tree; ``runc exec`` reaps its child
and exits by itself.  Used when an exec times out (``Runtime.exec``) and when
an exec stream is cancelled (the agent's gRPC ``Exec``), through ``end_exec``.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc's parent links), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


async def kill_exec(proc: asyncio.subprocess.Process, pidfile: Path, pidfile_wait: float = 5.0) -> None:
    """Kill what a ``runc exec --pid-file PIDFILE`` started, then let runc exit (cancel/timeout).

    Wait (while runc lives, up to ``pidfile_wait``) for runc to write the
    exec'd PID, then SIGKILL its process group (runc makes the exec'd process
    a session leader) and every descendant (a shell's children, backgrounded
    or not) — all in one sweep, before anything can be reparented to the
    container's init.  Only when no PID was ever written is runc itself killed.
    """
    pid = None
    deadline = time.monotonic() + pidfile_wait
    while True:
        try:
            pid = int(pidfile.read_text())
            break
        except (OSError, ValueError):
            pass
        if proc.returncode is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    if pid is not None:
        victims = process_tree(pid)
        for p in victims:              # stop the whole tree first: nothing forks or gets reparented
            try:
                os.kill(p, signal.SIGSTOP)
            except OSError:
                pass
        victims = list(dict.fromkeys(victims + process_tree(pid)))
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    elif proc.returncode is None:
        proc.kill()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


async def end_exec(proc: asyncio.subprocess.Process, pidfile: Path) -> None:
    """After a ``runc exec --pid-file PIDFILE``: if the command still runs (cancel, timeout),
    kill it and its children first (runc exec then reaps and exits; killing only runc would
    leave the command running in the container); then remove the pid file."""
    if proc.returncode is None:
        await asyncio.shield(kill_exec(proc, pidfile))
    pidfile.unlink(missing_ok=True)
