"""Events expire (--event-ttl, Kubernetes' default 1h): the apiserver attaches
their etcd keys to a lease shared by the writes of a short window
(apiserver/etcdlease.py); etcd deletes them when it ends, watchers see
DELETED, and nothing else gets a lease."""
from __future__ import annotations

import asyncio
import base64

import pytest

from apiserver import objects
from machinery import errors, kinds
from tests.cluster import new_object

HANG_GUARD = 60   # seconds; etcd revokes an expired lease within ~1 s of its end


def _event(name: str):
    ev = new_object("Event", name, "default")
    ev.involved_object.kind, ev.involved_object.name, ev.involved_object.namespace = "Pod", "web-0", "default"
    ev.reason, ev.message, ev.type, ev.count = "Started", "Started container web", "Normal", 1
    return ev


def lease_of(etcd, kind: str, name: str, namespace: str = "default") -> int:
    """The etcd lease the object's key is attached to (0: none)."""
    key = objects.key(kinds.BY_KIND[kind], namespace, name)
    kvs = etcd._post("/v3/kv/range", {"key": base64.b64encode(key).decode()}).get("kvs") or []
    assert kvs, f"{key!r} is not in etcd"
    return int(kvs[0].get("lease", 0))


def lease_info(etcd, lease: int) -> dict:
    """etcd's LeaseTimeToLive: granted TTL, remaining TTL (-1: gone) and the keys attached."""
    out = etcd._post("/v3/lease/timetolive", {"ID": str(lease), "keys": True})
    return {"granted": int(out.get("grantedTTL", 0)), "ttl": int(out.get("TTL", -1)),
            "keys": sorted(base64.b64decode(k) for k in out.get("keys") or [])}


async def test_events_get_one_shared_lease_of_an_hour_and_a_minute_by_default(etcd, client):
    first = await client.create(_event("a"))
    await client.create(_event("b"))
    cm = await client.create(new_object("ConfigMap", "plain", "default"))
    lease = lease_of(etcd, "Event", "a")
    assert lease != 0 and lease_of(etcd, "Event", "b") == lease      # one grant for both writes
    info = lease_info(etcd, lease)
    assert info["granted"] == 3660 and 3600 < info["ttl"] <= 3660
    assert info["keys"] == [b"/registry/events/default/a", b"/registry/events/default/b"]
    assert lease_of(etcd, "ConfigMap", cm.metadata.name) == 0           # only Events expire
    first.message = "Started container web (again)"
    first.count = 2
    await client.update(first)
    assert lease_of(etcd, "Event", "a") == lease                        # an update within the minute: same lease


@pytest.mark.apiserver_args("--event-ttl", "2s")
async def test_an_event_is_deleted_when_its_ttl_ends_and_watchers_see_it(etcd, client):
    created = await client.create(_event("short-lived"))
    keeper = await client.create(new_object("ConfigMap", "stays", "default"))
    lease = lease_of(etcd, "Event", "short-lived")
    assert lease_info(etcd, lease)["granted"] == 2                      # 5% of 2 s: no window to share
    seen = []

    async def watch():
        async for ev in client.watch("Event", "default", resource_version=created.metadata.resource_version):
            seen.append((ev.type, ev.object.metadata.name))
            if ev.type == "DELETED":
                return

    await asyncio.wait_for(watch(), HANG_GUARD)
    assert seen == [("DELETED", "short-lived")]
    with pytest.raises(errors.NotFound):
        await client.get("Event", "short-lived", "default")
    items, _ = await client.list("Event", "default")
    assert items == []
    assert lease_info(etcd, lease)["ttl"] == -1                          # etcd revoked the lease itself
    assert (await client.get("ConfigMap", "stays", "default")).metadata.uid == keeper.metadata.uid


@pytest.mark.apiserver_args("--event-ttl", "30s")
async def test_an_update_moves_the_event_to_a_lease_that_lives_from_then(etcd, client):
    ev = await client.create(_event("renewed"))
    first = lease_of(etcd, "Event", "renewed")
    await asyncio.sleep(2.0)          # 5% of 30 s is 1 s: the first lease no longer outlives a new 30 s
    ev.count = 2
    await client.update(ev)
    second = lease_of(etcd, "Event", "renewed")
    assert second not in (0, first)
    assert lease_info(etcd, first)["keys"] == []
    assert lease_info(etcd, second)["keys"] == [b"/registry/events/default/renewed"]
    assert lease_info(etcd, second)["granted"] == 31


@pytest.mark.apiserver_args("--event-ttl", "0")
async def test_an_event_ttl_of_zero_keeps_events(etcd, client):
    await client.create(_event("forever"))
    assert lease_of(etcd, "Event", "forever") == 0
