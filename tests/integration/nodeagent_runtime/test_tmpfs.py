"""nodeagent.volumes.mount_tmpfs: mount(2) of a tmpfs with the options `mount -t tmpfs -o
nosuid,nodev,mode=...,size=...` gives (a Memory emptyDir, secret and projected volumes)."""
from __future__ import annotations

import ctypes
import os

import pytest

from nodeagent.volumes import MNT_DETACH, mount_tmpfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount)")


def _mount_of(path: str) -> list[str] | None:
    for line in open("/proc/self/mounts"):
        fields = line.split()
        if fields[1] == path:
            return fields
    return None


def test_a_tmpfs_with_size_mode_nosuid_and_nodev_mounted_once(tmp_path):
    d = str(tmp_path / "vol")
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        mount_tmpfs(d, size=16 * 1024 * 1024, mode=0o755)
        fields = _mount_of(d)
        assert fields is not None and fields[2] == "tmpfs"
        opts = fields[3].split(",")
        assert {"nosuid", "nodev", "size=16384k", "mode=755"} <= set(opts), opts
        mount_tmpfs(d)                                   # already there: nothing more
        assert sum(line.split()[1] == d for line in open("/proc/self/mounts")) == 1
    finally:
        libc.umount2(d.encode(), MNT_DETACH)
    assert _mount_of(d) is None

