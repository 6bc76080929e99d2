"""A process's state from ``/proc/PID/stat``: alive (not a zombie) and its start time.

Shared by the lab's process records (deploy/lab/procs.py: a PID is only
signalled while its start time still matches) and the node agent (a
container's init that is gone or a zombie, nodeagent/execfifo.py).
"""
from __future__ import annotations


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rfind(")") + 2:].split()


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (None if gone)."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, start_time: int | None = None) -> bool:
    """True if `pid` exists, is not a zombie and (if given) started at start_time."""
    fields = stat_fields(pid)
    # A zombie is dead: it holds no namespace and does not keep a cgroup busy.
    # We do not reap it here (that would steal the exit status from whoever
    # owns the process).
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time
