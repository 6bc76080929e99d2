"""Bind and BindBatch: nodeName set only once, per-binding results."""
from __future__ import annotations

import asyncio

import pytest

from machinery import errors
from machinery.client import Client
from machinery.pb import api_pb2
from tests.cluster import new_object


async def test_bind(client):
    await client.create(new_object("Pod", "p"))
    out = await client.bind("default", "p", "node-1", annotations={"scheduler.kctl.io/score": "87"})
    assert out.spec.node_name == "node-1"
    assert out.metadata.annotations["scheduler.kctl.io/score"] == "87"
    cond = [c for c in out.status.conditions if c.type == "PodScheduled"]
    assert len(cond) == 1 and cond[0].status == "True" and cond[0].last_transition_time.seconds > 0
    assert (await client.get("Pod", "p")).spec.node_name == "node-1"
    with pytest.raises(errors.Conflict) as exc:
        await client.bind("default", "p", "node-2")
    assert 'pod p is already assigned to node "node-1"' in exc.value.message


async def test_bind_refusals(client):
    with pytest.raises(errors.NotFound):
        await client.bind("default", "missing", "node-1")
    p = await client.create(new_object("Pod", "u"))
    with pytest.raises(errors.Conflict) as exc:
        await client.bind("default", "u", "node-1", uid="other-uid")
    assert "UID in precondition" in exc.value.message
    f = new_object("Pod", "deleting")
    f.metadata.finalizers.append("example.com/hold")
    await client.create(f)
    await client.delete("Pod", "deleting")
    with pytest.raises(errors.Conflict) as exc:
        await client.bind("default", "deleting", "node-1")
    assert "is being deleted" in exc.value.message
    assert (await client.bind("default", "u", "node-1", uid=p.metadata.uid)).spec.node_name == "node-1"


async def test_concurrent_binds_one_wins(apiserver, client):
    await client.create(new_object("Pod", "race"))
    clients = [Client(apiserver.target) for _ in range(8)]

    async def bind(i):
        try:
            return await clients[i].bind("default", "race", f"node-{i}")
        except errors.Conflict:
            return None
    try:
        outs = await asyncio.gather(*(bind(i) for i in range(8)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    winners = [o for o in outs if o is not None]
    assert len(winners) == 1
    assert (await client.get("Pod", "race")).spec.node_name == winners[0].spec.node_name


async def test_bind_batch_per_item_results(client, etcd):
    for i in range(300):
        await client.create(new_object("Pod", f"b{i}"))
    await client.bind("default", "b5", "node-x")                       # already bound
    f = new_object("Pod", "held")
    f.metadata.finalizers.append("example.com/hold")
    await client.create(f)
    await client.delete("Pod", "held")                                  # being deleted
    bindings = [api_pb2.BindRequest(namespace="default", name=f"b{i}", node_name=f"node-{i % 3}",
                                    annotations={"n": str(i)}) for i in range(300)]
    bindings += [api_pb2.BindRequest(namespace="default", name="ghost", node_name="node-1"),
                 api_pb2.BindRequest(namespace="default", name="held", node_name="node-1"),
                 api_pb2.BindRequest(namespace="default", name="b7", node_name="node-9")]   # b7 twice
    before = etcd.revision()
    results = await client.bind_batch(bindings)
    assert len(results) == 303
    failed = {bindings[i].name: r for i, r in enumerate(results) if r is not None}
    assert set(failed) == {"b5", "ghost", "held", "b7"}
    assert isinstance(failed["b5"], errors.Conflict) and "already assigned" in failed["b5"].message
    assert isinstance(failed["ghost"], errors.NotFound)
    assert isinstance(failed["held"], errors.Conflict) and "being deleted" in failed["held"].message
    assert isinstance(failed["b7"], errors.Conflict)        # the second binding of b7 lost
    # 299 pods bound in three chunk txns (≤128 ops each) + one fallback bind for b7's duplicate.
    assert etcd.revision() - before == 3
    items, _ = await client.list("Pod")
    by_name = {p.metadata.name: p for p in items}
    assert by_name["b7"].spec.node_name == "node-1"
    assert all(by_name[f"b{i}"].spec.node_name == f"node-{i % 3}" for i in range(300) if i != 5)
    assert by_name["b42"].metadata.annotations["n"] == "42"


async def test_bind_batch_chunk_conflict_falls_back(apiserver, client):
    """A pod that changes between the batch's read and its write fails the
    chunk's txn; the chunk is retried binding by binding and all succeed."""
    for i in range(50):
        await client.create(new_object("Pod", f"c{i}"))
    stop = asyncio.Event()

    async def churn():
        async with Client(apiserver.target) as c:
            n = 0
            while not stop.is_set():
                p = await c.get("Pod", "c0")
                p.metadata.labels["churn"] = str(n)
                n += 1
                try:
                    await c.update(p)
                except errors.Conflict:
                    pass
    task = asyncio.create_task(churn())
    try:
        for attempt in range(20):
            names = [f"c{i}" for i in range(50)]
            results = await client.bind_batch(
                api_pb2.BindRequest(namespace="default", name=n, node_name="node-1") for n in names)
            assert all(r is None or "already assigned" in r.message for r in results)
            if attempt == 0:
                assert all(r is None for r in results)
    finally:
        stop.set()
        await task
    items, _ = await client.list("Pod")
    assert all(p.spec.node_name == "node-1" for p in items)
