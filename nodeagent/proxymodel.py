"""What the service proxy programs, as plain values: Services + EndpointSlices -> ServicePortInfo (pure).

kube-proxy's model (pkg/proxy/servicechangetracker.go, endpointschangetracker.go
and topology.go's CategorizeEndpoints), for one node:

* one ``ServicePortInfo`` per (service, port): ClusterIP, port, nodePort
  (NodePort/LoadBalancer services only), session affinity seconds
  (``sessionAffinityConfig.clientIP.timeoutSeconds``, 10800 by default) and
  the traffic policies (``internalTrafficPolicy`` / ``externalTrafficPolicy``
  ``Local``);
* its endpoints come from the EndpointSlices labelled
  ``kubernetes.io/service-name`` (or, for callers that still have them, from
  core/v1 Endpoints: their ``addresses`` count as ready), matched to the
  service port by (port name, protocol);
* ``endpoints`` (the cluster set) = the ready endpoints, or, when there is
  none, the serving-and-terminating ones (kube-proxy's fallback, so a
  service whose pods are all being replaced keeps answering);
  ``local_endpoints`` = the same rule applied to the endpoints whose
  ``nodeName`` is this node.  Not-ready, not-serving endpoints never count.

``ChangeTracker`` keeps the result per Service and recomputes a Service only
when its object or one of its slices has another resourceVersion than last
time, so a sync of 5,000 services with one change converts one service, not
5,000.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Iterable

log = logging.getLogger("kctl.nodeagent.proxy")

PROTOCOLS = ("tcp", "udp", "sctp")
AFFINITY_SECONDS = 10800  # Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Endpoint = tuple[str, int]     # (ip, port)


@dataclass(frozen=True)
class ServicePortInfo:
    """One port of one service, with the endpoints it sends to: the unit that gets a KCTL-SVC chain."""
    namespace: str
    name: str
    port_name: str
    protocol: str          # lower case: tcp / udp / sctp
    cluster_ip: str
    port: int
    node_port: int
    endpoints: tuple[Endpoint, ...]           # the cluster set, sorted (ip, port)
    affinity_seconds: int = 0                 # sessionAffinity ClientIP: stick for this long (0 = off)
    local_endpoints: tuple[Endpoint, ...] = ()   # the node-local set, sorted
    internal_local: bool = False              # internalTrafficPolicy: Local
    external_local: bool = False              # externalTrafficPolicy: Local
    health_port: int = 0                      # the service's healthCheckNodePort (nodeagent/proxyhealth.py)

    @property
    def key(self) -> str:
        """kube-proxy's ServicePortName: "ns/name:port", or "ns/name" for an unnamed port."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def svc_chain(self) -> str:
        return "KCTL-SVC-" + _hash(self.key + self.protocol)

    @property
    def svl_chain(self) -> str:
        return "KCTL-SVL-" + _hash(self.key + self.protocol)

    @property
    def ext_chain(self) -> str:
        return "KCTL-EXT-" + _hash(self.key + self.protocol)

    def sep_chain(self, ip: str, port: int) -> str:
        return "KCTL-SEP-" + _hash(f"{self.key}{self.protocol}{ip}:{port}")

    @property
    def uses_local(self) -> bool:
        return self.internal_local or (self.external_local and bool(self.node_port))


@functools.lru_cache(maxsize=1 << 16)
def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


