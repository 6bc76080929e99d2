"""Two kctl-dns instances behind kube-system/kube-dns on a real etcd + apiserver,
each with the real component credentials (dns.conf: user system:kube-dns, so
RBAC must let it write its Lease and the Endpoints) and its own loopback
address (127.0.0.1, 127.0.0.2):

* both addresses are in the Endpoints, each renewing its Lease
  kube-system/kctl-dns-<address>;
* one killed with SIGKILL leaves the Endpoints once its Lease expires; its
  Lease stays (nobody deleted it: the address left by expiry);
* one stopped cleanly deletes its Lease and leaves at once: well inside its
  60 s TTL.
"""
from __future__ import annotations

import sys

import pytest

import dns.message
import dns.query
import dns.rcode

from tests.integration.test_dns_server import KctlDns
from tests.integration.test_dns_services import endpoints, eventually


class LeasedDns(KctlDns):
    def __init__(self, apiserver, workdir, host: str, ttl: int):
        super().__init__(apiserver, workdir)
        self.host, self.ttl = host, ttl

    def command(self) -> list[str]:
        return [sys.executable, "-m", "clusterdns.main",
                "--kubeconfig", str(self.apiserver.component_kubeconfig("dns.conf")),
                "--apiserver", self.apiserver.target, "--listen", f"{self.host}:{self.port}",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--advertise-address", self.host,
                "--register-interval", "1", "--lease-ttl", str(self.ttl)]

    def ready(self) -> bool:
        q = dns.message.make_query("kube-system.svc.cluster.local.", "A")
        return dns.query.udp(q, self.host, port=self.port, timeout=0.5).rcode() == dns.rcode.NOERROR

    @property
    def endpoint(self) -> tuple:
        return (self.host, (("dns", self.port, "UDP"), ("dns-tcp", self.port, "TCP"),
                            ("metrics", self.metrics_port, "TCP")))


async def test_a_crashed_instance_expires_and_a_stopped_one_leaves_at_once(client, apiserver, tmp_path):
    async def eps():
        return endpoints(await client.get("Endpoints", "kube-dns", "kube-system"))

    async def lease(host: str):
        return (await client.get("Lease", "kctl-dns-" + host.replace(".", "-"), "kube-system")).spec.holder_identity

    a = LeasedDns(apiserver, tmp_path / "a", "127.0.0.1", ttl=30)
    crashing = LeasedDns(apiserver, tmp_path / "b", "127.0.0.2", ttl=3)
    stopping = LeasedDns(apiserver, tmp_path / "c", "127.0.0.2", ttl=60)
    a.start()
    try:
        crashing.start()
        try:
            await eventually(eps, sorted([a.endpoint, crashing.endpoint]))
            assert await lease("127.0.0.1") == "127.0.0.1" and await lease("127.0.0.2") == "127.0.0.2"
        finally:
            crashing.kill()                                     # SIGKILL: no clean-up at all
        assert await lease("127.0.0.2") == "127.0.0.2"
        await eventually(eps, [a.endpoint], timeout=30)         # after its 3 s TTL, by a's hand
        assert await lease("127.0.0.2") == "127.0.0.2"          # left by expiry: the Lease is still there

        stopping.start()                                        # the same address comes back, TTL 60 s
        try:
            await eventually(eps, sorted([a.endpoint, stopping.endpoint]))
        finally:
            stopping.stop()                                     # SIGTERM: a clean stop
        await eventually(eps, [a.endpoint], timeout=10)         # at once, not after 60 s
        await eventually(lambda: lease("127.0.0.2"), None)      # its Lease is gone
    finally:
        a.stop()
    await eventually(eps, [], timeout=10)


async def test_the_dns_identities_write_only_kctl_dns_leases(client, apiserver):
    """RBAC lets kctl-dns write every Lease of kube-system; DNSRestriction admission holds its
    identities (its certificate's user, and the kube-dns ServiceAccount) to kctl-dns-* ones,
    so it cannot take the scheduler's or controller manager's leader-election Lease."""
    from machinery import callmeta, errors, kinds, kubeconfig
    from machinery.client import Client

    def lease(name):
        obj = kinds.new("Lease")
        obj.metadata.name, obj.metadata.namespace = name, "kube-system"
        obj.spec.holder_identity = "someone"
        return obj

    leader = await client.create(lease("kube-scheduler"))
    dns_creds = kubeconfig.select(apiserver.component_kubeconfig("dns.conf")).credentials
    async with Client(apiserver.target, credentials=dns_creds) as dns_client, \
            Client(apiserver.target, metadata=callmeta.impersonation(
                "system:serviceaccount:kube-system:kube-dns",
                ("system:serviceaccounts", "system:serviceaccounts:kube-system"))) as sa:
        for who, c in (("system:kube-dns", dns_client), ("system:serviceaccount:kube-system:kube-dns", sa)):
            taken = lease("kube-scheduler")
            taken.metadata.resource_version = leader.metadata.resource_version
            taken.spec.holder_identity = "kctl-dns"
            with pytest.raises(errors.Forbidden) as refused:
                await c.update(taken)
            assert refused.value.message == (f'leases.coordination.k8s.io "kube-scheduler" is forbidden: user '
                                             f'"{who}" may only write Leases named kctl-dns-*')
            with pytest.raises(errors.Forbidden):
                await c.create(lease("not-dns"))
            with pytest.raises(errors.Forbidden):
                await c.delete("Lease", "kube-scheduler", "kube-system")
            own = await c.create(lease("kctl-dns-10-0-0-9"))            # its own kind of Lease: allowed
            own.spec.holder_identity = "10.0.0.9"
            await c.update(own)
            await c.delete("Lease", "kctl-dns-10-0-0-9", "kube-system")
    assert (await client.get("Lease", "kube-scheduler", "kube-system")).spec.holder_identity == "someone"
