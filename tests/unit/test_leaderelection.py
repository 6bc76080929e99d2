"""Leader election against the fake client: lease records, expiry by observed time,
one leader at a time, release on clean stop, giving up when renewal fails."""
import asyncio

import pytest

from machinery import errors
from machinery.fakeclient import FakeClient
from machinery.leaderelection import LeaderElector, LeadershipLost


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


class Partitionable:
    """Delegates to a shared fake; `cut = True` makes every call fail like a lost network."""

    def __init__(self, inner):
        self.inner, self.cut = inner, False

    def __getattr__(self, name):
        attr = getattr(self.inner, name)

        async def call(*a, **kw):
            if self.cut:
                raise errors.Unavailable("cannot reach the apiserver")
            return await attr(*a, **kw)
        return call


async def lease(c):
    return await c.get("Lease", "lock", "kube-system")


async def test_acquire_renew_expire_by_observed_time():
    c, clock = FakeClient(), Clock()
    a = LeaderElector(c, "lock", "a", lease_duration=10, renew_deadline=5, retry_period=1, clock=clock)
    b = LeaderElector(c, "lock", "b", lease_duration=10, renew_deadline=5, retry_period=1, clock=clock)
    assert await a.try_acquire_or_renew()
    l1 = await lease(c)
    assert l1.spec.holder_identity == "a" and l1.spec.lease_duration_seconds == 10
    assert l1.spec.lease_transitions == 0
    assert l1.spec.renew_time.ToMicroseconds() == int(clock.now * 1e6)
    assert not await b.try_acquire_or_renew() and b.leader == "a"
    clock.now += 8
    assert await a.try_acquire_or_renew()           # renewal: b observes a change
    l2 = await lease(c)
    assert l2.spec.renew_time.ToMicroseconds() > l1.spec.renew_time.ToMicroseconds()
    assert l2.spec.acquire_time == l1.spec.acquire_time
    assert not await b.try_acquire_or_renew()
    clock.now += 9                                  # 9 s since b saw the renewal
    assert not await b.try_acquire_or_renew()
    clock.now += 2                                  # 11 s: expired
    assert await b.try_acquire_or_renew()
    l3 = await lease(c)
    assert l3.spec.holder_identity == "b" and l3.spec.lease_transitions == 1
    assert l3.spec.acquire_time.ToMicroseconds() == int(clock.now * 1e6)
    assert not await a.try_acquire_or_renew() and a.held_by_other()


async def test_release_lets_the_next_candidate_in_at_once():
    c, clock = FakeClient(), Clock()
    a = LeaderElector(c, "lock", "a", lease_duration=10, renew_deadline=5, retry_period=1, clock=clock)
    b = LeaderElector(c, "lock", "b", lease_duration=10, renew_deadline=5, retry_period=1, clock=clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    l = await lease(c)
    assert l.spec.holder_identity == "" and l.spec.lease_duration_seconds == 1
    assert await b.try_acquire_or_renew()            # no waiting
    assert (await lease(c)).spec.lease_transitions == 1


async def test_conflicting_write_loses():
    c, clock = FakeClient(), Clock()
    a = LeaderElector(c, "lock", "a", lease_duration=10, renew_deadline=5, retry_period=1, clock=clock)
    assert await a.try_acquire_or_renew()
    c.fail_next("update", errors.Conflict("the object has been modified"))
    assert not await a.try_acquire_or_renew()


def test_config_validation():
    with pytest.raises(ValueError):
        LeaderElector(FakeClient(), "lock", "a", lease_duration=5, renew_deadline=5)


FAST = dict(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)


async def test_only_one_leader_and_clean_handover():
    c = FakeClient()
    leading, max_leading, log = set(), [0], []

    def make(name):
        async def lead():
            leading.add(name)
            max_leading[0] = max(max_leading[0], len(leading))
            log.append(("start", name))
            try:
                await asyncio.Event().wait()
            finally:
                leading.discard(name)
        return lead

    electors = {n: LeaderElector(c, "lock", n, **FAST) for n in "abc"}
    tasks = {n: asyncio.ensure_future(e.run(make(n))) for n, e in electors.items()}
    async with asyncio.timeout(5):
        while not leading:
            await asyncio.sleep(0.01)
    await asyncio.sleep(1.5)                          # several renewals: leadership stays put
    assert len(log) == 1 and max_leading[0] == 1
    first = log[0][1]
    assert electors[first].is_leader and sum(e.is_leader for e in electors.values()) == 1
    tasks[first].cancel()
    await asyncio.gather(tasks[first], return_exceptions=True)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with asyncio.timeout(5):
        while len(log) < 2:
            await asyncio.sleep(0.01)
    assert loop.time() - t0 < 0.9                     # released: no lease_duration wait
    assert max_leading[0] == 1 and (await lease(c)).spec.lease_transitions == 1
    for t in tasks.values():
        t.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_crashed_leader_is_replaced_after_lease_duration():
    c = FakeClient()
    started = asyncio.Event()
    a = LeaderElector(c, "lock", "a", release_on_cancel=False, **FAST)
    b = LeaderElector(c, "lock", "b", **FAST)
    ta = asyncio.ensure_future(a.run(lambda: asyncio.Event().wait()))
    await asyncio.sleep(0.2)
    tb = asyncio.ensure_future(b.run(lambda: _set_and_wait(started)))
    await asyncio.sleep(0.3)
    assert a.is_leader and not started.is_set()
    ta.cancel()                                        # a "crash": the lease is not released
    await asyncio.gather(ta, return_exceptions=True)
    assert (await lease(c)).spec.holder_identity == "a"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(started.wait(), 5)
    assert 0.5 < loop.time() - t0 < 1.0 + 0.1 + 1.0   # ~lease_duration, within lease + retry (+slack)
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)


async def _set_and_wait(ev):
    ev.set()
    await asyncio.Event().wait()


async def test_leader_that_cannot_renew_steps_down_before_takeover():
    shared = FakeClient()
    ca, cb = Partitionable(shared), Partitionable(shared)
    events = []
    stopped = []

    def lead(name):
        async def run():
            events.append(("start", name, asyncio.get_running_loop().time()))
            try:
                await asyncio.Event().wait()
            finally:
                events.append(("stop", name, asyncio.get_running_loop().time()))
        return run

    a = LeaderElector(ca, "lock", "a", **FAST)
    b = LeaderElector(cb, "lock", "b", **FAST)
    ta = asyncio.ensure_future(a.run(lead("a"), lambda: stopped.append("a")))
    await asyncio.sleep(0.2)
    tb = asyncio.ensure_future(b.run(lead("b")))
    await asyncio.sleep(0.3)
    ca.cut = True                                      # a is cut off from the apiserver
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(ta, 5)
    assert stopped == ["a"] and not a.is_leader
    async with asyncio.timeout(5):
        while not any(e[:2] == ("start", "b") for e in events):
            await asyncio.sleep(0.01)
    stop_a = next(e[2] for e in events if e[:2] == ("stop", "a"))
    start_b = next(e[2] for e in events if e[:2] == ("start", "b"))
    assert stop_a < start_b                            # never two leaders
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)


async def test_leading_coroutine_failure_releases_and_propagates():
    c = FakeClient()

    async def boom():
        raise RuntimeError("controller crashed")
    e = LeaderElector(c, "lock", "a", **FAST)
    with pytest.raises(RuntimeError, match="controller crashed"):
        await asyncio.wait_for(e.run(boom), 5)
    assert (await lease(c)).spec.holder_identity == ""
