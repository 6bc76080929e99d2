"""The ConfigMaps and Secrets the pods of this node refer to, kept current by
watches — the kubelet's watch-based configmap/secret managers
(pkg/kubelet/util/manager/watch_based_manager.go).

``references(pod)`` names what a pod uses: env ``configMapKeyRef`` /
``secretKeyRef``, ``envFrom``, ``configMap``/``secret`` volumes, projected
sources and ``imagePullSecrets``.  A pod worker hands its pod's references
to ``ConfigWatch.set_refs(uid, refs, wake)``; each distinct object gets one
informer (namespace + ``metadata.name=`` field selector, so only the objects
pods of this node need are watched, never every Secret of the cluster),
shared by every pod referring to it and stopped when the last such pod
forgets it (``forget(uid)``), or when the agent stops (``close()``).  Any change of a watched object — created,
updated, deleted — wakes the pods referring to it, whose next sync rewrites
their volumes (the ``..data`` swap) or starts the container that was
waiting for the object.

``gather(pod)`` returns a ``Sources`` (nodeagent/envvars.py) with the
objects from the informers' caches (waiting for a new watch's first list,
at most ``SYNC_TIMEOUT``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from machinery.informer import Informer
from machinery.pb import core_pb2
from nodeagent.envvars import Sources
from nodeagent.errors import VolumeSetupError

log = logging.getLogger("kctl.nodeagent.configwatch")

SYNC_TIMEOUT = 10.0
CONFIG_MAP, SECRET = "ConfigMap", "Secret"


def references(pod: core_pb2.Pod) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod refers to."""
    refs: set[tuple[str, str]] = set()
    for c in list(pod.spec.init_containers) + list(pod.spec.containers):
        for e in c.env:
            vf = e.value_from
            if e.HasField("value_from") and vf.HasField("config_map_key_ref"):
                refs.add((CONFIG_MAP, vf.config_map_key_ref.name))
            elif e.HasField("value_from") and vf.HasField("secret_key_ref"):
                refs.add((SECRET, vf.secret_key_ref.name))
        for ef in c.env_from:
            if ef.HasField("config_map_ref"):
                refs.add((CONFIG_MAP, ef.config_map_ref.name))
            if ef.HasField("secret_ref"):
                refs.add((SECRET, ef.secret_ref.name))
    for v in pod.spec.volumes:
        if v.HasField("config_map"):
            refs.add((CONFIG_MAP, v.config_map.name))
        elif v.HasField("secret"):
            refs.add((SECRET, v.secret.secret_name))
        elif v.HasField("projected"):
            for p in v.projected.sources:
                if p.HasField("config_map"):
                    refs.add((CONFIG_MAP, p.config_map.name))
                elif p.HasField("secret"):
                    refs.add((SECRET, p.secret.name))
    for s in pod.spec.image_pull_secrets:
        refs.add((SECRET, s.name))
    return refs


class _Watch:
    def __init__(self, client, kind: str, ns: str, name: str):
        self.informer = Informer(client, kind, namespace=ns, field_selector=f"metadata.name={name}")
        self.wakers: dict[str, Callable[[], None]] = {}
        self.informer.add_handler(on_add=lambda o: self._wake(), on_update=lambda o, n: self._wake(),
                                  on_delete=lambda o: self._wake())
        self.task = asyncio.create_task(self.informer.run(), name=f"watch-{kind}-{ns}/{name}")
        self.task.add_done_callback(_log_end)

    def _wake(self) -> None:
        for wake in list(self.wakers.values()):
            wake()


def _log_end(t: asyncio.Task) -> None:
    if not t.cancelled() and t.exception() is not None:
        log.warning("%s ended: %s", t.get_name(), t.exception())


class ConfigWatch:
    def __init__(self, client):
        self.client = client
        self._watches: dict[tuple[str, str, str], _Watch] = {}
        self._pods: dict[str, set[tuple[str, str, str]]] = {}

    def __len__(self) -> int:
        return len(self._watches)

    def set_refs(self, uid: str, ns: str, refs: set[tuple[str, str]], wake: Callable[[], None]) -> None:
        """The pod `uid` refers to exactly `refs` now (watches start and stop accordingly)."""
        keys = {(kind, ns, name) for kind, name in refs}
        old = self._pods.get(uid, set())
        for key in keys - old:
            w = self._watches.get(key)
            if w is None:
                w = self._watches[key] = _Watch(self.client, *key)
            w.wakers[uid] = wake
        self._pods[uid] = keys
        self._drop(uid, old - keys)

    def forget(self, uid: str) -> None:
        self._drop(uid, self._pods.pop(uid, set()))

    def close(self) -> None:
        """Stop every watch (the agent stops; its pods keep their files)."""
        for w in self._watches.values():
            w.task.cancel()
        self._watches.clear()
        self._pods.clear()

    def _drop(self, uid: str, keys) -> None:
        for key in keys:
            w = self._watches.get(key)
            if w is None:
                continue
            w.wakers.pop(uid, None)
            if not w.wakers:
                w.task.cancel()
                del self._watches[key]

    async def get(self, kind: str, ns: str, name: str):
        """The object (None: it does not exist) from its watch's cache; set_refs must name it first."""
        w = self._watches[(kind, ns, name)]
        try:
            await asyncio.wait_for(w.informer.wait_synced(), SYNC_TIMEOUT)
        except asyncio.TimeoutError as exc:
            raise VolumeSetupError(f"failed to sync {kind.lower()} cache: timed out waiting for the "
                                   "condition") from exc
        return w.informer.get(ns, name)

    async def gather(self, pod: core_pb2.Pod, wake: Callable[[], None]) -> Sources:
        """Register the pod's references and return the objects."""
        ns = pod.metadata.namespace
        refs = references(pod)
        self.set_refs(pod.metadata.uid, ns, refs, wake)
        src = Sources()
        for kind, name in sorted(refs):
            (src.config_maps if kind == CONFIG_MAP else src.secrets)[name] = await self.get(kind, ns, name)
        return src
