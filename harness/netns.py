"""Network namespaces on the host for checks that need a node: a root-netns
bridge on a free 169.254.x.0/24 (`Segment`), and the clean-up helpers that
remove what node agents and runtimes leave on the host, whatever state they
are in.

Why a link-local segment and not 127.0.0.1: a process inside a node netns
cannot reach the host's loopback (design §4), and the agent must run inside
its node netns (``--netns``, setns of the network namespace only). The /24 is
picked per segment and checked to be unused on the machine; the root
namespace only gets the connected route of that /24 — no pod or service
routes. Nodes reach each other over the same bridge.

Every name carries the segment's run id (``kt<run>…`` links,
``kctltest-<run>…`` namespaces and cgroups), so two segments (two test
modules, a benchmark next to a test run) never collide.
"""
from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

NETNS_DIR = "/var/run/netns"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def in_netns(netns: str, *argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run argv with only the network namespace switched (nsenter --net, not ip netns exec);
    `netns` is a name under /var/run/netns or a path."""
    path = netns if "/" in netns else f"{NETNS_DIR}/{netns}"
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True, check=check,
                          timeout=timeout)


def _pick_segment() -> str:
    used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route", "show", "table", "all").stdout
    for _ in range(100):
        x = random.randint(100, 250)
        if f"169.254.{x}." not in used:
            return f"169.254.{x}"
    raise RuntimeError("no free 169.254.x.0/24 segment")


class Segment:
    """The root-ns bridge the control plane binds to; node netns hang off it."""

    def __init__(self, run: str | None = None) -> None:
        self.run = run or uuid.uuid4().hex[:6]
        self.prefix = f"kctltest-{self.run}"      # node netns, pod netns and cgroup names
        self.base = _pick_segment()
        self.ip = f"{self.base}.1"
        self.bridge = f"kt{self.run}b"
        self.veths: list[str] = []

    def up(self) -> "Segment":
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        return self

    def attach(self, netns: str, index: int) -> str:
        """A veth from the bridge into netns (as eth0); returns the netns' address."""
        host, peer = f"kt{self.run}v{index}", f"kt{self.run}p{index}"
        addr = f"{self.base}.{10 + index}"
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        self.veths.append(host)
        sh("ip", "link", "set", peer, "netns", netns)
        sh("ip", "link", "set", host, "master", self.bridge, "up")
        in_netns(netns, "ip", "link", "set", peer, "name", "eth0", check=True)
        in_netns(netns, "ip", "addr", "add", f"{addr}/24", "dev", "eth0", check=True)
        in_netns(netns, "ip", "link", "set", "eth0", "up", check=True)
        in_netns(netns, "ip", "link", "set", "lo", "up", check=True)
        return addr

    def down(self) -> None:
        for v in self.veths:
            sh("ip", "link", "del", v, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()


# ------------------------------------------------------------ host clean-up

def delete_netns(name: str) -> None:
    if os.path.exists(f"{NETNS_DIR}/{name}"):
        sh("ip", "netns", "del", name, check=False)


def delete_netns_prefix(prefix: str) -> None:
    if os.path.isdir(NETNS_DIR):
        for n in os.listdir(NETNS_DIR):
            if n.startswith(prefix):
                delete_netns(n)


def kill_containers(containers_dir: Path) -> None:
    """SIGKILL every container and conmon whose pid file is under containers_dir/<id>/."""
    for d in containers_dir.iterdir() if containers_dir.is_dir() else []:
        for f in ("pidfile", "conmon.pid"):
            try:
                os.kill(int((d / f).read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root, in mount order."""
    return [mp for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if (mp := line.split()[4]).startswith(str(root))]


def unmount_under(root: Path) -> None:
    """Lazily unmount everything below root, the most recent mount first."""
    libc = ctypes.CDLL(None, use_errno=True)
    for mp in reversed(mounts_under(root)):
        libc.umount2(mp.encode(), 2)   # MNT_DETACH


def remove_cgroup_children(parent: str) -> None:
    """rmdir the child cgroups of `parent` (relative to each hierarchy), best effort."""
    for h in CGROUP_ROOT.iterdir():
        base = h / parent
        for child in base.iterdir() if base.is_dir() else []:
            if child.is_dir():
                try:
                    child.rmdir()
                except OSError:
                    pass


def remove_cgroup_parent(parent: str) -> None:
    """rmdir `parent`'s children, itself and its own parent directory in every hierarchy."""
    remove_cgroup_children(parent)
    for h in CGROUP_ROOT.iterdir():
        base = h / parent
        if base.is_dir():
            for d in (base, base.parent):
                try:
                    d.rmdir()
                except OSError:
                    pass


def force_cleanup(root: Path, containers_dir: Path, cgroup_parent: str) -> None:
    """Containers killed by PID, mounts below root gone, the cgroups' children removed."""
    kill_containers(containers_dir)
    time.sleep(0.2)
    unmount_under(root)
    remove_cgroup_children(cgroup_parent)
