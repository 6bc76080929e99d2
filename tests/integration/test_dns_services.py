"""The Services pods resolve first, on a real etcd + apiserver(s) + kctl-dns:

* `default/kubernetes`: the apiserver creates it (first address of the
  service CIDR, https 443 → its HTTPS API, grpc 6443 → its gRPC port) and keeps its Endpoints equal to the
  live apiservers (a second apiserver joins, leaves on a clean stop);
  ports someone changed are put back;
* `kube-system/kube-dns`: kctl-dns creates it (10.96.0.10, dns/dns-tcp/
  metrics) and keeps its own address in the Endpoints until it stops; both
  names then resolve through kctl-dns itself.
"""
from __future__ import annotations

import asyncio

from harness.control_plane import ApiServer
from machinery import errors
from tests.integration.test_dns_server import KctlDns, query, until


class RegisteredDns(KctlDns):
    def command(self) -> list[str]:
        return super().command() + ["--advertise-address", "127.0.0.1", "--register-interval", "1"]


async def eventually(read, want, timeout: float = 15.0):
    """Poll `read()` until it returns `want` (a missing object reads as None)."""
    got = None
    async with asyncio.timeout(timeout):
        while True:
            try:
                got = await read()
            except errors.NotFound:
                got = None
            if got == want:
                return got
            await asyncio.sleep(0.1)


def ports(obj) -> list[tuple]:
    return sorted((p.name, p.port, p.protocol) for p in obj.spec.ports)


def endpoints(ep) -> list[tuple]:
    return sorted((a.ip, tuple(sorted((p.name, p.port, p.protocol) for p in s.ports)))
                  for s in ep.subsets for a in s.addresses)


async def test_the_kubernetes_service_follows_the_live_apiservers(client, apiserver, etcd, tmp_path):
    async def svc():
        s = await client.get("Service", "kubernetes", "default")
        return (s.spec.cluster_ip, ports(s), {p.name: p.target_port.int_val for p in s.spec.ports},
                dict(s.metadata.labels), dict(s.spec.selector))

    async def eps():
        return endpoints(await client.get("Endpoints", "kubernetes", "default"))

    # https: the HTTP API's port (the default 127.0.0.1:8080 here), first: KUBERNETES_SERVICE_PORT=443
    want = ("10.96.0.1", [("grpc", 6443, "TCP"), ("https", 443, "TCP")], {"https": 8080, "grpc": apiserver.port},
            {"component": "apiserver", "provider": "kubernetes"}, {})
    https = (("grpc", apiserver.port, "TCP"), ("https", 8080, "TCP"))
    await eventually(svc, want)
    assert (await client.get("Service", "kubernetes", "default")).spec.ports[0].name == "https"
    await eventually(eps, [("127.0.0.1", https)])

    second = ApiServer(etcd, tmp_path / "second", host="127.0.0.2", port=apiserver.port)
    (tmp_path / "second").mkdir()
    second.start()
    try:
        await eventually(eps, [("127.0.0.1", https), ("127.0.0.2", https)])
    finally:
        second.stop()
    await eventually(eps, [("127.0.0.1", https)], timeout=5)       # removed on the clean stop, not by expiry

    s = await client.get("Service", "kubernetes", "default")
    s.spec.ports[0].port = 8443
    await client.update(s)
    apiserver.restart()                                             # reconciles at once when it starts
    await eventually(svc, want)


async def test_kctl_dns_registers_behind_kube_dns(client, apiserver, tmp_path):
    dns = RegisteredDns(apiserver, tmp_path)
    dns.start()
    try:
        svc = await eventually(lambda: _get_ports(client, "Service"),
                               ("10.96.0.10", [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]))
        assert svc
        mine = ("127.0.0.1", (("dns", dns.port, "UDP"), ("dns-tcp", dns.port, "TCP"),
                              ("metrics", dns.metrics_port, "TCP")))
        await eventually(lambda: _eps(client), [mine])
        k8s = await client.get("Service", "kube-dns", "kube-system")
        assert dict(k8s.metadata.labels)["k8s-app"] == "kube-dns" and not k8s.spec.selector

        await until(dns, "kube-dns.kube-system.svc.cluster.local.", ("NOERROR", ["10.96.0.10"]))
        await until(dns, "kubernetes.default.svc.cluster.local.", ("NOERROR", ["10.96.0.1"]))
        assert await query(dns, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV") == \
            ("NOERROR", ["0 100 53 kube-dns.kube-system.svc.cluster.local."])

        await client.delete("Endpoints", "kube-dns", "kube-system")    # heals at the next re-check
        await eventually(lambda: _eps(client), [mine])
    finally:
        dns.stop()
    await eventually(lambda: _eps(client), [], timeout=5)             # a clean stop deregisters


async def _get_ports(client, kind):
    s = await client.get(kind, "kube-dns", "kube-system")
    return s.spec.cluster_ip, ports(s)


async def _eps(client):
    return endpoints(await client.get("Endpoints", "kube-dns", "kube-system"))
