"""A pod's volumes on the node: what each volume source becomes on the host.

``setup_volumes(pod, pod_dir, sources, host_ip, pod_ip)`` runs on every pod
sync (idempotent, cheap when nothing changed) after the sandbox exists:

* ``emptyDir``: ``<pod dir>/volumes/<name>`` (mode 0777); ``medium: Memory``
  mounts a tmpfs there, sized by ``sizeLimit`` (else by the sum of the
  containers' memory limits when every container has one, as the kubelet
  sizes memory-backed volumes). A disk emptyDir's ``sizeLimit`` is checked
  by ``exceeded_limit`` (du-style: allocated blocks), and the pod is evicted
  over it, as by the kubelet's eviction manager (nodeagent/podvolumes.py).
* ``hostPath``: the path; ``DirectoryOrCreate``/``FileOrCreate`` create it.
* ``configMap``, ``secret``, ``downwardAPI``, ``projected``: a payload of
  files (items key→path, or every key; ``mode`` else ``defaultMode`` else
  0644; ``optional`` sources that do not exist give no files) written with
  the kubelet's atomic ``..data`` swap (nodeagent/atomicwriter.py), so a
  re-sync after the object changed updates the mounted files atomically.
  Secret volumes (and projected ones holding a secret or a ServiceAccount
  token) live on a tmpfs, as the kubelet keeps secrets off the disk. A
  projected ``serviceAccountToken`` is the token nodeagent/tokens.py fetched
  into ``Sources.tokens`` (refreshed there; a refresh wakes the pod worker
  and the next sync swaps the files).
* ``persistentVolumeClaim``: the directory of the bound PersistentVolume
  (``hostPath`` or ``local``), resolved by ``claim_paths`` (API reads) into
  ``Sources.claims``; a DirectoryOrCreate hostPath (the local-path
  provisioner's) is created 0777.

A pod with ``securityContext.fsGroup`` gets its emptyDir, API data and claim
volumes owned by that group (setgid directories; nodeagent/fsgroup.py).

Problems with the pod's references are ``VolumeSetupError`` with the
kubelet's wording (``configmap "x" not found``); the pod worker shows the
containers ContainerCreating and records FailedMount until they are
resolved. ``mount_source`` gives the host path a volumeMount binds
(subPath/subPathExpr resolved inside the volume, refusing an escape);
``read_only(v)`` says which volumes are always mounted read-only (API data
volumes, as the kubelet does; read-only claims); ``teardown(pod_dir)``
unmounts what was mounted under the pod dir.
"""
from __future__ import annotations

import ctypes
import os

from machinery import errors, quantity
from machinery.pb import core_pb2
from nodeagent import atomicwriter, fsgroup
from nodeagent.atomicwriter import FileProjection
from nodeagent.envvars import Sources, expand, field_value, resource_value
from nodeagent.errors import ContainerConfigError, ContainerRuntimeError, VolumeSetupError

DEFAULT_MODE = 0o644
MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 0x2, 0x4
_libc = ctypes.CDLL(None, use_errno=True)


def volume_dir(pod_dir: str, name: str) -> str:
    return os.path.join(pod_dir, "volumes", name)


def _mode(item_mode, default_mode) -> int:
    return item_mode if item_mode is not None else default_mode


