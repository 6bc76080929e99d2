"""kctl-dns behind kube-system/kube-dns (clusterdns/register.py) on the FakeClient:
the Service is created once and never overwritten, each instance renews its
own Lease (kube-system/kctl-dns-<address>) and the Endpoints are the live
holders, one subset per port set; deregistering removes only its own address.
The lease logic itself: tests/unit/test_lease_endpoints.py."""
from clusterdns.register import Registration
from machinery.fakeclient import FakeClient

SVC = ("kube-system", "kube-dns")


def addresses(client) -> list[tuple]:
    ep = client.stored("Endpoints", "kube-dns", "kube-system")
    return sorted((a.ip, tuple((p.name, p.port) for p in s.ports)) for s in ep.subsets for a in s.addresses)


async def test_two_instances_share_the_endpoints_and_leave_alone():
    client = FakeClient()
    a = Registration(client, SVC, "10.96.0.10", "10.0.0.1", 53, 9153)
    b = Registration(client, SVC, "10.96.0.10", "10.0.0.2", 53, 9153)
    odd = Registration(client, SVC, "10.96.0.10", "10.0.0.3", 5353, None)
    for r in (a, b, odd, a):                                   # registering twice changes nothing
        await r.register()
    svc = client.stored("Service", "kube-dns", "kube-system")
    assert svc.spec.cluster_ip == "10.96.0.10" and not svc.spec.selector
    assert [(p.name, p.port, p.protocol) for p in svc.spec.ports] == \
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    ports = (("dns", 53), ("dns-tcp", 53), ("metrics", 9153))
    assert addresses(client) == [("10.0.0.1", ports), ("10.0.0.2", ports),
                                 ("10.0.0.3", (("dns", 5353), ("dns-tcp", 5353)))]
    assert len(client.stored("Endpoints", "kube-dns", "kube-system").subsets) == 2
    assert sorted(lease.metadata.name for lease in client.objects("Lease")) == \
        ["kctl-dns-10-0-0-1", "kctl-dns-10-0-0-2", "kctl-dns-10-0-0-3"]
    await odd.deregister()
    await a.deregister()
    assert addresses(client) == [("10.0.0.2", ports)]
    assert len(client.stored("Endpoints", "kube-dns", "kube-system").subsets) == 1
    assert [lease.metadata.name for lease in client.objects("Lease")] == ["kctl-dns-10-0-0-2"]


async def test_an_existing_service_is_left_as_it_is():
    client = FakeClient()
    first = Registration(client, SVC, "10.96.0.53", "10.0.0.1", 53, None)
    await first.register()
    await Registration(client, SVC, "10.96.0.10", "10.0.0.2", 53, None).register()
    assert client.stored("Service", "kube-dns", "kube-system").spec.cluster_ip == "10.96.0.53"
    await Registration(client, ("kube-system", "other"), "", "10.0.0.1", 53, None).register()  # '' = no Service
    assert [s.metadata.name for s in client.objects("Service")] == ["kube-dns"]
