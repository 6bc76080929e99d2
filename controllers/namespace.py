"""The namespace controller (Kubernetes' pkg/controller/namespace).

Deleting a Namespace makes the apiserver mark it Terminating (phase, a
deletionTimestamp, and the `kubernetes` entry in spec.finalizers) and refuse
new objects in it. sync(name) then deletes every object of every namespaced
kind in it (listed live from the apiserver, not from a cache: nothing may be
missed), and once a list comes back empty for every kind it removes the
`kubernetes` finalizer with an update, whereupon the apiserver removes the
Namespace. Pods that are terminating gracefully are waited for (their agent
confirms), so the key is re-queued until they are gone.
"""
from __future__ import annotations

from machinery import codec, errors, kinds

from controllers.base import Controller

FINALIZER = "kubernetes"


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, client, factory, recorder=None, workers: int = 2, *, recheck: float = 1.0):
        super().__init__(client, factory, recorder, workers)
        self.recheck = recheck
        self.ns_inf = factory.informer("Namespace")
        self.ns_inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), None)

    def informers(self):
        return [self.ns_inf]

    async def sync(self, key: str) -> None:
        ns = self.ns_inf.get_by_key(key)
        if ns is None or not ns.metadata.HasField("deletion_timestamp"):
            return
        remaining = 0
        for info in kinds.KINDS:
            if not info.namespaced:
                continue
            items, _ = await self.client.list(info, key)
            for obj in items:
                remaining += 1
                if obj.metadata.HasField("deletion_timestamp"):
                    continue
                try:
                    _, gone = await self.client.delete(info, obj.metadata.name, key, propagation="Background")
                except errors.NotFound:
                    gone = True
                remaining -= 1 if gone else 0
        if remaining:
            self.log.info("namespace %s: %d object(s) left; checking again", key, remaining)
            self.queue.add_after(key, self.recheck)
            return
        if FINALIZER in ns.spec.finalizers:
            new = codec.copy(ns)
            keep = [f for f in new.spec.finalizers if f != FINALIZER]
            del new.spec.finalizers[:]
            new.spec.finalizers.extend(keep)
            try:
                await self.client.update(new)
            except errors.NotFound:
                return
            self.log.info("namespace %s: empty; finalized", key)