@functools.lru_cache(maxsize=1 << 16)
def ipv4(text: str) -> str | None:
    """The canonical dotted quad, or None if TEXT is not an IPv4 address (cached: called per endpoint)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(ip) if ip.version == 4 else None


# ---------------------------------------------------------------------------- endpoints

@dataclass(frozen=True)
class _Ep:
    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    node: str


def _cond(c, name: str, default: bool) -> bool:
    return getattr(c, name) if c.HasField(name) else default


def _slice_endpoints(es, out: dict) -> None:
    """EndpointSlice -> out[(port name, protocol)] += _Ep (IPv4 slices only, first address)."""
    if es.address_type not in ("IPv4", ""):
        return
    for p in es.ports:
        if not p.HasField("port") or not 0 < p.port < 65536:
            continue
        dest = out.setdefault((p.name, (p.protocol or "TCP").lower()), [])
        for e in es.endpoints:
            ip = ipv4(e.addresses[0]) if e.addresses else None
            if not ip:
                continue
            c = e.conditions
            ready = _cond(c, "ready", True)
            dest.append(_Ep(ip, p.port, ready, _cond(c, "serving", ready), _cond(c, "terminating", False),
                            e.node_name))


def _v1_endpoints(ep, out: dict) -> None:
    """core/v1 Endpoints -> out: ``addresses`` are ready (notReadyAddresses never get traffic)."""
    for subset in ep.subsets:
        for p in subset.ports:
            if not 0 < p.port < 65536:
                continue
            dest = out.setdefault((p.name, (p.protocol or "TCP").lower()), [])
            for a in subset.addresses:
                ip = ipv4(a.ip)
                if ip:
                    dest.append(_Ep(ip, p.port, True, True, False, a.node_name))


def _usable(eps: Iterable[_Ep]) -> tuple[Endpoint, ...]:
    """Ready endpoints, or the serving terminating ones when none is ready; sorted, unique."""
    eps = list(eps)
    chosen = {(e.ip, e.port) for e in eps if e.ready} or {(e.ip, e.port) for e in eps if e.serving and e.terminating}
    return tuple(sorted(chosen, key=lambda ep: (socket.inet_aton(ep[0]), ep[1])))


def endpoints_source(obj) -> str | None:
    """The "ns/service" an Endpoints or EndpointSlice object feeds (None for a slice without the label)."""
    md = obj.metadata
    if hasattr(obj, "address_type"):
        name = md.labels.get(SERVICE_NAME_LABEL)
        return f"{md.namespace}/{name}" if name else None
    return f"{md.namespace}/{md.name}"


def service_port_infos(s, sources: Iterable, node_name: str = "") -> list[ServicePortInfo]:
    """One Service and the Endpoints/EndpointSlices that feed it -> its ServicePortInfo, sorted.

    Skipped: headless (clusterIP None) and ExternalName services, non-IPv4
    cluster IPs, unknown protocols, invalid ports.
    """
    spec = s.spec
    vip = ipv4(spec.cluster_ip)
    if spec.type == "ExternalName" or not vip:
        return []
    by_port: dict[tuple[str, str], list[_Ep]] = {}
    for obj in sources:
        (_slice_endpoints if hasattr(obj, "address_type") else _v1_endpoints)(obj, by_port)
    node_ports = spec.type in ("NodePort", "LoadBalancer")
    affinity = 0
    if spec.session_affinity == "ClientIP":
        cfg = spec.session_affinity_config.client_ip
        affinity = cfg.timeout_seconds if cfg.HasField("timeout_seconds") else AFFINITY_SECONDS
    out = []
    for sp in spec.ports:
        proto = (sp.protocol or "TCP").lower()
        if not 0 < sp.port < 65536:
            continue
        if proto not in PROTOCOLS:
            log.warning("service %s/%s: unsupported protocol %r", s.metadata.namespace, s.metadata.name, sp.protocol)
            continue
        eps = by_port.get((sp.name, proto), ())
        node_port = sp.node_port if node_ports and 0 < sp.node_port < 65536 else 0
        out.append(ServicePortInfo(
            s.metadata.namespace, s.metadata.name, sp.name, proto, vip, sp.port, node_port, _usable(eps), affinity,
            _usable(e for e in eps if node_name and e.node == node_name),
            internal_local=spec.internal_traffic_policy == "Local",
            external_local=node_ports and spec.external_traffic_policy == "Local",
            health_port=spec.health_check_node_port if 0 < spec.health_check_node_port < 65536 else 0))
    out.sort(key=lambda i: (i.port_name, i.protocol))
    return out


def group_sources(endpoints: Iterable) -> dict[str, list]:
    out: dict[str, list] = {}
    for obj in endpoints:
        key = endpoints_source(obj)
        if key:
            out.setdefault(key, []).append(obj)
    return out


def service_ports(services: Iterable, endpoints: Iterable, node_name: str = "") -> list[ServicePortInfo]:
    """Flatten Services + their Endpoints/EndpointSlices into sorted ServicePortInfo (no caching)."""
    sources = group_sources(endpoints)
    out = []
    for s in services:
        out += service_port_infos(s, sources.get(f"{s.metadata.namespace}/{s.metadata.name}", ()), node_name)
    out.sort(key=lambda i: (i.namespace, i.name, i.port_name, i.protocol))
    return out


def _version(obj) -> str | bytes:
    """What identifies this state of an object: its resourceVersion (every object from the API has
    one), else its serialized content (objects built by hand, which a caller may change in place)."""
    return obj.metadata.resource_version or obj.SerializeToString(deterministic=True)


class ChangeTracker:
    """``service_ports`` with a per-Service cache: a Service is recomputed only when its object or one
    of its slices has another version than last time (``_version``).

    What an API object says about itself (its service key, its version) is also remembered per
    object while the object is alive in the caller's cache (by ``id``, holding the object so the id
    cannot be reused): informer objects are replaced, never changed, so a sync of 5,000 unchanged
    services reads no protobuf field.  Objects without a resourceVersion are looked at every time."""

    def __init__(self, node_name: str = ""):
        self.node_name = node_name
        self._cache: dict[str, tuple[tuple, list[ServicePortInfo]]] = {}
        self._seen: dict[int, tuple[object, str | None, str | bytes]] = {}

    def _about(self, obj, seen: dict, service: bool) -> tuple[str | None, str | bytes]:
        hit = self._seen.get(id(obj))
        if hit is None or hit[0] is not obj:
            md = obj.metadata
            key = f"{md.namespace}/{md.name}" if service else endpoints_source(obj)
            hit = (obj, key, _version(obj))
        if hit[2] and isinstance(hit[2], str):
            seen[id(obj)] = hit
        return hit[1], hit[2]

    def service_ports(self, services: Iterable, endpoints: Iterable) -> list[ServicePortInfo]:
        seen: dict = {}
        sources: dict[str, list] = {}
        for obj in endpoints:
            key, version = self._about(obj, seen, False)
            if key:
                sources.setdefault(key, []).append((obj, version))
        cache, out = {}, []
        for s in services:
            key, version = self._about(s, seen, True)
            srcs = sources.get(key, ())
            versions = (version, *(v for _, v in srcs))
            hit = self._cache.get(key)
            if hit is not None and hit[0] == versions:
                infos = hit[1]
            else:
                infos = service_port_infos(s, [o for o, _ in srcs], self.node_name)
            cache[key] = (versions, infos)
            out += infos
        self._cache, self._seen = cache, seen
        out.sort(key=lambda i: (i.namespace, i.name, i.port_name, i.protocol))
        return out
