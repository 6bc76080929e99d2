"""The name index and its feed: API objects → index entries, and the index
following add/update/delete events from informers (FakeClient)."""
from __future__ import annotations

import asyncio
import contextlib

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.feed import Feed, endpoint_entries, pod_ip, service_entry
from clusterdns.index import NO_PORT, ClusterIndex, EndpointEntry, Port, ServiceEntry
from clusterdns.resolver import Resolver
from machinery.fakeclient import FakeClient
from machinery.informer import SharedInformerFactory
from machinery.pb import core_pb2, meta_pb2

S = "svc.cluster.local."


def meta(name: str, namespace: str = "") -> meta_pb2.ObjectMeta:
    return meta_pb2.ObjectMeta(name=name, namespace=namespace)


def service(name: str, ip: str = "10.96.0.20", ns: str = "default", **spec) -> core_pb2.Service:
    svc = core_pb2.Service(metadata=meta(name, ns), spec=core_pb2.ServiceSpec(cluster_ip=ip, **spec))
    if ip:
        svc.spec.cluster_ips.append(ip)
    svc.spec.ports.add(name="http", port=80, protocol="TCP")
    return svc


def endpoints(name: str, ready: list[tuple[str, str]], not_ready=(), ns: str = "default", ports=True):
    ep = core_pb2.Endpoints(metadata=meta(name, ns))
    subset = ep.subsets.add()
    for ip, host in ready:
        subset.addresses.add(ip=ip, hostname=host)
    for ip in not_ready:
        subset.not_ready_addresses.add(ip=ip)
    if ports:
        subset.ports.add(name="http", port=8080, protocol="TCP")
    return ep


def pod(name: str, ip: str, ns: str = "default") -> core_pb2.Pod:
    return core_pb2.Pod(metadata=meta(name, ns), status=core_pb2.PodStatus(pod_ip=ip))


# ------------------------------------------------------------ conversions

def test_service_entries():
    assert service_entry(service("web")) == ServiceEntry(
        "default", "web", "ClusterIP", ("10.96.0.20",), False, "", (Port("http", 80, "TCP"),))
    headless = service_entry(service("db", ip="None"))
    assert headless.headless and headless.cluster_ips == ()
    ext = service_entry(service("ext", ip="", type="ExternalName"))
    assert (ext.type, ext.cluster_ips, ext.external_name) == ("ExternalName", (), "")


def test_endpoint_entries_keep_ready_addresses_with_hostnames_and_ports():
    got = endpoint_entries(endpoints("db", [("10.244.1.5", "db-0"), ("10.244.1.6", "")], not_ready=["10.244.1.7"]))
    assert got == [EndpointEntry("10.244.1.5", "db-0", (Port("http", 8080, "TCP"),)),
                   EndpointEntry("10.244.1.6", "", (Port("http", 8080, "TCP"),))]
    [portless] = endpoint_entries(endpoints("db", [("10.244.1.5", "")], ports=False))
    assert portless.ports == (Port("", NO_PORT, ""),)


def test_terminating_pods_do_not_resolve():
    p = pod("web-1", "10.244.1.5")
    assert pod_ip(p) == "10.244.1.5"
    p.metadata.deletion_timestamp.seconds = 1
    assert pod_ip(p) == ""


# ------------------------------------------------------------ the index

def test_endpoints_from_several_sources_are_merged_per_service():
    ix = ClusterIndex()
    ix.set_endpoints("default", "db", "EndpointSlice/default/db-abc", [EndpointEntry("10.0.0.1")])
    ix.set_endpoints("default", "db", "EndpointSlice/default/db-def", [EndpointEntry("10.0.0.2")])
    assert [e.ip for e in ix.endpoints("default", "db")] == ["10.0.0.1", "10.0.0.2"]
    assert [(ns, s, e.ip) for ns, s, e in ix.endpoints_with_ip("10.0.0.2")] == [("default", "db", "10.0.0.2")]
    ix.delete_endpoints("default", "db", "EndpointSlice/default/db-abc")
    assert [e.ip for e in ix.endpoints("default", "db")] == ["10.0.0.2"]
    assert ix.endpoints_with_ip("10.0.0.1") == []
    ix.set_endpoints("default", "db", "EndpointSlice/default/db-def", [])
    assert ix.endpoints("default", "db") == () and ix.endpoints_with_ip("10.0.0.2") == []


