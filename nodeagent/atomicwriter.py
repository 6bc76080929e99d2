"""Atomic updates of a directory of files: the kubelet's AtomicWriter
(pkg/volume/util/atomic_writer.go), which ConfigMap, Secret, downwardAPI
and projected volumes use.

Layout of a target directory::

    ..2026_12_06_15_04_05.4182736/   the current payload (a timestamped dir)
    ..data -> ..2026_12_06_15_04_05.4182736
    key    -> ..data/key             one symlink per top-level path

A reader opening ``key`` goes through ``..data``, so it sees the whole old
payload or the whole new one, never a mix or a half-written file.
``write(target, payload)`` (payload: relative path -> FileProjection):

1. checks every path (relative, no ``..`` element, not starting with ``..``);
2. compares the payload with what ``..data`` holds (bytes and modes); when
   nothing differs and no path went away it returns False and touches nothing;
3. writes the payload into a new timestamped directory;
4. points a ``..data_tmp`` symlink at it and renames that over ``..data``
   (rename(2) is the atomic step);
5. creates the missing per-key symlinks, removes those of paths no longer
   in the payload, then removes the old timestamped directory.

A bind mount of one file (a ``subPath`` mount) keeps the inode it was given
at container start, so it does not follow updates — as in Kubernetes.
Errors are the host's (OSError); callers translate them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644


def validate_path(path: str) -> str:
    """'' when `path` may be a payload path, else why not (atomic_writer.go's validatePath)."""
    if not path:
        return "invalid path: must not be empty"
    if os.path.isabs(path):
        return f"invalid path: must be relative path: {path}"
    if len(path) > 4096:
        return f"invalid path: must be less than or equal to 4096 characters: {path}"
    parts = path.split("/")
    if any(p == ".." for p in parts):
        return f"invalid path: must not contain '..': {path}"
    if path.startswith(".."):
        return f"invalid path: must not start with '..': {path}"
    return ""


def _top(path: str) -> str:
    return os.path.normpath(path).split("/")[0]


def current_dir(target: str) -> str | None:
    """The timestamped directory ..data points at, or None."""
    try:
        return os.path.join(target, os.readlink(os.path.join(target, DATA_DIR)))
    except OSError:
        return None


def _current_files(ts_dir: str) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    for root, _, files in os.walk(ts_dir):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, ts_dir)] = (f.read(), os.stat(full).st_mode & 0o7777)
    return out


def write(target: str, payload: dict[str, FileProjection]) -> bool:
    """Make `target` hold exactly `payload`, atomically; True when anything changed."""
    clean: dict[str, FileProjection] = {}
    for path, fp in payload.items():
        why = validate_path(path)
        if why:
            raise ValueError(why)
        clean[os.path.normpath(path)] = fp
    os.makedirs(target, exist_ok=True)
    old_dir = current_dir(target)
    old = _current_files(old_dir) if old_dir and os.path.isdir(old_dir) else {}
    if old_dir and old == {p: (fp.data, fp.mode) for p, fp in clean.items()}:
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    new_dir = tempfile.mkdtemp(prefix=stamp, dir=target)
    os.chmod(new_dir, 0o755)
    for path, fp in clean.items():
        full = os.path.join(new_dir, path)
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        with open(full, "wb") as f:
            f.write(fp.data)
        os.chmod(full, fp.mode)
    tmp_link = os.path.join(target, DATA_DIR_TMP)
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(os.path.basename(new_dir), tmp_link)
    os.rename(tmp_link, os.path.join(target, DATA_DIR))
    wanted = {_top(p) for p in clean}
    for name in sorted(wanted):
        link = os.path.join(target, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(DATA_DIR, name), link)
    for name in sorted({_top(p) for p in old} - wanted):
        link = os.path.join(target, name)
        if os.path.islink(link):
            os.unlink(link)
    if old_dir and os.path.isdir(old_dir):
        shutil.rmtree(old_dir)
    return True
