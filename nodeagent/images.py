"""The node agent's image service: skopeo pulls, we unpack (design §3, §4).

Its rooms: references and the default pull policy (nodeagent/imageref.py),
which registry endpoints to ask and running skopeo (nodeagent/skopeo.py),
unpacking one layer (nodeagent/layers.py); this module is the store.

Store layout under ``root``::

    blobs/sha256/<hex>     every blob skopeo fetched (skopeo --dest-shared-blob-dir)
    layers/sha256/<hex>/   one unpacked layer, named by its diff_id (digest of
                           the uncompressed tar, which we verify while unpacking)
    images/<hash>.json     record for one normalised reference
    tmp/                   per-pull OCI layouts and half-unpacked layers

A docker pull by tag first asks which manifest the tag names, in-process as
containerd does (a HEAD's ``Docker-Content-Digest``, nodeagent/manifestdigest.py),
else with ``skopeo inspect --raw`` (auth, errors): the manifest's sha256 is
the repo digest (of the index, for multi-arch images, as kubelet reports
it). ``Always`` stops there when the local image has that digest (no
``tmp/`` directory is made for such a pull);
otherwise ``skopeo copy docker://HOST/NAME@DIGEST oci:tmp/pull-…`` (by digest,
so a tag moving in between cannot mix two images) with the shared blob dir,
so blobs already present are not downloaded again.  Each source (mirrors,
then maybe upstream) is tried in turn; all failing is ``ErrImagePull``
naming every source's error.  A pod's pull credentials (its
imagePullSecrets, nodeagent/pullsecrets.py) reach skopeo as ``--authfile``
/ ``--src-authfile``: a 0600 file inside the pull's tmp dir, removed with it
when the pull ends; the registry's credentials also serve its mirrors.

Concurrency (one event loop per store): concurrent pulls of one reference
share one task (single flight); each layer is unpacked under a per-diff_id
asyncio lock, in a worker thread, into ``tmp/unpack-PID-…`` and renamed into
place, so a half-unpacked layer is never visible and a second process that
loses the rename race just discards its copy. An image record is written
(atomically) only after all its layers are in place.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from nodeagent.errors import ContainerConfigError, ImagePullError, SkopeoError
from nodeagent.imageref import PULL_POLICIES, ImageRef, parse_reference
from nodeagent.layers import unpack_layer
from nodeagent.manifestdigest import manifest_digest
from nodeagent.metrics import IMAGE_PULL_SECONDS
from nodeagent.skopeo import Registries, Skopeo

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


class ImageStore:
    """Pulls images with skopeo into root and unpacks each layer once.

    mirrors: {"docker.io": "http://10.1.2.3:5000"} (a value may be a list);
    insecure_registries: hosts spoken to without TLS verification
    (``registries``, nodeagent/skopeo.py).
    """

    def __init__(self, root_dir: str, mirrors: dict[str, str | list[str]] | None = None,
                 insecure_registries: list[str] | tuple[str, ...] = (), skopeo: str = "skopeo",
                 mirror_fallback: bool = False, pull_timeout: float = 600.0) -> None:
        self.root = os.path.abspath(root_dir)
        self.registries = Registries.of(mirrors, insecure_registries, mirror_fallback)
        self.unpacked: list[str] = []  # diff_ids this store unpacked (tests, debugging)
        self.digest_checks: collections.Counter = collections.Counter()  # tag -> digest asks, by who answered
        self._inflight: dict[str, asyncio.Task] = {}
        self._layer_locks: dict[str, asyncio.Lock] = {}
        for d in ("blobs", "layers/sha256", "images", "tmp"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self.skopeo = Skopeo(skopeo, os.path.join(self.root, "policy.json"),
                             os.path.join(self.root, "registries.conf"), os.path.join(self.root, "tmp"),
                             pull_timeout)
        self._write(self.skopeo.policy, json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self._write(self.skopeo.registries_conf, "# kctl: no search registries, no host mirrors\n")
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
    async def pull(self, ref: str, policy: str = "IfNotPresent", auth: dict | None = None) -> Image:
        """Make ref available locally according to imagePullPolicy; return it. `auth` is a
        containers-auth.json document (a pod's imagePullSecrets) given to skopeo as --authfile."""
        if policy not in PULL_POLICIES:
            raise ContainerConfigError(f"unknown imagePullPolicy {policy!r}")
        r = parse_reference(ref)
        local = self._load(self._record_path(r))
        if policy == "Never":
            if local:
                return local
            raise ImagePullError("ErrImageNeverPull",
                                 f'Container image "{ref}" is not present with pull policy of Never')
        if local and (policy == "IfNotPresent" or r.digest):
            return local
        key = str(r) + (" " + hashlib.sha256(json.dumps(auth, sort_keys=True).encode()).hexdigest() if auth else "")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._pull(r, ref, auth))
            self._inflight[key] = task
            task.add_done_callback(lambda t: (self._inflight.pop(key, None),
                                              t.cancelled() or t.exception()))
        return await asyncio.shield(task)

    async def _pull(self, r: ImageRef, original: str, auth: dict | None = None) -> Image:
        start = time.monotonic()
        try:
            return await self._pull_once(r, original, auth)
        finally:
            IMAGE_PULL_SECONDS.observe(time.monotonic() - start)

    async def _pull_once(self, r: ImageRef, original: str, auth: dict | None = None) -> Image:
        made: list[str] = []

        def tmp() -> str:
            """The pull's own directory, made on first use: a pull that ends at the digest check
            (Always, the image present) makes and removes no inode on the node's disk."""
            if not made:
                made.append(tempfile.mkdtemp(prefix=f"pull-{os.getpid()}-", dir=os.path.join(self.root, "tmp")))
            return made[0]
        try:
            creds = self._auth_file(tmp, r, auth)     # inside tmp: removed with it after the pull
            if r.transport != "docker":
                src = str(r)
                await self.skopeo.run("copy", "--quiet", "--dest-shared-blob-dir",
                                      os.path.join(self.root, "blobs"), src, f"oci:{tmp()}:img")
                return await self._import(r, tmp(), repo_digest=None)
            errors = []
            for host, insecure in self.registries.sources(r):
                tls = "false" if insecure else "true"
                try:
                    digest = r.digest
                    if not digest:
                        digest = await self._tag_digest(host, r, insecure, tls, creds)
                    local = self._load(self._record_path(r))
                    repo_digest = f"{r.name}@{digest}"
                    if local and local.repo_digest == repo_digest:
                        return local
                    await self.skopeo.run("copy", "--quiet", f"--src-tls-verify={tls}",
                                          *[a.replace("--authfile", "--src-authfile") for a in creds],
                                          "--dest-shared-blob-dir", os.path.join(self.root, "blobs"),
                                          f"docker://{host}/{r.path}@{digest}", f"oci:{tmp()}:img")
                    return await self._import(r, tmp(), repo_digest)
                except SkopeoError as exc:
                    errors.append(str(exc))
            raise ImagePullError("ErrImagePull", f'failed to pull image "{original}": ' + "; ".join(errors))
        finally:
            if made:
                shutil.rmtree(made[0], ignore_errors=True)

    async def _tag_digest(self, host: str, r: ImageRef, insecure: bool, tls: str, creds: list[str]) -> str:
        """The digest of the manifest HOST serves for r's tag: asked in-process
        (nodeagent/manifestdigest.py), else with ``skopeo inspect --raw``."""
        digest = await manifest_digest(host, r.path, r.tag, insecure)
        if digest:
            self.digest_checks["registry"] += 1
            return digest
        self.digest_checks["skopeo"] += 1
        raw = await self.skopeo.run("inspect", "--raw", f"--tls-verify={tls}", *creds,
                                    f"docker://{host}/{r.path}:{r.tag}")
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def _auth_file(self, tmp: Callable[[], str], r: ImageRef, auth: dict | None) -> list[str]:
        """['--authfile', PATH] for skopeo (a 0600 file in the pull's tmp dir), or [] without auth;
        a registry's credentials also serve its mirrors."""
        if not auth or not auth.get("auths"):
            return []
        auths = dict(auth["auths"])
        if r.domain in auths:
            for host, _ in self.registries.sources(r):
                auths.setdefault(host, auths[r.domain])
        path = os.path.join(tmp(), "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": auths}, f)
        return [f"--authfile={path}"]

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
