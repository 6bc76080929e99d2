"""The fake client behaves like the apiserver where unit tests rely on it."""
import asyncio

import pytest

from machinery import errors, kinds
from machinery.fakeclient import FakeClient
from machinery.pb import api_pb2


def pod(name, ns="default", labels=None, node=""):
    p = kinds.new("Pod")
    p.metadata.name, p.metadata.namespace = name, ns
    p.metadata.labels.update(labels or {})
    p.spec.node_name = node
    p.spec.containers.add(name="c", image="busybox")
    return p


def node(name):
    n = kinds.new("Node")
    n.metadata.name = name
    return n


async def test_create_get_list_and_resource_versions():
    c = FakeClient()
    a = await c.create(pod("a", labels={"app": "web"}))
    b = await c.create(pod("b", ns="other"))
    assert a.metadata.uid and a.metadata.uid != b.metadata.uid
    assert a.metadata.generation == 1 and a.metadata.HasField("creation_timestamp")
    assert a.status.phase == "Pending"
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    with pytest.raises(errors.AlreadyExists):
        await c.create(pod("a"))
    with pytest.raises(errors.NotFound):
        await c.get("Pod", "zzz", "default")
    assert (await c.get("pods", "a", "default")) == a
    items, rv = await c.list("Pod")
    assert [p.metadata.name for p in items] == ["a", "b"] and rv == b.metadata.resource_version
    items, _ = await c.list("Pod", "other")
    assert [p.metadata.name for p in items] == ["b"]
    items, _ = await c.list("Pod", label_selector="app=web")
    assert [p.metadata.name for p in items] == ["a"]
    items, _ = await c.list("Pod", label_selector="app!=web")
    assert [p.metadata.name for p in items] == ["b"]
    items, _ = await c.list("Pod", field_selector="metadata.namespace=other")
    assert [p.metadata.name for p in items] == ["b"]
    n = await c.create(node("n1"))
    assert n.metadata.namespace == ""
    assert (await c.get("Node", "n1")).metadata.name == "n1"


async def test_generate_name():
    c = FakeClient()
    p = pod("")
    p.metadata.generate_name = "web-"
    got = await c.create(p)
    assert got.metadata.name.startswith("web-") and len(got.metadata.name) > 4


async def test_update_conflict_generation_and_status_subresource():
    c = FakeClient()
    p = await c.create(pod("a"))
    stale = p.__class__()
    stale.CopyFrom(p)
    p.metadata.labels["x"] = "1"
    p.status.phase = "Running"                 # ignored by update
    p1 = await c.update(p)
    assert p1.metadata.generation == 1 and p1.status.phase == "Pending"
    assert int(p1.metadata.resource_version) > int(p.metadata.resource_version)
    with pytest.raises(errors.Conflict):
        await c.update(stale)
    p1.spec.containers[0].image = "busybox:2"
    p2 = await c.update(p1)
    assert p2.metadata.generation == 2
    p2.status.phase = "Running"
    p2.spec.containers[0].image = "ignored"
    p3 = await c.update_status(p2)
    assert p3.status.phase == "Running" and p3.spec.containers[0].image == "busybox:2"
    assert p3.metadata.generation == 2 and p3.metadata.uid == p.metadata.uid
    # a no-op update does not make a new revision
    p4 = await c.update(p3)
    assert p4.metadata.resource_version == p3.metadata.resource_version


async def test_delete_preconditions_and_finalizers():
    c = FakeClient()
    p = await c.create(pod("a"))
    with pytest.raises(errors.Conflict):
        await c.delete("Pod", "a", "default", uid="not-the-uid")
    obj, deleted = await c.delete("Pod", "a", "default", uid=p.metadata.uid)
    assert deleted and obj.metadata.name == "a"
    with pytest.raises(errors.NotFound):
        await c.get("Pod", "a", "default")
    f = pod("f")
    f.metadata.finalizers.append("x/y")
    f = await c.create(f)
    obj, deleted = await c.delete("Pod", "f", "default")
    assert not deleted and obj.metadata.HasField("deletion_timestamp")
    del obj.metadata.finalizers[:]
    await c.update(obj)                        # removing the last finalizer deletes it
    with pytest.raises(errors.NotFound):
        await c.get("Pod", "f", "default")


