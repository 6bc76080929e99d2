"""The in-memory view kctl-dns answers from: a name index fed by events.

Records are built from small immutable values, never from API objects, so the
answer code does not care where they came from: `clusterdns.feed` converts
Services, Endpoints, Pods and Namespaces from the informers; EndpointSlices
will feed the same `set_endpoints(namespace, service, source, endpoints)`
call later (one `source` per slice, as CoreDNS merges slices per service).

Every write happens on the event loop (informer handlers call it
synchronously), every read too (the query path), so there is no lock. Each
write bumps `generation` (the answer cache in clusterdns.server drops
everything when it changes) and `modified` (Unix seconds, the SOA serial, as
CoreDNS's `Modified()`). Lookups are dictionary hits keyed by lower-case
names; reverse maps answer PTR queries without scanning.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

NO_PORT = -1      # CoreDNS's sentinel for an endpoint without ports: A records, no SRV


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: str       # "TCP", "UDP", "SCTP" as in the API; compared case-insensitively


@dataclass(frozen=True)
class ServiceEntry:
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()      # empty for headless and ExternalName services
    headless: bool = False
    external_name: str = ""
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class EndpointEntry:
    """One ready address of a service; `ports` is (Port("", NO_PORT, ""),) without ports."""
    ip: str
    hostname: str = ""
    ports: tuple[Port, ...] = (Port("", NO_PORT, ""),)


def _key(namespace: str, name: str) -> tuple[str, str]:
    return namespace.lower(), name.lower()


@dataclass
class ClusterIndex:
    clock: object = time.time
    synced: bool = False                 # the feed's first lists are all in (else NXDOMAIN -> SERVFAIL)
    generation: int = 0
    modified: int = 0
    namespaces: set[str] = field(default_factory=set)
    services: dict[tuple[str, str], ServiceEntry] = field(default_factory=dict)
    _sources: dict[tuple[str, str], dict[str, tuple[EndpointEntry, ...]]] = field(
        default_factory=lambda: defaultdict(dict))
    _endpoints: dict[tuple[str, str], tuple[EndpointEntry, ...]] = field(default_factory=dict)
    _svc_by_ip: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    _ep_by_ip: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    _pods: dict[tuple[str, str], str] = field(default_factory=dict)
    _pods_by_ip: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))

    def __post_init__(self):
        self.modified = int(self.clock())

    def _changed(self) -> None:
        self.generation += 1
        self.modified = int(self.clock())

    # ------------------------------------------------------------ writes

    def set_namespace(self, name: str) -> None:
        if name.lower() not in self.namespaces:
            self.namespaces.add(name.lower())
            self._changed()

    def delete_namespace(self, name: str) -> None:
        if name.lower() in self.namespaces:
            self.namespaces.discard(name.lower())
            self._changed()

    def set_service(self, svc: ServiceEntry) -> None:
        key = _key(svc.namespace, svc.name)
        old = self.services.get(key)
        if old == svc:
            return
        if old is not None:
            _unmap(self._svc_by_ip, old.cluster_ips, key)
        self.services[key] = svc
        _map(self._svc_by_ip, svc.cluster_ips, key)
        self._changed()

    def delete_service(self, namespace: str, name: str) -> None:
        key = _key(namespace, name)
        old = self.services.pop(key, None)
        if old is not None:
            _unmap(self._svc_by_ip, old.cluster_ips, key)
            self._changed()

    def set_endpoints(self, namespace: str, service: str, source: str,
                      endpoints: tuple[EndpointEntry, ...] | list[EndpointEntry]) -> None:
        """The ready endpoints one source (an Endpoints object, later one slice) gives a service."""
        key, endpoints = _key(namespace, service), tuple(endpoints)
        sources = self._sources[key]
        if sources.get(source) == endpoints:
            return
        if endpoints:
            sources[source] = endpoints
        else:
            sources.pop(source, None)
        self._merge(key)

    def delete_endpoints(self, namespace: str, service: str, source: str) -> None:
        key = _key(namespace, service)
        if source in self._sources.get(key, {}):
            del self._sources[key][source]
            self._merge(key)

    def _merge(self, key: tuple[str, str]) -> None:
        old = self._endpoints.pop(key, ())
        _unmap(self._ep_by_ip, [e.ip for e in old], key)
        merged = tuple(e for _, eps in sorted(self._sources.get(key, {}).items()) for e in eps)
        if merged:
            self._endpoints[key] = merged
            _map(self._ep_by_ip, [e.ip for e in merged], key)
        else:
            self._sources.pop(key, None)
        self._changed()

    def set_pod(self, namespace: str, name: str, ip: str) -> None:
        """A pod with an IP that is not terminating; ip "" removes it."""
        key = _key(namespace, name)
        old = self._pods.get(key)
        if old == (ip or None):
            return
        if old is not None:
            _unmap(self._pods_by_ip, [old], key)
            del self._pods[key]
        if ip:
            self._pods[key] = ip
            _map(self._pods_by_ip, [ip], key)
        self._changed()

    def delete_pod(self, namespace: str, name: str) -> None:
        self.set_pod(namespace, name, "")

    # ------------------------------------------------------------ reads

    def has_namespace(self, name: str) -> bool:
        return name.lower() in self.namespaces

    def service(self, namespace: str, name: str) -> ServiceEntry | None:
        return self.services.get(_key(namespace, name))

    def endpoints(self, namespace: str, service: str) -> tuple[EndpointEntry, ...]:
        return self._endpoints.get(_key(namespace, service), ())

    def services_with_ip(self, ip: str) -> list[ServiceEntry]:
        return [self.services[k] for k in sorted(self._svc_by_ip.get(ip, ()))]

    def endpoints_with_ip(self, ip: str) -> list[tuple[str, str, EndpointEntry]]:
        """(namespace, service, endpoint) for every ready endpoint with this address."""
        return [(ns, svc, e) for ns, svc in sorted(self._ep_by_ip.get(ip, ()))
                for e in self._endpoints[(ns, svc)] if e.ip == ip]

    def pods_with_ip(self, ip: str) -> list[tuple[str, str]]:
        return sorted(self._pods_by_ip.get(ip, ()))

    def counts(self) -> dict[str, int]:
        return {"namespaces": len(self.namespaces), "services": len(self.services),
                "endpoints": sum(len(e) for e in self._endpoints.values()), "pods": len(self._pods)}


def _map(index: dict, values, key) -> None:
    for v in values:
        index[v].add(key)


def _unmap(index: dict, values, key) -> None:
    for v in values:
        keys = index.get(v)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[v]
