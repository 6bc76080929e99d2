"""Network namespaces from one thread, with libc directly (no ``ip netns``, no helper process).

A netns is created the way iproute2 does (``ip netns add``), but only for the
calling thread: ``unshare(CLONE_NEWNET)``, bind-mount
``/proc/thread-self/ns/net`` on ``/var/run/netns/NAME`` (``/proc/self`` would
name the *main thread's* netns), then ``setns()`` back to where the thread
was.  The run dir is made a shared mount first, so the netns mounts propagate
to other mount namespaces.  ``ip netns exec`` is avoided on purpose: it also
remounts /sys, which breaks runc's cgroup lookup (design §4).

Everything here acts on the calling thread's namespace only; nodeagent/network.py
runs it from its worker threads.  Errors are the host's (OSError); callers translate.
"""
from __future__ import annotations

import ctypes
import os

NETNS_RUN_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str) -> None:
    """Raise OSError(errno) for a libc call that returned non-zero."""
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace of FD."""
    check(_libc.setns(fd, CLONE_NEWNET), "setns")


def make_netns(path: str, back_fd: int) -> None:
    """Create a named netns at PATH from this thread only; the thread ends up in BACK_FD's netns."""
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    rundir = NETNS_RUN_DIR.encode()
    # iproute2's dance: make the run dir a shared mount (bind it on itself first if
    # it is not a mount point yet) so netns mounts propagate to other mount namespaces.
    if _libc.mount(b"none", rundir, b"none", MS_SHARED | MS_REC, None) != 0:
        check(_libc.mount(rundir, rundir, b"none", MS_BIND | MS_REC, None), "bind rundir")
        check(_libc.mount(b"none", rundir, b"none", MS_SHARED | MS_REC, None), "share rundir")
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none",
                              MS_BIND, None), f"bind netns {path}")
        finally:
            setns(back_fd)
    except BaseException:
        os.unlink(path)
        raise


def remove_netns(path: str) -> None:
    """Unmount and remove a named netns (a no-op if it is gone); the netns dies with its last user."""
    if os.path.exists(path):
        _libc.umount2(path.encode(), MNT_DETACH)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def write_sysctl(path: str, value: str) -> None:
    """Write a /proc/sys file; /proc/sys/net/* follows the netns of the calling thread."""
    with open(path, "w") as f:
        f.write(value)
