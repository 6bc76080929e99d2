"""An update starts from the watch cache's copy of the object (no etcd read), as
Kubernetes' GuaranteedUpdate starts from the cacher's; a copy that is behind etcd
never decides anything on its own: a stale write is retried on etcd's copy, a
"nothing changed" or an error is checked against etcd's copy first.

In-process: a Store on a real etcd whose `cached` hook is set by the test
(the apiserver wires it to WatchCache.current, covered at the end)."""
from __future__ import annotations

import asyncio

import pytest

from apiserver import objects
from apiserver import storage as st
from apiserver.allocators import ServiceAllocator
from apiserver.crud import Store
from apiserver.watchcache import WatchCache
from machinery import codec, errors, kinds
from machinery.pb import api_pb2
from tests.cluster import new_object

DEPLOY = kinds.BY_KIND["Deployment"]


class Counting(st.Storage):
    """The real etcd client, counting its single-key reads."""
    gets = 0

    async def get(self, key):
        self.gets += 1
        return await super().get(key)


@pytest.fixture
async def store(etcd):
    storage = Counting(etcd.url)
    s = Store(storage, ServiceAllocator(storage, "10.96.0.0/16", "30000-32767"))
    await s.create(codec.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}))
    try:
        yield s
    finally:
        await storage.close()


async def etcd_copy(store, name):
    kv, _ = await st.Storage.get(store.storage, objects.key(DEPLOY, "default", name))
    return kv


async def created(store, name, replicas=1):
    d = new_object("Deployment", name, "default")
    d.spec.replicas = replicas
    out, _ = await store.create(d)
    return out


async def test_an_update_from_a_current_copy_reads_nothing(store):
    await created(store, "web")
    kv = await etcd_copy(store, "web")
    store.cached = lambda kind, key: kv if key == kv.key else None
    reads = store.storage.gets
    for n in (2, 3):
        d = codec.copy(objects.decode(DEPLOY, kv.value, kv.mod_revision))
        d.status.replicas = n
        out, _ = await store.update(d, status=True)
        kv = await etcd_copy(store, "web")               # what the watch cache would hold next
        assert objects.decode(DEPLOY, kv.value, kv.mod_revision).status.replicas == n
    assert store.storage.gets == reads


async def test_a_stale_copy_costs_a_retry_never_the_newer_spec(store):
    await created(store, "web")
    stale = await etcd_copy(store, "web")
    d = objects.decode(DEPLOY, stale.value, stale.mod_revision)
    d.spec.replicas = 5
    await store.update(d)                                 # etcd moves on; the "cache" does not
    store.cached = lambda kind, key: stale
    s = objects.decode(DEPLOY, stale.value, stale.mod_revision)
    s.metadata.resource_version = ""
    s.status.replicas = 3
    out, _ = await store.update(s, status=True)          # its txn fails on the stale revision, then retries
    now = await etcd_copy(store, "web")
    stored = objects.decode(DEPLOY, now.value, now.mod_revision)
    assert stored.spec.replicas == 5 and stored.status.replicas == 3
    assert out.metadata.resource_version == str(now.mod_revision)


async def test_nothing_changed_is_decided_on_etcds_copy(store):
    await created(store, "web")
    for n in (1, 2):
        cur = await etcd_copy(store, "web")
        d = objects.decode(DEPLOY, cur.value, cur.mod_revision)
        d.status.replicas = n
        await store.update(d, status=True)
        if n == 1:
            first = await etcd_copy(store, "web")         # status.replicas 1: the cache stays here
    store.cached = lambda kind, key: first                # etcd: status.replicas 2
    back = objects.decode(DEPLOY, first.value, first.mod_revision)
    back.metadata.resource_version = ""                   # "replicas 1" again: byte for byte the stale copy
    out, _ = await store.update(back, status=True)
    now = await etcd_copy(store, "web")
    assert objects.decode(DEPLOY, now.value, now.mod_revision).status.replicas == 1
    assert out.metadata.resource_version == str(now.mod_revision) != str(first.mod_revision)


async def test_a_precondition_is_decided_on_etcds_copy(store):
    await created(store, "web")
    stale = await etcd_copy(store, "web")
    d = objects.decode(DEPLOY, stale.value, stale.mod_revision)
    d.spec.replicas = 2
    out, _ = await store.update(d)
    store.cached = lambda kind, key: stale
    mine = codec.copy(out)                                # the client's resourceVersion is etcd's: no conflict
    mine.spec.replicas = 4
    out2, _ = await store.update(mine)
    assert out2.spec.replicas == 4
    old = codec.copy(out)                                 # and now it is stale: a conflict, as without a cache
    old.spec.replicas = 6
    with pytest.raises(errors.Conflict):
        await store.update(old)


async def test_an_error_against_a_stale_copy_is_checked_on_etcds(store):
    """Deployment's selector is immutable: a stale copy with another selector (the object was
    deleted and made again since) must not refuse a valid update of the current one."""
    await created(store, "web")
    stale = await etcd_copy(store, "web")
    await store.delete(api_pb2.DeleteRequest(kind="Deployment", name="web", namespace="default"), DEPLOY)
    d = new_object("Deployment", "web", "default")
    d.spec.selector.match_labels["app"] = "other"
    d.spec.template.metadata.labels["app"] = "other"
    await store.create(d)
    store.cached = lambda kind, key: stale
    cur = await etcd_copy(store, "web")
    upd = objects.decode(DEPLOY, cur.value, cur.mod_revision)
    upd.metadata.resource_version = ""
    upd.spec.replicas = 7
    out, _ = await store.update(upd)
    assert out.spec.replicas == 7 and out.spec.selector.match_labels["app"] == "other"


async def test_the_apiserver_wires_the_watch_cache(store):
    """WatchCache.current follows etcd: the newest value per key, gone once deleted."""
    cache = WatchCache(store.storage, 100)
    task = asyncio.create_task(cache["Deployment"].run())
    try:
        await asyncio.wait_for(cache["Deployment"].ready.wait(), 10)
        out = await created(store, "web")
        key = objects.key(DEPLOY, "default", "web")
        for _ in range(200):
            kv = cache.current("Deployment", key)
            if kv is not None:
                break
            await asyncio.sleep(0.01)
        assert kv is not None and kv.mod_revision == int(out.metadata.resource_version)
        store.cached = cache.current
        reads = store.storage.gets
        upd = objects.decode(DEPLOY, kv.value, kv.mod_revision)
        upd.status.replicas = 9
        await store.update(upd, status=True)
        assert store.storage.gets == reads
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