def _opt(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def _key_payload(kind: str, ns: str, name: str, data: dict, items, default_mode: int,
                 optional: bool) -> dict[str, FileProjection]:
    """configMap/secret payload: every key, or the items (a missing key is an error unless optional)."""
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    out = {}
    for it in items:
        if it.key not in data:
            if optional:
                continue
            raise VolumeSetupError(f"{kind} references non-existent config key: {it.key}")
        out[it.path] = FileProjection(data[it.key], _mode(_opt(it, "mode"), default_mode))
    return out


def _bytes(v) -> bytes:
    return v if isinstance(v, bytes) else v.encode()


def config_map_payload(cm, ns: str, name: str, items, default_mode: int, optional: bool):
    if cm is None:
        if optional:
            return {}
        raise VolumeSetupError(f'configmap "{name}" not found')
    data = {k: _bytes(v) for k, v in cm.data.items()}
    data.update({k: bytes(v) for k, v in cm.binary_data.items()})
    return _key_payload("configmap", ns, name, data, items, default_mode, optional)


def secret_payload(secret, ns: str, name: str, items, default_mode: int, optional: bool):
    if secret is None:
        if optional:
            return {}
        raise VolumeSetupError(f'secret "{name}" not found')
    return _key_payload("secret", ns, name, {k: bytes(v) for k, v in secret.data.items()}, items,
                        default_mode, optional)


def downward_payload(pod: core_pb2.Pod, items, default_mode: int, host_ip: str, pod_ip: str):
    out = {}
    containers = {c.name: c for c in pod.spec.containers}
    for it in items:
        if it.HasField("field_ref"):
            value = field_value(pod, it.field_ref.field_path, host_ip, pod_ip)
        else:
            sel = it.resource_field_ref
            c = containers.get(sel.container_name) or (pod.spec.containers[0] if pod.spec.containers else None)
            if c is None:
                raise VolumeSetupError(f"container {sel.container_name!r} not found")
            value = resource_value(c, sel)
        out[it.path] = FileProjection(value.encode(), _mode(_opt(it, "mode"), default_mode))
    return out


def payload(pod: core_pb2.Pod, v: core_pb2.Volume, sources: Sources, host_ip: str, pod_ip: str):
    """(files, on tmpfs) of a configMap/secret/downwardAPI/projected volume; None for other kinds."""
    ns = pod.metadata.namespace

    def opt(src) -> bool:
        return src.HasField("optional") and src.optional

    def dmode(src) -> int:
        return src.default_mode if src.HasField("default_mode") else DEFAULT_MODE
    if v.HasField("config_map"):
        s = v.config_map
        return config_map_payload(sources.config_maps.get(s.name), ns, s.name, s.items, dmode(s), opt(s)), False
    if v.HasField("secret"):
        s = v.secret
        return secret_payload(sources.secrets.get(s.secret_name), ns, s.secret_name, s.items, dmode(s),
                              opt(s)), True
    if v.HasField("downward_api"):
        return downward_payload(pod, v.downward_api.items, dmode(v.downward_api), host_ip, pod_ip), False
    if v.HasField("projected"):
        files: dict[str, FileProjection] = {}
        mode = dmode(v.projected)
        tmpfs = False
        for p in v.projected.sources:
            if p.HasField("config_map"):
                s = p.config_map
                files.update(config_map_payload(sources.config_maps.get(s.name), ns, s.name, s.items, mode, opt(s)))
            elif p.HasField("secret"):
                s, tmpfs = p.secret, True
                files.update(secret_payload(sources.secrets.get(s.name), ns, s.name, s.items, mode, opt(s)))
            elif p.HasField("downward_api"):
                files.update(downward_payload(pod, p.downward_api.items, mode, host_ip, pod_ip))
            elif p.HasField("service_account_token"):           # fetched by nodeagent/tokens.py
                s, tmpfs = p.service_account_token, True
                token = sources.tokens.get((s.audience, s.expiration_seconds))
                if token is None:
                    raise VolumeSetupError("failed to fetch token: no token for this projection yet")
                files[s.path] = FileProjection(token, mode)
        return files, tmpfs
    return None


def check_payloads(pod: core_pb2.Pod, sources: Sources, host_ip: str, pod_ip: str) -> None:
    """Raise what setup_volumes would for the API data volumes, writing nothing (hollow nodes)."""
    for v in pod.spec.volumes:
        try:
            payload(pod, v, sources, host_ip, pod_ip)
        except VolumeSetupError as exc:
            exc.volume = v.name
            raise


def memory_size(pod: core_pb2.Pod, v: core_pb2.Volume) -> int:
    """Bytes for a memory-backed emptyDir's tmpfs (0: the kernel's default)."""
    if v.empty_dir.size_limit:
        return quantity.value(v.empty_dir.size_limit)
    limits = [dict(c.resources.limits).get("memory") for c in pod.spec.containers]
    if limits and all(limits):
        return sum(quantity.value(q) for q in limits)
    return 0


def disk_usage(path: str) -> int:
    """Bytes allocated below path (du: st_blocks, symlinks not followed)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def exceeded_limit(pod: core_pb2.Pod, pod_dir: str) -> str:
    """The kubelet's eviction message for the first disk emptyDir over its sizeLimit, or ''."""
    for v in pod.spec.volumes:
        if v.HasField("empty_dir") and v.empty_dir.medium != "Memory" and v.empty_dir.size_limit:
            if disk_usage(volume_dir(pod_dir, v.name)) > quantity.value(v.empty_dir.size_limit):
                return f'Usage of EmptyDir volume "{v.name}" exceeds the limit "{v.empty_dir.size_limit}". '
    return ""


def mount_tmpfs(path: str, size: int = 0, mode: int = 0o777) -> None:
    """A tmpfs at path (nothing if one is there already): mount(2) itself, as `mount -t tmpfs -o
    nosuid,nodev,...` would (no fork of this process and exec of mount(8) per pod)."""
    os.makedirs(path, exist_ok=True)
    if os.path.ismount(path):
        return
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise ContainerRuntimeError(f"mounting a tmpfs at {path}: {os.strerror(err)}")


def setup_volumes(pod: core_pb2.Pod, pod_dir: str, sources: Sources, host_ip: str, pod_ip: str) -> list[str]:
    """Make every volume of the pod present and current; the names of volumes whose files changed."""
    changed = []
    for v in pod.spec.volumes:
        try:
            d = volume_dir(pod_dir, v.name)
            updated = _setup_one(pod, v, d, sources, host_ip, pod_ip)
            if updated:
                changed.append(v.name)
            fsgroup.apply(pod, v, sources.claims[v.name][0] if v.HasField("persistent_volume_claim") else d, updated)
        except VolumeSetupError as exc:
            exc.volume = v.name
            raise
        except ValueError as exc:
            err = VolumeSetupError(str(exc))
            err.volume = v.name
            raise err from exc
        except OSError as exc:
            raise ContainerRuntimeError(f"preparing the volumes of pod {pod.metadata.name}: {exc}") from exc
    return changed


def _setup_one(pod, v, d: str, sources: Sources, host_ip: str, pod_ip: str) -> bool:
    """Set one volume up; True when its files changed."""
    if v.HasField("empty_dir"):
        if v.empty_dir.medium == "Memory":
            mount_tmpfs(d, memory_size(pod, v))
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777 | (os.stat(d).st_mode & 0o2000))      # keeps fsGroup's setgid (nodeagent/fsgroup.py)
    elif v.HasField("host_path"):
        _host_path(v.host_path.path, v.host_path.type)
    elif v.HasField("persistent_volume_claim"):
        path, typ = sources.claims[v.name]
        _host_path(path, typ, mode=0o777)
    else:
        got = payload(pod, v, sources, host_ip, pod_ip)
        if got is None:
            return False
        files, tmpfs = got
        if tmpfs:
            mount_tmpfs(d, mode=0o755)
        return atomicwriter.write(d, files)
    return False