def test_reverse_maps_follow_a_changed_cluster_ip_and_only_changes_bump_the_generation():
    ix = ClusterIndex()
    ix.set_service(ServiceEntry("default", "web", cluster_ips=("10.96.0.20",)))
    gen = ix.generation
    ix.set_service(ServiceEntry("default", "web", cluster_ips=("10.96.0.20",)))
    ix.set_namespace("default")
    ix.set_namespace("default")
    assert ix.generation == gen + 1
    ix.set_service(ServiceEntry("default", "web", cluster_ips=("10.96.0.21",)))
    assert ix.services_with_ip("10.96.0.20") == [] and [s.name for s in ix.services_with_ip("10.96.0.21")] == ["web"]
    ix.set_pod("default", "web-1", "10.244.1.5")
    ix.set_pod("default", "web-1", "10.244.1.6")
    assert ix.pods_with_ip("10.244.1.5") == [] and ix.pods_with_ip("10.244.1.6") == [("default", "web-1")]
    ix.delete_pod("default", "web-1")
    assert ix.pods_with_ip("10.244.1.6") == [] and ix.counts()["pods"] == 0


# ------------------------------------------------------------ informer events → answers

@pytest.fixture
async def fed():
    client = FakeClient()
    await client.create(core_pb2.Namespace(metadata=meta("default")))
    await client.create(service("web"))
    await client.create(service("db", ip="None"))
    await client.create(endpoints("db", [("10.244.1.5", "db-0")]))
    await client.create(pod("web-1", "10.244.2.7"))
    factory = SharedInformerFactory(client)
    index = ClusterIndex()
    feed = Feed(factory, index)
    tasks = [asyncio.create_task(factory.run()), asyncio.create_task(feed.run())]
    try:
        async with asyncio.timeout(10):
            while not index.synced:
                await asyncio.sleep(0.01)
        yield client, Resolver(index)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def answer(resolver: Resolver, qname: str, qtype: str = "A") -> tuple[str, list[str]]:
    got = resolver.resolve(dns.name.from_text(qname), dns.rdatatype.from_text(qtype))
    return dns.rcode.to_text(got.rcode), sorted(rd.to_text() for rr in got.answer for rd in rr)


async def until(resolver: Resolver, qname: str, want, qtype: str = "A") -> None:
    """Wait (bounded) until the index, fed by the informers, gives this answer."""
    async with asyncio.timeout(10):
        while answer(resolver, qname, qtype) != want:
            await asyncio.sleep(0.01)


async def test_the_first_list_is_answered(fed):
    _, r = fed
    assert answer(r, f"web.default.{S}") == ("NOERROR", ["10.96.0.20"])
    assert answer(r, f"db.default.{S}") == ("NOERROR", ["10.244.1.5"])
    assert answer(r, f"db-0.db.default.{S}") == ("NOERROR", ["10.244.1.5"])
    assert answer(r, "10-244-2-7.default.pod.cluster.local.") == ("NOERROR", ["10.244.2.7"])
    assert answer(r, "5.1.244.10.in-addr.arpa.", "PTR") == ("NOERROR", [f"db-0.db.default.{S}"])


async def test_services_follow_add_update_delete(fed):
    client, r = fed
    await client.create(service("api", ip="10.96.0.30"))
    await until(r, f"api.default.{S}", ("NOERROR", ["10.96.0.30"]))
    svc = await client.get("Service", "api", "default")
    svc.spec.cluster_ip, svc.spec.cluster_ips[:] = "10.96.0.31", ["10.96.0.31"]
    await client.update(svc)
    await until(r, f"api.default.{S}", ("NOERROR", ["10.96.0.31"]))
    await until(r, "31.0.96.10.in-addr.arpa.", ("NOERROR", [f"api.default.{S}"]), "PTR")
    await client.delete("Service", "api", "default")
    await until(r, f"api.default.{S}", ("NXDOMAIN", []))


async def test_endpoints_follow_add_update_delete(fed):
    client, r = fed
    ep = await client.get("Endpoints", "db", "default")
    ep.subsets[0].addresses.add(ip="10.244.1.6", hostname="db-1")
    ep.subsets[0].not_ready_addresses.add(ip="10.244.1.9")
    await client.update(ep)
    await until(r, f"db.default.{S}", ("NOERROR", ["10.244.1.5", "10.244.1.6"]))
    assert answer(r, f"db-1.db.default.{S}") == ("NOERROR", ["10.244.1.6"])
    await client.delete("Endpoints", "db", "default")
    await until(r, f"db.default.{S}", ("NXDOMAIN", []))     # a headless service without endpoints
    await client.create(endpoints("db", [("10.244.1.8", "")]))
    await until(r, f"db.default.{S}", ("NOERROR", ["10.244.1.8"]))


async def test_pods_and_namespaces_follow_events(fed):
    client, r = fed
    await client.create(pod("web-2", "10.244.2.8"))
    await until(r, "10-244-2-8.default.pod.cluster.local.", ("NOERROR", ["10.244.2.8"]))
    await client.delete("Pod", "web-2", "default")
    await until(r, "10-244-2-8.default.pod.cluster.local.", ("NXDOMAIN", []))
    await client.create(core_pb2.Namespace(metadata=meta("shop")))
    await until(r, f"shop.{S}", ("NOERROR", []))
    await client.delete("Namespace", "shop")
    await until(r, f"shop.{S}", ("NXDOMAIN", []))
