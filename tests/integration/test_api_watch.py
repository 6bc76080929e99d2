"""Watch: ordering and exactly-once from a resourceVersion, resume across an
apiserver restart, "too old" after compaction, selectors (entering and
leaving), initial state, bookmarks, slow clients."""
from __future__ import annotations

import asyncio

import pytest

from machinery import errors
from machinery.client import Client
from machinery.pb import api_pb2, api_pb2_grpc
from tests.cluster import new_object

HANG_GUARD = 120  # seconds; only stops a broken test from hanging forever


async def collect(client, kind, n, **kw):
    """The first n events of a watch."""
    out = []
    async for ev in client.watch(kind, **kw):
        out.append(ev)
        if len(out) == n:
            break
    return out


async def write_many(client, count, writers=8, prefix="w"):
    """`count` writes (creates then updates) spread over `writers` objects; returns their revisions."""
    revs = []
    for i in range(writers):
        o = await client.create(new_object("Lease", f"{prefix}{i}"))
        revs.append(int(o.metadata.resource_version))

    async def writer(i, n):
        for _ in range(n):
            o = await client.get("Lease", f"{prefix}{i}")
            o.spec.lease_transitions = o.spec.lease_transitions + 1
            o = await client.update(o)
            revs.append(int(o.metadata.resource_version))
    per = (count - writers) // writers
    await asyncio.gather(*(writer(i, per + (1 if i < (count - writers) % writers else 0)) for i in range(writers)))
    return sorted(revs)


async def test_watch_from_rv_across_1000_writes(client, etcd):
    start = etcd.revision()
    live = asyncio.create_task(collect(client, "Lease", 1000, resource_version=str(start)))
    await asyncio.sleep(0)  # let the live watch get going while writes happen
    revs = await write_many(client, 1000)
    assert len(revs) == 1000 and len(set(revs)) == 1000
    events = await asyncio.wait_for(live, HANG_GUARD)
    seen = [int(e.resource_version) for e in events]
    assert seen == revs                               # every revision, in order, no gap or duplicate
    assert [e.type for e in events[:8]] == ["ADDED"] * 8
    assert all(int(e.object.metadata.resource_version) == int(e.resource_version) for e in events)
    # The same history replayed from the watch cache, after the fact.
    replay = await asyncio.wait_for(collect(client, "Lease", 1000, resource_version=str(start)), HANG_GUARD)
    assert [int(e.resource_version) for e in replay] == revs


async def test_watch_without_rv_starts_with_current_state(client):
    for i in range(3):
        await client.create(new_object("Pod", f"pre{i}"))
    watch = client.watch("Pod", "default")
    first = [await anext(watch) for _ in range(3)]
    assert sorted(e.object.metadata.name for e in first) == ["pre0", "pre1", "pre2"]
    assert {e.type for e in first} == {"ADDED"}
    await client.create(new_object("Pod", "post"))
    ev = await asyncio.wait_for(anext(watch), HANG_GUARD)
    assert (ev.type, ev.object.metadata.name) == ("ADDED", "post")
    await watch.aclose()


async def test_watch_namespace_scoping(client):
    await client.create(new_object("Namespace", "other"))
    items, rv = await client.list("Pod", "default")
    watch = client.watch("Pod", "default", resource_version=rv)
    await client.create(new_object("Pod", "elsewhere", "other"))
    await client.create(new_object("Pod", "here", "default"))
    ev = await asyncio.wait_for(anext(watch), HANG_GUARD)
    assert ev.object.metadata.name == "here"
    await watch.aclose()


async def test_watch_label_selector_entry_and_exit(client):
    _, rv = await client.list("Pod")
    watch = client.watch("Pod", "default", resource_version=rv, label_selector="app=web")
    await client.create(new_object("Pod", "noise", labels={"app": "db"}))
    p = await client.create(new_object("Pod", "p1", labels={"app": "web"}))
    p.metadata.labels["tier"] = "front"
    p = await client.update(p)
    p.metadata.labels["app"] = "other"              # leaves the selector
    p = await client.update(p)
    p.metadata.labels["app"] = "web"                # enters it again
    p = await client.update(p)
    await client.delete("Pod", "p1")
    got = [await asyncio.wait_for(anext(watch), HANG_GUARD) for _ in range(5)]
    await watch.aclose()
    assert [(e.type, e.object.metadata.name) for e in got] == [
        ("ADDED", "p1"), ("MODIFIED", "p1"), ("DELETED", "p1"), ("ADDED", "p1"), ("DELETED", "p1")]
    assert got[2].object.metadata.labels["app"] == "web"     # the last state that matched
    assert int(got[2].object.metadata.resource_version) == int(got[2].resource_version)


