"""Application images built from Debian packages with mmdebstrap, layered the
way a Dockerfile build would layer them, cached across labs.

Images (one OCI layout per repository under the cache dir; offline ref →
path in the lab registry, docker.io mirror layout, in ``IMAGES``):

* ``debian:bookworm`` (also ``debian:12``): ``mmdebstrap --variant=essential``
  of bookworm (Essential: yes packages; bash, coreutils, dpkg, no apt), docs,
  man pages and locales left out. One layer.
* ``redis:7`` (also ``redis:7.0``, ``redis:latest``): the Debian layer plus
  a layer with Debian's ``redis-server`` and what it pulls in, and ``/data``.
  ``Cmd redis-server --protected-mode no``, ``WorkingDir /data``, port 6379
  (as the Docker Hub image: no config file, listens on every address).
* ``python:3`` (also ``python:3.11``): the Debian layer plus Debian's
  ``python3`` and ``python3-redis`` (the Redis client the guestbook uses).
* ``kctl/guestbook:v1``: ``python:3``'s layers plus one layer holding
  ``/app/guestbook.py`` from ``examples/guestbook/frontend/`` (written with
  deploy.images' reproducible layer writer, no mmdebstrap).

How an application layer is made: mmdebstrap builds the whole tree again
with the extra packages (``--include``), and the layer holds only what
differs from the parent image's layers (compared by type, mode, owner and
content or link target; modification times are ignored because two
mmdebstrap runs stamp different ones), plus every parent directory of such
an entry with its real metadata (an upper directory's attributes win in
overlayfs), plus ``.wh.NAME`` whiteouts for what disappeared. So the base
layer is byte-identical in all three images: the registry and each node
store it once. ``/dev``, ``/proc``, ``/sys`` and ``/tmp`` are left empty and
``/etc/hostname``, ``/etc/resolv.conf`` (mmdebstrap copies the host's) are
empty files: the node agent mounts its own.

Cache: ``KCTL_IMAGE_CACHE`` (default ``/var/cache/kctl-images``), one layout
per repository with a build key (hash of this builder's version, the suite,
mirrors, mmdebstrap options, packages, image config and the app's source).
A matching key means no rebuild, so the second ``lab up`` spends no time
here; a changed key rebuilds only that image and the ones built on it. An
exclusive ``flock`` on ``CACHE/.lock`` serialises concurrent builds (two
labs coming up at once). Builds write to a temp dir and swap it in (never
half-built). mmdebstrap needs root and the apt mirrors (``KCTL_IMAGE_MIRRORS``,
``" | "``-separated sources lines; by default the Vagrant box's, deploy/vagrant/box.py).

CLI: ``python -m deploy.debimages`` builds (or finds cached) and prints
``ref -> layout:tag`` and the time spent.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.vagrant.box import MIRRORS as BOX_MIRRORS
from deploy.images import PATH_ENV, build_cached, cache_key, Layer, write_layout
from machinery.errors import HostError

REPO = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("KCTL_IMAGE_CACHE", "/var/cache/kctl-images")
SUITE = "bookworm"
# The Vagrant box's apt sources (bookworm, -updates, -security on deb.debian.org)
MIRRORS = os.environ["KCTL_IMAGE_MIRRORS"].split(" | ") if os.environ.get("KCTL_IMAGE_MIRRORS") else BOX_MIRRORS
MMDEBSTRAP_OPTS = [
    "--variant=essential", "--mode=root", "--quiet",
    '--aptopt=Acquire::Languages "none"',
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
]
BUILDER_VERSION = "kctl-debimages-1"
EMPTY_DIRS = ("dev", "proc", "sys", "tmp")          # kept, contents left out
EMPTY_FILES = ("etc/hostname", "etc/resolv.conf")  # the node agent mounts its own
GUESTBOOK_APP = REPO / "examples" / "guestbook" / "frontend" / "guestbook.py"
LANG_ENV = "LANG=C.UTF-8"


class ImageBuildError(HostError):
    """mmdebstrap failed or is missing (the HostError family)."""


@dataclass(frozen=True)
class Spec:
    repo: str                       # layout directory name under the cache
    tags: tuple[str, ...]
    config: dict
    parent: str | None = None       # repo of the parent image
    packages: tuple[str, ...] = ()  # Debian packages on top of the parent (mmdebstrap --include)
    dirs: tuple[str, ...] = ()      # extra empty directories (mode 0755)
    files: dict = field(default_factory=dict)  # path in image -> (source Path, mode): a layer without mmdebstrap


SPECS = [
    Spec("debian", ("bookworm", "12"), {"Env": [PATH_ENV, LANG_ENV], "Cmd": ["bash"]}),
    Spec("redis", ("7", "7.0", "latest"),
         {"Env": [PATH_ENV, LANG_ENV], "Cmd": ["redis-server", "--protected-mode", "no"],
          "WorkingDir": "/data", "ExposedPorts": {"6379/tcp": {}}},
         parent="debian", packages=("redis-server",), dirs=("data",)),
    Spec("python", ("3", "3.11"), {"Env": [PATH_ENV, LANG_ENV], "Cmd": ["python3"]},
         parent="debian", packages=("python3", "python3-redis")),
    Spec("kctl-guestbook", ("v1",),
         {"Env": [PATH_ENV, LANG_ENV, "PYTHONUNBUFFERED=1"], "Cmd": ["python3", "/app/guestbook.py"],
          "WorkingDir": "/app", "ExposedPorts": {"8080/tcp": {}}},
         parent="python", files={"app/guestbook.py": (GUESTBOOK_APP, 0o644)}),
]
# offline ref -> path in the lab registry (docker.io mirror layout), and the layout holding it
REGISTRY_PATHS = {"debian": "library/debian", "redis": "library/redis", "python": "library/python",
                  "kctl-guestbook": "kctl/guestbook"}
IMAGES = {f"{REGISTRY_PATHS[s.repo].removeprefix('library/')}:{t}": f"{REGISTRY_PATHS[s.repo]}:{t}"
          for s in SPECS for t in s.tags}


# ----------------------------------------------------------------- trees

Entry = tuple  # (kind, mode, uid, gid, content digest or link target, device numbers)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_index(root: str) -> dict[str, Entry]:
    """{relative path: Entry} of a root filesystem tree, without the contents of EMPTY_DIRS."""
    out: dict[str, Entry] = {}
    for d, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(d, root)
        if rel_dir in EMPTY_DIRS:
            dirs[:] = []
            files = []
        for name in dirs + files:
            path = os.path.join(d, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            if rel in EMPTY_FILES:
                content = hashlib.sha256(b"").hexdigest()
            elif stat.S_ISREG(st.st_mode):
                content = _digest(path)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = ""
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
                st.st_mode) else (0, 0)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, content, dev)
    return out


_TAR_KIND = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.REGTYPE: stat.S_IFREG, tarfile.AREGTYPE: stat.S_IFREG,
             tarfile.SYMTYPE: stat.S_IFLNK, tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
             tarfile.FIFOTYPE: stat.S_IFIFO}


def layers_index(tar_paths: list[str]) -> dict[str, Entry]:
    """The Entry map of the filesystem that layers (uncompressed or gzip tars,
    lowest first) add up to: later layers override, whiteouts remove."""
    out: dict[str, Entry] = {}
    for tar_path in tar_paths:
        with tarfile.open(tar_path, "r:*") as tar:
            for m in tar:
                name = os.path.normpath(m.name)
                base = os.path.basename(name)
                if base.startswith(".wh."):
                    parent = os.path.dirname(name)
                    gone = parent if base == ".wh..wh..opq" else os.path.join(parent, base[4:])
                    keep_dir = base == ".wh..wh..opq"
                    for p in [p for p in out if p.startswith(gone + "/") or (p == gone and not keep_dir)]:
                        del out[p]
                    continue
                if m.islnk():
                    target = out.get(os.path.normpath(m.linkname))
                    out[name] = (stat.S_IFREG, m.mode, m.uid, m.gid, target[4] if target else "", (0, 0))
                    continue
                if m.isreg():
                    content = hashlib.sha256(tar.extractfile(m).read()).hexdigest()
                else:
                    content = m.linkname if m.issym() else ""
                out[name] = (_TAR_KIND.get(m.type, 0), m.mode, m.uid, m.gid, content,
                             (m.devmajor, m.devminor) if m.ischr() or m.isblk() else (0, 0))
    return out


def diff_paths(tree: dict[str, Entry], parent: dict[str, Entry]) -> tuple[list[str], list[str]]:
    """(paths to put in the layer, paths to white out). Changed entries bring
    their parent directories along; only the topmost removed path is whited out."""
    changed = {p for p, e in tree.items() if parent.get(p) != e}
    for p in list(changed):
        d = os.path.dirname(p)
        while d:
            changed.add(d)
            d = os.path.dirname(d)
    gone = sorted(p for p in parent if p not in tree)
    top = [p for p in gone if os.path.dirname(p) in tree or not os.path.dirname(p)]
    return sorted(changed), top


def tree_layer(root: str, paths: list[str], whiteouts: list[str], out_path: str) -> str:
    """Write `paths` of `root` (and the whiteouts) as a gzip tar at out_path; return its diff_id."""
    import gzip

    class _Hash:
        def __init__(self, f):
            self.f, self.h = f, hashlib.sha256()

        def write(self, b):
            self.h.update(b)
            return self.f.write(b)

    with open(out_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
        hashing = _Hash(gz)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            entries = [(p, False) for p in paths] + [(w, True) for w in whiteouts]
            for rel, white in sorted(entries):
                if white:
                    info = tarfile.TarInfo(os.path.join(os.path.dirname(rel), ".wh." + os.path.basename(rel)))
                    info.mode, info.mtime = 0o600, 0
                    tar.addfile(info, None)
                    continue
                full = os.path.join(root, rel)
                info = tar.gettarinfo(full, rel)
                info.uname = info.gname = ""
                if rel in EMPTY_FILES:
                    info.type, info.size = tarfile.REGTYPE, 0
                    tar.addfile(info, None)
                elif info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return "sha256:" + hashing.h.hexdigest()


# --------------------------------------------------------------- building

def mmdebstrap(dest: str, packages: tuple[str, ...] = ()) -> None:
    if not shutil.which("mmdebstrap"):
        raise ImageBuildError("mmdebstrap is not installed: apt-get install mmdebstrap")
    include = ["--include=" + ",".join(packages)] if packages else []
    res = subprocess.run(["mmdebstrap", *MMDEBSTRAP_OPTS, *include, SUITE, dest, *MIRRORS],
                         capture_output=True, text=True)
    if res.returncode != 0:
        what = " ".join([SUITE, *packages])
        raise ImageBuildError(f"mmdebstrap {what} failed: {res.stderr.strip()[-2000:]}")


def layout_layers(layout: str, tag: str) -> tuple[list[str], list[str]]:
    """([blob paths], [diff_ids]) of image `tag` in an OCI layout, lowest layer first."""
    def blob(digest: str) -> str:
        return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    with open(blob(desc["digest"])) as f:
        manifest = json.load(f)
    with open(blob(manifest["config"]["digest"])) as f:
        config = json.load(f)
    return [blob(layer["digest"]) for layer in manifest["layers"]], config["rootfs"]["diff_ids"]


def _spec_key(spec: Spec, keys: dict[str, str]) -> str:
    parts = [BUILDER_VERSION, SUITE, *MIRRORS, *MMDEBSTRAP_OPTS, *spec.packages, *spec.dirs, *spec.tags,
             json.dumps(spec.config, sort_keys=True), keys.get(spec.parent or "", "")]
    for path, (src, mode) in sorted(spec.files.items()):
        parts += [path, str(mode), Path(src).read_text()]
    return cache_key(*(p.encode() for p in parts))


def _make(spec: Spec, cache: str, work: str, dest: str) -> None:
    """Write `spec`'s layout into dest (a fresh temp dir); `work` is scratch space."""
    parent_blobs, parent_ids = layout_layers(os.path.join(cache, spec.parent), SPECS_BY_REPO[
        spec.parent].tags[0]) if spec.parent else ([], [])
    layer_path = os.path.join(work, "layer.tar.gz")
    if spec.files:
        layer = Layer()
        for path, (src, mode) in sorted(spec.files.items()):
            parts = path.split("/")
            for i in range(1, len(parts)):
                layer.dir("/".join(parts[:i]))
            layer.file(path, Path(src).read_bytes(), mode)
        blob, diff_id = layer.render()
        Path(layer_path).write_bytes(blob)
    else:
        root = os.path.join(work, "rootfs")
        mmdebstrap(root, spec.packages)
        for d in spec.dirs:
            os.makedirs(os.path.join(root, d), mode=0o755, exist_ok=True)
        paths, whiteouts = diff_paths(tree_index(root), layers_index(parent_blobs))
        diff_id = tree_layer(root, paths, whiteouts, layer_path)
        shutil.rmtree(root)
    layers = [(Path(b).read_bytes(), d) for b, d in zip(parent_blobs, parent_ids)]
    layers.append((Path(layer_path).read_bytes(), diff_id))
    history = [f"kctl: mmdebstrap {SUITE} {' '.join(spec.packages) or '(essential)'}"] if not spec.files else [
        "kctl: COPY " + " ".join(sorted(spec.files))]
    parent_history = []
    if spec.parent:
        with open(os.path.join(cache, spec.parent, ".kctl-history")) as f:
            parent_history = json.load(f)
    write_layout(dest, layers, spec.config, list(spec.tags), parent_history + history)
    with open(os.path.join(dest, ".kctl-history"), "w") as f:
        json.dump(parent_history + history, f)


