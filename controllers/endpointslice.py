"""The EndpointSlice controller (Kubernetes' pkg/controller/endpointslice).

Keeps, for every Service with a selector, the ``discovery.k8s.io/v1``
EndpointSlices labelled ``kubernetes.io/service-name=<svc>`` and
``endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io``,
owned by the Service: at most ``max_endpoints_per_slice`` endpoints each
(100 by default, ``--max-endpoints-per-slice``), one slice family per
resolved port set, addressType IPv4. What goes into them and how the writes
are chosen is controllers/endpointslice_reconciler.py.

Unlike the Endpoints controller (which drops them), terminating pods stay in
the slices with ``ready: false``, ``terminating: true`` and ``serving`` = the
pod's readiness: a pod being deleted leaves the ready set at once, and the
node agents can tell when every proxy stopped sending it new connections
(nodeagent/drain.py).

Handlers: Service and Pod changes enqueue the Service key
(controllers/svcpods.py); a managed slice changed or deleted by someone else
enqueues its Service. Slices we do not manage are never touched.

Stale caches: a slice we just created is not in the informer yet, and a
sync from that cache would create it again. As Kubernetes'
endpointSliceTracker, we remember per Service the resourceVersion of every
slice we wrote (and the names we deleted); a sync whose cache has not caught
up with our writes is retried 100 ms later instead of acting.
"""
from __future__ import annotations

from machinery import errors
from machinery.informer import key_of

from controllers.endpointslice_reconciler import (CONTROLLER_NAME, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE,
                                                  SERVICE_NAME_LABEL, desired, reconcile)
from controllers.svcpods import ServicePodController

STALE_RETRY = 0.1


def managed_service_key(es, managed_by: str = CONTROLLER_NAME) -> str | None:
    labels = es.metadata.labels
    if labels.get(MANAGED_BY_LABEL) != managed_by or SERVICE_NAME_LABEL not in labels:
        return None
    return f"{es.metadata.namespace}/{labels[SERVICE_NAME_LABEL]}"


class SliceTracker:
    """What we wrote per Service: {slice name: resourceVersion, or None once deleted}."""

    def __init__(self):
        self._written: dict[str, dict[str, str | None]] = {}

    def wrote(self, svc_key: str, es) -> None:
        self._written.setdefault(svc_key, {})[es.metadata.name] = es.metadata.resource_version

    def deleted(self, svc_key: str, name: str) -> None:
        self._written.setdefault(svc_key, {})[name] = None

    def forget(self, svc_key: str) -> None:
        self._written.pop(svc_key, None)

    def seen_deleted(self, svc_key: str, name: str) -> None:
        """A delete event, ours or someone else's: the cache has that object no more (only
        Services with writes of ours are tracked; a forgotten one stays forgotten)."""
        written = self._written.get(svc_key)
        if written is not None and name in written:
            written[name] = None

    def stale(self, svc_key: str, cached: list) -> bool:
        """The cache lacks a slice we wrote, shows an older version of one, or still has one we deleted."""
        have = {es.metadata.name: int(es.metadata.resource_version or 0) for es in cached}
        for name, rv in self._written.get(svc_key, {}).items():
            if rv is None:
                if name in have:
                    return True
            elif name not in have or have[name] < int(rv or 0):
                return True
        return False


class SliceWriter:
    """The slice-writing half shared with the mirroring controller: a slice informer indexed by the
    Service of the slices MANAGED_BY writes, a tracker of our writes, and ``apply(key, plan)``."""
    managed_by = CONTROLLER_NAME

    def _watch_slices(self, factory) -> None:
        self.tracker = SliceTracker()
        self.slice_inf = factory.informer("EndpointSlice")
        self.slice_inf.add_index(self.managed_by, lambda es: [k] if (k := managed_service_key(es, self.managed_by))
                                 else [])
        self.slice_inf.add_handler(None, lambda o, n: self._slice_changed(n), self._slice_deleted)

    def _slice_changed(self, es) -> None:
        key = managed_service_key(es, self.managed_by)
        if key is not None:
            self.queue.add(key)

    def _slice_deleted(self, es) -> None:
        """Deleted, by us or by someone else: the cache has it no more (without this, a slice
        deleted by a user looked like a cache behind our write forever, retried every 0.1 s)."""
        key = managed_service_key(es, self.managed_by)
        if key is not None:
            self.tracker.seen_deleted(key, es.metadata.name)
            self.queue.add(key)

    def our_slices(self, key: str) -> list | None:
        """Our slices of the Service KEY, or None (and a retry soon) while the cache lags our writes."""
        slices = self.slice_inf.by_index(self.managed_by, key)
        if self.tracker.stale(key, slices):
            self.queue.add_after(key, STALE_RETRY)
            return None
        return slices

    async def delete_all(self, key: str, slices: list) -> None:
        for es in slices:
            await self._delete(key, es)
        self.tracker.forget(key)

    async def apply(self, key: str, plan) -> None:
        for es in plan.delete:
            await self._delete(key, es)
        for es in plan.update:
            self.tracker.wrote(key, await self.client.update(es))
        for es in plan.create:
            try:
                self.tracker.wrote(key, await self.client.create(es))
            except errors.Forbidden:       # namespace terminating
                return

    async def _delete(self, key: str, es) -> None:
        try:
            await self.client.delete("EndpointSlice", es.metadata.name, es.metadata.namespace)
        except errors.NotFound:
            pass
        self.tracker.deleted(key, es.metadata.name)


class EndpointSliceController(SliceWriter, ServicePodController):
    name = "endpointslice"

    def __init__(self, client, factory, recorder=None, workers: int = 5,
                 max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE):
        super().__init__(client, factory, recorder, workers)
        self.max_per_slice = max_endpoints_per_slice
        self._watch_slices(factory)

    def informers(self):
        return [self.svc_inf, self.pod_inf, self.slice_inf]

    async def sync(self, key: str) -> None:
        svc = self.svc_inf.get_by_key(key)
        slices = self.our_slices(key)
        if slices is None:
            return
        if svc is None or not svc.spec.selector:
            await self.delete_all(key, slices)     # the Service went (or stopped selecting): its slices go too
            return
        await self.apply(key, reconcile(svc, slices, desired(svc, self.selected_pods(svc)), self.max_per_slice))
