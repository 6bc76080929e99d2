"""Build kctl's small OCI images offline, as OCI image layouts.

Images built (one OCI layout directory per repository under DEST):

* ``busybox`` (tags ``latest`` and ``1.36``): one layer with Debian's static
  ``/bin/busybox``, an absolute symlink ``/bin/APPLET -> /bin/busybox`` for every
  applet ``busybox --list`` prints, ``/etc/passwd``, ``/etc/group``, ``/tmp``
  (1777) and ``/root``; ``Cmd ["sh"]``, ``Env PATH=...``.  Like a
  distribution's image (Alpine's, Debian's) it has the mount points ``/dev``,
  ``/proc``, ``/sys`` and ``/run`` (``/var/run -> /run``), so runc does not make
  them in every container's writable layer.
* ``kctl/echo`` (tag ``latest``): the busybox layer *plus* a second small layer
  with ``/usr/local/bin/echo-server`` and ``echo-handler``. The server is
  ``nc -ll -p $PORT -e echo-handler``: busybox's small ``nc`` forks one handler
  per accepted connection (concurrent, nothing shared between requests), and
  the handler reads the request line and headers, then answers *any* path with
  ``$HOSTNAME`` (the pod name; falls back to ``hostname``) plus a newline;
  ``/burn`` first spends about 0.1 s of CPU in a shell loop, like the
  php-apache image of Kubernetes' HorizontalPodAutoscaler walkthrough.
  The server script stays PID 1 and exits 0 on SIGTERM.
  busybox ``httpd`` cannot route every path to one CGI, and this busybox has no
  ``tcpsvd``. Port 8080 unless ``PORT`` is set; ``ExposedPorts 8080/tcp``.

Why write the layout with tarfile/json/hashlib instead of umoci: umoci needs an
unpacked rootfs owned by the right uids (so root, or rootless mapping) and
stamps the current time into layers and configs, so every build gives new
digests. Writing tar members ourselves gives uid/gid 0 without root, a fixed
mtime and sorted members: the same inputs always give the same digests, so
the busybox layer is byte-identical in both images (a registry and the node
agent store it once), and rebuilding is a no-op. The build is cached: each
layout records a key (hash of the builder version, the busybox binary and the
scripts); when the key matches, nothing is rebuilt.

CLI: ``python -m deploy.images DEST`` prints ``ref -> oci layout path:tag``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile

BUSYBOX = "/bin/busybox"
BUILDER_VERSION = "kctl-images-1"   # in every cache key, deploy/debimages.py's too
BUSYBOX_LAYOUT = "2"                 # the busybox layer's shape (2: /dev, /proc, /sys, /run)
MTIME = 1700000000  # fixed timestamp: reproducible layers
CREATED = "2023-11-14T22:13:20Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"

ECHO_SERVER = """#!/bin/sh
# kctl echo server: answers every HTTP request with this pod's name.
# busybox nc -ll -e forks one echo-handler per connection. This shell stays
# PID 1 so that SIGTERM ends the pod at once (a bare nc as PID 1 would ignore
# it and every pod deletion would wait for the grace period).
nc -ll -p "${PORT:-8080}" -e /usr/local/bin/echo-handler &
pid=$!
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
wait $pid
"""

ECHO_HANDLER = r"""#!/bin/sh
# One HTTP exchange on stdin/stdout: read the request, answer with the name.
name="${HOSTNAME:-$(hostname)}"
cr=$(printf '\r')
read -r -t 10 request || exit 0
while read -r -t 10 line; do
  case "$line" in ""|"$cr") break;; esac
done
case "$request" in   # /burn: ~0.1 s of CPU first, as php-apache's index.php (the HPA walkthrough)
  "GET /burn"*) i=0; while [ $i -lt 100000 ]; do i=$((i + 1)); done;;
esac
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n' "$(( ${#name} + 1 ))" "$name"
"""


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layer:
    """Collects members, then renders a sorted, reproducible tar+gzip."""

    def __init__(self) -> None:
        self._members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, name: str, mode: int = 0o755) -> None:
        self._members[name] = (self._info(name, tarfile.DIRTYPE, mode), None)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self._members[name] = (info, data)

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._members[name] = (info, None)

    def render(self) -> tuple[bytes, str]:
        """Return (gzip blob, diff_id)."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self._members):
                info, data = self._members[name]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        tar_bytes = raw.getvalue()
        gz = io.BytesIO()
        with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as out:
            out.write(tar_bytes)
        return gz.getvalue(), _sha(tar_bytes)


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({a for a in out.split() if a and a != "busybox" and "/" not in a})


