"""Services and EndpointSlices for the proxy unit tests (test_proxy_slices.py, test_proxy_partial.py)."""
from __future__ import annotations

from machinery.pb import core_pb2, discovery_pb2

NODE = "n1"


def service(name, vip, ports=(("http", 80, "TCP", 0),), ns="default", itp="", etp="", affinity=None):
    """ports: (name, port, protocol, node_port); NodePort when any has a node_port."""
    s = core_pb2.Service()
    s.metadata.namespace, s.metadata.name = ns, name
    s.spec.cluster_ip = vip
    s.spec.type = "NodePort" if any(p[3] for p in ports) else "ClusterIP"
    for pname, port, proto, node_port in ports:
        s.spec.ports.add(name=pname, port=port, protocol=proto, node_port=node_port)
    s.spec.internal_traffic_policy = itp or "Cluster"
    if etp:
        s.spec.external_traffic_policy = etp
    if affinity is not None:
        s.spec.session_affinity = "ClientIP"
        if affinity:
            s.spec.session_affinity_config.client_ip.timeout_seconds = affinity
    return s


def endpoint_slice(svc_name, endpoints, ports=(("http", 8080, "TCP"),), ns="default", name=None):
    """endpoints: (ip, ready, serving, terminating, node) tuples."""
    es = discovery_pb2.EndpointSlice(address_type="IPv4")
    es.metadata.namespace, es.metadata.name = ns, name or f"{svc_name}-abcde"
    es.metadata.labels["kubernetes.io/service-name"] = svc_name
    for pname, port, proto in ports:
        es.ports.add(name=pname, port=port, protocol=proto)
    for ip, ready, serving, terminating, node in endpoints:
        e = es.endpoints.add(addresses=[ip], node_name=node)
        e.conditions.ready, e.conditions.serving, e.conditions.terminating = ready, serving, terminating
    return es


def ready(ip, node=NODE):
    return (ip, True, True, False, node)


def terminating(ip, serving=True, node=NODE):
    return (ip, False, serving, True, node)