async def test_bind_and_bind_batch():
    c = FakeClient()
    await c.create(pod("a"))
    await c.create(pod("b"))
    bound = await c.bind("default", "a", "n1", annotations={"k": "v"})
    assert bound.spec.node_name == "n1" and bound.metadata.annotations["k"] == "v"
    with pytest.raises(errors.Conflict):
        await c.bind("default", "a", "n2")
    res = await c.bind_batch([api_pb2.BindRequest(namespace="default", name="b", node_name="n2"),
                              api_pb2.BindRequest(namespace="default", name="zz", node_name="n2")])
    assert res[0] is None and isinstance(res[1], errors.NotFound)
    assert (await c.get("Pod", "b", "default")).spec.node_name == "n2"


async def next_event(it):
    return await asyncio.wait_for(it.__anext__(), 5)


async def test_watch_from_resource_version_and_selectors():
    c = FakeClient()
    a = await c.create(pod("a", labels={"app": "web"}))
    _, rv = await c.list("Pod")
    await c.create(pod("b", labels={"app": "web"}))
    w = c.watch("Pod", resource_version=rv, label_selector="app=web")
    ev = await next_event(w)
    assert (ev.type, ev.object.metadata.name) == ("ADDED", "b")     # history replay
    a.metadata.labels["app"] = "db"
    await c.update(a)                          # leaves the selector: DELETED
    ev = await next_event(w)
    assert (ev.type, ev.object.metadata.name) == ("DELETED", "a")
    await c.create(pod("c", labels={"app": "db"}))                   # never visible
    await c.delete("Pod", "b", "default")
    ev = await next_event(w)
    assert (ev.type, ev.object.metadata.name) == ("DELETED", "b")
    assert int(ev.resource_version) == c.resource_version
    await w.aclose()
    assert c.watch_count == 0


async def test_watch_without_resource_version_starts_with_current_state():
    c = FakeClient()
    await c.create(pod("a"))
    w = c.watch("Pod")
    ev = await next_event(w)
    assert (ev.type, ev.object.metadata.name) == ("ADDED", "a")
    await c.create(pod("b"))
    assert (await next_event(w)).object.metadata.name == "b"
    await w.aclose()


async def watching(c, n):
    while c.watch_count != n:
        await asyncio.sleep(0.001)


async def test_expire_end_and_injected_failures():
    c = FakeClient()
    await c.create(pod("a"))
    _, rv = await c.list("Pod")
    w = c.watch("Pod", resource_version=rv)
    task = asyncio.ensure_future(next_event(w))
    await watching(c, 1)
    c.expire_watches()
    with pytest.raises(errors.Expired):
        await task
    with pytest.raises(errors.Expired):
        await next_event(c.watch("Pod", resource_version="0"))
    _, rv2 = await c.list("Pod")               # the current version is watchable
    w2 = c.watch("Pod", resource_version=rv2)
    task = asyncio.ensure_future(next_event(w2))
    await watching(c, 1)
    c.end_watches()
    with pytest.raises(StopAsyncIteration):
        await task
    c.fail_next("list", errors.Unavailable("down"), times=2)
    for _ in range(2):
        with pytest.raises(errors.Unavailable):
            await c.list("Pod")
    assert len((await c.list("Pod"))[0]) == 1
    assert ("create", "Pod", "default", "a") in c.actions


