"""The node agent's image service: skopeo pulls, we unpack (design §3, §4).

References are normalised like docker/containerd (``busybox`` ->
``docker.io/library/busybox:latest``); ``oci:PATH[:TAG]`` and
``oci-archive:PATH[:TAG]`` name local images. Registry mirrors map a registry
host to endpoints (``{"docker.io": "http://10.1.2.3:5000"}``): a pull of
``busybox`` then asks ``10.1.2.3:5000/library/busybox:latest``. ``http://``
endpoints and hosts in ``insecure_registries`` are spoken to without TLS
verification (containers/image then falls back to plain HTTP). Unlike
containerd we do NOT fall back to the upstream registry after the mirrors
unless ``mirror_fallback=True``: a lab has no internet, and the mirror's
error is the useful one.

Store layout under ``root``::

    blobs/sha256/<hex>     every blob skopeo fetched (skopeo --dest-shared-blob-dir)
    layers/sha256/<hex>/   one unpacked layer, named by its diff_id (digest of
                           the uncompressed tar, which we verify while unpacking)
    images/<hash>.json     record for one normalised reference
    tmp/                   per-pull OCI layouts and half-unpacked layers

A docker pull first fetches the manifest (``skopeo inspect --raw``): its
sha256 is the repo digest (of the index, for multi-arch images, as kubelet
reports it). ``Always`` stops there when the local image has that digest;
otherwise ``skopeo copy docker://HOST/NAME@DIGEST oci:tmp/pull-…`` (by digest,
so a tag moving in between cannot mix two images) with the shared blob dir,
so blobs already present are not downloaded again.

Concurrency (one event loop per store): concurrent pulls of one reference
share one task (single flight); each layer is unpacked under a per-diff_id
asyncio lock, in a worker thread, into ``tmp/unpack-PID-…`` and renamed into
place, so a half-unpacked layer is never visible and a second process that
loses the rename race just discards its copy. An image record is written
(atomically) only after all its layers are in place.

Unpacking: ``.wh.NAME`` becomes a char device 0:0, ``.wh..wh..opq`` sets
``trusted.overlay.opaque=y`` on its directory after the layer; tarfile with
``numeric_owner=True`` and ``filter='fully_trusted'`` (applets are absolute
symlinks); we reject ``..`` and absolute names, members below a symlink, and
hard links we create ourselves without following symlinks. Whiteouts need root
(mknod 0:0, trusted.* xattrs); without root other layers still unpack, but
owners are not preserved (tarfile only chowns as root).
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import gzip
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass

from nodeagent.errors import ImagePullError, SkopeoError
from nodeagent.metrics import IMAGE_PULL_SECONDS

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_DOMAIN = "docker.io"
OCI_TRANSPORTS = ("oci", "oci-archive")

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,}$")


@dataclass(frozen=True)
class ImageRef:
    transport: str  # "docker", "oci" or "oci-archive"
    domain: str = ""  # registry host[:port] (docker only)
    path: str = ""  # repository path, e.g. library/busybox; for oci*: the local path
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}" if self.transport == "docker" else f"{self.transport}:{self.path}"

    def __str__(self) -> str:
        if self.transport != "docker":
            return self.name + (f":{self.tag}" if self.tag else "")
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _invalid(ref: str, why: str) -> ImagePullError:
    return ImagePullError("InvalidImageName", f'Failed to apply default image tag "{ref}": {why}')


def parse_reference(ref: str) -> ImageRef:
    """Normalise an image reference; raise ImagePullError(InvalidImageName)."""
    if not ref or ref != ref.strip():
        raise _invalid(ref, "invalid reference format")
    for transport in OCI_TRANSPORTS:
        if ref.startswith(transport + ":"):
            path, _, tag = ref[len(transport) + 1:].partition(":")
            if not path:
                raise _invalid(ref, "empty path")
            if tag and not re.fullmatch(r"[A-Za-z0-9_.@/-]+", tag):
                raise _invalid(ref, "invalid tag in local reference")
            return ImageRef(transport, path=os.path.abspath(path), tag=tag or None)
    name, at, digest = ref.partition("@")
    if at and not _DIGEST_RE.match(digest):
        raise _invalid(ref, "invalid digest format")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise _invalid(ref, "invalid tag format")
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first == first.lower()):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
        if not _DOMAIN_RE.match(domain):
            raise _invalid(ref, "invalid registry host")
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if path != path.lower():
        raise _invalid(ref, "repository name must be lowercase")
    if not _PATH_RE.match(path) or len(domain) + 1 + len(path) > 255:
        raise _invalid(ref, "invalid reference format")
    if tag is None and not digest:
        tag = "latest"
    return ImageRef("docker", domain, path, tag, digest or None)


def default_pull_policy(ref: str) -> str:
    """Kubernetes' default: Always for :latest (or no tag), else IfNotPresent."""
    r = parse_reference(ref)
    return "Always" if r.transport == "docker" and r.tag == "latest" and not r.digest else "IfNotPresent"


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # e.g. ("8080/tcp",)
    labels: dict = dataclasses.field(default_factory=dict)
    stop_signal: str = ""

    @classmethod
    def from_oci(cls, config: dict) -> "ImageConfig":
        c = config.get("config") or {}
        return cls(tuple(c.get("Entrypoint") or ()), tuple(c.get("Cmd") or ()), tuple(c.get("Env") or ()),
                   c.get("WorkingDir") or "", c.get("User") or "", tuple(sorted(c.get("ExposedPorts") or {})),
                   dict(c.get("Labels") or {}), c.get("StopSignal") or "")


