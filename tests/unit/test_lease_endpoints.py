"""The lease endpoint reconciler (machinery/leaseendpoints.py) on the FakeClient
with a fake clock: Endpoints = holders of live Leases, a holder that stops
renewing leaves after its TTL (measured from when we saw its Lease change,
whatever its own clock says), a clean remove() leaves at once and for good,
ports travel in the Lease, and anything else in the Endpoints is dropped."""
from __future__ import annotations

import asyncio
import json

import pytest

from machinery import errors
from machinery.fakeclient import FakeClient
from machinery.leaseendpoints import PORTS_ANNOTATION, ClientObjects, LeaseEndpoints

SVC = ("kube-system", "kube-dns")
PORTS = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def instance(client, clock, address, ports=PORTS, ttl=15):
    return LeaseEndpoints(ClientObjects(client), SVC, address, ports, lease_namespace="kube-system",
                          lease_prefix="kctl-dns-", lease_label="kctl.io/dns-endpoint", ttl=ttl,
                          labels={"k8s-app": "kube-dns"}, clock=clock)


def endpoints(client) -> list[tuple]:
    ep = client.stored("Endpoints", "kube-dns", "kube-system")
    return [(tuple(a.ip for a in s.addresses), tuple((p.name, p.port, p.protocol) for p in s.ports))
            for s in ep.subsets]


@pytest.fixture
def client():
    return FakeClient()


async def test_the_endpoints_are_the_holders_of_live_leases(client):
    clock = Clock()
    a, b = instance(client, clock, "10.0.0.2"), instance(client, clock, "10.0.0.1")
    await a.reconcile()
    await b.reconcile()
    assert endpoints(client) == [(("10.0.0.1", "10.0.0.2"), tuple(PORTS))]
    ep = client.stored("Endpoints", "kube-dns", "kube-system")
    assert dict(ep.metadata.labels) == {"k8s-app": "kube-dns"}
    lease = client.stored("Lease", "kctl-dns-10-0-0-1", "kube-system")
    assert (lease.spec.holder_identity, lease.spec.lease_duration_seconds) == ("10.0.0.1", 15)
    assert dict(lease.metadata.labels) == {"kctl.io/dns-endpoint": "true"}
    assert json.loads(lease.metadata.annotations[PORTS_ANNOTATION]) == [list(p) for p in PORTS]
    assert lease.spec.renew_time.ToMicroseconds() == clock.now * 1e6


async def test_a_holder_that_stops_renewing_leaves_after_its_ttl(client):
    clock = Clock()
    a, b = instance(client, clock, "10.0.0.1"), instance(client, clock, "10.0.0.2", ttl=5)
    await b.reconcile()                          # b renews, then crashes (never renews again)
    await a.reconcile()
    clock.now += 5
    await a.reconcile()
    assert endpoints(client)[0][0] == ("10.0.0.1", "10.0.0.2")       # exactly the TTL: still live
    clock.now += 1
    await a.reconcile()
    assert endpoints(client) == [(("10.0.0.1",), tuple(PORTS))]
    assert client.stored("Lease", "kctl-dns-10-0-0-2", "kube-system")  # left in place: b may come back
    await b.reconcile()                                               # it does: the same Lease, renewed
    await a.reconcile()
    assert endpoints(client)[0][0] == ("10.0.0.1", "10.0.0.2")


async def test_liveness_is_measured_on_our_clock_not_the_holders(client):
    """b's clock is an hour behind: its renewTime always looks long expired, yet it renews, so it
    stays. Only at first sight (nothing to compare with) is the renewTime all a has: b is left out
    until a sees its Lease change."""
    ours, theirs = Clock(), Clock(1_000_000.0 - 3600)
    a, b = instance(client, ours, "10.0.0.1"), instance(client, theirs, "10.0.0.2")
    await b.reconcile()
    await a.reconcile()
    assert endpoints(client)[0][0] == ("10.0.0.1",)
    for _ in range(4):
        ours.now += 10
        theirs.now += 10
        await b.reconcile()
        await a.reconcile()
        assert endpoints(client)[0][0] == ("10.0.0.1", "10.0.0.2")
    ours.now += 16                                              # b stops renewing: gone after its TTL
    await a.reconcile()
    assert endpoints(client)[0][0] == ("10.0.0.1",)


async def test_a_restarted_reconciler_does_not_bring_back_a_long_dead_holder(client):
    clock = Clock()
    await instance(client, clock, "10.0.0.2").reconcile()       # renewed once, then dead
    clock.now += 3600
    await instance(client, clock, "10.0.0.1").reconcile()       # a fresh instance an hour later
    assert endpoints(client) == [(("10.0.0.1",), tuple(PORTS))]


