"""Optimistic concurrency under real contention: read-modify-write clients
and racing creates, against a real etcd."""
from __future__ import annotations

import asyncio

from machinery import errors
from machinery.client import Client
from tests.cluster import new_object


async def test_twenty_read_modify_write_clients(apiserver, client):
    await client.create(new_object("Deployment", "counter"))
    clients = [Client(apiserver.target) for _ in range(20)]
    successes = 0
    conflicts = 0

    async def worker(c: Client, rounds: int):
        nonlocal successes, conflicts
        done = 0
        while done < rounds:
            d = await c.get("Deployment", "counter")
            d.metadata.annotations["count"] = str(int(d.metadata.annotations.get("count", "0")) + 1)
            try:
                await c.update(d)
            except errors.Conflict:
                conflicts += 1
                continue
            successes += 1
            done += 1

    try:
        await asyncio.gather(*(worker(c, 5) for c in clients))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    final = await client.get("Deployment", "counter")
    assert successes == 100
    assert int(final.metadata.annotations["count"]) == successes
    assert conflicts > 0   # 20 clients on one object must have collided


async def test_conflicts_counted_exactly(apiserver, client):
    """Each client tries once: final value == number of successful updates."""
    await client.create(new_object("Deployment", "once"))
    clients = [Client(apiserver.target) for _ in range(20)]
    start = await client.get("Deployment", "once")

    async def one(c: Client):
        d = start.__class__()
        d.CopyFrom(start)
        d.spec.replicas = d.spec.replicas + 1
        d.metadata.annotations["writer"] = str(id(c))
        try:
            await c.update(d)
            return True
        except errors.Conflict:
            return False

    try:
        results = await asyncio.gather(*(one(c) for c in clients))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert sum(results) == 1
    assert (await client.get("Deployment", "once")).spec.replicas == 2


async def test_exactly_one_of_ten_creates_wins(apiserver, client, etcd):
    clients = [Client(apiserver.target) for _ in range(10)]

    async def create(i: int, c: Client):
        p = new_object("Pod", "contended")
        p.metadata.labels["creator"] = str(i)
        try:
            return await c.create(p)
        except errors.AlreadyExists as exc:
            assert exc.message == 'pods "contended" already exists'
            return None

    try:
        results = await asyncio.gather(*(create(i, c) for i, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await client.get("Pod", "contended")
    assert stored.metadata.uid == winners[0].metadata.uid
    assert stored.metadata.labels["creator"] == winners[0].metadata.labels["creator"]