def _host_path(path: str, typ: str, mode: int | None = None) -> None:
    if typ == "DirectoryOrCreate" and not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        if mode is not None:
            os.chmod(path, mode)
    elif typ == "FileOrCreate" and not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        open(path, "a").close()


def read_only(v: core_pb2.Volume) -> bool:
    """Mounted read-only whatever the volumeMount says: API data volumes (as the kubelet mounts
    configMap, secret, downwardAPI and projected volumes) and read-only claims."""
    return (any(v.HasField(f) for f in ("config_map", "secret", "downward_api", "projected"))
            or (v.HasField("persistent_volume_claim") and v.persistent_volume_claim.read_only))


def mount_source(pod: core_pb2.Pod, v: core_pb2.Volume, vm: core_pb2.VolumeMount, pod_dir: str,
                 sources: Sources | None, env: dict[str, str]) -> str:
    """The host path a volumeMount binds: the volume's directory, or the subPath inside it."""
    if v.HasField("host_path"):
        src = v.host_path.path
        if not os.path.exists(src):
            raise ContainerConfigError(f'hostPath "{src}" of volume "{v.name}" does not exist')
    elif v.HasField("persistent_volume_claim"):
        if sources is None or v.name not in sources.claims:
            raise ContainerConfigError(f'volume "{v.name}": persistentvolumeclaim '
                                       f'"{v.persistent_volume_claim.claim_name}" is not resolved')
        src = sources.claims[v.name][0]
    else:
        src = volume_dir(pod_dir, v.name)
    sub = expand(vm.sub_path_expr, env) if vm.sub_path_expr else vm.sub_path
    if not sub:
        return src
    if os.path.isabs(sub) or ".." in sub.split("/"):
        raise ContainerConfigError(f"subPath {sub!r} must be a relative path without '..'")
    full = os.path.join(src, sub)
    try:
        if not os.path.lexists(full):
            os.makedirs(full, exist_ok=True)
        real, root = os.path.realpath(full), os.path.realpath(src)
    except OSError as exc:
        raise ContainerRuntimeError(f'subPath {sub!r} of volume "{v.name}": {exc}') from exc
    if real != root and not real.startswith(root + "/"):
        raise ContainerConfigError(f'subPath {sub!r} of volume "{v.name}" resolves outside the volume')
    return real


