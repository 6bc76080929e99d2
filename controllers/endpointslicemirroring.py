"""The EndpointSlice mirroring controller (Kubernetes' pkg/controller/endpointslicemirroring).

Services without a selector get their endpoints from Endpoints objects that
users (or other controllers) write by hand; the proxy and cluster DNS read
EndpointSlices only, so this controller copies each such Endpoints object into
slices labelled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io``:
``addresses`` become ready endpoints, ``notReadyAddresses`` not-ready ones,
with their hostname, nodeName and targetRef; one slice family per subset's
ports, at most 1,000 endpoints per slice (Kubernetes' default for
mirroring).  Not mirrored, as in Kubernetes: Endpoints of a Service that has
a selector or does not exist, and Endpoints labelled
``endpointslice.kubernetes.io/skip-mirror: "true"`` (the Endpoints
controller labels its own so).  Mirrored slices go when the Endpoints
object, its Service, or the reason to mirror goes.  How slices are written
is shared with controllers/endpointslice.py (``SliceWriter``).
"""
from __future__ import annotations

from machinery.pb import discovery_pb2

from controllers.base import Controller
from controllers.endpoints import SKIP_MIRROR_LABEL
from controllers.endpointslice import SliceWriter
from controllers.endpointslice_reconciler import reconcile

MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
MAX_MIRRORED_PER_SLICE = 1000


def mirrored(ep) -> dict:
    """Endpoints -> desired slice endpoints by port set (the reconciler's input)."""
    out: dict = {}
    for subset in ep.subsets:
        ports = tuple(sorted((p.name, p.port, p.protocol or "TCP", p.app_protocol) for p in subset.ports))
        eps = out.setdefault(ports, {})
        for addrs, ready in ((subset.addresses, True), (subset.not_ready_addresses, False)):
            for a in addrs:
                e = discovery_pb2.Endpoint(addresses=[a.ip])
                e.conditions.ready = e.conditions.serving = ready
                e.conditions.terminating = False
                if a.hostname:
                    e.hostname = a.hostname
                if a.HasField("node_name") and a.node_name:
                    e.node_name = a.node_name
                if a.HasField("target_ref"):
                    e.target_ref.CopyFrom(a.target_ref)
                eps.setdefault(a.ip, e)
    return {k: v for k, v in out.items() if v}


class EndpointSliceMirroringController(SliceWriter, Controller):
    name = "endpointslicemirroring"
    managed_by = MIRRORING_CONTROLLER

    def __init__(self, client, factory, recorder=None, workers: int = 5):
        super().__init__(client, factory, recorder, workers)
        self.svc_inf = factory.informer("Service")
        self.ep_inf = factory.informer("Endpoints")
        for inf in (self.svc_inf, self.ep_inf):
            inf.add_handler(self.enqueue, lambda o, n: self.enqueue(n), self.enqueue)
        self._watch_slices(factory)

    def informers(self):
        return [self.svc_inf, self.ep_inf, self.slice_inf]

    async def sync(self, key: str) -> None:
        slices = self.our_slices(key)
        if slices is None:
            return
        svc, ep = self.svc_inf.get_by_key(key), self.ep_inf.get_by_key(key)
        if svc is None or svc.spec.selector or ep is None or ep.metadata.labels.get(SKIP_MIRROR_LABEL) == "true":
            await self.delete_all(key, slices)
            return
        await self.apply(key, reconcile(svc, slices, mirrored(ep), MAX_MIRRORED_PER_SLICE,
                                        managed_by=MIRRORING_CONTROLLER, placeholder=False))
