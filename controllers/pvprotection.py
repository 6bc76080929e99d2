"""The storage-object-in-use protection controllers (Kubernetes'
pkg/controller/volume/pvcprotection and pvprotection).

The apiserver puts `kubernetes.io/pvc-protection` on every new claim and
`kubernetes.io/pv-protection` on every new volume (apiserver/registry.py),
so deleting one only marks it. These controllers remove the finalizer —
letting the apiserver finish the delete — once the object is not in use:
a claim when no pod that has not finished names it in its volumes (checked
in the cache, then confirmed with a live list, as Kubernetes does, so a pod
the cache has not seen yet is never missed); a volume once it is not Bound.
"""
from __future__ import annotations

from machinery.informer import BY_NAMESPACE, index_by_namespace, key_of

from controllers import pvmatch as m
from controllers.base import Controller
from controllers.podutil import remove_finalizer

PVC_FINALIZER = "kubernetes.io/pvc-protection"
PV_FINALIZER = "kubernetes.io/pv-protection"


def _deleting_with(obj, finalizer: str) -> bool:
    return obj.metadata.HasField("deletion_timestamp") and finalizer in obj.metadata.finalizers


class PVCProtectionController(Controller):
    name = "pvc-protection"

    def __init__(self, client, factory, recorder=None, workers: int = 1):
        super().__init__(client, factory, recorder, workers)
        self.pvc_inf = factory.informer("PersistentVolumeClaim")
        self.pod_inf = factory.informer("Pod")
        if BY_NAMESPACE not in self.pod_inf._indexers:
            self.pod_inf.add_index(BY_NAMESPACE, index_by_namespace)
        self.pvc_inf.add_handler(self._claim, lambda o, n: self._claim(n), None)
        self.pod_inf.add_handler(None, lambda o, n: self._pod(n), self._pod)

    def informers(self):
        return [self.pvc_inf, self.pod_inf]

    def _claim(self, pvc) -> None:
        if _deleting_with(pvc, PVC_FINALIZER):
            self.enqueue(pvc)

    def _pod(self, pod) -> None:
        for key in m.claims_of_pod(pod):
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        pvc = self.pvc_inf.get_by_key(key)
        if pvc is None or not _deleting_with(pvc, PVC_FINALIZER):
            return
        ns = pvc.metadata.namespace
        if any(m.pod_uses_claim(p, pvc) for p in self.pod_inf.list(ns)):
            return                                   # a pod event re-queues the claim
        pods, _ = await self.client.list("Pod", ns)
        if any(m.pod_uses_claim(p, pvc) for p in pods):
            self.queue.add_after(key, 1.0)
            return
        await remove_finalizer(self.client, pvc, PVC_FINALIZER)
        self.log.info("claim %s is not used by any pod: finalizer removed", key)


class PVProtectionController(Controller):
    name = "pv-protection"

    def __init__(self, client, factory, recorder=None, workers: int = 1):
        super().__init__(client, factory, recorder, workers)
        self.pv_inf = factory.informer("PersistentVolume")
        self.pv_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), None)

    def informers(self):
        return [self.pv_inf]

    async def sync(self, key: str) -> None:
        pv = self.pv_inf.get_by_key(key)
        if pv is None or not _deleting_with(pv, PV_FINALIZER) or pv.status.phase == "Bound":
            return
        await remove_finalizer(self.client, pv, PV_FINALIZER)
        self.log.info("volume %s is not bound: finalizer removed", key_of(pv))
