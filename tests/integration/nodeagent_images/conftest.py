"""Fixtures: the images of deploy/images.py served by a real docker-registry on 127.0.0.1.

Session scope: build the OCI layouts once and push busybox:{latest,1.36} and
kctl/echo:latest into one registry. Per test: an empty ImageStore root and a
`skopeo` wrapper that logs every invocation (to count pulls), then execs the
real /usr/bin/skopeo.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from deploy.images import build_images, write_layout
from harness.nodes import start_registry

REAL_SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"


HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: mknod for whiteouts, trusted.* xattrs, overlay mounts, "
                                   "chroot and namespaces")
    for item in items:  # only this directory's tests: other suites decide for themselves
        if "root" in item.keywords and str(item.path).startswith(HERE + os.sep):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return build_images(str(tmp_path_factory.mktemp("oci-images")))


@pytest.fixture(scope="session")
def registry(built):
    with start_registry(built) as reg:
        yield reg


class SkopeoLog:
    def __init__(self, path: str) -> None:
        self.path = path

    def calls(self) -> list[list[str]]:
        try:
            with open(self.path) as f:
                return [line.split() for line in f.read().splitlines()]
        except FileNotFoundError:
            return []

    def count(self, subcommand: str) -> int:
        return sum(1 for c in self.calls() if subcommand in c)


@pytest.fixture
def skopeo(tmp_path):
    """(wrapper path, SkopeoLog): a real skopeo that records its arguments."""
    log = tmp_path / "skopeo.log"
    wrapper = tmp_path / "skopeo"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {REAL_SKOPEO} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), SkopeoLog(str(log))


@pytest.fixture
def store_root(tmp_path):
    root = tmp_path / "store"
    yield str(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def overlay(tmp_path):
    """mount(lowerdirs top first, writable=False) -> an overlayfs merged dir; unmounted at teardown.

    writable=True adds an upper and a work dir, as a container's rootfs has.
    """
    mounted = []

    def mount(lowers: list[str], writable: bool = False) -> str:
        base = tmp_path / f"ovl{len(mounted)}"
        merged = base / "merged"
        merged.mkdir(parents=True)
        opts = "lowerdir=" + ":".join(lowers)
        if writable:
            (base / "upper").mkdir()
            (base / "work").mkdir()
            opts += f",upperdir={base / 'upper'},workdir={base / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
        mounted.append(str(merged))
        return str(merged)

    yield mount
    for m in reversed(mounted):
        subprocess.run(["umount", m], check=False)


def tar_layer(members: list[tuple]) -> tuple[bytes, str]:
    """Build a gzip layer from (name, kind, arg) tuples: kind in file/dir/symlink/hardlink."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                data = arg.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            tar.addfile(info)
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), "sha256:" + hashlib.sha256(data).hexdigest()


def make_layout(path: str, layers: list[list[tuple]], tag: str = "test") -> str:
    """Write an OCI layout with the given layers; return an oci: reference."""
    write_layout(path, [tar_layer(m) for m in layers], {"Cmd": ["sh"]}, [tag],
                 [f"layer {i}" for i in range(len(layers))])
    return f"oci:{path}:{tag}"


def is_whiteout(path: str) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
