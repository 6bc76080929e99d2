"""CPU time from /proc, for the benchmarks' CPU figures (one reader for all of them)."""
from __future__ import annotations

import os


def cpu_seconds(pid: int | None, *, children: bool = False) -> float:
    """utime + stime of a process (0 without one); with children, also those of the children it
    has waited for (cutime + cstime: a node agent's runc and skopeo)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()          # after the command name, which may hold spaces
    return sum(int(x) for x in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU-seconds this machine spent not idle since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
