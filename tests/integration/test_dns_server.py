"""kctl-dns as a real process against a real etcd + apiserver: creating a
Service makes it resolvable, deleting it makes it NXDOMAIN; headless services
answer their Endpoints; outside names are REFUSED; /metrics counts queries."""
from __future__ import annotations

import asyncio
import sys
import urllib.request

import dns.asyncquery
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.cluster import REPO, Process, free_port, new_object


class KctlDns(Process):
    def __init__(self, apiserver, workdir):
        super().__init__("kctl-dns", workdir)
        self.apiserver = apiserver
        self.port, self.metrics_port = free_port(), free_port()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "clusterdns.main", "--apiserver", self.apiserver.target,
                "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]

    def env(self) -> dict:
        env = super().env()
        env["PYTHONPATH"] = str(REPO)
        return env

    def ready(self) -> bool:
        """Synced: the kube-system namespace (created by the apiserver) exists."""
        q = dns.message.make_query("kube-system.svc.cluster.local.", "A")
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.5).rcode() == dns.rcode.NOERROR

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture
def kctl_dns(apiserver, tmp_path):
    proc = KctlDns(apiserver, tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def query(server: KctlDns, qname: str, qtype: str = "A") -> tuple[str, list[str]]:
    q = dns.message.make_query(qname, qtype)
    r = await dns.asyncquery.udp(q, "127.0.0.1", timeout=5, port=server.port)
    return dns.rcode.to_text(r.rcode()), sorted(rd.to_text() for rr in r.answer for rd in rr)


async def until(server: KctlDns, qname: str, want, qtype: str = "A") -> None:
    async with asyncio.timeout(15):
        while await query(server, qname, qtype) != want:
            await asyncio.sleep(0.05)


async def test_a_service_resolves_while_it_exists(client, kctl_dns):
    name = "web.default.svc.cluster.local."
    assert await query(kctl_dns, name) == ("NXDOMAIN", [])
    svc = await client.create(new_object("Service", "web"))
    await until(kctl_dns, name, ("NOERROR", [svc.spec.cluster_ip]))
    assert await query(kctl_dns, f"_http._tcp.{name}", "SRV") == ("NOERROR", [f"0 100 80 {name}"])
    reverse = ".".join(reversed(svc.spec.cluster_ip.split("."))) + ".in-addr.arpa."
    assert await query(kctl_dns, reverse, "PTR") == ("NOERROR", [name])
    await client.delete("Service", "web", "default")
    await until(kctl_dns, name, ("NXDOMAIN", []))

    headless = new_object("Service", "db")
    headless.spec.cluster_ip = "None"
    await client.create(headless)
    ep = new_object("Endpoints", "db")
    ep.subsets[0].addresses[0].hostname = "db-0"
    await client.create(ep)
    await until(kctl_dns, "db.default.svc.cluster.local.", ("NOERROR", ["10.244.0.5"]))
    assert await query(kctl_dns, "db-0.db.default.svc.cluster.local.") == ("NOERROR", ["10.244.0.5"])

    assert await query(kctl_dns, "example.com.") == ("REFUSED", [])
    text = kctl_dns.metrics()
    assert 'kctl_dns_queries_total{proto="udp",rcode="REFUSED",type="A"} 1.0' in text
    assert 'kctl_dns_query_duration_seconds_bucket{le="+Inf",proto="udp"}' in text
