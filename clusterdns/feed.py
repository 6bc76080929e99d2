"""Informers → ClusterIndex: API objects become the index's small values.

`Feed(factory, index, pods=True)` asks the shared informer factory for
Namespaces, Services, Endpoints, EndpointSlices (and Pods when pod records
are verified) and registers handlers that convert each object and write it
into the index at once (list+watch through machinery.informer, as the controllers do; the
handlers run on the informers' dispatcher tasks, in event order). `run()`
waits for the first lists to reach the index and marks it synced: before
that a name error is answered SERVFAIL, not NXDOMAIN, as CoreDNS does.

What the answers need from each kind, as CoreDNS's object package keeps it:
* Service: type, clusterIPs ("None" = headless), ports (name, port,
  protocol), externalName (type ExternalName: answered as a CNAME).
* EndpointSlices (source key "EndpointSlice/NS/NAME", service from the
  `kubernetes.io/service-name` label), as CoreDNS reads them: endpoints whose
  `ready` is unset or true, each with its hostname and the slice's ports (a
  slice without ports gets CoreDNS's port -1 sentinel: A records but no
  SRV). Once a service has a slice, slices alone speak for it.
* Endpoints (source key "Endpoints/NS/NAME"), for services without any
  slice (e.g. hand-written Endpoints of a selector-less service): only ready
  `addresses`, each with its hostname and its subset's ports.
* Pod: status.podIP unless the pod is terminating (deletionTimestamp set).
* Namespace: its name (names in unknown namespaces are NXDOMAIN).
"""
from __future__ import annotations

import asyncio
import logging

from clusterdns.index import NO_PORT, ClusterIndex, EndpointEntry, Port, ServiceEntry

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

log = logging.getLogger("kctl.dns.feed")


def service_entry(svc) -> ServiceEntry:
    spec = svc.spec
    ips = [ip for ip in (list(spec.cluster_ips) or [spec.cluster_ip]) if ip and ip != "None"]
    headless = spec.cluster_ip == "None" or (bool(spec.cluster_ips) and spec.cluster_ips[0] == "None")
    external = spec.external_name.rstrip(".") if spec.type == "ExternalName" else ""
    return ServiceEntry(
        namespace=svc.metadata.namespace, name=svc.metadata.name, type=spec.type or "ClusterIP",
        cluster_ips=() if spec.type == "ExternalName" else tuple(ips), headless=headless,
        external_name=external,
        ports=tuple(Port(p.name, p.port, p.protocol or "TCP") for p in spec.ports))


def endpoint_entries(ep) -> list[EndpointEntry]:
    out = []
    for subset in ep.subsets:
        ports = tuple(Port(p.name, p.port, p.protocol or "TCP") for p in subset.ports) \
            or (Port("", NO_PORT, ""),)
        out.extend(EndpointEntry(a.ip, a.hostname, ports) for a in subset.addresses)
    return out


def slice_entries(es) -> list[EndpointEntry]:
    """CoreDNS's EndpointSliceToEndpoints: endpoints whose `ready` is unset or true, first address."""
    ports = tuple(Port(p.name, p.port, p.protocol or "TCP") for p in es.ports if p.HasField("port")) \
        or (Port("", NO_PORT, ""),)
    return [EndpointEntry(e.addresses[0], e.hostname, ports) for e in es.endpoints
            if e.addresses and (not e.conditions.HasField("ready") or e.conditions.ready)]


def slice_service(es) -> str:
    return es.metadata.labels.get(SERVICE_NAME_LABEL, "")


def pod_ip(pod) -> str:
    """The IP a pod record resolves to, "" for a pod that must not resolve."""
    if pod.metadata.HasField("deletion_timestamp"):
        return ""
    return pod.status.pod_ip


def endpoints_source(ep) -> str:
    return f"Endpoints/{ep.metadata.namespace}/{ep.metadata.name}"


class Feed:
    """Wire the informers of a SharedInformerFactory to a ClusterIndex."""

    def __init__(self, factory, index: ClusterIndex, *, pods: bool = True):
        self.index = index
        ix = index
        self.informers = [factory.informer("Namespace"), factory.informer("Service"),
                          factory.informer("Endpoints"), factory.informer("EndpointSlice")]
        ns_inf, svc_inf, ep_inf, slice_inf = self.informers
        self._endpoints_inf = ep_inf
        self._slices: dict[tuple[str, str], set[str]] = {}      # services with slices: their slice names
        ns_inf.add_handler(lambda o: ix.set_namespace(o.metadata.name),
                           lambda _, o: ix.set_namespace(o.metadata.name),
                           lambda o: ix.delete_namespace(o.metadata.name))
        svc_inf.add_handler(lambda o: ix.set_service(service_entry(o)),
                            lambda _, o: ix.set_service(service_entry(o)),
                            lambda o: ix.delete_service(o.metadata.namespace, o.metadata.name))
        ep_inf.add_handler(self._set_endpoints, lambda _, o: self._set_endpoints(o),
                           lambda o: ix.delete_endpoints(o.metadata.namespace, o.metadata.name,
                                                         endpoints_source(o)))
        slice_inf.add_handler(self._set_slice, lambda old, o: self._set_slice(o, old), self._delete_slice)
        if pods:
            pod_inf = factory.informer("Pod")
            self.informers.append(pod_inf)
            pod_inf.add_handler(self._set_pod, lambda _, o: self._set_pod(o),
                                lambda o: ix.delete_pod(o.metadata.namespace, o.metadata.name))

    def _set_endpoints(self, ep) -> None:
        md = ep.metadata
        if (md.namespace, md.name) in self._slices:     # the service's slices speak for it
            return
        self.index.set_endpoints(md.namespace, md.name, endpoints_source(ep), endpoint_entries(ep))

    def _set_slice(self, es, old=None) -> None:
        if old is not None and slice_service(old) != slice_service(es):
            self._delete_slice(old)
        svc, md = slice_service(es), es.metadata
        if not svc:
            return
        names = self._slices.setdefault((md.namespace, svc), set())
        if not names:       # first slice of the service: its Endpoints object no longer counts
            self.index.delete_endpoints(md.namespace, svc, f"Endpoints/{md.namespace}/{svc}")
        names.add(md.name)
        self.index.set_endpoints(md.namespace, svc, f"EndpointSlice/{md.namespace}/{md.name}", slice_entries(es))

    def _delete_slice(self, es) -> None:
        svc, md = slice_service(es), es.metadata
        names = self._slices.get((md.namespace, svc))
        if not svc or names is None:
            return
        names.discard(md.name)
        self.index.delete_endpoints(md.namespace, svc, f"EndpointSlice/{md.namespace}/{md.name}")
        if not names:       # the last slice went: the Endpoints object speaks again
            del self._slices[(md.namespace, svc)]
            ep = self._endpoints_inf.get(md.namespace, svc)
            if ep is not None:
                self._set_endpoints(ep)

    def _set_pod(self, pod) -> None:
        self.index.set_pod(pod.metadata.namespace, pod.metadata.name, pod_ip(pod))

    async def run(self) -> None:
        """Mark the index synced once every informer's first list reached it; then idle.
        Long-lived like the other tasks of the component's TaskGroup."""
        for inf in self.informers:
            await inf.wait_synced()
        self.index.synced = True
        log.info("synced: %s", ", ".join(f"{n} {k}" for k, n in self.index.counts().items()))
        await asyncio.Event().wait()
