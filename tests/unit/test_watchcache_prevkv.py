"""The watch cache and etcd events without their previous value (history
compacted between a change and its delivery): as Kubernetes' watcher, no
event is made up; the cache resets and its watchers relist (Expired)."""
from __future__ import annotations

import asyncio

import pytest
from aetcd import rpc

from apiserver import objects
from apiserver import storage as st
from apiserver.watchcache import Event, KindCache
from machinery import errors, kinds

INFO = kinds.BY_KIND["ConfigMap"]


def cm(name: str, labels=None) -> bytes:
    obj = kinds.new("ConfigMap")
    obj.metadata.name, obj.metadata.namespace = name, "default"
    obj.metadata.labels.update(labels or {})
    return obj.SerializeToString()


def etcd_event(type_, name: str, rev: int, version: int, value: bytes = b"", prev: bytes | None = None):
    kv = rpc.KeyValue(key=objects.key(INFO, "default", name), mod_revision=rev, version=version, value=value)
    e = rpc.Event(type=type_, kv=kv)
    if prev is not None:
        e.prev_kv.CopyFrom(rpc.KeyValue(key=kv.key, value=prev))
    return e


def test_a_delete_or_update_without_its_previous_value_is_compacted_history():
    with pytest.raises(st.Compacted, match="PrevKv=nil .*'/registry/configmaps/default/gone'.*modRevision=41"):
        Event.from_etcd(INFO, etcd_event(st.EVENT_DELETE, "gone", 41, 0))
    with pytest.raises(st.Compacted):
        Event.from_etcd(INFO, etcd_event(st.EVENT_PUT, "changed", 42, 3, cm("changed")))
    created = Event.from_etcd(INFO, etcd_event(st.EVENT_PUT, "new", 43, 1, cm("new")))     # a create has none
    assert (created.type, created.prev_raw) == ("ADDED", None)
    deleted = Event.from_etcd(INFO, etcd_event(st.EVENT_DELETE, "old", 44, 0, prev=cm("old", {"app": "x"})))
    assert (deleted.type, deleted.raw) == ("DELETED", cm("old", {"app": "x"}))


class Etcd:
    """storage.Storage's watch and revision for one KindCache: each watch()
    yields `created`, then the queued batches; closes are counted."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.rev, self.watches, self.closed = 40, 0, 0
        self.go = asyncio.Event()          # the last batch waits for it

    async def revision(self) -> int:
        return self.rev

    async def watch(self, prefix, start_revision, *, progress_interval=None):
        self.watches += 1
        try:
            yield rpc.WatchResponse(created=True)
            while self.batches:
                if len(self.batches) == 1:
                    await self.go.wait()
                yield rpc.WatchResponse(events=self.batches.pop(0))
            await asyncio.Event().wait()
        finally:
            self.closed += 1


async def test_the_cache_resets_and_its_watchers_relist_instead_of_a_stub_deleted():
    etcd = Etcd([[etcd_event(st.EVENT_PUT, "a", 41, 1, cm("a", {"app": "x"}))],
                 [etcd_event(st.EVENT_DELETE, "a", 42, 0)]])          # its previous value compacted away
    cache = KindCache(INFO, etcd, size=100)
    runner = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.ready.wait(), 5)
        seen = []
        with pytest.raises(errors.Expired):
            async with asyncio.timeout(5):
                async for ev in cache.follow(40):
                    seen.append((ev.type, ev.revision))
                    etcd.go.set()
        assert seen == [("ADDED", 41)]                 # no DELETED made up from the key
        async with asyncio.timeout(5):
            while etcd.watches < 2:                     # the cache reset and follows etcd again
                await asyncio.sleep(0.01)
        assert cache.epoch == 2 and etcd.closed == 1    # the broken stream was closed, not left behind
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