async def test_watch_and_list_field_selectors(client):
    _, rv = await client.list("Pod")
    watch = client.watch("Pod", resource_version=rv, field_selector="spec.nodeName=node-1")
    await client.create(new_object("Pod", "a"))
    await client.create(new_object("Pod", "b"))
    await client.bind("default", "b", "node-2")
    await client.bind("default", "a", "node-1")
    ev = await asyncio.wait_for(anext(watch), HANG_GUARD)
    await watch.aclose()
    assert (ev.type, ev.object.metadata.name, ev.object.spec.node_name) == ("ADDED", "a", "node-1")
    items, _ = await client.list("Pod", field_selector="spec.nodeName=node-1")
    assert [p.metadata.name for p in items] == ["a"]
    items, _ = await client.list("Pod", field_selector="metadata.name=b,status.phase=Pending")
    assert [p.metadata.name for p in items] == ["b"]
    items, _ = await client.list("Pod", label_selector="app notin (x),!missing")
    assert len(items) == 2
    with pytest.raises(errors.BadRequest):
        await client.list("Pod", field_selector="spec.bogus=1")
    with pytest.raises(errors.BadRequest):
        await client.list("Pod", label_selector="a in (")


async def test_watch_resumes_after_apiserver_restart(apiserver, etcd, client):
    p = await client.create(new_object("Pod", "r0"))
    rv = p.metadata.resource_version
    first = await asyncio.wait_for(collect(client, "Pod", 1, resource_version=str(int(rv) - 1)), HANG_GUARD)
    assert first[0].object.metadata.name == "r0"
    apiserver.stop()
    # Writes while the apiserver is down go straight to etcd.
    behind = []
    for i in range(3):
        pod = new_object("Pod", f"down{i}")
        pod.metadata.uid = f"uid-{i}"
        behind.append(etcd.put_raw(f"/registry/pods/default/down{i}", pod.SerializeToString()))
    apiserver.start()
    async with Client(apiserver.target) as c2:
        after = await c2.create(new_object("Pod", "after-restart"))
        watch = asyncio.create_task(collect(c2, "Pod", 24, resource_version=rv))
        # more writes while that watch reads etcd's history and hands over to the cache
        later = [int((await c2.create(new_object("Pod", f"later{i}"))).metadata.resource_version)
                 for i in range(20)]
        events = await asyncio.wait_for(watch, HANG_GUARD)
    assert [int(e.resource_version) for e in events] == behind + [int(after.metadata.resource_version)] + later
    assert [e.object.metadata.name for e in events[:4]] == ["down0", "down1", "down2", "after-restart"]


@pytest.mark.apiserver_args("--watch-cache-size", "20")
async def test_too_old_after_compaction_then_relist(client, etcd):
    p = await client.create(new_object("Pod", "old"))
    old_rv = p.metadata.resource_version
    for i in range(30):                       # push old_rv out of the 20-event cache
        p.metadata.annotations["i"] = str(i)
        p = await client.update(p)
    compacted = etcd.compact()
    with pytest.raises(errors.Expired) as exc:
        await asyncio.wait_for(collect(client, "Pod", 1, resource_version=old_rv), HANG_GUARD)
    assert exc.value.message == f"too old resource version: {old_rv} ({compacted})"
    # The client's way out: relist, then watch from the list's resourceVersion.
    items, rv = await client.list("Pod")
    assert [i.metadata.annotations["i"] for i in items] == ["29"]
    watch = client.watch("Pod", resource_version=rv)
    p.metadata.resource_version = ""
    p.metadata.annotations["i"] = "after"
    await client.update(p)
    ev = await asyncio.wait_for(anext(watch), HANG_GUARD)
    await watch.aclose()
    assert ev.type == "MODIFIED" and ev.object.metadata.annotations["i"] == "after"