async def claim_paths(client, pod: core_pb2.Pod) -> dict[str, tuple[str, str]]:
    """Volume name -> (host path, hostPath type) through each claim's bound PersistentVolume."""
    out = {}
    for v in pod.spec.volumes:
        if v.HasField("persistent_volume_claim"):
            try:
                out[v.name] = await _claim_path(client, pod.metadata.namespace, v.persistent_volume_claim.claim_name)
            except VolumeSetupError as exc:
                exc.volume = v.name
                raise
    return out


async def _claim_path(client, ns: str, name: str) -> tuple[str, str]:
    try:
        pvc = await client.get("PersistentVolumeClaim", name, ns)
    except errors.NotFound as exc:
        raise VolumeSetupError(f'persistentvolumeclaim "{name}" not found') from exc
    if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
        raise VolumeSetupError(f"error processing PVC {ns}/{name}: PVC is not bound")
    try:
        pv = await client.get("PersistentVolume", pvc.spec.volume_name)
    except errors.NotFound as exc:
        raise VolumeSetupError(f'persistentvolume "{pvc.spec.volume_name}" not found') from exc
    if pv.spec.HasField("host_path"):
        return pv.spec.host_path.path, pv.spec.host_path.type
    if pv.spec.HasField("local"):
        return pv.spec.local.path, ""
    raise VolumeSetupError(f'persistentvolume "{pv.metadata.name}" has no hostPath or local source '
                           "(the only kinds kctl nodes mount)")


def mounts_under(root: str) -> list[str]:
    """Mount points below root (deepest first), from /proc/self/mountinfo."""
    root = os.path.realpath(root).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(root):
                    found.append(point)
    except OSError:
        return []
    return sorted(found, key=len, reverse=True)


def teardown(pod_dir: str) -> None:
    """Unmount the tmpfs volumes under a pod dir (before it is removed)."""
    for point in mounts_under(pod_dir):
        if _libc.umount2(point.encode(), 0) != 0:
            _libc.umount2(point.encode(), MNT_DETACH)
