"""Cluster DNS fed by EndpointSlices (clusterdns/feed.py): ready (or unset) endpoints resolve, with
hostnames and the slice's ports; once a service has slices they alone speak for it, and its
Endpoints object speaks again when the last slice goes."""
from __future__ import annotations

import asyncio

from machinery.fakeclient import FakeClient
from machinery.informer import SharedInformerFactory
from clusterdns.feed import Feed, slice_entries
from clusterdns.index import NO_PORT, ClusterIndex, Port
from tests.unit.proxy_slices import endpoint_slice, ready, terminating
from tests.unit.test_dns_feed import endpoints


def test_slice_entries_keep_ready_endpoints_with_hostnames_and_ports():
    es = endpoint_slice("db", [ready("10.244.1.5"), terminating("10.244.1.6"), ready("10.244.1.7")])
    es.endpoints[0].hostname = "db-0"
    es.endpoints[2].ClearField("conditions")               # unset ready counts as ready
    got = slice_entries(es)
    assert [(e.ip, e.hostname, e.ports) for e in got] == [
        ("10.244.1.5", "db-0", (Port("http", 8080, "TCP"),)), ("10.244.1.7", "", (Port("http", 8080, "TCP"),))]
    assert slice_entries(endpoint_slice("db", [ready("10.244.1.5")], ports=()))[0].ports == (Port("", NO_PORT, ""),)


async def until(cond):
    async with asyncio.timeout(5):
        while not cond():
            await asyncio.sleep(0.01)


async def test_slices_replace_the_endpoints_object_of_their_service_and_hand_back_when_gone():
    client = FakeClient()
    await client.create(endpoints("db", [("10.244.1.5", "db-0")]))
    index = ClusterIndex()
    factory = SharedInformerFactory(client)
    Feed(factory, index, pods=False)
    task = asyncio.create_task(factory.run())
    try:
        ips = lambda: [e.ip for e in index.endpoints("default", "db")]   # noqa: E731
        await until(lambda: ips() == ["10.244.1.5"])
        a = await client.create(endpoint_slice("db", [ready("10.244.1.5"), ready("10.244.1.6")], name="db-a"))
        await client.create(endpoint_slice("db", [ready("10.244.1.8"), terminating("10.244.1.9")], name="db-b"))
        await until(lambda: ips() == ["10.244.1.5", "10.244.1.6", "10.244.1.8"])
        a.endpoints[1].conditions.ready = False
        await client.update(a)
        await until(lambda: ips() == ["10.244.1.5", "10.244.1.8"])
        await client.delete("EndpointSlice", "db-a", "default")
        await until(lambda: ips() == ["10.244.1.8"])
        await client.delete("EndpointSlice", "db-b", "default")
        await until(lambda: ips() == ["10.244.1.5"])            # the Endpoints object again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