def busybox_layer(busybox: str = BUSYBOX) -> Layer:
    layer = Layer()
    for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "usr", "usr/bin", "usr/sbin", "sbin", "var"):
        layer.dir(d, 0o700 if d == "root" else 0o755)
    layer.symlink("var/run", "/run")
    layer.dir("tmp", 0o1777)
    with open(busybox, "rb") as f:
        layer.file("bin/busybox", f.read(), 0o755)
    for applet in busybox_applets(busybox):
        layer.symlink(f"bin/{applet}", "/bin/busybox")
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    return layer


def echo_layer() -> Layer:
    layer = Layer()
    for d in ("usr", "usr/local", "usr/local/bin"):
        layer.dir(d)
    layer.file("usr/local/bin/echo-server", ECHO_SERVER.encode(), 0o755)
    layer.file("usr/local/bin/echo-handler", ECHO_HANDLER.encode(), 0o755)
    return layer


def _write_blob(layout: str, data: bytes) -> str:
    digest = _sha(data)
    path = os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    return digest


def write_layout(layout: str, layers: list[tuple[bytes, str]], config: dict,
                 tags: list[str], history: list[str]) -> None:
    """Write (or replace) an OCI layout holding one image under several tags."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    layer_descs = []
    for blob, _diff_id in layers:
        layer_descs.append({"mediaType": MT_LAYER, "digest": _write_blob(layout, blob), "size": len(blob)})
    image_config = {
        "created": CREATED, "architecture": _arch(), "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [d for _b, d in layers]},
        "history": [{"created": CREATED, "created_by": h} for h in history],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": _write_blob(layout, config_bytes),
                   "size": len(config_bytes)},
        "layers": layer_descs,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = _write_blob(layout, manifest_bytes)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": MT_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
         "annotations": {"org.opencontainers.image.ref.name": tag}} for tag in tags]}
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json.tmp"), "w") as f:
        json.dump(index, f, indent=1)
    os.replace(os.path.join(layout, "index.json.tmp"), os.path.join(layout, "index.json"))


def cache_key(*parts: bytes) -> str:
    h = hashlib.sha256(BUILDER_VERSION.encode())
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def _cached(layout: str, key: str) -> bool:
    try:
        with open(os.path.join(layout, ".kctl-build-key")) as f:
            return f.read().strip() == key and os.path.exists(os.path.join(layout, "index.json"))
    except FileNotFoundError:
        return False


def build_cached(layout: str, key: str, make) -> None:
    """Build into a temp dir beside `layout`, then swap it in (never half-built)."""
    if _cached(layout, key):
        return
    parent = os.path.dirname(os.path.abspath(layout))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=parent)
    try:
        make(tmp)
        with open(os.path.join(tmp, ".kctl-build-key"), "w") as f:
            f.write(key + "\n")
        if os.path.exists(layout):
            shutil.rmtree(layout)
        os.rename(tmp, layout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_images(dest_dir: str, busybox: str = BUSYBOX) -> dict[str, str]:
    """Build all images under dest_dir; return {ref: "LAYOUT_PATH:TAG"}."""
    dest_dir = os.path.abspath(dest_dir)
    with open(busybox, "rb") as f:
        bb_bytes = f.read()
    bb_key = cache_key(bb_bytes, PASSWD.encode(), GROUP.encode(), BUSYBOX_LAYOUT.encode())
    echo_key = cache_key(bb_bytes, PASSWD.encode(), GROUP.encode(), BUSYBOX_LAYOUT.encode(),
                          ECHO_SERVER.encode(), ECHO_HANDLER.encode())
    base: list[tuple[bytes, str]] = []

    def base_layer() -> tuple[bytes, str]:
        if not base:
            base.append(busybox_layer(busybox).render())
        return base[0]

    busybox_layout = os.path.join(dest_dir, "busybox")
    build_cached(busybox_layout, bb_key, lambda d: write_layout(
        d, [base_layer()], {"Env": [PATH_ENV], "Cmd": ["sh"]}, ["latest", "1.36"],
        ["kctl: busybox rootfs from " + busybox]))
    echo_layout = os.path.join(dest_dir, "kctl-echo")
    build_cached(echo_layout, echo_key, lambda d: write_layout(
        d, [base_layer(), echo_layer().render()],
        {"Env": [PATH_ENV], "Cmd": ["/usr/local/bin/echo-server"],
         "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/"},
        ["latest"], ["kctl: busybox rootfs from " + busybox, "kctl: echo server"]))
    return {
        "busybox:latest": f"{busybox_layout}:latest",
        "busybox:1.36": f"{busybox_layout}:1.36",
        "kctl/echo:latest": f"{echo_layout}:latest",
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m deploy.images DEST", file=sys.stderr)
        return 2
    for ref, where in build_images(argv[0]).items():
        print(f"{ref} -> {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