SPECS_BY_REPO = {s.repo: s for s in SPECS}


def build_debian_images(cache: str = CACHE, log=lambda msg: None) -> dict[str, str]:
    """Build (or find cached) every image of SPECS under `cache`; return {ref: "LAYOUT:TAG"}."""
    cache = os.path.abspath(cache)
    os.makedirs(cache, exist_ok=True)
    keys: dict[str, str] = {}
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for spec in SPECS:
            keys[spec.repo] = key = _spec_key(spec, keys)
            layout = os.path.join(cache, spec.repo)
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=".work-", dir=cache) as work:
                built = []
                build_cached(layout, key, lambda d: (built.append(1), _make(spec, cache, work, d)))
            if built:
                log(f"built {spec.repo} in {time.monotonic() - t0:.1f}s")
    out = {}
    for ref, path in IMAGES.items():
        repo = next(r for r, p in REGISTRY_PATHS.items() if path.startswith(p + ":"))
        out[ref] = f"{os.path.join(cache, repo)}:{ref.rpartition(':')[2]}"
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cache = argv[0] if argv else CACHE
    t0 = time.monotonic()
    try:
        built = build_debian_images(cache, log=print)
    except HostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for ref, where in built.items():
        print(f"{ref} -> {where}")
    print(f"{len(built)} image tags ready in {time.monotonic() - t0:.1f}s (cache {os.path.abspath(cache)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
