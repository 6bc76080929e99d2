"""The node's runtime state on a tmpfs, as containerd's and CRI-O's `/run`
state: bundles (config.json, meta.json, conmon's pid, exit and attach
files), runc's `--root`, conmon's exit and socket dirs, and the pod
network's sandbox records and IP claims are small files made and removed at
every pod start and stop, and they mean nothing after a reboot (the
containers and network namespaces are gone with it).

`<root-dir>/run` becomes a tmpfs of its own (it stays mounted when the
agent stops or restarts, so a new agent re-adopts the containers; `kctl lab
down` and the test harness unmount it with the rest of the node's mounts).
What must outlive a reboot stays on disk under the root dir: the
containers' writable layers, their logs, images, pod volumes.

Measured (bench/pod_start.py, this machine's root file system is ext4
without a journal, where every new inode is checked against recently
deleted ones): see bench/README.md, "Runtime state on a tmpfs"."""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)
_libc = ctypes.CDLL(None, use_errno=True)
SIZE = "256m"          # bundles are a few KB each; a bound, not a reservation


def ensure_tmpfs(path: str) -> str:
    """Mount a tmpfs on `path` (made if missing) unless one is there already; return path.
    Where no tmpfs can be mounted (EPERM), the directory is used as it is, with a warning."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.path.ismount(path):
        return path
    opts = f"mode=0700,size={SIZE}".encode()
    if _libc.mount(b"kctl-run", path.encode(), b"tmpfs", 0, opts) != 0:
        err = ctypes.get_errno()
        log.warning("runtime state in %s on disk: cannot mount a tmpfs there (%s)", path, os.strerror(err))
    return path
