"""Informers against a real etcd + apiserver: every change is seen across an
apiserver restart (resume from resourceVersion, no relist), a compacted
resourceVersion makes the informer relist and report what vanished, field
selectors follow pods onto a node, and an apiserver that is down at start
is waited for."""
from __future__ import annotations

import asyncio

import pytest

from machinery import errors
from machinery.client import Client
from machinery.informer import BY_NODE, Informer, index_by_node
from tests.cluster import ApiServer, new_object


class Seen:
    """Records what the handlers receive."""

    def __init__(self, inf: Informer):
        self.events: list[tuple] = []
        inf.add_handler(lambda o: self.events.append(("add", o.metadata.name, o.metadata.resource_version)),
                        lambda old, new: self.events.append(("update", new.metadata.name,
                                                             new.metadata.resource_version)),
                        lambda o: self.events.append(("delete", o.metadata.name, o.metadata.resource_version,
                                                      dict(o.metadata.labels))))

    def rvs(self) -> set[str]:
        return {e[2] for e in self.events if e[0] != "delete"}

    def names(self, kind: str) -> list[str]:
        return [e[1] for e in self.events if e[0] == kind]


async def eventually(cond, timeout=20.0):
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def reachable(client) -> None:
    """Wait until the client's channel is through its reconnect backoff."""
    async with asyncio.timeout(30):
        while True:
            try:
                await client.version()
                return
            except errors.Unavailable:
                await asyncio.sleep(0.1)


async def start(inf: Informer) -> asyncio.Task:
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.wait_synced(), 20)
    return task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def writes(client, prefix: str, n: int) -> tuple[list[str], list[str]]:
    """Create n pods, update every other one, delete every third; returns
    (resourceVersions of creates/updates, names deleted)."""
    rvs, deleted = [], []
    for i in range(n):
        p = await client.create(new_object("Pod", f"{prefix}-{i}", labels={"round": "1"}))
        rvs.append(p.metadata.resource_version)
        if i % 2 == 0:
            p.metadata.labels["round"] = "2"
            rvs.append((await client.update(p)).metadata.resource_version)
        if i % 3 == 0:
            _, gone = await client.delete("Pod", p.metadata.name, "default")
            assert gone                     # unbound pods go at once
            deleted.append(p.metadata.name)
    return rvs, deleted


async def test_informer_sees_every_change_across_apiserver_restart(client, apiserver):
    inf = Informer(client, "Pod", backoff_max=1.0)
    seen = Seen(inf)
    task = await start(inf)
    try:
        rvs1, deleted1 = await writes(client, "before", 12)
        await eventually(lambda: set(rvs1) <= seen.rvs())
        await asyncio.to_thread(apiserver.stop)
        await asyncio.sleep(1.0)            # the informer notices and backs off
        await asyncio.to_thread(apiserver.start)
        await reachable(client)
        rvs2, deleted2 = await writes(client, "after", 12)
        items, list_rv = await client.list("Pod")
        await eventually(lambda: int(inf.last_resource_version or 0) >= int(list_rv))
        assert set(rvs1 + rvs2) <= seen.rvs()                 # every create and update
        assert sorted(seen.names("delete")) == sorted(deleted1 + deleted2)
        assert inf.relists == 0                                # resumed, never relisted
        assert {(p.metadata.name, p.metadata.resource_version) for p in items} == \
            {(p.metadata.name, p.metadata.resource_version) for p in inf.list()}
    finally:
        await stop(task)


async def test_relist_after_compaction_reports_vanished_objects(client, apiserver, etcd, tmp_path):
    for name in ("a", "b", "c"):
        await client.create(new_object("Pod", name, labels={"v": "1"}))
    inf = Informer(client, "Pod", backoff_initial=0.1, backoff_max=0.5)
    seen = Seen(inf)
    task = await start(inf)
    other = ApiServer(etcd, tmp_path / "other")            # writes while the informer's server is away
    try:
        await asyncio.to_thread(apiserver.stop)
        await asyncio.to_thread(other.start)
        seen.events.clear()
        async with Client(other.target) as c2:
            a = await c2.get("Pod", "a", "default")
            a.metadata.labels["v"] = "2"
            a = await c2.update(a)
            b = await c2.get("Pod", "b", "default")
            b.metadata.labels["v"] = "2"                     # a change the informer never sees
            await c2.update(b)
            await c2.delete("Pod", "b", "default")
            d = await c2.create(new_object("Pod", "d"))
        etcd.compact()                                     # the informer's resourceVersion is gone
        await asyncio.to_thread(apiserver.start)
        await eventually(lambda: len(seen.events) >= 3 and inf.get("default", "d") is not None)
        assert inf.relists >= 1
        kinds_by_name = {e[1]: e[0] for e in seen.events}
        assert kinds_by_name == {"a": "update", "b": "delete", "d": "add"}
        (deleted,) = [e for e in seen.events if e[0] == "delete"]
        assert deleted[3] == {"v": "1"}                    # the last object the informer knew
        assert inf.get("default", "a").metadata.resource_version == a.metadata.resource_version
        assert sorted(p.metadata.name for p in inf.list()) == ["a", "c", "d"]
        assert d.metadata.resource_version in seen.rvs()
        await reachable(client)
        e = await client.create(new_object("Pod", "e"))    # and it watches on afterwards
        await eventually(lambda: e.metadata.resource_version in seen.rvs())
    finally:
        await stop(task)
        await asyncio.to_thread(other.stop)


async def test_field_selector_follows_pods_onto_a_node(client):
    mine = Informer(client, "Pod", field_selector="spec.nodeName=n1")
    everything = Informer(client, "Pod")
    everything.add_index(BY_NODE, index_by_node)
    seen = Seen(mine)
    tasks = [await start(mine), await start(everything)]
    try:
        await client.create(new_object("Pod", "p1"))
        await client.create(new_object("Pod", "p2"))
        await eventually(lambda: len(everything.by_index(BY_NODE, "")) == 2)
        assert len(mine) == 0
        await client.bind("default", "p1", "n1")
        await client.bind("default", "p2", "n2")
        await eventually(lambda: len(mine) == 1 and len(everything.by_index(BY_NODE, "n2")) == 1)
        assert [p.metadata.name for p in mine.list()] == ["p1"]
        assert seen.names("add") == ["p1"]                 # entered the selector: an ADD
        assert [p.metadata.name for p in everything.by_index(BY_NODE, "n1")] == ["p1"]
        assert everything.by_index(BY_NODE, "") == []
    finally:
        for t in tasks:
            await stop(t)


async def test_informer_waits_for_an_apiserver_that_is_down(client, apiserver):
    await client.create(new_object("Pod", "x"))
    await asyncio.to_thread(apiserver.stop)
    inf = Informer(client, "Pod", backoff_initial=0.1, backoff_max=0.5)
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.sleep(1.0)
        assert not inf.has_synced() and not task.done()
        await asyncio.to_thread(apiserver.start)
        await asyncio.wait_for(inf.wait_synced(), 20)
        assert [p.metadata.name for p in inf.list()] == ["x"]
    finally:
        await stop(task)
