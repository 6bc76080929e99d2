"""Unpacking one image layer (a gzip or plain tar) into a directory overlayfs can use.

``unpack_layer`` extracts into a temp dir next to the final place, verifies
the uncompressed content against the layer's diff_id, and renames it into
place, so a half-unpacked layer is never visible and a second process that
loses the rename race just discards its copy.

Rules: ``.wh.NAME`` becomes a char device 0:0, ``.wh..wh..opq`` sets
``trusted.overlay.opaque=y`` on its directory after the layer; tarfile with
``numeric_owner=True`` and ``filter='fully_trusted'`` (applets are absolute
symlinks); we reject ``..`` and absolute names, members below a symlink, and
hard links we create ourselves without following symlinks. Whiteouts need root
(mknod 0:0, trusted.* xattrs); without root other layers still unpack, but
owners are not preserved (tarfile only chowns as root).  zstd layers are
refused.  Every failure is an ``ImagePullError`` (reason ErrImagePull).

Synchronous (the image store runs it in a worker thread).
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib

from nodeagent.errors import ImagePullError


class _HashingReader:
    def __init__(self, f) -> None:
        self._f, self._h = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._h.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self._h.hexdigest()


def _bad(member: str, why: str) -> ImagePullError:
    return ImagePullError("ErrImagePull", f"refusing layer member {member!r}: {why}")


def _safe_relpath(name: str) -> str:
    if name.startswith("/") or ".." in name.split("/"):
        raise _bad(name, "absolute path or '..'")
    return posixpath.normpath(name)


def _check_parents(dest: str, rel: str, member: str) -> None:
    """No component of rel's parent may be a symlink (it could point out of dest)."""
    path = dest
    for part in posixpath.dirname(rel).split("/") if posixpath.dirname(rel) else ():
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise _bad(member, f"parent {part!r} is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise _bad(member, f"parent {part!r} is not a directory")


def _clear(path: str, keep_dir: bool) -> None:
    """Remove what is at path (never following a symlink), except a dir if keep_dir."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def _extract(tar: tarfile.TarFile, dest: str) -> list[str]:
    """Extract a layer stream into dest; return the dirs to mark opaque."""
    opaque = []
    for m in tar:
        rel = _safe_relpath(m.name)
        if rel == ".":
            continue
        _check_parents(dest, rel, m.name)
        parent, base = posixpath.split(rel)
        target = os.path.join(dest, rel)
        if base == ".wh..wh..opq":
            os.makedirs(os.path.join(dest, parent), exist_ok=True)
            opaque.append(os.path.join(dest, parent))
        elif base.startswith(".wh..wh."):
            continue  # other aufs metadata (.wh..wh.plnk, ...): not content
        elif base.startswith(".wh."):
            hidden = os.path.join(dest, parent, base[4:])
            os.makedirs(os.path.dirname(hidden), exist_ok=True)
            _clear(hidden, keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif m.islnk():
            link = _safe_relpath(m.linkname)
            _check_parents(dest, link, m.name)
            _clear(target, keep_dir=False)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(os.path.join(dest, link), target, follow_symlinks=False)
            except FileNotFoundError:
                raise _bad(m.name, f"hard link target {m.linkname!r} not in this layer") from None
        else:
            _clear(target, keep_dir=m.isdir())
            m.name = rel
            tar.extract(m, dest, set_attrs=True, numeric_owner=True, **_TRUSTED)
    return opaque


# tarfile's extraction filters arrived in Python 3.11.4 (3.12); Debian 12's
# python3 is 3.11.2 and has none (`filter=` is a TypeError there), and its
# unfiltered extract is what "fully_trusted" means: every member was vetted
# above.
_TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def unpack_layer(blob: str, final: str, tmp_parent: str, diff_id: str | None = None) -> bool:
    """Unpack a (gzip or plain) layer tar to `final` via a temp dir and rename.

    Verifies the uncompressed digest against diff_id. Returns False if another
    unpacker won the rename race (its identical copy is kept).
    """
    tmp = tempfile.mkdtemp(prefix=f"unpack-{os.getpid()}-", dir=tmp_parent)
    try:
        os.chmod(tmp, 0o755)
        with open(blob, "rb") as raw:
            magic = raw.read(4)
            raw.seek(0)
            if magic == b"\x28\xb5\x2f\xfd":
                raise ImagePullError("ErrImagePull", f"layer {diff_id}: zstd layers are not supported")
            stream = gzip.GzipFile(fileobj=raw) if magic[:2] == b"\x1f\x8b" else raw
            reader = _HashingReader(stream)
            try:
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    opaque = _extract(tar, tmp)
            except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise ImagePullError("ErrImagePull", f"layer {diff_id} is not a valid tar: {exc}") from exc
            except OSError as exc:
                raise ImagePullError("ErrImagePull", f"unpacking layer {diff_id}: {exc}") from exc
            got = reader.drain()
        if diff_id and got != diff_id:
            raise ImagePullError("ErrImagePull", f"layer content {got} does not match diff_id {diff_id}")
        try:
            for d in opaque:
                os.setxattr(d, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tmp, final)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and os.path.isdir(final):
                return False
            raise ImagePullError("ErrImagePull", f"placing layer {diff_id}: {exc}") from exc
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
