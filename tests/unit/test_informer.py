"""Informer against the fake client: sync, handlers, indexes, rewatch, relist on Expired, backoff."""
import asyncio

import pytest

from machinery import errors, kinds
from machinery.fakeclient import FakeClient
from machinery.informer import (BY_NAMESPACE, BY_NODE, BY_OWNER, Informer, SharedInformerFactory,
                                index_by_namespace, index_by_node, index_by_owner_uid, key_of, split_key)


def pod(name, ns="default", node="", owner_uid="", labels=None):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = name, ns
    p.metadata.labels.update(labels or {})
    p.spec.node_name = node
    if owner_uid:
        p.metadata.owner_references.add(kind="ReplicaSet", name="rs", uid=owner_uid, controller=True)
    return p


class Recorder:
    def __init__(self, inf):
        self.events = []
        inf.add_handler(self.add, self.update, self.delete)

    def add(self, obj):
        self.events.append(("add", obj.metadata.name))

    async def update(self, old, new):           # coroutine handlers work too
        self.events.append(("update", new.metadata.name, old.metadata.resource_version,
                            new.metadata.resource_version))

    def delete(self, obj):
        self.events.append(("delete", obj.metadata.name, obj.metadata.labels.get("v", "")))


async def eventually(cond, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


@pytest.fixture
async def running():
    tasks = []

    def start(inf):
        tasks.append(asyncio.ensure_future(inf.run()))
        return inf
    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_keys():
    assert key_of(pod("a", "ns1")) == "ns1/a"
    n = kinds.new("Node")
    n.metadata.name = "n1"
    assert key_of(n) == "n1"
    assert split_key("ns1/a") == ("ns1", "a") and split_key("n1") == ("", "n1")


async def test_initial_sync_then_watch_events_in_order(running):
    c = FakeClient()
    await c.create(pod("a"))
    await c.create(pod("b"))
    inf = Informer(c, "Pod")
    rec = Recorder(inf)
    running(inf)
    await asyncio.wait_for(inf.wait_synced(), 5)
    assert inf.has_synced()
    assert sorted(rec.events) == [("add", "a"), ("add", "b")]   # delivered before synced
    assert inf.last_resource_version == str(c.resource_version)
    rec.events.clear()
    a = await c.get("Pod", "a", "default")
    a.metadata.labels["x"] = "1"
    a2 = await c.update(a)
    await c.delete("Pod", "b", "default")
    await c.create(pod("c"))
    await eventually(lambda: len(rec.events) == 3)
    assert rec.events == [("update", "a", a.metadata.resource_version, a2.metadata.resource_version),
                          ("delete", "b", ""), ("add", "c")]
    assert sorted(p.metadata.name for p in inf.list()) == ["a", "c"]
    assert inf.get("default", "a").metadata.labels["x"] == "1"
    assert inf.get("default", "b") is None
    assert inf.last_resource_version == str(c.resource_version)


async def test_indexes(running):
    c = FakeClient()
    inf = Informer(c, kinds.BY_KIND["Pod"])
    inf.add_index(BY_NAMESPACE, index_by_namespace)
    inf.add_index(BY_NODE, index_by_node)
    inf.add_index(BY_OWNER, index_by_owner_uid)
    await c.create(pod("a", node="n1", owner_uid="u1"))
    await c.create(pod("b", ns="x", node="n1"))
    running(inf)
    await inf.wait_synced()
    with pytest.raises(RuntimeError):
        inf.add_index("late", index_by_namespace)
    assert {p.metadata.name for p in inf.by_index(BY_NODE, "n1")} == {"a", "b"}
    assert [p.metadata.name for p in inf.by_index(BY_OWNER, "u1")] == ["a"]
    assert [p.metadata.name for p in inf.list("x")] == ["b"]
    p = await c.create(pod("c", owner_uid="u1"))
    await c.bind("default", "c", "n2")
    b = await c.get("Pod", "b", "x")
    await c.delete("Pod", "b", "x", grace_period=0)
    await eventually(lambda: inf.get("x", "b") is None and inf.get("default", "c").spec.node_name == "n2")
    assert [p.metadata.name for p in inf.by_index(BY_NODE, "n1")] == ["a"]
    assert [p.metadata.name for p in inf.by_index(BY_NODE, "n2")] == ["c"]
    assert {p.metadata.name for p in inf.by_index(BY_OWNER, "u1")} == {"a", "c"}
    assert inf.by_index(BY_NAMESPACE, "x") == [] and inf.by_index(BY_NODE, "") == []


async def test_rewatch_from_last_resource_version_after_stream_end(running):
    c = FakeClient()
    inf = Informer(c, "Pod")
    rec = Recorder(inf)
    running(inf)
    await inf.wait_synced()
    await c.create(pod("a"))
    await eventually(lambda: rec.events == [("add", "a")])
    c.end_watches()
    await c.create(pod("b"))          # happens while no watch is open
    await eventually(lambda: rec.events == [("add", "a"), ("add", "b")])
    lists = sum(1 for a in c.actions if a[0] == "list")
    assert lists == 1 and inf.relists == 0


async def test_relist_on_expired_emits_differences_with_last_known_object(running):
    c = FakeClient()
    for name in "abc":
        p = pod(name)
        p.metadata.labels["v"] = "1"
        await c.create(p)
    inf = Informer(c, "Pod")
    rec = Recorder(inf)
    running(inf)
    await inf.wait_synced()
    rec.events.clear()
    # Changes the informer will miss: its watch is paused by failing the next watch.
    c.fail_next("watch", errors.Expired("too old"))
    c.end_watches()
    a = await c.get("Pod", "a", "default")
    a.metadata.labels["v"] = "2"
    a_rv_before = a.metadata.resource_version
    a = await c.update(a)
    b = await c.get("Pod", "b", "default")
    b.metadata.labels["v"] = "2"                # changed, then deleted while away
    await c.update(b)
    await c.delete("Pod", "b", "default")
    await c.create(pod("d"))
    c.expire_watches()
    await eventually(lambda: len(rec.events) == 3)
    assert sorted(rec.events) == [
        ("add", "d"),
        ("delete", "b", "1"),                   # the last object the informer knew
        ("update", "a", a_rv_before, a.metadata.resource_version),
    ]                                           # c is unchanged: nothing
    assert inf.relists == 1
    assert sorted(p.metadata.name for p in inf.list()) == ["a", "c", "d"]
    await c.create(pod("e"))                    # and the watch goes on after the relist
    await eventually(lambda: ("add", "e") in rec.events)


async def test_backoff_on_unavailable_without_busy_loop(running):
    c = FakeClient()
    await c.create(pod("a"))
    c.fail_next("list", errors.Unavailable("apiserver down"), times=4)
    inf = Informer(c, "Pod", backoff_initial=0.05, backoff_max=0.2)
    running(inf)
    await asyncio.wait_for(inf.wait_synced(), 5)   # 0.05+0.1+0.2+0.2 (±20%) later
    assert len(inf) == 1
    # a watch that keeps failing backs off too
    c.fail_next("watch", errors.Unavailable("down"), times=1000)
    c.end_watches()
    await asyncio.sleep(0.5)
    attempts = 1000 - c.pending_failures("watch")
    assert 1 <= attempts <= 6
    c.clear_failures("watch")
    await c.create(pod("b"))
    await eventually(lambda: inf.get("default", "b") is not None)


async def test_selectors_and_namespace(running):
    c = FakeClient()
    inf = Informer(c, "Pod", namespace="default", label_selector="app=web")
    rec = Recorder(inf)
    running(inf)
    await inf.wait_synced()
    await c.create(pod("a", labels={"app": "web"}))
    await c.create(pod("b", labels={"app": "db"}))
    await c.create(pod("c", ns="other", labels={"app": "web"}))
    a = await c.get("Pod", "a", "default")
    a.metadata.labels["app"] = "db"
    await c.update(a)                           # leaves the selector: a delete
    await eventually(lambda: len(rec.events) == 2)
    assert rec.events == [("add", "a"), ("delete", "a", "")]
    assert len(inf) == 0


async def test_late_handler_gets_cache_replay_and_handler_errors_are_contained(running):
    c = FakeClient()
    await c.create(pod("a"))
    inf = Informer(c, "Pod")
    seen = []

    def bad(obj):
        raise RuntimeError("handler bug")
    inf.add_handler(on_add=bad)
    running(inf)
    await inf.wait_synced()
    inf.add_handler(on_add=lambda o: seen.append(("add", o.metadata.name)),
                    on_delete=lambda o: seen.append(("delete", o.metadata.name)))
    await c.delete("Pod", "a", "default")
    await eventually(lambda: len(seen) == 2)
    assert seen == [("add", "a"), ("delete", "a")]


async def test_resync_delivers_updates(running):
    c = FakeClient()
    await c.create(pod("a"))
    inf = Informer(c, "Pod", resync=0.05)
    rec = Recorder(inf)
    running(inf)
    await eventually(lambda: sum(1 for e in rec.events if e[0] == "update") >= 2)
    assert all(e[2] == e[3] for e in rec.events if e[0] == "update")


async def test_shared_informer_factory():
    c = FakeClient()
    await c.create(pod("a"))
    f = SharedInformerFactory(c)
    pods = f.informer("Pod")
    assert f.informer("pods") is pods and f.informer(kinds.BY_KIND["Pod"]) is pods
    assert f.informer("Pod", label_selector="x=y") is not pods
    task = asyncio.ensure_future(f.run())
    await asyncio.wait_for(f.wait_synced(), 5)
    nodes = f.informer("Node")                  # asked for while running: started at once
    await asyncio.wait_for(nodes.wait_synced(), 5)
    assert f.has_synced() and len(pods) == 1 and len(nodes) == 0
    with pytest.raises(RuntimeError):
        await pods.run()                        # one run per informer
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_apply_feeds_events_the_way_the_reflector_does(running):
    from machinery.client import WatchEvent
    c = FakeClient()
    inf = Informer(c, "Pod")
    inf.add_index(BY_NODE, index_by_node)
    rec = Recorder(inf)
    running(inf)
    await inf.wait_synced()
    a = pod("a", node="n1")
    a.metadata.resource_version = "7"
    inf.apply(WatchEvent("ADDED", a, "7"))             # the apiserver never had it: cache only
    assert inf.get("default", "a") is a and inf.by_index(BY_NODE, "n1") == [a]
    assert inf.last_resource_version == "7" and inf.notifications_pending() == 1
    inf.apply(WatchEvent("DELETED", a, "8"))
    assert inf.get("default", "a") is None and inf.by_index(BY_NODE, "n1") == []
    await eventually(lambda: inf.notifications_pending() == 0 and len(rec.events) == 2)
    assert rec.events == [("add", "a"), ("delete", "a", "")]