async def test_graceful_pod_deletion_like_the_apiserver():
    c = FakeClient(clock=lambda: 1000.0)
    await c.create(pod("unbound"))
    _, deleted = await c.delete("Pod", "unbound", "default")
    assert deleted                              # never reached a node: gone at once
    p = pod("bound", node="n1")
    p.spec.termination_grace_period_seconds = 10
    await c.create(p)
    obj, deleted = await c.delete("Pod", "bound", "default")
    assert not deleted and obj.metadata.deletion_grace_period_seconds == 10
    assert obj.metadata.deletion_timestamp.seconds == 1010 and obj.metadata.generation == 2
    obj.metadata.ClearField("deletion_timestamp")
    obj.metadata.labels["x"] = "y"
    kept = await c.update(obj)                  # clients cannot clear the deletion fields
    assert kept.metadata.deletion_timestamp.seconds == 1010
    obj, deleted = await c.delete("Pod", "bound", "default", grace_period=3)
    assert not deleted and obj.metadata.deletion_timestamp.seconds == 1003
    obj, deleted = await c.delete("Pod", "bound", "default", grace_period=0)
    assert deleted
    with pytest.raises(errors.NotFound):
        await c.get("Pod", "bound", "default")
    done = pod("done", node="n1")
    done.status.phase = "Succeeded"
    await c.create(done)
    assert (await c.delete("Pod", "done", "default"))[1]


async def test_invalid_selectors_are_bad_requests():
    c = FakeClient()
    with pytest.raises(errors.BadRequest):
        await c.list("Pod", label_selector="a in (")
    with pytest.raises(errors.BadRequest):
        await c.list("Pod", field_selector="spec.noSuchField=1")
    await c.create(pod("a", node="n1"))
    items, _ = await c.list("Pod", field_selector="spec.nodeName=n1")
    assert [p.metadata.name for p in items] == ["a"]


@pytest.mark.parametrize("node_name,phase,spec_grace,requested,want", [
    ("", "Running", 10, None, 0),              # never reached a node
    ("n1", "Failed", 10, 5, 0),                # nothing left to stop
    ("n1", "Running", None, None, 30),         # Kubernetes' default
    ("n1", "Running", 10, None, 10),
    ("n1", "Running", 10, 3, 3),               # the DELETE's grace wins
    ("n1", "Running", 10, -1, 0),
])
def test_the_grace_period_rule_shared_with_the_apiserver(node_name, phase, spec_grace, requested, want):
    from apiserver import registry
    from machinery.deletion import pod_grace_period
    p = pod("p", node=node_name)
    p.status.phase = phase
    if spec_grace is not None:
        p.spec.termination_grace_period_seconds = spec_grace
    assert pod_grace_period(p, requested) == want
    assert registry.strategy(kinds.BY_KIND["Pod"]).grace_period(p, requested) == want
    assert registry.strategy(kinds.BY_KIND["ReplicaSet"]).grace_period(p, requested) == 0


async def test_seed_stored_and_held_watches():
    c = FakeClient()
    gone = pod("gone", node="n1")
    gone.metadata.deletion_timestamp.FromSeconds(5)      # a state create() would not accept as given
    gone.metadata.finalizers.append("x")
    w = c.watch("Pod")
    first = asyncio.ensure_future(w.__anext__())
    await asyncio.sleep(0)
    [seeded] = c.seed(gone)
    assert seeded.metadata.uid and seeded.metadata.resource_version == str(c.resource_version)
    assert (await asyncio.wait_for(first, 1)).type == "ADDED"
    assert c.stored("Pod", "gone").metadata.deletion_timestamp.seconds == 5
    assert c.stored("Pod", "nope") is None and c.stored("Node", "n1", "") is None
    assert not any(a[0] == "create" for a in c.actions)   # test hooks record no action
    c.hold_watches("Pod")
    await c.create(pod("late"))
    nxt = asyncio.ensure_future(w.__anext__())
    await asyncio.sleep(0.01)
    assert not nxt.done() and c.stored("Pod", "late") is not None   # stored, not yet seen
    c.release_watches("Pod")
    ev = await asyncio.wait_for(nxt, 1)
    assert (ev.type, ev.object.metadata.name) == ("ADDED", "late")
    await w.aclose()
    c.fail_next("get", errors.Unavailable("down"), times=2)
    assert c.pending_failures("get") == 2
    c.clear_failures()
    assert c.pending_failures("get") == 0