async def test_too_old_after_compaction_and_restart(apiserver, client, etcd):
    p = await client.create(new_object("Pod", "old"))
    for i in range(2):
        p.metadata.labels["x"] = str(i)
        p.metadata.resource_version = ""
        await client.update(p)
    p = await client.get("Pod", "old")
    p.metadata.resource_version = str(int(p.metadata.resource_version) - 2)   # the create's revision
    compacted = etcd.compact()
    apiserver.restart()
    async with Client(apiserver.target) as c2:
        with pytest.raises(errors.Expired) as exc:
            await asyncio.wait_for(collect(c2, "Pod", 1, resource_version=p.metadata.resource_version), HANG_GUARD)
        assert "too old resource version" in exc.value.message and str(compacted) in exc.value.message
        items, rv = await c2.list("Pod")
        assert len(items) == 1 and int(rv) >= compacted


@pytest.mark.apiserver_args("--watch-bookmark-interval", "0.2")
async def test_bookmarks(client):
    _, rv = await client.list("Pod")
    watch = client.watch("Pod", resource_version=rv, allow_bookmarks=True)
    lease = await client.create(new_object("Lease", "elsewhere"))   # moves the store revision, not pods
    async for ev in watch:
        if ev.type == "BOOKMARK":
            assert ev.object.metadata.resource_version == ev.resource_version
            if int(ev.resource_version) >= int(lease.metadata.resource_version):
                break
    await watch.aclose()


@pytest.mark.apiserver_args("--watch-bookmark-interval", "0.2")
async def test_bookmarks_for_node_indexed_watchers(client):
    """A node agent's watch (`spec.nodeName=<node>`, served from the node index) gets
    bookmarks too, next to an unindexed watcher of the same kind, and both still get their
    events: the cache's one bookmark timer (apiserver.bookmarks) wakes both kinds of follower."""
    _, rv = await client.list("Pod")
    node_watch = client.watch("Pod", resource_version=rv, field_selector="spec.nodeName=n1", allow_bookmarks=True)
    all_watch = client.watch("Pod", resource_version=rv, allow_bookmarks=True)
    lease = await client.create(new_object("Lease", "elsewhere"))   # moves the store revision, not pods

    async def bookmark_then_pod(watch, name):
        kinds = []
        async for ev in watch:
            if ev.type == "BOOKMARK":
                if int(ev.resource_version) >= int(lease.metadata.resource_version) and "B" not in kinds:
                    kinds.append("B")
                    pod = new_object("Pod", name)
                    pod.spec.node_name = "n1"
                    await client.create(pod)
            elif ev.object.metadata.name == name:
                kinds.append(ev.type)
                return kinds
    try:
        assert await asyncio.wait_for(bookmark_then_pod(node_watch, "on-n1"), HANG_GUARD) == ["B", "ADDED"]
        assert await asyncio.wait_for(bookmark_then_pod(all_watch, "any"), HANG_GUARD) == ["B", "ADDED"]
    finally:
        await node_watch.aclose()
        await all_watch.aclose()


@pytest.mark.apiserver_args("--watch-cache-size", "50")
async def test_slow_watcher_is_closed_not_blocking(client, apiserver):
    import grpc
    from machinery.pb import api_pb2, api_pb2_grpc
    _, rv = await client.list("Lease")
    big = "x" * 8000
    # A raw channel without BDP probing keeps HTTP/2's 64 KiB window, so a
    # client that stops reading really stops the server's writes.
    slow_channel = apiserver.aio_channel(options=[("grpc.http2.bdp_probe", 0)])
    slow_watch = api_pb2_grpc.ApiStub(slow_channel).Watch(api_pb2.WatchRequest(kind="Lease", resource_version=rv))
    try:
        async with Client(apiserver.target) as fast:
            first = asyncio.create_task(slow_watch.read())
            fast_events = asyncio.create_task(collect(fast, "Lease", 400, resource_version=rv))
            lease = await client.create(new_object("Lease", "l"))
            await first                                   # the slow watch is open, then stops reading
            for i in range(399):
                lease.metadata.annotations["big"] = big + str(i)
                lease = await client.update(lease)
            assert len(await asyncio.wait_for(fast_events, HANG_GUARD)) == 400   # not held back by `slow`

            async def drain():
                while (await slow_watch.read()) is not grpc.aio.EOF:
                    pass
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await asyncio.wait_for(drain(), HANG_GUARD)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "fell more than 50 events behind" in errors.from_rpc_error(exc.value).message
    finally:
        await slow_channel.close()