@dataclass(frozen=True)
class Image:
    ref: str  # normalised reference
    image_id: str  # config digest, sha256:...
    repo_digest: str | None  # NAME@sha256:<manifest digest>; None for oci*: images
    layers: tuple[str, ...]  # unpacked layer dirs, bottom -> top
    config: ImageConfig
    size: int = 0  # compressed bytes of all layers


def lowerdirs(image: Image) -> list[str]:
    """overlayfs lowerdir order: the TOP layer first."""
    return list(reversed(image.layers))


# --------------------------------------------------------------- unpacking
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
            tar.extract(m, dest, set_attrs=True, numeric_owner=True, filter="fully_trusted")
    return opaque


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
        for d in opaque:
            os.setxattr(d, "trusted.overlay.opaque", b"y", follow_symlinks=False)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            os.rename(tmp, final)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and os.path.isdir(final):
                return False
            raise
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ store
def _one_line(stderr: str) -> str:
    """skopeo's fatal message as one readable line (falls back to all of stderr)."""
    msgs = []
    for m in re.finditer(r'msg="((?:[^"\\]|\\.)*)"', stderr):
        try:
            msgs.append(json.loads(f'"{m.group(1)}"'))
        except ValueError:
            msgs.append(m.group(1).replace('\\"', '"'))
    text = msgs[-1] if msgs else " ".join(stderr.split())
    text = re.sub(r'^Error parsing image name "[^"]*": ', "", text)
    return " ".join(text.split()) or "skopeo failed without a message"


