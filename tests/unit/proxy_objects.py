"""Services, Endpoints and service ports the proxy unit tests share (test_proxy_rules.py,
test_nodeagent_proxier.py)."""
from __future__ import annotations

from machinery.pb import core_pb2
from nodeagent.proxyrules import ServicePortInfo, render

NODE_IP, POD_CIDR, MASQ_CIDR = "172.30.0.11", "10.244.1.0/24", "172.30.0.0/24"
WEB_SVC, WEB_EXT = "KCTL-SVC-CDGGSHYLG3RE2FKL", "KCTL-EXT-CDGGSHYLG3RE2FKL"
WEB_SEP = {"10.244.1.2": "KCTL-SEP-UIQK3OSOSTRHRPBX", "10.244.1.3": "KCTL-SEP-2AZ33KU3V5PGPQZH",
           "10.244.1.10": "KCTL-SEP-GWQABTP5GBYXHJY5"}


def svc(name, cluster_ip, *ports, ns="default", type_=None):
    """ports: (name, port, protocol, node_port) tuples; type NodePort if any has a node_port."""
    s = core_pb2.Service()
    s.metadata.namespace, s.metadata.name = ns, name
    s.spec.cluster_ip = cluster_ip
    s.spec.type = type_ or ("NodePort" if any(p[3] for p in ports) else "ClusterIP")
    for pname, port, proto, node_port in ports:
        s.spec.ports.add(name=pname, port=port, protocol=proto, node_port=node_port)
    return s


def eps(name, ips, *ports, ns="default", not_ready=()):
    """ports: (name, port, protocol) tuples, one subset."""
    e = core_pb2.Endpoints()
    e.metadata.namespace, e.metadata.name = ns, name
    sub = e.subsets.add()
    for ip in ips:
        sub.addresses.add(ip=ip)
    for ip in not_ready:
        sub.not_ready_addresses.add(ip=ip)
    for pname, port, proto in ports:
        sub.ports.add(name=pname, port=port, protocol=proto)
    return e


def web(*ips, node_port=0):
    return ([svc("web", "10.96.0.10", ("http", 80, "TCP", node_port))],
            [eps("web", ips, ("http", 8080, "TCP"))] if ips else [])


def do_render(services, endpoints, **kw):
    kw = {"node_ip": NODE_IP, "pod_cidr": POD_CIDR, "masquerade_cidr": MASQ_CIDR, **kw}
    return render(services, endpoints, **kw)


def udp_port(ips, node_port=0, name="dns"):
    return ServicePortInfo("kube-system", name, "dns", "udp", "10.96.0.53", 53, node_port,
                           tuple((ip, 5353) for ip in ips))
