"""The Endpoints controller (Kubernetes' pkg/controller/endpoint).

One Endpoints object per Service with a selector, named like the Service:
ready pods' IPs in `addresses`, the others in `notReadyAddresses`, with
ports resolved per pod (a named targetPort is looked up in that pod's
container ports; a pod without it is left out of that port's subset) and
the pod's `hostname` when its `subdomain` names the Service. Addresses with
the same resolved ports share a subset. The object carries the Service's
labels and `endpointslice.kubernetes.io/skip-mirror: "true"` (its slices are
the EndpointSlice controller's, not mirrored copies). Terminating and
finished pods and pods without an IP are left out. The Endpoints object goes
when its Service goes (Services without a selector are left alone: their
Endpoints are the user's, mirrored into slices by
controllers/endpointslicemirroring.py).

Handlers enqueue the Service keys a pod change concerns
(controllers/svcpods.py), so a readiness change reaches the Endpoints in one
sync. Several workers, one per key. The EndpointSlices of the same Service
are controllers/endpointslice.py's.

A sync does not write from a cache that has not seen our own last write yet
(Kubernetes' staleEndpointsTracker): the update would only be refused with a
Conflict. It comes back after STALE_RETRY instead (the tracker is the
EndpointSlice controller's, keyed by the Service, the Endpoints' own name).
A burst of readiness changes used to cost ~0.3 refused updates per pod.
"""
from __future__ import annotations

from machinery import codec, errors, kinds
from machinery.informer import key_of
from machinery.pb import core_pb2, meta_pb2

from controllers import podutil
from controllers.endpointslice import STALE_RETRY, SliceTracker
from controllers.svcpods import ServicePodController, endpoint_hostname, resolved_ports


SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"


def endpoints_labels(svc) -> dict[str, str]:
    """The Service's labels, and skip-mirror: the EndpointSlice controller makes this Service's slices,
    the mirroring controller must not copy our Endpoints into more (as Kubernetes labels them)."""
    return {**svc.metadata.labels, SKIP_MIRROR_LABEL: "true"}


class EndpointsController(ServicePodController):
    name = "endpoints"

    def __init__(self, client, factory, recorder=None, workers: int = 5):
        super().__init__(client, factory, recorder, workers)
        self.ep_inf = factory.informer("Endpoints")
        self.ep_inf.add_handler(None, None, self._ep_deleted)
        self.tracker = SliceTracker()        # our writes, so a sync never writes over a stale cache

    def informers(self):
        return [self.svc_inf, self.pod_inf, self.ep_inf]

    def _ep_deleted(self, ep) -> None:
        self.tracker.seen_deleted(key_of(ep), ep.metadata.name)   # ours or not: the cache has it no more
        if self.svc_inf.get_by_key(key_of(ep)) is not None:
            self.enqueue(ep)

    def desired_subsets(self, svc) -> list:
        groups: dict[tuple, tuple[list, list]] = {}
        for pod in self.selected_pods(svc):
            if podutil.is_terminating(pod):
                continue
            ports = resolved_ports(pod, svc)
            if svc.spec.ports and not ports:
                continue
            addr = core_pb2.EndpointAddress(ip=pod.status.pod_ip, target_ref=meta_pb2.ObjectReference(
                kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid))
            if pod.spec.node_name:
                addr.node_name = pod.spec.node_name
            addr.hostname = endpoint_hostname(pod, svc)
            ready, not_ready = groups.setdefault(tuple(sorted(ports)), ([], []))
            (ready if podutil.is_pod_ready(pod) else not_ready).append(addr)
        subsets = []
        for ports, (ready, not_ready) in sorted(groups.items()):
            s = core_pb2.EndpointSubset()
            s.addresses.extend(sorted(ready, key=lambda a: (a.ip, a.target_ref.name)))
            s.not_ready_addresses.extend(sorted(not_ready, key=lambda a: (a.ip, a.target_ref.name)))
            for name, port, proto, app in ports:
                s.ports.add(name=name, port=port, protocol=proto, app_protocol=app)
            subsets.append(s)
        return subsets

    async def sync(self, key: str) -> None:
        ns, name = key.split("/", 1)
        svc = self.svc_inf.get_by_key(key)
        current = self.ep_inf.get_by_key(key)
        if svc is None or not svc.spec.selector:
            self.tracker.forget(key)
            if svc is None and current is not None:
                try:
                    await self.client.delete("Endpoints", name, ns)
                except errors.NotFound:
                    pass
            return
        if self.tracker.stale(key, [current] if current is not None else []):
            self.queue.add_after(key, STALE_RETRY)
            return
        subsets = self.desired_subsets(svc)
        if current is None:
            ep = kinds.new("Endpoints")
            ep.metadata.name, ep.metadata.namespace = name, ns
            ep.metadata.labels.update(endpoints_labels(svc))
            ep.subsets.extend(subsets)
            try:
                self.tracker.wrote(key, await self.client.create(ep))
            except errors.AlreadyExists:
                # not in our cache yet: update it on the next pass
                self.queue.add_after(key, 0.1)
            except errors.Forbidden:
                pass                      # namespace terminating
            return
        if list(current.subsets) == subsets and dict(current.metadata.labels) == endpoints_labels(svc):
            return
        new = codec.copy(current)
        del new.subsets[:]
        new.subsets.extend(subsets)
        new.metadata.labels.clear()
        new.metadata.labels.update(endpoints_labels(svc))
        self.tracker.wrote(key, await self.client.update(new))
