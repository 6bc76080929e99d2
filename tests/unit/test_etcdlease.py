"""apiserver.etcdlease.LeaseManager: one etcd lease shared by the writes of a
short window, as Kubernetes' lease manager shares them."""
import asyncio

import pytest

from apiserver.etcdlease import LeaseManager


class Etcd:
    """Grants lease IDs 1, 2, ... and records each grant's TTL."""

    def __init__(self, delay: float = 0.0):
        self.ttls: list[int] = []
        self.delay = delay

    async def grant(self, ttl: int) -> int:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.ttls.append(ttl)
        return len(self.ttls)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(**kw):
    etcd, clock = Etcd(), Clock()
    return LeaseManager(etcd.grant, clock=clock, **kw), etcd, clock


async def test_an_hour_ttl_gets_a_lease_with_a_minute_to_spare_and_writes_within_it_share_it():
    m, etcd, clock = manager()
    assert await m.lease(3600) == 1
    assert etcd.ttls == [3660]               # ttl + min(5% of it, 60 s)
    for _ in range(59):
        clock.now += 1
        assert await m.lease(3600) == 1      # still lives past now + 3600, and not by more than 60 s
    clock.now += 1.5                         # the lease would now end before this write's hour is up
    assert await m.lease(3600) == 2
    assert etcd.ttls == [3660, 3660] and m.granted == 2


async def test_a_short_ttl_reuses_only_for_five_percent_of_it():
    m, etcd, clock = manager()
    await m.lease(100)
    assert etcd.ttls == [105]
    clock.now += 4
    assert await m.lease(100) == 1
    clock.now += 1.5
    assert await m.lease(100) == 2
    m2, etcd2, clock2 = manager()
    await m2.lease(2)                        # 5% of 2 s is nothing: no reuse at all
    clock2.now += 0.01
    await m2.lease(2)
    assert etcd2.ttls == [2, 2]


async def test_a_longer_ttl_than_the_lease_has_left_gets_its_own():
    m, etcd, clock = manager()
    await m.lease(60)
    assert await m.lease(3600) == 2          # lease 1 ends long before an hour
    assert await m.lease(60) == 3            # lease 2 outlives 60 s by far more than the window
    assert etcd.ttls == [63, 3660, 63]


async def test_at_most_max_objects_per_lease():
    m, etcd, _ = manager(max_objects=3)
    ids = [await m.lease(3600) for _ in range(7)]
    assert ids == [1, 1, 1, 2, 2, 2, 3]


async def test_concurrent_writes_wait_for_one_grant():
    etcd = Etcd(delay=0.05)
    m = LeaseManager(etcd.grant)
    ids = await asyncio.gather(*(m.lease(3600) for _ in range(20)))
    assert set(ids) == {1} and etcd.ttls == [3660]


async def test_a_failed_grant_fails_that_write_and_the_next_asks_again():
    calls = []

    async def grant(ttl):
        calls.append(ttl)
        if len(calls) == 1:
            raise ConnectionError("etcd down")
        return 7

    m = LeaseManager(grant)
    with pytest.raises(ConnectionError):
        await m.lease(3600)
    assert await m.lease(3600) == 7 and calls == [3660, 3660]
