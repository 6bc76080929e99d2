"""ClusterIP and NodePort allocation: atomic with the Service in etcd, no
duplicates under concurrency, requested values honoured or refused,
released on delete, kept on update."""
from __future__ import annotations

import asyncio
import ipaddress

import pytest

from machinery import errors
from machinery.client import Client
from tests.cluster import new_object


def svc(name, type_="ClusterIP", cluster_ip="", node_port=0):
    s = new_object("Service", name)
    s.spec.type = type_
    if cluster_ip:
        s.spec.cluster_ip = cluster_ip
    if node_port:
        s.spec.ports[0].node_port = node_port
    return s


async def test_cluster_ip_allocated_in_range(client, etcd):
    out = await client.create(svc("a"))
    ip = ipaddress.ip_address(out.spec.cluster_ip)
    assert ip in ipaddress.ip_network("10.96.0.0/16") and str(ip) not in ("10.96.0.0", "10.96.0.1")
    assert list(out.spec.cluster_ips) == [out.spec.cluster_ip]
    assert etcd.get_raw(f"/registry/allocations/clusterips/{ip}") == b"/registry/services/default/a"
    assert out.spec.ports[0].node_port == 0


async def test_requested_cluster_ip(client):
    out = await client.create(svc("a", cluster_ip="10.96.0.50"))
    assert out.spec.cluster_ip == "10.96.0.50"
    with pytest.raises(errors.Invalid) as exc:
        await client.create(svc("b", cluster_ip="10.96.0.50"))
    assert exc.value.message == ('Service "b" is invalid: spec.clusterIP: Invalid value: "10.96.0.50": '
                                 'provided IP is already allocated')
    assert [c.field for c in exc.value.causes] == ["spec.clusterIP"]
    with pytest.raises(errors.Invalid) as exc:
        await client.create(svc("c", cluster_ip="192.168.7.7"))
    assert "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16" in exc.value.message


async def test_headless(client, etcd):
    out = await client.create(svc("h", cluster_ip="None"))
    assert out.spec.cluster_ip == "None" and list(out.spec.cluster_ips) == ["None"]
    # only the `kubernetes` Service's address (apiserver/bootstrap.py) is allocated
    assert etcd.keys("/registry/allocations/clusterips/") == ["/registry/allocations/clusterips/10.96.0.1"]


async def test_node_ports(client, etcd):
    out = await client.create(svc("np", "NodePort"))
    port = out.spec.ports[0].node_port
    assert 30000 <= port <= 32767
    assert etcd.get_raw(f"/registry/allocations/nodeports/{port}") == b"/registry/services/default/np"
    req = await client.create(svc("np2", "NodePort", node_port=30080))
    assert req.spec.ports[0].node_port == 30080
    with pytest.raises(errors.Invalid) as exc:
        await client.create(svc("np3", "NodePort", node_port=30080))
    assert exc.value.causes[0].field == "spec.ports[0].nodePort"
    assert "provided port is already allocated" in exc.value.message
    with pytest.raises(errors.Invalid) as exc:
        await client.create(svc("np4", "NodePort", node_port=8080))
    assert "provided port is not in the valid range. The range of valid ports is 30000-32767" in exc.value.message
    # the failed creates allocated nothing
    assert sorted(etcd.keys("/registry/allocations/nodeports/")) == sorted(
        [f"/registry/allocations/nodeports/{port}", "/registry/allocations/nodeports/30080"])


async def test_load_balancer_served_as_node_port_with_warning(client):
    out = await client.create(svc("lb", "LoadBalancer"))
    assert out.spec.ports[0].node_port and out.spec.type == "LoadBalancer"
    assert any("served as a NodePort" in w for w in client.warnings)
    assert not out.status.load_balancer.ingress


async def test_released_on_delete(client, etcd):
    out = await client.create(svc("gone", "NodePort", cluster_ip="10.96.0.77", node_port=30077))
    assert len(etcd.keys("/registry/allocations/")) == 3          # + the `kubernetes` Service's 10.96.0.1
    await client.delete("Service", "gone")
    assert etcd.keys("/registry/allocations/") == ["/registry/allocations/clusterips/10.96.0.1"]
    again = await client.create(svc("reuse", "NodePort", cluster_ip="10.96.0.77", node_port=30077))
    assert again.spec.cluster_ip == out.spec.cluster_ip


async def test_update_keeps_allocations_and_type_changes(client, etcd):
    out = await client.create(svc("u", "NodePort"))
    ip, port = out.spec.cluster_ip, out.spec.ports[0].node_port
    # An update that leaves clusterIP and nodePort empty (like `kctl apply` of the manifest) keeps them.
    fresh = svc("u", "NodePort")
    fresh.metadata.labels["v"] = "2"
    upd = await client.update(fresh)
    assert upd.spec.cluster_ip == ip and upd.spec.ports[0].node_port == port
    # Changing the clusterIP is refused.
    upd.spec.cluster_ip = "10.96.0.99"
    del upd.spec.cluster_ips[:]
    with pytest.raises(errors.Invalid) as exc:
        await client.update(upd)
    assert exc.value.causes[0].field == "spec.clusterIP"
    # NodePort -> ClusterIP releases the port; back to NodePort allocates one.
    cip = svc("u", "ClusterIP")
    cip.spec.ports[0].node_port = port
    cip = await client.update(cip)
    assert cip.spec.ports[0].node_port == 0
    assert etcd.keys("/registry/allocations/nodeports/") == []
    back = await client.update(svc("u", "NodePort"))
    assert back.spec.ports[0].node_port and back.spec.cluster_ip == ip
    assert len(etcd.keys("/registry/allocations/nodeports/")) == 1


async def test_fifty_concurrent_creates_get_distinct_values(apiserver, client, etcd):
    clients = [Client(apiserver.target) for _ in range(10)]
    try:
        outs = await asyncio.gather(*(clients[i % 10].create(svc(f"c{i}", "NodePort")) for i in range(50)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    ips = [o.spec.cluster_ip for o in outs]
    ports = [o.spec.ports[0].node_port for o in outs]
    assert len(set(ips)) == 50 and len(set(ports)) == 50
    assert len(etcd.keys("/registry/allocations/clusterips/")) == 50 + 1      # + the `kubernetes` Service's
    assert len(etcd.keys("/registry/allocations/nodeports/")) == 50


@pytest.mark.apiserver_args("--service-cluster-ip-range", "10.97.0.0/28", "--service-node-port-range", "30000-30011")
async def test_small_ranges_under_contention(apiserver, client, etcd):
    """13 ClusterIPs (16 minus network, .1 and broadcast) and 12 node ports for
    20 racing creates: every port handed out once, the rest refused as full."""
    clients = [Client(apiserver.target) for _ in range(10)]

    async def make(i):
        try:
            return await clients[i % 10].create(svc(f"s{i}", "NodePort"))
        except errors.ApiError as exc:
            return exc
    try:
        outs = await asyncio.gather(*(make(i) for i in range(20)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    ok = [o for o in outs if not isinstance(o, Exception)]
    assert len(ok) == 12
    assert len({o.spec.cluster_ip for o in ok}) == 12
    assert len({o.spec.ports[0].node_port for o in ok}) == 12
    assert len(etcd.keys("/registry/allocations/nodeports/")) == 12
    # failed creates hold nothing; the 13th is the `kubernetes` Service's 10.97.0.1
    assert len(etcd.keys("/registry/allocations/clusterips/")) == 12 + 1
    refused = [o for o in outs if isinstance(o, Exception)]
    assert all("failed to allocate a nodePort: range 30000-30011 is full" in e.message for e in refused)