async def test_node_indexed_watchers(client):
    """Watchers of `spec.nodeName=<node>` (every node agent) are served from
    the cache's node index: each sees exactly its pods, in order, including
    replay from an older resourceVersion; `spec.nodeName=` (the scheduler's
    unbound pods) sees a pod leave when it is bound."""
    _, rv = await client.list("Pod")
    nodes = [f"node-{i}" for i in range(10)]
    watches = {n: client.watch("Pod", resource_version=rv, field_selector=f"spec.nodeName={n}") for n in nodes}
    unbound = client.watch("Pod", resource_version=rv, field_selector="spec.nodeName=")
    for i in range(30):
        await client.create(new_object("Pod", f"p{i}"))
    results = await client.bind_batch(api_pb2.BindRequest(namespace="default", name=f"p{i}",
                                                          node_name=nodes[i % 10]) for i in range(30))
    assert all(r is None for r in results)
    for i in range(0, 30, 3):
        await client.delete("Pod", f"p{i}", grace_period=0)
    for n, w in watches.items():
        k = nodes.index(n)
        mine = [f"p{i}" for i in range(30) if i % 10 == k]
        want = [("ADDED", p) for p in mine] + [("DELETED", p) for p in mine if int(p[1:]) % 3 == 0]
        got = [await asyncio.wait_for(anext(w), HANG_GUARD) for _ in want]
        assert [(e.type, e.object.metadata.name) for e in got] == want
        revs = [int(e.resource_version) for e in got]
        assert revs == sorted(revs)
        await w.aclose()
    got = [await asyncio.wait_for(anext(unbound), HANG_GUARD) for _ in range(60)]
    await unbound.aclose()
    assert [e.type for e in got[:30]] == ["ADDED"] * 30
    assert [e.type for e in got[30:]] == ["DELETED"] * 30
    assert all(not e.object.spec.node_name for e in got[30:])   # the last state that matched
    # replay of node-3's history from the start, after the fact
    replay = [e async for e in _take(client.watch("Pod", resource_version=rv,
                                                  field_selector="spec.nodeName=node-3"), 4)]
    assert [(e.type, e.object.metadata.name) for e in replay] == [
        ("ADDED", "p3"), ("ADDED", "p13"), ("ADDED", "p23"), ("DELETED", "p3")]


async def _take(watch, n):
    async for ev in watch:
        yield ev
        n -= 1
        if n == 0:
            break
    await watch.aclose()


@pytest.mark.apiserver_args("--watch-cache-size", "30")
async def test_node_indexed_watcher_too_slow(client, apiserver):
    import grpc
    _, rv = await client.list("Pod")
    channel = apiserver.aio_channel(options=[("grpc.http2.bdp_probe", 0)])
    call = api_pb2_grpc.ApiStub(channel).Watch(api_pb2.WatchRequest(
        kind="Pod", resource_version=rv, field_selector="spec.nodeName=node-1"))
    idle = client.watch("Pod", resource_version=rv, field_selector="spec.nodeName=node-2")
    idle_first = asyncio.ensure_future(anext(idle))
    try:
        first = asyncio.create_task(call.read())
        p = new_object("Pod", "fat")
        p.spec.node_name = "node-1"
        p.spec.containers[0].args.extend(["y" * 8000])
        p = await client.create(p)
        await first
        for i in range(200):
            p.metadata.annotations["i"] = str(i)
            p = await client.update(p)

        async def drain():
            while (await call.read()) is not grpc.aio.EOF:
                pass
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await asyncio.wait_for(drain(), HANG_GUARD)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A watcher of another node, idle while the ring wrapped many times, is not "slow".
        other = new_object("Pod", "other")
        other.spec.node_name = "node-2"
        await client.create(other)
        ev = await asyncio.wait_for(idle_first, HANG_GUARD)
        assert (ev.type, ev.object.metadata.name) == ("ADDED", "other")
    finally:
        await idle.aclose()
        await channel.close()


async def test_garbage_in_etcd_does_not_take_the_server_down(client, etcd, apiserver):
    _, rv = await client.list("Pod")
    node_watch = client.watch("Pod", resource_version=rv, field_selector="spec.nodeName=node-1")
    etcd.put_raw("/registry/pods/default/garbage", b"\xff\xff\xff not protobuf")
    items, _ = await client.list("Pod", label_selector="app=x")
    assert items == []
    p = new_object("Pod", "fine")
    p.spec.node_name = "node-1"
    await client.create(p)
    ev = await asyncio.wait_for(anext(node_watch), HANG_GUARD)
    assert ev.object.metadata.name == "fine"
    await node_watch.aclose()
    with pytest.raises(errors.ApiError) as exc:
        await client.bind("default", "garbage", "node-1")
    assert "cannot be decoded" in exc.value.message
    assert apiserver.running
