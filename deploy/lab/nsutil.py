"""Small helpers for network namespaces.

Entering a namespace (design §4): a lab process enters ONLY the network
namespace of its node -- ``nsenter --net=/var/run/netns/X -- argv`` for child
processes (nsenter execs the program in place, so the PID we record is the
program's), and, in-process, a short-lived thread that calls ``setns(2)``:
setns changes only the calling thread, and ``/proc/sys/net`` follows the netns
of the thread that opens it, so per-netns sysctls are written from such a
thread. The thread ends right after, so no other code ever runs in the wrong
namespace. ``ip netns exec`` is never used: it also remounts /sys in a private
mount namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import re
import threading
from collections.abc import Callable
from typing import TypeVar

from deploy.lab.naming import NETNS_DIR, LabError, netns_path

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def nsenter_argv(path: str, argv: list[str]) -> list[str]:
    """argv that runs `argv` in the network namespace at `path` only."""
    return ["nsenter", f"--net={path}", "--", *argv]


def netns_inode(path: str) -> int | None:
    """Inode identifying the namespace bound at `path`.

    None if `path` is missing or is not a namespace (e.g. the empty file a
    crashed ``netns create`` leaves behind): its inode number belongs to
    another file system and must not be matched against /proc/*/ns/net.
    """
    try:
        st = os.stat(path)
        nsfs_dev = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return None
    return st.st_ino if st.st_dev == nsfs_dev else None


def list_netns(prefix: str = "") -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def in_thread(fn: Callable[[], T], name: str = "kctl-lab") -> T:
    """Run `fn` in a fresh thread, wait for it, return its result or raise."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    t = threading.Thread(target=target, name=name)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def off_loop(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator for functions using pyroute2's synchronous API.

    pyroute2 0.9's sync ``IPRoute`` drives an asyncio loop of its own and
    fails with "This event loop is already running" when called from a
    thread that runs one (an async test, an async CLI). Such calls are moved
    to a helper thread; the caller still blocks until they are done.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        return in_thread(lambda: fn(*args, **kwargs), name=f"kctl-lab:{fn.__name__}")

    return wrapper


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread that has joined the netns at `path`."""

    def target() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({path}): {os.strerror(err)}")
        finally:
            os.close(fd)
        return fn()

    return in_thread(target, name=f"netns:{os.path.basename(path)}")


@off_loop
def create_netns(name: str) -> str:
    """Create a named netns (like ``ip netns add``); return its path."""
    from pyroute2 import netns

    if name in list_netns():
        raise LabError(f"network namespace {name} already exists")
    netns.create(name)
    return netns_path(name)


def write_sysctl(key: str, value: str, ns_path: str | None = None) -> None:
    """Write sysctl `key` (dotted, e.g. net.ipv4.ip_forward) in a netns."""
    file = "/proc/sys/" + key.replace(".", "/")

    def write() -> None:
        with open(file, "w") as f:
            f.write(str(value))

    if ns_path is None:
        write()
    else:
        in_netns(ns_path, write)


def read_sysctl(key: str, ns_path: str | None = None) -> str:
    file = "/proc/sys/" + key.replace(".", "/")

    def read() -> str:
        with open(file) as f:
            return f.read().strip()

    return read() if ns_path is None else in_netns(ns_path, read)


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def read_mountinfo(file: str = "/proc/self/mountinfo") -> list[dict]:
    """Mounts as dicts: id, parent, root, mountpoint, fstype, source."""
    mounts = []
    with open(file) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) < 5 or not rf:
                continue
            mounts.append({
                "id": int(lf[0]), "parent": int(lf[1]), "root": _unescape(lf[3]),
                "mountpoint": _unescape(lf[4]), "fstype": rf[0],
                "source": rf[1] if len(rf) > 1 else "",
            })
    return mounts


def _canon(path: str) -> str:
    # /var/run is a symlink to /run; mountinfo shows resolved paths.
    return os.path.realpath(path)


def is_under(path: str, directory: str) -> bool:
    directory = _canon(directory).rstrip("/")
    return path == directory or path.startswith(directory + "/")


def mounts_under(dirs: list[str], mounts: list[dict] | None = None) -> list[dict]:
    """Mounts whose mount point is one of `dirs` or below, deepest first."""
    mounts = read_mountinfo() if mounts is None else mounts
    found = [m for m in mounts if any(is_under(m["mountpoint"], d) for d in dirs)]
    # Deepest first; among equal depth, later (stacked on top) first.
    found.sort(key=lambda m: (m["mountpoint"].count("/"), m["id"]), reverse=True)
    return found


def nsfs_inodes(mounts: list[dict]) -> set[int]:
    """Namespace inodes of bind-mounted *network* namespaces in `mounts`."""
    inodes = set()
    for m in mounts:
        root = m["root"]
        if m["fstype"] == "nsfs" and root.startswith("net:["):
            try:
                inodes.add(int(root[5:-1]))
            except ValueError:
                pass
    return inodes
