"""A change in the watch cache is encoded once for all of its watchers, as
Kubernetes' watch cache does (cachingObject): every gRPC watcher that sees it
the same way gets the same WatchEvent (apiserver/watchcache.Event.encoded),
and every HTTP watcher of the same version the same JSON line
(apiserver/http/watch.EncodedLines)."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace


from apiserver import objects
from apiserver import storage as st
from apiserver.http.watch import EncodedLines
from apiserver.verbs import Verbs
from apiserver.watchcache import Event, KindCache
from machinery import codec, kinds
from machinery.pb import api_pb2

from tests.unit.test_watchcache_prevkv import Etcd, cm, etcd_event

INFO = kinds.BY_KIND["ConfigMap"]


def test_an_event_is_built_once_per_type():
    ev = Event(INFO, 7, "MODIFIED", b"k", cm("a"), cm("a", {"old": "1"}))
    built = []

    def build(type_, raw):
        built.append((type_, raw))
        return object()
    first = ev.encoded(("MODIFIED", ev.raw), build)
    assert ev.encoded(("MODIFIED", ev.raw), build) is first
    left = ev.encoded(("DELETED", ev.prev_raw), build)       # a watcher whose selector it left
    assert left is not first and ev.encoded(("DELETED", ev.prev_raw), build) is left
    assert built == [("MODIFIED", cm("a")), ("DELETED", cm("a", {"old": "1"}))]


async def _watch(verbs, cache, flt, rv, n, out):
    async for we in verbs._events(INFO, flt, cache, rv, False):
        out.append(we)
        if len(out) == n:
            return


async def test_watchers_share_the_wire_form_and_each_sees_its_own_type():
    etcd = Etcd([[etcd_event(st.EVENT_PUT, "a", 41, 1, cm("a"))],
                 [etcd_event(st.EVENT_PUT, "a", 42, 2, cm("a", {"app": "x"}), prev=cm("a"))],
                 [etcd_event(st.EVENT_PUT, "a", 43, 3, cm("a", {"app": "x", "v": "2"}), prev=cm("a", {"app": "x"}))]])
    cache = KindCache(INFO, etcd, size=100)
    verbs = Verbs(SimpleNamespace(storage=etcd), {"ConfigMap": cache})
    runner = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.ready.wait(), 5)
        every = objects.Filter(INFO, "default", "", "")
        labelled = objects.Filter(INFO, "default", "app=x", "")
        one, two, sel = [], [], []
        tasks = [asyncio.create_task(_watch(verbs, cache, every, 40, 3, one)),
                 asyncio.create_task(_watch(verbs, cache, every, 40, 3, two)),
                 asyncio.create_task(_watch(verbs, cache, labelled, 40, 2, sel))]
        etcd.go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert [(w.type, w.resource_version) for w in one] == [("ADDED", "41"), ("MODIFIED", "42"), ("MODIFIED", "43")]
    assert all(a is b for a, b in zip(one, two))                  # one object per change for both
    assert [(w.type, w.resource_version) for w in sel] == [("ADDED", "42"), ("MODIFIED", "43")]
    assert sel[0] is not one[1]                                   # revision 42 entered its selector: ADDED
    assert sel[1] is one[2]                                       # 43 is MODIFIED for all three
    obj = codec.unpack(one[1].object)
    assert (obj.metadata.resource_version, dict(obj.metadata.labels)) == ("42", {"app": "x"})


class _Target:
    def __init__(self, api_version: str):
        self.served = SimpleNamespace(api_version=api_version)
        self.encoded = 0

    def encode(self, obj):
        self.encoded += 1
        return {"apiVersion": self.served.api_version, "metadata": {"name": obj.metadata.name}}


def _we(name: str) -> api_pb2.WatchEvent:
    obj = kinds.new("ConfigMap")
    obj.metadata.name = name
    return api_pb2.WatchEvent(type="ADDED", resource_version="5", object=objects.pack(obj))


def test_http_watchers_of_one_version_share_the_json_line():
    lines = EncodedLines(size=2)
    v1, v2 = _Target("v1"), _Target("v2")
    we = _we("a")
    first = lines.line(we, v1)
    assert json.loads(first) == {"type": "ADDED", "object": {"apiVersion": "v1", "metadata": {"name": "a"}}}
    assert lines.line(we, v1) is first and v1.encoded == 1
    assert json.loads(lines.line(we, v2))["object"]["apiVersion"] == "v2"     # another version: its own
    other = _we("b")                                                        # another event: its own line
    assert json.loads(lines.line(other, v1))["object"]["metadata"]["name"] == "b"
    assert lines.line(we, v1) is not first and v1.encoded == 3              # evicted (size 2): made again
