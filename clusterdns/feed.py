"""Informers → ClusterIndex: API objects become the index's small values.

`Feed(factory, index, pods=True)` asks the shared informer factory for
Namespaces, Services, Endpoints (and Pods when pod records are verified) and
registers handlers that convert each object and write it into the index at
once (list+watch through machinery.informer, as the controllers do; the
handlers run on the informers' dispatcher tasks, in event order). `run()`
waits for the first lists to reach the index and marks it synced: before
that a name error is answered SERVFAIL, not NXDOMAIN, as CoreDNS does.

What the answers need from each kind, as CoreDNS's object package keeps it:
* Service: type, clusterIPs ("None" = headless), ports (name, port,
  protocol), externalName (type ExternalName: answered as a CNAME).
* Endpoints: only ready `addresses` (notReadyAddresses never resolve), each
  with its hostname and its subset's ports (a subset without ports gets
  CoreDNS's port -1 sentinel: A records but no SRV). Source key
  "Endpoints/NS/NAME"; EndpointSlices will add "EndpointSlice/NS/NAME".
* Pod: status.podIP unless the pod is terminating (deletionTimestamp set).
* Namespace: its name (names in unknown namespaces are NXDOMAIN).
"""
from __future__ import annotations

import asyncio
import logging

from clusterdns.index import NO_PORT, ClusterIndex, EndpointEntry, Port, ServiceEntry

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
                          factory.informer("Endpoints")]
        ns_inf, svc_inf, ep_inf = self.informers
        ns_inf.add_handler(lambda o: ix.set_namespace(o.metadata.name),
                           lambda _, o: ix.set_namespace(o.metadata.name),
                           lambda o: ix.delete_namespace(o.metadata.name))
        svc_inf.add_handler(lambda o: ix.set_service(service_entry(o)),
                            lambda _, o: ix.set_service(service_entry(o)),
                            lambda o: ix.delete_service(o.metadata.namespace, o.metadata.name))
        ep_inf.add_handler(self._set_endpoints, lambda _, o: self._set_endpoints(o),
                           lambda o: ix.delete_endpoints(o.metadata.namespace, o.metadata.name,
                                                         endpoints_source(o)))
        if pods:
            pod_inf = factory.informer("Pod")
            self.informers.append(pod_inf)
            pod_inf.add_handler(self._set_pod, lambda _, o: self._set_pod(o),
                                lambda o: ix.delete_pod(o.metadata.namespace, o.metadata.name))

    def _set_endpoints(self, ep) -> None:
        md = ep.metadata
        self.index.set_endpoints(md.namespace, md.name, endpoints_source(ep), endpoint_entries(ep))

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