def _endpoint(url: str) -> tuple[str, bool]:
    """'http://h:p/' -> ('h:p', insecure=True); a bare 'h:p' means https."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "https", url
    rest = rest.rstrip("/")
    if rest.endswith("/v2"):
        rest = rest[:-3]
    return rest, scheme == "http"


class ImageStore:
    """Pulls images with skopeo into root and unpacks each layer once.

    mirrors: {"docker.io": "http://10.1.2.3:5000"} (a value may be a list);
    insecure_registries: hosts spoken to without TLS verification.
    """

    def __init__(self, root_dir: str, mirrors: dict[str, str | list[str]] | None = None,
                 insecure_registries: list[str] | tuple[str, ...] = (), skopeo: str = "skopeo",
                 mirror_fallback: bool = False, pull_timeout: float = 600.0) -> None:
        self.root = os.path.abspath(root_dir)
        self.mirrors = {k: [v] if isinstance(v, str) else list(v) for k, v in (mirrors or {}).items()}
        self.insecure = set(insecure_registries)
        self.skopeo = skopeo
        self.mirror_fallback = mirror_fallback
        self.pull_timeout = pull_timeout
        self.unpacked: list[str] = []  # diff_ids this store unpacked (tests, debugging)
        self._inflight: dict[str, asyncio.Task] = {}
        self._layer_locks: dict[str, asyncio.Lock] = {}
        for d in ("blobs", "layers/sha256", "images", "tmp"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self._policy = os.path.join(self.root, "policy.json")
        self._registries_conf = os.path.join(self.root, "registries.conf")
        self._write(self._policy, json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self._write(self._registries_conf, "# kctl: no search registries, no host mirrors\n")
        self._clean_tmp()

    # -- local state ----------------------------------------------------
    def _write(self, path: str, text: str) -> None:
        """Atomic write: readers see the old or the new file, never half of one."""
        fd, tmp = tempfile.mkstemp(prefix=".write-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def _clean_tmp(self) -> None:
        """Remove temp dirs left by dead processes (names carry the pid)."""
        tmp = os.path.join(self.root, "tmp")
        for name in os.listdir(tmp):
            m = re.match(r"^(?:pull|unpack)-(\d+)-", name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)

    def _record_path(self, ref: ImageRef) -> str:
        return os.path.join(self.root, "images", hashlib.sha256(str(ref).encode()).hexdigest() + ".json")

    def _layer_dir(self, diff_id: str) -> str:
        algo, _, hexd = diff_id.partition(":")
        return os.path.join(self.root, "layers", algo, hexd)

    def _blob(self, digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        return os.path.join(self.root, "blobs", algo, hexd)

    def _load(self, path: str) -> Image | None:
        try:
            with open(path) as f:
                rec = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        layers = tuple(self._layer_dir(d) for d in rec["diff_ids"])
        if not all(os.path.isdir(d) for d in layers):
            return None
        return Image(rec["ref"], rec["image_id"], rec.get("repo_digest"), layers,
                     ImageConfig.from_oci(rec["config"]), rec.get("size", 0))

    def get(self, ref: str) -> Image | None:
        """The local image for ref (all layers unpacked), or None."""
        return self._load(self._record_path(parse_reference(ref)))

    def list_images(self) -> list[Image]:
        d = os.path.join(self.root, "images")
        return [i for i in (self._load(os.path.join(d, n)) for n in sorted(os.listdir(d))
                            if n.endswith(".json")) if i]

    def remove(self, ref: str) -> bool:
        """Forget ref's record (layers and blobs stay: garbage collection is out of scope)."""
        try:
            os.unlink(self._record_path(parse_reference(ref)))
            return True
        except FileNotFoundError:
            return False

    # -- pulling --------------------------------------------------------
    async def pull(self, ref: str, policy: str = "IfNotPresent") -> Image:
        """Make ref available locally according to imagePullPolicy; return it."""
        if policy not in PULL_POLICIES:
            raise ValueError(f"unknown imagePullPolicy {policy!r}")
        r = parse_reference(ref)
        local = self._load(self._record_path(r))
        if policy == "Never":
            if local:
                return local
            raise ImagePullError("ErrImageNeverPull",
                                 f'Container image "{ref}" is not present with pull policy of Never')
        if local and (policy == "IfNotPresent" or r.digest):
            return local
        key = str(r)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._pull(r, ref))
            self._inflight[key] = task
            task.add_done_callback(lambda t: (self._inflight.pop(key, None),
                                              t.cancelled() or t.exception()))
        return await asyncio.shield(task)

    async def _pull(self, r: ImageRef, original: str) -> Image:
        start = time.monotonic()
        try:
            return await self._pull_once(r, original)
        finally:
            IMAGE_PULL_SECONDS.observe(time.monotonic() - start)

    def _sources(self, r: ImageRef) -> list[tuple[str, bool]]:
        eps = [_endpoint(u) for u in self.mirrors.get(r.domain, [])]
        if not eps or self.mirror_fallback:
            eps.append((r.domain, r.domain in self.insecure))
        return [(host, insecure or host in self.insecure) for host, insecure in eps]

    async def _pull_once(self, r: ImageRef, original: str) -> Image:
        tmp = tempfile.mkdtemp(prefix=f"pull-{os.getpid()}-", dir=os.path.join(self.root, "tmp"))
        try:
            if r.transport != "docker":
                src = str(r)
                await self._run_skopeo(original, "copy", "--quiet", "--dest-shared-blob-dir",
                                       os.path.join(self.root, "blobs"), src, f"oci:{tmp}:img")
                return await self._import(r, tmp, repo_digest=None)
            errors = []
            for host, insecure in self._sources(r):
                tls = "false" if insecure else "true"
                try:
                    digest = r.digest
                    if not digest:
                        raw = await self._run_skopeo(original, "inspect", "--raw", f"--tls-verify={tls}",
                                                     f"docker://{host}/{r.path}:{r.tag}")
                        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                    local = self._load(self._record_path(r))
                    repo_digest = f"{r.name}@{digest}"
                    if local and local.repo_digest == repo_digest:
                        return local
                    await self._run_skopeo(original, "copy", "--quiet", f"--src-tls-verify={tls}",
                                           "--dest-shared-blob-dir", os.path.join(self.root, "blobs"),
                                           f"docker://{host}/{r.path}@{digest}", f"oci:{tmp}:img")
                    return await self._import(r, tmp, repo_digest)
                except SkopeoError as exc:
                    errors.append(str(exc))
            raise ImagePullError("ErrImagePull", f'failed to pull image "{original}": ' + "; ".join(errors))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def _run_skopeo(self, original: str, *args: str) -> bytes:
        env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=self._registries_conf)
        proc = await asyncio.create_subprocess_exec(
            self.skopeo, "--policy", self._policy, "--tmpdir", os.path.join(self.root, "tmp"), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.pull_timeout)
        except BaseException:  # timeout or cancellation: do not leave skopeo behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise SkopeoError(_one_line(err.decode(errors="replace")))
        return out

    async def _import(self, r: ImageRef, layout: str, repo_digest: str | None) -> Image:
        """Read the image skopeo wrote to `layout`, unpack its layers, record it."""
        try:
            with open(os.path.join(layout, "index.json")) as f:
                manifest_desc = json.load(f)["manifests"][0]
            with open(self._blob(manifest_desc["digest"])) as f:
                manifest = json.load(f)
            with open(self._blob(manifest["config"]["digest"])) as f:
                config = json.load(f)
            diff_ids = list(config["rootfs"]["diff_ids"])
            blobs = [layer["digest"] for layer in manifest["layers"]]
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise ImagePullError("ErrImagePull", f"unreadable image from skopeo: {exc!r}") from exc
        if len(diff_ids) != len(blobs):
            raise ImagePullError("ErrImagePull", "image config and manifest disagree on the layer count")
        await asyncio.gather(*(self._ensure_layer(d, b) for d, b in zip(diff_ids, blobs)))
        rec = {"ref": str(r), "image_id": manifest["config"]["digest"], "repo_digest": repo_digest,
               "manifest_digest": manifest_desc["digest"], "diff_ids": diff_ids, "blobs": blobs,
               "size": sum(layer.get("size", 0) for layer in manifest["layers"]), "config": config}
        self._write(self._record_path(r), json.dumps(rec))
        image = self._load(self._record_path(r))
        assert image is not None
        return image

    async def _ensure_layer(self, diff_id: str, blob_digest: str) -> str:
        final = self._layer_dir(diff_id)
        lock = self._layer_locks.setdefault(diff_id, asyncio.Lock())
        async with lock:
            if not os.path.isdir(final):
                await asyncio.to_thread(unpack_layer, self._blob(blob_digest), final,
                                        os.path.join(self.root, "tmp"), diff_id)
                self.unpacked.append(diff_id)
        return final
