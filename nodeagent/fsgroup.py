"""fsGroup: a pod's volumes owned by its fsGroup (the kubelet's SetVolumeOwnership).

For the volume types that support ownership management (emptyDir,
configMap, secret, projected, downwardAPI, and claims — kctl's local-path
and hostPath-backed PVs), every file and directory gets group `fsGroup`;
files get rw-rw---- (r--r----- on the read-only API data volumes) added
to their mode, directories also the execute bits and setgid, so files
created later inherit the group. Symlinks keep their mode. hostPath
volumes are never changed.

Walking a volume is done once per pod (while the root does not carry the
group and setgid yet — Kubernetes' OnRootMismatch test), and again when the
agent rewrote an API data volume's files. fsGroupChangePolicy OnRootMismatch
and Always therefore behave alike here: a volume is walked when it is set
up for the pod, not at every sync.
"""
from __future__ import annotations

import os
import stat

from machinery.pb import core_pb2

RW, RO, EXEC = 0o660, 0o440, 0o110
API_DATA = ("config_map", "secret", "downward_api", "projected")


def supported(v: core_pb2.Volume) -> bool:
    return any(v.HasField(f) for f in ("empty_dir", "persistent_volume_claim", *API_DATA))


def _root_matches(path: str, gid: int) -> bool:
    st = os.stat(path)
    return st.st_gid == gid and st.st_mode & (stat.S_ISGID | 0o070) == stat.S_ISGID | 0o070


def _change(path: str, gid: int, readonly: bool) -> None:
    st = os.lstat(path)
    os.lchown(path, -1, gid)
    if stat.S_ISLNK(st.st_mode):
        return
    mask = RO if readonly else RW
    if stat.S_ISDIR(st.st_mode):
        mask |= stat.S_ISGID | EXEC
    os.chmod(path, stat.S_IMODE(st.st_mode) | mask)


def apply(pod: core_pb2.Pod, v: core_pb2.Volume, path: str, changed: bool) -> None:
    """Give volume v at path to the pod's fsGroup (when the pod has one and v supports it)."""
    psc = pod.spec.security_context
    if not psc.HasField("fs_group") or not supported(v) or not os.path.isdir(path):
        return
    gid = psc.fs_group
    if not changed and _root_matches(path, gid):
        return
    readonly = any(v.HasField(f) for f in API_DATA)
    for dirpath, dirs, files in os.walk(path):
        _change(dirpath, gid, readonly)
        for name in dirs + files:
            if name not in dirs or os.path.islink(os.path.join(dirpath, name)):
                _change(os.path.join(dirpath, name), gid, readonly)