async def test_a_clean_remove_leaves_at_once_and_for_good(client):
    clock = Clock()
    a, b = instance(client, clock, "10.0.0.1"), instance(client, clock, "10.0.0.2")
    await a.reconcile()
    await b.reconcile()
    await b.remove()
    assert endpoints(client) == [(("10.0.0.1",), tuple(PORTS))]
    assert client.stored("Lease", "kctl-dns-10-0-0-2", "kube-system") is None
    await b.reconcile()                          # a tick racing with the shutdown changes nothing
    assert client.stored("Lease", "kctl-dns-10-0-0-2", "kube-system") is None
    await b.remove()                             # removing twice is harmless
    await a.remove()
    assert endpoints(client) == []


async def test_ports_travel_in_the_lease(client):
    clock = Clock()
    a = instance(client, clock, "10.0.0.1", PORTS + [("metrics", 9153, "TCP")])
    odd = instance(client, clock, "10.0.0.3", [("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP")])
    await odd.reconcile()
    await a.reconcile()
    old = client.stored("Lease", "kctl-dns-10-0-0-3", "kube-system")
    del old.metadata.annotations[PORTS_ANNOTATION]              # a Lease of an older version: our ports
    await client.update(old)
    await a.reconcile()
    assert endpoints(client) == [(("10.0.0.1", "10.0.0.3"), tuple(PORTS + [("metrics", 9153, "TCP")]))]
    await odd.reconcile()
    await a.reconcile()
    assert endpoints(client) == [(("10.0.0.1",), tuple(PORTS + [("metrics", 9153, "TCP")])),
                                 (("10.0.0.3",), (("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP")))]
    bad = client.stored("Lease", "kctl-dns-10-0-0-3", "kube-system")
    bad.metadata.annotations[PORTS_ANNOTATION] = '{"dns": 53}'
    await client.update(bad)
    await a.reconcile()
    assert endpoints(client)[0][0] == ("10.0.0.1", "10.0.0.3")   # unreadable: served on our ports


async def test_anything_else_in_the_endpoints_is_replaced_and_a_deleted_object_comes_back(client):
    clock = Clock()
    a = instance(client, clock, "10.0.0.1")
    await a.reconcile()
    ep = client.stored("Endpoints", "kube-dns", "kube-system")
    ep.subsets[0].addresses.add(ip="10.0.0.99")                  # a dead instance an older version left
    await client.update(ep)
    await a.reconcile()
    assert endpoints(client) == [(("10.0.0.1",), tuple(PORTS))]
    await client.delete("Endpoints", "kube-dns", "kube-system")
    await a.reconcile()
    assert endpoints(client) == [(("10.0.0.1",), tuple(PORTS))]
    writes = len(client.actions)
    await a.reconcile()                                          # nothing changed: only the Lease is written
    assert [x[:2] for x in client.actions[writes:] if x[0] in ("create", "update")] == [("update", "Lease")]


async def test_an_endpoints_conflict_is_retried_and_a_persistent_one_reported(client):
    clock = Clock()
    a, b = instance(client, clock, "10.0.0.1"), instance(client, clock, "10.0.0.2")
    await a.reconcile()
    await b.renew()
    conflict = errors.Conflict("the object has been modified")
    client.fail_next("update", conflict)         # the first Endpoints write loses a race
    await a.write()
    assert endpoints(client)[0][0] == ("10.0.0.1", "10.0.0.2")
    await instance(client, clock, "10.0.0.3").renew()
    client.fail_next("update", conflict, times=5)
    with pytest.raises(errors.Conflict, match="gave up after 5 conflicts"):
        await a.write()


async def test_keep_reconciles_until_cancelled_then_removes(client):
    clock = Clock()
    a, b = instance(client, clock, "10.0.0.1"), instance(client, clock, "10.0.0.2")
    await a.reconcile()
    ticks = []

    async def tick():
        ticks.append(clock.now)
        await b.reconcile()

    task = asyncio.create_task(b.keep(tick, 0.01))
    async with asyncio.timeout(5):
        while len(ticks) < 3:
            await asyncio.sleep(0.01)
    assert endpoints(client)[0][0] == ("10.0.0.1", "10.0.0.2")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert endpoints(client)[0][0] == ("10.0.0.1",)
    assert client.stored("Lease", "kctl-dns-10-0-0-2", "kube-system") is None
