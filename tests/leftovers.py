"""What a test run leaves on the machine, checked when the session ends.

Every test cleans up what it starts (processes by PID, namespaces, mounts,
cgroups, iptables chains).  A leak used to go unnoticed: the run passed and
the next one found the mount.  So the session takes a snapshot of kctl's
kinds of machine state when it starts and compares at the end: overlay and
`kctl-run` tmpfs mounts, network namespaces, `KCTL*` iptables chains in the
root namespace, and cgroups under the hierarchies' `kctl*` parents.  What
is new is printed and fails the run (conftest.py).  What was there before
the run (a lab of the user's own) is left out."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deploy.lab.nsutil import read_mountinfo

CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")


def _mounts() -> set[str]:
    return {f"mount {m['mountpoint']} ({m['fstype']})" for m in read_mountinfo()
            if m["fstype"] == "overlay" or m["source"] == "kctl-run"}


def _chains() -> set[str]:
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        return set()
    res = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
    return {f"iptables chain {line[1:].split()[0]}" for line in res.stdout.splitlines()
            if line.startswith(":KCTL")}


def _cgroups() -> set[str]:
    out = set()
    for h in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        try:
            tops = [d for d in h.iterdir() if d.is_dir() and d.name.startswith("kctl")]
        except OSError:
            continue
        out |= {f"cgroup {d}" for d in tops}
    return out


def snapshot() -> set[str]:
    netns = {f"netns {n}" for n in os.listdir(NETNS_DIR)} if NETNS_DIR.is_dir() else set()
    return _mounts() | netns | _chains() | _cgroups()


def new_since(before: set[str]) -> list[str]:
    return sorted(snapshot() - before)
