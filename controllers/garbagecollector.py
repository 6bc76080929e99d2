"""The garbage collector (Kubernetes' pkg/controller/garbagecollector),
built on the shared informers of the kinds that own or are owned:
Deployment → ReplicaSet → Pod, DaemonSet → ControllerRevision and Pod,
StatefulSet → ControllerRevision, Pod (and, by its retention policy, PVCs),
CronJob → Job → Pod, Node → Lease (and any ownerReferences among the
namespaced kinds we watch, PodDisruptionBudgets included).

Work items are `Kind/namespace/name` keys; sync re-reads the object from
its informer:
* an object being deleted with the `orphan` finalizer: remove its UID from
  the ownerReferences of every dependent, then remove the finalizer (the
  apiserver then deletes the object);
* an object being deleted with the `foregroundDeletion` finalizer: delete
  its dependents (foreground too, so the cascade reaches the leaves first);
  once none is left in the cache, remove the finalizer;
* any other object with ownerReferences: an owner that is neither in the
  cache with that UID nor found by a live GET (a stale cache never deletes
  anything) is absent. All owners absent → delete the object (background);
  some absent → drop those references; an owner deleting in the foreground
  and this reference blocking → delete the object in the foreground.

Handlers: a deleted object enqueues its dependents (by the owner-UID index)
and its owners (a foreground owner waits for it); an added/updated object
with ownerReferences or a deletion finalizer enqueues itself.
"""
from __future__ import annotations

from machinery import codec, errors, kinds
from machinery.informer import BY_OWNER, index_by_owner_uid

from controllers import podutil
from controllers.base import Controller

GC_KINDS = ("Deployment", "ReplicaSet", "Pod", "Node", "Lease", "Service", "Endpoints",
            "ConfigMap", "Secret", "PersistentVolumeClaim", "PersistentVolume",
            "DaemonSet", "StatefulSet", "ControllerRevision", "CronJob", "Job", "PodDisruptionBudget")
ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, client, factory, recorder=None, workers: int = 5, kinds_: tuple = GC_KINDS):
        super().__init__(client, factory, recorder, workers)
        self.infs = {}
        for kind in kinds_:
            inf = factory.informer(kind)
            if BY_OWNER not in inf._indexers:
                inf.add_index(BY_OWNER, index_by_owner_uid)
            self.infs[kind] = inf
            inf.add_handler(self._changed, lambda old, new: self._changed(new), self._deleted)

    def informers(self):
        return list(self.infs.values())

    @staticmethod
    def key(obj) -> str:
        md = obj.metadata
        return f"{kinds.of(obj).kind}/{md.namespace}/{md.name}"

    def _changed(self, obj) -> None:
        md = obj.metadata
        if md.owner_references or (md.HasField("deletion_timestamp") and
                                   (ORPHAN in md.finalizers or FOREGROUND in md.finalizers)):
            self.queue.add(self.key(obj))

    def _deleted(self, obj) -> None:
        for dep in self.dependents(obj.metadata.uid):
            self.queue.add(self.key(dep))
        for ref in obj.metadata.owner_references:
            owner = self._cached_owner(obj, ref)
            if owner is not None:
                self.queue.add(self.key(owner))

    def dependents(self, uid: str) -> list:
        out = []
        for inf in self.infs.values():
            out.extend(inf.by_index(BY_OWNER, uid))
        return out

    def _cached_owner(self, obj, ref):
        inf = self.infs.get(ref.kind)
        if inf is None:
            return None
        info = kinds.BY_KIND.get(ref.kind)
        ns = obj.metadata.namespace if info is not None and info.namespaced else ""
        owner = inf.get(ns, ref.name)
        return owner if owner is not None and owner.metadata.uid == ref.uid else None

    async def _owner_present(self, obj, ref):
        """(present, owner) — checked against the apiserver when the cache does not have it."""
        owner = self._cached_owner(obj, ref)
        if owner is not None:
            return True, owner
        info = kinds.BY_KIND.get(ref.kind)
        if info is None:
            return True, None               # a kind we do not know: never delete on its account
        try:
            live = await self.client.get(info, ref.name, obj.metadata.namespace if info.namespaced else "")
        except errors.NotFound:
            return False, None
        return live.metadata.uid == ref.uid, live if live.metadata.uid == ref.uid else None

    async def sync(self, key: str) -> None:
        kind, ns, name = key.split("/", 2)
        obj = self.infs[kind].get(ns, name)
        if obj is None:
            return
        md = obj.metadata
        if md.HasField("deletion_timestamp") and ORPHAN in md.finalizers:
            await self._orphan(obj)
            return
        if md.HasField("deletion_timestamp") and FOREGROUND in md.finalizers:
            await self._foreground(obj)
            return
        if not md.owner_references or podutil.is_terminating(obj):
            return
        absent, blocking_fg = [], False
        for ref in md.owner_references:
            present, owner = await self._owner_present(obj, ref)
            if not present:
                absent.append(ref.uid)
            elif (owner is not None and owner.metadata.HasField("deletion_timestamp")
                  and FOREGROUND in owner.metadata.finalizers and ref.block_owner_deletion):
                blocking_fg = True
        if absent and len(absent) == len(md.owner_references):
            self.log.info("deleting %s: all owners are gone", key)
            await self._delete(obj, "Background")
        elif absent:
            new = codec.copy(obj)
            keep = [codec.copy(r) for r in new.metadata.owner_references if r.uid not in absent]
            del new.metadata.owner_references[:]
            new.metadata.owner_references.extend(keep)
            await self.client.update(new)
        elif blocking_fg:
            self.log.info("deleting %s: its owner is deleted in the foreground", key)
            await self._delete(obj, "Foreground")

    async def _delete(self, obj, propagation: str) -> None:
        try:
            await self.client.delete(kinds.of(obj), obj.metadata.name, obj.metadata.namespace,
                                     uid=obj.metadata.uid, propagation=propagation)
        except (errors.NotFound, errors.Conflict):
            pass

    async def _remove_finalizer(self, obj, finalizer: str) -> None:
        await podutil.remove_finalizer(self.client, obj, finalizer)

    async def _orphan(self, obj) -> None:
        uid = obj.metadata.uid
        for dep in self.dependents(uid):
            new = codec.copy(dep)
            keep = [codec.copy(r) for r in new.metadata.owner_references if r.uid != uid]
            del new.metadata.owner_references[:]
            new.metadata.owner_references.extend(keep)
            try:
                await self.client.update(new)
            except errors.NotFound:
                pass
        self.log.info("orphaned the dependents of %s", self.key(obj))
        await self._remove_finalizer(obj, ORPHAN)

    async def _foreground(self, obj) -> None:
        deps = self.dependents(obj.metadata.uid)
        if not deps:
            self.log.info("%s: dependents gone; finishing foreground deletion", self.key(obj))
            await self._remove_finalizer(obj, FOREGROUND)
            return
        for dep in deps:
            if not podutil.is_terminating(dep):
                await self._delete(dep, "Foreground")
        # dependents' DELETE events re-enqueue us; a slow one is retried anyway
        self.queue.add_after(self.key(obj), 2.0)
